//! Owns: systemd socket activation with `sd_listen_fds(3)` semantics, without linking
//! libsystemd: reading LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, claiming fds 3.. once, making
//! them close-on-exec, and optionally unsetting the variables.
//! Must not: bind, listen on or change the sockets beyond close-on-exec, decide which listener a
//! socket serves (that is [`crate::adopt`]), or touch any fd LISTEN_FDS does not name.
//!
//! # Using it
//!
//! ```text
//! // top of main, before tokio or any shard thread exists:
//! let passed = sd_listen::listen_fds(true)?;            // [] when not socket-activated
//! let candidates: Vec<Candidate> =
//!     passed.iter().map(|(name, fd)| Candidate::inspect(name.clone(), fd.as_fd())).collect();
//! let adoption = adopt::match_listeners(&candidates, &wanted, shards);
//! // per listener and shard: the passed sockets to accept on; bind listeners in
//! // `adoption.missing` as usual; report `adoption.unmatched` (see tuning/GUIDE.md).
//! ```
//!
//! # Rules
//!
//! - Call [`listen_fds`] once. The fds it returns are owned from then on; a second call returns
//!   [`SdListenError::AlreadyClaimed`] instead of a second owner of the same fds.
//! - `unset_env = true` (recommended, so processes ringway starts later do not think the sockets
//!   are theirs) needs a single-threaded process, because changing the environment while another
//!   thread reads it is undefined behaviour in C and `unsafe` in Rust. It is checked
//!   (/proc/self/task), not assumed: with more threads the call fails before touching anything.
//! - systemd keeps its own copy of every socket. Never `shutdown(2)` one (that stops it for
//!   systemd too); just close ours. Socket options we change are changed for systemd's copy as
//!   well.
//! - LISTEN_PID must be our pid; variables meant for another process (inherited from a parent
//!   that did not unset them) are ignored, as `sd_listen_fds` does.
//! - A name systemd passes for an fd is the unit's `FileDescriptorName=`, which names every
//!   socket of that unit (default: the unit name, e.g. `ringway.socket`). An empty name is
//!   returned as `None`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The first passed fd (SD_LISTEN_FDS_START); the others follow without gaps.
pub const LISTEN_FDS_START: RawFd = 3;
/// Most fds we accept from LISTEN_FDS; anything larger is a broken environment.
pub const LISTEN_FDS_MAX: usize = 65_536;

const VAR_PID: &str = "LISTEN_PID";
const VAR_FDS: &str = "LISTEN_FDS";
const VAR_NAMES: &str = "LISTEN_FDNAMES";

/// Set by the first [`listen_fds`] call that claims fds, so no fd gets two owners.
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// Why the passed sockets could not be taken. None is retryable: the environment is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SdListenError {
    #[error("LISTEN_PID={value:?} is not a process id")]
    BadPid { value: String },
    #[error("LISTEN_FDS={value:?} is not a socket count (0 to {LISTEN_FDS_MAX})")]
    BadCount { value: String },
    #[error("LISTEN_FDNAMES={value:?} is not UTF-8")]
    BadNames { value: String },
    #[error("LISTEN_FDNAMES has {names} names for LISTEN_FDS={fds}")]
    NameCount { names: usize, fds: usize },
    #[error("LISTEN_FDS={fds} promises fd {fd}, but it is not open: {source}")]
    NotOpen {
        fds: usize,
        fd: RawFd,
        #[source]
        source: io::Error,
    },
    #[error("making passed fd {fd} close-on-exec: {source}")]
    Cloexec {
        fd: RawFd,
        #[source]
        source: io::Error,
    },
    #[error(
        "unsetting LISTEN_* needs a single-threaded process, found {threads} threads: call listen_fds(true) at the top of main, before any runtime or shard starts"
    )]
    UnsetNeedsOneThread { threads: usize },
    #[error("counting this process's threads in /proc/self/task: {source}")]
    Proc {
        #[source]
        source: io::Error,
    },
    #[error("the sockets systemd passed were already claimed by an earlier listen_fds call")]
    AlreadyClaimed,
}

impl SdListenError {
    /// Never: each variant is a broken environment or a second call.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// What the LISTEN_* variables say, before any fd is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenEnv {
    /// LISTEN_PID or LISTEN_FDS is not set: not socket-activated.
    NotActivated,
    /// The variables are for another process (LISTEN_PID differs from ours).
    OtherProcess { listen_pid: u32 },
    /// One entry per passed fd, from [`LISTEN_FDS_START`] on: its name, if it has one.
    Fds(Vec<Option<String>>),
}

/// Reads the three variables' values (as the environment holds them) with `sd_listen_fds(3)`
/// semantics. Pure: `our_pid` is passed in.
pub fn parse_listen_env(
    pid: Option<&OsStr>,
    fds: Option<&OsStr>,
    names: Option<&OsStr>,
    our_pid: u32,
) -> Result<ListenEnv, SdListenError> {
    let Some(pid) = pid else {
        return Ok(ListenEnv::NotActivated);
    };
    let listen_pid = decimal(pid)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|&p| p > 0)
        .ok_or_else(|| SdListenError::BadPid {
            value: pid.to_string_lossy().into_owned(),
        })?;
    if listen_pid != our_pid {
        return Ok(ListenEnv::OtherProcess { listen_pid });
    }
    let Some(fds) = fds else {
        return Ok(ListenEnv::NotActivated);
    };
    let count = decimal(fds)
        .filter(|&n| n <= LISTEN_FDS_MAX)
        .ok_or_else(|| SdListenError::BadCount {
            value: fds.to_string_lossy().into_owned(),
        })?;
    let Some(names) = names else {
        return Ok(ListenEnv::Fds(vec![None; count]));
    };
    let text = names.to_str().ok_or_else(|| SdListenError::BadNames {
        value: names.to_string_lossy().into_owned(),
    })?;
    // systemd joins the names with ':' (a name may not contain one); "" means no names.
    let list: Vec<Option<String>> = if text.is_empty() {
        Vec::new()
    } else {
        text.split(':')
            .map(|n| (!n.is_empty()).then(|| n.to_owned()))
            .collect()
    };
    if list.len() != count {
        return Err(SdListenError::NameCount {
            names: list.len(),
            fds: count,
        });
    }
    Ok(ListenEnv::Fds(list))
}

/// A plain unsigned decimal: no sign, no spaces, no empty string.
fn decimal(value: &OsStr) -> Option<usize> {
    let s = value.to_str()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The sockets systemd passed us: `(name, fd)` for fd 3, 4, ..., close-on-exec; empty when not
/// socket-activated or when the variables are for another process. With `unset_env`, removes
/// LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES (in every case, as `sd_listen_fds` does), which
/// needs a single-threaded process. Call once; see the module docs.
pub fn listen_fds(unset_env: bool) -> Result<Vec<(Option<String>, OwnedFd)>, SdListenError> {
    if unset_env {
        let threads = thread_count().map_err(|source| SdListenError::Proc { source })?;
        if threads != 1 {
            return Err(SdListenError::UnsetNeedsOneThread { threads });
        }
    }
    let pid = std::env::var_os(VAR_PID);
    let fds = std::env::var_os(VAR_FDS);
    let names = std::env::var_os(VAR_NAMES);
    if unset_env {
        for var in [VAR_PID, VAR_FDS, VAR_NAMES] {
            // SAFETY: the process has exactly one thread, this one (checked above; only this
            // thread could start another), so nothing reads or writes the environment
            // concurrently.
            unsafe { std::env::remove_var(var) };
        }
    }
    let parsed = parse_listen_env(
        pid.as_deref(),
        fds.as_deref(),
        names.as_deref(),
        std::process::id(),
    )?;
    match parsed {
        ListenEnv::NotActivated | ListenEnv::OtherProcess { .. } => Ok(Vec::new()),
        ListenEnv::Fds(names) => claim(names),
    }
}

/// Takes ownership of fds 3.. (one per name) after checking that every one is open.
fn claim(names: Vec<Option<String>>) -> Result<Vec<(Option<String>, OwnedFd)>, SdListenError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    if CLAIMED.swap(true, Ordering::SeqCst) {
        return Err(SdListenError::AlreadyClaimed);
    }
    let count = names.len();
    let fd_of = |i: usize| {
        RawFd::try_from(i)
            .ok()
            .and_then(|i| i.checked_add(LISTEN_FDS_START))
    };
    for i in 0..count {
        let Some(fd) = fd_of(i) else {
            return Err(SdListenError::BadCount {
                value: count.to_string(),
            });
        };
        // SAFETY: F_GETFD on a plain integer reads one fd's flags and passes no memory; a
        // closed fd only yields EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(SdListenError::NotOpen {
                fds: count,
                fd,
                source: io::Error::last_os_error(),
            });
        }
    }
    let mut out = Vec::with_capacity(count);
    for (i, name) in names.into_iter().enumerate() {
        let Some(raw) = fd_of(i) else {
            return Err(SdListenError::BadCount {
                value: count.to_string(),
            });
        };
        // SAFETY: `raw` is open (checked above) and was passed to this process by its service
        // manager for it to own (sd_listen_fds(3)); CLAIMED makes this the only place that
        // ever wraps it, and no other ringway code takes fds 3.. without an owner.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let flags = rustix::io::fcntl_getfd(&fd).map_err(|e| SdListenError::Cloexec {
            fd: raw,
            source: e.into(),
        })?;
        rustix::io::fcntl_setfd(&fd, flags | rustix::io::FdFlags::CLOEXEC).map_err(|e| {
            SdListenError::Cloexec {
                fd: raw,
                source: e.into(),
            }
        })?;
        out.push((name, fd));
    }
    Ok(out)
}

fn thread_count() -> io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc/self/task")? {
        entry?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adopt::{Candidate, Wanted, inspect_listener, match_listeners};
    use std::net::{SocketAddr, TcpListener};
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn variables_for_us_give_one_name_per_fd() {
        assert_eq!(
            parse_listen_env(os("42"), os("3"), os("http:https:"), 42).expect("valid"),
            ListenEnv::Fds(vec![Some("http".into()), Some("https".into()), None])
        );
        assert_eq!(
            parse_listen_env(os("42"), os("2"), None, 42).expect("valid"),
            ListenEnv::Fds(vec![None, None])
        );
        assert_eq!(
            parse_listen_env(os("42"), os("0"), os(""), 42).expect("valid"),
            ListenEnv::Fds(Vec::new())
        );
    }

    #[test]
    fn missing_or_foreign_variables_mean_not_for_us() {
        assert_eq!(
            parse_listen_env(None, os("3"), os("a:b:c"), 42).expect("valid"),
            ListenEnv::NotActivated
        );
        assert_eq!(
            parse_listen_env(os("42"), None, None, 42).expect("valid"),
            ListenEnv::NotActivated
        );
        // Checked before LISTEN_FDS, so a parent's leftovers never make us claim fds.
        assert_eq!(
            parse_listen_env(os("7"), os("garbage"), None, 42).expect("valid"),
            ListenEnv::OtherProcess { listen_pid: 7 }
        );
    }

    #[test]
    fn malformed_variables_are_errors_that_quote_the_value() {
        for pid in ["", "0", "-1", "+42", " 42", "4x2", "99999999999"] {
            let e = parse_listen_env(os(pid), os("1"), None, 42).expect_err(pid);
            assert!(matches!(e, SdListenError::BadPid { .. }), "{pid}: {e}");
        }
        for fds in ["", "-1", "1.0", "65537", "3 "] {
            let e = parse_listen_env(os("42"), os(fds), None, 42).expect_err(fds);
            assert!(e.to_string().contains(&format!("{fds:?}")), "{e}");
        }
        let e = parse_listen_env(os("42"), os("2"), os("only-one"), 42).expect_err("count");
        assert!(matches!(e, SdListenError::NameCount { names: 1, fds: 2 }));
        let e = parse_listen_env(os("42"), os("1"), os(""), 42).expect_err("count");
        assert!(matches!(e, SdListenError::NameCount { names: 0, fds: 1 }));
    }

    #[test]
    fn unsetting_from_a_threaded_process_is_refused_and_changes_nothing() {
        // The test harness runs each test on its own thread, so there are at least two.
        match listen_fds(true) {
            Err(SdListenError::UnsetNeedsOneThread { threads }) => assert!(threads > 1),
            other => panic!("expected UnsetNeedsOneThread, got {other:?}"),
        }
        // Not activated (our test runner sets no LISTEN_PID for itself): nothing to claim.
        assert!(listen_fds(false).expect("not activated").is_empty());
    }

    /// Set (to the mode) only in the child process the tests below start.
    const CHILD_MARKER: &str = "RINGWAY_SD_LISTEN_CHILD";
    const CHILD_TEST: &str = "child_side_of_socket_activation";

    /// Starts this test binary again, running only [`child_side_of_socket_activation`], with
    /// `listeners` placed at fd 3.. the way systemd places them.
    fn run_child(
        mode: &str,
        listeners: &[&TcpListener; 3],
        env: &[(&str, String)],
        shell_sets_pid: bool,
    ) {
        let exe = std::env::current_exe().expect("test binary");
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, rest)| rest);
        let filter = format!("{module}::{CHILD_TEST}");
        // Copies at fd >= 50, close-on-exec, so the dup2 calls below can never overwrite a
        // source before it is copied, and the copies vanish at exec.
        let high: Vec<OwnedFd> = listeners
            .iter()
            .map(|l| rustix::io::fcntl_dupfd_cloexec(l, 50).expect("dup"))
            .collect();
        let srcs: [RawFd; 3] = [
            high[0].as_raw_fd(),
            high[1].as_raw_fd(),
            high[2].as_raw_fd(),
        ];
        let mut cmd = if shell_sets_pid {
            // systemd sets LISTEN_PID after fork, to the pid that then execs the service; a
            // shell that execs keeps its pid, so `$$` is the pid the test binary will have.
            let mut c = Command::new("/bin/sh");
            c.arg("-c")
                .arg(r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#)
                .arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(["--exact", &filter, "--nocapture", "--test-threads=1"])
            .env(CHILD_MARKER, mode)
            .env_remove(VAR_PID)
            .env_remove(VAR_NAMES);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
        // calls are allowed (another test thread may have held a lock at fork time that will
        // never be released in the child). It only calls dup2(2) on integers copied into the
        // closure, allocates nothing and takes no lock. dup2 clears close-on-exec on fds 3..5,
        // which is how systemd passes sockets.
        unsafe {
            cmd.pre_exec(move || {
                for (i, src) in srcs.iter().enumerate() {
                    let target = LISTEN_FDS_START + i as RawFd;
                    // SAFETY: dup2 on plain integers; it passes no memory.
                    if libc::dup2(*src, target) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            })
        };
        let out = cmd.output().expect("run the child test");
        drop(high);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child ({mode}) failed: {}\n{stdout}\n{stderr}",
            out.status
        );
    }

    fn three_listeners() -> [TcpListener; 3] {
        [(); 3].map(|()| TcpListener::bind("127.0.0.1:0").expect("bind"))
    }

    #[test]
    fn activated_child_adopts_named_cloexec_listening_sockets_from_fd_3() {
        let ls = three_listeners();
        let addrs: Vec<String> = ls
            .iter()
            .map(|l| l.local_addr().expect("addr").to_string())
            .collect();
        run_child(
            &format!("adopt,{}", addrs.join(",")),
            &[&ls[0], &ls[1], &ls[2]],
            &[(VAR_FDS, "3".into()), (VAR_NAMES, "http:https:".into())],
            true,
        );
    }

    #[test]
    fn variables_for_another_pid_leave_the_fds_alone() {
        let ls = three_listeners();
        run_child(
            "other-pid",
            &[&ls[0], &ls[1], &ls[2]],
            &[
                // Ours, so certainly not the child's.
                (VAR_PID, std::process::id().to_string()),
                (VAR_FDS, "3".into()),
            ],
            false,
        );
    }

    /// Does nothing in a normal test run; it is the child of the two tests above.
    #[test]
    fn child_side_of_socket_activation() {
        let Some(mode) = std::env::var_os(CHILD_MARKER) else {
            return;
        };
        let mode = mode.to_string_lossy().into_owned();
        let mut parts = mode.split(',');
        match parts.next() {
            Some("adopt") => {
                let addrs: Vec<SocketAddr> = parts
                    .map(|a| a.parse().expect("address from the parent"))
                    .collect();
                child_adopts(&addrs);
            }
            Some("other-pid") => child_ignores_other_pid(),
            other => panic!("unknown child mode {other:?}"),
        }
    }

    fn child_adopts(addrs: &[SocketAddr]) {
        assert!(matches!(
            listen_fds(true),
            Err(SdListenError::UnsetNeedsOneThread { .. })
        ));
        assert!(
            std::env::var_os(VAR_FDS).is_some(),
            "a refused call must not unset anything"
        );
        let passed = listen_fds(false).expect("claim the passed sockets");
        let names: Vec<Option<&str>> = passed.iter().map(|(n, _)| n.as_deref()).collect();
        assert_eq!(names, vec![Some("http"), Some("https"), None]);
        for (i, ((_, fd), addr)) in passed.iter().zip(addrs).enumerate() {
            assert_eq!(fd.as_raw_fd(), LISTEN_FDS_START + i as RawFd);
            let flags = rustix::io::fcntl_getfd(fd).expect("F_GETFD");
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC), "fd {i}");
            assert_eq!(inspect_listener(fd.as_fd()).expect("listening"), *addr);
            let client = std::net::TcpStream::connect(addr).expect("connect");
            let (_conn, peer) = rustix::net::acceptfrom(fd).expect("accept on the passed fd");
            let peer = SocketAddr::try_from(peer.expect("peer")).expect("inet");
            assert_eq!(peer, client.local_addr().expect("client addr"));
        }
        assert!(matches!(
            listen_fds(false),
            Err(SdListenError::AlreadyClaimed)
        ));

        // The third socket has no name, so it is matched by address.
        let candidates: Vec<Candidate> = passed
            .iter()
            .map(|(n, fd)| Candidate::inspect(n.clone(), fd.as_fd()))
            .collect();
        let wanted = [
            Wanted {
                name: "http",
                bind: addrs[0],
            },
            Wanted {
                name: "https",
                bind: addrs[1],
            },
            Wanted {
                name: "admin",
                bind: addrs[2],
            },
        ];
        let adoption = match_listeners(&candidates, &wanted, 1);
        let per: Vec<&Vec<Vec<usize>>> = adoption.listeners.iter().map(|l| &l.per_shard).collect();
        assert_eq!(per, vec![&vec![vec![0]], &vec![vec![1]], &vec![vec![2]]]);
        assert!(adoption.missing.is_empty() && adoption.unmatched.is_empty());
    }

    fn child_ignores_other_pid() {
        assert!(listen_fds(false).expect("not for us").is_empty());
        for fd in LISTEN_FDS_START..LISTEN_FDS_START + 3 {
            // SAFETY: F_GETFD on a plain integer passes no memory.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert!(flags >= 0, "fd {fd} must still be open");
            assert_eq!(flags & libc::FD_CLOEXEC, 0, "fd {fd} must be untouched");
        }
    }
}
