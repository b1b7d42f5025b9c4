//! HTTP/2 to clients through the real binary, driven by the Python `h2` package's H2Connection
//! state machine (tests/h2_client.py; .ci/run installs the package). Where tests/h2.rs uses
//! curl and nghttp as black boxes, here the client is scripted frame by frame: request trailers,
//! a 1 KiB stream window on a 64 MiB download, a 64 MiB upload to a slow backend inside
//! ringway's windows, 50 streams on one connection to three backends, one stream failing while
//! the others complete, and HEAD/204/304 with END_STREAM on HEADERS. The h2 state machine fails
//! the client on any protocol breach (DATA beyond a window, a bad field block). Without the
//! package a test skips, except under CI, where it fails.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::certs::TestCa;
use common::httpd::{Httpd, Reply, ok};
use common::*;

/// How long one client run may take before it is killed (its own deadline is 25 s).
const CLIENT_RUN_MAX: Duration = Duration::from_secs(35);
/// The large transfers' size.
const LARGE_BYTES: u64 = 64 * 1024 * 1024;
/// How much ringway's RSS may grow while a large transfer runs: far less than the transfer, so
/// neither side can have been buffered whole.
const RSS_GROWTH_KIB_MAX: u64 = 32 * 1024;
/// How far one end of a large transfer may get ahead of the other: the socket buffers on both
/// sides of ringway (a few MiB each on loopback) and ringway's own bounded queues, with room to
/// spare. Without backpressure the fast end would be tens of MiB ahead.
const AHEAD_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// True when python3 has the `h2` package. Under CI (the `CI` variable) a missing package is a
/// failure: .ci/run installs it, so its absence is a broken setup, not a reason to skip.
fn have_h2() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import h2.connection"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 with the h2 package (.ci/run: python3 -m pip install h2)"
        );
        eprintln!("skipped: python3 lacks the h2 package (python3 -m pip install h2)");
    }
    found
}

/// A plain `http2 = true` listener; `/b/` goes to backend `b`, `/c/` to `c`, the rest to `a`.
/// `extra`: more config (a TLS listener) placed before the backends.
fn h2_config(listen: u16, admin: u16, be: [SocketAddr; 3], extra: &str) -> String {
    let [a, b, c] = be;
    format!(
        "[global]\nshards = 2\nadmin = \"127.0.0.1:{admin}\"\ndrain_timeout = \"5s\"\n\n\
         [timeouts]\nconnect = \"2s\"\n\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"a\"\n\
         http2 = true\n\n\
         [[listener.route]]\npath_prefix = \"/b/\"\nbackend = \"b\"\n\n\
         [[listener.route]]\npath_prefix = \"/c/\"\nbackend = \"c\"\n\n\
         {extra}\n\
         [[backend]]\nname = \"a\"\nservers = [ {{ address = \"{a}\" }} ]\n\
         [[backend]]\nname = \"b\"\nservers = [ {{ address = \"{b}\" }} ]\n\
         [[backend]]\nname = \"c\"\nservers = [ {{ address = \"{c}\" }} ]\n"
    )
}

fn start(be: [SocketAddr; 3]) -> Ringway {
    Ringway::start_text(|l, ad| h2_config(l, ad, be, ""))
}

/// Runs `tests/h2_client.py SCENARIO ADDR ARGS…`, calling `each` every 20 ms while it runs
/// with the bytes the client last reported done (its `progress BYTES` lines on stderr); returns
/// its JSON line, whatever it says.
fn run_client_with(
    scenario: &str,
    addr: SocketAddr,
    args: &[&str],
    mut each: impl FnMut(u64),
) -> serde_json::Value {
    let script = manifest_dir().join("tests/h2_client.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(scenario)
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    // Both pipes are read on threads so a long output never blocks the client.
    let mut out = child.stdout.take().expect("client stdout");
    let err = child.stderr.take().expect("client stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let progress = Arc::new(AtomicU64::new(0));
    let p = Arc::clone(&progress);
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(err)).map_while(Result::ok) {
            match line.strip_prefix("progress ").and_then(|n| n.parse().ok()) {
                Some(n) => p.store(n, Ordering::SeqCst),
                None => {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        }
        text
    });
    let end = Instant::now() + CLIENT_RUN_MAX;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "h2_client.py {scenario} still running after {CLIENT_RUN_MAX:?}\n{}",
                err.join().unwrap_or_default()
            );
        }
        each(progress.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!("h2_client.py {scenario} ({status}) printed no JSON ({e}):\n{out}\n{err}")
    })
}

/// As `run_client_with`; the run must have succeeded (`"ok": true`).
fn run_client(scenario: &str, addr: SocketAddr, args: &[&str]) -> serde_json::Value {
    let v = run_client_with(scenario, addr, args, |_| {});
    assert_eq!(v["ok"], true, "h2_client.py {scenario} failed: {v:#}");
    v
}

/// The stream of a client result with path `path` (the first if several).
fn stream<'v>(v: &'v serde_json::Value, path: &str) -> &'v serde_json::Value {
    v["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["path"] == path))
        .unwrap_or_else(|| panic!("no stream for {path}: {v:#}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` deterministic bytes.
fn data(seed: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    DataGen::new(seed).fill(&mut v);
    v
}

/// `200 OK` with `body` and Content-Length.
fn ok_bytes(body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// Reads a request head from a raw backend connection; returns it and the bytes after it.
fn read_head(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// Samples ringway's RSS while a client runs: the value before, and the largest seen.
struct RssWatch {
    pid: i32,
    before_kib: u64,
    peak_kib: u64,
}

impl RssWatch {
    fn new(rw: &Ringway) -> RssWatch {
        let before_kib = rw.rss_kib();
        RssWatch {
            pid: rw.pid(),
            before_kib,
            peak_kib: before_kib,
        }
    }

    fn sample(&mut self) {
        self.peak_kib = self.peak_kib.max(proc_status_kib(self.pid, "VmRSS:"));
    }

    fn growth_kib(&self) -> u64 {
        self.peak_kib.saturating_sub(self.before_kib)
    }
}

#[test]
fn request_trailers_reach_the_backend_chunked_and_response_trailers_come_as_trailing_headers() {
    if !have_h2() {
        return;
    }
    let a = Httpd::spawn(|r| {
        Reply::Bytes(
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n{:x}\r\n {}\r\n0\r\nx-digest: done\r\nx-served-by: a\r\n\r\n",
                r.target.len() + 1,
                r.target
            )
            .into_bytes(),
        )
    });
    let (b, c) = (Httpd::named("b"), Httpd::named("c"));
    let rw = start([a.addr, b.addr, c.addr]);

    let v = run_client("trailers", rw.listen, &["--path", "/trail"]);
    let s = stream(&v, "/trail");
    assert_eq!(s["status"], 200, "{v:#}");
    assert_eq!(s["body"], "hello /trail", "{v:#}");
    // The backend's chunked trailers arrive as a trailing HEADERS frame with END_STREAM.
    assert_eq!(s["trailers"]["x-digest"], "done", "{v:#}");
    assert_eq!(s["trailers"]["x-served-by"], "a", "{v:#}");
    assert_eq!(s["ended"], true, "{v:#}");
    assert!(s["headers"].get("transfer-encoding").is_none(), "{v:#}");

    // Without a content-length the body goes chunked, and the trailers follow the last chunk.
    let reqs = a.requests();
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.body, b"hello trailers");
    let raw = String::from_utf8_lossy(&r.raw_body);
    assert!(
        raw.ends_with("\r\n0\r\nx-checksum: abc123\r\nx-count: 2\r\n\r\n"),
        "{raw:?}"
    );

    // With a content-length the body is sent as it is, and HTTP/1.1 has no place for the
    // trailers: they are dropped (RFC 9110 §6.5.1 lets a proxy discard them).
    let v = run_client("trailers", rw.listen, &["--path", "/len", "--with-length"]);
    assert_eq!(stream(&v, "/len")["body"], "hello /len", "{v:#}");
    let reqs = a.requests();
    let r = &reqs[1];
    assert_eq!(r.header("content-length").as_deref(), Some("14"));
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.raw_body, b"hello trailers");
    assert!(!r.head.contains("x-checksum"), "{}", r.head);
    assert_eq!(rw.total("h2_connections"), 2);
}

/// A backend that answers every request with `total` bytes of `DataGen(seed)` (Content-Length),
/// written 64 KiB at a time as the socket takes them. `written`: bytes written so far; `sha`:
/// their SHA-256 once all are out.
struct Streamer {
    backend: Backend,
    written: Arc<AtomicU64>,
    sha: Arc<Mutex<Option<String>>>,
}

fn streamer(seed: u64, total: u64) -> Streamer {
    let written = Arc::new(AtomicU64::new(0));
    let sha = Arc::new(Mutex::new(None));
    let (w, h) = (Arc::clone(&written), Arc::clone(&sha));
    let backend = Backend::spawn(move |mut s| {
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
        let _ = s.set_write_timeout(Some(IO_TIMEOUT));
        if read_head(&mut s).is_none() {
            return;
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
        if s.write_all(head.as_bytes()).is_err() {
            return;
        }
        let mut g = DataGen::new(seed);
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            g.fill(&mut buf[..n]);
            if s.write_all(&buf[..n]).is_err() {
                return;
            }
            ctx.update(&buf[..n]);
            w.fetch_add(n as u64, Ordering::SeqCst);
            left -= n as u64;
        }
        if let Ok(mut g) = h.lock() {
            *g = Some(hex(ctx.finish().as_ref()));
        }
    });
    Streamer {
        backend,
        written,
        sha,
    }
}

#[test]
fn a_1kib_client_window_slows_a_64mib_download_to_its_pace_with_bounded_memory() {
    if !have_h2() {
        return;
    }
    let st = streamer(21, LARGE_BYTES);
    let (b, c) = (Httpd::named("b"), Httpd::named("c"));
    let rw = start([st.backend.addr, b.addr, c.addr]);
    let mut rss = RssWatch::new(&rw);
    // How far the backend's writes ran ahead of what the client had received.
    let mut ahead_max = 0;
    // A 1 KiB stream window and the default 64 KiB connection window, never raised: ringway
    // may have at most 1 KiB in flight on the stream; the library's window manager opens
    // 512 bytes at a time as the client consumes them.
    let v = run_client_with(
        "download",
        rw.listen,
        &["--path", "/big", "--window", "1024"],
        |received| {
            rss.sample();
            let written = st.written.load(Ordering::SeqCst);
            ahead_max = ahead_max.max(written.saturating_sub(received));
        },
    );
    assert_eq!(v["ok"], true, "{v:#}");
    let s = stream(&v, "/big");
    assert_eq!(s["status"], 200, "{v:#}");
    assert_eq!(s["body_bytes"], LARGE_BYTES, "{v:#}");
    let want = st.sha.lock().ok().and_then(|g| g.clone());
    assert_eq!(s["body_sha256"].as_str(), want.as_deref(), "digest");
    // No DATA frame larger than the window (the h2 state machine would have refused it).
    assert!(
        s["data_frames"].as_u64().unwrap_or(0) >= LARGE_BYTES / 1024,
        "{v:#}"
    );
    let growth = rss.growth_kib();
    eprintln!(
        "download: {} s, ringway RSS {} -> peak {} KiB (+{growth} KiB), backend at most {} KiB \
         ahead of the client",
        v["seconds"],
        rss.before_kib,
        rss.peak_kib,
        ahead_max / 1024
    );
    assert!(
        growth < RSS_GROWTH_KIB_MAX,
        "ringway RSS grew by {growth} KiB during a 1 KiB-window download"
    );
    assert!(
        ahead_max < AHEAD_BYTES_MAX,
        "the backend got {ahead_max} bytes ahead of the client: ringway read past its window"
    );
}

/// A backend that reads each request's Content-Length body at `rate_bytes_per_s` at most, then
/// answers `200` with the body's SHA-256.
struct SlowSink {
    backend: Backend,
    read: Arc<AtomicU64>,
    sha: Arc<Mutex<Option<String>>>,
}

fn slow_sink(rate_bytes_per_s: u64) -> SlowSink {
    let read = Arc::new(AtomicU64::new(0));
    let sha = Arc::new(Mutex::new(None));
    let (r, h) = (Arc::clone(&read), Arc::clone(&sha));
    let backend = Backend::spawn(move |mut s| {
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
        let _ = s.set_write_timeout(Some(IO_TIMEOUT));
        let Some((head, rest)) = read_head(&mut s) else {
            return;
        };
        let len: u64 = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&rest);
        let mut got = rest.len() as u64;
        r.fetch_add(got, Ordering::SeqCst);
        let began = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        while got < len {
            // Paced: a load shape that makes this backend the slowest part of the path.
            let allowed = began.elapsed().as_secs_f64() * rate_bytes_per_s as f64;
            if (got as f64) > allowed {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            let want = (len - got).min(buf.len() as u64) as usize;
            match s.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    ctx.update(&buf[..n]);
                    got += n as u64;
                    r.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
        let digest = hex(ctx.finish().as_ref());
        if let Ok(mut g) = h.lock() {
            *g = Some(digest.clone());
        }
        let _ = s.write_all(&ok_bytes(digest.as_bytes()));
    });
    SlowSink { backend, read, sha }
}

#[test]
fn a_64mib_upload_to_a_slow_backend_moves_inside_ringways_windows_with_bounded_memory() {
    if !have_h2() {
        return;
    }
    // 24 MiB/s: the whole upload takes ~2.7 s, while the client alone could send it faster.
    let sink = slow_sink(24 * 1024 * 1024);
    let (b, c) = (Httpd::named("b"), Httpd::named("c"));
    let rw = start([sink.backend.addr, b.addr, c.addr]);
    let mut rss = RssWatch::new(&rw);
    // How far the client's sending ran ahead of what the backend had read.
    let mut ahead_max = 0;
    let bytes = LARGE_BYTES.to_string();
    let v = run_client_with(
        "upload",
        rw.listen,
        &["--path", "/up", "--bytes", &bytes, "--seed", "5"],
        |sent| {
            rss.sample();
            let read = sink.read.load(Ordering::SeqCst);
            ahead_max = ahead_max.max(sent.saturating_sub(read));
        },
    );
    assert_eq!(v["ok"], true, "{v:#}");
    let s = stream(&v, "/up");
    assert_eq!(s["status"], 200, "{v:#}");
    assert_eq!(v["sent_bytes"], LARGE_BYTES, "{v:#}");
    let sent = v["sent_sha256"].as_str().unwrap_or_default();
    assert_eq!(
        s["body"], sent,
        "the backend's digest of what it read: {v:#}"
    );
    assert_eq!(
        sink.sha.lock().ok().and_then(|g| g.clone()).as_deref(),
        Some(sent)
    );
    assert_eq!(sink.read.load(Ordering::SeqCst), LARGE_BYTES);
    let growth = rss.growth_kib();
    eprintln!(
        "upload: {} s, ringway RSS {} -> peak {} KiB (+{growth} KiB), client at most {} KiB \
         ahead of the backend",
        v["seconds"],
        rss.before_kib,
        rss.peak_kib,
        ahead_max / 1024
    );
    assert!(
        growth < RSS_GROWTH_KIB_MAX,
        "ringway RSS grew by {growth} KiB during an upload to a slow backend"
    );
    assert!(
        ahead_max < AHEAD_BYTES_MAX,
        "the client got {ahead_max} bytes ahead of the backend: ringway opened its window \
         before the bytes moved on"
    );
}

#[test]
fn fifty_streams_on_one_connection_to_three_backends_each_get_their_own_response() {
    if !have_h2() {
        return;
    }
    let (a, b, c) = (Httpd::named("a"), Httpd::named("b"), Httpd::named("c"));
    let rw = start([a.addr, b.addr, c.addr]);
    let paths: Vec<String> = (0..50)
        .map(|i| match i % 3 {
            0 => format!("/a/{i}"),
            1 => format!("/b/{i}"),
            _ => format!("/c/{i}"),
        })
        .collect();
    let mut args = vec!["--paths"];
    args.extend(paths.iter().map(String::as_str));
    let v = run_client("get", rw.listen, &args);
    for p in &paths {
        let s = stream(&v, p);
        let name = if p.starts_with("/b/") {
            "b"
        } else if p.starts_with("/c/") {
            "c"
        } else {
            "a"
        };
        assert_eq!(s["status"], 200, "{p}: {v:#}");
        assert_eq!(s["body"], format!("{name} {p}"), "{p}: {v:#}");
        assert_eq!(s["ended"], true, "{p}: {v:#}");
    }
    assert_eq!(v["order"].as_array().map(Vec::len), Some(50), "{v:#}");
    assert_eq!(v["goaway"], serde_json::Value::Null, "{v:#}");
    assert!(v["remote_max_concurrent_streams"].as_u64().unwrap_or(0) >= 50);
    assert_eq!(a.requests().len(), 17);
    assert_eq!(b.requests().len(), 17);
    assert_eq!(c.requests().len(), 16);
    assert!(c.requests().iter().all(|r| r.target.starts_with("/c/")));
    assert_eq!(rw.total("h2_connections"), 1);
    assert_eq!(rw.total("h2_streams"), 50);
}

#[test]
fn a_slow_backend_does_not_delay_a_fast_stream_on_the_same_connection() {
    if !have_h2() {
        return;
    }
    // `/slow` answers only once `/b/release` came (or after 10 s); the client asks for the
    // release once `/b/fast` has ended, so the fast stream can end first only if it was served
    // while the slow one waited.
    let released = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&released);
    let a = Httpd::spawn(move |_| {
        poll(Duration::from_secs(10), || {
            r.load(Ordering::SeqCst).then_some(())
        });
        Reply::Bytes(ok("slow"))
    });
    let r = Arc::clone(&released);
    let b = Httpd::spawn(move |req| {
        if req.target == "/b/release" {
            r.store(true, Ordering::SeqCst);
        }
        Reply::Bytes(ok(&format!("b {}", req.target)))
    });
    let c = Httpd::named("c");
    let rw = start([a.addr, b.addr, c.addr]);
    let v = run_client(
        "slow-fast",
        rw.listen,
        &[
            "--slow",
            "/slow",
            "--fast",
            "/b/fast",
            "--release",
            "/b/release",
            "--fast-wait",
            "8",
        ],
    );
    assert_eq!(stream(&v, "/slow")["body"], "slow", "{v:#}");
    assert_eq!(stream(&v, "/b/fast")["body"], "b /b/fast", "{v:#}");
    let order: Vec<u64> = v["order"]
        .as_array()
        .map(|o| o.iter().filter_map(|s| s.as_u64()).collect())
        .unwrap_or_default();
    let (slow, fast) = (
        stream(&v, "/slow")["stream"].as_u64(),
        stream(&v, "/b/fast")["stream"].as_u64(),
    );
    let at = |id: Option<u64>| order.iter().position(|s| Some(*s) == id);
    assert_eq!(v["fast_in_time"], true, "{v:#}");
    assert!(
        at(fast) < at(slow),
        "the fast stream ended after the slow one: {v:#}"
    );
}

#[test]
fn one_failing_stream_gets_a_reset_or_502_while_the_others_complete_intact() {
    if !have_h2() {
        return;
    }
    const BIG_BYTES: usize = 256 * 1024;
    let a = Httpd::spawn(|r| {
        if r.target == "/die" {
            // Promises 100000 bytes, sends 10, closes: the head went out, so only a reset can
            // tell the client.
            return Reply::BytesThenClose(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789".to_vec(),
            );
        }
        let seed = r.target.len() as u64;
        Reply::Bytes(ok_bytes(&data(seed, BIG_BYTES)))
    });
    let b = Httpd::spawn(|r| Reply::Bytes(ok_bytes(&data(r.target.len() as u64, BIG_BYTES))));
    // Backend `c` is down: its streams fail before any head, with ringway's own status.
    let dead = DeadPort::new();
    let rw = start([a.addr, b.addr, dead.addr]);
    let paths = ["/ok1", "/die", "/b/ok22", "/c/dead", "/ok333", "/b/ok4444"];
    let mut args = vec!["--paths"];
    args.extend(paths);
    let v = run_client("get", rw.listen, &args);
    for p in ["/ok1", "/b/ok22", "/ok333", "/b/ok4444"] {
        let s = stream(&v, p);
        assert_eq!(s["status"], 200, "{p}: {v:#}");
        assert_eq!(s["ended"], true, "{p}: {v:#}");
        assert_eq!(s["body_bytes"], BIG_BYTES, "{p}: {v:#}");
        assert_eq!(
            s["body_sha256"].as_str(),
            Some(sha256_hex(&data(p.len() as u64, BIG_BYTES)).as_str()),
            "{p}"
        );
    }
    // Mid-response: HEADERS 200 went out, then RST_STREAM INTERNAL_ERROR.
    let die = stream(&v, "/die");
    assert_eq!(die["status"], 200, "{v:#}");
    assert_eq!(die["reset"], 2, "RST_STREAM INTERNAL_ERROR: {v:#}");
    assert_eq!(die["ended"], false, "{v:#}");
    // Before the head: a status of ringway's own, the stream ends normally.
    let down = stream(&v, "/c/dead");
    let status = down["status"].as_u64().unwrap_or(0);
    assert!(status == 502 || status == 503, "{v:#}");
    assert_eq!(down["ended"], true, "{v:#}");
    assert_eq!(down["reset"], serde_json::Value::Null, "{v:#}");
    // One connection throughout, never torn down.
    assert_eq!(v["goaway"], serde_json::Value::Null, "{v:#}");
    assert_eq!(rw.total("h2_connections"), 1);
    assert!(rw.total("h2_resets_sent") >= 1);
}

/// Runs the HEAD/204/304 streams (and a normal one after them) through `addr` with the client
/// options `tls`, and checks that each bodyless response is a HEADERS frame with END_STREAM.
fn check_bodyless_responses(addr: SocketAddr, tls: &[&str]) {
    let mut args = tls.to_vec();
    args.extend([
        "--header",
        "if-none-match",
        "\"v1\"",
        "--paths",
        "HEAD /x",
        "/204",
        "/304",
        "HEAD /304",
        "/after",
    ]);
    let v = run_client("get", addr, &args);
    for (p, status) in [("/x", 200), ("/204", 204), ("/304", 304)] {
        let s = stream(&v, p);
        assert_eq!(s["status"], status, "{p}: {v:#}");
        assert_eq!(s["data_frames"], 0, "{p}: no DATA frame: {v:#}");
        assert_eq!(
            s["end_on_headers"], true,
            "{p}: END_STREAM on HEADERS: {v:#}"
        );
        assert_eq!(s["body_bytes"], 0, "{p}: {v:#}");
    }
    // HEAD keeps the length a GET would have had.
    assert_eq!(stream(&v, "/x")["headers"]["content-length"], "5", "{v:#}");
    assert_eq!(stream(&v, "/304")["headers"]["etag"], "\"v1\"", "{v:#}");
    // The connection is clean after them: a normal response still has its body.
    let after = stream(&v, "/after");
    assert_eq!(after["body"], "hello", "{v:#}");
    assert_eq!(after["end_on_headers"], false, "{v:#}");
}

#[test]
fn head_204_and_304_end_on_headers_without_data_frames_plain_and_over_tls() {
    if !have_h2() {
        return;
    }
    let backend = Httpd::spawn(|r| {
        Reply::Bytes(match r.target.as_str() {
            "/204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec(),
            _ => ok("hello"),
        })
    });
    let (b, c) = (Httpd::named("b"), Httpd::named("c"));
    let ca = TestCa::new();
    let (cert, key) = ca.leaf("a", "a.test", &["a.test"]);
    let tls_port = free_port();
    let rw = Ringway::start_text(|l, ad| {
        let extra = h2_tls_listener(tls_port, &cert, &key);
        h2_config(l, ad, [backend.addr, b.addr, c.addr], &extra)
    });
    check_bodyless_responses(rw.listen, &[]);
    let tls_addr: SocketAddr = format!("127.0.0.1:{tls_port}").parse().expect("addr");
    let ca_file = ca.ca_file.display().to_string();
    let authority = format!("a.test:{tls_port}");
    // TLS with ALPN h2 (the client refuses anything else).
    check_bodyless_responses(
        tls_addr,
        &[
            "--tls-ca",
            &ca_file,
            "--sni",
            "a.test",
            "--authority",
            &authority,
        ],
    );
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 10);
    assert_eq!(reqs.iter().filter(|r| r.method == "HEAD").count(), 4);
    assert_eq!(
        reqs[5].header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(rw.total("h2_connections"), 2);
}
