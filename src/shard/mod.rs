//! Owns: one shard — a thread pinned to one CPU that runs its own io_uring ring, buffer ring,
//! pipe pool, listeners, connections, backends, timers and counters (`driver`).
//! Must not: share any of that with another shard. The control thread reaches a shard only by a
//! message on a bounded queue plus a write to the shard's eventfd, which the ring reads.
//!
//! Layout: `driver` is the loop and everything all connections share (accept, dispatch by slot,
//! timers, apply, drain); `stream` drives client connections (a session over a plain or TLS
//! transport) and their upstream connections; `detect` holds connections whose protocol is not
//! known yet; `sock` is one socket's ring state; `transport` is TLS inline; `ring` the
//! io_uring wrapper; `slab` the one bounded connection table; `sys` every plain syscall.
//!
//! Life of a shard: `spawn` (on the control thread: listening sockets are already bound) ->
//! `Shard::boot` (on the shard thread: pin, ring, buffer ring) -> `apply` of the boot plan (the
//! same path a reload takes) -> `run` (one submit_and_wait per turn) -> drain -> exit.

mod apply;
mod detect;
mod drain;
mod driver;
mod idle;
pub mod listener;
pub mod ring;
pub mod slab;
mod sock;
mod stream;
mod sync;
pub mod sys;
mod transport;
mod upstream_conn;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::ids::{BackendId, ListenerId, ServerId};
use crate::session::TimeoutsMs;
use crate::stats::{ShardReport, ShardStats};
use crate::upstream::BackendCfg;
use listener::ListenerCfg;

/// What a slab entry holds.
enum Conn {
    /// An HTTP keep-alive client between requests, in compact form.
    Idle(stream::IdleHttp),
    Stream(Box<stream::StreamConn>),
    Upstream(Box<stream::UpstreamConn>),
    Detect(detect::DetectConn),
}

/// One configuration change for one shard, applied between loop turns. Boot is the list that
/// builds everything from nothing; a reload sends only what changed.
pub enum ShardOp {
    /// Adds a backend, or replaces its settings and servers (servers that remain keep their
    /// state, pools and counters).
    PutBackend(Box<BackendCfg>),
    /// Removes a backend: its pooled connections close; requests in flight finish.
    RemoveBackend(BackendId),
    /// Adds a listener (with this shard's socket) or replaces its settings (`fd` `None`).
    PutListener {
        cfg: Arc<ListenerCfg>,
        fd: Option<RawFd>,
    },
    /// Stops accepting on a listener; its connections finish.
    RemoveListener(ListenerId),
    SetTimeouts(TimeoutsMs),
}

/// Messages from the control thread. Bounded queue: `SHARD_QUEUE_MAX` entries.
pub enum ShardMsg {
    /// Stop accepting; close what is still open at `deadline`.
    Drain { deadline: Instant },
    /// Send a copy of this shard's counters.
    Stats {
        reply: tokio::sync::oneshot::Sender<ShardReport>,
    },
    /// Apply configuration changes; `done` gets the result once they are in place.
    Apply {
        ops: Vec<ShardOp>,
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
    /// A health check (or an ejection) changed a server's state (sent to every shard).
    ServerHealth {
        backend: BackendId,
        server: ServerId,
        up: bool,
    },
    /// TLS sessions another shard created for TLS listener `listener`: add them to this shard's
    /// session cache.
    TlsSessions {
        listener: ListenerId,
        entries: Arc<Vec<(Vec<u8>, Vec<u8>)>>,
    },
    /// Cancel and re-arm every accept, so one that missed its wakeup takes what is queued (see
    /// `crate::takeover::watch_accept_queues`).
    RearmAccepts,
}

pub const SHARD_QUEUE_MAX: usize = 64;
/// Events a shard may have waiting for the control thread; beyond it a shard keeps what must
/// not be lost (ejections) for its next turn and drops session copies (best effort).
pub const EVENTS_MAX: usize = 1024;

/// What a shard tells the control thread (rare events, never per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardEvent {
    /// `passive.failures` consecutive failures (connect errors or 5xx) on this shard: the
    /// control thread marks the server DOWN on every shard for `passive.backoff`.
    Eject {
        backend: BackendId,
        server: ServerId,
    },
    /// TLS sessions shard `from` created on TLS listener `listener` since its last report (one
    /// batch per loop turn at most): the control thread copies them to the other shards.
    TlsSessions {
        from: usize,
        listener: ListenerId,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

pub type EventSender = tokio::sync::mpsc::Sender<ShardEvent>;

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
    /// Queues `msg` and wakes the shard. Fails only if the shard has exited or its queue is full
    /// (the message comes back to the caller, which decides: retry or drop).
    pub fn send(&self, msg: ShardMsg) -> Result<(), (ShardMsg, bool)> {
        match self.tx.try_send(msg) {
            Ok(()) => {
                sys::eventfd_signal(self.wake.as_raw_fd());
                Ok(())
            }
            Err(TrySendError::Full(m)) => Err((m, true)),
            Err(TrySendError::Disconnected(m)) => Err((m, false)),
        }
    }
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

/// What a shard is started with.
pub struct Boot {
    pub id: usize,
    pub shard_count: usize,
    pub cpu: Option<core_affinity::CoreId>,
    pub global: crate::config::Global,
    pub timeouts: TimeoutsMs,
    /// The boot plan: everything this shard serves, with its own listening sockets.
    pub ops: Vec<ShardOp>,
}

/// Starts one shard thread. Returns once the shard has booted and applied its plan (or failed).
pub fn spawn(
    boot: Boot,
    started: Arc<Mutex<Vec<String>>>,
    events: EventSender,
) -> Result<ShardHandle, BootError> {
    let id = boot.id;
    let efd = sys::eventfd().map_err(|source| BootError::EventFd { shard: id, source })?;
    // SAFETY: `efd` was just created and is owned only here.
    let wake_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
    let (tx, rx): (SyncSender<ShardMsg>, Receiver<ShardMsg>) = sync_channel(SHARD_QUEUE_MAX);
    let (boot_tx, boot_rx) = sync_channel::<Result<(), BootError>>(1);
    let thread_wake = Arc::clone(&wake_fd);
    let join = std::thread::Builder::new()
        .name(format!("ringway-shard-{id}"))
        .spawn(move || {
            let Boot {
                id,
                shard_count,
                cpu,
                global,
                timeouts,
                ops,
            } = boot;
            if let Some(core) = cpu
                && !core_affinity::set_for_current(core)
            {
                tracing::warn!(shard = id, cpu = core.id, "could not pin shard to its CPU");
            }
            let booted =
                driver::Shard::boot(id, shard_count, &global, timeouts, rx, thread_wake, events)
                    .and_then(|mut s| s.apply(ops).map(|()| s));
            match booted {
                Ok(mut shard) => {
                    if let Ok(mut s) = started.lock() {
                        s.push(format!(
                            "shard {id}: cpu {:?}, ring {:?}",
                            cpu.map(|c| c.id),
                            shard.task_run()
                        ));
                    }
                    let _ = boot_tx.send(Ok(()));
                    // A panic on a shard is a bug. A shard that died would leave its listening
                    // sockets open and its clients hanging while the process looks alive, so the
                    // whole process stops instead and the service manager restarts it
                    // (tuning/ringway.service: Restart=on-failure).
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.run()))
                        .is_err()
                    {
                        tracing::error!(shard = id, "shard panicked; ringway aborts");
                        std::process::abort();
                    }
                    ShardExit {
                        id: shard.id(),
                        stats: shard.stats(),
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

pub(crate) fn close_fd(fd: RawFd) {
    sys::close(fd);
}

#[cfg(test)]
mod tests {
    /// Every connection is one slab entry of this size, and an idle keep-alive client is nothing
    /// else (bench/idle.py: about 200 bytes per idle client in all); a variant that grows past it
    /// must be boxed.
    #[test]
    fn a_slab_entry_stays_small() {
        assert!(
            std::mem::size_of::<super::Conn>() <= 96,
            "{}",
            std::mem::size_of::<super::Conn>()
        );
        assert!(std::mem::size_of::<super::stream::IdleHttp>() <= 88);
    }
}
