//! HTTP/2 to clients (`http2 = true`) through the real binary, with real clients: curl
//! (`--http2-prior-knowledge` on a plain listener, `--http2` over TLS by ALPN), `nghttp` and
//! `h2load` (Debian nghttp2-client) for many concurrent streams on one connection. Backends are
//! the HTTP/1.1 test server. A client that is not installed skips its test, except under CI,
//! where .ci/run installs them and a missing one fails.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::certs::TestCa;
use common::httpd::{Httpd, Reply, ok};
use common::*;

/// A plain `http2 = true` listener (access log on stdout); `/b/` goes to backend `b`, the rest
/// to `a`. `tls`: a second listener block (its `[[listener]]` and `[listener.tls]`) to add.
fn h2_config(listen: u16, admin: u16, a: SocketAddr, b: SocketAddr, extra: &str) -> String {
    format!(
        "[global]\nshards = 2\nadmin = \"127.0.0.1:{admin}\"\ndrain_timeout = \"5s\"\n\n\
         [timeouts]\nconnect = \"2s\"\n\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"a\"\n\
         http2 = true\naccess_log = \"stdout\"\n\n\
         [[listener.route]]\npath_prefix = \"/b/\"\nbackend = \"b\"\n\n\
         {extra}\n\
         [[backend]]\nname = \"a\"\nservers = [ {{ address = \"{a}\" }} ]\n\
         [[backend]]\nname = \"b\"\nservers = [ {{ address = \"{b}\" }} ]\n"
    )
}

fn start(a: &Httpd, b: &Httpd) -> Ringway {
    Ringway::start_text(|l, ad| h2_config(l, ad, a.addr, b.addr, ""))
}

/// As `start`, with `timeouts.http_keep_alive` set to `keep_alive`.
fn start_keep_alive(a: &Httpd, b: &Httpd, keep_alive: &str) -> Ringway {
    Ringway::start_text(|l, ad| {
        h2_config(l, ad, a.addr, b.addr, "").replace(
            "connect = \"2s\"\n",
            &format!("connect = \"2s\"\nhttp_keep_alive = \"{keep_alive}\"\n"),
        )
    })
}

/// curl with `args`; returns (stdout, stderr).
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .expect("run curl");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `n` deterministic bytes.
fn data(seed: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    DataGen::new(seed).fill(&mut v);
    v
}

fn digest(bytes: &[u8]) -> Digest {
    let mut d = Digest::default();
    d.update(bytes);
    d
}

#[test]
fn curl_prior_knowledge_speaks_h2_and_http1_clients_share_the_listener() {
    if !have("curl") {
        return;
    }
    let (a, b) = (Httpd::named("a"), Httpd::named("b"));
    let rw = start(&a, &b);
    let url = format!("http://{}/x?y=1", rw.listen);
    let (out, err) = curl(&[
        "--http2-prior-knowledge",
        "-A",
        "h2-test",
        "-w",
        "\n%{http_version}",
        &url,
    ]);
    assert_eq!(out, "a /x?y=1\n2", "{err}");
    let burl = format!("http://{}/b/z", rw.listen);
    let (out, err) = curl(&["--http2-prior-knowledge", "-w", "\n%{http_version}", &burl]);
    assert_eq!(out, "b /b/z\n2", "{err}");
    // The same listener still serves HTTP/1.1.
    let (out, err) = curl(&["--http1.1", "-w", "\n%{http_version}", &url]);
    assert_eq!(out, "a /x?y=1\n1.1", "{err}");

    let reqs = a.requests();
    let first = &reqs[0];
    // :authority became Host; the forwarding fields are the HTTP/1.1 ones.
    assert_eq!(first.header("host"), Some(rw.listen.to_string()));
    assert_eq!(
        first.header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(first.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(first.header("user-agent").as_deref(), Some("h2-test"));
    assert!(
        first.head.starts_with("GET /x?y=1 HTTP/1.1\r\n"),
        "{}",
        first.head
    );

    assert_eq!(rw.total("h2_connections"), 2);
    assert_eq!(rw.total("h2_streams"), 2);
    let log = poll(IO_TIMEOUT, || {
        let out = rw.stdout();
        (out.lines().count() >= 3).then_some(out)
    })
    .unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("\"GET /x?y=1 HTTP/2.0\" 200") && l.ends_with("proto=h2")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("\"GET /x?y=1 HTTP/1.1\" 200") && l.ends_with("proto=h1")),
        "{log}"
    );
}

#[test]
fn curl_http2_over_tls_negotiates_h2_by_alpn() {
    if !have("curl") {
        return;
    }
    let ca = TestCa::new();
    let (cert, key) = ca.leaf("a", "a.test", &["a.test"]);
    let (a, b) = (Httpd::named("a"), Httpd::named("b"));
    let tls_port = free_port();
    let rw = Ringway::start_text(|l, ad| {
        let extra = h2_tls_listener(tls_port, &cert, &key);
        h2_config(l, ad, a.addr, b.addr, &extra)
    });
    let resolve = format!("a.test:{tls_port}:127.0.0.1");
    let url = format!("https://a.test:{tls_port}/secure");
    let ca_file = ca.ca_file.display().to_string();
    let (out, err) = curl(&[
        "--http2",
        "--cacert",
        &ca_file,
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_version}",
        &url,
    ]);
    assert_eq!(out, "a /secure\n2", "{err}");
    // A client that offers only http/1.1 stays on HTTP/1.1.
    let (out, err) = curl(&[
        "--http1.1",
        "--cacert",
        &ca_file,
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_version}",
        &url,
    ]);
    assert_eq!(out, "a /secure\n1.1", "{err}");
    let reqs = a.requests();
    assert_eq!(
        reqs[0].header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(rw.total("h2_connections"), 1);
}

/// Statuses of the streams in `nghttp -s` output (its per-stream table).
fn nghttp_codes(out: &str) -> Vec<(u16, String)> {
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let code = cols.get(4)?.parse::<u16>().ok()?;
            Some((code, cols.last()?.to_string()))
        })
        .collect()
}

#[test]
fn nghttp_many_concurrent_streams_on_one_connection_reach_two_backends() {
    if !have("nghttp") || !have("h2load") {
        return;
    }
    let (a, b) = (Httpd::named("a"), Httpd::named("b"));
    let rw = start(&a, &b);
    let out = Command::new("nghttp")
        .args(["-n", "-s", "-m", "40"])
        .arg(format!("http://{}/a/one", rw.listen))
        .arg(format!("http://{}/b/two", rw.listen))
        .output()
        .expect("run nghttp");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let codes = nghttp_codes(&text);
    assert_eq!(codes.len(), 80, "{text}");
    assert!(codes.iter().all(|(c, _)| *c == 200), "{text}");
    assert_eq!(a.requests().len(), 40);
    assert_eq!(b.requests().len(), 40);
    assert!(b.requests().iter().all(|r| r.target == "/b/two"));
    assert_eq!(rw.total("h2_connections"), 1);
    assert_eq!(rw.total("h2_streams"), 80);

    // Load: 2 connections, 20 streams in flight each, every request answered.
    let out = Command::new("h2load")
        .args(["-n", "1000", "-c", "2", "-m", "20"])
        .arg(format!("http://{}/a/load", rw.listen))
        .output()
        .expect("run h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1000 succeeded, 0 failed, 0 errored, 0 timeout"),
        "{text}"
    );
    assert!(text.contains("1000 2xx"), "{text}");
}

#[test]
fn large_responses_arrive_intact_both_framings() {
    if !have("curl") {
        return;
    }
    const SIZE: usize = 6 * 1024 * 1024 + 123;
    let body = data(7, SIZE);
    let want = digest(&body);
    let served = body.clone();
    let backend = Httpd::spawn(move |r| {
        let mut out = if r.target.contains("chunked") {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for piece in served.chunks(100_000) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\nx-digest: done\r\n\r\n");
            return Reply::Bytes(out);
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                served.len()
            )
            .into_bytes()
        };
        out.extend_from_slice(&served);
        Reply::Bytes(out)
    });
    let other = Httpd::named("b");
    let rw = start(&backend, &other);
    let dir = TempDir::new("h2-large");
    for path in ["/length", "/chunked"] {
        let file = dir.0.join(path.trim_start_matches('/'));
        let file_arg = file.display().to_string();
        let url = format!("http://{}{path}", rw.listen);
        let (out, err) = curl(&[
            "--http2-prior-knowledge",
            "-o",
            &file_arg,
            "-w",
            "%{http_version} %{http_code}",
            &url,
        ]);
        assert_eq!(out, "2 200", "{path}: {err}");
        let got = std::fs::read(&file).expect("read download");
        assert_eq!(digest(&got), want, "{path}");
    }
    // The chunked response's trailers come as trailing HEADERS (nghttp prints them).
    if have("nghttp") {
        // A client window of 1 KiB per stream and 16 KiB for the connection: ringway sends no
        // more than the windows allow and the whole body still arrives.
        let out = Command::new("nghttp")
            .args(["-n", "-s", "-w", "10", "-W", "14"])
            .arg(format!("http://{}/length", rw.listen))
            .output()
            .expect("run nghttp");
        let text = String::from_utf8_lossy(&out.stdout);
        let codes = nghttp_codes(&text);
        assert_eq!(codes, vec![(200, "/length".to_string())], "{text}");
        assert!(text.contains(" 6M "), "{text}");
        let out = Command::new("nghttp")
            .args(["-v"])
            .arg(format!("http://{}/chunked", rw.listen))
            .stdout(Stdio::piped())
            .output()
            .expect("run nghttp");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("x-digest: done"), "trailers missing");
    }
}

#[test]
fn request_bodies_are_forwarded_intact_with_and_without_length() {
    if !have("curl") {
        return;
    }
    let backend = Httpd::spawn(|r| Reply::Bytes(ok(&format!("{} {}", r.method, r.body.len()))));
    let other = Httpd::named("b");
    let rw = start(&backend, &other);
    let dir = TempDir::new("h2-upload");
    const SIZE: usize = 3 * 1024 * 1024 + 7;
    let body = data(11, SIZE);
    let file = dir.0.join("up.bin");
    std::fs::write(&file, &body).expect("write upload");
    let at_file = format!("@{}", file.display());
    let url = format!("http://{}/upload", rw.listen);
    let (out, err) = curl(&["--http2-prior-knowledge", "--data-binary", &at_file, &url]);
    assert_eq!(out, format!("POST {SIZE}"), "{err}");
    // From stdin curl sends no content-length: the body goes to the backend chunked.
    let stdin = std::fs::File::open(&file).expect("open upload");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "--http2-prior-knowledge",
            "-T",
            "-",
        ])
        .arg(&url)
        .stdin(stdin)
        .output()
        .expect("run curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("PUT {SIZE}"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("content-length"), Some(SIZE.to_string()));
    assert_eq!(digest(&reqs[0].body), digest(&body));
    assert_eq!(
        reqs[1].header("transfer-encoding").as_deref(),
        Some("chunked")
    );
    assert_eq!(digest(&reqs[1].body), digest(&body));
}

#[test]
fn a_backend_dying_mid_response_resets_only_its_stream() {
    if !have("nghttp") {
        return;
    }
    let backend = Httpd::spawn(|r| {
        if r.target == "/die" {
            // Promises 100000 bytes, sends 10, closes.
            return Reply::BytesThenClose(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789".to_vec(),
            );
        }
        Reply::Bytes(ok(&format!("fine {}", r.target)))
    });
    let other = Httpd::named("b");
    let rw = start(&backend, &other);
    let out = Command::new("nghttp")
        .args(["-n", "-s"])
        .arg(format!("http://{}/ok1", rw.listen))
        .arg(format!("http://{}/die", rw.listen))
        .arg(format!("http://{}/ok2", rw.listen))
        .arg(format!("http://{}/b/ok3", rw.listen))
        .output()
        .expect("run nghttp");
    let text = String::from_utf8_lossy(&out.stdout);
    let codes = nghttp_codes(&text);
    for path in ["/ok1", "/ok2", "/b/ok3"] {
        assert!(
            codes.iter().any(|(c, p)| *c == 200 && p == path),
            "{path} did not complete: {text}"
        );
    }
    assert!(rw.total("h2_resets_sent") >= 1);
    assert_eq!(rw.total("h2_connections"), 1);
}

#[test]
fn head_204_and_304_carry_no_body() {
    if !have("curl") {
        return;
    }
    let backend = Httpd::spawn(|r| {
        Reply::Bytes(match r.target.as_str() {
            "/204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec(),
            _ => ok("hello"),
        })
    });
    let other = Httpd::named("b");
    let rw = start(&backend, &other);
    let w = "%{http_version} %{http_code} %{size_download}";
    let base = format!("http://{}", rw.listen);
    let (out, err) = curl(&["--http2-prior-knowledge", "-w", w, &format!("{base}/204")]);
    assert_eq!(out, "2 204 0", "{err}");
    let (out, err) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "If-None-Match: \"v1\"",
        "-w",
        w,
        &format!("{base}/304"),
    ]);
    assert_eq!(out, "2 304 0", "{err}");
    let (out, err) = curl(&["--http2-prior-knowledge", "-I", &format!("{base}/x")]);
    let lower = out.to_ascii_lowercase();
    assert!(lower.starts_with("http/2 200"), "{out}{err}");
    assert!(lower.contains("content-length: 5"), "{out}");
    // After all three the connection-level state is clean: a normal request still works.
    let (out, err) = curl(&["--http2-prior-knowledge", &format!("{base}/after")]);
    assert_eq!(out, "hello", "{err}");
    assert_eq!(backend.requests()[2].method, "HEAD");
}

#[test]
fn drain_sends_goaway_and_lets_the_stream_in_flight_finish() {
    if !have("curl") {
        return;
    }
    let backend = Httpd::spawn(|r| {
        if r.target == "/slow" {
            std::thread::sleep(Duration::from_millis(800));
        }
        Reply::Bytes(ok("done"))
    });
    let other = Httpd::named("b");
    let mut rw = start(&backend, &other);
    let url = format!("http://{}/slow", rw.listen);
    let child = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--http2-prior-knowledge", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run curl");
    poll(IO_TIMEOUT, || {
        (!backend.requests().is_empty()).then_some(())
    })
    .expect("request reached the backend");
    rw.signal(libc::SIGTERM);
    let out = child.wait_with_output().expect("curl output");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "done",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(rw.wait_exit(Duration::from_secs(10)).is_some());
}

/// Frames from ringway on a raw connection, until it closes (or `IO_TIMEOUT`).
fn read_frames_until_close(s: &mut std::net::TcpStream) -> Vec<(u8, u32, Vec<u8>)> {
    use std::io::Read;
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    std::iter::from_fn(|| common::h2raw::take_frame(&mut buf))
        .map(|f| (f.kind, f.stream, f.payload))
        .collect()
}

/// Frames from ringway on a raw connection, up to the first for which `last` holds; fails if
/// ringway closes first (or `IO_TIMEOUT` passes).
fn read_frames_until(
    s: &mut std::net::TcpStream,
    last: impl Fn(&common::h2raw::Frame) -> bool,
) -> Vec<common::h2raw::Frame> {
    use std::io::Read;
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let (mut buf, mut frames, mut tmp) = (Vec::new(), Vec::new(), [0u8; 16_384]);
    loop {
        while let Some(f) = common::h2raw::take_frame(&mut buf) {
            let done = last(&f);
            frames.push(f);
            if done {
                return frames;
            }
        }
        let n = s.read(&mut tmp).expect("ringway's frames");
        assert!(n > 0, "closed before the frame awaited: {frames:?}");
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Reads until ringway closes; expects GOAWAY NO_ERROR and stream 1's whole `body` in DATA.
fn expect_goaway_after_stream_1(s: &mut std::net::TcpStream, rw: &Ringway, body: &str) {
    let frames = read_frames_until_close(s);
    let goaway = frames
        .iter()
        .find(|(kind, _, _)| *kind == 0x7)
        .and_then(|(_, _, p)| goaway_code(p));
    assert_eq!(
        goaway,
        Some(0),
        "GOAWAY NO_ERROR: {frames:?}\n{}",
        rw.stderr()
    );
    let data: Vec<u8> = frames
        .iter()
        .filter(|(kind, stream, _)| *kind == 0x0 && *stream == 1)
        .flat_map(|(_, _, p)| p.clone())
        .collect();
    assert_eq!(String::from_utf8_lossy(&data), body);
}

/// The error code of a GOAWAY payload.
fn goaway_code(p: &[u8]) -> Option<u32> {
    let b = p.get(4..8)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Preface, SETTINGS and one GET for `path` on stream 1, as a raw client sends them.
fn raw_get(authority: &str, path: &str) -> Vec<u8> {
    let fields: [(&[u8], &[u8]); 4] = [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", authority.as_bytes()),
        (b":path", path.as_bytes()),
    ];
    raw_request(&fields, true)
}

/// Preface, SETTINGS and a request head of `fields` on stream 1 (`end_stream`: no body).
fn raw_request(fields: &[(&[u8], &[u8])], end_stream: bool) -> Vec<u8> {
    use ringway::h2::frame;
    use ringway::h2::hpack::{Encoder, HuffmanUse, IndexUse};
    let mut enc = Encoder::new(4096, HuffmanUse::WhenShorter, IndexUse::Repeating);
    let mut out = frame::PREFACE.to_vec();
    frame::write_settings(&mut out, &[]);
    let mut block = Vec::new();
    enc.encode(fields.iter().copied(), &mut block);
    frame::write_headers(&mut out, 1, &block, end_stream, 16_384);
    out
}

/// A backend that answers `/slow` after 600 ms (`slow done`).
fn slow_backend() -> Httpd {
    Httpd::spawn(|r| {
        if r.target == "/slow" {
            std::thread::sleep(Duration::from_millis(600));
        }
        Reply::Bytes(ok("slow done"))
    })
}

/// A raw HTTP/2 connection whose stream 1 asks `/slow`, once the request reached `backend`.
fn open_slow_stream(rw: &Ringway, backend: &Httpd) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(rw.listen).expect("connect");
    s.write_all(&raw_get(&rw.listen.to_string(), "/slow"))
        .expect("send");
    poll(IO_TIMEOUT, || {
        (!backend.requests().is_empty()).then_some(())
    })
    .expect("request reached the backend");
    s
}

#[test]
fn a_reload_that_removes_the_listener_sends_goaway_and_the_stream_in_flight_finishes() {
    let backend = slow_backend();
    let other = Httpd::named("b");
    let keep_port = free_port();
    let keep = format!(
        "[[listener]]\nname = \"keep\"\nbind = \"127.0.0.1:{keep_port}\"\nmode = \"http\"\nbackend = \"b\"\n"
    );
    let rw = Ringway::start_text(|l, ad| h2_config(l, ad, backend.addr, other.addr, &keep));
    let mut s = open_slow_stream(&rw, &backend);
    // The same file without listener `web`.
    let path = rw.dir.0.join("ringway.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    let start = text
        .find("[[listener]]\nname = \"web\"")
        .expect("web listener");
    let end = text
        .find("[[listener]]\nname = \"keep\"")
        .expect("keep listener");
    let without = format!("{}{}", &text[..start], &text[end..]);
    std::fs::write(&path, without).expect("write config");
    rw.signal(libc::SIGHUP);
    expect_goaway_after_stream_1(&mut s, &rw, "slow done");
    assert!(rw.total("h2_goaway_sent") >= 1);
}

#[test]
fn a_reload_that_turns_http2_off_sends_goaway_and_the_stream_in_flight_finishes() {
    let backend = slow_backend();
    let other = Httpd::named("b");
    let rw = Ringway::start_text(|l, ad| h2_config(l, ad, backend.addr, other.addr, ""));
    let mut s = open_slow_stream(&rw, &backend);
    let path = rw.dir.0.join("ringway.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    assert!(text.contains("http2 = true"), "{text}");
    std::fs::write(&path, text.replace("http2 = true", "http2 = false")).expect("write config");
    rw.signal(libc::SIGHUP);
    expect_goaway_after_stream_1(&mut s, &rw, "slow done");
    // New connections speak HTTP/1.1 only.
    poll(IO_TIMEOUT, || {
        let (out, _) = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            &format!("http://{}/", rw.listen),
        ]);
        (out == "200 1.1").then_some(())
    })
    .expect("HTTP/1.1 after the reload");
}

#[test]
fn an_idle_connection_gets_goaway_after_http_keep_alive() {
    use std::io::Write;
    let (a, b) = (Httpd::named("a"), Httpd::named("b"));
    let rw = start_keep_alive(&a, &b, "300ms");
    let mut s = std::net::TcpStream::connect(rw.listen).expect("connect");
    s.write_all(&raw_get(&rw.listen.to_string(), "/once"))
        .expect("send");
    let frames = read_frames_until_close(&mut s);
    let data: Vec<u8> = frames
        .iter()
        .filter(|(kind, _, _)| *kind == 0x0)
        .flat_map(|(_, _, p)| p.clone())
        .collect();
    assert_eq!(String::from_utf8_lossy(&data), "a /once");
    let goaway = frames
        .iter()
        .find(|(kind, _, _)| *kind == 0x7)
        .and_then(|(_, _, p)| goaway_code(p));
    assert_eq!(goaway, Some(0), "{frames:?}");
    assert_eq!(rw.total("h2_goaway_sent"), 1);
}

#[test]
fn pings_do_not_keep_an_idle_connection_past_http_keep_alive() {
    use ringway::h2::frame;
    use std::io::{ErrorKind, Read, Write};
    use std::time::Instant;
    let (a, b) = (Httpd::named("a"), Httpd::named("b"));
    let rw = start_keep_alive(&a, &b, "1s");
    let mut s = std::net::TcpStream::connect(rw.listen).expect("connect");
    let mut out = raw_get(&rw.listen.to_string(), "/once");
    frame::write_settings_ack(&mut out);
    s.write_all(&out).expect("send");
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    // The test's bound: PINGs that kept the connection would keep it this long.
    let until = Instant::now() + Duration::from_secs(10);
    let (mut buf, mut frames, mut tmp) = (Vec::new(), Vec::new(), [0u8; 16_384]);
    let (mut pings, mut last_ping, mut closed) = (0u8, Instant::now(), false);
    while !closed && Instant::now() < until {
        match s.read(&mut tmp) {
            Ok(0) => closed = true,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => closed = true,
        }
        frames.extend(std::iter::from_fn(|| common::h2raw::take_frame(&mut buf)));
        // Once stream 1 is answered, a PING every 200 ms: bytes both ways, no stream.
        let answered = frames.iter().any(|f| f.stream == 1 && f.ends_stream());
        if answered && !closed && last_ping.elapsed() >= Duration::from_millis(200) {
            let mut ping = Vec::new();
            frame::write_ping(&mut ping, false, [pings; 8]);
            closed = s.write_all(&ping).is_err();
            pings = pings.wrapping_add(1);
            last_ping = Instant::now();
        }
    }
    assert!(closed, "{pings} PINGs kept the connection open: {frames:?}");
    let goaway = frames.iter().find(|f| f.kind == 0x7).and_then(|f| f.code());
    assert_eq!(goaway, Some(0), "GOAWAY NO_ERROR: {frames:?}");
    let acks = frames
        .iter()
        .filter(|f| f.kind == 0x6 && f.flags & 0x1 != 0)
        .count();
    assert!(
        acks >= 2,
        "PINGs answered while the idle timer ran: {frames:?}"
    );
    assert_eq!(rw.total("idle_timeouts"), 1);
}

#[test]
fn connect_is_answered_501_with_an_access_log_line_like_any_stream() {
    use ringway::h2::hpack::{DecodeLimits, Decoder};
    use std::io::Write;
    let (a, b) = (Httpd::named("a"), Httpd::named("b"));
    let rw = start(&a, &b);
    let mut s = std::net::TcpStream::connect(rw.listen).expect("connect");
    let fields: [(&[u8], &[u8]); 3] = [
        (b":method", b"CONNECT"),
        (b":authority", b"tunnel.test:443"),
        (b"user-agent", b"h2-connect"),
    ];
    s.write_all(&raw_request(&fields, false)).expect("send");
    let frames = read_frames_until(&mut s, |f| f.stream == 1);
    let head = frames.last().expect("a frame on stream 1");
    assert!(head.kind == 0x1 && head.ends_stream(), "{frames:?}");
    let mut status = Vec::new();
    let limits = DecodeLimits {
        list_bytes_max: 1 << 16,
        fields_max: 16,
    };
    Decoder::new(4096)
        .decode(&head.payload, limits, &mut |n, v| {
            if n == b":status" {
                status = v.to_vec();
            }
        })
        .expect("HPACK");
    assert_eq!(String::from_utf8_lossy(&status), "501");
    let line = poll(IO_TIMEOUT, || {
        rw.stdout()
            .lines()
            .find(|l| l.contains("\"CONNECT tunnel.test:443 HTTP/2.0\" 501 "))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no access log line for CONNECT: {}", rw.stdout()));
    for part in ["\"h2-connect\"", " backend=- ", " term=local "] {
        assert!(line.contains(part), "{part}: {line}");
    }
    assert!(line.ends_with(" proto=h2"), "{line}");
    assert_eq!(rw.total("http_requests"), 1);
    assert_eq!(rw.total("http_local_responses"), 1);
}

#[test]
fn a_client_goaway_is_counted_and_the_stream_in_flight_is_still_answered() {
    use ringway::h2::{ErrorCode, frame};
    use std::io::Write;
    let (a, b) = (Httpd::named("a"), Httpd::named("b"));
    let rw = start(&a, &b);
    let mut s = std::net::TcpStream::connect(rw.listen).expect("connect");
    // Stream 1, then GOAWAY: the client opens nothing more (RFC 9113 §6.8), stream 1 finishes.
    let mut out = raw_get(&rw.listen.to_string(), "/last");
    frame::write_goaway(&mut out, 0, ErrorCode::NO_ERROR, b"bye");
    s.write_all(&out).expect("send");
    let frames = read_frames_until(&mut s, |f| f.stream == 1 && f.ends_stream());
    let body: Vec<u8> = frames
        .iter()
        .filter(|f| f.kind == 0x0 && f.stream == 1)
        .flat_map(|f| f.payload.iter().copied())
        .collect();
    assert_eq!(String::from_utf8_lossy(&body), "a /last");
    rw.wait_total("h2_goaway_received", IO_TIMEOUT, |n| n >= 1);
    assert_eq!(rw.total("h2_goaway_received"), 1);
    assert_eq!(rw.total("h2_streams"), 1);
}

#[test]
fn rapid_reset_flood_ends_with_enhance_your_calm_while_others_are_served() {
    use ringway::h2::ErrorCode;
    use ringway::h2::frame;
    use ringway::h2::hpack::{Encoder, HuffmanUse, IndexUse};
    use std::io::Write;
    if !have("curl") {
        return;
    }
    let (a, b) = (Httpd::named("a"), Httpd::named("b"));
    let rw = start(&a, &b);
    let mut s = std::net::TcpStream::connect(rw.listen).expect("connect");
    let mut enc = Encoder::new(4096, HuffmanUse::WhenShorter, IndexUse::Repeating);
    let mut out = frame::PREFACE.to_vec();
    frame::write_settings(&mut out, &[]);
    let authority = rw.listen.to_string();
    // CVE-2023-44487: open a stream and cancel it at once, over and over.
    for i in 0..400u32 {
        let stream = 2 * i + 1;
        let fields: [(&[u8], &[u8]); 4] = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", authority.as_bytes()),
            (b":path", b"/flood"),
        ];
        let mut block = Vec::new();
        enc.encode(fields, &mut block);
        frame::write_headers(&mut out, stream, &block, true, 16_384);
        frame::write_rst_stream(&mut out, stream, ErrorCode::CANCEL);
    }
    // The write may fail once ringway has had enough and closed.
    let _ = s.write_all(&out);
    // A normal client on another connection is served meanwhile.
    let (body, err) = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/calm", rw.listen),
    ]);
    assert_eq!(body, "a /calm", "{err}");
    let frames = read_frames_until_close(&mut s);
    let goaway = frames
        .iter()
        .find(|(kind, _, _)| *kind == 0x7)
        .and_then(|(_, _, p)| goaway_code(p));
    assert_eq!(goaway, Some(ErrorCode::ENHANCE_YOUR_CALM.0), "{frames:?}");
    rw.assert_calm_closes("rapid_reset", 1);
    assert!(rw.total("h2_resets_received") >= 50);
}
