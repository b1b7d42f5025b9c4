//! Owns: the protocol sessions of one client connection as sans-IO state machines — bytes, time
//! and events in; bytes to send, read interest and intents (connect, release, close, log) out.
//! [`h1::H1Session`] is an HTTP/1.1 client connection with its exchanges to backends,
//! [`tcp::TcpSession`] a TCP proxy connection (PROXY header, SNI routing, retries, tunnel),
//! [`tunnel::Tunnel`] the bytes-both-ways part they share (Upgrade tunnels, L4).
//! Must not: touch sockets, rings, pipes or clocks. The shard's driver moves bytes between sockets
//! and the [`Wire`], tells the session what happened, and carries out what it asks for. Sessions
//! are unit-tested with byte literals and a fake clock ([`Env`]).

pub mod h1;
pub mod h2;
pub mod tcp;
pub mod tunnel;

use crate::balancer::Candidates;
use crate::ids::{BackendId, ListenerId, ServerId};
use crate::latency::LatencyKind;
use crate::stats::ShardStats;
use crate::upstream::{BackendCfg, Outcome, UpstreamError};

/// The client socket.
pub const CLIENT: usize = 0;
/// The backend (upstream) socket.
pub const UPSTREAM: usize = 1;

/// Bytes queued towards one side (in the session's buffer plus in flight) before the session stops
/// reading from the other side: backpressure, so memory per connection stays bounded whatever the
/// peers do.
pub const QUEUED_MAX: usize = 64 * 1024;

/// The plaintext byte streams of one session's two sides, as the driver keeps them current.
#[derive(Debug, Default)]
pub struct Wire {
    /// Received from side `i` (decrypted), not consumed by the session yet.
    pub rx: [Vec<u8>; 2],
    /// To send to side `i`, not taken by the driver yet.
    pub tx: [Vec<u8>; 2],
    /// Side `i` will send nothing more (EOF, or a read error the driver reported).
    pub eof: [bool; 2],
    /// Bytes the driver took from `tx[i]` that side `i` has not acknowledged yet.
    pub in_flight: [usize; 2],
    /// The session asks the driver to shut side `i`'s write half once `tx[i]` and `in_flight[i]`
    /// are empty (forwarding an EOF).
    pub shut: [bool; 2],
    /// The driver did that shutdown.
    pub shut_done: [bool; 2],
    /// A read from side `i` filled a whole receive buffer: a bulk transfer is under way (splice
    /// candidates).
    pub bulk: [bool; 2],
    /// Last time (ms) a byte moved on side `i`.
    pub active_ms: [u64; 2],
}

impl Wire {
    /// Bytes queued towards side `i`.
    pub fn queued(&self, i: usize) -> usize {
        self.tx[i].len() + self.in_flight[i]
    }

    /// Nothing left to send to side `i`.
    pub fn flushed(&self, i: usize) -> bool {
        self.tx[i].is_empty() && self.in_flight[i] == 0
    }

    /// Forgets everything about the upstream side (a new upstream connection takes over).
    pub fn reset_upstream(&mut self, now_ms: u64) {
        self.rx[UPSTREAM].clear();
        self.tx[UPSTREAM].clear();
        self.eof[UPSTREAM] = false;
        self.in_flight[UPSTREAM] = 0;
        self.shut[UPSTREAM] = false;
        self.shut_done[UPSTREAM] = false;
        self.bulk[UPSTREAM] = false;
        self.active_ms[UPSTREAM] = now_ms;
    }
}

/// Which of a client connection's upstream sides an intent or event is about. HTTP/1.1 and TCP
/// sessions have one (lane 0, the [`Wire`]'s upstream side); an HTTP/2 session has one per
/// stream being served, each kept in the session as an [`UpSide`].
pub type Lane = u16;

/// One upstream side of a session kept outside the [`Wire`]: the same fields as the wire's
/// `[UPSTREAM]` entries. [`UpSide::swap`] exchanges it with them, so the code that runs one
/// exchange (the session's and the driver's) sees it as the wire's upstream side.
#[derive(Debug, Default)]
pub struct UpSide {
    pub rx: Vec<u8>,
    pub tx: Vec<u8>,
    pub eof: bool,
    pub in_flight: usize,
    pub shut: bool,
    pub shut_done: bool,
    pub bulk: bool,
    pub active_ms: u64,
}

impl UpSide {
    pub fn new(now_ms: u64) -> UpSide {
        UpSide {
            active_ms: now_ms,
            ..UpSide::default()
        }
    }

    /// Exchanges this side with the wire's upstream side.
    pub fn swap(&mut self, w: &mut Wire) {
        std::mem::swap(&mut self.rx, &mut w.rx[UPSTREAM]);
        std::mem::swap(&mut self.tx, &mut w.tx[UPSTREAM]);
        std::mem::swap(&mut self.eof, &mut w.eof[UPSTREAM]);
        std::mem::swap(&mut self.in_flight, &mut w.in_flight[UPSTREAM]);
        std::mem::swap(&mut self.shut, &mut w.shut[UPSTREAM]);
        std::mem::swap(&mut self.shut_done, &mut w.shut_done[UPSTREAM]);
        std::mem::swap(&mut self.bulk, &mut w.bulk[UPSTREAM]);
        std::mem::swap(&mut self.active_ms, &mut w.active_ms[UPSTREAM]);
    }
}

/// What the balancer answered for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Server(ServerId),
    /// Every server of the tier is at its maxconn and the backend queue has room: wait.
    Queue,
    Unavailable,
}

/// Where a latency is recorded: a listener's or a backend's histograms on this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyAt {
    Listener(ListenerId),
    Backend(BackendId),
}

/// One answered HTTP request, as the shard's histograms and per-listener counters take it (every
/// request with a status, whether the access log is on or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeDone {
    pub listener: ListenerId,
    pub backend: Option<BackendId>,
    pub server: Option<ServerId>,
    pub status: u16,
    /// First byte of the request head in to the response complete (µs).
    pub request_us: u64,
    /// Request body bytes received from the client.
    pub bytes_received: u64,
    /// Response bytes (head and body) sent to the client.
    pub bytes_sent: u64,
}

/// What a session may ask of the shard around it (implemented by the driver; faked in tests).
pub trait Env {
    fn now_ms(&self) -> u64;
    /// The same clock in microseconds (the driver reads it once per loop turn, so this is the
    /// time the turn's completions were reaped; see `crate::latency`).
    fn now_us(&self) -> u64 {
        self.now_ms().saturating_mul(1000)
    }
    /// Records one duration into a latency histogram of this shard.
    fn record(&mut self, at: LatencyAt, kind: LatencyKind, value_us: u64) {
        let _ = (at, kind, value_us);
    }
    /// One HTTP request was answered: its request time goes into the listener's, the backend's
    /// and the server's histograms, its status and bytes into the per-listener and per-server
    /// counters.
    fn exchange_done(&mut self, done: &ExchangeDone) {
        let _ = done;
    }
    /// The shard is draining: finish what is in flight, keep nothing alive.
    fn draining(&self) -> bool;
    fn stats(&mut self) -> &mut ShardStats;
    fn backend(&self, id: BackendId) -> Option<&BackendCfg>;
    /// The next server for an attempt (`sticky` first when it may take it).
    fn pick(
        &mut self,
        backend: BackendId,
        candidates: &mut Candidates,
        key: Option<u64>,
        sticky: Option<ServerId>,
    ) -> Pick;
    /// Passive health and per-server counters: how an attempt at `server` ended.
    fn outcome(&mut self, backend: BackendId, server: ServerId, outcome: Outcome);
    /// The shard's finished HTTP/2 streams, kept for reuse.
    fn h2_spares(&mut self) -> &mut h2::SpareStreams;
}

/// What a session asks the driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Attach a connection to `server` of `backend`: a pooled one when `allow_pool` (it is idle and
    /// clean), else a new connect. The driver answers with [`UpstreamEvent::Ready`] (pooled),
    /// later [`UpstreamEvent::Connected`], or [`UpstreamEvent::Failed`].
    Connect {
        backend: BackendId,
        server: ServerId,
        allow_pool: bool,
    },
    /// The session is done with its upstream connection. `reusable`: as far as the protocol is
    /// concerned it may go back to the pool (a complete, clean keep-alive exchange).
    Release { reusable: bool },
    /// Wait in `backend`'s queue for a server under its maxconn; the driver calls
    /// `on_dequeued` when one frees (or the session's queue deadline passes first).
    Enqueue { backend: BackendId },
    /// Leave the backend queue (timed out or closing).
    Dequeue { backend: BackendId },
    /// One access log line.
    Log(Box<AccessRecord>),
    /// Close the client connection (and the upstream one, if any) once what is queued for the
    /// client has been sent: the session is over.
    Close(Term),
}

/// What happened to the upstream connection the session asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// A pooled connection was attached: bytes may flow now.
    Ready {
        reused: bool,
    },
    /// The new connection (and its TLS handshake, if any) completed.
    Connected,
    Failed(UpstreamError),
}

/// Who ended an exchange or connection: the access log `term` field and debug logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    Done,
    ClientClosed,
    ClientError,
    ServerError,
    Timeout,
    Drain,
    Local,
}

impl Term {
    pub fn as_str(self) -> &'static str {
        match self {
            Term::Done => "done",
            Term::ClientClosed => "client_closed",
            Term::ClientError => "client_error",
            Term::ServerError => "server_error",
            Term::Timeout => "timeout",
            Term::Drain => "drain",
            Term::Local => "local",
        }
    }
}

/// One finished request, as the access log writes it (owned: the session's buffers move on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// The client's protocol: `h1` (HTTP/1.x) or `h2`.
    pub proto: &'static str,
    pub method: String,
    pub target: String,
    pub version_minor: u8,
    pub referer: String,
    pub user_agent: String,
    pub status: u16,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration_ms: u64,
    /// The same span as `duration_ms`, in microseconds.
    pub request_us: u64,
    /// Time waited in the backend queue; `None` when the request did not queue.
    pub queue_us: Option<u64>,
    /// The successful connect to the server; `None` when a pooled connection was used or none
    /// was made.
    pub connect_us: Option<u64>,
    /// Request head handed to the server to its (first) response head; `None` without one.
    pub response_us: Option<u64>,
    /// Attempts beyond the first (connect retries and replays on a new connection).
    pub retries: u32,
    pub backend: Option<BackendId>,
    pub server: Option<ServerId>,
    pub term: Term,
}

/// Timeouts a session applies, in milliseconds (resolved from the config once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutsMs {
    pub connect: u64,
    pub client_idle: u64,
    pub server_idle: u64,
    pub http_request: u64,
    pub http_keep_alive: u64,
    pub server_response: u64,
    pub tunnel: u64,
}

impl Default for TimeoutsMs {
    fn default() -> TimeoutsMs {
        TimeoutsMs {
            connect: 5_000,
            client_idle: 60_000,
            server_idle: 60_000,
            http_request: 10_000,
            http_keep_alive: 60_000,
            server_response: 60_000,
            tunnel: 3_600_000,
        }
    }
}

impl TimeoutsMs {
    pub fn from_config(t: &crate::config::Timeouts) -> TimeoutsMs {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        TimeoutsMs {
            connect: ms(t.connect),
            client_idle: ms(t.client_idle),
            server_idle: ms(t.server_idle),
            http_request: ms(t.http_request),
            http_keep_alive: ms(t.http_keep_alive),
            server_response: ms(t.server_response),
            tunnel: ms(t.tunnel),
        }
    }
}

/// Small intent queue: sessions emit a handful per event, each for one [`Lane`].
#[derive(Debug, Default)]
pub struct Intents(std::collections::VecDeque<(Lane, Intent)>);

impl Intents {
    /// An intent for lane 0 (the only one of HTTP/1.1 and TCP sessions).
    pub fn push(&mut self, i: Intent) {
        self.0.push_back((0, i));
    }

    pub fn push_on(&mut self, lane: Lane, i: Intent) {
        self.0.push_back((lane, i));
    }

    pub fn pop(&mut self) -> Option<Intent> {
        self.0.pop_front().map(|(_, i)| i)
    }

    pub fn pop_lane(&mut self) -> Option<(Lane, Intent)> {
        self.0.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
pub(crate) mod testenv {
    //! A fake shard for session tests: a clock, counters, backends and a scripted balancer.
    use super::*;
    use crate::ids::IdMap;

    pub struct FakeEnv {
        pub now: u64,
        pub draining: bool,
        pub stats: ShardStats,
        pub backends: IdMap<BackendId, BackendCfg>,
        /// Servers handed out in order per pick (cycled); `Queue`/`Unavailable` when set.
        pub answer: Option<Pick>,
        pub picks: Vec<(BackendId, ServerId)>,
        pub outcomes: Vec<(ServerId, Outcome)>,
        /// Microseconds past `now` (ms), for timings finer than the millisecond clock.
        pub extra_us: u64,
        pub recorded: Vec<(LatencyAt, LatencyKind, u64)>,
        pub done: Vec<ExchangeDone>,
        pub h2_spares: crate::session::h2::SpareStreams,
    }

    impl FakeEnv {
        pub fn new() -> FakeEnv {
            FakeEnv {
                now: 1_000,
                draining: false,
                stats: ShardStats::default(),
                backends: IdMap::default(),
                answer: None,
                picks: Vec::new(),
                outcomes: Vec::new(),
                extra_us: 0,
                recorded: Vec::new(),
                done: Vec::new(),
                h2_spares: Default::default(),
            }
        }

        pub fn with_backend(mut self, cfg: BackendCfg) -> FakeEnv {
            self.backends.insert(cfg.id, cfg);
            self
        }
    }

    impl Env for FakeEnv {
        fn now_ms(&self) -> u64 {
            self.now
        }

        fn now_us(&self) -> u64 {
            self.now * 1000 + self.extra_us
        }

        fn record(&mut self, at: LatencyAt, kind: LatencyKind, value_us: u64) {
            self.recorded.push((at, kind, value_us));
        }

        fn exchange_done(&mut self, done: &ExchangeDone) {
            self.done.push(*done);
        }

        fn draining(&self) -> bool {
            self.draining
        }

        fn stats(&mut self) -> &mut ShardStats {
            &mut self.stats
        }

        fn h2_spares(&mut self) -> &mut crate::session::h2::SpareStreams {
            &mut self.h2_spares
        }

        fn backend(&self, id: BackendId) -> Option<&BackendCfg> {
            self.backends.get(&id)
        }

        fn pick(
            &mut self,
            backend: BackendId,
            candidates: &mut Candidates,
            _key: Option<u64>,
            sticky: Option<ServerId>,
        ) -> Pick {
            if let Some(a) = self.answer {
                return a;
            }
            let Some(b) = self.backends.get(&backend) else {
                return Pick::Unavailable;
            };
            if !candidates.can_retry() || b.servers.is_empty() {
                return Pick::Unavailable;
            }
            let n = candidates.attempts();
            let i = match sticky.and_then(|s| b.servers.iter().position(|x| x.id == s)) {
                Some(i) if n == 0 => i,
                _ => self.picks.len() % b.servers.len(),
            };
            candidates.record(i);
            let id = b.servers[i].id;
            self.picks.push((backend, id));
            Pick::Server(id)
        }

        fn outcome(&mut self, _backend: BackendId, server: ServerId, outcome: Outcome) {
            self.outcomes.push((server, outcome));
        }
    }
}
