//! Owns: the driver side of every proxied connection — a client socket with its transport (plain
//! or TLS) and its session ([`Proto`]: HTTP/1.1 or TCP), the upstream connections sessions attach
//! (their own slab entries, pooled between requests), and the compact form of an idle keep-alive
//! client. Completions update the sockets and the session's [`Wire`]; `drive` then runs the
//! session, carries out its intents (connect, release, queue, log, close) and syncs the sockets
//! (sends, recv interest, half-closes, splice) with what the session wants.
//! Must not: make protocol decisions (those are the session's) or free anything the kernel may
//! still use (an entry goes only when its socket's `inflight` is 0).

use std::net::SocketAddr;
use std::sync::Arc;

use io_uring::{opcode, types};

use super::driver::{Shard, World};
use super::listener::ListenerCfg;
use super::ring::{Completion, Op, Tag};
use super::slab::Key;
use super::sock::{Received, Recv, Sock};
use super::transport::{Handshake, Tls};
use super::{Conn, sys};
use crate::config::SpliceMode;
use crate::ids::{BackendId, ServerId};
use crate::pipes::{self, PumpStop};
use crate::session::h1::{H1Session, SpliceEnd};
use crate::session::tcp::TcpSession;
use crate::session::{AccessRecord, CLIENT, Intent, Term, UPSTREAM, UpstreamEvent, Wire};
use crate::upstream::UpstreamError;
use crate::upstream::pool::ReuseKey;

/// Splice round trips per readiness event before yielding to other connections.
const SPLICE_ROUNDS_MAX: u32 = 16;
/// Compact idle connections' boxes kept for reuse (bounded: idle memory stays small).
pub(super) const IDLE_CACHE_MAX: usize = 256;

/// The protocol a client connection speaks.
pub(super) enum Proto {
    H1(H1Session),
    Tcp(TcpSession),
}

pub(super) struct StreamConn {
    pub sock: Sock,
    pub tls: Option<Box<Tls>>,
    pub wire: Wire,
    pub proto: Proto,
    pub cfg: Arc<ListenerCfg>,
    pub peer: SocketAddr,
    pub upstream: Option<Key>,
    pub splice: [Option<pipes::Flow>; 2],
    /// The session is over: flush what is queued for the client, then close.
    pub closing: Option<(Term, u64)>,
    pub timer_at: Option<u64>,
    /// Listed in the shard's `dirty` list (driven at the end of this turn).
    pub queued: bool,
    /// Something changed while syncing: drive once more.
    pub again: bool,
    pub opened_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UpState {
    Connecting,
    Handshaking,
    Open,
    Pooled,
    /// Failed or released for good: closing.
    Dead,
}

pub(super) struct UpstreamConn {
    pub sock: Sock,
    pub tls: Option<Box<Tls>>,
    /// The address the connect SQE points at (boxed with the connection: stable until it completes).
    pub addr: socket2::SockAddr,
    pub backend: BackendId,
    pub server: ServerId,
    pub reuse: ReuseKey,
    /// Carried a PROXY header for one client: never pooled.
    pub private: bool,
    pub owner: Option<Key>,
    pub state: UpState,
    /// Counted in its server's open connections (while attached to a session).
    pub counted: bool,
    /// Sent before anything else (the PROXY header).
    pub preamble: Vec<u8>,
}

/// An HTTP keep-alive client between requests, without buffers or session state.
pub(super) struct IdleHttp {
    pub fd: i32,
    pub inflight: u16,
    pub recv: Recv,
    pub cfg: Arc<ListenerCfg>,
    pub peer: SocketAddr,
    pub requests: u32,
    pub since_ms: u64,
    pub opened_ms: u64,
}

impl Proto {
    fn wants_read(&self, w: &Wire, side: usize, cfg: &ListenerCfg) -> bool {
        match (self, &cfg.http, &cfg.tcp) {
            (Proto::H1(s), Some(h), _) => s.wants_read(w, side, h),
            (Proto::Tcp(s), _, _) => s.wants_read(w, side),
            (Proto::H1(_), None, _) => false,
        }
    }

    fn splice_mode(&self, cfg: &ListenerCfg) -> SpliceMode {
        match self {
            Proto::H1(_) => cfg.http.as_ref().map_or(SpliceMode::Off, |h| h.splice),
            Proto::Tcp(_) => cfg.tcp.as_ref().map_or(SpliceMode::Off, |t| t.splice),
        }
    }

    fn splice_want(&self, w: &Wire, dir: usize, mode: SpliceMode) -> Option<u64> {
        match self {
            Proto::H1(s) => s.splice_want(w, dir, mode),
            Proto::Tcp(s) => {
                let _ = mode;
                s.splice_want(w, dir)
            }
        }
    }

    fn pop_intent(&mut self) -> Option<Intent> {
        match self {
            Proto::H1(s) => s.intents.pop(),
            Proto::Tcp(s) => s.intents.pop(),
        }
    }

    fn client_addr(&self, peer: SocketAddr) -> SocketAddr {
        match self {
            Proto::H1(s) => s.client,
            Proto::Tcp(s) => s.client.unwrap_or(peer),
        }
    }
}

impl StreamConn {
    fn progress(&mut self, world: &mut World) {
        let cfg = Arc::clone(&self.cfg);
        match (&mut self.proto, &cfg.http, &cfg.tcp) {
            (Proto::H1(s), Some(h), _) => s.progress(&mut self.wire, world, h),
            (Proto::Tcp(s), _, Some(t)) => s.progress(&mut self.wire, world, t),
            _ => {}
        }
    }

    fn upstream_event(&mut self, world: &mut World, ev: UpstreamEvent) {
        let cfg = Arc::clone(&self.cfg);
        match (&mut self.proto, &cfg.http, &cfg.tcp) {
            (Proto::H1(s), Some(h), _) => s.on_upstream(&mut self.wire, world, h, ev),
            (Proto::Tcp(s), _, Some(t)) => s.on_upstream(&mut self.wire, world, t, ev),
            _ => {}
        }
    }

    fn abort(&mut self, world: &mut World, term: Term) {
        match &mut self.proto {
            Proto::H1(s) => s.abort(world, term),
            Proto::Tcp(s) => s.abort(term),
        }
    }

    fn deadline(&self, world: &World) -> Option<u64> {
        let session = match (&self.proto, &self.cfg.http, &self.cfg.tcp) {
            (Proto::H1(s), Some(h), _) => s.deadline(&self.wire, world, h),
            (Proto::Tcp(s), _, Some(t)) => s.deadline(&self.wire, t),
            _ => None,
        };
        let handshake = self
            .tls
            .as_ref()
            .filter(|t| t.is_handshaking())
            .and_then(|_| self.cfg.tls.as_ref())
            .map(|l| self.opened_ms.saturating_add(l.handshake_ms));
        let closing = self.closing.map(|(_, until)| until);
        [session, handshake, closing].into_iter().flatten().min()
    }

    fn splice_event(&mut self, world: &mut World, dir: usize, ev: SpliceEv) {
        let cfg = Arc::clone(&self.cfg);
        match (&mut self.proto, ev) {
            (Proto::H1(s), SpliceEv::Started) => s.on_splice_started(dir),
            (Proto::H1(s), SpliceEv::Refused) => s.on_splice_refused(dir),
            (Proto::H1(s), SpliceEv::Moved(n)) => s.on_spliced(dir, n),
            (Proto::H1(s), SpliceEv::Done(end)) => {
                s.on_splice_done(&mut self.wire, world, dir, end)
            }
            (Proto::Tcp(s), ev) => {
                if let Some(t) = s.tunnel_mut() {
                    match ev {
                        SpliceEv::Started => t.on_splice_started(dir),
                        SpliceEv::Refused => t.on_splice_refused(dir),
                        SpliceEv::Moved(_) => {}
                        SpliceEv::Done(_) => t.on_splice_done(&mut self.wire, dir),
                    }
                }
            }
        }
        let _ = cfg;
    }
}

#[derive(Debug, Clone, Copy)]
enum SpliceEv {
    Started,
    Refused,
    Moved(u64),
    Done(SpliceEnd),
}

impl Shard {
    fn stream(&mut self, slot: u32) -> Option<&mut StreamConn> {
        match self.slab.get_mut(slot)? {
            Conn::Stream(c) => Some(c),
            _ => None,
        }
    }

    /// Queues `slot` for one `drive` at the end of this loop turn.
    pub(super) fn mark_dirty(&mut self, slot: u32) {
        if let Some(c) = self.stream(slot)
            && !c.queued
        {
            c.queued = true;
            self.dirty.push(slot);
        }
    }

    /// Builds a client connection and runs it once.
    pub(super) fn open_stream(
        &mut self,
        fd: i32,
        cfg: Arc<ListenerCfg>,
        proto: Proto,
        tls: Option<Box<Tls>>,
        peer: SocketAddr,
    ) {
        sys::set_nodelay(fd);
        let now = self.world.now_ms;
        let is_tls = tls.is_some();
        let conn = StreamConn {
            sock: Sock::new(fd),
            tls,
            wire: Wire {
                active_ms: [now, now],
                ..Wire::default()
            },
            proto,
            cfg,
            peer,
            upstream: None,
            splice: [None, None],
            closing: None,
            timer_at: None,
            queued: false,
            again: false,
            opened_ms: now,
        };
        let Some(key) = self.slab.insert(Conn::Stream(Box::new(conn))) else {
            self.world.stats.rejected += 1;
            sys::close(fd);
            return;
        };
        self.world.stats.active += 1;
        if is_tls {
            self.world.stats.tls_active += 1;
        }
        self.mark_dirty(key.slot);
    }

    // ---- completions ---------------------------------------------------------------------------

    pub(super) fn on_stream_completion(&mut self, tag: Tag, c: Completion) {
        let slot = tag.slot;
        let now = self.world.now_ms;
        let buffer_bytes = self.bufs.buffer_bytes();
        let Some(Conn::Stream(s)) = self.slab.get_mut(slot) else {
            return;
        };
        match tag.op {
            Op::Recv => {
                let got = s.sock.on_recv(&c);
                match got {
                    Received::Data { bid, len } => {
                        self.bufs.taken();
                        if let Some(bytes) = self.bufs.slice(bid, 0, len) {
                            s.wire.active_ms[CLIENT] = now;
                            if len >= buffer_bytes {
                                s.wire.bulk[CLIENT] = true;
                            }
                            match &mut s.tls {
                                Some(tls) => {
                                    let was = tls.is_handshaking();
                                    let got = tls.receive(
                                        bytes,
                                        &mut s.wire.rx[CLIENT],
                                        &mut self.scratch,
                                    );
                                    if tls.peer_done {
                                        // close_notify: the client's stream is over.
                                        s.wire.eof[CLIENT] = true;
                                    }
                                    tls_client_events(s, &mut self.world, got, was);
                                }
                                None => s.wire.rx[CLIENT].extend_from_slice(bytes),
                            }
                        }
                        self.bufs.put(bid);
                    }
                    Received::Eof => {
                        if let Some(tls) = &mut s.tls {
                            tls.on_eof(&mut s.wire.rx[CLIENT], &mut self.scratch);
                            if tls.is_handshaking() && !tls.failed {
                                self.world.stats.tls_handshake_errors += 1;
                                tls.failed = true;
                            }
                        }
                        s.wire.eof[CLIENT] = true;
                    }
                    Received::NoBufs => {
                        if let Some(k) = self.slab.key(slot) {
                            self.waiting_bufs.push(k);
                        }
                    }
                    Received::Cancelled => {}
                    Received::Error(errno) => {
                        tracing::debug!(shard = self.world.shard, errno, "client recv failed");
                        s.wire.eof[CLIENT] = true;
                        s.wire.tx[CLIENT].clear();
                        s.abort(&mut self.world, Term::ClientError);
                    }
                }
            }
            Op::Send => match s.sock.on_send(c.result) {
                Ok(n) => {
                    self.world.stats.bytes_server_to_client += n as u64;
                    s.wire.active_ms[CLIENT] = now;
                    s.wire.in_flight[CLIENT] = s.sock.queued();
                }
                Err(errno) => {
                    if !s.sock.closing {
                        tracing::debug!(shard = self.world.shard, errno, "client send failed");
                    }
                    s.wire.tx[CLIENT].clear();
                    s.wire.eof[CLIENT] = true;
                    s.abort(&mut self.world, Term::ClientError);
                }
            },
            Op::PollIn | Op::PollOut => {
                if s.sock.on_poll(tag.op) && c.result < 0 && c.result != -libc::ECANCELED {
                    s.abort(&mut self.world, Term::ClientError);
                }
            }
            Op::Connect | Op::Nop | Op::Accept | Op::Wake | Op::Tick | Op::Cancel => {}
        }
        self.mark_dirty(slot);
    }

    pub(super) fn on_upstream_completion(&mut self, tag: Tag, c: Completion) {
        let slot = tag.slot;
        let now = self.world.now_ms;
        let buffer_bytes = self.bufs.buffer_bytes();
        let Some(Conn::Upstream(u)) = self.slab.get_mut(slot) else {
            return;
        };
        let owner = u.owner;
        let mut event: Option<UpstreamEvent> = None;
        let mut close = false;
        match tag.op {
            Op::Connect | Op::Nop => {
                u.sock.inflight = u.sock.inflight.saturating_sub(1);
                if u.state != UpState::Connecting {
                    // Cancelled after a timeout or a release: nothing to report.
                } else if c.result < 0 {
                    u.state = UpState::Dead;
                    event = Some(UpstreamEvent::Failed(UpstreamError::Connect(-c.result)));
                } else if let Some(tls) = &mut u.tls {
                    u.state = UpState::Handshaking;
                    tls.flush(&mut u.sock.send);
                } else {
                    u.state = UpState::Open;
                    event = Some(UpstreamEvent::Connected);
                }
            }
            Op::Recv => {
                let got = u.sock.on_recv(&c);
                let owner_conn = owner.and_then(|k| self.slab.key(k.slot).filter(|&x| x == k));
                match got {
                    Received::Data { bid, len } => {
                        self.bufs.taken();
                        let bytes = self.bufs.slice(bid, 0, len);
                        match (owner_conn, bytes) {
                            (Some(ok), Some(bytes)) => {
                                if let Some((Conn::Upstream(u), Conn::Stream(s))) =
                                    self.slab.get2_mut(slot, ok.slot)
                                {
                                    s.wire.active_ms[UPSTREAM] = now;
                                    if len >= buffer_bytes {
                                        s.wire.bulk[UPSTREAM] = true;
                                    }
                                    match &mut u.tls {
                                        Some(tls) => {
                                            let was = tls.is_handshaking();
                                            let got = tls.receive(
                                                bytes,
                                                &mut s.wire.rx[UPSTREAM],
                                                &mut self.scratch,
                                            );
                                            if tls.peer_done {
                                                s.wire.eof[UPSTREAM] = true;
                                            }
                                            if tls.failed {
                                                self.world.stats.tls_upstream_errors += 1;
                                                u.state = UpState::Dead;
                                                event =
                                                    Some(UpstreamEvent::Failed(UpstreamError::Tls));
                                            } else if was && got.handshake.is_some() {
                                                self.world.stats.tls_upstream_handshakes += 1;
                                                if u.state == UpState::Handshaking {
                                                    u.state = UpState::Open;
                                                    event = Some(UpstreamEvent::Connected);
                                                }
                                            }
                                        }
                                        None => s.wire.rx[UPSTREAM].extend_from_slice(bytes),
                                    }
                                }
                            }
                            _ => {
                                // Unasked bytes on a pooled connection: it cannot be reused.
                                close = true;
                            }
                        }
                        self.bufs.put(bid);
                    }
                    Received::Eof => match owner_conn {
                        Some(ok) => {
                            if let Some((Conn::Upstream(u), Conn::Stream(s))) =
                                self.slab.get2_mut(slot, ok.slot)
                            {
                                if let Some(tls) = &mut u.tls {
                                    tls.on_eof(&mut s.wire.rx[UPSTREAM], &mut self.scratch);
                                }
                                match u.state {
                                    UpState::Handshaking => {
                                        self.world.stats.tls_upstream_errors += 1;
                                        u.state = UpState::Dead;
                                        event = Some(UpstreamEvent::Failed(UpstreamError::Tls));
                                    }
                                    _ => s.wire.eof[UPSTREAM] = true,
                                }
                            }
                        }
                        None => close = true,
                    },
                    Received::NoBufs => {
                        if let Some(k) = self.slab.key(slot) {
                            self.waiting_bufs.push(k);
                        }
                    }
                    Received::Cancelled => {}
                    Received::Error(errno) => {
                        if owner_conn.is_some() {
                            event = Some(UpstreamEvent::Failed(UpstreamError::Reset(errno)));
                        }
                        close = true;
                    }
                }
            }
            Op::Send => match u.sock.on_send(c.result) {
                Ok(n) => {
                    self.world.stats.bytes_client_to_server += n as u64;
                    let queued = u.sock.queued();
                    if let Some(ok) = owner
                        && let Some(Conn::Stream(s)) = self.slab.get_key_mut(ok)
                        && s.upstream.is_some_and(|k| k.slot == slot)
                    {
                        s.wire.active_ms[UPSTREAM] = now;
                        s.wire.in_flight[UPSTREAM] = queued;
                    }
                }
                Err(errno) => {
                    if owner.is_some() && !u.sock.closing {
                        event = Some(UpstreamEvent::Failed(UpstreamError::Reset(errno)));
                    }
                    close = true;
                }
            },
            Op::PollIn | Op::PollOut => {
                u.sock.on_poll(tag.op);
            }
            Op::Accept | Op::Wake | Op::Tick | Op::Cancel => {}
        }
        if let Some(Conn::Upstream(u)) = self.slab.get_mut(slot)
            && u.state == UpState::Dead
        {
            close = true;
        }
        let owner_live = owner.filter(|k| self.slab.key(k.slot) == Some(*k));
        match (owner_live, event) {
            (Some(ok), Some(ev)) => {
                if let Some(Conn::Stream(s)) = self.slab.get_mut(ok.slot) {
                    s.upstream_event(&mut self.world, ev);
                }
                self.mark_dirty(ok.slot);
            }
            (Some(ok), None) => self.mark_dirty(ok.slot),
            (None, _) => {}
        }
        if close && owner_live.is_none() {
            self.close_upstream(slot);
        }
        self.try_free_upstream(slot);
    }

    /// A compact idle client got bytes (or closed): bring its session back.
    pub(super) fn on_idle_completion(&mut self, tag: Tag, c: Completion) {
        let slot = tag.slot;
        let Some(Conn::Idle(i)) = self.slab.get_mut(slot) else {
            return;
        };
        let mut sock = Sock {
            fd: i.fd,
            inflight: i.inflight,
            recv: i.recv,
            ..Sock::default()
        };
        let got = match tag.op {
            Op::Recv => sock.on_recv(&c),
            _ => {
                sock.inflight = sock.inflight.saturating_sub(1);
                Received::Cancelled
            }
        };
        i.inflight = sock.inflight;
        i.recv = sock.recv;
        match got {
            Received::Data { bid, len } => {
                self.bufs.taken();
                self.wake_idle(slot, sock);
                if let (Some(Conn::Stream(s)), Some(bytes)) =
                    (self.slab.get_mut(slot), self.bufs.slice(bid, 0, len))
                {
                    s.wire.rx[CLIENT].extend_from_slice(bytes);
                }
                self.bufs.put(bid);
                self.mark_dirty(slot);
            }
            Received::NoBufs => {
                if let Some(k) = self.slab.key(slot) {
                    self.waiting_bufs.push(k);
                }
            }
            Received::Cancelled => {
                if i.inflight == 0 && self.world.draining {
                    self.free_idle(slot, Term::Drain);
                }
            }
            Received::Eof | Received::Error(_) => {
                // The client closed between requests: the normal end of keep-alive.
                self.free_idle(slot, Term::Done);
            }
        }
    }

    /// Turns a compact idle client back into a full connection (reusing a cached box).
    fn wake_idle(&mut self, slot: u32, sock: Sock) {
        let now = self.world.now_ms;
        let Some(Conn::Idle(i)) = self.slab.get_mut(slot) else {
            return;
        };
        let (cfg, peer, requests, opened) = (Arc::clone(&i.cfg), i.peer, i.requests, i.opened_ms);
        let session = H1Session::resume(peer, requests, now);
        let conn = match self.idle_cache.pop() {
            Some(mut b) => {
                let mut wire = std::mem::take(&mut b.wire);
                for v in wire.rx.iter_mut().chain(wire.tx.iter_mut()) {
                    v.clear();
                }
                let mut send = std::mem::take(&mut b.sock.send);
                send.clear();
                *b = StreamConn {
                    sock: Sock { send, ..sock },
                    tls: None,
                    wire: Wire {
                        rx: wire.rx,
                        tx: wire.tx,
                        active_ms: [now, now],
                        ..Wire::default()
                    },
                    proto: Proto::H1(session),
                    cfg,
                    peer,
                    upstream: None,
                    splice: [None, None],
                    closing: None,
                    timer_at: None,
                    queued: false,
                    again: false,
                    opened_ms: opened,
                };
                b
            }
            None => Box::new(StreamConn {
                sock,
                tls: None,
                wire: Wire {
                    active_ms: [now, now],
                    ..Wire::default()
                },
                proto: Proto::H1(session),
                cfg,
                peer,
                upstream: None,
                splice: [None, None],
                closing: None,
                timer_at: None,
                queued: false,
                again: false,
                opened_ms: opened,
            }),
        };
        if let Some(entry) = self.slab.get_mut(slot) {
            *entry = Conn::Stream(conn);
        }
    }

    /// Closes a compact idle client (keep-alive timeout, drain, or the client closed).
    pub(super) fn free_idle(&mut self, slot: u32, term: Term) {
        let Some(Conn::Idle(i)) = self.slab.get_mut(slot) else {
            return;
        };
        if i.inflight > 0 {
            if i.recv != Recv::Cancelling {
                i.recv = Recv::Cancelling;
                let fd = i.fd;
                self.ring.push(
                    opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
                        .build()
                        .user_data(Tag::new(Op::Cancel, slot).encode()),
                );
            }
            return;
        }
        sys::close(i.fd);
        self.slab.remove(slot);
        self.world.stats.closed += 1;
        self.world.stats.active = self.world.stats.active.saturating_sub(1);
        tracing::trace!(
            shard = self.world.shard,
            term = term.as_str(),
            "http connection closed"
        );
    }

    // ---- the per-turn drive --------------------------------------------------------------------

    /// Runs the session of `slot`, carries out its intents, syncs its sockets.
    pub(super) fn drive(&mut self, slot: u32) {
        for _ in 0..32 {
            let Some(c) = self.stream(slot) else {
                return;
            };
            c.queued = false;
            c.again = false;
            if c.closing.is_none() {
                let world = &mut self.world;
                let Some(Conn::Stream(c)) = self.slab.get_mut(slot) else {
                    return;
                };
                c.progress(world);
            }
            let mut any = false;
            while let Some(intent) = self.stream(slot).and_then(|c| c.proto.pop_intent()) {
                any = true;
                self.apply_intent(slot, intent);
            }
            if !any && !self.stream(slot).is_some_and(|c| c.again) {
                break;
            }
        }
        self.sync_io(slot);
        self.schedule_timer(slot);
        self.try_free_stream(slot);
        self.compact_if_idle(slot);
    }

    fn apply_intent(&mut self, slot: u32, intent: Intent) {
        match intent {
            Intent::Connect {
                backend,
                server,
                allow_pool,
            } => self.attach_upstream(slot, backend, server, allow_pool),
            Intent::Release { reusable } => self.release_upstream(slot, reusable),
            Intent::Enqueue { backend } => {
                if let (Some(key), Some(b)) =
                    (self.slab.key(slot), self.world.backends.get_mut(&backend))
                {
                    b.queue.push_back(key);
                    self.world.queued += 1;
                }
            }
            Intent::Dequeue { backend } => self.dequeue(slot, backend),
            Intent::Log(rec) => self.write_log(slot, &rec),
            Intent::Close(term) => {
                self.release_upstream(slot, false);
                let until = self
                    .world
                    .now_ms
                    .saturating_add(self.world.timeouts.client_idle);
                if let Some(c) = self.stream(slot)
                    && c.closing.is_none()
                {
                    c.closing = Some((term, until));
                }
            }
        }
    }

    fn dequeue(&mut self, slot: u32, backend: BackendId) {
        let Some(key) = self.slab.key(slot) else {
            return;
        };
        if let Some(b) = self.world.backends.get_mut(&backend) {
            let before = b.queue.len();
            b.queue.retain(|&k| k != key);
            self.world.queued = self.world.queued.saturating_sub(before - b.queue.len());
        }
    }

    /// Gives the session of `slot` a connection to `server`: a pooled one, or a new connect.
    fn attach_upstream(
        &mut self,
        slot: u32,
        backend: BackendId,
        server: ServerId,
        allow_pool: bool,
    ) {
        let now = self.world.now_ms;
        let Some(owner) = self.slab.key(slot) else {
            return;
        };
        let Some(b) = self.world.backends.get_mut(&backend) else {
            self.upstream_event(slot, UpstreamEvent::Failed(UpstreamError::Gone));
            return;
        };
        let reuse = ReuseKey {
            server,
            tls_generation: b.tls_generation,
        };
        if allow_pool {
            while let Some(k) = b.pool.take(reuse) {
                match self.slab.get_key_mut(k) {
                    Some(Conn::Upstream(u)) if u.state == UpState::Pooled => {
                        u.owner = Some(owner);
                        u.state = UpState::Open;
                        u.counted = true;
                        b.count_active(server, true);
                        if let Some(c) = self.stream(slot) {
                            c.upstream = Some(k);
                            c.wire.active_ms[UPSTREAM] = now;
                        }
                        self.upstream_event(slot, UpstreamEvent::Ready { reused: true });
                        return;
                    }
                    _ => continue,
                }
            }
        }
        let Some(scfg) = b.cfg.server(server) else {
            self.upstream_event(slot, UpstreamEvent::Failed(UpstreamError::Gone));
            return;
        };
        let addr: socket2::SockAddr = scfg.address.into();
        let send_proxy = scfg.send_proxy;
        let tls_cfg = b.cfg.tls.clone();
        let server_ip = scfg.address.ip();
        let fd = match sys::tcp_socket(addr.is_ipv6()) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(shard = self.world.shard, error = %e, "cannot create a server socket");
                let errno = e.raw_os_error().unwrap_or(libc::EMFILE);
                self.upstream_event(slot, UpstreamEvent::Failed(UpstreamError::Connect(errno)));
                return;
            }
        };
        sys::set_nodelay(fd);
        let tls = match tls_cfg {
            Some(t) => {
                let name = match t
                    .sni
                    .as_deref()
                    .map(|s| rustls_pki_types::ServerName::try_from(s.to_string()))
                {
                    Some(Ok(n)) => n,
                    _ => rustls_pki_types::ServerName::IpAddress(server_ip.into()),
                };
                match rustls::ClientConnection::new(Arc::clone(&t.config), name) {
                    Ok(conn) => Some(Box::new(Tls::new(rustls::Connection::Client(conn), false))),
                    Err(e) => {
                        tracing::warn!(shard = self.world.shard, error = %e, "upstream TLS setup failed");
                        sys::close(fd);
                        self.world.stats.tls_upstream_errors += 1;
                        self.upstream_event(slot, UpstreamEvent::Failed(UpstreamError::Tls));
                        return;
                    }
                }
            }
            None => None,
        };
        let preamble = match (send_proxy, self.stream(slot)) {
            (Some(version), Some(c)) => {
                let client = c.proto.client_addr(c.peer);
                let local = sys::local_addr(c.sock.fd).unwrap_or_else(|| match client {
                    SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
                    SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
                });
                crate::proxy_protocol::header(version, client, local)
            }
            _ => Vec::new(),
        };
        let is_tls = tls.is_some();
        let up = UpstreamConn {
            sock: Sock::new(fd),
            tls,
            addr,
            backend,
            server,
            reuse,
            private: send_proxy.is_some(),
            owner: Some(owner),
            state: UpState::Connecting,
            counted: true,
            preamble,
        };
        let Some(ukey) = self.slab.insert(Conn::Upstream(Box::new(up))) else {
            sys::close(fd);
            self.upstream_event(
                slot,
                UpstreamEvent::Failed(UpstreamError::Connect(libc::EMFILE)),
            );
            return;
        };
        if is_tls {
            self.world.stats.tls_active += 1;
        }
        if let Some(b) = self.world.backends.get_mut(&backend) {
            b.count_active(server, true);
        }
        if let Some(Conn::Upstream(u)) = self.slab.get_mut(ukey.slot) {
            u.sock.inflight += 1;
            // SAFETY (pointer lifetime): `addr` lives in the boxed connection, which is freed
            // only when `inflight` (counting this connect) is back to 0.
            let entry = opcode::Connect::new(types::Fd(fd), u.addr.as_ptr().cast(), u.addr.len())
                .build()
                .user_data(Tag::new(Op::Connect, ukey.slot).encode());
            self.ring.push(entry);
        }
        if let Some(c) = self.stream(slot) {
            c.upstream = Some(ukey);
            c.wire.active_ms[UPSTREAM] = now;
        }
    }

    fn upstream_event(&mut self, slot: u32, ev: UpstreamEvent) {
        let world = &mut self.world;
        if let Some(Conn::Stream(c)) = self.slab.get_mut(slot) {
            c.upstream_event(world, ev);
        }
    }

    /// The session is done with its upstream connection: back to the pool when clean, else
    /// closed.
    fn release_upstream(&mut self, slot: u32, reusable: bool) {
        let now = self.world.now_ms;
        let draining = self.world.draining;
        let Some(Conn::Stream(c)) = self.slab.get_mut(slot) else {
            return;
        };
        let Some(ukey) = c.upstream.take() else {
            return;
        };
        c.wire.in_flight[UPSTREAM] = 0;
        let mut spliced = false;
        for dir in [CLIENT, UPSTREAM] {
            if let Some(flow) = c.splice[dir].take() {
                self.pipes.give_back(flow.pipe, flow.in_pipe == 0);
                spliced = true;
            }
        }
        let Some(Conn::Upstream(u)) = self.slab.get_key_mut(ukey) else {
            return;
        };
        u.owner = None;
        let backend = self.world.backends.get_mut(&u.backend);
        if u.counted {
            u.counted = false;
            if let Some(b) = &backend {
                let _ = b;
            }
        }
        let (server, b_id) = (u.server, u.backend);
        let clean = reusable
            && !spliced
            && u.state == UpState::Open
            && u.sock.idle_send()
            && u.preamble.is_empty()
            && !u.private
            && !u.sock.eof
            && !u.sock.closing
            && !draining
            && u.tls
                .as_ref()
                .is_none_or(|t| !t.failed && !t.conn.wants_write());
        let mut pooled = false;
        if let Some(b) = self.world.backends.get_mut(&b_id) {
            b.count_active(server, false);
            if clean && b.is_up(server) && u.reuse.tls_generation == b.tls_generation {
                pooled = b
                    .pool
                    .put(u.reuse, ukey, now, b.cfg.idle_conns_max as usize);
            }
        }
        if pooled {
            u.state = UpState::Pooled;
            // Keep a recv armed: a server closing the idle connection is seen at once.
            let group = self.bufs.group;
            let free = self.bufs.available() > 0;
            if !u
                .sock
                .sync_recv(&mut self.ring, ukey.slot, group, true, free)
            {
                self.waiting_bufs.push(ukey);
            }
        } else {
            self.close_upstream(ukey.slot);
            self.try_free_upstream(ukey.slot);
        }
    }

    /// Closes an upstream connection: out of its pool, every op cancelled, freed once the kernel
    /// is done with it.
    pub(super) fn close_upstream(&mut self, slot: u32) {
        let Some(key) = self.slab.key(slot) else {
            return;
        };
        let Some(Conn::Upstream(u)) = self.slab.get_mut(slot) else {
            return;
        };
        if u.state == UpState::Pooled
            && let Some(b) = self.world.backends.get_mut(&u.backend)
        {
            b.pool.remove(key);
        }
        if u.counted {
            u.counted = false;
            if let Some(b) = self.world.backends.get_mut(&u.backend) {
                b.count_active(u.server, false);
            }
        }
        u.state = UpState::Dead;
        u.owner = None;
        u.sock.cancel_all(&mut self.ring, slot);
    }

    pub(super) fn try_free_upstream(&mut self, slot: u32) {
        let Some(Conn::Upstream(u)) = self.slab.get_mut(slot) else {
            return;
        };
        if u.state != UpState::Dead || u.owner.is_some() || !u.sock.close_if_done() {
            return;
        }
        if u.tls.is_some() {
            self.world.stats.tls_active = self.world.stats.tls_active.saturating_sub(1);
        }
        self.slab.remove(slot);
    }

    // ---- syncing the sockets with the session --------------------------------------------------

    fn sync_io(&mut self, slot: u32) {
        let group = self.bufs.group;
        let bufs_free = self.bufs.available() > 0;
        let Some(key) = self.slab.key(slot) else {
            return;
        };
        let ukey = self.stream(slot).and_then(|c| c.upstream);
        // Client socket.
        {
            let Some(Conn::Stream(c)) = self.slab.get_mut(slot) else {
                return;
            };
            if !c.sock.sending && c.sock.queued() > 0 {
                c.sock.start_send(&mut self.ring, slot);
            } else if !c.sock.sending {
                match &mut c.tls {
                    Some(tls) => {
                        tls.send(&mut c.wire.tx[CLIENT], &mut c.sock.send);
                        let shut_asked = c.wire.shut[CLIENT] || c.closing.is_some();
                        if shut_asked
                            && c.sock.send.is_empty()
                            && !tls.notify_sent
                            && !tls.is_handshaking()
                        {
                            tls.close_notify(&mut c.sock.send);
                        }
                    }
                    None => {
                        if !c.wire.tx[CLIENT].is_empty() {
                            std::mem::swap(&mut c.wire.tx[CLIENT], &mut c.sock.send);
                        }
                    }
                }
                c.sock.start_send(&mut self.ring, slot);
            }
            c.wire.in_flight[CLIENT] = c.sock.queued();
            let handshaking = c
                .tls
                .as_ref()
                .is_some_and(|t| t.is_handshaking() && !t.failed);
            let failed = c.tls.as_ref().is_some_and(|t| t.failed);
            let want = !failed
                && !c.sock.eof
                && (handshaking
                    || (c.closing.is_none()
                        && c.splice[CLIENT].is_none()
                        && c.proto.wants_read(&c.wire, CLIENT, &c.cfg)));
            if !c
                .sock
                .sync_recv(&mut self.ring, slot, group, want, bufs_free)
            {
                self.waiting_bufs.push(key);
            }
            let notify_done = c
                .tls
                .as_ref()
                .is_none_or(|t| t.notify_sent || t.failed || t.is_handshaking());
            if c.wire.shut[CLIENT]
                && !c.wire.shut_done[CLIENT]
                && c.wire.flushed(CLIENT)
                && c.sock.idle_send()
                && notify_done
            {
                c.sock.shutdown_write();
                c.wire.shut_done[CLIENT] = true;
                c.again = true;
            }
            if failed && c.closing.is_none() {
                c.closing = Some((Term::ClientError, self.world.now_ms + 1_000));
                c.abort(&mut self.world, Term::ClientError);
            }
        }
        // Upstream socket.
        if let Some(ukey) = ukey
            && let Some((Conn::Stream(c), Conn::Upstream(u))) = self.slab.get2_mut(slot, ukey.slot)
        {
            let open = u.state == UpState::Open;
            if !u.sock.sending && u.sock.queued() > 0 {
                u.sock.start_send(&mut self.ring, ukey.slot);
            } else if !u.sock.sending && u.state != UpState::Connecting {
                if !u.preamble.is_empty() && open {
                    std::mem::swap(&mut u.preamble, &mut u.sock.send);
                    if u.tls.is_none() && !c.wire.tx[UPSTREAM].is_empty() {
                        u.sock.send.append(&mut c.wire.tx[UPSTREAM]);
                    }
                } else {
                    match &mut u.tls {
                        Some(tls) if open => tls.send(&mut c.wire.tx[UPSTREAM], &mut u.sock.send),
                        Some(tls) => tls.flush(&mut u.sock.send),
                        None if open && !c.wire.tx[UPSTREAM].is_empty() => {
                            std::mem::swap(&mut c.wire.tx[UPSTREAM], &mut u.sock.send)
                        }
                        None => {}
                    }
                }
                u.sock.start_send(&mut self.ring, ukey.slot);
            }
            c.wire.in_flight[UPSTREAM] = u.sock.queued();
            let want = match u.state {
                UpState::Handshaking => true,
                UpState::Open => {
                    c.splice[UPSTREAM].is_none() && c.proto.wants_read(&c.wire, UPSTREAM, &c.cfg)
                }
                UpState::Connecting | UpState::Pooled | UpState::Dead => false,
            };
            if !u.sock.eof
                && !u
                    .sock
                    .sync_recv(&mut self.ring, ukey.slot, group, want, bufs_free)
            {
                self.waiting_bufs.push(ukey);
            }
            if c.wire.shut[UPSTREAM]
                && !c.wire.shut_done[UPSTREAM]
                && c.wire.flushed(UPSTREAM)
                && u.sock.idle_send()
                && open
            {
                if let Some(tls) = &mut u.tls
                    && !tls.notify_sent
                {
                    tls.close_notify(&mut u.sock.send);
                    u.sock.start_send(&mut self.ring, ukey.slot);
                } else {
                    u.sock.shutdown_write();
                    c.wire.shut_done[UPSTREAM] = true;
                    c.again = true;
                }
            }
        }
        self.sync_splice(slot);
        // A session that ended: close once the client has what was queued for it.
        if let Some(c) = self.stream(slot)
            && c.closing.is_some()
        {
            let tls_done = c
                .tls
                .as_ref()
                .is_none_or(|t| t.notify_sent || t.failed || t.is_handshaking() || c.sock.eof);
            let flushed = c.wire.tx[CLIENT].is_empty() && c.sock.idle_send() && tls_done;
            if flushed || c.sock.eof {
                self.begin_close_stream(slot);
            }
        }
        if let Some(c) = self.stream(slot)
            && std::mem::take(&mut c.again)
        {
            self.mark_dirty(slot);
        }
    }

    /// Starts, continues or ends splice(2) flows the session allows.
    fn sync_splice(&mut self, slot: u32) {
        for dir in [CLIENT, UPSTREAM] {
            let Some(c) = self.stream(slot) else {
                return;
            };
            if c.closing.is_some() {
                return;
            }
            if c.splice[dir].is_some() {
                self.pump(slot, dir);
                continue;
            }
            let Some(ukey) = c.upstream else {
                continue;
            };
            let mode = c.proto.splice_mode(&c.cfg);
            let Some(to_read) = c.proto.splice_want(&c.wire, dir, mode) else {
                continue;
            };
            let client_tls = c.tls.is_some();
            let client_recv = c.sock.recv_armed();
            let (up_plain, up_recv) = match self.slab.get_key_mut(ukey) {
                Some(Conn::Upstream(u)) if u.state == UpState::Open => {
                    (u.tls.is_none(), u.sock.recv_armed())
                }
                _ => continue,
            };
            if client_tls || !up_plain {
                // Encrypted bytes cannot be spliced (no kTLS): this flow keeps copying.
                let world = &mut self.world;
                if let Some(Conn::Stream(c)) = self.slab.get_mut(slot) {
                    c.splice_event(world, dir, SpliceEv::Refused);
                    c.again = true;
                }
                continue;
            }
            let src_recv = if dir == CLIENT { client_recv } else { up_recv };
            if src_recv {
                // Wait for the recv's cancel to complete so bytes keep their order.
                continue;
            }
            match self.pipes.take() {
                Ok(pipe) => {
                    let world = &mut self.world;
                    if let Some(Conn::Stream(c)) = self.slab.get_mut(slot) {
                        c.splice[dir] = Some(pipes::Flow {
                            pipe,
                            in_pipe: 0,
                            to_read,
                            eof: false,
                        });
                        c.splice_event(world, dir, SpliceEv::Started);
                    }
                    self.pump(slot, dir);
                }
                Err(e) => {
                    tracing::debug!(shard = self.world.shard, error = %e, "no pipe for splice; copying");
                    let world = &mut self.world;
                    if let Some(Conn::Stream(c)) = self.slab.get_mut(slot) {
                        c.splice_event(world, dir, SpliceEv::Refused);
                    }
                }
            }
        }
    }

    /// Moves spliced bytes of flow `dir` until a side would block, then arms readiness.
    fn pump(&mut self, slot: u32, dir: usize) {
        let now = self.world.now_ms;
        let pipe_bytes = self.pipes.pipe_bytes();
        let Some(c) = self.stream(slot) else {
            return;
        };
        let (Some(mut flow), Some(ukey)) = (c.splice[dir], c.upstream) else {
            return;
        };
        let Some((Conn::Stream(c), Conn::Upstream(u))) = self.slab.get2_mut(slot, ukey.slot) else {
            return;
        };
        let (src, dst, src_slot, dst_slot) = if dir == CLIENT {
            (&mut c.sock, &mut u.sock, slot, ukey.slot)
        } else {
            (&mut u.sock, &mut c.sock, ukey.slot, slot)
        };
        if src.poll_in || dst.poll_out || src.fd < 0 || dst.fd < 0 || src.closing || dst.closing {
            return;
        }
        let (stop, moved) = pipes::pump(src.fd, dst.fd, &mut flow, pipe_bytes, SPLICE_ROUNDS_MAX);
        match stop {
            PumpStop::WaitIn | PumpStop::Yield => src.arm_poll(&mut self.ring, src_slot, true),
            PumpStop::WaitOut => dst.arm_poll(&mut self.ring, dst_slot, false),
            PumpStop::Finished | PumpStop::Eof | PumpStop::Failed(_) => {}
        }
        if flow.eof {
            src.eof = true;
        }
        c.splice[dir] = Some(flow);
        if moved.read_bytes > 0 {
            c.wire.active_ms[dir] = now;
        }
        if moved.written_bytes > 0 {
            c.wire.active_ms[1 - dir] = now;
        }
        let st = &mut self.world.stats;
        st.bytes_spliced += moved.written_bytes;
        if dir == CLIENT {
            st.bytes_client_to_server += moved.written_bytes;
        } else {
            st.bytes_server_to_client += moved.written_bytes;
        }
        let world = &mut self.world;
        if moved.written_bytes > 0 {
            c.splice_event(world, dir, SpliceEv::Moved(moved.written_bytes));
        }
        let end = match stop {
            PumpStop::Finished => Some(SpliceEnd::Finished),
            PumpStop::Eof => Some(SpliceEnd::Eof),
            PumpStop::Failed(errno) => {
                tracing::debug!(shard = world.shard, dir, errno, "splice failed");
                if let Some(f) = c.splice[dir].take() {
                    self.pipes.give_back(f.pipe, false);
                }
                c.abort(world, Term::ServerError);
                c.again = true;
                None
            }
            PumpStop::WaitIn | PumpStop::WaitOut | PumpStop::Yield => None,
        };
        if let Some(end) = end {
            if let Some(f) = c.splice[dir].take() {
                self.pipes.give_back(f.pipe, f.in_pipe == 0);
            }
            c.splice_event(world, dir, SpliceEv::Done(end));
            c.again = true;
        }
    }

    /// A readiness poll on `sock_slot` (client or upstream) completed: continue the flow(s) that
    /// wait on it.
    pub(super) fn on_splice_ready(&mut self, owner_slot: u32) {
        for dir in [CLIENT, UPSTREAM] {
            if self
                .stream(owner_slot)
                .is_some_and(|c| c.splice[dir].is_some())
            {
                self.pump(owner_slot, dir);
            }
        }
        self.mark_dirty(owner_slot);
    }

    // ---- closing -------------------------------------------------------------------------------

    /// Starts closing a client connection: its upstream is released, every op cancelled.
    pub(super) fn begin_close_stream(&mut self, slot: u32) {
        self.release_upstream(slot, false);
        let now = self.world.now_ms;
        let Some(Conn::Stream(c)) = self.slab.get_mut(slot) else {
            return;
        };
        for dir in [CLIENT, UPSTREAM] {
            if let Some(f) = c.splice[dir].take() {
                self.pipes.give_back(f.pipe, f.in_pipe == 0);
            }
        }
        if c.closing.is_none() {
            c.closing = Some((Term::Local, now));
        }
        c.sock.cancel_all(&mut self.ring, slot);
        self.try_free_stream(slot);
    }

    fn try_free_stream(&mut self, slot: u32) {
        let Some(c) = self.stream(slot) else {
            return;
        };
        if !c.sock.closing || !c.sock.close_if_done() {
            return;
        }
        let Some(Conn::Stream(c)) = self.slab.remove(slot) else {
            return;
        };
        if let Proto::H1(s) = &c.proto
            && let Some(b) = s.queued_on()
            && let Some(backend) = self.world.backends.get_mut(&b)
        {
            let before = backend.queue.len();
            backend.queue.retain(|k| k.slot != slot);
            self.world.queued = self
                .world
                .queued
                .saturating_sub(before - backend.queue.len());
        }
        self.world.stats.closed += 1;
        self.world.stats.active = self.world.stats.active.saturating_sub(1);
        if c.tls.is_some() {
            self.world.stats.tls_active = self.world.stats.tls_active.saturating_sub(1);
        }
        tracing::trace!(
            shard = self.world.shard,
            term = c.closing.map_or("done", |(t, _)| t.as_str()),
            duration_ms = self.world.now_ms.saturating_sub(c.opened_ms),
            "connection closed"
        );
    }

    /// An HTTP client between requests with nothing buffered becomes a compact idle entry.
    fn compact_if_idle(&mut self, slot: u32) {
        let now = self.world.now_ms;
        let Some(c) = self.stream(slot) else {
            return;
        };
        let Proto::H1(s) = &c.proto else {
            return;
        };
        let idle = s.is_idle(&c.wire)
            && c.tls.is_none()
            && c.upstream.is_none()
            && c.closing.is_none()
            && c.splice.iter().all(Option::is_none)
            && c.wire.tx[CLIENT].is_empty()
            && c.sock.idle_send()
            && !c.sock.poll_in
            && !c.sock.poll_out
            && !c.sock.closing
            && !c.sock.eof
            && !c.queued
            && !c.again;
        if !idle {
            return;
        }
        let idle = IdleHttp {
            fd: c.sock.fd,
            inflight: c.sock.inflight,
            recv: c.sock.recv,
            cfg: Arc::clone(&c.cfg),
            peer: s.client,
            requests: s.requests(),
            since_ms: c.wire.active_ms[CLIENT].max(now.min(c.wire.active_ms[CLIENT])),
            opened_ms: c.opened_ms,
        };
        let generation = self.slab.key(slot).map_or(0, |k| k.generation);
        if let Some(entry) = self.slab.get_mut(slot) {
            let old = std::mem::replace(entry, Conn::Idle(idle));
            if let Conn::Stream(mut b) = old
                && self.idle_cache.len() < IDLE_CACHE_MAX
            {
                // Keep the buffers' capacity for the next request, within bounds.
                for v in b.wire.rx.iter_mut().chain(b.wire.tx.iter_mut()) {
                    v.clear();
                    if v.capacity() > 64 * 1024 {
                        *v = Vec::new();
                    }
                }
                b.sock.send.clear();
                if b.sock.send.capacity() > 64 * 1024 {
                    b.sock.send = Vec::new();
                }
                b.sock.fd = -1;
                self.idle_cache.push(b);
            }
        }
        // The keep-alive deadline of the idle entry.
        let deadline = now.saturating_add(self.world.timeouts.http_keep_alive);
        let _ = deadline;
        self.timers.insert(
            crate::timer::TimerKey { slot, generation },
            self.idle_deadline(slot).unwrap_or(now),
        );
    }

    pub(super) fn idle_deadline(&self, slot: u32) -> Option<u64> {
        match self.slab.get(slot)? {
            Conn::Idle(i) => Some(
                i.since_ms.saturating_add(
                    i.cfg
                        .http
                        .as_ref()
                        .map_or(self.world.timeouts.http_keep_alive, |h| {
                            h.timeouts.http_keep_alive
                        }),
                ),
            ),
            _ => None,
        }
    }

    // ---- timers --------------------------------------------------------------------------------

    fn schedule_timer(&mut self, slot: u32) {
        let Some(key) = self.slab.key(slot) else {
            return;
        };
        let world = &self.world;
        let Some(Conn::Stream(c)) = self.slab.get_mut(slot) else {
            return;
        };
        let Some(deadline) = c.deadline(world) else {
            return;
        };
        if c.timer_at.is_some_and(|t| t <= deadline) {
            return;
        }
        c.timer_at = Some(deadline);
        self.timers.insert(
            crate::timer::TimerKey {
                slot,
                generation: key.generation,
            },
            deadline,
        );
    }

    pub(super) fn on_stream_timer(&mut self, slot: u32) {
        let now = self.world.now_ms;
        let world = &mut self.world;
        let Some(Conn::Stream(c)) = self.slab.get_mut(slot) else {
            return;
        };
        c.timer_at = None;
        if let Some((_, until)) = c.closing {
            if now >= until {
                self.begin_close_stream(slot);
                return;
            }
        } else if let Some(tls) = &c.tls
            && tls.is_handshaking()
            && c.cfg
                .tls
                .as_ref()
                .is_some_and(|l| now >= c.opened_ms.saturating_add(l.handshake_ms))
        {
            world.stats.tls_handshake_timeouts += 1;
            tracing::debug!(shard = world.shard, "TLS handshake timed out");
            c.closing = Some((Term::Timeout, now));
            c.abort(world, Term::Timeout);
        } else {
            let cfg = Arc::clone(&c.cfg);
            match (&mut c.proto, &cfg.http, &cfg.tcp) {
                (Proto::H1(s), Some(h), _) => s.on_timer(&mut c.wire, world, h),
                (Proto::Tcp(s), _, Some(t)) => s.on_timer(&mut c.wire, world, t),
                _ => {}
            }
        }
        self.mark_dirty(slot);
    }

    /// The drain deadline passed, or the connection must go now.
    pub(super) fn abort_stream(&mut self, slot: u32, term: Term) {
        let world = &mut self.world;
        if let Some(Conn::Stream(c)) = self.slab.get_mut(slot) {
            if c.closing.is_none() {
                c.abort(world, term);
                c.closing = Some((term, world.now_ms));
            }
            self.begin_close_stream(slot);
        }
    }

    /// A queued request's server has room again.
    pub(super) fn on_dequeued(&mut self, key: Key) {
        let world = &mut self.world;
        if let Some(Conn::Stream(c)) = self.slab.get_key_mut(key) {
            let cfg = Arc::clone(&c.cfg);
            if let (Proto::H1(s), Some(h)) = (&mut c.proto, &cfg.http) {
                s.on_dequeued(&mut c.wire, world, h);
            }
            self.mark_dirty(key.slot);
        }
    }

    /// Buffers came back: re-arm recvs that ended with ENOBUFS.
    pub(super) fn retry_waiting_bufs(&mut self) {
        while self.bufs.available() > 0 {
            let Some(key) = self.waiting_bufs.pop() else {
                return;
            };
            let group = self.bufs.group;
            match self.slab.get_key_mut(key) {
                Some(Conn::Stream(_)) => self.mark_dirty(key.slot),
                Some(Conn::Upstream(u)) => {
                    if let Some(owner) = u.owner {
                        self.mark_dirty(owner.slot);
                    } else if u.state == UpState::Pooled {
                        u.sock
                            .sync_recv(&mut self.ring, key.slot, group, true, true);
                    }
                }
                Some(Conn::Idle(i)) => {
                    if i.recv == Recv::NoBufs {
                        let mut sock = Sock {
                            fd: i.fd,
                            inflight: i.inflight,
                            recv: i.recv,
                            ..Sock::default()
                        };
                        sock.sync_recv(&mut self.ring, key.slot, group, true, true);
                        i.inflight = sock.inflight;
                        i.recv = sock.recv;
                    }
                }
                Some(Conn::Detect(_)) | None => {}
            }
        }
    }

    // ---- access log ----------------------------------------------------------------------------

    fn write_log(&mut self, slot: u32, rec: &AccessRecord) {
        let shard = self.world.shard;
        let Some(c) = self.slab.get(slot).and_then(|c| match c {
            Conn::Stream(c) => Some(c),
            _ => None,
        }) else {
            return;
        };
        let client = c.proto.client_addr(c.peer);
        let listener = c.cfg.id;
        let backend = rec.backend.and_then(|b| self.world.backends.get(&b));
        let backend_name = backend.map_or("-", |b| b.cfg.name.as_str());
        let server = backend
            .zip(rec.server)
            .and_then(|(b, s)| b.cfg.server(s))
            .map_or_else(|| "-".to_string(), |s| s.address.to_string());
        let Some(sink) = self
            .listeners
            .get_mut(&listener)
            .and_then(|l| l.sink.as_mut())
        else {
            return;
        };
        sink.write(&crate::access_log::Line {
            client,
            method: &rec.method,
            target: &rec.target,
            version_minor: rec.version_minor,
            status: rec.status,
            bytes_sent: rec.bytes_sent,
            bytes_received: rec.bytes_received,
            duration_ms: rec.duration_ms,
            backend: backend_name,
            server: &server,
            shard,
            referer: &rec.referer,
            user_agent: &rec.user_agent,
            term: rec.term.as_str(),
        });
    }
}

/// Counters and session effects of what a TLS client's `receive` found.
fn tls_client_events(
    s: &mut StreamConn,
    world: &mut World,
    got: super::transport::Got,
    was_handshaking: bool,
) {
    if let Some(p) = &got.proxy {
        match p {
            crate::proxy_protocol::Received::Complete {
                source: Some(src), ..
            } => match &mut s.proto {
                Proto::H1(h) => h.client = *src,
                Proto::Tcp(t) => t.client = Some(*src),
            },
            crate::proxy_protocol::Received::Complete { .. }
            | crate::proxy_protocol::Received::Partial => {}
            crate::proxy_protocol::Received::Invalid(_) => {
                world.stats.proxy_rejected += 1;
                tracing::debug!(
                    shard = world.shard,
                    "PROXY header refused on a TLS listener"
                );
            }
        }
    }
    if let Some(tls) = &s.tls {
        if tls.failed && was_handshaking && got.proxy.is_none() {
            world.stats.tls_handshake_errors += 1;
        }
        if let Some(kind) = got.handshake {
            match kind {
                Handshake::Resumed => world.stats.tls_resumed += 1,
                Handshake::Full => world.stats.tls_handshakes += 1,
            }
            tracing::trace!(shard = world.shard, sni = ?tls.sni(), "TLS handshake done");
        }
    }
}
