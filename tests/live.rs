//! Changing a running ringway through the real binary: reloads under wrk load with a WebSocket
//! tunnel open, the runtime API (drain, maint, weight, add/remove servers, routes) driven with
//! curl, and who may use the admin listener (token, unix socket).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::httpd::{Httpd, Reply, ok};
use common::*;

const TOKEN: &str = "test-token-0123456789";

/// A 0600 token file in `dir`.
fn token_file(dir: &TempDir) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.write("admin.token", &format!("{TOKEN}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p
}

/// `GET path` `n` times on one keep-alive connection; the backend names that answered, counted.
fn split(addr: SocketAddr, path: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    let mut seen = std::collections::BTreeMap::new();
    let mut buf = Vec::new();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    for _ in 0..n {
        s.write_all(request.as_bytes()).expect("write");
        let body = read_response(&mut s, &mut buf);
        let name = body.split(' ').next().unwrap_or_default().to_string();
        *seen.entry(name).or_insert(0) += 1;
    }
    seen
}

/// Reads one Content-Length response from `s` (leftovers stay in `buf`); returns its body.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                buf.drain(..end + 4 + len);
                return body;
            }
        }
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed mid-response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn wrk_present() -> bool {
    let found = Command::new("wrk").arg("--version").output().is_ok();
    assert!(
        found || std::env::var_os("CI").is_none(),
        "wrk is missing (CI installs it)"
    );
    found
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `curl` on the admin API: (status, body).
fn api(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--max-time",
        "20",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data", b]);
    }
    c.arg(format!("http://{admin}/api/v1{path}"));
    let (_, out, err) = run(&mut c);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", ""));
    let code = code
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl: {out} {err}"));
    (code, body.to_string())
}

/// `curl --unix-socket SOCK -X METHOD -d BODY http://ringway/api/v1PATH`: (exit code, output
/// ending with the HTTP status line).
fn unix_api(sock: &Path, method: &str, path: &str, body: &str) -> (i32, String) {
    let (code, out, err) = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(sock)
        .args(["-X", method, "-d", body])
        .arg(format!("http://ringway/api/v1{path}")));
    (code, format!("{out}{err}"))
}

/// The two configurations the reload test alternates: they differ in servers (s2 / s3), weights
/// and one route (`/x/` to backend `xb` only in A).
fn reload_config(
    a: bool,
    (listen, admin): (u16, u16),
    sock: &Path,
    s: &[SocketAddr; 4],
    ws: SocketAddr,
) -> String {
    let (servers, route) = if a {
        (
            format!(
                "{{ address = \"{}\", name = \"s1\" }}, {{ address = \"{}\", name = \"s2\" }}",
                s[0], s[1]
            ),
            "[[listener.route]]\npath_prefix = \"/x/\"\nbackend = \"xb\"\n",
        )
    } else {
        (
            format!(
                "{{ address = \"{}\", name = \"s1\", weight = 3 }}, {{ address = \"{}\", name = \"s3\" }}",
                s[0], s[2]
            ),
            "",
        )
    };
    format!(
        "[global]\nshards = 2\ndrain_timeout = \"5s\"\n[admin]\nbind = \"127.0.0.1:{admin}\"\nsocket = \"{}\"\n\
         [timeouts]\nconnect = \"2s\"\ntunnel = \"60s\"\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"app\"\n\
         [[listener.route]]\nheader = {{ name = \"Upgrade\", value = \"websocket\" }}\nbackend = \"ws\"\n{route}\
         [[backend]]\nname = \"app\"\nservers = [ {servers} ]\n\
         [[backend]]\nname = \"xb\"\nservers = [ {{ address = \"{}\", name = \"x\" }} ]\n\
         [[backend]]\nname = \"ws\"\nservers = [ {{ address = \"{ws}\" }} ]\n",
        sock.display(),
        s[3]
    )
}

/// Requests each server of backend `app` has been sent, from the runtime API (all shards).
fn app_requests(admin: SocketAddr) -> std::collections::BTreeMap<String, u64> {
    let (code, body) = api(admin, "GET", "/backends/app", None, None);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_string(),
                s["requests"].as_u64().expect("requests"),
            )
        })
        .collect()
}

/// Checks the live split of backend `app`. The answers on one keep-alive connection show which
/// servers are in rotation; the weights are checked on the per-server request counters over the
/// same window, which include wrk's requests: a serial client among wrk's closed-loop
/// connections can meet the round-robin cycle at the same position each time, so its own answers
/// say nothing about the ratio.
fn check_split(listen: SocketAddr, admin: SocketAddr, a: bool) {
    let before = app_requests(admin);
    let seen = split(listen, "/", 60);
    let after = app_requests(admin);
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    if a {
        assert!(
            seen.keys().all(|k| k == "s1" || k == "s2"),
            "config A answers: {seen:?}"
        );
        assert!(!after.contains_key("s3"), "config A servers: {after:?}");
        assert!(
            delta("s1") > 0 && delta("s2") > 0,
            "config A: {before:?} -> {after:?}"
        );
        assert_eq!(
            split(listen, "/x/1", 2).get("x"),
            Some(&2),
            "route /x/ in A"
        );
    } else {
        assert!(
            seen.keys().all(|k| k == "s1" || k == "s3"),
            "config B answers: {seen:?}"
        );
        assert!(!after.contains_key("s2"), "config B servers: {after:?}");
        // Weights 3 : 1 over at least 60 requests; smooth round-robin keeps within one cycle.
        let (s1, s3) = (delta("s1"), delta("s3"));
        assert!(
            s3 > 0 && s1 >= 2 * s3 && s1 <= 4 * s3 + 4,
            "config B split {s1} : {s3} ({before:?} -> {after:?})"
        );
        let x = split(listen, "/x/1", 2);
        assert!(!x.contains_key("x"), "no /x/ route in B: {x:?}");
    }
}

#[test]
fn hundred_reloads_under_wrk_with_a_websocket_tunnel_lose_nothing() {
    if !wrk_present() {
        return;
    }
    let servers = [
        Httpd::named("s1"),
        Httpd::named("s2"),
        Httpd::named("s3"),
        Httpd::named("x"),
    ];
    let addrs = [
        servers[0].addr,
        servers[1].addr,
        servers[2].addr,
        servers[3].addr,
    ];
    let ws = ws_echo_server();
    let sock_dir = TempDir::new("sock");
    let sock = sock_dir.0.join("admin.sock");
    let rw = Ringway::start_text(|l, a| reload_config(true, (l, a), &sock, &addrs, ws));
    let path = rw.dir.0.join("ringway.toml");
    let ports = (rw.listen.port(), rw.admin.port());

    let stream = TcpStream::connect(rw.listen).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    let (mut tunnel, resp) =
        tungstenite::client(format!("ws://{}/chat", rw.listen), stream).expect("handshake");
    assert_eq!(resp.status().as_u16(), 101);

    let url = format!("http://{}/", rw.listen);
    // Runs until the reloads are done (SIGINT makes wrk stop and print its summary); the
    // duration only bounds a test that hangs.
    let wrk = Command::new("wrk")
        .args(["-t1", "-c8", "-d120s", "--timeout", "5s", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn wrk");
    let started = std::time::Instant::now();
    let mut reload_time = Duration::ZERO;
    for i in 0..100 {
        let a = i % 2 == 1;
        if i == 50 {
            // One bad file on the way: refused with its location, nothing changes.
            std::fs::write(&path, "[global]\nshards = 2\ndrain_timeout = \"soon\"\n")
                .expect("write");
            // It has no [admin]: say where ringway listens.
            let (code, _, err) = run(Command::new(BIN)
                .args([
                    "reload",
                    "--admin",
                    &format!("unix:{}", sock.display()),
                    "-c",
                ])
                .arg(&path));
            assert_eq!(code, 1, "{err}");
            assert!(err.contains("ringway.toml:3:17:"), "{err}");
        }
        std::fs::write(&path, reload_config(a, ports, &sock, &addrs, ws)).expect("write");
        let t0 = std::time::Instant::now();
        let (code, out, err) = run(Command::new(BIN).args(["reload", "-c"]).arg(&path));
        assert_eq!(code, 0, "reload {i}: {out}{err}");
        reload_time += t0.elapsed();
        if i % 10 == 0 || i == 99 {
            check_split(rw.listen, rw.admin, a);
        }
        tunnel
            .send(tungstenite::Message::text(format!("m{i}")))
            .expect("tunnel send");
        assert_eq!(
            tunnel
                .read()
                .expect("tunnel echo")
                .into_text()
                .expect("text")
                .as_str(),
            format!("m{i}")
        );
    }
    eprintln!(
        "100 reloads under load in {:?} ({reload_time:?} in `ringway reload`)",
        started.elapsed()
    );
    // SAFETY: plain kill(2) on the child's pid, which has not been waited for yet.
    unsafe { libc::kill(wrk.id() as i32, libc::SIGINT) };
    let out = wrk.wait_with_output().expect("wrk");
    let (code, out, err) = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        started.elapsed() < Duration::from_secs(110),
        "wrk ran to its end: the reloads took too long"
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.contains("Socket errors"),
        "wrk errors during reloads:\n{out}"
    );
    assert!(
        !out.contains("Non-2xx"),
        "wrk saw failed requests during reloads:\n{out}"
    );
    assert!(out.contains("requests in"), "{out}");
    let stats = rw.stats();
    assert_eq!(
        stat_u64(&stats, "/total/http_tunnels"),
        1,
        "the tunnel is the one opened first"
    );
    assert!(
        rw.stderr().matches("configuration applied").count() >= 100,
        "{}",
        rw.stderr()
    );
    let _ = tunnel.close(None);
}

/// An HTTP listener on backend `app` = s1, s2 (s2 answers `/slow` after 800 ms) and backend
/// `other`, with the admin API on TCP guarded by a token file.
fn api_config(
    listen: u16,
    admin: u16,
    token: &Path,
    s1: SocketAddr,
    s2: SocketAddr,
    other: SocketAddr,
) -> String {
    format!(
        "[global]\nshards = 2\ndrain_timeout = \"5s\"\n[admin]\nbind = \"127.0.0.1:{admin}\"\ntoken_file = \"{}\"\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"app\"\n\
         [[backend]]\nname = \"app\"\nsticky_cookie = \"srv\"\nservers = [ {{ address = \"{s1}\", name = \"s1\" }}, {{ address = \"{s2}\", name = \"s2\" }} ]\n\
         [[backend]]\nname = \"other\"\nservers = [ {{ address = \"{other}\", name = \"o\" }} ]\n",
        token.display()
    )
}

fn server_status(admin: SocketAddr, server: &str) -> (String, String, u64) {
    let (code, body) = api(admin, "GET", "/backends/app", None, None);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let s = v["servers"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == server))
        .unwrap_or_else(|| panic!("no {server} in {body}"))
        .clone();
    (
        s["state"].as_str().unwrap_or_default().to_string(),
        s["status"].as_str().unwrap_or_default().to_string(),
        s["weight"].as_u64().unwrap_or(u64::MAX),
    )
}

#[test]
fn runtime_api_drains_weighs_adds_and_removes_servers_and_edits_routes() {
    let s1 = Httpd::named("s1");
    let s2 = Httpd::spawn(|r| {
        if r.target.starts_with("/slow") {
            std::thread::sleep(Duration::from_millis(800));
        }
        Reply::Bytes(ok(&format!("s2 {}", r.target)))
    });
    let s3 = Httpd::named("s3");
    let other = Httpd::named("o");
    let dir = TempDir::new("tok");
    let tok = token_file(&dir);
    let rw = Ringway::start_text(|l, a| api_config(l, a, &tok, s1.addr, s2.addr, other.addr));
    let (admin, listen) = (rw.admin, rw.listen);
    let t = Some(TOKEN);

    // Reads are open on loopback; writes need the token.
    let (code, body) = api(admin, "GET", "/backends", None, None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"s2\""), "{body}");
    let drain = Some(r#"{"state":"drain"}"#);
    assert_eq!(
        api(admin, "PATCH", "/backends/app/servers/s2", drain, None).0,
        401
    );
    assert_eq!(
        api(
            admin,
            "PATCH",
            "/backends/app/servers/s2",
            drain,
            Some("wrong-token-0123456789")
        )
        .0,
        401
    );
    let (code, out, _) = run(Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("http://{admin}/reload")));
    assert_eq!(
        (code, out.as_str()),
        (0, "401"),
        "POST /reload needs the token too"
    );

    // Drain s2 while slow requests are on it: they finish, new ones avoid s2. Four at once over
    // two shards: round robin puts at least one on s2.
    let slow: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(listen).expect("connect");
                c.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                write!(c, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
                read_response(&mut c, &mut Vec::new())
            })
        })
        .collect();
    let on_s2 = poll(Duration::from_secs(5), || {
        s2.requests()
            .iter()
            .any(|r| r.target == "/slow")
            .then_some(())
    });
    assert!(on_s2.is_some(), "no slow request reached s2");
    let (code, body) = api(admin, "PATCH", "/backends/app/servers/s2", drain, t);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("state ready -> drain"), "{body}");
    let answers: Vec<String> = slow
        .into_iter()
        .map(|h| h.join().expect("slow client"))
        .collect();
    assert!(
        answers.iter().any(|a| a.starts_with("s2 /slow")),
        "{answers:?}"
    );
    let seen = split(listen, "/", 20);
    assert_eq!(seen.get("s1"), Some(&20), "{seen:?}");
    assert_eq!(server_status(admin, "s2").0, "drain");
    assert_eq!(
        stat_str(&rw.stats(), "/backends/0/servers/1/state"),
        "DRAIN"
    );

    // Maint: out of rotation and reported so; ready brings it back.
    let (code, body) = api(
        admin,
        "PATCH",
        "/backends/app/servers/s2",
        Some(r#"{"state":"maint"}"#),
        t,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(server_status(admin, "s2").1, "MAINT");
    assert_eq!(
        api(
            admin,
            "PATCH",
            "/backends/app/servers/s2",
            Some(r#"{"state":"ready"}"#),
            t
        )
        .0,
        200
    );
    let seen = split(listen, "/", 20);
    assert!(seen.get("s2").copied().unwrap_or(0) > 0, "{seen:?}");

    // Weight.
    assert_eq!(
        api(
            admin,
            "PATCH",
            "/backends/app/servers/s1",
            Some(r#"{"weight":3}"#),
            t
        )
        .0,
        200
    );
    assert_eq!(server_status(admin, "s1").2, 3);
    let seen = split(listen, "/", 40);
    assert!(
        seen.get("s1").copied().unwrap_or(0) >= 2 * seen.get("s2").copied().unwrap_or(0),
        "{seen:?}"
    );
    let (code, body) = api(
        admin,
        "PATCH",
        "/backends/app/servers/s1",
        Some(r#"{"weight":999}"#),
        t,
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = api(
        admin,
        "PATCH",
        "/backends/app/servers/s1",
        Some(r#"{"wieght":1}"#),
        t,
    );
    assert_eq!(code, 400, "{body}");

    // Add a server; bad ones are refused with the file's words.
    let add = format!(r#"{{"address":"{}","name":"s3"}}"#, s3.addr);
    let (code, body) = api(admin, "POST", "/backends/app/servers", Some(&add), t);
    assert_eq!(code, 200, "{body}");
    let seen = split(listen, "/", 40);
    assert!(seen.get("s3").copied().unwrap_or(0) > 0, "{seen:?}");
    let (code, body) = api(
        admin,
        "POST",
        "/backends/app/servers",
        Some(r#"{"address":"nowhere:80"}"#),
        t,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("is not a socket address"), "{body}");
    let (code, body) = api(admin, "POST", "/backends/app/servers", Some(&add), t);
    assert_eq!(code, 400, "{body}");
    let (code, body) = api(admin, "POST", "/backends/nope/servers", Some(&add), t);
    assert_eq!(code, 404, "{body}");

    // Remove s2: its pooled keep-alive connections close.
    assert!(s2.open_count() > 0, "s2 has pooled connections");
    let (code, body) = api(admin, "DELETE", "/backends/app/servers/s2", None, t);
    assert_eq!(code, 200, "{body}");
    assert!(
        poll(Duration::from_secs(5), || (s2.open_count() == 0)
            .then_some(()))
        .is_some(),
        "pooled connections to the removed server stay open: {}",
        s2.open_count()
    );
    let seen = split(listen, "/", 20);
    assert!(!seen.contains_key("s2"), "{seen:?}");
    let (code, body) = api(admin, "DELETE", "/backends/other/servers/o", None, t);
    assert_eq!(code, 400, "the last server cannot go: {body}");

    // Routes: add, list, replace, remove.
    let (code, body) = api(
        admin,
        "POST",
        "/listeners/web/routes",
        Some(r#"{"path_prefix":"/o/","backend":"other"}"#),
        t,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(split(listen, "/o/1", 2).get("o"), Some(&2));
    let (code, body) = api(admin, "GET", "/listeners/web/routes", None, None);
    assert_eq!(code, 200);
    assert!(body.contains("\"/o/\""), "{body}");
    let (code, body) = api(
        admin,
        "POST",
        "/listeners/web/routes",
        Some(r#"{"path_prefix":"/o/","backend":"missing"}"#),
        t,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("missing"), "{body}");
    let (code, body) = api(
        admin,
        "PUT",
        "/listeners/web/routes",
        Some(r#"[{"host":"o.example","backend":"other"}]"#),
        t,
    );
    assert_eq!(code, 200, "{body}");
    assert!(!split(listen, "/o/1", 2).contains_key("o"), "replaced");
    assert_eq!(
        api(admin, "DELETE", "/listeners/web/routes/1", None, t).0,
        200
    );
    assert_eq!(
        api(admin, "DELETE", "/listeners/web/routes/1", None, t).0,
        404
    );

    // A reload of the file puts back what the file says.
    rw.signal(libc::SIGHUP);
    let back = poll(Duration::from_secs(5), || {
        let (code, body) = api(admin, "GET", "/backends/app", None, None);
        (code == 200 && body.contains("\"s2\"") && !body.contains("\"s3\"")).then_some(())
    });
    assert!(back.is_some(), "{}", rw.stderr());
    assert_eq!(server_status(admin, "s1").2, 1);
}

#[test]
fn unix_socket_needs_no_token_and_is_private() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let s1 = Httpd::named("s1");
    let sock_dir = TempDir::new("sock");
    let sock = sock_dir.0.join("admin.sock");
    let rw = Ringway::start_text(|l, a| {
        format!(
            "[global]\nshards = 1\n[admin]\nbind = \"127.0.0.1:{a}\"\nsocket = \"{}\"\n\
             [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{l}\"\nmode = \"http\"\nbackend = \"app\"\n\
             [[backend]]\nname = \"app\"\nservers = [ {{ address = \"{}\", name = \"s1\" }} ]\n",
            sock.display(),
            s1.addr
        )
    });
    let meta = std::fs::symlink_metadata(&sock).expect("socket file");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // No token file: TCP writes are forbidden, the socket's are not.
    assert_eq!(
        api(
            rw.admin,
            "PATCH",
            "/backends/app/servers/s1",
            Some(r#"{"weight":2}"#),
            None
        )
        .0,
        403
    );
    let (code, out) = unix_api(
        &sock,
        "PATCH",
        "/backends/app/servers/s1",
        r#"{"weight":2}"#,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with("200"), "{out}");
    assert_eq!(server_status(rw.admin, "s1").2, 2);
    // `ringway reload` finds the socket in the file.
    let path = rw.dir.0.join("ringway.toml");
    let (code, out, err) = run(Command::new(BIN).args(["reload", "-c"]).arg(&path));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("weight 2 -> 1"),
        "the file's weight is back: {out}"
    );
    let mut rw = rw;
    rw.signal(libc::SIGTERM);
    assert!(
        rw.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    assert!(
        poll(Duration::from_secs(5), || (!sock.exists()).then_some(())).is_some(),
        "socket file left behind"
    );
}

#[test]
fn check_refuses_a_wide_admin_without_a_token() {
    let dir = TempDir::new("chk");
    let p = dir.write(
        "wide.toml",
        "[admin]\nbind = \"0.0.0.0:9900\"\n\
         [[listener]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\nbackend = \"b\"\n\
         [[backend]]\nname = \"b\"\nservers = [ { address = \"127.0.0.1:2\" } ]\n",
    );
    let (code, _, err) = run(Command::new(BIN).args(["check", "-c"]).arg(&p));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("wide.toml:2:8: admin 0.0.0.0:9900 is not a loopback address"),
        "{err}"
    );
}

/// examples/live-ops.toml on loopback: its addresses become test backends named after its
/// servers, its socket and token move into a scratch dir; then the commands its header shows.
#[test]
fn live_ops_example_runs_and_its_commands_work() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/live-ops.toml"),
    )
    .expect("example");
    let dir = TempDir::new("ops");
    let tok = token_file(&dir);
    let sock = dir.0.join("admin.sock");
    let mut backends = Vec::new();
    let rw = Ringway::start_text(|l, a| {
        backends.clear();
        let mut out = String::new();
        for line in text.lines() {
            let t = line.trim_start();
            let name = line
                .split("name = \"")
                .nth(1)
                .and_then(|n| n.split('"').next())
                .unwrap_or_default()
                .to_string();
            if t.starts_with("bind = \"0.0.0.0:8080\"") {
                out.push_str(&format!("bind = \"127.0.0.1:{l}\"\n"));
            } else if t.starts_with("bind = \"127.0.0.1:9900\"") {
                out.push_str(&format!("bind = \"127.0.0.1:{a}\"\n"));
            } else if t.starts_with("socket = ") {
                out.push_str(&format!("socket = \"{}\"\n", sock.display()));
            } else if t.starts_with("token_file = ") {
                out.push_str(&format!("token_file = \"{}\"\n", tok.display()));
            } else if let Some(start) = line.find("address = \"10.") {
                let be = Httpd::named(Box::leak(name.into_boxed_str()));
                let rest = &line[start + 11..];
                let end = rest.find('"').unwrap_or(0);
                out.push_str(&format!(
                    "{}{}{}\n",
                    &line[..start + 11],
                    be.addr,
                    &rest[end..]
                ));
                backends.push(be);
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    });
    let (admin, listen) = (rw.admin, rw.listen);
    let (code, body) = api(admin, "GET", "/backends", None, None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"app2\""), "{body}");
    let seen = split(listen, "/", 8);
    assert!(
        seen.contains_key("app1") && seen.contains_key("app2"),
        "{seen:?}"
    );
    assert_eq!(split(listen, "/api/x", 2).get("api1"), Some(&2));

    let (code, body) = api(
        admin,
        "PATCH",
        "/backends/app/servers/app2",
        Some(r#"{"state":"drain"}"#),
        Some(TOKEN),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(split(listen, "/", 8).get("app1"), Some(&8));
    let app3 = Httpd::named("app3");
    let add = format!(r#"{{"name":"app3","address":"{}"}}"#, app3.addr);
    let (code, out) = unix_api(&sock, "POST", "/backends/app/servers", &add);
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with("200"), "{out}");
    assert!(split(listen, "/", 8).contains_key("app3"));

    let path = rw.dir.0.join("ringway.toml");
    let (code, out, err) = run(Command::new(BIN).args(["reload", "-c"]).arg(&path));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("server app3 removed") && out.contains("state drain -> ready"),
        "{out}"
    );
    let seen = split(listen, "/", 8);
    assert!(
        !seen.contains_key("app3") && seen.contains_key("app2"),
        "{seen:?}"
    );
}

#[test]
fn a_reload_starts_new_listeners_and_drains_removed_ones() {
    let echo = Backend::echo();
    let second = free_port();
    let listener = |name: &str, port: u16| {
        format!(
            "[[listener]]\nname = \"{name}\"\nbind = \"127.0.0.1:{port}\"\nmode = \"tcp\"\nbackend = \"be\"\n"
        )
    };
    let head = |admin: u16| {
        format!(
            "[global]\nshards = 2\ndrain_timeout = \"30s\"\nadmin = \"127.0.0.1:{admin}\"\n\
             [[backend]]\nname = \"be\"\nservers = [ {{ address = \"{}\" }} ]\n",
            echo.addr
        )
    };
    let rw = Ringway::start_text(|l, a| format!("{}{}", head(a), listener("first", l)));
    let path = rw.dir.0.join("ringway.toml");
    let echoes = |c: &mut TcpStream| {
        c.write_all(b"ping").is_ok() && {
            let mut b = [0u8; 4];
            c.read_exact(&mut b).is_ok() && &b == b"ping"
        }
    };
    let mut old = TcpStream::connect(rw.listen).expect("connect first");
    old.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    assert!(echoes(&mut old));

    // Add a listener: it serves on every shard at once.
    let both = format!(
        "{}{}{}",
        head(rw.admin.port()),
        listener("first", rw.listen.port()),
        listener("second", second)
    );
    std::fs::write(&path, both).expect("write");
    let (code, out, err) = run(Command::new(BIN)
        .args(["reload", "--admin", &rw.admin.to_string(), "-c"])
        .arg(&path));
    // Without a token TCP writes are refused: a reload over TCP needs one, SIGHUP does not.
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("token"), "{err}");
    rw.signal(libc::SIGHUP);
    let second_addr: SocketAddr = format!("127.0.0.1:{second}").parse().expect("addr");
    let up = poll(Duration::from_secs(5), || {
        TcpStream::connect(second_addr).ok()
    });
    let mut c = up.expect("the new listener accepts");
    c.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    assert!(echoes(&mut c));
    for _ in 0..8 {
        let mut c = TcpStream::connect(second_addr).expect("every shard listens");
        c.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        assert!(echoes(&mut c));
    }

    // Remove the first: it stops accepting; its open connection keeps working (drain).
    let only_second = format!("{}{}", head(rw.admin.port()), listener("second", second));
    std::fs::write(&path, only_second).expect("write");
    rw.signal(libc::SIGHUP);
    let closed = poll(Duration::from_secs(5), || {
        TcpStream::connect(rw.listen).is_err().then_some(())
    });
    assert!(closed.is_some(), "the removed listener still accepts");
    assert!(
        echoes(&mut old),
        "a connection of the removed listener is drained, not cut"
    );
    assert!(echoes(&mut c));
}
