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
//! Streams are served concurrently: each accepted stream takes a [`Lane`] (its own upstream
//! side, kept here as an [`UpSide`] and swapped into the [`Wire`] while its exchange runs), so
//! every stream has its own backend connection, from the pool when one is idle. Intents and
//! upstream events carry the lane; lanes take turns one DATA frame at a time, so one large
//! response cannot starve the others.

use std::net::SocketAddr;

use super::h1::{H1Cfg, H1Session};
use super::{
    AccessRecord, CLIENT, Env, ExchangeDone, Intent, Intents, Lane, QUEUED_MAX, Term, UPSTREAM,
    UpSide, UpstreamEvent, Wire,
};
use crate::h2::conn::{Event, Fed, Fields, H2Cfg, H2Conn, RequestHead};
use crate::h2::{ErrorCode, H2Error};
use crate::http1::{self, ChunkVerdict, ChunkedScanner, Framing, HeadVerdict};
use crate::ids::BackendId;

/// Request bytes handed to a stream's inner HTTP/1.1 session at a time (beyond the head): the
/// rest waits in the stream, inside the receive window the client was given.
const VIRT_RX_MAX: usize = 16 * 1024;
/// Response bytes of one stream held between its backend and its DATA frames before its
/// backend side stops being read (one largest DATA frame).
const LANE_TX_MAX: usize = 16 * 1024;
/// DATA bytes one stream may send per turn before the next stream's turn.
const TURN_BYTES: usize = 16 * 1024;
/// Client bytes held unparsed before reading the client stops (a little over one largest frame
/// we accept on top of the output bound).
const CLIENT_RX_MAX: usize = 64 * 1024 + 16 * 1024;
/// Trailer section bytes kept while de-chunking a response (its tail, where trailers are).
const TAIL_BYTES_MAX: usize = 8 * 1024;
/// Finished streams a shard keeps for its connections' next ones (their box, buffers and
/// exchange are reused, so a small exchange allocates nothing).
const SPARE_STREAMS: usize = 64;
/// A spare stream keeps a buffer only up to this capacity (larger ones are freed).
const SPARE_BUF_BYTES: usize = 4 * 1024;

/// What an HTTP/2 listener needs on top of the HTTP/1.1 settings each stream runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct H2ListenerCfg {
    /// The listener's HTTP/1.1 settings for each stream's exchange, with splice off (DATA
    /// frames are built from the bytes; they cannot move by splice).
    pub h1: H1Cfg,
    pub conn: H2Cfg,
}

impl H2ListenerCfg {
    pub fn new(h1: &H1Cfg, head_bytes_max: u32, streams_max: u32) -> H2ListenerCfg {
        let mut conn = H2Cfg {
            header_list_bytes_max: head_bytes_max,
            header_block_bytes_max: head_bytes_max,
            streams_max,
            ..H2Cfg::default()
        };
        // Each stream's request body waits inside its own window for its backend; the
        // connection window covers all of them, so a stream whose backend reads slowly can
        // never keep another stream from receiving its own body (bounded: streams × window).
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

    /// Lanes one connection may hold: every stream the connection may have open, and as many
    /// again finishing (their END_STREAM sent while the exchange winds down).
    fn lanes_max(&self) -> usize {
        (self.conn.streams_max as usize)
            .saturating_mul(2)
            .clamp(1, usize::from(Lane::MAX))
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

/// Where a stream's response is.
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

/// The client side of the wire while an inner session runs.
struct Saved {
    eof: bool,
    in_flight: usize,
    shut: bool,
    shut_done: bool,
    bulk: bool,
}

/// One stream being served: its request, its HTTP/1.1 exchange and its upstream side.
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
    inner: H1Session,
    virt: Virt,
    up: UpSide,
    resp: Resp,
    /// De-chunked response bytes not sent yet (at most one send capacity's worth).
    pending: Vec<u8>,
    /// The last bytes of a chunked response (its trailer section, once it ends).
    tail: Vec<u8>,
    /// The inner session asked to close: its exchange is over (with this term).
    inner_closed: Option<Term>,
    /// Read the upstream side: the inner session wants it and the stream can take it.
    up_read: bool,
    /// When this stream times out, as last computed (the driver's timer reads it).
    deadline: Option<u64>,
    /// Last time the stream started or its response moved (a head or DATA sent). A response
    /// stalled on the client's window is timed from here: the connection's last byte would not
    /// do, as PINGs and other frames keep it fresh while the stream never moves.
    moved_ms: u64,
}

impl Stream {
    fn fresh(id: u32, head: &RequestHead<'_>, end_stream: bool, o: &Opening) -> Stream {
        let mut s = Stream {
            id,
            req: Vec::new(),
            head_bytes: 0,
            body: ReqBody::Plain,
            req_ended: end_stream,
            is_head: false,
            inner: H1Session::new(o.client, o.tls, false, o.now_ms),
            virt: Virt::default(),
            up: UpSide::new(o.now_ms),
            resp: Resp::Head,
            pending: Vec::new(),
            tail: Vec::new(),
            inner_closed: None,
            up_read: false,
            deadline: None,
            moved_ms: o.now_ms,
        };
        s.start(id, head, end_stream, o.now_ms);
        s
    }

    /// Empties this finished stream for the shard's spares: each buffer keeps its capacity only
    /// up to [`SPARE_BUF_BYTES`], its exchange's too.
    fn trim(&mut self) {
        for b in [
            &mut self.req,
            &mut self.virt.rx,
            &mut self.virt.tx,
            &mut self.up.rx,
            &mut self.up.tx,
            &mut self.pending,
            &mut self.tail,
        ] {
            if b.capacity() > SPARE_BUF_BYTES {
                *b = Vec::new();
            } else {
                b.clear();
            }
        }
        self.inner.trim(SPARE_BUF_BYTES);
    }

    /// Makes a spare (trimmed) stream a new one.
    fn renew(&mut self, id: u32, head: &RequestHead<'_>, end_stream: bool, o: &Opening) {
        self.up = UpSide {
            rx: std::mem::take(&mut self.up.rx),
            tx: std::mem::take(&mut self.up.tx),
            ..UpSide::new(o.now_ms)
        };
        self.inner.renew(o.client, o.tls, o.now_ms);
        self.resp = Resp::Head;
        self.inner_closed = None;
        self.up_read = false;
        self.deadline = None;
        self.start(id, head, end_stream, o.now_ms);
    }

    /// The per-request part of a new stream: its id and its request head, encoded.
    fn start(&mut self, id: u32, head: &RequestHead<'_>, end_stream: bool, now_ms: u64) {
        self.id = id;
        self.req_ended = end_stream;
        self.is_head = head.method == b"HEAD";
        self.moved_ms = now_ms;
        self.body = encode_head(head, end_stream, &mut self.req);
        self.head_bytes = self.req.len();
    }

    /// Runs `f` on the inner session with the stream's virtual client side and its upstream
    /// side in the wire.
    fn with_inner<R>(&mut self, w: &mut Wire, f: impl FnOnce(&mut H1Session, &mut Wire) -> R) -> R {
        std::mem::swap(&mut w.rx[CLIENT], &mut self.virt.rx);
        std::mem::swap(&mut w.tx[CLIENT], &mut self.virt.tx);
        self.up.swap(w);
        let saved = Saved {
            eof: std::mem::replace(&mut w.eof[CLIENT], false),
            in_flight: std::mem::replace(&mut w.in_flight[CLIENT], 0),
            shut: std::mem::replace(&mut w.shut[CLIENT], false),
            shut_done: std::mem::replace(&mut w.shut_done[CLIENT], false),
            bulk: std::mem::replace(&mut w.bulk[CLIENT], false),
        };
        let r = f(&mut self.inner, w);
        std::mem::swap(&mut w.rx[CLIENT], &mut self.virt.rx);
        std::mem::swap(&mut w.tx[CLIENT], &mut self.virt.tx);
        self.up.swap(w);
        w.eof[CLIENT] = saved.eof;
        w.in_flight[CLIENT] = saved.in_flight;
        w.shut[CLIENT] = saved.shut;
        w.shut_done[CLIENT] = saved.shut_done;
        w.bulk[CLIENT] = saved.bulk;
        r
    }

    /// Moves the inner session's intents out, for `lane`: logs are marked `h2`; its close ends
    /// only the stream's exchange (the upstream connection is released, the client connection
    /// stays).
    fn take_intents(&mut self, lane: Lane, out: &mut Intents) {
        while let Some(i) = self.inner.intents.pop() {
            match i {
                Intent::Close(term) => {
                    self.inner_closed = Some(term);
                    out.push_on(lane, Intent::Release { reusable: false });
                }
                Intent::Log(mut rec) => {
                    rec.proto = "h2";
                    out.push_on(lane, Intent::Log(rec));
                }
                other @ (Intent::Connect { .. }
                | Intent::Release { .. }
                | Intent::Enqueue { .. }
                | Intent::Dequeue { .. }) => out.push_on(lane, other),
            }
        }
    }

    /// Hands request bytes to the inner session while it has room; the client's windows open
    /// by as much.
    fn feed(&mut self, conn: &mut H2Conn) -> bool {
        let room = if self.head_bytes > 0 {
            self.head_bytes
        } else {
            VIRT_RX_MAX.saturating_sub(self.virt.rx.len())
        };
        let n = room.min(self.req.len());
        if n == 0 {
            return false;
        }
        self.virt
            .rx
            .extend_from_slice(self.req.get(..n).unwrap_or_default());
        self.req.drain(..n);
        let body_bytes = n.saturating_sub(self.head_bytes);
        self.head_bytes = self.head_bytes.saturating_sub(n);
        if body_bytes > 0 {
            // Chunk framing counts too: the connection credits at most what the stream holds.
            conn.consumed(self.id, body_bytes);
        }
        true
    }

    /// Turns the inner session's HTTP/1.1 response bytes into frames, as far as the windows,
    /// the output bound and this turn's share allow. `Err(())`: the stream cannot take the
    /// response and must be reset.
    fn write_response(&mut self, conn: &mut H2Conn, cfg: &H2ListenerCfg) -> Result<bool, ()> {
        let id = self.id;
        let mut changed = false;
        let mut budget = TURN_BYTES;
        for _ in 0..64 {
            let step = match &mut self.resp {
                Resp::Head => {
                    if self.virt.tx.is_empty() {
                        break;
                    }
                    // The head the exchange relayed is framed as it was written, without
                    // parsing it again; any other (one ringway wrote itself, or a second head
                    // in the queue) is parsed.
                    let relayed = self
                        .inner
                        .take_relayed()
                        .filter(|r| r.start == 0 && r.len <= self.virt.tx.len());
                    let (status, framing, consumed_bytes) = match relayed {
                        Some(r) => {
                            let buf = self.virt.tx.get(..r.len).unwrap_or_default();
                            if r.status == 101 {
                                return Err(());
                            }
                            let end = r.status >= 200 && resp_after_head(r.framing).is_none();
                            conn.send_response_head(id, r.status, own_head_fields(buf), end)
                                .map_err(|_| ())?;
                            (r.status, r.framing, r.len)
                        }
                        None => {
                            let limits = http1::Limits {
                                head_bytes_max: cfg.h1.head_bytes_max as usize,
                                ..http1::Limits::default()
                            };
                            match http1::parse_response(&self.virt.tx, &limits, self.is_head) {
                                HeadVerdict::Partial => break,
                                HeadVerdict::Invalid(_) => return Err(()),
                                HeadVerdict::Complete {
                                    head,
                                    consumed_bytes,
                                } => {
                                    if head.status == 101 {
                                        return Err(());
                                    }
                                    let buf =
                                        self.virt.tx.get(..consumed_bytes).unwrap_or_default();
                                    let fields = head
                                        .headers
                                        .iter()
                                        .map(|h| (h.name_in(buf), h.value_in(buf)));
                                    let end = head.status >= 200
                                        && resp_after_head(head.framing).is_none();
                                    conn.send_response_head(id, head.status, fields, end)
                                        .map_err(|_| ())?;
                                    (head.status, head.framing, consumed_bytes)
                                }
                            }
                        }
                    };
                    self.virt.tx.drain(..consumed_bytes.min(self.virt.tx.len()));
                    self.resp = if status < 200 {
                        Resp::Head
                    } else {
                        resp_after_head(framing).unwrap_or(Resp::Done)
                    };
                    true
                }
                Resp::Length(rest) => {
                    let cap = conn.send_capacity(id).min(budget);
                    let n = (*rest).min(self.virt.tx.len() as u64).min(cap as u64) as usize;
                    if n == 0 {
                        break;
                    }
                    let last = n as u64 == *rest;
                    let data = self.virt.tx.get(..n).unwrap_or_default();
                    let taken = conn.send_data(id, data, last).map_err(|_| ())?;
                    *rest -= taken as u64;
                    budget = budget.saturating_sub(taken);
                    self.virt.tx.drain(..taken.min(self.virt.tx.len()));
                    if *rest == 0 {
                        self.resp = Resp::Done;
                    }
                    taken > 0 || last
                }
                Resp::UntilEof => {
                    let cap = conn.send_capacity(id).min(budget);
                    let n = self.virt.tx.len().min(cap);
                    if n == 0 {
                        break;
                    }
                    let data = self.virt.tx.get(..n).unwrap_or_default();
                    let taken = conn.send_data(id, data, false).map_err(|_| ())?;
                    budget = budget.saturating_sub(taken);
                    self.virt.tx.drain(..taken.min(self.virt.tx.len()));
                    taken > 0
                }
                Resp::Chunked(scanner) => {
                    if self.pending.is_empty() && !self.virt.tx.is_empty() {
                        let cap = conn.send_capacity(id).min(budget);
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
                    if !self.pending.is_empty() && budget > 0 {
                        let n = self.pending.len().min(budget);
                        let data = self.pending.get(..n).unwrap_or_default();
                        let taken = conn.send_data(id, data, false).map_err(|_| ())?;
                        budget = budget.saturating_sub(taken);
                        self.pending.drain(..taken.min(self.pending.len()));
                        moved = taken > 0;
                    }
                    if done && self.pending.is_empty() {
                        let trailers = trailer_fields(&self.tail);
                        // A stream the client reset meanwhile takes nothing more: ignored.
                        let _ = if trailers.is_empty() {
                            conn.send_data(id, &[], true).map(|_| ())
                        } else {
                            conn.send_trailers(
                                id,
                                trailers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
                            )
                        };
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
            if !step || budget == 0 {
                break;
            }
        }
        Ok(changed)
    }

    /// Whether the stream is over: its response is complete and its exchange ended (or the
    /// inner session closed and what it left has gone out). Sends what ends the stream.
    fn finished(&mut self, conn: &mut H2Conn) -> bool {
        let resp_done = matches!(self.resp, Resp::Done);
        if let Some(term) = self.inner_closed {
            if !resp_done && (!self.virt.tx.is_empty() || !self.pending.is_empty()) {
                // What the backend sent before the exchange ended still goes out first, as
                // the client's windows allow (a drain closes the inner session right after a
                // complete response; a close-delimited body ends with the close).
                return false;
            }
            if !resp_done {
                if matches!(self.resp, Resp::UntilEof) && term == Term::Done {
                    let _ = conn.send_data(self.id, &[], true);
                } else {
                    // The backend failed after the response started (or a timeout): only
                    // this stream ends.
                    let _ = conn.reset(self.id, ErrorCode::INTERNAL_ERROR);
                }
            }
        } else if !(resp_done && self.inner.exchange_over()) {
            return false;
        }
        if !self.req_ended {
            // A request the client is still sending is not wanted any more: RST_STREAM
            // NO_ERROR (RFC 9113 §8.1).
            let _ = conn.reset(self.id, ErrorCode::NO_ERROR);
        }
        true
    }
}

/// Finished HTTP/2 streams a shard keeps (at most [`SPARE_STREAMS`], each buffer at most
/// [`SPARE_BUF_BYTES`]) for the next streams of any of its connections: a small exchange then
/// allocates nothing. Per shard, so an idle connection holds none; bounded, so a burst's spares
/// cost at most ~2 MiB per shard.
#[derive(Default)]
#[allow(clippy::vec_box)] // boxed: they move in and out of `Slot::Busy` as they are
pub struct SpareStreams(Vec<Box<Stream>>);

impl SpareStreams {
    fn put(&mut self, mut s: Box<Stream>) {
        if self.0.len() < SPARE_STREAMS {
            s.trim();
            self.0.push(s);
        }
    }

    fn take(&mut self) -> Option<Box<Stream>> {
        self.0.pop()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A lane of the connection.
enum Slot {
    Free,
    /// Freed while intents for it may still wait for the driver: not reused until they are
    /// carried out (a new stream's connect must never meet the old one's release).
    Cooling,
    Busy(Box<Stream>),
}

pub struct H2Session {
    pub client: SocketAddr,
    tls: bool,
    conn: H2Conn,
    /// Streams being served, by lane. Bounded by `lanes_max`.
    lanes: Vec<Slot>,
    /// [`H2ListenerCfg::lanes_max`] of the settings the connection started with (a reload that
    /// changes `http2_streams_max` leaves it, as it leaves the limit the connection announced).
    lanes_max: usize,
    /// Where the next turn starts (the lanes take turns).
    turn: usize,
    pub intents: Intents,
    /// Connection-level counters already added to the shard's.
    reported: crate::h2::conn::H2Counters,
    counted: bool,
    closed: bool,
    /// When the session started, with our SETTINGS in its first output: the client's ACK is
    /// timed from here (RFC 9113 §6.5.3).
    started_ms: u64,
    /// Last time a stream was open or a request came (the idle deadline). Frames that are no
    /// stream's (PING, SETTINGS, WINDOW_UPDATE on stream 0) do not count: they would keep a
    /// connection that serves nothing open forever.
    idle_since_ms: u64,
}

impl H2Session {
    /// `tls`: the client came over TLS (X-Forwarded-Proto: https).
    pub fn new(client: SocketAddr, tls: bool, cfg: &H2ListenerCfg, now_ms: u64) -> H2Session {
        H2Session {
            client,
            tls,
            conn: H2Conn::new(cfg.conn, now_ms),
            lanes: Vec::new(),
            lanes_max: cfg.lanes_max(),
            turn: 0,
            intents: Intents::default(),
            reported: Default::default(),
            counted: false,
            closed: false,
            started_ms: now_ms,
            idle_since_ms: now_ms,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn busy(&self) -> impl Iterator<Item = (usize, &Stream)> + '_ {
        self.lanes.iter().enumerate().filter_map(|(i, l)| match l {
            Slot::Busy(s) => Some((i, &**s)),
            _ => None,
        })
    }

    fn streams_open(&self) -> usize {
        self.busy().count()
    }

    /// Lanes that may carry a backend connection (the driver syncs each).
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The upstream side of `lane`, while a stream holds it.
    pub fn lane_side(&mut self, lane: Lane) -> Option<&mut UpSide> {
        match self.lanes.get_mut(usize::from(lane)) {
            Some(Slot::Busy(s)) => Some(&mut s.up),
            _ => None,
        }
    }

    /// The backends streams wait for in a queue.
    pub fn queued_on(&self) -> impl Iterator<Item = BackendId> + '_ {
        self.busy().filter_map(|(_, s)| s.inner.queued_on())
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
        // A stream that ends during this call was open until now.
        let had_streams = self.streams_open() > 0;
        for _ in 0..64 {
            let mut changed = self.read_frames(w, env, cfg);
            let n = self.lanes.len();
            let start = if n == 0 { 0 } else { self.turn % n };
            for k in 0..n {
                changed |= self.run_lane((start + k) % n, w, env, cfg);
            }
            self.turn = self.turn.wrapping_add(1);
            self.flush(w);
            if !changed {
                break;
            }
        }
        self.report(env);
        let queued_client = w.queued(CLIENT);
        let now = env.now_ms();
        for slot in &mut self.lanes {
            let Slot::Busy(s) = slot else {
                continue;
            };
            let (wants, deadline) = s.with_inner(w, |inner, w| {
                (
                    inner.wants_read(w, UPSTREAM, &cfg.h1),
                    inner.deadline(w, env, &cfg.h1),
                )
            });
            s.up_read = s.inner_closed.is_none()
                && wants
                && s.virt.tx.len() < LANE_TX_MAX
                && queued_client < QUEUED_MAX
                && match s.resp {
                    Resp::Head => true,
                    Resp::Length(_) | Resp::Chunked(_) | Resp::UntilEof => {
                        self.conn.send_capacity(s.id) > 0 && s.pending.is_empty()
                    }
                    Resp::Done => false,
                };
            s.deadline = if s.inner_closed.is_some() {
                // The exchange is over; the rest of its response waits for the client's
                // window, for `client_idle` since the stream last moved (a client that keeps
                // its window shut but sends PINGs does not keep the stream forever).
                Some(s.moved_ms.saturating_add(cfg.h1.timeouts.client_idle))
            } else {
                deadline
            };
        }
        if had_streams || self.streams_open() > 0 {
            self.idle_since_ms = now;
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

    /// One turn of the stream on lane `i`: request bytes in, its exchange run, response
    /// frames out; the lane is freed when the stream is over.
    fn run_lane(
        &mut self,
        i: usize,
        w: &mut Wire,
        env: &mut impl Env,
        cfg: &H2ListenerCfg,
    ) -> bool {
        let lane = Lane::try_from(i).unwrap_or(Lane::MAX);
        let Some(Slot::Busy(s)) = self.lanes.get_mut(i) else {
            return false;
        };
        let mut changed = s.feed(&mut self.conn);
        if s.inner_closed.is_none() {
            s.with_inner(w, |inner, w| inner.progress(w, env, &cfg.h1));
            s.take_intents(lane, &mut self.intents);
        }
        match s.write_response(&mut self.conn, cfg) {
            Ok(moved) => {
                if moved {
                    s.moved_ms = env.now_ms();
                    changed = true;
                }
            }
            Err(()) => {
                // The stream cannot take the response: it is reset and its exchange abandoned
                // (the upstream connection is not reused).
                let _ = self.conn.reset(s.id, ErrorCode::INTERNAL_ERROR);
                s.inner.abort(env, Term::ServerError);
                s.take_intents(lane, &mut self.intents);
                self.free(i, env);
                return true;
            }
        }
        if s.finished(&mut self.conn) {
            self.free(i, env);
            changed = true;
        }
        changed
    }

    /// The lane's stream is over: the lane cools until the driver has carried out its intents.
    /// The stream is kept by the shard for a next one (see [`SpareStreams`]).
    fn free(&mut self, i: usize, env: &mut impl Env) {
        if let Some(slot) = self.lanes.get_mut(i)
            && let Slot::Busy(s) = std::mem::replace(slot, Slot::Cooling)
        {
            env.h2_spares().put(s);
        }
    }

    /// Moves the connection's output to the client queue, within its bound.
    fn flush(&mut self, w: &mut Wire) {
        let room = QUEUED_MAX.saturating_sub(w.in_flight[CLIENT]);
        self.conn.drain_output(&mut w.tx[CLIENT], room);
    }

    /// A stream ringway answered itself, with no exchange (CONNECT's 501): counted, and logged
    /// with `proto=h2`, as an HTTP/1.1 request answered locally is.
    fn answered_here(&mut self, env: &mut impl Env, cfg: &H2ListenerCfg, rec: Box<AccessRecord>) {
        let st = env.stats();
        st.count_status(rec.status);
        st.http_local_responses += 1;
        env.exchange_done(&ExchangeDone {
            listener: cfg.h1.listener,
            backend: None,
            server: None,
            status: rec.status,
            request_us: rec.request_us,
            bytes_received: rec.bytes_received,
            bytes_sent: rec.bytes_sent,
        });
        if cfg.h1.access_log {
            self.intents.push(Intent::Log(rec));
        }
    }

    /// Adds what the connection counted since the last call to the shard's counters.
    fn report(&mut self, env: &mut impl Env) {
        let now = self.conn.counters();
        let was = self.reported;
        let st = env.stats();
        st.h2_streams += now.streams_opened.saturating_sub(was.streams_opened);
        st.h2_streams_refused += now.streams_refused.saturating_sub(was.streams_refused);
        st.h2_resets_received += now.resets_received.saturating_sub(was.resets_received);
        st.h2_resets_sent += now.resets_sent.saturating_sub(was.resets_sent);
        st.h2_goaway_sent += now.goaway_sent.saturating_sub(was.goaway_sent);
        st.h2_goaway_received += now.goaway_received.saturating_sub(was.goaway_received);
        st.h2_glitches += now.glitches.saturating_sub(was.glitches);
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
            let Self {
                conn,
                lanes,
                intents,
                client,
                tls,
                idle_since_ms,
                lanes_max,
                ..
            } = self;
            match conn.feed(rest, now) {
                Fed::Event {
                    event,
                    consumed_bytes,
                } => {
                    at += consumed_bytes;
                    changed = true;
                    let act = match event {
                        Event::RequestHead {
                            stream,
                            head,
                            end_stream,
                        } => {
                            // A request is activity, even one answered at once (CONNECT).
                            *idle_since_ms = now;
                            let opening = Opening {
                                client: *client,
                                tls: *tls,
                                now_ms: now,
                                lanes_max: *lanes_max,
                            };
                            let new = Fresh {
                                id: stream,
                                head: &head,
                                end_stream,
                            };
                            open_stream(lanes, env.h2_spares(), intents, &opening, new)
                        }
                        other => on_event(lanes, other),
                    };
                    match act {
                        Act::None => {}
                        Act::Give(stream, n) => self.conn.consumed(stream, n),
                        Act::Drop(stream) => self.drop_stream(stream, env),
                        Act::Refuse(stream, mut rec) => {
                            let before = self.conn.output().len();
                            let _ = self.conn.send_response_head(stream, rec.status, [], true);
                            rec.bytes_sent = self.conn.output().len().saturating_sub(before) as u64;
                            self.answered_here(env, cfg, rec);
                        }
                        Act::Reset(stream, code) => {
                            let _ = self.conn.reset(stream, code);
                        }
                        Act::Fail(error) => {
                            // Exactly the ENHANCE_YOUR_CALM closes have a reason.
                            if let Some(reason) = error.calm_reason() {
                                env.stats().h2_calm_closes.count(reason);
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
        let Some(i) = self
            .lanes
            .iter()
            .position(|l| matches!(l, Slot::Busy(s) if s.id == stream))
        else {
            return;
        };
        let lane = Lane::try_from(i).unwrap_or(Lane::MAX);
        if let Some(Slot::Busy(s)) = self.lanes.get_mut(i) {
            s.inner.abort(env, Term::ClientClosed);
            s.take_intents(lane, &mut self.intents);
        }
        self.free(i, env);
    }

    /// The connection ends: every exchange is dropped.
    fn end_all(&mut self, env: &mut impl Env, term: Term) {
        for i in 0..self.lanes.len() {
            let lane = Lane::try_from(i).unwrap_or(Lane::MAX);
            if let Some(Slot::Busy(s)) = self.lanes.get_mut(i) {
                s.inner.abort(env, term);
                s.take_intents(lane, &mut self.intents);
                self.free(i, env);
            }
        }
    }

    /// A backend connection for the stream on `lane`: ready, connected or failed.
    pub fn on_upstream(
        &mut self,
        lane: Lane,
        w: &mut Wire,
        env: &mut impl Env,
        cfg: &H2ListenerCfg,
        ev: UpstreamEvent,
    ) {
        if let Some(Slot::Busy(s)) = self.lanes.get_mut(usize::from(lane)) {
            s.with_inner(w, |inner, w| inner.on_upstream(w, env, &cfg.h1, ev));
            s.take_intents(lane, &mut self.intents);
        }
    }

    /// A server has room again for the queued request of the stream on `lane`.
    pub fn on_dequeued(
        &mut self,
        lane: Lane,
        w: &mut Wire,
        env: &mut impl Env,
        cfg: &H2ListenerCfg,
    ) {
        if let Some(Slot::Busy(s)) = self.lanes.get_mut(usize::from(lane)) {
            s.with_inner(w, |inner, w| inner.on_dequeued(w, env, &cfg.h1));
            s.take_intents(lane, &mut self.intents);
        }
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

    /// Whether the driver should read the client now (backpressure: its bytes wait unparsed,
    /// and what ringway owes it is bounded).
    pub fn wants_read(&self, w: &Wire, side: usize) -> bool {
        if self.closed || w.eof[side] {
            return false;
        }
        if side == CLIENT {
            w.rx[CLIENT].len() < CLIENT_RX_MAX && w.queued(CLIENT) < QUEUED_MAX
        } else {
            false
        }
    }

    /// Whether the driver should read the backend connection of `lane` now: the stream's
    /// exchange wants it and its windows and the client queue have room.
    pub fn lane_wants_read(&self, lane: Lane) -> bool {
        match self.lanes.get(usize::from(lane)) {
            Some(Slot::Busy(s)) => {
                !self.closed && s.up_read && !s.up.eof && s.up.rx.len() < QUEUED_MAX
            }
            _ => false,
        }
    }

    /// When something times out: the earliest of the streams' deadlines (or, with none open,
    /// the idle connection's) and the SETTINGS ACK's.
    pub fn deadline(&self, w: &Wire, env: &impl Env, cfg: &H2ListenerCfg) -> Option<u64> {
        let _ = (w, env);
        if self.closed {
            return None;
        }
        let mut open = false;
        let mut at: Option<u64> = None;
        for (_, s) in self.busy() {
            open = true;
            if let Some(d) = s.deadline {
                at = Some(at.map_or(d, |a| a.min(d)));
            }
        }
        if !open {
            at = Some(self.idle_deadline(cfg));
        }
        match (at, self.settings_deadline(cfg)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// With no stream open: GOAWAY at `http_keep_alive` after the last stream or request (as
    /// nginx's `keepalive_timeout` counts from the last request). Bytes that are no stream's do
    /// not move it.
    fn idle_deadline(&self, cfg: &H2ListenerCfg) -> u64 {
        self.idle_since_ms
            .saturating_add(cfg.h1.timeouts.http_keep_alive)
    }

    /// While our SETTINGS are not acknowledged: the connection fails with SETTINGS_TIMEOUT at
    /// `http_request` after it started. RFC 9113 §6.5.3 leaves "a reasonable time" to us; this
    /// is the bound a client has to finish a request head, 10 s by default.
    fn settings_deadline(&self, cfg: &H2ListenerCfg) -> Option<u64> {
        self.conn
            .awaiting_settings_ack()
            .then(|| self.started_ms.saturating_add(cfg.h1.timeouts.http_request))
    }

    /// The driver's timer fired: each stream whose deadline passed acts on it.
    pub fn on_timer(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H2ListenerCfg) {
        let now = env.now_ms();
        if self.settings_deadline(cfg).is_some_and(|d| now >= d)
            && let Some(error) = self
                .conn
                .settings_timeout(now.saturating_sub(self.started_ms))
        {
            tracing::debug!(%error, "HTTP/2 connection error");
            self.end_all(env, Term::Timeout);
            return;
        }
        let mut open = false;
        for i in 0..self.lanes.len() {
            let lane = Lane::try_from(i).unwrap_or(Lane::MAX);
            let Some(Slot::Busy(s)) = self.lanes.get_mut(i) else {
                continue;
            };
            open = true;
            if s.deadline.is_none_or(|d| now < d) {
                continue;
            }
            if s.inner_closed.is_some() {
                // A client that keeps its window shut does not keep the stream forever. A
                // stream that waits on the client's socket instead (output full) is only idle.
                let st = env.stats();
                st.idle_timeouts += 1;
                if self.conn.send_window_shut(s.id) {
                    st.h2_window_timeouts += 1;
                }
                let _ = self.conn.reset(s.id, ErrorCode::CANCEL);
                self.free(i, env);
                continue;
            }
            s.with_inner(w, |inner, w| inner.on_timer(w, env, &cfg.h1));
            s.take_intents(lane, &mut self.intents);
        }
        if open {
            // Streams were open until now (one may have ended here): idle starts no earlier.
            self.idle_since_ms = now;
        } else if now >= self.idle_deadline(cfg) {
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
    /// Answer a stream ringway does not serve with the record's status; the record is its
    /// access log line.
    Refuse(u32, Box<AccessRecord>),
    Reset(u32, ErrorCode),
    Fail(H2Error),
}

/// What a new stream is opened with.
struct Opening {
    client: SocketAddr,
    tls: bool,
    now_ms: u64,
    lanes_max: usize,
}

/// The request head that opens a stream.
struct Fresh<'a> {
    id: u32,
    head: &'a RequestHead<'a>,
    end_stream: bool,
}

/// A request head opened `stream`: it takes a lane and its exchange starts.
fn open_stream(
    lanes: &mut Vec<Slot>,
    spare: &mut SpareStreams,
    intents: &Intents,
    o: &Opening,
    new: Fresh<'_>,
) -> Act {
    let Fresh {
        id: stream,
        head,
        end_stream,
    } = new;
    if head.method == b"CONNECT" || head.path.is_none() {
        // CONNECT (and RFC 8441's extended CONNECT) is not offered over HTTP/2.
        return Act::Refuse(stream, refused_record(head, 501));
    }
    let Some(i) = take_lane(lanes, intents, o.lanes_max) else {
        // Never expected: lanes outnumber the streams the connection may have open.
        return Act::Reset(stream, ErrorCode::REFUSED_STREAM);
    };
    let s = match spare.take() {
        Some(mut s) => {
            s.renew(stream, head, end_stream, o);
            s
        }
        None => Box::new(Stream::fresh(stream, head, end_stream, o)),
    };
    if let Some(slot) = lanes.get_mut(i) {
        *slot = Slot::Busy(s);
    }
    Act::None
}

/// The access log record of a stream ringway answers with `status` before any exchange: the
/// request as it came (CONNECT's target is its `:authority`, RFC 9110 §9.3.6), `term=local`.
fn refused_record(head: &RequestHead<'_>, status: u16) -> Box<AccessRecord> {
    let text = |v: Option<&[u8]>| {
        v.map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    Box::new(AccessRecord {
        proto: "h2",
        method: text(Some(head.method)),
        target: text(head.path.or(head.authority)),
        version_minor: 1,
        referer: text(head.fields.get(b"referer")),
        user_agent: text(head.fields.get(b"user-agent")),
        status,
        bytes_sent: 0,
        bytes_received: 0,
        duration_ms: 0,
        request_us: 0,
        queue_us: None,
        connect_us: None,
        response_us: None,
        retries: 0,
        backend: None,
        server: None,
        term: Term::Local,
    })
}

/// A lane for a new stream, if the connection has one. Cooling lanes become free once no
/// intent waits for the driver.
fn take_lane(lanes: &mut Vec<Slot>, intents: &Intents, lanes_max: usize) -> Option<usize> {
    if intents.is_empty() {
        for slot in lanes.iter_mut() {
            if matches!(slot, Slot::Cooling) {
                *slot = Slot::Free;
            }
        }
    }
    if let Some(i) = lanes.iter().position(|l| matches!(l, Slot::Free)) {
        return Some(i);
    }
    if lanes.len() < lanes_max {
        lanes.push(Slot::Free);
        return Some(lanes.len() - 1);
    }
    None
}

fn stream_mut(lanes: &mut [Slot], id: u32) -> Option<&mut Stream> {
    lanes.iter_mut().find_map(|l| match l {
        Slot::Busy(s) if s.id == id => Some(&mut **s),
        _ => None,
    })
}

fn on_event(lanes: &mut [Slot], event: Event<'_>) -> Act {
    match event {
        // Opened by the session itself (it needs a lane).
        Event::RequestHead { stream, .. } => Act::Reset(stream, ErrorCode::INTERNAL_ERROR),
        Event::Data {
            stream,
            data,
            end_stream,
        } => {
            let Some(s) = stream_mut(lanes, stream) else {
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
            if let Some(s) = stream_mut(lanes, stream) {
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
        Event::Reset { stream, .. } => Act::Drop(stream),
        Event::StreamError { stream, error } => {
            // RST_STREAM sent for the client's error; the connection goes on.
            tracing::debug!(stream, code = %error.code(), %error, "HTTP/2 stream error");
            Act::Drop(stream)
        }
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
/// Where a final response is once its head is sent: `None` when it has no body.
fn resp_after_head(framing: Framing) -> Option<Resp> {
    match framing {
        Framing::None | Framing::Length(0) => None,
        Framing::Length(n) => Some(Resp::Length(n)),
        Framing::Chunked => Some(Resp::Chunked(ChunkedScanner::new())),
        Framing::CloseDelimited => Some(Resp::UntilEof),
    }
}

/// The fields of a response head the exchange encoded itself (`http1::encode_response`: a
/// status line, then one `name: value` line per field, then an empty line). Already checked
/// when the backend's head was parsed, so only split here.
fn own_head_fields(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .take_while(|line| !line.is_empty())
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            Some((name, value.get(1..).unwrap_or_default().trim_ascii()))
        })
}

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
