//! Owns: the control thread — process startup (listeners, shards), signals, the admin listener,
//! graceful shutdown and the final summary. It talks to shards only by [`ShardMsg`].
//! Must not: touch connections or any shard state directly; it is off the hot path and may use
//! tokio and hyper.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bus::Shards;
use crate::config::Config;
use crate::inherit::{InheritError, Origin, Passed};
use crate::plan::{PlanError, Planner};
use crate::shard::{self, BootError, ShardExit, ShardHandle, ShardMsg, listener::ListenError};
use crate::stats::ShardStats;
use crate::takeover::{Relaunch, SocketTable, Upgrades};
use crate::upgrade::{HandoverConn, UpgradeError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Listen(#[from] ListenError),
    #[error("{0}")]
    Boot(#[from] BootError),
    #[error("{0}")]
    Environment(String),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
    #[error("{0}")]
    Inherit(#[from] InheritError),
    /// `--upgrade-from`: the sockets could not be fetched from the old process.
    #[error("upgrade: {0}")]
    Upgrade(#[from] UpgradeError),
    /// `--upgrade-from`: we started, but the old process did not take our `ready`.
    #[error(
        "upgrade: the old process did not acknowledge the hand-over ({0}); it may still be serving, so this one stopped"
    )]
    NotTakenOver(String),
}

/// How this process starts, beyond its configuration.
#[derive(Debug, Default)]
pub struct Start {
    /// The sockets systemd passed (`sd_listen::listen_fds` at the top of main).
    pub systemd: Vec<(Option<String>, OwnedFd)>,
    /// `--upgrade-from SOCKET`: take the listening sockets from the ringway serving there.
    pub upgrade_from: Option<PathBuf>,
    /// How to start a successor (SIGUSR2, `POST /upgrade`); `None`: upgrades are refused.
    pub relaunch: Option<Relaunch>,
}

/// What `run` reports when ringway stops after a signal.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub stats: ShardStats,
    pub uptime: Duration,
    pub drained_in: Duration,
}

/// Binds every listener for every shard, boots the shards on the boot plan, then serves signals
/// and admin until a SIGTERM/SIGINT drain completes.
pub fn run(config: Config, path: PathBuf) -> Result<Summary, StartError> {
    run_with(config, path, Start::default())
}

/// [`run`], adopting inherited sockets (systemd's, or an old ringway's with `--upgrade-from`)
/// instead of binding those listeners, and able to hand over to a successor.
pub fn run_with(config: Config, path: PathBuf, start: Start) -> Result<Summary, StartError> {
    let mut handover = None;
    let result = serve(config, path, start, &mut handover);
    if let Err(e) = &result
        && let Some(conn) = handover.take()
    {
        // The old process keeps serving; tell it why we cannot.
        if let Err(report) = conn.report_failed(&e.to_string()) {
            tracing::warn!(error = %report, "upgrade: cannot tell the old process that we failed");
        }
    }
    result
}

fn serve(
    config: Config,
    path: PathBuf,
    start: Start,
    handover: &mut Option<HandoverConn>,
) -> Result<Summary, StartError> {
    crate::startup::check_kernel().map_err(StartError::Environment)?;
    crate::startup::ignore_sigpipe();
    crate::startup::raise_nofile();
    let config = Arc::new(config);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut passed: Vec<Passed> = start
        .systemd
        .into_iter()
        .map(|(name, fd)| Passed {
            name,
            fd,
            origin: Origin::Systemd,
        })
        .collect();
    if !passed.is_empty() {
        tracing::info!(
            sockets = passed.len(),
            "socket activation: systemd passed listening sockets"
        );
    }
    let upgrading = start.upgrade_from.is_some();
    let mut inherited_admin = None;
    if let Some(socket) = &start.upgrade_from {
        let fetched = crate::takeover::fetch(socket)?;
        passed.extend(fetched.listeners);
        inherited_admin = fetched.admin;
        *handover = Some(fetched.conn);
    }
    let shard_count = crate::inherit::shard_count_for(&config, config.shard_count(online), &passed);

    // Bind (or adopt) on this thread first so a taken port fails the start, not a shard.
    let listening = crate::inherit::listeners(&config, shard_count, passed)?;
    let table = match SocketTable::from_listening(&config, &listening) {
        Ok(t) => t,
        Err(e) => {
            listening.close_all();
            return Err(StartError::Environment(format!(
                "copying listening sockets for binary upgrades: {e}"
            )));
        }
    };
    let per_shard = listening.per_shard;

    // Listeners are bound: give up root before any shard (or connection) exists. A process
    // started by an upgrade inherits the old one's (already dropped) privileges.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if let Some(user) = config.global.user.as_ref().filter(|_| root || !upgrading) {
        match crate::startup::drop_privileges(user, config.global.group.as_deref()) {
            Ok((uid, gid)) => tracing::info!(user = %user, uid, gid, "dropped privileges"),
            Err(e) => {
                close_all(&per_shard);
                return Err(StartError::Environment(format!(
                    "cannot switch to user `{user}`: {e}"
                )));
            }
        }
    }

    // Boot = the plan from nothing, the same path a reload takes.
    let mut planner = Planner::new();
    let mut plans = Vec::with_capacity(shard_count);
    for (shard, fds) in per_shard.iter().enumerate() {
        match planner.boot(&config, shard, fds) {
            Ok(ops) => plans.push(ops),
            Err(e) => {
                close_all(&per_shard);
                return Err(StartError::Plan(e));
            }
        }
    }

    let started_lines = Arc::new(Mutex::new(Vec::new()));
    let (events_tx, events_rx) = tokio::sync::mpsc::channel(shard::EVENTS_MAX);
    let mut handles = Vec::with_capacity(shard_count);
    let timeouts = crate::session::TimeoutsMs::from_config(&config.timeouts);
    let mut plans = plans.into_iter();
    for id in 0..shard_count {
        let ops = plans.next().unwrap_or_default();
        let cpu = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let boot = shard::Boot {
            id,
            shard_count,
            cpu,
            global: config.global.clone(),
            timeouts,
            ops,
        };
        match shard::spawn(boot, Arc::clone(&started_lines), events_tx.clone()) {
            Ok(h) => handles.push(h),
            Err(e) => {
                // The plans not handed to a shard still own their sockets.
                for ops in plans {
                    close_plan(ops);
                }
                stop_shards(&mut handles, Instant::now());
                return Err(e.into());
            }
        }
    }
    drop(events_tx);
    if let Ok(lines) = started_lines.lock() {
        for l in lines.iter() {
            tracing::debug!("{l}");
        }
    }

    let joins: Vec<_> = handles.iter_mut().filter_map(|h| h.join.take()).collect();
    let shards = Shards::new(handles, crate::stats::CheckTable::default());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            stop_and_join(&shards, joins, Instant::now());
            return Err(StartError::Environment(format!("control runtime: {e}")));
        }
    };
    let listeners: Vec<String> = config
        .listeners
        .iter()
        .map(|l| format!("{}={}", l.name, l.bind))
        .collect();
    let control_shards = Arc::clone(&shards);
    let relaunch = start.relaunch;
    let outcome = runtime.block_on(async move {
        let shards = control_shards;
        // What a failed start does to connections the shards may have taken meanwhile: an
        // upgrade's new process drains them (the old process serves on), a plain start closes.
        let abort_deadline = || {
            Instant::now()
                + if upgrading {
                    config.global.drain_timeout
                } else {
                    Duration::ZERO
                }
        };
        tokio::spawn(Arc::clone(&shards).flusher());
        let mut checks = crate::health::Checks::default();
        checks.sync(crate::health::targets(&config, &planner.registry), &shards);
        let passive: crate::health::PassiveTable = Arc::new(Mutex::new(
            crate::health::passive_table(&config, &planner.registry),
        ));
        tokio::spawn(shard_events(Arc::clone(&shards), Arc::clone(&passive), events_rx));
        let live = crate::live::Live::new(
            Arc::clone(&config),
            path,
            planner,
            Arc::clone(&shards),
            checks,
            passive,
        );
        let sockets = live.sockets();
        *sockets.lock().await = table;
        let changes = crate::live::spawn(live);
        let provider = start_provider(&config, &changes).await;
        let admin_listener = match config.global.admin {
            Some(addr) => match admin_listener(addr, inherited_admin.take()).await {
                Ok(listener) => {
                    match crate::inherit::dup(listener.as_fd()) {
                        Ok(copy) => sockets.lock().await.set_admin(Some(copy)),
                        Err(e) => tracing::warn!(
                            error = %e,
                            "cannot copy the admin listener; an upgrade will bind a new one"
                        ),
                    }
                    Some(listener)
                }
                Err(source) => {
                    stop_and_join(&shards, joins, abort_deadline());
                    return Err(StartError::Admin(crate::admin::AdminError::Tcp {
                        addr,
                        source,
                    }));
                }
            },
            None => None,
        };
        drop(inherited_admin);
        let upgrading = handover.is_some();
        if let Some(conn) = handover.take() {
            let old_pid = conn.old_pid();
            // Blocking (bounded by FETCH_TIMEOUT): until the old process acks, it serves.
            let acked = tokio::task::spawn_blocking(move || conn.report_ready())
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(why) = acked {
                tracing::error!(
                    old_pid,
                    error = %why,
                    "upgrade: the old process did not acknowledge ready; stopping this one"
                );
                stop_and_join(&shards, joins, abort_deadline());
                return Err(StartError::NotTakenOver(why));
            }
            tracing::info!(old_pid, "upgrade: took over from the old process");
            tokio::spawn(crate::takeover::watch_accept_queues(
                Arc::clone(&sockets),
                Arc::clone(&shards),
            ));
        }
        // Served only once we own the listeners: before the old process's ack it answers. After
        // an upgrade the unix socket is taken over from the old process (its file replaced).
        let admin = match crate::admin::Listeners::with_tcp(
            &config.global,
            admin_listener,
            upgrading,
        ) {
            Ok(a) => a,
            Err(e) => {
                stop_and_join(&shards, joins, abort_deadline());
                return Err(StartError::Admin(e));
            }
        };
        let admin_desc = admin.describe();
        let mut admin_tasks = admin.spawn(&shards, &changes);
        let upgrades = relaunch.map(|r| {
            let (u, took_over) =
                crate::takeover::start(Arc::clone(&sockets), r, changes.clone());
            u.serve_admin();
            (u, took_over)
        });
        let (upgrades, mut took_over) = match upgrades {
            Some((u, t)) => (Some(u), Some(t)),
            None => (None, None),
        };
        tracing::info!(
            shards = shard_count,
            listeners = %listeners.join(","),
            admin = %admin_desc,
            "ringway ready"
        );
        crate::startup::sd_notify(&format!("READY=1\nMAINPID={}", std::process::id()));
        let mut signals = Signals::new();
        let stop = signals
            .next_stop(Some(&changes), upgrades.as_ref(), took_over.as_mut())
            .await;
        if let Some(u) = &upgrades {
            u.stop();
        }
        // The drain timeout as last reloaded.
        let drain_timeout = changes.current().global.drain_timeout;
        tracing::info!(
            signal = stop.name(),
            drain_timeout_ms = drain_timeout.as_millis() as u64,
            "draining"
        );
        match stop {
            // The new process answers on the admin listener (the same socket) from now on, and
            // it is the unit's main process: no STOPPING=1 for the service.
            Stop::Upgraded { new_pid } => {
                tracing::info!(new_pid, "upgrade: the new process serves; this one drains");
                for t in admin_tasks.drain(..) {
                    t.abort();
                }
            }
            Stop::Signal(_) => crate::startup::sd_notify("STOPPING=1"),
        }
        // Our copies of the listening sockets go now, or as soon as a change or hand-over in
        // progress lets go of them (see crate::takeover): a copy would keep its socket taking
        // connections nobody accepts.
        tokio::spawn(async move { sockets.lock_owned().await.clear() });
        let drain_started = Instant::now();
        shards.drain(drain_started + drain_timeout);
        // The admin listener keeps answering while shards drain. A second stop signal closes
        // what is left at once.
        let mut join_all = tokio::task::spawn_blocking(move || {
            joins
                .into_iter()
                .filter_map(|j| j.join().ok())
                .collect::<Vec<ShardExit>>()
        });
        let exits = tokio::select! {
            exits = &mut join_all => exits.unwrap_or_default(),
            again = signals.next_stop(None, None, None) => {
                tracing::info!(signal = again.name(), "second stop signal: closing remaining connections now");
                shards.drain(Instant::now());
                join_all.await.unwrap_or_default()
            }
        };
        for t in &admin_tasks {
            t.abort();
        }
        drop(changes);
        if let Some(h) = provider.and_then(|p| Arc::try_unwrap(p).ok()) {
            // The last snapshot reaches the cache file before ringway exits.
            let _ = tokio::time::timeout(Duration::from_secs(5), h.shutdown()).await;
        }
        Ok::<_, StartError>((drain_started, exits))
    });
    drop(runtime);
    let (drain_started, exits) = outcome?;
    let mut total = ShardStats::default();
    for exit in &exits {
        total.merge(&exit.stats);
    }
    Ok(Summary {
        stats: total,
        uptime: shards.started().elapsed(),
        drained_in: drain_started.elapsed(),
    })
}

/// Starts `[provider.redis]`: applies the cached routes (or Redis's own, if the first sync
/// completes within `startup_wait`) before ringway says it is ready, then every new snapshot.
async fn start_provider(
    config: &Config,
    changes: &crate::live::Changes,
) -> Option<Arc<crate::provider::ProviderHandle>> {
    let r = config.provider.as_ref()?;
    let cfg = crate::provider::provider_cfg(r);
    let (mut rx, handle) = match crate::provider::spawn(cfg, r.cache_file.clone()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "route provider not started");
            return None;
        }
    };
    let synced = handle.wait_synced(r.startup_wait).await;
    let first = Arc::clone(&rx.borrow_and_update());
    let routes = first.routes.len();
    match changes.routes(first).await {
        Ok(_) => tracing::info!(
            routes,
            from = if synced { "redis" } else { "cache" },
            "routes from Redis applied"
        ),
        Err(e) => tracing::warn!(error = %e, "routes from Redis not applied"),
    }
    let handle = Arc::new(handle);
    let _ = changes.provider.set(Arc::clone(&handle));
    let changes = changes.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let snap = Arc::clone(&rx.borrow_and_update());
            // Errors are logged by `live`; the running routes stay.
            let _ = changes.routes(snap).await;
        }
    });
    Some(handle)
}

/// Events from shards, on the control thread: passive-health ejections and TLS session copies.
async fn shard_events(
    shards: Arc<Shards>,
    passive: crate::health::PassiveTable,
    mut events: tokio::sync::mpsc::Receiver<shard::ShardEvent>,
) {
    let ejected = Arc::default();
    while let Some(event) = events.recv().await {
        match event {
            shard::ShardEvent::Eject { backend, server } => {
                crate::health::eject(&passive, &ejected, &shards, backend, server)
            }
            shard::ShardEvent::TlsSessions {
                from,
                listener,
                entries,
            } => {
                let entries = Arc::new(entries);
                shards.broadcast_except(from, || ShardMsg::TlsSessions {
                    listener,
                    entries: Arc::clone(&entries),
                });
            }
        }
    }
}

/// The adopted admin listener when the old process handed one over for `addr`, else a new one.
async fn admin_listener(
    addr: std::net::SocketAddr,
    inherited: Option<OwnedFd>,
) -> std::io::Result<tokio::net::TcpListener> {
    if let Some(fd) = inherited {
        match crate::adopt::inspect_listener(fd.as_fd()) {
            Ok(bound) if bound.ip() == addr.ip() && bound.port() == addr.port() => {
                let std_listener = std::net::TcpListener::from(fd);
                // Shared with the old process's copy, which tokio already made non-blocking.
                std_listener.set_nonblocking(true)?;
                tracing::info!(%addr, "upgrade: adopted the admin listener");
                return tokio::net::TcpListener::from_std(std_listener);
            }
            Ok(bound) => tracing::info!(
                %bound, %addr,
                "upgrade: the admin address changed; binding the new one"
            ),
            Err(e) => tracing::warn!(error = %e, "upgrade: the inherited admin socket is unusable"),
        }
    }
    tokio::net::TcpListener::bind(addr).await
}

/// Why the control loop stops serving.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Signal(&'static str),
    /// A new process took over (binary upgrade).
    Upgraded {
        new_pid: i32,
    },
}

impl Stop {
    fn name(&self) -> &'static str {
        match self {
            Stop::Signal(s) => s,
            Stop::Upgraded { .. } => "upgrade",
        }
    }
}

/// SIGTERM/SIGINT stop ringway; SIGHUP reloads the configuration file (`systemctl reload`);
/// SIGUSR2 upgrades to the binary ringway was started from (nginx's USR2).
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
    usr2: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        let hup = signal(SignalKind::hangup()).ok();
        let usr2 = signal(SignalKind::user_defined2()).ok();
        if term.is_none() || int.is_none() {
            tracing::error!("cannot install SIGTERM/SIGINT handlers; stop ringway with SIGKILL");
        }
        Signals {
            term,
            int,
            hup,
            usr2,
        }
    }

    /// Waits for SIGTERM or SIGINT, or for a successor to take over (`took_over`); every SIGHUP
    /// meanwhile reloads the configuration file through `changes`, every SIGUSR2 starts an
    /// upgrade through `upgrades` (both in the background: a stop signal is never held up).
    async fn next_stop(
        &mut self,
        changes: Option<&crate::live::Changes>,
        upgrades: Option<&Upgrades>,
        took_over: Option<&mut tokio::sync::oneshot::Receiver<i32>>,
    ) -> Stop {
        // One future for the whole wait: a oneshot receiver must not be polled again once done.
        let successor = async move {
            match took_over {
                Some(rx) => match rx.await {
                    Ok(new_pid) => new_pid,
                    Err(_) => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        tokio::pin!(successor);
        loop {
            tokio::select! {
                Some(_) = recv(&mut self.term) => return Stop::Signal("SIGTERM"),
                Some(_) = recv(&mut self.int) => return Stop::Signal("SIGINT"),
                new_pid = &mut successor => return Stop::Upgraded { new_pid },
                Some(_) = recv(&mut self.usr2) => match upgrades {
                    Some(u) => {
                        tracing::info!("SIGUSR2: upgrading to a new binary");
                        u.trigger(crate::takeover::UpgradeRequest {
                            source: "SIGUSR2",
                            ..Default::default()
                        });
                    }
                    None => tracing::warn!("SIGUSR2 ignored: no binary upgrade now (ringway is draining, or was not started with `ringway run`)"),
                },
                Some(_) = recv(&mut self.hup) => {
                    tracing::info!("SIGHUP: reloading the configuration file");
                    if let Some(c) = changes.cloned() {
                        tokio::spawn(async move {
                            match c.reload(None, "SIGHUP").await {
                                Ok(r) => tracing::info!(version = r.version, changes = r.changes.len(), "reload done"),
                                Err(e) => tracing::warn!(error = %e, "reload refused; the running configuration stays"),
                            }
                        });
                    }
                }
            }
        }
    }
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

fn stop_and_join(
    shards: &Shards,
    joins: Vec<std::thread::JoinHandle<ShardExit>>,
    deadline: Instant,
) {
    shards.drain(deadline);
    for j in joins {
        let _ = j.join();
    }
}

fn stop_shards(handles: &mut [ShardHandle], deadline: Instant) {
    for h in handles.iter() {
        let _ = h.send(ShardMsg::Drain { deadline });
    }
    for h in handles.iter_mut() {
        if let Some(j) = h.join.take() {
            let _ = j.join();
        }
    }
}

fn close_all(per_shard: &[Vec<(usize, std::os::fd::RawFd)>]) {
    for fds in per_shard {
        for &(_, fd) in fds {
            shard::close_fd(fd);
        }
    }
}

/// Closes the listening sockets of a plan no shard took.
fn close_plan(ops: Vec<shard::ShardOp>) {
    for op in ops {
        if let shard::ShardOp::PutListener { fd: Some(fd), .. } = op {
            shard::close_fd(fd);
        }
    }
}
