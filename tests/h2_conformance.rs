//! HTTP/2 conformance through the real binary, case by case after RFC 9113 and RFC 7541: a raw
//! client on a plain `http2 = true` listener (h2c with prior knowledge, RFC 9113 §3.3; one case
//! over TLS with ALPN `h2`) sends frames and HPACK blocks built here by hand, and each case checks
//! the exact error code and its reach (§5.4): a connection error is GOAWAY with the code, then the
//! close; a stream error is RST_STREAM on that stream, and the connection then serves a good
//! request on a new stream. The numbers (frame types, flags, codes, static table indexes) are
//! spelled out here from the RFCs rather than taken from `ringway::h2`, so the codec is checked
//! against the text, not against itself. Where ringway picks one of the answers the RFC allows,
//! the case says which and why.
//!
//! Run: `cargo test --test h2_conformance`. h2spec is a Go program packaged nowhere we can
//! install from (docs/design/h2.md, "Conformance test plan"); this suite stands in for it.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::certs::TestCa;
use common::h2raw::{self, Frame, code_name};
use common::httpd::{Httpd, Reply, ok};
use common::*;

// ---- RFC 9113 numbers ---------------------------------------------------------------------------

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// §6 frame types.
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

// §6 flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

// §6.5.2 settings.
const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
const SETTINGS_ENABLE_PUSH: u16 = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

// §7 error codes.
const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const SETTINGS_TIMEOUT: u32 = 0x4;
const STREAM_CLOSED: u32 = 0x5;
const FRAME_SIZE_ERROR: u32 = 0x6;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const COMPRESSION_ERROR: u32 = 0x9;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// SETTINGS_MAX_FRAME_SIZE's initial value (§6.5.2); ringway never raises it.
const FRAME_BYTES_MAX: usize = 16_384;
/// §6.9.1: the largest window.
const WINDOW_MAX: u32 = (1 << 31) - 1;
/// §6.9.2: every window starts here.
const DEFAULT_WINDOW: u32 = 65_535;
/// What ringway announces (docs/http.md, "HTTP/2"): MAX_CONCURRENT_STREAMS and
/// MAX_HEADER_LIST_SIZE (= `head_size_max`, 64 KiB by default), and its 128 fields per block.
const STREAMS_MAX: u32 = 100;
const HEADER_LIST_BYTES_MAX: usize = 64 * 1024;
const FIELDS_MAX: usize = 128;

/// How long one expectation waits for ringway before the case fails (the cases take
/// milliseconds; this only bounds a broken one).
const WAIT: Duration = Duration::from_secs(10);

// ---- frames, written and read by hand -----------------------------------------------------------

/// §4.1: the 9-byte header, then the payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    assert!(len < 1 << 24, "a frame length has 24 bits");
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// §6.5.1: identifier (16 bits) and value (32 bits) per parameter.
fn settings_payload(list: &[(u16, u32)]) -> Vec<u8> {
    list.iter()
        .flat_map(|&(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
        .collect()
}

// ---- HPACK, by hand (RFC 7541): static indexes and literals without indexing --------------------

/// The Appendix A entries the requests here use: (name, value, index).
const STATIC: [(&[u8], &[u8], usize); 9] = [
    (b":authority", b"", 1),
    (b":method", b"GET", 2),
    (b":method", b"POST", 3),
    (b":path", b"/", 4),
    (b":scheme", b"http", 6),
    (b":status", b"200", 8),
    (b"content-length", b"", 28),
    (b"host", b"", 38),
    (b"user-agent", b"", 58),
];

/// One field: the static entry when name and value match (§6.1), else a literal without
/// indexing (§6.2.2) naming a static entry or carrying its name. The dynamic table stays empty,
/// so every block is valid on any stream of any connection.
fn hpack_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    if let Some(&(_, _, i)) = STATIC.iter().find(|(n, v, _)| *n == name && *v == value) {
        hpack_int(out, 7, 0x80, i);
        return;
    }
    match STATIC.iter().find(|(n, _, _)| *n == name) {
        Some(&(_, _, i)) => hpack_int(out, 4, 0x00, i),
        None => {
            out.push(0x00);
            hpack_str(out, name);
        }
    }
    hpack_str(out, value);
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn block(fields: &Fields) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in fields {
        hpack_field(&mut b, n, v);
    }
    b
}

fn field(name: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
    (name.as_bytes().to_vec(), value.as_bytes().to_vec())
}

// ---- ringway and its backend --------------------------------------------------------------------

/// One shard, a plain h2c listener; `/stall/` goes to `stall` (a backend that accepts and never
/// reads, for flow control), the rest to `a`, which answers `a <target>`.
fn config(listen: u16, admin: u16, a: SocketAddr, stall: SocketAddr, extra: &str) -> String {
    format!(
        "[global]\nshards = 1\nadmin = \"127.0.0.1:{admin}\"\n\n\
         [timeouts]\nconnect = \"2s\"\n\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"a\"\n\
         http2 = true\n\n\
         [[listener.route]]\npath_prefix = \"/stall/\"\nbackend = \"stall\"\n\n\
         {extra}\n\
         [[backend]]\nname = \"a\"\nservers = [ {{ address = \"{a}\" }} ]\n\
         [[backend]]\nname = \"stall\"\nservers = [ {{ address = \"{stall}\" }} ]\n"
    )
}

/// A backend that accepts connections and never reads from them (nor answers): what ringway
/// writes towards it stops moving once the socket buffers are full.
fn stall_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind stall backend");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        // Held for the test process's life: closing one would let ringway's writes fail.
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    addr
}

/// Backend `a`: `a <target>` at once; `/hang/...` is never answered (the stream stays open on
/// ringway's side for as long as a case needs it).
fn backend_a() -> Httpd {
    Httpd::spawn(|r| {
        if r.target.starts_with("/hang/") {
            return Reply::Hang(Duration::from_secs(10));
        }
        Reply::Bytes(ok(&format!("a {}", r.target)))
    })
}

struct Rig {
    rw: Ringway,
    a: Httpd,
}

impl Rig {
    /// ringway in front of backend `a`; `/stall/` goes to `a` too.
    fn start() -> Rig {
        let a = backend_a();
        let stall = a.addr;
        let rw = Ringway::start_text(|l, ad| config(l, ad, a.addr, stall, ""));
        Rig { rw, a }
    }

    /// As `start`, with `edit` applied to the config text and `RUST_LOG` set to `log` (its
    /// debug lines go to `rw.stderr()`).
    fn start_with(edit: impl Fn(String) -> String, log: &str) -> Rig {
        let a = backend_a();
        let stall = a.addr;
        let rw = Ringway::start_text_with(
            |l, ad| edit(config(l, ad, a.addr, stall, "")),
            |c| c.env("RUST_LOG", log),
        );
        Rig { rw, a }
    }

    /// As `start`, with `/stall/` going to a backend that never reads.
    fn start_stalling() -> Rig {
        let a = backend_a();
        let stall = stall_backend();
        let rw = Ringway::start_text(|l, ad| config(l, ad, a.addr, stall, ""));
        Rig { rw, a }
    }

    /// A connection that has sent the preface and an empty SETTINGS (not flushed yet: the
    /// case's first frames go out in the same write).
    fn client(&self) -> Client {
        let mut c = self.raw();
        c.out.extend_from_slice(PREFACE);
        c.push(SETTINGS, 0, 0, &[]);
        c
    }

    /// A connection that has sent nothing.
    fn raw(&self) -> Client {
        Client::plain(self.rw.listen)
    }
}

// ---- a raw client -------------------------------------------------------------------------------

trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

struct Client {
    io: Box<dyn Io>,
    /// The TCP socket under `io` (for a writer thread on plain connections).
    tcp: TcpStream,
    authority: String,
    /// Bytes to send at the next flush.
    out: Vec<u8>,
    buf: Vec<u8>,
    closed: bool,
    /// Every frame read so far, for failure messages.
    seen: Vec<Frame>,
}

impl Client {
    fn plain(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).expect("connect");
        let io = Box::new(tcp.try_clone().expect("clone"));
        Client::over(io, tcp, addr)
    }

    fn over(io: Box<dyn Io>, tcp: TcpStream, addr: SocketAddr) -> Client {
        tcp.set_nodelay(true).expect("nodelay");
        // Short reads, so that each expectation keeps its own deadline.
        tcp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        Client {
            io,
            tcp,
            authority: addr.to_string(),
            out: Vec::new(),
            buf: Vec::new(),
            closed: false,
            seen: Vec::new(),
        }
    }

    // -- writing

    fn push(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> &mut Client {
        self.out
            .extend_from_slice(&frame(kind, flags, stream, payload));
        self
    }

    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let out = std::mem::take(&mut self.out);
        // ringway may have closed already (that is what some cases wait for).
        let _ = self.io.write_all(&out).and_then(|()| self.io.flush());
    }

    fn settings(&mut self, list: &[(u16, u32)]) -> &mut Client {
        self.push(SETTINGS, 0, 0, &settings_payload(list))
    }

    fn headers(&mut self, stream: u32, fields: &Fields, flags: u8) -> &mut Client {
        self.push(HEADERS, flags, stream, &block(fields))
    }

    /// A whole request head on `stream`; `end_stream`: no body follows.
    fn request(&mut self, stream: u32, fields: &Fields, end_stream: bool) -> &mut Client {
        let es = if end_stream { END_STREAM } else { 0 };
        self.headers(stream, fields, END_HEADERS | es)
    }

    fn data(&mut self, stream: u32, bytes: &[u8], end_stream: bool) -> &mut Client {
        let es = if end_stream { END_STREAM } else { 0 };
        self.push(DATA, es, stream, bytes)
    }

    fn window_update(&mut self, stream: u32, increment: u32) -> &mut Client {
        self.push(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
    }

    fn rst_stream(&mut self, stream: u32, code: u32) -> &mut Client {
        self.push(RST_STREAM, 0, stream, &code.to_be_bytes())
    }

    /// `GET http://<authority><path>`.
    fn get_fields(&self, path: &str) -> Fields {
        vec![
            field(":method", "GET"),
            field(":scheme", "http"),
            field(":authority", &self.authority),
            field(":path", path),
        ]
    }

    /// `POST http://<authority><path>`.
    fn post_fields(&self, path: &str) -> Fields {
        let mut f = self.get_fields(path);
        f[0] = field(":method", "POST");
        f
    }

    // -- reading

    fn take_frame(&mut self) -> Option<Frame> {
        h2raw::take_frame(&mut self.buf)
    }

    /// Reads more bytes; false once ringway closed or `until` passed.
    fn fill(&mut self, until: Instant) -> bool {
        let mut tmp = [0u8; 65536];
        while !self.closed && Instant::now() < until {
            match self.io.read(&mut tmp) {
                Ok(0) => self.closed = true,
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return true;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // A reset after ringway's last frame (it closed with our bytes unread), or TLS
                // without close_notify: either way the connection is over.
                Err(_) => self.closed = true,
            }
        }
        false
    }

    /// The next frame, or None once ringway closed (or `WAIT` passed: the caller's assertion
    /// then fails with what was seen).
    fn next_frame(&mut self, until: Instant) -> Option<&Frame> {
        loop {
            if let Some(f) = self.take_frame() {
                self.seen.push(f);
                return self.seen.last();
            }
            if !self.fill(until) {
                return None;
            }
        }
    }

    /// Reads until `pred` holds for a frame; panics (with what was seen) if ringway closes or
    /// sends GOAWAY or an RST_STREAM that `pred` does not accept first.
    fn until(&mut self, what: &str, pred: impl Fn(&Frame) -> bool) -> &Frame {
        self.flush();
        let until = Instant::now() + WAIT;
        let mut found = None;
        while let Some(f) = self.next_frame(until) {
            if pred(f) {
                found = Some(self.seen.len() - 1);
                break;
            }
            if matches!(f.kind, GOAWAY | RST_STREAM) {
                break;
            }
        }
        match found {
            Some(i) => &self.seen[i],
            None => panic!(
                "waiting for {what}: closed {}, frames {:?}",
                self.closed, self.seen
            ),
        }
    }

    /// §5.4.1: GOAWAY with `code` is the last frame, then ringway closes. Returns the GOAWAY's
    /// last-stream-id.
    fn expect_connection_error(&mut self, code: u32) -> u32 {
        self.flush();
        let until = Instant::now() + WAIT;
        while self.next_frame(until).is_some() {}
        assert!(
            self.closed,
            "ringway kept the connection open: {:?}",
            self.seen
        );
        let goaways: Vec<&Frame> = self.seen.iter().filter(|f| f.kind == GOAWAY).collect();
        assert_eq!(goaways.len(), 1, "one GOAWAY: {:?}", self.seen);
        let last = self.seen.last().expect("a frame");
        assert_eq!(last.kind, GOAWAY, "GOAWAY comes last: {:?}", self.seen);
        assert_eq!(
            last.code().map(code_name),
            Some(code_name(code)),
            "{:?}",
            self.seen
        );
        let p = &last.payload;
        u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff
    }

    /// §5.4.2: RST_STREAM on `stream` with `code`, and no GOAWAY before it.
    fn expect_stream_error(&mut self, stream: u32, code: u32) {
        let f = self.until(&format!("RST_STREAM on stream {stream}"), |f| {
            f.kind == RST_STREAM && f.stream == stream
        });
        let got = f.code();
        assert_eq!(
            got.map(code_name),
            Some(code_name(code)),
            "RST_STREAM code: {:?}",
            self.seen
        );
    }

    /// The connection still serves: `GET /ok/<stream>` on `stream` gets 200 and backend `a`'s
    /// body, its last frame ending the stream.
    fn expect_served(&mut self, stream: u32) {
        let path = format!("/ok/{stream}");
        let fields = self.get_fields(&path);
        self.request(stream, &fields, true);
        self.expect_response(stream, &path);
    }

    /// The response on `stream` to a request for `path` that went to backend `a`.
    fn expect_response(&mut self, stream: u32, path: &str) {
        // Read already while waiting for another stream's?
        if !self
            .seen
            .iter()
            .any(|f| f.stream == stream && f.ends_stream())
        {
            self.until(&format!("the response on stream {stream}"), |f| {
                f.stream == stream && f.ends_stream()
            });
        }
        let mine: Vec<&Frame> = self.seen.iter().filter(|f| f.stream == stream).collect();
        let head = mine
            .iter()
            .find(|f| f.kind == HEADERS)
            .expect("a HEADERS frame");
        // ringway's encoder sends `:status: 200` as static entry 8 first (RFC 7541 §6.1),
        // after the table size updates it owes, if any (§4.2).
        let (_, fields) = skip_size_updates(&head.payload);
        assert_eq!(
            fields.first(),
            Some(&0x88),
            "status 200 first: {:?}",
            self.seen
        );
        let body: Vec<u8> = mine
            .iter()
            .filter(|f| f.kind == DATA)
            .flat_map(|f| f.payload.iter().copied())
            .collect();
        assert_eq!(String::from_utf8_lossy(&body), format!("a {path}"));
    }
}

/// The dynamic table size updates at the start of a field block (RFC 7541 §6.3), and the rest.
fn skip_size_updates(block: &[u8]) -> (Vec<usize>, &[u8]) {
    let mut sizes = Vec::new();
    let mut at = 0;
    while let Some(&b) = block.get(at).filter(|&&b| b & 0xe0 == 0x20) {
        at += 1;
        let mut size = usize::from(b & 0x1f);
        if size == 0x1f {
            let mut shift = 0;
            while let Some(&c) = block.get(at) {
                at += 1;
                size += usize::from(c & 0x7f) << shift;
                shift += 7;
                if c & 0x80 == 0 {
                    break;
                }
            }
        }
        sizes.push(size);
    }
    (sizes, &block[at..])
}

/// A stream error on `stream`, then a good request on `next` (a new stream) is served.
fn expect_stream_error_then_served(c: &mut Client, stream: u32, code: u32, next: u32) {
    c.expect_stream_error(stream, code);
    c.expect_served(next);
}

// ---- §3.4 connection preface --------------------------------------------------------------------

/// A TLS listener with ALPN `h2`: the connection is HTTP/2 before its first byte.
fn tls_client(ca: &TestCa, addr: SocketAddr) -> Client {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(ca.ca_der.clone()))
        .expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).expect("connect");
    let conn = rustls::ClientConnection::new(
        Arc::new(cfg),
        rustls_pki_types::ServerName::try_from("a.test").expect("name"),
    )
    .expect("client");
    let io = Box::new(rustls::StreamOwned::new(
        conn,
        tcp.try_clone().expect("clone"),
    ));
    Client::over(io, tcp, addr)
}

#[test]
fn s3_4_bad_preface_over_tls_h2_is_goaway_protocol_error() {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf("a", "a.test", &["a.test"]);
    let a = backend_a();
    let tls_port = free_port();
    let _rw = Ringway::start_text(|l, ad| {
        let extra = h2_tls_listener(tls_port, &cert, &key);
        config(l, ad, a.addr, a.addr, &extra)
    });
    let addr: SocketAddr = format!("127.0.0.1:{tls_port}").parse().expect("addr");
    let mut c = tls_client(&ca, addr);
    // ALPN chose h2, so these 24 bytes must be the preface (§3.4); they differ at "SM".
    c.out.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n");
    c.expect_connection_error(PROTOCOL_ERROR);
    // And a right preface on the same listener is served.
    let mut c = tls_client(&ca, addr);
    c.out.extend_from_slice(PREFACE);
    c.settings(&[]);
    c.expect_served(1);
}

#[test]
fn s3_4_bad_preface_on_h2c_is_not_http2_and_the_connection_closes() {
    let rig = Rig::start();
    let mut c = rig.raw();
    // On a plain listener only the exact preface selects HTTP/2 (prior knowledge, §3.3); these
    // bytes are therefore an HTTP/1.1 request line with version 2.0, refused as HTTP/1.1 does.
    c.out.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n");
    c.flush();
    let until = Instant::now() + WAIT;
    while c.fill(until) {}
    assert!(c.closed, "the connection closes");
    let text = String::from_utf8_lossy(&c.buf);
    assert!(
        text.starts_with("HTTP/1.1 505 "),
        "an HTTP/1.1 refusal, no HTTP/2 frame: {text:?}"
    );
}

#[test]
fn s3_4_first_frame_other_than_settings_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.raw();
    c.out.extend_from_slice(PREFACE);
    c.push(PING, 0, 0, &[0; 8]);
    c.expect_connection_error(PROTOCOL_ERROR);
    // A SETTINGS ACK is not the client's SETTINGS either.
    let mut c = rig.raw();
    c.out.extend_from_slice(PREFACE);
    c.push(SETTINGS, ACK, 0, &[]);
    c.expect_connection_error(PROTOCOL_ERROR);
}

#[test]
fn s3_4_server_preface_is_settings_and_ringway_acks_ours() {
    let rig = Rig::start();
    let mut c = rig.client();
    // An unknown setting must be ignored (§6.5.2), and acknowledged like the rest.
    c.settings(&[(0x00fe, 12345)]);
    let first = c.until("ringway's SETTINGS", |f| f.kind == SETTINGS);
    let (flags, payload) = (first.flags, first.payload.clone());
    assert_eq!(c.seen.len(), 1, "§3.4: the server preface comes first");
    assert_eq!(flags & ACK, 0);
    let announced: Vec<(u16, u32)> = payload
        .chunks_exact(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    assert!(
        announced.contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, STREAMS_MAX)),
        "{announced:?}"
    );
    // Two SETTINGS of ours (the preface's and the one above): two ACKs, in order.
    for n in 1..=2 {
        let ack = c.until(&format!("SETTINGS ACK {n}"), |f| {
            f.kind == SETTINGS && f.flags & ACK != 0
        });
        assert!(ack.payload.is_empty(), "§6.5: an ACK carries nothing");
        assert_eq!(ack.stream, 0);
    }
    c.expect_served(1);
}

#[test]
fn s6_5_3_settings_never_acknowledged_end_with_settings_timeout() {
    // §6.5.3: a connection error SETTINGS_TIMEOUT is allowed when the ACK does not come in "a
    // reasonable time"; ringway gives it `http_request` (10 s unless set, 500 ms here).
    let rig = Rig::start_with(
        |c| {
            c.replace(
                "connect = \"2s\"\n",
                "connect = \"2s\"\nhttp_request = \"500ms\"\n",
            )
        },
        "ringway=info",
    );
    let started = Instant::now();
    // A client that ACKs is not affected: it is served after the same time.
    let mut acked = rig.client();
    acked.push(SETTINGS, ACK, 0, &[]).flush();
    // Its SETTINGS, never an ACK of ringway's; its request is served meanwhile.
    let mut c = rig.client();
    c.expect_served(1);
    assert_eq!(c.expect_connection_error(SETTINGS_TIMEOUT), 1);
    assert!(started.elapsed() >= Duration::from_millis(500));
    acked.expect_served(1);
}

// ---- §4.1, §4.2 frame format and size -----------------------------------------------------------

#[test]
fn s4_2_data_past_max_frame_size_is_frame_size_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.post_fields("/big");
    c.request(1, &fields, false);
    // ringway may answer this one on the stream or the connection (§4.2); it refuses from the
    // header alone, before buffering a payload it did not allow, so for the connection.
    c.data(1, &vec![b'x'; FRAME_BYTES_MAX + 1], true);
    c.expect_connection_error(FRAME_SIZE_ERROR);
}

#[test]
fn s4_2_headers_past_max_frame_size_is_connection_frame_size_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let mut fields = c.get_fields("/big");
    fields.push(field("x-pad", &"p".repeat(FRAME_BYTES_MAX)));
    c.request(1, &fields, true);
    // §4.2: a frame carrying a field block alters the connection (HPACK state): MUST be a
    // connection error.
    c.expect_connection_error(FRAME_SIZE_ERROR);
}

#[test]
fn s4_2_data_of_exactly_max_frame_size_is_accepted() {
    let rig = Rig::start();
    let mut c = rig.client();
    let mut fields = c.post_fields("/ok/1");
    fields.push(field("content-length", &FRAME_BYTES_MAX.to_string()));
    c.request(1, &fields, false);
    c.data(1, &vec![b'x'; FRAME_BYTES_MAX], true);
    c.expect_response(1, "/ok/1");
}

#[test]
fn s4_1_unknown_frame_types_and_flags_are_ignored() {
    let rig = Rig::start();
    let mut c = rig.client();
    // §4.1, §5.5: unknown types are ignored, on any stream, idle or not.
    c.push(0x42, 0xff, 0, b"whatever");
    c.push(0xfa, 0x00, 7, b"more");
    // Unknown flags on a known frame are ignored too (§4.1).
    c.push(PING, 0xfe, 0, b"12345678");
    c.expect_served(1);
    let pong = c
        .seen
        .iter()
        .find(|f| f.kind == PING)
        .expect("the PING's ACK");
    assert_eq!(pong.flags, ACK);
    assert_eq!(pong.payload, b"12345678");
}

#[test]
fn s6_5_settings_length_not_a_multiple_of_6_is_frame_size_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.push(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100, 0]);
    c.expect_connection_error(FRAME_SIZE_ERROR);
}

#[test]
fn s6_5_settings_ack_with_a_payload_is_frame_size_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.push(
        SETTINGS,
        ACK,
        0,
        &settings_payload(&[(SETTINGS_ENABLE_PUSH, 0)]),
    );
    c.expect_connection_error(FRAME_SIZE_ERROR);
}

#[test]
fn s6_7_ping_length_other_than_8_is_frame_size_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.push(PING, 0, 0, b"1234567");
    c.expect_connection_error(FRAME_SIZE_ERROR);
}

#[test]
fn s6_9_window_update_length_other_than_4_is_frame_size_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.push(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0, 1]);
    c.expect_connection_error(FRAME_SIZE_ERROR);
}

#[test]
fn s6_4_rst_stream_length_other_than_4_is_frame_size_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.post_fields("/open");
    c.request(1, &fields, false);
    c.push(RST_STREAM, 0, 1, &[0, 0, 8]);
    c.expect_connection_error(FRAME_SIZE_ERROR);
}

#[test]
fn s4_2_frames_too_short_for_their_fields_are_frame_size_error() {
    let rig = Rig::start();
    // HEADERS with PRIORITY set and no room for its 5 octets; DATA with PADDED and no Pad
    // Length octet. §4.2: "too small to contain mandatory frame data".
    let cases: [(&str, u8, u8, Vec<u8>); 2] = [
        (
            "HEADERS",
            HEADERS,
            PRIORITY_FLAG | END_HEADERS | END_STREAM,
            vec![0, 0, 0],
        ),
        ("DATA", DATA, PADDED, Vec::new()),
    ];
    for (name, kind, flags, payload) in cases {
        let mut c = rig.client();
        let fields = c.post_fields("/open");
        if kind == DATA {
            c.request(1, &fields, false);
        }
        c.push(kind, flags, 1, &payload);
        eprintln!("{name}");
        c.expect_connection_error(FRAME_SIZE_ERROR);
    }
}

#[test]
fn s4_1_reserved_bit_of_the_stream_id_is_ignored() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.get_fields("/ok/1");
    c.push(
        HEADERS,
        END_HEADERS | END_STREAM,
        0x8000_0001,
        &block(&fields),
    );
    c.expect_response(1, "/ok/1");
}

#[test]
fn s6_3_priority_length_other_than_5_is_a_stream_frame_size_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.post_fields("/open");
    c.request(1, &fields, false);
    // §6.3: the one frame-size error that reaches only its stream.
    c.push(PRIORITY, 0, 1, &[0, 0, 0, 0]);
    expect_stream_error_then_served(&mut c, 1, FRAME_SIZE_ERROR, 3);
}

// ---- §5.1 stream states and identifiers ---------------------------------------------------------

#[test]
fn s5_1_data_on_an_idle_stream_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.data(1, b"early", true);
    c.expect_connection_error(PROTOCOL_ERROR);
}

#[test]
fn s5_1_rst_stream_on_an_idle_stream_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.rst_stream(1, CANCEL);
    c.expect_connection_error(PROTOCOL_ERROR);
}

#[test]
fn s5_1_window_update_on_an_idle_stream_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.window_update(1, 100);
    c.expect_connection_error(PROTOCOL_ERROR);
}

#[test]
fn s5_1_priority_on_an_idle_stream_is_allowed() {
    let rig = Rig::start();
    let mut c = rig.client();
    // §5.1 idle: PRIORITY is one of the two frames allowed; stream 3 depends on 0, weight 16.
    c.push(PRIORITY, 0, 3, &[0, 0, 0, 0, 15]);
    c.expect_served(1);
    c.expect_served(3);
}

#[test]
fn s5_1_1_even_client_stream_id_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.get_fields("/even");
    c.request(2, &fields, true);
    c.expect_connection_error(PROTOCOL_ERROR);
}

#[test]
fn s5_1_1_decreasing_stream_id_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.expect_served(5);
    let fields = c.get_fields("/back");
    c.request(3, &fields, true);
    // §6.8: the last stream id is the highest one ringway took up.
    assert_eq!(c.expect_connection_error(PROTOCOL_ERROR), 5);
}

#[test]
fn s5_1_headers_on_a_half_closed_remote_stream_is_stream_closed() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.get_fields("/hang/1");
    // END_STREAM: stream 1 is half-closed (remote) while its response is pending (§5.1).
    c.request(1, &fields, true);
    c.request(1, &fields, true);
    expect_stream_error_then_served(&mut c, 1, STREAM_CLOSED, 3);
}

#[test]
fn s5_1_data_after_end_stream_on_a_half_closed_remote_stream_is_stream_closed() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.get_fields("/hang/1");
    c.request(1, &fields, true);
    c.data(1, b"late", true);
    expect_stream_error_then_served(&mut c, 1, STREAM_CLOSED, 3);
}

#[test]
fn s5_1_data_on_a_closed_stream_is_stream_closed() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.expect_served(1);
    // Both sides ended stream 1. §6.1 asks for a stream error STREAM_CLOSED; §5.1 would allow
    // a connection error: ringway keeps the connection.
    c.data(1, b"late", true);
    expect_stream_error_then_served(&mut c, 1, STREAM_CLOSED, 3);
}

#[test]
fn s5_1_frames_after_the_client_reset_a_stream_are_stream_closed() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.post_fields("/hang/1");
    c.request(1, &fields, false);
    c.rst_stream(1, CANCEL);
    // §5.1 closed: after RST_STREAM, any frame but PRIORITY is a stream error STREAM_CLOSED.
    c.data(1, b"late", true);
    expect_stream_error_then_served(&mut c, 1, STREAM_CLOSED, 3);
}

#[test]
fn s5_1_headers_after_the_client_reset_a_stream_is_stream_closed() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.post_fields("/hang/1");
    c.request(1, &fields, false);
    c.rst_stream(1, CANCEL);
    // §5.1 asks for a stream error STREAM_CLOSED; ringway ends the connection with that code
    // instead, which §5.4 allows for any stream error: a field block on a stream it no longer
    // has is not worth decoding for a client this confused.
    c.request(1, &fields, true);
    c.expect_connection_error(STREAM_CLOSED);
}

#[test]
fn s5_1_headers_on_a_closed_stream_is_stream_closed() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.expect_served(1);
    // §5.1 closed: a connection error STREAM_CLOSED is allowed, and chosen.
    let fields = c.get_fields("/again");
    c.request(1, &fields, true);
    c.expect_connection_error(STREAM_CLOSED);
}

#[test]
fn s5_1_window_update_rst_stream_and_priority_on_a_closed_stream_are_ignored() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.expect_served(1);
    // §5.1 closed: WINDOW_UPDATE and RST_STREAM may cross the END_STREAM in flight, PRIORITY
    // is allowed in every state.
    c.window_update(1, 100);
    c.rst_stream(1, CANCEL);
    c.push(PRIORITY, 0, 1, &[0, 0, 0, 0, 15]);
    c.expect_served(3);
    assert!(c.seen.iter().all(|f| f.kind != RST_STREAM), "{:?}", c.seen);
}

#[test]
fn s5_4_2_a_reset_from_the_client_is_not_answered_with_a_reset() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.post_fields("/hang/1");
    c.request(1, &fields, false);
    c.rst_stream(1, CANCEL);
    c.expect_served(3);
    // §5.4.2: "MUST NOT send a RST_STREAM in response to a RST_STREAM frame".
    assert!(c.seen.iter().all(|f| f.kind != RST_STREAM), "{:?}", c.seen);
}

#[test]
fn s6_frames_on_stream_0_that_need_a_stream_are_protocol_error() {
    let rig = Rig::start();
    let block = block(&get_with(|_| {}));
    let cases: [(&str, u8, u8, Vec<u8>); 5] = [
        ("DATA", DATA, END_STREAM, b"x".to_vec()),
        ("HEADERS", HEADERS, END_HEADERS | END_STREAM, block),
        ("RST_STREAM", RST_STREAM, 0, CANCEL.to_be_bytes().to_vec()),
        ("PRIORITY", PRIORITY, 0, vec![0, 0, 0, 1, 15]),
        ("CONTINUATION", CONTINUATION, END_HEADERS, vec![0x82]),
    ];
    for (name, kind, flags, payload) in cases {
        let mut c = rig.client();
        c.push(kind, flags, 0, &payload);
        eprintln!("{name} on stream 0");
        c.expect_connection_error(PROTOCOL_ERROR);
    }
}

#[test]
fn s6_connection_frames_on_a_stream_are_protocol_error() {
    let rig = Rig::start();
    let cases: [(&str, u8, Vec<u8>); 3] = [
        ("SETTINGS", SETTINGS, Vec::new()),
        ("PING", PING, b"12345678".to_vec()),
        ("GOAWAY", GOAWAY, vec![0; 8]),
    ];
    for (name, kind, payload) in cases {
        let mut c = rig.client();
        let fields = c.post_fields("/open");
        c.request(1, &fields, false);
        c.push(kind, 0, 1, &payload);
        eprintln!("{name} on stream 1");
        c.expect_connection_error(PROTOCOL_ERROR);
    }
}

#[test]
fn s8_4_push_promise_from_a_client_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.post_fields("/open");
    c.request(1, &fields, false);
    let mut p = 2u32.to_be_bytes().to_vec();
    p.extend_from_slice(&block(&c.get_fields("/pushed")));
    c.push(PUSH_PROMISE, END_HEADERS, 1, &p);
    c.expect_connection_error(PROTOCOL_ERROR);
}

#[test]
fn s5_1_2_streams_past_max_concurrent_streams_are_refused() {
    let rig = Rig::start();
    let mut c = rig.client();
    // 100 streams open and waiting for their bodies, then one more. §5.1.2: a stream error,
    // PROTOCOL_ERROR or REFUSED_STREAM; ringway says REFUSED_STREAM (the request was not
    // processed, safe to retry, §8.7).
    let ids: Vec<u32> = (0..STREAMS_MAX).map(|i| 2 * i + 1).collect();
    for &id in &ids {
        let fields = c.post_fields(&format!("/ok/{id}"));
        c.request(id, &fields, false);
    }
    let extra = 2 * STREAMS_MAX + 1;
    let fields = c.get_fields("/refused");
    c.request(extra, &fields, true);
    c.expect_stream_error(extra, REFUSED_STREAM);
    // The 100 end their bodies and are answered; then a new stream is served again.
    for &id in &ids {
        c.data(id, &[], true);
    }
    c.flush();
    for &id in &ids {
        c.expect_response(id, &format!("/ok/{id}"));
    }
    c.expect_served(extra + 2);
}

// ---- §6.5.2 SETTINGS values ---------------------------------------------------------------------

#[test]
fn s6_5_2_enable_push_other_than_0_or_1_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.settings(&[(SETTINGS_ENABLE_PUSH, 2)]);
    c.expect_connection_error(PROTOCOL_ERROR);
}

#[test]
fn s6_5_2_initial_window_size_past_2_31_minus_1_is_flow_control_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, WINDOW_MAX + 1)]);
    c.expect_connection_error(FLOW_CONTROL_ERROR);
}

#[test]
fn s6_5_2_max_frame_size_out_of_range_is_protocol_error() {
    let rig = Rig::start();
    for v in [(1 << 14) - 1, 1 << 24] {
        let mut c = rig.client();
        c.settings(&[(SETTINGS_MAX_FRAME_SIZE, v)]);
        eprintln!("SETTINGS_MAX_FRAME_SIZE {v}");
        c.expect_connection_error(PROTOCOL_ERROR);
    }
}

#[test]
fn s6_5_2_settings_at_their_bounds_and_unknown_ones_are_accepted() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.settings(&[
        (SETTINGS_ENABLE_PUSH, 0),
        (SETTINGS_INITIAL_WINDOW_SIZE, WINDOW_MAX),
        (SETTINGS_MAX_FRAME_SIZE, (1 << 24) - 1),
        (SETTINGS_HEADER_TABLE_SIZE, 0),
        (0x00fe, 7),
        (0xffff, u32::MAX),
    ]);
    c.expect_served(1);
    // RFC 7541 §4.2: the encoder acknowledges a smaller SETTINGS_HEADER_TABLE_SIZE with a
    // size update at the start of its next block.
    let head = c
        .seen
        .iter()
        .find(|f| f.kind == HEADERS && f.stream == 1)
        .expect("response HEADERS");
    assert_eq!(skip_size_updates(&head.payload).0, [0]);
    c.expect_served(3);
}

#[test]
fn s6_9_2_initial_window_size_pushing_a_stream_window_past_2_31_minus_1_is_flow_control_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.post_fields("/open");
    c.request(1, &fields, false);
    // Stream 1's send window to the maximum, then SETTINGS move it one further (§6.9.2: "MUST
    // be treated as a connection error of type FLOW_CONTROL_ERROR").
    c.window_update(1, WINDOW_MAX - DEFAULT_WINDOW);
    c.settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, DEFAULT_WINDOW + 1)]);
    c.expect_connection_error(FLOW_CONTROL_ERROR);
}

// ---- §6.7 PING ----------------------------------------------------------------------------------

#[test]
fn s6_7_ping_is_answered_with_ack_and_the_same_payload() {
    let rig = Rig::start();
    let mut c = rig.client();
    // A PING ACK from the client is not answered (§6.7); the next PING is, with its own data.
    c.push(PING, ACK, 0, b"not-this");
    c.push(PING, 0, 0, b"\x00\x01\x02\x03\xfc\xfd\xfe\xff");
    let pong = c.until("PING ACK", |f| f.kind == PING);
    assert_eq!(pong.flags, ACK);
    assert_eq!(pong.stream, 0);
    assert_eq!(pong.payload, b"\x00\x01\x02\x03\xfc\xfd\xfe\xff");
    c.expect_served(1);
}

// ---- §6.9 flow control --------------------------------------------------------------------------

#[test]
fn s6_9_window_update_of_0_on_the_connection_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.window_update(0, 0);
    c.expect_connection_error(PROTOCOL_ERROR);
}

#[test]
fn s6_9_window_update_of_0_on_a_stream_is_a_stream_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.post_fields("/open");
    c.request(1, &fields, false);
    c.window_update(1, 0);
    expect_stream_error_then_served(&mut c, 1, PROTOCOL_ERROR, 3);
}

#[test]
fn s6_9_1_connection_window_past_2_31_minus_1_is_flow_control_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    // 65 535 + (2^31 - 1): one past the largest window.
    c.window_update(0, WINDOW_MAX);
    c.expect_connection_error(FLOW_CONTROL_ERROR);
}

#[test]
fn s6_9_1_stream_window_past_2_31_minus_1_is_a_stream_flow_control_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.post_fields("/open");
    c.request(1, &fields, false);
    c.window_update(1, WINDOW_MAX);
    expect_stream_error_then_served(&mut c, 1, FLOW_CONTROL_ERROR, 3);
}

#[test]
fn s6_9_1_windows_up_to_2_31_minus_1_are_fine() {
    let rig = Rig::start();
    let mut c = rig.client();
    c.window_update(0, WINDOW_MAX - DEFAULT_WINDOW);
    c.expect_served(1);
}

#[test]
fn s6_9_1_data_past_the_stream_window_is_flow_control_error() {
    let rig = Rig::start_stalling();
    let mut c = rig.client();
    // The backend never reads: once ringway's buffers towards it are full, it stops handing
    // the body on and so stops opening stream 1's window. The client ignores that and goes on
    // sending (bounded: the socket buffers on the way hold far less than this).
    const SENT_MAX: usize = 256 * 1024 * 1024;
    let fields = c.post_fields("/stall/upload");
    c.request(1, &fields, false);
    c.flush();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let stop = Arc::clone(&stop);
        let mut tcp = c.tcp.try_clone().expect("clone");
        // Bounded even if ringway stopped reading altogether.
        tcp.set_write_timeout(Some(WAIT)).expect("write timeout");
        let chunk = frame(DATA, 0, 1, &vec![b'z'; FRAME_BYTES_MAX]);
        move || {
            let mut sent = 0;
            while !stop.load(Ordering::SeqCst) && sent < SENT_MAX {
                if tcp.write_all(&chunk).is_err() {
                    break;
                }
                sent += FRAME_BYTES_MAX;
            }
            sent
        }
    });
    let until = Instant::now() + WAIT;
    let mut code = None;
    while let Some(f) = c.next_frame(until) {
        assert_ne!(f.kind, GOAWAY, "a stream error, not the connection");
        if f.kind == RST_STREAM && f.stream == 1 {
            code = f.code();
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let sent = writer.join().expect("writer");
    assert_eq!(
        code.map(code_name),
        Some(code_name(FLOW_CONTROL_ERROR)),
        "after {sent} bytes: {:?}",
        c.seen
    );
    // The client did go past what ringway advertised for the stream (its initial window and
    // every WINDOW_UPDATE read before the reset), which is what the code is for (§6.9.1).
    let granted: u64 = c
        .seen
        .iter()
        .filter(|f| f.kind == WINDOW_UPDATE && f.stream == 1)
        .map(|f| {
            u64::from(u32::from_be_bytes([
                f.payload[0],
                f.payload[1],
                f.payload[2],
                f.payload[3],
            ]))
        })
        .sum();
    assert!(
        (sent as u64) > u64::from(DEFAULT_WINDOW) + granted,
        "sent {sent}, window {DEFAULT_WINDOW} + {granted}"
    );
    c.expect_served(3);
}

#[test]
fn s6_9_1_ringway_never_sends_past_the_client_window() {
    let rig = Rig::start();
    let mut c = rig.client();
    // A 5-byte stream window; it opens by 5 only after each DATA frame has arrived, so any
    // byte past what was granted shows as `got > granted`.
    c.settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 5)]);
    let path = format!("/ok/1/{}", "w".repeat(100));
    let fields = c.get_fields(&path);
    c.request(1, &fields, true);
    let (mut got, mut granted) = (0usize, 5usize);
    loop {
        let f = c.until("DATA on stream 1", |f| f.kind == DATA && f.stream == 1);
        let end = f.ends_stream();
        got += f.payload.len();
        assert!(got <= granted, "{got} bytes sent with {granted} granted");
        if end {
            break;
        }
        c.window_update(1, 5);
        granted += 5;
    }
    c.expect_response(1, &path);
    assert!(granted > 100, "the body went out in window-sized pieces");
}

// ---- §6.10 CONTINUATION -------------------------------------------------------------------------

#[test]
fn s6_10_continuation_without_headers_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let b = block(&c.get_fields("/orphan"));
    c.push(CONTINUATION, END_HEADERS, 1, &b);
    c.expect_connection_error(PROTOCOL_ERROR);
}

#[test]
fn s6_10_continuation_after_a_finished_block_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.post_fields("/open");
    c.request(1, &fields, false);
    c.push(CONTINUATION, END_HEADERS, 1, &[0x82]);
    c.expect_connection_error(PROTOCOL_ERROR);
}

#[test]
fn s6_10_other_frames_inside_a_field_block_are_protocol_error() {
    let rig = Rig::start();
    let b = block(&get_with(|_| {}));
    let (first, rest) = b.split_at(3);
    // Any frame but this stream's CONTINUATION, unknown types included, until END_HEADERS.
    let cases: [(&str, Vec<u8>); 5] = [
        ("PING", frame(PING, 0, 0, b"12345678")),
        ("DATA", frame(DATA, 0, 1, b"x")),
        ("unknown type", frame(0x42, 0, 0, b"x")),
        ("HEADERS", frame(HEADERS, END_HEADERS, 1, rest)),
        (
            "CONTINUATION of another stream",
            frame(CONTINUATION, END_HEADERS, 3, rest),
        ),
    ];
    for (name, between) in cases {
        let mut c = rig.client();
        c.push(HEADERS, END_STREAM, 1, first);
        c.out.extend_from_slice(&between);
        c.push(CONTINUATION, END_HEADERS, 1, rest);
        eprintln!("{name} inside the block");
        c.expect_connection_error(PROTOCOL_ERROR);
    }
}

#[test]
fn s6_10_a_block_split_over_continuations_is_one_request() {
    let rig = Rig::start();
    let mut c = rig.client();
    let b = block(&c.get_fields("/ok/1"));
    c.push(HEADERS, END_STREAM, 1, &b[..2]);
    c.push(CONTINUATION, 0, 1, &b[2..5]);
    c.push(CONTINUATION, 0, 1, &[]);
    c.push(CONTINUATION, END_HEADERS, 1, &b[5..]);
    c.expect_response(1, "/ok/1");
}

// ---- §6.1, §6.2, §5.3.1 padding and priority fields ---------------------------------------------

#[test]
fn s6_1_data_padding_as_long_as_the_payload_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.post_fields("/open");
    c.request(1, &fields, false);
    // Pad Length 3 with only 2 octets after it.
    c.push(DATA, PADDED, 1, &[3, 0, 0]);
    c.expect_connection_error(PROTOCOL_ERROR);
}

#[test]
fn s6_2_headers_padding_as_long_as_the_payload_is_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    let b = block(&c.get_fields("/pad"));
    let mut p = vec![(b.len() + 1) as u8];
    p.extend_from_slice(&b);
    c.push(HEADERS, PADDED | END_HEADERS | END_STREAM, 1, &p);
    c.expect_connection_error(PROTOCOL_ERROR);
}

#[test]
fn s6_1_s6_2_padded_frames_are_accepted() {
    let rig = Rig::start();
    let mut c = rig.client();
    let mut fields = c.post_fields("/ok/1");
    fields.push(field("content-length", "3"));
    let b = block(&fields);
    let mut p = vec![4];
    p.extend_from_slice(&b);
    p.extend_from_slice(&[0; 4]);
    c.push(HEADERS, PADDED | END_HEADERS, 1, &p);
    c.push(DATA, PADDED | END_STREAM, 1, &[2, b'a', b'b', b'c', 0, 0]);
    c.expect_response(1, "/ok/1");
}

#[test]
fn s5_3_1_a_stream_depending_on_itself_is_a_stream_protocol_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    // HEADERS with the PRIORITY flag: stream 1 depends on stream 1.
    let mut p = vec![0, 0, 0, 1, 15];
    p.extend_from_slice(&block(&c.get_fields("/self")));
    c.push(HEADERS, PRIORITY_FLAG | END_HEADERS | END_STREAM, 1, &p);
    expect_stream_error_then_served(&mut c, 1, PROTOCOL_ERROR, 3);
    // A PRIORITY frame doing the same on an open stream.
    let fields = c.post_fields("/open");
    c.request(5, &fields, false);
    c.push(PRIORITY, 0, 5, &[0, 0, 0, 5, 15]);
    expect_stream_error_then_served(&mut c, 5, PROTOCOL_ERROR, 7);
}

// ---- §8.2 fields, §8.3 pseudo-headers, §8.1 messages --------------------------------------------

/// Each request is malformed (§8.1.1): a stream error PROTOCOL_ERROR, one stream after another
/// on one connection, which still serves at the end.
fn expect_each_malformed(cases: Vec<(&str, Fields, bool)>) {
    let rig = Rig::start();
    let mut c = rig.client();
    let mut stream = 1;
    for (name, fields, end_stream) in cases {
        eprintln!("{name} on stream {stream}");
        c.request(stream, &fields, end_stream);
        c.expect_stream_error(stream, PROTOCOL_ERROR);
        stream += 2;
    }
    c.expect_served(stream);
}

/// `GET /bad` with `edit` applied.
fn get_with(edit: impl FnOnce(&mut Fields)) -> Fields {
    let mut f = vec![
        field(":method", "GET"),
        field(":scheme", "http"),
        field(":authority", "conformance.test"),
        field(":path", "/bad"),
    ];
    edit(&mut f);
    f
}

#[test]
fn s8_2_1_uppercase_and_invalid_field_names_are_malformed() {
    expect_each_malformed(vec![
        (
            "uppercase name",
            get_with(|f| f.push(field("X-Upper", "1"))),
            true,
        ),
        (
            "space in a name",
            get_with(|f| f.push(field("x bad", "1"))),
            true,
        ),
        ("empty name", get_with(|f| f.push(field("", "1"))), true),
    ]);
}

#[test]
fn s8_2_1_invalid_field_values_are_malformed() {
    expect_each_malformed(vec![
        ("CR LF", get_with(|f| f.push(field("x-v", "a\r\nb"))), true),
        ("NUL", get_with(|f| f.push(field("x-v", "a\0b"))), true),
        (
            "leading space",
            get_with(|f| f.push(field("x-v", " a"))),
            true,
        ),
        (
            "trailing tab",
            get_with(|f| f.push(field("x-v", "a\t"))),
            true,
        ),
    ]);
}

#[test]
fn s8_2_2_connection_specific_fields_are_malformed() {
    let cases = [
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
    ]
    .map(|(n, v)| (n, get_with(|f| f.push(field(n, v))), true));
    expect_each_malformed(cases.into());
}

#[test]
fn s8_2_2_te_other_than_trailers_is_malformed_and_te_trailers_is_fine() {
    let rig = Rig::start();
    let mut c = rig.client();
    let mut fields = c.get_fields("/te");
    fields.push(field("te", "gzip"));
    c.request(1, &fields, true);
    c.expect_stream_error(1, PROTOCOL_ERROR);
    let mut fields = c.get_fields("/ok/3");
    fields.push(field("te", "trailers"));
    c.request(3, &fields, true);
    c.expect_response(3, "/ok/3");
}

#[test]
fn s8_3_1_missing_pseudo_headers_are_malformed() {
    let without = |name: &'static str| get_with(move |f| f.retain(|(n, _)| n != name.as_bytes()));
    expect_each_malformed(vec![
        (":method missing", without(":method"), true),
        (":scheme missing", without(":scheme"), true),
        (":path missing", without(":path"), true),
    ]);
}

#[test]
fn s8_3_pseudo_header_rules() {
    expect_each_malformed(vec![
        (
            "duplicate :path",
            get_with(|f| f.push(field(":path", "/again"))),
            true,
        ),
        (
            "duplicate :method",
            get_with(|f| f.insert(1, field(":method", "GET"))),
            true,
        ),
        (
            "unknown pseudo-header",
            get_with(|f| f.push(field(":foo", "bar"))),
            true,
        ),
        (
            "pseudo-header after a regular field",
            get_with(|f| f.insert(3, field("user-agent", "x"))),
            true,
        ),
        (
            "response pseudo-header in a request",
            get_with(|f| f.push(field(":status", "200"))),
            true,
        ),
        ("empty :path", get_with(|f| f[3] = field(":path", "")), true),
        (
            "empty :method",
            get_with(|f| f[0] = field(":method", "")),
            true,
        ),
    ]);
}

#[test]
fn s8_3_1_host_naming_another_authority_is_malformed() {
    // §8.3.1: "SHOULD treat a request as malformed", and ringway does, for every `host` field.
    expect_each_malformed(vec![
        (
            "host differing from :authority",
            get_with(|f| f.push(field("host", "other.test"))),
            true,
        ),
        (
            "a second host differing from :authority",
            get_with(|f| {
                f.push(field("host", "conformance.test"));
                f.push(field("host", "other.test"));
            }),
            true,
        ),
    ]);
}

#[test]
fn s8_3_1_authority_that_is_not_host_and_port_is_malformed() {
    // §8.3.1: no userinfo in an http or https authority; RFC 3986 §3.2: `host [":" port]`.
    // Anything else would reach the backend as a Host naming something other than what was
    // routed.
    let mut cases: Vec<(&str, Fields, bool)> = [
        ("userinfo", "user@conformance.test"),
        ("userinfo with a password", "user:pw@conformance.test:80"),
        ("a space", "conformance .test"),
        ("a control byte", "conformance\x01.test"),
        ("a path", "conformance.test/admin"),
        ("a query", "conformance.test?x=1"),
        ("a port that is not a number", "conformance.test:http"),
        ("a port past 65535", "conformance.test:65536"),
        ("an empty :authority", ""),
        ("an unclosed IP literal", "[::1"),
    ]
    .into_iter()
    .map(|(name, v)| (name, get_with(|f| f[2] = field(":authority", v)), true))
    .collect();
    let host_only = get_with(|f| {
        f.remove(2);
        f.push(field("host", "user@conformance.test"));
    });
    cases.push(("no :authority, host with userinfo", host_only, true));
    expect_each_malformed(cases);
}

#[test]
fn s8_3_1_authorities_of_every_form_are_served() {
    let rig = Rig::start();
    let mut c = rig.client();
    let forms = [
        "conformance.test",
        "Conformance.Test:8080",
        "127.0.0.1:1",
        "[::1]:443",
        "xn--bcher-kva.test",
    ];
    for (i, authority) in forms.into_iter().enumerate() {
        let stream = 2 * i as u32 + 1;
        let path = format!("/ok/{stream}");
        let mut fields = c.get_fields(&path);
        fields[2] = field(":authority", authority);
        c.request(stream, &fields, true);
        c.expect_response(stream, &path);
    }
}

#[test]
fn stream_errors_are_logged_at_debug_with_the_stream_and_the_code() {
    let rig = Rig::start_with(|c| c, "ringway=debug");
    let mut c = rig.client();
    c.request(
        1,
        &get_with(|f| f[2] = field(":authority", "u@x.test")),
        true,
    );
    c.expect_stream_error(1, PROTOCOL_ERROR);
    c.expect_served(3);
    let want =
        "HTTP/2 stream error stream=1 code=PROTOCOL_ERROR error=malformed request: BadAuthority";
    let log = poll(WAIT, || {
        let log = rig.rw.stderr();
        log.contains(want).then_some(log)
    });
    assert!(log.is_some(), "{}", rig.rw.stderr());
    // One line per stream error: the request served has none.
    assert_eq!(rig.rw.stderr().matches("HTTP/2 stream error").count(), 1);
}

#[test]
fn s8_5_connect_with_scheme_and_path_is_malformed() {
    expect_each_malformed(vec![(
        "CONNECT with :scheme and :path",
        get_with(|f| f[0] = field(":method", "CONNECT")),
        true,
    )]);
}

#[test]
fn s8_1_1_content_length_not_matching_the_data_is_malformed() {
    let rig = Rig::start();
    let mut c = rig.client();
    let post = |c: &Client, path: &str, cl: &str| {
        let mut f = c.post_fields(path);
        f.push(field("content-length", cl));
        f
    };
    // Less than announced, then END_STREAM.
    let f = post(&c, "/short", "5");
    c.request(1, &f, false).data(1, b"abc", true);
    c.expect_stream_error(1, PROTOCOL_ERROR);
    // More than announced.
    let f = post(&c, "/long", "2");
    c.request(3, &f, false).data(3, b"abc", false);
    c.expect_stream_error(3, PROTOCOL_ERROR);
    // A length, but END_STREAM on the HEADERS.
    let f = post(&c, "/none", "4");
    c.request(5, &f, true);
    c.expect_stream_error(5, PROTOCOL_ERROR);
    // Two different lengths.
    let mut f = post(&c, "/two", "3");
    f.push(field("content-length", "4"));
    c.request(7, &f, false);
    c.expect_stream_error(7, PROTOCOL_ERROR);
    // A matching one goes through.
    let f = post(&c, "/ok/9", "3");
    c.request(9, &f, false).data(9, b"abc", true);
    c.expect_response(9, "/ok/9");
}

#[test]
fn s8_1_trailers_with_pseudo_headers_or_without_end_stream_are_malformed() {
    let rig = Rig::start();
    let mut c = rig.client();
    let f = c.post_fields("/trailers");
    c.request(1, &f, false).data(1, b"abc", false);
    c.request(1, &vec![field(":path", "/again")], true);
    c.expect_stream_error(1, PROTOCOL_ERROR);
    let f = c.post_fields("/trailers");
    c.request(3, &f, false).data(3, b"abc", false);
    c.request(3, &vec![field("x-checksum", "1")], false);
    c.expect_stream_error(3, PROTOCOL_ERROR);
    // Good trailers end a good request.
    let f = c.post_fields("/ok/5");
    c.request(5, &f, false).data(5, b"abc", false);
    c.request(5, &vec![field("x-checksum", "1")], true);
    c.expect_response(5, "/ok/5");
}

// ---- RFC 7541 HPACK: every decoding error ends the connection (RFC 9113 §4.3) -------------------

/// A request whose field block ends with `tail` (bytes after valid fields).
fn hpack_case(tail: &[u8]) {
    let rig = Rig::start();
    let mut c = rig.client();
    let mut b = block(&c.get_fields("/hpack"));
    b.extend_from_slice(tail);
    c.push(HEADERS, END_HEADERS | END_STREAM, 1, &b);
    c.expect_connection_error(COMPRESSION_ERROR);
}

#[test]
fn rfc7541_index_0_is_compression_error() {
    hpack_case(&[0x80]);
}

#[test]
fn rfc7541_index_past_both_tables_is_compression_error() {
    // 61 static entries and an empty dynamic table: 62 is past both (§2.3.3).
    hpack_case(&[0x80 | 62]);
    // And as a literal's name.
    let mut tail = Vec::new();
    hpack_int(&mut tail, 4, 0x00, 70);
    hpack_str(&mut tail, b"v");
    hpack_case(&tail);
}

#[test]
fn rfc7541_table_size_update_past_the_setting_is_compression_error() {
    let rig = Rig::start();
    let mut c = rig.client();
    // §6.3: past SETTINGS_HEADER_TABLE_SIZE (4096, the default ringway keeps).
    let mut b = Vec::new();
    hpack_int(&mut b, 5, 0x20, 4097);
    b.extend_from_slice(&block(&c.get_fields("/hpack")));
    c.push(HEADERS, END_HEADERS | END_STREAM, 1, &b);
    c.expect_connection_error(COMPRESSION_ERROR);
}

#[test]
fn rfc7541_table_size_update_after_a_field_is_compression_error() {
    // §4.2: a size update must come first in the block.
    let mut tail = Vec::new();
    hpack_int(&mut tail, 5, 0x20, 100);
    hpack_case(&tail);
}

#[test]
fn rfc7541_table_size_updates_within_the_setting_are_fine() {
    let rig = Rig::start();
    let mut c = rig.client();
    let mut b = Vec::new();
    hpack_int(&mut b, 5, 0x20, 0);
    hpack_int(&mut b, 5, 0x20, 4096);
    b.extend_from_slice(&block(&c.get_fields("/ok/1")));
    c.push(HEADERS, END_HEADERS | END_STREAM, 1, &b);
    c.expect_response(1, "/ok/1");
}

#[test]
fn rfc7541_dynamic_table_entries_carry_over_between_blocks_until_evicted() {
    let rig = Rig::start();
    let mut c = rig.client();
    // Stream 1 adds `x-dyn: one` (literal with incremental indexing, §6.2.1) as entry 62.
    let mut b = block(&c.get_fields("/ok/1"));
    b.push(0x40);
    hpack_str(&mut b, b"x-dyn");
    hpack_str(&mut b, b"one");
    c.push(HEADERS, END_HEADERS | END_STREAM, 1, &b);
    c.expect_response(1, "/ok/1");
    // Stream 3 refers to it by index, and adds a never-indexed literal (§6.2.3).
    let mut b = block(&c.get_fields("/ok/3"));
    b.push(0x80 | 62);
    b.push(0x10);
    hpack_str(&mut b, b"x-never");
    hpack_str(&mut b, b"n");
    c.push(HEADERS, END_HEADERS | END_STREAM, 3, &b);
    c.expect_response(3, "/ok/3");
    let reqs = rig.a.requests();
    let third = reqs
        .iter()
        .find(|r| r.target == "/ok/3")
        .expect("stream 3 at the backend");
    assert_eq!(third.header("x-dyn").as_deref(), Some("one"));
    assert_eq!(third.header("x-never").as_deref(), Some("n"));
    // A size update to 0 evicts everything (§4.3): entry 62 is gone.
    let mut b = Vec::new();
    hpack_int(&mut b, 5, 0x20, 0);
    b.extend_from_slice(&block(&c.get_fields("/gone")));
    b.push(0x80 | 62);
    c.push(HEADERS, END_HEADERS | END_STREAM, 5, &b);
    c.expect_connection_error(COMPRESSION_ERROR);
}

/// A literal `x-h` whose value is the Huffman string `coded` (§5.2).
fn huffman_value(coded: &[u8]) -> Vec<u8> {
    let mut tail = vec![0x00];
    hpack_str(&mut tail, b"x-h");
    hpack_int(&mut tail, 7, 0x80, coded.len());
    tail.extend_from_slice(coded);
    tail
}

#[test]
fn rfc7541_huffman_eos_is_compression_error() {
    // 32 one-bits: the 30-bit EOS code inside the string (§5.2: MUST be a decoding error).
    hpack_case(&huffman_value(&[0xff, 0xff, 0xff, 0xff]));
}

#[test]
fn rfc7541_huffman_padding_longer_than_7_bits_is_compression_error() {
    // 'a' is 00011 (Appendix B); then 11 one-bits of padding.
    hpack_case(&huffman_value(&[0x1f, 0xff]));
}

#[test]
fn rfc7541_huffman_padding_not_eos_bits_is_compression_error() {
    // 'a', then 000: padding must be the EOS code's leading ones.
    hpack_case(&huffman_value(&[0x18]));
}

#[test]
fn rfc7541_huffman_strings_are_decoded() {
    let rig = Rig::start();
    let mut c = rig.client();
    let mut b = block(&c.get_fields("/ok/1"));
    // 'a' then 111 of padding.
    b.extend_from_slice(&huffman_value(&[0x1f]));
    c.push(HEADERS, END_HEADERS | END_STREAM, 1, &b);
    c.expect_response(1, "/ok/1");
}

#[test]
fn rfc7541_integer_overflow_is_compression_error() {
    // An index whose continuation bytes go far past any table (§5.1: limits are the decoder's).
    hpack_case(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
}

#[test]
fn rfc7541_block_ending_inside_a_field_is_compression_error() {
    // A literal announcing a 10-byte value and giving 2.
    let mut tail = vec![0x00];
    hpack_str(&mut tail, b"x-cut");
    tail.extend_from_slice(&[10, b'a', b'b']);
    hpack_case(&tail);
}

/// Sends `b` as one field block over HEADERS and as many CONTINUATION as it takes.
fn send_block(c: &mut Client, stream: u32, b: &[u8]) {
    let mut pieces = b.chunks(FRAME_BYTES_MAX).peekable();
    let mut kind = HEADERS;
    let mut flags = END_STREAM;
    while let Some(p) = pieces.next() {
        let end = if pieces.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        c.push(kind, flags | end, stream, p);
        kind = CONTINUATION;
        flags = 0;
    }
}

#[test]
fn header_list_past_max_header_list_size_is_enhance_your_calm() {
    let rig = Rig::start();
    let mut c = rig.client();
    // 41 000 zero octets Huffman-decode to 65 600 '0's ('0' is 00000, Appendix B): past the
    // 64 KiB SETTINGS_MAX_HEADER_LIST_SIZE ringway announces, in a block well under its 64 KiB
    // block bound. ringway stops decoding at the bound; the HPACK state is then lost, so the
    // connection ends, with the code of its limits (docs/design/h2.md: ENHANCE_YOUR_CALM).
    let mut b = block(&c.get_fields("/big-list"));
    b.push(0x00);
    hpack_str(&mut b, b"x-big");
    let zeros = 41_000;
    assert!(zeros * 8 / 5 > HEADER_LIST_BYTES_MAX);
    hpack_int(&mut b, 7, 0x80, zeros);
    b.resize(b.len() + zeros, 0x00);
    send_block(&mut c, 1, &b);
    c.expect_connection_error(ENHANCE_YOUR_CALM);
}

#[test]
fn more_fields_than_the_field_bound_is_enhance_your_calm() {
    let rig = Rig::start();
    let mut c = rig.client();
    let mut fields = c.get_fields("/many");
    for i in 0..FIELDS_MAX {
        fields.push(field(&format!("x-{i}"), "v"));
    }
    let b = block(&fields);
    send_block(&mut c, 1, &b);
    c.expect_connection_error(ENHANCE_YOUR_CALM);
}

#[test]
fn a_large_header_list_under_the_bounds_is_served() {
    let rig = Rig::start();
    let mut c = rig.client();
    let mut fields = c.get_fields("/ok/1");
    for i in 0..8 {
        fields.push(field(&format!("x-{i}"), &"v".repeat(4000)));
    }
    let b = block(&fields);
    send_block(&mut c, 1, &b);
    c.expect_response(1, "/ok/1");
}

// ---- §6.8 GOAWAY from the client ----------------------------------------------------------------

#[test]
fn s6_8_goaway_from_the_client_lets_the_open_stream_finish() {
    let rig = Rig::start();
    let mut c = rig.client();
    let fields = c.get_fields("/ok/1");
    c.request(1, &fields, true);
    let mut p = 1u32.to_be_bytes().to_vec();
    p.extend_from_slice(&NO_ERROR.to_be_bytes());
    c.push(GOAWAY, 0, 0, &p);
    c.expect_response(1, "/ok/1");
    // Nothing is left: ringway closes (§6.8: the sender will open no new stream).
    let until = Instant::now() + WAIT;
    while c.next_frame(until).is_some() {}
    assert!(c.closed, "closed after the last stream: {:?}", c.seen);
}
