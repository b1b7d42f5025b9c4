//! Conformance cases for `conn.rs`, after the sections of RFC 9113 (and RFC 7541 where a block
//! is refused), in the spirit of docs/design/h2.md "Conformance test plan": each case builds
//! client frames by hand, feeds them, and expects the exact code and whether the error ends the
//! stream (RST_STREAM) or the connection (GOAWAY). Then each abuse defence, flooded until it
//! trips.

use super::conn::{DATA_FRAME_BYTES_MAX, Event, Fed, H2Cfg, H2Conn, SendError, StreamState};
use super::frame::{self, PREFACE};
use super::hpack::{DecodeLimits, Decoder, Encoder, HuffmanUse, IndexUse};
use super::{CalmReason, ErrorCode, Glitch, H2Error, Kind, Malformed, Violation};

const DATA: u8 = frame::TYPE_DATA;
const HEADERS: u8 = frame::TYPE_HEADERS;
const PRIORITY: u8 = frame::TYPE_PRIORITY;
const RST: u8 = frame::TYPE_RST_STREAM;
const SETTINGS: u8 = frame::TYPE_SETTINGS;
const PING: u8 = frame::TYPE_PING;
const GOAWAY: u8 = frame::TYPE_GOAWAY;
const WINDOW_UPDATE: u8 = frame::TYPE_WINDOW_UPDATE;
const CONTINUATION: u8 = frame::TYPE_CONTINUATION;
const END_STREAM: u8 = frame::FLAG_END_STREAM;
const END_HEADERS: u8 = frame::FLAG_END_HEADERS;
const PADDED: u8 = frame::FLAG_PADDED;
const PRIO: u8 = frame::FLAG_PRIORITY;
const ACK: u8 = frame::FLAG_ACK;

type Pairs = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Head {
        stream: u32,
        method: String,
        path: Option<String>,
        authority: Option<String>,
        content_length: Option<u64>,
        fields: Pairs,
        end_stream: bool,
    },
    Data {
        stream: u32,
        data: Vec<u8>,
        end_stream: bool,
    },
    Trailers {
        stream: u32,
        fields: Pairs,
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
    },
    WindowOpen {
        stream: u32,
    },
    ConnError(H2Error),
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn own(e: Event<'_>) -> Ev {
    match e {
        Event::RequestHead {
            stream,
            head,
            end_stream,
        } => Ev::Head {
            stream,
            method: s(head.method),
            path: head.path.map(s),
            authority: head.authority.map(s),
            content_length: head.content_length,
            fields: head.fields.iter().map(|(n, v)| (s(n), s(v))).collect(),
            end_stream,
        },
        Event::Data {
            stream,
            data,
            end_stream,
        } => Ev::Data {
            stream,
            data: data.to_vec(),
            end_stream,
        },
        Event::Trailers { stream, fields } => Ev::Trailers {
            stream,
            fields: fields.iter().map(|(n, v)| (s(n), s(v))).collect(),
        },
        Event::Reset { stream, code } => Ev::Reset { stream, code },
        Event::StreamError { stream, error } => Ev::StreamError { stream, error },
        Event::GoAway {
            last_stream, code, ..
        } => Ev::GoAway { last_stream, code },
        Event::WindowOpen { stream } => Ev::WindowOpen { stream },
        Event::ConnectionError { error } => Ev::ConnError(error),
    }
}

/// A frame the connection sent.
#[derive(Debug, Clone, PartialEq)]
struct Out {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn parse_out(b: &[u8]) -> Vec<Out> {
    let mut at = 0;
    let mut outs = Vec::new();
    while at < b.len() {
        let head = frame::FrameHead::parse(b[at..].first_chunk().expect("whole frame head"));
        let end = at + 9 + head.len as usize;
        outs.push(Out {
            kind: head.kind,
            flags: head.flags,
            stream: head.stream,
            payload: b[at + 9..end].to_vec(),
        });
        at = end;
    }
    outs
}

fn be32(p: &[u8]) -> u32 {
    u32::from_be_bytes(p[..4].try_into().unwrap())
}

fn fr(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    frame::write_frame(&mut b, kind, flags, stream, payload);
    b
}

fn window_update(stream: u32, inc: u32) -> Vec<u8> {
    fr(WINDOW_UPDATE, 0, stream, &inc.to_be_bytes())
}

fn rst(stream: u32, code: ErrorCode) -> Vec<u8> {
    fr(RST, 0, stream, &code.0.to_be_bytes())
}

fn settings(list: &[(u16, u32)]) -> Vec<u8> {
    let mut b = Vec::new();
    frame::write_settings(&mut b, list);
    b
}

const GET: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/"),
    (":authority", "example.com"),
];
const POST: &[(&str, &str)] = &[
    (":method", "POST"),
    (":scheme", "https"),
    (":path", "/up"),
    (":authority", "example.com"),
];

/// A client: the connection under test, the bytes it has not consumed, the client's HPACK
/// encoder and a decoder for what the server sends.
struct Peer {
    conn: H2Conn,
    now_ms: u64,
    pending: Vec<u8>,
    enc: Encoder,
    dec: Decoder,
    closed: bool,
    blocked: bool,
}

impl Peer {
    fn new() -> Peer {
        Peer::with(H2Cfg::default())
    }

    /// Preface and an empty SETTINGS sent, the server's SETTINGS read.
    fn with(cfg: H2Cfg) -> Peer {
        let mut p = Peer::bare(cfg);
        let mut b = PREFACE.to_vec();
        b.extend(settings(&[]));
        assert_eq!(p.send(&b), []);
        let outs = p.out();
        assert_eq!(outs[0].kind, SETTINGS);
        assert!(outs.iter().any(|o| o.kind == SETTINGS && o.flags == ACK));
        p.send(&fr(SETTINGS, ACK, 0, &[]));
        p
    }

    fn bare(cfg: H2Cfg) -> Peer {
        Peer {
            conn: H2Conn::new(cfg, 0),
            now_ms: 0,
            pending: Vec::new(),
            enc: Encoder::new(4096, HuffmanUse::WhenShorter, IndexUse::All),
            dec: Decoder::new(4096),
            closed: false,
            blocked: false,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Vec<Ev> {
        self.pending.extend_from_slice(bytes);
        self.blocked = false;
        let mut evs = Vec::new();
        loop {
            let input = std::mem::take(&mut self.pending);
            let (ev, used, stop) = match self.conn.feed(&input, self.now_ms) {
                Fed::Event {
                    event,
                    consumed_bytes,
                } => (Some(own(event)), consumed_bytes, false),
                Fed::NeedMore { consumed_bytes } => (None, consumed_bytes, true),
                Fed::Blocked { consumed_bytes } => {
                    self.blocked = true;
                    (None, consumed_bytes, true)
                }
                Fed::Closed { consumed_bytes } => {
                    self.closed = true;
                    (None, consumed_bytes, true)
                }
            };
            self.pending = input[used..].to_vec();
            evs.extend(ev);
            if stop {
                break;
            }
        }
        evs
    }

    fn out(&mut self) -> Vec<Out> {
        let mut b = Vec::new();
        self.conn.drain_output(&mut b, usize::MAX);
        parse_out(&b)
    }

    fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        self.enc.encode(
            fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut b,
        );
        b
    }

    fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let block = self.block(fields);
        let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
        fr(HEADERS, flags, stream, &block)
    }

    fn request(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<Ev> {
        let b = self.headers(stream, fields, end_stream);
        self.send(&b)
    }

    /// Decodes the response blocks sent on `stream` (HEADERS + CONTINUATION).
    fn decode(&mut self, outs: &[Out], stream: u32) -> Vec<Pairs> {
        let mut blocks = Vec::new();
        let mut cur = Vec::new();
        for o in outs.iter().filter(|o| o.stream == stream) {
            if o.kind == HEADERS || o.kind == CONTINUATION {
                cur.extend_from_slice(&o.payload);
                if o.flags & END_HEADERS != 0 {
                    let mut got = Vec::new();
                    let limits = DecodeLimits {
                        list_bytes_max: 1 << 20,
                        fields_max: 1000,
                    };
                    self.dec
                        .decode(&cur, limits, &mut |n, v| got.push((s(n), s(v))))
                        .unwrap();
                    blocks.push(got);
                    cur.clear();
                }
            }
        }
        blocks
    }
}

/// Sends `data` on `stream`, draining the output between calls, until nothing more is taken.
fn push_all(p: &mut Peer, stream: u32, data: &[u8], end_stream: bool) -> usize {
    let mut sent = 0;
    loop {
        let n = p.conn.send_data(stream, &data[sent..], end_stream).unwrap();
        for o in p.out() {
            assert!(o.payload.len() <= DATA_FRAME_BYTES_MAX);
        }
        sent += n;
        if n == 0 || sent == data.len() {
            return sent;
        }
    }
}

fn goaway_of(outs: &[Out]) -> Option<(u32, ErrorCode)> {
    outs.iter()
        .find(|o| o.kind == GOAWAY)
        .map(|o| (be32(&o.payload), ErrorCode(be32(&o.payload[4..]))))
}

fn rst_of(outs: &[Out], stream: u32) -> Option<ErrorCode> {
    outs.iter()
        .find(|o| o.kind == RST && o.stream == stream)
        .map(|o| ErrorCode(be32(&o.payload)))
}

/// The connection failed with `error`: the last event says so and GOAWAY carries its code.
fn expect_conn_error(p: &mut Peer, evs: &[Ev], error: H2Error, code: ErrorCode) {
    assert_eq!(evs.last(), Some(&Ev::ConnError(error)), "events {evs:?}");
    assert_eq!(error.code(), code);
    // Every ENHANCE_YOUR_CALM close is counted under a reason, and nothing else is: the
    // `h2_calm_closes` total in /stats is the sum of its reasons.
    assert_eq!(
        error.calm_reason().is_some(),
        code == ErrorCode::ENHANCE_YOUR_CALM,
        "{error:?}"
    );
    let outs = p.out();
    assert_eq!(goaway_of(&outs).map(|g| g.1), Some(code), "output {outs:?}");
    assert!(p.conn.is_finished());
    assert_eq!(p.send(&[]), []);
    assert!(p.closed);
}

/// Stream `stream` was reset with `code`; the connection goes on.
fn expect_stream_error(p: &mut Peer, stream: u32, code: ErrorCode) {
    let outs = p.out();
    assert_eq!(rst_of(&outs, stream), Some(code), "output {outs:?}");
    assert_eq!(goaway_of(&outs), None, "output {outs:?}");
    assert!(!p.conn.is_finished());
    assert_eq!(p.conn.stream_state(stream), StreamState::Closed);
}

/// A request still works on the connection after an error that reached only a stream.
fn expect_alive(p: &mut Peer, stream: u32) {
    let evs = p.request(stream, GET, true);
    assert!(matches!(evs[..], [Ev::Head { .. }]), "{evs:?}");
}

// ---- §3.4 connection preface ---------------------------------------------------------------------

#[test]
fn s6_5_3_settings_not_acknowledged_in_time_end_with_settings_timeout() {
    let mut p = Peer::bare(H2Cfg::default());
    let mut b = PREFACE.to_vec();
    b.extend(settings(&[]));
    assert_eq!(p.send(&b), []);
    let _ = p.out();
    // The client answered with its own SETTINGS but never ACKed ours; the caller timed it.
    assert!(p.conn.awaiting_settings_ack());
    let error = H2Error::SettingsTimeout { ms: 10_000 };
    assert_eq!(p.conn.settings_timeout(10_000), Some(error));
    assert_eq!(error.code(), ErrorCode::SETTINGS_TIMEOUT);
    assert_eq!(error.calm_reason(), None);
    assert_eq!(p.conn.last_error(), Some(Violation::connection(error)));
    let outs = p.out();
    assert_eq!(goaway_of(&outs), Some((0, ErrorCode::SETTINGS_TIMEOUT)));
    assert!(p.conn.is_finished());
    // Once over, or once acknowledged, there is nothing left to time.
    assert_eq!(p.conn.settings_timeout(20_000), None);
    let mut p = Peer::new();
    assert!(!p.conn.awaiting_settings_ack());
    assert_eq!(p.conn.settings_timeout(10_000), None);
    assert_eq!(goaway_of(&p.out()), None);
}

#[test]
fn s3_4_server_settings_come_first() {
    let mut p = Peer::bare(H2Cfg::default());
    let outs = p.out();
    assert_eq!(outs[0].kind, SETTINGS);
    let params: Vec<(u16, u32)> = outs[0]
        .payload
        .chunks(6)
        .map(|c| (u16::from_be_bytes([c[0], c[1]]), be32(&c[2..])))
        .collect();
    assert_eq!(
        params,
        [
            (frame::SETTINGS_MAX_CONCURRENT_STREAMS, 100),
            (frame::SETTINGS_MAX_HEADER_LIST_SIZE, 65_536),
            (frame::SETTINGS_NO_RFC7540_PRIORITIES, 1),
        ]
    );
    // The connection window raised to 256 KiB.
    assert_eq!(outs[1].kind, WINDOW_UPDATE);
    assert_eq!(be32(&outs[1].payload), 256 * 1024 - 65_535);
}

#[test]
fn s3_4_preface_split_at_every_offset() {
    let mut whole = PREFACE.to_vec();
    whole.extend(settings(&[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 1000)]));
    for cut in 0..whole.len() {
        let mut p = Peer::bare(H2Cfg::default());
        assert_eq!(p.send(&whole[..cut]), [], "cut {cut}");
        assert!(!p.closed);
        assert_eq!(p.send(&whole[cut..]), [], "cut {cut}");
        let outs = p.out();
        assert!(outs.iter().any(|o| o.kind == SETTINGS && o.flags == ACK));
    }
}

#[test]
fn s3_4_bad_preface_is_a_protocol_error_at_the_first_wrong_byte() {
    let mut p = Peer::bare(H2Cfg::default());
    let evs = p.send(b"GET / HTTP/1.1\r\n");
    expect_conn_error(&mut p, &evs, H2Error::BadPreface, ErrorCode::PROTOCOL_ERROR);
    let mut p = Peer::bare(H2Cfg::default());
    let evs = p.send(b"PRI * HTTP/2.0\r\n\r\nXX");
    expect_conn_error(&mut p, &evs, H2Error::BadPreface, ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn s3_4_first_frame_must_be_settings() {
    let mut p = Peer::bare(H2Cfg::default());
    let mut b = PREFACE.to_vec();
    b.extend(fr(PING, 0, 0, &[0; 8]));
    let evs = p.send(&b);
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::SettingsNotFirst,
        ErrorCode::PROTOCOL_ERROR,
    );
    // Nor a SETTINGS ACK.
    let mut p = Peer::bare(H2Cfg::default());
    let mut b = PREFACE.to_vec();
    b.extend(fr(SETTINGS, ACK, 0, &[]));
    let evs = p.send(&b);
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::SettingsNotFirst,
        ErrorCode::PROTOCOL_ERROR,
    );
}

// ---- §4 frames ---------------------------------------------------------------------------------

#[test]
fn s4_2_frame_past_max_frame_size_is_a_frame_size_error() {
    let mut p = Peer::new();
    let mut b = Vec::new();
    frame::write_head(&mut b, 16_385, DATA, 0, 1);
    let evs = p.send(&b);
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::FrameTooLarge {
            len: 16_385,
            max: 16_384,
        },
        ErrorCode::FRAME_SIZE_ERROR,
    );
}

#[test]
fn s4_1_unknown_frame_types_are_ignored() {
    let mut p = Peer::new();
    assert_eq!(p.send(&fr(0x42, 0xff, 0, b"extension")), []);
    assert_eq!(p.send(&fr(0x42, 0, 3, b"on an idle stream too")), []);
    expect_alive(&mut p, 1);
}

#[test]
fn s4_3_malformed_field_block_is_a_compression_error() {
    let mut p = Peer::new();
    let evs = p.send(&fr(HEADERS, END_HEADERS, 1, &[0x80]));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::Hpack(super::hpack::HpackError::IndexZero),
        ErrorCode::COMPRESSION_ERROR,
    );
}

#[test]
fn s4_3_huffman_padding_error_is_a_compression_error() {
    let mut p = Peer::new();
    let evs = p.send(&fr(
        HEADERS,
        END_HEADERS,
        1,
        &[0x82, 0x00, 0x01, b'a', 0x81, 0x18],
    ));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::Hpack(super::hpack::HpackError::HuffmanPadding),
        ErrorCode::COMPRESSION_ERROR,
    );
}

// ---- §5.1 stream states --------------------------------------------------------------------------

#[test]
fn s5_1_request_opens_then_response_closes() {
    let mut p = Peer::new();
    let evs = p.request(1, GET, true);
    assert_eq!(
        evs,
        [Ev::Head {
            stream: 1,
            method: "GET".into(),
            path: Some("/".into()),
            authority: Some("example.com".into()),
            content_length: None,
            fields: vec![],
            end_stream: true
        }]
    );
    assert_eq!(p.conn.stream_state(1), StreamState::HalfClosedRemote);
    p.conn
        .send_response_head(1, 200, [(&b"Content-Type"[..], &b"text/plain"[..])], false)
        .unwrap();
    assert_eq!(p.conn.send_data(1, b"hello", true), Ok(5));
    assert_eq!(p.conn.stream_state(1), StreamState::Closed);
    let outs = p.out();
    assert_eq!(
        p.decode(&outs, 1),
        [vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "text/plain".into())
        ]]
    );
    let data: Vec<&Out> = outs.iter().filter(|o| o.kind == DATA).collect();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].payload, b"hello");
    assert_eq!(data[0].flags, END_STREAM);
}

#[test]
fn s5_1_early_response_leaves_the_stream_half_closed_local() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    p.conn.send_response_head(1, 413, [], true).unwrap();
    assert_eq!(p.conn.stream_state(1), StreamState::HalfClosedLocal);
    let evs = p.send(&fr(DATA, END_STREAM, 1, b"late"));
    assert_eq!(
        evs,
        [Ev::Data {
            stream: 1,
            data: b"late".to_vec(),
            end_stream: true
        }]
    );
    assert_eq!(p.conn.stream_state(1), StreamState::Closed);
}

#[test]
fn s5_1_data_on_an_idle_stream_is_a_protocol_error() {
    let mut p = Peer::new();
    let evs = p.send(&fr(DATA, 0, 1, b"x"));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::IdleStream(Kind::Data),
        ErrorCode::PROTOCOL_ERROR,
    );
}

#[test]
fn s5_1_rst_stream_on_an_idle_stream_is_a_protocol_error() {
    let mut p = Peer::new();
    let evs = p.send(&rst(1, ErrorCode::CANCEL));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::IdleStream(Kind::RstStream),
        ErrorCode::PROTOCOL_ERROR,
    );
}

#[test]
fn s5_1_window_update_on_an_idle_stream_is_a_protocol_error() {
    let mut p = Peer::new();
    let evs = p.send(&window_update(1, 100));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::IdleStream(Kind::WindowUpdate),
        ErrorCode::PROTOCOL_ERROR,
    );
    // A zero increment on an idle stream too.
    let mut p = Peer::new();
    let evs = p.send(&window_update(3, 0));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::IdleStream(Kind::WindowUpdate),
        ErrorCode::PROTOCOL_ERROR,
    );
}

#[test]
fn s5_1_priority_on_an_idle_stream_is_fine() {
    let mut p = Peer::new();
    assert_eq!(p.send(&fr(PRIORITY, 0, 9, &[0, 0, 0, 1, 16])), []);
    expect_alive(&mut p, 1);
}

#[test]
fn s5_1_1_even_stream_id_is_a_protocol_error() {
    let mut p = Peer::new();
    let b = p.headers(2, GET, true);
    let evs = p.send(&b);
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::EvenStreamId,
        ErrorCode::PROTOCOL_ERROR,
    );
}

#[test]
fn s5_1_1_stream_id_going_down_is_a_protocol_error() {
    let mut p = Peer::new();
    p.request(5, GET, true);
    let b = p.headers(3, GET, true);
    let evs = p.send(&b);
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::StreamIdNotIncreasing,
        ErrorCode::PROTOCOL_ERROR,
    );
}

#[test]
fn s5_1_data_on_half_closed_remote_is_stream_closed() {
    let mut p = Peer::new();
    p.request(1, GET, true);
    let evs = p.send(&fr(DATA, 0, 1, b"x"));
    assert_eq!(
        evs,
        [Ev::StreamError {
            stream: 1,
            error: H2Error::StreamClosed(Kind::Data)
        }]
    );
    expect_stream_error(&mut p, 1, ErrorCode::STREAM_CLOSED);
    expect_alive(&mut p, 3);
}

#[test]
fn s5_1_headers_on_half_closed_remote_is_stream_closed_and_keeps_hpack_in_step() {
    let mut p = Peer::new();
    p.request(1, GET, true);
    // The trailers block indexes a field: the next request refers to it.
    let evs = p.request(1, &[("x-later", "v")], true);
    assert_eq!(
        evs,
        [Ev::StreamError {
            stream: 1,
            error: H2Error::StreamClosed(Kind::Headers)
        }]
    );
    expect_stream_error(&mut p, 1, ErrorCode::STREAM_CLOSED);
    let evs = p.request(3, &[GET[0], GET[1], GET[2], GET[3], ("x-later", "v")], true);
    let [Ev::Head { fields, .. }] = &evs[..] else {
        panic!("{evs:?}");
    };
    assert_eq!(fields, &[("x-later".to_string(), "v".to_string())]);
}

#[test]
fn s5_1_data_after_the_client_reset_is_stream_closed() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    let evs = p.send(&rst(1, ErrorCode::CANCEL));
    assert_eq!(
        evs,
        [Ev::Reset {
            stream: 1,
            code: ErrorCode::CANCEL
        }]
    );
    p.send(&fr(DATA, 0, 1, b"x"));
    expect_stream_error(&mut p, 1, ErrorCode::STREAM_CLOSED);
}

#[test]
fn s5_1_headers_on_a_closed_stream_is_a_connection_stream_closed() {
    let mut p = Peer::new();
    p.request(1, GET, true);
    p.conn.send_response_head(1, 204, [], true).unwrap();
    let b = p.headers(1, GET, true);
    let evs = p.send(&b);
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::StreamClosed(Kind::Headers),
        ErrorCode::STREAM_CLOSED,
    );
}

#[test]
fn s5_1_frames_in_flight_after_our_reset_are_ignored_but_counted() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    p.conn.reset(1, ErrorCode::CANCEL).unwrap();
    assert_eq!(rst_of(&p.out(), 1), Some(ErrorCode::CANCEL));
    // DATA, trailers and WINDOW_UPDATE that crossed our RST_STREAM: no second reset.
    let big = vec![0u8; 16_384];
    for _ in 0..8 {
        assert_eq!(p.send(&fr(DATA, 0, 1, &big)), []);
    }
    let trailers = p.headers(1, &[("x-t", "1")], true);
    assert_eq!(p.send(&trailers), []);
    assert_eq!(p.send(&window_update(1, 10)), []);
    let outs = p.out();
    assert_eq!(rst_of(&outs, 1), None);
    // The discarded DATA still went back to the connection window (§6.9).
    assert!(
        outs.iter()
            .any(|o| o.kind == WINDOW_UPDATE && o.stream == 0),
        "{outs:?}"
    );
    expect_alive(&mut p, 3);
}

#[test]
fn s5_1_2_streams_beyond_the_limit_are_refused() {
    let mut p = Peer::with(H2Cfg {
        streams_max: 2,
        ..H2Cfg::default()
    });
    p.request(1, GET, true);
    p.request(3, GET, true);
    assert_eq!(
        p.request(5, GET, true),
        [Ev::StreamError {
            stream: 5,
            error: H2Error::TooManyStreams
        }]
    );
    expect_stream_error(&mut p, 5, ErrorCode::REFUSED_STREAM);
    assert_eq!(p.conn.counters().streams_refused, 1);
    // Once one finishes, a new stream is accepted.
    p.conn.send_response_head(1, 204, [], true).unwrap();
    expect_alive(&mut p, 7);
}

#[test]
fn s5_1_2_refused_streams_still_update_hpack() {
    let mut p = Peer::with(H2Cfg {
        streams_max: 1,
        ..H2Cfg::default()
    });
    p.request(1, GET, true);
    p.request(3, &[GET[0], GET[1], GET[2], GET[3], ("x-idx", "1")], true);
    expect_stream_error(&mut p, 3, ErrorCode::REFUSED_STREAM);
    p.conn.send_response_head(1, 204, [], true).unwrap();
    let evs = p.request(5, &[GET[0], GET[1], GET[2], GET[3], ("x-idx", "1")], true);
    let [Ev::Head { fields, .. }] = &evs[..] else {
        panic!("{evs:?}");
    };
    assert_eq!(fields, &[("x-idx".to_string(), "1".to_string())]);
}

#[test]
fn s5_3_1_headers_depending_on_itself_is_a_stream_protocol_error() {
    let mut p = Peer::new();
    let mut payload = vec![0, 0, 0, 1, 16];
    payload.extend(p.block(GET));
    p.send(&fr(HEADERS, END_HEADERS | END_STREAM | PRIO, 1, &payload));
    expect_stream_error(&mut p, 1, ErrorCode::PROTOCOL_ERROR);
    expect_alive(&mut p, 3);
}

#[test]
fn s5_3_1_priority_depending_on_itself_is_a_stream_protocol_error() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    p.send(&fr(PRIORITY, 0, 1, &[0, 0, 0, 1, 16]));
    expect_stream_error(&mut p, 1, ErrorCode::PROTOCOL_ERROR);
}

// ---- §6 frame definitions ------------------------------------------------------------------------

#[test]
fn s6_1_data_padding_longer_than_the_payload_is_a_protocol_error() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    let evs = p.send(&fr(DATA, PADDED, 1, &[4, 1, 2, 3]));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::PaddingTooLong,
        ErrorCode::PROTOCOL_ERROR,
    );
}

#[test]
fn s6_1_padded_data_delivers_only_the_data() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    let evs = p.send(&fr(DATA, PADDED | END_STREAM, 1, &[3, b'o', b'k', 0, 0, 0]));
    assert_eq!(
        evs,
        [Ev::Data {
            stream: 1,
            data: b"ok".to_vec(),
            end_stream: true
        }]
    );
}

#[test]
fn s6_2_padded_headers_with_priority() {
    let mut p = Peer::new();
    let mut payload = vec![2, 0, 0, 0, 0, 16];
    payload.extend(p.block(GET));
    payload.extend([0, 0]);
    let evs = p.send(&fr(
        HEADERS,
        END_HEADERS | END_STREAM | PADDED | PRIO,
        1,
        &payload,
    ));
    assert!(matches!(evs[..], [Ev::Head { stream: 1, .. }]), "{evs:?}");
}

#[test]
fn s6_3_priority_of_the_wrong_length_is_a_stream_frame_size_error() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    p.send(&fr(PRIORITY, 0, 1, &[0, 0, 0, 3]));
    expect_stream_error(&mut p, 1, ErrorCode::FRAME_SIZE_ERROR);
}

#[test]
fn s6_4_rst_stream_of_the_wrong_length_is_a_frame_size_error() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    let evs = p.send(&fr(RST, 0, 1, &[0, 0, 0]));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::BadFrameSize(Kind::RstStream),
        ErrorCode::FRAME_SIZE_ERROR,
    );
}

#[test]
fn s6_5_settings_of_a_bad_length_is_a_frame_size_error() {
    let mut p = Peer::new();
    let evs = p.send(&fr(SETTINGS, 0, 0, &[0, 3, 0, 0, 0]));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::BadFrameSize(Kind::Settings),
        ErrorCode::FRAME_SIZE_ERROR,
    );
    let mut p = Peer::new();
    let evs = p.send(&fr(SETTINGS, ACK, 0, &[0, 3, 0, 0, 0, 1]));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::BadFrameSize(Kind::Settings),
        ErrorCode::FRAME_SIZE_ERROR,
    );
}

#[test]
fn s6_5_settings_on_a_stream_is_a_protocol_error() {
    let mut p = Peer::new();
    let evs = p.send(&fr(SETTINGS, 0, 1, &[]));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::StreamIdNotZero(Kind::Settings),
        ErrorCode::PROTOCOL_ERROR,
    );
}

#[test]
fn s6_5_2_settings_values_are_checked() {
    let cases = [
        (
            (frame::SETTINGS_ENABLE_PUSH, 2),
            H2Error::BadSettingFlag,
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            (frame::SETTINGS_INITIAL_WINDOW_SIZE, 1 << 31),
            H2Error::BadInitialWindowSize,
            ErrorCode::FLOW_CONTROL_ERROR,
        ),
        (
            (frame::SETTINGS_MAX_FRAME_SIZE, 16_383),
            H2Error::BadMaxFrameSize,
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            (frame::SETTINGS_MAX_FRAME_SIZE, 1 << 24),
            H2Error::BadMaxFrameSize,
            ErrorCode::PROTOCOL_ERROR,
        ),
    ];
    for (setting, error, code) in cases {
        let mut p = Peer::new();
        let evs = p.send(&settings(&[setting]));
        expect_conn_error(&mut p, &evs, error, code);
    }
}

#[test]
fn s6_5_3_settings_are_acknowledged_and_unknown_ones_ignored() {
    let mut p = Peer::new();
    assert_eq!(
        p.send(&settings(&[(0xf0, 1), (frame::SETTINGS_ENABLE_PUSH, 0)])),
        []
    );
    let outs = p.out();
    assert_eq!(
        outs,
        [Out {
            kind: SETTINGS,
            flags: ACK,
            stream: 0,
            payload: vec![]
        }]
    );
}

#[test]
fn s6_5_2_max_frame_size_lets_us_send_larger_blocks() {
    let mut p = Peer::new();
    p.send(&settings(&[(frame::SETTINGS_MAX_FRAME_SIZE, 1 << 20)]));
    p.out();
    p.request(1, GET, true);
    let value = "v".repeat(20_000);
    p.conn
        .send_response_head(1, 200, [(&b"x-big"[..], value.as_bytes())], true)
        .unwrap();
    let outs = p.out();
    assert_eq!(outs.len(), 1, "one HEADERS frame, no CONTINUATION");
    assert_eq!(p.decode(&outs, 1)[0][1].1, value);
}

#[test]
fn s6_5_2_header_table_size_from_the_client_shrinks_our_encoder() {
    let mut p = Peer::new();
    p.send(&settings(&[(frame::SETTINGS_HEADER_TABLE_SIZE, 0)]));
    p.out();
    p.request(1, GET, true);
    p.conn
        .send_response_head(1, 200, [(&b"server"[..], &b"ringway"[..])], true)
        .unwrap();
    let outs = p.out();
    // The block opens with a size update to 0, and still decodes.
    assert_eq!(outs[0].payload[0], 0x20);
    assert_eq!(
        p.decode(&outs, 1)[0][1],
        ("server".into(), "ringway".into())
    );
}

#[test]
fn s6_6_push_promise_from_a_client_is_a_protocol_error() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    let evs = p.send(&fr(
        frame::TYPE_PUSH_PROMISE,
        END_HEADERS,
        1,
        &[0, 0, 0, 2, 0x82],
    ));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::PushPromise,
        ErrorCode::PROTOCOL_ERROR,
    );
}

#[test]
fn s6_7_ping_is_answered_with_the_same_payload() {
    let mut p = Peer::new();
    assert_eq!(p.send(&fr(PING, 0, 0, b"abcdefgh")), []);
    assert_eq!(
        p.out(),
        [Out {
            kind: PING,
            flags: ACK,
            stream: 0,
            payload: b"abcdefgh".to_vec()
        }]
    );
    // A PING ACK is not answered.
    assert_eq!(p.send(&fr(PING, ACK, 0, b"abcdefgh")), []);
    assert_eq!(p.out(), []);
}

#[test]
fn s6_7_ping_rules() {
    let mut p = Peer::new();
    let evs = p.send(&fr(PING, 0, 0, b"short"));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::BadFrameSize(Kind::Ping),
        ErrorCode::FRAME_SIZE_ERROR,
    );
    let mut p = Peer::new();
    let evs = p.send(&fr(PING, 0, 1, b"abcdefgh"));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::StreamIdNotZero(Kind::Ping),
        ErrorCode::PROTOCOL_ERROR,
    );
}

#[test]
fn s6_8_goaway_from_the_client_finishes_once_streams_are_done() {
    let mut p = Peer::new();
    p.request(1, GET, true);
    let mut b = Vec::new();
    frame::write_goaway(&mut b, 0, ErrorCode::NO_ERROR, b"bye");
    let evs = p.send(&b);
    assert_eq!(
        evs,
        [Ev::GoAway {
            last_stream: 0,
            code: ErrorCode::NO_ERROR
        }]
    );
    assert!(!p.conn.is_finished());
    p.conn.send_response_head(1, 204, [], true).unwrap();
    assert!(p.conn.is_finished());
}

#[test]
fn s6_8_graceful_goaway_names_the_last_stream_and_refuses_newer_ones() {
    let mut p = Peer::new();
    p.request(1, GET, true);
    p.request(3, POST, false);
    p.conn.go_away();
    assert_eq!(goaway_of(&p.out()), Some((3, ErrorCode::NO_ERROR)));
    assert_eq!(
        p.request(5, GET, true),
        [Ev::StreamError {
            stream: 5,
            error: H2Error::GoingAway
        }]
    );
    expect_stream_error(&mut p, 5, ErrorCode::REFUSED_STREAM);
    // The streams in flight finish.
    let evs = p.send(&fr(DATA, END_STREAM, 3, b"body"));
    assert_eq!(evs.len(), 1);
    p.conn.send_response_head(1, 204, [], true).unwrap();
    assert!(!p.conn.is_finished());
    p.conn.send_response_head(3, 204, [], true).unwrap();
    assert!(p.conn.is_finished());
    assert_eq!(p.send(&[]), []);
    assert!(p.closed);
}

#[test]
fn s6_9_zero_increment_on_a_stream_is_a_stream_protocol_error() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    p.send(&window_update(1, 0));
    expect_stream_error(&mut p, 1, ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn s6_9_zero_increment_on_the_connection_is_a_protocol_error() {
    let mut p = Peer::new();
    let evs = p.send(&window_update(0, 0));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::ZeroWindowIncrement,
        ErrorCode::PROTOCOL_ERROR,
    );
}

#[test]
fn s6_9_1_connection_window_overflow_is_a_flow_control_error() {
    let mut p = Peer::new();
    let evs = p.send(&window_update(0, frame::WINDOW_MAX));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::ConnWindowOverflow,
        ErrorCode::FLOW_CONTROL_ERROR,
    );
}

#[test]
fn s6_9_1_stream_window_overflow_is_a_stream_flow_control_error() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    p.send(&window_update(1, frame::WINDOW_MAX));
    expect_stream_error(&mut p, 1, ErrorCode::FLOW_CONTROL_ERROR);
}

#[test]
fn s6_9_data_past_the_stream_window_is_a_stream_flow_control_error() {
    let mut p = Peer::with(H2Cfg {
        stream_window_bytes: 100,
        ..H2Cfg::default()
    });
    p.request(1, POST, false);
    p.send(&fr(DATA, 0, 1, &[0; 101]));
    expect_stream_error(&mut p, 1, ErrorCode::FLOW_CONTROL_ERROR);
}

#[test]
fn s6_9_data_past_the_connection_window_is_a_flow_control_error() {
    let mut p = Peer::with(H2Cfg {
        stream_window_bytes: 1 << 20,
        conn_window_bytes: 65_535,
        ..H2Cfg::default()
    });
    p.request(1, POST, false);
    let chunk = vec![0u8; 16_384];
    for _ in 0..3 {
        assert_eq!(p.send(&fr(DATA, 0, 1, &chunk)).len(), 1);
    }
    let evs = p.send(&fr(DATA, 0, 1, &chunk));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::ConnWindowExceeded,
        ErrorCode::FLOW_CONTROL_ERROR,
    );
}

#[test]
fn s6_9_2_default_window_holds_until_our_settings_are_acknowledged() {
    let mut p = Peer::bare(H2Cfg {
        stream_window_bytes: 1000,
        ..H2Cfg::default()
    });
    let mut b = PREFACE.to_vec();
    b.extend(settings(&[]));
    let get = p.headers(1, POST, false);
    b.extend(get);
    p.send(&b);
    // Before the ACK the client may use the default 65 535.
    assert_eq!(p.send(&fr(DATA, 0, 1, &[0; 5000])).len(), 1);
    assert_eq!(p.send(&fr(SETTINGS, ACK, 0, &[])), []);
    // After it, ours applies: 65 535 - 1000 less, so the window is now below zero.
    p.send(&fr(DATA, 0, 1, &[0; 1]));
    expect_stream_error(&mut p, 1, ErrorCode::FLOW_CONTROL_ERROR);
}

#[test]
fn s6_9_2_initial_window_change_moves_open_streams() {
    let mut p = Peer::new();
    p.request(1, GET, true);
    p.conn.send_response_head(1, 200, [], false).unwrap();
    let body = vec![7u8; 100_000];
    assert_eq!(push_all(&mut p, 1, &body, true), 65_535);
    // Lowered by 1000: the window is -1000; raising it back by WINDOW_UPDATE 500 keeps it shut.
    p.send(&settings(&[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 64_535)]));
    p.send(&window_update(0, 100_000));
    assert_eq!(p.send(&window_update(1, 500)), []);
    assert_eq!(p.conn.send_data(1, &body[65_535..], true), Ok(0));
    // Raised: the window opens, and the event says so.
    let evs = p.send(&settings(&[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 70_000)]));
    assert_eq!(evs, [Ev::WindowOpen { stream: 0 }]);
    assert_eq!(p.conn.send_data(1, &body[65_535..], true), Ok(4965));
}

#[test]
fn s6_9_2_initial_window_change_past_the_maximum_is_a_flow_control_error() {
    let mut p = Peer::new();
    p.request(1, GET, true);
    p.send(&window_update(1, frame::WINDOW_MAX - 65_535));
    let evs = p.send(&settings(&[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 65_536)]));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::StreamWindowOverflow,
        ErrorCode::FLOW_CONTROL_ERROR,
    );
}

#[test]
fn s6_9_send_data_stops_at_the_windows_and_resumes_on_update() {
    let mut p = Peer::new();
    p.request(1, GET, true);
    p.request(3, GET, true);
    p.conn.send_response_head(1, 200, [], false).unwrap();
    assert!(
        !p.conn.send_window_shut(3),
        "no body to send before the head"
    );
    p.conn.send_response_head(3, 200, [], false).unwrap();
    let body = vec![1u8; 70_000];
    // The output bound (64 KiB) stops each call short; draining lets it go on.
    let sent = push_all(&mut p, 1, &body, true);
    assert_eq!(sent, 65_535);
    assert_eq!(p.conn.send_capacity(1), 0);
    assert!(p.conn.send_window_shut(1));
    // The connection window is spent too: stream 3 cannot send.
    assert_eq!(p.conn.send_data(3, b"x", true), Ok(0));
    assert!(p.conn.send_window_shut(3), "the connection's window");
    let evs = p.send(&window_update(1, 10_000));
    assert_eq!(evs, [Ev::WindowOpen { stream: 1 }]);
    assert_eq!(p.conn.send_data(1, &body[sent..], true), Ok(0));
    assert!(p.conn.send_window_shut(1), "the connection's window");
    let evs = p.send(&window_update(0, 10_000));
    assert_eq!(evs, [Ev::WindowOpen { stream: 0 }]);
    assert!(!p.conn.send_window_shut(1));
    assert_eq!(p.conn.send_data(1, &body[sent..], true), Ok(4465));
    assert_eq!(p.conn.stream_state(1), StreamState::Closed);
    assert_eq!(p.conn.send_data(3, b"x", true), Ok(1));
}

#[test]
fn s6_9_our_windows_reopen_only_as_the_application_consumes() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    let chunk = vec![0u8; 16_384];
    for _ in 0..3 {
        p.send(&fr(DATA, 0, 1, &chunk));
    }
    // Nothing consumed: no WINDOW_UPDATE (backpressure).
    assert_eq!(p.out(), []);
    p.conn.consumed(1, 16_384);
    assert_eq!(p.out(), [], "less than half a window");
    p.conn.consumed(1, 32_768);
    let outs = p.out();
    let updates: Vec<(u32, u32)> = outs
        .iter()
        .filter(|o| o.kind == WINDOW_UPDATE)
        .map(|o| (o.stream, be32(&o.payload)))
        .collect();
    assert_eq!(updates, [(1, 49_152)]);
    // More than was delivered is not credited.
    p.conn.consumed(1, 1 << 20);
    assert_eq!(p.out(), []);
}

#[test]
fn s6_9_connection_window_is_given_back_past_half() {
    let mut p = Peer::with(H2Cfg {
        stream_window_bytes: 1 << 20,
        ..H2Cfg::default()
    });
    p.request(1, POST, false);
    let chunk = vec![0u8; 16_384];
    for _ in 0..8 {
        p.send(&fr(DATA, 0, 1, &chunk));
        p.conn.consumed(1, chunk.len());
    }
    let outs = p.out();
    let conn_updates: Vec<u32> = outs
        .iter()
        .filter(|o| o.kind == WINDOW_UPDATE && o.stream == 0)
        .map(|o| be32(&o.payload))
        .collect();
    assert_eq!(conn_updates, [131_072]);
}

#[test]
fn s6_10_header_block_across_continuation() {
    let mut p = Peer::new();
    let block = p.block(&[GET[0], GET[1], GET[2], GET[3], ("x-long", &"z".repeat(300))]);
    let (a, rest) = block.split_at(10);
    let (b, c) = rest.split_at(100);
    let mut bytes = fr(HEADERS, END_STREAM, 1, a);
    bytes.extend(fr(CONTINUATION, 0, 1, b));
    bytes.extend(fr(CONTINUATION, END_HEADERS, 1, c));
    for cut in [0, 5, 9, 15, 40, bytes.len() - 1] {
        let mut q = Peer::new();
        assert_eq!(q.send(&bytes[..cut]), [], "cut {cut}");
        let evs = q.send(&bytes[cut..]);
        assert!(
            matches!(
                &evs[..],
                [Ev::Head {
                    stream: 1,
                    end_stream: true,
                    ..
                }]
            ),
            "{evs:?}"
        );
    }
    let evs = p.send(&bytes);
    let [Ev::Head { fields, .. }] = &evs[..] else {
        panic!("{evs:?}");
    };
    assert_eq!(fields[0].1.len(), 300);
}

#[test]
fn s6_10_a_frame_inside_a_header_block_is_a_protocol_error() {
    let mut p = Peer::new();
    let block = p.block(GET);
    let mut b = fr(HEADERS, END_STREAM, 1, &block[..2]);
    b.extend(fr(PING, 0, 0, &[0; 8]));
    let evs = p.send(&b);
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::ExpectedContinuation,
        ErrorCode::PROTOCOL_ERROR,
    );
    // CONTINUATION of another stream.
    let mut p = Peer::new();
    let block = p.block(GET);
    let mut b = fr(HEADERS, END_STREAM, 1, &block[..2]);
    b.extend(fr(CONTINUATION, END_HEADERS, 3, &block[2..]));
    let evs = p.send(&b);
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::ExpectedContinuation,
        ErrorCode::PROTOCOL_ERROR,
    );
}

#[test]
fn s6_10_continuation_without_a_block_is_a_protocol_error() {
    let mut p = Peer::new();
    p.request(1, GET, true);
    let evs = p.send(&fr(CONTINUATION, END_HEADERS, 1, &[0x82]));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::UnexpectedContinuation,
        ErrorCode::PROTOCOL_ERROR,
    );
}

// ---- §8 HTTP semantics -------------------------------------------------------------------------------

fn malformed(fields: &[(&str, &str)], end_stream: bool, why: Malformed) {
    let mut p = Peer::new();
    let evs = p.request(1, fields, end_stream);
    // No request head: the stream never opened, but its error is told (for the log).
    assert_eq!(
        evs,
        [Ev::StreamError {
            stream: 1,
            error: H2Error::Malformed(why)
        }],
        "{fields:?}"
    );
    assert_eq!(
        p.conn.last_error(),
        Some(Violation::stream(1, H2Error::Malformed(why))),
        "{fields:?}"
    );
    let outs = p.out();
    assert_eq!(
        rst_of(&outs, 1),
        Some(ErrorCode::PROTOCOL_ERROR),
        "{fields:?}"
    );
    assert_eq!(goaway_of(&outs), None);
    expect_alive(&mut p, 3);
}

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = GET.to_vec();
    v.extend_from_slice(extra);
    v
}

#[test]
fn s8_2_1_uppercase_field_names_are_malformed() {
    malformed(&with(&[("X-Upper", "1")]), true, Malformed::BadName);
}

#[test]
fn s8_2_1_bad_field_values_are_malformed() {
    malformed(&with(&[("x-a", "a\r\nb")]), true, Malformed::BadValue);
    malformed(&with(&[("x-a", " lead")]), true, Malformed::BadValue);
    malformed(&with(&[("x-a", "trail\t")]), true, Malformed::BadValue);
    malformed(&with(&[("x a", "v")]), true, Malformed::BadName);
}

#[test]
fn s8_2_2_connection_specific_fields_are_malformed() {
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        let fields = [GET[0], GET[1], GET[2], GET[3], (name, "x")];
        malformed(&fields, true, Malformed::ConnectionSpecific);
    }
}

#[test]
fn s8_2_2_te_is_only_trailers() {
    malformed(&with(&[("te", "gzip")]), true, Malformed::TeNotTrailers);
    let mut p = Peer::new();
    let evs = p.request(1, &with(&[("te", "trailers")]), true);
    assert!(matches!(evs[..], [Ev::Head { .. }]), "{evs:?}");
}

#[test]
fn s8_3_pseudo_header_rules() {
    let g = GET;
    malformed(&[g[1], g[2], g[3]], true, Malformed::MissingPseudo);
    malformed(&[g[0], g[2], g[3]], true, Malformed::MissingPseudo);
    malformed(&[g[0], g[1], g[3]], true, Malformed::MissingPseudo);
    malformed(
        &[g[0], g[1], (":path", ""), g[3]],
        true,
        Malformed::EmptyPath,
    );
    malformed(
        &[g[0], g[1], g[2], g[2], g[3]],
        true,
        Malformed::DuplicatePseudo,
    );
    malformed(
        &[g[0], g[1], ("x-a", "1"), g[2]],
        true,
        Malformed::PseudoAfterRegular,
    );
    malformed(
        &[g[0], g[1], g[2], (":status", "200")],
        true,
        Malformed::UnknownPseudo,
    );
    malformed(
        &[g[0], g[1], g[2], (":protocol", "websocket")],
        true,
        Malformed::UnknownPseudo,
    );
    malformed(
        &[g[0], g[1], g[2], g[3], ("host", "other.example")],
        true,
        Malformed::HostMismatch,
    );
}

#[test]
fn s8_3_1_authority_must_be_host_and_port_without_userinfo() {
    let g = GET;
    for bad in [
        "user@example.com",
        "user:secret@example.com:443",
        "@example.com",
        "exa mple.com",
        "example.com\x01",
        "exa\x7fmple.com",
        "example.com/evil",
        "example.com?q",
        "example.com#f",
        "exa\\mple.com",
        "",
        ":443",
        "example.com:https",
        "example.com:65536",
        "example.com:123456",
        "example.com:1:2",
        "[::1",
        "[]:80",
        "[::1]x",
        "[::1]:8o",
        "%zz.example.com",
        "example.com%4",
    ] {
        malformed(
            &[g[0], g[1], g[2], (":authority", bad)],
            true,
            Malformed::BadAuthority,
        );
    }
    // Without `:authority` the `host` field becomes the Host: the same rule.
    malformed(
        &[g[0], g[1], g[2], ("host", "user@example.com")],
        true,
        Malformed::BadAuthority,
    );
    for good in [
        "example.com",
        "Example.COM:8443",
        "127.0.0.1:80",
        "[::1]:8080",
        "[2001:db8::7]",
        "[v1.fe]",
        "xn--bcher-kva.example",
        "a-b_c~d.example",
        "%41.example",
        "example.com:",
        "example.com:65535",
    ] {
        let mut p = Peer::new();
        let evs = p.request(1, &[g[0], g[1], g[2], (":authority", good)], true);
        assert!(matches!(evs[..], [Ev::Head { .. }]), "{good}: {evs:?}");
        let mut p = Peer::new();
        let evs = p.request(1, &[g[0], g[1], g[2], ("host", good)], true);
        assert!(matches!(evs[..], [Ev::Head { .. }]), "host {good}: {evs:?}");
    }
}

#[test]
fn s8_3_1_every_host_field_must_match_authority() {
    malformed(
        &with(&[("host", "example.com"), ("host", "other.example")]),
        true,
        Malformed::HostMismatch,
    );
    // A port the authority does not name is another entity.
    malformed(
        &with(&[("host", "example.com:443")]),
        true,
        Malformed::HostMismatch,
    );
}

#[test]
fn s8_3_host_matching_authority_is_fine() {
    let mut p = Peer::new();
    let evs = p.request(1, &with(&[("host", "Example.com")]), true);
    assert!(matches!(evs[..], [Ev::Head { .. }]), "{evs:?}");
}

#[test]
fn s8_5_connect_has_authority_only() {
    let mut p = Peer::new();
    let evs = p.request(
        1,
        &[(":method", "CONNECT"), (":authority", "example.com:443")],
        false,
    );
    let [
        Ev::Head {
            method,
            path,
            authority,
            ..
        },
    ] = &evs[..]
    else {
        panic!("{evs:?}");
    };
    assert_eq!(
        (method.as_str(), path, authority.as_deref()),
        ("CONNECT", &None, Some("example.com:443"))
    );
    malformed(
        &[
            (":method", "CONNECT"),
            (":scheme", "https"),
            (":authority", "a:1"),
        ],
        false,
        Malformed::BadConnect,
    );
    malformed(&[(":method", "CONNECT")], false, Malformed::BadConnect);
}

#[test]
fn s8_1_1_content_length_must_match_the_data() {
    // More than announced.
    let mut p = Peer::new();
    p.request(
        1,
        &[POST[0], POST[1], POST[2], POST[3], ("content-length", "3")],
        false,
    );
    let evs = p.send(&fr(DATA, 0, 1, b"four"));
    assert_eq!(
        evs,
        [Ev::StreamError {
            stream: 1,
            error: H2Error::Malformed(Malformed::ContentLengthMismatch)
        }]
    );
    expect_stream_error(&mut p, 1, ErrorCode::PROTOCOL_ERROR);
    // Less than announced.
    let mut p = Peer::new();
    p.request(
        1,
        &[POST[0], POST[1], POST[2], POST[3], ("content-length", "5")],
        false,
    );
    p.send(&fr(DATA, 0, 1, b"four"));
    p.send(&fr(DATA, END_STREAM, 1, b""));
    expect_stream_error(&mut p, 1, ErrorCode::PROTOCOL_ERROR);
    // END_STREAM on the HEADERS with a length announced.
    malformed(
        &[POST[0], POST[1], POST[2], POST[3], ("content-length", "5")],
        true,
        Malformed::ContentLengthMismatch,
    );
    // Not a number.
    malformed(
        &[POST[0], POST[1], POST[2], POST[3], ("content-length", "5x")],
        false,
        Malformed::BadContentLength,
    );
    // Exactly right.
    let mut p = Peer::new();
    let evs = p.request(
        1,
        &[POST[0], POST[1], POST[2], POST[3], ("content-length", "4")],
        false,
    );
    let [Ev::Head { content_length, .. }] = &evs[..] else {
        panic!("{evs:?}");
    };
    assert_eq!(*content_length, Some(4));
    assert_eq!(p.send(&fr(DATA, END_STREAM, 1, b"four")).len(), 1);
}

#[test]
fn s8_1_trailers_end_the_request() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    p.send(&fr(DATA, 0, 1, b"body"));
    let evs = p.request(1, &[("x-checksum", "abc")], true);
    assert_eq!(
        evs,
        [Ev::Trailers {
            stream: 1,
            fields: vec![("x-checksum".into(), "abc".into())]
        }]
    );
    assert_eq!(p.conn.stream_state(1), StreamState::HalfClosedRemote);
}

#[test]
fn s8_1_trailers_without_end_stream_are_malformed() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    p.request(1, &[("x-checksum", "abc")], false);
    expect_stream_error(&mut p, 1, ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn s8_1_pseudo_headers_in_trailers_are_malformed() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    let evs = p.request(1, &[(":path", "/x")], true);
    assert_eq!(
        evs,
        [Ev::StreamError {
            stream: 1,
            error: H2Error::Malformed(Malformed::PseudoInTrailers)
        }]
    );
    expect_stream_error(&mut p, 1, ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn s8_response_head_drops_connection_fields_and_sends_trailers() {
    let mut p = Peer::new();
    p.request(1, GET, true);
    p.conn
        .send_response_head(1, 103, [(&b"link"[..], &b"</a.css>"[..])], false)
        .unwrap();
    p.conn
        .send_response_head(
            1,
            200,
            [
                (&b"Connection"[..], &b"keep-alive"[..]),
                (&b"Transfer-Encoding"[..], &b"chunked"[..]),
                (&b"X-Ok"[..], &b"1"[..]),
            ],
            false,
        )
        .unwrap();
    assert_eq!(p.conn.send_data(1, b"part", false), Ok(4));
    p.conn
        .send_trailers(1, [(&b"grpc-status"[..], &b"0"[..])])
        .unwrap();
    assert_eq!(p.conn.stream_state(1), StreamState::Closed);
    let outs = p.out();
    let blocks = p.decode(&outs, 1);
    assert_eq!(
        blocks,
        [
            vec![
                (":status".into(), "103".into()),
                ("link".into(), "</a.css>".into())
            ],
            vec![
                (":status".into(), "200".into()),
                ("x-ok".into(), "1".into())
            ],
            vec![("grpc-status".into(), "0".into())],
        ]
    );
    assert_eq!(
        outs.last().map(|o| (o.kind, o.flags)),
        Some((HEADERS, END_HEADERS | END_STREAM))
    );
}

#[test]
fn s8_api_misuse_is_refused() {
    let mut p = Peer::new();
    p.request(1, GET, true);
    assert_eq!(
        p.conn.send_data(1, b"x", false),
        Err(SendError::HeadNotSent)
    );
    assert_eq!(
        p.conn.send_response_head(1, 101, [], false),
        Err(SendError::BadStatus)
    );
    assert_eq!(
        p.conn.send_response_head(1, 100, [], true),
        Err(SendError::InterimEndStream)
    );
    p.conn.send_response_head(1, 200, [], false).unwrap();
    assert_eq!(
        p.conn.send_response_head(1, 200, [], false),
        Err(SendError::HeadAlreadySent)
    );
    assert_eq!(
        p.conn.send_data(9, b"x", false),
        Err(SendError::UnknownStream)
    );
    p.conn.send_data(1, b"", true).unwrap();
    assert_eq!(
        p.conn.send_data(1, b"x", true),
        Err(SendError::UnknownStream)
    );
}

#[test]
fn s8_client_reset_reaches_the_application() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    p.send(&fr(DATA, 0, 1, b"held"));
    let evs = p.send(&rst(1, ErrorCode::CANCEL));
    assert_eq!(
        evs,
        [Ev::Reset {
            stream: 1,
            code: ErrorCode::CANCEL
        }]
    );
    assert_eq!(p.conn.counters().resets_received, 1);
    assert_eq!(
        p.conn.send_data(1, b"x", true),
        Err(SendError::UnknownStream)
    );
}

// ---- abuse defences ------------------------------------------------------------------------------

#[test]
fn rapid_reset_past_the_rate_is_enhance_your_calm() {
    let mut p = Peer::with(H2Cfg {
        early_resets_max: 1000,
        ..H2Cfg::default()
    });
    let mut id = 1;
    let mut last = Vec::new();
    for _ in 0..101 {
        p.request(id, GET, false);
        last = p.send(&rst(id, ErrorCode::CANCEL));
        id += 2;
    }
    expect_conn_error(
        &mut p,
        &last,
        H2Error::RapidReset { per_s: 100 },
        ErrorCode::ENHANCE_YOUR_CALM,
    );
    assert_eq!(
        H2Error::RapidReset { per_s: 100 }.calm_reason(),
        Some(CalmReason::RapidReset)
    );
}

#[test]
fn each_enhance_your_calm_error_names_the_defence_that_fired() {
    use super::hpack::HpackError;
    for (error, reason) in [
        (H2Error::RapidReset { per_s: 100 }, CalmReason::RapidReset),
        (H2Error::EarlyResets { max: 50 }, CalmReason::RapidReset),
        (H2Error::LocalResets { max: 500 }, CalmReason::LocalResets),
        (
            H2Error::ContinuationFlood { frames_max: 20 },
            CalmReason::Continuation,
        ),
        (
            H2Error::HeaderBlockTooLarge { bytes_max: 65_536 },
            CalmReason::Continuation,
        ),
        (H2Error::Flood(Glitch::Settings), CalmReason::SettingsFlood),
        (H2Error::Flood(Glitch::Ping), CalmReason::PingFlood),
        (H2Error::Flood(Glitch::EmptyData), CalmReason::Glitches),
        (H2Error::Flood(Glitch::ClosedStream), CalmReason::Glitches),
        (H2Error::Flood(Glitch::Priority), CalmReason::Glitches),
        (H2Error::Flood(Glitch::Refused), CalmReason::Glitches),
        (
            H2Error::Flood(Glitch::EmptyContinuation),
            CalmReason::Glitches,
        ),
        (
            H2Error::Hpack(HpackError::ListTooLarge { max: 65_536 }),
            CalmReason::Hpack,
        ),
        (
            H2Error::Hpack(HpackError::TooManyFields { max: 128 }),
            CalmReason::Hpack,
        ),
    ] {
        assert_eq!(error.code(), ErrorCode::ENHANCE_YOUR_CALM, "{error:?}");
        assert_eq!(error.calm_reason(), Some(reason), "{error:?}");
    }
    // Errors that end a connection with another code have no reason.
    for error in [
        H2Error::Hpack(HpackError::IndexZero),
        H2Error::TooManyStreams,
        H2Error::BadPreface,
    ] {
        assert_eq!(error.calm_reason(), None, "{error:?}");
    }
}

#[test]
fn resets_at_a_sustainable_rate_are_fine() {
    let mut p = Peer::with(H2Cfg {
        early_resets_max: 1000,
        ..H2Cfg::default()
    });
    let mut id = 1;
    for _ in 0..300 {
        p.now_ms += 20; // 50 per second
        p.request(id, GET, false);
        let evs = p.send(&rst(id, ErrorCode::CANCEL));
        assert_eq!(evs.len(), 1);
        id += 2;
    }
    assert!(!p.conn.is_finished());
}

#[test]
fn streams_reset_before_their_response_in_a_row_are_enhance_your_calm() {
    let mut p = Peer::new();
    let mut id = 1;
    for _ in 0..50 {
        p.now_ms += 1000;
        p.request(id, GET, false);
        p.send(&rst(id, ErrorCode::CANCEL));
        id += 2;
    }
    // A response in between starts the count again.
    p.request(id, GET, true);
    p.conn.send_response_head(id, 200, [], true).unwrap();
    id += 2;
    for _ in 0..50 {
        p.now_ms += 1000;
        p.request(id, GET, false);
        p.send(&rst(id, ErrorCode::CANCEL));
        id += 2;
    }
    assert!(!p.conn.is_finished());
    p.request(id, GET, false);
    let evs = p.send(&rst(id, ErrorCode::CANCEL));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::EarlyResets { max: 50 },
        ErrorCode::ENHANCE_YOUR_CALM,
    );
}

#[test]
fn resets_we_are_made_to_send_are_bounded() {
    let mut p = Peer::with(H2Cfg {
        local_resets_max: 3,
        ..H2Cfg::default()
    });
    let mut last = Vec::new();
    for id in [1, 3, 5, 7] {
        p.request(id, GET, true);
        // DATA on a half-closed (remote) stream: a STREAM_CLOSED reset each time.
        last = p.send(&fr(DATA, 0, id, b"x"));
    }
    expect_conn_error(
        &mut p,
        &last,
        H2Error::LocalResets { max: 3 },
        ErrorCode::ENHANCE_YOUR_CALM,
    );
}

fn flood(frame_bytes: &[u8], error: H2Error) {
    let mut p = Peer::new();
    for _ in 0..100 {
        let evs = p.send(frame_bytes);
        assert!(!p.conn.is_finished(), "{evs:?}");
        p.out();
    }
    let evs = p.send(frame_bytes);
    expect_conn_error(&mut p, &evs, error, ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn ping_flood_is_enhance_your_calm() {
    flood(&fr(PING, 0, 0, &[1; 8]), H2Error::Flood(Glitch::Ping));
    assert_eq!(
        H2Error::Flood(Glitch::Ping).calm_reason(),
        Some(CalmReason::PingFlood)
    );
}

#[test]
fn settings_flood_is_enhance_your_calm() {
    flood(&settings(&[]), H2Error::Flood(Glitch::Settings));
    assert_eq!(
        H2Error::Flood(Glitch::Settings).calm_reason(),
        Some(CalmReason::SettingsFlood)
    );
}

#[test]
fn priority_flood_is_enhance_your_calm() {
    flood(
        &fr(PRIORITY, 0, 3, &[0, 0, 0, 1, 1]),
        H2Error::Flood(Glitch::Priority),
    );
}

#[test]
fn empty_data_flood_is_enhance_your_calm() {
    let mut p = Peer::new();
    p.request(1, POST, false);
    let mut last = Vec::new();
    for _ in 0..101 {
        last = p.send(&fr(DATA, 0, 1, &[]));
    }
    expect_conn_error(
        &mut p,
        &last,
        H2Error::Flood(Glitch::EmptyData),
        ErrorCode::ENHANCE_YOUR_CALM,
    );
}

#[test]
fn glitches_refill_with_time() {
    let mut p = Peer::new();
    for _ in 0..1000 {
        p.now_ms += 100; // 10 per second, the refill rate
        p.send(&fr(PING, 0, 0, &[1; 8]));
        p.out();
    }
    assert!(!p.conn.is_finished());
}

#[test]
fn ping_flood_from_a_reader_that_does_not_read_stops_at_the_output_bound() {
    let mut p = Peer::with(H2Cfg {
        glitches_max: 1_000_000,
        output_bytes_max: 1024,
        ..H2Cfg::default()
    });
    let mut b = Vec::new();
    for _ in 0..1000 {
        b.extend(fr(PING, 0, 0, &[1; 8]));
    }
    p.send(&b);
    assert!(p.blocked);
    assert!(p.conn.output().len() < 1024 + 17);
    assert!(p.pending.len() > 900 * 17, "the rest waits unread");
    p.out();
    p.send(&[]);
    assert!(p.blocked);
}

#[test]
fn continuation_flood_is_enhance_your_calm() {
    let mut p = Peer::new();
    let block = p.block(GET);
    let mut b = fr(HEADERS, END_STREAM, 1, &block[..1]);
    for _ in 0..19 {
        b.extend(fr(CONTINUATION, 0, 1, &[0]));
    }
    p.send(&b);
    assert!(!p.conn.is_finished());
    let evs = p.send(&fr(CONTINUATION, 0, 1, &[0]));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::ContinuationFlood { frames_max: 20 },
        ErrorCode::ENHANCE_YOUR_CALM,
    );
}

#[test]
fn empty_continuations_cost_glitches() {
    let mut p = Peer::with(H2Cfg {
        continuation_frames_max: 1000,
        ..H2Cfg::default()
    });
    let block = p.block(GET);
    let mut b = fr(HEADERS, END_STREAM, 1, &block[..1]);
    for _ in 0..101 {
        b.extend(fr(CONTINUATION, 0, 1, &[]));
    }
    let evs = p.send(&b);
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::Flood(Glitch::EmptyContinuation),
        ErrorCode::ENHANCE_YOUR_CALM,
    );
}

#[test]
fn header_block_past_the_bound_is_enhance_your_calm() {
    let mut p = Peer::with(H2Cfg {
        header_block_bytes_max: 20_000,
        ..H2Cfg::default()
    });
    let mut b = fr(HEADERS, END_STREAM, 1, &[0; 16_000]);
    b.extend(fr(CONTINUATION, 0, 1, &[0; 4_001]));
    let evs = p.send(&b);
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::HeaderBlockTooLarge { bytes_max: 20_000 },
        ErrorCode::ENHANCE_YOUR_CALM,
    );
}

#[test]
fn hpack_bomb_is_enhance_your_calm() {
    let mut p = Peer::new();
    // One 4000-byte entry, then referenced 100 times: 400 KB from 4 KB.
    // `x: y…` with incremental indexing; 4000 as a 7-bit prefix integer is 127 + 3873.
    let mut block = vec![0x82, 0x87, 0x84, 0x40, 0x01, b'x', 0x7f, 0xa1, 0x1e];
    block.extend(std::iter::repeat_n(b'y', 4000));
    block.extend(std::iter::repeat_n(0xbe, 100));
    let evs = p.send(&fr(HEADERS, END_HEADERS | END_STREAM, 1, &block[..]));
    let error = H2Error::Hpack(super::hpack::HpackError::ListTooLarge { max: 65_536 });
    expect_conn_error(&mut p, &evs, error, ErrorCode::ENHANCE_YOUR_CALM);
    assert_eq!(error.calm_reason(), Some(CalmReason::Hpack));
}

#[test]
fn too_many_fields_is_enhance_your_calm() {
    let mut p = Peer::new();
    let mut block = p.block(GET);
    block.extend(std::iter::repeat_n(0x82, 125));
    let evs = p.send(&fr(HEADERS, END_HEADERS | END_STREAM, 1, &block));
    expect_conn_error(
        &mut p,
        &evs,
        H2Error::Hpack(super::hpack::HpackError::TooManyFields { max: 128 }),
        ErrorCode::ENHANCE_YOUR_CALM,
    );
}

#[test]
fn refusing_streams_endlessly_is_enhance_your_calm() {
    let mut p = Peer::with(H2Cfg {
        streams_max: 1,
        local_resets_max: 10_000,
        ..H2Cfg::default()
    });
    p.request(1, GET, false);
    let mut id = 3;
    let mut evs = Vec::new();
    while !p.conn.is_finished() && id < 1000 {
        evs = p.request(id, GET, true);
        p.out();
        id += 2;
    }
    assert_eq!(
        evs.last(),
        Some(&Ev::ConnError(H2Error::Flood(Glitch::Refused)))
    );
    assert_eq!(p.conn.counters().streams_refused, 101);
}

#[test]
fn streams_per_connection_limit_sends_goaway() {
    let mut p = Peer::with(H2Cfg {
        streams_per_conn_max: 2,
        ..H2Cfg::default()
    });
    p.request(1, GET, true);
    assert_eq!(goaway_of(&p.out()), None);
    p.request(3, GET, true);
    assert_eq!(goaway_of(&p.out()), Some((3, ErrorCode::NO_ERROR)));
    p.request(5, GET, true);
    expect_stream_error(&mut p, 5, ErrorCode::REFUSED_STREAM);
}

#[test]
fn every_frame_split_anywhere_gives_the_same_events() {
    let mut q = Peer::new();
    let mut script = q.headers(1, POST, false);
    script.extend(fr(DATA, PADDED, 1, &[1, b'a', 0]));
    script.extend(fr(PING, 0, 0, &[2; 8]));
    script.extend(window_update(0, 1000));
    let trailers = q.headers(1, &[("x-t", "1")], true);
    script.extend(trailers);
    let get = q.headers(3, GET, true);
    script.extend(get);
    let whole = {
        let mut p = Peer::new();
        p.send(&script)
    };
    assert_eq!(whole.len(), 4, "{whole:?}");
    for cut in 0..script.len() {
        let mut p = Peer::new();
        let mut evs = p.send(&script[..cut]);
        evs.extend(p.send(&script[cut..]));
        assert_eq!(evs, whole, "cut {cut}");
    }
}

// ---- §5.1 every frame type in every state -------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Idle,
    Open,
    HalfClosedLocal,
    HalfClosedRemote,
    ClosedByPeerReset,
    ClosedFinished,
    ResetByUs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Stream(ErrorCode),
    Connection(ErrorCode),
}

fn set_up(p: &mut Peer, setup: Setup) {
    match setup {
        Setup::Idle => {}
        Setup::Open => {
            p.request(1, POST, false);
        }
        Setup::HalfClosedLocal => {
            p.request(1, POST, false);
            p.conn.send_response_head(1, 204, [], true).unwrap();
        }
        Setup::HalfClosedRemote => {
            p.request(1, GET, true);
        }
        Setup::ClosedByPeerReset => {
            p.request(1, POST, false);
            p.send(&rst(1, ErrorCode::CANCEL));
        }
        Setup::ClosedFinished => {
            p.request(1, GET, true);
            p.conn.send_response_head(1, 204, [], true).unwrap();
        }
        Setup::ResetByUs => {
            p.request(1, POST, false);
            p.conn.reset(1, ErrorCode::CANCEL).unwrap();
        }
    }
    p.out();
}

#[test]
fn s5_1_every_frame_type_in_every_state() {
    use Outcome::{Accepted as A, Connection as C, Stream as S};
    const PROTO: ErrorCode = ErrorCode::PROTOCOL_ERROR;
    const CLOSED: ErrorCode = ErrorCode::STREAM_CLOSED;
    // Columns: DATA, HEADERS (a trailer block with END_STREAM), PRIORITY, RST_STREAM,
    // WINDOW_UPDATE, CONTINUATION without a block.
    let table = [
        (
            Setup::Idle,
            [C(PROTO), S(PROTO), A, C(PROTO), C(PROTO), C(PROTO)],
        ),
        (Setup::Open, [A, A, A, A, A, C(PROTO)]),
        (Setup::HalfClosedLocal, [A, A, A, A, A, C(PROTO)]),
        (
            Setup::HalfClosedRemote,
            [S(CLOSED), S(CLOSED), A, A, A, C(PROTO)],
        ),
        (
            Setup::ClosedByPeerReset,
            [S(CLOSED), C(CLOSED), A, A, A, C(PROTO)],
        ),
        (
            Setup::ClosedFinished,
            [S(CLOSED), C(CLOSED), A, A, A, C(PROTO)],
        ),
        (Setup::ResetByUs, [A, A, A, A, A, C(PROTO)]),
    ];
    for (setup, outcomes) in table {
        for (column, want) in outcomes.into_iter().enumerate() {
            let mut p = Peer::new();
            set_up(&mut p, setup);
            let bytes = match column {
                0 => fr(DATA, 0, 1, b"x"),
                1 => p.headers(1, &[("x-t", "1")], true),
                2 => fr(PRIORITY, 0, 1, &[0, 0, 0, 3, 16]),
                3 => rst(1, ErrorCode::CANCEL),
                4 => window_update(1, 1),
                _ => fr(CONTINUATION, END_HEADERS, 1, &[0x82]),
            };
            p.send(&bytes);
            let outs = p.out();
            let got = match (goaway_of(&outs), rst_of(&outs, 1)) {
                (Some((_, code)), _) => Outcome::Connection(code),
                (None, Some(code)) => Outcome::Stream(code),
                (None, None) => Outcome::Accepted,
            };
            assert_eq!(got, want, "{setup:?}, frame column {column}");
        }
    }
}
