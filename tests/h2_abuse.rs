//! HTTP/2 abuse defences through the real binary (issue 15, docs/http.md "HTTP/2"): each test
//! floods one connection with frames built here by hand (the frame writers of `ringway::h2::frame`,
//! HPACK blocks spelled out byte by byte), checks the exact GOAWAY or RST_STREAM code the core
//! sends (`H2Error::code`), checks the `/stats` counter that moved, and meanwhile a normal client
//! (curl with prior knowledge) on the same shard gets its 200s. Rapid reset is in tests/h2.rs.
//! curl missing skips a test, except under CI, where .ci/run installs it and a missing one fails.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::h2raw::{self, Frame};
use common::httpd::{Httpd, Reply, ok};
use common::*;
use ringway::h2::ErrorCode;
use ringway::h2::frame::{
    self, FLAG_END_HEADERS, FLAG_END_STREAM, PREFACE, SETTINGS_INITIAL_WINDOW_SIZE,
    TYPE_CONTINUATION, TYPE_DATA, TYPE_GOAWAY, TYPE_HEADERS, TYPE_PING, TYPE_PRIORITY,
    TYPE_RST_STREAM, TYPE_SETTINGS,
};
use ringway::h2::hpack::{DecodeLimits, Decoder};

/// Flood connections one test opens at most while its normal client runs (bounded load).
const FLOOD_CONNS_MAX: usize = 300;
/// Flood connections start at most this often: the floods outlast the normal client's
/// requests (which start after the first flood and end before the last) within the bound above.
const FLOOD_PACE: Duration = Duration::from_millis(5);
/// Requests the normal client makes while the floods go on.
const NORMAL_REQUESTS: usize = 3;
/// SETTINGS_MAX_CONCURRENT_STREAMS ringway announces (docs/http.md).
const STREAMS_MAX: u32 = 100;
/// The glitch bucket's size (`H2Cfg::glitches_max`): PING, SETTINGS, PRIORITY, empty frames and
/// refused streams past this many at once end the connection.
const GLITCHES_MAX: usize = 100;

/// One shard, so that the flooding connections and the normal client share one ring; `/b/` goes
/// to backend `b` (the normal client's), the rest to `a`. `timeouts`: extra `[timeouts]` lines.
fn config(listen: u16, admin: u16, a: SocketAddr, b: SocketAddr, timeouts: &str) -> String {
    config_with(listen, admin, (a, b), timeouts, "")
}

/// As [`config`], with `listener`: extra lines for the listener.
fn config_with(
    listen: u16,
    admin: u16,
    (a, b): (SocketAddr, SocketAddr),
    timeouts: &str,
    listener: &str,
) -> String {
    format!(
        "[global]\nshards = 1\nadmin = \"127.0.0.1:{admin}\"\n\n\
         [timeouts]\nconnect = \"2s\"\n{timeouts}\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"a\"\n\
         http2 = true\n{listener}\n\
         [[listener.route]]\npath_prefix = \"/b/\"\nbackend = \"b\"\n\n\
         [[backend]]\nname = \"a\"\nservers = [ {{ address = \"{a}\" }} ]\n\
         [[backend]]\nname = \"b\"\nservers = [ {{ address = \"{b}\" }} ]\n"
    )
}

/// curl over h2c for `/b/<tag>`: backend `b` must answer it, over HTTP/2.
fn normal_request(listen: SocketAddr, tag: &str) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--http2-prior-knowledge"])
        .args(["-w", "\n%{http_version} %{http_code}"])
        .arg(format!("http://{listen}/b/{tag}"))
        .output()
        .expect("run curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("b /b/{tag}\n2 200"),
        "normal client during the flood: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- hand-built HPACK (RFC 7541), no dynamic table unless asked -------------------------------

/// `GET http://authority/path` from static entries and literals without indexing (§6.2.2):
/// the same bytes are valid on every stream of every connection.
fn request_block(authority: &str, path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86]; // :method GET, :scheme http (static 2, 6)
    hpack_int(&mut b, 4, 0x00, 1); // :authority (static name 1)
    hpack_str(&mut b, authority.as_bytes());
    hpack_int(&mut b, 4, 0x00, 4); // :path (static name 4)
    hpack_str(&mut b, path.as_bytes());
    b
}

/// A literal field without indexing, new name (§6.2.2).
fn literal(b: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    b.push(0x00);
    hpack_str(b, name);
    hpack_str(b, value);
}

/// The client preface and its SETTINGS.
fn preface(settings: &[(u16, u32)]) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    frame::write_settings(&mut out, settings);
    out
}

fn headers(out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool) {
    let flags = FLAG_END_HEADERS | if end_stream { FLAG_END_STREAM } else { 0 };
    frame::write_frame(out, TYPE_HEADERS, flags, stream, block);
}

// ---- a raw client -------------------------------------------------------------------------------

/// One client connection reading ringway's frames as they come.
struct Peer {
    s: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

impl Peer {
    fn connect(addr: SocketAddr) -> Peer {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Peer {
            s,
            buf: Vec::new(),
            closed: false,
        }
    }

    /// Sends `bytes`; a write ringway's close cut short is not an error here (it has had enough).
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes);
    }

    fn take_frame(&mut self) -> Option<Frame> {
        h2raw::take_frame(&mut self.buf)
    }

    /// The next frame; None once ringway closed, or when `until` passes (`on_wait` runs at
    /// every read that times out, at most every 100 ms).
    fn next_frame_by(&mut self, until: Instant, on_wait: &mut impl FnMut()) -> Option<Frame> {
        let mut tmp = [0u8; 65536];
        loop {
            if let Some(f) = self.take_frame() {
                return Some(f);
            }
            let left = until.checked_duration_since(Instant::now())?;
            if self.closed {
                return None;
            }
            let _ = self.s.set_read_timeout(Some(
                left.clamp(Duration::from_millis(1), Duration::from_millis(100)),
            ));
            match self.s.read(&mut tmp) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    on_wait()
                }
                Err(_) => self.closed = true,
            }
        }
    }

    fn next_frame(&mut self) -> Option<Frame> {
        self.next_frame_by(Instant::now() + IO_TIMEOUT, &mut || {})
    }

    /// Every frame until ringway closes (within `IO_TIMEOUT`).
    fn frames_until_close(&mut self) -> Vec<Frame> {
        let until = Instant::now() + IO_TIMEOUT;
        let mut out = Vec::new();
        while let Some(f) = self.next_frame_by(until, &mut || {}) {
            out.push(f);
        }
        assert!(self.closed, "ringway did not close the connection: {out:?}");
        out
    }
}

/// The one GOAWAY among `frames`, which must be the last frame ringway sent.
fn goaway(frames: &[Frame]) -> &Frame {
    let g: Vec<&Frame> = frames.iter().filter(|f| f.kind == TYPE_GOAWAY).collect();
    assert_eq!(g.len(), 1, "one GOAWAY: {frames:?}");
    assert_eq!(
        frames.last().map(|f| f.kind),
        Some(TYPE_GOAWAY),
        "{frames:?}"
    );
    g[0]
}

/// Opens flood connections one after another from a thread, each sent `flood(authority)` and
/// read until ringway closes it, while the normal client makes `NORMAL_REQUESTS` requests on
/// the same shard; the floods go on until those are done (at least one flood before and one
/// after them; at most `FLOOD_CONNS_MAX`). Returns what ringway sent on each flood connection.
fn flood_while_serving(rw: &Ringway, flood: impl Fn(&str) -> Vec<u8> + Sync) -> Vec<Vec<Frame>> {
    let authority = rw.listen.to_string();
    let bytes = flood(&authority);
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let floods = std::thread::scope(|sc| {
        let flooder = sc.spawn(|| {
            let mut all = Vec::new();
            while all.len() < FLOOD_CONNS_MAX && !stop.load(Ordering::SeqCst) {
                let next = Instant::now() + FLOOD_PACE;
                let mut p = Peer::connect(rw.listen);
                p.send(&bytes);
                all.push(p.frames_until_close());
                done.fetch_add(1, Ordering::SeqCst);
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
            all
        });
        poll(IO_TIMEOUT, || {
            (done.load(Ordering::SeqCst) >= 1).then_some(())
        })
        .expect("a first flood connection closed");
        for i in 0..NORMAL_REQUESTS {
            normal_request(rw.listen, &format!("during-{i}"));
        }
        let after = done.load(Ordering::SeqCst) + 1;
        poll(IO_TIMEOUT, || {
            (done.load(Ordering::SeqCst) >= after.min(FLOOD_CONNS_MAX)).then_some(())
        })
        .expect("a flood connection after the normal requests");
        stop.store(true, Ordering::SeqCst);
        flooder.join().expect("flooder")
    });
    // And after the floods the shard serves as before.
    normal_request(rw.listen, "after");
    floods
}

/// Starts ringway in front of two `named` backends.
fn start_plain() -> (Ringway, Httpd, Httpd) {
    let (a, b) = (Httpd::named("a"), Httpd::named("b"));
    let rw = Ringway::start_text(|l, ad| config(l, ad, a.addr, b.addr, ""));
    (rw, a, b)
}

/// Every flood connection ended in GOAWAY ENHANCE_YOUR_CALM, and `h2_calm_closes` counted each
/// under `reason` (and under no other).
fn assert_calm(rw: &Ringway, floods: &[Vec<Frame>], reason: &str) {
    for frames in floods {
        assert_eq!(
            goaway(frames).code(),
            Some(ErrorCode::ENHANCE_YOUR_CALM.0),
            "{frames:?}"
        );
    }
    let n = floods.len() as u64;
    rw.assert_calm_closes(reason, n);
    assert_eq!(rw.total("h2_goaway_sent"), n);
}

/// Frames of `kind` with the ACK flag among `frames`.
fn acks(frames: &[Frame], kind: u8) -> usize {
    frames
        .iter()
        .filter(|f| f.kind == kind && f.flags & frame::FLAG_ACK != 0)
        .count()
}

// ---- the defences -------------------------------------------------------------------------------

#[test]
fn continuation_flood_ends_with_enhance_your_calm_while_others_are_served() {
    if !have("curl") {
        return;
    }
    let (rw, a, _b) = start_plain();
    // 2024 CONTINUATION flood: a field block that never ends, in many small frames (more than
    // the 20 frames a block may span), so the server would buffer and decode forever.
    let floods = flood_while_serving(&rw, |authority| {
        let mut out = preface(&[]);
        let block = request_block(authority, "/never");
        frame::write_frame(&mut out, TYPE_HEADERS, 0, 1, &block);
        for _ in 0..200 {
            frame::write_frame(&mut out, TYPE_CONTINUATION, 0, 1, b"x-pad: 0123456789");
        }
        out
    });
    assert_calm(&rw, &floods, "continuation");
    // And a block that stays under 20 frames but passes `head_size_max` (64 KiB) in big ones.
    let mut p = Peer::connect(rw.listen);
    let mut out = preface(&[]);
    frame::write_frame(&mut out, TYPE_HEADERS, 0, 1, &[0u8; 16_384]);
    for _ in 0..4 {
        frame::write_frame(&mut out, TYPE_CONTINUATION, 0, 1, &[0u8; 16_384]);
    }
    p.send(&out);
    let frames = p.frames_until_close();
    assert_eq!(goaway(&frames).code(), Some(ErrorCode::ENHANCE_YOUR_CALM.0));
    rw.assert_calm_closes("continuation", floods.len() as u64 + 1);
    // No unfinished block ever became a request.
    assert!(a.requests().is_empty());
}

#[test]
fn settings_flood_ends_with_enhance_your_calm_while_others_are_served() {
    if !have("curl") {
        return;
    }
    let (rw, _a, _b) = start_plain();
    const FLOOD: usize = 1000;
    let floods = flood_while_serving(&rw, |_| {
        let mut out = preface(&[]);
        for _ in 0..FLOOD {
            frame::write_settings(&mut out, &[]);
        }
        out
    });
    assert_calm(&rw, &floods, "settings_flood");
    let mut glitches = 0;
    for frames in &floods {
        // Each SETTINGS costs a glitch and an ACK: the first (§3.4) and the bucket's worth are
        // answered, then the connection ends long before the flood does.
        let acks = acks(frames, TYPE_SETTINGS);
        assert!(
            (1 + GLITCHES_MAX..FLOOD / 2).contains(&acks),
            "{acks} SETTINGS ACKs"
        );
        // Every SETTINGS after the first took a token: those answered, and the one refused.
        glitches += acks as u64;
    }
    assert_eq!(rw.total("h2_glitches"), glitches);
}

#[test]
fn ping_flood_ends_with_enhance_your_calm_while_others_are_served() {
    if !have("curl") {
        return;
    }
    let (rw, _a, _b) = start_plain();
    const FLOOD: usize = 1000;
    let floods = flood_while_serving(&rw, |_| {
        let mut out = preface(&[]);
        for i in 0..FLOOD as u64 {
            frame::write_ping(&mut out, false, i.to_be_bytes());
        }
        out
    });
    assert_calm(&rw, &floods, "ping_flood");
    let mut glitches = 0;
    for frames in &floods {
        // Every PING took a token: those answered, and the one refused.
        glitches += acks(frames, TYPE_PING) as u64 + 1;
        let acks: Vec<&Frame> = frames
            .iter()
            .filter(|f| f.kind == TYPE_PING && f.flags & frame::FLAG_ACK != 0)
            .collect();
        assert!(
            (GLITCHES_MAX..FLOOD / 2).contains(&acks.len()),
            "{} PING ACKs",
            acks.len()
        );
        // The ACKs echo the PINGs in order (§6.7).
        for (i, f) in acks.iter().enumerate() {
            assert_eq!(f.payload, (i as u64).to_be_bytes());
        }
    }
    assert_eq!(rw.total("h2_glitches"), glitches);
}

#[test]
fn hpack_bomb_ends_with_enhance_your_calm_while_others_are_served() {
    if !have("curl") {
        return;
    }
    let (rw, a, _b) = start_plain();
    // One 4 KiB field put in the dynamic table, then referenced by one byte each (static 61 +
    // dynamic 1 = index 62): 4 KiB in the frame decodes to 30 × 4 KiB, past the 64 KiB
    // SETTINGS_MAX_HEADER_LIST_SIZE (`head_size_max`).
    let floods = flood_while_serving(&rw, |authority| {
        let mut block = request_block(authority, "/bomb");
        block.push(0x40); // literal with incremental indexing, new name (§6.2.1)
        hpack_str(&mut block, b"x-bomb");
        hpack_str(&mut block, &[b'a'; 4000]);
        block.extend(std::iter::repeat_n(0x80 | 62, 30));
        assert!(block.len() < 16_384, "one frame");
        let mut out = preface(&[]);
        headers(&mut out, 1, &block, true);
        out
    });
    assert_calm(&rw, &floods, "hpack");
    assert!(a.requests().is_empty(), "a bomb reached the backend");
}

#[test]
fn empty_frame_and_priority_floods_end_with_enhance_your_calm_while_others_are_served() {
    if !have("curl") {
        return;
    }
    let (rw, _a, b) = start_plain();
    // DATA frames with neither payload nor END_STREAM on an open request: free to send, each
    // costs the server a frame's work (CVE-2019-9518).
    let floods = flood_while_serving(&rw, |authority| {
        let mut out = preface(&[]);
        let mut block = request_block(authority, "/b/upload");
        literal(&mut block, b"content-length", b"1");
        headers(&mut out, 1, &block, false);
        for _ in 0..1000 {
            frame::write_data(&mut out, 1, &[], false);
        }
        out
    });
    assert_calm(&rw, &floods, "glitches");
    let empty_data = floods.len() as u64;
    // PRIORITY frames (deprecated by RFC 9113, still legal on any stream): same bucket.
    let floods = flood_while_serving(&rw, |_| {
        let mut out = preface(&[]);
        for i in 0..1000u32 {
            // Stream 2i+1 depends on stream 0, weight 16.
            frame::write_frame(&mut out, TYPE_PRIORITY, 0, 2 * i + 1, &[0, 0, 0, 0, 15]);
        }
        out
    });
    for frames in &floods {
        assert_eq!(goaway(frames).code(), Some(ErrorCode::ENHANCE_YOUR_CALM.0));
    }
    let n = empty_data + floods.len() as u64;
    rw.assert_calm_closes("glitches", n);
    // Each flood connection took the whole bucket and one more.
    let glitches = rw.total("h2_glitches");
    assert!(glitches > n * GLITCHES_MAX as u64, "{glitches} glitches");
    // The uploads never completed: only the normal client's requests reached `b`.
    assert!(b.requests().iter().all(|r| r.method == "GET"));
}

#[test]
fn resets_ringway_is_made_to_send_are_bounded_while_others_are_served() {
    if !have("curl") {
        return;
    }
    let (rw, a, _b) = start_plain();
    // CVE-2025-8671 ("MadeYouReset"): requests the server must reset itself (here an uppercase
    // field name, §8.2.1) cost it a stream each without the client sending RST_STREAM.
    const FLOOD: u32 = 600;
    let floods = flood_while_serving(&rw, |authority| {
        let mut block = request_block(authority, "/reset-me");
        literal(&mut block, b"X-Upper", b"1");
        let mut out = preface(&[]);
        for i in 0..FLOOD {
            headers(&mut out, 2 * i + 1, &block, true);
        }
        out
    });
    assert_calm(&rw, &floods, "local_resets");
    let mut resets = 0u64;
    for frames in &floods {
        let rst: Vec<&Frame> = frames
            .iter()
            .filter(|f| f.kind == TYPE_RST_STREAM)
            .collect();
        assert!(
            rst.iter()
                .all(|f| f.code() == Some(ErrorCode::PROTOCOL_ERROR.0)),
            "{rst:?}"
        );
        // 500 resets allowed (`local_resets_max`); the 501st ends the connection instead.
        assert_eq!(rst.len(), 501, "RST_STREAM sent");
        resets += rst.len() as u64;
    }
    assert_eq!(rw.total("h2_resets_sent"), resets);
    assert!(a.requests().is_empty());
}

/// A backend `a` that holds every request for `/hold/...` until `release` is set.
fn holding_backend(release: &Arc<AtomicBool>) -> Httpd {
    let release = Arc::clone(release);
    Httpd::spawn(move |r| {
        if r.target.starts_with("/hold/") {
            // Bounded: the test sets `release`, or gives up after IO_TIMEOUT.
            poll(IO_TIMEOUT, || release.load(Ordering::SeqCst).then_some(()));
        }
        Reply::Bytes(ok(&format!("a {}", r.target)))
    })
}

/// Opens `n` streams (ids 1, 3, ...) held at the backend: with `n` the limit, the connection is
/// full.
fn fill_streams(p: &mut Peer, authority: &str, n: u32) {
    let mut out = preface(&[]);
    for i in 0..n {
        let block = request_block(authority, &format!("/hold/{i}"));
        headers(&mut out, 2 * i + 1, &block, true);
    }
    p.send(&out);
}

#[test]
fn streams_past_the_concurrent_limit_are_refused_and_the_rest_are_served() {
    refused_past(STREAMS_MAX, "");
}

#[test]
fn http2_streams_max_sets_the_limit_announced_and_enforced() {
    refused_past(3, "http2_streams_max = 3\n");
}

/// With `limit` streams held open, five more are refused one by one while a normal client is
/// served; then every held stream is answered. `listener`: extra listener lines.
fn refused_past(limit: u32, listener: &str) {
    if !have("curl") {
        return;
    }
    let release = Arc::new(AtomicBool::new(false));
    let (a, b) = (holding_backend(&release), Httpd::named("b"));
    let rw = Ringway::start_text(|l, ad| config_with(l, ad, (a.addr, b.addr), "", listener));
    let authority = rw.listen.to_string();
    let mut p = Peer::connect(rw.listen);
    fill_streams(&mut p, &authority, limit);
    poll(IO_TIMEOUT, || (!a.requests().is_empty()).then_some(()))
        .expect("the first stream reached the backend");
    // Five more while all are open: each is refused on its own (§5.1.2), safe to retry.
    let mut out = Vec::new();
    let extra: Vec<u32> = (limit..limit + 5).map(|i| 2 * i + 1).collect();
    for &id in &extra {
        headers(&mut out, id, &request_block(&authority, "/refused"), true);
    }
    p.send(&out);
    let mut refused = Vec::new();
    let mut announced = None;
    while refused.len() < extra.len() {
        let f = p
            .next_frame()
            .expect("RST_STREAM for the streams past the limit");
        assert_ne!(f.kind, TYPE_GOAWAY, "{f:?}");
        if f.kind == TYPE_SETTINGS && f.flags & frame::FLAG_ACK == 0 {
            announced = f
                .payload
                .chunks(6)
                .find(|s| s.get(..2) == Some(&[0, 3][..]))
                .and_then(|s| s.get(2..6))
                .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        }
        if f.kind == TYPE_RST_STREAM {
            assert_eq!(f.code(), Some(ErrorCode::REFUSED_STREAM.0), "{f:?}");
            refused.push(f.stream);
        }
    }
    assert_eq!(refused, extra);
    // SETTINGS_MAX_CONCURRENT_STREAMS (0x3) says the same limit.
    assert_eq!(announced, Some(limit));
    // The full connection does not hold up another one.
    for i in 0..NORMAL_REQUESTS {
        normal_request(rw.listen, &format!("during-{i}"));
    }
    assert_eq!(rw.total("h2_resets_sent"), extra.len() as u64);
    assert_eq!(rw.total("h2_streams_refused"), extra.len() as u64);
    // Each refusal is a glitch too (a flood of them is the next test).
    assert_eq!(rw.total("h2_glitches"), extra.len() as u64);
    assert_eq!(
        rw.total("h2_streams"),
        u64::from(limit) + NORMAL_REQUESTS as u64
    );
    // Released, every accepted stream is answered on the same connection.
    release.store(true, Ordering::SeqCst);
    let mut decoder = Decoder::new(4096);
    let limits = DecodeLimits {
        list_bytes_max: 64 * 1024,
        fields_max: 128,
    };
    let mut ended = std::collections::BTreeSet::new();
    while ended.len() < limit as usize {
        let f = p.next_frame().expect("responses to the held streams");
        match f.kind {
            TYPE_HEADERS => {
                let mut status = Vec::new();
                decoder
                    .decode(&f.payload, limits, &mut |n, v| {
                        if n == b":status" {
                            status = v.to_vec();
                        }
                    })
                    .expect("response block");
                assert_eq!(status, b"200", "stream {}", f.stream);
            }
            TYPE_DATA => {}
            _ => panic!("unexpected frame {f:?}"),
        }
        assert!(f.flags & frame::FLAG_PADDED == 0);
        if f.flags & FLAG_END_STREAM != 0 {
            assert!(f.stream < 2 * limit, "{f:?}");
            ended.insert(f.stream);
        }
    }
    assert_eq!(a.requests().len(), limit as usize);
    assert_eq!(rw.total("h2_calm_closes"), 0);
}

#[test]
fn a_flood_of_refused_streams_ends_with_enhance_your_calm_while_others_are_served() {
    if !have("curl") {
        return;
    }
    let release = Arc::new(AtomicBool::new(false));
    let (a, b) = (holding_backend(&release), Httpd::named("b"));
    let rw = Ringway::start_text(|l, ad| config(l, ad, a.addr, b.addr, ""));
    let authority = rw.listen.to_string();
    let mut p = Peer::connect(rw.listen);
    fill_streams(&mut p, &authority, STREAMS_MAX);
    poll(IO_TIMEOUT, || (!a.requests().is_empty()).then_some(()))
        .expect("the first stream reached the backend");
    // Streams opened only to be refused are glitches: past the bucket the connection ends.
    let mut out = Vec::new();
    let block = request_block(&authority, "/refused");
    for i in STREAMS_MAX..STREAMS_MAX + 1000 {
        headers(&mut out, 2 * i + 1, &block, true);
    }
    let curl = std::thread::spawn({
        let listen = rw.listen;
        move || {
            for i in 0..NORMAL_REQUESTS {
                normal_request(listen, &format!("during-{i}"));
            }
        }
    });
    p.send(&out);
    let frames = p.frames_until_close();
    curl.join().expect("normal client");
    assert_eq!(
        goaway(&frames).code(),
        Some(ErrorCode::ENHANCE_YOUR_CALM.0),
        "{frames:?}"
    );
    let refused = frames
        .iter()
        .filter(|f| f.kind == TYPE_RST_STREAM)
        .inspect(|f| assert_eq!(f.code(), Some(ErrorCode::REFUSED_STREAM.0), "{f:?}"))
        .count();
    assert!((GLITCHES_MAX..500).contains(&refused), "{refused} refused");
    rw.assert_calm_closes("glitches", 1);
    assert_eq!(rw.total("h2_resets_sent"), refused as u64);
    // The stream that emptied the bucket was refused too, by the GOAWAY instead of a reset.
    assert_eq!(rw.total("h2_streams_refused"), refused as u64 + 1);
    assert_eq!(rw.total("h2_glitches"), refused as u64 + 1);
    release.store(true, Ordering::SeqCst);
    normal_request(rw.listen, "after");
}

#[test]
fn clients_that_never_open_their_window_are_timed_out_and_memory_stays_bounded() {
    if !have("curl") {
        return;
    }
    const BIG: usize = 32 * 1024 * 1024;
    let body = Arc::new(vec![b'z'; BIG]);
    let served = Arc::clone(&body);
    let a = Httpd::spawn(move |r| {
        if r.target != "/big" {
            return Reply::Bytes(ok("small"));
        }
        let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
        out.extend_from_slice(&served);
        Reply::Bytes(out)
    });
    let b = Httpd::named("b");
    let client_idle = Duration::from_secs(2);
    let rw = Ringway::start_text(|l, ad| {
        let t = "server_idle = \"1s\"\nclient_idle = \"2s\"\n";
        config(l, ad, a.addr, b.addr, t)
    });
    // Warm: buffers and pools that a first exchange allocates are in the baseline.
    normal_request(rw.listen, "warm");
    let baseline_kib = rw.rss_kib();
    // SETTINGS_INITIAL_WINDOW_SIZE 0: no stream may receive a DATA byte, and no WINDOW_UPDATE
    // ever comes. One client is silent; the other sends a PING every 200 ms (well inside the
    // glitch bucket's refill), which keeps its connection busy but not its stream.
    let mut hello = preface(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]);
    headers(
        &mut hello,
        1,
        &request_block(&rw.listen.to_string(), "/big"),
        true,
    );
    let mut peers = [Peer::connect(rw.listen), Peer::connect(rw.listen)];
    for p in &mut peers {
        p.send(&hello);
    }
    let started = Instant::now();
    let until = started + IO_TIMEOUT;
    let mut peak_kib = baseline_kib;
    let mut heads = [false; 2];
    let mut ends: [Option<(Frame, Duration)>; 2] = [None, None];
    let mut pinged = Instant::now();
    let mut pings = 0u64;
    let mut served_during = false;
    while ends.iter().any(Option::is_none) {
        assert!(
            Instant::now() < until,
            "a stalled stream never ended: {ends:?}"
        );
        for (i, p) in peers.iter_mut().enumerate() {
            if ends[i].is_some() {
                continue;
            }
            let Some(f) = p.next_frame_by(Instant::now() + Duration::from_millis(50), &mut || {})
            else {
                assert!(!p.closed, "connection {i} closed");
                continue;
            };
            assert_ne!(f.kind, TYPE_DATA, "DATA past a zero window: {f:?}");
            match f.kind {
                TYPE_HEADERS => heads[i] = true,
                TYPE_RST_STREAM | TYPE_GOAWAY => ends[i] = Some((f, started.elapsed())),
                _ => {}
            }
        }
        peak_kib = peak_kib.max(rw.rss_kib());
        if ends[1].is_none() && pinged.elapsed() >= Duration::from_millis(200) {
            pings += 1;
            let mut ping = Vec::new();
            frame::write_ping(&mut ping, false, pings.to_be_bytes());
            peers[1].send(&ping);
            pinged = Instant::now();
        }
        if heads == [true; 2] && !served_during {
            // Both responses have started and are stuck on the window: others are served.
            normal_request(rw.listen, "during");
            served_during = true;
        }
    }
    assert!(served_during, "no response heads");
    for (end, elapsed) in ends.iter().flatten() {
        // `server_idle` ends the exchange (its backend side is not read), then `client_idle`
        // since the stream last moved ends the stream; the connection stays.
        assert_eq!(end.kind, TYPE_RST_STREAM, "{end:?}");
        assert_eq!(end.stream, 1);
        assert_eq!(end.code(), Some(ErrorCode::CANCEL.0), "{end:?}");
        assert!(
            *elapsed >= client_idle,
            "reset before client_idle: {elapsed:?}"
        );
    }
    assert!(pings >= 5, "{pings} PINGs");
    assert_eq!(rw.total("h2_resets_sent"), 2);
    assert_eq!(rw.total("idle_timeouts"), 4);
    // The two stream resets, not the two exchanges `server_idle` ended.
    assert_eq!(rw.total("h2_window_timeouts"), 2);
    assert_eq!(rw.total("h2_calm_closes"), 0);
    // 2 × 32 MiB were offered; ringway held no more than its bounded queues (docs/http.md: the
    // 64 KiB client queue and one stream's 64 KiB from the backend, per connection).
    let grown_kib = peak_kib.saturating_sub(baseline_kib);
    assert!(
        grown_kib < 8 * 1024,
        "VmRSS grew {grown_kib} KiB while two {BIG}-byte responses were stalled"
    );
    // Each connection goes on: a window opened for the next stream gets its response.
    for p in &mut peers {
        let mut out = Vec::new();
        headers(
            &mut out,
            3,
            &request_block(&rw.listen.to_string(), "/b/next"),
            true,
        );
        frame::write_settings(&mut out, &[(SETTINGS_INITIAL_WINDOW_SIZE, 65_535)]);
        p.send(&out);
        let next = loop {
            let f = p.next_frame().expect("the next stream's response");
            if f.kind == TYPE_DATA && f.stream == 3 {
                break f;
            }
        };
        assert_eq!(next.payload, b"b /b/next");
    }
}
