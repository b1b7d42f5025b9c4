//! Owns: `ringway demo` — the shipped demo config plus tiny HTTP demo backends on loopback, so a
//! new user sees requests spread over two servers without setting anything up.
//! Must not: be used by `ringway run`; the demo backends are a toy, not part of the proxy.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::config::{self, Config, ConfigError};

/// The demo configuration, shipped as examples/demo.toml.
pub const DEMO_TOML: &str = include_str!("../examples/demo.toml");

pub fn config() -> Result<Config, ConfigError> {
    config::load_str(DEMO_TOML, "examples/demo.toml")
}

/// Starts one demo backend thread per server of the demo backend. Each answers any request with
/// `hello from demo backend X (ADDR)` and closes.
pub fn start_backends(config: &Config) -> std::io::Result<Vec<SocketAddr>> {
    let mut started = Vec::new();
    let Some(backend) = config.backends.first() else {
        return Ok(started);
    };
    for (i, server) in backend.servers.iter().enumerate() {
        let name = char::from(b'A' + (i % 26) as u8);
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
        std::thread::Builder::new()
            .name(format!("demo-backend-{name}"))
            .spawn(move || serve(listener, name, addr))?;
        started.push(addr);
    }
    Ok(started)
}

fn serve(listener: TcpListener, name: char, addr: SocketAddr) {
    for stream in listener.incoming().flatten() {
        let _ = answer(stream, name, addr);
    }
}

fn answer(mut stream: TcpStream, name: char, addr: SocketAddr) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    // Read up to the end of the request head (or 16 KiB, or EOF): enough for curl and nc.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let body = format!("hello from demo backend {name} ({addr})\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)
}

/// What the demo prints before it starts serving.
pub fn banner(config: &Config) -> String {
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
    format!(
        "ringway demo: proxying {listen} (mode tcp, round robin) to demo backends A and B.\n\
         Try:\n  for i in 1 2 3 4; do curl -s http://{listen}/; done\n  curl -s http://{admin}/stats\n\
         Stop with Ctrl-C (SIGINT): ringway drains and prints a summary.\n"
    )
}
