//! Owns: one HTTP/2 client connection (RFC 9113) as a sans-IO state machine. Frames are read and
//! written by [`crate::h2::conn::H2Conn`]; each stream becomes one HTTP/1.1 exchange run by an
//! inner [`H1Session`] over a virtual client side, so routing (`:authority` as Host), the
//! balancer, pools, retries, timeouts, forwarding fields and the access log are the HTTP/1.1
//! ones, unchanged. The backend's response is parsed again here (`crate::http1`) and sent as
//! HEADERS, DATA (de-chunked) and trailing HEADERS.
//! Must not: touch sockets, pools or clocks (as every session); buffer beyond its bounds: a
//! stream's backend side is read only while its send window, the connection's and the client
//! queue have room, and the client's receive windows open only as request bytes move on towards
//! the backend.
//!
//! Streams are served one at a time per client connection (first version): every stream the
//! client opens is accepted (up to SETTINGS_MAX_CONCURRENT_STREAMS) and queued in order; the
//! front one holds the connection's single upstream connection (the [`Wire`]'s upstream side,
//! as for HTTP/1.1) until its response is complete, then the next one starts. Concurrent
//! upstream connections per client connection need exchange ids on intents
//! (docs/design/h2.md) and are not done yet.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::h1::{H1Cfg, H1Session};
use super::{CLIENT, Env, Intent, Intents, QUEUED_MAX, Term, UPSTREAM, UpstreamEvent, Wire};
use crate::h2::conn::{Event, Fed, Fields, H2Cfg, H2Conn, RequestHead};
use crate::h2::{ErrorCode, H2Error};
use crate::http1::{self, ChunkVerdict, ChunkedScanner, Framing, HeadVerdict};

/// Request bytes handed to the inner HTTP/1.1 session at a time (beyond the head): the rest waits
/// in the stream, inside the receive window the client was given.
const VIRT_RX_MAX: usize = 16 * 1024;
/// Client bytes held unparsed before reading the client stops (a little over one largest frame
/// we accept on top of the output bound).
const CLIENT_RX_MAX: usize = 64 * 1024 + 16 * 1024;
/// Trailer section bytes kept while de-chunking a response (its tail, where trailers are).
const TAIL_BYTES_MAX: usize = 8 * 1024;

/// What an HTTP/2 listener needs on top of the HTTP/1.1 settings each stream runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct H2ListenerCfg {
    /// The listener's HTTP/1.1 settings for each stream's exchange, with splice off (DATA
    /// frames are built from the bytes; they cannot move by splice).
    pub h1: H1Cfg,
    pub conn: H2Cfg,
}

impl H2ListenerCfg {
    pub fn new(h1: &H1Cfg, head_bytes_max: u32) -> H2ListenerCfg {
        let mut conn = H2Cfg {
            header_list_bytes_max: head_bytes_max,
            header_block_bytes_max: head_bytes_max,
            ..H2Cfg::default()
        };
        // Streams wait their turn with their request bodies buffered inside their own windows;
        // the connection window covers all of them, so a queued stream's body can never keep
        // the stream being served from receiving its own (bounded: streams × window).
        conn.conn_window_bytes = conn
            .streams_max
            .saturating_mul(conn.stream_window_bytes)
            .max(conn.conn_window_bytes);
        H2ListenerCfg {
            h1: H1Cfg {
                splice: crate::config::SpliceMode::Off,
                ..h1.clone()
            },
            conn,
        }
    }
}

/// How a stream's request body goes to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqBody {
    /// No body (END_STREAM on HEADERS), or `content-length` given: bytes as they come.
    Plain,
    /// No length known: chunked to the backend.
    Chunked,
}

/// One accepted stream, waiting or being served.
#[derive(Debug)]
struct Stream {
    id: u32,
    /// HTTP/1.1 request bytes not handed to the inner session yet: the head first, then the
    /// body as it arrives (chunk-framed for [`ReqBody::Chunked`]).
    req: Vec<u8>,
    /// Of `req`, the head's bytes while it has not moved (it moves whole).
    head_bytes: usize,
    body: ReqBody,
    /// The client ended the request (END_STREAM or trailers).
    req_ended: bool,
    is_head: bool,
    /// Being served (its head went to the inner session).
    started: bool,
}

/// Where the front stream's response is.
#[derive(Debug)]
enum Resp {
    Head,
    Length(u64),
    Chunked(ChunkedScanner),
    /// Until the backend closes.
    UntilEof,
    /// Complete (END_STREAM sent) or given up (reset).
    Done,
}

/// The inner session's client side while it does not run (swapped into the [`Wire`] around
/// each call).
#[derive(Debug, Default)]
struct Virt {
    rx: Vec<u8>,
    tx: Vec<u8>,
}

/// The client side of the wire while the inner session runs.
struct Saved {
    eof: bool,
    in_flight: usize,
    shut: bool,
    shut_done: bool,
    bulk: bool,
}

pub struct H2Session {
    pub client: SocketAddr,
    tls: bool,
    conn: H2Conn,
    inner: H1Session,
    virt: Virt,
    /// Accepted streams in order; the front one is served. Bounded by the connection's
    /// SETTINGS_MAX_CONCURRENT_STREAMS (a stream leaves when its response is complete).
    streams: VecDeque<Stream>,
    resp: Resp,
    /// De-chunked response bytes not sent yet (at most one send capacity's worth).
    pending: Vec<u8>,
    /// The last bytes of a chunked response (its trailer section, once it ends).
    tail: Vec<u8>,
    pub intents: Intents,
    /// The inner session asked to close: its exchange is over (with this term).
    inner_closed: Option<Term>,
    /// Read the upstream side: the inner session wants it and the front stream can take it.
    up_read: bool,
    /// Connection-level counters already added to the shard's.
    reported: crate::h2::conn::H2Counters,
    counted: bool,
    closed: bool,
    /// Last time a stream was open or a byte came (idle deadline).
    idle_since_ms: u64,
    /// Last time the front stream started or its response moved (a head or DATA sent). A
    /// response stalled on the client's window is timed from here: the connection's last byte
    /// would not do, as PINGs and other frames keep it fresh while the stream never moves.
    front_moved_ms: u64,
}

impl H2Session {
    /// `tls`: the client came over TLS (X-Forwarded-Proto: https).
    pub fn new(client: SocketAddr, tls: bool, cfg: &H2ListenerCfg, now_ms: u64) -> H2Session {
        H2Session {
            client,
            tls,
            conn: H2Conn::new(cfg.conn, now_ms),
            inner: H1Session::new(client, tls, false, now_ms),
            virt: Virt::default(),
            streams: VecDeque::new(),
            resp: Resp::Head,
            pending: Vec::new(),
            tail: Vec::new(),
            intents: Intents::default(),
            inner_closed: None,
            up_read: false,
            reported: Default::default(),
            counted: false,
            closed: false,
            idle_since_ms: now_ms,
            front_moved_ms: now_ms,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The backend the front stream waits for in a queue, if it does.
    pub fn queued_on(&self) -> Option<crate::ids::BackendId> {
        self.inner.queued_on()
    }

    /// Runs `f` on the inner session with the virtual client side in the wire.
    fn with_inner<R>(
        inner: &mut H1Session,
        virt: &mut Virt,
        w: &mut Wire,
        f: impl FnOnce(&mut H1Session, &mut Wire) -> R,
    ) -> R {
        std::mem::swap(&mut w.rx[CLIENT], &mut virt.rx);
        std::mem::swap(&mut w.tx[CLIENT], &mut virt.tx);
        let saved = Saved {
            eof: std::mem::replace(&mut w.eof[CLIENT], false),
            in_flight: std::mem::replace(&mut w.in_flight[CLIENT], 0),
            shut: std::mem::replace(&mut w.shut[CLIENT], false),
            shut_done: std::mem::replace(&mut w.shut_done[CLIENT], false),
            bulk: std::mem::replace(&mut w.bulk[CLIENT], false),
        };
        let r = f(inner, w);
        std::mem::swap(&mut w.rx[CLIENT], &mut virt.rx);
        std::mem::swap(&mut w.tx[CLIENT], &mut virt.tx);
        w.eof[CLIENT] = saved.eof;
        w.in_flight[CLIENT] = saved.in_flight;
        w.shut[CLIENT] = saved.shut;
        w.shut_done[CLIENT] = saved.shut_done;
        w.bulk[CLIENT] = saved.bulk;
        r
    }

    /// Moves the inner session's intents out: logs are marked `h2`; its close ends only the
    /// stream's exchange (the upstream connection is released, the client connection stays).
    fn take_inner_intents(&mut self) {
        while let Some(i) = self.inner.intents.pop() {
            match i {
                Intent::Close(term) => {
                    self.inner_closed = Some(term);
                    self.intents.push(Intent::Release { reusable: false });
                }
                Intent::Log(mut rec) => {
                    rec.proto = "h2";
                    self.intents.push(Intent::Log(rec));
                }
                other @ (Intent::Connect { .. }
                | Intent::Release { .. }
                | Intent::Enqueue { .. }
                | Intent::Dequeue { .. }) => self.intents.push(other),
            }
        }
    }

    /// Does everything the wire allows now: frames in, streams started, responses out.
    pub fn progress(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H2ListenerCfg) {
        if self.closed {
            return;
        }
        if !self.counted {
            self.counted = true;
            env.stats().h2_connections += 1;
        }
        if env.draining() || cfg.h1.draining {
            self.conn.go_away();
        }
        for _ in 0..64 {
            let mut changed = self.read_frames(w, env, cfg);
            changed |= self.feed_front(w, env.now_ms());
            if self.streams.front().is_some_and(|s| s.started) && self.inner_closed.is_none() {
                Self::with_inner(&mut self.inner, &mut self.virt, w, |s, w| {
                    s.progress(w, env, &cfg.h1)
                });
                self.take_inner_intents();
            }
            changed |= self.write_response(w, env, cfg);
            changed |= self.finish_front(env, cfg);
            self.flush(w);
            if !changed {
                break;
            }
        }
        self.report(env);
        self.up_read = self.streams.front().is_some_and(|s| s.started)
            && Self::with_inner(&mut self.inner, &mut self.virt, w, |s, w| {
                s.wants_read(w, UPSTREAM, &cfg.h1)
            })
            && self.virt.tx.len() < QUEUED_MAX
            && w.queued(CLIENT) < QUEUED_MAX
            && match self.resp {
                Resp::Head => true,
                Resp::Length(_) | Resp::Chunked(_) | Resp::UntilEof => {
                    self.streams
                        .front()
                        .is_some_and(|s| self.conn.send_capacity(s.id) > 0)
                        && self.pending.is_empty()
                }
                Resp::Done => false,
            };
        if !self.streams.is_empty() || !w.rx[CLIENT].is_empty() {
            self.idle_since_ms = env.now_ms();
        }
        let client_gone = w.eof[CLIENT] && w.rx[CLIENT].is_empty();
        if client_gone && !self.conn.is_finished() {
            self.end_all(env, Term::ClientClosed);
        }
        if (self.conn.is_finished() || client_gone) && self.conn.output().is_empty() {
            self.end_all(env, Term::Done);
            self.closed = true;
            self.intents.push(Intent::Close(Term::Done));
        }
    }

    /// Moves the connection's output to the client queue, within its bound.
    fn flush(&mut self, w: &mut Wire) {
        let room = QUEUED_MAX.saturating_sub(w.in_flight[CLIENT]);
        self.conn.drain_output(&mut w.tx[CLIENT], room);
    }

    /// Adds what the connection counted since the last call to the shard's counters.
    fn report(&mut self, env: &mut impl Env) {
        let now = self.conn.counters();
        let was = self.reported;
        let st = env.stats();
        st.h2_streams += now.streams_opened.saturating_sub(was.streams_opened);
        st.h2_resets_received += now.resets_received.saturating_sub(was.resets_received);
        st.h2_resets_sent += now.resets_sent.saturating_sub(was.resets_sent);
        st.h2_goaway_sent += now.goaway_sent.saturating_sub(was.goaway_sent);
        self.reported = now;
    }

    /// Feeds the client's bytes to the connection until it needs more, is blocked on output or
    /// is over; acts on each event.
    fn read_frames(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H2ListenerCfg) -> bool {
        let input = std::mem::take(&mut w.rx[CLIENT]);
        let now = env.now_ms();
        let mut at = 0usize;
        let mut changed = false;
        for _ in 0..256 {
            let rest = input.get(at..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
            let Self { conn, streams, .. } = self;
            match conn.feed(rest, now) {
                Fed::Event {
                    event,
                    consumed_bytes,
                } => {
                    at += consumed_bytes;
                    changed = true;
                    let act = on_event(streams, event);
                    match act {
                        Act::None => {}
                        Act::Give(stream, n) => self.conn.consumed(stream, n),
                        Act::Drop(stream) => self.drop_stream(stream, env),
                        Act::Refuse(stream, status) => {
                            let _ = self.conn.send_response_head(stream, status, [], true);
                        }
                        Act::Fail(error) => {
                            if error.code() == ErrorCode::ENHANCE_YOUR_CALM {
                                env.stats().h2_calm_closes += 1;
                            }
                            tracing::debug!(%error, "HTTP/2 connection error");
                            self.end_all(env, Term::ClientError);
                        }
                    }
                }
                Fed::NeedMore { consumed_bytes } => {
                    at += consumed_bytes;
                    break;
                }
                Fed::Blocked { consumed_bytes } => {
                    at += consumed_bytes;
                    self.flush(w);
                    if self.conn.output().len() >= cfg.conn.output_bytes_max {
                        break;
                    }
                }
                Fed::Closed { consumed_bytes } => {
                    at += consumed_bytes;
                    break;
                }
            }
        }
        let mut input = input;
        input.drain(..at.min(input.len()));
        // Bytes that arrived meanwhile (none: the driver does not run during a session call).
        input.extend_from_slice(&w.rx[CLIENT]);
        w.rx[CLIENT] = input;
        changed
    }

    /// The client reset `stream` (or we did): its exchange is dropped.
    fn drop_stream(&mut self, stream: u32, env: &mut impl Env) {
        let Some(i) = self.streams.iter().position(|s| s.id == stream) else {
            return;
        };
        let started = self.streams.get(i).is_some_and(|s| s.started);
        self.streams.remove(i);
        if started {
            self.inner.abort(env, Term::ClientClosed);
            self.take_inner_intents();
            self.restart_inner(env);
        }
    }

    /// A fresh inner session for the next stream (the previous exchange is over or dropped).
    fn restart_inner(&mut self, env: &mut impl Env) {
        self.inner = H1Session::new(self.client, self.tls, false, env.now_ms());
        self.inner_closed = None;
        self.virt.rx.clear();
        self.virt.tx.clear();
        self.resp = Resp::Head;
        self.pending.clear();
        self.tail.clear();
    }

    /// The connection ends: every exchange is dropped.
    fn end_all(&mut self, env: &mut impl Env, term: Term) {
        if self.streams.front().is_some_and(|s| s.started) {
            self.inner.abort(env, term);
            self.take_inner_intents();
        }
        self.streams.clear();
        self.restart_inner(env);
    }

    /// Starts the front stream when the inner session is free, and hands it request bytes
    /// while the inner session has room; the client's windows open by as much.
    fn feed_front(&mut self, _w: &mut Wire, now_ms: u64) -> bool {
        let Some(s) = self.streams.front_mut() else {
            return false;
        };
        if !s.started {
            if !self.inner.exchange_over() || self.inner_closed.is_some() {
                return false;
            }
            s.started = true;
            self.resp = Resp::Head;
            self.front_moved_ms = now_ms;
        }
        let room = if s.head_bytes > 0 {
            s.head_bytes
        } else {
            VIRT_RX_MAX.saturating_sub(self.virt.rx.len())
        };
        let n = room.min(s.req.len());
        if n == 0 {
            return false;
        }
        self.virt
            .rx
            .extend_from_slice(s.req.get(..n).unwrap_or_default());
        s.req.drain(..n);
        let body_bytes = n.saturating_sub(s.head_bytes);
        s.head_bytes = s.head_bytes.saturating_sub(n);
        if body_bytes > 0 {
            // Chunk framing counts too: the connection credits at most what the stream holds.
            self.conn.consumed(s.id, body_bytes);
        }
        true
    }

    /// Turns the inner session's HTTP/1.1 response bytes into frames for the front stream, as
    /// far as the windows and the output bound allow.
    fn write_response(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H2ListenerCfg) -> bool {
        let Some(front) = self.streams.front() else {
            // The stream is gone (reset): what its backend still sends is dropped.
            self.virt.tx.clear();
            return false;
        };
        if !front.started {
            return false;
        }
        let (id, is_head) = (front.id, front.is_head);
        let mut changed = false;
        // The stream cannot take the response (never expected: the inner session parsed it
        // already, and a stream the client reset is dropped before we get here).
        let mut failed = false;
        for _ in 0..64 {
            let step = match &mut self.resp {
                Resp::Head => {
                    if self.virt.tx.is_empty() {
                        break;
                    }
                    let limits = http1::Limits {
                        head_bytes_max: cfg.h1.head_bytes_max as usize,
                        ..http1::Limits::default()
                    };
                    match http1::parse_response(&self.virt.tx, &limits, is_head) {
                        HeadVerdict::Partial => break,
                        HeadVerdict::Invalid(_) => {
                            failed = true;
                            true
                        }
                        HeadVerdict::Complete {
                            head,
                            consumed_bytes,
                        } => {
                            let buf = self.virt.tx.get(..consumed_bytes).unwrap_or_default();
                            let fields = head
                                .headers
                                .iter()
                                .map(|h| (h.name_in(buf), h.value_in(buf)));
                            let interim = head.status < 200;
                            let next = match head.framing {
                                _ if interim => Resp::Head,
                                Framing::None | Framing::Length(0) => Resp::Done,
                                Framing::Length(n) => Resp::Length(n),
                                Framing::Chunked => Resp::Chunked(ChunkedScanner::new()),
                                Framing::CloseDelimited => Resp::UntilEof,
                            };
                            let end = matches!(next, Resp::Done);
                            let sent = if head.status == 101 {
                                Err(crate::h2::conn::SendError::BadStatus)
                            } else {
                                self.conn.send_response_head(id, head.status, fields, end)
                            };
                            if sent.is_err() {
                                failed = true;
                            } else {
                                self.virt.tx.drain(..consumed_bytes.min(self.virt.tx.len()));
                                self.resp = next;
                            }
                            true
                        }
                    }
                }
                Resp::Length(rest) => {
                    let cap = self.conn.send_capacity(id);
                    let n = (*rest).min(self.virt.tx.len() as u64).min(cap as u64) as usize;
                    if n == 0 {
                        break;
                    }
                    let last = n as u64 == *rest;
                    let data = self.virt.tx.get(..n).unwrap_or_default();
                    match self.conn.send_data(id, data, last) {
                        Ok(taken) => {
                            *rest -= taken as u64;
                            self.virt.tx.drain(..taken.min(self.virt.tx.len()));
                            if *rest == 0 {
                                self.resp = Resp::Done;
                            }
                            taken > 0 || last
                        }
                        Err(_) => {
                            failed = true;
                            true
                        }
                    }
                }
                Resp::UntilEof => {
                    let cap = self.conn.send_capacity(id);
                    let n = self.virt.tx.len().min(cap);
                    if n == 0 {
                        break;
                    }
                    let data = self.virt.tx.get(..n).unwrap_or_default();
                    match self.conn.send_data(id, data, false) {
                        Ok(taken) => {
                            self.virt.tx.drain(..taken.min(self.virt.tx.len()));
                            taken > 0
                        }
                        Err(_) => {
                            failed = true;
                            true
                        }
                    }
                }
                Resp::Chunked(scanner) => {
                    if self.pending.is_empty() && !self.virt.tx.is_empty() {
                        let cap = self.conn.send_capacity(id);
                        let n = self.virt.tx.len().min(cap.max(64));
                        let input = self.virt.tx.get(..n).unwrap_or_default();
                        match scanner.dechunk(input, &mut self.pending) {
                            Ok(v) => {
                                let used = match v {
                                    ChunkVerdict::NeedMore { consumed_bytes }
                                    | ChunkVerdict::Done { consumed_bytes } => consumed_bytes,
                                };
                                let used = used.min(self.virt.tx.len());
                                keep_tail(&mut self.tail, self.virt.tx.get(..used));
                                self.virt.tx.drain(..used);
                            }
                            Err(_) => {
                                // The inner session scans the same bytes and fails the exchange.
                                self.virt.tx.clear();
                            }
                        }
                    }
                    let done = scanner.is_done();
                    let mut moved = false;
                    if !self.pending.is_empty() {
                        match self.conn.send_data(id, &self.pending, false) {
                            Ok(taken) => {
                                self.pending.drain(..taken.min(self.pending.len()));
                                moved = taken > 0;
                            }
                            Err(_) => {
                                failed = true;
                                break;
                            }
                        }
                    }
                    if done && self.pending.is_empty() {
                        let trailers = trailer_fields(&self.tail);
                        let ended = if trailers.is_empty() {
                            self.conn.send_data(id, &[], true).map(|_| ())
                        } else {
                            self.conn.send_trailers(
                                id,
                                trailers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
                            )
                        };
                        let _ = ended;
                        self.tail.clear();
                        self.resp = Resp::Done;
                        true
                    } else {
                        if !moved {
                            break;
                        }
                        true
                    }
                }
                Resp::Done => {
                    // Anything after the response (a misbehaving backend) is not this stream's.
                    break;
                }
            };
            changed |= step;
            if !step || failed {
                break;
            }
        }
        if failed {
            self.fail_front(env, id);
            changed = true;
        }
        if changed {
            self.front_moved_ms = env.now_ms();
        }
        let _ = (w, cfg);
        changed
    }

    /// The front stream cannot go on: it is reset and its exchange abandoned (the upstream
    /// connection is not reused); the next stream starts on a fresh inner session.
    fn fail_front(&mut self, env: &mut impl Env, id: u32) {
        let _ = self.conn.reset(id, ErrorCode::INTERNAL_ERROR);
        self.inner.abort(env, Term::ServerError);
        self.take_inner_intents();
        if self.streams.front().is_some_and(|s| s.id == id) {
            self.streams.pop_front();
        }
        self.restart_inner(env);
    }

    /// The front stream is over when its response is complete and the inner exchange ended (or
    /// the inner session closed): the next stream may start.
    fn finish_front(&mut self, env: &mut impl Env, cfg: &H2ListenerCfg) -> bool {
        let front = self.streams.front().filter(|s| s.started).map(|s| s.id);
        let resp_done = matches!(self.resp, Resp::Done);
        if let Some(term) = self.inner_closed {
            let Some(id) = front else {
                self.restart_inner(env);
                return true;
            };
            if !resp_done && (!self.virt.tx.is_empty() || !self.pending.is_empty()) {
                // What the backend sent before the exchange ended still goes out first, as
                // the client's windows allow (a drain closes the inner session right after a
                // complete response; a close-delimited body ends with the close).
                return false;
            }
            if !resp_done {
                if matches!(self.resp, Resp::UntilEof) && term == Term::Done {
                    let _ = self.conn.send_data(id, &[], true);
                } else {
                    // The backend failed after the response started (or a timeout): only
                    // this stream ends.
                    let _ = self.conn.reset(id, ErrorCode::INTERNAL_ERROR);
                }
            }
            self.end_front(id);
            self.restart_inner(env);
            return true;
        }
        let Some(id) = front else {
            return false;
        };
        if resp_done && self.inner.exchange_over() {
            self.end_front(id);
            if !self.inner.between_requests() {
                // Lingering after ringway's own response: a new inner session takes the next.
                self.restart_inner(env);
            } else {
                self.resp = Resp::Head;
                self.virt.rx.clear();
                self.virt.tx.clear();
            }
            let _ = cfg;
            return true;
        }
        false
    }

    /// The front stream leaves the queue. A request the client is still sending is not wanted
    /// any more: RST_STREAM NO_ERROR (RFC 9113 §8.1).
    fn end_front(&mut self, id: u32) {
        if let Some(s) = self.streams.pop_front()
            && !s.req_ended
        {
            let _ = self.conn.reset(id, ErrorCode::NO_ERROR);
        }
    }

    /// A backend connection for the front stream: ready, connected or failed.
    pub fn on_upstream(
        &mut self,
        w: &mut Wire,
        env: &mut impl Env,
        cfg: &H2ListenerCfg,
        ev: UpstreamEvent,
    ) {
        Self::with_inner(&mut self.inner, &mut self.virt, w, |s, w| {
            s.on_upstream(w, env, &cfg.h1, ev)
        });
        self.take_inner_intents();
    }

    /// A server has room again for the front stream's queued request.
    pub fn on_dequeued(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H2ListenerCfg) {
        Self::with_inner(&mut self.inner, &mut self.virt, w, |s, w| {
            s.on_dequeued(w, env, &cfg.h1)
        });
        self.take_inner_intents();
    }

    /// Closes at once (drain deadline, client gone).
    pub fn abort(&mut self, env: &mut impl Env, term: Term) {
        if self.closed {
            return;
        }
        self.end_all(env, term);
        self.conn.abort(ErrorCode::NO_ERROR);
        self.closed = true;
        self.intents.push(Intent::Close(term));
    }

    /// Whether the driver should read side `side` now (backpressure both ways).
    pub fn wants_read(&self, w: &Wire, side: usize) -> bool {
        if self.closed || w.eof[side] {
            return false;
        }
        if side == CLIENT {
            w.rx[CLIENT].len() < CLIENT_RX_MAX && w.queued(CLIENT) < QUEUED_MAX
        } else {
            self.up_read && w.rx[UPSTREAM].len() < QUEUED_MAX
        }
    }

    /// When something times out: the front exchange's phase, or the idle connection.
    pub fn deadline(&self, w: &Wire, env: &impl Env, cfg: &H2ListenerCfg) -> Option<u64> {
        if self.closed {
            return None;
        }
        if self.streams.front().is_some_and(|s| s.started) {
            if self.inner_closed.is_some() {
                // The exchange is over; the rest of its response waits for the client's window,
                // for `client_idle` since the stream last moved (a client that keeps its window
                // shut but sends PINGs does not keep the stream forever).
                return Some(
                    self.front_moved_ms
                        .saturating_add(cfg.h1.timeouts.client_idle),
                );
            }
            return self.inner.deadline(w, env, &cfg.h1);
        }
        if self.streams.is_empty() {
            return Some(
                self.idle_since_ms
                    .max(w.active_ms[CLIENT])
                    .saturating_add(cfg.h1.timeouts.http_keep_alive),
            );
        }
        None
    }

    /// The driver's timer fired.
    pub fn on_timer(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H2ListenerCfg) {
        let now = env.now_ms();
        let passed = self.deadline(w, env, cfg).is_some_and(|d| now >= d);
        let front = self.streams.front().filter(|s| s.started).map(|s| s.id);
        if let (Some(id), Some(_)) = (front, self.inner_closed) {
            if passed {
                // A client that keeps its window shut does not keep the stream forever.
                env.stats().idle_timeouts += 1;
                let _ = self.conn.reset(id, ErrorCode::CANCEL);
                self.streams.pop_front();
                self.restart_inner(env);
            }
            return;
        }
        if front.is_some() {
            Self::with_inner(&mut self.inner, &mut self.virt, w, |s, w| {
                s.on_timer(w, env, &cfg.h1)
            });
            self.take_inner_intents();
            return;
        }
        if passed && self.streams.is_empty() {
            // Idle: GOAWAY NO_ERROR, then close once it is sent (RFC 9113 §6.8).
            env.stats().idle_timeouts += 1;
            self.conn.go_away();
        }
    }
}

/// What an event asks of the session once the connection is no longer borrowed.
enum Act {
    None,
    /// Give `n` bytes of window back (data of a stream we no longer serve).
    Give(u32, usize),
    Drop(u32),
    /// Answer a stream ringway does not serve with this status.
    Refuse(u32, u16),
    Fail(H2Error),
}

fn on_event(streams: &mut VecDeque<Stream>, event: Event<'_>) -> Act {
    match event {
        Event::RequestHead {
            stream,
            head,
            end_stream,
        } => {
            if head.method == b"CONNECT" || head.path.is_none() {
                // CONNECT (and RFC 8441's extended CONNECT) is not offered over HTTP/2.
                return Act::Refuse(stream, 501);
            }
            let mut s = Stream {
                id: stream,
                req: Vec::new(),
                head_bytes: 0,
                body: ReqBody::Plain,
                req_ended: end_stream,
                is_head: head.method == b"HEAD",
                started: false,
            };
            s.body = encode_head(&head, end_stream, &mut s.req);
            s.head_bytes = s.req.len();
            streams.push_back(s);
            Act::None
        }
        Event::Data {
            stream,
            data,
            end_stream,
        } => {
            let Some(s) = streams.iter_mut().find(|s| s.id == stream) else {
                return Act::Give(stream, data.len());
            };
            match s.body {
                ReqBody::Plain => s.req.extend_from_slice(data),
                ReqBody::Chunked => {
                    if !data.is_empty() {
                        s.req
                            .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                        s.req.extend_from_slice(data);
                        s.req.extend_from_slice(b"\r\n");
                    }
                    if end_stream {
                        s.req.extend_from_slice(b"0\r\n\r\n");
                    }
                }
            }
            if end_stream {
                s.req_ended = true;
            }
            Act::None
        }
        Event::Trailers { stream, fields } => {
            if let Some(s) = streams.iter_mut().find(|s| s.id == stream) {
                if s.body == ReqBody::Chunked {
                    s.req.extend_from_slice(b"0\r\n");
                    write_fields(&fields, &mut s.req, |_| true);
                    s.req.extend_from_slice(b"\r\n");
                }
                // With a content-length the body already ended; trailers cannot follow in
                // HTTP/1.1 and are dropped (RFC 9110 §6.5.1 lets a proxy discard them).
                s.req_ended = true;
            }
            Act::None
        }
        Event::Reset { stream, .. } | Event::StreamError { stream, .. } => Act::Drop(stream),
        Event::GoAway { .. } | Event::WindowOpen { .. } => Act::None,
        Event::ConnectionError { error } => Act::Fail(error),
    }
}

/// The HTTP/1.1 request head for a stream (RFC 9113 §8.3.1: `:authority` as Host; cookies
/// joined, §8.2.3). Returns how its body goes to the backend.
fn encode_head(head: &RequestHead<'_>, end_stream: bool, out: &mut Vec<u8>) -> ReqBody {
    out.extend_from_slice(head.method);
    out.push(b' ');
    out.extend_from_slice(head.path.unwrap_or(b"/"));
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = head.authority.filter(|a| !a.is_empty());
    if let Some(a) = authority {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    write_fields(&head.fields, out, |name| {
        name != b"content-length" && name != b"cookie" && !(authority.is_some() && name == b"host")
    });
    let mut cookies = head
        .fields
        .iter()
        .filter(|(n, _)| *n == b"cookie")
        .peekable();
    if cookies.peek().is_some() {
        out.extend_from_slice(b"cookie: ");
        for (i, (_, v)) in cookies.enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(v);
        }
        out.extend_from_slice(b"\r\n");
    }
    let body = match head.content_length {
        Some(n) => {
            out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
            ReqBody::Plain
        }
        None if end_stream => ReqBody::Plain,
        None => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            ReqBody::Chunked
        }
    };
    out.extend_from_slice(b"\r\n");
    body
}

fn write_fields(fields: &Fields<'_>, out: &mut Vec<u8>, keep: impl Fn(&[u8]) -> bool) {
    for (n, v) in fields.iter() {
        if !keep(n) {
            continue;
        }
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
}

/// Keeps the last [`TAIL_BYTES_MAX`] bytes of a chunked body seen so far.
fn keep_tail(tail: &mut Vec<u8>, piece: Option<&[u8]>) {
    let piece = piece.unwrap_or_default();
    if piece.len() >= TAIL_BYTES_MAX {
        tail.clear();
        tail.extend_from_slice(
            piece
                .get(piece.len() - TAIL_BYTES_MAX..)
                .unwrap_or_default(),
        );
        return;
    }
    tail.extend_from_slice(piece);
    if tail.len() > TAIL_BYTES_MAX {
        let cut = tail.len() - TAIL_BYTES_MAX;
        tail.drain(..cut);
    }
}

/// The trailer fields of a complete chunked body, from its last bytes: what follows the last
/// chunk (`0[;ext]CRLF`) up to the final CRLF (RFC 9112 §7.1.2). A trailer section larger than
/// the tail kept is dropped.
fn trailer_fields(tail: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let Some(body) = tail.strip_suffix(b"\r\n") else {
        return out;
    };
    // The last-chunk line starts the body or follows the CRLF that ends a chunk's data.
    let mut start = None;
    let mut i = body.len();
    while i > 0 {
        i -= 1;
        let at_line = i == 0 || body.get(i.wrapping_sub(2)..i) == Some(b"\r\n".as_slice());
        if at_line && body.get(i) == Some(&b'0') {
            let line_end = body
                .get(i..)
                .and_then(|r| r.windows(2).position(|w| w == b"\r\n"))
                .map(|p| i + p);
            let Some(line_end) = line_end else {
                continue;
            };
            let line = body.get(i..line_end).unwrap_or_default();
            let size = line.split(|&b| b == b';').next().unwrap_or_default();
            if size.iter().all(|&b| b == b'0' || b == b' ' || b == b'\t') {
                start = Some(line_end + 2);
                break;
            }
        }
    }
    let Some(start) = start else {
        return out;
    };
    for line in body.get(start..).unwrap_or_default().split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        let value = line.get(colon + 1..).unwrap_or_default().trim_ascii();
        if name.is_empty() {
            continue;
        }
        out.push((name.to_ascii_lowercase(), value.to_vec()));
    }
    out
}

#[cfg(test)]
mod tests;
