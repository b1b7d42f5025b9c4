//! Owns: one shard's view of its backends — each backend's configuration (a per-shard copy), its
//! servers' balancing state (weights, health, open connections, maxconn limits), passive-health
//! counters, the queue of requests waiting for a server under its maxconn, the idle connection
//! pool ([`pool`]), and the one error type of the upstream layer with its status mapping
//! ([`UpstreamError`]).
//! Must not: do I/O, read the clock or see other shards. Connections are slab keys owned by the
//! driver; this module only decides and counts.

pub mod pool;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::balancer::{
    Algorithm, Candidates, LeastConn, Maglev, PowerOfTwo, ServerView, SmoothWeightedRoundRobin,
    hash_bytes,
};
use crate::config::{AdminState, Balance, HashKey};
use crate::ids::{BackendId, ServerId};
use crate::latency::{Latency, LatencyKind, LatencyRange, LatencySet};
use crate::proxy_protocol::ProxyVersion;
use crate::session::{Lane, Pick};
use crate::shard::slab::Key;
use crate::stats::{BackendStats, ServerStats};

pub use pool::{Pool, Pooled};

/// Why talking to a backend failed. The status a client gets and whether another attempt is safe
/// are decided here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("no server can take the request")]
    NoServer,
    #[error("backend queue full")]
    QueueFull,
    #[error("waited in the backend queue too long")]
    QueueTimeout,
    #[error("connect failed (errno {0})")]
    Connect(i32),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("TLS to the server failed")]
    Tls,
    #[error("the server closed the connection")]
    Closed,
    #[error("connection to the server failed (errno {0})")]
    Reset(i32),
    #[error("invalid response from the server")]
    BadResponse,
    #[error("the server did not answer in time")]
    ResponseTimeout,
    #[error("the backend no longer exists")]
    Gone,
}

impl UpstreamError {
    /// The status a client gets when this happens before any response byte reached it.
    pub fn status(self) -> u16 {
        match self {
            UpstreamError::NoServer
            | UpstreamError::QueueFull
            | UpstreamError::QueueTimeout
            | UpstreamError::Gone => 503,
            UpstreamError::ConnectTimeout | UpstreamError::ResponseTimeout => 504,
            UpstreamError::Connect(_)
            | UpstreamError::Tls
            | UpstreamError::Closed
            | UpstreamError::Reset(_)
            | UpstreamError::BadResponse => 502,
        }
    }

    /// Another attempt (on another server) is safe whatever the request: the server cannot have
    /// seen a byte of it (HAProxy retries connection failures; RFC 9110 §9.2.2 leaves the rest to
    /// idempotence, which the session decides with the request in hand).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout | UpstreamError::Tls
        )
    }

    /// The connection died without a word: a replayable request may be sent again elsewhere.
    pub fn is_lost_connection(self) -> bool {
        matches!(self, UpstreamError::Closed | UpstreamError::Reset(_))
    }

    /// Counts as a timeout (access log term, counters) rather than a server error.
    pub fn is_timeout(self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout
                | UpstreamError::ResponseTimeout
                | UpstreamError::QueueTimeout
        )
    }
}

/// How one attempt at a server ended, for passive health and per-server counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A TCP connection was established (L4: that is the whole check).
    Connected,
    /// The connect failed or timed out.
    Failed,
    /// The server answered with this status (5xx counts as a failure).
    Response(u16),
}

/// One server as configured, with its stable id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCfg {
    pub id: ServerId,
    pub name: String,
    pub address: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    /// 0 = unlimited; split across shards by the caller (`limit`).
    pub maxconn: u32,
    pub send_proxy: Option<ProxyVersion>,
    /// `drain` and `maint` take the server out of the balancing algorithm (weight 0 for it);
    /// `maint` also refuses sticky requests.
    pub admin: crate::config::AdminState,
}

/// TLS to the servers of one backend, as one shard uses it.
#[derive(Clone)]
pub struct UpstreamTlsCfg {
    /// This shard's own client configuration (own session cache).
    pub config: Arc<rustls::ClientConfig>,
    pub sni: Option<String>,
}

impl std::fmt::Debug for UpstreamTlsCfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTlsCfg")
            .field("sni", &self.sni)
            .finish()
    }
}

impl PartialEq for UpstreamTlsCfg {
    fn eq(&self, other: &UpstreamTlsCfg) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.sni == other.sni
    }
}

/// A backend's configuration as one shard holds it (its own copy: nothing here is shared between
/// shards on the data path).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendCfg {
    pub id: BackendId,
    pub name: String,
    pub servers: Vec<ServerCfg>,
    pub balance: Balance,
    pub hash_key: HashKey,
    pub retries: u32,
    pub redispatch: bool,
    pub sticky_cookie: Option<String>,
    pub queue_max: u32,
    pub queue_timeout_ms: u64,
    pub idle_conns_max: u32,
    pub idle_timeout_ms: u64,
    /// Consecutive failures that eject a server (0 = passive health off).
    pub passive_failures: u32,
    pub tls: Option<UpstreamTlsCfg>,
    /// Changes whenever the TLS settings do (0: plain TCP): part of the pool's reuse key, so a
    /// reload that changes them never reuses a connection made with the old ones.
    pub tls_generation: u32,
}

impl BackendCfg {
    pub fn server(&self, id: ServerId) -> Option<&ServerCfg> {
        self.servers.iter().find(|s| s.id == id)
    }

    /// The server a sticky cookie value names.
    pub fn server_named(&self, name: &[u8]) -> Option<ServerId> {
        self.servers
            .iter()
            .find(|s| s.name.as_bytes() == name)
            .map(|s| s.id)
    }

    /// Candidates for one request or connection: the first attempt plus `retries`.
    pub fn candidates(&self) -> Candidates {
        Candidates::new(1 + self.retries as usize, self.redispatch)
    }

    pub fn is_maglev(&self) -> bool {
        self.balance == Balance::Maglev
    }
}

/// What this shard tracks of one server at run time.
#[derive(Debug, Clone)]
struct ServerRt {
    id: ServerId,
    /// ceil(maxconn / shards); 0 = none.
    limit: u32,
    selected: u64,
    fails: u32,
    stats: ServerStats,
    /// Request time of the requests this server answered (`None`: histograms off, or nothing
    /// recorded yet: allocated by the first request, see [`Backend::latency_mut`]).
    latency: Option<Latency>,
}

/// A server was ejected by passive health on this shard (tell the control thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejected {
    pub backend: BackendId,
    pub server: ServerId,
}

/// One backend as this shard runs it.
pub struct Backend {
    pub cfg: BackendCfg,
    algo: Algorithm,
    /// Parallel to `cfg.servers` and `servers` (what the algorithm sees).
    views: Vec<ServerView>,
    servers: Vec<ServerRt>,
    /// Sessions (and which of their lanes) waiting for a server under its maxconn, oldest first.
    pub queue: VecDeque<(Key, Lane)>,
    pub pool: Pool,
    /// The TLS generation pooled connections must have to be reused.
    pub tls_generation: u32,
    shard: usize,
    shard_count: usize,
    /// This backend's histograms on this shard (`None`: histograms off, or nothing recorded
    /// yet). Allocated once, by the first value recorded, then fixed: a node with 10,000
    /// Redis hosts pays 131 KiB only for those that get traffic, and a stats round copies only
    /// those.
    pub latency: Option<LatencySet>,
    /// Latency histograms are kept for this backend.
    histograms: bool,
}

impl Backend {
    pub fn new(cfg: BackendCfg, shard: usize, shard_count: usize) -> Backend {
        Backend::with_histograms(cfg, shard, shard_count, true)
    }

    /// [`Backend::new`], with or without latency histograms (fixed memory, allocated at the
    /// first request: one [`LatencySet`] plus one request histogram per server that answers;
    /// see `crate::latency`).
    pub fn with_histograms(
        cfg: BackendCfg,
        shard: usize,
        shard_count: usize,
        histograms: bool,
    ) -> Backend {
        let mut b = Backend {
            latency: None,
            histograms,
            algo: algorithm(&cfg, shard),
            cfg: BackendCfg {
                servers: Vec::new(),
                ..cfg.clone()
            },
            views: Vec::new(),
            servers: Vec::new(),
            queue: VecDeque::new(),
            pool: Pool::default(),
            tls_generation: 0,
            shard,
            shard_count: shard_count.max(1),
        };
        b.update(cfg, &mut Vec::new());
        b
    }

    /// Takes a new configuration of the same backend: servers that still exist keep their health,
    /// open-connection counts and counters; new ones start UP; removed ones are gone, and their
    /// pooled connections (and any made with other TLS settings) are put in `stale` for the
    /// caller to close.
    pub fn update(&mut self, cfg: BackendCfg, stale: &mut Vec<Key>) {
        let old_views = std::mem::take(&mut self.views);
        let old_servers = std::mem::take(&mut self.servers);
        let old_ids: Vec<ServerId> = self.cfg.servers.iter().map(|s| s.id).collect();
        for s in &cfg.servers {
            let kept = old_ids.iter().position(|&id| id == s.id);
            let limit = s.maxconn.div_ceil(self.shard_count as u32);
            let (mut view, mut rt) =
                match kept.and_then(|i| Some((old_views.get(i)?, old_servers.get(i)?))) {
                    Some((v, r)) => (v.clone(), r.clone()),
                    None => (
                        ServerView {
                            weight: s.weight,
                            backup: s.backup,
                            up: true,
                            available: true,
                            active: 0,
                            key: hash_bytes(s.name.as_bytes()),
                        },
                        ServerRt {
                            id: s.id,
                            limit,
                            selected: 0,
                            fails: 0,
                            stats: ServerStats::default(),
                            latency: None,
                        },
                    ),
                };
            view.weight = match s.admin {
                AdminState::Ready => s.weight,
                AdminState::Drain | AdminState::Maint => 0,
            };
            view.backup = s.backup;
            view.key = hash_bytes(s.name.as_bytes());
            rt.limit = limit;
            view.available = limit == 0 || view.active < limit;
            rt.stats.name.clone_from(&s.name);
            rt.stats.address = s.address.to_string();
            rt.stats.backup = s.backup;
            self.views.push(view);
            self.servers.push(rt);
        }
        // The algorithms' state (round-robin weights, the Maglev table) is over positions.
        self.algo = algorithm(&cfg, self.shard);
        // Idle pooled connections of drained servers close too: new requests do not go there.
        let live: Vec<ServerId> = cfg
            .servers
            .iter()
            .filter(|s| s.admin == AdminState::Ready)
            .map(|s| s.id)
            .collect();
        self.tls_generation = cfg.tls_generation;
        self.pool.take_stale(&live, cfg.tls_generation, stale);
        self.cfg = cfg;
    }

    fn position(&self, id: ServerId) -> Option<usize> {
        self.servers.iter().position(|s| s.id == id)
    }

    /// The next server for an attempt. A sticky server is preferred while it is UP, not full and
    /// not tried yet; otherwise the algorithm chooses among the servers not tried. When every
    /// server of the tier is at its limit and the queue has room, the request should queue.
    pub fn pick(
        &mut self,
        candidates: &mut Candidates,
        key: Option<u64>,
        sticky: Option<ServerId>,
    ) -> Pick {
        if let Some(i) = sticky.and_then(|s| self.position(s))
            && candidates.attempts() == 0
            && self.views.get(i).is_some_and(|v| v.up && v.available)
            && self
                .cfg
                .servers
                .get(i)
                .is_some_and(|s| s.admin != AdminState::Maint)
        {
            candidates.record(i);
            return self.chosen(i);
        }
        match candidates.next(&mut self.algo, &mut self.views, key) {
            Some(i) => self.chosen(i),
            None if candidates.attempts() == 0
                && self.all_full()
                && self.queue.len() < self.cfg.queue_max as usize =>
            {
                Pick::Queue
            }
            None => Pick::Unavailable,
        }
    }

    fn chosen(&mut self, i: usize) -> Pick {
        match self.servers.get_mut(i) {
            Some(s) => {
                s.selected += 1;
                Pick::Server(s.id)
            }
            None => Pick::Unavailable,
        }
    }

    /// Counts a connection attached to (`opened`) or released from `server` on this shard.
    pub fn count_active(&mut self, server: ServerId, opened: bool) {
        let Some(i) = self.position(server) else {
            return;
        };
        let limit = self.servers.get(i).map_or(0, |s| s.limit);
        if let Some(v) = self.views.get_mut(i) {
            v.active = if opened {
                v.active.saturating_add(1)
            } else {
                v.active.saturating_sub(1)
            };
            v.available = limit == 0 || v.active < limit;
        }
    }

    /// No server can be picked only because those of the tier are at their limit.
    fn all_full(&self) -> bool {
        let any_primary_up = self.views.iter().any(|v| v.up && v.weight > 0 && !v.backup);
        self.views
            .iter()
            .any(|v| v.up && v.weight > 0 && v.backup != any_primary_up && !v.available)
    }

    /// A queued request could be served now.
    pub fn any_available(&self) -> bool {
        self.views
            .iter()
            .any(|v| v.up && v.weight > 0 && v.available)
    }

    /// Passive health and per-server counters for one attempt. Returns an ejection when
    /// `passive_failures` consecutive failures (connect errors or 5xx) were reached on this shard.
    pub fn outcome(&mut self, server: ServerId, outcome: Outcome) -> Option<Ejected> {
        let i = self.position(server)?;
        let threshold = self.cfg.passive_failures;
        let rt = self.servers.get_mut(i)?;
        let ok = match outcome {
            Outcome::Connected => true,
            Outcome::Failed => false,
            Outcome::Response(status) => {
                rt.stats.count_status(status);
                status < 500
            }
        };
        if threshold == 0 {
            return None;
        }
        if ok {
            rt.fails = 0;
            return None;
        }
        rt.fails += 1;
        if rt.fails < threshold {
            return None;
        }
        rt.fails = 0;
        if let Some(v) = self.views.get_mut(i) {
            v.up = false;
        }
        Some(Ejected {
            backend: self.cfg.id,
            server,
        })
    }

    /// One answered HTTP request routed here: its request time (`None`: not a request time, a
    /// 101 tunnel's life) into the backend's and the server's histograms, its bytes into the
    /// server's counters.
    pub fn exchange_done(
        &mut self,
        server: Option<ServerId>,
        request_us: Option<u64>,
        bytes_received: u64,
        bytes_sent: u64,
    ) {
        if let (Some(set), Some(us)) = (self.latency_mut(), request_us) {
            set.record(LatencyKind::Request, us);
        }
        let histograms = self.histograms;
        if let Some(rt) = server
            .and_then(|id| self.position(id))
            .and_then(|i| self.servers.get_mut(i))
        {
            rt.stats.bytes_client_to_server += bytes_received;
            rt.stats.bytes_server_to_client += bytes_sent;
            if let (true, Some(us)) = (histograms, request_us) {
                rt.latency
                    .get_or_insert_with(|| Latency::new(LatencyRange::Request))
                    .record(us);
            }
        }
    }

    /// The histograms to record into (allocated by the first call); `None` with histograms off.
    pub fn latency_mut(&mut self) -> Option<&mut LatencySet> {
        if !self.histograms {
            return None;
        }
        Some(self.latency.get_or_insert_with(LatencySet::new))
    }

    /// A health check (or an ejection) changed a server's state on every shard.
    pub fn set_up(&mut self, server: ServerId, up: bool) {
        if let Some(v) = self.position(server).and_then(|i| self.views.get_mut(i)) {
            v.up = up;
        }
    }

    pub fn is_up(&self, server: ServerId) -> bool {
        self.position(server)
            .and_then(|i| self.views.get(i))
            .is_some_and(|v| v.up)
    }

    /// This shard's counters for /stats, with the state and open connections it sees.
    pub fn report(&self) -> BackendStats {
        BackendStats {
            name: self.cfg.name.clone(),
            queue: self.queue.len() as u64,
            latency_set: self.latency.clone(),
            latency: None,
            servers: self
                .servers
                .iter()
                .zip(&self.views)
                .zip(&self.cfg.servers)
                .map(|((rt, v), c)| {
                    let mut s = rt.stats.clone();
                    s.request_latency.clone_from(&rt.latency);
                    s.selected = rt.selected;
                    s.weight = v.weight;
                    s.active = u64::from(v.active);
                    s.state = if c.admin == AdminState::Maint {
                        "MAINT"
                    } else if c.admin == AdminState::Drain {
                        "DRAIN"
                    } else if !v.up {
                        "DOWN"
                    } else if v.weight == 0 {
                        "DRAIN"
                    } else {
                        "UP"
                    }
                    .to_string();
                    s
                })
                .collect(),
        }
    }
}

fn algorithm(cfg: &BackendCfg, shard: usize) -> Algorithm {
    match cfg.balance {
        Balance::RoundRobin => {
            Algorithm::RoundRobin(SmoothWeightedRoundRobin::new(cfg.servers.len(), shard))
        }
        Balance::LeastConn => Algorithm::LeastConn(LeastConn::new(shard)),
        Balance::PowerOfTwo => Algorithm::PowerOfTwo(PowerOfTwo::new(shard as u64)),
        Balance::Maglev => Algorithm::Maglev(Maglev::new()),
    }
}

#[cfg(test)]
pub(crate) fn test_backend(id: u32, servers: &[(u32, &str)]) -> BackendCfg {
    BackendCfg {
        id: BackendId(id),
        name: format!("b{id}"),
        servers: servers
            .iter()
            .enumerate()
            .map(|(i, &(sid, name))| ServerCfg {
                id: ServerId(sid),
                name: name.to_string(),
                address: SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
                weight: 1,
                backup: false,
                maxconn: 0,
                send_proxy: None,
                admin: AdminState::Ready,
            })
            .collect(),
        balance: Balance::RoundRobin,
        hash_key: HashKey::Source,
        retries: 2,
        redispatch: true,
        sticky_cookie: None,
        queue_max: 0,
        queue_timeout_ms: 5_000,
        idle_conns_max: 256,
        idle_timeout_ms: 15_000,
        passive_failures: 0,
        tls: None,
        tls_generation: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_keeps_state_of_servers_that_remain() {
        let mut b = Backend::new(test_backend(1, &[(10, "a"), (11, "b")]), 0, 1);
        b.count_active(ServerId(11), true);
        b.set_up(ServerId(10), false);
        b.outcome(ServerId(11), Outcome::Response(200));
        b.update(test_backend(1, &[(11, "b"), (12, "c")]), &mut Vec::new());
        let r = b.report();
        assert_eq!(r.servers.len(), 2);
        assert_eq!(r.servers[0].name, "b");
        assert_eq!(r.servers[0].active, 1, "open connections survive");
        assert_eq!(r.servers[0].requests, 1, "counters survive");
        assert_eq!(r.servers[1].state, "UP");
        assert!(!b.is_up(ServerId(10)), "removed servers are gone");
    }

    #[test]
    fn maxconn_full_tier_queues_then_frees() {
        let mut cfg = test_backend(1, &[(10, "a")]);
        cfg.servers[0].maxconn = 1;
        cfg.queue_max = 4;
        let mut b = Backend::new(cfg, 0, 1);
        let mut c = b.cfg.candidates();
        assert_eq!(b.pick(&mut c, None, None), Pick::Server(ServerId(10)));
        b.count_active(ServerId(10), true);
        let mut c = b.cfg.candidates();
        assert_eq!(b.pick(&mut c, None, None), Pick::Queue);
        assert!(!b.any_available());
        b.count_active(ServerId(10), false);
        assert!(b.any_available());
    }

    #[test]
    fn passive_failures_eject_after_the_threshold() {
        let mut cfg = test_backend(1, &[(10, "a"), (11, "b")]);
        cfg.passive_failures = 2;
        let mut b = Backend::new(cfg, 0, 1);
        assert_eq!(b.outcome(ServerId(10), Outcome::Response(500)), None);
        assert_eq!(
            b.outcome(ServerId(10), Outcome::Response(200)),
            None,
            "a success resets"
        );
        assert_eq!(b.outcome(ServerId(10), Outcome::Failed), None);
        assert_eq!(
            b.outcome(ServerId(10), Outcome::Response(503)),
            Some(Ejected {
                backend: BackendId(1),
                server: ServerId(10)
            })
        );
        assert!(!b.is_up(ServerId(10)));
    }

    #[test]
    fn sticky_server_first_unless_tried() {
        let mut b = Backend::new(test_backend(1, &[(10, "a"), (11, "b"), (12, "c")]), 0, 1);
        for _ in 0..5 {
            let mut c = b.cfg.candidates();
            assert_eq!(
                b.pick(&mut c, None, Some(ServerId(12))),
                Pick::Server(ServerId(12))
            );
            assert_ne!(
                b.pick(&mut c, None, Some(ServerId(12))),
                Pick::Server(ServerId(12)),
                "a retry goes elsewhere"
            );
        }
    }

    #[test]
    fn statuses_and_retries_are_decided_in_one_place() {
        assert_eq!(UpstreamError::Connect(111).status(), 502);
        assert_eq!(UpstreamError::ConnectTimeout.status(), 504);
        assert_eq!(UpstreamError::ResponseTimeout.status(), 504);
        assert_eq!(UpstreamError::QueueFull.status(), 503);
        assert!(UpstreamError::Connect(111).is_retryable());
        assert!(!UpstreamError::BadResponse.is_retryable());
        assert!(!UpstreamError::Closed.is_retryable());
        assert!(UpstreamError::Closed.is_lost_connection());
    }
}
