//! Owns: the driver side of every proxied client connection — a client socket with its transport
//! (plain or TLS) and its session ([`Proto`]: HTTP/1.1 or TCP) — and the connection types the
//! driver keeps in its slab. Completions update the socket and the session's [`Wire`]; `drive`
//! runs the session, carries out its intents (connect, release, queue, log, close), then
//! `sync.rs` brings the sockets in step; `upstream_conn.rs` holds upstream connections and
//! `idle.rs` the compact form of idle keep-alive clients. One connection driver, split by
//! concern; no protocol has a copy of it.
//! Must not: make protocol decisions (those are the session's) or free anything the kernel may
//! still use (an entry goes only when its socket's `inflight` is 0).

use std::net::SocketAddr;
use std::sync::Arc;

use super::driver::{Shard, World};
use super::listener::ListenerCfg;
use super::ring::{Completion, Op, Tag};
use super::slab::Key;
use super::sock::{Received, Recv, Sock};
use super::transport::{Handshake, Tls};
use super::{Conn, sys};
use crate::config::SpliceMode;
use crate::ids::{BackendId, ServerId};
use crate::pipes;
use crate::session::h1::{H1Session, SpliceEnd};
use crate::session::h2::H2Session;
use crate::session::tcp::TcpSession;
use crate::session::{AccessRecord, CLIENT, Intent, Lane, Term, UPSTREAM, UpstreamEvent, Wire};
use crate::upstream::pool::ReuseKey;

/// Compact idle connections' boxes kept for reuse (bounded: idle memory stays small).
pub(super) const IDLE_CACHE_MAX: usize = 256;

/// The protocol a client connection speaks.
pub(super) enum Proto {
    H1(H1Session),
    /// Boxed: an HTTP/2 connection's state (HPACK tables, streams) is far larger than H1's.
    H2(Box<H2Session>),
    Tcp(TcpSession),
}

/// What the first bytes of a fresh HTTP connection on an `http2` listener say.
enum Choice {
    H1,
    H2,
    /// A prefix of the HTTP/2 preface so far: wait for more before letting HTTP/1.1 parse it.
    Wait,
}

pub(super) struct StreamConn {
    pub sock: Sock,
    pub tls: Option<Box<Tls>>,
    pub wire: Wire,
    pub proto: Proto,
    pub cfg: Arc<ListenerCfg>,
    pub peer: SocketAddr,
    /// The backend connection of lane 0 (the only lane of HTTP/1.1 and TCP sessions).
    pub upstream: Option<Key>,
    /// Lanes 1.. of an HTTP/2 session (one per stream being served): their backend connections.
    pub lanes_up: Vec<Option<Key>>,
    pub splice: [Option<pipes::Flow>; 2],
    /// The session is over: flush what is queued for the client, then close.
    pub closing: Option<(Term, u64)>,
    pub timer_at: Option<u64>,
    /// Listed in the shard's `dirty` list (driven at the end of this turn).
    pub queued: bool,
    /// Something changed while syncing: drive once more.
    pub again: bool,
    pub opened_ms: u64,
    /// Accepted (µs, shard clock): TCP connection durations.
    pub opened_us: u64,
    /// TLS termination: the first bytes of the ClientHello arrived (µs; 0: not yet).
    pub tls_started_us: u64,
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
    /// Which of the owner's upstream sides this connection serves.
    pub lane: Lane,
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
    /// The earliest deadline already in the timer wheel for this slot.
    pub timer_at: Option<u64>,
}

impl Proto {
    pub(super) fn wants_read(&self, w: &Wire, side: usize, cfg: &ListenerCfg) -> bool {
        match (self, &cfg.http, &cfg.tcp) {
            (Proto::H1(s), Some(h), _) => s.wants_read(w, side, h),
            (Proto::H2(s), _, _) => s.wants_read(w, side),
            (Proto::Tcp(s), _, _) => s.wants_read(w, side),
            (Proto::H1(_), None, _) => false,
        }
    }

    pub(super) fn splice_mode(&self, cfg: &ListenerCfg) -> SpliceMode {
        match self {
            Proto::H1(_) => cfg.http.as_ref().map_or(SpliceMode::Off, |h| h.splice),
            // DATA frames are built from the bytes: nothing moves by splice.
            Proto::H2(_) => SpliceMode::Off,
            Proto::Tcp(_) => cfg.tcp.as_ref().map_or(SpliceMode::Off, |t| t.splice),
        }
    }

    pub(super) fn splice_want(&self, w: &Wire, dir: usize, mode: SpliceMode) -> Option<u64> {
        match self {
            Proto::H1(s) => s.splice_want(w, dir, mode),
            Proto::H2(_) => None,
            Proto::Tcp(s) => {
                let _ = mode;
                s.splice_want(w, dir)
            }
        }
    }

    /// Whether the driver should read the backend connection of `lane` now.
    pub(super) fn lane_wants_read(&self, w: &Wire, lane: Lane, cfg: &ListenerCfg) -> bool {
        match self {
            Proto::H2(s) => s.lane_wants_read(lane),
            _ => lane == 0 && self.wants_read(w, UPSTREAM, cfg),
        }
    }

    /// Lanes that may hold a backend connection.
    pub(super) fn lanes(&self) -> Lane {
        match self {
            Proto::H2(s) => Lane::try_from(s.lanes()).unwrap_or(Lane::MAX),
            _ => 1,
        }
    }

    fn pop_intent(&mut self) -> Option<(Lane, Intent)> {
        match self {
            Proto::H1(s) => s.intents.pop_lane(),
            Proto::H2(s) => s.intents.pop_lane(),
            Proto::Tcp(s) => s.intents.pop_lane(),
        }
    }

    pub(super) fn client_addr(&self, peer: SocketAddr) -> SocketAddr {
        match self {
            Proto::H1(s) => s.client,
            Proto::H2(s) => s.client,
            Proto::Tcp(s) => s.client.unwrap_or(peer),
        }
    }
}

impl StreamConn {
    fn progress(&mut self, world: &mut World) {
        let cfg = Arc::clone(&self.cfg);
        if let (Proto::H1(s), Some(h2)) = (&self.proto, &cfg.h2)
            && s.fresh()
        {
            match self.choose_protocol() {
                Choice::H1 => {}
                Choice::Wait => return,
                Choice::H2 => {
                    let session = H2Session::new(s.client, self.tls.is_some(), h2, world.now_ms);
                    self.proto = Proto::H2(Box::new(session));
                }
            }
        }
        match (&mut self.proto, &cfg.http, &cfg.tcp) {
            (Proto::H1(s), Some(h), _) => s.progress(&mut self.wire, world, h),
            (Proto::H2(s), _, _) => {
                if let Some(h2) = &cfg.h2 {
                    s.progress(&mut self.wire, world, h2)
                }
            }
            (Proto::Tcp(s), _, Some(t)) => s.progress(&mut self.wire, world, t),
            _ => {}
        }
    }

    /// HTTP/2 when TLS chose it by ALPN, or when a plain connection opens with the preface
    /// (prior knowledge, RFC 9113 §3.3); anything else is HTTP/1.1.
    fn choose_protocol(&self) -> Choice {
        let preface = crate::h2::frame::PREFACE.as_slice();
        if let Some(t) = &self.tls {
            if t.is_handshaking() {
                return Choice::H1;
            }
            if t.alpn_h2() {
                return Choice::H2;
            }
        }
        if self.tls.is_none() && self.cfg.http_accept_proxy {
            // The PROXY header comes first and HTTP/1.1 reads it: no prior-knowledge h2c here.
            return Choice::H1;
        }
        let rx = &self.wire.rx[CLIENT];
        if rx.is_empty() {
            Choice::H1
        } else if rx.starts_with(preface) {
            Choice::H2
        } else if preface.starts_with(rx) && !self.wire.eof[CLIENT] {
            Choice::Wait
        } else {
            Choice::H1
        }
    }

    /// The backend connection of `lane`.
    pub(super) fn up_key(&self, lane: Lane) -> Option<Key> {
        match lane {
            0 => self.upstream,
            l => self.lanes_up.get(usize::from(l) - 1).copied().flatten(),
        }
    }

    /// Sets the backend connection of `lane`; returns the one it had.
    pub(super) fn set_up_key(&mut self, lane: Lane, key: Option<Key>) -> Option<Key> {
        if lane == 0 {
            return std::mem::replace(&mut self.upstream, key);
        }
        let i = usize::from(lane) - 1;
        if self.lanes_up.len() <= i {
            // Nothing to clear on a lane never used; grow only to set one.
            key?;
            self.lanes_up.resize(i + 1, None);
        }
        std::mem::replace(&mut self.lanes_up[i], key)
    }

    /// Whether any lane holds a backend connection.
    pub(super) fn has_upstream(&self) -> bool {
        self.upstream.is_some() || self.lanes_up.iter().any(Option::is_some)
    }

    /// Runs `f` on the wire with lane `lane`'s upstream side in its `[UPSTREAM]` place (the wire
    /// itself for lane 0 of HTTP/1.1 and TCP). `None`: no stream holds that lane.
    pub(super) fn with_lane<R>(&mut self, lane: Lane, f: impl FnOnce(&mut Wire) -> R) -> Option<R> {
        match &mut self.proto {
            Proto::H2(s) => {
                let side = s.lane_side(lane)?;
                side.swap(&mut self.wire);
                let r = f(&mut self.wire);
                side.swap(&mut self.wire);
                Some(r)
            }
            _ if lane == 0 => Some(f(&mut self.wire)),
            _ => None,
        }
    }

    pub(super) fn upstream_event(&mut self, world: &mut World, lane: Lane, ev: UpstreamEvent) {
        let cfg = Arc::clone(&self.cfg);
        match (&mut self.proto, &cfg.http, &cfg.tcp) {
            (Proto::H1(s), Some(h), _) => s.on_upstream(&mut self.wire, world, h, ev),
            (Proto::H2(s), _, _) => {
                if let Some(h2) = &cfg.h2 {
                    s.on_upstream(lane, &mut self.wire, world, h2, ev)
                }
            }
            (Proto::Tcp(s), _, Some(t)) => s.on_upstream(&mut self.wire, world, t, ev),
            _ => {}
        }
    }

    pub(super) fn abort(&mut self, world: &mut World, term: Term) {
        match &mut self.proto {
            Proto::H1(s) => s.abort(world, term),
            Proto::H2(s) => s.abort(world, term),
            Proto::Tcp(s) => s.abort(term),
        }
    }

    fn deadline(&self, world: &World) -> Option<u64> {
        let session = match (&self.proto, &self.cfg.http, &self.cfg.tcp) {
            (Proto::H1(s), Some(h), _) => s.deadline(&self.wire, world, h),
            (Proto::H2(s), _, _) => self
                .cfg
                .h2
                .as_ref()
                .and_then(|h2| s.deadline(&self.wire, world, h2)),
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

    /// Between requests with nothing buffered or in flight, over a plain transport: the
    /// connection could take the compact idle form.
    pub(super) fn may_compact(&self) -> bool {
        let Proto::H1(s) = &self.proto else {
            return false;
        };
        s.is_idle(&self.wire)
            && self.tls.is_none()
            && !self.has_upstream()
            && self.closing.is_none()
            && self.splice.iter().all(Option::is_none)
            && self.wire.tx[CLIENT].is_empty()
            && self.sock.idle_send()
            && !self.sock.poll_in
            && !self.sock.poll_out
            && !self.sock.closing
            && !self.sock.eof
    }

    pub(super) fn splice_event(&mut self, world: &mut World, dir: usize, ev: SpliceEv) {
        let cfg = Arc::clone(&self.cfg);
        match (&mut self.proto, ev) {
            (Proto::H1(s), SpliceEv::Started) => s.on_splice_started(dir),
            (Proto::H1(s), SpliceEv::Refused) => s.on_splice_refused(dir),
            (Proto::H1(s), SpliceEv::Moved(n)) => s.on_spliced(dir, n),
            (Proto::H1(s), SpliceEv::Done(end)) => {
                s.on_splice_done(&mut self.wire, world, dir, end)
            }
            (Proto::H2(_), _) => {}
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
pub(super) enum SpliceEv {
    Started,
    Refused,
    Moved(u64),
    Done(SpliceEnd),
}

impl Shard {
    pub(super) fn stream(&mut self, slot: u32) -> Option<&mut StreamConn> {
        match self.slab.get_mut(slot)? {
            Conn::Stream(c) => Some(c),
            _ => None,
        }
    }

    /// The kernel does not take a byte limit on multishot recvs: arm them without it from now on.
    pub(super) fn recv_limit_refused(&mut self) {
        if self.ring.recv_limit {
            self.ring.recv_limit = false;
            tracing::debug!(
                shard = self.world.shard,
                "kernel refuses a byte limit on multishot recv (needs Linux >= 6.17); arming without"
            );
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
            lanes_up: Vec::new(),
            splice: [None, None],
            closing: None,
            timer_at: None,
            queued: false,
            again: false,
            opened_ms: now,
            opened_us: self.world.now_us,
            tls_started_us: 0,
        };
        let listener = conn.cfg.id;
        let Some(key) = self.slab.insert(Conn::Stream(Box::new(conn))) else {
            self.world.stats.rejected += 1;
            sys::close(fd);
            return;
        };
        self.world.stats.active += 1;
        self.world.listener_conn(listener, true);
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
                                    if was && s.tls_started_us == 0 {
                                        s.tls_started_us = self.world.now_us.max(1);
                                    }
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
                    Received::Refused => self.recv_limit_refused(),
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
                // A new request uses the listener's settings as they are now (a reload may have
                // replaced them since this connection was accepted). HTTP/2 takes them at once:
                // its streams read them as they start, and a removed listener means GOAWAY.
                let fresh_point = match &c.proto {
                    Proto::H1(s) => s.between_requests(),
                    Proto::H2(_) => true,
                    Proto::Tcp(_) => false,
                };
                if fresh_point
                    && let Some(l) = self.listeners.get(&c.cfg.id)
                    && !Arc::ptr_eq(&l.cfg, &c.cfg)
                {
                    match (&c.proto, &l.cfg.h2, &c.cfg.h2) {
                        // A reload turned HTTP/2 off: this connection keeps its HTTP/2 settings
                        // and goes away as on a drain (GOAWAY; the streams in flight finish).
                        (Proto::H2(_), None, Some(old)) => {
                            if !old.h1.draining {
                                let mut h2 = old.clone();
                                h2.h1.draining = true;
                                let mut cfg = (*l.cfg).clone();
                                cfg.h2 = Some(h2);
                                c.cfg = Arc::new(cfg);
                            }
                        }
                        _ => c.cfg = Arc::clone(&l.cfg),
                    }
                }
                c.progress(world);
            }
            let mut any = false;
            while let Some((lane, intent)) = self.stream(slot).and_then(|c| c.proto.pop_intent()) {
                any = true;
                self.apply_intent(slot, lane, intent);
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

    fn apply_intent(&mut self, slot: u32, lane: Lane, intent: Intent) {
        match intent {
            Intent::Connect {
                backend,
                server,
                allow_pool,
            } => self.attach_upstream(slot, lane, backend, server, allow_pool),
            Intent::Release { reusable } => self.release_upstream(slot, lane, reusable),
            Intent::Enqueue { backend } => {
                if let (Some(key), Some(b)) =
                    (self.slab.key(slot), self.world.backends.get_mut(&backend))
                {
                    b.queue.push_back((key, lane));
                    self.world.queued += 1;
                }
            }
            Intent::Dequeue { backend } => self.dequeue(slot, lane, backend),
            Intent::Log(rec) => self.write_log(slot, &rec),
            Intent::Close(term) => {
                self.release_all_upstreams(slot);
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

    fn dequeue(&mut self, slot: u32, lane: Lane, backend: BackendId) {
        let Some(key) = self.slab.key(slot) else {
            return;
        };
        if let Some(b) = self.world.backends.get_mut(&backend) {
            let before = b.queue.len();
            b.queue.retain(|&q| q != (key, lane));
            self.world.queued = self.world.queued.saturating_sub(before - b.queue.len());
        }
    }

    /// Starts closing a client connection: its upstream is released, every op cancelled.
    pub(super) fn begin_close_stream(&mut self, slot: u32) {
        self.release_all_upstreams(slot);
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
        let queued_on: Vec<BackendId> = match &c.proto {
            Proto::H1(s) => s.queued_on().into_iter().collect(),
            Proto::H2(s) => s.queued_on().collect(),
            Proto::Tcp(_) => Vec::new(),
        };
        for b in queued_on {
            if let Some(backend) = self.world.backends.get_mut(&b) {
                let before = backend.queue.len();
                backend.queue.retain(|(k, _)| k.slot != slot);
                self.world.queued = self
                    .world
                    .queued
                    .saturating_sub(before - backend.queue.len());
            }
        }
        self.world.stats.closed += 1;
        self.world.stats.active = self.world.stats.active.saturating_sub(1);
        self.world.listener_conn(c.cfg.id, false);
        if let Proto::Tcp(_) = &c.proto {
            let lived_us = self.world.now_us.saturating_sub(c.opened_us);
            self.world.record_listener(
                c.cfg.id,
                crate::latency::LatencyKind::TcpConnection,
                lived_us,
            );
        }
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
                (Proto::H2(s), _, _) => {
                    if let Some(h2) = &cfg.h2 {
                        s.on_timer(&mut c.wire, world, h2)
                    }
                }
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
    pub(super) fn on_dequeued(&mut self, key: Key, lane: Lane) {
        let world = &mut self.world;
        if let Some(Conn::Stream(c)) = self.slab.get_key_mut(key) {
            let cfg = Arc::clone(&c.cfg);
            match (&mut c.proto, &cfg.http, &cfg.h2) {
                (Proto::H1(s), Some(h), _) => s.on_dequeued(&mut c.wire, world, h),
                (Proto::H2(s), _, Some(h2)) => s.on_dequeued(lane, &mut c.wire, world, h2),
                _ => {}
            }
            self.mark_dirty(key.slot);
        }
    }

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
        let server_cfg = backend.zip(rec.server).and_then(|(b, s)| b.cfg.server(s));
        let server = server_cfg.map_or_else(|| "-".to_string(), |s| s.address.to_string());
        let server_name = server_cfg.map_or("-", |s| s.name.as_str());
        let tls_version = c.tls.as_ref().and_then(|t| t.version());
        let sni = c.tls.as_ref().and_then(|t| t.sni());
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
            request_us: rec.request_us,
            queue_us: rec.queue_us,
            connect_us: rec.connect_us,
            response_us: rec.response_us,
            retries: rec.retries,
            server_name,
            tls_version,
            sni,
            proto: rec.proto,
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
                Proto::H2(h) => h.client = *src,
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
            let took_us = world.now_us.saturating_sub(s.tls_started_us);
            world.record_listener(s.cfg.id, crate::latency::LatencyKind::TlsHandshake, took_us);
            tracing::trace!(shard = world.shard, sni = ?tls.sni(), "TLS handshake done");
        }
    }
}
