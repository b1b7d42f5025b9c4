//! The command line: check, run on a bad config, version, demo.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn is_location_line(line: &str, file: &str) -> bool {
    // FILE:LINE:COLUMN: message
    let Some(rest) = line.strip_prefix(&format!("{file}:")) else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let line_no = parts.next().and_then(|p| p.parse::<u32>().ok());
    let col_no = parts.next().and_then(|p| p.parse::<u32>().ok());
    let msg = parts.next().unwrap_or("");
    line_no.is_some() && col_no.is_some() && msg.starts_with(' ') && msg.len() > 1
}

#[test]
fn config_error_prints_file_line_column() {
    let dir = TempDir::new("cli");
    let bad = dir.write(
        "bad.toml",
        "[timeouts]\nconnect = \"5 seconds\"\n[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\nbackend = \"nope\"\n",
    );
    let bad_s = bad.display().to_string();
    for sub in ["check", "run"] {
        let out = Command::new(BIN)
            .args([sub, "-c", &bad_s])
            .output()
            .expect("run ringway");
        assert_eq!(out.status.code(), Some(1), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines.len() >= 2, "{sub}: {err}");
        assert!(
            lines.iter().all(|l| is_location_line(l, &bad_s)),
            "{sub}: {err}"
        );
        assert!(err.contains(&format!("{bad_s}:2:11: connect:")), "{err}");
        assert!(
            err.contains(&format!("{bad_s}:6:11: listener `a` uses backend `nope`")),
            "{err}"
        );
    }
}

#[test]
fn shipped_bad_example_is_refused_with_location() {
    let out = Command::new(BIN)
        .args(["check", "-c", "examples/bad.toml"])
        .current_dir(manifest_dir())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .next()
            .is_some_and(|l| is_location_line(l, "examples/bad.toml")),
        "{err}"
    );
    assert!(err.contains("did you mean `connect`?"), "{err}");
}

#[test]
fn shipped_examples_pass_check_with_summary() {
    let mut summaries = std::collections::HashMap::new();
    for example in [
        "examples/tcp.toml",
        "examples/demo.toml",
        "examples/websocket-routing.toml",
        "examples/socketio.toml",
        "examples/sni-passthrough.toml",
        "examples/tls-termination.toml",
        "examples/detect.toml",
        "examples/redis-routes.toml",
        "examples/http2.toml",
    ] {
        let out = Command::new(BIN)
            .args(["check", "-c", example])
            .current_dir(manifest_dir())
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with(&format!("{example}: ok")), "{stdout}");
        assert!(stdout.contains("listener"), "{stdout}");
        // Every HTTP listener says whether it speaks HTTP/2; TCP listeners have no such option.
        for line in stdout.lines().filter(|l| l.starts_with("  listener ")) {
            assert_eq!(
                line.contains(" mode tcp "),
                !line.contains(" http2 "),
                "{example}: {line}"
            );
        }
        summaries.insert(example, stdout);
    }
    let h2 = &summaries["examples/http2.toml"];
    for listener in [
        "  listener https: 127.0.0.1:8443 mode http splice auto http2 on, 1 route(s)",
        "  listener h2c: 127.0.0.1:8080 mode http splice auto http2 on, 0 route(s)",
    ] {
        assert!(h2.contains(listener), "{h2}");
    }
    let demo = &summaries["examples/demo.toml"];
    assert!(
        demo.contains("  listener demo: 127.0.0.1:8080 mode http splice auto http2 off,"),
        "{demo}"
    );
}

#[test]
fn missing_config_file_is_explained() {
    let out = Command::new(BIN)
        .args(["check", "-c", "/nonexistent/ringway.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ringway.toml: cannot read")
    );
}

#[test]
fn version_is_printed() {
    let out = Command::new(BIN).arg("--version").output().expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ringway {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn port_in_use_fails_start_with_exit_2_and_hint() {
    // A listener without SO_REUSEPORT holds the port.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let dir = TempDir::new("inuse");
    let cfg = dir.write(
        "c.toml",
        &format!(
            "[[listener]]\nname=\"a\"\nbind=\"127.0.0.1:{port}\"\nbackend=\"b\"\n[[backend]]\nname=\"b\"\nservers=[{{address=\"127.0.0.1:9\"}}]\n"
        ),
    );
    let out = Command::new(BIN)
        .env("RINGWAY_ALLOW_ROOT", "1")
        .args(["run", "-c"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("address in use") && err.contains("ss -ltnp"),
        "{err}"
    );
}

#[test]
fn demo_routes_http_balances_and_tunnels_websocket() {
    // `ringway demo` binds fixed ports (8079-8084, 9900), as the README promises.
    let free = [8079u16, 8080, 8081, 8082, 8083, 8084, 9900]
        .iter()
        .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok());
    assert!(
        free,
        "the demo's fixed ports 8079-8084/9900 are busy: stop the running demo and rerun"
    );
    let mut child = Command::new(BIN)
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let addr = "127.0.0.1:8080".parse().expect("addr");
    let mut answers = std::collections::BTreeSet::new();
    let got = poll(Duration::from_secs(20), || {
        let body = http_get(addr, "/").ok()?;
        answers.insert(body.lines().next()?.split(" (").next()?.to_string());
        (answers.len() >= 2).then_some(())
    });
    let api = http_get(addr, "/api/users").unwrap_or_default();
    let ws = std::net::TcpStream::connect(addr).ok().and_then(|s| {
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let (mut ws, _) = tungstenite::client("ws://127.0.0.1:8080/echo", s).ok()?;
        ws.send(tungstenite::Message::text("ping")).ok()?;
        let back = ws.read().ok()?.into_text().ok()?;
        let _ = ws.close(None);
        Some(back.as_str().to_string())
    });
    // The commands the banner prints: drain B through the unix socket, then reload the file.
    let dir = std::env::temp_dir().join("ringway-demo");
    let drained = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(dir.join("admin.sock"))
        .args(["-X", "PATCH", "-d", r#"{"state":"drain"}"#])
        .arg("http://ringway/api/v1/backends/web/servers/B")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let after_drain: std::collections::BTreeSet<String> = (0..4)
        .filter_map(|_| http_get(addr, "/").ok())
        .filter_map(|b| Some(b.lines().next()?.split(" (").next()?.to_string()))
        .collect();
    let reloaded = Command::new(BIN)
        .args(["reload", "-c"])
        .arg(dir.join("demo.toml"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // SAFETY: signal our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = poll(Duration::from_secs(10), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
    }
    assert!(drained.ends_with("200"), "{drained}");
    assert_eq!(
        after_drain.into_iter().collect::<Vec<_>>(),
        ["hello from demo backend A"],
        "B drained"
    );
    assert!(
        reloaded.contains("server B state drain -> ready"),
        "{reloaded}"
    );
    assert!(got.is_some(), "demo answers: {answers:?}");
    assert!(answers.contains("hello from demo backend A"), "{answers:?}");
    assert!(answers.contains("hello from demo backend B"), "{answers:?}");
    assert!(api.starts_with("hello from demo backend C"), "{api}");
    assert_eq!(
        ws.as_deref(),
        Some("ping"),
        "WebSocket echo through the demo"
    );
    assert!(status.is_some_and(|s| s.success()));
    // The banner names the stats page and /metrics.
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        let _ = stdout.read_to_string(&mut out);
    }
    assert!(
        out.contains("Dashboard (live stats page): http://127.0.0.1:9900/\n"),
        "{out}"
    );
    assert!(
        out.contains("curl -s http://127.0.0.1:9900/metrics"),
        "{out}"
    );
}
