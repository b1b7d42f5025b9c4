//! Owns: TLS as the transport of one socket, run inline in the connection: ciphertext from the
//! socket's provided buffers goes into rustls and the plaintext straight into the session's wire;
//! the session's output goes into rustls and the records straight into the socket's send buffer.
//! Server side for clients of TLS listeners (with an optional PROXY header read before the
//! handshake), client side for upstream TLS to servers.
//! Must not: parse HTTP or pick servers, or hold more than one receive buffer's worth of
//! unconsumed plaintext: the driver stops reading a side whose plaintext has nowhere to go.

use std::io::{Read, Write};

use rustls::{Connection, HandshakeKind};

/// What the handshake ended in, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Full,
    Resumed,
}

pub struct Tls {
    pub conn: Connection,
    /// Server side with `accept_proxy`: raw bytes gathered until the PROXY header is complete.
    proxy: Option<Vec<u8>>,
    /// The handshake completed (reported once through `receive`).
    done: bool,
    /// rustls refused the peer (alert queued): flush, then close.
    pub failed: bool,
    /// close_notify queued.
    pub notify_sent: bool,
    /// The peer's stream ended (close_notify or EOF).
    pub peer_done: bool,
}

/// What one `receive` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Got {
    pub handshake: Option<Handshake>,
    /// The PROXY header read before the handshake (server side with accept_proxy).
    pub proxy: Option<crate::proxy_protocol::Received>,
}

impl Tls {
    pub fn new(conn: Connection, accept_proxy: bool) -> Tls {
        Tls {
            conn,
            proxy: accept_proxy.then(Vec::new),
            done: false,
            failed: false,
            notify_sent: false,
            peer_done: false,
        }
    }

    pub fn is_handshaking(&self) -> bool {
        !self.done
    }

    /// The negotiated TLS version (`TLSv1.3`, `TLSv1.2`), once the handshake has chosen one.
    pub fn version(&self) -> Option<&'static str> {
        match self.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
            rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
            _ => Some("other"),
        }
    }

    /// ALPN chose HTTP/2 (RFC 9113 §3.2).
    pub fn alpn_h2(&self) -> bool {
        self.conn.alpn_protocol() == Some(b"h2".as_slice())
    }

    pub fn sni(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(s) => s.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// Feeds ciphertext; decrypted bytes are appended to `plain`. Errors mark the connection
    /// failed (an alert is queued for the peer).
    pub fn receive(&mut self, bytes: &[u8], plain: &mut Vec<u8>, scratch: &mut [u8]) -> Got {
        let mut got = Got::default();
        let mut bytes = bytes;
        if let Some(pre) = &mut self.proxy {
            pre.extend_from_slice(bytes);
            match crate::proxy_protocol::parse_received(pre) {
                crate::proxy_protocol::Received::Partial if pre.len() < 4096 => {
                    return got;
                }
                crate::proxy_protocol::Received::Complete {
                    source,
                    consumed_bytes,
                } => {
                    let rest = pre.split_off(consumed_bytes.min(pre.len()));
                    got.proxy = Some(crate::proxy_protocol::Received::Complete {
                        source,
                        consumed_bytes,
                    });
                    self.proxy = None;
                    self.feed(&rest, plain, scratch, &mut got);
                    return got;
                }
                crate::proxy_protocol::Received::Partial
                | crate::proxy_protocol::Received::Invalid(_) => {
                    got.proxy = Some(crate::proxy_protocol::Received::Invalid(
                        "PROXY header refused on a TLS listener",
                    ));
                    self.failed = true;
                    return got;
                }
            }
        }
        if self.failed {
            bytes = &[];
        }
        self.feed(bytes, plain, scratch, &mut got);
        got
    }

    fn feed(&mut self, mut bytes: &[u8], plain: &mut Vec<u8>, scratch: &mut [u8], got: &mut Got) {
        loop {
            if !bytes.is_empty() {
                match self.conn.read_tls(&mut bytes) {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS read failed");
                        self.failed = true;
                        return;
                    }
                }
            }
            if let Err(e) = self.conn.process_new_packets() {
                tracing::debug!(error = %e, "TLS error; closing");
                self.failed = true;
                return;
            }
            if !self.done && !self.conn.is_handshaking() {
                self.done = true;
                got.handshake = Some(match self.conn.handshake_kind() {
                    Some(HandshakeKind::Resumed) => Handshake::Resumed,
                    _ => Handshake::Full,
                });
            }
            self.drain_plaintext(plain, scratch);
            if bytes.is_empty() {
                return;
            }
        }
    }

    fn drain_plaintext(&mut self, plain: &mut Vec<u8>, scratch: &mut [u8]) {
        loop {
            match self.conn.reader().read(scratch) {
                Ok(0) => {
                    self.peer_done = true;
                    return;
                }
                Ok(n) => plain.extend_from_slice(scratch.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // EOF without close_notify: the stream ends here all the same.
                Err(_) => {
                    self.peer_done = true;
                    return;
                }
            }
        }
    }

    /// The socket reached EOF.
    pub fn on_eof(&mut self, plain: &mut Vec<u8>, scratch: &mut [u8]) {
        if self.proxy.is_some() {
            self.proxy = None;
            self.failed = true;
            return;
        }
        let _ = self.conn.read_tls(&mut &[][..]);
        let _ = self.conn.process_new_packets();
        self.drain_plaintext(plain, scratch);
        self.peer_done = true;
    }

    /// Encrypts as much of `plain` as rustls takes now (its send buffer is bounded; the rest
    /// stays in `plain` for the next call) and appends every pending record to `cipher`.
    pub fn send(&mut self, plain: &mut Vec<u8>, cipher: &mut Vec<u8>) {
        if !plain.is_empty() && !self.failed {
            match self.conn.writer().write(plain) {
                Ok(n) => {
                    plain.drain(..n.min(plain.len()));
                }
                Err(_) => self.failed = true,
            }
        }
        self.flush(cipher);
    }

    /// Appends pending records (handshake messages, alerts, data) to `cipher`.
    pub fn flush(&mut self, cipher: &mut Vec<u8>) {
        while self.conn.wants_write() {
            match self.conn.write_tls(cipher) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Queues close_notify (once).
    pub fn close_notify(&mut self, cipher: &mut Vec<u8>) {
        if !self.notify_sent && !self.failed {
            self.notify_sent = true;
            self.conn.send_close_notify();
        }
        self.flush(cipher);
    }
}
