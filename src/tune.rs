//! Owns: `ringway tune check`: reading the kernel settings, resource limits and config values that
//! decide how ringway fares at high connection counts and rates, judging them by the rules of
//! tuning/GUIDE.md, and rendering the verdicts as a table or JSON.
//! Must not: change any setting (it reads and suggests only), or run inside `ringway run`.
//!
//! Sans-IO (STYLE.md §3, §11): [`gather`] is the only function that reads /proc, /sys and rlimits
//! or creates a ring; [`evaluate`], the renderers and [`exit_code`] are pure, so every rule is
//! tested with fixture [`Facts`].

use serde::Serialize;

use crate::config::Config;
use crate::config::validate::{
    DEFAULT_BACKLOG, DEFAULT_CONNS_PER_SHARD_MAX, DEFAULT_PIPE_BYTES, DEFAULT_RECV_BUFFER_COUNT,
};
use crate::startup::KERNEL_MIN;

/// An rlimit of RLIM_INFINITY.
pub const UNLIMITED: u64 = u64::MAX;
/// Fds one proxied connection may hold: two sockets plus, when one direction is spliced, one pipe
/// (two fds). Both directions spliced take six; a pipe that cannot be created only makes that
/// direction copy, so four is the requirement.
pub const FDS_PER_CONN: u64 = 4;
/// Fds beyond the connections: listeners, rings, eventfds, log files, idle pipes, backends pooled.
pub const FDS_SPARE: u64 = 1024;
/// Ports in `ip_local_port_range` 10240–65535 (GUIDE.md): the concurrent connections one source
/// address may hold to one backend server.
pub const LOCAL_PORTS_MIN: u64 = 55_296;
/// net.core.netdev_max_backlog recommended for 10 Gbit/s and faster NICs.
pub const NETDEV_MAX_BACKLOG_MIN: u64 = 16_384;
/// The kernel's default tcp_wmem max (and the low end of the tcp_rmem max default): less caps a
/// connection's throughput at buffer / RTT.
pub const TCP_BUFFER_MAX_BYTES_MIN: u64 = 4 << 20;
/// The value tuning/99-ringway.conf sets for the tcp_rmem/tcp_wmem maximum.
pub const TCP_BUFFER_MAX_BYTES_RECOMMENDED: u64 = 16 << 20;
/// somaxconn and tcp_max_syn_backlog in tuning/99-ringway.conf: room for `backlog` up to 8192.
pub const LISTEN_BACKLOG_RECOMMENDED: u32 = 8192;
/// tcp_fin_timeout above this keeps orphaned FIN_WAIT2 sockets around for too long.
pub const TCP_FIN_TIMEOUT_S_MAX: u64 = 30;
/// The value tuning/99-ringway.conf sets for tcp_fin_timeout.
pub const TCP_FIN_TIMEOUT_S_RECOMMENDED: u64 = 15;
/// Conntrack entries per proxied connection: the client flow and the backend flow.
pub const CONNTRACK_ENTRIES_PER_CONN: u64 = 2;
/// tcp_fastopen bits ringway warns about: 0x200 accepts data in a SYN without a cookie (a
/// spoofed source gets requests forwarded), 0x400 turns Fast Open on for every listener, ringway's
/// included, which never asked for it (SYN data may be replayed, RFC 7413 §6.1).
pub const TFO_SERVER_FLAGS_UNSAFE: u32 = 0x200 | 0x400;
/// Size of one io_uring buffer-ring entry (`struct io_uring_buf`).
pub const BUF_RING_ENTRY_BYTES: u64 = 16;

/// Everything [`evaluate`] judges, as plain values. `None` means the value could not be read,
/// except where a field says that absence is itself a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    // ---- sysctls ----
    pub somaxconn: Option<u64>,
    pub tcp_max_syn_backlog: Option<u64>,
    pub netdev_max_backlog: Option<u64>,
    /// Sum of the "dropped" column of /proc/net/softnet_stat over all CPUs.
    pub softnet_dropped: Option<u64>,
    /// (first, last) port of net.ipv4.ip_local_port_range.
    pub ip_local_port_range: Option<(u32, u32)>,
    pub tcp_tw_reuse: Option<u32>,
    pub file_max: Option<u64>,
    pub nr_open: Option<u64>,
    /// Third field of net.ipv4.tcp_rmem.
    pub tcp_rmem_max_bytes: Option<u64>,
    /// Third field of net.ipv4.tcp_wmem.
    pub tcp_wmem_max_bytes: Option<u64>,
    pub rmem_max_bytes: Option<u64>,
    pub wmem_max_bytes: Option<u64>,
    pub tcp_fastopen: Option<u32>,
    pub tcp_slow_start_after_idle: Option<u32>,
    pub tcp_fin_timeout_s: Option<u64>,
    /// `None`: nf_conntrack is not loaded, so nothing is tracked.
    pub nf_conntrack_max: Option<u64>,
    pub busy_poll_us: Option<u64>,
    pub busy_read_us: Option<u64>,
    /// `None`: the sysctl does not exist (kernels before 6.6 have no switch).
    pub io_uring_disabled: Option<u32>,
    pub pipe_max_size_bytes: Option<u64>,
    /// 0 means no limit.
    pub pipe_user_pages_soft: Option<u64>,
    // ---- this process ----
    pub nofile_soft: Option<u64>,
    pub nofile_hard: Option<u64>,
    /// [`UNLIMITED`] for RLIM_INFINITY.
    pub memlock_soft_bytes: Option<u64>,
    // ---- machine ----
    pub online_cpus: Option<usize>,
    pub page_bytes: u64,
    pub kernel_release: Option<String>,
    /// The selected word of /sys/kernel/mm/transparent_hugepage/enabled.
    pub thp_mode: Option<String>,
    /// The scaling governor of every CPU, comma-joined when they differ; `None`: no cpufreq
    /// driver (common in VMs), nothing to tune.
    pub cpu_governor: Option<String>,
    /// An io_uring instance could be created by this process.
    pub io_uring_available: bool,
    /// Why not, when it could not.
    pub io_uring_error: Option<String>,
    /// The kernel offers the "tls" ULP (CONFIG_TLS, module loaded or built in).
    pub ktls_available: bool,
    // ---- from the config (defaults when none was given) ----
    pub config_loaded: bool,
    pub shards: usize,
    pub conns_per_shard_max: u32,
    /// shards × conns_per_shard_max: the most connections ringway will hold.
    pub conns_expected: u64,
    /// The largest listener `backlog`.
    pub backlog_max: u32,
    pub recv_buffer_count: u32,
    pub pipe_bytes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Bad,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Bad => "bad",
        }
    }
}

/// One row of `ringway tune check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub setting: &'static str,
    pub current: String,
    pub recommended: String,
    pub status: Status,
    /// One command or unit line that fixes it; "-" when there is nothing to do.
    pub fix: String,
}

// ------------------------------------------------------------------------------------------------
// gather: the I/O edge
// ------------------------------------------------------------------------------------------------

/// Reads every fact from /proc/sys, /sys, rlimits and a test ring. Never fails: what cannot be
/// read stays `None`. Without a config, ringway's defaults stand in (one shard per online CPU).
pub fn gather(config: Option<&Config>) -> Facts {
    let online_cpus = std::thread::available_parallelism().ok().map(|n| n.get());
    let (nofile_soft, nofile_hard) = match rlimit_nofile() {
        Some((s, h)) => (Some(s), Some(h)),
        None => (None, None),
    };
    let (io_uring_available, io_uring_error) = probe_io_uring();
    let cfg = config_facts(config, online_cpus.unwrap_or(1));
    Facts {
        somaxconn: sysctl_u64("net.core.somaxconn"),
        tcp_max_syn_backlog: sysctl_u64("net.ipv4.tcp_max_syn_backlog"),
        netdev_max_backlog: sysctl_u64("net.core.netdev_max_backlog"),
        softnet_dropped: read("/proc/net/softnet_stat").and_then(|s| softnet_dropped(&s)),
        ip_local_port_range: sysctl_fields("net.ipv4.ip_local_port_range").and_then(|v| {
            let lo = u32::try_from(*v.first()?).ok()?;
            let hi = u32::try_from(*v.get(1)?).ok()?;
            Some((lo, hi))
        }),
        tcp_tw_reuse: sysctl_u32("net.ipv4.tcp_tw_reuse"),
        file_max: sysctl_u64("fs.file-max"),
        nr_open: sysctl_u64("fs.nr_open"),
        tcp_rmem_max_bytes: sysctl_fields("net.ipv4.tcp_rmem").and_then(|v| v.get(2).copied()),
        tcp_wmem_max_bytes: sysctl_fields("net.ipv4.tcp_wmem").and_then(|v| v.get(2).copied()),
        rmem_max_bytes: sysctl_u64("net.core.rmem_max"),
        wmem_max_bytes: sysctl_u64("net.core.wmem_max"),
        tcp_fastopen: sysctl_u32("net.ipv4.tcp_fastopen"),
        tcp_slow_start_after_idle: sysctl_u32("net.ipv4.tcp_slow_start_after_idle"),
        tcp_fin_timeout_s: sysctl_u64("net.ipv4.tcp_fin_timeout"),
        nf_conntrack_max: sysctl_u64("net.netfilter.nf_conntrack_max"),
        busy_poll_us: sysctl_u64("net.core.busy_poll"),
        busy_read_us: sysctl_u64("net.core.busy_read"),
        io_uring_disabled: sysctl_u32("kernel.io_uring_disabled"),
        pipe_max_size_bytes: sysctl_u64("fs.pipe-max-size"),
        pipe_user_pages_soft: sysctl_u64("fs.pipe-user-pages-soft"),
        nofile_soft,
        nofile_hard,
        memlock_soft_bytes: rlimit_memlock_soft(),
        online_cpus,
        page_bytes: page_bytes(),
        kernel_release: crate::startup::kernel_release(),
        thp_mode: read("/sys/kernel/mm/transparent_hugepage/enabled").and_then(|s| thp_mode(&s)),
        cpu_governor: cpu_governors(),
        io_uring_available,
        io_uring_error,
        ktls_available: read("/proc/sys/net/ipv4/tcp_available_ulp")
            .is_some_and(|s| s.split_whitespace().any(|u| u == "tls"))
            || std::path::Path::new("/sys/module/tls").exists(),
        config_loaded: cfg.config_loaded,
        shards: cfg.shards,
        conns_per_shard_max: cfg.conns_per_shard_max,
        conns_expected: cfg.conns_expected,
        backlog_max: cfg.backlog_max,
        recv_buffer_count: cfg.recv_buffer_count,
        pipe_bytes: cfg.pipe_bytes,
    }
}

struct ConfigFacts {
    config_loaded: bool,
    shards: usize,
    conns_per_shard_max: u32,
    conns_expected: u64,
    backlog_max: u32,
    recv_buffer_count: u32,
    pipe_bytes: u32,
}

fn config_facts(config: Option<&Config>, online_cpus: usize) -> ConfigFacts {
    let default_backlog = u32::try_from(DEFAULT_BACKLOG).unwrap_or(4096);
    let (config_loaded, shards, conns_per_shard_max, backlog_max, recv_buffer_count, pipe_bytes) =
        match config {
            Some(c) => (
                true,
                c.shard_count(online_cpus),
                c.global.conns_per_shard_max,
                c.listeners
                    .iter()
                    .map(|l| l.backlog)
                    .max()
                    .unwrap_or(default_backlog),
                u32::from(c.global.recv_buffer_count),
                c.global.pipe_bytes,
            ),
            None => (
                false,
                online_cpus.max(1),
                u32::try_from(DEFAULT_CONNS_PER_SHARD_MAX).unwrap_or(65_536),
                default_backlog,
                u32::try_from(DEFAULT_RECV_BUFFER_COUNT).unwrap_or(512),
                u32::try_from(DEFAULT_PIPE_BYTES).unwrap_or(64 * 1024),
            ),
        };
    let shards_u64 = u64::try_from(shards).unwrap_or(u64::MAX);
    ConfigFacts {
        config_loaded,
        shards,
        conns_per_shard_max,
        conns_expected: shards_u64.saturating_mul(u64::from(conns_per_shard_max)),
        backlog_max,
        recv_buffer_count,
        pipe_bytes,
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn sysctl_text(name: &str) -> Option<String> {
    read(&format!("/proc/sys/{}", name.replace('.', "/")))
}

fn sysctl_u64(name: &str) -> Option<u64> {
    sysctl_text(name)?.trim().parse().ok()
}

fn sysctl_u32(name: &str) -> Option<u32> {
    sysctl_text(name)?.trim().parse().ok()
}

fn sysctl_fields(name: &str) -> Option<Vec<u64>> {
    sysctl_text(name)?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect()
}

fn rlimit_nofile() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    Some((rlim_value(lim.rlim_cur), rlim_value(lim.rlim_max)))
}

fn rlimit_memlock_soft() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return None;
    }
    Some(rlim_value(lim.rlim_cur))
}

/// RLIM_INFINITY is `u64::MAX` on Linux, the same as [`UNLIMITED`].
fn rlim_value(v: libc::rlim_t) -> u64 {
    if v == libc::RLIM_INFINITY {
        UNLIMITED
    } else {
        v
    }
}

fn page_bytes() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(v).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// Creates (and drops) a two-entry ring: the plainest io_uring_setup, so a failure means io_uring
/// itself is off (ENOSYS, kernel.io_uring_disabled, seccomp), not ringway's setup flags.
fn probe_io_uring() -> (bool, Option<String>) {
    let ring: std::io::Result<io_uring::IoUring> = io_uring::IoUring::new(2);
    match ring {
        Ok(_) => (true, None),
        Err(e) => (false, Some(e.to_string())),
    }
}

fn cpu_governors() -> Option<String> {
    let entries = std::fs::read_dir("/sys/devices/system/cpu").ok()?;
    let mut governors = std::collections::BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_cpu = name
            .strip_prefix("cpu")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_cpu {
            continue;
        }
        let path = entry.path().join("cpufreq/scaling_governor");
        if let Ok(g) = std::fs::read_to_string(path) {
            governors.insert(g.trim().to_string());
        }
    }
    if governors.is_empty() {
        None
    } else {
        Some(governors.into_iter().collect::<Vec<_>>().join(","))
    }
}

/// "always [madvise] never" -> "madvise".
fn thp_mode(text: &str) -> Option<String> {
    let start = text.find('[')?;
    let rest = text.get(start + 1..)?;
    let end = rest.find(']')?;
    rest.get(..end).map(str::to_string)
}

/// Sums the second (hex) column of /proc/net/softnet_stat: packets dropped because a CPU's
/// input queue (netdev_max_backlog) was full.
fn softnet_dropped(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    for line in text.lines() {
        let col = line.split_whitespace().nth(1)?;
        total = total.saturating_add(u64::from_str_radix(col, 16).ok()?);
    }
    Some(total)
}

// ------------------------------------------------------------------------------------------------
// evaluate: pure rules, one function each, in the order of tuning/GUIDE.md
// ------------------------------------------------------------------------------------------------

/// Judges every fact. The order is the table's order.
pub fn evaluate(f: &Facts) -> Vec<Verdict> {
    vec![
        rule_conns_expected(f),
        rule_shards(f),
        rule_kernel(f),
        rule_io_uring(f),
        rule_io_uring_disabled(f),
        rule_nofile(f),
        rule_nr_open(f),
        rule_file_max(f),
        rule_memlock(f),
        rule_somaxconn(f),
        rule_syn_backlog(f),
        rule_netdev_backlog(f),
        rule_port_range(f),
        rule_tw_reuse(f),
        rule_fin_timeout(f),
        rule_slow_start_after_idle(f),
        rule_tcp_buffers(f),
        rule_core_buffers(f),
        rule_fastopen(f),
        rule_conntrack(f),
        rule_busy_poll(f),
        rule_pipe_max_size(f),
        rule_pipe_user_pages(f),
        rule_thp(f),
        rule_governor(f),
        rule_ktls(f),
    ]
}

/// Fds ringway needs for `conns_expected` connections.
pub fn fds_needed(f: &Facts) -> u64 {
    f.conns_expected
        .saturating_mul(FDS_PER_CONN)
        .saturating_add(FDS_SPARE)
}

fn verdict(
    setting: &'static str,
    current: impl Into<String>,
    recommended: impl Into<String>,
    status: Status,
    fix: impl Into<String>,
) -> Verdict {
    Verdict {
        setting,
        current: current.into(),
        recommended: recommended.into(),
        status,
        fix: fix.into(),
    }
}

const NOTHING: &str = "-";
const UNREADABLE: &str = "could not read";

fn unreadable(setting: &'static str, recommended: impl Into<String>, fix: &str) -> Verdict {
    verdict(setting, UNREADABLE, recommended, Status::Warn, fix)
}

fn fmt_limit(v: u64) -> String {
    if v == UNLIMITED {
        "unlimited".to_string()
    } else {
        v.to_string()
    }
}

fn fmt_bytes(v: u64) -> String {
    if v == UNLIMITED {
        "unlimited".to_string()
    } else if v >= 1 << 20 && v & ((1 << 20) - 1) == 0 {
        format!("{} MiB", v >> 20)
    } else if v >= 1 << 10 && v & ((1 << 10) - 1) == 0 {
        format!("{} KiB", v >> 10)
    } else {
        format!("{v} B")
    }
}

fn rule_conns_expected(f: &Facts) -> Verdict {
    let source = if f.config_loaded {
        "config"
    } else {
        "defaults, no -c"
    };
    verdict(
        "ringway.conns_expected",
        format!(
            "{} shards x {} = {} ({source}), {} fds",
            f.shards,
            f.conns_per_shard_max,
            f.conns_expected,
            fds_needed(f)
        ),
        "conns_per_shard_max = target connections / shards",
        Status::Ok,
        NOTHING,
    )
}

fn rule_shards(f: &Facts) -> Verdict {
    let s = "ringway.shards";
    let Some(cpus) = f.online_cpus else {
        return unreadable(s, "one shard per online CPU", NOTHING);
    };
    let current = format!("{} shards on {cpus} CPUs", f.shards);
    if f.shards > cpus {
        verdict(
            s,
            current,
            format!("<= {cpus}"),
            Status::Warn,
            "shards = \"auto\" in [global]",
        )
    } else {
        verdict(s, current, format!("<= {cpus}"), Status::Ok, NOTHING)
    }
}

/// "6.1.0-18-amd64" -> (6, 1).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn rule_kernel(f: &Facts) -> Verdict {
    let s = "kernel";
    let rec = format!(">= {}.{}", KERNEL_MIN.0, KERNEL_MIN.1);
    let Some(release) = &f.kernel_release else {
        return unreadable(s, rec, "uname -r");
    };
    match kernel_version(release) {
        Some(v) if v >= KERNEL_MIN => verdict(s, release.clone(), rec, Status::Ok, NOTHING),
        Some(_) => verdict(
            s,
            release.clone(),
            rec,
            Status::Bad,
            "upgrade the kernel (SINGLE_ISSUER, DEFER_TASKRUN, buffer rings)",
        ),
        None => verdict(s, release.clone(), rec, Status::Warn, "uname -r"),
    }
}

fn rule_io_uring(f: &Facts) -> Verdict {
    let s = "io_uring";
    if f.io_uring_available {
        verdict(s, "available", "available", Status::Ok, NOTHING)
    } else {
        let why = f.io_uring_error.as_deref().unwrap_or("unknown error");
        verdict(
            s,
            format!("io_uring_setup failed: {why}"),
            "available",
            Status::Bad,
            "sysctl -w kernel.io_uring_disabled=0; allow io_uring_* in seccomp",
        )
    }
}

fn rule_io_uring_disabled(f: &Facts) -> Verdict {
    let s = "kernel.io_uring_disabled";
    match f.io_uring_disabled {
        // The switch arrived in 6.6; without it io_uring is always on.
        None => verdict(s, "absent (kernel < 6.6)", "0", Status::Ok, NOTHING),
        Some(0) => verdict(s, "0", "0", Status::Ok, NOTHING),
        Some(1) => verdict(
            s,
            "1 (only CAP_SYS_ADMIN or kernel.io_uring_group)",
            "0",
            Status::Warn,
            "sysctl -w kernel.io_uring_disabled=0",
        ),
        Some(v) => verdict(
            s,
            v.to_string(),
            "0",
            Status::Bad,
            "sysctl -w kernel.io_uring_disabled=0",
        ),
    }
}

fn rule_nofile(f: &Facts) -> Verdict {
    let s = "RLIMIT_NOFILE";
    let need = fds_needed(f);
    let rec = format!(">= {need} (hard; 4 x conns + 1024)");
    let (Some(soft), Some(hard)) = (f.nofile_soft, f.nofile_hard) else {
        return unreadable(s, rec, "ulimit -n");
    };
    let current = format!("soft {} hard {}", fmt_limit(soft), fmt_limit(hard));
    // ringway raises its soft limit to the hard limit at start, so only the hard limit counts.
    if hard >= need {
        verdict(s, current, rec, Status::Ok, NOTHING)
    } else {
        verdict(
            s,
            current,
            rec,
            Status::Bad,
            format!("LimitNOFILE={need} (fs.nr_open >= {need}) or lower conns_per_shard_max"),
        )
    }
}

fn rule_nr_open(f: &Facts) -> Verdict {
    let s = "fs.nr_open";
    let need = fds_needed(f);
    let rec = format!(">= {need}");
    match f.nr_open {
        None => unreadable(s, rec, "sysctl fs.nr_open"),
        Some(v) if v >= need => verdict(s, v.to_string(), rec, Status::Ok, NOTHING),
        Some(v) => verdict(
            s,
            v.to_string(),
            rec,
            Status::Warn,
            format!("sysctl -w fs.nr_open={need}"),
        ),
    }
}

fn rule_file_max(f: &Facts) -> Verdict {
    let s = "fs.file-max";
    let need = fds_needed(f);
    let rec = format!(">= {need}");
    match f.file_max {
        None => unreadable(s, rec, "sysctl fs.file-max"),
        Some(v) if v >= need => verdict(s, fmt_limit(v), rec, Status::Ok, NOTHING),
        Some(v) => verdict(
            s,
            v.to_string(),
            rec,
            Status::Warn,
            format!("sysctl -w fs.file-max={need}"),
        ),
    }
}

/// Locked memory ringway's rings pin: each shard's buffer ring (16 bytes per entry), page
/// rounded. The rings themselves are charged to the memory cgroup since Linux 5.12.
pub fn memlock_needed_bytes(f: &Facts) -> u64 {
    let page = f.page_bytes.max(1);
    let per_shard = u64::from(f.recv_buffer_count)
        .saturating_mul(BUF_RING_ENTRY_BYTES)
        .div_ceil(page)
        .saturating_mul(page);
    per_shard.saturating_mul(u64::try_from(f.shards).unwrap_or(u64::MAX))
}

fn rule_memlock(f: &Facts) -> Verdict {
    let s = "RLIMIT_MEMLOCK";
    let need = memlock_needed_bytes(f);
    let rec = format!(">= {} (8 MiB default is enough)", fmt_bytes(need));
    match f.memlock_soft_bytes {
        None => unreadable(s, rec, "ulimit -l"),
        Some(v) if v >= need => verdict(s, fmt_bytes(v), rec, Status::Ok, NOTHING),
        Some(v) => verdict(
            s,
            fmt_bytes(v),
            rec,
            Status::Bad,
            "LimitMEMLOCK=8M (or ulimit -l 8192)",
        ),
    }
}

fn rule_somaxconn(f: &Facts) -> Verdict {
    let s = "net.core.somaxconn";
    let rec = format!(">= {} (largest listener backlog)", f.backlog_max);
    let fix = format!(
        "sysctl -w net.core.somaxconn={}",
        f.backlog_max.max(LISTEN_BACKLOG_RECOMMENDED)
    );
    match f.somaxconn {
        None => unreadable(s, rec, &fix),
        // listen(2) silently caps the backlog at somaxconn.
        Some(v) if v >= u64::from(f.backlog_max) => {
            verdict(s, v.to_string(), rec, Status::Ok, NOTHING)
        }
        Some(v) => verdict(s, v.to_string(), rec, Status::Bad, fix),
    }
}

fn rule_syn_backlog(f: &Facts) -> Verdict {
    let s = "net.ipv4.tcp_max_syn_backlog";
    let rec = format!(">= {} (largest listener backlog)", f.backlog_max);
    let fix = format!(
        "sysctl -w net.ipv4.tcp_max_syn_backlog={}",
        f.backlog_max.max(LISTEN_BACKLOG_RECOMMENDED)
    );
    match f.tcp_max_syn_backlog {
        None => unreadable(s, rec, &fix),
        Some(v) if v >= u64::from(f.backlog_max) => {
            verdict(s, v.to_string(), rec, Status::Ok, NOTHING)
        }
        Some(v) => verdict(s, v.to_string(), rec, Status::Warn, fix),
    }
}

fn rule_netdev_backlog(f: &Facts) -> Verdict {
    let s = "net.core.netdev_max_backlog";
    let rec = format!(">= {NETDEV_MAX_BACKLOG_MIN}");
    let fix = format!("sysctl -w net.core.netdev_max_backlog={NETDEV_MAX_BACKLOG_MIN}");
    let Some(v) = f.netdev_max_backlog else {
        return unreadable(s, rec, &fix);
    };
    let drops = match f.softnet_dropped {
        Some(d) => format!("{d} drops"),
        None => "drops unknown".to_string(),
    };
    let current = format!("{v} ({drops})");
    if v >= NETDEV_MAX_BACKLOG_MIN {
        return verdict(s, current, rec, Status::Ok, NOTHING);
    }
    // A short queue only matters once it overflowed (softnet_stat column 2).
    match f.softnet_dropped {
        Some(0) => verdict(s, current, rec, Status::Ok, NOTHING),
        Some(_) | None => verdict(s, current, rec, Status::Warn, fix),
    }
}

fn rule_port_range(f: &Facts) -> Verdict {
    let s = "net.ipv4.ip_local_port_range";
    let rec = format!(">= {LOCAL_PORTS_MIN} ports (10240 65535)");
    let fix = "sysctl -w net.ipv4.ip_local_port_range=\"10240 65535\"";
    let Some((lo, hi)) = f.ip_local_port_range else {
        return unreadable(s, rec, fix);
    };
    let ports = u64::from(hi.saturating_sub(lo)) + u64::from(hi >= lo);
    let current = format!("{lo} {hi} ({ports} ports)");
    if ports >= LOCAL_PORTS_MIN {
        verdict(s, current, rec, Status::Ok, NOTHING)
    } else {
        verdict(s, current, rec, Status::Warn, fix)
    }
}

fn rule_tw_reuse(f: &Facts) -> Verdict {
    let s = "net.ipv4.tcp_tw_reuse";
    let fix = "sysctl -w net.ipv4.tcp_tw_reuse=1";
    match f.tcp_tw_reuse {
        None => unreadable(s, "1", fix),
        Some(1) => verdict(s, "1", "1", Status::Ok, NOTHING),
        Some(v) => verdict(s, v.to_string(), "1", Status::Warn, fix),
    }
}

fn rule_fin_timeout(f: &Facts) -> Verdict {
    let s = "net.ipv4.tcp_fin_timeout";
    let rec = format!("<= {TCP_FIN_TIMEOUT_S_MAX}");
    let fix = format!("sysctl -w net.ipv4.tcp_fin_timeout={TCP_FIN_TIMEOUT_S_RECOMMENDED}");
    match f.tcp_fin_timeout_s {
        None => unreadable(s, rec, &fix),
        Some(v) if v <= TCP_FIN_TIMEOUT_S_MAX => {
            verdict(s, v.to_string(), rec, Status::Ok, NOTHING)
        }
        Some(v) => verdict(s, v.to_string(), rec, Status::Warn, fix),
    }
}

fn rule_slow_start_after_idle(f: &Facts) -> Verdict {
    let s = "net.ipv4.tcp_slow_start_after_idle";
    let fix = "sysctl -w net.ipv4.tcp_slow_start_after_idle=0";
    match f.tcp_slow_start_after_idle {
        None => unreadable(s, "0", fix),
        Some(0) => verdict(s, "0", "0", Status::Ok, NOTHING),
        Some(v) => verdict(s, v.to_string(), "0", Status::Warn, fix),
    }
}

fn rule_tcp_buffers(f: &Facts) -> Verdict {
    let s = "net.ipv4.tcp_rmem/tcp_wmem max";
    let rec = format!(">= {}", fmt_bytes(TCP_BUFFER_MAX_BYTES_MIN));
    let m = TCP_BUFFER_MAX_BYTES_RECOMMENDED;
    let fix = format!(
        "sysctl -w net.ipv4.tcp_rmem=\"4096 131072 {m}\" net.ipv4.tcp_wmem=\"4096 16384 {m}\""
    );
    let (Some(r), Some(w)) = (f.tcp_rmem_max_bytes, f.tcp_wmem_max_bytes) else {
        return unreadable(s, rec, &fix);
    };
    let current = format!("{} / {}", fmt_bytes(r), fmt_bytes(w));
    if r.min(w) >= TCP_BUFFER_MAX_BYTES_MIN {
        verdict(s, current, rec, Status::Ok, NOTHING)
    } else {
        verdict(s, current, rec, Status::Warn, fix)
    }
}

fn rule_core_buffers(f: &Facts) -> Verdict {
    let s = "net.core.rmem_max/wmem_max";
    // Only explicit SO_RCVBUF/SO_SNDBUF are capped by these; ringway sets neither and relies on
    // autotuning (tcp_rmem/tcp_wmem), so any value is fine for it.
    let rec = "any (ringway uses autotuning)";
    let (Some(r), Some(w)) = (f.rmem_max_bytes, f.wmem_max_bytes) else {
        return unreadable(s, rec, NOTHING);
    };
    verdict(
        s,
        format!("{} / {}", fmt_bytes(r), fmt_bytes(w)),
        rec,
        Status::Ok,
        NOTHING,
    )
}

fn rule_fastopen(f: &Facts) -> Verdict {
    let s = "net.ipv4.tcp_fastopen";
    let rec = "1 (no 0x200, 0x400)";
    let fix = "sysctl -w net.ipv4.tcp_fastopen=1";
    match f.tcp_fastopen {
        None => unreadable(s, rec, fix),
        Some(v) if v & TFO_SERVER_FLAGS_UNSAFE != 0 => {
            verdict(s, format!("{v:#x}"), rec, Status::Warn, fix)
        }
        Some(v) => verdict(s, format!("{v:#x}"), rec, Status::Ok, NOTHING),
    }
}

fn rule_conntrack(f: &Facts) -> Verdict {
    let s = "net.netfilter.nf_conntrack_max";
    let need = f.conns_expected.saturating_mul(CONNTRACK_ENTRIES_PER_CONN);
    let rec = format!("not loaded, NOTRACK, or >= {need}");
    match f.nf_conntrack_max {
        None => verdict(s, "not loaded", rec, Status::Ok, NOTHING),
        Some(v) if v >= need => verdict(s, v.to_string(), rec, Status::Ok, NOTHING),
        Some(v) => verdict(
            s,
            v.to_string(),
            rec,
            Status::Warn,
            format!("sysctl -w net.netfilter.nf_conntrack_max={need} (or NOTRACK, see GUIDE.md)"),
        ),
    }
}

fn rule_busy_poll(f: &Facts) -> Verdict {
    let s = "net.core.busy_poll/busy_read";
    let fix = "sysctl -w net.core.busy_poll=0 net.core.busy_read=0";
    let (Some(p), Some(r)) = (f.busy_poll_us, f.busy_read_us) else {
        return unreadable(s, "0 / 0", fix);
    };
    let current = format!("{p} / {r}");
    if p == 0 && r == 0 {
        verdict(s, current, "0 / 0", Status::Ok, NOTHING)
    } else {
        verdict(s, current, "0 / 0", Status::Warn, fix)
    }
}

fn rule_pipe_max_size(f: &Facts) -> Verdict {
    let s = "fs.pipe-max-size";
    let rec = format!(">= {} (pipe_size)", fmt_bytes(u64::from(f.pipe_bytes)));
    match f.pipe_max_size_bytes {
        None => unreadable(s, rec, NOTHING),
        Some(v) if v >= u64::from(f.pipe_bytes) => {
            verdict(s, fmt_bytes(v), rec, Status::Ok, NOTHING)
        }
        Some(v) => verdict(
            s,
            fmt_bytes(v),
            rec,
            Status::Warn,
            format!("sysctl -w fs.pipe-max-size={}", f.pipe_bytes),
        ),
    }
}

/// Pipe pages ringway may account to its user: two pipes per connection, each `pipe_size`
/// rounded up to a power-of-two number of pages (as F_SETPIPE_SZ does).
pub fn pipe_pages_needed(f: &Facts) -> u64 {
    let pages_per_pipe = u64::from(f.pipe_bytes)
        .div_ceil(f.page_bytes.max(1))
        .max(1)
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX);
    f.conns_expected
        .saturating_mul(2)
        .saturating_mul(pages_per_pipe)
}

fn rule_pipe_user_pages(f: &Facts) -> Verdict {
    let s = "fs.pipe-user-pages-soft";
    let need = pipe_pages_needed(f);
    let rec = format!("0 (no limit) or >= {need}");
    let fix = "sysctl -w fs.pipe-user-pages-soft=0";
    match f.pipe_user_pages_soft {
        None => unreadable(s, rec, fix),
        Some(0) => verdict(s, "0 (no limit)", rec, Status::Ok, NOTHING),
        Some(v) if v >= need => verdict(s, v.to_string(), rec, Status::Ok, NOTHING),
        // Past the soft limit an unprivileged user's new pipes shrink to the minimum and
        // F_SETPIPE_SZ fails: splice still works, but in small steps.
        Some(v) => verdict(s, v.to_string(), rec, Status::Warn, fix),
    }
}

fn rule_thp(f: &Facts) -> Verdict {
    let s = "transparent_hugepage";
    let fix = "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled";
    match f.thp_mode.as_deref() {
        None => unreadable(s, "madvise", fix),
        Some("always") => verdict(s, "always", "madvise", Status::Warn, fix),
        Some(m) => verdict(s, m, "madvise", Status::Ok, NOTHING),
    }
}

fn rule_governor(f: &Facts) -> Verdict {
    let s = "cpufreq governor";
    match f.cpu_governor.as_deref() {
        None => verdict(s, "no cpufreq driver", "performance", Status::Ok, NOTHING),
        Some("performance") => verdict(s, "performance", "performance", Status::Ok, NOTHING),
        Some(g) => verdict(
            s,
            g,
            "performance",
            Status::Warn,
            "cpupower frequency-set -g performance",
        ),
    }
}

fn rule_ktls(f: &Facts) -> Verdict {
    let s = "kTLS (CONFIG_TLS)";
    // Never a problem: without kTLS ringway encrypts in user space and copies.
    if f.ktls_available {
        verdict(s, "available", "available", Status::Ok, NOTHING)
    } else {
        verdict(
            s,
            "not available: userspace TLS copy path",
            "available",
            Status::Ok,
            "modprobe tls (persist in /etc/modules-load.d/)",
        )
    }
}

// ------------------------------------------------------------------------------------------------
// rendering and exit code
// ------------------------------------------------------------------------------------------------

/// Aligned columns: setting, current, recommended, status, fix; then a count per status.
pub fn render_table(v: &[Verdict]) -> String {
    let header = ["SETTING", "CURRENT", "RECOMMENDED", "STATUS", "FIX"];
    let rows: Vec<[&str; 5]> = v
        .iter()
        .map(|r| {
            [
                r.setting,
                r.current.as_str(),
                r.recommended.as_str(),
                r.status.as_str(),
                r.fix.as_str(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(i).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let count = |s: Status| v.iter().filter(|r| r.status == s).count();
    out.push_str(&format!(
        "{} ok, {} warn, {} bad\n",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Bad)
    ));
    out
}

/// A JSON array of objects with the keys setting, current, recommended, status, fix.
pub fn render_json(v: &[Verdict]) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| "[]".to_string())
}

/// 0 when nothing is bad, else 3 (1 and 2 are taken by config and environment errors).
pub fn exit_code(v: &[Verdict]) -> u8 {
    if v.iter().any(|r| r.status == Status::Bad) {
        3
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine tuned as tuning/99-ringway.conf and ringway.service leave it: every rule ok.
    fn tuned() -> Facts {
        Facts {
            somaxconn: Some(8192),
            tcp_max_syn_backlog: Some(8192),
            netdev_max_backlog: Some(16_384),
            softnet_dropped: Some(0),
            ip_local_port_range: Some((10_240, 65_535)),
            tcp_tw_reuse: Some(1),
            file_max: Some(UNLIMITED >> 1),
            nr_open: Some(1_073_741_816),
            tcp_rmem_max_bytes: Some(16 << 20),
            tcp_wmem_max_bytes: Some(16 << 20),
            rmem_max_bytes: Some(212_992),
            wmem_max_bytes: Some(212_992),
            tcp_fastopen: Some(1),
            tcp_slow_start_after_idle: Some(0),
            tcp_fin_timeout_s: Some(15),
            nf_conntrack_max: None,
            busy_poll_us: Some(0),
            busy_read_us: Some(0),
            io_uring_disabled: Some(0),
            pipe_max_size_bytes: Some(1 << 20),
            pipe_user_pages_soft: Some(0),
            nofile_soft: Some(1_048_576),
            nofile_hard: Some(1_048_576),
            memlock_soft_bytes: Some(8 << 20),
            online_cpus: Some(4),
            page_bytes: 4096,
            kernel_release: Some("6.8.0-45-generic".to_string()),
            thp_mode: Some("madvise".to_string()),
            cpu_governor: Some("performance".to_string()),
            io_uring_available: true,
            io_uring_error: None,
            ktls_available: true,
            config_loaded: true,
            shards: 4,
            conns_per_shard_max: 50_000,
            conns_expected: 200_000,
            backlog_max: 4096,
            recv_buffer_count: 512,
            pipe_bytes: 64 * 1024,
        }
    }

    fn status(v: &Verdict) -> Status {
        v.status
    }

    #[test]
    fn a_tuned_machine_has_nothing_to_fix() {
        let v = evaluate(&tuned());
        let not_ok: Vec<_> = v.iter().filter(|r| r.status != Status::Ok).collect();
        assert!(not_ok.is_empty(), "{not_ok:#?}");
        assert_eq!(exit_code(&v), 0);
        assert!(v.iter().all(|r| r.fix == NOTHING), "{v:#?}");
    }

    #[test]
    fn every_setting_appears_once() {
        let v = evaluate(&tuned());
        let mut names: Vec<_> = v.iter().map(|r| r.setting).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn shards_beyond_cpus_warn() {
        let mut f = tuned();
        assert_eq!(status(&rule_shards(&f)), Status::Ok);
        f.shards = 8;
        assert_eq!(status(&rule_shards(&f)), Status::Warn);
        f.online_cpus = None;
        assert_eq!(rule_shards(&f).current, UNREADABLE);
    }

    #[test]
    fn conns_expected_says_where_it_came_from() {
        let mut f = tuned();
        let v = rule_conns_expected(&f);
        assert_eq!(v.current, "4 shards x 50000 = 200000 (config), 801024 fds");
        f.config_loaded = false;
        assert!(rule_conns_expected(&f).current.contains("defaults"));
    }

    #[test]
    fn kernel_older_than_6_1_is_bad() {
        let mut f = tuned();
        assert_eq!(status(&rule_kernel(&f)), Status::Ok);
        f.kernel_release = Some("6.1.0-18-amd64".into());
        assert_eq!(status(&rule_kernel(&f)), Status::Ok);
        f.kernel_release = Some("5.15.0-100-generic".into());
        assert_eq!(status(&rule_kernel(&f)), Status::Bad);
        f.kernel_release = Some("weird".into());
        assert_eq!(status(&rule_kernel(&f)), Status::Warn);
        f.kernel_release = None;
        assert_eq!(status(&rule_kernel(&f)), Status::Warn);
    }

    #[test]
    fn io_uring_unavailable_is_bad_and_says_why() {
        let mut f = tuned();
        assert_eq!(status(&rule_io_uring(&f)), Status::Ok);
        f.io_uring_available = false;
        f.io_uring_error = Some("Operation not permitted (os error 1)".into());
        let v = rule_io_uring(&f);
        assert_eq!(v.status, Status::Bad);
        assert!(v.current.contains("Operation not permitted"));
        assert!(v.fix.contains("io_uring_disabled=0"));
    }

    #[test]
    fn io_uring_disabled_1_warns_2_is_bad_absent_is_ok() {
        let mut f = tuned();
        assert_eq!(status(&rule_io_uring_disabled(&f)), Status::Ok);
        f.io_uring_disabled = Some(1);
        assert_eq!(status(&rule_io_uring_disabled(&f)), Status::Warn);
        f.io_uring_disabled = Some(2);
        assert_eq!(status(&rule_io_uring_disabled(&f)), Status::Bad);
        f.io_uring_disabled = None;
        assert_eq!(status(&rule_io_uring_disabled(&f)), Status::Ok);
    }

    #[test]
    fn nofile_hard_limit_below_four_fds_per_connection_is_bad() {
        let mut f = tuned();
        // 4 x 200000 + 1024 = 801024 <= 1048576.
        assert_eq!(status(&rule_nofile(&f)), Status::Ok);
        f.nofile_hard = Some(801_023);
        let v = rule_nofile(&f);
        assert_eq!(v.status, Status::Bad);
        assert!(v.fix.contains("LimitNOFILE=801024"), "{}", v.fix);
        // The soft limit does not matter: ringway raises it to the hard limit.
        f.nofile_hard = Some(UNLIMITED);
        f.nofile_soft = Some(1024);
        assert_eq!(status(&rule_nofile(&f)), Status::Ok);
        f.nofile_hard = None;
        assert_eq!(status(&rule_nofile(&f)), Status::Warn);
    }

    #[test]
    fn nr_open_and_file_max_below_need_warn() {
        let mut f = tuned();
        assert_eq!(status(&rule_nr_open(&f)), Status::Ok);
        assert_eq!(status(&rule_file_max(&f)), Status::Ok);
        f.nr_open = Some(1000);
        f.file_max = Some(1000);
        assert_eq!(status(&rule_nr_open(&f)), Status::Warn);
        assert_eq!(status(&rule_file_max(&f)), Status::Warn);
        assert!(rule_nr_open(&f).fix.contains("fs.nr_open=801024"));
        f.nr_open = None;
        f.file_max = None;
        assert_eq!(rule_nr_open(&f).current, UNREADABLE);
        assert_eq!(rule_file_max(&f).current, UNREADABLE);
    }

    #[test]
    fn memlock_covers_buffer_ring_entries_only() {
        let mut f = tuned();
        // 512 entries x 16 B = 8 KiB per shard, 4 shards.
        assert_eq!(memlock_needed_bytes(&f), 32 * 1024);
        assert_eq!(status(&rule_memlock(&f)), Status::Ok);
        f.memlock_soft_bytes = Some(UNLIMITED);
        assert_eq!(status(&rule_memlock(&f)), Status::Ok);
        f.memlock_soft_bytes = Some(16 * 1024);
        assert_eq!(status(&rule_memlock(&f)), Status::Bad);
        f.memlock_soft_bytes = None;
        assert_eq!(status(&rule_memlock(&f)), Status::Warn);
        // 16 entries still pin a whole page.
        f.recv_buffer_count = 16;
        f.shards = 1;
        assert_eq!(memlock_needed_bytes(&f), 4096);
    }

    #[test]
    fn somaxconn_below_backlog_is_bad() {
        let mut f = tuned();
        assert_eq!(status(&rule_somaxconn(&f)), Status::Ok);
        f.somaxconn = Some(4096);
        assert_eq!(status(&rule_somaxconn(&f)), Status::Ok);
        f.somaxconn = Some(128);
        let v = rule_somaxconn(&f);
        assert_eq!(v.status, Status::Bad);
        assert_eq!(v.fix, "sysctl -w net.core.somaxconn=8192");
        f.backlog_max = 65_535;
        assert!(rule_somaxconn(&f).fix.ends_with("=65535"));
        f.somaxconn = None;
        assert_eq!(status(&rule_somaxconn(&f)), Status::Warn);
    }

    #[test]
    fn syn_backlog_below_backlog_warns() {
        let mut f = tuned();
        assert_eq!(status(&rule_syn_backlog(&f)), Status::Ok);
        f.tcp_max_syn_backlog = Some(2048);
        assert_eq!(status(&rule_syn_backlog(&f)), Status::Warn);
        f.tcp_max_syn_backlog = None;
        assert_eq!(status(&rule_syn_backlog(&f)), Status::Warn);
    }

    #[test]
    fn short_netdev_backlog_warns_only_once_it_dropped() {
        let mut f = tuned();
        assert_eq!(status(&rule_netdev_backlog(&f)), Status::Ok);
        f.netdev_max_backlog = Some(1000);
        assert_eq!(status(&rule_netdev_backlog(&f)), Status::Ok);
        f.softnet_dropped = Some(17);
        let v = rule_netdev_backlog(&f);
        assert_eq!(v.status, Status::Warn);
        assert_eq!(v.current, "1000 (17 drops)");
        f.softnet_dropped = None;
        assert_eq!(status(&rule_netdev_backlog(&f)), Status::Warn);
        f.netdev_max_backlog = None;
        assert_eq!(rule_netdev_backlog(&f).current, UNREADABLE);
    }

    #[test]
    fn small_local_port_range_warns() {
        let mut f = tuned();
        assert_eq!(status(&rule_port_range(&f)), Status::Ok);
        f.ip_local_port_range = Some((32_768, 60_999));
        let v = rule_port_range(&f);
        assert_eq!(v.status, Status::Warn);
        assert!(v.current.contains("28232 ports"), "{}", v.current);
        f.ip_local_port_range = Some((60_999, 32_768));
        assert_eq!(status(&rule_port_range(&f)), Status::Warn);
        f.ip_local_port_range = None;
        assert_eq!(status(&rule_port_range(&f)), Status::Warn);
    }

    #[test]
    fn tw_reuse_other_than_1_warns() {
        let mut f = tuned();
        assert_eq!(status(&rule_tw_reuse(&f)), Status::Ok);
        f.tcp_tw_reuse = Some(2);
        assert_eq!(status(&rule_tw_reuse(&f)), Status::Warn);
        f.tcp_tw_reuse = None;
        assert_eq!(status(&rule_tw_reuse(&f)), Status::Warn);
    }

    #[test]
    fn fin_timeout_above_30_warns() {
        let mut f = tuned();
        assert_eq!(status(&rule_fin_timeout(&f)), Status::Ok);
        f.tcp_fin_timeout_s = Some(30);
        assert_eq!(status(&rule_fin_timeout(&f)), Status::Ok);
        f.tcp_fin_timeout_s = Some(60);
        assert_eq!(status(&rule_fin_timeout(&f)), Status::Warn);
        f.tcp_fin_timeout_s = None;
        assert_eq!(status(&rule_fin_timeout(&f)), Status::Warn);
    }

    #[test]
    fn slow_start_after_idle_warns() {
        let mut f = tuned();
        assert_eq!(status(&rule_slow_start_after_idle(&f)), Status::Ok);
        f.tcp_slow_start_after_idle = Some(1);
        assert_eq!(status(&rule_slow_start_after_idle(&f)), Status::Warn);
        f.tcp_slow_start_after_idle = None;
        assert_eq!(status(&rule_slow_start_after_idle(&f)), Status::Warn);
    }

    #[test]
    fn tcp_buffer_max_below_4_mib_warns() {
        let mut f = tuned();
        assert_eq!(status(&rule_tcp_buffers(&f)), Status::Ok);
        f.tcp_wmem_max_bytes = Some(4 << 20);
        assert_eq!(status(&rule_tcp_buffers(&f)), Status::Ok);
        f.tcp_rmem_max_bytes = Some(1 << 20);
        let v = rule_tcp_buffers(&f);
        assert_eq!(v.status, Status::Warn);
        assert_eq!(v.current, "1 MiB / 4 MiB");
        f.tcp_rmem_max_bytes = None;
        assert_eq!(status(&rule_tcp_buffers(&f)), Status::Warn);
    }

    #[test]
    fn core_buffer_caps_only_warn_when_unreadable() {
        let mut f = tuned();
        assert_eq!(status(&rule_core_buffers(&f)), Status::Ok);
        f.rmem_max_bytes = Some(4096);
        assert_eq!(status(&rule_core_buffers(&f)), Status::Ok);
        f.wmem_max_bytes = None;
        assert_eq!(status(&rule_core_buffers(&f)), Status::Warn);
    }

    #[test]
    fn fastopen_without_cookies_warns() {
        let mut f = tuned();
        assert_eq!(status(&rule_fastopen(&f)), Status::Ok);
        f.tcp_fastopen = Some(3);
        assert_eq!(status(&rule_fastopen(&f)), Status::Ok);
        f.tcp_fastopen = Some(0x203);
        let v = rule_fastopen(&f);
        assert_eq!(v.status, Status::Warn);
        assert_eq!(v.current, "0x203");
        f.tcp_fastopen = Some(0x403);
        assert_eq!(status(&rule_fastopen(&f)), Status::Warn);
        f.tcp_fastopen = None;
        assert_eq!(status(&rule_fastopen(&f)), Status::Warn);
    }

    #[test]
    fn conntrack_smaller_than_two_entries_per_connection_warns() {
        let mut f = tuned();
        let v = rule_conntrack(&f);
        assert_eq!((v.status, v.current.as_str()), (Status::Ok, "not loaded"));
        f.nf_conntrack_max = Some(400_000);
        assert_eq!(status(&rule_conntrack(&f)), Status::Ok);
        f.nf_conntrack_max = Some(262_144);
        let v = rule_conntrack(&f);
        assert_eq!(v.status, Status::Warn);
        assert!(v.fix.contains("nf_conntrack_max=400000"), "{}", v.fix);
    }

    #[test]
    fn busy_polling_warns() {
        let mut f = tuned();
        assert_eq!(status(&rule_busy_poll(&f)), Status::Ok);
        f.busy_read_us = Some(50);
        assert_eq!(status(&rule_busy_poll(&f)), Status::Warn);
        f.busy_poll_us = None;
        assert_eq!(status(&rule_busy_poll(&f)), Status::Warn);
    }

    #[test]
    fn pipe_max_size_below_pipe_size_warns() {
        let mut f = tuned();
        assert_eq!(status(&rule_pipe_max_size(&f)), Status::Ok);
        f.pipe_max_size_bytes = Some(32 * 1024);
        let v = rule_pipe_max_size(&f);
        assert_eq!(v.status, Status::Warn);
        assert_eq!(v.fix, "sysctl -w fs.pipe-max-size=65536");
        f.pipe_max_size_bytes = None;
        assert_eq!(status(&rule_pipe_max_size(&f)), Status::Warn);
    }

    #[test]
    fn pipe_user_pages_soft_limit_warns_unless_off_or_large() {
        let mut f = tuned();
        assert_eq!(status(&rule_pipe_user_pages(&f)), Status::Ok);
        // 200000 conns x 2 pipes x 16 pages.
        assert_eq!(pipe_pages_needed(&f), 6_400_000);
        f.pipe_user_pages_soft = Some(6_400_000);
        assert_eq!(status(&rule_pipe_user_pages(&f)), Status::Ok);
        f.pipe_user_pages_soft = Some(16_384);
        assert_eq!(status(&rule_pipe_user_pages(&f)), Status::Warn);
        f.pipe_user_pages_soft = None;
        assert_eq!(status(&rule_pipe_user_pages(&f)), Status::Warn);
        // 96 KiB rounds up to 32 pages, as F_SETPIPE_SZ does.
        f.pipe_bytes = 96 * 1024;
        f.conns_expected = 1;
        assert_eq!(pipe_pages_needed(&f), 64);
    }

    #[test]
    fn thp_always_warns() {
        let mut f = tuned();
        assert_eq!(status(&rule_thp(&f)), Status::Ok);
        f.thp_mode = Some("never".into());
        assert_eq!(status(&rule_thp(&f)), Status::Ok);
        f.thp_mode = Some("always".into());
        assert_eq!(status(&rule_thp(&f)), Status::Warn);
        f.thp_mode = None;
        assert_eq!(status(&rule_thp(&f)), Status::Warn);
    }

    #[test]
    fn governor_other_than_performance_warns() {
        let mut f = tuned();
        assert_eq!(status(&rule_governor(&f)), Status::Ok);
        f.cpu_governor = Some("performance,powersave".into());
        assert_eq!(status(&rule_governor(&f)), Status::Warn);
        f.cpu_governor = Some("schedutil".into());
        assert_eq!(status(&rule_governor(&f)), Status::Warn);
        f.cpu_governor = None;
        assert_eq!(status(&rule_governor(&f)), Status::Ok);
    }

    #[test]
    fn missing_ktls_is_only_a_note() {
        let mut f = tuned();
        assert_eq!(rule_ktls(&f).current, "available");
        f.ktls_available = false;
        let v = rule_ktls(&f);
        assert_eq!(v.status, Status::Ok);
        assert!(v.current.contains("userspace TLS copy path"));
        assert!(v.fix.contains("modprobe tls"));
    }

    #[test]
    fn exit_code_is_3_only_when_something_is_bad() {
        let mut f = tuned();
        f.tcp_slow_start_after_idle = Some(1);
        assert_eq!(exit_code(&evaluate(&f)), 0);
        f.somaxconn = Some(128);
        assert_eq!(exit_code(&evaluate(&f)), 3);
        assert_eq!(exit_code(&[]), 0);
    }

    #[test]
    fn table_columns_line_up() {
        let mut f = tuned();
        f.somaxconn = Some(128);
        let table = render_table(&evaluate(&f));
        let lines: Vec<&str> = table.lines().collect();
        let header = lines.first().copied().unwrap_or_default();
        let at = |col: &str| header.find(col).unwrap_or(usize::MAX);
        let (cur, rec, st) = (at("CURRENT"), at("RECOMMENDED"), at("STATUS"));
        assert!(cur < rec && rec < st && st < at("FIX"), "{header}");
        let row = lines
            .iter()
            .find(|l| l.starts_with("net.core.somaxconn "))
            .copied()
            .unwrap_or_default();
        assert_eq!(row.get(cur..cur + 4), Some("128 "), "{table}");
        assert_eq!(row.get(st..st + 3), Some("bad"), "{table}");
        assert!(table.ends_with(" ok, 0 warn, 1 bad\n"), "{table}");
    }

    #[test]
    fn json_round_trips_with_five_keys() {
        let mut f = tuned();
        f.tcp_fin_timeout_s = Some(60);
        let verdicts = evaluate(&f);
        let parsed: serde_json::Value =
            serde_json::from_str(&render_json(&verdicts)).unwrap_or_default();
        let rows = parsed.as_array().cloned().unwrap_or_default();
        assert_eq!(rows.len(), verdicts.len());
        for (row, v) in rows.iter().zip(&verdicts) {
            let obj = row.as_object().cloned().unwrap_or_default();
            let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["current", "fix", "recommended", "setting", "status"]);
            assert_eq!(row["setting"], v.setting);
            assert_eq!(row["current"], v.current.as_str());
            assert_eq!(row["recommended"], v.recommended.as_str());
            assert_eq!(row["status"], v.status.as_str());
            assert_eq!(row["fix"], v.fix.as_str());
        }
        let fin = rows
            .iter()
            .find(|r| r["setting"] == "net.ipv4.tcp_fin_timeout")
            .cloned()
            .unwrap_or_default();
        assert_eq!(fin["status"], "warn");
    }

    #[test]
    fn parsers_read_kernel_formats() {
        assert_eq!(
            thp_mode("always [madvise] never\n").as_deref(),
            Some("madvise")
        );
        assert_eq!(thp_mode("garbage"), None);
        let softnet = "0000001a 00000002 00000000\n00000dbd 00000010 00000001\n";
        assert_eq!(softnet_dropped(softnet), Some(0x12));
        assert_eq!(softnet_dropped("zz"), None);
        assert_eq!(kernel_version("6.18.44-fc-v1045"), Some((6, 18)));
        assert_eq!(kernel_version("x"), None);
    }

    #[test]
    fn defaults_stand_in_without_a_config() {
        let c = config_facts(None, 2);
        assert!(!c.config_loaded);
        assert_eq!(c.shards, 2);
        assert_eq!(c.conns_expected, 2 * 65_536);
        assert_eq!(c.backlog_max, 4096);
    }

    #[test]
    fn gather_never_panics_on_this_machine() {
        let f = gather(None);
        assert!(f.page_bytes > 0);
        assert!(!evaluate(&f).is_empty());
    }
}
