//! Shared helpers for integration tests: run the real `ringway` binary on ephemeral loopback
//! ports, small test backends, deterministic data and a fast hash. Every wait polls with a
//! deadline; nothing sleeps a fixed time to wait for something it could check.

#![allow(dead_code)]

pub mod certs;
pub mod h2raw;
pub mod httpd;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringway");
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// The `reason` values of `h2_calm_closes` (docs/metrics.md): `h2_calm_closes_<reason>` in
/// `/stats`, `ringway_h2_calm_closes_total{reason}` on `/metrics`. Spelled out here, not taken
/// from ringway, so that renaming one fails the tests.
pub const H2_CALM_REASONS: [&str; 7] = [
    "rapid_reset",
    "local_resets",
    "continuation",
    "settings_flood",
    "ping_flood",
    "glitches",
    "hpack",
];

/// A unique scratch directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringway-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago (bind to :0, read, release), and never one this test
/// process handed out before: the kernel may give a released port to the next `bind(:0)`, so two
/// calls for one config (a listener and a second listener) could otherwise return the same port.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Binds `addr` with SO_REUSEADDR and SO_REUSEPORT, not listening yet. Two such sockets of one
/// user may share a port: a test can keep one bound (a reservation: the kernel hands the port to
/// no one else, neither to `bind(:0)` nor as a connect's local port) while it closes and opens
/// the one that listens.
pub fn reuseport_socket(addr: SocketAddr) -> socket2::Socket {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    s.set_reuse_port(true).expect("SO_REUSEPORT");
    s.bind(&addr.into())
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    s
}

/// The address of a server that is down: a socket bound to an ephemeral port that never
/// listens, so every connect to it is refused for as long as this lives, and no other process can
/// take the port meanwhile (as it could after `free_port`).
pub struct DeadPort {
    pub addr: SocketAddr,
    _socket: socket2::Socket,
}

impl DeadPort {
    pub fn new() -> DeadPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        socket.bind(&any.into()).expect("bind");
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("bound address");
        DeadPort {
            addr,
            _socket: socket,
        }
    }
}

/// Polls `f` every 10 ms until it returns Some or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Options for the generated config.
#[derive(Clone)]
pub struct Opts {
    pub shards: u32,
    pub splice: &'static str,
    pub connect: &'static str,
    pub client_idle: &'static str,
    pub server_idle: &'static str,
    pub drain: &'static str,
    pub extra_global: String,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            shards: 2,
            splice: "auto",
            connect: "2s",
            client_idle: "30s",
            server_idle: "30s",
            drain: "10s",
            extra_global: String::new(),
        }
    }
}

/// The bearer token of [`admin_token_file`].
pub const ADMIN_TOKEN: &str = "ringway-test-admin-token-0123456789";

/// A 0600 file holding [`ADMIN_TOKEN`], made once per test process; `config_text` names it in
/// `[admin] token_file` so that tests can write to the admin API over TCP.
pub fn admin_token_file() -> &'static std::path::Path {
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("ringway-test-token-{}", std::process::id()));
        std::fs::write(&p, format!("{ADMIN_TOKEN}\n")).expect("token file");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        p
    })
}

pub fn config_text(listen: u16, admin: u16, servers: &[SocketAddr], o: &Opts) -> String {
    let servers: Vec<String> = servers
        .iter()
        .map(|s| format!("{{ address = \"{s}\" }}"))
        .collect();
    format!(
        "[global]\nshards = {}\ndrain_timeout = \"{}\"\nadmin = \"127.0.0.1:{admin}\"\n{}\n\
         [timeouts]\nconnect = \"{}\"\nclient_idle = \"{}\"\nserver_idle = \"{}\"\n\n\
         [[listener]]\nname = \"test\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"tcp\"\nbackend = \"be\"\nsplice = \"{}\"\n\n\
         [[backend]]\nname = \"be\"\nservers = [ {} ]\n\
         [admin]\ntoken_file = \"{}\"\n",
        o.shards,
        o.drain,
        o.extra_global,
        o.connect,
        o.client_idle,
        o.server_idle,
        o.splice,
        servers.join(", "),
        admin_token_file().display()
    )
}

/// A running ringway. Killed on drop; its stderr is printed if the test is failing.
pub struct Ringway {
    pub child: Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub dir: TempDir,
    stderr_path: PathBuf,
}

/// How many times `Ringway::launch` starts ringway on fresh ports when a port it was given was
/// taken between `free_port` and ringway's bind.
const START_ATTEMPTS_MAX: u32 = 5;

/// Why a start attempt did not become ready, when trying again on other ports can help.
struct PortTaken(String);

/// True when ringway's stderr says a bind failed because the address was in use: the admin
/// listener's io error (`Address already in use`), the shard listener's own hint (`address in use
/// by a process that did not set SO_REUSEPORT`), or the errno name.
pub fn says_port_taken(stderr: &str) -> bool {
    let e = stderr.to_ascii_lowercase();
    e.contains("address already in use") || e.contains("address in use") || e.contains("eaddrinuse")
}

impl Ringway {
    pub fn start(servers: &[SocketAddr], o: &Opts) -> Ringway {
        Ringway::start_with(servers, o, |c| c)
    }

    /// Starts ringway; `prepare` may adjust the command (rlimits, wrappers).
    pub fn start_with(
        servers: &[SocketAddr],
        o: &Opts,
        prepare: impl FnMut(&mut Command) -> &mut Command,
    ) -> Ringway {
        Ringway::launch(|l, a| config_text(l, a, servers, o), prepare)
    }

    /// Starts ringway on a config built by `text(listen_port, admin_port)`. `text` runs again
    /// (with new ports) if a port was taken before ringway bound it; any other port it needs it
    /// takes from `free_port` itself, so those are fresh on every attempt too.
    pub fn start_text(text: impl FnMut(u16, u16) -> String) -> Ringway {
        Ringway::launch(text, |c| c)
    }

    /// As `start_text`; `prepare` may adjust the command (environment, wrappers).
    pub fn start_text_with(
        text: impl FnMut(u16, u16) -> String,
        prepare: impl FnMut(&mut Command) -> &mut Command,
    ) -> Ringway {
        Ringway::launch(text, prepare)
    }

    /// Writes the config into a scratch dir and runs ringway on it; stdout (the access log) goes
    /// to `stdout.log`, stderr to `stderr.log` there. `free_port` only says a port was free a
    /// moment ago: when another process takes one before ringway binds it, this starts again on
    /// new ports, up to `START_ATTEMPTS_MAX` times.
    fn launch(
        mut text: impl FnMut(u16, u16) -> String,
        mut prepare: impl FnMut(&mut Command) -> &mut Command,
    ) -> Ringway {
        let mut taken = Vec::new();
        for attempt in 1..=START_ATTEMPTS_MAX {
            let dir = TempDir::new("rw");
            let listen = free_port();
            let admin = free_port();
            let cfg = dir.write("ringway.toml", &text(listen, admin));
            let stderr_path = dir.0.join("stderr.log");
            let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
            let stdout = std::fs::File::create(dir.0.join("stdout.log")).expect("stdout file");
            let mut cmd = Command::new(BIN);
            // Tests run as root on CI machines; ringway refuses that without an explicit opt-in.
            cmd.env("RINGWAY_ALLOW_ROOT", "1");
            cmd.arg("run")
                .arg("-c")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr);
            let child = prepare(&mut cmd).spawn().expect("spawn ringway");
            let mut rw = Ringway {
                child,
                listen: format!("127.0.0.1:{listen}").parse().expect("addr"),
                admin: format!("127.0.0.1:{admin}").parse().expect("addr"),
                dir,
                stderr_path,
            };
            match rw.wait_ready() {
                Ok(()) => return rw,
                Err(PortTaken(why)) => {
                    eprintln!(
                        "ringway start attempt {attempt}: a port was taken, retrying on new ports: {why}"
                    );
                    taken.push(why);
                }
            }
        }
        panic!(
            "ringway did not start in {START_ATTEMPTS_MAX} attempts, a port taken every time:\n{}",
            taken.join("\n")
        );
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("stdout.log")).unwrap_or_default()
    }

    /// Waits until ringway's own admin listener answers `/stats`. `Err` when ringway could not
    /// have its ports: it exited because one was in use, or it listens on a port that another
    /// process listens on too (ringway binds with SO_REUSEPORT, so another root process's
    /// SO_REUSEPORT socket on the same port, such as a parallel test's ringway, does not fail the
    /// bind: the kernel would split the connections between the two).
    fn wait_ready(&mut self) -> Result<(), PortTaken> {
        let admin = self.admin;
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let stderr = self.stderr();
                if says_port_taken(&stderr) {
                    return Err(PortTaken(stderr));
                }
                panic!("ringway exited during startup: {status}\n{stderr}");
            }
            // Ask only once the admin port is ringway's: whoever took it first would answer (or
            // hang) in its place.
            if listen_ports(self.pid()).contains(&admin.port())
                && http_get(admin, "/stats").is_ok_and(|b| b.contains("\"per_shard\""))
            {
                break;
            }
            assert!(Instant::now() < end, "ringway not ready\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
        // No probe connection to the listener: it would reach the test's backend. The admin
        // listener starts only after every shard has bound its listener and armed its accept.
        let shared = shared_listen_ports(self.pid());
        if shared.is_empty() {
            Ok(())
        } else {
            Err(PortTaken(format!(
                "another socket listens on port(s) {shared:?} too"
            )))
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stats(&self) -> serde_json::Value {
        let body = http_get(self.admin, "/stats").expect("GET /stats");
        serde_json::from_str(&body).expect("stats JSON")
    }

    /// A counter from `total`; panics if there is no such counter (see `stat_u64`).
    pub fn total(&self, key: &str) -> u64 {
        stat_u64(&self.stats(), &format!("/total/{key}"))
    }

    /// Polls until `total[key]` satisfies `pred`; returns the last value.
    pub fn wait_total(&self, key: &str, timeout: Duration, pred: impl Fn(u64) -> bool) -> u64 {
        let mut last = 0;
        let ok = poll(timeout, || {
            last = self.total(key);
            pred(last).then_some(())
        });
        assert!(
            ok.is_some(),
            "stats {key} = {last} never satisfied the condition\n{}",
            self.stderr()
        );
        last
    }

    /// Waits until `h2_calm_closes` reaches `n`, then checks that it is `n` and that all of them
    /// are `reason`: in one `/stats` document `h2_calm_closes_<reason>` is `n` and every other
    /// reason 0 (so the total is the sum), and `/metrics` says the same in
    /// `ringway_h2_calm_closes_total{reason}`.
    pub fn assert_calm_closes(&self, reason: &str, n: u64) {
        assert!(H2_CALM_REASONS.contains(&reason), "no reason {reason:?}");
        self.wait_total("h2_calm_closes", IO_TIMEOUT, |c| c >= n);
        let stats = self.stats();
        let want: Vec<(&str, u64)> = H2_CALM_REASONS
            .iter()
            .map(|&r| (r, if r == reason { n } else { 0 }))
            .collect();
        let got: Vec<(&str, u64)> = H2_CALM_REASONS
            .iter()
            .map(|&r| (r, stat_u64(&stats, &format!("/total/h2_calm_closes_{r}"))))
            .collect();
        assert_eq!(got, want, "h2_calm_closes by reason");
        assert_eq!(stat_u64(&stats, "/total/h2_calm_closes"), n);
        let metrics = http_get(self.admin, "/metrics").expect("GET /metrics");
        for (r, n) in want {
            let line = format!("ringway_h2_calm_closes_total{{reason=\"{r}\"}} {n}");
            assert!(
                metrics.lines().any(|l| l == line),
                "no `{line}` in\n{metrics}"
            );
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, || self.child.try_wait().ok().flatten())
    }

    /// Open fds of ringway, not counting connections to its admin listener: the tests' own
    /// `/stats` requests close asynchronously and would make counts flicker by one.
    pub fn fd_count(&self) -> usize {
        let admin_inodes = admin_connection_inodes(self.admin.port());
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| {
                        let target = std::fs::read_link(e.path()).unwrap_or_default();
                        let target = target.to_string_lossy();
                        let inode = target
                            .strip_prefix("socket:[")
                            .and_then(|t| t.strip_suffix(']'));
                        !inode.is_some_and(|i| admin_inodes.iter().any(|a| a == i))
                    })
                    .count()
            })
            .unwrap_or_else(|e| panic!("/proc/{}/fd: {e}", self.pid()))
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }
}

impl Drop for Ringway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- ringway stderr ---\n{}", self.stderr());
        }
    }
}

/// Runs `ringway run` on the config `text(port)` until it exits, for a start that must fail
/// after binding `port` (at the privilege drop, say); stdin is closed, stdout and stderr
/// captured. As `Ringway::launch`, it runs again on a new port when the port was taken before
/// ringway bound it.
pub fn run_until_exit(
    mut text: impl FnMut(u16) -> String,
    mut prepare: impl FnMut(&mut Command) -> &mut Command,
) -> std::process::Output {
    let mut attempt = 1;
    loop {
        let dir = TempDir::new("exit");
        let cfg = dir.write("ringway.toml", &text(free_port()));
        let mut cmd = Command::new(BIN);
        cmd.env("RINGWAY_ALLOW_ROOT", "1")
            .arg("run")
            .arg("-c")
            .arg(&cfg)
            .stdin(Stdio::null());
        let out = prepare(&mut cmd).output().expect("run ringway");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if attempt == START_ATTEMPTS_MAX || !says_port_taken(&stderr) {
            return out;
        }
        eprintln!(
            "ringway run attempt {attempt}: a port was taken, retrying on a new one: {stderr}"
        );
        attempt += 1;
    }
}

/// `openssl s_server -www` (a TLS backend that describes the session it served) on a port it
/// picks itself: `-accept 127.0.0.1:0`, then the `ACCEPT 127.0.0.1:PORT` line it prints once
/// listening. Killed on drop.
pub struct SServer {
    pub addr: SocketAddr,
    child: Child,
}

impl SServer {
    pub fn start(cert: &Path, key: &Path) -> SServer {
        let mut child = Command::new("openssl")
            .args([
                "s_server",
                "-naccept",
                "1000",
                "-www",
                "-accept",
                "127.0.0.1:0",
            ])
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let out = child.stdout.take().expect("s_server stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = std::io::BufReader::new(out);
            let mut line = Vec::new();
            while matches!(std::io::BufRead::read_until(&mut out, b'\n', &mut line), Ok(n) if n > 0)
            {
                let text = String::from_utf8_lossy(&line);
                if let Some(addr) = text.trim().strip_prefix("ACCEPT ") {
                    let _ = tx.send(addr.to_string());
                    break;
                }
                line.clear();
            }
            // Drain the rest so s_server never blocks on a full pipe.
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(10)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("openssl s_server did not say which port it listens on");
        };
        SServer {
            addr: addr.parse().expect("s_server ACCEPT address"),
            child,
        }
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of /proc/PID/status. Panics when the process or the field is gone: a 0 would
/// pass every "grew by at most" check.
pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("/proc/{pid}/status has no {field}:\n{status}"))
}

/// The value at JSON pointer `path` (`/backends/0/servers/0/state`) of a `/stats` document.
/// Panics with the path and the document when it is missing: a renamed metric must fail the test
/// that reads it, not read as 0 and pass every `== 0` check forever.
pub fn stat<'j>(stats: &'j serde_json::Value, path: &str) -> &'j serde_json::Value {
    stats
        .pointer(path)
        .unwrap_or_else(|| panic!("stats have no `{path}`:\n{stats:#}"))
}

/// The number at `path` of a `/stats` document; panics if missing or not a number.
pub fn stat_u64(stats: &serde_json::Value, path: &str) -> u64 {
    let v = stat(stats, path);
    v.as_u64()
        .unwrap_or_else(|| panic!("stats `{path}` is {v}, not a number:\n{stats:#}"))
}

/// The string at `path` of a `/stats` document; panics if missing or not a string.
pub fn stat_str<'j>(stats: &'j serde_json::Value, path: &str) -> &'j str {
    let v = stat(stats, path);
    v.as_str()
        .unwrap_or_else(|| panic!("stats `{path}` is {v}, not a string:\n{stats:#}"))
}

/// The boolean at `path` of a `/stats` document; panics if missing or not a boolean.
pub fn stat_bool(stats: &serde_json::Value, path: &str) -> bool {
    let v = stat(stats, path);
    v.as_bool()
        .unwrap_or_else(|| panic!("stats `{path}` is {v}, not a boolean:\n{stats:#}"))
}

/// Minimal HTTP/1.0 GET; returns the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// A test backend: accepts on an ephemeral port and runs `handler` on a thread per connection.
pub struct Backend {
    pub addr: SocketAddr,
}

impl Backend {
    pub fn spawn<F>(handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let handler = std::sync::Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let h = std::sync::Arc::clone(&handler);
                std::thread::spawn(move || h(stream));
            }
        });
        Backend { addr }
    }

    /// Echoes everything until EOF, then closes.
    pub fn echo() -> Backend {
        Backend::spawn(|mut s| {
            let _ = s.set_read_timeout(Some(IO_TIMEOUT));
            let mut buf = [0u8; 16384];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = s.shutdown(Shutdown::Write);
        })
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), fast enough for hundreds of MiB.
pub struct DataGen(u64);

impl DataGen {
    pub fn new(seed: u64) -> DataGen {
        DataGen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// FNV-1a 64 over a stream, plus a byte count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    pub hash: u64,
    pub bytes: u64,
}

impl Default for Digest {
    fn default() -> Digest {
        Digest {
            hash: 0xcbf2_9ce4_8422_2325,
            bytes: 0,
        }
    }
}

impl Digest {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.bytes += data.len() as u64;
    }
}

/// Sends `total` bytes from `DataGen(seed)`; returns their digest.
pub fn send_stream(s: &mut TcpStream, seed: u64, total: u64) -> std::io::Result<Digest> {
    let mut g = DataGen::new(seed);
    let mut d = Digest::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        g.fill(&mut buf[..n]);
        s.write_all(&buf[..n])?;
        d.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(d)
}

/// Reads until EOF; returns the digest of what arrived.
pub fn recv_stream(s: &mut TcpStream) -> std::io::Result<Digest> {
    let mut d = Digest::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(d);
        }
        d.update(&buf[..n]);
    }
}

/// The digest `send_stream(seed, total)` produces, without a socket.
pub fn expected_digest(seed: u64, total: u64) -> Digest {
    let mut g = DataGen::new(seed);
    let mut d = Digest::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        g.fill(&mut buf[..n]);
        d.update(&buf[..n]);
        left -= n as u64;
    }
    d
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s
}

/// Raises this test process's RLIMIT_NOFILE soft limit to its hard limit.
pub fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One row of /proc/net/tcp{,6}.
struct TcpSocket {
    local_port: u16,
    listening: bool,
    inode: String,
}

/// Every TCP socket of this network namespace (from /proc/net/tcp{,6}).
fn tcp_sockets() -> Vec<TcpSocket> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let Some(local_port) = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            out.push(TcpSocket {
                local_port,
                // 0A: TCP_LISTEN.
                listening: *state == "0A",
                inode: (*inode).to_string(),
            });
        }
    }
    out
}

/// Inodes of non-listening TCP sockets whose local port is `port`.
fn admin_connection_inodes(port: u16) -> Vec<String> {
    tcp_sockets()
        .into_iter()
        .filter(|s| s.local_port == port && !s.listening)
        .map(|s| s.inode)
        .collect()
}

/// Inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: i32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            let target = target.to_string_lossy();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect()
}

/// Ports on which process `pid` holds a listening socket.
fn listen_ports(pid: i32) -> Vec<u16> {
    let ours = socket_inodes(pid);
    let mut ports: Vec<u16> = tcp_sockets()
        .into_iter()
        .filter(|s| s.listening && ours.contains(&s.inode))
        .map(|s| s.local_port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Ports on which process `pid` listens and a socket it does not hold listens too.
fn shared_listen_ports(pid: i32) -> Vec<u16> {
    let ours = socket_inodes(pid);
    let listeners: Vec<TcpSocket> = tcp_sockets().into_iter().filter(|s| s.listening).collect();
    let mut shared: Vec<u16> = listeners
        .iter()
        .filter(|s| !ours.contains(&s.inode))
        .filter(|s| {
            listeners
                .iter()
                .any(|o| o.local_port == s.local_port && ours.contains(&o.inode))
        })
        .map(|s| s.local_port)
        .collect();
    shared.sort_unstable();
    shared.dedup();
    shared
}

/// A WebSocket echo server (tungstenite) on an ephemeral port; runs until the test ends.
pub fn ws_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(mut ws) = tungstenite::accept(stream) else {
                    return;
                };
                while let Ok(msg) = ws.read() {
                    if msg.is_close() {
                        break;
                    }
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// The subject of the certificate a TLS server presents to a client sending `sni` (`None`: no
/// SNI), as `openssl s_client` prints it without spaces (`CN=a.example`); empty if none.
pub fn tls_subject(addr: SocketAddr, sni: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string()]);
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .expect("openssl s_client");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("subject=")
                .map(|s| s.replace(' ', ""))
        })
        .unwrap_or_default()
}

/// Whether `tool` runs (`tool --version`); outside CI a missing one skips the test, with CI set
/// it fails it (.ci/run installs every tool the tests use).
pub fn have(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} must be installed in CI (.ci/run installs it)"
        );
        eprintln!("{tool} not installed; skipping outside CI");
    }
    found
}

/// An `http2 = true` TLS listener block named `https` on `port` (backend `a`), for a test config's
/// extra listeners.
pub fn h2_tls_listener(port: u16, cert: &Path, key: &Path) -> String {
    format!(
        "[[listener]]\nname = \"https\"\nbind = \"127.0.0.1:{port}\"\nmode = \"http\"\n\
         backend = \"a\"\nhttp2 = true\n\
         [listener.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

/// HPACK by hand (RFC 7541 §5.1): `v` with an `n`-bit prefix; `first` holds the
/// representation's pattern bits.
pub fn hpack_int(out: &mut Vec<u8>, n: u32, first: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// HPACK by hand (RFC 7541 §5.2): a string literal without Huffman coding.
pub fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 7, 0x00, s.len());
    out.extend_from_slice(s);
}
