use super::*;

#[test]
fn trailers_are_read_from_the_tail_of_a_chunked_body() {
    let body = b"5\r\nhello\r\n0\r\ngrpc-status: 0\r\nX-Checksum:  abc \r\n\r\n";
    let got = trailer_fields(body);
    assert_eq!(
        got,
        vec![
            (b"grpc-status".to_vec(), b"0".to_vec()),
            (b"x-checksum".to_vec(), b"abc".to_vec()),
        ]
    );
    assert!(trailer_fields(b"5\r\nhello\r\n0\r\n\r\n").is_empty());
    assert!(trailer_fields(b"0\r\n\r\n").is_empty());
    // Chunk data that looks like a last chunk is not taken for one.
    assert!(trailer_fields(b"3\r\n\r\n0\r\n0;a=b\r\n\r\n").is_empty());
}

#[test]
fn tail_keeps_only_its_bound() {
    let mut tail = Vec::new();
    keep_tail(&mut tail, Some(&[1u8; TAIL_BYTES_MAX + 10]));
    assert_eq!(tail.len(), TAIL_BYTES_MAX);
    keep_tail(&mut tail, Some(b"xyz"));
    assert_eq!(tail.len(), TAIL_BYTES_MAX);
    assert!(tail.ends_with(b"xyz"));
}

// ---- the session, byte literals in, frames and intents out ------------------------------------

use crate::h2::frame::{self, Frame, FrameVerdict};
use crate::h2::hpack::{DecodeLimits, Decoder, Encoder, HuffmanUse, IndexUse};
use crate::ids::{BackendId, ServerId};
use crate::session::testenv::FakeEnv;
use crate::upstream::test_backend;

/// The HTTP/1.1 session tests' listener, without their request body limit.
fn h1_cfg() -> H1Cfg {
    H1Cfg {
        body_bytes_max: None,
        ..crate::session::h1::tests::cfg()
    }
}

fn setup() -> (FakeEnv, H2ListenerCfg, Wire, H2Session) {
    let env = FakeEnv::new().with_backend(test_backend(1, &[(10, "a")]));
    let cfg = H2ListenerCfg::new(&h1_cfg(), 64 * 1024, 100);
    let s = H2Session::new("192.0.2.7:5555".parse().unwrap(), false, &cfg, env.now);
    (env, cfg, Wire::default(), s)
}

/// The client's side: its HPACK encoder and a decoder for what ringway sends.
struct Client {
    enc: Encoder,
    dec: Decoder,
}

#[derive(Debug, PartialEq)]
enum Got {
    Headers(u32, Vec<(String, String)>, bool),
    Data(u32, Vec<u8>, bool),
    Rst(u32, ErrorCode),
    GoAway(ErrorCode),
    Other,
}

impl Client {
    fn new() -> Client {
        Client {
            enc: Encoder::new(4096, HuffmanUse::WhenShorter, IndexUse::Repeating),
            dec: Decoder::new(4096),
        }
    }

    /// Preface, SETTINGS (`window`: our INITIAL_WINDOW_SIZE, if not the default) and the ACK
    /// of ringway's SETTINGS (sent at once here; a client sends it once it has read them).
    fn hello(&self, window: Option<u32>) -> Vec<u8> {
        let mut out = self.hello_without_ack(window);
        frame::write_settings_ack(&mut out);
        out
    }

    /// As [`Client::hello`], but ringway's SETTINGS are never acknowledged.
    fn hello_without_ack(&self, window: Option<u32>) -> Vec<u8> {
        let mut out = frame::PREFACE.to_vec();
        let settings: Vec<(u16, u32)> = window
            .map(|w| (frame::SETTINGS_INITIAL_WINDOW_SIZE, w))
            .into_iter()
            .collect();
        frame::write_settings(&mut out, &settings);
        out
    }

    fn headers(&mut self, stream: u32, fields: &[(&[u8], &[u8])], end_stream: bool) -> Vec<u8> {
        let mut block = Vec::new();
        self.enc.encode(fields.iter().copied(), &mut block);
        let mut out = Vec::new();
        frame::write_headers(&mut out, stream, &block, end_stream, 16_384);
        out
    }

    fn get(&mut self, stream: u32, path: &str, end_stream: bool) -> Vec<u8> {
        let fields: [(&[u8], &[u8]); 6] = [
            (b":method", if end_stream { b"GET" } else { b"POST" }),
            (b":scheme", b"http"),
            (b":authority", b"example.com"),
            (b":path", path.as_bytes()),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
        ];
        self.headers(stream, &fields, end_stream)
    }

    /// Every frame in `bytes` (all whole).
    fn read(&mut self, bytes: &[u8]) -> Vec<Got> {
        let mut out = Vec::new();
        let mut at = 0;
        while let FrameVerdict::Complete {
            frame,
            consumed_bytes,
        } = frame::parse(&bytes[at..], 1 << 24)
        {
            at += consumed_bytes;
            out.push(match frame {
                Frame::Headers {
                    stream,
                    fragment,
                    end_stream,
                    ..
                } => {
                    let mut fields = Vec::new();
                    let limits = DecodeLimits {
                        list_bytes_max: 1 << 20,
                        fields_max: 1000,
                    };
                    self.dec
                        .decode(fragment, limits, &mut |n, v| {
                            fields.push((text(n), text(v)));
                        })
                        .unwrap();
                    Got::Headers(stream, fields, end_stream)
                }
                Frame::Data {
                    stream,
                    data,
                    end_stream,
                    ..
                } => Got::Data(stream, data.to_vec(), end_stream),
                Frame::RstStream { stream, code } => Got::Rst(stream, code),
                Frame::GoAway { code, .. } => Got::GoAway(code),
                _ => Got::Other,
            });
        }
        assert_eq!(at, bytes.len(), "a partial frame was sent");
        out.retain(|g| *g != Got::Other);
        out
    }
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

fn intents(s: &mut H2Session) -> Vec<Intent> {
    std::iter::from_fn(|| s.intents.pop()).collect()
}

fn lane_intents(s: &mut H2Session) -> Vec<(Lane, Intent)> {
    std::iter::from_fn(|| s.intents.pop_lane()).collect()
}

/// The upstream side of `lane` (as the driver sees it between drives).
fn side(s: &mut H2Session, lane: Lane) -> &mut UpSide {
    s.lane_side(lane).expect("a stream holds the lane")
}

/// The session reads what the client sent, and the backend connection lane 0 asked for is up
/// (the stream's request goes to it).
fn read_and_connect(s: &mut H2Session, w: &mut Wire, env: &mut FakeEnv, cfg: &H2ListenerCfg) {
    s.progress(w, env, cfg);
    s.on_upstream(0, w, env, cfg, UpstreamEvent::Connected);
    s.progress(w, env, cfg);
}

fn connect() -> Intent {
    Intent::Connect {
        backend: BackendId(1),
        server: ServerId(10),
        allow_pool: true,
    }
}

#[test]
fn a_stream_becomes_one_http1_exchange_and_its_response_comes_back_as_frames() {
    let (mut env, cfg, mut w, mut s) = setup();
    let mut c = Client::new();
    w.rx[CLIENT] = c.hello(None);
    w.rx[CLIENT].extend(c.get(1, "/a?b=1", true));
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![connect()]);
    assert_eq!(env.stats.h2_connections, 1);
    assert_eq!(env.stats.h2_streams, 1);
    s.on_upstream(0, &mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    let up = text(&std::mem::take(&mut side(&mut s, 0).tx));
    assert!(
        up.starts_with("GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\n"),
        "{up}"
    );
    assert!(up.contains("\r\ncookie: a=1; b=2\r\n"), "{up}");
    assert!(up.contains("X-Forwarded-For: 192.0.2.7\r\n"), "{up}");
    assert!(!up.contains("content-length"), "{up}");
    side(&mut s, 0).rx.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nX-App: 1\r\n\r\nhello",
    );
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    let head = Got::Headers(
        1,
        vec![
            (":status".into(), "200".into()),
            ("content-length".into(), "5".into()),
            ("x-app".into(), "1".into()),
        ],
        false,
    );
    assert_eq!(got, vec![head, Got::Data(1, b"hello".to_vec(), true)]);
    let after = intents(&mut s);
    let log = after.iter().find_map(|i| match i {
        Intent::Log(r) => Some(r.clone()),
        _ => None,
    });
    let log = log.expect("logged");
    assert_eq!(
        (log.proto, log.status, log.target.as_str()),
        ("h2", 200, "/a?b=1")
    );
    assert!(
        after.contains(&Intent::Release { reusable: true }),
        "{after:?}"
    );
}

#[test]
fn the_backend_is_read_only_while_the_client_window_is_open() {
    let (mut env, cfg, mut w, mut s) = setup();
    let mut c = Client::new();
    w.rx[CLIENT] = c.hello(Some(10));
    w.rx[CLIENT].extend(c.get(1, "/big", true));
    read_and_connect(&mut s, &mut w, &mut env, &cfg);
    side(&mut s, 0).tx.clear();
    let body = [b'x'; 100];
    side(&mut s, 0)
        .rx
        .extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
    side(&mut s, 0).rx.extend_from_slice(&body);
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    assert_eq!(got.last(), Some(&Got::Data(1, vec![b'x'; 10], false)));
    // The window is shut: the backend's side is not read until it opens.
    assert!(!s.lane_wants_read(0));
    assert!(s.wants_read(&w, CLIENT));
    frame::write_window_update(&mut w.rx[CLIENT], 1, 1000);
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    assert_eq!(got, vec![Got::Data(1, vec![b'x'; 90], true)]);
}

#[test]
fn streams_run_side_by_side_each_on_its_lane_and_a_reset_ends_only_its_own() {
    let (mut env, cfg, mut w, mut s) = setup();
    let mut c = Client::new();
    w.rx[CLIENT] = c.hello(None);
    w.rx[CLIENT].extend(c.get(1, "/one", true));
    w.rx[CLIENT].extend(c.get(3, "/two", true));
    s.progress(&mut w, &mut env, &cfg);
    // Each stream asks for its own backend connection at once.
    assert_eq!(lane_intents(&mut s), vec![(0, connect()), (1, connect())]);
    s.on_upstream(1, &mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.on_upstream(0, &mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    let one = text(&std::mem::take(&mut side(&mut s, 0).tx));
    let two = text(&std::mem::take(&mut side(&mut s, 1).tx));
    assert!(one.starts_with("GET /one "), "{one}");
    assert!(two.starts_with("GET /two "), "{two}");
    // Stream 3's backend answers first: its response does not wait for stream 1's.
    side(&mut s, 1)
        .rx
        .extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo");
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    assert_eq!(
        got.last(),
        Some(&Got::Data(3, b"two".to_vec(), true)),
        "{got:?}"
    );
    let after = lane_intents(&mut s);
    assert!(
        after.contains(&(1, Intent::Release { reusable: true })),
        "{after:?}"
    );
    // The client gives up on stream 1: only lane 0's exchange ends.
    frame::write_rst_stream(&mut w.rx[CLIENT], 1, ErrorCode::CANCEL);
    s.progress(&mut w, &mut env, &cfg);
    let after = lane_intents(&mut s);
    assert!(
        after
            .iter()
            .any(|(l, i)| *l == 0 && matches!(i, Intent::Log(r) if r.term == Term::ClientClosed)),
        "{after:?}"
    );
    assert!(
        after.contains(&(0, Intent::Release { reusable: false })),
        "{after:?}"
    );
    assert_eq!(env.stats.h2_resets_received, 1);
    assert!(!s.is_closed());
    // A new stream takes a free lane; a freed lane is reused only once its release is applied.
    w.rx[CLIENT].extend(c.get(5, "/three", true));
    s.progress(&mut w, &mut env, &cfg);
    let after = lane_intents(&mut s);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].1, connect());
}

#[test]
fn a_backend_failing_mid_response_resets_only_that_stream_and_drain_sends_goaway() {
    let (mut env, cfg, mut w, mut s) = setup();
    let mut c = Client::new();
    w.rx[CLIENT] = c.hello(None);
    w.rx[CLIENT].extend(c.get(1, "/one", true));
    read_and_connect(&mut s, &mut w, &mut env, &cfg);
    side(&mut s, 0)
        .rx
        .extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
    side(&mut s, 0).eof = true;
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    assert_eq!(
        got.get(got.len().saturating_sub(2)..),
        Some(
            [
                Got::Data(1, b"abc".to_vec(), false),
                Got::Rst(1, ErrorCode::INTERNAL_ERROR)
            ]
            .as_slice()
        ),
        "{got:?}"
    );
    assert!(!s.is_closed());
    assert_eq!(env.stats.h2_resets_sent, 1);
    // Draining: GOAWAY, and with no stream open the connection closes.
    env.draining = true;
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    assert_eq!(got, vec![Got::GoAway(ErrorCode::NO_ERROR)]);
    assert!(intents(&mut s).contains(&Intent::Close(Term::Done)));
    assert_eq!(env.stats.h2_goaway_sent, 1);
}

#[test]
fn a_drain_lets_the_response_in_flight_finish_as_the_window_opens() {
    let (mut env, cfg, mut w, mut s) = setup();
    let mut c = Client::new();
    w.rx[CLIENT] = c.hello(Some(10));
    w.rx[CLIENT].extend(c.get(1, "/big", true));
    read_and_connect(&mut s, &mut w, &mut env, &cfg);
    env.draining = true;
    side(&mut s, 0)
        .rx
        .extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
    side(&mut s, 0).rx.extend_from_slice(&[b'y'; 100]);
    s.progress(&mut w, &mut env, &cfg);
    // The inner exchange is over (draining: no keep-alive), 90 bytes still wait for the window.
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    assert!(
        got.contains(&Got::Data(1, vec![b'y'; 10], false)),
        "{got:?}"
    );
    assert!(got.contains(&Got::GoAway(ErrorCode::NO_ERROR)), "{got:?}");
    assert!(!got.iter().any(|g| matches!(g, Got::Rst(..))), "{got:?}");
    assert!(!s.is_closed());
    frame::write_window_update(&mut w.rx[CLIENT], 1, 1000);
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    assert_eq!(got, vec![Got::Data(1, vec![b'y'; 90], true)]);
    assert!(s.is_closed());
}

#[test]
fn a_close_delimited_response_ends_its_stream_with_the_close() {
    let (mut env, cfg, mut w, mut s) = setup();
    let mut c = Client::new();
    w.rx[CLIENT] = c.hello(None);
    w.rx[CLIENT].extend(c.get(1, "/old", true));
    read_and_connect(&mut s, &mut w, &mut env, &cfg);
    side(&mut s, 0)
        .rx
        .extend_from_slice(b"HTTP/1.0 200 OK\r\n\r\nuntil the end");
    side(&mut s, 0).eof = true;
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    let data: Vec<u8> = got
        .iter()
        .filter_map(|g| match g {
            Got::Data(1, d, _) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(text(&data), "until the end");
    assert!(matches!(got.last(), Some(Got::Data(1, _, true))), "{got:?}");
    assert!(!s.is_closed());
}

/// Serves `/big` (100 000 bytes, of which the backend sends `sent_bytes` at once) to a client
/// that announces SETTINGS_INITIAL_WINDOW_SIZE `initial_window`, never sends WINDOW_UPDATE and
/// sends a PING every 10 s, until ringway resets the stream. Checks that the reset came within
/// `client_idle` (after `server_idle`) of the stall and that the connection stays; returns the
/// counters and the DATA bytes the client got.
fn stall_until_reset(initial_window: u32, sent_bytes: usize) -> (FakeEnv, usize) {
    let (mut env, cfg, mut w, mut s) = setup();
    let mut c = Client::new();
    w.active_ms = [env.now, env.now];
    w.rx[CLIENT] = c.hello(Some(initial_window));
    w.rx[CLIENT].extend(c.get(1, "/big", true));
    read_and_connect(&mut s, &mut w, &mut env, &cfg);
    side(&mut s, 0).tx.clear();
    side(&mut s, 0)
        .rx
        .extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    side(&mut s, 0)
        .rx
        .extend(std::iter::repeat_n(b'z', sent_bytes));
    // The client queue may end inside a frame: what follows the last whole one waits here.
    let mut queued = Vec::new();
    let mut take = |w: &mut Wire, c: &mut Client| {
        queued.append(&mut w.tx[CLIENT]);
        let mut whole = 0;
        while let FrameVerdict::Complete { consumed_bytes, .. } =
            frame::parse(&queued[whole..], 1 << 24)
        {
            whole += consumed_bytes;
        }
        let rest = queued.split_off(whole);
        c.read(&std::mem::replace(&mut queued, rest))
    };
    let mut got = Vec::new();
    for _ in 0..16 {
        s.progress(&mut w, &mut env, &cfg);
        got.extend(take(&mut w, &mut c));
    }
    assert!(
        matches!(got.first(), Some(Got::Headers(1, _, false))),
        "{got:?}"
    );
    let data_bytes = |got: &[Got]| {
        got.iter()
            .map(|g| match g {
                Got::Data(_, d, _) => d.len(),
                _ => 0,
            })
            .sum::<usize>()
    };
    let mut received = data_bytes(&got);
    // The window stays shut; a PING every 10 s keeps the connection's last byte fresh.
    let stalled = env.now;
    let idle = cfg.h1.timeouts.client_idle.max(cfg.h1.timeouts.server_idle);
    let mut reset_at = None;
    while reset_at.is_none() && env.now < stalled + 3 * idle {
        env.now += 10_000;
        frame::write_ping(&mut w.rx[CLIENT], false, [7; 8]);
        w.active_ms[CLIENT] = env.now;
        s.progress(&mut w, &mut env, &cfg);
        for _ in 0..2 {
            if s.deadline(&w, &env, &cfg).is_some_and(|d| env.now >= d) {
                s.on_timer(&mut w, &mut env, &cfg);
                s.progress(&mut w, &mut env, &cfg);
            }
        }
        let got = take(&mut w, &mut c);
        received += data_bytes(&got);
        if got.contains(&Got::Rst(1, ErrorCode::CANCEL)) {
            reset_at = Some(env.now);
        }
    }
    // `server_idle` ended the exchange (the backend side was not read), then `client_idle`
    // since the stream last moved ended the stream: PINGs did not keep it.
    let reset_at = reset_at.expect("the stalled stream was never reset");
    assert!(
        reset_at <= stalled + idle + 10_000,
        "reset at +{} ms",
        reset_at - stalled
    );
    assert!(!s.is_closed());
    (env, received)
}

#[test]
fn a_response_stalled_on_a_shut_window_ends_even_while_the_client_sends_pings() {
    let (env, received) = stall_until_reset(0, 100);
    assert_eq!(received, 0, "DATA past a zero stream window");
    assert_eq!(env.stats.idle_timeouts, 2);
    assert_eq!(env.stats.h2_window_timeouts, 1);
    assert_eq!(env.stats.h2_resets_sent, 1);
}

#[test]
fn a_response_stalled_on_a_shut_connection_window_ends_too() {
    // Each stream may take 1 MiB, but the connection's window stays at its 65 535 (RFC 9113
    // §6.9.2: SETTINGS do not move it) and is never updated.
    let (env, received) = stall_until_reset(1 << 20, 80_000);
    assert_eq!(received, 65_535);
    assert_eq!(env.stats.idle_timeouts, 2);
    assert_eq!(env.stats.h2_window_timeouts, 1);
}

#[test]
fn a_finished_stream_is_reused_by_the_next_with_nothing_of_the_old_one_left() {
    let (mut env, cfg, mut w, mut s) = setup();
    let mut c = Client::new();
    w.rx[CLIENT] = c.hello(None);
    // Stream 5 stays open while 7 and 9 run.
    w.rx[CLIENT].extend(c.get(5, "/slow", true));
    w.rx[CLIENT].extend(c.get(7, "/one", false));
    frame::write_data(&mut w.rx[CLIENT], 7, b"abc", true);
    s.progress(&mut w, &mut env, &cfg);
    s.on_upstream(1, &mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    let up = text(&std::mem::take(&mut side(&mut s, 1).tx));
    assert!(up.contains("transfer-encoding: chunked\r\n"), "{up}");
    side(&mut s, 1).rx.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
    );
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    assert_eq!(
        got.last(),
        Some(&Got::Headers(7, vec![("x-t".into(), "1".into())], true))
    );
    let _ = lane_intents(&mut s);
    assert_eq!(env.h2_spares.len(), 1, "the finished stream is kept");

    // The next stream takes the spare: a GET with a plain response, nothing of stream 7 left.
    w.rx[CLIENT].extend(c.get(9, "/two", true));
    s.progress(&mut w, &mut env, &cfg);
    assert!(env.h2_spares.is_empty());
    assert_eq!(lane_intents(&mut s), vec![(1, connect())]);
    s.on_upstream(1, &mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    let up = text(&std::mem::take(&mut side(&mut s, 1).tx));
    assert!(up.starts_with("GET /two HTTP/1.1\r\n"), "{up}");
    assert!(!up.contains("chunked") && !up.contains("abc"), "{up}");
    side(&mut s, 1)
        .rx
        .extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    let head = Got::Headers(
        9,
        vec![
            (":status".into(), "200".into()),
            ("content-length".into(), "2".into()),
        ],
        false,
    );
    assert_eq!(got, vec![head, Got::Data(9, b"ok".to_vec(), true)]);
    assert_eq!(env.h2_spares.len(), 1);

    // Stream 5, on its own lane all along, still gets its own answer.
    s.on_upstream(0, &mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    side(&mut s, 0)
        .rx
        .extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    assert_eq!(
        got,
        vec![Got::Headers(
            5,
            vec![(":status".into(), "204".into())],
            true
        )]
    );
    assert_eq!(env.h2_spares.len(), 2);
}

/// `setup`'s listener with its timeouts changed by `edit`.
fn cfg_with(edit: impl FnOnce(&mut crate::session::TimeoutsMs)) -> H2ListenerCfg {
    let mut h1 = h1_cfg();
    edit(&mut h1.timeouts);
    H2ListenerCfg::new(&h1, 64 * 1024, 100)
}

#[test]
fn pings_do_not_keep_a_connection_with_no_stream_open_past_http_keep_alive() {
    let (mut env, _, mut w, mut s) = setup();
    let cfg = cfg_with(|t| t.http_keep_alive = 1_000);
    let mut c = Client::new();
    w.rx[CLIENT] = c.hello(None);
    w.rx[CLIENT].extend(c.get(1, "/one", true));
    read_and_connect(&mut s, &mut w, &mut env, &cfg);
    // The backend takes 5 s: longer than `http_keep_alive`, which counts only once it is done.
    env.now += 5_000;
    side(&mut s, 0)
        .rx
        .extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    assert_eq!(got.last(), Some(&Got::Data(1, b"ok".to_vec(), true)));
    let ended = env.now;
    assert_eq!(s.deadline(&w, &env, &cfg), Some(ended + 1_000));
    // A PING every 200 ms, each answered: bytes move both ways, no stream does.
    let mut goaway_at = None;
    while goaway_at.is_none() && env.now < ended + 10_000 {
        env.now += 200;
        frame::write_ping(&mut w.rx[CLIENT], false, [1; 8]);
        w.active_ms = [env.now, env.now];
        s.progress(&mut w, &mut env, &cfg);
        if s.deadline(&w, &env, &cfg).is_some_and(|d| env.now >= d) {
            s.on_timer(&mut w, &mut env, &cfg);
            s.progress(&mut w, &mut env, &cfg);
        }
        if c.read(&std::mem::take(&mut w.tx[CLIENT]))
            .contains(&Got::GoAway(ErrorCode::NO_ERROR))
        {
            goaway_at = Some(env.now);
        }
    }
    let at = goaway_at.expect("PINGs kept the connection open");
    assert_eq!(at, ended + 1_000, "GOAWAY at +{} ms", at - ended);
    assert!(intents(&mut s).contains(&Intent::Close(Term::Done)));
    assert_eq!(env.stats.idle_timeouts, 1);
}

#[test]
fn settings_never_acknowledged_end_the_connection_with_settings_timeout() {
    let (mut env, cfg, mut w, mut s) = setup();
    let started = env.now;
    let request_ms = cfg.h1.timeouts.http_request;
    let mut c = Client::new();
    w.rx[CLIENT] = c.hello_without_ack(None);
    w.rx[CLIENT].extend(c.get(1, "/one", true));
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![connect()]);
    s.on_upstream(0, &mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    let _ = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    // The stream waits for its response (`server_response`, later); the ACK's deadline is first.
    assert_eq!(s.deadline(&w, &env, &cfg), Some(started + request_ms));
    env.now = started + request_ms - 1;
    s.on_timer(&mut w, &mut env, &cfg);
    s.progress(&mut w, &mut env, &cfg);
    assert!(c.read(&std::mem::take(&mut w.tx[CLIENT])).is_empty());
    env.now += 1;
    s.on_timer(&mut w, &mut env, &cfg);
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    assert_eq!(got, vec![Got::GoAway(ErrorCode::SETTINGS_TIMEOUT)]);
    let after = intents(&mut s);
    assert!(
        after.contains(&Intent::Release { reusable: false }),
        "{after:?}"
    );
    assert!(after.contains(&Intent::Close(Term::Done)), "{after:?}");
    assert!(s.is_closed());
    assert_eq!(env.stats.h2_goaway_sent, 1);

    // Acknowledged: nothing is timed but the idle connection.
    let (mut env, cfg, mut w, mut s) = setup();
    w.rx[CLIENT] = Client::new().hello(None);
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(
        s.deadline(&w, &env, &cfg),
        Some(env.now + cfg.h1.timeouts.http_keep_alive)
    );
}

#[test]
fn connect_is_answered_501_and_logged_like_any_stream() {
    let (mut env, cfg, mut w, mut s) = setup();
    let mut c = Client::new();
    w.rx[CLIENT] = c.hello(None);
    let fields: [(&[u8], &[u8]); 3] = [
        (b":method", b"CONNECT"),
        (b":authority", b"example.com:443"),
        (b"user-agent", b"tunnel/1"),
    ];
    w.rx[CLIENT].extend(c.headers(1, &fields, false));
    s.progress(&mut w, &mut env, &cfg);
    let got = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    assert_eq!(
        got,
        vec![Got::Headers(
            1,
            vec![(":status".into(), "501".into())],
            true
        )]
    );
    let logs: Vec<Box<AccessRecord>> = intents(&mut s)
        .into_iter()
        .filter_map(|i| match i {
            Intent::Log(r) => Some(r),
            _ => None,
        })
        .collect();
    let [log] = &logs[..] else {
        panic!("one access log record: {logs:?}");
    };
    assert_eq!(
        (
            log.proto,
            log.method.as_str(),
            log.target.as_str(),
            log.status,
            log.term,
            log.user_agent.as_str(),
            log.backend,
        ),
        (
            "h2",
            "CONNECT",
            "example.com:443",
            501,
            Term::Local,
            "tunnel/1",
            None
        )
    );
    // The HEADERS frame: its 9-byte header and the encoded `:status`.
    assert!(log.bytes_sent > 9, "{log:?}");
    assert_eq!(env.stats.http_requests, 1);
    assert_eq!(env.stats.http_local_responses, 1);
    assert_eq!(env.done.len(), 1);
    assert_eq!(env.done[0].status, 501);
}

#[test]
fn a_relayed_head_is_split_into_the_fields_a_parse_would_give() {
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b: c\r\nX-Empty: \r\nSet-Cookie: s=1; Path=/\r\nConnection: keep-alive\r\n\r\n";
    let parsed = match http1::parse_response(head, &http1::Limits::default(), false) {
        HeadVerdict::Complete { head: h, .. } => h
            .headers
            .iter()
            .map(|f| (f.name_in(head).to_vec(), f.value_in(head).to_vec()))
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let split: Vec<_> = own_head_fields(head)
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    assert_eq!(split, parsed);
    assert_eq!(split.len(), 5);
}

#[test]
fn a_spare_stream_keeps_no_large_buffer() {
    let (mut env, cfg, mut w, mut s) = setup();
    let mut c = Client::new();
    w.rx[CLIENT] = c.hello(None);
    w.rx[CLIENT].extend(c.get(1, "/big", true));
    read_and_connect(&mut s, &mut w, &mut env, &cfg);
    side(&mut s, 0).tx.clear();
    side(&mut s, 0)
        .rx
        .extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n");
    side(&mut s, 0).rx.extend_from_slice(&[b'x'; 20_000]);
    for _ in 0..8 {
        s.progress(&mut w, &mut env, &cfg);
        let _ = c.read(&std::mem::take(&mut w.tx[CLIENT]));
    }
    assert_eq!(env.h2_spares.len(), 1, "the stream ended");
    let spare = &env.h2_spares.0[0];
    for (name, cap) in [
        ("req", spare.req.capacity()),
        ("virt.rx", spare.virt.rx.capacity()),
        ("virt.tx", spare.virt.tx.capacity()),
        ("up.rx", spare.up.rx.capacity()),
        ("up.tx", spare.up.tx.capacity()),
        ("pending", spare.pending.capacity()),
    ] {
        assert!(cap <= SPARE_BUF_BYTES, "{name}: {cap}");
    }
    assert!(spare.virt.tx.is_empty() && spare.up.rx.is_empty());
}
