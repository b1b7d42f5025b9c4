//! Owns: one shard — a thread pinned to one CPU that runs its own io_uring ring, buffer ring,
//! pipe pool, listeners, connections, balancers, timers and counters.
//! Must not: share any of that with another shard. The control thread reaches a shard only by a
//! message on a bounded queue plus a write to the shard's eventfd, which the ring reads.
//!
//! Life of a shard: `spawn` (on the main thread: listening sockets are already bound) -> `boot`
//! (on the shard thread: pin, ring, buffer ring, arm accepts) -> `run` (one submit_and_wait per
//! turn) -> drain (listeners closed, connections finish or are closed at the deadline) -> exit.

mod conn;
mod detect;
mod http;
pub mod listener;
pub mod ring;
pub mod slab;
pub mod sys;
mod tls;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use io_uring::{opcode, types};

use crate::access_log::Sink;
use crate::balancer::{
    Algorithm, LeastConn, Maglev, PowerOfTwo, ServerView, SmoothWeightedRoundRobin, hash_bytes,
};
use crate::config::{Balance, HashKey};
use crate::config::{Config, SpliceMode};
use crate::pipes::PipePool;
use crate::stats::{BackendStats, ServerStats, ShardReport, ShardStats};
use crate::timer::{TimerKey, TimerWheel};
use conn::Conn;
use ring::{BufRing, Completion, Op, OpKind, Ring, TaskRun};

/// Messages from the control thread. Bounded queue: `SHARD_QUEUE_MAX` entries.
pub enum ShardMsg {
    /// Stop accepting; close what is still open at `deadline`.
    Drain { deadline: Instant },
    /// Send a copy of this shard's counters.
    Stats {
        reply: tokio::sync::oneshot::Sender<ShardReport>,
    },
    /// A health check changed a server's state (sent to every shard).
    ServerHealth {
        backend: usize,
        server: usize,
        up: bool,
    },
    /// TLS sessions another shard created for TLS listener `listener` (index in every shard's
    /// `tls_listeners`): add them to this shard's session cache.
    TlsSessions {
        listener: usize,
        entries: Arc<Vec<(Vec<u8>, Vec<u8>)>>,
    },
}

const SHARD_QUEUE_MAX: usize = 64;
/// Granularity of connect/idle/drain deadlines.
const TIMER_TICK_MS: u64 = 50;
const TIMER_SLOTS: usize = 4096;
const SQ_ENTRIES: u32 = 1024;
const CQ_ENTRIES: u32 = 8192;
/// Buffers queued in one direction before its multishot recv is cancelled (backpressure): the
/// direction re-arms only after the queue has been sent on. A few more may land while the cancel
/// is in flight; every one of them is a buffer of the fixed per-shard ring, so memory stays
/// bounded by `recv_buffer_count * recv_buffer_size` per shard whatever the peers do.
const QUEUE_SOFT_MAX: usize = 4;

/// The control side of one shard.
pub struct ShardHandle {
    pub id: usize,
    tx: SyncSender<ShardMsg>,
    wake: Arc<OwnedFd>,
    pub join: Option<JoinHandle<ShardExit>>,
}

/// What a shard thread returns when it stops.
#[derive(Debug, Clone, Copy)]
pub struct ShardExit {
    pub id: usize,
    pub stats: ShardStats,
}

impl ShardHandle {
    /// Queues `msg` and wakes the shard. Fails only if the shard has exited or its queue is full.
    pub fn send(&self, msg: ShardMsg) -> Result<(), ShardMsg> {
        match self.tx.try_send(msg) {
            Ok(()) => {
                wake(self.wake.as_raw_fd());
                Ok(())
            }
            Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => Err(m),
        }
    }

    pub fn waker(&self) -> Arc<OwnedFd> {
        Arc::clone(&self.wake)
    }
}

fn wake(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Why a shard could not boot, as an operator needs to hear it.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{0}")]
    Ring(String),
    #[error("shard {shard}: registering the buffer ring failed: {source}")]
    BufRing {
        shard: usize,
        #[source]
        source: io::Error,
    },
    #[error("shard {shard}: cannot open the access log of listener `{listener}`: {source}")]
    AccessLog {
        shard: usize,
        listener: String,
        #[source]
        source: io::Error,
    },
    #[error("shard {shard}: TLS on {listener}: {source}")]
    Tls {
        shard: usize,
        listener: String,
        #[source]
        source: crate::tls::server::TlsSetupError,
    },
    #[error("shard {shard}: eventfd: {source}")]
    EventFd {
        shard: usize,
        #[source]
        source: io::Error,
    },
}

/// Listening sockets already bound for one shard: (config listener index, fd).
pub type ShardListeners = Vec<(usize, RawFd)>;

/// Starts one shard thread. Returns once the shard has booted (or failed to).
/// What a shard tells the control thread (rare events, never per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardEvent {
    /// `passive.failures` consecutive failures (connect errors or 5xx) on this shard: the
    /// control thread marks the server DOWN on every shard for `passive.backoff`.
    Eject { backend: usize, server: usize },
    /// TLS sessions shard `from` created on TLS listener `listener` since its last report (one
    /// batch per loop turn at most): the control thread copies them to the other shards.
    TlsSessions {
        from: usize,
        listener: usize,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

pub type EventSender = tokio::sync::mpsc::UnboundedSender<ShardEvent>;

pub fn spawn(
    id: usize,
    cpu: Option<core_affinity::CoreId>,
    config: Arc<Config>,
    listeners: ShardListeners,
    started: Arc<Mutex<Vec<String>>>,
    events: EventSender,
) -> Result<ShardHandle, BootError> {
    // EFD_CLOEXEC only: the ring reads it, and a non-blocking eventfd would make that read fail
    // with EAGAIN instead of waiting.
    // SAFETY: plain syscall; the result is checked.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(BootError::EventFd {
            shard: id,
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: `efd` was just created and is owned only here.
    let wake_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
    let (tx, rx) = sync_channel(SHARD_QUEUE_MAX);
    let (boot_tx, boot_rx) = sync_channel::<Result<(), BootError>>(1);
    let thread_wake = Arc::clone(&wake_fd);
    let join = std::thread::Builder::new()
        .name(format!("ringway-shard-{id}"))
        .spawn(move || {
            if let Some(core) = cpu
                && !core_affinity::set_for_current(core)
            {
                tracing::warn!(shard = id, cpu = core.id, "could not pin shard to its CPU");
            }
            match Shard::boot(id, &config, listeners, rx, thread_wake, events) {
                Ok(mut shard) => {
                    if let Ok(mut s) = started.lock() {
                        s.push(format!(
                            "shard {id}: cpu {:?}, ring {:?}",
                            cpu.map(|c| c.id),
                            shard.ring.task_run
                        ));
                    }
                    let _ = boot_tx.send(Ok(()));
                    shard.run();
                    ShardExit {
                        id,
                        stats: shard.stats,
                    }
                }
                Err(e) => {
                    let _ = boot_tx.send(Err(e));
                    ShardExit {
                        id,
                        stats: ShardStats::default(),
                    }
                }
            }
        })
        .map_err(|e| BootError::Ring(format!("shard {id}: cannot start thread: {e}")))?;
    match boot_rx.recv() {
        Ok(Ok(())) => Ok(ShardHandle {
            id,
            tx,
            wake: wake_fd,
            join: Some(join),
        }),
        Ok(Err(e)) => {
            let _ = join.join();
            Err(e)
        }
        Err(_) => {
            let _ = join.join();
            Err(BootError::Ring(format!(
                "shard {id}: thread died during boot"
            )))
        }
    }
}

/// One configured listener as this shard runs it.
struct ListenerSlot {
    fd: RawFd,
    kind: ListenerKind,
    /// A multishot accept is in flight.
    accepting: bool,
    /// The fd has been closed (drain).
    closed: bool,
    /// Accept failed for lack of fds; re-arm on the next timer tick instead of spinning.
    paused: bool,
}

#[derive(Clone, Copy)]
enum ListenerKind {
    Tcp {
        backend: usize,
        splice: SpliceMode,
        accept_proxy: bool,
        peek_ms: u64,
    },
    /// TCP with SNI passthrough routing; index into `Shard::sni_routers`.
    TcpSni {
        router: usize,
        splice: SpliceMode,
        accept_proxy: bool,
        peek_ms: u64,
    },
    /// Index into `Shard::http_listeners`.
    Http { index: usize },
    /// TLS termination; index into `Shard::tls_listeners`.
    Tls { index: usize },
    /// Protocol detection; index into `Shard::detect_listeners`.
    Detect { index: usize },
}

/// What the HTTP path needs of one `mode = "http"` listener.
struct HttpListenerSlot {
    router: crate::router::Router,
    x_forwarded_for: bool,
    x_real_ip: bool,
    x_forwarded_proto: bool,
    forwarded: bool,
    head_bytes_max: u32,
    body_bytes_max: Option<u64>,
    splice: SpliceMode,
    access_log_on: bool,
    accept_proxy: bool,
}

impl BackendSlot {
    /// The server to try next: one the algorithm picks among those up, not full and not in
    /// `tried`. With `redispatch = false` a retry goes back to the first server tried.
    fn pick(&mut self, key: Option<u64>, tried: &[usize]) -> Option<usize> {
        self.pick_sticky(None, key, tried)
    }

    /// As `pick`, preferring `sticky` (the server named by the request's sticky cookie) while it is
    /// UP, available and not already tried; otherwise the balancer chooses (and the client is
    /// re-stuck to the new server).
    fn pick_sticky(
        &mut self,
        sticky: Option<usize>,
        key: Option<u64>,
        tried: &[usize],
    ) -> Option<usize> {
        if let Some(i) = sticky
            && !tried.contains(&i)
            && self.views.get(i).is_some_and(|v| v.up && v.available)
        {
            return Some(i);
        }
        if !self.redispatch
            && let Some(&first) = tried.first()
        {
            return self.views.get(first).is_some_and(|v| v.up).then_some(first);
        }
        for &t in tried {
            if let Some(v) = self.views.get_mut(t) {
                v.available = false;
            }
        }
        let picked = self.algo.pick(&self.views, key);
        for &t in tried {
            if let Some(v) = self.views.get_mut(t) {
                v.available = true;
            }
        }
        // Every server was tried: retry one of them again (a single-server backend retries
        // its only server, as HAProxy does).
        picked.or_else(|| {
            if tried.is_empty() {
                None
            } else {
                self.algo.pick(&self.views, key)
            }
        })
    }

    /// Counts a connection opened to (`delta` 1) or released from (-1) server `i` on this shard.
    fn count_active(&mut self, i: usize, opened: bool) {
        if opened && let Some(n) = self.selected.get_mut(i) {
            *n += 1;
        }
        if let Some(v) = self.views.get_mut(i) {
            v.active = if opened {
                v.active.saturating_add(1)
            } else {
                v.active.saturating_sub(1)
            };
            let limit = self.limits.get(i).copied().unwrap_or(0);
            v.available = limit == 0 || v.active < limit;
        }
    }

    /// No server can be picked only because servers in the tier are at their limit (queue
    /// rather than fail).
    fn all_full(&self) -> bool {
        let any_primary_up = self.views.iter().any(|v| v.up && v.weight > 0 && !v.backup);
        self.views
            .iter()
            .any(|v| v.up && v.weight > 0 && v.backup != any_primary_up && !v.available)
    }

    fn any_available(&self) -> bool {
        self.views
            .iter()
            .any(|v| v.up && v.weight > 0 && v.available)
    }
}

/// HTTP timeouts in milliseconds (resolved once at boot).
#[derive(Clone, Copy)]
struct HttpTimeoutsMs {
    connect: u64,
    client_idle: u64,
    server_idle: u64,
    http_request: u64,
    http_keep_alive: u64,
    server_response: u64,
    tunnel: u64,
}

/// One backend's servers as this shard connects to them.
struct BackendSlot {
    /// Socket addresses in the form connect(2) wants. Never resized after boot: connect SQEs point
    /// into it until submitted.
    addrs: Vec<socket2::SockAddr>,
    algo: Algorithm,
    /// What the algorithm sees of each server on this shard: weight, backup, health, open
    /// connections.
    views: Vec<ServerView>,
    hash_key: HashKey,
    retries: u32,
    redispatch: bool,
    /// Times each server was chosen on this shard (stats `selected`).
    selected: Vec<u64>,
    /// PROXY protocol header to send first, per server.
    send_proxy: Vec<Option<crate::proxy_protocol::ProxyVersion>>,
    /// Sticky session cookie name, and each server's name (the cookie value).
    sticky_cookie: Option<String>,
    server_names: Vec<String>,
    /// Per-server connection limit on this shard (ceil(maxconn / shards)); 0 = none.
    limits: Vec<u32>,
    /// Consecutive failures per server on this shard, and the ejection threshold (0 = off).
    fails: Vec<u32>,
    passive_failures: u32,
    /// HTTP requests waiting for a server under its limit: (slot, generation), oldest first.
    queue: VecDeque<(u32, u32)>,
    queue_max: usize,
    queue_timeout_ms: u64,
    /// Idle keep-alive connections (HTTP), per server.
    pool: http::Pool,
    idle_conns_max: usize,
    idle_timeout_ms: u64,
    /// TLS to the servers: this shard's client configuration and each server's verified name.
    tls: Option<UpstreamTlsSlot>,
}

struct UpstreamTlsSlot {
    config: Arc<rustls::ClientConfig>,
    names: Vec<rustls_pki_types::ServerName<'static>>,
}

/// Timeouts in milliseconds (resolved once at boot).
#[derive(Clone, Copy)]
struct TimeoutsMs {
    connect: u64,
    client_idle: u64,
    server_idle: u64,
}

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

pub struct Shard {
    id: usize,
    // Field order matters for Drop: the ring goes before the buffer ring it references.
    ring: Ring,
    bufs: BufRing,
    pipes: PipePool,
    listeners: Vec<ListenerSlot>,
    backends: Vec<BackendSlot>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    conns_max: usize,
    timers: TimerWheel,
    expired: Vec<TimerKey>,
    timeouts: TimeoutsMs,
    stats: ShardStats,
    rx: Receiver<ShardMsg>,
    wake_fd: Arc<OwnedFd>,
    /// The eventfd read's 8-byte destination. Leaked on purpose: the kernel may still write it
    /// while the ring is being torn down, so it must never be freed.
    wake_buf: &'static mut u64,
    /// The tick timeout's interval, leaked for the same reason as `wake_buf`.
    tick_spec: &'static types::Timespec,
    tick_multishot: bool,
    /// Directions whose recv ended with ENOBUFS, to re-arm once buffers come back.
    waiting_bufs: VecDeque<(u32, usize)>,
    epoch: Instant,
    now_ms: u64,
    drain_deadline_ms: Option<u64>,
    completions: Vec<Completion>,
    // HTTP listeners (shard/http.rs).
    http_slots: Vec<http::HttpSlot>,
    free_http_slots: Vec<u32>,
    http_listeners: Vec<HttpListenerSlot>,
    http_timeouts: HttpTimeoutsMs,
    http_waiting_bufs: Vec<(u32, usize)>,
    /// To the control thread (passive health ejections).
    events: EventSender,
    /// Requests waiting in backend queues (maxconn), over all backends of this shard.
    http_queued: usize,
    /// Backend sides detached with ops in flight: (slot, fd), closed when those complete.
    http_detaching: Vec<(u32, RawFd)>,
    backend_names: Vec<String>,
    backend_servers: Vec<Vec<std::net::SocketAddr>>,
    backend_stats: Vec<BackendStats>,
    /// Access log sink per HTTP listener (index as in `http_listeners`).
    access_logs: Vec<Option<Sink>>,
    /// SNI passthrough routers of TCP listeners.
    sni_routers: Vec<crate::router::Router>,
    // TLS termination (shard/tls.rs).
    tls_listeners: Vec<tls::TlsListenerSlot>,
    tls_slots: Vec<tls::TlsSlot>,
    free_tls_slots: Vec<u32>,
    /// Where decrypted bytes land before they are queued for the plaintext side.
    tls_scratch: Box<[u8]>,
    /// A TLS connection with no byte either way for this long is closed (the plaintext side
    /// applies the finer HTTP/TCP timeouts).
    tls_idle_ms: u64,
    // Protocol detection (shard/detect.rs).
    detect_listeners: Vec<detect::DetectListenerSlot>,
    detect_slots: Vec<detect::DetectSlot>,
    free_detect_slots: Vec<u32>,
    detect_pending: usize,
    /// Shards in this process (session replication is pointless with one).
    shard_count: usize,
}

impl Shard {
    fn boot(
        id: usize,
        config: &Config,
        listeners: ShardListeners,
        rx: Receiver<ShardMsg>,
        wake_fd: Arc<OwnedFd>,
        events: EventSender,
    ) -> Result<Shard, BootError> {
        let shard_count =
            config.shard_count(std::thread::available_parallelism().map_or(1, |n| n.get()));
        let ring = Ring::new(SQ_ENTRIES, CQ_ENTRIES)
            .map_err(|e| BootError::Ring(crate::startup::explain_ring_error(id, &e)))?;
        if ring.task_run == TaskRun::Cooperative {
            tracing::info!(
                shard = id,
                "kernel refused SINGLE_ISSUER|DEFER_TASKRUN (needs Linux >= 6.1); using COOP_TASKRUN"
            );
        }
        let g = &config.global;
        let bufs = BufRing::new(&ring, g.recv_buffer_bytes, g.recv_buffer_count, 0)
            .map_err(|source| BootError::BufRing { shard: id, source })?;
        let backends = config
            .backends
            .iter()
            .map(|b| {
                let tls = match &b.tls {
                    Some(t) => Some(UpstreamTlsSlot {
                        config: crate::tls::upstream::shard_client_config(t).map_err(|source| {
                            BootError::Tls {
                                shard: id,
                                listener: format!("backend {}", b.name),
                                source,
                            }
                        })?,
                        names: b
                            .servers
                            .iter()
                            .map(|s| crate::tls::upstream::server_name(t, s.address.ip()))
                            .collect(),
                    }),
                    None => None,
                };
                let views = b
                    .servers
                    .iter()
                    .map(|s| ServerView {
                        weight: s.weight,
                        backup: s.backup,
                        up: true,
                        available: true,
                        active: 0,
                        key: hash_bytes(s.name.as_bytes()),
                    })
                    .collect();
                let algo = match b.balance {
                    Balance::RoundRobin => {
                        Algorithm::RoundRobin(SmoothWeightedRoundRobin::new(b.servers.len(), id))
                    }
                    Balance::LeastConn => Algorithm::LeastConn(LeastConn::new(id)),
                    Balance::PowerOfTwo => Algorithm::PowerOfTwo(PowerOfTwo::new(id as u64)),
                    Balance::Maglev => Algorithm::Maglev(Maglev::new()),
                };
                Ok(BackendSlot {
                    addrs: b.servers.iter().map(|s| s.address.into()).collect(),
                    algo,
                    views,
                    hash_key: b.hash_key.clone(),
                    retries: b.retries,
                    redispatch: b.redispatch,
                    selected: vec![0; b.servers.len()],
                    send_proxy: b.servers.iter().map(|s| s.send_proxy).collect(),
                    sticky_cookie: b.sticky_cookie.clone(),
                    server_names: b.servers.iter().map(|s| s.name.clone()).collect(),
                    limits: b
                        .servers
                        .iter()
                        .map(|s| s.maxconn.div_ceil(shard_count.max(1) as u32))
                        .collect(),
                    queue: VecDeque::new(),
                    fails: vec![0; b.servers.len()],
                    passive_failures: b.passive.as_ref().map_or(0, |p| p.failures),
                    queue_max: b.queue_max as usize,
                    queue_timeout_ms: u64::try_from(b.queue_timeout.as_millis())
                        .unwrap_or(u64::MAX),
                    pool: http::Pool::new(b.servers.len()),
                    idle_conns_max: b.idle_conns_max as usize,
                    idle_timeout_ms: u64::try_from(b.idle_timeout.as_millis()).unwrap_or(u64::MAX),
                    tls,
                })
            })
            .collect::<Result<Vec<_>, BootError>>()?;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut http_listeners = Vec::new();
        let mut access_logs = Vec::new();
        let mut sni_routers = Vec::new();
        let mut listener_slots = Vec::new();
        let mut tls_listeners = Vec::new();
        let mut detect_listeners = Vec::new();
        for (index, fd) in listeners {
            let Some(l) = config.listeners.get(index) else {
                close_fd(fd);
                continue;
            };
            let http_index = match &l.http {
                Some(h) => {
                    let sink =
                        Sink::open(&h.access_log, h.access_log_format).map_err(|source| {
                            BootError::AccessLog {
                                shard: id,
                                listener: l.name.clone(),
                                source,
                            }
                        })?;
                    access_logs.push(sink);
                    http_listeners.push(HttpListenerSlot {
                        router: h.router.clone(),
                        x_forwarded_for: h.x_forwarded_for,
                        x_real_ip: h.x_real_ip,
                        x_forwarded_proto: h.x_forwarded_proto,
                        forwarded: h.forwarded,
                        head_bytes_max: h.head_bytes_max,
                        body_bytes_max: h.body_bytes_max,
                        splice: l.splice,
                        access_log_on: h.access_log != crate::config::AccessLog::Off,
                        // Behind TLS the PROXY header is read before the handshake instead.
                        accept_proxy: h.accept_proxy && l.tls.is_none(),
                    });
                    Some(http_listeners.len() - 1)
                }
                None => None,
            };
            let tls_index = match &l.tls {
                Some(t) => {
                    let then = match (http_index, l.backend) {
                        (Some(index), _) => tls::Then::Http { index },
                        (None, Some(backend)) => tls::Then::Tcp {
                            backend,
                            splice: l.splice,
                        },
                        (None, None) => {
                            close_fd(fd);
                            continue;
                        }
                    };
                    let (server_config, cache) = crate::tls::server::shard_server_config(t)
                        .map_err(|source| BootError::Tls {
                            shard: id,
                            listener: format!("listener `{}`", l.name),
                            source,
                        })?;
                    tls_listeners.push(tls::TlsListenerSlot {
                        config: server_config,
                        cache,
                        handshake_ms: u64::try_from(t.handshake_timeout.as_millis())
                            .unwrap_or(10_000),
                        then,
                        accept_proxy: l.accept_proxy,
                    });
                    Some(tls_listeners.len() - 1)
                }
                None => None,
            };
            let kind = if let (Some(d), Some(http)) = (&l.detect, http_index) {
                detect_listeners.push(detect::DetectListenerSlot {
                    http,
                    tls: tls_index,
                    tls_backend: d.tls_backend,
                    tcp_backend: d.tcp_backend,
                    splice: l.splice,
                    peek_ms: u64::try_from(l.peek_timeout.as_millis()).unwrap_or(5_000),
                });
                ListenerKind::Detect {
                    index: detect_listeners.len() - 1,
                }
            } else if let Some(index) = tls_index {
                ListenerKind::Tls { index }
            } else if let Some(index) = http_index {
                ListenerKind::Http { index }
            } else if let Some(sni) = &l.sni {
                sni_routers.push(sni.router.clone());
                ListenerKind::TcpSni {
                    router: sni_routers.len() - 1,
                    splice: l.splice,
                    accept_proxy: l.accept_proxy,
                    peek_ms: ms(l.peek_timeout),
                }
            } else if let Some(backend) = l.backend {
                ListenerKind::Tcp {
                    backend,
                    splice: l.splice,
                    accept_proxy: l.accept_proxy,
                    peek_ms: ms(l.peek_timeout),
                }
            } else {
                close_fd(fd);
                continue;
            };
            listener_slots.push(ListenerSlot {
                fd,
                kind,
                accepting: false,
                closed: false,
                paused: false,
            });
        }
        let listeners = listener_slots;
        let backend_stats = config
            .backends
            .iter()
            .map(|b| BackendStats {
                name: b.name.clone(),
                queue: 0,
                servers: b
                    .servers
                    .iter()
                    .map(|s| ServerStats {
                        name: s.name.clone(),
                        address: s.address.to_string(),
                        backup: s.backup,
                        ..ServerStats::default()
                    })
                    .collect(),
            })
            .collect();
        let epoch = Instant::now();
        let mut shard = Shard {
            id,
            ring,
            bufs,
            pipes: PipePool::new(g.pipe_pool_max as usize, g.pipe_bytes),
            listeners,
            backends,
            slots: Vec::new(),
            free_slots: Vec::new(),
            conns_max: g.conns_per_shard_max as usize,
            timers: TimerWheel::new(TIMER_SLOTS, TIMER_TICK_MS, 0),
            expired: Vec::new(),
            timeouts: TimeoutsMs {
                connect: ms(config.timeouts.connect),
                client_idle: ms(config.timeouts.client_idle),
                server_idle: ms(config.timeouts.server_idle),
            },
            sni_routers,
            tls_listeners,
            tls_slots: Vec::new(),
            free_tls_slots: Vec::new(),
            tls_scratch: vec![0u8; 16 * 1024].into_boxed_slice(),
            tls_idle_ms: [
                config.timeouts.client_idle,
                config.timeouts.tunnel,
                config.timeouts.http_keep_alive,
                config.timeouts.server_response,
            ]
            .into_iter()
            .map(ms)
            .max()
            .unwrap_or(60_000)
            .saturating_add(1_000),
            detect_listeners,
            detect_slots: Vec::new(),
            free_detect_slots: Vec::new(),
            detect_pending: 0,
            shard_count,
            stats: ShardStats::default(),
            rx,
            wake_fd,
            wake_buf: Box::leak(Box::new(0u64)),
            tick_spec: Box::leak(Box::new(types::Timespec::from(Duration::from_millis(
                TIMER_TICK_MS,
            )))),
            tick_multishot: true,
            waiting_bufs: VecDeque::new(),
            epoch,
            now_ms: 0,
            drain_deadline_ms: None,
            completions: Vec::with_capacity(CQ_ENTRIES as usize),
            http_slots: Vec::new(),
            free_http_slots: Vec::new(),
            http_listeners,
            http_timeouts: HttpTimeoutsMs {
                connect: ms(config.timeouts.connect),
                client_idle: ms(config.timeouts.client_idle),
                server_idle: ms(config.timeouts.server_idle),
                http_request: ms(config.timeouts.http_request),
                http_keep_alive: ms(config.timeouts.http_keep_alive),
                server_response: ms(config.timeouts.server_response),
                tunnel: ms(config.timeouts.tunnel),
            },
            http_waiting_bufs: Vec::new(),
            events,
            http_queued: 0,
            http_detaching: Vec::new(),
            backend_names: config.backends.iter().map(|b| b.name.clone()).collect(),
            backend_servers: config
                .backends
                .iter()
                .map(|b| b.servers.iter().map(|s| s.address).collect())
                .collect(),
            backend_stats,
            access_logs,
        };
        for index in 0..shard.listeners.len() {
            shard.arm_accept(index);
        }
        shard.arm_wake();
        shard.arm_tick();
        Ok(shard)
    }

    fn arm_accept(&mut self, index: usize) {
        let Some(l) = self.listeners.get_mut(index) else {
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
            .user_data(Op::new(OpKind::Accept, index as u32, 0).encode());
        self.ring.push(entry);
    }

    fn arm_wake(&mut self) {
        let buf: *mut u64 = self.wake_buf;
        // SAFETY: `wake_buf` is leaked ('static), so the kernel's 8-byte write always lands in live
        // memory, even if it completes while the ring is torn down.
        let entry = opcode::Read::new(types::Fd(self.wake_fd.as_raw_fd()), buf.cast(), 8)
            .build()
            .user_data(Op::new(OpKind::ControlWake, 0, 0).encode());
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
        let entry = op.build().user_data(Op::new(OpKind::Tick, 0, 0).encode());
        self.ring.push(entry);
    }

    fn on_tick_completion(&mut self, c: Completion) {
        if c.result == -libc::EINVAL && self.tick_multishot {
            tracing::debug!(
                shard = self.id,
                "multishot timeout refused (Linux < 6.4); re-arming per tick"
            );
            self.tick_multishot = false;
        }
        if !c.more() {
            self.arm_tick();
        }
    }

    fn run(&mut self) {
        let mut next_tick_ms = 0;
        loop {
            if let Err(e) = self.ring.submit_and_wait() {
                tracing::error!(shard = self.id, error = %e, "io_uring_enter failed; shard stops");
                break;
            }
            self.now_ms = self.epoch.elapsed().as_millis() as u64;
            let mut completions = std::mem::take(&mut self.completions);
            self.ring.drain_completions(&mut completions);
            for c in completions.drain(..) {
                self.dispatch(c);
            }
            self.completions = completions;
            self.retry_waiting_recvs();
            self.http_retry_waiting_recvs();
            self.tls_replicate_sessions();
            if self.http_queued > 0 {
                self.http_dispatch_queues();
            }
            for sink in self.access_logs.iter_mut().flatten() {
                sink.flush();
            }
            if self.now_ms >= next_tick_ms {
                self.on_tick();
                next_tick_ms = self.now_ms + TIMER_TICK_MS;
            }
            if self.drain_deadline_ms.is_some()
                && self.stats.active == 0
                && self.stats.tls_active == 0
                && self.detect_pending == 0
                && self.listeners.iter().all(|l| l.closed)
            {
                break;
            }
        }
        for b in &mut self.backends {
            b.pool.prune(self.now_ms, 0);
        }
        for sink in self.access_logs.iter_mut().flatten() {
            sink.flush();
        }
        tracing::debug!(shard = self.id, "shard stopped");
    }

    fn dispatch(&mut self, c: Completion) {
        let Some(op) = Op::decode(c.user_data) else {
            tracing::warn!(
                shard = self.id,
                user_data = c.user_data,
                "completion with unknown tag"
            );
            return;
        };
        match op.kind {
            OpKind::Accept => self.on_accept(op.slot as usize, c),
            OpKind::ControlWake => self.on_control(),
            OpKind::Cancel => {}
            OpKind::Tick => self.on_tick_completion(c),
            OpKind::Connect | OpKind::Recv | OpKind::Send | OpKind::PollIn | OpKind::PollOut => {
                self.on_conn_completion(op, c)
            }
            OpKind::HttpConnect
            | OpKind::HttpRecv
            | OpKind::HttpSend
            | OpKind::HttpPollIn
            | OpKind::HttpPollOut => self.on_http_completion(op, c),
            OpKind::TlsRecv | OpKind::TlsSend | OpKind::TlsConnect => self.on_tls_completion(op, c),
            OpKind::DetectPoll => {
                if self.drain_deadline_ms.is_some() {
                    self.on_detect_drained(op.slot);
                } else {
                    self.on_detect_completion(op, c);
                }
            }
        }
    }

    fn on_accept(&mut self, index: usize, c: Completion) {
        let draining = self.drain_deadline_ms.is_some();
        if c.result >= 0 {
            let fd = c.result;
            self.stats.accepted += 1;
            let Some(kind) = self.listeners.get(index).map(|l| l.kind) else {
                close_fd(fd);
                return;
            };
            if draining || self.stats.active as usize >= self.conns_max {
                self.stats.rejected += 1;
                close_fd(fd);
            } else {
                match kind {
                    ListenerKind::Tcp {
                        backend,
                        splice,
                        accept_proxy,
                        peek_ms,
                    } => self.open_conn(
                        fd,
                        backend,
                        splice,
                        conn::Intake {
                            sni_router: None,
                            accept_proxy,
                            client: None,
                            peek_ms,
                        },
                    ),
                    ListenerKind::TcpSni {
                        router,
                        splice,
                        accept_proxy,
                        peek_ms,
                    } => self.open_conn(
                        fd,
                        0,
                        splice,
                        conn::Intake {
                            sni_router: Some(router),
                            accept_proxy,
                            client: None,
                            peek_ms,
                        },
                    ),
                    ListenerKind::Http { index } => match peer_addr(fd) {
                        Some(peer) => self.open_http(fd, index, peer, false),
                        None => close_fd(fd),
                    },
                    ListenerKind::Tls { index } => self.open_tls(fd, index),
                    ListenerKind::Detect { index } => self.open_detect(fd, index),
                }
            }
        } else {
            let errno = -c.result;
            if errno == libc::EMFILE || errno == libc::ENFILE || errno == libc::ENOMEM {
                tracing::warn!(
                    shard = self.id,
                    errno,
                    "accept failed: out of file descriptors or memory; pausing accepts for a tick (raise RLIMIT_NOFILE, see tuning/)"
                );
                if let Some(l) = self.listeners.get_mut(index) {
                    l.paused = true;
                }
            } else if errno != libc::ECANCELED {
                tracing::debug!(shard = self.id, errno, "accept error");
            }
        }
        if !c.more() {
            let Some(l) = self.listeners.get_mut(index) else {
                return;
            };
            l.accepting = false;
            if draining {
                if !l.closed {
                    l.closed = true;
                    close_fd(l.fd);
                }
            } else if !l.paused {
                self.arm_accept(index);
            }
        }
    }

    fn on_control(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                ShardMsg::Stats { reply } => {
                    let _ = reply.send(ShardReport {
                        shard: self.id,
                        stats: self.stats,
                        backends: self.backend_report(),
                    });
                }
                ShardMsg::Drain { deadline } => self.start_drain(deadline),
                ShardMsg::ServerHealth {
                    backend,
                    server,
                    up,
                } => self.set_server_health(backend, server, up),
                ShardMsg::TlsSessions { listener, entries } => {
                    if let Some(cache) = self
                        .tls_listeners
                        .get(listener)
                        .and_then(|l| l.cache.as_ref())
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

    /// Records the outcome of a connect or response from `server` for passive health: enough
    /// consecutive failures eject it (the control thread marks it DOWN everywhere for a while).
    pub(super) fn record_outcome(&mut self, backend: usize, server: usize, ok: bool) {
        let Some(b) = self.backends.get_mut(backend) else {
            return;
        };
        if b.passive_failures == 0 {
            return;
        }
        let Some(fails) = b.fails.get_mut(server) else {
            return;
        };
        if ok {
            *fails = 0;
            return;
        }
        *fails += 1;
        if *fails == b.passive_failures {
            *fails = 0;
            if let Some(v) = b.views.get_mut(server) {
                v.up = false;
            }
            let _ = self.events.send(ShardEvent::Eject { backend, server });
        }
    }

    /// A health check changed a server's state: the balancer skips a DOWN server from now on,
    /// and its idle pooled connections are closed.
    fn set_server_health(&mut self, backend: usize, server: usize, up: bool) {
        let now = self.now_ms;
        let Some(b) = self.backends.get_mut(backend) else {
            return;
        };
        if let Some(v) = b.views.get_mut(server) {
            v.up = up;
        }
        if !up {
            b.pool.close_server(server, now);
        }
    }

    /// This shard's per-server counters with the state and open connections it sees.
    fn backend_report(&self) -> Vec<BackendStats> {
        let mut report = self.backend_stats.clone();
        for (stats, slot) in report.iter_mut().zip(&self.backends) {
            stats.queue = slot.queue.len() as u64;
            for ((s, v), selected) in stats
                .servers
                .iter_mut()
                .zip(&slot.views)
                .zip(&slot.selected)
            {
                s.selected = *selected;
                s.state = if !v.up {
                    "DOWN"
                } else if v.weight == 0 {
                    "DRAIN"
                } else {
                    "UP"
                }
                .to_string();
                s.active = u64::from(v.active);
            }
        }
        report
    }

    fn start_drain(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let deadline_ms = self.now_ms + left.as_millis() as u64;
        if let Some(current) = self.drain_deadline_ms {
            // A later Drain (second stop signal) can only bring the deadline forward.
            self.drain_deadline_ms = Some(current.min(deadline_ms));
            return;
        }
        self.drain_deadline_ms = Some(deadline_ms);
        for l in &mut self.listeners {
            if l.accepting {
                let cancel =
                    opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(l.fd)).all())
                        .build()
                        .user_data(Op::new(OpKind::Cancel, 0, 0).encode());
                self.ring.push(cancel);
            } else if !l.closed {
                l.closed = true;
                close_fd(l.fd);
            }
        }
        for b in &mut self.backends {
            b.pool.prune(self.now_ms, 0);
        }
        self.http_close_idle_for_drain();
        self.tls_close_handshaking_for_drain();
        self.detect_close_all();
        tracing::debug!(shard = self.id, active = self.stats.active, "draining");
    }

    fn on_tick(&mut self) {
        for index in 0..self.listeners.len() {
            if self.listeners.get(index).is_some_and(|l| l.paused)
                && self.drain_deadline_ms.is_none()
            {
                self.arm_accept(index);
            }
        }
        let mut expired = std::mem::take(&mut self.expired);
        self.timers.expire(self.now_ms, &mut expired);
        for key in expired.drain(..) {
            if key.slot & http::HTTP_TIMER_BIT != 0 {
                self.on_http_timer(key);
            } else if key.slot & tls::TLS_TIMER_BIT != 0 {
                self.on_tls_timer(key);
            } else if key.slot & detect::DETECT_TIMER_BIT != 0 {
                self.on_detect_timer(key);
            } else {
                self.on_timer(key);
            }
        }
        self.expired = expired;
        self.detect_on_tick();
        let now = self.now_ms;
        for b in &mut self.backends {
            b.pool.prune(now, b.idle_timeout_ms);
        }
        if self.drain_deadline_ms.is_some() {
            self.http_close_idle_for_drain();
        }
        if let Some(deadline) = self.drain_deadline_ms
            && self.now_ms >= deadline
            && self.stats.active > 0
        {
            self.close_all_for_drain();
            self.http_close_all_for_drain();
            self.tls_close_all_for_drain();
        }
    }
}

impl Shard {
    /// Cancels every op in flight on these fds (those that are open); their completions arrive
    /// with -ECANCELED and tagged `Cancel` for the cancel requests themselves.
    pub(super) fn cancel_fds(&mut self, slot: u32, fds: &[RawFd]) {
        for &fd in fds.iter().filter(|&&fd| fd >= 0) {
            let entry = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
                .build()
                .user_data(Op::new(OpKind::Cancel, slot, 0).encode());
            self.ring.push(entry);
        }
    }
}

/// The PROXY protocol header for a connection from the client on `client_fd` to `server` of
/// `backend`, when that server wants one.
fn proxy_header_for(
    backends: &[BackendSlot],
    backend: usize,
    server: usize,
    client_fd: RawFd,
    client: Option<std::net::SocketAddr>,
) -> Option<Vec<u8>> {
    let version = (*backends.get(backend)?.send_proxy.get(server)?)?;
    let client = client.or_else(|| peer_addr(client_fd))?;
    // A TLS-terminated client reaches the TCP/HTTP path over a socketpair, which has no IP
    // address: announce the unspecified address of the client's family then.
    let local = local_addr(client_fd).unwrap_or_else(|| match client {
        std::net::SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        std::net::SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    });
    Some(crate::proxy_protocol::header(version, client, local))
}

/// The local address of a socket (the address a client connected to).
fn local_addr(fd: RawFd) -> Option<std::net::SocketAddr> {
    // SAFETY: the closure gets storage and length from socket2 and lets getsockname fill them.
    let (_, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            if libc::getsockname(fd, storage.cast(), len) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
    }
    .ok()?;
    addr.as_socket()
}

/// The client's address of an accepted socket (multishot accept does not return it).
fn peer_addr(fd: RawFd) -> Option<std::net::SocketAddr> {
    // SAFETY: the closure gets storage and length from socket2 and lets getpeername fill them.
    let (_, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            if libc::getpeername(fd, storage.cast(), len) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
    }
    .ok()?;
    addr.as_socket()
}

pub(crate) fn close_fd(fd: RawFd) {
    // SAFETY: callers pass an fd they own and no in-flight op refers to.
    unsafe { libc::close(fd) };
}
