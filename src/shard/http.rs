//! Owns: one HTTP/1.1 client connection of a `mode = "http"` listener and, while a request is in
//! flight, the backend connection serving it: head parsing, routing, the upstream pool, body
//! framing in both directions, Upgrade tunnels, ringway's own error responses and the timeouts of
//! each phase. Driven by ring completions; every handler updates buffers and flags and then calls
//! [`Shard::http_progress`], which does whatever the connection's state now allows.
//! Must not: parse bytes itself (that is `http1`), choose a route (`router`) or a server
//! (`balancer`), or free anything the kernel may still use: a connection is released only when
//! its count of in-flight ops is zero.
//!
//! Side 0 is the client socket, side 1 the backend socket. Flow 0 moves the request body
//! (client -> backend), flow 1 the response body (backend -> client).
//!
//! Backpressure: a side is read only while the bytes already queued towards the other side are
//! under `OUT_SOFT_MAX`, and a backend is read one buffer at a time (single-shot recv), so memory
//! per connection is bounded by the head limit plus a few buffers whatever the peers do.

use std::net::SocketAddr;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::ring::{Completion, Op, OpKind, set_nodelay};
use super::{Shard, close_fd};
use crate::config::SpliceMode;
use crate::http1::{
    self, ChunkVerdict, ChunkedScanner, ForwardOpts, Framing, HeadVerdict, RequestHead,
    ResponseOpts,
};
use crate::pipes::{self, PumpStop, pump};
use crate::timer::TimerKey;

const CLIENT: usize = 0;
const SERVER: usize = 1;

/// `IORING_RECVSEND_POLL_FIRST` (Linux 5.19): arm the poll before trying the recv.
const RECVSEND_POLL_FIRST: u16 = 1;

/// Bytes queued towards one side before ringway stops reading from the other.
const OUT_SOFT_MAX: usize = 64 * 1024;
/// Bodies of known length at least this large move by splice(2) (unless `splice = "off"`).
const SPLICE_BODY_MIN: u64 = 64 * 1024;
/// Splice round trips per readiness event before yielding to other connections.
const SPLICE_ROUNDS_MAX: u32 = 16;
/// After ringway's own error response: how long and how much it keeps reading (and discarding)
/// so that closing does not reset the connection before the client has read the response.
const LINGER_MS: u64 = 2_000;
const LINGER_BYTES_MAX: u64 = 1 << 20;

pub(super) struct HttpSlot {
    pub(super) generation: u32,
    pub(super) conn: Option<HttpConn>,
}

/// An idle keep-alive backend connection kept by this shard for reuse.
pub(super) struct Pooled {
    fd: RawFd,
    since_ms: u64,
}

/// Per-server idle connections of one backend, owned by one shard.
#[derive(Default)]
pub(super) struct Pool {
    /// Indexed by server; most recently used last.
    idle: Vec<Vec<Pooled>>,
}

impl Pool {
    pub(super) fn new(servers: usize) -> Pool {
        Pool {
            idle: (0..servers).map(|_| Vec::new()).collect(),
        }
    }

    /// Closes pooled connections idle for `idle_ms` or more (or all of them when `idle_ms` is 0).
    /// Closes every idle connection to `server` (it went DOWN).
    pub(super) fn close_server(&mut self, server: usize, _now_ms: u64) {
        if let Some(list) = self.idle.get_mut(server) {
            for p in list.drain(..) {
                close_fd(p.fd);
            }
        }
    }

    pub(super) fn prune(&mut self, now_ms: u64, idle_ms: u64) {
        for list in &mut self.idle {
            list.retain(|p| {
                let keep = idle_ms > 0 && now_ms < p.since_ms.saturating_add(idle_ms);
                if !keep {
                    close_fd(p.fd);
                }
                keep
            });
        }
    }
}

#[derive(Debug, Default)]
struct Side {
    /// -1 when there is no socket on this side (backend not chosen yet, or returned to the pool).
    fd: RawFd,
    /// Bytes received and not yet consumed.
    inbuf: Vec<u8>,
    recv_armed: bool,
    recv_cancel_sent: bool,
    waiting_bufs: bool,
    eof: bool,
    /// Bytes to send to this side that are not in flight yet.
    out: Vec<u8>,
    /// Bytes of the send in flight (never touched while `send_inflight`).
    sending: Vec<u8>,
    sent: usize,
    send_inflight: bool,
    poll_in: bool,
    poll_out: bool,
    /// Ops in flight on this side's fd.
    inflight: u32,
    /// Write side shut down (EOF forwarded).
    shut: bool,
    active_ms: u64,
    /// A recv on this side filled a whole buffer (a bulk transfer is under way).
    bulk: bool,
}

impl Side {
    fn new(fd: RawFd, now_ms: u64) -> Side {
        Side {
            fd,
            active_ms: now_ms,
            ..Side::default()
        }
    }

    /// Resets the side for a new socket, keeping the buffers' capacity (no allocation per
    /// request on a keep-alive connection).
    fn reset(&mut self, fd: RawFd, now_ms: u64) {
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let mut out = std::mem::take(&mut self.out);
        let mut sending = std::mem::take(&mut self.sending);
        inbuf.clear();
        out.clear();
        sending.clear();
        *self = Side {
            inbuf,
            out,
            sending,
            ..Side::new(fd, now_ms)
        };
    }

    fn queued(&self) -> usize {
        self.out.len() + self.sending.len().saturating_sub(self.sent)
    }

    fn flushed(&self) -> bool {
        self.out.is_empty() && !self.send_inflight
    }
}

/// How the rest of one message body is delimited.
#[derive(Debug)]
enum Body {
    Done,
    Length(u64),
    Chunked(ChunkedScanner),
    /// Until the source closes (close-delimited responses, tunnels).
    UntilEof,
}

#[derive(Debug)]
struct Flow {
    body: Body,
    splice: Option<pipes::Flow>,
}

impl Flow {
    fn idle() -> Flow {
        Flow {
            body: Body::Done,
            splice: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RespPhase {
    Head,
    Body,
    Done,
}

/// One request/response exchange on the connection.
#[derive(Debug)]
struct Exchange {
    backend: usize,
    server: usize,
    /// The backend connection came from the pool (it may have been closed by the backend).
    reused: bool,
    /// The encoded request head, kept while the request can be replayed on a fresh connection
    /// (a reused connection failed before any response byte and no body byte was sent).
    replay: Option<Vec<u8>>,
    req_done: bool,
    req_sent_ms: u64,
    resp: RespPhase,
    /// Some response byte reached the client's send queue: errors can no longer become a status.
    resp_started: bool,
    /// The backend sent at least one byte for this exchange: never retried after that.
    server_answered: bool,
    client_keep_alive: bool,
    server_keep_alive: bool,
    is_head: bool,
    upgrade: bool,
    client_version_minor: u8,
    status: u16,
    started_ms: u64,
    resp_bytes: u64,
    req_body_bytes: u64,
    log: Option<LogFields>,
    /// Consistent-hashing key of the request (Maglev backends).
    key: Option<u64>,
    /// Servers that failed this request (retries go elsewhere).
    tried: Vec<usize>,
    /// The server the request's sticky cookie names.
    sticky: Option<usize>,
    /// Insert the sticky cookie for the chosen server in the response.
    set_cookie: bool,
}

#[derive(Debug)]
struct LogFields {
    method: String,
    target: String,
    version_minor: u8,
    referer: String,
    user_agent: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head. `started_ms`: when its first byte arrived.
    Head {
        started_ms: Option<u64>,
    },
    /// Connecting to the chosen server; the request head waits in the backend side's `out`.
    Connecting {
        started_ms: u64,
    },
    /// Waiting in the backend's queue for a server under its maxconn (the encoded request is in
    /// `HttpConn::queued`).
    Queued {
        since_ms: u64,
    },
    Exchange,
    /// After 101 Switching Protocols: bytes both ways until both sides close.
    Tunnel,
    /// ringway's own error response is being sent; input is read and discarded until `until_ms`.
    Linger {
        until_ms: u64,
    },
    Closing,
}

/// Who ended an exchange or connection, for the access log `term` field and debug logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Term {
    Done,
    ClientClosed,
    ClientError,
    ServerError,
    Timeout,
    Drain,
    Local,
}

impl Term {
    fn as_str(self) -> &'static str {
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

pub(super) struct HttpConn {
    listener: usize,
    client: SocketAddr,
    /// The client came over TLS (X-Forwarded-Proto: https).
    tls: bool,
    phase: Phase,
    sides: [Side; 2],
    flows: [Flow; 2],
    /// Boxed: an idle keep-alive connection then holds a pointer, not the exchange's state.
    ex: Option<Box<Exchange>>,
    requests: u32,
    opened_ms: u64,
    timer_at: Option<u64>,
    /// Discarded bytes while lingering.
    lingered: u64,
    /// Another progress pass is needed (a splice flow finished).
    again: bool,
    /// A request to replay on a new connection once the failed one is closed.
    pending_replay: Option<Vec<u8>>,
    /// The (backend, server) whose open-connection count this connection holds.
    counted: Option<(usize, usize)>,
    /// The encoded request while waiting in a backend queue.
    queued: Option<Vec<u8>>,
    /// The listener expects a PROXY header first and it has not been read yet.
    proxy_pending: bool,
    term: Option<Term>,
}

impl HttpConn {
    fn inflight(&self) -> u32 {
        self.sides[CLIENT].inflight + self.sides[SERVER].inflight
    }
}

/// What `http_progress` should do after one step.
enum Step {
    Again,
    Stop,
}

impl Shard {
    fn hconn(&mut self, slot: u32) -> Option<&mut HttpConn> {
        self.http_slots.get_mut(slot as usize)?.conn.as_mut()
    }

    /// `tls`: the client reached ringway over TLS (this fd is the plaintext side of shard/tls.rs).
    pub(super) fn open_http(
        &mut self,
        client_fd: RawFd,
        listener: usize,
        client: SocketAddr,
        tls: bool,
    ) {
        set_nodelay(client_fd);
        self.stats.active += 1;
        let now = self.now_ms;
        let conn = HttpConn {
            listener,
            client,
            tls,
            phase: Phase::Head { started_ms: None },
            sides: [Side::new(client_fd, now), Side::new(-1, now)],
            flows: [Flow::idle(), Flow::idle()],
            ex: None,
            requests: 0,
            opened_ms: now,
            timer_at: None,
            lingered: 0,
            again: false,
            pending_replay: None,
            counted: None,
            queued: None,
            proxy_pending: self
                .http_listeners
                .get(listener)
                .is_some_and(|l| l.accept_proxy),
            term: None,
        };
        let slot = if let Some(slot) = self.free_http_slots.pop()
            && let Some(s) = self.http_slots.get_mut(slot as usize)
        {
            s.conn = Some(conn);
            slot
        } else {
            self.http_slots.push(HttpSlot {
                generation: 0,
                conn: Some(conn),
            });
            (self.http_slots.len() - 1) as u32
        };
        self.http_progress(slot);
    }

    pub(super) fn on_http_completion(&mut self, op: Op, c: Completion) {
        let slot = op.slot;
        match op.kind {
            OpKind::HttpConnect => self.on_http_connect(slot, c.result),
            OpKind::HttpRecv => self.on_http_recv(slot, op.dir, c),
            OpKind::HttpSend => self.on_http_send(slot, op.dir, c.result),
            OpKind::HttpPollIn | OpKind::HttpPollOut => {
                self.on_http_poll(slot, op.dir, op.kind, c.result)
            }
            OpKind::Accept
            | OpKind::ControlWake
            | OpKind::Connect
            | OpKind::Recv
            | OpKind::Send
            | OpKind::PollIn
            | OpKind::PollOut
            | OpKind::Cancel
            | OpKind::TlsRecv
            | OpKind::TlsSend
            | OpKind::TlsConnect
            | OpKind::DetectPoll
            | OpKind::Tick => {}
        }
        self.http_progress(slot);
        self.http_try_free(slot);
    }

    /// Starts queued requests for which a server has room again, oldest first.
    pub(super) fn http_dispatch_queues(&mut self) {
        for b in 0..self.backends.len() {
            while let Some(backend) = self.backends.get_mut(b) {
                if backend.queue.is_empty() || !backend.any_available() {
                    break;
                }
                let Some((slot, generation)) = backend.queue.pop_front() else {
                    break;
                };
                self.http_queued = self.http_queued.saturating_sub(1);
                let Some(s) = self.http_slots.get_mut(slot as usize) else {
                    continue;
                };
                if s.generation != generation {
                    continue;
                }
                let Some(c) = s.conn.as_mut() else {
                    continue;
                };
                if !matches!(c.phase, Phase::Queued { .. }) {
                    continue;
                }
                let Some(encoded) = c.queued.take() else {
                    continue;
                };
                self.http_connect(slot, encoded, true);
                self.http_progress(slot);
                self.http_try_free(slot);
            }
        }
    }

    // ---- completions -------------------------------------------------------------------------

    fn on_http_connect(&mut self, slot: u32, result: i32) {
        let now = self.now_ms;
        let Some(c) = slot_conn(&mut self.http_slots, slot) else {
            return;
        };
        c.sides[SERVER].inflight = c.sides[SERVER].inflight.saturating_sub(1);
        if c.phase == Phase::Closing {
            return;
        }
        if result < 0 {
            let (backend, server) = c.ex.as_ref().map_or((0, 0), |e| (e.backend, e.server));
            self.stats.connect_errors += 1;
            self.record_outcome(backend, server, false);
            tracing::debug!(
                shard = self.id,
                backend,
                server,
                errno = -result,
                "connect failed"
            );
            self.http_server_failed(slot, 502, Term::ServerError);
            return;
        }
        c.phase = Phase::Exchange;
        c.sides[SERVER].active_ms = now;
    }

    fn on_http_recv(&mut self, slot: u32, side: usize, cqe: Completion) {
        let bid = cqe.buffer_id();
        if bid.is_some() {
            self.bufs.taken();
        }
        let buffer_bytes = self.bufs.buffer_bytes();
        let now = self.now_ms;
        let res = cqe.result;
        // Copy the bytes out and give the buffer back at once: HTTP heads need contiguous bytes,
        // and the buffer ring stays available to every connection of the shard.
        let Some(s) = self.http_slots.get_mut(slot as usize) else {
            if let Some(bid) = bid {
                self.bufs.put(bid);
            }
            return;
        };
        let Some(c) = s.conn.as_mut() else {
            if let Some(bid) = bid {
                self.bufs.put(bid);
            }
            return;
        };
        let sd = &mut c.sides[side];
        if !cqe.more() {
            sd.inflight = sd.inflight.saturating_sub(1);
            sd.recv_armed = false;
        }
        if side == SERVER
            && res > 0
            && let Some(ex) = c.ex.as_mut()
        {
            ex.server_answered = true;
        }
        let sd = &mut c.sides[side];
        if let Some(bid) = bid {
            if res > 0 {
                if let Some(bytes) = self.bufs.slice(bid, 0, res as u32) {
                    if matches!(c.phase, Phase::Linger { .. }) {
                        c.lingered += res as u64;
                    } else {
                        sd.inbuf.extend_from_slice(bytes);
                    }
                }
                sd.active_ms = now;
                if res as u32 >= buffer_bytes {
                    sd.bulk = true;
                }
            }
            self.bufs.put(bid);
        }
        if c.phase == Phase::Closing {
            return;
        }
        if res == 0 {
            sd.eof = true;
        } else if res == -libc::ENOBUFS {
            if !sd.recv_armed && !sd.waiting_bufs {
                sd.waiting_bufs = true;
                self.http_waiting_bufs.push((slot, side));
            }
        } else if res < 0 && res != -libc::ECANCELED {
            tracing::debug!(shard = self.id, side, errno = -res, "http recv failed");
            sd.eof = true;
            if side == SERVER {
                self.http_server_failed(slot, 502, Term::ServerError);
            } else {
                self.http_close(slot, Term::ClientError);
            }
        }
    }

    fn on_http_send(&mut self, slot: u32, side: usize, result: i32) {
        let now = self.now_ms;
        let Some(c) = slot_conn(&mut self.http_slots, slot) else {
            return;
        };
        let sd = &mut c.sides[side];
        sd.inflight = sd.inflight.saturating_sub(1);
        sd.send_inflight = false;
        if c.phase == Phase::Closing {
            return;
        }
        if result <= 0 {
            tracing::debug!(shard = self.id, side, errno = -result, "http send failed");
            if side == SERVER {
                self.http_server_failed(slot, 502, Term::ServerError);
            } else {
                self.http_close(slot, Term::ClientError);
            }
            return;
        }
        let n = result as usize;
        sd.sent += n;
        sd.active_ms = now;
        if side == SERVER {
            self.stats.bytes_client_to_server += n as u64;
        } else {
            self.stats.bytes_server_to_client += n as u64;
        }
        if sd.sent >= sd.sending.len() {
            sd.sending.clear();
            sd.sent = 0;
        }
    }

    fn on_http_poll(&mut self, slot: u32, side: usize, kind: OpKind, result: i32) {
        let Some(c) = self.hconn(slot) else {
            return;
        };
        let sd = &mut c.sides[side];
        sd.inflight = sd.inflight.saturating_sub(1);
        match kind {
            OpKind::HttpPollIn => sd.poll_in = false,
            _ => sd.poll_out = false,
        }
        if c.phase != Phase::Closing && result < 0 && result != -libc::ECANCELED {
            self.http_close(slot, Term::ServerError);
        }
    }

    pub(super) fn http_retry_waiting_recvs(&mut self) {
        while self.bufs.available() > 0 {
            let Some((slot, side)) = self.http_waiting_bufs.pop() else {
                return;
            };
            if let Some(c) = self.hconn(slot) {
                c.sides[side].waiting_bufs = false;
                self.http_progress(slot);
                self.http_try_free(slot);
            }
        }
    }

    // ---- the state machine ---------------------------------------------------------------------

    /// Does everything the connection's state allows now: parse, route, move body bytes, start
    /// sends and recvs, finish exchanges.
    pub(super) fn http_progress(&mut self, slot: u32) {
        // Bounded: each pass either changes state or stops; a splice that finishes asks for one
        // more pass (`again`) instead of recursing.
        for _ in 0..8 {
            for _ in 0..64 {
                let Some(c) = self.hconn(slot) else {
                    return;
                };
                let step = match c.phase {
                    Phase::Head { .. } => self.step_head(slot),
                    Phase::Connecting { .. } | Phase::Queued { .. } => Step::Stop,
                    Phase::Exchange => self.step_exchange(slot),
                    Phase::Tunnel => self.step_tunnel(slot),
                    Phase::Linger { .. } => self.step_linger(slot),
                    Phase::Closing => return,
                };
                if let Step::Stop = step {
                    break;
                }
            }
            self.http_io(slot);
            let again = self
                .hconn(slot)
                .is_some_and(|c| std::mem::take(&mut c.again));
            if !again {
                break;
            }
        }
        self.http_schedule_timer(slot);
    }

    fn step_head(&mut self, slot: u32) -> Step {
        let now = self.now_ms;
        let Some(c) = self.hconn(slot) else {
            return Step::Stop;
        };
        // The previous backend connection is still being detached (ops in flight): wait.
        if c.sides[SERVER].fd >= 0 {
            return Step::Stop;
        }
        if c.sides[CLIENT].inbuf.is_empty() {
            if c.sides[CLIENT].eof {
                self.http_close(slot, Term::Done);
            }
            return Step::Stop;
        }
        if c.proxy_pending {
            match crate::proxy_protocol::parse_received(&c.sides[CLIENT].inbuf) {
                crate::proxy_protocol::Received::Partial => {
                    if c.sides[CLIENT].eof {
                        self.http_close(slot, Term::ClientClosed);
                    }
                    return Step::Stop;
                }
                crate::proxy_protocol::Received::Invalid(why) => {
                    // Only trusted balancers connect here: no HTTP answer, a clean close.
                    self.stats.proxy_rejected += 1;
                    tracing::debug!(shard = self.id, reason = why, "PROXY header refused");
                    self.http_close(slot, Term::ClientError);
                    return Step::Stop;
                }
                crate::proxy_protocol::Received::Complete {
                    source,
                    consumed_bytes,
                } => {
                    if let Some(source) = source {
                        c.client = source;
                    }
                    let n = consumed_bytes.min(c.sides[CLIENT].inbuf.len());
                    c.sides[CLIENT].inbuf.drain(..n);
                    c.proxy_pending = false;
                    return Step::Again;
                }
            }
        }
        if let Phase::Head { started_ms: None } = c.phase {
            c.phase = Phase::Head {
                started_ms: Some(now),
            };
        }
        let listener = c.listener;
        let Some(l) = self.http_listeners.get(listener) else {
            self.http_close(slot, Term::Local);
            return Step::Stop;
        };
        let limits = http1::Limits {
            head_bytes_max: l.head_bytes_max as usize,
            ..http1::Limits::default()
        };
        let Some(c) = self
            .http_slots
            .get_mut(slot as usize)
            .and_then(|s| s.conn.as_mut())
        else {
            return Step::Stop;
        };
        match http1::parse_request(&c.sides[CLIENT].inbuf, &limits) {
            HeadVerdict::Partial => {
                if c.sides[CLIENT].eof {
                    // The client closed in the middle of a head: nothing to answer.
                    self.http_close(slot, Term::ClientClosed);
                }
                Step::Stop
            }
            HeadVerdict::Invalid(reject) => {
                let status = reject.status();
                tracing::debug!(shard = self.id, status, reason = %reject, "request rejected");
                self.http_local_response(slot, status, Term::ClientError);
                Step::Again
            }
            HeadVerdict::Complete {
                head,
                consumed_bytes,
            } => {
                self.start_exchange(slot, head, consumed_bytes);
                Step::Again
            }
        }
    }

    /// A complete request head: route it, pick a server, encode the head towards it.
    fn start_exchange(&mut self, slot: u32, head: RequestHead, consumed_bytes: usize) {
        let now = self.now_ms;
        let id = self.id;
        let Some(s) = self.http_slots.get_mut(slot as usize) else {
            return;
        };
        let Some(c) = s.conn.as_mut() else {
            return;
        };
        let Some(l) = self.http_listeners.get(c.listener) else {
            return;
        };
        let buf = &c.sides[CLIENT].inbuf;
        c.requests += 1;
        let log = l.access_log_on.then(|| LogFields {
            method: String::from_utf8_lossy(head.method(buf)).into_owned(),
            target: String::from_utf8_lossy(head.target(buf)).into_owned(),
            version_minor: head.version_minor,
            referer: head
                .header_value(buf, "referer")
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default(),
            user_agent: head
                .header_value(buf, "user-agent")
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default(),
        });
        let lookup = |name: &str, f: &mut dyn FnMut(&[u8]) -> bool| -> bool {
            for h in &head.headers {
                let n = buf.get(h.name.clone()).unwrap_or_default();
                if n.eq_ignore_ascii_case(name.as_bytes())
                    && f(buf.get(h.value.clone()).unwrap_or_default())
                {
                    return true;
                }
            }
            false
        };
        let route = l.router.route(&crate::router::Request {
            host: head.host.clone().and_then(|r| buf.get(r)),
            target: head.target(buf),
            method: head.method(buf),
            headers: &lookup,
        });
        let body = match head.framing {
            Framing::None | Framing::CloseDelimited => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(ChunkedScanner::new()),
        };
        let too_large = match (head.framing, l.body_bytes_max) {
            (Framing::Length(n), Some(max)) => n > max,
            _ => false,
        };
        let mut ex = Box::new(Exchange {
            backend: route.unwrap_or(0),
            server: 0,
            reused: false,
            replay: None,
            req_done: false,
            req_sent_ms: now,
            resp: RespPhase::Head,
            resp_started: false,
            server_answered: false,
            client_keep_alive: head.keep_alive,
            server_keep_alive: false,
            is_head: head.is_head,
            upgrade: head.upgrade,
            client_version_minor: head.version_minor,
            status: 0,
            started_ms: c.phase_started(now),
            resp_bytes: 0,
            req_body_bytes: 0,
            log,
            key: None,
            tried: Vec::new(),
            sticky: None,
            set_cookie: false,
        });
        let Some(backend) = route else {
            tracing::debug!(shard = id, "no route for request");
            c.ex = Some(ex);
            c.sides[CLIENT].inbuf.drain(..consumed_bytes.min(buf.len()));
            self.http_local_response(slot, 404, Term::Local);
            return;
        };
        if too_large {
            c.ex = Some(ex);
            self.http_local_response(slot, 413, Term::Local);
            return;
        }
        let sticky_cookie = self
            .backends
            .get(backend)
            .and_then(|b| b.sticky_cookie.as_deref());
        ex.sticky = sticky_cookie.and_then(|name| {
            let b = self.backends.get(backend)?;
            let value = head
                .headers
                .iter()
                .filter(|h| {
                    buf.get(h.name.clone())
                        .is_some_and(|n| n.eq_ignore_ascii_case(b"cookie"))
                })
                .filter_map(|h| buf.get(h.value.clone()))
                .find_map(|v| cookie_value(v, name.as_bytes()))?;
            b.server_names.iter().position(|n| n.as_bytes() == value)
        });
        let opts = ForwardOpts {
            client_ip: c.client.ip(),
            proto: if c.tls { "https" } else { "http" },
            x_forwarded_for: l.x_forwarded_for,
            x_real_ip: l.x_real_ip,
            x_forwarded_proto: l.x_forwarded_proto,
            forwarded: l.forwarded,
            tunnel: head.upgrade,
            strip_cookie: sticky_cookie,
        };
        let mut encoded = std::mem::take(&mut c.sides[SERVER].out);
        encoded.clear();
        http1::encode_request(buf, &head, &opts, &mut encoded);
        ex.key = self
            .backends
            .get(backend)
            .filter(|b| matches!(b.algo, crate::balancer::Algorithm::Maglev(_)))
            .map(|b| request_hash_key(&b.hash_key, c.client, buf, &head));
        c.sides[CLIENT]
            .inbuf
            .drain(..consumed_bytes.min(c.sides[CLIENT].inbuf.len()));
        if matches!(body, Body::Done) {
            ex.req_done = true;
        }
        c.flows[CLIENT] = Flow { body, splice: None };
        c.flows[SERVER] = Flow::idle();
        ex.backend = backend;
        c.ex = Some(ex);
        self.http_connect(slot, encoded, true);
    }

    /// Takes a pooled connection to a server picked by the balancer, or starts a connect.
    /// `encoded` is the request head to send first.
    fn http_connect(&mut self, slot: u32, encoded: Vec<u8>, allow_pool: bool) {
        let now = self.now_ms;
        let Some(backend) = self
            .hconn(slot)
            .and_then(|c| c.ex.as_ref())
            .map(|e| e.backend)
        else {
            return;
        };
        let Some(b) = self.backends.get_mut(backend) else {
            self.http_local_response(slot, 503, Term::Local);
            return;
        };
        let (key, tried, sticky) = self
            .http_slots
            .get(slot as usize)
            .and_then(|s| s.conn.as_ref())
            .and_then(|c| c.ex.as_ref())
            .map_or((None, Vec::new(), None), |e| {
                (e.key, e.tried.clone(), e.sticky)
            });
        let Some(server) = b.pick_sticky(sticky, key, &tried) else {
            if b.all_full() && b.queue.len() < b.queue_max {
                // Every server in the tier is at its maxconn: wait for one (HAProxy queue).
                let generation = self
                    .http_slots
                    .get(slot as usize)
                    .map_or(0, |s| s.generation);
                b.queue.push_back((slot, generation));
                self.http_queued += 1;
                self.stats.http_queued += 1;
                if let Some(c) = self.hconn(slot) {
                    c.phase = Phase::Queued { since_ms: now };
                    c.queued = Some(encoded);
                }
                return;
            }
            self.http_local_response(slot, 503, Term::Local);
            return;
        };
        let retries = b.retries;
        let set_cookie = b.sticky_cookie.is_some() && sticky != Some(server);
        b.count_active(server, true);
        let replayable = self
            .http_slots
            .get(slot as usize)
            .and_then(|s| s.conn.as_ref())
            .and_then(|c| c.ex.as_ref())
            .is_some_and(|e| e.req_done);
        let pooled = if allow_pool {
            b.pool
                .idle
                .get_mut(server)
                .and_then(|list| take_live(list, now, !replayable))
        } else {
            None
        };
        let addr = b
            .addrs
            .get(server)
            .map(|a| (a.as_ptr(), a.len(), a.is_ipv6()));
        let Some(c) = self.hconn(slot) else {
            if let Some(fd) = pooled {
                close_fd(fd);
            }
            return;
        };
        c.counted = Some((backend, server));
        if let Some(ex) = c.ex.as_mut() {
            ex.server = server;
            ex.set_cookie = set_cookie;
            ex.reused = pooled.is_some();
            ex.req_sent_ms = now;
            if ex.req_done && (ex.reused || retries > 0) {
                // Kept in case the connection turns out dead before answering (`http_try_retry`).
                ex.replay = Some(encoded.clone());
            }
        }
        c.sides[SERVER].reset(-1, now);
        c.sides[SERVER].out = encoded;
        let (client_fd, client) = (c.sides[CLIENT].fd, c.client);
        if pooled.is_none()
            && let Some(header) =
                super::proxy_header_for(&self.backends, backend, server, client_fd, Some(client))
            && let Some(c) = self.hconn(slot)
        {
            // The PROXY header goes first on the new connection (which is then never pooled: it
            // speaks for this client only).
            let mut out = header;
            out.append(&mut c.sides[SERVER].out);
            c.sides[SERVER].out = out;
        }
        let Some(c) = self.hconn(slot) else {
            return;
        };
        if let Some(fd) = pooled {
            c.sides[SERVER].fd = fd;
            c.phase = Phase::Exchange;
            self.stats.http_pool_reused += 1;
            return;
        }
        let Some((addr_ptr, addr_len, v6)) = addr else {
            self.http_local_response(slot, 503, Term::Local);
            return;
        };
        let upstream_tls = self.backends.get(backend).is_some_and(|b| b.tls.is_some());
        let fd = if upstream_tls {
            // TLS to the server: the plaintext end of a socketpair whose other end shard/tls.rs
            // connects and encrypts.
            self.tls_upstream_open(backend, server).unwrap_or(-1)
        } else {
            let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
            // SAFETY: plain syscall, result checked.
            unsafe {
                libc::socket(
                    family,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                )
            }
        };
        if fd < 0 {
            self.stats.connect_errors += 1;
            self.http_local_response(slot, 502, Term::Local);
            return;
        }
        set_nodelay(fd);
        let Some(c) = self.hconn(slot) else {
            close_fd(fd);
            return;
        };
        c.sides[SERVER].fd = fd;
        c.sides[SERVER].inflight += 1;
        c.phase = Phase::Connecting { started_ms: now };
        // SAFETY (pointer lifetime): `addr_ptr` points into this shard's server table, which is
        // never resized after boot; the kernel copies the address when the SQE is submitted.
        let entry = if upstream_tls {
            // Already connected (to the TLS bridge): complete the "connect" at once.
            opcode::Nop::new().build()
        } else {
            opcode::Connect::new(types::Fd(fd), addr_ptr.cast(), addr_len).build()
        };
        self.ring
            .push(entry.user_data(Op::new(OpKind::HttpConnect, slot, SERVER).encode()));
    }

    fn step_exchange(&mut self, slot: u32) -> Step {
        let mut progressed = false;
        progressed |= self.flow_request(slot);
        progressed |= self.flow_response(slot);
        if self.finish_exchange_if_done(slot) {
            return Step::Again;
        }
        if progressed { Step::Again } else { Step::Stop }
    }

    /// Moves request body bytes from the client's inbuf towards the backend.
    fn flow_request(&mut self, slot: u32) -> bool {
        let body_bytes_max = self
            .hconn(slot)
            .map(|c| c.listener)
            .and_then(|l| self.http_listeners.get(l))
            .and_then(|l| l.body_bytes_max);
        let Some(c) = self.hconn(slot) else {
            return false;
        };
        let Some(ex) = c.ex.as_mut() else {
            return false;
        };
        if ex.req_done {
            return false;
        }
        let [client, server] = &mut c.sides;
        let flow = &mut c.flows[CLIENT];
        if flow.splice.is_some() {
            return false;
        }
        if server.queued() >= OUT_SOFT_MAX {
            return false;
        }
        match move_body(&mut flow.body, &mut client.inbuf, &mut server.out) {
            Ok(0) => {}
            Ok(n) => {
                ex.req_body_bytes += n as u64;
                ex.replay = None;
                if body_bytes_max.is_some_and(|max| ex.req_body_bytes > max) {
                    // A chunked body over the limit: part of it may be at the backend already,
                    // so that connection is closed (not pooled) and the client gets 413.
                    self.http_local_response(slot, 413, Term::ClientError);
                    return true;
                }
            }
            Err(()) => {
                tracing::debug!(shard = self.id, "malformed chunked request body");
                // Bytes of the request may already be at the backend: close both.
                self.http_local_response(slot, 400, Term::ClientError);
                return true;
            }
        }
        let Some(c) = self.hconn(slot) else {
            return false;
        };
        let Some(ex) = c.ex.as_mut() else {
            return false;
        };
        if matches!(c.flows[CLIENT].body, Body::Done) {
            ex.req_done = true;
            return true;
        }
        if c.sides[CLIENT].eof && c.sides[CLIENT].inbuf.is_empty() {
            // The client closed before its body was complete.
            self.http_close(slot, Term::ClientClosed);
            return true;
        }
        false
    }

    fn flow_response(&mut self, slot: u32) -> bool {
        let Some(c) = self.hconn(slot) else {
            return false;
        };
        let Some(ex) = c.ex.as_ref() else {
            return false;
        };
        match ex.resp {
            RespPhase::Head => self.response_head(slot),
            RespPhase::Body => self.response_body(slot),
            RespPhase::Done => false,
        }
    }

    fn response_head(&mut self, slot: u32) -> bool {
        let draining = self.drain_deadline_ms.is_some();
        let backends = &self.backends;
        let Some(c) = slot_conn(&mut self.http_slots, slot) else {
            return false;
        };
        let Some(ex) = c.ex.as_ref() else {
            return false;
        };
        let limits = http1::Limits::default();
        let is_head = ex.is_head;
        let sin = &c.sides[SERVER].inbuf;
        if sin.is_empty() {
            if c.sides[SERVER].eof {
                // Closed before any response byte (replayed if it was a reused connection).
                self.http_server_failed(slot, 502, Term::ServerError);
                return true;
            }
            return false;
        }
        match http1::parse_response(sin, &limits, is_head) {
            HeadVerdict::Partial => {
                if c.sides[SERVER].eof {
                    self.http_server_failed(slot, 502, Term::ServerError);
                    return true;
                }
                false
            }
            HeadVerdict::Invalid(reject) => {
                tracing::debug!(shard = self.id, reason = %reject, "invalid response from backend");
                self.stats.http_bad_responses += 1;
                self.http_server_failed(slot, 502, Term::ServerError);
                true
            }
            HeadVerdict::Complete {
                head,
                consumed_bytes,
            } => {
                let Some(ex) = c.ex.as_mut() else {
                    return false;
                };
                let [client, server] = &mut c.sides;
                ex.replay = None;
                let status = head.status;
                let interim = (100..200).contains(&status) && status != 101;
                let tunnel = status == 101;
                if tunnel && !ex.upgrade {
                    self.stats.http_bad_responses += 1;
                    self.http_server_failed(slot, 502, Term::ServerError);
                    return true;
                }
                let keep_alive = !interim && !tunnel && ex.client_keep_alive && !draining;
                let cookie = (ex.set_cookie && !interim)
                    .then(|| {
                        let b = backends.get(ex.backend)?;
                        Some((
                            b.sticky_cookie.as_deref()?,
                            b.server_names.get(ex.server)?.as_str(),
                        ))
                    })
                    .flatten();
                let opts = ResponseOpts {
                    keep_alive: keep_alive || interim || tunnel,
                    version_minor_client: ex.client_version_minor,
                    tunnel,
                    set_cookie: cookie,
                    dechunk: false,
                };
                let before = client.out.len();
                http1::encode_response(&server.inbuf, &head, &opts, &mut client.out);
                ex.resp_bytes += (client.out.len() - before) as u64;
                ex.resp_started = true;
                server.inbuf.drain(..consumed_bytes.min(server.inbuf.len()));
                if interim {
                    return true;
                }
                ex.status = status;
                ex.server_keep_alive = head.keep_alive;
                let outcome = (ex.backend, ex.server, status < 500);
                if !keep_alive {
                    ex.client_keep_alive = false;
                }
                if tunnel {
                    c.phase = Phase::Tunnel;
                    c.flows = [
                        Flow {
                            body: Body::UntilEof,
                            splice: None,
                        },
                        Flow {
                            body: Body::UntilEof,
                            splice: None,
                        },
                    ];
                    ex.req_done = true;
                    ex.resp = RespPhase::Done;
                    self.stats.http_tunnels += 1;
                    return true;
                }
                c.flows[SERVER] = Flow {
                    body: match head.framing {
                        Framing::None => Body::Done,
                        Framing::Length(n) => Body::Length(n),
                        Framing::Chunked => Body::Chunked(ChunkedScanner::new()),
                        Framing::CloseDelimited => {
                            ex.client_keep_alive = false;
                            Body::UntilEof
                        }
                    },
                    splice: None,
                };
                ex.resp = RespPhase::Body;
                self.record_outcome(outcome.0, outcome.1, outcome.2);
                true
            }
        }
    }

    fn response_body(&mut self, slot: u32) -> bool {
        let Some(c) = self.hconn(slot) else {
            return false;
        };
        let Some(ex) = c.ex.as_mut() else {
            return false;
        };
        let [client, server] = &mut c.sides;
        let flow = &mut c.flows[SERVER];
        if flow.splice.is_some() {
            return false;
        }
        let mut progressed = false;
        if client.queued() < OUT_SOFT_MAX {
            match move_body(&mut flow.body, &mut server.inbuf, &mut client.out) {
                Ok(0) => {}
                Ok(n) => {
                    ex.resp_bytes += n as u64;
                    progressed = true;
                }
                Err(()) => {
                    self.stats.http_bad_responses += 1;
                    self.http_close(slot, Term::ServerError);
                    return true;
                }
            }
        }
        let Some(c) = self.hconn(slot) else {
            return progressed;
        };
        let Some(ex) = c.ex.as_mut() else {
            return progressed;
        };
        let server = &c.sides[SERVER];
        match c.flows[SERVER].body {
            Body::Done => {
                ex.resp = RespPhase::Done;
                return true;
            }
            Body::UntilEof if server.eof && server.inbuf.is_empty() => {
                c.flows[SERVER].body = Body::Done;
                ex.resp = RespPhase::Done;
                ex.server_keep_alive = false;
                return true;
            }
            _ if server.eof && server.inbuf.is_empty() => {
                // The backend closed mid-body: the client gets a truncated response and a close,
                // never a hang, and this connection is not pooled.
                tracing::debug!(shard = self.id, "backend closed mid-response");
                self.http_close(slot, Term::ServerError);
                return true;
            }
            _ => {}
        }
        progressed
    }

    /// Ends an exchange whose request and response are both complete and flushed: log it, pool the
    /// backend connection when it is clean, and go back to reading heads (or close).
    fn finish_exchange_if_done(&mut self, slot: u32) -> bool {
        let now = self.now_ms;
        let draining = self.drain_deadline_ms.is_some();
        let backends = &self.backends;
        let Some(c) = slot_conn(&mut self.http_slots, slot) else {
            return false;
        };
        let Some(ex) = c.ex.as_ref() else {
            return false;
        };
        if ex.resp != RespPhase::Done {
            return false;
        }
        let request_complete = ex.req_done && c.flows[CLIENT].splice.is_none();
        if !c.sides[CLIENT].flushed() {
            return false;
        }
        let private = backends
            .get(ex.backend)
            .and_then(|b| b.send_proxy.get(ex.server))
            .is_some_and(|v| v.is_some());
        let server_clean = request_complete
            && !private
            && ex.server_keep_alive
            && c.sides[SERVER].flushed()
            && c.sides[SERVER].inbuf.is_empty()
            && !c.sides[SERVER].eof
            && c.flows[SERVER].splice.is_none();
        let keep_client = ex.client_keep_alive && request_complete && !draining;
        self.log_exchange(slot, Term::Done);
        self.detach_server(slot, server_clean);
        let Some(c) = self.hconn(slot) else {
            return false;
        };
        c.ex = None;
        c.flows = [Flow::idle(), Flow::idle()];
        if keep_client {
            c.phase = Phase::Head { started_ms: None };
            c.sides[CLIENT].active_ms = now;
            if c.sides[CLIENT].inbuf.is_empty() {
                // An idle keep-alive client (nothing pipelined): hand the buffers back so an idle
                // connection costs only its state (bench/ idle scenario). The next request
                // allocates them again (a few small allocations per request).
                c.sides[CLIENT].inbuf = Vec::new();
                if c.sides[CLIENT].out.is_empty() && !c.sides[CLIENT].send_inflight {
                    c.sides[CLIENT].out = Vec::new();
                    c.sides[CLIENT].sending = Vec::new();
                    c.sides[CLIENT].sent = 0;
                }
                let server = &mut c.sides[SERVER];
                if server.fd < 0 && !server.send_inflight {
                    server.inbuf = Vec::new();
                    server.out = Vec::new();
                    server.sending = Vec::new();
                    server.sent = 0;
                }
            }
        } else {
            self.http_close(slot, Term::Done);
        }
        true
    }

    fn step_tunnel(&mut self, slot: u32) -> Step {
        let mut progressed = false;
        for dir in [CLIENT, SERVER] {
            let Some(c) = self.hconn(slot) else {
                return Step::Stop;
            };
            if c.flows[dir].splice.is_some() {
                continue;
            }
            let (src, dst) = pair(&mut c.sides, dir);
            if dst.queued() < OUT_SOFT_MAX && !src.inbuf.is_empty() {
                if dst.out.is_empty() {
                    // Hand the received bytes over without copying them again.
                    std::mem::swap(&mut dst.out, &mut src.inbuf);
                } else {
                    dst.out.append(&mut src.inbuf);
                }
                progressed = true;
            }
            if src.eof && src.inbuf.is_empty() && dst.flushed() && !dst.shut {
                shut_write(dst);
                progressed = true;
            }
        }
        let Some(c) = self.hconn(slot) else {
            return Step::Stop;
        };
        if c.sides[CLIENT].shut && c.sides[SERVER].shut {
            self.log_exchange(slot, Term::Done);
            self.http_close(slot, Term::Done);
            return Step::Stop;
        }
        if progressed { Step::Again } else { Step::Stop }
    }

    fn step_linger(&mut self, slot: u32) -> Step {
        let Some(c) = self.hconn(slot) else {
            return Step::Stop;
        };
        let client = &mut c.sides[CLIENT];
        client.inbuf.clear();
        if client.flushed() && !client.shut {
            shut_write(client);
        }
        if client.shut && (client.eof || c.lingered > LINGER_BYTES_MAX) {
            self.http_close(slot, Term::Local);
        }
        Step::Stop
    }

    // ---- I/O arming ----------------------------------------------------------------------------

    /// Starts sends for queued bytes and arms or cancels recvs according to what each side needs.
    fn http_io(&mut self, slot: u32) {
        for side in [CLIENT, SERVER] {
            self.http_start_send(slot, side);
        }
        for side in [CLIENT, SERVER] {
            let want = self.http_wants_recv(slot, side);
            self.http_sync_recv(slot, side, want);
        }
        for dir in [CLIENT, SERVER] {
            let splice_mode = self.http_splice_mode(slot);
            let to_read = self.hconn(slot).and_then(|c| {
                if c.flows[dir].splice.is_some() || !c.flow_wants_splice(dir, splice_mode) {
                    return None;
                }
                match c.flows[dir].body {
                    Body::Length(rest) => Some(rest),
                    Body::UntilEof => Some(u64::MAX),
                    Body::Done | Body::Chunked(_) => None,
                }
            });
            let phase_ok = self
                .hconn(slot)
                .is_some_and(|c| matches!(c.phase, Phase::Exchange | Phase::Tunnel));
            if let Some(to_read) = to_read
                && phase_ok
            {
                self.start_flow_splice(slot, dir, to_read);
            }
            self.pump_flow_splice(slot, dir);
        }
    }

    fn http_wants_recv(&mut self, slot: u32, side: usize) -> bool {
        let splice_mode = self.http_splice_mode(slot);
        let head_max = self
            .hconn(slot)
            .map(|c| c.listener)
            .and_then(|l| self.http_listeners.get(l))
            .map_or(64 * 1024, |l| l.head_bytes_max as usize);
        let Some(c) = self.hconn(slot) else {
            return false;
        };
        let sd = &c.sides[side];
        if sd.fd < 0 || sd.eof || c.flows[side].splice.is_some() {
            return false;
        }
        let other_queued = c.sides[1 - side].queued();
        match (c.phase, side) {
            (Phase::Head { .. }, CLIENT) => c.sides[CLIENT].inbuf.len() < head_max,
            (Phase::Head { .. }, _) => false,
            (Phase::Connecting { .. }, _) | (Phase::Queued { .. }, _) => false,
            (Phase::Exchange, CLIENT) => {
                let req_done = c.ex.as_ref().is_none_or(|e| e.req_done);
                if req_done {
                    // Keep the multishot recv armed across requests: pipelined requests (and a
                    // close) land in inbuf, bounded by the head limit.
                    c.sides[CLIENT].inbuf.len() < head_max
                } else {
                    !c.flow_wants_splice(CLIENT, splice_mode)
                        && other_queued < OUT_SOFT_MAX
                        && c.sides[CLIENT].inbuf.len() < OUT_SOFT_MAX
                }
            }
            (Phase::Exchange, _) => {
                let resp_done = c.ex.as_ref().is_none_or(|e| e.resp == RespPhase::Done);
                // HTTP/1.1 lets a backend answer before it has read the whole request, so reading
                // the response never waits for the request's sends.
                !resp_done
                    && !c.flow_wants_splice(SERVER, splice_mode)
                    && other_queued < OUT_SOFT_MAX
                    && c.sides[SERVER].inbuf.len() < OUT_SOFT_MAX
            }
            (Phase::Tunnel, _) => {
                !c.flow_wants_splice(side, splice_mode)
                    && other_queued < OUT_SOFT_MAX
                    && sd.inbuf.is_empty()
            }
            (Phase::Linger { .. }, CLIENT) => true,
            (Phase::Linger { .. }, _) => false,
            (Phase::Closing, _) => false,
        }
    }

    /// Client side: one multishot recv kept armed across requests. Backend side: single-shot recvs,
    /// so that a finished response leaves nothing in flight and the connection can be pooled at
    /// once.
    fn http_sync_recv(&mut self, slot: u32, side: usize, want: bool) {
        let group = self.bufs.group;
        let buffer_bytes = self.bufs.buffer_bytes();
        let no_buffers = self.bufs.available() == 0;
        let Some(c) = self.hconn(slot) else {
            return;
        };
        // Waiting for a response head that cannot be there yet (the request was just sent): ask
        // the kernel to arm the poll first instead of trying a recv that would fail.
        let poll_first = side == SERVER
            && c.sides[SERVER].inbuf.is_empty()
            && c.ex.as_ref().is_some_and(|e| e.resp == RespPhase::Head);
        let sd = &mut c.sides[side];
        if want {
            if sd.recv_armed || sd.waiting_bufs {
                return;
            }
            if no_buffers {
                sd.waiting_bufs = true;
                self.http_waiting_bufs.push((slot, side));
                return;
            }
            sd.recv_armed = true;
            sd.recv_cancel_sent = false;
            sd.inflight += 1;
            let user_data = Op::new(OpKind::HttpRecv, slot, side).encode();
            let entry = if side == CLIENT {
                opcode::RecvMulti::new(types::Fd(sd.fd), group)
                    .build()
                    .user_data(user_data)
            } else {
                opcode::Recv::new(types::Fd(sd.fd), std::ptr::null_mut(), buffer_bytes)
                    .buf_group(group)
                    .ioprio(if poll_first { RECVSEND_POLL_FIRST } else { 0 })
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)
                    .user_data(user_data)
            };
            self.ring.push(entry);
        } else if sd.recv_armed && !sd.recv_cancel_sent && side == CLIENT {
            sd.recv_cancel_sent = true;
            let target = Op::new(OpKind::HttpRecv, slot, side).encode();
            let entry = opcode::AsyncCancel2::new(types::CancelBuilder::user_data(target))
                .build()
                .user_data(Op::new(OpKind::Cancel, slot, side).encode());
            self.ring.push(entry);
        }
    }

    fn http_start_send(&mut self, slot: u32, side: usize) {
        let Some(c) = self.hconn(slot) else {
            return;
        };
        if matches!(c.phase, Phase::Connecting { .. } | Phase::Closing) {
            return;
        }
        let sd = &mut c.sides[side];
        if sd.fd < 0 || sd.send_inflight || sd.shut {
            return;
        }
        if sd.sent >= sd.sending.len() {
            sd.sending.clear();
            sd.sent = 0;
            if sd.out.is_empty() {
                return;
            }
            std::mem::swap(&mut sd.sending, &mut sd.out);
        }
        let Some(rest) = sd.sending.get(sd.sent..) else {
            return;
        };
        sd.send_inflight = true;
        sd.inflight += 1;
        // SAFETY (pointer lifetime): `sending` is not modified or dropped while `send_inflight`:
        // the connection (and this Vec's heap buffer) is freed only once `inflight` is zero.
        let entry = opcode::Send::new(types::Fd(sd.fd), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(Op::new(OpKind::HttpSend, slot, side).encode());
        self.ring.push(entry);
    }

    fn http_arm_poll(&mut self, slot: u32, side: usize, kind: OpKind) {
        let Some(c) = self.hconn(slot) else {
            return;
        };
        let sd = &mut c.sides[side];
        let (armed, mask) = match kind {
            OpKind::HttpPollIn => (&mut sd.poll_in, libc::POLLIN | libc::POLLRDHUP),
            _ => (&mut sd.poll_out, libc::POLLOUT),
        };
        if *armed || sd.fd < 0 {
            return;
        }
        *armed = true;
        sd.inflight += 1;
        let entry = opcode::PollAdd::new(types::Fd(sd.fd), mask as u32)
            .build()
            .user_data(Op::new(kind, slot, side).encode());
        self.ring.push(entry);
    }

    // ---- splice for large bodies and tunnels ------------------------------------------------

    fn http_splice_mode(&mut self, slot: u32) -> SpliceMode {
        self.hconn(slot)
            .map(|c| c.listener)
            .and_then(|l| self.http_listeners.get(l))
            .map_or(SpliceMode::Auto, |l| l.splice)
    }

    /// Switches flow `dir` to splice for `to_read` bytes once its copy path is idle.
    fn start_flow_splice(&mut self, slot: u32, dir: usize, to_read: u64) {
        let Some(c) = self.hconn(slot) else {
            return;
        };
        let (src, dst) = pair(&mut c.sides, dir);
        if src.recv_armed || src.eof || !src.inbuf.is_empty() || !dst.flushed() || to_read == 0 {
            return;
        }
        let Ok(pipe) = self.pipes.take() else {
            return;
        };
        if let Some(c) = self.hconn(slot) {
            c.flows[dir].splice = Some(pipes::Flow {
                pipe,
                in_pipe: 0,
                to_read,
                eof: false,
            });
        }
    }

    /// Moves spliced bytes of flow `dir` until a side would block, then arms readiness.
    fn pump_flow_splice(&mut self, slot: u32, dir: usize) {
        let now = self.now_ms;
        let pipe_bytes = self.pipes.pipe_bytes();
        let Some(c) = slot_conn(&mut self.http_slots, slot) else {
            return;
        };
        let Some(mut sp) = c.flows[dir].splice else {
            return;
        };
        if matches!(c.phase, Phase::Closing | Phase::Linger { .. }) {
            return;
        }
        let (src_fd, dst_fd) = (c.sides[dir].fd, c.sides[1 - dir].fd);
        if c.sides[dir].poll_in || c.sides[1 - dir].poll_out || src_fd < 0 || dst_fd < 0 {
            return;
        }
        let (stop, moved) = pump(src_fd, dst_fd, &mut sp, pipe_bytes, SPLICE_ROUNDS_MAX);
        if moved.read_bytes > 0 {
            c.sides[dir].active_ms = now;
        }
        if moved.written_bytes > 0 {
            c.sides[1 - dir].active_ms = now;
        }
        if let Some(ex) = c.ex.as_mut() {
            if dir == SERVER {
                ex.resp_bytes += moved.written_bytes;
            } else {
                ex.req_body_bytes += moved.written_bytes;
            }
        }
        c.flows[dir].splice = Some(sp);
        self.stats.bytes_spliced += moved.written_bytes;
        if dir == CLIENT {
            self.stats.bytes_client_to_server += moved.written_bytes;
        } else {
            self.stats.bytes_server_to_client += moved.written_bytes;
        }
        match stop {
            PumpStop::WaitIn | PumpStop::Yield => self.http_arm_poll(slot, dir, OpKind::HttpPollIn),
            PumpStop::WaitOut => self.http_arm_poll(slot, 1 - dir, OpKind::HttpPollOut),
            PumpStop::Finished | PumpStop::Eof => {
                let Some(c) = self.hconn(slot) else {
                    return;
                };
                c.flows[dir].splice = None;
                if sp.eof {
                    c.sides[dir].eof = true;
                }
                let until_eof = sp.to_read == u64::MAX;
                if sp.eof && !until_eof {
                    // Source closed before the announced length: truncated body.
                    self.pipes.give_back(sp.pipe, sp.in_pipe == 0);
                    self.http_close(slot, Term::ServerError);
                    return;
                }
                self.pipes.give_back(sp.pipe, true);
                let Some(c) = self.hconn(slot) else {
                    return;
                };
                if !until_eof || c.phase == Phase::Exchange {
                    c.flows[dir].body = Body::Done;
                    if until_eof && let Some(ex) = c.ex.as_mut() {
                        ex.server_keep_alive = false;
                    }
                }
                if dir == CLIENT
                    && matches!(c.flows[CLIENT].body, Body::Done)
                    && let Some(ex) = c.ex.as_mut()
                {
                    ex.req_done = true;
                }
                // Continue with what the new state allows (finish the exchange, shut a tunnel
                // side) on another progress pass.
                c.again = true;
            }
            PumpStop::Failed(errno) => {
                tracing::debug!(shard = self.id, dir, errno, "splice failed");
                self.http_close(slot, Term::ServerError);
            }
        }
    }

    // ---- endings -------------------------------------------------------------------------------

    /// The backend failed (connect, reset, bad response). Before any response byte reached the
    /// client this becomes a status (502/504); after it, the client connection is closed.
    fn http_server_failed(&mut self, slot: u32, status: u16, term: Term) {
        let connect_phase = self
            .hconn(slot)
            .is_some_and(|c| matches!(c.phase, Phase::Connecting { .. }));
        if (term == Term::ServerError || connect_phase) && self.http_try_retry(slot) {
            return;
        }
        let Some(c) = self.hconn(slot) else {
            return;
        };
        let started = c.ex.as_ref().is_some_and(|e| e.resp_started);
        self.detach_server(slot, false);
        if started {
            self.log_exchange(slot, term);
            self.http_close(slot, term);
        } else {
            self.http_local_response(slot, status, term);
        }
    }

    /// The backend failed before any response byte reached the client: retry when it is safe.
    /// - The connect failed (or timed out): nothing was sent, the request goes to another server
    ///   while `retries` remain (`redispatch`), body or not.
    /// - A reused (pooled) connection died (EOF, EPIPE, reset): the backend may have closed it on
    ///   its keep-alive timeout just as it was taken; a bodyless request is replayed once on a new
    ///   connection without using a retry.
    /// - A fresh connection died before answering: a bodyless request is retried while `retries`
    ///   remain. A request whose body was (partly) sent is never replayed.
    ///
    /// Returns whether a retry was started.
    fn http_try_retry(&mut self, slot: u32) -> bool {
        let now = self.now_ms;
        let Some(c) = self.hconn(slot) else {
            return false;
        };
        let connect_failed =
            matches!(c.phase, Phase::Connecting { .. }) && c.pending_replay.is_none();
        if !connect_failed && c.phase != Phase::Exchange {
            return false;
        }
        let Some(ex) = c.ex.as_ref() else {
            return false;
        };
        if ex.resp_started || ex.server_answered || ex.server == usize::MAX {
            return false;
        }
        let (backend, server, reused, tried) = (ex.backend, ex.server, ex.reused, ex.tried.len());
        let free_replay = reused && !connect_failed;
        let retries = self.backends.get(backend).map_or(0, |b| b.retries) as usize;
        if !free_replay && tried >= retries {
            return false;
        }
        let Some(c) = self.hconn(slot) else {
            return false;
        };
        let encoded = if connect_failed {
            // Nothing was sent: what waits in the backend side's queue is the whole request so far.
            let mut bytes = std::mem::take(&mut c.sides[SERVER].sending);
            bytes.extend_from_slice(&c.sides[SERVER].out);
            c.sides[SERVER].out.clear();
            Some(bytes)
        } else {
            c.ex.as_mut().and_then(|e| e.replay.take())
        };
        let Some(encoded) = encoded else {
            return false;
        };
        if let Some(ex) = c.ex.as_mut() {
            if free_replay {
                ex.reused = false;
            } else {
                ex.tried.push(server);
            }
        }
        if free_replay {
            self.stats.http_pool_retries += 1;
        } else {
            self.stats.connect_retries += 1;
        }
        self.detach_server(slot, false);
        let Some(c) = self.hconn(slot) else {
            return true;
        };
        c.flows[SERVER] = Flow::idle();
        if c.sides[SERVER].fd >= 0 {
            // Ops still in flight on the old socket: connect once it is closed (http_try_free).
            c.pending_replay = Some(encoded);
            c.phase = Phase::Connecting { started_ms: now };
        } else {
            self.http_connect(slot, encoded, !free_replay);
        }
        true
    }

    /// Queues ringway's own response, then lingers and closes: after an error the framing of
    /// what the client sent next is uncertain, so the connection is never reused.
    fn http_local_response(&mut self, slot: u32, status: u16, term: Term) {
        let now = self.now_ms;
        self.detach_server(slot, false);
        let log_on = self
            .hconn(slot)
            .map(|c| c.listener)
            .and_then(|l| self.http_listeners.get(l))
            .is_some_and(|l| l.access_log_on);
        let Some(c) = self.hconn(slot) else {
            return;
        };
        // For the access log of a request refused before it was understood: its first line.
        let raw_log = (log_on && c.ex.is_none()).then(|| raw_request_line(&c.sides[CLIENT].inbuf));
        c.sides[CLIENT].inbuf.clear();
        c.flows = [Flow::idle(), Flow::idle()];
        let before = c.sides[CLIENT].out.len();
        http1::error_response(status, true, &mut c.sides[CLIENT].out);
        let written = (c.sides[CLIENT].out.len() - before) as u64;
        match c.ex.as_mut() {
            Some(ex) => {
                ex.status = status;
                ex.resp_bytes += written;
                ex.client_keep_alive = false;
            }
            None => {
                c.ex = Some(Box::new(Exchange {
                    backend: usize::MAX,
                    server: usize::MAX,
                    reused: false,
                    replay: None,
                    req_done: true,
                    req_sent_ms: now,
                    resp: RespPhase::Done,
                    resp_started: true,
                    server_answered: false,
                    client_keep_alive: false,
                    server_keep_alive: false,
                    is_head: false,
                    upgrade: false,
                    client_version_minor: 1,
                    status,
                    started_ms: now,
                    resp_bytes: written,
                    req_body_bytes: 0,
                    log: raw_log,
                    key: None,
                    tried: Vec::new(),
                    sticky: None,
                    set_cookie: false,
                }))
            }
        }
        c.phase = Phase::Linger {
            until_ms: now + LINGER_MS,
        };
        self.stats.http_local_responses += 1;
        self.log_exchange(slot, term);
        if let Some(c) = self.hconn(slot) {
            c.ex = None;
        }
    }

    /// Releases the backend side: into the pool when `clean`, otherwise closed. Ops still in
    /// flight on it are cancelled and the fd is closed once they complete (`http_try_free`).
    fn detach_server(&mut self, slot: u32, clean: bool) {
        let now = self.now_ms;
        if let Some((b, server)) = self.hconn(slot).and_then(|c| c.counted.take())
            && let Some(backend) = self.backends.get_mut(b)
        {
            backend.count_active(server, false);
        }
        let Some(c) = slot_conn(&mut self.http_slots, slot) else {
            return;
        };
        for dir in [CLIENT, SERVER] {
            if let Some(sp) = c.flows[dir].splice.take() {
                self.pipes.give_back(sp.pipe, sp.in_pipe == 0);
            }
        }
        let detaching = &self.http_detaching;
        let Some(c) = slot_conn(&mut self.http_slots, slot) else {
            return;
        };
        let fd = c.sides[SERVER].fd;
        if fd < 0 || detaching.contains(&(slot, fd)) {
            return;
        }
        let inflight = c.sides[SERVER].inflight;
        let target = c.ex.as_ref().map(|e| (e.backend, e.server));
        if clean && inflight == 0 {
            c.sides[SERVER].reset(-1, now);
            let draining = self.drain_deadline_ms.is_some();
            let pooled = target.and_then(|(b, s)| {
                let backend = self.backends.get_mut(b)?;
                let idle_max = backend.idle_conns_max;
                let list = backend.pool.idle.get_mut(s)?;
                (list.len() < idle_max && !draining).then_some(list)
            });
            match pooled {
                Some(list) => list.push(Pooled { fd, since_ms: now }),
                None => close_fd(fd),
            }
            return;
        }
        if inflight == 0 {
            c.sides[SERVER].reset(-1, now);
            close_fd(fd);
            return;
        }
        // Ops in flight: cancel them; the fd is closed when the last one completes.
        c.sides[SERVER].eof = true;
        c.sides[SERVER].shut = true;
        c.sides[SERVER].out.clear();
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .user_data(Op::new(OpKind::Cancel, slot, SERVER).encode());
        self.ring.push(entry);
        self.http_detaching.push((slot, fd));
    }

    /// Starts closing the whole connection.
    pub(super) fn http_close(&mut self, slot: u32, term: Term) {
        self.detach_server(slot, false);
        let Some(c) = self.hconn(slot) else {
            return;
        };
        if c.phase == Phase::Closing {
            return;
        }
        if c.ex.is_some() {
            self.log_exchange(slot, term);
        }
        let Some(c) = self.hconn(slot) else {
            return;
        };
        c.phase = Phase::Closing;
        c.term = Some(term);
        c.ex = None;
        if c.sides[CLIENT].inflight > 0 {
            let fd = c.sides[CLIENT].fd;
            let entry = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
                .build()
                .user_data(Op::new(OpKind::Cancel, slot, CLIENT).encode());
            self.ring.push(entry);
        }
    }

    /// Frees a closing connection, and closes detached backend fds, once the kernel holds nothing
    /// of theirs.
    pub(super) fn http_try_free(&mut self, slot: u32) {
        // A backend side detached with ops in flight.
        let detaching = &self.http_detaching;
        if let Some(c) = slot_conn(&mut self.http_slots, slot)
            && c.sides[SERVER].fd >= 0
            && c.sides[SERVER].inflight == 0
            && detaching
                .iter()
                .any(|(s, fd)| *s == slot && *fd == c.sides[SERVER].fd)
        {
            let fd = c.sides[SERVER].fd;
            c.sides[SERVER].reset(-1, 0);
            let replay = c.pending_replay.take();
            close_fd(fd);
            self.http_detaching
                .retain(|(s, f)| !(*s == slot && *f == fd));
            if let Some(encoded) = replay {
                self.http_connect(slot, encoded, false);
            }
            self.http_progress(slot);
        }
        let Some(s) = self.http_slots.get_mut(slot as usize) else {
            return;
        };
        let ready = s
            .conn
            .as_ref()
            .is_some_and(|c| c.phase == Phase::Closing && c.inflight() == 0);
        if !ready {
            return;
        }
        let Some(mut c) = s.conn.take() else {
            return;
        };
        s.generation = s.generation.wrapping_add(1);
        for dir in [CLIENT, SERVER] {
            if let Some(sp) = c.flows[dir].splice.take() {
                self.pipes.give_back(sp.pipe, sp.in_pipe == 0);
            }
        }
        for sd in &c.sides {
            if sd.fd >= 0 {
                close_fd(sd.fd);
            }
        }
        self.http_detaching.retain(|(s, _)| *s != slot);
        if let Some((b, server)) = c.counted.take()
            && let Some(backend) = self.backends.get_mut(b)
        {
            backend.count_active(server, false);
        }
        self.free_http_slots.push(slot);
        self.stats.closed += 1;
        self.stats.active = self.stats.active.saturating_sub(1);
        tracing::trace!(
            shard = self.id,
            requests = c.requests,
            term = c.term.unwrap_or(Term::Done).as_str(),
            duration_ms = self.now_ms.saturating_sub(c.opened_ms),
            "http connection closed"
        );
    }

    pub(super) fn http_close_all_for_drain(&mut self) {
        for slot in 0..self.http_slots.len() as u32 {
            let open = self
                .http_slots
                .get(slot as usize)
                .and_then(|s| s.conn.as_ref())
                .is_some_and(|c| c.phase != Phase::Closing);
            if open {
                self.stats.drain_closed += 1;
                self.http_close(slot, Term::Drain);
                self.http_try_free(slot);
            }
        }
    }

    /// During a drain, idle keep-alive clients (between requests) are closed at once, as nginx
    /// and HAProxy do; requests in flight finish.
    pub(super) fn http_close_idle_for_drain(&mut self) {
        for slot in 0..self.http_slots.len() as u32 {
            let idle = self
                .http_slots
                .get(slot as usize)
                .and_then(|s| s.conn.as_ref())
                .is_some_and(|c| {
                    matches!(c.phase, Phase::Head { .. })
                        && c.sides[CLIENT].inbuf.is_empty()
                        && c.sides[SERVER].fd < 0
                });
            if idle {
                self.http_close(slot, Term::Drain);
                self.http_try_free(slot);
            }
        }
    }

    // ---- timers --------------------------------------------------------------------------------

    fn http_deadline(&self, c: &HttpConn) -> Option<u64> {
        let t = &self.http_timeouts;
        Some(match c.phase {
            Phase::Head {
                started_ms: Some(s),
            } => s.saturating_add(t.http_request),
            Phase::Head { started_ms: None } => {
                if c.requests == 0 {
                    c.opened_ms.saturating_add(t.http_request)
                } else {
                    c.sides[CLIENT].active_ms.saturating_add(t.http_keep_alive)
                }
            }
            Phase::Connecting { started_ms } => started_ms.saturating_add(t.connect),
            Phase::Queued { since_ms } => {
                let b = c.ex.as_ref().and_then(|e| self.backends.get(e.backend));
                since_ms.saturating_add(b.map_or(5_000, |b| b.queue_timeout_ms))
            }
            Phase::Exchange => {
                let ex = c.ex.as_ref()?;
                let idle = c.sides[CLIENT]
                    .active_ms
                    .saturating_add(t.client_idle)
                    .min(c.sides[SERVER].active_ms.saturating_add(t.server_idle));
                if ex.resp == RespPhase::Head && ex.req_done {
                    idle.min(
                        ex.req_sent_ms
                            .saturating_add(t.server_response)
                            .max(c.sides[SERVER].active_ms.saturating_add(t.server_response)),
                    )
                } else {
                    idle
                }
            }
            Phase::Tunnel => c.sides[CLIENT]
                .active_ms
                .max(c.sides[SERVER].active_ms)
                .saturating_add(t.tunnel),
            Phase::Linger { until_ms } => until_ms,
            Phase::Closing => return None,
        })
    }

    fn http_schedule_timer(&mut self, slot: u32) {
        let Some(s) = self.http_slots.get(slot as usize) else {
            return;
        };
        let generation = s.generation;
        let Some(c) = s.conn.as_ref() else {
            return;
        };
        let Some(deadline) = self.http_deadline(c) else {
            return;
        };
        if c.timer_at.is_some_and(|t| t <= deadline) {
            return;
        }
        if let Some(c) = self.hconn(slot) {
            c.timer_at = Some(deadline);
        }
        self.timers.insert(
            TimerKey {
                slot: slot | HTTP_TIMER_BIT,
                generation,
            },
            deadline,
        );
    }

    pub(super) fn on_http_timer(&mut self, key: TimerKey) {
        let slot = key.slot & !HTTP_TIMER_BIT;
        let now = self.now_ms;
        let Some(s) = self.http_slots.get(slot as usize) else {
            return;
        };
        if s.generation != key.generation {
            return;
        }
        let Some(c) = s.conn.as_ref() else {
            return;
        };
        let deadline = self.http_deadline(c);
        let phase = c.phase;
        let idle_between_requests = matches!(phase, Phase::Head { started_ms: None });
        let resp_head =
            c.ex.as_ref()
                .is_some_and(|e| e.resp == RespPhase::Head && e.req_done);
        if let Some(c) = self.hconn(slot) {
            c.timer_at = None;
        }
        match deadline {
            Some(d) if now >= d => {}
            _ => {
                self.http_schedule_timer(slot);
                return;
            }
        }
        match phase {
            Phase::Head { .. } if idle_between_requests => {
                self.stats.idle_timeouts += 1;
                self.http_close(slot, Term::Timeout);
            }
            Phase::Head { .. } => {
                self.stats.http_request_timeouts += 1;
                self.http_local_response(slot, 408, Term::Timeout);
            }
            Phase::Connecting { .. } => {
                self.stats.connect_timeouts += 1;
                self.http_server_failed(slot, 504, Term::Timeout);
            }
            Phase::Queued { .. } => {
                self.stats.http_queue_timeouts += 1;
                let backend = self.hconn(slot).and_then(|c| {
                    c.queued = None;
                    c.ex.as_ref().map(|e| e.backend)
                });
                if let Some(b) = backend.and_then(|b| self.backends.get_mut(b)) {
                    let before = b.queue.len();
                    b.queue.retain(|&(s, _)| s != slot);
                    self.http_queued = self.http_queued.saturating_sub(before - b.queue.len());
                }
                self.http_local_response(slot, 503, Term::Timeout);
            }
            Phase::Exchange if resp_head => {
                self.stats.http_server_timeouts += 1;
                self.http_server_failed(slot, 504, Term::Timeout);
            }
            Phase::Exchange | Phase::Tunnel => {
                self.stats.idle_timeouts += 1;
                self.http_close(slot, Term::Timeout);
            }
            Phase::Linger { .. } => self.http_close(slot, Term::Local),
            Phase::Closing => {}
        }
        self.http_progress(slot);
        self.http_try_free(slot);
    }

    // ---- access log and stats ------------------------------------------------------------------

    fn log_exchange(&mut self, slot: u32, term: Term) {
        let now = self.now_ms;
        let shard = self.id;
        let Some(s) = self.http_slots.get_mut(slot as usize) else {
            return;
        };
        let Some(c) = s.conn.as_mut() else {
            return;
        };
        let Some(ex) = c.ex.as_mut() else {
            return;
        };
        if ex.status == 0 && term == Term::Done {
            return;
        }
        let status = ex.status;
        self.stats.count_status(status);
        if let Some(bs) = self.backend_stats.get_mut(ex.backend)
            && let Some(ss) = bs.servers.get_mut(ex.server)
        {
            ss.count_status(status);
        }
        let Some(log) = ex.log.take() else {
            ex.status = 0;
            return;
        };
        let listener = c.listener;
        let Some(sink) = self.access_logs.get_mut(listener).and_then(|s| s.as_mut()) else {
            return;
        };
        let backend = self
            .backend_names
            .get(ex.backend)
            .map_or("-", String::as_str);
        let server = self
            .backend_servers
            .get(ex.backend)
            .and_then(|s| s.get(ex.server))
            .map_or_else(|| "-".to_string(), |a| a.to_string());
        let line = crate::access_log::Line {
            client: c.client,
            method: &log.method,
            target: &log.target,
            version_minor: log.version_minor,
            status,
            bytes_sent: ex.resp_bytes,
            bytes_received: ex.req_body_bytes,
            duration_ms: now.saturating_sub(ex.started_ms),
            backend,
            server: &server,
            shard,
            referer: &log.referer,
            user_agent: &log.user_agent,
            term: term.as_str(),
        };
        sink.write(&line);
        ex.status = 0;
    }
}

/// The consistent-hashing key of a request: the configured header, cookie or path, falling back
/// to the client address when the request does not carry it.
fn request_hash_key(
    key: &crate::config::HashKey,
    client: SocketAddr,
    buf: &[u8],
    head: &RequestHead,
) -> u64 {
    use crate::balancer::hash_bytes;
    use crate::config::HashKey;
    let source = || hash_bytes(client.ip().to_string().as_bytes());
    match key {
        HashKey::Source => source(),
        HashKey::Path => hash_bytes(crate::router::path_of(head.target(buf))),
        HashKey::Header(name) => head.header_value(buf, name).map_or_else(source, hash_bytes),
        HashKey::Cookie(name) => head
            .headers
            .iter()
            .filter(|h| {
                buf.get(h.name.clone())
                    .is_some_and(|n| n.eq_ignore_ascii_case(b"cookie"))
            })
            .filter_map(|h| buf.get(h.value.clone()))
            .find_map(|v| cookie_value(v, name.as_bytes()))
            .map_or_else(source, hash_bytes),
    }
}

/// The value of cookie `name` in a Cookie header value (`a=1; b=2`), if present.
pub(super) fn cookie_value<'v>(header: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
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

/// Timer keys of HTTP connections carry this bit so the shard routes them here.
pub(super) const HTTP_TIMER_BIT: u32 = 1 << 31;

impl HttpConn {
    fn phase_started(&self, now: u64) -> u64 {
        match self.phase {
            Phase::Head {
                started_ms: Some(s),
            } => s,
            _ => now,
        }
    }
}

impl HttpConn {
    /// Flow `dir` should move by splice(2) next: its copy path must go quiet (no recv armed, its
    /// bytes flushed) so that the order of bytes is kept.
    fn flow_wants_splice(&self, dir: usize, mode: SpliceMode) -> bool {
        if mode == SpliceMode::Off || !self.sides[dir].inbuf.is_empty() || self.sides[dir].eof {
            return false;
        }
        let bulk = self.sides[dir].bulk || mode == SpliceMode::Always;
        match self.flows[dir].body {
            Body::Length(rest) => {
                rest >= SPLICE_BODY_MIN || (mode == SpliceMode::Always && rest > 0)
            }
            Body::UntilEof => bulk,
            Body::Done | Body::Chunked(_) => false,
        }
    }
}

/// The connection in `slot`, borrowing only the slot table (so other shard fields stay usable).
fn slot_conn(slots: &mut [HttpSlot], slot: u32) -> Option<&mut HttpConn> {
    slots.get_mut(slot as usize)?.conn.as_mut()
}

fn pair(sides: &mut [Side; 2], dir: usize) -> (&mut Side, &mut Side) {
    let [a, b] = sides;
    if dir == CLIENT { (a, b) } else { (b, a) }
}

fn shut_write(sd: &mut Side) {
    if sd.shut || sd.fd < 0 {
        return;
    }
    sd.shut = true;
    // SAFETY: shutdown on a socket this connection owns.
    unsafe { libc::shutdown(sd.fd, libc::SHUT_WR) };
}

/// Moves the bytes of `body` at the front of `from` into `to`. Returns how many moved, or `Err`
/// for a malformed chunked body. Bytes after the body stay in `from` (the next message).
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

/// A pooled connection idle for less than this is reused without the liveness peek when the
/// request can be replayed: the peek is a syscall per request, and the rare connection a backend
/// closed in that window is caught by the replay (`http_try_replay`).
const POOL_FRESH_MS: u64 = 1_000;

/// Pops pooled connections until one is still usable: no byte and no EOF waiting on it (a backend
/// that closed an idle connection, or sent something unasked, makes it unusable). `check_always`:
/// peek even at a fresh connection (the request has a body and cannot be replayed).
fn take_live(list: &mut Vec<Pooled>, now_ms: u64, check_always: bool) -> Option<RawFd> {
    while let Some(p) = list.pop() {
        if !check_always && now_ms.saturating_sub(p.since_ms) < POOL_FRESH_MS {
            return Some(p.fd);
        }
        let mut byte = 0u8;
        // SAFETY: peeks at most one byte into a live local.
        let n = unsafe {
            libc::recv(
                p.fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 && errno() == libc::EAGAIN {
            return Some(p.fd);
        }
        close_fd(p.fd);
    }
    None
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
