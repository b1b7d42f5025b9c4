//! Owns: TLS-terminated client connections of this shard. rustls runs on the client socket;
//! the plaintext goes to and comes from one end of a socketpair whose other end is served by
//! the ordinary TCP or HTTP path (shard/conn.rs, shard/http.rs) exactly like a plain client, so
//! routing, balancing, retries, WebSocket tunnels and timeouts have one implementation. The
//! price is one local copy each way (no kTLS on this kernel; see docs/tls.md).
//! Must not: parse HTTP or pick backends; it only moves bytes, drives the handshake and closes.
//!
//! Memory per connection is bounded: one 18 KiB ciphertext buffer, one 16 KiB plaintext buffer
//! and at most one TLS record's worth of output queued per direction; nothing is read from one
//! side while the other side has not taken the previous bytes (backpressure both ways).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;

use io_uring::{opcode, types};
use rustls::{ClientConnection, Connection, HandshakeKind, ServerConfig, ServerConnection};

use super::ring::{Completion, Op, OpKind};
use super::{Shard, close_fd};
use crate::config::SpliceMode;
use crate::timer::TimerKey;

/// Timer keys of TLS connections carry this bit (HTTP uses bit 31).
pub(super) const TLS_TIMER_BIT: u32 = 1 << 30;

const CLIENT: usize = 0;
const INNER: usize = 1;
/// One TLS record (16 KiB plaintext) plus header, padding and tag.
const CIPHER_BUF: usize = 18 * 1024;
const PLAIN_BUF: usize = 16 * 1024;
/// After ringway has said close_notify and FIN, how long it keeps reading (and discarding) the
/// client's bytes so that closing does not reset data still in flight towards it.
const LINGER_MS: u64 = 2_000;

/// Where the decrypted stream of a TLS listener goes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Then {
    Http { index: usize },
    Tcp { backend: usize, splice: SpliceMode },
}

/// A TLS-terminating listener as this shard runs it.
pub(super) struct TlsListenerSlot {
    /// This shard's own configuration (own session cache and ticketer instance).
    pub config: Arc<ServerConfig>,
    /// The session cache inside `config` (for replication to the other shards).
    pub cache: Option<Arc<crate::tls::server::ShardSessionCache>>,
    pub handshake_ms: u64,
    pub then: Then,
    pub accept_proxy: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Upstream TLS: connecting to the server.
    Connecting,
    /// Waiting for a PROXY header (accept_proxy) or the handshake to finish.
    Handshaking,
    Open,
    /// Everything was sent and the client's write side shut: reading and discarding until the
    /// client closes or the linger time ends.
    Linger {
        until_ms: u64,
    },
    /// Fatal TLS error: flushing the alert, then closing.
    Failing,
    Closing,
}

pub(super) struct TlsConn {
    /// Server side for clients of TLS listeners, client side for upstream TLS to servers.
    tls: Connection,
    /// Upstream TLS: the server's address (kept until the connect completes) and the connect /
    /// handshake timeout. `None` for TLS listeners.
    upstream: Option<Upstream>,
    listener: usize,
    client: Option<SocketAddr>,
    /// [client socket, our end of the socketpair (-1 until the handshake is done)].
    fds: [RawFd; 2],
    phase: Phase,
    proxy_pending: bool,
    /// Ciphertext received from the client, not yet given to rustls: `cin[cin_off..cin_len]`.
    cin: Box<[u8]>,
    cin_off: usize,
    cin_len: usize,
    /// Where the client recv in flight writes into `cin`.
    cin_recv_at: usize,
    /// Plaintext read from the inner socket, not yet given to rustls.
    pin: Box<[u8]>,
    pin_off: usize,
    pin_len: usize,
    /// Bytes to send: `out[CLIENT]` ciphertext to the client, `out[INNER]` plaintext inwards.
    /// Not touched while a send from it is in flight.
    out: [Vec<u8>; 2],
    out_off: [usize; 2],
    recv_armed: [bool; 2],
    send_armed: [bool; 2],
    /// The peer of that side will send nothing more.
    eof: [bool; 2],
    /// rustls was told about the client's EOF.
    eof_fed: bool,
    /// The client's plaintext stream ended (close_notify or EOF).
    client_done: bool,
    /// close_notify queued for the client.
    notify_sent: bool,
    /// Write side shut towards that side.
    shut: [bool; 2],
    inflight: u32,
    opened_ms: u64,
    active_ms: u64,
    timer_queued: bool,
}

impl TlsConn {
    fn new(tls: Connection, fds: [RawFd; 2], phase: Phase, now_ms: u64) -> TlsConn {
        TlsConn {
            tls,
            upstream: None,
            listener: usize::MAX,
            client: None,
            fds,
            phase,
            proxy_pending: false,
            cin: vec![0u8; CIPHER_BUF].into_boxed_slice(),
            cin_off: 0,
            cin_len: 0,
            cin_recv_at: 0,
            pin: vec![0u8; PLAIN_BUF].into_boxed_slice(),
            pin_off: 0,
            pin_len: 0,
            out: [Vec::new(), Vec::new()],
            out_off: [0, 0],
            recv_armed: [false; 2],
            send_armed: [false; 2],
            eof: [false; 2],
            eof_fed: false,
            client_done: false,
            notify_sent: false,
            shut: [false; 2],
            inflight: 0,
            opened_ms: now_ms,
            active_ms: now_ms,
            timer_queued: false,
        }
    }
}

struct Upstream {
    addr: Box<socket2::SockAddr>,
    timeout_ms: u64,
}

pub(super) struct TlsSlot {
    generation: u32,
    conn: Option<TlsConn>,
}

impl Shard {
    fn tconn(&mut self, slot: u32) -> Option<&mut TlsConn> {
        self.tls_slots.get_mut(slot as usize)?.conn.as_mut()
    }

    /// A client connected to a TLS listener (or a detect listener saw a ClientHello).
    pub(super) fn open_tls(&mut self, fd: RawFd, listener: usize) {
        let Some(l) = self.tls_listeners.get(listener) else {
            close_fd(fd);
            return;
        };
        let tls = match ServerConnection::new(l.config.clone()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(shard = self.id, error = %e, "TLS connection setup failed");
                close_fd(fd);
                return;
            }
        };
        super::ring::set_nodelay(fd);
        let mut conn = TlsConn::new(
            Connection::Server(tls),
            [fd, -1],
            Phase::Handshaking,
            self.now_ms,
        );
        conn.listener = listener;
        conn.client = super::peer_addr(fd);
        conn.proxy_pending = l.accept_proxy;
        let slot = self.tls_alloc(conn);
        self.tls_progress(slot);
        self.tls_schedule_timer(slot);
    }

    fn tls_alloc(&mut self, conn: TlsConn) -> u32 {
        self.stats.tls_active += 1;
        if let Some(slot) = self.free_tls_slots.pop()
            && let Some(s) = self.tls_slots.get_mut(slot as usize)
        {
            s.conn = Some(conn);
            slot
        } else {
            self.tls_slots.push(TlsSlot {
                generation: 0,
                conn: Some(conn),
            });
            (self.tls_slots.len() - 1) as u32
        }
    }

    /// Upstream TLS: starts a TLS connection to `server` of `backend` and returns the plaintext
    /// end of its socketpair, which the TCP/HTTP path uses as if it were the server socket
    /// (already connected). Connect and handshake errors reach that path as a closed server
    /// connection (502 / retry where safe) and count in `tls_upstream_errors`.
    pub(super) fn tls_upstream_open(&mut self, backend: usize, server: usize) -> Option<RawFd> {
        let b = self.backends.get(backend)?;
        let t = b.tls.as_ref()?;
        let name = t.names.get(server)?.clone();
        let addr = b.addrs.get(server)?.clone();
        let tls = match ClientConnection::new(t.config.clone(), name) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(shard = self.id, error = %e, "upstream TLS setup failed");
                return None;
            }
        };
        let family = if addr.is_ipv6() {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        // SAFETY: plain syscall, result checked.
        let tcp = unsafe {
            libc::socket(
                family,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if tcp < 0 {
            return None;
        }
        let mut pair = [-1; 2];
        // SAFETY: socketpair writes two fds into `pair`.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        };
        if rc != 0 {
            close_fd(tcp);
            return None;
        }
        super::ring::set_nodelay(tcp);
        let mut conn = TlsConn::new(
            Connection::Client(tls),
            [tcp, pair[0]],
            Phase::Connecting,
            self.now_ms,
        );
        conn.upstream = Some(Upstream {
            addr: Box::new(addr),
            timeout_ms: self.timeouts.connect,
        });
        // The connect below.
        conn.inflight = 1;
        let slot = self.tls_alloc(conn);
        let t = self.tconn(slot)?;
        let (ptr, len) = t
            .upstream
            .as_ref()
            .map(|u| (u.addr.as_ptr(), u.addr.len()))?;
        // SAFETY (pointer lifetime): the address is boxed in the connection, which is freed only
        // when `inflight` (counting this connect) is back to 0.
        let entry = opcode::Connect::new(types::Fd(tcp), ptr.cast(), len)
            .build()
            .user_data(Op::new(OpKind::TlsConnect, slot, CLIENT).encode());
        self.ring.push(entry);
        self.tls_schedule_timer(slot);
        Some(pair[1])
    }

    pub(super) fn on_tls_completion(&mut self, op: Op, c: Completion) {
        let id = self.id;
        let slot = op.slot;
        let now = self.now_ms;
        let Some(t) = self
            .tls_slots
            .get_mut(slot as usize)
            .and_then(|s| s.conn.as_mut())
        else {
            return;
        };
        t.inflight = t.inflight.saturating_sub(1);
        let side = op.dir;
        let res = c.result;
        match op.kind {
            OpKind::TlsConnect => {
                if res == 0 && t.phase == Phase::Connecting {
                    t.phase = Phase::Handshaking;
                    t.opened_ms = now;
                } else if t.phase == Phase::Connecting {
                    tracing::debug!(shard = id, errno = -res, "upstream TLS connect failed");
                    self.stats.tls_upstream_errors += 1;
                    self.tls_begin_close(slot);
                    self.tls_try_free(slot);
                    return;
                }
            }
            OpKind::TlsRecv => {
                t.recv_armed[side] = false;
                if res > 0 {
                    t.active_ms = now;
                    let n = res as usize;
                    if side == CLIENT {
                        if matches!(t.phase, Phase::Linger { .. }) {
                            // Discarded: the response is complete and the client was told.
                        } else {
                            t.cin_len = t.cin_recv_at + n;
                        }
                    } else {
                        t.pin_off = 0;
                        t.pin_len = n;
                    }
                } else if res == 0 || (res < 0 && res != -libc::ECANCELED) {
                    if res < 0 {
                        tracing::debug!(shard = id, side, errno = -res, "TLS recv failed");
                    }
                    t.eof[side] = true;
                    if side == CLIENT && res < 0 {
                        // The client is gone: nothing more can be delivered to it.
                        t.out[CLIENT].clear();
                        t.out_off[CLIENT] = 0;
                        t.shut[CLIENT] = true;
                    }
                }
            }
            OpKind::TlsSend => {
                t.send_armed[side] = false;
                if res > 0 {
                    t.active_ms = now;
                    t.out_off[side] += res as usize;
                    if t.out_off[side] >= t.out[side].len() {
                        t.out[side].clear();
                        t.out_off[side] = 0;
                    }
                } else if res != -libc::ECANCELED {
                    tracing::debug!(shard = id, side, errno = -res, "TLS send failed");
                    // That side cannot take more: drop what was meant for it.
                    t.out[side].clear();
                    t.out_off[side] = 0;
                    t.shut[side] = true;
                    t.eof[side] = true;
                    if side == INNER {
                        t.client_done = true;
                    }
                }
            }
            _ => {}
        }
        self.tls_progress(slot);
        self.tls_try_free(slot);
    }

    /// Moves bytes between the sockets and rustls as far as buffers allow, arms the ops that
    /// are missing, and shuts or closes sides that are done.
    fn tls_progress(&mut self, slot: u32) {
        let id = self.id;
        for _ in 0..8 {
            let Some(t) = self
                .tls_slots
                .get_mut(slot as usize)
                .and_then(|s| s.conn.as_mut())
            else {
                return;
            };
            if matches!(t.phase, Phase::Closing) {
                return;
            }
            let mut again = false;

            // 1. PROXY header from a trusted balancer, before the ClientHello.
            if t.proxy_pending && t.cin_off < t.cin_len {
                match crate::proxy_protocol::parse_received(&t.cin[t.cin_off..t.cin_len]) {
                    crate::proxy_protocol::Received::Complete {
                        source,
                        consumed_bytes,
                    } => {
                        t.proxy_pending = false;
                        t.cin_off += consumed_bytes;
                        if t.cin_off >= t.cin_len {
                            t.cin_off = 0;
                            t.cin_len = 0;
                        }
                        if source.is_some() {
                            t.client = source;
                        }
                    }
                    crate::proxy_protocol::Received::Partial if !t.eof[CLIENT] => {
                        // Wait for the rest in the same buffer.
                        if t.cin_len < t.cin.len() && !t.recv_armed[CLIENT] {
                            self.tls_arm_recv_more(slot);
                        }
                        return;
                    }
                    crate::proxy_protocol::Received::Partial
                    | crate::proxy_protocol::Received::Invalid(_) => {
                        self.stats.proxy_rejected += 1;
                        tracing::debug!(shard = id, "PROXY header refused on a TLS listener");
                        self.tls_begin_close(slot);
                        return;
                    }
                }
            }

            // 2. Ciphertext into rustls.
            if !t.proxy_pending && t.cin_off < t.cin_len && t.phase != Phase::Failing {
                let mut rd = &t.cin[t.cin_off..t.cin_len];
                if let Ok(n) = t.tls.read_tls(&mut rd) {
                    t.cin_off += n;
                    again |= n > 0;
                }
                if t.cin_off >= t.cin_len {
                    t.cin_off = 0;
                    t.cin_len = 0;
                }
                if let Err(e) = t.tls.process_new_packets() {
                    tracing::debug!(shard = id, error = %e, upstream = t.upstream.is_some(), "TLS error; closing");
                    if t.upstream.is_some() {
                        self.stats.tls_upstream_errors += 1;
                    } else if t.phase == Phase::Handshaking {
                        self.stats.tls_handshake_errors += 1;
                    }
                    t.phase = Phase::Failing;
                }
            }
            if t.eof[CLIENT] && t.cin_off >= t.cin_len && !t.eof_fed && !t.proxy_pending {
                t.eof_fed = true;
                let _ = t.tls.read_tls(&mut &[][..]);
                let _ = t.tls.process_new_packets();
                if t.phase == Phase::Handshaking {
                    if t.upstream.is_some() {
                        self.stats.tls_upstream_errors += 1;
                    } else {
                        self.stats.tls_handshake_errors += 1;
                    }
                    self.tls_begin_close(slot);
                    return;
                }
            }
            let Some(t) = self
                .tls_slots
                .get_mut(slot as usize)
                .and_then(|s| s.conn.as_mut())
            else {
                return;
            };

            // 3. Handshake finished: connect the plaintext side.
            if t.phase == Phase::Handshaking && !t.tls.is_handshaking() && !t.proxy_pending {
                t.phase = Phase::Open;
                if t.upstream.is_some() {
                    // The plaintext side was handed to the TCP/HTTP path at connect time.
                    t.upstream = None;
                    self.stats.tls_upstream_handshakes += 1;
                    continue;
                }
                match t.tls.handshake_kind() {
                    Some(HandshakeKind::Resumed) => self.stats.tls_resumed += 1,
                    _ => self.stats.tls_handshakes += 1,
                }
                if !self.tls_attach_inner(slot) {
                    self.tls_begin_close(slot);
                    return;
                }
                again = true;
            }
            let Some(t) = self
                .tls_slots
                .get_mut(slot as usize)
                .and_then(|s| s.conn.as_mut())
            else {
                return;
            };

            // 4. Plaintext from the client to the inner socket.
            if t.fds[INNER] >= 0 && !t.send_armed[INNER] && !t.shut[INNER] && !t.client_done {
                let old = t.out[INNER].len();
                if old < PLAIN_BUF {
                    // Read into the shard's scratch buffer (initialised once) and copy what came:
                    // cheaper than zero-filling room in `out` on every pass.
                    let scratch = &mut self.tls_scratch[..PLAIN_BUF - old];
                    match t.tls.reader().read(scratch) {
                        Ok(0) => t.client_done = true,
                        Ok(n) => {
                            t.out[INNER].extend_from_slice(&scratch[..n]);
                            again = true;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        // EOF without close_notify: the stream ends here all the same.
                        Err(_) => t.client_done = true,
                    }
                }
            }

            // 5. Plaintext from the inner socket into rustls (only while the client keeps up).
            if t.phase == Phase::Open
                && t.pin_off < t.pin_len
                && t.out[CLIENT].is_empty()
                && !t.tls.wants_write()
            {
                match t.tls.writer().write(&t.pin[t.pin_off..t.pin_len]) {
                    Ok(n) => {
                        t.pin_off += n;
                        again |= n > 0;
                    }
                    Err(_) => t.pin_off = t.pin_len,
                }
                if t.pin_off >= t.pin_len {
                    t.pin_off = 0;
                    t.pin_len = 0;
                }
            }
            if t.phase == Phase::Open && t.eof[INNER] && t.pin_off >= t.pin_len && !t.notify_sent {
                t.notify_sent = true;
                t.tls.send_close_notify();
            }

            // 6. Ciphertext out of rustls (handshake messages, alerts, records).
            if !t.send_armed[CLIENT] && !t.shut[CLIENT] && t.phase != Phase::Connecting {
                while t.tls.wants_write() && t.out[CLIENT].len() < CIPHER_BUF {
                    match t.tls.write_tls(&mut t.out[CLIENT]) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
            if !again {
                break;
            }
        }
        self.tls_arm(slot);
    }

    /// Arms the sends and recvs each side needs, shuts finished sides, closes when done.
    fn tls_arm(&mut self, slot: u32) {
        let now = self.now_ms;
        let Some(t) = self
            .tls_slots
            .get_mut(slot as usize)
            .and_then(|s| s.conn.as_mut())
        else {
            return;
        };
        let mut entries = Vec::new();
        for side in [CLIENT, INNER] {
            let fd = t.fds[side];
            if fd < 0
                || t.send_armed[side]
                || t.out_off[side] >= t.out[side].len()
                || t.phase == Phase::Connecting
            {
                continue;
            }
            let buf = &t.out[side][t.out_off[side]..];
            t.send_armed[side] = true;
            t.inflight += 1;
            // SAFETY (pointer lifetime): `out[side]` is neither resized nor dropped while
            // `send_armed[side]` is set (cleared in on_tls_completion), and the slot is freed
            // only when `inflight` is 0.
            entries.push(
                opcode::Send::new(types::Fd(fd), buf.as_ptr(), buf.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(Op::new(OpKind::TlsSend, slot, side).encode()),
            );
        }
        let failing = t.phase == Phase::Failing;
        let lingering = matches!(t.phase, Phase::Linger { .. });
        // Client recv: when the previous bytes were all taken by rustls and the plaintext they
        // made has gone inwards (backpressure), or to discard while lingering.
        let want_client = !t.eof[CLIENT]
            && !t.recv_armed[CLIENT]
            && !failing
            && t.phase != Phase::Connecting
            && t.cin_len == 0
            && (lingering || (t.out[INNER].is_empty() && !t.client_done));
        if want_client {
            t.recv_armed[CLIENT] = true;
            t.cin_off = 0;
            t.cin_recv_at = 0;
            t.inflight += 1;
            // SAFETY (pointer lifetime): `cin` is a boxed slice owned by the connection, never
            // reallocated; the slot (and so the box) is freed only when `inflight` is 0.
            entries.push(
                opcode::Recv::new(
                    types::Fd(t.fds[CLIENT]),
                    t.cin.as_mut_ptr(),
                    t.cin.len() as u32,
                )
                .build()
                .user_data(Op::new(OpKind::TlsRecv, slot, CLIENT).encode()),
            );
        }
        // Inner recv: when rustls took the previous plaintext and the client took its records.
        let want_inner = t.fds[INNER] >= 0
            && t.phase == Phase::Open
            && !t.eof[INNER]
            && !t.recv_armed[INNER]
            && t.pin_len == 0
            && t.out[CLIENT].is_empty()
            && !t.shut[CLIENT];
        if want_inner {
            t.recv_armed[INNER] = true;
            t.inflight += 1;
            // SAFETY (pointer lifetime): as for `cin` above.
            entries.push(
                opcode::Recv::new(
                    types::Fd(t.fds[INNER]),
                    t.pin.as_mut_ptr(),
                    t.pin.len() as u32,
                )
                .build()
                .user_data(Op::new(OpKind::TlsRecv, slot, INNER).encode()),
            );
        }
        // Client stream over and delivered: shut the inner write side.
        if t.client_done && t.out[INNER].is_empty() && !t.shut[INNER] && t.fds[INNER] >= 0 {
            t.shut[INNER] = true;
            // SAFETY: shutdown(2) on an fd this connection owns.
            unsafe { libc::shutdown(t.fds[INNER], libc::SHUT_WR) };
        }
        // Inner stream over, close_notify flushed: shut the client write side and linger.
        let flushed = t.out[CLIENT].is_empty() && !t.send_armed[CLIENT] && !t.tls.wants_write();
        if t.notify_sent && flushed && !t.shut[CLIENT] {
            t.shut[CLIENT] = true;
            // SAFETY: shutdown(2) on an fd this connection owns.
            unsafe { libc::shutdown(t.fds[CLIENT], libc::SHUT_WR) };
            t.phase = Phase::Linger {
                until_ms: now + LINGER_MS,
            };
        }
        let done = match t.phase {
            Phase::Failing => flushed,
            Phase::Linger { .. } => t.eof[CLIENT] || (t.client_done && t.shut[INNER]),
            Phase::Open => t.shut[CLIENT] && (t.client_done || t.eof[CLIENT]),
            Phase::Connecting | Phase::Handshaking | Phase::Closing => false,
        };
        for e in entries {
            self.ring.push(e);
        }
        if done {
            self.tls_begin_close(slot);
        }
    }

    /// PROXY header not complete yet: read more behind what is already buffered.
    fn tls_arm_recv_more(&mut self, slot: u32) {
        let Some(t) = self
            .tls_slots
            .get_mut(slot as usize)
            .and_then(|s| s.conn.as_mut())
        else {
            return;
        };
        let from = t.cin_len;
        t.cin_recv_at = from;
        t.recv_armed[CLIENT] = true;
        t.inflight += 1;
        // SAFETY (pointer lifetime): as in `tls_arm`; `from < cin.len()` was checked by the caller.
        let ptr = unsafe { t.cin.as_mut_ptr().add(from) };
        let entry = opcode::Recv::new(types::Fd(t.fds[CLIENT]), ptr, (t.cin.len() - from) as u32)
            .build()
            .user_data(Op::new(OpKind::TlsRecv, slot, CLIENT).encode());
        self.ring.push(entry);
    }

    /// Creates the socketpair and hands its other end to the TCP or HTTP path.
    fn tls_attach_inner(&mut self, slot: u32) -> bool {
        let mut pair = [-1; 2];
        // SAFETY: socketpair writes two fds into `pair`.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        };
        if rc != 0 {
            tracing::warn!(
                shard = self.id,
                errno = std::io::Error::last_os_error().raw_os_error(),
                "socketpair failed; closing TLS connection"
            );
            return false;
        }
        let Some(t) = self
            .tls_slots
            .get_mut(slot as usize)
            .and_then(|s| s.conn.as_mut())
        else {
            close_fd(pair[0]);
            close_fd(pair[1]);
            return false;
        };
        t.fds[INNER] = pair[0];
        let client = t.client;
        let sni = match &t.tls {
            Connection::Server(s) => s.server_name().map(str::to_string),
            Connection::Client(_) => None,
        };
        let listener = t.listener;
        let Some(then) = self.tls_listeners.get(listener).map(|l| l.then) else {
            close_fd(pair[1]);
            return false;
        };
        tracing::trace!(shard = self.id, sni = ?sni, "TLS handshake done");
        match then {
            Then::Http { index } => match client {
                Some(peer) => self.open_http(pair[1], index, peer, true),
                None => {
                    close_fd(pair[1]);
                    return false;
                }
            },
            Then::Tcp { backend, splice } => self.open_conn(
                pair[1],
                backend,
                splice,
                super::conn::Intake::direct(client),
            ),
        }
        true
    }

    fn tls_begin_close(&mut self, slot: u32) {
        let Some(t) = self
            .tls_slots
            .get_mut(slot as usize)
            .and_then(|s| s.conn.as_mut())
        else {
            return;
        };
        if t.phase == Phase::Closing {
            return;
        }
        t.phase = Phase::Closing;
        if t.inflight > 0 {
            let fds = t.fds;
            self.cancel_fds(slot, &fds);
        }
        self.tls_try_free(slot);
    }

    fn tls_try_free(&mut self, slot: u32) {
        let Some(s) = self.tls_slots.get_mut(slot as usize) else {
            return;
        };
        if !s
            .conn
            .as_ref()
            .is_some_and(|t| t.phase == Phase::Closing && t.inflight == 0)
        {
            return;
        }
        let Some(t) = s.conn.take() else {
            return;
        };
        s.generation = s.generation.wrapping_add(1);
        for fd in t.fds {
            if fd >= 0 {
                close_fd(fd);
            }
        }
        self.free_tls_slots.push(slot);
        self.stats.tls_active = self.stats.tls_active.saturating_sub(1);
    }

    fn tls_schedule_timer(&mut self, slot: u32) {
        let idle = self.tls_idle_ms;
        let Some(s) = self.tls_slots.get_mut(slot as usize) else {
            return;
        };
        let generation = s.generation;
        let Some(t) = s.conn.as_mut() else {
            return;
        };
        if t.timer_queued {
            return;
        }
        let handshake_ms = match &t.upstream {
            Some(u) => u.timeout_ms,
            None => self
                .tls_listeners
                .get(t.listener)
                .map_or(10_000, |l| l.handshake_ms),
        };
        let deadline = match t.phase {
            Phase::Connecting | Phase::Handshaking => t.opened_ms.saturating_add(handshake_ms),
            Phase::Open | Phase::Failing => t.active_ms.saturating_add(idle),
            Phase::Linger { until_ms } => until_ms,
            Phase::Closing => return,
        };
        t.timer_queued = true;
        self.timers.insert(
            TimerKey {
                slot: slot | TLS_TIMER_BIT,
                generation,
            },
            deadline,
        );
    }

    pub(super) fn on_tls_timer(&mut self, key: TimerKey) {
        let slot = key.slot & !TLS_TIMER_BIT;
        let now = self.now_ms;
        let idle = self.tls_idle_ms;
        let Some(s) = self.tls_slots.get_mut(slot as usize) else {
            return;
        };
        if s.generation != key.generation {
            return;
        }
        let Some(t) = s.conn.as_mut() else {
            return;
        };
        t.timer_queued = false;
        let handshake_ms = match &t.upstream {
            Some(u) => u.timeout_ms,
            None => self
                .tls_listeners
                .get(t.listener)
                .map_or(10_000, |l| l.handshake_ms),
        };
        let expired = match t.phase {
            Phase::Connecting | Phase::Handshaking => {
                now >= t.opened_ms.saturating_add(handshake_ms)
            }
            Phase::Open | Phase::Failing => now >= t.active_ms.saturating_add(idle),
            Phase::Linger { until_ms } => now >= until_ms,
            Phase::Closing => return,
        };
        if !expired {
            self.tls_schedule_timer(slot);
            return;
        }
        if t.upstream.is_some() {
            self.stats.tls_upstream_errors += 1;
            tracing::debug!(
                shard = self.id,
                "upstream TLS connect or handshake timed out"
            );
        } else if t.phase == Phase::Handshaking {
            self.stats.tls_handshake_timeouts += 1;
            tracing::debug!(shard = self.id, "TLS handshake timed out");
        } else if matches!(t.phase, Phase::Open) {
            self.stats.idle_timeouts += 1;
        }
        self.tls_begin_close(slot);
    }

    /// Sends the sessions this shard created since the last turn to the other shards (through
    /// the control thread), one batch per TLS listener.
    pub(super) fn tls_replicate_sessions(&mut self) {
        if self.shard_count < 2 {
            return;
        }
        for (listener, l) in self.tls_listeners.iter().enumerate() {
            let Some(cache) = &l.cache else {
                continue;
            };
            let entries = cache.drain_outbox();
            if !entries.is_empty() {
                let _ = self.events.send(super::ShardEvent::TlsSessions {
                    from: self.id,
                    listener,
                    entries,
                });
            }
        }
    }

    /// Drain deadline: close every TLS connection still open.
    pub(super) fn tls_close_all_for_drain(&mut self) {
        for slot in 0..self.tls_slots.len() as u32 {
            if self.tconn(slot).is_some() {
                self.tls_begin_close(slot);
            }
        }
    }

    /// Drain start: handshakes in progress will not be served.
    pub(super) fn tls_close_handshaking_for_drain(&mut self) {
        for slot in 0..self.tls_slots.len() as u32 {
            if self
                .tconn(slot)
                .is_some_and(|t| matches!(t.phase, Phase::Handshaking | Phase::Connecting))
            {
                self.tls_begin_close(slot);
            }
        }
    }
}
