//! Owns: one HTTP/1.1 client connection as a sans-IO state machine — request heads parsed and
//! routed, a server chosen (sticky cookie, consistent-hash key, retries), the request head encoded
//! towards it with the forwarding fields, bodies framed both ways (verbatim, or de-chunked for
//! HTTP/1.0 clients), interim responses, Upgrade tunnels, keep-alive and pipelining, ringway's own
//! responses with a lingering close, every phase's timeout, and one access-log record per request.
//! Must not: touch sockets, clocks or pools: it reads and writes the [`Wire`], asks the shard for
//! servers through [`Env`], and says what it needs as [`Intent`]s. The HTTP grammar is
//! `crate::http1`'s; routing is `crate::router`'s.
//!
//! One state machine in three files: this one (types, heads, routing, the choice of server),
//! `flow.rs` (bodies both ways, interim responses, tunnels, the end of an exchange, splice) and
//! `ending.rs` (failures and retries, ringway's own responses, the access log, timers).

use std::net::SocketAddr;

use super::tcp::Routes;
use super::tunnel::Tunnel;
use super::{
    AccessRecord, CLIENT, Env, ExchangeDone, Intent, Intents, LatencyAt, Pick, QUEUED_MAX, Term,
    TimeoutsMs, UPSTREAM, UpstreamEvent, Wire,
};
use crate::balancer::{Candidates, hash_bytes};
use crate::config::{HashKey, SpliceMode};
use crate::http1::{
    self, ChunkVerdict, ChunkedScanner, ForwardOpts, Framing, HeadVerdict, RequestHead,
    ResponseOpts,
};
use crate::ids::{BackendId, ListenerId, ServerId};
use crate::latency::LatencyKind;
use crate::proxy_protocol::{Received, parse_received};
use crate::upstream::{Outcome, UpstreamError};

/// Bodies of known length at least this large move by splice(2) (unless `splice = "off"`).
pub const SPLICE_BODY_MIN: u64 = 64 * 1024;
/// After ringway's own error response: how long and how much it keeps reading (and discarding)
/// so that closing does not reset the connection before the client has read the response.
const LINGER_MS: u64 = 2_000;
const LINGER_BYTES_MAX: u64 = 1 << 20;

/// What an HTTP session needs of its listener (a per-shard copy; a reload installs a new one
/// that the next request on a keep-alive connection picks up).
#[derive(Debug, Clone, PartialEq)]
pub struct H1Cfg {
    /// The listener (its histograms and counters on this shard).
    pub listener: ListenerId,
    pub routes: Routes,
    pub x_forwarded_for: bool,
    pub x_real_ip: bool,
    pub x_forwarded_proto: bool,
    pub forwarded: bool,
    pub head_bytes_max: u32,
    pub body_bytes_max: Option<u64>,
    pub splice: SpliceMode,
    pub access_log: bool,
    pub timeouts: TimeoutsMs,
    /// The listener was removed by a reload: finish the request in flight, keep nothing alive.
    pub draining: bool,
}

/// A response ringway writes itself; the status is chosen here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalReply {
    Reject(http1::Reject),
    NoRoute,
    BodyTooLarge,
    BadBody,
    RequestTimeout,
    Upstream(UpstreamError),
}

impl LocalReply {
    pub fn status(self) -> u16 {
        match self {
            LocalReply::Reject(r) => r.status(),
            LocalReply::NoRoute => 404,
            LocalReply::BodyTooLarge => 413,
            LocalReply::BadBody => 400,
            LocalReply::RequestTimeout => 408,
            LocalReply::Upstream(e) => e.status(),
        }
    }
}

/// How the rest of one message body is delimited.
#[derive(Debug, Clone)]
enum Body {
    Done,
    Length(u64),
    /// Forwarded verbatim, scanned for its end.
    Chunked(ChunkedScanner),
    /// De-chunked for an HTTP/1.0 client (sent close-delimited).
    Dechunk(ChunkedScanner),
    /// Until the source closes (close-delimited responses).
    UntilEof,
}

impl Body {
    fn of(framing: Framing) -> Body {
        match framing {
            Framing::None => Body::Done,
            Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(ChunkedScanner::new()),
            Framing::CloseDelimited => Body::UntilEof,
        }
    }
}

/// The upstream connection of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Up {
    /// Waiting in the backend queue for a server under its maxconn.
    Queued {
        since_ms: u64,
    },
    Connecting {
        server: ServerId,
        since_ms: u64,
    },
    Open {
        server: ServerId,
        reused: bool,
    },
    /// Released (the response is complete, or it failed and a local response follows).
    None,
}

#[derive(Debug)]
enum Resp {
    Head,
    Body(Body),
    Tunnel(Tunnel),
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct LogFields {
    method: String,
    target: String,
    version_minor: u8,
    referer: String,
    user_agent: String,
}

/// Microsecond timings of one exchange (for the histograms and the access log).
#[derive(Debug, Clone, Copy, Default)]
struct Timing {
    /// First byte of the request head.
    started_us: u64,
    /// Entered the current `Up::Queued` or `Up::Connecting` state.
    up_since_us: u64,
    /// The request was handed to an open upstream connection.
    req_sent_us: u64,
    queue_us: Option<u64>,
    connect_us: Option<u64>,
    response_us: Option<u64>,
    /// Attempts beyond the first.
    retries: u32,
}

/// One request/response exchange.
#[derive(Debug)]
struct Exchange {
    listener: ListenerId,
    backend: Option<BackendId>,
    timing: Timing,
    up: Up,
    candidates: Candidates,
    key: Option<u64>,
    sticky: Option<ServerId>,
    /// Insert the sticky cookie for the chosen server in the response.
    set_cookie: bool,
    req_body: Body,
    req_done: bool,
    /// When the request was handed to an open upstream connection (response timeout).
    req_sent_ms: u64,
    /// The session's replay buffer holds this whole request (no body): it may be sent again on
    /// another connection if this one dies before answering.
    replayable: bool,
    client_keep_alive: bool,
    is_head: bool,
    upgrade: bool,
    version_minor: u8,
    started_ms: u64,
    req_body_bytes: u64,
    resp: Resp,
    /// Some response byte reached the client's queue: a failure can no longer become a status.
    resp_started: bool,
    /// The server sent at least one byte for this exchange: never retried after that.
    server_answered: bool,
    server_keep_alive: bool,
    status: u16,
    resp_bytes: u64,
    log: Option<Box<LogFields>>,
    /// The driver is splicing the body of this direction (0 request, 1 response).
    splicing: [bool; 2],
    /// The driver cannot splice this direction (a TLS side): it copies.
    no_splice: [bool; 2],
    /// The last server this exchange was sent to.
    server: Option<ServerId>,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for (the rest of) a request head; `started_ms`: its first byte.
    Head {
        started_ms: Option<u64>,
    },
    Exchange(Box<Exchange>),
    /// ringway's own response is being sent; what the client sends is read and discarded.
    Linger {
        until_ms: u64,
        discarded: u64,
    },
    Closed,
}

/// How a splice of one direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpliceEnd {
    /// Every byte asked for was moved.
    Finished,
    /// The source closed (after `written` bytes).
    Eof,
}

pub struct H1Session {
    /// The client: the socket's peer, or what a PROXY header announced.
    pub client: SocketAddr,
    tls: bool,
    proxy_pending: bool,
    phase: Phase,
    requests: u32,
    opened_ms: u64,
    /// First byte of the request head being read (µs), when `Phase::Head` has `started_ms`.
    head_started_us: u64,
    pub intents: Intents,
    /// The encoded head of the current request while it can be replayed (kept across requests
    /// for its capacity).
    replay: Vec<u8>,
    /// The last exchange's box, reused by the next request (no allocation per request).
    spare: Option<Box<Exchange>>,
    /// The last backend response head relayed to the client, as encoded there (an HTTP/2
    /// stream frames it without parsing it again).
    relayed: Option<RelayedHead>,
}

/// A response head the session wrote to the client's queue: where, and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayedHead {
    /// Its first byte's offset in the client queue, when it was written.
    pub start: usize,
    pub len: usize,
    pub status: u16,
    /// The body's framing as the client receives it.
    pub framing: Framing,
}

impl H1Session {
    /// `tls`: the client came over TLS (X-Forwarded-Proto: https). `accept_proxy`: a PROXY
    /// header comes first (plain listeners; behind TLS the transport reads it).
    pub fn new(client: SocketAddr, tls: bool, accept_proxy: bool, now_ms: u64) -> H1Session {
        H1Session {
            client,
            tls,
            proxy_pending: accept_proxy,
            phase: Phase::Head { started_ms: None },
            requests: 0,
            opened_ms: now_ms,
            head_started_us: 0,
            intents: Intents::default(),
            replay: Vec::new(),
            spare: None,
            relayed: None,
        }
    }

    /// A session for a keep-alive connection that was idle in compact form.
    pub fn resume(client: SocketAddr, requests: u32, now_ms: u64) -> H1Session {
        H1Session {
            requests,
            ..H1Session::new(client, false, false, now_ms)
        }
    }

    /// Makes this (finished) session the one of a keep-alive connection that was idle in compact
    /// form, keeping its buffers' and queues' capacity.
    pub fn reuse(&mut self, client: SocketAddr, requests: u32, now_ms: u64) {
        let mut intents = std::mem::take(&mut self.intents);
        intents.clear();
        let mut replay = std::mem::take(&mut self.replay);
        replay.clear();
        let spare =
            self.spare
                .take()
                .or_else(|| match std::mem::replace(&mut self.phase, Phase::Closed) {
                    Phase::Exchange(ex) => Some(ex),
                    _ => None,
                });
        *self = H1Session {
            intents,
            replay,
            spare,
            ..H1Session::resume(client, requests, now_ms)
        };
    }

    /// Makes this (finished) session a new one for `client`, keeping its buffers' and queues'
    /// capacity (an HTTP/2 stream's exchange, reused by a next stream).
    pub fn renew(&mut self, client: SocketAddr, tls: bool, now_ms: u64) {
        self.reuse(client, 0, now_ms);
        self.tls = tls;
    }

    /// Frees the buffers of this finished session larger than `keep_bytes` (it waits among the
    /// shard's spare HTTP/2 streams, which must stay small).
    pub fn trim(&mut self, keep_bytes: usize) {
        if self.replay.capacity() > keep_bytes {
            self.replay = Vec::new();
        }
        // The last request's access-log strings (its target, User-Agent, ...) go too.
        if let Some(ex) = &mut self.spare {
            ex.log = None;
        }
        if let Phase::Exchange(ex) = &mut self.phase {
            ex.log = None;
        }
    }

    /// The last response head relayed to the client, once (see [`RelayedHead`]).
    pub fn take_relayed(&mut self) -> Option<RelayedHead> {
        self.relayed.take()
    }

    /// Moves to `phase`, keeping the box of an exchange that ends for the next one.
    fn set_phase(&mut self, phase: Phase) {
        if let Phase::Exchange(ex) = std::mem::replace(&mut self.phase, phase) {
            self.spare = Some(ex);
        }
    }

    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// Between requests with nothing buffered: the connection may be kept in compact form.
    pub fn is_idle(&self, w: &Wire) -> bool {
        matches!(self.phase, Phase::Head { started_ms: None })
            && self.requests > 0
            && w.rx[CLIENT].is_empty()
            && !w.eof[CLIENT]
            && self.intents.is_empty()
    }

    /// Waiting for a request head: a new request would use the listener's current settings.
    pub fn between_requests(&self) -> bool {
        matches!(self.phase, Phase::Head { .. })
    }

    /// Nothing happened on this connection yet (no PROXY header pending, no request byte
    /// parsed): the shard may still hand it to another protocol (HTTP/2 prior knowledge).
    pub fn fresh(&self) -> bool {
        self.requests == 0
            && !self.proxy_pending
            && matches!(self.phase, Phase::Head { started_ms: None })
    }

    /// No exchange is running: between requests, lingering after ringway's own response, or
    /// closed. (The HTTP/2 session runs one exchange per stream through this session.)
    pub fn exchange_over(&self) -> bool {
        !matches!(self.phase, Phase::Exchange(_))
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// The (backend, server) of the upstream connection the session holds or is connecting.
    pub fn upstream(&self) -> Option<(BackendId, ServerId)> {
        let Phase::Exchange(ex) = &self.phase else {
            return None;
        };
        match ex.up {
            Up::Connecting { server, .. } | Up::Open { server, .. } => {
                ex.backend.map(|b| (b, server))
            }
            Up::Queued { .. } | Up::None => None,
        }
    }

    /// Waiting in a backend queue.
    pub fn queued_on(&self) -> Option<BackendId> {
        match &self.phase {
            Phase::Exchange(ex) if matches!(ex.up, Up::Queued { .. }) => ex.backend,
            _ => None,
        }
    }

    /// Does everything the wire allows now: parse, route, move body bytes, finish exchanges.
    pub fn progress(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) {
        // Bounded: each pass changes state or stops.
        for _ in 0..64 {
            let changed = match &self.phase {
                Phase::Head { .. } => self.step_head(w, env, cfg),
                Phase::Exchange(_) => self.step_exchange(w, env, cfg),
                Phase::Linger { .. } => self.step_linger(w),
                Phase::Closed => false,
            };
            if !changed {
                break;
            }
        }
    }

    fn step_head(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) -> bool {
        if w.rx[CLIENT].is_empty() {
            if w.eof[CLIENT] {
                self.close(Term::Done);
            }
            return false;
        }
        if self.proxy_pending {
            match parse_received(&w.rx[CLIENT]) {
                Received::Partial => {
                    if w.eof[CLIENT] {
                        self.close(Term::ClientClosed);
                    }
                    return false;
                }
                Received::Invalid(why) => {
                    // Only trusted balancers connect here: no HTTP answer, a clean close.
                    env.stats().proxy_rejected += 1;
                    tracing::debug!(reason = why, "PROXY header refused");
                    self.close(Term::ClientError);
                    return false;
                }
                Received::Complete {
                    source,
                    consumed_bytes,
                } => {
                    if let Some(source) = source {
                        self.client = source;
                    }
                    let n = consumed_bytes.min(w.rx[CLIENT].len());
                    w.rx[CLIENT].drain(..n);
                    self.proxy_pending = false;
                    return true;
                }
            }
        }
        let now = env.now_ms();
        if let Phase::Head { started_ms: None } = self.phase {
            self.phase = Phase::Head {
                started_ms: Some(now),
            };
            self.head_started_us = env.now_us();
        }
        let limits = http1::Limits {
            head_bytes_max: cfg.head_bytes_max as usize,
            ..http1::Limits::default()
        };
        match http1::parse_request(&w.rx[CLIENT], &limits) {
            HeadVerdict::Partial => {
                if w.eof[CLIENT] {
                    // The client closed in the middle of a head: nothing to answer.
                    self.close(Term::ClientClosed);
                }
                false
            }
            HeadVerdict::Invalid(reject) => {
                tracing::debug!(status = reject.status(), reason = %reject, "request rejected");
                self.local_response(w, env, cfg, LocalReply::Reject(reject), Term::ClientError);
                true
            }
            HeadVerdict::Complete {
                head,
                consumed_bytes,
            } => {
                self.start_exchange(w, env, cfg, &head, consumed_bytes);
                true
            }
        }
    }

    /// A complete request head: route it, choose a server, encode the head towards it.
    fn start_exchange(
        &mut self,
        w: &mut Wire,
        env: &mut impl Env,
        cfg: &H1Cfg,
        head: &RequestHead,
        consumed_bytes: usize,
    ) {
        let now = env.now_ms();
        let started_ms = match self.phase {
            Phase::Head {
                started_ms: Some(s),
            } => s,
            _ => now,
        };
        self.requests += 1;
        w.reset_upstream(now);
        let Wire { rx, tx, .. } = &mut *w;
        let buf = &rx[CLIENT];
        let log = cfg.access_log.then(|| {
            let text = |v: Option<&[u8]>| {
                v.map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            Box::new(LogFields {
                method: text(Some(head.method(buf))),
                target: text(Some(head.target(buf))),
                version_minor: head.version_minor,
                referer: text(head.header_value(buf, "referer")),
                user_agent: text(head.header_value(buf, "user-agent")),
            })
        });
        let lookup = |name: &str, f: &mut dyn FnMut(&[u8]) -> bool| -> bool {
            head.headers
                .iter()
                .any(|h| h.name_in(buf).eq_ignore_ascii_case(name.as_bytes()) && f(h.value_in(buf)))
        };
        let route = cfg.routes.route(&crate::router::Request {
            host: head.host.clone().and_then(|r| buf.get(r)),
            target: head.target(buf),
            method: head.method(buf),
            headers: &lookup,
        });
        let too_large = match (head.framing, cfg.body_bytes_max) {
            (Framing::Length(n), Some(max)) => n > max,
            _ => false,
        };
        let fresh = Exchange {
            listener: cfg.listener,
            backend: route,
            timing: Timing {
                started_us: self.head_started_us,
                ..Timing::default()
            },
            up: Up::None,
            candidates: Candidates::new(1, true),
            key: None,
            sticky: None,
            set_cookie: false,
            req_body: Body::of(head.framing),
            req_done: false,
            req_sent_ms: now,
            replayable: false,
            client_keep_alive: head.keep_alive,
            is_head: head.is_head,
            upgrade: head.upgrade,
            version_minor: head.version_minor,
            started_ms,
            req_body_bytes: 0,
            resp: Resp::Head,
            resp_started: false,
            server_answered: false,
            server_keep_alive: false,
            status: 0,
            resp_bytes: 0,
            log,
            splicing: [false; 2],
            no_splice: [false; 2],
            server: None,
        };
        let mut ex = match self.spare.take() {
            Some(mut b) => {
                *b = fresh;
                b
            }
            None => Box::new(fresh),
        };
        let backend_cfg = route.and_then(|b| env.backend(b));
        let reply = match (route, backend_cfg) {
            (None, _) => Some(LocalReply::NoRoute),
            (Some(_), None) => Some(LocalReply::Upstream(UpstreamError::Gone)),
            _ if too_large => Some(LocalReply::BodyTooLarge),
            _ => None,
        };
        if let Some(reply) = reply {
            tracing::debug!(status = reply.status(), "request answered by ringway");
            w.rx[CLIENT].drain(..consumed_bytes.min(w.rx[CLIENT].len()));
            self.phase = Phase::Exchange(ex);
            self.local_response(w, env, cfg, reply, Term::Local);
            return;
        }
        let Some(b) = backend_cfg else {
            return;
        };
        let sticky_cookie = b.sticky_cookie.as_deref();
        ex.sticky = sticky_cookie.and_then(|name| {
            head.headers
                .iter()
                .filter(|h| h.name_in(buf).eq_ignore_ascii_case(b"cookie"))
                .find_map(|h| cookie_value(h.value_in(buf), name.as_bytes()))
                .and_then(|v| b.server_named(v))
        });
        if b.is_maglev() {
            ex.key = Some(request_hash_key(&b.hash_key, self.client, buf, head));
        }
        ex.candidates = b.candidates();
        let opts = ForwardOpts {
            client_ip: self.client.ip(),
            proto: if self.tls { "https" } else { "http" },
            x_forwarded_for: cfg.x_forwarded_for,
            x_real_ip: cfg.x_real_ip,
            x_forwarded_proto: cfg.x_forwarded_proto,
            forwarded: cfg.forwarded,
            tunnel: head.upgrade,
            strip_cookie: sticky_cookie,
        };
        http1::encode_request(buf, head, &opts, &mut tx[UPSTREAM]);
        w.rx[CLIENT].drain(..consumed_bytes.min(w.rx[CLIENT].len()));
        if matches!(ex.req_body, Body::Done) {
            ex.req_done = true;
            // Bodyless: the request may be sent again on another connection.
            ex.replayable = true;
            self.replay.clear();
            self.replay.extend_from_slice(&w.tx[UPSTREAM]);
        }
        self.phase = Phase::Exchange(ex);
        self.connect(w, env, cfg, true);
    }

    /// Asks for a server for the current exchange: a connect intent, the queue, or 503.
    fn connect(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg, allow_pool: bool) {
        let now = env.now_ms();
        let now_us = env.now_us();
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        let Some(backend) = ex.backend else {
            return;
        };
        ex.left_queue(env, now_us);
        ex.timing.up_since_us = now_us;
        match env.pick(backend, &mut ex.candidates, ex.key, ex.sticky) {
            Pick::Server(server) => {
                let sticky_on = env
                    .backend(backend)
                    .is_some_and(|b| b.sticky_cookie.is_some());
                ex.set_cookie = sticky_on && ex.sticky != Some(server);
                ex.server = Some(server);
                ex.up = Up::Connecting {
                    server,
                    since_ms: now,
                };
                self.intents.push(Intent::Connect {
                    backend,
                    server,
                    allow_pool,
                });
            }
            Pick::Queue => {
                // Every server in the tier is at its maxconn: wait for one (HAProxy queue).
                env.stats().http_queued += 1;
                ex.up = Up::Queued { since_ms: now };
                self.intents.push(Intent::Enqueue { backend });
            }
            Pick::Unavailable => {
                self.local_response(
                    w,
                    env,
                    cfg,
                    LocalReply::Upstream(UpstreamError::NoServer),
                    Term::Local,
                );
            }
        }
    }

    /// A server has room again for the queued request.
    pub fn on_dequeued(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) {
        if self.queued_on().is_some() {
            self.connect(w, env, cfg, true);
        }
    }

    /// What became of the upstream connection asked for.
    pub fn on_upstream(
        &mut self,
        w: &mut Wire,
        env: &mut impl Env,
        cfg: &H1Cfg,
        ev: UpstreamEvent,
    ) {
        let now = env.now_ms();
        let now_us = env.now_us();
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if let UpstreamEvent::Failed(e) = ev {
            if matches!(ex.up, Up::Connecting { .. } | Up::Open { .. }) {
                self.upstream_failed(w, env, cfg, e);
            }
            return;
        }
        let Up::Connecting { server, .. } = ex.up else {
            return;
        };
        match ev {
            UpstreamEvent::Ready { reused } => {
                if reused {
                    env.stats().http_pool_reused += 1;
                }
                ex.up = Up::Open { server, reused };
                ex.req_sent_ms = now;
                ex.timing.req_sent_us = now_us;
                w.active_ms[UPSTREAM] = now;
            }
            UpstreamEvent::Connected => {
                ex.up = Up::Open {
                    server,
                    reused: false,
                };
                ex.req_sent_ms = now;
                let connect_us = now_us.saturating_sub(ex.timing.up_since_us);
                ex.timing.connect_us = Some(connect_us);
                ex.timing.req_sent_us = now_us;
                if let Some(b) = ex.backend {
                    env.record(LatencyAt::Backend(b), LatencyKind::Connect, connect_us);
                }
                w.active_ms[UPSTREAM] = now;
            }
            UpstreamEvent::Failed(_) => {}
        }
    }
}

impl Exchange {
    /// The request leaves the backend queue (a server has room, or it timed out): its wait is
    /// recorded. The caller moves `up` on (and dequeues, on a timeout).
    fn left_queue(&mut self, env: &mut impl Env, now_us: u64) {
        if let (Up::Queued { .. }, Some(b)) = (self.up, self.backend) {
            let waited = now_us.saturating_sub(self.timing.up_since_us);
            self.timing.queue_us = Some(waited);
            env.record(LatencyAt::Backend(b), LatencyKind::Queue, waited);
        }
    }
}

/// Moves the bytes of `body` at the front of `from` into `to`. Returns how many bytes of `from`
/// were consumed, or `Err` for a malformed chunked body. Bytes after the body stay in `from`
/// (the next message).
fn move_body(body: &mut Body, from: &mut Vec<u8>, to: &mut Vec<u8>) -> Result<usize, ()> {
    if from.is_empty() {
        return Ok(0);
    }
    let n = match body {
        Body::Done => return Ok(0),
        Body::Length(rest) => {
            let n = (*rest).min(from.len() as u64) as usize;
            *rest -= n as u64;
            if *rest == 0 {
                *body = Body::Done;
            }
            n
        }
        Body::Chunked(scanner) => match scanner.feed(from) {
            Ok(ChunkVerdict::NeedMore { consumed_bytes }) => consumed_bytes,
            Ok(ChunkVerdict::Done { consumed_bytes }) => {
                *body = Body::Done;
                consumed_bytes
            }
            Err(_) => return Err(()),
        },
        Body::Dechunk(scanner) => {
            let n = match scanner.dechunk(from, to) {
                Ok(ChunkVerdict::NeedMore { consumed_bytes }) => consumed_bytes,
                Ok(ChunkVerdict::Done { consumed_bytes }) => {
                    *body = Body::Done;
                    consumed_bytes
                }
                Err(_) => return Err(()),
            };
            from.drain(..n.min(from.len()));
            return Ok(n);
        }
        Body::UntilEof => from.len(),
    };
    let n = n.min(from.len());
    if n == from.len() && to.is_empty() {
        // The whole input is body: hand the buffer over instead of copying it.
        std::mem::swap(from, to);
    } else {
        to.extend_from_slice(from.get(..n).unwrap_or_default());
        from.drain(..n);
    }
    Ok(n)
}

/// The consistent-hashing key of a request: the configured header, cookie or path, falling back
/// to the client address when the request does not carry it.
fn request_hash_key(key: &HashKey, client: SocketAddr, buf: &[u8], head: &RequestHead) -> u64 {
    let source = || hash_bytes(client.ip().to_string().as_bytes());
    match key {
        HashKey::Source => source(),
        HashKey::Path => hash_bytes(crate::router::path_of(head.target(buf))),
        HashKey::Header(name) => head.header_value(buf, name).map_or_else(source, hash_bytes),
        HashKey::Cookie(name) => head
            .headers
            .iter()
            .filter(|h| h.name_in(buf).eq_ignore_ascii_case(b"cookie"))
            .find_map(|h| cookie_value(h.value_in(buf), name.as_bytes()))
            .map_or_else(source, hash_bytes),
    }
}

/// The value of cookie `name` in a Cookie header value (`a=1; b=2`), if present.
pub fn cookie_value<'v>(header: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (n, v) = (pair.get(..eq)?, pair.get(eq + 1..)?);
        (n == name).then_some(v)
    })
}

/// Method, target and version from the first line of a request ringway could not parse, for the
/// access log (`-` where a part is missing).
fn raw_request_line(buf: &[u8]) -> LogFields {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.get(..line.len().min(1024)).unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let mut part = || {
        parts.next().filter(|p| !p.is_empty()).map_or_else(
            || "-".to_string(),
            |p| String::from_utf8_lossy(p).into_owned(),
        )
    };
    let method = part();
    let target = part();
    let version_minor = if part() == "HTTP/1.0" { 0 } else { 1 };
    LogFields {
        method,
        target,
        version_minor,
        referer: String::new(),
        user_agent: String::new(),
    }
}

mod ending;
mod flow;
#[cfg(test)]
pub(crate) mod tests;
