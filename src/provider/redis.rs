//! Owns: watching one Redis (a single node: primary or replica, not Cluster) for hipache route
//! entries and publishing a [`RouteSnapshot`] after each change — the connection and its
//! credentials, the keyspace-notification subscription, full resyncs, per-key re-reads, burst
//! coalescing, reconnects with backoff, the cache file writer and the provider's counters.
//! Must not: touch shards, the config loader or anything on the data path. It runs as tokio
//! tasks on the control thread's runtime and hands snapshots out through a watch channel; shards
//! never talk to Redis.
//!
//! Session, in order: open two connections (commands, pub/sub) and `PSUBSCRIBE
//! __keyspace@<db>__:<prefix>frontend:*`; read `notify-keyspace-events` and say in the log when
//! it cannot tell us about route keys; then a full resync (`SCAN MATCH ... COUNT`, pipelined
//! `LRANGE` per key). Subscribing first means a write during the resync still arrives as an
//! event after it, so nothing falls between the two. Then: each event marks its key dirty; the
//! first dirty key opens a `coalesce` window (50 ms) after which all dirty keys are re-read in
//! one pipeline and one snapshot is published. A full resync runs again every
//! `resync_interval` (30 s) and after every reconnect, which heals whatever events were missed
//! (pub/sub is lossy across disconnects, and Redis disconnects a subscriber whose output buffer
//! passes `client-output-buffer-limit pubsub`).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::cache::{self, CacheSource};
use super::schema::{FRONTEND_TAG, KEY_PREFIX_BYTES_MAX, ROUTES_MAX, SERVERS_PER_ROUTE_MAX, lossy};
use super::snapshot::{Applied, KeyRead, RouteSnapshot};

/// Default for [`RedisProviderCfg::resync_interval`]: how stale a missed event can leave a node.
pub const RESYNC_INTERVAL_DEFAULT: Duration = Duration::from_secs(30);
/// Default for [`RedisProviderCfg::coalesce`]: a writer's `DEL` + `RPUSH` (hipache tools do
/// both, not in a transaction) lands in one snapshot instead of two, at a cost of 50 ms.
pub const COALESCE_DEFAULT: Duration = Duration::from_millis(50);
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default for [`RedisProviderCfg::command_timeout`]: the longest one command or pipeline may take.
pub const COMMAND_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// First reconnect delay; doubled per failed attempt up to `reconnect_backoff_max`.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const RECONNECT_BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(10);
/// SCAN's COUNT hint: keys Redis looks at per call. 1,000 keeps one call around a millisecond of
/// the server's single thread while a 100,000-key resync needs only ~100 round trips.
pub const SCAN_COUNT: u32 = 1000;
/// Keys read per pipeline, which bounds one reply to `READ_BATCH_KEYS * (SERVERS_PER_ROUTE_MAX + 2)`
/// elements.
pub const READ_BATCH_KEYS: usize = 1000;
/// Dirty keys remembered between two flushes; past it a full resync is cheaper than the list.
pub const DIRTY_KEYS_MAX: usize = 10_000;
/// A password file is one line; anything larger is the wrong file.
pub const PASSWORD_FILE_BYTES_MAX: u64 = 4096;
/// Debug lines about skipped entries per minute; a bad writer can make every resync skip
/// thousands, which would flood the log.
pub const SKIP_LOG_PER_MINUTE: u32 = 20;
/// The `CLIENT SETNAME` of the command connection, so `CLIENT LIST` on Redis shows who it is.
pub const CLIENT_NAME: &str = "ringway-routes";

/// Keyspace classes the provider needs (see `notify-keyspace-events` in redis.conf): `K` the
/// `__keyspace@` channel, `g` DEL/RENAME/EXPIRE, `l` list commands. Without one of these, route
/// changes are seen only at the next resync.
pub const KEYSPACE_FLAGS_NEEDED: &str = "Kgl";
/// Classes that close the remaining gaps: `$` a SET over a route key, `x` expiry, `e` eviction.
pub const KEYSPACE_FLAGS_WANTED: &str = "$xe";
/// What docs/fleet.md tells operators to set: the two lists above.
pub const KEYSPACE_FLAGS_RECOMMENDED: &str = "Kgl$xe";

/// The provider's settings; the integrator fills them from `[provider.redis]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisProviderCfg {
    /// `redis://HOST[:PORT]`, `rediss://HOST[:PORT]` (TLS) or `unix:///PATH`. No credentials,
    /// database or options in it: those have their own keys.
    pub address: String,
    /// ACL user (Redis 6+); `None` authenticates as `default` when a password is given.
    pub username: Option<String>,
    /// File holding the password (one line; a trailing newline is ignored). Read again at every
    /// connect, so a rotated password is picked up without a restart.
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle for `rediss://` instead of the system roots.
    pub tls_ca_file: Option<PathBuf>,
    pub db: u32,
    /// Prepended to `frontend:` (hipache's `#prefix` in its Redis URL).
    pub key_prefix: String,
    pub resync_interval: Duration,
    pub coalesce: Duration,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub reconnect_backoff_max: Duration,
}

impl Default for RedisProviderCfg {
    fn default() -> Self {
        RedisProviderCfg {
            address: "redis://127.0.0.1:6379".to_owned(),
            username: None,
            password_file: None,
            tls_ca_file: None,
            db: 0,
            key_prefix: String::new(),
            resync_interval: RESYNC_INTERVAL_DEFAULT,
            coalesce: COALESCE_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            command_timeout: COMMAND_TIMEOUT_DEFAULT,
            reconnect_backoff_max: RECONNECT_BACKOFF_MAX_DEFAULT,
        }
    }
}

/// Where Redis is, from [`RedisProviderCfg::address`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddress {
    Tcp { host: String, port: u16 },
    Tls { host: String, port: u16 },
    Unix(PathBuf),
}

/// A setting the provider cannot run with; each says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CfgError {
    #[error("address `{address}`: {reason}")]
    BadAddress {
        address: String,
        reason: &'static str,
    },
    #[error(
        "address `{address}`: credentials do not go in the address; set `username` and `password_file`"
    )]
    CredentialsInAddress { address: String },
    #[error("key_prefix is {bytes} bytes; the most is {KEY_PREFIX_BYTES_MAX}")]
    PrefixTooLong { bytes: usize },
    #[error("key_prefix must not contain control characters")]
    PrefixControl,
    #[error("{key} = {value:?} is out of range; use {range}")]
    OutOfRange {
        key: &'static str,
        value: Duration,
        range: &'static str,
    },
    #[error("tls_ca_file needs a rediss:// address")]
    CaWithoutTls,
    #[error("db {db} is out of range; use 0 to 2147483647")]
    DbOutOfRange { db: u32 },
}

impl RedisProviderCfg {
    /// Checks every setting (what `ringway check` should run); files are read at connect time.
    pub fn validate(&self) -> Result<RedisAddress, CfgError> {
        let address = parse_address(&self.address)?;
        if self.key_prefix.len() > KEY_PREFIX_BYTES_MAX {
            return Err(CfgError::PrefixTooLong {
                bytes: self.key_prefix.len(),
            });
        }
        if self.key_prefix.chars().any(char::is_control) {
            return Err(CfgError::PrefixControl);
        }
        if self.db > i32::MAX as u32 {
            return Err(CfgError::DbOutOfRange { db: self.db });
        }
        let ranges: [(&'static str, Duration, Duration, Duration, &'static str); 5] = [
            (
                "resync_interval",
                self.resync_interval,
                Duration::from_secs(1),
                Duration::from_secs(3600),
                "\"1s\" to \"1h\"",
            ),
            (
                "coalesce",
                self.coalesce,
                Duration::ZERO,
                Duration::from_secs(1),
                "\"0ms\" to \"1s\"",
            ),
            (
                "connect_timeout",
                self.connect_timeout,
                Duration::from_millis(1),
                Duration::from_secs(60),
                "\"1ms\" to \"60s\"",
            ),
            (
                "command_timeout",
                self.command_timeout,
                Duration::from_millis(1),
                Duration::from_secs(600),
                "\"1ms\" to \"10m\"",
            ),
            (
                "reconnect_backoff_max",
                self.reconnect_backoff_max,
                RECONNECT_BACKOFF_MIN,
                Duration::from_secs(600),
                "\"100ms\" to \"10m\"",
            ),
        ];
        for (key, value, min, max, range) in ranges {
            if value < min || value > max {
                return Err(CfgError::OutOfRange { key, value, range });
            }
        }
        if self.tls_ca_file.is_some() && !matches!(address, RedisAddress::Tls { .. }) {
            return Err(CfgError::CaWithoutTls);
        }
        Ok(address)
    }
}

/// Parses `redis://HOST[:PORT][/]`, `rediss://...` or `unix:///PATH`. The default port is 6379.
pub fn parse_address(address: &str) -> Result<RedisAddress, CfgError> {
    let bad = |reason: &'static str| CfgError::BadAddress {
        address: address.to_owned(),
        reason,
    };
    if let Some(path) = address.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(bad(
                "a unix socket needs an absolute path: unix:///run/redis.sock",
            ));
        }
        if path.contains(['?', '#']) {
            return Err(bad(
                "options do not go in the address; use db and key_prefix",
            ));
        }
        return Ok(RedisAddress::Unix(PathBuf::from(path)));
    }
    let (tls, rest) = if let Some(rest) = address.strip_prefix("rediss://") {
        (true, rest)
    } else if let Some(rest) = address.strip_prefix("redis://") {
        (false, rest)
    } else {
        return Err(bad(
            "use redis://HOST:PORT, rediss://HOST:PORT or unix:///PATH",
        ));
    };
    if rest.contains('@') {
        return Err(CfgError::CredentialsInAddress {
            address: address.to_owned(),
        });
    }
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !tail.is_empty() && tail != "/" {
        return Err(bad(
            "no database, path or options in the address; use db and key_prefix",
        ));
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let Some((ip, after)) = inner.split_once(']') else {
            return Err(bad("`[` without `]`"));
        };
        let port = match after {
            "" => 6379,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("port must be 1 to 65535"))?,
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address inside `[...]`"));
        }
        (ip.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| bad("port must be 1 to 65535"))?,
            ),
            None => (authority.to_owned(), 6379),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.contains(':') && !authority.starts_with('[') {
        return Err(bad("an IPv6 address goes in brackets: redis://[::1]:6379"));
    }
    Ok(if tls {
        RedisAddress::Tls { host, port }
    } else {
        RedisAddress::Tcp { host, port }
    })
}

/// What the server's `notify-keyspace-events` means for the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyspaceEvents {
    /// Not checked yet, or `CONFIG GET` is not allowed (managed Redis, ACL).
    Unknown,
    /// Every class in [`KEYSPACE_FLAGS_RECOMMENDED`] is on.
    Enabled,
    /// The needed classes are on, some of [`KEYSPACE_FLAGS_WANTED`] are off.
    Partial,
    /// A needed class is off: changes are seen only at resync.
    Disabled,
}

impl KeyspaceEvents {
    fn code(self) -> u8 {
        match self {
            KeyspaceEvents::Unknown => 0,
            KeyspaceEvents::Enabled => 1,
            KeyspaceEvents::Partial => 2,
            KeyspaceEvents::Disabled => 3,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => KeyspaceEvents::Enabled,
            2 => KeyspaceEvents::Partial,
            3 => KeyspaceEvents::Disabled,
            _ => KeyspaceEvents::Unknown,
        }
    }
}

/// Classifies a `notify-keyspace-events` value; the string lists the missing classes.
pub fn keyspace_events_state(flags: &str) -> (KeyspaceEvents, String) {
    // `A` is the alias Redis documents for "g$lshzxetd" (every class but `m` and `n`).
    let has = |c: char| flags.contains(c) || (c != 'K' && flags.contains('A'));
    let missing_needed: String = KEYSPACE_FLAGS_NEEDED.chars().filter(|&c| !has(c)).collect();
    let missing_wanted: String = KEYSPACE_FLAGS_WANTED.chars().filter(|&c| !has(c)).collect();
    if !missing_needed.is_empty() {
        (
            KeyspaceEvents::Disabled,
            missing_needed + missing_wanted.as_str(),
        )
    } else if !missing_wanted.is_empty() {
        (KeyspaceEvents::Partial, missing_wanted)
    } else {
        (KeyspaceEvents::Enabled, String::new())
    }
}

/// The provider's counters, as one consistent-enough copy (each field is read on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProviderStats {
    /// Synced again after a session had been lost.
    pub reconnects: u64,
    /// Synced sessions that were lost later.
    pub disconnects: u64,
    /// Attempts that did not reach a synced session: connect, authentication, subscription or
    /// the first resync failed (at start or while reconnecting).
    pub connect_failures: u64,
    /// Full resyncs completed.
    pub resyncs: u64,
    /// Reads that found a malformed entry (one key counts again at every resync while it stays
    /// malformed).
    pub entries_skipped: u64,
    /// New route keys left out because the snapshot held `ROUTES_MAX` entries.
    pub routes_over_limit: u64,
    /// Keyspace notifications received for route keys.
    pub events: u64,
    /// Snapshots published (changes).
    pub snapshots: u64,
    /// Wall-clock time of the last completed full resync; 0 before the first.
    pub last_sync_unix_ms: u64,
    pub connected: bool,
    /// Routes in the current snapshot.
    pub routes: u64,
    /// Keys skipped in the current snapshot.
    pub skipped: u64,
    pub keyspace_events: KeyspaceEvents,
    pub cache_writes: u64,
    pub cache_write_failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    reconnects: AtomicU64,
    disconnects: AtomicU64,
    connect_failures: AtomicU64,
    resyncs: AtomicU64,
    entries_skipped: AtomicU64,
    routes_over_limit: AtomicU64,
    events: AtomicU64,
    snapshots: AtomicU64,
    last_sync_unix_ms: AtomicU64,
    connected: AtomicBool,
    routes: AtomicU64,
    skipped: AtomicU64,
    keyspace_events: AtomicU8,
    cache_writes: AtomicU64,
    cache_write_failures: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn view(&self) -> ProviderStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProviderStats {
            reconnects: get(&self.reconnects),
            disconnects: get(&self.disconnects),
            connect_failures: get(&self.connect_failures),
            resyncs: get(&self.resyncs),
            entries_skipped: get(&self.entries_skipped),
            routes_over_limit: get(&self.routes_over_limit),
            events: get(&self.events),
            snapshots: get(&self.snapshots),
            last_sync_unix_ms: get(&self.last_sync_unix_ms),
            connected: self.connected.load(Ordering::Relaxed),
            routes: get(&self.routes),
            skipped: get(&self.skipped),
            keyspace_events: KeyspaceEvents::from_code(
                self.keyspace_events.load(Ordering::Relaxed),
            ),
            cache_writes: get(&self.cache_writes),
            cache_write_failures: get(&self.cache_write_failures),
        }
    }

    fn set_sizes(&self, snapshot: &RouteSnapshot) {
        self.routes
            .store(snapshot.routes.len() as u64, Ordering::Relaxed);
        self.skipped
            .store(snapshot.skipped.len() as u64, Ordering::Relaxed);
    }
}

/// Owns the provider's tasks. Dropping it stops them (without waiting); [`Self::shutdown`]
/// stops them and waits, so the last cache write is on disk when it returns.
#[derive(Debug)]
pub struct ProviderHandle {
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    synced: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ProviderHandle {
    pub fn stats(&self) -> ProviderStats {
        self.counters.view()
    }

    /// Waits until the first full resync with Redis has completed (true), or `limit` passed
    /// (false). Lets a starting node wait briefly for Redis's routes before it opens listeners
    /// with only the cached ones.
    pub async fn wait_synced(&self, limit: Duration) -> bool {
        let mut synced = self.synced.clone();
        matches!(
            tokio::time::timeout(limit, synced.wait_for(|s| *s)).await,
            Ok(Ok(_))
        )
    }

    /// Stops the provider and waits for its tasks, including a pending cache write.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for ProviderHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Starts the provider on the current tokio runtime (call it from inside the control thread's
/// runtime; like `tokio::spawn`, it panics outside one).
///
/// The receiver holds, from the start, the routes of `cache_file` when it names a readable cache
/// of this Redis, else an empty snapshot; after that, a new snapshot after every change seen in
/// Redis (never an equal one). `cache_file` is rewritten atomically after each change.
pub fn spawn(
    cfg: RedisProviderCfg,
    cache_file: Option<PathBuf>,
) -> Result<(watch::Receiver<Arc<RouteSnapshot>>, ProviderHandle), CfgError> {
    let address = cfg.validate()?;
    let source = CacheSource {
        address: cfg.address.clone(),
        db: cfg.db,
        key_prefix: cfg.key_prefix.clone(),
    };
    let initial = match &cache_file {
        Some(path) => load_cache(path, &source),
        None => RouteSnapshot::default(),
    };
    let counters = Arc::new(Counters::default());
    counters.set_sizes(&initial);
    let (tx, rx) = watch::channel(Arc::new(initial.clone()));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (synced_tx, synced_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(2);
    if let Some(path) = cache_file {
        // Subscribed before the watcher runs: the initial value counts as written, and every
        // later snapshot is seen by the writer (the watch keeps only the newest).
        let updates = tx.subscribe();
        tasks.push(tokio::spawn(write_cache(
            path,
            source,
            updates,
            counters.clone(),
        )));
    }
    let watcher = Watcher {
        prefix: cfg.key_prefix.as_bytes().to_vec(),
        cfg,
        address,
        tx,
        working: initial,
        counters: counters.clone(),
        synced: synced_tx,
        skip_log: LogLimiter::new(Duration::from_secs(60), SKIP_LOG_PER_MINUTE),
        rng: seed(),
        keyspace_logged: None,
        outage: None,
        ever_synced: false,
    };
    tasks.push(tokio::spawn(watcher.run(shutdown_rx)));
    Ok((
        rx,
        ProviderHandle {
            counters,
            shutdown: shutdown_tx,
            synced: synced_rx,
            tasks,
        },
    ))
}

fn load_cache(path: &Path, source: &CacheSource) -> RouteSnapshot {
    match cache::load(path, source) {
        Ok(Some(snapshot)) => {
            info!(
                target: "ringway::provider",
                path = %path.display(),
                routes = snapshot.routes.len(),
                "route cache loaded; serving it until Redis answers"
            );
            snapshot
        }
        Ok(None) => {
            info!(target: "ringway::provider", path = %path.display(), "no route cache yet");
            RouteSnapshot::default()
        }
        Err(e) => {
            warn!(target: "ringway::provider", error = %e, "route cache not used");
            RouteSnapshot::default()
        }
    }
}

async fn write_cache(
    path: PathBuf,
    source: CacheSource,
    mut updates: watch::Receiver<Arc<RouteSnapshot>>,
    counters: Arc<Counters>,
) {
    let mut failing = false;
    while updates.changed().await.is_ok() {
        let snapshot = updates.borrow_and_update().clone();
        let (path2, source2) = (path.clone(), source.clone());
        // Serializing and fsyncing a large snapshot would stall the control thread's runtime.
        let written = tokio::task::spawn_blocking(move || {
            let bytes = cache::encode(&snapshot, &source2, now_unix_ms());
            cache::write_atomic(&path2, &bytes)
        })
        .await;
        match written {
            Ok(Ok(())) => {
                bump(&counters.cache_writes);
                if failing {
                    info!(target: "ringway::provider", path = %path.display(), "route cache written again");
                }
                failing = false;
            }
            Ok(Err(e)) => {
                bump(&counters.cache_write_failures);
                if !failing {
                    warn!(target: "ringway::provider", error = %e, "route cache not written; routes still apply");
                }
                failing = true;
            }
            Err(e) => {
                bump(&counters.cache_write_failures);
                warn!(target: "ringway::provider", error = %e, "route cache writer failed");
            }
        }
    }
}

/// Why a session with Redis ended or never started. All of them are retried with backoff.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Redis(#[from] ::redis::RedisError),
    #[error("{what} took longer than {limit:?}")]
    Timeout { what: &'static str, limit: Duration },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("the subscription connection closed")]
    SubscriptionClosed,
}

enum SessionEnd {
    Shutdown,
    /// `synced`: the session had completed its first full resync.
    Lost {
        error: SessionError,
        synced: bool,
    },
}

/// Since when Redis has been unavailable, for the log line that ends the outage.
struct Outage {
    since: Instant,
    failed_attempts: u32,
}

/// A session's two connections: commands, and the subscription already in place.
struct Conn {
    cmd: ::redis::aio::MultiplexedConnection,
    events: ::redis::aio::PubSubStream,
}

struct Watcher {
    cfg: RedisProviderCfg,
    address: RedisAddress,
    prefix: Vec<u8>,
    tx: watch::Sender<Arc<RouteSnapshot>>,
    /// What Redis holds as far as this provider knows; published when it changes.
    working: RouteSnapshot,
    counters: Arc<Counters>,
    synced: watch::Sender<bool>,
    skip_log: LogLimiter,
    rng: u64,
    /// The keyspace-events state last logged, so a reconnect does not repeat the warning.
    keyspace_logged: Option<KeyspaceEvents>,
    /// Set from a failed start or a lost session until a session has synced again.
    outage: Option<Outage>,
    /// A session has synced at least once (so the next one is a reconnect).
    ever_synced: bool,
}

impl Watcher {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        // Consecutive attempts that did not reach a synced session; drives the backoff.
        let mut failures: u32 = 0;
        loop {
            let attempt = tokio::select! {
                conn = self.connect() => conn,
                _ = stopped(&mut shutdown) => return,
            };
            let failed = match attempt {
                Ok(conn) => {
                    self.counters.connected.store(true, Ordering::Relaxed);
                    let end = self.serve(conn, &mut shutdown).await;
                    self.counters.connected.store(false, Ordering::Relaxed);
                    match end {
                        SessionEnd::Shutdown => return,
                        SessionEnd::Lost {
                            error,
                            synced: true,
                        } => {
                            bump(&self.counters.disconnects);
                            warn!(
                                target: "ringway::provider",
                                address = %self.cfg.address,
                                %error,
                                routes = self.working.routes.len(),
                                "lost Redis; keeping the current routes and reconnecting"
                            );
                            self.outage = Some(Outage {
                                since: Instant::now(),
                                failed_attempts: 0,
                            });
                            failures = 0;
                            None
                        }
                        // Connected but never synced (a resync refused or timing out, say): a
                        // failed attempt, so a Redis that accepts and then fails every session
                        // is retried with growing delays and logged once, not in a tight loop.
                        SessionEnd::Lost {
                            error,
                            synced: false,
                        } => Some(error),
                    }
                }
                Err(error) => Some(error),
            };
            if let Some(error) = failed {
                bump(&self.counters.connect_failures);
                failures = failures.saturating_add(1);
                match &mut self.outage {
                    Some(outage) => {
                        outage.failed_attempts += 1;
                        debug!(target: "ringway::provider", %error, failures, "Redis still unavailable");
                    }
                    None => {
                        warn!(
                            target: "ringway::provider",
                            address = %self.cfg.address,
                            %error,
                            routes = self.working.routes.len(),
                            "cannot sync with Redis; serving the routes held so far (cached or none) and retrying"
                        );
                        self.outage = Some(Outage {
                            since: Instant::now(),
                            failed_attempts: 1,
                        });
                    }
                }
            }
            let jitter = next_unit(&mut self.rng);
            let delay = backoff_delay(
                failures,
                RECONNECT_BACKOFF_MIN,
                self.cfg.reconnect_backoff_max,
                jitter,
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }

    /// A session became useful (its first resync is done): ends an outage, counts a reconnect.
    fn session_synced(&mut self) {
        // The first session without an outage: "initial route sync done" has said it all.
        if let Some(outage) = self.outage.take() {
            if self.ever_synced {
                bump(&self.counters.reconnects);
            }
            info!(
                target: "ringway::provider",
                address = %self.cfg.address,
                failed_attempts = outage.failed_attempts,
                outage_ms = outage.since.elapsed().as_millis() as u64,
                "{}",
                if self.ever_synced {
                    "connected to Redis again; routes resynced"
                } else {
                    "connected to Redis after failed attempts; routes synced"
                }
            );
        }
        self.ever_synced = true;
    }

    async fn connect(&mut self) -> Result<Conn, SessionError> {
        let client = self.client()?;
        let config = ::redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.cfg.connect_timeout))
            .set_response_timeout(Some(self.cfg.command_timeout));
        let mut cmd = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        // A connection counts as up only once Redis answers and the subscription is in place:
        // a wrong password (NOAUTH, WRONGPASS) is a failed connect, not a session that is
        // "lost" right away and logged as such at every retry.
        ::redis::cmd("PING").exec_async(&mut cmd).await?;
        let mut pubsub = timeout(
            self.cfg.connect_timeout,
            "subscription connect",
            client.get_async_pubsub(),
        )
        .await??;
        let pattern = [
            format!("__keyspace@{}__:", self.cfg.db).as_bytes(),
            &match_pattern(&self.prefix),
        ]
        .concat();
        timeout(
            self.cfg.command_timeout,
            "PSUBSCRIBE",
            pubsub.psubscribe(pattern.as_slice()),
        )
        .await??;
        // Only a label for operators; a Redis that refuses it still serves routes.
        let _ = ::redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(CLIENT_NAME)
            .exec_async(&mut cmd)
            .await;
        Ok(Conn {
            cmd,
            events: pubsub.into_on_message(),
        })
    }

    fn client(&self) -> Result<::redis::Client, SessionError> {
        use ::redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
        let addr = match &self.address {
            RedisAddress::Tcp { host, port } => ConnectionAddr::Tcp(host.clone(), *port),
            RedisAddress::Tls { host, port } => {
                // rustls needs one process-wide crypto provider; ringway uses aws-lc-rs. Fails
                // harmlessly when one is installed already.
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            }
            RedisAddress::Unix(path) => ConnectionAddr::Unix(path.clone()),
        };
        let mut settings = RedisConnectionInfo::default()
            .set_db(i64::from(self.cfg.db))
            .set_skip_set_lib_name();
        if let Some(user) = &self.cfg.username {
            settings = settings.set_username(user);
        }
        if let Some(path) = &self.cfg.password_file {
            settings = settings.set_password(read_password(path)?);
        }
        let info = addr.into_connection_info()?.set_redis_settings(settings);
        Ok(match &self.cfg.tls_ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| SessionError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                ::redis::Client::build_with_tls(
                    info,
                    ::redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )?
            }
            None => ::redis::Client::open(info)?,
        })
    }

    async fn serve(&mut self, conn: Conn, shutdown: &mut watch::Receiver<bool>) -> SessionEnd {
        let Conn {
            mut cmd,
            mut events,
        } = conn;
        let mut synced = false;
        macro_rules! or_lost {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => {
                        return SessionEnd::Lost {
                            error: e.into(),
                            synced,
                        };
                    }
                }
            };
        }
        or_lost!(self.check_keyspace_events(&mut cmd).await);
        let channel_prefix = format!("__keyspace@{}__:", self.cfg.db).into_bytes();

        tokio::select! {
            r = self.full_resync(&mut cmd) => or_lost!(r),
            _ = stopped(shutdown) => return SessionEnd::Shutdown,
        }
        synced = true;
        self.session_synced();
        let mut resync_at = tokio::time::Instant::now() + self.cfg.resync_interval;
        let mut dirty: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut overflowed = false;
        let mut flush_at: Option<tokio::time::Instant> = None;
        loop {
            enum Step {
                Stop,
                Event(::redis::Msg),
                Closed,
                Flush,
                Resync,
            }
            let step = tokio::select! {
                biased;
                _ = stopped(shutdown) => Step::Stop,
                msg = events.next() => match msg {
                    Some(m) => Step::Event(m),
                    None => Step::Closed,
                },
                _ = sleep_until_opt(flush_at), if flush_at.is_some() => Step::Flush,
                _ = tokio::time::sleep_until(resync_at) => Step::Resync,
            };
            match step {
                Step::Stop => return SessionEnd::Shutdown,
                Step::Closed => {
                    return SessionEnd::Lost {
                        error: SessionError::SubscriptionClosed,
                        synced,
                    };
                }
                Step::Event(msg) => {
                    let channel: Vec<u8> = msg.get_channel().unwrap_or_default();
                    let Some(key) = channel.strip_prefix(channel_prefix.as_slice()) else {
                        continue;
                    };
                    bump(&self.counters.events);
                    if dirty.len() < DIRTY_KEYS_MAX {
                        dirty.insert(key.to_vec());
                    } else {
                        overflowed = true;
                    }
                    if flush_at.is_none() {
                        flush_at = Some(tokio::time::Instant::now() + self.cfg.coalesce);
                    }
                }
                Step::Flush => {
                    flush_at = None;
                    let keys = std::mem::take(&mut dirty);
                    let work = async {
                        if overflowed {
                            debug!(target: "ringway::provider", "more than {DIRTY_KEYS_MAX} keys changed at once; full resync");
                            self.full_resync(&mut cmd).await
                        } else {
                            self.refresh_keys(&mut cmd, keys).await
                        }
                    };
                    tokio::select! {
                        r = work => or_lost!(r),
                        _ = stopped(shutdown) => return SessionEnd::Shutdown,
                    }
                    if overflowed {
                        overflowed = false;
                        resync_at = tokio::time::Instant::now() + self.cfg.resync_interval;
                    }
                }
                Step::Resync => {
                    // The resync reads every key as it is now, so pending events are covered;
                    // events that arrive during it are read again after it.
                    dirty.clear();
                    overflowed = false;
                    flush_at = None;
                    tokio::select! {
                        r = self.full_resync(&mut cmd) => or_lost!(r),
                        _ = stopped(shutdown) => return SessionEnd::Shutdown,
                    }
                    resync_at = tokio::time::Instant::now() + self.cfg.resync_interval;
                }
            }
        }
    }

    /// Reads `notify-keyspace-events` and logs what it means, once per change of state. Only a
    /// broken connection is an error; a refused `CONFIG GET` leaves the state unknown.
    ///
    /// The provider never runs `CONFIG SET` itself: it changes a server-wide setting under every
    /// other client, managed Redis services refuse it, a read-only ACL user should be enough to
    /// read routes, and a `CONFIG SET` is lost at the server's next restart unless someone also
    /// runs `CONFIG REWRITE`. Saying what to set, once and clearly, is the better default.
    async fn check_keyspace_events(
        &mut self,
        cmd: &mut ::redis::aio::MultiplexedConnection,
    ) -> Result<(), ::redis::RedisError> {
        let reply: Result<HashMap<String, String>, _> = ::redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query_async(cmd)
            .await;
        let (state, flags, missing) = match reply {
            Ok(map) => {
                let flags = map
                    .get("notify-keyspace-events")
                    .cloned()
                    .unwrap_or_default();
                let (state, missing) = keyspace_events_state(&flags);
                (state, flags, missing)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ::redis::ErrorKind::Server(_) | ::redis::ErrorKind::Extension
                ) =>
            {
                (KeyspaceEvents::Unknown, e.to_string(), String::new())
            }
            Err(e) => return Err(e),
        };
        self.counters
            .keyspace_events
            .store(state.code(), Ordering::Relaxed);
        if self.keyspace_logged == Some(state) {
            return Ok(());
        }
        self.keyspace_logged = Some(state);
        let resync_s = self.cfg.resync_interval.as_secs_f64();
        match state {
            KeyspaceEvents::Enabled => info!(
                target: "ringway::provider",
                address = %self.cfg.address,
                notify_keyspace_events = %flags,
                "keyspace notifications on: route changes apply within the coalesce window"
            ),
            KeyspaceEvents::Partial => warn!(
                target: "ringway::provider",
                address = %self.cfg.address,
                notify_keyspace_events = %flags,
                missing = %missing,
                "keyspace notifications miss some classes ($: SET over a route key, x: expiry, e: eviction); \
                 those changes apply only at the next resync (every {resync_s}s). Set notify-keyspace-events {KEYSPACE_FLAGS_RECOMMENDED} on this Redis"
            ),
            KeyspaceEvents::Disabled => warn!(
                target: "ringway::provider",
                address = %self.cfg.address,
                notify_keyspace_events = %flags,
                missing = %missing,
                "keyspace notifications are DISABLED for route keys: route changes apply only at each resync (every {resync_s}s). \
                 Run `CONFIG SET notify-keyspace-events {KEYSPACE_FLAGS_RECOMMENDED}` on every Redis ringway reads from and put it in redis.conf; \
                 ringway does not change Redis settings itself"
            ),
            KeyspaceEvents::Unknown => warn!(
                target: "ringway::provider",
                address = %self.cfg.address,
                reply = %flags,
                "cannot read notify-keyspace-events (CONFIG GET refused); subscribed anyway. If notifications are off, \
                 route changes apply only at each resync (every {resync_s}s); see docs/fleet.md"
            ),
        }
        Ok(())
    }

    async fn full_resync(
        &mut self,
        cmd: &mut ::redis::aio::MultiplexedConnection,
    ) -> Result<(), SessionError> {
        let started = Instant::now();
        let (keys, over_limit) = self.scan_keys(cmd).await?;
        let mut fresh = RouteSnapshot::default();
        let keys: Vec<Vec<u8>> = keys.into_iter().collect();
        for chunk in keys.chunks(READ_BATCH_KEYS) {
            let reads = self.read_keys(cmd, chunk).await?;
            for (key, read) in chunk.iter().zip(reads) {
                let applied = fresh.apply(&self.prefix, key, read);
                self.note(key, &applied);
            }
        }
        if over_limit > 0 {
            self.counters
                .routes_over_limit
                .fetch_add(over_limit, Ordering::Relaxed);
            warn!(
                target: "ringway::provider",
                left_out = over_limit,
                "more than {ROUTES_MAX} route keys; the ones that sort last are left out"
            );
        }
        let first = !*self.synced.borrow();
        let changes = if fresh == self.working {
            0
        } else {
            super::snapshot::diff(&self.working, &fresh).len().max(1)
        };
        self.working = fresh;
        bump(&self.counters.resyncs);
        self.counters
            .last_sync_unix_ms
            .store(now_unix_ms(), Ordering::Relaxed);
        if changes > 0 {
            self.publish();
        } else {
            self.counters.set_sizes(&self.working);
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if first {
            info!(
                target: "ringway::provider",
                address = %self.cfg.address,
                routes = self.working.routes.len(),
                skipped = self.working.skipped.len(),
                elapsed_ms,
                "initial route sync done"
            );
        } else if changes > 0 {
            // After a reconnect this is expected; otherwise an event was missed.
            info!(
                target: "ringway::provider",
                changes,
                routes = self.working.routes.len(),
                elapsed_ms,
                "resync found changes no event had announced"
            );
        } else {
            debug!(target: "ringway::provider", routes = self.working.routes.len(), elapsed_ms, "resync: no change");
        }
        self.synced.send_replace(true);
        Ok(())
    }

    /// Every route key, sorted; at most `ROUTES_MAX` (the lowest), with how many were left out.
    async fn scan_keys(
        &mut self,
        cmd: &mut ::redis::aio::MultiplexedConnection,
    ) -> Result<(BTreeSet<Vec<u8>>, u64), SessionError> {
        let pattern = match_pattern(&self.prefix);
        let mut keys: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut over_limit = 0u64;
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern.as_slice())
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(cmd)
                .await?;
            for key in batch {
                // SCAN may return a key twice; the set absorbs that. Keeping the lowest keys is
                // what every node does, so nodes over the limit still agree.
                if keys.insert(key) && keys.len() > ROUTES_MAX {
                    keys.pop_last();
                    over_limit += 1;
                }
            }
            if next == 0 {
                return Ok((keys, over_limit));
            }
            cursor = next;
        }
    }

    /// One pipelined read of `keys`; a wrong-typed key costs one more pipelined `TYPE`.
    async fn read_keys(
        &mut self,
        cmd: &mut ::redis::aio::MultiplexedConnection,
        keys: &[Vec<u8>],
    ) -> Result<Vec<KeyRead>, SessionError> {
        use ::redis::Value;
        let mut pipe = ::redis::pipe();
        pipe.ignore_errors();
        for key in keys {
            pipe.cmd("LRANGE")
                .arg(key.as_slice())
                .arg(0)
                .arg(SERVERS_PER_ROUTE_MAX + 1);
        }
        let replies: Vec<Value> = pipe.query_async(cmd).await?;
        let mut reads: Vec<KeyRead> = Vec::with_capacity(keys.len());
        let mut wrong_type: Vec<usize> = Vec::new();
        for (i, reply) in replies.into_iter().enumerate() {
            reads.push(match reply {
                Value::Array(items) => KeyRead::List(
                    items
                        .into_iter()
                        .map(|v| match v {
                            Value::BulkString(b) => b,
                            other => format!("{other:?}").into_bytes(),
                        })
                        .collect(),
                ),
                Value::Nil => KeyRead::Missing,
                Value::ServerError(e) if e.code() == "WRONGTYPE" => {
                    wrong_type.push(i);
                    KeyRead::WrongType("other type".to_owned())
                }
                Value::ServerError(e) => KeyRead::Refused(e.to_string()),
                other => KeyRead::Refused(format!("unexpected reply {other:?}")),
            });
        }
        if reads.len() != keys.len() {
            return Err(SessionError::Redis(::redis::RedisError::from((
                ::redis::ErrorKind::Client,
                "pipeline reply count differs from its commands",
            ))));
        }
        if !wrong_type.is_empty() {
            let mut pipe = ::redis::pipe();
            pipe.ignore_errors();
            for &i in &wrong_type {
                if let Some(key) = keys.get(i) {
                    pipe.cmd("TYPE").arg(key.as_slice());
                }
            }
            let types: Vec<Value> = pipe.query_async(cmd).await?;
            for (&i, t) in wrong_type.iter().zip(types) {
                let found = match t {
                    Value::SimpleString(s) => s,
                    Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                    _ => continue,
                };
                if found == "none" {
                    // Deleted between the two reads; its event will follow.
                    if let Some(slot) = reads.get_mut(i) {
                        *slot = KeyRead::Missing;
                    }
                } else if let Some(slot) = reads.get_mut(i) {
                    *slot = KeyRead::WrongType(found);
                }
            }
        }
        Ok(reads)
    }

    async fn refresh_keys(
        &mut self,
        cmd: &mut ::redis::aio::MultiplexedConnection,
        keys: BTreeSet<Vec<u8>>,
    ) -> Result<(), SessionError> {
        let keys: Vec<Vec<u8>> = keys.into_iter().collect();
        let mut changed = false;
        for chunk in keys.chunks(READ_BATCH_KEYS) {
            let reads = self.read_keys(cmd, chunk).await?;
            for (key, read) in chunk.iter().zip(reads) {
                let applied = self.working.apply(&self.prefix, key, read);
                self.note(key, &applied);
                if applied.over_limit {
                    bump(&self.counters.routes_over_limit);
                }
                changed |= applied.changed;
            }
        }
        if changed {
            self.publish();
        }
        debug!(target: "ringway::provider", keys = keys.len(), changed, "re-read changed keys");
        Ok(())
    }

    fn note(&mut self, key: &[u8], applied: &Applied) {
        if let Some(error) = &applied.error {
            bump(&self.counters.entries_skipped);
            match self.skip_log.admit(Instant::now()) {
                Admit::Log { suppressed } => {
                    if suppressed > 0 {
                        debug!(target: "ringway::provider", suppressed, "skipped-entry lines suppressed in the last minute");
                    }
                    debug!(target: "ringway::provider", key = %lossy(key), %error, "route entry skipped");
                }
                Admit::Drop => {}
            }
        }
    }

    fn publish(&mut self) {
        self.counters.set_sizes(&self.working);
        bump(&self.counters.snapshots);
        self.tx.send_replace(Arc::new(self.working.clone()));
    }
}

async fn timeout<F: std::future::Future>(
    limit: Duration,
    what: &'static str,
    fut: F,
) -> Result<F::Output, SessionError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| SessionError::Timeout { what, limit })
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves once shutdown is asked for or the handle is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn read_password(path: &Path) -> Result<String, SessionError> {
    use std::io::Read;
    let err = |reason: String| SessionError::File {
        path: path.to_path_buf(),
        reason,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(PASSWORD_FILE_BYTES_MAX + 1)
                .read_to_string(&mut text)
        })
        .map_err(|e| err(e.to_string()))?;
    if text.len() as u64 > PASSWORD_FILE_BYTES_MAX {
        return Err(err(format!(
            "larger than {PASSWORD_FILE_BYTES_MAX} bytes; a password file holds one line"
        )));
    }
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(err("empty".to_owned()));
    }
    if password.contains('\n') {
        return Err(err("more than one line".to_owned()));
    }
    Ok(password.to_owned())
}

/// `<escaped prefix>frontend:*`, for SCAN MATCH and PSUBSCRIBE: glob characters in the prefix
/// are escaped so that `a*:` matches only itself.
pub fn match_pattern(prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() * 2 + FRONTEND_TAG.len() + 1);
    for &b in prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.extend_from_slice(FRONTEND_TAG);
    out.push(b'*');
    out
}

/// Delay before reconnect attempt number `failures` (0 right after a loss): doubling from `min`
/// up to `max`, then "equal jitter" — half the step fixed, half random (`jitter` in [0, 1]) — so
/// a fleet that lost Redis together does not reconnect in lockstep, and no node retries sooner
/// than half its step.
pub fn backoff_delay(failures: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let step = min.saturating_mul(1u32 << failures.min(20)).min(max);
    step / 2 + step.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15
}

/// splitmix64 to [0, 1): jitter only, so no crate for it.
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Lets at most `per_window` lines through per `window`, and says how many it held back.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    window: Duration,
    per_window: u32,
    window_start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Log this line; `suppressed` lines were dropped since the last one logged.
    Log {
        suppressed: u64,
    },
    Drop,
}

impl LogLimiter {
    pub(crate) fn new(window: Duration, per_window: u32) -> Self {
        LogLimiter {
            window,
            per_window,
            window_start: None,
            used: 0,
            suppressed: 0,
        }
    }

    pub(crate) fn admit(&mut self, now: Instant) -> Admit {
        let fresh = match self.window_start {
            None => true,
            Some(start) => now.saturating_duration_since(start) >= self.window,
        };
        if fresh {
            self.window_start = Some(now);
            self.used = 0;
        }
        if self.used < self.per_window {
            self.used += 1;
            Admit::Log {
                suppressed: std::mem::take(&mut self.suppressed),
            }
        } else {
            self.suppressed += 1;
            Admit::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let tcp = |host: &str, port| RedisAddress::Tcp {
            host: host.into(),
            port,
        };
        assert_eq!(
            parse_address("redis://127.0.0.1:6380"),
            Ok(tcp("127.0.0.1", 6380))
        );
        assert_eq!(
            parse_address("redis://redis.internal"),
            Ok(tcp("redis.internal", 6379))
        );
        assert_eq!(parse_address("redis://[::1]:7000/"), Ok(tcp("::1", 7000)));
        assert_eq!(parse_address("redis://[::1]"), Ok(tcp("::1", 6379)));
        assert_eq!(
            parse_address("rediss://r.example:6380"),
            Ok(RedisAddress::Tls {
                host: "r.example".into(),
                port: 6380
            })
        );
        assert_eq!(
            parse_address("unix:///run/redis/redis.sock"),
            Ok(RedisAddress::Unix("/run/redis/redis.sock".into()))
        );
    }

    #[test]
    fn address_errors() {
        assert!(matches!(
            parse_address("redis://:secret@127.0.0.1"),
            Err(CfgError::CredentialsInAddress { .. })
        ));
        assert!(matches!(
            parse_address("redis://user:pw@127.0.0.1"),
            Err(CfgError::CredentialsInAddress { .. })
        ));
        for bad in [
            "127.0.0.1:6379",
            "http://127.0.0.1",
            "redis://",
            "redis://:6379",
            "redis://127.0.0.1:0",
            "redis://127.0.0.1:99999",
            "redis://127.0.0.1:x",
            "redis://127.0.0.1/3",
            "redis://127.0.0.1#prefix",
            "redis://127.0.0.1?protocol=resp3",
            "redis://::1",
            "redis://[::1",
            "redis://[zz]:1",
            "unix://relative.sock",
            "unix:///run/r.sock?db=1",
        ] {
            assert!(
                matches!(parse_address(bad), Err(CfgError::BadAddress { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_ranges() {
        assert!(RedisProviderCfg::default().validate().is_ok());
        let bad = RedisProviderCfg {
            resync_interval: Duration::from_millis(10),
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(CfgError::OutOfRange {
                key: "resync_interval",
                ..
            })
        ));
        let ca = RedisProviderCfg {
            tls_ca_file: Some("/ca.pem".into()),
            ..Default::default()
        };
        assert_eq!(ca.validate(), Err(CfgError::CaWithoutTls));
        let prefix = RedisProviderCfg {
            key_prefix: "x".repeat(KEY_PREFIX_BYTES_MAX + 1),
            ..Default::default()
        };
        assert!(matches!(
            prefix.validate(),
            Err(CfgError::PrefixTooLong { .. })
        ));
        let db = RedisProviderCfg {
            db: u32::MAX,
            ..Default::default()
        };
        assert!(matches!(db.validate(), Err(CfgError::DbOutOfRange { .. })));
    }

    #[test]
    fn keyspace_flags() {
        assert_eq!(keyspace_events_state("").0, KeyspaceEvents::Disabled);
        assert_eq!(
            keyspace_events_state("Ex"),
            (KeyspaceEvents::Disabled, "Kgl$e".to_owned())
        );
        assert_eq!(keyspace_events_state("A").0, KeyspaceEvents::Disabled);
        assert_eq!(keyspace_events_state("KA").0, KeyspaceEvents::Enabled);
        assert_eq!(keyspace_events_state("AKE").0, KeyspaceEvents::Enabled);
        assert_eq!(keyspace_events_state("gl$xeK").0, KeyspaceEvents::Enabled);
        assert_eq!(
            keyspace_events_state("Kgl"),
            (KeyspaceEvents::Partial, "$xe".to_owned())
        );
        assert_eq!(
            keyspace_events_state("Kl").0,
            KeyspaceEvents::Disabled,
            "without g a DEL goes unseen"
        );
    }

    #[test]
    fn patterns_escape_the_prefix() {
        assert_eq!(match_pattern(b""), b"frontend:*");
        assert_eq!(match_pattern(b"app:"), b"app:frontend:*");
        assert_eq!(
            match_pattern(b"a*b?[c]\\:"),
            b"a\\*b\\?\\[c\\]\\\\:frontend:*"
        );
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        assert_eq!(backoff_delay(0, min, max, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(0, min, max, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(3, min, max, 1.0), Duration::from_millis(800));
        assert_eq!(backoff_delay(3, min, max, 0.5), Duration::from_millis(600));
        assert_eq!(backoff_delay(10, min, max, 1.0), max);
        assert_eq!(backoff_delay(u32::MAX, min, max, 0.0), max / 2);
        let mut rng = 42;
        for _ in 0..1000 {
            let u = next_unit(&mut rng);
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn log_limiter_holds_back_and_reports() {
        let t0 = Instant::now();
        let mut lim = LogLimiter::new(Duration::from_secs(60), 2);
        assert_eq!(lim.admit(t0), Admit::Log { suppressed: 0 });
        assert_eq!(lim.admit(t0), Admit::Log { suppressed: 0 });
        assert_eq!(lim.admit(t0 + Duration::from_secs(1)), Admit::Drop);
        assert_eq!(lim.admit(t0 + Duration::from_secs(2)), Admit::Drop);
        assert_eq!(
            lim.admit(t0 + Duration::from_secs(61)),
            Admit::Log { suppressed: 2 }
        );
    }

    #[test]
    fn password_files() {
        let dir = std::env::temp_dir().join(format!("ringway-pw-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        assert_eq!(read_password(&file("a", "s3cret\n")).unwrap(), "s3cret");
        assert_eq!(read_password(&file("b", "s3cret\r\n")).unwrap(), "s3cret");
        assert_eq!(read_password(&file("c", "s3cret")).unwrap(), "s3cret");
        assert!(read_password(&file("d", "\n")).is_err());
        assert!(read_password(&file("e", "a\nb\n")).is_err());
        assert!(read_password(&file("f", &"x".repeat(5000))).is_err());
        assert!(read_password(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
