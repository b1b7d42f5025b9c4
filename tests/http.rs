//! HTTP/1.1 listeners through the real binary: routing, keep-alive and pooling, headers, framing,
//! ringway's own errors, smuggling defenses, timeouts, WebSocket tunnels and the access log.
//! Clients: curl, raw sockets (for bytes curl would never send) and tungstenite.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::httpd::{Httpd, Reply, ok};
use common::*;

/// An HTTP listener with a default backend `www` and the given extra listener keys, routes and
/// backends (TOML appended as is).
fn http_config(
    listen: u16,
    admin: u16,
    www: SocketAddr,
    timeouts: &str,
    listener_extra: &str,
    rest: &str,
) -> String {
    format!(
        "[global]\nshards = 2\nadmin = \"127.0.0.1:{admin}\"\ndrain_timeout = \"5s\"\n\n\
         [timeouts]\nconnect = \"2s\"\n{timeouts}\n\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"www\"\n{listener_extra}\n\n\
         {rest}\n\
         [[backend]]\nname = \"www\"\nservers = [ {{ address = \"{www}\" }} ]\n"
    )
}

fn start(www: &Httpd) -> Ringway {
    Ringway::start_text(|l, a| http_config(l, a, www.addr, "", "", ""))
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends raw bytes, then reads until the peer closes (or `IO_TIMEOUT`).
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A raw client connection that reads responses one at a time (pipelined responses may arrive
/// in one read; the rest waits in `pending`).
struct Client {
    s: TcpStream,
    pending: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        Client {
            s,
            pending: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
    }

    /// Reads one response (head + Content-Length body).
    fn response(&mut self) -> String {
        let mut tmp = [0u8; 4096];
        loop {
            if let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.pending[..end + 4]).into_owned();
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if self.pending.len() >= end + 4 + len {
                    let resp: Vec<u8> = self.pending.drain(..end + 4 + len).collect();
                    return String::from_utf8_lossy(&resp).into_owned();
                }
            }
            let n = self.s.read(&mut tmp).expect("read response");
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&self.pending)
            );
            self.pending.extend_from_slice(&tmp[..n]);
        }
    }
}

fn status_of(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn routes_by_host_path_and_upgrade_header_with_a_default() {
    let www = Httpd::named("www");
    let ws = Httpd::named("ws");
    let api = Httpd::named("api");
    let rw = Ringway::start_text(|l, a| {
        http_config(
            l,
            a,
            www.addr,
            "",
            "",
            &format!(
                "[[listener.route]]\nhost_suffix = \"ws.example.com\"\nbackend = \"ws\"\n\
                 [[listener.route]]\nhost = \"*.api.example\"\npath_prefix = \"/v1/\"\nbackend = \"api\"\n\
                 [[listener.route]]\nheader = {{ name = \"Upgrade\", value = \"websocket\" }}\nbackend = \"ws\"\n\
                 [[backend]]\nname = \"ws\"\nservers = [ {{ address = \"{}\" }} ]\n\
                 [[backend]]\nname = \"api\"\nservers = [ {{ address = \"{}\" }} ]\n",
                ws.addr, api.addr
            ),
        )
    });
    let url = format!("http://{}/v1/users?x=1", rw.listen);
    assert_eq!(
        curl(&["-H", "Host: ws.example.com", &url]).0,
        "ws /v1/users?x=1"
    );
    assert_eq!(
        curl(&["-H", "Host: eu.api.example", &url]).0,
        "api /v1/users?x=1"
    );
    assert_eq!(
        curl(&["-H", "Host: api.example", &url]).0,
        "www /v1/users?x=1"
    );
    assert_eq!(
        curl(&[
            "-H",
            "Host: eu.api.example",
            &format!("http://{}/v2/", rw.listen)
        ])
        .0,
        "www /v2/"
    );
    assert_eq!(
        curl(&["-H", "Upgrade: WebSocket", &url]).0,
        "ws /v1/users?x=1"
    );
    assert_eq!(curl(&[&url]).0, "www /v1/users?x=1");
}

#[test]
fn no_route_and_no_default_backend_is_404_from_ringway() {
    let api = Httpd::named("api");
    let rw = Ringway::start_text(|l, a| {
        format!(
            "[global]\nshards = 1\nadmin = \"127.0.0.1:{a}\"\n\
             [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{l}\"\nmode = \"http\"\n\
             [[listener.route]]\npath_prefix = \"/api/\"\nbackend = \"api\"\n\
             [[backend]]\nname = \"api\"\nservers = [ {{ address = \"{}\" }} ]\n",
            api.addr
        )
    });
    let resp = raw(rw.listen, b"GET /other HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(status_of(&resp), 404, "{resp}");
    assert!(resp.contains("Connection: close"), "{resp}");
    assert!(api.requests().is_empty());
    assert_eq!(
        curl(&[&format!("http://{}/api/x", rw.listen)]).0,
        "api /api/x"
    );
}

#[test]
fn keep_alive_client_requests_reuse_one_pooled_backend_connection() {
    let www = Httpd::named("www");
    let rw = start(&www);
    let url = format!("http://{}/n", rw.listen);
    let urls: Vec<&str> = std::iter::repeat_n(url.as_str(), 10).collect();
    let (out, err) = curl(&urls);
    assert_eq!(out, "www /n".repeat(10), "{err}");
    assert_eq!(www.requests().len(), 10);
    assert_eq!(
        www.conn_count(),
        1,
        "one client connection -> one backend connection"
    );
    assert!(rw.total("http_pool_reused") >= 9);
    // A second client on the same shard may reuse the pooled connection too; never more
    // backend connections than clients.
    let (out, _) = curl(&[&url, &url]);
    assert_eq!(out, "www /n".repeat(2));
    assert!(www.conn_count() <= 2);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let www = Httpd::named("www");
    let rw = start(&www);
    let mut c = Client::connect(rw.listen);
    c.send(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
    for i in 1..=3 {
        let r = c.response();
        assert!(r.ends_with(&format!("www /{i}")), "{r}");
    }
}

#[test]
fn forwarding_headers_are_added_and_hop_by_hop_headers_removed() {
    let www = Httpd::named("www");
    let rw = Ringway::start_text(|l, a| {
        http_config(l, a, www.addr, "", "x_real_ip = true\nforwarded = true", "")
    });
    let resp = raw(
        rw.listen,
        b"GET /h HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nX-Keep: yes\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200, "{resp}");
    let reqs = www.requests();
    let r = &reqs[0];
    assert_eq!(
        r.header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(r.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        r.header("forwarded").as_deref(),
        Some("for=127.0.0.1;proto=http")
    );
    assert_eq!(r.header("te").as_deref(), Some("trailers"));
    assert_eq!(r.header("x-keep").as_deref(), Some("yes"));
    for gone in ["connection", "x-secret", "keep-alive", "proxy-connection"] {
        assert!(
            r.header(gone).is_none(),
            "{gone} reached the backend:\n{}",
            r.head
        );
    }
    // The client asked to close: ringway says so and closes after the response.
    assert!(resp.contains("Connection: close"), "{resp}");
}

/// Each malformed or ambiguous request gets its status, a close, and never reaches the backend.
#[test]
fn smuggling_and_malformed_requests_are_refused_before_the_backend() {
    let www = Httpd::named("www");
    let rw = start(&www);
    let cases: &[(&str, &[u8], u16)] = &[
        ("CL and TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("two CLs", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400),
        ("same CL twice", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", 400),
        ("CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\nabcd", 400),
        ("CL sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd", 400),
        ("TE gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        ("TE chunked twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 501),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", 400),
        ("space before colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n", 400),
        ("invalid name", b"GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n", 400),
        ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n", 400),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n", 400),
        ("missing Host", b"GET / HTTP/1.1\r\n\r\n", 400),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("userinfo in Host", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
        ("space in Host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("path in Host", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        ("port past 65535 in Host", b"GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 400),
        ("space in target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("control in target", b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("unknown version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ("broken version", b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400),
        ("garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400),
    ];
    for (name, bytes, status) in cases {
        let resp = raw(rw.listen, bytes);
        assert_eq!(status_of(&resp), *status, "{name}: {resp:?}");
        assert!(resp.contains("Connection: close"), "{name}: {resp}");
    }
    assert!(www.requests().is_empty(), "{:?}", www.requests());
    assert!(rw.total("http_4xx") >= 16);
    assert!(rw.total("http_5xx") >= 3);
}

#[test]
fn bad_chunk_size_in_a_request_body_is_400_and_closes() {
    let www = Httpd::named("www");
    let rw = start(&www);
    let resp = raw(
        rw.listen,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 400, "{resp}");
    // The head may have reached the backend, but never a complete request: it got no body.
    assert!(www.requests().iter().all(|r| r.body.is_empty()));
}

#[test]
fn oversized_heads_and_targets_get_431_and_414() {
    let www = Httpd::named("www");
    let rw =
        Ringway::start_text(|l, a| http_config(l, a, www.addr, "", "head_size_max = \"4KiB\"", ""));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "x".repeat(8000)
    );
    assert_eq!(status_of(&raw(rw.listen, big.as_bytes())), 431);
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(3000));
    assert_eq!(status_of(&raw(rw.listen, long.as_bytes())), 200);
    let too_long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    let rw2 = Ringway::start_text(|l, a| {
        http_config(l, a, www.addr, "", "head_size_max = \"64KiB\"", "")
    });
    assert_eq!(status_of(&raw(rw2.listen, too_long.as_bytes())), 414);
}

#[test]
fn body_over_body_size_max_is_413() {
    let www = Httpd::named("www");
    let rw =
        Ringway::start_text(|l, a| http_config(l, a, www.addr, "", "body_size_max = \"1KiB\"", ""));
    let (out, _) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-binary",
        &"x".repeat(2000),
        &format!("http://{}/up", rw.listen),
    ]);
    assert_eq!(out, "413");
    let (out, _) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-binary",
        &"x".repeat(500),
        &format!("http://{}/up", rw.listen),
    ]);
    assert_eq!(out, "200");
}

#[test]
fn slowloris_head_gets_408_after_http_request_timeout() {
    let www = Httpd::named("www");
    let rw =
        Ringway::start_text(|l, a| http_config(l, a, www.addr, "http_request = \"500ms\"", "", ""));
    let mut s = TcpStream::connect(rw.listen).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .expect("write");
    let t = Instant::now();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert_eq!(status_of(&out), 408, "{out}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(rw.total("http_request_timeouts"), 1);
    assert!(www.requests().is_empty());
}

#[test]
fn idle_keep_alive_client_is_closed_after_http_keep_alive() {
    let www = Httpd::named("www");
    let rw = Ringway::start_text(|l, a| {
        http_config(l, a, www.addr, "http_keep_alive = \"300ms\"", "", "")
    });
    let mut c = Client::connect(rw.listen);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.response();
    assert_eq!(status_of(&r), 200);
    let mut one = [0u8; 1];
    assert_eq!(c.s.read(&mut one).expect("clean close"), 0);
}

#[test]
fn backend_refusing_connections_is_502_and_a_silent_backend_is_504() {
    let dead = DeadPort::new();
    let rw = Ringway::start_text(|l, a| http_config(l, a, dead.addr, "", "", ""));
    let resp = raw(rw.listen, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(status_of(&resp), 502, "{resp}");

    let silent = Httpd::spawn(|_| Reply::Hang(Duration::from_secs(10)));
    let rw = Ringway::start_text(|l, a| {
        http_config(l, a, silent.addr, "server_response = \"500ms\"", "", "")
    });
    let t = Instant::now();
    let resp = raw(rw.listen, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(status_of(&resp), 504, "{resp}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(rw.total("http_server_timeouts"), 1);
}

#[test]
fn invalid_backend_responses_are_502_and_never_forwarded() {
    let bad = Httpd::spawn(|r| {
        Reply::BytesThenClose(match r.target.as_str() {
            "/cl-te" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            "/two-cl" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(),
            "/fold" => b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n".to_vec(),
            _ => b"NOT HTTP AT ALL\r\n\r\n".to_vec(),
        })
    });
    let rw = Ringway::start_text(|l, a| http_config(l, a, bad.addr, "", "", ""));
    for path in ["/cl-te", "/two-cl", "/fold", "/garbage"] {
        let resp = raw(
            rw.listen,
            format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_of(&resp), 502, "{path}: {resp}");
        assert!(!resp.contains("abcd") && !resp.contains("X-A"), "{resp}");
    }
    assert!(rw.total("http_bad_responses") >= 4);
}

#[test]
fn backend_dying_mid_response_truncates_and_closes_then_the_next_request_works() {
    let be = Httpd::spawn(|r| {
        if r.target == "/die" {
            let mut b = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
            b.extend(std::iter::repeat_n(b'x', 1000));
            Reply::BytesThenClose(b)
        } else {
            Reply::Bytes(ok("fine"))
        }
    });
    let rw = start(&be);
    let t = Instant::now();
    let resp = raw(rw.listen, b"GET /die HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.len() < 100_000, "truncated, not padded");
    assert!(t.elapsed() < Duration::from_secs(5), "closed, not hung");
    let url = format!("http://{}/ok", rw.listen);
    assert_eq!(curl(&[&url]).0, "fine");
}

#[test]
fn pooled_connection_closed_by_backend_is_replayed_for_a_bodyless_request() {
    // The backend closes after every response without saying so: the pooled connection is dead
    // when reused, and ringway must retry on a fresh one instead of failing the request.
    let be = Httpd::spawn(|r| Reply::BytesThenClose(ok(&format!("ok {}", r.target))));
    let rw = start(&be);
    let mut c = Client::connect(rw.listen);
    for i in 0..5 {
        c.send(format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        let r = c.response();
        assert!(r.ends_with(&format!("ok /{i}")), "{r}");
    }
}

#[test]
fn chunked_bodies_pass_both_ways_verbatim() {
    let be = Httpd::spawn(|r| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let mut resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for part in [&body[..body.len() / 2], &body[body.len() / 2..]] {
            resp.extend(format!("{:x};ext=1\r\n{part}\r\n", part.len()).into_bytes());
        }
        resp.extend(b"0\r\nX-Trailer: t\r\n\r\n");
        Reply::Bytes(resp)
    });
    let rw = start(&be);
    let data = "hello chunked world ".repeat(5000);
    let (out, err) = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &data,
        &format!("http://{}/up", rw.listen),
    ]);
    assert_eq!(out.len(), data.len(), "{err}");
    assert_eq!(out, data);
    let reqs = be.requests();
    assert_eq!(reqs[0].body.len(), data.len());
    assert_eq!(
        reqs[0].header("transfer-encoding").as_deref(),
        Some("chunked")
    );
}

#[test]
fn expect_100_continue_is_relayed() {
    let be = Httpd::spawn(|r| Reply::Bytes(ok(&format!("got {}", r.body.len()))));
    let rw = start(&be);
    let mut c = Client::connect(rw.listen);
    c.send(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.response();
    assert_eq!(
        interim, "HTTP/1.1 100 Continue\r\n\r\n",
        "100 Continue first"
    );
    c.send(b"hello");
    let r = c.response();
    assert!(r.ends_with("got 5"), "{r}");
}

#[test]
fn head_204_and_304_have_no_body_and_keep_the_connection() {
    let be = Httpd::spawn(|r| {
        Reply::Bytes(match r.target.as_str() {
            "/204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/304" => b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n".to_vec(),
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
                .to_vec()
                .into_iter()
                .chain(
                    (r.method != "HEAD")
                        .then_some(*b"0123456789")
                        .into_iter()
                        .flatten(),
                )
                .collect(),
        })
    });
    let rw = start(&be);
    let mut s = TcpStream::connect(rw.listen).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\nGET /g HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    let mut all = Vec::new();
    let mut tmp = [0u8; 4096];
    let want = "0123456789";
    while !String::from_utf8_lossy(&all).ends_with(want) {
        let n = s.read(&mut tmp).expect("read");
        assert!(n > 0, "{}", String::from_utf8_lossy(&all));
        all.extend_from_slice(&tmp[..n]);
    }
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 4, "{text}");
    assert_eq!(
        text.matches(want).count(),
        1,
        "only the GET has a body: {text}"
    );
}

#[test]
fn large_response_moves_by_splice_intact() {
    let size = 8 << 20;
    let body: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let expected = body.clone();
    let be = Httpd::spawn(move |_| {
        let mut r =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(&body);
        Reply::Bytes(r)
    });
    let rw = start(&be);
    let dir = TempDir::new("big");
    let path = dir.0.join("out.bin");
    let url = format!("http://{}/big", rw.listen);
    for _ in 0..2 {
        let (_, err) = curl(&[
            "-o",
            path.to_str().unwrap_or(""),
            &url,
            "-o",
            path.to_str().unwrap_or(""),
            &url,
        ]);
        let got = std::fs::read(&path).expect("read");
        assert_eq!(got.len(), expected.len(), "{err}");
        assert!(got == expected);
    }
    assert!(
        rw.total("bytes_spliced") >= 3 * (size as u64),
        "{}",
        rw.total("bytes_spliced")
    );
}

#[test]
fn websocket_echo_through_a_tunnel_including_a_1mib_frame() {
    let ws_addr = ws_echo_server();
    let www = Httpd::named("www");
    let rw = Ringway::start_text(|l, a| {
        http_config(
            l,
            a,
            www.addr,
            "tunnel = \"30s\"",
            "",
            &format!(
                "[[listener.route]]\nheader = {{ name = \"Upgrade\", value = \"websocket\" }}\nbackend = \"ws\"\n\
                 [[backend]]\nname = \"ws\"\nservers = [ {{ address = \"{ws_addr}\" }} ]\n"
            ),
        )
    });
    let stream = TcpStream::connect(rw.listen).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let (mut ws, resp) =
        tungstenite::client(format!("ws://{}/chat", rw.listen), stream).expect("handshake");
    assert_eq!(resp.status().as_u16(), 101);
    ws.send(tungstenite::Message::text("hello")).expect("send");
    assert_eq!(
        ws.read().expect("echo").into_text().expect("text").as_str(),
        "hello"
    );
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    ws.send(tungstenite::Message::binary(big.clone()))
        .expect("send big");
    let back = ws.read().expect("echo big").into_data();
    assert!(back.as_ref() == big.as_slice(), "1 MiB frame intact");
    let _ = ws.close(None);
    assert_eq!(rw.total("http_tunnels"), 1);
    // A plain request on the same listener still goes to the app.
    assert_eq!(curl(&[&format!("http://{}/x", rw.listen)]).0, "www /x");
}

#[test]
fn access_log_lines_in_combined_and_json() {
    let www = Httpd::named("www");
    let dir = TempDir::new("log");
    let json_path = dir.0.join("access.json");
    let rw =
        Ringway::start_text(|l, a| http_config(l, a, www.addr, "", "access_log = \"stdout\"", ""));
    let url = format!("http://{}/logged?q=1", rw.listen);
    curl(&["-A", "test-agent", &url]);
    let line = poll(Duration::from_secs(5), || {
        rw.stdout()
            .lines()
            .find(|l| l.contains("/logged"))
            .map(str::to_string)
    })
    .expect("combined line");
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains("\"GET /logged?q=1 HTTP/1.1\" 200 "), "{line}");
    assert!(
        line.contains("\"test-agent\" backend=www server="),
        "{line}"
    );
    assert!(line.contains(" term=done"), "{line}");

    let p = json_path.to_string_lossy().into_owned();
    let rw = Ringway::start_text(|l, a| {
        http_config(
            l,
            a,
            www.addr,
            "",
            &format!("access_log = \"{p}\"\naccess_log_format = \"json\""),
            "",
        )
    });
    raw(rw.listen, b"GET /nope HTTP/1.1\r\n\r\n");
    let line = poll(Duration::from_secs(5), || {
        std::fs::read_to_string(&json_path)
            .ok()
            .filter(|t| t.contains('\n'))
    })
    .expect("json line");
    let v: serde_json::Value =
        serde_json::from_str(line.lines().next().unwrap_or("")).expect("json");
    assert_eq!(v["status"], 400);
    assert_eq!(v["term"], "client_error");
}

#[test]
fn per_backend_stats_count_status_classes() {
    let be = Httpd::spawn(|r| {
        Reply::Bytes(if r.target == "/missing" {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
        } else {
            ok("x")
        })
    });
    let rw = start(&be);
    let url = format!("http://{}/", rw.listen);
    let missing = format!("http://{}/missing", rw.listen);
    curl(&[&url, &url, &missing]);
    let stats = rw.stats();
    let server = "/backends/0/servers/0";
    assert_eq!(
        stat_u64(&stats, &format!("{server}/requests")),
        3,
        "{stats}"
    );
    assert_eq!(stat_u64(&stats, &format!("{server}/http_2xx")), 2);
    assert_eq!(stat_u64(&stats, &format!("{server}/http_4xx")), 1);
    assert_eq!(stat_u64(&stats, "/total/http_requests"), 3);
}

/// Runs a shipped example with its listener and admin on ephemeral ports and every server
/// address replaced by a test backend answering `<server or backend name> <path>`.
fn run_example(file: &str) -> (Ringway, Vec<Httpd>) {
    let text = std::fs::read_to_string(file).expect("example");
    let mut backends = Vec::new();
    let rw = Ringway::start_text(|l, a| {
        // A start retried on new ports gets new backends too.
        backends.clear();
        let mut out = String::new();
        let mut backend_name = String::new();
        for line in text.lines() {
            let t = line.trim_start();
            if t.starts_with("bind = ") {
                out.push_str(&format!("bind = \"127.0.0.1:{l}\"\n"));
            } else if t.starts_with("admin = ") {
                out.push_str(&format!("admin = \"127.0.0.1:{a}\"\n"));
            } else if t.starts_with("access_log = ") {
                out.push_str("access_log = \"off\"\n");
            } else if let Some(start) = line.find("address = \"") {
                let rest = &line[start + 11..];
                let end = rest.find('"').unwrap_or(0);
                let name = line
                    .split("name = \"")
                    .nth(1)
                    .and_then(|n| n.split('"').next())
                    .unwrap_or(&backend_name)
                    .to_string();
                let name: &'static str = Box::leak(name.into_boxed_str());
                let be = Httpd::named(name);
                out.push_str(&format!(
                    "{}{}{}\n",
                    &line[..start + 11],
                    be.addr,
                    &rest[end..]
                ));
                backends.push(be);
            } else {
                if let Some(n) = t
                    .strip_prefix("name = \"")
                    .and_then(|n| n.strip_suffix('"'))
                {
                    backend_name = n.to_string();
                }
                out.push_str(line);
                out.push('\n');
            }
        }
        if !out.contains("[global]") {
            out = format!("[global]\nadmin = \"127.0.0.1:{a}\"\n{out}");
        }
        out
    });
    (rw, backends)
}

#[test]
fn shipped_http_examples_route_like_their_haproxy_originals() {
    let (rw, _b) = run_example("examples/websocket-routing.toml");
    for (host, path, want) in [
        ("ws.example.com", "/", "ws"),
        ("example.com", "/websockets/x", "ws"),
        ("example.com", "/", "www"),
    ] {
        let (got, err) = curl(&[
            "-H",
            &format!("Host: {host}"),
            &format!("http://{}{path}", rw.listen),
        ]);
        assert_eq!(got, format!("{want} {path}"), "{host}{path}: {err}");
    }
    let (rw, _b) = run_example("examples/socketio.toml");
    for (path, want) in [("/app", "web1"), ("/node/x", "node")] {
        let (got, err) = curl(&[&format!("http://{}{path}", rw.listen)]);
        assert!(got.starts_with(want), "{path}: {got} {err}");
    }
}

#[test]
fn socketio_example_keeps_a_polling_session_on_its_node() {
    let (rw, _b) = run_example("examples/socketio.toml");
    let dir = TempDir::new("jar");
    let jar = dir.0.join("cookies");
    let jar = jar.to_str().unwrap_or("");
    let url = format!("http://{}/socket.io/?EIO=4&transport=polling", rw.listen);
    let (first, _) = curl(&["-c", jar, "-b", jar, &url]);
    let node = first.split(' ').next().unwrap_or("").to_string();
    assert!(node.starts_with("node"), "{first}");
    for _ in 0..20 {
        let (got, _) = curl(&["-c", jar, "-b", jar, &url]);
        assert!(got.starts_with(&node), "session moved: {got}");
    }
    // Without the cookie, new sessions are balanced over both nodes.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (got, _) = curl(&[&url]);
        seen.insert(got.split(' ').next().unwrap_or("").to_string());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    let stats = rw.stats();
    assert_eq!(
        stat_str(&stats, "/backends/1/servers/0/state"),
        "UP",
        "{stats}"
    );
}

/// A fast backend streams a 64 MiB chunked response (copy path: chunked bodies are scanned) to a
/// client that reads slowly at first: ringway must hold back, not buffer. Bound as in the L4
/// slow-reader test (24 MiB growth, against a 64 MiB body).
#[test]
fn slow_client_on_a_large_chunked_response_keeps_rss_bounded() {
    let chunk = vec![b'z'; 64 * 1024];
    let total_chunks = 1024;
    let be = Httpd::spawn(move |_| {
        let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..total_chunks {
            r.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            r.extend_from_slice(&chunk);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        Reply::BytesThenClose(r)
    });
    let rw = Ringway::start_text(|l, a| {
        http_config(l, a, be.addr, "", "", "").replace("shards = 2", "shards = 1")
    });
    let base = rw.rss_kib();
    let mut c = Client::connect(rw.listen);
    c.send(b"GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let mut buf = vec![0u8; 16 * 1024];
    let (mut got, mut reads, mut peak) = (0u64, 0u64, base);
    let mut tail = Vec::new();
    loop {
        let n = c.s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        got += n as u64;
        reads += 1;
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 16 {
            tail.drain(..tail.len() - 16);
        }
        if got < 16 << 20 && reads.is_multiple_of(16) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if reads.is_multiple_of(64) {
            peak = peak.max(rw.rss_kib());
        }
    }
    peak = peak.max(rw.rss_kib());
    assert!(got > 64 << 20, "whole body received: {got}");
    assert!(tail.ends_with(b"0\r\n\r\n"), "ends with the last chunk");
    assert!(
        peak.saturating_sub(base) <= 24 * 1024,
        "RSS grew from {base} KiB to {peak} KiB"
    );
}

/// RFC 9112 §7.1/§6.3 and §2.3: an HTTP/1.0 client cannot take chunked framing. A chunked
/// response is de-chunked (extensions and trailers dropped) and sent close-delimited, and a
/// keep-alive 1.0 client is closed after it; an HTTP/1.1 client on the same listener still gets
/// the chunks verbatim and keeps its connection.
#[test]
fn http_1_0_clients_get_chunked_responses_dechunked_and_close_delimited() {
    let be = Httpd::spawn(|_| {
        Reply::Bytes(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-App: 1\r\n\r\n\
              5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
                .to_vec(),
        )
    });
    let rw = start(&be);
    for request in [
        &b"GET /a HTTP/1.0\r\n\r\n"[..],
        b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\nHost: x\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(rw.listen).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s.write_all(request).expect("write");
        let mut out = Vec::new();
        // The response ends with the connection: read_to_end returns only when ringway closes.
        s.read_to_end(&mut out).expect("read until close");
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(head.contains("X-App: 1"), "{text}");
        assert!(
            !head.to_ascii_lowercase().contains("transfer-encoding"),
            "{text}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("content-length"),
            "{text}"
        );
        assert!(head.contains("Connection: close"), "{text}");
        assert_eq!(
            body, "hello, world",
            "data only, no chunk framing or trailer"
        );
    }
    // HTTP/1.1 on the same listener: the same response passes verbatim, the connection stays.
    let mut c = Client::connect(rw.listen);
    let end = b"0\r\nX-Trailer: t\r\n\r\n";
    for _ in 0..2 {
        c.send(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut got = Vec::new();
        let mut tmp = [0u8; 4096];
        while !got.ends_with(end) {
            let n = c.s.read(&mut tmp).expect("read");
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&tmp[..n]);
        }
        let resp = String::from_utf8_lossy(&got);
        assert!(resp.contains("Transfer-Encoding: chunked"), "{resp}");
        assert!(resp.contains("5;ext=1\r\nhello\r\n"), "verbatim: {resp}");
    }
}
