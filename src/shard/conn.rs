//! Owns: one proxied TCP connection (client socket + server socket) and the movement of bytes in
//! both directions, as a state machine driven by ring completions.
//! Must not: block, allocate per byte, or free anything the kernel may still use: a connection's
//! slot, buffers, pipes and fds are released only when its count of in-flight ops is zero.
//!
//! Each direction (0 = client -> server, 1 = server -> client) moves bytes one of two ways:
//! - Copy: multishot recv into the shard's provided-buffer ring, then send from that buffer; the
//!   buffer goes back to the ring when the send completes. Used for small messages.
//! - Splice: readiness from the ring (POLL_ADD), then nonblocking splice(2) syscalls socket -> pipe
//!   -> socket. Used for bulk transfers: a direction switches once one recv fills a whole buffer
//!   (`splice = "auto"`). Not IORING_OP_SPLICE: on sockets the kernel always punts it to io-wq
//!   worker threads, which costs more than the syscall (docs/design/runtime.md).
//!
//! Backpressure: a direction never reads more while the bytes it has already read are unsent
//! (queue above `QUEUE_SOFT_MAX` cancels the recv; a non-empty pipe is drained before reading).

use std::collections::VecDeque;
use std::os::fd::RawFd;

use io_uring::{opcode, types};

use super::ring::{Completion, Op, OpKind, set_nodelay};
use super::{QUEUE_SOFT_MAX, Shard, Slot, close_fd};
use crate::balancer::Algorithm;
use crate::config::SpliceMode;
use crate::pipes::{Flow, Pipe, PumpStop, pump};
use crate::timer::TimerKey;

/// Side index: the socket a direction reads from is `fds[dir]`, writes to `fds[1 - dir]`.
const CLIENT: usize = 0;
const SERVER: usize = 1;

/// Limit on splice round trips per readiness event, so one fast stream cannot starve the shard's
/// other connections; the direction re-polls and continues on the next turn.
const SPLICE_ROUNDS_MAX: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// SNI passthrough: reading the ClientHello (kept in the client direction's queue) to choose
    /// the backend; nothing is connected yet.
    Peeking,
    Connecting,
    Established,
    Closing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CloseCause {
    /// Both directions reached EOF and were shut down: the normal end.
    Done,
    ConnectError,
    ConnectTimeout,
    IdleTimeout,
    /// A peer reset, or a send/recv/splice failed.
    PeerError,
    Drain,
}

impl CloseCause {
    fn as_str(self) -> &'static str {
        match self {
            CloseCause::Done => "done",
            CloseCause::ConnectError => "connect_error",
            CloseCause::ConnectTimeout => "connect_timeout",
            CloseCause::IdleTimeout => "idle_timeout",
            CloseCause::PeerError => "peer_error",
            CloseCause::Drain => "drain",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Copy,
    Splice(Pipe),
}

#[derive(Debug)]
struct Dir {
    reader: Reader,
    /// A multishot recv (copy) is in flight.
    recv_armed: bool,
    /// An AsyncCancel for that recv has been queued.
    recv_cancel_sent: bool,
    /// Waiting in the shard's list for a free buffer (recv ended with ENOBUFS).
    waiting_bufs: bool,
    /// Received buffers not yet fully sent: (buffer id, length). Front is being sent.
    queue: VecDeque<(u16, u32)>,
    /// Bytes of the front buffer already sent.
    sent_bytes: u32,
    send_inflight: bool,
    poll_in: bool,
    poll_out: bool,
    /// Bytes sitting in this direction's pipe.
    in_pipe: u32,
    /// Source reached EOF.
    eof: bool,
    /// Destination's write side has been shut down (EOF forwarded).
    shut: bool,
    /// Switch to splice once the copy path is idle.
    want_splice: bool,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            reader: Reader::Copy,
            recv_armed: false,
            recv_cancel_sent: false,
            waiting_bufs: false,
            queue: VecDeque::new(),
            sent_bytes: 0,
            send_inflight: false,
            poll_in: false,
            poll_out: false,
            in_pipe: 0,
            eof: false,
            shut: false,
            want_splice: false,
        }
    }
}

#[derive(Debug)]
pub(super) struct Conn {
    fds: [RawFd; 2],
    phase: Phase,
    /// Ops submitted for this connection whose final completion has not arrived.
    inflight: u32,
    dirs: [Dir; 2],
    /// Last time (shard ms) each side moved a byte: read from it or written to it.
    active_ms: [u64; 2],
    opened_ms: u64,
    timer_queued: bool,
    splice: SpliceMode,
    cause: Option<CloseCause>,
    backend: usize,
    /// usize::MAX until a server is picked.
    server: usize,
    /// Consistent-hashing key (client address) when the backend uses Maglev.
    key: Option<u64>,
    /// Servers whose connect failed for this connection (retries).
    tried: Vec<usize>,
    /// The in-flight connect is being cancelled (timeout) and should be retried when it ends.
    retry_on_cancel: bool,
    /// SNI passthrough: index into the shard's SNI routers while peeking.
    sni_router: Option<usize>,
    /// `accept_proxy`: the PROXY header has not been read yet.
    proxy_pending: bool,
    /// The client as announced by a PROXY header (else the socket's peer).
    client: Option<std::net::SocketAddr>,
    /// This listener's `peek_timeout` (SNI / PROXY header wait).
    peek_ms: u64,
}

/// How a new TCP connection starts: what to read before connecting (SNI routing, a PROXY
/// header, within `peek_ms`) and the client address when it is not the socket's peer.
pub(super) struct Intake {
    pub sni_router: Option<usize>,
    pub accept_proxy: bool,
    pub client: Option<std::net::SocketAddr>,
    pub peek_ms: u64,
}

impl Intake {
    /// Nothing to read first: connect at once.
    pub(super) fn direct(client: Option<std::net::SocketAddr>) -> Intake {
        Intake {
            sni_router: None,
            accept_proxy: false,
            client,
            peek_ms: 0,
        }
    }
}

impl Shard {
    fn conn(&mut self, slot: u32) -> Option<&mut Conn> {
        self.slots.get_mut(slot as usize)?.conn.as_mut()
    }

    fn alloc_slot(&mut self, conn: Conn) -> u32 {
        if let Some(slot) = self.free_slots.pop()
            && let Some(s) = self.slots.get_mut(slot as usize)
        {
            s.conn = Some(conn);
            return slot;
        }
        self.slots.push(Slot {
            generation: 0,
            conn: Some(conn),
        });
        (self.slots.len() - 1) as u32
    }

    pub(super) fn open_conn(
        &mut self,
        client_fd: RawFd,
        backend: usize,
        splice: SpliceMode,
        intake: Intake,
    ) {
        let Intake {
            sni_router,
            accept_proxy,
            client,
            peek_ms,
        } = intake;
        set_nodelay(client_fd);
        // Consistent hashing on the client address needs it; multishot accept does not return it.
        let key = match self.backends.get(backend).map(|b| &b.algo) {
            Some(Algorithm::Maglev(_)) => client
                .or_else(|| super::peer_addr(client_fd))
                .map(|a| crate::balancer::hash_bytes(a.ip().to_string().as_bytes())),
            _ => None,
        };
        self.stats.active += 1;
        let conn = Conn {
            fds: [client_fd, -1],
            phase: Phase::Connecting,
            inflight: 0,
            dirs: [Dir::new(), Dir::new()],
            active_ms: [self.now_ms; 2],
            opened_ms: self.now_ms,
            timer_queued: false,
            splice,
            cause: None,
            backend,
            server: usize::MAX,
            key,
            tried: Vec::new(),
            retry_on_cancel: false,
            sni_router,
            proxy_pending: accept_proxy,
            client,
            peek_ms,
        };
        let slot = self.alloc_slot(conn);
        if sni_router.is_some() || accept_proxy {
            // Read the ClientHello first; connect once the backend is known (SNI passthrough).
            if let Some(c) = self.conn(slot) {
                c.phase = Phase::Peeking;
            }
            self.arm_recv(slot, CLIENT);
            self.schedule_timer(slot);
            return;
        }
        if !self.connect_next(slot) {
            self.begin_close(slot, CloseCause::ConnectError);
        }
    }

    /// SNI passthrough: looks at what the client sent so far (queued, not yet forwarded). A
    /// complete ClientHello picks the backend by its server name and starts the connect; the
    /// queued bytes are then forwarded untouched. Anything that is not a valid ClientHello is
    /// closed (counted in `tls_peek_rejected`).
    fn on_peek_data(&mut self, slot: u32) {
        if self.conn(slot).is_some_and(|c| c.proxy_pending) && !self.read_proxy_header(slot) {
            return;
        }
        let Some(c) = self.slots.get(slot as usize).and_then(|s| s.conn.as_ref()) else {
            return;
        };
        let Some(router) = c.sni_router.and_then(|i| self.sni_routers.get(i)) else {
            // accept_proxy without SNI routing: the backend is known, connect now.
            if c.phase == Phase::Peeking && !self.connect_next(slot) {
                self.begin_close(slot, CloseCause::ConnectError);
            }
            return;
        };
        let mut bytes = Vec::with_capacity(1024);
        let skip = c.dirs[CLIENT].sent_bytes;
        for (n, &(bid, len)) in c.dirs[CLIENT].queue.iter().enumerate() {
            let from = if n == 0 { skip.min(len) } else { 0 };
            if let Some(b) = self.bufs.slice(bid, from, len - from) {
                bytes.extend_from_slice(b);
            }
            if bytes.len() > crate::tls::client_hello::CLIENT_HELLO_BYTES_MAX + 5 {
                break;
            }
        }
        let verdict = crate::tls::parse_client_hello(&bytes);
        let backend = match verdict {
            crate::tls::HelloVerdict::Partial => {
                if c.dirs[CLIENT].eof {
                    self.stats.tls_peek_rejected += 1;
                    self.begin_close(slot, CloseCause::PeerError);
                }
                return;
            }
            crate::tls::HelloVerdict::NotTls | crate::tls::HelloVerdict::Invalid(_) => {
                self.stats.tls_peek_rejected += 1;
                tracing::debug!(shard = self.id, verdict = ?verdict, "not a valid TLS ClientHello; closing");
                self.begin_close(slot, CloseCause::PeerError);
                return;
            }
            crate::tls::HelloVerdict::Complete(hello) => {
                let no_headers = |_: &str, _: &mut dyn FnMut(&[u8]) -> bool| false;
                let picked = router.route(&crate::router::Request {
                    host: hello.sni.as_deref().map(str::as_bytes),
                    target: b"/",
                    method: b"",
                    headers: &no_headers,
                });
                tracing::debug!(shard = self.id, sni = ?hello.sni, backend = ?picked, "SNI routed");
                picked
            }
        };
        let Some(backend) = backend else {
            self.stats.tls_peek_rejected += 1;
            self.begin_close(slot, CloseCause::ConnectError);
            return;
        };
        if let Some(c) = self.conn(slot) {
            c.backend = backend;
            c.sni_router = None;
        }
        if !self.connect_next(slot) {
            self.begin_close(slot, CloseCause::ConnectError);
        }
    }

    /// Picks a server (not one already tried) and starts connecting to it. Returns false when no
    /// server can be picked or no socket can be made.
    fn connect_next(&mut self, slot: u32) -> bool {
        let Some(c) = self.slots.get(slot as usize).and_then(|s| s.conn.as_ref()) else {
            return false;
        };
        let (backend, key) = (c.backend, c.key);
        let tried = c.tried.clone();
        let Some(b) = self.backends.get_mut(backend) else {
            return false;
        };
        let Some(server) = b.pick(key, &tried) else {
            self.stats.connect_errors += 1;
            tracing::debug!(shard = self.id, backend, "no server can be picked");
            return false;
        };
        let Some(addr) = b.addrs.get(server) else {
            return false;
        };
        let (addr_ptr, addr_len) = (addr.as_ptr(), addr.len());
        let family = if addr.is_ipv6() {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        let upstream_tls = b.tls.is_some();
        let server_fd = if upstream_tls {
            // TLS to the server: the plaintext end of a socketpair shard/tls.rs encrypts.
            self.tls_upstream_open(backend, server).unwrap_or(-1)
        } else {
            // SAFETY: plain syscall, result checked.
            unsafe {
                libc::socket(
                    family,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                )
            }
        };
        if server_fd < 0 {
            self.stats.connect_errors += 1;
            tracing::warn!(shard = self.id, error = %std::io::Error::last_os_error(), "cannot create server socket");
            return false;
        }
        set_nodelay(server_fd);
        if let Some(b) = self.backends.get_mut(backend) {
            b.count_active(server, true);
        }
        let now = self.now_ms;
        let Some(c) = self.conn(slot) else {
            close_fd(server_fd);
            return false;
        };
        c.fds[SERVER] = server_fd;
        c.server = server;
        c.phase = Phase::Connecting;
        c.opened_ms = now;
        c.inflight += 1;
        // SAFETY (pointer lifetime): `addr_ptr` points into this shard's server table, which is
        // never resized after boot; the kernel copies the address when the SQE is submitted.
        let entry = if upstream_tls {
            // Already connected (to the TLS bridge): complete the "connect" at once.
            opcode::Nop::new().build()
        } else {
            opcode::Connect::new(types::Fd(server_fd), addr_ptr.cast(), addr_len).build()
        };
        self.ring
            .push(entry.user_data(Op::new(OpKind::Connect, slot, 0).encode()));
        self.schedule_timer(slot);
        true
    }

    /// `accept_proxy`: reads the PROXY header from the queued bytes and removes it from the queue
    /// (it is never forwarded). Returns true once it is consumed; false while waiting or after
    /// closing a connection with a bad header.
    fn read_proxy_header(&mut self, slot: u32) -> bool {
        let Some(c) = self.slots.get(slot as usize).and_then(|s| s.conn.as_ref()) else {
            return false;
        };
        let mut bytes = Vec::with_capacity(256);
        for &(bid, len) in &c.dirs[CLIENT].queue {
            if let Some(b) = self.bufs.slice(bid, 0, len) {
                bytes.extend_from_slice(b);
            }
            if bytes.len() > 4096 + 16 {
                break;
            }
        }
        let eof = c.dirs[CLIENT].eof;
        match crate::proxy_protocol::parse_received(&bytes) {
            crate::proxy_protocol::Received::Partial => {
                if eof {
                    self.stats.proxy_rejected += 1;
                    self.begin_close(slot, CloseCause::PeerError);
                }
                false
            }
            crate::proxy_protocol::Received::Invalid(why) => {
                self.stats.proxy_rejected += 1;
                tracing::debug!(shard = self.id, reason = why, "PROXY header refused");
                self.begin_close(slot, CloseCause::PeerError);
                false
            }
            crate::proxy_protocol::Received::Complete {
                source,
                consumed_bytes,
            } => {
                let mut left = consumed_bytes as u32;
                let mut freed = Vec::new();
                let Some(c) = self.conn(slot) else {
                    return false;
                };
                let d = &mut c.dirs[CLIENT];
                while left > 0 {
                    let Some(&(bid, len)) = d.queue.front() else {
                        break;
                    };
                    let rest = len - d.sent_bytes;
                    if left >= rest {
                        left -= rest;
                        d.queue.pop_front();
                        d.sent_bytes = 0;
                        freed.push(bid);
                    } else {
                        d.sent_bytes += left;
                        left = 0;
                    }
                }
                c.proxy_pending = false;
                if let Some(src) = source {
                    c.client = Some(src);
                    if c.key.is_some() {
                        c.key = Some(crate::balancer::hash_bytes(src.ip().to_string().as_bytes()));
                    }
                }
                for bid in freed {
                    self.bufs.put(bid);
                }
                true
            }
        }
    }

    /// A connect failed or timed out: try another server while retries remain (the client is
    /// still waiting, nothing has been sent). Returns true when a new connect was started.
    fn retry_connect(&mut self, slot: u32) -> bool {
        let Some(c) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.conn.as_mut())
        else {
            return false;
        };
        let (backend, server) = (c.backend, c.server);
        let retries = self.backends.get(backend).map_or(0, |b| b.retries) as usize;
        if c.tried.len() >= retries {
            return false;
        }
        c.tried.push(server);
        let fd = c.fds[SERVER];
        c.fds[SERVER] = -1;
        close_fd(fd);
        if let Some(b) = self.backends.get_mut(backend) {
            b.count_active(server, false);
        }
        self.stats.connect_retries += 1;
        self.connect_next(slot)
    }

    fn schedule_timer(&mut self, slot: u32) {
        let timeouts = self.timeouts;
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let generation = s.generation;
        let Some(c) = s.conn.as_mut() else {
            return;
        };
        if c.timer_queued {
            return;
        }
        let deadline = match c.phase {
            Phase::Peeking => c.opened_ms.saturating_add(c.peek_ms),
            Phase::Connecting => c.opened_ms.saturating_add(timeouts.connect),
            Phase::Established => c.active_ms[CLIENT]
                .saturating_add(timeouts.client_idle)
                .min(c.active_ms[SERVER].saturating_add(timeouts.server_idle)),
            Phase::Closing => return,
        };
        c.timer_queued = true;
        self.timers.insert(TimerKey { slot, generation }, deadline);
    }

    pub(super) fn on_timer(&mut self, key: TimerKey) {
        let timeouts = self.timeouts;
        let now = self.now_ms;
        let Some(s) = self.slots.get_mut(key.slot as usize) else {
            return;
        };
        if s.generation != key.generation {
            return;
        }
        let Some(c) = s.conn.as_mut() else {
            return;
        };
        c.timer_queued = false;
        let expired = match c.phase {
            Phase::Peeking => {
                (now >= c.opened_ms.saturating_add(c.peek_ms)).then_some(CloseCause::IdleTimeout)
            }
            Phase::Connecting => (now >= c.opened_ms.saturating_add(timeouts.connect))
                .then_some(CloseCause::ConnectTimeout),
            Phase::Established => {
                let client_idle = now >= c.active_ms[CLIENT].saturating_add(timeouts.client_idle);
                let server_idle = now >= c.active_ms[SERVER].saturating_add(timeouts.server_idle);
                (client_idle || server_idle).then_some(CloseCause::IdleTimeout)
            }
            Phase::Closing => return,
        };
        match expired {
            Some(CloseCause::ConnectTimeout) => {
                // Cancel the connect; its completion (-ECANCELED) retries or closes.
                let Some(c) = self.conn(key.slot) else {
                    return;
                };
                c.retry_on_cancel = true;
                let fd = c.fds[SERVER];
                let entry =
                    opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
                        .build()
                        .user_data(Op::new(OpKind::Cancel, key.slot, 0).encode());
                self.ring.push(entry);
            }
            Some(cause) => {
                self.stats.idle_timeouts += 1;
                self.begin_close(key.slot, cause);
            }
            None => self.schedule_timer(key.slot),
        }
    }

    pub(super) fn close_all_for_drain(&mut self) {
        for slot in 0..self.slots.len() as u32 {
            let open = self
                .slots
                .get(slot as usize)
                .and_then(|s| s.conn.as_ref())
                .is_some_and(|c| c.phase != Phase::Closing);
            if open {
                self.stats.drain_closed += 1;
                self.begin_close(slot, CloseCause::Drain);
            }
        }
    }

    pub(super) fn on_conn_completion(&mut self, op: Op, c: Completion) {
        let slot = op.slot;
        match op.kind {
            OpKind::Connect => self.on_connect(slot, c.result),
            OpKind::Recv => self.on_recv(slot, op.dir, c),
            OpKind::Send => self.on_send(slot, op.dir, c.result),
            OpKind::PollIn | OpKind::PollOut => self.on_poll(slot, op.dir, op.kind, c.result),
            OpKind::Accept
            | OpKind::ControlWake
            | OpKind::Cancel
            | OpKind::TlsRecv
            | OpKind::TlsSend
            | OpKind::TlsConnect
            | OpKind::DetectPoll
            | OpKind::Tick
            | OpKind::HttpConnect
            | OpKind::HttpRecv
            | OpKind::HttpSend
            | OpKind::HttpPollIn
            | OpKind::HttpPollOut => {}
        }
        self.try_free(slot);
    }

    fn on_connect(&mut self, slot: u32, result: i32) {
        let now = self.now_ms;
        let Some(c) = self.conn(slot) else {
            return;
        };
        c.inflight = c.inflight.saturating_sub(1);
        if c.phase == Phase::Closing {
            return;
        }
        if result < 0 {
            let (backend, server) = (c.backend, c.server);
            let timed_out = std::mem::take(&mut c.retry_on_cancel);
            if timed_out {
                self.stats.connect_timeouts += 1;
            } else {
                self.stats.connect_errors += 1;
            }
            tracing::debug!(
                shard = self.id,
                backend,
                server,
                errno = -result,
                timed_out,
                "connect failed"
            );
            self.record_outcome(backend, server, false);
            if !self.retry_connect(slot) {
                let cause = if timed_out {
                    CloseCause::ConnectTimeout
                } else {
                    CloseCause::ConnectError
                };
                self.begin_close(slot, cause);
            }
            return;
        }
        c.phase = Phase::Established;
        c.retry_on_cancel = false;
        c.active_ms = [now; 2];
        let (backend, server) = (c.backend, c.server);
        let splice_always = c.splice == SpliceMode::Always;
        let peeked = !c.dirs[CLIENT].queue.is_empty();
        let fds = c.fds;
        let client = c.client;
        self.record_outcome(backend, server, true);
        if let Some(header) =
            super::proxy_header_for(&self.backends, backend, server, fds[CLIENT], client)
        {
            // Before any forwarded byte: a plain send on the fresh socket (its buffer is empty, the
            // header is at most a few hundred bytes).
            // SAFETY: sends from a live Vec on a socket this connection owns.
            let n = unsafe {
                libc::send(
                    fds[SERVER],
                    header.as_ptr().cast(),
                    header.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 || n as usize != header.len() {
                tracing::debug!(shard = self.id, "could not send the PROXY header");
                self.begin_close(slot, CloseCause::PeerError);
                return;
            }
        }
        if peeked {
            // The ClientHello read while peeking goes first, untouched.
            self.start_send(slot, CLIENT);
        }
        for dir in [0, 1] {
            if splice_always && let Some(c) = self.conn(slot) {
                c.dirs[dir].want_splice = true;
            }
            self.advance(slot, dir);
        }
    }

    /// Moves direction `dir` forward once the copy path is idle: forward EOF, switch to splice,
    /// or re-arm the recv.
    fn advance(&mut self, slot: u32, dir: usize) {
        let Some(c) = self.conn(slot) else {
            return;
        };
        if c.phase != Phase::Established {
            return;
        }
        let d = &mut c.dirs[dir];
        if let Reader::Splice(_) = d.reader {
            self.pump_splice(slot, dir);
            return;
        }
        if d.send_inflight || !d.queue.is_empty() || d.recv_armed || d.waiting_bufs {
            return;
        }
        if d.eof {
            self.shut_write(slot, dir);
            return;
        }
        if d.want_splice {
            match self.pipes.take() {
                Ok(pipe) => {
                    if let Some(c) = self.conn(slot) {
                        c.dirs[dir].reader = Reader::Splice(pipe);
                    }
                    self.pump_splice(slot, dir);
                    return;
                }
                Err(e) => {
                    tracing::debug!(shard = self.id, error = %e, "no pipe for splice; copying");
                    if let Some(c) = self.conn(slot) {
                        c.dirs[dir].want_splice = false;
                    }
                }
            }
        }
        self.arm_recv(slot, dir);
    }

    fn arm_recv(&mut self, slot: u32, dir: usize) {
        let group = self.bufs.group;
        let no_buffers = self.bufs.available() == 0;
        let Some(c) = self.conn(slot) else {
            return;
        };
        if no_buffers {
            c.dirs[dir].waiting_bufs = true;
            self.waiting_bufs.push_back((slot, dir));
            return;
        }
        let fd = c.fds[dir];
        c.inflight += 1;
        let d = &mut c.dirs[dir];
        d.recv_armed = true;
        d.recv_cancel_sent = false;
        let entry = opcode::RecvMulti::new(types::Fd(fd), group)
            .build()
            .user_data(Op::new(OpKind::Recv, slot, dir).encode());
        self.ring.push(entry);
    }

    fn cancel_recv(&mut self, slot: u32, dir: usize) {
        let Some(c) = self.conn(slot) else {
            return;
        };
        let d = &mut c.dirs[dir];
        if !d.recv_armed || d.recv_cancel_sent {
            return;
        }
        d.recv_cancel_sent = true;
        let target = Op::new(OpKind::Recv, slot, dir).encode();
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::user_data(target))
            .build()
            .user_data(Op::new(OpKind::Cancel, slot, dir).encode());
        self.ring.push(entry);
    }

    pub(super) fn retry_waiting_recvs(&mut self) {
        while self.bufs.available() > 0 {
            let Some((slot, dir)) = self.waiting_bufs.pop_front() else {
                return;
            };
            if let Some(c) = self.conn(slot) {
                c.dirs[dir].waiting_bufs = false;
                self.advance(slot, dir);
            }
        }
    }

    fn on_recv(&mut self, slot: u32, dir: usize, cqe: Completion) {
        let buffer_bytes = self.bufs.buffer_bytes();
        let now = self.now_ms;
        let bid = cqe.buffer_id();
        if bid.is_some() {
            self.bufs.taken();
        }
        let Some(c) = self.conn(slot) else {
            if let Some(bid) = bid {
                self.bufs.put(bid);
            }
            return;
        };
        let more = cqe.more();
        if !more {
            c.inflight = c.inflight.saturating_sub(1);
            c.dirs[dir].recv_armed = false;
        }
        if matches!(c.phase, Phase::Peeking | Phase::Connecting) && dir == CLIENT {
            // SNI passthrough: the ClientHello (and anything after it) waits in the queue and is
            // forwarded untouched once connected.
            let res = cqe.result;
            let mut give_back = None;
            let mut cancel = false;
            if res > 0
                && let Some(bid) = bid
            {
                c.active_ms[CLIENT] = now;
                c.dirs[CLIENT].queue.push_back((bid, res as u32));
                cancel = c.dirs[CLIENT].queue.len() >= QUEUE_SOFT_MAX;
            } else {
                give_back = bid;
                if res == 0 {
                    c.dirs[CLIENT].eof = true;
                }
            }
            if let Some(bid) = give_back {
                self.bufs.put(bid);
            }
            if cancel {
                self.cancel_recv(slot, CLIENT);
            }
            let peeking = self.conn(slot).is_some_and(|c| c.phase == Phase::Peeking);
            if peeking {
                self.on_peek_data(slot);
            }
            return;
        }
        if c.phase != Phase::Established {
            if let Some(bid) = bid {
                self.bufs.put(bid);
            }
            return;
        }
        let res = cqe.result;
        if res > 0 {
            let Some(bid) = bid else {
                self.begin_close(slot, CloseCause::PeerError);
                return;
            };
            let len = res as u32;
            c.active_ms[dir] = now;
            let splice_auto = c.splice == SpliceMode::Auto;
            let d = &mut c.dirs[dir];
            d.queue.push_back((bid, len));
            if splice_auto && len >= buffer_bytes {
                // A recv that fills a whole buffer means more was waiting: a bulk transfer.
                d.want_splice = true;
            }
            let cancel = d.recv_armed && (d.want_splice || d.queue.len() >= QUEUE_SOFT_MAX);
            let start = !d.send_inflight;
            if cancel {
                self.cancel_recv(slot, dir);
            }
            if start {
                self.start_send(slot, dir);
            }
        } else if res == 0 {
            c.dirs[dir].eof = true;
            self.advance(slot, dir);
        } else if res == -libc::ENOBUFS {
            if !c.dirs[dir].recv_armed && !c.dirs[dir].waiting_bufs {
                c.dirs[dir].waiting_bufs = true;
                self.waiting_bufs.push_back((slot, dir));
            }
        } else if res == -libc::ECANCELED {
            self.advance(slot, dir);
        } else {
            tracing::debug!(shard = self.id, dir, errno = -res, "recv failed");
            self.begin_close(slot, CloseCause::PeerError);
        }
    }

    fn start_send(&mut self, slot: u32, dir: usize) {
        let Some(c) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.conn.as_mut())
        else {
            return;
        };
        let d = &mut c.dirs[dir];
        let Some(&(bid, len)) = d.queue.front() else {
            return;
        };
        let offset = d.sent_bytes;
        d.send_inflight = true;
        c.inflight += 1;
        let ptr = self.bufs.ptr(bid, offset);
        // SAFETY (pointer lifetime): the buffer stays out of the buffer ring (it sits in this
        // direction's queue) until this send's completion has been handled in `on_send`.
        let entry = opcode::Send::new(types::Fd(c.fds[1 - dir]), ptr, len - offset)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build()
            .user_data(Op::new(OpKind::Send, slot, dir).encode());
        self.ring.push(entry);
    }

    fn on_send(&mut self, slot: u32, dir: usize, result: i32) {
        let now = self.now_ms;
        let Some(c) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.conn.as_mut())
        else {
            return;
        };
        c.inflight = c.inflight.saturating_sub(1);
        c.dirs[dir].send_inflight = false;
        if c.phase != Phase::Established {
            return;
        }
        if result <= 0 {
            tracing::debug!(shard = self.id, dir, errno = -result, "send failed");
            self.begin_close(slot, CloseCause::PeerError);
            return;
        }
        let sent = result as u32;
        c.active_ms[1 - dir] = now;
        if dir == 0 {
            self.stats.bytes_client_to_server += u64::from(sent);
        } else {
            self.stats.bytes_server_to_client += u64::from(sent);
        }
        let d = &mut c.dirs[dir];
        d.sent_bytes += sent;
        let Some(&(bid, len)) = d.queue.front() else {
            return;
        };
        if d.sent_bytes < len {
            self.start_send(slot, dir);
            return;
        }
        d.queue.pop_front();
        d.sent_bytes = 0;
        let more_queued = !d.queue.is_empty();
        self.bufs.put(bid);
        if more_queued {
            self.start_send(slot, dir);
        } else {
            self.advance(slot, dir);
        }
    }

    fn on_poll(&mut self, slot: u32, dir: usize, kind: OpKind, result: i32) {
        let Some(c) = self.conn(slot) else {
            return;
        };
        c.inflight = c.inflight.saturating_sub(1);
        match kind {
            OpKind::PollIn => c.dirs[dir].poll_in = false,
            _ => c.dirs[dir].poll_out = false,
        }
        if c.phase != Phase::Established {
            return;
        }
        if result < 0 {
            self.begin_close(slot, CloseCause::PeerError);
            return;
        }
        self.pump_splice(slot, dir);
    }

    fn arm_poll(&mut self, slot: u32, dir: usize, kind: OpKind) {
        let Some(c) = self.conn(slot) else {
            return;
        };
        let (fd, mask) = match kind {
            OpKind::PollIn => (c.fds[dir], libc::POLLIN | libc::POLLRDHUP),
            _ => (c.fds[1 - dir], libc::POLLOUT),
        };
        let d = &mut c.dirs[dir];
        let armed = match kind {
            OpKind::PollIn => &mut d.poll_in,
            _ => &mut d.poll_out,
        };
        if *armed {
            return;
        }
        *armed = true;
        c.inflight += 1;
        let entry = opcode::PollAdd::new(types::Fd(fd), mask as u32)
            .build()
            .user_data(Op::new(kind, slot, dir).encode());
        self.ring.push(entry);
    }

    /// Moves bytes src -> pipe -> dst with nonblocking splice(2) until one side would block.
    fn pump_splice(&mut self, slot: u32, dir: usize) {
        let now = self.now_ms;
        let pipe_bytes = self.pipes.pipe_bytes();
        let Some(c) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.conn.as_mut())
        else {
            return;
        };
        let (src, dst) = (c.fds[dir], c.fds[1 - dir]);
        let Reader::Splice(pipe) = c.dirs[dir].reader else {
            return;
        };
        if c.dirs[dir].poll_in || c.dirs[dir].poll_out {
            return;
        }
        let d = &mut c.dirs[dir];
        let mut flow = Flow {
            pipe,
            in_pipe: d.in_pipe,
            to_read: u64::MAX,
            eof: d.eof,
        };
        let (stop, moved) = pump(src, dst, &mut flow, pipe_bytes, SPLICE_ROUNDS_MAX);
        d.in_pipe = flow.in_pipe;
        d.eof = flow.eof;
        if moved.read_bytes > 0 {
            c.active_ms[dir] = now;
        }
        if moved.written_bytes > 0 {
            c.active_ms[1 - dir] = now;
        }
        self.stats.bytes_spliced += moved.written_bytes;
        if dir == 0 {
            self.stats.bytes_client_to_server += moved.written_bytes;
        } else {
            self.stats.bytes_server_to_client += moved.written_bytes;
        }
        match stop {
            PumpStop::WaitIn | PumpStop::Yield => self.arm_poll(slot, dir, OpKind::PollIn),
            PumpStop::WaitOut => self.arm_poll(slot, dir, OpKind::PollOut),
            PumpStop::Eof | PumpStop::Finished => self.shut_write(slot, dir),
            PumpStop::Failed(errno) => {
                tracing::debug!(shard = self.id, dir, errno, "splice failed");
                self.begin_close(slot, CloseCause::PeerError);
            }
        }
    }

    /// Forwards EOF: shut down the destination's write side; close when both directions are done.
    fn shut_write(&mut self, slot: u32, dir: usize) {
        let Some(c) = self.conn(slot) else {
            return;
        };
        if !c.dirs[dir].shut {
            c.dirs[dir].shut = true;
            // A plain syscall: IORING_OP_SHUTDOWN is executed by an io-wq worker thread.
            // SAFETY: shutdown on a socket this connection owns.
            unsafe { libc::shutdown(c.fds[1 - dir], libc::SHUT_WR) };
        }
        if c.dirs[CLIENT].shut && c.dirs[SERVER].shut {
            self.begin_close(slot, CloseCause::Done);
        }
    }

    /// Starts closing: cancels whatever the kernel still holds for this connection. The slot is
    /// freed in `try_free` once the last completion is in.
    fn begin_close(&mut self, slot: u32, cause: CloseCause) {
        let Some(c) = self.conn(slot) else {
            return;
        };
        if c.phase == Phase::Closing {
            return;
        }
        c.phase = Phase::Closing;
        c.cause = Some(cause);
        if c.inflight > 0 {
            let fds = c.fds;
            self.cancel_fds(slot, &fds);
        }
        self.try_free(slot);
    }

    /// Releases everything of a closing connection whose ops have all completed.
    fn try_free(&mut self, slot: u32) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let ready = s
            .conn
            .as_ref()
            .is_some_and(|c| c.phase == Phase::Closing && c.inflight == 0);
        if !ready {
            return;
        }
        let Some(mut c) = s.conn.take() else {
            return;
        };
        s.generation = s.generation.wrapping_add(1);
        for d in &mut c.dirs {
            for (bid, _) in d.queue.drain(..) {
                self.bufs.put(bid);
            }
            if let Reader::Splice(pipe) = d.reader {
                self.pipes.give_back(pipe, d.in_pipe == 0);
            }
        }
        for fd in c.fds {
            if fd >= 0 {
                close_fd(fd);
            }
        }
        if c.server != usize::MAX
            && let Some(b) = self.backends.get_mut(c.backend)
        {
            b.count_active(c.server, false);
        }
        self.free_slots.push(slot);
        self.stats.closed += 1;
        self.stats.active = self.stats.active.saturating_sub(1);
        let cause = c.cause.unwrap_or(CloseCause::Done);
        tracing::trace!(
            shard = self.id,
            backend = c.backend,
            server = c.server,
            term = cause.as_str(),
            duration_ms = self.now_ms.saturating_sub(c.opened_ms),
            "connection closed"
        );
    }
}
