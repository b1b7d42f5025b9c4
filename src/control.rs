//! Owns: the control thread — process startup (listeners, shards), signals, the admin listener,
//! graceful shutdown and the final summary. It talks to shards only by [`ShardMsg`].
//! Must not: touch connections or any shard state directly; it is off the hot path and may use
//! tokio and hyper.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bus::Shards;
use crate::config::Config;
use crate::plan::{PlanError, Planner};
use crate::shard::{self, BootError, ShardExit, ShardHandle, ShardMsg, listener::ListenError};
use crate::stats::ShardStats;

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
pub fn run(config: Config, path: std::path::PathBuf) -> Result<Summary, StartError> {
    crate::startup::check_kernel().map_err(StartError::Environment)?;
    crate::startup::ignore_sigpipe();
    crate::startup::raise_nofile();
    let config = Arc::new(config);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shard_count = config.shard_count(online);

    // Bind on this thread first so a taken port fails the start, not a shard.
    let mut per_shard = Vec::with_capacity(shard_count);
    for _ in 0..shard_count {
        let mut fds = Vec::with_capacity(config.listeners.len());
        for (index, l) in config.listeners.iter().enumerate() {
            match shard::listener::bind_listener(l.bind, l.backlog) {
                Ok(fd) => fds.push((index, fd)),
                Err(e) => {
                    close_all(&per_shard);
                    close_all(&[fds]);
                    return Err(e.into());
                }
            }
        }
        per_shard.push(fds);
    }

    // Listeners are bound: give up root before any shard (or connection) exists.
    if let Some(user) = &config.global.user {
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
    let outcome = runtime.block_on(async move {
        let shards = control_shards;
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
        let changes = crate::live::spawn(live);
        let provider = start_provider(&config, &changes).await;
        let admin = match crate::admin::Listeners::bind(&config.global).await {
            Ok(a) => a,
            Err(e) => {
                stop_and_join(&shards, joins, Instant::now());
                return Err(StartError::Admin(e));
            }
        };
        let admin_desc = admin.describe();
        let admin_tasks = admin.spawn(&shards, &changes);
        tracing::info!(
            shards = shard_count,
            listeners = %listeners.join(","),
            admin = %admin_desc,
            "ringway ready"
        );
        crate::startup::sd_notify(&format!("READY=1\nMAINPID={}", std::process::id()));
        let mut signals = Signals::new();
        let signal = signals.next_stop(Some(&changes)).await;
        // The drain timeout as last reloaded.
        let drain_timeout = changes.current().global.drain_timeout;
        tracing::info!(
            signal,
            drain_timeout_ms = drain_timeout.as_millis() as u64,
            "draining"
        );
        crate::startup::sd_notify("STOPPING=1");
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
            again = signals.next_stop(None) => {
                tracing::info!(signal = again, "second stop signal: closing remaining connections now");
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

/// SIGTERM/SIGINT stop ringway; SIGHUP reloads the configuration file (`systemctl reload`).
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        let hup = signal(SignalKind::hangup()).ok();
        if term.is_none() || int.is_none() {
            tracing::error!("cannot install SIGTERM/SIGINT handlers; stop ringway with SIGKILL");
        }
        Signals { term, int, hup }
    }

    /// Waits for SIGTERM or SIGINT; every SIGHUP meanwhile reloads the configuration file
    /// through `changes` (in the background: a stop signal is never held up by a reload).
    async fn next_stop(&mut self, changes: Option<&crate::live::Changes>) -> &'static str {
        loop {
            tokio::select! {
                Some(_) = recv(&mut self.term) => return "SIGTERM",
                Some(_) = recv(&mut self.int) => return "SIGINT",
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
