//! Owns: one HTTP/2 server connection (RFC 9113) as a sans-IO state machine: the client
//! preface, the SETTINGS exchange, the stream states of §5.1, field blocks assembled across
//! CONTINUATION and decoded (`hpack.rs`), request heads and trailers checked against §8.1–§8.3,
//! flow control per stream and per connection in both directions, PING, GOAWAY both ways,
//! RST_STREAM both ways, and the abuse defences of docs/design/h2.md (rapid reset, resets we are
//! made to send, SETTINGS/PING/empty-frame floods, CONTINUATION floods, HPACK bombs, too many
//! streams), each ending in the code `H2Error::code` chooses.
//! Must not: touch sockets or clocks (time comes in with each call), route, or speak HTTP/1.1:
//! the session that wires streams to backends reads [`Event`]s and calls the `send_*` methods.
//!
//! Shape: [`H2Conn::feed`] takes received bytes and returns one [`Fed`] verdict at a time (an
//! event, or "need more", "blocked on output", "closed"); the caller keeps the bytes not
//! consumed and feeds them again. What the connection has to send accumulates in its output
//! buffer, which the caller moves into its own bounded buffer with [`H2Conn::drain_output`].
//! Reading stops ([`Fed::Blocked`]) while that output holds `output_bytes_max` bytes, so a peer
//! that floods PINGs or SETTINGS but never reads cannot grow it. DATA goes out only as far as
//! the peer's windows and the output bound allow ([`H2Conn::send_data`] says how much it took);
//! our receive windows reopen only as the application reports bytes handed on
//! ([`H2Conn::consumed`]), so a slow backend slows the client (backpressure).
//!
//! Memory per connection, all bounded by [`H2Cfg`]:
//! - HPACK: the decoder's table buffer of 2 × 4096 bytes plus its index, the encoder's the same
//!   (`hpack.rs`); Huffman scratch up to `header_list_bytes_max`;
//! - one field block being assembled across CONTINUATION: at most `header_block_bytes_max`
//!   (only when a block spans frames; a block in one frame is decoded in place);
//! - the decoded fields of the last block: at most `header_list_bytes_max` bytes and
//!   `fields_max` entries of 16 bytes (reused for every request: no allocation per request once
//!   grown);
//! - output: at most `output_bytes_max` plus one response field block or one control frame;
//! - streams: at most `streams_max` entries of 56 bytes (id, both sides' state, four window
//!   counters), plus a ring of the last
//!   [`CLOSED_RING`] closed stream ids (8 bytes each).
//!
//! Nothing of a request body is buffered here: DATA payloads are handed out as slices of the
//! caller's input.

use super::frame::{
    self, FLAG_ACK, FRAME_BYTES_MIN, Frame, FrameVerdict, HEAD_BYTES, PREFACE, Priority, Setting,
    TYPE_CONTINUATION, TYPE_SETTINGS, WINDOW_MAX,
};
use super::hpack::{DecodeLimits, Decoder, Encoder, HuffmanUse, IndexUse};
use super::{ErrorCode, Glitch, H2Error, Kind, Malformed, Scope, Violation};

/// The window every stream and the connection start with before SETTINGS say otherwise (§6.9.2).
pub const DEFAULT_WINDOW_BYTES: u32 = 65_535;
/// DATA frames we send are at most this large (one TLS record), whatever the peer allows.
pub const DATA_FRAME_BYTES_MAX: usize = 16_384;
/// Closed streams remembered, to tell "closed" from "never opened" (§5.1) and to ignore what
/// was in flight when we reset a stream.
pub const CLOSED_RING: usize = 64;
/// Bytes of one open stream's state here (the module doc's per-stream memory).
pub const STREAM_BYTES: usize = std::mem::size_of::<Stream>();
// The module doc's figure: change both together.
const _: () = assert!(STREAM_BYTES <= 56);
/// SETTINGS_HEADER_TABLE_SIZE we keep (the RFC default, so never sent).
pub const DECODER_TABLE_BYTES: usize = 4096;

/// Limits of one connection (docs/design/h2.md, "SETTINGS and limits proposed").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Cfg {
    /// SETTINGS_MAX_CONCURRENT_STREAMS (`h2_streams_max`).
    pub streams_max: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE: request body buffered per stream.
    pub stream_window_bytes: u32,
    /// Our connection receive window, raised to this after the preface (at least 65 535).
    pub conn_window_bytes: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, enforced while decoding.
    pub header_list_bytes_max: u32,
    /// A field block (HEADERS + CONTINUATION) larger than this ends the connection.
    pub header_block_bytes_max: u32,
    /// Frames one field block may span (CONTINUATION flood).
    pub continuation_frames_max: u32,
    pub fields_max: u32,
    /// RST_STREAM received per second (a bucket of this many tokens refilled at this rate).
    pub resets_per_s_max: u32,
    /// Streams reset by the client before their response head, in a row.
    pub early_resets_max: u32,
    /// RST_STREAM we send for the client's errors, over the connection's life.
    pub local_resets_max: u32,
    /// The glitch bucket: PING, SETTINGS, PRIORITY, empty frames, refused streams.
    pub glitches_max: u32,
    pub glitches_refill_per_s: u32,
    /// After this many streams the connection is sent GOAWAY (0: no limit).
    pub streams_per_conn_max: u32,
    /// Output held before reading stops.
    pub output_bytes_max: usize,
}

impl Default for H2Cfg {
    fn default() -> H2Cfg {
        H2Cfg {
            streams_max: 100,
            stream_window_bytes: DEFAULT_WINDOW_BYTES,
            conn_window_bytes: 256 * 1024,
            header_list_bytes_max: 64 * 1024,
            header_block_bytes_max: 64 * 1024,
            continuation_frames_max: 20,
            fields_max: 128,
            resets_per_s_max: 100,
            early_resets_max: 50,
            local_resets_max: 500,
            glitches_max: 100,
            glitches_refill_per_s: 10,
            streams_per_conn_max: 0,
            output_bytes_max: 64 * 1024,
        }
    }
}

/// What one connection counted (for `/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct H2Counters {
    pub streams_opened: u64,
    pub streams_refused: u64,
    pub resets_received: u64,
    pub resets_sent: u64,
    pub goaway_sent: u64,
    pub goaway_received: u64,
    pub glitches: u64,
}

/// The fields of a decoded block, in order, as slices of the connection's arena.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    bytes: &'a [u8],
    list: &'a [(Span, Span)],
}

impl<'a> Fields<'a> {
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let bytes = self.bytes;
        self.list
            .iter()
            .map(move |&(n, v)| (n.of(bytes), v.of(bytes)))
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first field named `name` (lowercase).
    pub fn get(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// A request head (RFC 9113 §8.3.1), checked: `method` is there; `scheme` and `path` are there
/// unless the method is CONNECT, where `authority` is.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a [u8],
    pub scheme: Option<&'a [u8]>,
    pub authority: Option<&'a [u8]>,
    pub path: Option<&'a [u8]>,
    pub content_length: Option<u64>,
    /// The regular fields (no pseudo-headers), cookies still split (§8.2.3 joins them).
    pub fields: Fields<'a>,
}

/// Something the application has to act on.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A new stream. `end_stream`: no body follows.
    RequestHead {
        stream: u32,
        head: RequestHead<'a>,
        end_stream: bool,
    },
    /// Request body bytes (possibly empty when only `end_stream`). Report them with
    /// [`H2Conn::consumed`] once handed on, or the client's window stays closed.
    Data {
        stream: u32,
        data: &'a [u8],
        end_stream: bool,
    },
    /// Request trailers; the request is complete.
    Trailers { stream: u32, fields: Fields<'a> },
    /// The client reset the stream: drop its exchange.
    Reset { stream: u32, code: ErrorCode },
    /// We reset the stream for the client's error (RST_STREAM sent): drop its exchange, if it
    /// has one. A request refused or malformed before it opened a stream comes as this too,
    /// with no [`Event::RequestHead`] before it.
    StreamError { stream: u32, error: H2Error },
    /// The client will open no more streams; those open finish.
    GoAway {
        last_stream: u32,
        code: ErrorCode,
        debug: &'a [u8],
    },
    /// A send window opened: `stream`'s, or the connection's when 0 (retry every stream).
    WindowOpen { stream: u32 },
    /// The connection failed (GOAWAY sent): drain the output, then close. No more events.
    ConnectionError { error: H2Error },
}

/// One step of [`H2Conn::feed`] (STYLE.md §3). `consumed_bytes` counts from the start of the
/// input given.
#[derive(Debug, Clone, Copy)]
pub enum Fed<'a> {
    /// Feed again with the input after `consumed_bytes`.
    Event {
        event: Event<'a>,
        consumed_bytes: usize,
    },
    /// Every whole frame is used; keep the rest and feed it again with more bytes.
    NeedMore { consumed_bytes: usize },
    /// The output holds `output_bytes_max`: drain it, then feed the rest again.
    Blocked { consumed_bytes: usize },
    /// The connection is over: send the output, then close.
    Closed { consumed_bytes: usize },
}

/// A call the application made that the stream's state does not allow (a bug in the caller,
/// not the peer's doing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no such stream open")]
    UnknownStream,
    #[error("the response head was sent already")]
    HeadAlreadySent,
    #[error("the response head is not sent yet")]
    HeadNotSent,
    #[error("the stream's sending side has ended")]
    AlreadyEnded,
    #[error("status outside 100..=999, or 101 (RFC 9113 §8.6)")]
    BadStatus,
    #[error("an interim (1xx) response cannot end the stream")]
    InterimEndStream,
    #[error("the connection is closed")]
    Closed,
}

/// A stream as §5.1 names its states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    Idle,
    Open,
    HalfClosedLocal,
    HalfClosedRemote,
    Closed,
}

// ---- internals ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(self, bytes: &[u8]) -> &[u8] {
        let start = self.start as usize;
        bytes.get(start..start + self.len as usize).unwrap_or(&[])
    }
}

/// The request side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    Body {
        content_length: Option<u64>,
        received: u64,
    },
    Done,
}

/// The response side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Send {
    Head,
    Body,
    Done,
}

/// One open or half-closed stream: 56 bytes on 64-bit targets ([`STREAM_BYTES`]).
#[derive(Debug)]
struct Stream {
    id: u32,
    recv: Recv,
    send: Send,
    /// What we may still send (the peer's window; may go negative after a SETTINGS change).
    send_window: i64,
    /// What the peer may still send.
    recv_window: i64,
    /// Delivered to the application, not reported consumed yet.
    recv_held: u32,
    /// Consumed, not yet given back by WINDOW_UPDATE.
    recv_unacked: u32,
}

impl Stream {
    fn state(&self) -> StreamState {
        match (self.recv, self.send) {
            (Recv::Body { .. }, Send::Head | Send::Body) => StreamState::Open,
            (Recv::Body { .. }, Send::Done) => StreamState::HalfClosedLocal,
            (Recv::Done, Send::Head | Send::Body) => StreamState::HalfClosedRemote,
            (Recv::Done, Send::Done) => StreamState::Closed,
        }
    }
}

/// How a remembered stream closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    ResetByUs,
    ResetByPeer,
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the 24 preface octets.
    Preface,
    /// The preface is in; the next frame must be SETTINGS (§3.4).
    FirstSettings,
    Open,
    /// We sent GOAWAY: the streams open finish, newer ones are refused.
    GoingAway,
    /// Over (GOAWAY sent for an error, or nothing left after a graceful close).
    Closed,
}

/// A field block spanning frames, until END_HEADERS.
#[derive(Debug, Clone, Copy)]
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<Priority>,
    frames: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockUse {
    Request,
    Trailers,
    /// Decoded only to keep HPACK state (§4.3), then dropped.
    Discard,
}

/// The decoded fields of the last block, in one arena reused from block to block.
#[derive(Debug, Default)]
struct Head {
    bytes: Vec<u8>,
    fields: Vec<(Span, Span)>,
    method: Option<Span>,
    scheme: Option<Span>,
    authority: Option<Span>,
    path: Option<Span>,
    content_length: Option<u64>,
    regular_seen: bool,
    malformed: Option<Malformed>,
}

/// §8.2.1 and RFC 9110 §5.6.2: the token characters, lowercase only.
const NAME_BYTES: [bool; 256] = crate::byteset::byte_set(false, b"!#$%&'*+-.^_`|~");

fn name_ok(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| NAME_BYTES[usize::from(b)])
}

fn value_ok(value: &[u8]) -> bool {
    let edge = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    !edge(value.first())
        && !edge(value.last())
        && !value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'))
}

/// §8.2.2: fields that mean something only to one HTTP/1.1 connection.
fn connection_specific(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
    )
}

fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

impl Head {
    fn clear(&mut self) {
        self.bytes.clear();
        self.fields.clear();
        self.method = None;
        self.scheme = None;
        self.authority = None;
        self.path = None;
        self.content_length = None;
        self.regular_seen = false;
        self.malformed = None;
    }

    fn store(&mut self, s: &[u8]) -> Span {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(s);
        Span {
            start,
            len: s.len() as u32,
        }
    }

    fn refuse(&mut self, m: Malformed) {
        self.malformed.get_or_insert(m);
    }

    fn push(&mut self, block_use: BlockUse, name: &[u8], value: &[u8]) {
        if block_use == BlockUse::Discard || self.malformed.is_some() {
            return;
        }
        if !value_ok(value) {
            return self.refuse(Malformed::BadValue);
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if block_use == BlockUse::Trailers {
                return self.refuse(Malformed::PseudoInTrailers);
            }
            if self.regular_seen {
                return self.refuse(Malformed::PseudoAfterRegular);
            }
            let span = self.store(value);
            // `:protocol` is not accepted: we announce no SETTINGS_ENABLE_CONNECT_PROTOCOL.
            let slot = match pseudo {
                b"method" => &mut self.method,
                b"scheme" => &mut self.scheme,
                b"authority" => &mut self.authority,
                b"path" => &mut self.path,
                _ => return self.refuse(Malformed::UnknownPseudo),
            };
            if slot.replace(span).is_some() {
                return self.refuse(Malformed::DuplicatePseudo);
            }
            if pseudo == b"authority" && !crate::authority::is_valid(value) {
                self.refuse(Malformed::BadAuthority);
            }
            return;
        }
        self.regular_seen = true;
        if !name_ok(name) {
            return self.refuse(Malformed::BadName);
        }
        if connection_specific(name) {
            return self.refuse(Malformed::ConnectionSpecific);
        }
        if name == b"te" && !value.eq_ignore_ascii_case(b"trailers") {
            return self.refuse(Malformed::TeNotTrailers);
        }
        if name == b"content-length" {
            match parse_content_length(value) {
                Some(n) if self.content_length.is_none_or(|c| c == n) => {
                    self.content_length = Some(n);
                }
                _ => return self.refuse(Malformed::BadContentLength),
            }
        }
        if name == b"host" && block_use == BlockUse::Request {
            // Pseudo-headers come first (§8.3), so `:authority` is known here. Every `host`
            // field is checked: it must name what `:authority` names (§8.3.1), or, without
            // one, be an authority itself, since it becomes the request's Host.
            match self.authority {
                Some(a) if !value.eq_ignore_ascii_case(a.of(&self.bytes)) => {
                    return self.refuse(Malformed::HostMismatch);
                }
                Some(_) => {}
                None if !crate::authority::is_valid(value) => {
                    return self.refuse(Malformed::BadAuthority);
                }
                None => {}
            }
        }
        let n = self.store(name);
        let v = self.store(value);
        self.fields.push((n, v));
    }

    /// The checks that need the whole block (§8.3.1, §8.5).
    fn finish(&mut self, block_use: BlockUse) -> Option<Malformed> {
        if block_use != BlockUse::Request || self.malformed.is_some() {
            return self.malformed;
        }
        let Some(method) = self.method.filter(|m| m.len > 0) else {
            return Some(Malformed::MissingPseudo);
        };
        if method.of(&self.bytes) == b"CONNECT" {
            if self.scheme.is_some() || self.path.is_some() || self.authority.is_none() {
                return Some(Malformed::BadConnect);
            }
        } else {
            let (Some(_), Some(path)) = (self.scheme, self.path) else {
                return Some(Malformed::MissingPseudo);
            };
            if path.len == 0 {
                return Some(Malformed::EmptyPath);
            }
        }
        None
    }

    fn fields(&self) -> Fields<'_> {
        Fields {
            bytes: &self.bytes,
            list: &self.fields,
        }
    }

    fn request(&self) -> RequestHead<'_> {
        let b = &self.bytes;
        RequestHead {
            method: self.method.map_or(&[][..], |s| s.of(b)),
            scheme: self.scheme.map(|s| s.of(b)),
            authority: self.authority.map(|s| s.of(b)),
            path: self.path.map(|s| s.of(b)),
            content_length: self.content_length,
            fields: self.fields(),
        }
    }
}

/// A token bucket in thousandths of a token, refilled from the times given.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli: u64,
    milli_max: u64,
    /// Tokens per second = thousandths per millisecond.
    refill_per_s: u64,
    at_ms: u64,
}

impl Bucket {
    fn new(tokens_max: u32, refill_per_s: u32, now_ms: u64) -> Bucket {
        Bucket {
            milli: u64::from(tokens_max) * 1000,
            milli_max: u64::from(tokens_max) * 1000,
            refill_per_s: u64::from(refill_per_s),
            at_ms: now_ms,
        }
    }

    /// Takes one token; false when there is none.
    fn take(&mut self, now_ms: u64) -> bool {
        let elapsed_ms = now_ms.saturating_sub(self.at_ms);
        self.at_ms = self.at_ms.max(now_ms);
        self.milli = self
            .milli
            .saturating_add(elapsed_ms.saturating_mul(self.refill_per_s))
            .min(self.milli_max);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// What a frame produced, before it is shown to the application (borrowing only the input).
#[derive(Debug, Clone, Copy)]
enum Pending<'a> {
    RequestHead {
        stream: u32,
        end_stream: bool,
    },
    Trailers {
        stream: u32,
    },
    Data {
        stream: u32,
        data: &'a [u8],
        end_stream: bool,
    },
    Reset {
        stream: u32,
        code: ErrorCode,
    },
    StreamError {
        stream: u32,
        error: H2Error,
    },
    GoAway {
        last_stream: u32,
        code: ErrorCode,
        debug: &'a [u8],
    },
    WindowOpen {
        stream: u32,
    },
    ConnectionError {
        error: H2Error,
    },
}

type Step<'a> = Result<Option<Pending<'a>>, Violation>;

fn conn_err(error: H2Error) -> Violation {
    Violation::connection(error)
}

/// One HTTP/2 server connection.
#[derive(Debug)]
pub struct H2Conn {
    cfg: H2Cfg,
    phase: Phase,
    out: Vec<u8>,
    decoder: Decoder,
    encoder: Encoder,
    /// Scratch for one response block and one lowercased name.
    block_out: Vec<u8>,
    name_lower: Vec<u8>,
    head: Head,
    block: Option<OpenBlock>,
    block_bytes: Vec<u8>,
    streams: Vec<Stream>,
    closed: [(u32, Ended); CLOSED_RING],
    closed_next: usize,
    /// The highest client stream id seen (opened or refused).
    last_stream_id: u32,
    streams_total: u32,
    peer_going_away: bool,
    /// Our SETTINGS are not acknowledged yet.
    settings_unacked: bool,
    peer_initial_window: i64,
    peer_frame_bytes_max: u32,
    peer_header_list_bytes_max: Option<u32>,
    conn_send_window: i64,
    conn_recv_window: i64,
    conn_recv_unacked: u32,
    resets: Bucket,
    glitches: Bucket,
    early_resets: u32,
    local_resets: u32,
    counters: H2Counters,
    /// The last error the peer caused, stream or connection (for logs).
    last_error: Option<Violation>,
}

impl H2Conn {
    /// A connection whose client preface is still to come. Our SETTINGS (and the connection
    /// window raise) are in the output already: the server preface may go first (§3.4).
    pub fn new(cfg: H2Cfg, now_ms: u64) -> H2Conn {
        let mut cfg = cfg;
        cfg.conn_window_bytes = cfg
            .conn_window_bytes
            .clamp(DEFAULT_WINDOW_BYTES, WINDOW_MAX);
        cfg.stream_window_bytes = cfg.stream_window_bytes.min(WINDOW_MAX);
        cfg.streams_max = cfg.streams_max.max(1);
        let mut out = Vec::with_capacity(256);
        let mut settings = [(0u16, 0u32); 4];
        let mut n = 0;
        for s in [
            (frame::SETTINGS_MAX_CONCURRENT_STREAMS, cfg.streams_max),
            (frame::SETTINGS_INITIAL_WINDOW_SIZE, cfg.stream_window_bytes),
            (
                frame::SETTINGS_MAX_HEADER_LIST_SIZE,
                cfg.header_list_bytes_max,
            ),
            (frame::SETTINGS_NO_RFC7540_PRIORITIES, 1),
        ] {
            if s.0 == frame::SETTINGS_INITIAL_WINDOW_SIZE && s.1 == DEFAULT_WINDOW_BYTES {
                continue;
            }
            settings[n] = s;
            n += 1;
        }
        frame::write_settings(&mut out, &settings[..n]);
        let raise = cfg.conn_window_bytes - DEFAULT_WINDOW_BYTES;
        if raise > 0 {
            frame::write_window_update(&mut out, 0, raise);
        }
        H2Conn {
            cfg,
            phase: Phase::Preface,
            out,
            decoder: Decoder::new(DECODER_TABLE_BYTES),
            encoder: Encoder::new(
                DECODER_TABLE_BYTES,
                HuffmanUse::WhenShorter,
                IndexUse::Repeating,
            ),
            block_out: Vec::new(),
            name_lower: Vec::new(),
            head: Head::default(),
            block: None,
            block_bytes: Vec::new(),
            streams: Vec::new(),
            closed: [(0, Ended::Finished); CLOSED_RING],
            closed_next: 0,
            last_stream_id: 0,
            streams_total: 0,
            peer_going_away: false,
            settings_unacked: true,
            peer_initial_window: i64::from(DEFAULT_WINDOW_BYTES),
            peer_frame_bytes_max: FRAME_BYTES_MIN,
            peer_header_list_bytes_max: None,
            conn_send_window: i64::from(DEFAULT_WINDOW_BYTES),
            conn_recv_window: i64::from(cfg.conn_window_bytes),
            conn_recv_unacked: 0,
            resets: Bucket::new(cfg.resets_per_s_max, cfg.resets_per_s_max, now_ms),
            glitches: Bucket::new(cfg.glitches_max, cfg.glitches_refill_per_s, now_ms),
            early_resets: 0,
            local_resets: 0,
            counters: H2Counters::default(),
            last_error: None,
        }
    }

    pub fn counters(&self) -> H2Counters {
        self.counters
    }

    /// The last error the peer caused (a stream reset, or the connection's end): what the last
    /// [`Event::StreamError`] or [`Event::ConnectionError`] said.
    pub fn last_error(&self) -> Option<Violation> {
        self.last_error
    }

    /// Streams open or half-closed.
    pub fn streams_open(&self) -> usize {
        self.streams.len()
    }

    /// The highest client stream id seen: the last-stream-id of a GOAWAY sent now.
    pub fn last_stream_id(&self) -> u32 {
        self.last_stream_id
    }

    /// The connection has nothing more to do: send the output, then close.
    pub fn is_finished(&self) -> bool {
        match self.phase {
            Phase::Closed => true,
            Phase::GoingAway => self.streams.is_empty(),
            Phase::Preface | Phase::FirstSettings | Phase::Open => {
                self.peer_going_away && self.streams.is_empty()
            }
        }
    }

    pub fn stream_state(&self, stream: u32) -> StreamState {
        match self.find(stream) {
            Some(i) => self.streams[i].state(),
            None if stream > self.last_stream_id || stream.is_multiple_of(2) => StreamState::Idle,
            None => StreamState::Closed,
        }
    }

    /// Bytes [`H2Conn::send_data`] would take on `stream` now (windows, frame and output room).
    pub fn send_capacity(&self, stream: u32) -> usize {
        let Some(i) = self.find(stream) else {
            return 0;
        };
        let s = &self.streams[i];
        if s.send != Send::Body {
            return 0;
        }
        let window = s.send_window.min(self.conn_send_window).max(0) as usize;
        let room = self.cfg.output_bytes_max.saturating_sub(self.out.len());
        let frames = room / (HEAD_BYTES + DATA_FRAME_BYTES_MAX);
        let tail = (room % (HEAD_BYTES + DATA_FRAME_BYTES_MAX)).saturating_sub(HEAD_BYTES);
        window.min(frames * DATA_FRAME_BYTES_MAX + tail)
    }

    /// Whether `stream`'s response body waits on the client's flow control: its own send window
    /// or the connection's is shut (0, or below after a smaller SETTINGS_INITIAL_WINDOW_SIZE,
    /// RFC 9113 §6.9.2). False when it waits on something else (output room, the backend).
    pub fn send_window_shut(&self, stream: u32) -> bool {
        self.find(stream)
            .and_then(|i| self.streams.get(i))
            .is_some_and(|s| s.send == Send::Body && s.send_window.min(self.conn_send_window) <= 0)
    }

    /// Output waiting to be sent.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Moves up to `dst_bytes_max - dst.len()` output bytes to the end of `dst`; returns how
    /// many. When `dst` is empty and everything fits, the buffers are swapped (no copy).
    pub fn drain_output(&mut self, dst: &mut Vec<u8>, dst_bytes_max: usize) -> usize {
        let room = dst_bytes_max.saturating_sub(dst.len());
        let n = room.min(self.out.len());
        if n == 0 {
            return 0;
        }
        if dst.is_empty() && n == self.out.len() {
            std::mem::swap(dst, &mut self.out);
            self.out.clear();
            return n;
        }
        dst.extend_from_slice(&self.out[..n]);
        self.out.drain(..n);
        n
    }

    // ---- input ----------------------------------------------------------------------------------

    /// Reads frames from `input` until one gives an event, the input runs out, the output is
    /// full or the connection is over.
    pub fn feed<'a>(&'a mut self, input: &'a [u8], now_ms: u64) -> Fed<'a> {
        let mut at = 0usize;
        loop {
            if self.is_finished() {
                self.phase = Phase::Closed;
                return Fed::Closed { consumed_bytes: at };
            }
            if self.out.len() >= self.cfg.output_bytes_max {
                return Fed::Blocked { consumed_bytes: at };
            }
            let rest = input.get(at..).unwrap_or(&[]);
            let pending = if self.phase == Phase::Preface {
                let n = rest.len().min(PREFACE.len());
                if rest[..n] != PREFACE[..n] {
                    self.fail(H2Error::BadPreface)
                } else if n < PREFACE.len() {
                    return Fed::NeedMore { consumed_bytes: at };
                } else {
                    at += PREFACE.len();
                    self.phase = Phase::FirstSettings;
                    continue;
                }
            } else if let Some(v) = self.check_order(rest) {
                self.violation(v)
            } else {
                match frame::parse(rest, FRAME_BYTES_MIN) {
                    FrameVerdict::Partial => {
                        return Fed::NeedMore { consumed_bytes: at };
                    }
                    FrameVerdict::Invalid {
                        violation,
                        frame_bytes,
                    } => {
                        at += frame_bytes;
                        self.violation(violation)
                    }
                    FrameVerdict::Complete {
                        frame,
                        consumed_bytes,
                    } => {
                        at += consumed_bytes;
                        let step = self.on_frame(frame, now_ms);
                        match step {
                            Ok(p) => p,
                            Err(v) => self.violation(v),
                        }
                    }
                }
            };
            if let Some(p) = pending {
                return Fed::Event {
                    event: self.view(p),
                    consumed_bytes: at.min(input.len()),
                };
            }
        }
    }

    /// Rules on the next frame's header alone: SETTINGS first (§3.4), nothing inside a field
    /// block but its CONTINUATION (§6.10).
    fn check_order(&self, rest: &[u8]) -> Option<Violation> {
        let head = frame::FrameHead::parse(rest.first_chunk::<HEAD_BYTES>()?);
        if self.phase == Phase::FirstSettings
            && (head.kind != TYPE_SETTINGS || head.flags & FLAG_ACK != 0)
        {
            return Some(conn_err(H2Error::SettingsNotFirst));
        }
        if let Some(b) = self.block
            && (head.kind != TYPE_CONTINUATION || head.stream != b.stream)
        {
            return Some(conn_err(H2Error::ExpectedContinuation));
        }
        None
    }

    fn view<'a>(&'a self, p: Pending<'a>) -> Event<'a> {
        match p {
            Pending::RequestHead { stream, end_stream } => Event::RequestHead {
                stream,
                head: self.head.request(),
                end_stream,
            },
            Pending::Trailers { stream } => Event::Trailers {
                stream,
                fields: self.head.fields(),
            },
            Pending::Data {
                stream,
                data,
                end_stream,
            } => Event::Data {
                stream,
                data,
                end_stream,
            },
            Pending::Reset { stream, code } => Event::Reset { stream, code },
            Pending::StreamError { stream, error } => Event::StreamError { stream, error },
            Pending::GoAway {
                last_stream,
                code,
                debug,
            } => Event::GoAway {
                last_stream,
                code,
                debug,
            },
            Pending::WindowOpen { stream } => Event::WindowOpen { stream },
            Pending::ConnectionError { error } => Event::ConnectionError { error },
        }
    }

    fn violation<'a>(&mut self, v: Violation) -> Option<Pending<'a>> {
        match v.scope {
            Scope::Connection => self.fail(v.error),
            Scope::Stream(id) => {
                // §5.1: frames other than HEADERS and PRIORITY on an idle stream end the
                // connection; a PRIORITY frame's own errors stay on its stream (§6.3).
                let priority_frame = matches!(
                    v.error,
                    H2Error::BadFrameSize(Kind::Priority) | H2Error::SelfDependency
                );
                if !priority_frame && self.stream_state(id) == StreamState::Idle {
                    return self.fail(H2Error::IdleStream(Kind::WindowUpdate));
                }
                self.reset_for_error(id, v.error)
            }
        }
    }

    /// Ends the connection with GOAWAY.
    fn fail<'a>(&mut self, error: H2Error) -> Option<Pending<'a>> {
        if self.phase == Phase::Closed {
            return None;
        }
        frame::write_goaway(&mut self.out, self.last_stream_id, error.code(), &[]);
        self.counters.goaway_sent += 1;
        self.last_error = Some(Violation::connection(error));
        self.phase = Phase::Closed;
        self.streams.clear();
        self.block = None;
        Some(Pending::ConnectionError { error })
    }

    /// RST_STREAM for the peer's error on `id`; counted against `local_resets_max`.
    fn reset_for_error<'a>(&mut self, id: u32, error: H2Error) -> Option<Pending<'a>> {
        frame::write_rst_stream(&mut self.out, id, error.code());
        self.counters.resets_sent += 1;
        self.last_error = Some(Violation::stream(id, error));
        self.local_resets += 1;
        if self.local_resets > self.cfg.local_resets_max {
            return self.fail(H2Error::LocalResets {
                max: self.cfg.local_resets_max,
            });
        }
        match self.find(id) {
            Some(i) => self.remove(i, Ended::ResetByUs),
            None => self.remember(id, Ended::ResetByUs),
        }
        // Also for a stream that never opened (refused, malformed): the application logs it.
        Some(Pending::StreamError { stream: id, error })
    }

    fn glitch(&mut self, g: Glitch, now_ms: u64) -> Result<(), Violation> {
        self.counters.glitches += 1;
        if self.glitches.take(now_ms) {
            Ok(())
        } else {
            Err(conn_err(H2Error::Flood(g)))
        }
    }

    fn on_frame<'a>(&mut self, frame: Frame<'a>, now_ms: u64) -> Step<'a> {
        match frame {
            Frame::Data {
                stream,
                data,
                end_stream,
                flow_bytes,
            } => self.on_data(stream, data, end_stream, flow_bytes, now_ms),
            Frame::Headers {
                stream,
                fragment,
                end_stream,
                end_headers,
                priority,
            } => {
                if stream.is_multiple_of(2) {
                    return Err(conn_err(H2Error::EvenStreamId));
                }
                if end_headers {
                    return self.on_block(stream, fragment, end_stream, priority, now_ms);
                }
                self.check_block_bytes(fragment.len())?;
                self.block_bytes.clear();
                self.block_bytes.extend_from_slice(fragment);
                self.block = Some(OpenBlock {
                    stream,
                    end_stream,
                    priority,
                    frames: 1,
                });
                Ok(None)
            }
            Frame::Continuation {
                stream,
                fragment,
                end_headers,
            } => {
                let Some(mut b) = self.block else {
                    return Err(conn_err(H2Error::UnexpectedContinuation));
                };
                b.frames += 1;
                if b.frames > self.cfg.continuation_frames_max {
                    return Err(conn_err(H2Error::ContinuationFlood {
                        frames_max: self.cfg.continuation_frames_max,
                    }));
                }
                self.check_block_bytes(self.block_bytes.len() + fragment.len())?;
                if fragment.is_empty() && !end_headers {
                    self.glitch(Glitch::EmptyContinuation, now_ms)?;
                }
                self.block_bytes.extend_from_slice(fragment);
                if !end_headers {
                    self.block = Some(b);
                    return Ok(None);
                }
                self.block = None;
                let bytes = std::mem::take(&mut self.block_bytes);
                let step = self.on_block(stream, &bytes, b.end_stream, b.priority, now_ms);
                self.block_bytes = bytes;
                step
            }
            Frame::Priority { .. } => {
                self.glitch(Glitch::Priority, now_ms)?;
                Ok(None)
            }
            Frame::RstStream { stream, code } => self.on_rst_stream(stream, code, now_ms),
            Frame::Settings { ack: true, .. } => {
                self.on_settings_ack();
                Ok(None)
            }
            Frame::Settings {
                ack: false,
                settings,
            } => {
                if self.phase == Phase::FirstSettings {
                    self.phase = Phase::Open;
                } else {
                    self.glitch(Glitch::Settings, now_ms)?;
                }
                let mut opened = false;
                for s in settings.iter() {
                    match s {
                        Setting::HeaderTableSize(n) => self.encoder.set_table_bytes(n as usize),
                        Setting::InitialWindowSize(n) => opened |= self.set_peer_window(n)?,
                        Setting::MaxFrameSize(n) => self.peer_frame_bytes_max = n,
                        Setting::MaxHeaderListSize(n) => self.peer_header_list_bytes_max = Some(n),
                        Setting::EnablePush(_)
                        | Setting::MaxConcurrentStreams(_)
                        | Setting::EnableConnectProtocol(_)
                        | Setting::NoRfc7540Priorities(_)
                        | Setting::Unknown { .. } => {}
                    }
                }
                frame::write_settings_ack(&mut self.out);
                Ok(opened.then_some(Pending::WindowOpen { stream: 0 }))
            }
            Frame::Ping { ack: true, .. } => Ok(None),
            Frame::Ping { ack: false, data } => {
                self.glitch(Glitch::Ping, now_ms)?;
                frame::write_ping(&mut self.out, true, data);
                Ok(None)
            }
            Frame::GoAway {
                last_stream,
                code,
                debug,
            } => {
                self.counters.goaway_received += 1;
                self.peer_going_away = true;
                Ok(Some(Pending::GoAway {
                    last_stream,
                    code,
                    debug,
                }))
            }
            Frame::WindowUpdate { stream, increment } => {
                self.on_window_update(stream, increment, now_ms)
            }
            Frame::Unknown { .. } => Ok(None),
        }
    }

    fn check_block_bytes(&self, len: usize) -> Result<(), Violation> {
        if len > self.cfg.header_block_bytes_max as usize {
            return Err(conn_err(H2Error::HeaderBlockTooLarge {
                bytes_max: self.cfg.header_block_bytes_max,
            }));
        }
        Ok(())
    }

    /// A whole field block for `stream`.
    fn on_block(
        &mut self,
        stream: u32,
        block: &[u8],
        end_stream: bool,
        priority: Option<Priority>,
        now_ms: u64,
    ) -> Step<'static> {
        let existing = self.find(stream);
        let block_use = match existing {
            Some(i) => match self.streams[i].recv {
                Recv::Body { .. } => BlockUse::Trailers,
                // §5.1 half-closed (remote): a stream error, once the block is decoded.
                Recv::Done => BlockUse::Discard,
            },
            None if stream > self.last_stream_id => BlockUse::Request,
            None => match self.ended(stream) {
                // In flight when we reset it: decode and drop.
                Some(Ended::ResetByUs) => BlockUse::Discard,
                Some(Ended::ResetByPeer | Ended::Finished) => {
                    return Err(conn_err(H2Error::StreamClosed(Kind::Headers)));
                }
                None => return Err(conn_err(H2Error::StreamIdNotIncreasing)),
            },
        };
        let malformed = self.decode(block, block_use)?;
        match (existing, block_use) {
            (Some(_), BlockUse::Discard) => Err(Violation::stream(
                stream,
                H2Error::StreamClosed(Kind::Headers),
            )),
            (None, BlockUse::Discard) => Ok(None),
            (Some(i), BlockUse::Trailers) => {
                if !end_stream {
                    return Err(Violation::stream(
                        stream,
                        H2Error::Malformed(Malformed::TrailersWithoutEndStream),
                    ));
                }
                if let Some(m) = malformed {
                    return Err(Violation::stream(stream, H2Error::Malformed(m)));
                }
                let s = &mut self.streams[i];
                if let Recv::Body {
                    content_length: Some(cl),
                    received,
                } = s.recv
                    && cl != received
                {
                    return Err(Violation::stream(
                        stream,
                        H2Error::Malformed(Malformed::ContentLengthMismatch),
                    ));
                }
                s.recv = Recv::Done;
                self.close_if_done(i);
                Ok(Some(Pending::Trailers { stream }))
            }
            (_, BlockUse::Request) => {
                self.last_stream_id = stream;
                if self.phase == Phase::GoingAway {
                    self.counters.streams_refused += 1;
                    self.glitch(Glitch::Refused, now_ms)?;
                    return Err(Violation::stream(stream, H2Error::GoingAway));
                }
                if self.streams.len() >= self.cfg.streams_max as usize {
                    self.counters.streams_refused += 1;
                    self.glitch(Glitch::Refused, now_ms)?;
                    return Err(Violation::stream(stream, H2Error::TooManyStreams));
                }
                if priority.is_some_and(|p| p.depends_on == stream) {
                    return Err(Violation::stream(stream, H2Error::SelfDependency));
                }
                if let Some(m) = malformed {
                    return Err(Violation::stream(stream, H2Error::Malformed(m)));
                }
                let content_length = self.head.content_length;
                if end_stream && content_length.is_some_and(|n| n > 0) {
                    return Err(Violation::stream(
                        stream,
                        H2Error::Malformed(Malformed::ContentLengthMismatch),
                    ));
                }
                self.open_stream(stream, end_stream, content_length);
                Ok(Some(Pending::RequestHead { stream, end_stream }))
            }
            (None, BlockUse::Trailers) => Ok(None),
        }
    }

    /// Decodes a block into the arena (or only through HPACK for `Discard`); an HPACK error
    /// ends the connection, a malformed field only the stream.
    fn decode(
        &mut self,
        block: &[u8],
        block_use: BlockUse,
    ) -> Result<Option<Malformed>, Violation> {
        let limits = DecodeLimits {
            list_bytes_max: self.cfg.header_list_bytes_max as usize,
            fields_max: self.cfg.fields_max as usize,
        };
        let head = &mut self.head;
        head.clear();
        self.decoder
            .decode(block, limits, &mut |n, v| head.push(block_use, n, v))
            .map_err(|e| conn_err(H2Error::Hpack(e)))?;
        Ok(head.finish(block_use))
    }

    fn open_stream(&mut self, id: u32, end_stream: bool, content_length: Option<u64>) {
        // Until our SETTINGS are acknowledged the client may still assume the default window.
        let recv_window = if self.settings_unacked {
            self.cfg.stream_window_bytes.max(DEFAULT_WINDOW_BYTES)
        } else {
            self.cfg.stream_window_bytes
        };
        self.streams.push(Stream {
            id,
            recv: if end_stream {
                Recv::Done
            } else {
                Recv::Body {
                    content_length,
                    received: 0,
                }
            },
            send: Send::Head,
            send_window: self.peer_initial_window,
            recv_window: i64::from(recv_window),
            recv_held: 0,
            recv_unacked: 0,
        });
        self.counters.streams_opened += 1;
        self.streams_total += 1;
        if self.cfg.streams_per_conn_max > 0 && self.streams_total >= self.cfg.streams_per_conn_max
        {
            self.go_away();
        }
    }

    fn on_data<'a>(
        &mut self,
        stream: u32,
        data: &'a [u8],
        end_stream: bool,
        flow_bytes: u32,
        now_ms: u64,
    ) -> Step<'a> {
        if stream.is_multiple_of(2) || stream > self.last_stream_id {
            return Err(conn_err(H2Error::IdleStream(Kind::Data)));
        }
        // §6.9: counted against the connection whatever becomes of the stream.
        let flow = i64::from(flow_bytes);
        if flow > self.conn_recv_window {
            return Err(conn_err(H2Error::ConnWindowExceeded));
        }
        self.conn_recv_window -= flow;
        let Some(i) = self.find(stream) else {
            self.credit_conn(flow_bytes);
            return match self.ended(stream) {
                Some(Ended::ResetByUs) => Ok(None),
                Some(Ended::ResetByPeer | Ended::Finished) | None => {
                    Err(Violation::stream(stream, H2Error::StreamClosed(Kind::Data)))
                }
            };
        };
        let s = &mut self.streams[i];
        let Recv::Body {
            content_length,
            received,
        } = s.recv
        else {
            self.credit_conn(flow_bytes);
            return Err(Violation::stream(stream, H2Error::StreamClosed(Kind::Data)));
        };
        if flow > s.recv_window {
            self.credit_conn(flow_bytes);
            return Err(Violation::stream(stream, H2Error::StreamWindowExceeded));
        }
        s.recv_window -= flow;
        let received = received + data.len() as u64;
        let mismatch = match content_length {
            Some(cl) => received > cl || (end_stream && received != cl),
            None => false,
        };
        if mismatch {
            self.credit_conn(flow_bytes);
            return Err(Violation::stream(
                stream,
                H2Error::Malformed(Malformed::ContentLengthMismatch),
            ));
        }
        s.recv = if end_stream {
            Recv::Done
        } else {
            Recv::Body {
                content_length,
                received,
            }
        };
        s.recv_held += data.len() as u32;
        // Padding never reaches the application: give it back now.
        let padding = flow_bytes - data.len() as u32;
        if padding > 0 {
            self.credit(i, padding);
        }
        if data.is_empty() && !end_stream {
            self.glitch(Glitch::EmptyData, now_ms)?;
            return Ok(None);
        }
        if end_stream {
            self.close_if_done(i);
        }
        Ok(Some(Pending::Data {
            stream,
            data,
            end_stream,
        }))
    }

    fn on_rst_stream<'a>(&mut self, stream: u32, code: ErrorCode, now_ms: u64) -> Step<'a> {
        if stream.is_multiple_of(2) || stream > self.last_stream_id {
            return Err(conn_err(H2Error::IdleStream(Kind::RstStream)));
        }
        self.counters.resets_received += 1;
        if !self.resets.take(now_ms) {
            return Err(conn_err(H2Error::RapidReset {
                per_s: self.cfg.resets_per_s_max,
            }));
        }
        let Some(i) = self.find(stream) else {
            return Ok(None);
        };
        if self.streams[i].send == Send::Head {
            self.early_resets += 1;
            if self.early_resets > self.cfg.early_resets_max {
                return Err(conn_err(H2Error::EarlyResets {
                    max: self.cfg.early_resets_max,
                }));
            }
        }
        self.remove(i, Ended::ResetByPeer);
        Ok(Some(Pending::Reset { stream, code }))
    }

    fn on_window_update<'a>(&mut self, stream: u32, increment: u32, now_ms: u64) -> Step<'a> {
        let inc = i64::from(increment);
        if stream == 0 {
            let was = self.conn_send_window;
            self.conn_send_window += inc;
            if self.conn_send_window > i64::from(WINDOW_MAX) {
                return Err(conn_err(H2Error::ConnWindowOverflow));
            }
            return Ok((was <= 0 && self.conn_send_window > 0)
                .then_some(Pending::WindowOpen { stream: 0 }));
        }
        if stream.is_multiple_of(2) || stream > self.last_stream_id {
            return Err(conn_err(H2Error::IdleStream(Kind::WindowUpdate)));
        }
        let Some(i) = self.find(stream) else {
            // Updates cross our END_STREAM in flight; only long-closed streams are a glitch.
            if self.ended(stream).is_none() {
                self.glitch(Glitch::ClosedStream, now_ms)?;
            }
            return Ok(None);
        };
        let s = &mut self.streams[i];
        let was = s.send_window;
        s.send_window += inc;
        if s.send_window > i64::from(WINDOW_MAX) {
            return Err(Violation::stream(stream, H2Error::StreamWindowOverflow));
        }
        let opened = was <= 0 && s.send_window > 0 && s.send != Send::Done;
        Ok(opened.then_some(Pending::WindowOpen { stream }))
    }

    /// §6.9.2: a new SETTINGS_INITIAL_WINDOW_SIZE moves every open stream's send window.
    /// Returns whether some window opened.
    fn set_peer_window(&mut self, n: u32) -> Result<bool, Violation> {
        let delta = i64::from(n) - self.peer_initial_window;
        self.peer_initial_window = i64::from(n);
        let mut opened = false;
        for s in &mut self.streams {
            let was = s.send_window;
            s.send_window += delta;
            if s.send_window > i64::from(WINDOW_MAX) {
                return Err(conn_err(H2Error::StreamWindowOverflow));
            }
            opened |= was <= 0 && s.send_window > 0;
        }
        Ok(opened)
    }

    fn on_settings_ack(&mut self) {
        if !self.settings_unacked {
            return;
        }
        self.settings_unacked = false;
        // Streams opened before the ACK were allowed the default window; now ours applies.
        let excess = i64::from(DEFAULT_WINDOW_BYTES) - i64::from(self.cfg.stream_window_bytes);
        if excess > 0 {
            for s in &mut self.streams {
                s.recv_window -= excess;
            }
        }
    }

    // ---- streams --------------------------------------------------------------------------------

    fn find(&self, id: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.id == id)
    }

    fn ended(&self, id: u32) -> Option<Ended> {
        self.closed
            .iter()
            .find(|(s, _)| *s == id && id != 0)
            .map(|&(_, e)| e)
    }

    fn remember(&mut self, id: u32, how: Ended) {
        if let Some(slot) = self.closed.iter_mut().find(|(s, _)| *s == id) {
            slot.1 = how;
            return;
        }
        self.closed[self.closed_next] = (id, how);
        self.closed_next = (self.closed_next + 1) % CLOSED_RING;
    }

    /// Drops stream `i`; bytes the application still holds go back to the connection window
    /// (no more can come on this stream).
    fn remove(&mut self, i: usize, how: Ended) {
        let s = self.streams.swap_remove(i);
        self.remember(s.id, how);
        self.credit_conn(s.recv_held);
    }

    fn close_if_done(&mut self, i: usize) {
        if self.streams[i].state() == StreamState::Closed {
            self.remove(i, Ended::Finished);
        }
    }

    /// `n` bytes of stream `i` are done with: our windows reopen, in updates of at least half a
    /// window so that a trickle does not cost a frame per read.
    fn credit(&mut self, i: usize, n: u32) {
        let threshold = (self.cfg.stream_window_bytes / 2).max(1);
        let s = &mut self.streams[i];
        if let Recv::Body { .. } = s.recv {
            s.recv_unacked += n;
            if s.recv_unacked >= threshold {
                frame::write_window_update(&mut self.out, s.id, s.recv_unacked);
                s.recv_window += i64::from(s.recv_unacked);
                s.recv_unacked = 0;
            }
        }
        self.credit_conn(n);
    }

    fn credit_conn(&mut self, n: u32) {
        if n == 0 || self.phase == Phase::Closed {
            return;
        }
        self.conn_recv_unacked += n;
        if self.conn_recv_unacked >= (self.cfg.conn_window_bytes / 2).max(1) {
            frame::write_window_update(&mut self.out, 0, self.conn_recv_unacked);
            self.conn_recv_window += i64::from(self.conn_recv_unacked);
            self.conn_recv_unacked = 0;
        }
    }

    // ---- what the application calls -------------------------------------------------------------

    fn open_for_send(&self, stream: u32) -> Result<usize, SendError> {
        if self.phase == Phase::Closed {
            return Err(SendError::Closed);
        }
        self.find(stream).ok_or(SendError::UnknownStream)
    }

    /// `n` bytes of `stream`'s request body were handed on: the client may send as much again.
    /// Bytes of a stream that has closed were given back already (ignored here).
    pub fn consumed(&mut self, stream: u32, n: usize) {
        let Some(i) = self.find(stream) else {
            return;
        };
        let s = &mut self.streams[i];
        let n = (n.min(s.recv_held as usize)) as u32;
        s.recv_held -= n;
        self.credit(i, n);
    }

    /// Sends the response head (or an interim 1xx head). Names are lowercased;
    /// connection-specific fields (§8.2.2) are dropped.
    pub fn send_response_head<'f>(
        &mut self,
        stream: u32,
        status: u16,
        fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>,
        end_stream: bool,
    ) -> Result<(), SendError> {
        let i = self.open_for_send(stream)?;
        if self.streams[i].send != Send::Head {
            return Err(SendError::HeadAlreadySent);
        }
        if !(100..=999).contains(&status) || status == 101 {
            return Err(SendError::BadStatus);
        }
        let interim = status < 200;
        if interim && end_stream {
            return Err(SendError::InterimEndStream);
        }
        let digits = [
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ];
        self.block_out.clear();
        self.encoder.start_block(&mut self.block_out);
        self.encoder.field(b":status", &digits, &mut self.block_out);
        self.encode_fields(fields);
        frame::write_headers(
            &mut self.out,
            stream,
            &self.block_out,
            end_stream,
            self.peer_frame_bytes_max,
        );
        let s = &mut self.streams[i];
        if !interim {
            s.send = Send::Body;
            self.early_resets = 0;
        }
        if end_stream {
            s.send = Send::Done;
            self.close_if_done(i);
        }
        Ok(())
    }

    fn encode_fields<'f>(&mut self, fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>) {
        for (name, value) in fields {
            self.name_lower.clear();
            self.name_lower
                .extend(name.iter().map(u8::to_ascii_lowercase));
            if connection_specific(&self.name_lower) || self.name_lower.first() == Some(&b':') {
                continue;
            }
            self.encoder
                .field(&self.name_lower, value, &mut self.block_out);
        }
    }

    /// Sends as much of `data` as the windows, the peer's frame size and the output bound
    /// allow, in DATA frames; returns how many bytes were taken. END_STREAM goes with the last
    /// byte: the stream's sending side ends only when all of `data` was taken (an empty `data`
    /// with `end_stream` always ends it).
    pub fn send_data(
        &mut self,
        stream: u32,
        data: &[u8],
        end_stream: bool,
    ) -> Result<usize, SendError> {
        let i = self.open_for_send(stream)?;
        match self.streams[i].send {
            Send::Head => return Err(SendError::HeadNotSent),
            Send::Done => return Err(SendError::AlreadyEnded),
            Send::Body => {}
        }
        let frame_max = (self.peer_frame_bytes_max as usize).min(DATA_FRAME_BYTES_MAX);
        let mut taken = 0;
        loop {
            let left = data.len() - taken;
            let s = &self.streams[i];
            let window = s.send_window.min(self.conn_send_window).max(0) as usize;
            let room = self
                .cfg
                .output_bytes_max
                .saturating_sub(self.out.len())
                .saturating_sub(HEAD_BYTES);
            let n = left.min(window).min(frame_max).min(room);
            let fin = end_stream && n == left;
            if n == 0 && !fin {
                break;
            }
            let chunk = &data[taken..taken + n];
            frame::write_data(&mut self.out, stream, chunk, fin);
            let s = &mut self.streams[i];
            s.send_window -= n as i64;
            self.conn_send_window -= n as i64;
            taken += n;
            if fin {
                s.send = Send::Done;
                self.close_if_done(i);
                break;
            }
            if taken == data.len() {
                break;
            }
        }
        Ok(taken)
    }

    /// Sends trailers, ending the stream.
    pub fn send_trailers<'f>(
        &mut self,
        stream: u32,
        fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>,
    ) -> Result<(), SendError> {
        let i = self.open_for_send(stream)?;
        match self.streams[i].send {
            Send::Head => return Err(SendError::HeadNotSent),
            Send::Done => return Err(SendError::AlreadyEnded),
            Send::Body => {}
        }
        self.block_out.clear();
        self.encoder.start_block(&mut self.block_out);
        self.encode_fields(fields);
        frame::write_headers(
            &mut self.out,
            stream,
            &self.block_out,
            true,
            self.peer_frame_bytes_max,
        );
        self.streams[i].send = Send::Done;
        self.close_if_done(i);
        Ok(())
    }

    /// Resets `stream` (a backend failed, a timeout, the exchange was abandoned).
    pub fn reset(&mut self, stream: u32, code: ErrorCode) -> Result<(), SendError> {
        let i = self.open_for_send(stream)?;
        frame::write_rst_stream(&mut self.out, stream, code);
        self.counters.resets_sent += 1;
        self.remove(i, Ended::ResetByUs);
        Ok(())
    }

    /// Graceful close (drain, reload, idle): GOAWAY NO_ERROR with the last stream accepted.
    /// Streams open finish; newer ones are refused; [`H2Conn::is_finished`] once none is left.
    pub fn go_away(&mut self) {
        match self.phase {
            Phase::GoingAway | Phase::Closed => {}
            Phase::Preface | Phase::FirstSettings | Phase::Open => {
                frame::write_goaway(&mut self.out, self.last_stream_id, ErrorCode::NO_ERROR, &[]);
                self.counters.goaway_sent += 1;
                self.phase = Phase::GoingAway;
            }
        }
    }

    /// Ends the connection now with `code` (e.g. a drain deadline or a client gone).
    pub fn abort(&mut self, code: ErrorCode) {
        if self.phase == Phase::Closed {
            return;
        }
        frame::write_goaway(&mut self.out, self.last_stream_id, code, &[]);
        self.counters.goaway_sent += 1;
        self.phase = Phase::Closed;
        self.streams.clear();
    }

    /// Our SETTINGS are not acknowledged yet: the caller times this (RFC 9113 §6.5.3) and
    /// calls [`H2Conn::settings_timeout`] when it lasts too long.
    pub fn awaiting_settings_ack(&self) -> bool {
        self.settings_unacked
    }

    /// Our SETTINGS went unacknowledged for `ms` (the caller's clock): a connection error
    /// SETTINGS_TIMEOUT (RFC 9113 §6.5.3), GOAWAY sent. Returns the error, for the caller's
    /// log; `None` when the ACK came or the connection is over already.
    pub fn settings_timeout(&mut self, ms: u64) -> Option<H2Error> {
        if !self.settings_unacked || self.phase == Phase::Closed {
            return None;
        }
        let error = H2Error::SettingsTimeout { ms };
        self.fail(error).map(|_| error)
    }

    /// The peer's SETTINGS_MAX_HEADER_LIST_SIZE, if it sent one (advisory for our responses).
    pub fn peer_header_list_bytes_max(&self) -> Option<u32> {
        self.peer_header_list_bytes_max
    }
}
