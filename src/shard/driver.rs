//! Owns: one shard's loop — its ring, buffer ring, pipe pool, the one slab of connections, the
//! one timer wheel, its listeners, its backends ([`World`]) and counters — and the paths every
//! connection kind shares: accept, completion dispatch by slot, timers, applying configuration
//! changes between loop turns, drain, and the report for /stats.
//! Must not: share any of that with another shard, or block: the control thread reaches the shard
//! only through [`ShardMsg`]s on a bounded queue plus a write to the shard's eventfd.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use io_uring::{opcode, types};

use super::listener::ListenerCfg;
use super::ring::{BufRing, Completion, Op, Ring, Tag, TaskRun};
use super::slab::{Key, Slab};
use super::stream::{Proto, StreamConn};
use super::transport::Tls;
use super::{BootError, Conn, EventSender, ShardEvent, ShardMsg, sys};
use crate::access_log::Sink;
use crate::balancer::Candidates;
use crate::ids::{BackendId, IdMap, ListenerId, ServerId};
use crate::latency::{LatencyKind, LatencySet};
use crate::pipes::PipePool;
use crate::session::h1::H1Session;
use crate::session::tcp::TcpSession;
use crate::session::{Env, ExchangeDone, LatencyAt, Pick, Term, TimeoutsMs};
use crate::stats::{ListenerStats, ShardReport, ShardStats};
use crate::timer::{TimerKey, TimerWheel};
use crate::upstream::{Backend, BackendCfg, Ejected, Outcome};

/// Granularity of connect/idle/drain deadlines.
pub(super) const TIMER_TICK_MS: u64 = 50;
const TIMER_SLOTS: usize = 4096;
const SQ_ENTRIES: u32 = 1024;
const CQ_ENTRIES: u32 = 8192;
/// Bytes decrypted in one step (one TLS record's plaintext).
const SCRATCH_BYTES: usize = 16 * 1024;

/// What sessions see of the shard: the clock, counters and backends. Kept apart from the slab so a
/// session (inside the slab) and its environment can be borrowed at once.
pub(super) struct World {
    pub shard: usize,
    /// The shard clock, read once per loop turn (after `io_uring_enter` returns): every
    /// completion of a turn is stamped with the time it was reaped. `now_ms` is `now_us / 1000`.
    pub now_ms: u64,
    pub now_us: u64,
    /// Latency histograms are kept (`crate::latency::histograms_enabled`).
    pub histograms: bool,
    /// Per-listener counters and histograms on this shard (by id; kept while the listener is).
    pub listeners: IdMap<ListenerId, ListenerRt>,
    pub draining: bool,
    pub stats: ShardStats,
    pub backends: IdMap<BackendId, Backend>,
    /// Passive-health ejections to tell the control thread (coalesced, never dropped).
    pub ejected: Vec<Ejected>,
    pub timeouts: TimeoutsMs,
    /// Requests waiting in backend queues, over all backends.
    pub queued: usize,
    /// Finished HTTP/2 streams kept for the next ones (bounded).
    pub h2_spares: crate::session::h2::SpareStreams,
}

/// What this shard counts and records for one listener.
pub(super) struct ListenerRt {
    pub stats: ListenerStats,
    /// `None`: histograms off.
    pub latency: Option<LatencySet>,
}

impl World {
    /// Connections of listener `id` opened (`true`) or closed on this shard.
    pub(super) fn listener_conn(&mut self, id: ListenerId, opened: bool) {
        if let Some(l) = self.listeners.get_mut(&id) {
            if opened {
                l.stats.active += 1;
            } else {
                l.stats.active = l.stats.active.saturating_sub(1);
            }
        }
    }

    /// Records `value_us` as `kind` for listener `id` (TLS handshakes, TCP connections).
    pub(super) fn record_listener(&mut self, id: ListenerId, kind: LatencyKind, value_us: u64) {
        if let Some(set) = self.listeners.get_mut(&id).and_then(|l| l.latency.as_mut()) {
            set.record(kind, value_us);
        }
    }
}

impl Env for World {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn now_us(&self) -> u64 {
        self.now_us
    }

    fn record(&mut self, at: LatencyAt, kind: LatencyKind, value_us: u64) {
        match at {
            LatencyAt::Listener(id) => self.record_listener(id, kind, value_us),
            LatencyAt::Backend(id) => {
                if let Some(set) = self.backends.get_mut(&id).and_then(|b| b.latency_mut()) {
                    set.record(kind, value_us);
                }
            }
        }
    }

    fn exchange_done(&mut self, d: &ExchangeDone) {
        // A 101 ends when its tunnel does (a WebSocket may live for hours): counted as a request,
        // but its life is no request time.
        let request_us = (d.status != 101).then_some(d.request_us);
        if let Some(l) = self.listeners.get_mut(&d.listener) {
            l.stats.http_requests += 1;
            l.stats.http_status.count(d.status);
            l.stats.bytes_client_to_server += d.bytes_received;
            l.stats.bytes_server_to_client += d.bytes_sent;
            if let (Some(set), Some(us)) = (&mut l.latency, request_us) {
                set.record(LatencyKind::Request, us);
            }
        }
        if let Some(b) = d.backend.and_then(|id| self.backends.get_mut(&id)) {
            b.exchange_done(d.server, request_us, d.bytes_received, d.bytes_sent);
        }
    }

    fn draining(&self) -> bool {
        self.draining
    }

    fn stats(&mut self) -> &mut ShardStats {
        &mut self.stats
    }

    fn h2_spares(&mut self) -> &mut crate::session::h2::SpareStreams {
        &mut self.h2_spares
    }

    fn backend(&self, id: BackendId) -> Option<&BackendCfg> {
        self.backends.get(&id).map(|b| &b.cfg)
    }

    fn pick(
        &mut self,
        backend: BackendId,
        candidates: &mut Candidates,
        key: Option<u64>,
        sticky: Option<ServerId>,
    ) -> Pick {
        match self.backends.get_mut(&backend) {
            Some(b) => b.pick(candidates, key, sticky),
            None => Pick::Unavailable,
        }
    }

    fn outcome(&mut self, backend: BackendId, server: ServerId, outcome: Outcome) {
        if let Some(e) = self
            .backends
            .get_mut(&backend)
            .and_then(|b| b.outcome(server, outcome))
            && !self.ejected.contains(&e)
        {
            self.ejected.push(e);
        }
    }
}

/// One listener as this shard runs it.
pub(super) struct ListenerSlot {
    pub fd: i32,
    pub cfg: Arc<ListenerCfg>,
    /// A multishot accept is in flight.
    pub accepting: bool,
    /// The fd has been closed (drain or removal).
    pub closed: bool,
    /// Accept failed for lack of fds; re-arm on the next tick instead of spinning.
    pub paused: bool,
    /// Removed by a reload: stops accepting; kept (closed) while its connections log through it.
    pub removing: bool,
    pub sink: Option<Sink>,
}

/// What kind of client connection an accepted (or detected) socket becomes.
#[derive(Debug, Clone, Copy)]
pub(super) enum ClientKind {
    /// HTTP, behind TLS termination when `tls`.
    Http { tls: bool },
    /// TCP to `backend` (detect's TCP and TLS passthrough clients), or the listener's own TCP
    /// settings when `None`.
    Tcp { backend: Option<BackendId> },
}

pub struct Shard {
    // Field order matters for Drop: the ring goes before the buffer ring it references.
    pub(super) ring: Ring,
    pub(super) bufs: BufRing,
    pub(super) pipes: PipePool,
    pub(super) slab: Slab<Conn>,
    pub(super) world: World,
    pub(super) listeners: IdMap<ListenerId, ListenerSlot>,
    pub(super) timers: TimerWheel,
    expired: Vec<TimerKey>,
    rx: Receiver<ShardMsg>,
    wake_fd: Arc<OwnedFd>,
    /// The eventfd read's 8-byte destination. Leaked on purpose: the kernel may still write it
    /// while the ring is being torn down, so it must never be freed.
    wake_buf: &'static mut u64,
    /// The tick timeout's interval, leaked for the same reason as `wake_buf`.
    tick_spec: &'static types::Timespec,
    tick_multishot: bool,
    completions: Vec<Completion>,
    /// Client connections to drive at the end of this turn.
    pub(super) dirty: Vec<u32>,
    /// Sockets whose recv ended with ENOBUFS, re-armed once buffers come back.
    pub(super) waiting_bufs: Vec<Key>,
    pub(super) scratch: Box<[u8]>,
    /// Boxes of connections that went idle, reused as they are for the next active one (the
    /// slab holds boxes, so these move back without a copy or an allocation).
    #[allow(clippy::vec_box)]
    pub(super) idle_cache: Vec<Box<StreamConn>>,
    pub(super) detect_pending: usize,
    epoch: Instant,
    pub(super) drain_deadline_ms: Option<u64>,
    conns_max: usize,
    events: EventSender,
    pub(super) shard_count: usize,
    pub(super) expire_buf: Vec<Key>,
}

impl Shard {
    pub(super) fn boot(
        id: usize,
        shard_count: usize,
        global: &crate::config::Global,
        timeouts: TimeoutsMs,
        rx: Receiver<ShardMsg>,
        wake_fd: Arc<OwnedFd>,
        events: EventSender,
    ) -> Result<Shard, BootError> {
        let ring = Ring::new(SQ_ENTRIES, CQ_ENTRIES)
            .map_err(|e| BootError::Ring(crate::startup::explain_ring_error(id, &e)))?;
        if ring.task_run == TaskRun::Cooperative {
            tracing::info!(
                shard = id,
                "kernel refused SINGLE_ISSUER|DEFER_TASKRUN (needs Linux >= 6.1); using COOP_TASKRUN"
            );
        }
        let bufs = BufRing::new(&ring, global.recv_buffer_bytes, global.recv_buffer_count, 0)
            .map_err(|source| BootError::BufRing { shard: id, source })?;
        let conns_max = global.conns_per_shard_max as usize;
        let mut shard = Shard {
            ring,
            bufs,
            pipes: PipePool::new(global.pipe_pool_max as usize, global.pipe_bytes),
            // Clients, their upstream connections and the pool: bounded by twice the client limit.
            slab: Slab::new(conns_max.saturating_mul(2).max(16)),
            world: World {
                shard: id,
                now_ms: 0,
                now_us: 0,
                histograms: crate::latency::histograms_enabled(),
                listeners: IdMap::default(),
                draining: false,
                stats: ShardStats::default(),
                backends: IdMap::default(),
                ejected: Vec::new(),
                timeouts,
                queued: 0,
                h2_spares: Default::default(),
            },
            listeners: IdMap::default(),
            timers: TimerWheel::new(TIMER_SLOTS, TIMER_TICK_MS, 0),
            expired: Vec::new(),
            rx,
            wake_fd,
            wake_buf: Box::leak(Box::new(0u64)),
            tick_spec: Box::leak(Box::new(types::Timespec::from(Duration::from_millis(
                TIMER_TICK_MS,
            )))),
            tick_multishot: true,
            completions: Vec::with_capacity(CQ_ENTRIES as usize),
            dirty: Vec::new(),
            waiting_bufs: Vec::new(),
            scratch: vec![0u8; SCRATCH_BYTES].into_boxed_slice(),
            idle_cache: Vec::new(),
            detect_pending: 0,
            epoch: Instant::now(),
            drain_deadline_ms: None,
            conns_max,
            events,
            shard_count,
            expire_buf: Vec::new(),
        };
        shard.arm_wake();
        shard.arm_tick();
        Ok(shard)
    }

    pub(super) fn id(&self) -> usize {
        self.world.shard
    }

    pub(super) fn task_run(&self) -> TaskRun {
        self.ring.task_run
    }

    pub(super) fn stats(&self) -> ShardStats {
        self.world.stats
    }

    // ---- configuration -------------------------------------------------------------------------

    pub(super) fn arm_accept(&mut self, id: ListenerId) {
        let Some(l) = self.listeners.get_mut(&id) else {
            return;
        };
        if l.accepting || l.closed {
            return;
        }
        l.accepting = true;
        l.paused = false;
        let entry = opcode::AcceptMulti::new(types::Fd(l.fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(Tag::new(Op::Accept, id.0).encode());
        self.ring.push(entry);
    }

    /// Cancels every armed accept; `on_accept` arms a new one when the cancel completes, and a
    /// new accept tries the queue at once before it waits. An accept whose wakeup went elsewhere
    /// (accepts poll with EPOLLEXCLUSIVE: one waiter per new connection, and a waiter of another
    /// process that is cancelled at that moment takes the wakeup with it) thus takes what waits.
    fn rearm_accepts(&mut self) {
        if self.world.draining {
            return;
        }
        for (id, l) in self.listeners.iter() {
            if l.accepting && !l.closed && !l.removing {
                self.ring.push(
                    opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(l.fd)).all())
                        .build()
                        .user_data(Tag::new(Op::Cancel, id.0).encode()),
                );
            }
        }
    }

    fn arm_wake(&mut self) {
        let buf: *mut u64 = self.wake_buf;
        // SAFETY: `wake_buf` is leaked ('static), so the kernel's 8-byte write always lands in live
        // memory, even if it completes while the ring is torn down.
        let entry = opcode::Read::new(types::Fd(self.wake_fd.as_raw_fd()), buf.cast(), 8)
            .build()
            .user_data(Tag::new(Op::Wake, 0).encode());
        self.ring.push(entry);
    }

    /// Arms the periodic timeout that wakes the loop every tick. Multishot (Linux >= 6.4) when the
    /// kernel allows it, otherwise re-armed on each completion.
    fn arm_tick(&mut self) {
        let ts: *const types::Timespec = self.tick_spec;
        let mut op = opcode::Timeout::new(ts);
        if self.tick_multishot {
            op = op.flags(types::TimeoutFlags::MULTISHOT);
        }
        // SAFETY (pointer lifetime): `tick_spec` is leaked ('static); the kernel reads it at submit.
        let entry = op.build().user_data(Tag::new(Op::Tick, 0).encode());
        self.ring.push(entry);
    }

    fn on_tick_completion(&mut self, c: Completion) {
        if c.result == -libc::EINVAL && self.tick_multishot {
            tracing::debug!(
                shard = self.world.shard,
                "multishot timeout refused (Linux < 6.4); re-arming per tick"
            );
            self.tick_multishot = false;
        }
        if !c.more() {
            self.arm_tick();
        }
    }

    pub(super) fn run(&mut self) {
        let mut next_tick_ms = 0;
        loop {
            if let Err(e) = self.ring.submit_and_wait() {
                tracing::error!(shard = self.world.shard, error = %e, "io_uring_enter failed; shard stops");
                break;
            }
            // One clock read per turn (CLOCK_MONOTONIC through the vDSO; the coarse clock ticks
            // only every 1-4 ms, too coarse for sub-millisecond phases: see crate::latency).
            self.world.now_us = self.epoch.elapsed().as_micros() as u64;
            self.world.now_ms = self.world.now_us / 1000;
            let mut completions = std::mem::take(&mut self.completions);
            self.ring.drain_completions(&mut completions);
            for c in completions.drain(..) {
                self.dispatch(c);
            }
            self.completions = completions;
            self.retry_waiting_bufs();
            self.drive_dirty();
            if self.world.queued > 0 {
                self.dispatch_queues();
            }
            self.replicate_tls_sessions();
            self.send_events();
            for l in self.listeners.values_mut() {
                if let Some(sink) = &mut l.sink {
                    sink.flush();
                }
            }
            if self.world.now_ms >= next_tick_ms {
                self.on_tick();
                self.drive_dirty();
                next_tick_ms = self.world.now_ms + TIMER_TICK_MS;
            }
            if self.drain_deadline_ms.is_some()
                && self.slab.is_empty()
                && self.listeners.values().all(|l| l.closed)
            {
                break;
            }
        }
        for l in self.listeners.values_mut() {
            if let Some(sink) = &mut l.sink {
                sink.flush();
            }
        }
        tracing::debug!(shard = self.world.shard, "shard stopped");
    }

    fn drive_dirty(&mut self) {
        // Bounded: a drive may dirty others (a released connection's next owner), drained here.
        for _ in 0..4 {
            if self.dirty.is_empty() {
                return;
            }
            let dirty = std::mem::take(&mut self.dirty);
            for &slot in &dirty {
                self.drive(slot);
            }
            let mut dirty = dirty;
            dirty.clear();
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
        }
    }

    fn dispatch(&mut self, c: Completion) {
        let Some(tag) = Tag::decode(c.user_data) else {
            tracing::warn!(
                shard = self.world.shard,
                user_data = c.user_data,
                "completion with unknown tag"
            );
            return;
        };
        match tag.op {
            Op::Accept => self.on_accept(ListenerId(tag.slot), c),
            Op::Wake => self.on_control(),
            Op::Tick => self.on_tick_completion(c),
            Op::Cancel => {}
            Op::Connect | Op::Recv | Op::Send | Op::PollIn | Op::PollOut | Op::Nop => {
                match self.slab.get(tag.slot) {
                    Some(Conn::Stream(_)) => {
                        self.on_stream_completion(tag, c);
                        if matches!(tag.op, Op::PollIn | Op::PollOut) {
                            self.on_splice_ready(tag.slot);
                        }
                    }
                    Some(Conn::Upstream(u)) => {
                        let owner = u.owner;
                        let poll = matches!(tag.op, Op::PollIn | Op::PollOut);
                        self.on_upstream_completion(tag, c);
                        if poll && let Some(o) = owner {
                            self.on_splice_ready(o.slot);
                        }
                    }
                    Some(Conn::Idle(_)) => self.on_idle_completion(tag, c),
                    Some(Conn::Detect(_)) => self.on_detect_completion(tag, c),
                    None => {
                        // Nothing owns the slot any more: only a buffer may need to go back.
                        if let Some(bid) = c.buffer_id() {
                            self.bufs.taken();
                            self.bufs.put(bid);
                        }
                    }
                }
            }
        }
    }

    fn on_accept(&mut self, id: ListenerId, c: Completion) {
        let draining = self.world.draining;
        if c.result >= 0 {
            let fd = c.result;
            self.world.stats.accepted += 1;
            if let Some(l) = self.world.listeners.get_mut(&id) {
                l.stats.accepted += 1;
            }
            let Some(cfg) = self
                .listeners
                .get(&id)
                .filter(|l| !l.closed)
                .map(|l| Arc::clone(&l.cfg))
            else {
                sys::close(fd);
                return;
            };
            // While draining, what still arrives was accepted by the kernel before our cancel
            // took effect: a client whose handshake completed. It is served under the drain
            // deadline rather than reset (after a binary upgrade the new process would have
            // served it).
            if self.world.stats.active as usize >= self.conns_max {
                self.world.stats.rejected += 1;
                sys::close(fd);
            } else if cfg.detect.is_some() {
                self.open_detect(fd, cfg);
            } else if cfg.http.is_some() {
                let tls = cfg.tls.is_some();
                self.open_client(fd, &cfg, ClientKind::Http { tls });
            } else {
                self.open_client(fd, &cfg, ClientKind::Tcp { backend: None });
            }
        } else {
            let errno = -c.result;
            if errno == libc::EMFILE || errno == libc::ENFILE || errno == libc::ENOMEM {
                tracing::warn!(
                    shard = self.world.shard,
                    errno,
                    "accept failed: out of file descriptors or memory; pausing accepts for a tick (raise RLIMIT_NOFILE, see tuning/)"
                );
                if let Some(l) = self.listeners.get_mut(&id) {
                    l.paused = true;
                }
            } else if errno != libc::ECANCELED {
                tracing::debug!(shard = self.world.shard, errno, "accept error");
            }
        }
        if !c.more() {
            let Some(l) = self.listeners.get_mut(&id) else {
                return;
            };
            l.accepting = false;
            if draining || l.removing {
                if !l.closed {
                    l.closed = true;
                    sys::close(l.fd);
                }
            } else if !l.paused {
                self.arm_accept(id);
            }
        }
    }

    /// Turns an accepted (or detected) socket into a client connection of `kind`.
    pub(super) fn open_client(&mut self, fd: i32, cfg: &Arc<ListenerCfg>, kind: ClientKind) {
        let now = self.world.now_ms;
        let Some(peer) = sys::peer_addr(fd) else {
            self.world.stats.closed += 1;
            sys::close(fd);
            return;
        };
        let tls_for = |cfg: &ListenerCfg| -> Result<Option<Box<Tls>>, ()> {
            match &cfg.tls {
                Some(t) => match rustls::ServerConnection::new(Arc::clone(&t.config)) {
                    Ok(conn) => Ok(Some(Box::new(Tls::new(
                        rustls::Connection::Server(conn),
                        t.accept_proxy,
                    )))),
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS connection setup failed");
                        Err(())
                    }
                },
                None => Ok(None),
            }
        };
        let (proto, tls) = match kind {
            ClientKind::Http { tls } => {
                let transport = if tls { tls_for(cfg) } else { Ok(None) };
                let Ok(transport) = transport else {
                    sys::close(fd);
                    return;
                };
                let accept_proxy = transport.is_none() && cfg.http_accept_proxy;
                (
                    Proto::H1(H1Session::new(peer, transport.is_some(), accept_proxy, now)),
                    transport,
                )
            }
            ClientKind::Tcp { backend } => {
                let Some(tcp) = &cfg.tcp else {
                    sys::close(fd);
                    return;
                };
                let (tcp, transport) = match backend {
                    // Detect: TCP or TLS passthrough to this backend, plain.
                    Some(b) => (
                        crate::session::tcp::TcpCfg {
                            backend: Some(b),
                            sni: None,
                            accept_proxy: false,
                            ..tcp.clone()
                        },
                        None,
                    ),
                    None => match tls_for(cfg) {
                        Ok(t) => (tcp.clone(), t),
                        Err(()) => {
                            sys::close(fd);
                            return;
                        }
                    },
                };
                let session = TcpSession::new(&tcp, Some(peer), now);
                let cfg = if backend.is_some() {
                    Arc::new(ListenerCfg {
                        tcp: Some(tcp),
                        ..(**cfg).clone()
                    })
                } else {
                    Arc::clone(cfg)
                };
                self.open_stream(fd, cfg, Proto::Tcp(session), transport, peer);
                return;
            }
        };
        self.open_stream(fd, Arc::clone(cfg), proto, tls, peer);
    }

    fn on_control(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                ShardMsg::Stats { reply } => {
                    let _ = reply.send(self.report());
                }
                ShardMsg::Drain { deadline } => self.start_drain(deadline),
                ShardMsg::Apply { ops, done } => {
                    let result = self.apply(ops).map_err(|e| e.to_string());
                    let _ = done.send(result);
                }
                ShardMsg::ServerHealth {
                    backend,
                    server,
                    up,
                } => self.set_server_health(backend, server, up),
                ShardMsg::RearmAccepts => self.rearm_accepts(),
                ShardMsg::TlsSessions { listener, entries } => {
                    if let Some(cache) = self
                        .listeners
                        .get(&listener)
                        .and_then(|l| l.cfg.tls.as_ref())
                        .and_then(|t| t.cache.as_ref())
                    {
                        for (k, v) in entries.iter() {
                            cache.insert_replica(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
        self.arm_wake();
    }

    /// A health check changed a server's state: the balancer skips a DOWN server from now on,
    /// and its idle pooled connections are closed.
    fn set_server_health(&mut self, backend: BackendId, server: ServerId, up: bool) {
        let Some(b) = self.world.backends.get_mut(&backend) else {
            return;
        };
        b.set_up(server, up);
        if !up {
            let mut out = Vec::new();
            b.pool.take_server(server, &mut out);
            for k in out {
                self.close_upstream(k.slot);
                self.try_free_upstream(k.slot);
            }
        }
    }

    /// This shard's counters and per-backend report (backends in id order, which is file order).
    fn report(&self) -> ShardReport {
        let mut ids: Vec<&BackendId> = self.world.backends.keys().collect();
        ids.sort();
        let mut listener_ids: Vec<&ListenerId> = self.world.listeners.keys().collect();
        listener_ids.sort();
        ShardReport {
            shard: self.world.shard,
            stats: self.world.stats,
            backends: ids
                .into_iter()
                .filter_map(|id| self.world.backends.get(id))
                .map(|b| b.report())
                .collect(),
            listeners: listener_ids
                .into_iter()
                // A listener removed by a reload leaves the report with it.
                .filter(|id| self.listeners.get(*id).is_some_and(|l| !l.removing))
                .filter_map(|id| self.world.listeners.get(id))
                .map(|l| ListenerStats {
                    latency_set: l.latency.clone(),
                    ..l.stats.clone()
                })
                .collect(),
        }
    }

    /// Starts queued requests for which a server has room again, oldest first.
    fn dispatch_queues(&mut self) {
        let ids: Vec<BackendId> = self.world.backends.keys().copied().collect();
        for id in ids {
            while let Some(b) = self.world.backends.get_mut(&id) {
                if b.queue.is_empty() || !b.any_available() {
                    break;
                }
                let Some((key, lane)) = b.queue.pop_front() else {
                    break;
                };
                self.world.queued = self.world.queued.saturating_sub(1);
                self.on_dequeued(key, lane);
                self.drive_dirty();
            }
        }
    }

    /// Sends what the control thread must hear; what does not fit the bounded channel waits for
    /// the next turn (ejections are never dropped).
    fn send_events(&mut self) {
        while let Some(e) = self.world.ejected.first().copied() {
            match self.events.try_send(ShardEvent::Eject {
                backend: e.backend,
                server: e.server,
            }) {
                Ok(()) => {
                    self.world.ejected.remove(0);
                }
                Err(_) => break,
            }
        }
    }

    /// Copies the TLS sessions this shard created since the last turn to the other shards
    /// (through the control thread), one batch per TLS listener. Best effort.
    fn replicate_tls_sessions(&mut self) {
        if self.shard_count < 2 {
            return;
        }
        for (id, l) in &self.listeners {
            let Some(cache) = l.cfg.tls.as_ref().and_then(|t| t.cache.as_ref()) else {
                continue;
            };
            let entries = cache.drain_outbox();
            if !entries.is_empty() {
                let _ = self.events.try_send(ShardEvent::TlsSessions {
                    from: self.world.shard,
                    listener: *id,
                    entries,
                });
            }
        }
    }

    fn on_tick(&mut self) {
        let now = self.world.now_ms;
        if !self.world.draining {
            let paused: Vec<ListenerId> = self
                .listeners
                .iter()
                .filter(|(_, l)| l.paused)
                .map(|(id, _)| *id)
                .collect();
            for id in paused {
                self.arm_accept(id);
            }
        }
        let mut expired = std::mem::take(&mut self.expired);
        self.timers.expire(now, &mut expired);
        for key in expired.drain(..) {
            let k = Key {
                slot: key.slot,
                generation: key.generation,
            };
            match self.slab.get_key_mut(k) {
                Some(Conn::Stream(_)) => self.on_stream_timer(k.slot),
                Some(Conn::Idle(i)) => {
                    i.timer_at = None;
                    match self.idle_deadline(k.slot) {
                        Some(d) if now >= d => {
                            self.world.stats.idle_timeouts += 1;
                            self.free_idle(k.slot, Term::Timeout);
                        }
                        Some(d) => {
                            self.timers.insert(key, d);
                            if let Some(Conn::Idle(i)) = self.slab.get_key_mut(k) {
                                i.timer_at = Some(d);
                            }
                        }
                        None => {}
                    }
                }
                Some(Conn::Detect(_)) => self.on_detect_timer(k.slot),
                Some(Conn::Upstream(_)) | None => {}
            }
        }
        self.expired = expired;
        self.detect_on_tick();
        let mut out = std::mem::take(&mut self.expire_buf);
        for b in self.world.backends.values_mut() {
            b.pool.expire(now, b.cfg.idle_timeout_ms, &mut out);
        }
        for k in out.drain(..) {
            self.close_upstream(k.slot);
            self.try_free_upstream(k.slot);
        }
        self.expire_buf = out;
        if self.world.draining {
            self.close_idle_for_drain();
        }
        if let Some(deadline) = self.drain_deadline_ms
            && now >= deadline
        {
            self.close_all_for_drain();
        }
    }
}
