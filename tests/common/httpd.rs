//! A small threaded HTTP/1.1 backend for integration tests: records every request exactly as it
//! arrived (head bytes and decoded body), counts connections, and answers with whatever the test's
//! handler returns, including broken or partial responses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Req {
    /// The head exactly as received, up to and including the blank line.
    pub head: String,
    pub method: String,
    pub target: String,
    /// Decoded body (chunked framing removed).
    pub body: Vec<u8>,
    /// The body bytes as received (chunked framing kept).
    pub raw_body: Vec<u8>,
    /// Index of the backend connection it came on (0-based, in accept order).
    pub conn: u64,
}

impl Req {
    /// Every value of header `name` (case-insensitive), in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }
}

/// What the backend does with a request.
pub enum Reply {
    /// Write these bytes and keep the connection for the next request.
    Bytes(Vec<u8>),
    /// Write these bytes, then close.
    BytesThenClose(Vec<u8>),
    /// Never answer; close after `Duration`.
    Hang(Duration),
}

pub type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

pub struct Httpd {
    pub addr: SocketAddr,
    pub conns: Arc<AtomicU64>,
    /// Connections open now (accepted and not yet closed by either side).
    pub open: Arc<AtomicU64>,
    pub requests: Arc<Mutex<Vec<Req>>>,
}

/// `200 OK` with `body` and Content-Length.
pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl Httpd {
    /// A backend that answers `name <path>` to every request.
    pub fn named(name: &'static str) -> Httpd {
        Httpd::spawn(move |r| Reply::Bytes(ok(&format!("{name} {}", r.target))))
    }

    pub fn spawn(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Httpd {
        Httpd::serve_on(
            TcpListener::bind("127.0.0.1:0").expect("bind backend"),
            handler,
        )
    }

    /// As `spawn`, on a given address: brings a "dead" server back on its old port, which the
    /// dead server's test may still hold with a `reuseport_socket` reservation.
    pub fn spawn_on(
        addr: SocketAddr,
        handler: impl Fn(&Req) -> Reply + Send + Sync + 'static,
    ) -> Httpd {
        let socket = super::reuseport_socket(addr);
        socket.listen(1024).expect("listen");
        Httpd::serve_on(socket.into(), handler)
    }

    fn serve_on(
        listener: TcpListener,
        handler: impl Fn(&Req) -> Reply + Send + Sync + 'static,
    ) -> Httpd {
        let addr = listener.local_addr().expect("addr");
        let conns = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (c, o, r) = (Arc::clone(&conns), Arc::clone(&open), Arc::clone(&requests));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = c.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (h, o, r) = (Arc::clone(&handler), Arc::clone(&o), Arc::clone(&r));
                std::thread::spawn(move || {
                    serve(stream, n, &*h, &r);
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Httpd {
            addr,
            conns,
            open,
            requests,
        }
    }

    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn conn_count(&self) -> u64 {
        self.conns.load(Ordering::SeqCst)
    }

    pub fn open_count(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }
}

fn serve(mut s: TcpStream, conn: u64, handler: &Handler, log: &Mutex<Vec<Req>>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(end) = read_until_head(&mut s, &mut buf) else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut first = head.lines().next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_string();
        let target = first.next().unwrap_or("").to_string();
        let mut req = Req {
            head,
            method,
            target,
            body: Vec::new(),
            raw_body: Vec::new(),
            conn,
        };
        if req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let chunked = req
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            if !read_chunked(&mut s, &mut buf, &mut req) {
                return;
            }
        } else if let Some(len) = req
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            while buf.len() < len {
                let mut tmp = [0u8; 65536];
                match s.read(&mut tmp) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
            req.body = buf.drain(..len).collect();
            req.raw_body = req.body.clone();
        }
        if let Ok(mut g) = log.lock() {
            g.push(req.clone());
        }
        match handler(&req) {
            Reply::Bytes(b) => {
                if s.write_all(&b).is_err() {
                    return;
                }
            }
            Reply::BytesThenClose(b) => {
                let _ = s.write_all(&b);
                return;
            }
            Reply::Hang(d) => {
                std::thread::sleep(d);
                return;
            }
        }
    }
}

fn read_until_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut tmp = [0u8; 16384];
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

fn read_line(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..i + 2).collect();
            return Some(String::from_utf8_lossy(&line[..i]).into_owned());
        }
        let mut tmp = [0u8; 16384];
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>, req: &mut Req) -> bool {
    loop {
        let Some(line) = read_line(s, buf) else {
            return false;
        };
        req.raw_body.extend_from_slice(line.as_bytes());
        req.raw_body.extend_from_slice(b"\r\n");
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            return false;
        };
        if size == 0 {
            // Trailers until the empty line.
            loop {
                let Some(t) = read_line(s, buf) else {
                    return false;
                };
                req.raw_body.extend_from_slice(t.as_bytes());
                req.raw_body.extend_from_slice(b"\r\n");
                if t.is_empty() {
                    return true;
                }
            }
        }
        while buf.len() < size + 2 {
            let mut tmp = [0u8; 65536];
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let data: Vec<u8> = buf.drain(..size + 2).collect();
        req.body.extend_from_slice(&data[..size]);
        req.raw_body.extend_from_slice(&data);
    }
}
