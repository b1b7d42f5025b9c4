//! Test helpers for the Redis route provider: a real `redis-server` on a private loopback port
//! (no persistence, own scratch directory), stopped on every path by `Drop`; a writer client;
//! waits on the provider's snapshots with deadlines. Nothing sleeps a fixed time to wait for
//! something it could check.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringway::provider::{RedisProviderCfg, RouteSnapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The keyspace classes docs/fleet.md tells operators to enable.
pub const NOTIFY: &str = "Kgl$xe";

/// `redis-server` is there, or this test is skipped with a note; under CI (`CI` set) a missing
/// server fails the test instead, since .ci/run installs it.
pub fn redis_available(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{test}: redis-server is not installed, and CI is set (apt-get install redis-server)"
            );
        }
        eprintln!("{test}: SKIPPED, redis-server is not installed (apt-get install redis-server)");
    }
    found
}

/// A scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringway-redis-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `redis-server` process; killed and reaped on drop, also when the test panics.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: Scratch,
    pub log: PathBuf,
    extra: Vec<String>,
    /// The port is a TLS port (`--tls-port`, plain port off).
    tls: bool,
}

impl RedisServer {
    /// Starts a server with `notify-keyspace-events` set to `notify` and `extra` arguments, on a
    /// free loopback port (another one if the port was taken before the server bound it).
    pub async fn start(notify: &str, extra: &[&str]) -> RedisServer {
        Self::start_with(notify, extra, false).await
    }

    /// [`Self::start`] with the port being a TLS port; `extra` names the certificate files.
    pub async fn start_tls(notify: &str, extra: &[&str]) -> RedisServer {
        Self::start_with(notify, extra, true).await
    }

    async fn start_with(notify: &str, extra: &[&str], tls: bool) -> RedisServer {
        let dir = Scratch::new("server");
        let log = dir.path("redis.log");
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            log,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls,
        };
        let mut last_err = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn(notify).await {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("redis-server did not start: {last_err}");
    }

    async fn spawn(&mut self, notify: &str) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        if self.tls {
            cmd.args(["--port", "0", "--tls-port"]);
        } else {
            cmd.arg("--port");
        }
        cmd.arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir.0)
            .arg("--notify-keyspace-events")
            .arg(notify)
            .arg("--logfile")
            .arg(&self.log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            let ready = if self.tls {
                tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
            } else {
                ping(self.port).await
            };
            if ready {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("no PONG within 10 s".into())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash or a lost host looks to clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (no persistence).
    pub async fn restart(&mut self, notify: &str) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn(notify).await {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("redis-server restart: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// [`Self::restart`] with `extra` arguments for this run only (`--requirepass`, say).
    pub async fn restart_with(&mut self, extra: &[&str], notify: &str) {
        let saved = self.extra.clone();
        self.extra.extend(extra.iter().map(|s| s.to_string()));
        self.restart(notify).await;
        self.extra = saved;
    }

    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }

    pub fn cfg(&self) -> RedisProviderCfg {
        RedisProviderCfg {
            address: self.url(),
            // Only events can make a change visible within a test's deadline, unless a test
            // shortens this on purpose.
            resync_interval: Duration::from_secs(3600),
            reconnect_backoff_max: Duration::from_millis(400),
            connect_timeout: Duration::from_secs(2),
            ..RedisProviderCfg::default()
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- redis-server :{} log (last lines) ---", self.port);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn ping(port: u16) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await,
        Ok(Ok(n)) if buf.get(..n).is_some_and(|b| b.starts_with(b"+PONG") || b.starts_with(b"-NOAUTH"))
    )
}

/// Runs one command on the writer connection and panics on a Redis error.
pub async fn run(conn: &mut redis::aio::MultiplexedConnection, args: &[&[u8]]) -> redis::Value {
    let Some((name, rest)) = args.split_first() else {
        panic!("empty command");
    };
    let mut cmd = redis::cmd(std::str::from_utf8(name).expect("command name"));
    for a in rest {
        cmd.arg(*a);
    }
    cmd.query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(&args.concat())))
}

/// Waits until the provider's snapshot satisfies `ok`; returns how long that took, or panics
/// with `what` and the last snapshot after `limit`.
pub async fn wait_snapshot(
    rx: &mut watch::Receiver<Arc<RouteSnapshot>>,
    limit: Duration,
    what: &str,
    ok: impl Fn(&RouteSnapshot) -> bool,
) -> Duration {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(limit, rx.wait_for(|s| ok(s))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err("provider stopped"),
        Err(_) => Err("timed out"),
    };
    match outcome {
        Ok(()) => started.elapsed(),
        Err(why) => {
            let last = rx.borrow();
            if last.entries() <= 50 {
                panic!(
                    "{what}: {why} after {limit:?}; last snapshot: {:#?}",
                    **last
                )
            }
            panic!(
                "{what}: {why} after {limit:?}; last snapshot has {} routes, {} skipped",
                last.routes.len(),
                last.skipped.len()
            )
        }
    }
}

/// Polls `ok` every 10 ms until it holds, for conditions on counters.
pub async fn wait_for(limit: Duration, what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn has_host(s: &RouteSnapshot, host: &str) -> bool {
    s.route_for_host(host.as_bytes())
        .is_some_and(|r| r.host.to_string() == host)
}

pub fn servers_of(s: &RouteSnapshot, host: &str) -> Vec<String> {
    s.route_for_host(host.as_bytes())
        .map(|r| r.servers.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

/// Resident set size of this process, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a constant of the running system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page
}
