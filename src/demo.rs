//! Owns: `ringway demo` — the shipped demo config plus tiny HTTP and WebSocket demo backends on
//! loopback, so a new user sees routing, balancing and a WebSocket tunnel without setting anything
//! up.
//! Must not: be used by `ringway run`; the demo backends are a toy, not part of the proxy.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::config::{Config, ConfigError};

/// The demo configuration, shipped as examples/demo.toml.
pub const DEMO_TOML: &str = include_str!("../examples/demo.toml");

/// Writes the demo configuration to `$TMPDIR/ringway-demo/demo.toml` (a directory only this
/// user can enter; the admin socket goes beside it) and loads it from there, so that the demo
/// can be edited and reloaded like any running ringway. Returns the config and its path.
pub fn config() -> Result<(Config, std::path::PathBuf), ConfigError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = std::env::temp_dir().join("ringway-demo");
    let written = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)))
        .and_then(|()| std::fs::write(dir.join("demo.toml"), DEMO_TOML));
    match written {
        Ok(()) => {
            let path = dir.join("demo.toml");
            crate::load_config(&path).map(|c| (c, path))
        }
        // Nowhere to write: run the embedded copy (no reload from a file then).
        Err(_) => crate::load_config_str(DEMO_TOML, "examples/demo.toml")
            .map(|c| (c, std::path::PathBuf::from("examples/demo.toml"))),
    }
}

/// Starts the demo backends: every server of every backend in the demo config gets a tiny server
/// thread. Servers of the backend named `echo` are WebSocket echo servers; the others answer any
/// HTTP request with `hello from demo backend X (ADDR): METHOD TARGET` (keep-alive supported, so
/// ringway's upstream pool shows in /stats).
pub fn start_backends(config: &Config) -> std::io::Result<Vec<SocketAddr>> {
    let mut started = Vec::new();
    let mut letter = 0u8;
    for backend in &config.backends {
        for server in &backend.servers {
            // A server named `offline*` is left down on purpose (redispatch and health checks);
            // an address shared by two backends is started once.
            if server.name.starts_with("offline") || started.contains(&server.address) {
                continue;
            }
            let name = char::from(b'A' + (letter % 26));
            letter += 1;
            let listener = TcpListener::bind(server.address).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "demo backend {name} cannot bind {}: {e} (is another demo running?)",
                        server.address
                    ),
                )
            })?;
            let addr = server.address;
            let echo = backend.name == "echo";
            std::thread::Builder::new()
                .name(format!("demo-backend-{name}"))
                .spawn(move || {
                    for stream in listener.incoming().flatten() {
                        let spawned = std::thread::Builder::new()
                            .name(format!("demo-conn-{name}"))
                            .spawn(move || {
                                if echo {
                                    let _ = websocket_echo(stream);
                                } else {
                                    let _ = answer(stream, name, addr);
                                }
                            });
                        if spawned.is_err() {
                            break;
                        }
                    }
                })?;
            started.push(addr);
        }
    }
    Ok(started)
}

/// Answers requests on one connection until the client closes or is idle for 5 s. Enough HTTP
/// for curl, nc and ringway: heads up to 16 KiB, request bodies skipped by Content-Length.
fn answer(mut stream: TcpStream, name: char, addr: SocketAddr) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut pending: Vec<u8> = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if pending.len() > 16 * 1024 {
                return Ok(());
            }
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            pending.extend_from_slice(buf.get(..n).unwrap_or_default());
        };
        let head = String::from_utf8_lossy(pending.get(..end).unwrap_or_default()).into_owned();
        pending.drain(..end);
        let request_line = head.lines().next().unwrap_or("").to_string();
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let mut body_left: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let skip = body_left.min(pending.len());
        pending.drain(..skip);
        body_left -= skip;
        while body_left > 0 {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            body_left = body_left.saturating_sub(n);
        }
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || request_line.ends_with("HTTP/1.0");
        let what = request_line
            .rsplit_once(' ')
            .map_or(request_line.as_str(), |(rest, _)| rest);
        let body = format!("hello from demo backend {name} ({addr}): {what}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        stream.write_all(response.as_bytes())?;
        if close {
            return stream.shutdown(std::net::Shutdown::Write);
        }
    }
}

/// A WebSocket echo server for one connection (RFC 6455 handshake and framing by tungstenite).
fn websocket_echo(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut ws = tungstenite::accept(stream).map_err(|e| std::io::Error::other(e.to_string()))?;
    while let Ok(msg) = ws.read() {
        if msg.is_close() {
            break;
        }
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).is_err() {
            break;
        }
    }
    Ok(())
}

/// What the demo prints before it starts serving.
pub fn banner(config: &Config, path: &std::path::Path) -> String {
    let listen = config
        .listeners
        .first()
        .map(|l| l.bind.to_string())
        .unwrap_or_default();
    let admin = config
        .global
        .admin
        .map(|a| a.to_string())
        .unwrap_or_default();
    let sock = config
        .global
        .admin_socket
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "ringway".into());
    let path = path.display();
    format!(
        "ringway demo: HTTP on {listen} routes to demo backends: web (A, B round robin, the default;\n\
         its third server is offline on purpose: connects to it are retried on A or B until the health\n\
         check marks it DOWN), sticky (/sticky/: A or B, then always the same via a cookie), api (C:\n\
         path /api/ or host api.localhost) and echo (a WebSocket echo server, on Upgrade).\n\
         Try:\n  for i in 1 2 3 4; do curl -s http://{listen}/; done\n\
         \x20 curl -s http://{listen}/api/users\n\
         \x20 curl -s -H 'Host: api.localhost' http://{listen}/\n\
         \x20 curl -si -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \\\n\
         \x20      -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' --max-time 2 http://{listen}/echo\n\
         \x20 for i in 1 2 3 4; do curl -s -b /tmp/rw-jar -c /tmp/rw-jar http://{listen}/sticky/; done\n\
         \x20 curl -s http://{admin}/stats\n\
         Change it while it runs (no request is lost):\n\
         \x20 curl -s --unix-socket {sock} -X PATCH -d '{{\"state\":\"drain\"}}' http://ringway/api/v1/backends/web/servers/B\n\
         \x20 curl -s --unix-socket {sock} -X PATCH -d '{{\"state\":\"ready\"}}' http://ringway/api/v1/backends/web/servers/B\n\
         \x20 {exe} reload -c {path}     # after editing that file\n\
         \x20 curl -s http://{admin}/metrics\n\
         Dashboard (live stats page): http://{admin}/\n\
         Access log lines appear below. Stop with Ctrl-C (SIGINT): ringway drains and prints a summary.\n"
    )
}
