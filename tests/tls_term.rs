//! TLS termination, session resumption and protocol detection through the real binary, with
//! real clients: curl, `openssl s_client`, sslscan, and a rustls + tungstenite WebSocket client.
//! Certificates come from a per-test CA made with rcgen.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::certs::TestCa;
use common::httpd::Httpd;
use common::*;

/// Two certificates: `a.test` (exact) and `*.b.test` (wildcard, the default).
struct Site {
    ca: TestCa,
    a: (std::path::PathBuf, std::path::PathBuf),
    b: (std::path::PathBuf, std::path::PathBuf),
}

impl Site {
    fn new() -> Site {
        let ca = TestCa::new();
        let a = ca.leaf("a", "a.test", &["a.test"]);
        let b = ca.leaf("b", "wild.b.test", &["*.b.test"]);
        Site { ca, a, b }
    }

    /// `[listener.tls]` with both certificates, `*.b.test` the default.
    fn tls_block(&self, extra: &str) -> String {
        format!(
            "[listener.tls]\n{extra}\n\
             [[listener.tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n\
             [[listener.tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\ndefault = true\n",
            self.a.0.display(),
            self.a.1.display(),
            self.b.0.display(),
            self.b.1.display()
        )
    }
}

fn https_config(
    listen: u16,
    admin: u16,
    shards: u32,
    site: &Site,
    backend: SocketAddr,
    listener_extra: &str,
    tls_extra: &str,
) -> String {
    format!(
        "[global]\nshards = {shards}\nadmin = \"127.0.0.1:{admin}\"\n\
         [[listener]]\nname = \"https\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"web\"\n{listener_extra}\n{}\n\
         [[backend]]\nname = \"web\"\nservers = [ {{ address = \"{backend}\" }} ]\n",
        site.tls_block(tls_extra)
    )
}

/// curl over https, verifying against the test CA, with `name` resolved to ringway.
/// Returns (status, body, the server certificate's subject line).
fn curl_https(addr: SocketAddr, name: &str, path: &str, ca: &Path) -> (String, String, String) {
    let (status, body, subject, _) = curl_https_with(addr, name, path, ca, &[]);
    (status, body, subject)
}

/// [`curl_https`] with more curl arguments (`--http1.1`, `--http2`); also returns the HTTP
/// version curl spoke (`1.1`, `2`).
fn curl_https_with(
    addr: SocketAddr,
    name: &str,
    path: &str,
    ca: &Path,
    args: &[&str],
) -> (String, String, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-v", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(args)
        .arg("--resolve")
        .arg(format!("{name}:{}:127.0.0.1", addr.port()))
        .arg(format!("https://{name}:{}{path}", addr.port()))
        .args(["-w", "\n%{http_code} %{http_version}"])
        .output()
        .expect("curl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let (body, last) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let (status, version) = last.split_once(' ').unwrap_or((last, ""));
    let subject = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix('*')
                .map(str::trim)
                .and_then(|l| l.strip_prefix("subject: "))
        })
        .unwrap_or("")
        .to_string();
    (
        status.to_string(),
        body.to_string(),
        subject,
        version.to_string(),
    )
}

#[test]
fn curl_gets_the_certificate_of_each_sni_name_and_the_app_sees_https() {
    let site = Site::new();
    let www = Httpd::named("www");
    let rw = Ringway::start_text(|l, a| https_config(l, a, 2, &site, www.addr, "", ""));
    let ca = &site.ca.ca_file;

    let (status, body, subject) = curl_https(rw.listen, "a.test", "/one", ca);
    assert_eq!((status.as_str(), body.as_str()), ("200", "www /one"));
    assert!(subject.contains("CN=a.test"), "{subject}");

    let (status, body, subject) = curl_https(rw.listen, "x.b.test", "/two", ca);
    assert_eq!((status.as_str(), body.as_str()), ("200", "www /two"));
    assert!(subject.contains("CN=wild.b.test"), "{subject}");

    // Verification really happens: a.test's certificate does not cover other names, so a
    // client asking for one gets the default (*.b.test), which fails curl's name check.
    let (status, _, _) = curl_https(rw.listen, "c.test", "/", ca);
    assert_eq!(status, "000", "name mismatch refused by curl");

    let reqs = www.requests();
    assert!(reqs.len() >= 2);
    for r in &reqs[..2] {
        assert_eq!(r.header("X-Forwarded-Proto").as_deref(), Some("https"));
        assert_eq!(r.header("X-Forwarded-For").as_deref(), Some("127.0.0.1"));
    }
    assert!(rw.total("tls_handshakes") >= 3);
    assert_eq!(rw.total("tls_handshake_errors"), 0);
}

/// Runs `openssl s_client` with `args`, feeding it nothing for `linger` (so that TLS 1.3
/// tickets arrive before it closes); returns stdout.
fn s_client(addr: SocketAddr, args: &[&str], linger: Duration) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "a.test",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let stdin = child.stdin.take();
    std::thread::sleep(linger);
    drop(stdin);
    let out = child.wait_with_output().expect("s_client output");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn count(text: &str, prefix: &str) -> usize {
    text.lines().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn openssl_reconnect_resumes_with_session_ids_and_tickets() {
    let site = Site::new();
    let www = Httpd::named("www");
    // One shard: the per-shard session cache sees every reconnect.
    let rw = Ringway::start_text(|l, a| https_config(l, a, 1, &site, www.addr, "", ""));
    let ids = s_client(
        rw.listen,
        &["-tls1_2", "-no_ticket", "-reconnect"],
        Duration::ZERO,
    );
    assert_eq!(count(&ids, "New, TLSv1.2"), 1, "{ids}");
    assert_eq!(count(&ids, "Reused, TLSv1.2"), 5, "session IDs: {ids}");
    let tickets = s_client(rw.listen, &["-tls1_2", "-reconnect"], Duration::ZERO);
    assert_eq!(count(&tickets, "Reused, TLSv1.2"), 5, "tickets: {tickets}");
    assert!(rw.total("tls_resumed") >= 10);
}

#[test]
fn tickets_resume_across_shards_and_tls13_sessions_resume() {
    let site = Site::new();
    let www = Httpd::named("www");
    let rw = Ringway::start_text(|l, a| https_config(l, a, 2, &site, www.addr, "", ""));
    // TLS 1.2 tickets: every reconnect resumes whichever shard the kernel hands it to.
    let mut reused = 0;
    for _ in 0..3 {
        let out = s_client(rw.listen, &["-tls1_2", "-reconnect"], Duration::ZERO);
        reused += count(&out, "Reused, TLSv1.2");
    }
    assert_eq!(reused, 15, "all 15 reconnects resumed");
    // TLS 1.3: tickets arrive after the handshake; save the session, then resume it (s_client
    // -reconnect in OpenSSL 3.0 reconnects before reading them, so sess_out/sess_in is used).
    let dir = TempDir::new("sess");
    let sess = dir.0.join("s13").display().to_string();
    let first = s_client(
        rw.listen,
        &["-tls1_3", "-sess_out", &sess],
        Duration::from_millis(500),
    );
    assert_eq!(count(&first, "New, TLSv1.3"), 1, "{first}");
    for _ in 0..6 {
        let again = s_client(
            rw.listen,
            &["-tls1_3", "-sess_in", &sess],
            Duration::from_millis(100),
        );
        assert_eq!(count(&again, "Reused, TLSv1.3"), 1, "{again}");
    }
    // Both shards served handshakes, and every one after the first resumed.
    let stats = rw.stats();
    let shards = stats["per_shard"].as_array().expect("per_shard");
    assert!(
        (0..shards.len()).all(
            |i| stat_u64(&stats, &format!("/per_shard/{i}/tls_handshakes"))
                + stat_u64(&stats, &format!("/per_shard/{i}/tls_resumed"))
                > 0
        ),
        "{stats}"
    );
    assert!(rw.total("tls_resumed") >= 21);
}

#[test]
fn a_reload_keeps_tls_sessions_and_serves_a_replaced_certificate() {
    let site = Site::new();
    let www = Httpd::named("www");
    let other = Httpd::named("other");
    let rw = Ringway::start_text(|l, a| https_config(l, a, 1, &site, www.addr, "", ""));
    let dir = TempDir::new("sess");
    let sess = dir.0.join("s12").display().to_string();
    let first = s_client(
        rw.listen,
        &["-tls1_2", "-no_ticket", "-sess_out", &sess],
        Duration::ZERO,
    );
    assert_eq!(count(&first, "New, TLSv1.2"), 1, "{first}");
    let path = rw.dir.0.join("ringway.toml");
    let text = std::fs::read_to_string(&path).expect("config");

    // A reload that changes the backend, not TLS: the session cache stays, the session resumes.
    std::fs::write(
        &path,
        text.replace(&www.addr.to_string(), &other.addr.to_string()),
    )
    .expect("write");
    rw.signal(libc::SIGHUP);
    let moved = poll(Duration::from_secs(5), || {
        let (_, body, _) = curl_https(rw.listen, "a.test", "/", &site.ca.ca_file);
        body.starts_with("other").then_some(())
    });
    assert!(moved.is_some(), "{}", rw.stderr());
    let again = s_client(
        rw.listen,
        &["-tls1_2", "-no_ticket", "-sess_in", &sess],
        Duration::ZERO,
    );
    assert_eq!(
        count(&again, "Reused, TLSv1.2"),
        1,
        "resumed after the reload: {again}"
    );

    // A new certificate for a.test: served to new handshakes after the next reload.
    let (_, _, subject) = curl_https(rw.listen, "a.test", "/", &site.ca.ca_file);
    assert!(subject.contains("CN=a.test"), "{subject}");
    let renewed = site.ca.leaf("a-renewed", "renewed.a.test", &["a.test"]);
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(
        &path,
        text.replace(
            &site.a.0.display().to_string(),
            &renewed.0.display().to_string(),
        )
        .replace(
            &site.a.1.display().to_string(),
            &renewed.1.display().to_string(),
        ),
    )
    .expect("write");
    rw.signal(libc::SIGHUP);
    let served = poll(Duration::from_secs(5), || {
        let (status, _, subject) = curl_https(rw.listen, "a.test", "/", &site.ca.ca_file);
        (status == "200" && subject.contains("CN=renewed.a.test")).then_some(())
    });
    assert!(served.is_some(), "{}", rw.stderr());
}

#[test]
fn session_ids_resume_on_other_shards_after_replication() {
    let site = Site::new();
    let www = Httpd::named("www");
    let rw = Ringway::start_text(|l, a| https_config(l, a, 2, &site, www.addr, "", ""));
    let dir = TempDir::new("sess12");
    let sess = dir.0.join("s12").display().to_string();
    // A TLS 1.2 session-ID session (no tickets) made on one shard...
    let first = s_client(
        rw.listen,
        &["-tls1_2", "-no_ticket", "-sess_out", &sess],
        Duration::ZERO,
    );
    assert_eq!(count(&first, "New, TLSv1.2"), 1, "{first}");
    // ...reaches the other shard's cache by message (through the control thread).
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..12 {
        let again = s_client(
            rw.listen,
            &["-tls1_2", "-no_ticket", "-sess_in", &sess],
            Duration::ZERO,
        );
        assert_eq!(count(&again, "Reused, TLSv1.2"), 1, "{again}");
    }
    let stats = rw.stats();
    let shards = stats["per_shard"].as_array().expect("per_shard");
    let created = (0..shards.len())
        .find(|i| stat_u64(&stats, &format!("/per_shard/{i}/tls_handshakes")) == 1)
        .expect("one shard made the session");
    let elsewhere: u64 = (0..shards.len())
        .filter(|i| *i != created)
        .map(|i| stat_u64(&stats, &format!("/per_shard/{i}/tls_resumed")))
        .sum();
    assert!(elsewhere > 0, "resumed on the other shard too: {stats}");
    assert_eq!(rw.total("tls_resumed"), 12);
}

/// A rustls client config trusting the test CA.
fn client_config(ca: &TestCa) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(ca.ca_der.clone()))
        .expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn tls_connect(
    addr: SocketAddr,
    ca: &TestCa,
    name: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let conn = rustls::ClientConnection::new(
        client_config(ca),
        rustls_pki_types::ServerName::try_from(name.to_string()).expect("name"),
    )
    .expect("client");
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn wss_echo_through_tls_termination() {
    let ws_addr = ws_echo_server();
    let site = Site::new();
    let www = Httpd::named("www");
    let rw = Ringway::start_text(|l, a| {
        let mut text = https_config(l, a, 2, &site, www.addr, "", "");
        text.push_str(&format!(
            "[[listener.route]]\nheader = {{ name = \"Upgrade\", value = \"websocket\" }}\nbackend = \"ws\"\n\
             [[backend]]\nname = \"ws\"\nservers = [ {{ address = \"{ws_addr}\" }} ]\n"
        ));
        text
    });
    let stream = tls_connect(rw.listen, &site.ca, "a.test");
    let (mut ws, resp) =
        tungstenite::client(format!("wss://a.test:{}/chat", rw.listen.port()), stream)
            .expect("websocket handshake over TLS");
    assert_eq!(resp.status().as_u16(), 101);
    ws.send(tungstenite::Message::text("hello over tls"))
        .expect("send");
    assert_eq!(
        ws.read().expect("echo").into_text().expect("text").as_str(),
        "hello over tls"
    );
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    ws.send(tungstenite::Message::binary(big.clone()))
        .expect("send big");
    let back = ws.read().expect("echo big").into_data();
    assert!(back.as_ref() == big.as_slice(), "1 MiB frame intact");
    let _ = ws.close(None);
    assert_eq!(rw.total("http_tunnels"), 1);
}

#[test]
fn tcp_listener_terminates_tls_and_proxies_plain_bytes() {
    let site = Site::new();
    let echo = Backend::echo();
    let rw = Ringway::start_text(|l, a| {
        format!(
            "[global]\nshards = 2\nadmin = \"127.0.0.1:{a}\"\n\
             [[listener]]\nname = \"tls-tcp\"\nbind = \"127.0.0.1:{l}\"\nmode = \"tcp\"\nbackend = \"echo\"\n{}\n\
             [[backend]]\nname = \"echo\"\nservers = [ {{ address = \"{}\" }} ]\n",
            site.tls_block(""),
            echo.addr
        )
    });
    let mut s = tls_connect(rw.listen, &site.ca, "a.test");
    // 3 MiB each way, in pieces: backpressure through rustls and the socketpair.
    let mut data = DataGen::new(7);
    let mut sent = Digest::default();
    let mut got = Digest::default();
    let total = 3 << 20;
    let mut buf = vec![0u8; 64 * 1024];
    let mut back = 0usize;
    for _ in 0..(total / buf.len()) {
        data.fill(&mut buf);
        sent.update(&buf);
        s.write_all(&buf).expect("write");
        let mut want = buf.len();
        while want > 0 {
            let mut rb = vec![0u8; want];
            let n = s.read(&mut rb).expect("read");
            assert!(n > 0, "echo ended early");
            got.update(&rb[..n]);
            want -= n;
            back += n;
        }
    }
    assert_eq!(back, total);
    assert!(sent == got, "bytes intact through TLS termination");
    s.conn.send_close_notify();
    let _ = s.flush();
    drop(s);
    rw.wait_total("tls_active", Duration::from_secs(10), |n| n == 0);
    assert_eq!(rw.total("active"), 0);
}

#[test]
fn garbage_silence_and_proxy_headers_on_tls_listeners() {
    let site = Site::new();
    let www = Httpd::named("www");
    let rw = Ringway::start_text(|l, a| {
        https_config(l, a, 1, &site, www.addr, "", "handshake_timeout = \"1s\"")
    });
    // Plain HTTP on a TLS port: an alert or a close, never an answer from the app.
    let mut s = TcpStream::connect(rw.listen).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("www"), "{buf:?}");
    // A truncated ClientHello, then silence: closed after handshake_timeout.
    let mut t = TcpStream::connect(rw.listen).expect("connect");
    t.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    t.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .expect("write");
    let started = std::time::Instant::now();
    let mut one = [0u8; 1];
    assert!(matches!(t.read(&mut one), Ok(0) | Err(_)));
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A PROXY header on a TLS listener without accept_proxy: not TLS, refused.
    let mut p = TcpStream::connect(rw.listen).expect("connect");
    p.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    p.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n")
        .expect("write");
    let mut buf = Vec::new();
    let _ = p.read_to_end(&mut buf);
    assert!(rw.total("tls_handshake_errors") >= 2, "{}", rw.stats());
    assert!(rw.total("tls_handshake_timeouts") >= 1);
    rw.wait_total("tls_active", Duration::from_secs(10), |n| n == 0);
    assert!(www.requests().is_empty());
    // Still serving.
    let (status, _, _) = curl_https(rw.listen, "a.test", "/ok", &site.ca.ca_file);
    assert_eq!(status, "200");
}

#[test]
fn accept_proxy_on_a_tls_listener_reads_the_header_before_the_handshake() {
    let site = Site::new();
    let www = Httpd::named("www");
    let rw = Ringway::start_text(|l, a| {
        https_config(l, a, 1, &site, www.addr, "accept_proxy = true", "")
    });
    let mut tcp = TcpStream::connect(rw.listen).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n")
        .expect("proxy header");
    let conn = rustls::ClientConnection::new(
        client_config(&site.ca),
        rustls_pki_types::ServerName::try_from("a.test").expect("name"),
    )
    .expect("client");
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(b"GET /via-lb HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("www /via-lb"), "{resp}");
    let reqs = www.requests();
    assert_eq!(
        reqs[0].header("X-Forwarded-For").as_deref(),
        Some("203.0.113.9")
    );
    // Without the header the connection is refused.
    let mut bare = tls_connect(rw.listen, &site.ca, "a.test");
    let r = bare.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
    let mut buf = Vec::new();
    assert!(r.is_err() || bare.read_to_end(&mut buf).is_err() || buf.is_empty());
    assert!(rw.total("proxy_rejected") >= 1);
}

/// Rewrites an example config for a test: each listener gets a fresh port (returned by name),
/// backends point at `backends[name]`, certificate paths at the shipped example files.
fn example_text(
    file: &str,
    admin: u16,
    backends: &[(&str, SocketAddr)],
) -> (String, Vec<(String, SocketAddr)>) {
    let text = std::fs::read_to_string(manifest_dir().join(file)).expect("example");
    let examples = manifest_dir().join("examples");
    let mut out = String::new();
    let mut ports = Vec::new();
    let mut name = String::new();
    let mut used: Vec<String> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(n) = t
            .strip_prefix("name = \"")
            .and_then(|n| n.split('"').next())
        {
            name = n.to_string();
        }
        if t.starts_with("bind = ") {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            ports.push((name.clone(), addr));
            out.push_str(&format!("bind = \"{addr}\"\n"));
        } else if t.starts_with("admin = ") {
            out.push_str(&format!("admin = \"127.0.0.1:{admin}\"\n"));
        } else if let Some(start) = line.find("address = \"") {
            let rest = &line[start + 11..];
            let end = rest.find('"').unwrap_or(0);
            let target = backends
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, a)| *a)
                .nth(used.iter().filter(|u| **u == name).count())
                .expect("backend address for the example");
            used.push(name.clone());
            out.push_str(&format!(
                "{}{}{}\n",
                &line[..start + 11],
                target,
                &rest[end..]
            ));
        } else if t.starts_with("cert = \"") || t.starts_with("key = \"") {
            let (key, rest) = t.split_once(" = \"").expect("path line");
            let path = rest.split('"').next().expect("path");
            out.push_str(&format!("{key} = \"{}\"\n", examples.join(path).display()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !text.contains("[global]") {
        out = format!("[global]\nadmin = \"127.0.0.1:{admin}\"\n{out}");
    }
    (out, ports)
}

/// The stream behind `name` in `ports`.
fn port_of(ports: &[(String, SocketAddr)], name: &str) -> SocketAddr {
    ports
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, a)| *a)
        .expect("listener")
}

#[test]
fn example_tls_termination_config_serves_https_and_tls_tcp() {
    let webapp = Httpd::named("webapp");
    let sio = Httpd::named("sio");
    let sio2 = Httpd::named("sio");
    let echo = Backend::echo();
    let mut ports = Vec::new();
    let rw = Ringway::start_text(|_, a| {
        let (text, p) = example_text(
            "examples/tls-termination.toml",
            a,
            &[
                ("webapp", webapp.addr),
                ("socket_io", sio.addr),
                ("socket_io", sio2.addr),
                ("redis", echo.addr),
            ],
        );
        ports = p;
        text
    });
    let https = port_of(&ports, "https");
    let ca = manifest_dir().join("examples/certs/example.com.pem");
    let h1 = ["--http1.1"];
    let (status, body, subject, version) = curl_https_with(https, "www.example.com", "/", &ca, &h1);
    assert_eq!(
        (status.as_str(), body.as_str(), version.as_str()),
        ("200", "webapp /", "1.1")
    );
    assert!(subject.contains("CN=example.com"), "{subject}");
    let wild = manifest_dir().join("examples/certs/wildcard.example.com.pem");
    let (status, body, subject, version) =
        curl_https_with(https, "chat.example.com", "/socket.io/?EIO=4", &wild, &h1);
    assert_eq!(
        (status.as_str(), body.as_str(), version.as_str()),
        ("200", "sio /socket.io/?EIO=4", "1.1")
    );
    assert!(subject.contains("CN=*.example.com"), "{subject}");
    // The example offers h2 by ALPN: curl --http2 gets HTTP/2, and the app behind it still
    // gets one HTTP/1.1 request with `:authority` as Host.
    let (status, body, subject, version) =
        curl_https_with(https, "www.example.com", "/h2?x=1", &ca, &["--http2"]);
    assert_eq!(
        (status.as_str(), body.as_str(), version.as_str()),
        ("200", "webapp /h2?x=1", "2")
    );
    assert!(subject.contains("CN=example.com"), "{subject}");
    let reqs = webapp.requests();
    let h2 = reqs
        .iter()
        .find(|r| r.target == "/h2?x=1")
        .expect("h2 request");
    assert!(
        h2.head.starts_with("GET /h2?x=1 HTTP/1.1\r\n"),
        "{}",
        h2.head
    );
    let host = format!("www.example.com:{}", https.port());
    assert_eq!(h2.header("host"), Some(host));
    assert_eq!(h2.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(rw.total("h2_connections"), 1);
    assert_eq!(rw.total("h2_streams"), 1);
    // The TLS-wrapped TCP port: openssl s_client in, plain bytes to the backend and back.
    let tcp = port_of(&ports, "redis-tls");
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &tcp.to_string()])
        .args(["-servername", "example.com"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("s_client");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(b"PING\r\n").expect("write");
        let mut out = child.stdout.take().expect("stdout");
        let mut got = [0u8; 6];
        out.read_exact(&mut got).expect("echo");
        assert_eq!(&got, b"PING\r\n");
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(rw);
}

#[test]
fn example_detect_config_sends_http_tls_and_flash_policy_clients_to_their_backends() {
    let webapp = Httpd::named("webapp");
    let sio = Httpd::named("sio");
    // The Flash policy server of background 03: answers a policy to `<policy-file-request/>\0`.
    let policy = Backend::spawn(|mut s| {
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while !got.contains(&0) {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        if got.starts_with(b"<policy-file-request/>") {
            let _ = s.write_all(b"<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"*\"/></cross-domain-policy>\0");
        }
    });
    let mut ports = Vec::new();
    let rw = Ringway::start_text(|_, a| {
        let (text, p) = example_text(
            "examples/detect.toml",
            a,
            &[
                ("webapp", webapp.addr),
                ("socket_io", sio.addr),
                ("sio_tcp", policy.addr),
            ],
        );
        ports = p;
        text
    });
    let edge = port_of(&ports, "edge");
    // HTTP.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .arg(format!("http://{edge}/socket.io/?EIO=4"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sio /socket.io/?EIO=4"
    );
    // HTTPS on the same port.
    let ca = manifest_dir().join("examples/certs/example.com.pem");
    let (status, body, _) = curl_https(edge, "www.example.com", "/home", &ca);
    assert_eq!((status.as_str(), body.as_str()), ("200", "webapp /home"));
    // A Flash socket.
    let mut s = TcpStream::connect(edge).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(b"<policy-file-request/>\0").expect("write");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    assert!(
        String::from_utf8_lossy(&resp).starts_with("<cross-domain-policy>"),
        "{resp:?}"
    );
    assert_eq!(rw.total("detect_http"), 1);
    assert_eq!(rw.total("detect_tls"), 1);
    assert_eq!(rw.total("detect_other"), 1);
    // An HTTP request line sent in pieces is still HTTP.
    let mut slow = TcpStream::connect(edge).expect("connect");
    slow.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    slow.write_all(b"GE").expect("write");
    std::thread::sleep(Duration::from_millis(100));
    slow.write_all(b"T /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut resp = Vec::new();
    let _ = slow.read_to_end(&mut resp);
    assert!(
        String::from_utf8_lossy(&resp).ends_with("webapp /slow"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(rw.total("detect_http"), 2);
}

#[test]
fn detect_without_a_tcp_backend_closes_other_protocols_and_silent_clients() {
    let webapp = Httpd::named("webapp");
    let rw = Ringway::start_text(|l, a| {
        format!(
            "[global]\nshards = 1\nadmin = \"127.0.0.1:{a}\"\n\
             [[listener]]\nname = \"edge\"\nbind = \"127.0.0.1:{l}\"\nmode = \"detect\"\npeek_timeout = \"300ms\"\nbackend = \"webapp\"\n\
             [[backend]]\nname = \"webapp\"\nservers = [ {{ address = \"{}\" }} ]\n",
            webapp.addr
        )
    });
    for payload in [
        &b"<policy-file-request/>\0"[..],
        &[0x16, 0x03, 0x01, 0x00, 0x05][..],
        b"",
    ] {
        let mut s = TcpStream::connect(rw.listen).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s.write_all(payload).expect("write");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(buf.is_empty(), "{buf:?}");
    }
    assert_eq!(rw.total("detect_rejected"), 3);
    assert_eq!(
        http_get(rw.listen, "/still-http")
            .expect("http")
            .lines()
            .last(),
        Some("webapp /still-http")
    );
}

/// sslscan (Debian) against a TLS listener: only TLS 1.2 and 1.3, only forward-secret suites.
#[test]
fn sslscan_sees_only_tls12_and_tls13_with_forward_secret_suites() {
    if Command::new("sslscan").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "sslscan must be installed in CI (.ci/run)"
        );
        eprintln!("sslscan not installed; skipping outside CI");
        return;
    }
    let site = Site::new();
    let www = Httpd::named("www");
    let rw = Ringway::start_text(|l, a| https_config(l, a, 1, &site, www.addr, "", ""));
    let out = Command::new("sslscan")
        .args(["--no-colour", "--sni-name=a.test"])
        .arg(rw.listen.to_string())
        .output()
        .expect("sslscan");
    let text = String::from_utf8_lossy(&out.stdout);
    for old in ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(old))
            .unwrap_or_else(|| panic!("no {old} line in:\n{text}"));
        assert!(line.contains("disabled"), "{line}\n{text}");
    }
    for new in ["TLSv1.2", "TLSv1.3"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(new))
            .unwrap_or_else(|| panic!("no {new} line in:\n{text}"));
        assert!(line.contains("enabled"), "{line}\n{text}");
    }
    let accepted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("Preferred") || l.starts_with("Accepted"))
        .collect();
    assert!(!accepted.is_empty(), "{text}");
    for l in &accepted {
        assert!(
            l.contains("TLSv1.3") || l.contains("ECDHE"),
            "not forward secret: {l}"
        );
        assert!(
            !l.contains("TLSv1.0") && !l.contains("TLSv1.1") && !l.contains("SSLv"),
            "{l}"
        );
    }
}

/// `openssl s_server -www` with a certificate from `ca` for `backend.test`.
struct TlsServer;

impl TlsServer {
    fn start(ca: &TestCa) -> SServer {
        TlsServer::start_named(ca, "backend.test")
    }

    /// A server whose certificate is for (and has the subject CN) `name`.
    fn start_named(ca: &TestCa, name: &str) -> SServer {
        let (cert, key) = ca.leaf(name, name, &[name]);
        SServer::start(&cert, &key)
    }
}

#[test]
fn upstream_tls_reencrypts_to_a_verified_backend_and_refuses_a_wrong_name() {
    let ca = TestCa::new();
    let server = TlsServer::start(&ca);
    let rw = Ringway::start_text(|l, a| {
        let tcp = free_port();
        format!(
            "[global]\nshards = 2\nadmin = \"127.0.0.1:{a}\"\n\
             [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{l}\"\nmode = \"http\"\nbackend = \"secure\"\n\
             [[listener.route]]\npath_prefix = \"/wrong\"\nbackend = \"wrong\"\n\
             [[listener]]\nname = \"raw\"\nbind = \"127.0.0.1:{tcp}\"\nmode = \"tcp\"\nbackend = \"secure\"\n\
             [[backend]]\nname = \"secure\"\nretries = 0\nservers = [ {{ address = \"{s}\" }} ]\n\
             [backend.tls]\nca = \"{ca}\"\nsni = \"backend.test\"\n\
             [[backend]]\nname = \"wrong\"\nretries = 0\nservers = [ {{ address = \"{s}\" }} ]\n\
             [backend.tls]\nca = \"{ca}\"\nsni = \"other.test\"\n",
            s = server.addr,
            ca = ca.ca_file.display()
        )
    });
    let get = |path: &str| {
        let mut s = TcpStream::connect(rw.listen).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).to_string()
    };
    // HTTP in, TLS to the server (s_server -www describes the TLS session it served).
    let resp = get("/");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("Protocol  : TLSv1.3"), "{resp}");
    assert!(rw.total("tls_upstream_handshakes") >= 1);
    // A certificate that does not match the configured name: refused, 502.
    let resp = get("/wrong");
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(rw.total("tls_upstream_errors") >= 1);
    // TCP in, TLS to the server.
    let raw: SocketAddr = {
        let text = std::fs::read_to_string(rw.dir.0.join("ringway.toml")).expect("config");
        let line = text
            .lines()
            .filter(|l| l.starts_with("bind = "))
            .nth(1)
            .expect("second bind")
            .to_string();
        line.trim_start_matches("bind = \"")
            .trim_end_matches('"')
            .parse()
            .expect("addr")
    };
    let mut s = TcpStream::connect(raw).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    drop(s);
    rw.wait_total("tls_active", Duration::from_secs(10), |n| n == 0);
}

#[test]
fn example_sni_passthrough_config_routes_by_server_name_without_decrypting() {
    let ca = TestCa::new();
    let a = TlsServer::start_named(&ca, "a.example.com");
    let blog1 = TlsServer::start_named(&ca, "one.blog.example.com");
    let blog2 = TlsServer::start_named(&ca, "one.blog.example.com");
    let fallback = TlsServer::start_named(&ca, "www.example.com");
    let mut ports = Vec::new();
    let rw = Ringway::start_text(|_, adm| {
        let (text, p) = example_text(
            "examples/sni-passthrough.toml",
            adm,
            &[
                ("site_a", a.addr),
                ("blogs", blog1.addr),
                ("blogs", blog2.addr),
                ("default_site", fallback.addr),
            ],
        );
        ports = p;
        text
    });
    let https = port_of(&ports, "https");
    // Each client sees the certificate of the backend its SNI routes to: ringway never decrypts.
    assert_eq!(
        tls_subject(https, Some("a.example.com")),
        "CN=a.example.com"
    );
    assert_eq!(
        tls_subject(https, Some("one.blog.example.com")),
        "CN=one.blog.example.com"
    );
    assert_eq!(
        tls_subject(https, Some("other.example.org")),
        "CN=www.example.com"
    );
    assert_eq!(tls_subject(https, None), "CN=www.example.com");
    assert_eq!(
        rw.total("tls_handshakes"),
        0,
        "passthrough terminates nothing"
    );
}
