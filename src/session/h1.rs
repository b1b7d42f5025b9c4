//! Owns: one HTTP/1.1 client connection as a sans-IO state machine — request heads parsed and
//! routed, a server chosen (sticky cookie, consistent-hash key, retries), the request head encoded
//! towards it with the forwarding fields, bodies framed both ways (verbatim, or de-chunked for
//! HTTP/1.0 clients), interim responses, Upgrade tunnels, keep-alive and pipelining, ringway's own
//! responses with a lingering close, every phase's timeout, and one access-log record per request.
//! Must not: touch sockets, clocks or pools: it reads and writes the [`Wire`], asks the shard for
//! servers through [`Env`], and says what it needs as [`Intent`]s. The HTTP grammar is
//! `crate::http1`'s; routing is `crate::router`'s.

use std::net::SocketAddr;

use super::tcp::Routes;
use super::tunnel::Tunnel;
use super::{
    AccessRecord, CLIENT, Env, Intent, Intents, Pick, QUEUED_MAX, Term, TimeoutsMs, UPSTREAM,
    UpstreamEvent, Wire,
};
use crate::balancer::{Candidates, hash_bytes};
use crate::config::{HashKey, SpliceMode};
use crate::http1::{
    self, ChunkVerdict, ChunkedScanner, ForwardOpts, Framing, HeadVerdict, RequestHead,
    ResponseOpts,
};
use crate::ids::{BackendId, ServerId};
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

/// One request/response exchange.
#[derive(Debug)]
struct Exchange {
    backend: Option<BackendId>,
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
    pub intents: Intents,
    /// The encoded head of the current request while it can be replayed (kept across requests
    /// for its capacity).
    replay: Vec<u8>,
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
            intents: Intents::default(),
            replay: Vec::new(),
        }
    }

    /// A session for a keep-alive connection that was idle in compact form.
    pub fn resume(client: SocketAddr, requests: u32, now_ms: u64) -> H1Session {
        H1Session {
            requests,
            ..H1Session::new(client, false, false, now_ms)
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

    // ---- the state machine ---------------------------------------------------------------------

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
        let mut ex = Box::new(Exchange {
            backend: route,
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
        });
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
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        let Some(backend) = ex.backend else {
            return;
        };
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
                w.active_ms[UPSTREAM] = now;
            }
            UpstreamEvent::Connected => {
                ex.up = Up::Open {
                    server,
                    reused: false,
                };
                ex.req_sent_ms = now;
                w.active_ms[UPSTREAM] = now;
            }
            UpstreamEvent::Failed(_) => {}
        }
    }

    fn step_exchange(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) -> bool {
        let mut changed = self.flow_request(w, env, cfg);
        changed |= self.flow_response(w, env, cfg);
        changed |= self.finish_if_done(w, env);
        changed
    }

    /// Moves request body bytes from the client towards the upstream.
    fn flow_request(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) -> bool {
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        if ex.req_done || ex.splicing[CLIENT] || w.queued(UPSTREAM) >= QUEUED_MAX {
            return false;
        }
        let moved = {
            let Wire { rx, tx, .. } = w;
            let [rx0, _] = rx;
            let [_, tx1] = tx;
            move_body(&mut ex.req_body, rx0, tx1)
        };
        match moved {
            Ok(0) => {}
            Ok(n) => {
                ex.req_body_bytes += n as u64;
                ex.replayable = false;
                if cfg
                    .body_bytes_max
                    .is_some_and(|max| ex.req_body_bytes > max)
                {
                    // A chunked body over the limit: part of it may be at the backend already,
                    // so that connection is closed (not pooled) and the client gets 413.
                    self.local_response(w, env, cfg, LocalReply::BodyTooLarge, Term::ClientError);
                    return true;
                }
            }
            Err(()) => {
                tracing::debug!("malformed chunked request body");
                self.local_response(w, env, cfg, LocalReply::BadBody, Term::ClientError);
                return true;
            }
        }
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        if matches!(ex.req_body, Body::Done) {
            ex.req_done = true;
            return true;
        }
        if w.eof[CLIENT] && w.rx[CLIENT].is_empty() {
            // The client closed before its body was complete.
            self.log(env, Term::ClientClosed);
            self.close(Term::ClientClosed);
            return true;
        }
        false
    }

    fn flow_response(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) -> bool {
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        if !matches!(ex.up, Up::Open { .. }) {
            return false;
        }
        if !w.rx[UPSTREAM].is_empty() {
            ex.server_answered = true;
        }
        match &mut ex.resp {
            Resp::Head => self.response_head(w, env, cfg),
            Resp::Body(_) => self.response_body(w, env),
            Resp::Tunnel(t) => {
                let changed = t.progress(w);
                if t.is_done(w) {
                    self.log(env, Term::Done);
                    self.intents.push(Intent::Release { reusable: false });
                    self.close(Term::Done);
                    return true;
                }
                changed
            }
            Resp::Done => false,
        }
    }

    fn response_head(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) -> bool {
        let draining = env.draining();
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        if w.rx[UPSTREAM].is_empty() {
            if w.eof[UPSTREAM] {
                // Closed before any response byte (replayed where that is safe).
                self.upstream_failed(w, env, cfg, UpstreamError::Closed);
                return true;
            }
            return false;
        }
        let head =
            match http1::parse_response(&w.rx[UPSTREAM], &http1::Limits::default(), ex.is_head) {
                HeadVerdict::Partial => {
                    if w.eof[UPSTREAM] {
                        self.upstream_failed(w, env, cfg, UpstreamError::Closed);
                        return true;
                    }
                    return false;
                }
                HeadVerdict::Invalid(reject) => {
                    tracing::debug!(reason = %reject, "invalid response from backend");
                    env.stats().http_bad_responses += 1;
                    self.upstream_failed(w, env, cfg, UpstreamError::BadResponse);
                    return true;
                }
                HeadVerdict::Complete {
                    head,
                    consumed_bytes,
                } => (head, consumed_bytes),
            };
        let (head, consumed_bytes) = head;
        let status = head.status;
        let interim = (100..200).contains(&status) && status != 101;
        let tunnel = status == 101;
        if tunnel && !ex.upgrade {
            env.stats().http_bad_responses += 1;
            self.upstream_failed(w, env, cfg, UpstreamError::BadResponse);
            return true;
        }
        // RFC 9112 §7.1 / §6.3: an HTTP/1.0 client gets no chunked coding: de-chunk, then close.
        let dechunk =
            !interim && !tunnel && ex.version_minor == 0 && head.framing == Framing::Chunked;
        let keep_alive = !interim && !tunnel && !dechunk && ex.client_keep_alive && !draining;
        let backend_cfg = ex.backend.and_then(|b| env.backend(b));
        let cookie = (ex.set_cookie && !interim)
            .then(|| {
                let b = backend_cfg?;
                let server = b.server(ex.server?)?;
                Some((b.sticky_cookie.as_deref()?, server.name.as_str()))
            })
            .flatten();
        // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
        let relay = !(interim && ex.version_minor == 0);
        if relay {
            let opts = ResponseOpts {
                keep_alive: keep_alive || interim || tunnel,
                version_minor_client: ex.version_minor,
                tunnel,
                set_cookie: cookie,
                dechunk,
            };
            let before = w.tx[CLIENT].len();
            let Wire { rx, tx, .. } = &mut *w;
            http1::encode_response(&rx[UPSTREAM], &head, &opts, &mut tx[CLIENT]);
            ex.resp_bytes += (w.tx[CLIENT].len() - before) as u64;
            ex.resp_started = true;
        }
        let n = consumed_bytes.min(w.rx[UPSTREAM].len());
        w.rx[UPSTREAM].drain(..n);
        if interim {
            return true;
        }
        ex.status = status;
        ex.server_keep_alive = head.keep_alive;
        if !keep_alive {
            ex.client_keep_alive = false;
        }
        if let (Some(b), Some(s)) = (ex.backend, ex.server) {
            env.outcome(b, s, Outcome::Response(status));
        }
        if tunnel {
            ex.req_body = Body::Done;
            ex.req_done = true;
            ex.resp = Resp::Tunnel(Tunnel::new(cfg.splice));
            env.stats().http_tunnels += 1;
            return true;
        }
        ex.resp = Resp::Body(match head.framing {
            Framing::Chunked if dechunk => Body::Dechunk(ChunkedScanner::new()),
            Framing::CloseDelimited => {
                ex.client_keep_alive = false;
                Body::UntilEof
            }
            f => Body::of(f),
        });
        true
    }

    fn response_body(&mut self, w: &mut Wire, env: &mut impl Env) -> bool {
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        let Resp::Body(body) = &mut ex.resp else {
            return false;
        };
        let mut changed = false;
        if !ex.splicing[UPSTREAM] && w.queued(CLIENT) < QUEUED_MAX {
            let before = w.tx[CLIENT].len();
            let moved = {
                let Wire { rx, tx, .. } = &mut *w;
                let [_, rx1] = rx;
                let [tx0, _] = tx;
                move_body(body, rx1, tx0)
            };
            match moved {
                Ok(0) => {}
                Ok(_) => {
                    ex.resp_bytes += w.tx[CLIENT].len().saturating_sub(before) as u64;
                    changed = true;
                }
                Err(()) => {
                    env.stats().http_bad_responses += 1;
                    tracing::debug!("malformed chunked response body");
                    self.log(env, Term::ServerError);
                    self.intents.push(Intent::Release { reusable: false });
                    self.close(Term::ServerError);
                    return true;
                }
            }
        }
        let Phase::Exchange(ex) = &mut self.phase else {
            return changed;
        };
        let Resp::Body(body) = &mut ex.resp else {
            return changed;
        };
        let drained = w.eof[UPSTREAM] && w.rx[UPSTREAM].is_empty() && !ex.splicing[UPSTREAM];
        match body {
            Body::Done => {
                ex.resp = Resp::Done;
                true
            }
            Body::UntilEof if drained => {
                ex.resp = Resp::Done;
                ex.server_keep_alive = false;
                true
            }
            _ if drained => {
                // The backend closed mid-body: the client gets a truncated response and a close,
                // never a hang, and this connection is not pooled.
                tracing::debug!("backend closed mid-response");
                self.log(env, Term::ServerError);
                self.intents.push(Intent::Release { reusable: false });
                self.close(Term::ServerError);
                true
            }
            _ => changed,
        }
    }

    /// Ends an exchange whose request and response are both complete: log it, release the
    /// upstream connection (reusable when clean), and read the next request (or close).
    fn finish_if_done(&mut self, w: &mut Wire, env: &mut impl Env) -> bool {
        let Phase::Exchange(ex) = &self.phase else {
            return false;
        };
        if !matches!(ex.resp, Resp::Done) || !ex.req_done || ex.splicing[CLIENT] {
            return false;
        }
        let reusable = ex.server_keep_alive
            && w.flushed(UPSTREAM)
            && w.rx[UPSTREAM].is_empty()
            && !w.eof[UPSTREAM];
        let keep_client = ex.client_keep_alive && !env.draining();
        self.log(env, Term::Done);
        self.intents.push(Intent::Release { reusable });
        w.reset_upstream(env.now_ms());
        if keep_client {
            self.phase = Phase::Head { started_ms: None };
            w.active_ms[CLIENT] = env.now_ms();
        } else {
            self.close(Term::Done);
        }
        true
    }

    fn step_linger(&mut self, w: &mut Wire) -> bool {
        let Phase::Linger { discarded, .. } = &mut self.phase else {
            return false;
        };
        *discarded += w.rx[CLIENT].len() as u64;
        w.rx[CLIENT].clear();
        let over = *discarded > LINGER_BYTES_MAX;
        w.shut[CLIENT] = true;
        if w.shut_done[CLIENT] && (w.eof[CLIENT] || over) {
            self.close(Term::Local);
            return true;
        }
        false
    }

    // ---- failures, retries and local responses ----------------------------------------------

    /// The upstream failed. Before any response byte reached the client this is retried where
    /// safe, else it becomes a status; after, the client connection is closed.
    /// - A connect failed or timed out (nothing was sent): another server while attempts remain,
    ///   body or not.
    /// - A reused (pooled) connection died before answering: the backend may have closed it on its
    ///   keep-alive timeout just as it was taken; a bodyless request is replayed once on a new
    ///   connection without using an attempt.
    /// - A fresh connection died before answering: a bodyless request is retried while attempts
    ///   remain. A request whose body was (partly) sent is never replayed.
    fn upstream_failed(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg, e: UpstreamError) {
        let now = env.now_ms();
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        let connecting = matches!(ex.up, Up::Connecting { .. });
        let reused = matches!(ex.up, Up::Open { reused: true, .. });
        match e {
            UpstreamError::Connect(_) => env.stats().connect_errors += 1,
            UpstreamError::ConnectTimeout => env.stats().connect_timeouts += 1,
            _ => {}
        }
        if connecting && let (Some(b), Some(s)) = (ex.backend, ex.server) {
            env.outcome(b, s, Outcome::Failed);
        }
        tracing::debug!(backend = ?ex.backend.map(|b| b.0), server = ?ex.server.map(|s| s.0), error = %e, "upstream failed");
        let untouched = !ex.resp_started && !ex.server_answered;
        let connect_retry = connecting && e.is_retryable() && ex.candidates.can_retry();
        let replay = !connecting && untouched && e.is_lost_connection() && ex.replayable;
        let free_replay = replay && reused;
        let paid_replay = replay && !reused && ex.candidates.can_retry();
        if connect_retry || free_replay || paid_replay {
            self.intents.push(Intent::Release { reusable: false });
            if connect_retry {
                env.stats().connect_retries += 1;
                // Nothing was sent: what waits for the upstream is the whole request so far.
                let keep = std::mem::take(&mut w.tx[UPSTREAM]);
                w.reset_upstream(now);
                w.tx[UPSTREAM] = keep;
            } else {
                if free_replay {
                    env.stats().http_pool_retries += 1;
                    ex.candidates.forget_last();
                } else {
                    env.stats().connect_retries += 1;
                }
                w.reset_upstream(now);
                w.tx[UPSTREAM].extend_from_slice(&self.replay);
            }
            ex.up = Up::None;
            self.connect(w, env, cfg, !free_replay);
            return;
        }
        let term = if e.is_timeout() {
            Term::Timeout
        } else {
            Term::ServerError
        };
        if ex.resp_started {
            self.log(env, term);
            self.intents.push(Intent::Release { reusable: false });
            self.close(term);
        } else {
            self.local_response(w, env, cfg, LocalReply::Upstream(e), term);
        }
    }

    /// Queues ringway's own response, then lingers and closes: after an error the framing of what
    /// the client sent next is uncertain, so the connection is never reused.
    fn local_response(
        &mut self,
        w: &mut Wire,
        env: &mut impl Env,
        cfg: &H1Cfg,
        reply: LocalReply,
        term: Term,
    ) {
        let now = env.now_ms();
        let status = reply.status();
        let phase = std::mem::replace(&mut self.phase, Phase::Closed);
        let mut ex = match phase {
            Phase::Exchange(ex) => {
                match ex.up {
                    Up::Connecting { .. } | Up::Open { .. } => {
                        self.intents.push(Intent::Release { reusable: false })
                    }
                    Up::Queued { .. } => {
                        if let Some(backend) = ex.backend {
                            self.intents.push(Intent::Dequeue { backend });
                        }
                    }
                    Up::None => {}
                }
                ex
            }
            Phase::Head { started_ms } => {
                // A request refused before it was understood: log its first line.
                let log = cfg
                    .access_log
                    .then(|| Box::new(raw_request_line(&w.rx[CLIENT])));
                Box::new(Exchange {
                    backend: None,
                    up: Up::None,
                    candidates: Candidates::new(1, true),
                    key: None,
                    sticky: None,
                    set_cookie: false,
                    req_body: Body::Done,
                    req_done: true,
                    req_sent_ms: now,
                    replayable: false,
                    client_keep_alive: false,
                    is_head: false,
                    upgrade: false,
                    version_minor: 1,
                    started_ms: started_ms.unwrap_or(now),
                    req_body_bytes: 0,
                    resp: Resp::Done,
                    resp_started: true,
                    server_answered: false,
                    server_keep_alive: false,
                    status: 0,
                    resp_bytes: 0,
                    log,
                    splicing: [false; 2],
                    no_splice: [false; 2],
                    server: None,
                })
            }
            p @ (Phase::Linger { .. } | Phase::Closed) => {
                self.phase = p;
                return;
            }
        };
        w.rx[CLIENT].clear();
        w.reset_upstream(now);
        let before = w.tx[CLIENT].len();
        http1::error_response(status, true, &mut w.tx[CLIENT]);
        ex.status = status;
        ex.resp_bytes += (w.tx[CLIENT].len() - before) as u64;
        ex.server = None;
        env.stats().http_local_responses += 1;
        self.phase = Phase::Exchange(ex);
        self.log(env, term);
        self.phase = Phase::Linger {
            until_ms: now + LINGER_MS,
            discarded: 0,
        };
        w.shut[CLIENT] = true;
    }

    /// One access log record for the current exchange (once), and its status counted.
    fn log(&mut self, env: &mut impl Env, term: Term) {
        let now = env.now_ms();
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if ex.status == 0 && term == Term::Done {
            return;
        }
        if ex.status != 0 {
            env.stats().count_status(ex.status);
        }
        let status = std::mem::take(&mut ex.status);
        let Some(log) = ex.log.take() else {
            return;
        };
        self.intents.push(Intent::Log(Box::new(AccessRecord {
            method: log.method,
            target: log.target,
            version_minor: log.version_minor,
            referer: log.referer,
            user_agent: log.user_agent,
            status,
            bytes_sent: ex.resp_bytes,
            bytes_received: ex.req_body_bytes,
            duration_ms: now.saturating_sub(ex.started_ms),
            backend: ex.backend,
            server: ex.server,
            term,
        })));
    }

    fn close(&mut self, term: Term) {
        if !matches!(self.phase, Phase::Closed) {
            if let Phase::Exchange(ex) = &self.phase
                && let (Up::Queued { .. }, Some(backend)) = (ex.up, ex.backend)
            {
                self.intents.push(Intent::Dequeue { backend });
            }
            self.phase = Phase::Closed;
            self.intents.push(Intent::Close(term));
        }
    }

    /// Closes at once (drain deadline, client gone): the exchange in flight is logged as `term`.
    pub fn abort(&mut self, env: &mut impl Env, term: Term) {
        self.log(env, term);
        self.close(term);
    }

    /// The client's connection failed (reset, send error): nothing more can reach it.
    pub fn on_client_error(&mut self, env: &mut impl Env) {
        self.abort(env, Term::ClientError);
    }

    // ---- what the driver asks ------------------------------------------------------------------

    /// Whether the driver should read side `side` now. Backpressure: a side is read only while
    /// what it sent so far has somewhere to go.
    pub fn wants_read(&self, w: &Wire, side: usize, cfg: &H1Cfg) -> bool {
        if w.eof[side] {
            return false;
        }
        let head_max = cfg.head_bytes_max as usize;
        match (&self.phase, side) {
            (Phase::Head { .. }, CLIENT) => w.rx[CLIENT].len() < head_max,
            (Phase::Head { .. }, _) => true,
            (Phase::Exchange(ex), CLIENT) => match &ex.resp {
                Resp::Tunnel(t) => t.wants_read(w, CLIENT),
                _ if ex.req_done => w.rx[CLIENT].len() < head_max,
                _ => {
                    !ex.splicing[CLIENT]
                        && self.splice_want(w, CLIENT, cfg.splice).is_none()
                        && w.queued(UPSTREAM) < QUEUED_MAX
                        && w.rx[CLIENT].len() < QUEUED_MAX
                }
            },
            (Phase::Exchange(ex), _) => match &ex.resp {
                Resp::Tunnel(t) => t.wants_read(w, UPSTREAM),
                _ => {
                    !ex.splicing[UPSTREAM]
                        && self.splice_want(w, UPSTREAM, cfg.splice).is_none()
                        && w.queued(CLIENT) < QUEUED_MAX
                        && w.rx[UPSTREAM].len() < QUEUED_MAX
                }
            },
            (Phase::Linger { .. }, CLIENT) => true,
            (Phase::Linger { .. }, _) | (Phase::Closed, _) => false,
        }
    }

    /// Direction `dir` may move by splice(2) now: returns the bytes to move (`u64::MAX`: until
    /// the source closes). Only once the copy path is quiet so bytes keep their order.
    pub fn splice_want(&self, w: &Wire, dir: usize, mode: SpliceMode) -> Option<u64> {
        let Phase::Exchange(ex) = &self.phase else {
            return None;
        };
        if mode == SpliceMode::Off
            || ex.splicing[dir]
            || !matches!(ex.up, Up::Open { .. })
            || (ex.no_splice[dir] && !matches!(ex.resp, Resp::Tunnel(_)))
        {
            return None;
        }
        let body = match (&ex.resp, dir) {
            (Resp::Tunnel(t), _) => return t.splice_want(w, dir),
            (_, CLIENT) if !ex.req_done => &ex.req_body,
            (Resp::Body(b), UPSTREAM) => b,
            _ => return None,
        };
        let quiet = w.rx[dir].is_empty() && w.flushed(1 - dir) && !w.eof[dir];
        if !quiet {
            return None;
        }
        match body {
            Body::Length(rest) => (*rest >= SPLICE_BODY_MIN
                || (mode == SpliceMode::Always && *rest > 0))
                .then_some(*rest),
            Body::UntilEof => (w.bulk[dir] || mode == SpliceMode::Always).then_some(u64::MAX),
            Body::Done | Body::Chunked(_) | Body::Dechunk(_) => None,
        }
    }

    pub fn on_splice_started(&mut self, dir: usize) {
        if let Phase::Exchange(ex) = &mut self.phase {
            match &mut ex.resp {
                Resp::Tunnel(t) => t.on_splice_started(dir),
                _ => ex.splicing[dir] = true,
            }
        }
    }

    /// The driver could not get a pipe: this direction keeps copying.
    pub fn on_splice_refused(&mut self, dir: usize) {
        if let Phase::Exchange(ex) = &mut self.phase {
            match &mut ex.resp {
                Resp::Tunnel(t) => t.on_splice_refused(dir),
                _ => ex.no_splice[dir] = true,
            }
        }
    }

    /// `written` more bytes of direction `dir` were spliced.
    pub fn on_spliced(&mut self, dir: usize, written: u64) {
        if let Phase::Exchange(ex) = &mut self.phase {
            if dir == CLIENT {
                ex.req_body_bytes += written;
            } else {
                ex.resp_bytes += written;
            }
            let body = match (&mut ex.resp, dir) {
                (_, CLIENT) => &mut ex.req_body,
                (Resp::Body(b), _) => b,
                _ => return,
            };
            if let Body::Length(rest) = body {
                *rest = rest.saturating_sub(written);
            }
        }
    }

    /// Splicing of `dir` ended.
    pub fn on_splice_done(&mut self, w: &mut Wire, env: &mut impl Env, dir: usize, end: SpliceEnd) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if let Resp::Tunnel(t) = &mut ex.resp {
            t.on_splice_done(w, dir);
            return;
        }
        ex.splicing[dir] = false;
        let body = match (&mut ex.resp, dir) {
            (_, CLIENT) => &mut ex.req_body,
            (Resp::Body(b), _) => b,
            _ => return,
        };
        match (end, &*body) {
            (SpliceEnd::Finished, _) | (SpliceEnd::Eof, Body::Length(0)) => *body = Body::Done,
            (SpliceEnd::Eof, Body::UntilEof) => {
                *body = Body::Done;
                ex.server_keep_alive = false;
                w.eof[dir] = true;
            }
            (SpliceEnd::Eof, _) => {
                // The source closed before the announced length: a truncated body.
                w.eof[dir] = true;
                let term = if dir == CLIENT {
                    Term::ClientClosed
                } else {
                    Term::ServerError
                };
                self.log(env, term);
                self.intents.push(Intent::Release { reusable: false });
                self.close(term);
                return;
            }
        }
        if dir == CLIENT && matches!(ex.req_body, Body::Done) {
            ex.req_done = true;
        }
    }

    /// When the session's current phase times out (ms, shard clock).
    pub fn deadline(&self, w: &Wire, env: &impl Env, cfg: &H1Cfg) -> Option<u64> {
        let t = &cfg.timeouts;
        Some(match &self.phase {
            Phase::Head {
                started_ms: Some(s),
            } => s.saturating_add(t.http_request),
            Phase::Head { started_ms: None } => {
                if self.requests == 0 {
                    self.opened_ms.saturating_add(t.http_request)
                } else {
                    w.active_ms[CLIENT].saturating_add(t.http_keep_alive)
                }
            }
            Phase::Exchange(ex) => match ex.up {
                Up::Queued { since_ms } => {
                    let wait = ex
                        .backend
                        .and_then(|b| env.backend(b))
                        .map_or(5_000, |b| b.queue_timeout_ms);
                    since_ms.saturating_add(wait)
                }
                Up::Connecting { since_ms, .. } => since_ms.saturating_add(t.connect),
                Up::Open { .. } | Up::None => match ex.resp {
                    Resp::Tunnel(_) => w.active_ms[CLIENT]
                        .max(w.active_ms[UPSTREAM])
                        .saturating_add(t.tunnel),
                    _ => {
                        let idle = w.active_ms[CLIENT]
                            .saturating_add(t.client_idle)
                            .min(w.active_ms[UPSTREAM].saturating_add(t.server_idle));
                        if matches!(ex.resp, Resp::Head) && ex.req_done {
                            idle.min(self.response_deadline(ex, w, t))
                        } else {
                            idle
                        }
                    }
                },
            },
            Phase::Linger { until_ms, .. } => *until_ms,
            Phase::Closed => return None,
        })
    }

    fn response_deadline(&self, ex: &Exchange, w: &Wire, t: &TimeoutsMs) -> u64 {
        ex.req_sent_ms
            .max(w.active_ms[UPSTREAM])
            .saturating_add(t.server_response)
    }

    /// The driver's timer fired: act if the deadline really passed.
    pub fn on_timer(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) {
        let now = env.now_ms();
        if self.deadline(w, env, cfg).is_none_or(|d| now < d) {
            return;
        }
        let t = cfg.timeouts;
        match &self.phase {
            Phase::Head { started_ms: None } => {
                env.stats().idle_timeouts += 1;
                self.close(Term::Timeout);
            }
            Phase::Head {
                started_ms: Some(_),
            } => {
                env.stats().http_request_timeouts += 1;
                self.local_response(w, env, cfg, LocalReply::RequestTimeout, Term::Timeout);
            }
            Phase::Exchange(ex) => match ex.up {
                Up::Queued { .. } => {
                    env.stats().http_queue_timeouts += 1;
                    self.local_response(
                        w,
                        env,
                        cfg,
                        LocalReply::Upstream(UpstreamError::QueueTimeout),
                        Term::Timeout,
                    );
                }
                Up::Connecting { .. } => {
                    self.upstream_failed(w, env, cfg, UpstreamError::ConnectTimeout)
                }
                Up::Open { .. } | Up::None => {
                    let waiting_head = matches!(ex.resp, Resp::Head)
                        && ex.req_done
                        && now >= self.response_deadline(ex, w, &t);
                    if waiting_head {
                        env.stats().http_server_timeouts += 1;
                        self.upstream_failed(w, env, cfg, UpstreamError::ResponseTimeout);
                    } else {
                        env.stats().idle_timeouts += 1;
                        self.log(env, Term::Timeout);
                        self.intents.push(Intent::Release { reusable: false });
                        self.close(Term::Timeout);
                    }
                }
            },
            Phase::Linger { .. } => self.close(Term::Local),
            Phase::Closed => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Router;
    use crate::session::testenv::FakeEnv;
    use crate::upstream::test_backend;

    fn cfg() -> H1Cfg {
        H1Cfg {
            routes: Routes {
                router: Router {
                    rules: Vec::new(),
                    default_backend: Some(0),
                },
                ids: vec![Some(BackendId(1))],
            },
            x_forwarded_for: true,
            x_real_ip: false,
            x_forwarded_proto: true,
            forwarded: false,
            head_bytes_max: 64 * 1024,
            body_bytes_max: Some(1000),
            splice: SpliceMode::Auto,
            access_log: true,
            timeouts: TimeoutsMs::default(),
        }
    }

    fn env() -> FakeEnv {
        FakeEnv::new().with_backend(test_backend(1, &[(10, "a"), (11, "b")]))
    }

    fn session(env: &FakeEnv) -> H1Session {
        H1Session::new("192.0.2.7:5555".parse().unwrap(), false, false, env.now)
    }

    fn intents(s: &mut H1Session) -> Vec<Intent> {
        std::iter::from_fn(|| s.intents.pop()).collect()
    }

    fn connect(server: u32, allow_pool: bool) -> Intent {
        Intent::Connect {
            backend: BackendId(1),
            server: ServerId(server),
            allow_pool,
        }
    }

    fn text(v: &[u8]) -> String {
        String::from_utf8_lossy(v).into_owned()
    }

    /// The driver's side of a send: everything queued towards `side` went out.
    fn sent(w: &mut Wire, side: usize) -> String {
        text(&std::mem::take(&mut w.tx[side]))
    }

    fn no_log(v: Vec<Intent>) -> Vec<Intent> {
        v.into_iter()
            .filter(|i| !matches!(i, Intent::Log(_)))
            .collect()
    }

    #[test]
    fn keep_alive_request_goes_upstream_with_forwarding_headers_and_the_connection_is_reused() {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT]
            .extend_from_slice(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(intents(&mut s), vec![connect(10, true)]);
        s.on_upstream(
            &mut w,
            &mut env,
            &cfg,
            UpstreamEvent::Ready { reused: true },
        );
        s.progress(&mut w, &mut env, &cfg);
        let up = sent(&mut w, UPSTREAM);
        assert!(up.starts_with("GET /a HTTP/1.1\r\nHost: x\r\n"), "{up}");
        assert!(up.contains("X-Forwarded-For: 192.0.2.7\r\n"), "{up}");
        assert!(up.contains("X-Forwarded-Proto: http\r\n"), "{up}");
        assert!(!up.contains("keep-alive"), "hop-by-hop removed: {up}");
        w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(
            sent(&mut w, CLIENT),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        );
        let done = intents(&mut s);
        assert!(
            matches!(&done[0], Intent::Log(r) if r.status == 200 && r.target == "/a"),
            "{done:?}"
        );
        assert_eq!(done[1], Intent::Release { reusable: true });
        assert!(s.is_idle(&w));
        assert_eq!(env.stats.http_status.http_2xx, 1);
        assert_eq!(env.stats.http_pool_reused, 1);
        // The next request on the same connection asks for a server again.
        w.rx[CLIENT].extend_from_slice(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(intents(&mut s), vec![connect(11, true)]);
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_one_exchange_at_a_time() {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT].extend_from_slice(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(intents(&mut s), vec![connect(10, true)]);
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        s.progress(&mut w, &mut env, &cfg);
        assert!(sent(&mut w, UPSTREAM).starts_with("GET /1 "));
        assert!(!w.rx[CLIENT].is_empty(), "the second request waits");
        w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1");
        s.progress(&mut w, &mut env, &cfg);
        let v = no_log(intents(&mut s));
        assert_eq!(
            v,
            vec![Intent::Release { reusable: true }, connect(11, true)]
        );
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        s.progress(&mut w, &mut env, &cfg);
        assert!(sent(&mut w, UPSTREAM).starts_with("GET /2 "));
        w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2");
        s.progress(&mut w, &mut env, &cfg);
        let out = sent(&mut w, CLIENT);
        assert!(
            out.ends_with("\r\n\r\n1HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"),
            "{out}"
        );
    }

    #[test]
    fn expect_100_continue_is_relayed_then_the_body_flows() {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT].extend_from_slice(
            b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        );
        s.progress(&mut w, &mut env, &cfg);
        intents(&mut s);
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        s.progress(&mut w, &mut env, &cfg);
        assert!(sent(&mut w, UPSTREAM).contains("Expect: 100-continue"));
        w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(sent(&mut w, CLIENT), "HTTP/1.1 100 Continue\r\n\r\n");
        w.rx[CLIENT].extend_from_slice(b"hello");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(sent(&mut w, UPSTREAM), "hello");
        w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 201 Created"));
        let v = no_log(intents(&mut s));
        assert_eq!(v, vec![Intent::Release { reusable: true }]);
    }

    #[test]
    fn upgrade_becomes_a_tunnel_until_both_sides_close() {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT].extend_from_slice(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        s.progress(&mut w, &mut env, &cfg);
        intents(&mut s);
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        s.progress(&mut w, &mut env, &cfg);
        let up = sent(&mut w, UPSTREAM);
        assert!(
            up.contains("Upgrade: websocket") && up.contains("Connection: upgrade"),
            "{up}"
        );
        w.rx[UPSTREAM].extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nsrv",
        );
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(
            sent(&mut w, CLIENT),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nsrv"
        );
        w.rx[CLIENT].extend_from_slice(b"frame");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(sent(&mut w, UPSTREAM), "frame");
        assert_eq!(env.stats.http_tunnels, 1);
        w.eof = [true, true];
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(w.shut, [true, true]);
        w.shut_done = [true, true];
        s.progress(&mut w, &mut env, &cfg);
        let v = no_log(intents(&mut s));
        assert_eq!(
            v,
            vec![
                Intent::Release { reusable: false },
                Intent::Close(Term::Done)
            ]
        );
    }

    #[test]
    fn a_dead_pooled_connection_is_replayed_once_for_free_on_a_new_one() {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(intents(&mut s), vec![connect(10, true)]);
        s.on_upstream(
            &mut w,
            &mut env,
            &cfg,
            UpstreamEvent::Ready { reused: true },
        );
        s.progress(&mut w, &mut env, &cfg);
        let first = sent(&mut w, UPSTREAM);
        // The backend had closed it on its keep-alive timeout.
        w.eof[UPSTREAM] = true;
        s.progress(&mut w, &mut env, &cfg);
        let v = intents(&mut s);
        assert_eq!(v[0], Intent::Release { reusable: false });
        assert!(
            matches!(
                v[1],
                Intent::Connect {
                    allow_pool: false,
                    ..
                }
            ),
            "a new connection, not from the pool: {v:?}"
        );
        assert_eq!(w.tx[UPSTREAM], first.as_bytes(), "the same request again");
        assert!(!w.eof[UPSTREAM]);
        assert_eq!(env.stats.http_pool_retries, 1);
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        s.progress(&mut w, &mut env, &cfg);
        sent(&mut w, UPSTREAM);
        w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 204"));
    }

    #[test]
    fn connect_failures_go_to_the_next_server_then_become_502() {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT]
            .extend_from_slice(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(intents(&mut s), vec![connect(10, true)]);
        let queued = w.tx[UPSTREAM].clone();
        assert!(
            text(&queued).ends_with("\r\n\r\nabc"),
            "queued until connected"
        );
        s.on_upstream(
            &mut w,
            &mut env,
            &cfg,
            UpstreamEvent::Failed(UpstreamError::Connect(111)),
        );
        assert_eq!(
            intents(&mut s),
            vec![Intent::Release { reusable: false }, connect(11, true)]
        );
        assert_eq!(
            w.tx[UPSTREAM], queued,
            "nothing was sent: the same bytes go elsewhere"
        );
        s.on_upstream(
            &mut w,
            &mut env,
            &cfg,
            UpstreamEvent::Failed(UpstreamError::Connect(111)),
        );
        assert_eq!(
            intents(&mut s),
            vec![Intent::Release { reusable: false }, connect(10, true)]
        );
        s.on_upstream(
            &mut w,
            &mut env,
            &cfg,
            UpstreamEvent::Failed(UpstreamError::Connect(111)),
        );
        let v = no_log(intents(&mut s));
        assert_eq!(v, vec![Intent::Release { reusable: false }]);
        assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
        assert_eq!(env.stats.connect_errors, 3);
        assert_eq!(env.stats.connect_retries, 2);
        assert!(
            w.shut[CLIENT],
            "lingering close after ringway's own response"
        );
        w.shut_done[CLIENT] = true;
        w.eof[CLIENT] = true;
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(intents(&mut s), vec![Intent::Close(Term::Local)]);
    }

    #[test]
    fn a_request_with_a_body_is_never_replayed_after_it_was_sent() {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT]
            .extend_from_slice(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        s.progress(&mut w, &mut env, &cfg);
        intents(&mut s);
        s.on_upstream(
            &mut w,
            &mut env,
            &cfg,
            UpstreamEvent::Ready { reused: true },
        );
        s.progress(&mut w, &mut env, &cfg);
        sent(&mut w, UPSTREAM);
        s.on_upstream(
            &mut w,
            &mut env,
            &cfg,
            UpstreamEvent::Failed(UpstreamError::Reset(104)),
        );
        let out = sent(&mut w, CLIENT);
        assert!(out.starts_with("HTTP/1.1 502"), "{out}");
        assert_eq!(env.stats.http_pool_retries + env.stats.connect_retries, 0);
    }

    #[test]
    fn timeouts_408_for_a_slow_head_504_for_a_silent_backend_and_keep_alive_close() {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHo");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(s.deadline(&w, &env, &cfg), Some(1_000 + 10_000));
        env.now = 11_000;
        s.on_timer(&mut w, &mut env, &cfg);
        assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 408 Request Timeout"));
        assert_eq!(env.stats.http_request_timeouts, 1);

        let mut s = session(&env);
        let mut w = Wire::default();
        w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        s.progress(&mut w, &mut env, &cfg);
        intents(&mut s);
        env.now += 60_000;
        s.on_timer(&mut w, &mut env, &cfg);
        assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 504 Gateway Timeout"));
        assert_eq!(env.stats.http_server_timeouts, 1);
        let v = no_log(intents(&mut s));
        assert_eq!(v, vec![Intent::Release { reusable: false }]);

        let mut s = session(&env);
        let mut w = Wire::default();
        w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        intents(&mut s);
        let idle_until = s.deadline(&w, &env, &cfg).unwrap();
        assert_eq!(idle_until, env.now + 60_000, "http_keep_alive");
        env.now = idle_until;
        s.on_timer(&mut w, &mut env, &cfg);
        assert_eq!(intents(&mut s), vec![Intent::Close(Term::Timeout)]);
    }

    #[test]
    fn an_http_1_0_client_gets_a_chunked_response_dechunked_and_close_delimited() {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        s.progress(&mut w, &mut env, &cfg);
        intents(&mut s);
        let up = sent(&mut w, UPSTREAM);
        assert!(up.starts_with("GET / HTTP/1.1\r\n"), "{up}");
        w.rx[UPSTREAM].extend_from_slice(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nT: 1\r\n\r\n",
        );
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(
            sent(&mut w, CLIENT),
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello, world"
        );
        let v = no_log(intents(&mut s));
        assert_eq!(
            v,
            vec![
                Intent::Release { reusable: true },
                Intent::Close(Term::Done)
            ],
            "the keep-alive 1.0 client is closed after it"
        );
    }

    #[test]
    fn no_route_is_404_and_a_declared_body_over_the_limit_is_413() {
        let (mut env, mut cfg, mut w) = (env(), cfg(), Wire::default());
        cfg.routes.router.default_backend = None;
        let mut s = session(&env);
        w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 404 Not Found"));
        let v = intents(&mut s);
        assert!(
            matches!(&v[0], Intent::Log(r) if r.status == 404 && r.term == Term::Local),
            "{v:?}"
        );

        let cfg = super::tests::cfg();
        let mut s = session(&env);
        let mut w = Wire::default();
        w.rx[CLIENT]
            .extend_from_slice(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 413"));
        assert!(env.picks.is_empty(), "never reached a backend");
    }

    #[test]
    fn malformed_requests_are_refused_with_their_status_and_a_lingering_close() {
        for (raw, status) in [
            (&b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..], "400"),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505"),
            (b"GET / HTTP/1.1\r\n\r\n", "400"),
        ] {
            let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
            let mut s = session(&env);
            w.rx[CLIENT].extend_from_slice(raw);
            s.progress(&mut w, &mut env, &cfg);
            let out = sent(&mut w, CLIENT);
            assert!(out.starts_with(&format!("HTTP/1.1 {status}")), "{out}");
            assert!(out.contains("Connection: close"));
            assert!(env.picks.is_empty());
            // Whatever the client sends next is discarded until it closes.
            w.rx[CLIENT].extend_from_slice(b"garbage");
            s.progress(&mut w, &mut env, &cfg);
            assert!(w.rx[CLIENT].is_empty());
            assert!(s.wants_read(&w, CLIENT, &cfg));
        }
    }

    #[test]
    fn a_backend_closing_mid_body_truncates_and_closes_the_client() {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
        s.progress(&mut w, &mut env, &cfg);
        intents(&mut s);
        w.eof[UPSTREAM] = true;
        s.progress(&mut w, &mut env, &cfg);
        assert!(sent(&mut w, CLIENT).ends_with("abc"));
        let v = intents(&mut s);
        assert!(
            matches!(&v[0], Intent::Log(r) if r.term == Term::ServerError),
            "{v:?}"
        );
        assert_eq!(
            v[1..],
            [
                Intent::Release { reusable: false },
                Intent::Close(Term::ServerError)
            ]
        );
    }

    #[test]
    fn a_full_tier_queues_then_connects_when_dequeued_or_times_out_with_503() {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        env.answer = Some(Pick::Queue);
        let mut s = session(&env);
        w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(
            intents(&mut s),
            vec![Intent::Enqueue {
                backend: BackendId(1)
            }]
        );
        assert_eq!(s.queued_on(), Some(BackendId(1)));
        env.answer = None;
        s.on_dequeued(&mut w, &mut env, &cfg);
        assert_eq!(intents(&mut s), vec![connect(10, true)]);

        env.answer = Some(Pick::Queue);
        let mut s = session(&env);
        let mut w = Wire::default();
        w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        intents(&mut s);
        env.now += 5_000;
        s.on_timer(&mut w, &mut env, &cfg);
        let out = sent(&mut w, CLIENT);
        assert!(
            out.starts_with("HTTP/1.1 503") && out.contains("Retry-After: 1"),
            "{out}"
        );
        assert_eq!(
            no_log(intents(&mut s)),
            vec![Intent::Dequeue {
                backend: BackendId(1)
            }]
        );
        assert_eq!(env.stats.http_queue_timeouts, 1);
    }

    #[test]
    fn sticky_cookie_picks_its_server_is_stripped_and_set_for_a_new_client() {
        let mut b = test_backend(1, &[(10, "a"), (11, "b")]);
        b.sticky_cookie = Some("SRV".into());
        let mut env = FakeEnv::new().with_backend(b);
        let (cfg, mut w) = (cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1; SRV=b\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(intents(&mut s), vec![connect(11, true)]);
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        s.progress(&mut w, &mut env, &cfg);
        let up = sent(&mut w, UPSTREAM);
        assert!(
            up.contains("Cookie: a=1\r\n") && !up.contains("SRV"),
            "{up}"
        );
        w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        assert!(
            !sent(&mut w, CLIENT).contains("Set-Cookie"),
            "already stuck there"
        );
        intents(&mut s);
        w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        intents(&mut s);
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        let out = sent(&mut w, CLIENT);
        assert!(out.contains("Set-Cookie: SRV="), "{out}");
    }

    #[test]
    fn large_bodies_switch_to_splice_once_the_copy_path_is_quiet() {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        s.progress(&mut w, &mut env, &cfg);
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        s.progress(&mut w, &mut env, &cfg);
        sent(&mut w, UPSTREAM);
        w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nab");
        s.progress(&mut w, &mut env, &cfg);
        intents(&mut s);
        assert_eq!(
            s.splice_want(&w, UPSTREAM, cfg.splice),
            None,
            "head still queued"
        );
        sent(&mut w, CLIENT);
        let rest = s.splice_want(&w, UPSTREAM, cfg.splice);
        assert_eq!(rest, Some(999_998));
        assert!(
            !s.wants_read(&w, UPSTREAM, &cfg),
            "the recv must stop for the splice"
        );
        s.on_splice_started(UPSTREAM);
        s.on_spliced(UPSTREAM, 999_998);
        s.on_splice_done(&mut w, &mut env, UPSTREAM, SpliceEnd::Finished);
        s.progress(&mut w, &mut env, &cfg);
        let v = intents(&mut s);
        assert!(
            matches!(&v[0], Intent::Log(r) if r.bytes_sent > 999_998),
            "{v:?}"
        );
        assert_eq!(v[1], Intent::Release { reusable: true });
    }
}
