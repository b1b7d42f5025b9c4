//! TLS without decrypting: SNI passthrough on a TCP listener, with real `openssl s_server`
//! backends and `openssl s_client` clients.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// An `openssl s_server` with a self-signed certificate for `cn`, killed on drop.
struct TlsBackend {
    addr: SocketAddr,
    _server: SServer,
    _dir: TempDir,
}

impl TlsBackend {
    fn start(cn: &str) -> TlsBackend {
        let dir = TempDir::new("tls");
        let (key, cert) = (dir.0.join("key.pem"), dir.0.join("cert.pem"));
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-subj", &format!("/CN={cn}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl req");
        assert!(ok.success());
        let server = SServer::start(&cert, &key);
        TlsBackend {
            addr: server.addr,
            _server: server,
            _dir: dir,
        }
    }
}

/// The subject CN of the certificate the server presents to a client sending `sni`.
fn peer_cn(addr: SocketAddr, sni: Option<&str>) -> String {
    tls_subject(addr, sni)
}

fn sni_config(
    listen: u16,
    admin: u16,
    a: SocketAddr,
    b: SocketAddr,
    default: Option<SocketAddr>,
) -> String {
    let mut text = format!(
        "[global]\nshards = 2\nadmin = \"127.0.0.1:{admin}\"\n\
         [[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"tcp\"\npeek_timeout = \"1s\"\n{}\n\
         [[listener.route]]\nsni = \"a.example\"\nbackend = \"a\"\n\
         [[listener.route]]\nsni = \"*.b.example\"\nbackend = \"b\"\n\
         [[backend]]\nname = \"a\"\nservers = [ {{ address = \"{a}\" }} ]\n\
         [[backend]]\nname = \"b\"\nservers = [ {{ address = \"{b}\" }} ]\n",
        if default.is_some() {
            "backend = \"fallback\""
        } else {
            ""
        }
    );
    if let Some(d) = default {
        text.push_str(&format!(
            "[[backend]]\nname = \"fallback\"\nservers = [ {{ address = \"{d}\" }} ]\n"
        ));
    }
    text
}

#[test]
fn sni_passthrough_routes_by_server_name_without_decrypting() {
    let a = TlsBackend::start("a.example");
    let b = TlsBackend::start("www.b.example");
    let rw = Ringway::start_text(|l, ad| sni_config(l, ad, a.addr, b.addr, None));
    // The client sees each backend's own certificate: ringway never terminates TLS here.
    assert!(peer_cn(rw.listen, Some("a.example")).contains("CN=a.example"));
    assert!(peer_cn(rw.listen, Some("www.b.example")).contains("CN=www.b.example"));
    assert!(
        peer_cn(rw.listen, Some("A.EXAMPLE")).contains("CN=a.example"),
        "SNI is case-insensitive"
    );
    // No route and no default: closed.
    assert_eq!(peer_cn(rw.listen, Some("c.example")), "");
    assert!(rw.total("tls_peek_rejected") >= 1);
}

#[test]
fn sni_passthrough_default_backend_takes_clients_without_sni() {
    let a = TlsBackend::start("a.example");
    let b = TlsBackend::start("www.b.example");
    let d = TlsBackend::start("default.example");
    let rw = Ringway::start_text(|l, ad| sni_config(l, ad, a.addr, b.addr, Some(d.addr)));
    assert!(peer_cn(rw.listen, None).contains("CN=default.example"));
    assert!(peer_cn(rw.listen, Some("other.example")).contains("CN=default.example"));
}

#[test]
fn non_tls_bytes_and_silence_on_an_sni_listener_are_closed() {
    let a = TlsBackend::start("a.example");
    let b = TlsBackend::start("www.b.example");
    let rw = Ringway::start_text(|l, ad| sni_config(l, ad, a.addr, b.addr, None));
    let mut s = TcpStream::connect(rw.listen).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        .expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty(), "closed without an answer");
    // A client that sends nothing is closed after peek_timeout (1 s).
    let mut quiet = TcpStream::connect(rw.listen).expect("connect");
    quiet.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let t = std::time::Instant::now();
    let mut one = [0u8; 1];
    assert!(matches!(quiet.read(&mut one), Ok(0) | Err(_)));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert!(rw.total("tls_peek_rejected") >= 1);
    assert_eq!(rw.total("active"), 0);
}

/// A backend that reads a PROXY header (v1 line or v2 binary), answers with what it announced
/// (`src dst`), then echoes.
fn proxy_backend() -> Backend {
    Backend::spawn(|mut s| {
        let mut buf = vec![0u8; 512];
        let mut got = 0;
        let parsed = loop {
            let Ok(n) = s.read(&mut buf[got..]) else {
                return;
            };
            if n == 0 {
                return;
            }
            got += n;
            if let Ok(h) = ppp::v2::Header::try_from(&buf[..got]) {
                let text = match h.addresses {
                    ppp::v2::Addresses::IPv4(a) => format!(
                        "v2 {}:{} {}:{}",
                        a.source_address, a.source_port, a.destination_address, a.destination_port
                    ),
                    other => format!("v2 {other:?}"),
                };
                break (text, h.len());
            }
            if let Some(end) = buf[..got].windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&buf[..end]).to_string();
                break (line, end + 2);
            }
            if got == buf.len() {
                return;
            }
        };
        let _ = s.write_all(format!("{}\n", parsed.0).as_bytes());
        let _ = s.write_all(&buf[parsed.1..got]);
        let mut rest = [0u8; 4096];
        while let Ok(n) = s.read(&mut rest) {
            if n == 0 || s.write_all(&rest[..n]).is_err() {
                break;
            }
        }
    })
}

#[test]
fn send_proxy_v1_on_tcp_announces_the_real_client() {
    let be = proxy_backend();
    let rw = Ringway::start_text(|l, a| {
        format!(
            "[global]\nshards = 2\nadmin = \"127.0.0.1:{a}\"\n\
             [[listener]]\nname = \"t\"\nbind = \"127.0.0.1:{l}\"\nbackend = \"b\"\n\
             [[backend]]\nname = \"b\"\nservers = [ {{ address = \"{}\", send_proxy = \"v1\" }} ]\n",
            be.addr
        )
    });
    let mut c = TcpStream::connect(rw.listen).expect("connect");
    c.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let me = c.local_addr().expect("local");
    c.write_all(b"hello").expect("write");
    let mut got = vec![0u8; 256];
    let mut n = 0;
    while !String::from_utf8_lossy(&got[..n]).ends_with("hello") {
        let k = c.read(&mut got[n..]).expect("read");
        assert!(k > 0);
        n += k;
    }
    let text = String::from_utf8_lossy(&got[..n]).to_string();
    assert_eq!(
        text,
        format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\nhello",
            me.port(),
            rw.listen.port()
        )
    );
}

#[test]
fn send_proxy_v2_on_http_announces_the_real_client_and_is_never_pooled() {
    let be = Backend::spawn(|mut s| {
        let mut buf = vec![0u8; 4096];
        let mut got = 0;
        loop {
            let Ok(n) = s.read(&mut buf[got..]) else {
                return;
            };
            if n == 0 {
                return;
            }
            got += n;
            if let Ok(h) = ppp::v2::Header::try_from(&buf[..got]) {
                let ppp::v2::Addresses::IPv4(a) = h.addresses else {
                    return;
                };
                let head_end = buf[..got].windows(4).position(|w| w == b"\r\n\r\n");
                if head_end.is_none() {
                    continue;
                }
                let body = format!("{}:{}", a.source_address, a.source_port);
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
                return;
            }
        }
    });
    let rw = Ringway::start_text(|l, a| {
        format!(
            "[global]\nshards = 1\nadmin = \"127.0.0.1:{a}\"\n\
             [[listener]]\nname = \"h\"\nbind = \"127.0.0.1:{l}\"\nmode = \"http\"\nbackend = \"b\"\n\
             [[backend]]\nname = \"b\"\nservers = [ {{ address = \"{}\", send_proxy = \"v2\" }} ]\n",
            be.addr
        )
    });
    for _ in 0..3 {
        let mut c = TcpStream::connect(rw.listen).expect("connect");
        c.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let me = c.local_addr().expect("local");
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        assert!(out.ends_with(&format!("127.0.0.1:{}", me.port())), "{out}");
    }
    assert_eq!(rw.total("http_pool_reused"), 0);
}

fn accept_proxy_config(listen: u16, admin: u16, backend: SocketAddr, accept: bool) -> String {
    format!(
        "[global]\nshards = 2\nadmin = \"127.0.0.1:{admin}\"\n\
         [[listener]]\nname = \"h\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"b\"\n{}\n\
         [[backend]]\nname = \"b\"\nservers = [ {{ address = \"{backend}\" }} ]\n",
        if accept {
            "accept_proxy = true\nx_real_ip = true"
        } else {
            ""
        }
    )
}

fn send_raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn accept_proxy_takes_the_client_address_from_v1_and_v2_headers() {
    let be = common::httpd::Httpd::spawn(|r| {
        common::httpd::Reply::Bytes(common::httpd::ok(&format!(
            "{} {}",
            r.header("x-forwarded-for").unwrap_or_default(),
            r.header("x-real-ip").unwrap_or_default()
        )))
    });
    let rw = Ringway::start_text(|l, a| accept_proxy_config(l, a, be.addr, true));
    let request = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let mut v1 = b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\n".to_vec();
    v1.extend_from_slice(request);
    assert!(send_raw(rw.listen, &v1).ends_with("203.0.113.9 203.0.113.9"));
    let src: SocketAddr = "198.51.100.7:4444".parse().expect("addr");
    let dst: SocketAddr = "10.0.0.1:80".parse().expect("addr");
    let mut v2 =
        ringway::proxy_protocol::header(ringway::proxy_protocol::ProxyVersion::V2, src, dst);
    v2.extend_from_slice(request);
    assert!(send_raw(rw.listen, &v2).ends_with("198.51.100.7 198.51.100.7"));
    // Without the header, or with a broken one: closed without an answer.
    assert_eq!(send_raw(rw.listen, request), "");
    assert_eq!(
        send_raw(rw.listen, b"PROXY TCP4 nonsense\r\nGET / HTTP/1.1\r\n\r\n"),
        ""
    );
    assert!(rw.total("proxy_rejected") >= 2);
}

#[test]
fn a_proxy_header_on_a_listener_not_configured_for_it_is_refused() {
    let be = common::httpd::Httpd::named("b");
    let rw = Ringway::start_text(|l, a| accept_proxy_config(l, a, be.addr, false));
    let out = send_raw(
        rw.listen,
        b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(be.requests().is_empty());
}

#[test]
fn accept_proxy_on_tcp_strips_the_header_and_passes_the_client_on() {
    // ringway between two balancers: it reads the client from the incoming header and
    // announces the same client to its backend.
    let be = proxy_backend();
    let rw = Ringway::start_text(|l, a| {
        format!(
            "[global]\nshards = 2\nadmin = \"127.0.0.1:{a}\"\n\
             [[listener]]\nname = \"t\"\nbind = \"127.0.0.1:{l}\"\nbackend = \"b\"\naccept_proxy = true\n\
             [[backend]]\nname = \"b\"\nservers = [ {{ address = \"{}\", send_proxy = \"v1\" }} ]\n",
            be.addr
        )
    });
    let mut c = TcpStream::connect(rw.listen).expect("connect");
    c.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    c.write_all(b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 443\r\nhello")
        .expect("write");
    let mut got = vec![0u8; 256];
    let mut n = 0;
    while !String::from_utf8_lossy(&got[..n]).ends_with("hello") {
        let k = c.read(&mut got[n..]).expect("read");
        assert!(k > 0, "{}", String::from_utf8_lossy(&got[..n]));
        n += k;
    }
    let text = String::from_utf8_lossy(&got[..n]).to_string();
    assert!(
        text.starts_with("PROXY TCP4 203.0.113.9 127.0.0.1 5555 "),
        "the backend sees the announced client: {text}"
    );
    assert!(
        text.ends_with("\nhello"),
        "the incoming header is not forwarded: {text}"
    );
    // No header: closed, counted.
    let mut bad = TcpStream::connect(rw.listen).expect("connect");
    bad.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    bad.write_all(b"hello without a header\r\n").expect("write");
    let mut out = Vec::new();
    let _ = bad.read_to_end(&mut out);
    assert!(out.is_empty());
    assert!(rw.total("proxy_rejected") >= 1);
}

#[test]
fn each_tcp_listener_waits_its_own_peek_timeout() {
    let echo = Backend::echo();
    let mut slow_port = 0;
    let rw = Ringway::start_text(|l, a| {
        slow_port = free_port();
        format!(
            "[global]\nshards = 2\nadmin = \"127.0.0.1:{a}\"\n\
             [[listener]]\nname = \"quick\"\nbind = \"127.0.0.1:{l}\"\nmode = \"tcp\"\nbackend = \"e\"\naccept_proxy = true\npeek_timeout = \"300ms\"\n\
             [[listener]]\nname = \"patient\"\nbind = \"127.0.0.1:{slow_port}\"\nmode = \"tcp\"\nbackend = \"e\"\naccept_proxy = true\npeek_timeout = \"5s\"\n\
             [[backend]]\nname = \"e\"\nservers = [ {{ address = \"{}\" }} ]\n",
            echo.addr
        )
    });
    let silent = |addr: SocketAddr| {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        s
    };
    // The quick listener gives up on a silent client after ~300 ms...
    let mut quick = silent(rw.listen);
    let started = std::time::Instant::now();
    let mut one = [0u8; 1];
    assert!(matches!(quick.read(&mut one), Ok(0) | Err(_)));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
    // ...while the patient one still waits, and still serves a late PROXY header.
    let patient_addr: SocketAddr = format!("127.0.0.1:{slow_port}").parse().expect("addr");
    let mut patient = silent(patient_addr);
    std::thread::sleep(Duration::from_millis(1000));
    patient
        .write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 4000 80\r\nping")
        .expect("late header");
    let mut got = [0u8; 4];
    patient
        .read_exact(&mut got)
        .expect("echo after a late header");
    assert_eq!(&got, b"ping");
}
