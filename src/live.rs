//! Owns: the configuration a running ringway serves and the one path that changes it: a reload
//! of the file (SIGHUP, `ringway reload`, `POST /reload`) and every runtime API change go through
//! [`Live::apply`]: validate → diff → bind new listeners → per-shard plans → every shard applies
//! them between two loop turns and confirms → health checks and passive-health settings follow.
//! A configuration that fails anywhere before the shards apply changes nothing; the running one
//! stays.
//! Must not: touch shard state (shards are reached through `bus::Shards`), or run on a shard.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::bus::Shards;
use crate::config::Config;
use crate::config::diff::{Change, diff};
use crate::health::{Checks, PassiveTable};
use crate::plan::Planner;

/// Why a change was refused. Nothing of it was applied unless `Apply` says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The file (or the edited configuration) is not valid: every problem, located.
    #[error("{0}")]
    Invalid(#[from] crate::config::ConfigError),
    #[error("listener `{name}` ({addr}): {source}")]
    Bind {
        name: String,
        addr: std::net::SocketAddr,
        #[source]
        source: crate::shard::listener::ListenError,
    },
    #[error("access log of listener `{name}`: {reason}")]
    AccessLog { name: String, reason: String },
    #[error("{0}")]
    Plan(#[from] crate::plan::PlanError),
    /// Some shards did not confirm: the configuration may be half applied.
    #[error("applying on the shards failed: {0}")]
    Apply(String),
    #[error("{0}")]
    Refused(String),
    /// The runtime API named a backend, server, listener or route that does not exist.
    #[error("{0}")]
    NotFound(String),
}

impl ChangeError {
    /// Refused before anything changed (the running configuration stays as it was).
    pub fn nothing_changed(&self) -> bool {
        !matches!(self, ChangeError::Apply(_))
    }
}

/// Changes of one apply logged one per line at info; the rest at debug.
const CHANGES_LOGGED_MAX: usize = 50;

/// What a change did, as the admin API and `ringway reload` print it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Increases by one with every applied change.
    pub version: u64,
    /// One line per change, in the order applied (`config::diff`'s `Display`).
    pub changes: Vec<String>,
    /// Settings that differ in the new file but only a restart applies; the old values stay.
    pub restart_needed: Vec<String>,
    /// Where the change came from: `SIGHUP`, `POST /reload`, `runtime API`.
    pub source: String,
}

/// The running configuration and what changes it.
pub struct Live {
    config: Arc<Config>,
    /// The file ringway was started with (a reload without a path reads it again).
    path: PathBuf,
    planner: Planner,
    shards: Arc<Shards>,
    checks: Checks,
    passive: PassiveTable,
    version: u64,
    /// Published after every applied change (readers: drain timeout, the admin API).
    current: Arc<Mutex<Arc<Config>>>,
    /// The last routes from `[provider.redis]`, merged into every configuration applied.
    routes: Option<Arc<crate::provider::RouteSnapshot>>,
    /// Copies of the listening sockets, for a binary upgrade's hand-over; kept in step with the
    /// listeners on every change (see `crate::takeover`).
    sockets: crate::takeover::SharedSockets,
}

/// Settings the shards took at start; a change of them is reported and needs a restart.
fn keep_boot_settings(old: &Config, new: &mut Config) {
    let (o, n) = (&old.global, &mut new.global);
    n.shards = o.shards;
    n.recv_buffer_bytes = o.recv_buffer_bytes;
    n.recv_buffer_count = o.recv_buffer_count;
    n.pipe_pool_max = o.pipe_pool_max;
    n.pipe_bytes = o.pipe_bytes;
    n.conns_per_shard_max = o.conns_per_shard_max;
    n.user.clone_from(&o.user);
    n.group.clone_from(&o.group);
    n.admin = o.admin;
    n.admin_socket.clone_from(&o.admin_socket);
    new.provider.clone_from(&old.provider);
}

impl Live {
    pub fn new(
        config: Arc<Config>,
        path: PathBuf,
        planner: Planner,
        shards: Arc<Shards>,
        checks: Checks,
        passive: PassiveTable,
    ) -> Live {
        let current = Arc::new(Mutex::new(Arc::clone(&config)));
        Live {
            config,
            path,
            planner,
            shards,
            checks,
            passive,
            version: 1,
            current,
            routes: None,
            sockets: crate::takeover::SharedSockets::default(),
        }
    }

    fn publish(&mut self, new: Arc<Config>) {
        self.config = Arc::clone(&new);
        if let Ok(mut c) = self.current.lock() {
            *c = new;
        }
    }

    /// The listening sockets' table this `Live` keeps up to date.
    pub fn sockets(&self) -> crate::takeover::SharedSockets {
        Arc::clone(&self.sockets)
    }

    /// The configuration being served, as last applied.
    pub fn current(&self) -> Arc<Mutex<Arc<Config>>> {
        Arc::clone(&self.current)
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Reads and validates `path` (or the file ringway was started with), then applies it.
    pub async fn reload(
        &mut self,
        path: Option<&Path>,
        source: &str,
    ) -> Result<Report, ChangeError> {
        let path = path.map_or_else(|| self.path.clone(), Path::to_path_buf);
        let new = crate::load_config(&path)?;
        let report = self.apply(new, source).await?;
        self.path = path;
        Ok(report)
    }

    /// Replaces the running configuration by `new` (already validated).
    pub async fn apply(&mut self, new: Config, source: &str) -> Result<Report, ChangeError> {
        let old = Arc::clone(&self.config);
        let provider_changed = new.provider != old.provider;
        let mut new = match &self.routes {
            Some(snap) if new.provider.is_some() || old.provider.is_some() => {
                let mut n = new;
                // The provider keeps its start-up settings (a change is `restart_needed`).
                n.provider.clone_from(&old.provider);
                crate::provider::merge::overlay(&n, snap)
            }
            _ => new,
        };
        let full = diff(&old, &new);
        let mut restart_needed: Vec<String> = full
            .changes
            .iter()
            .filter(|c| matches!(c, Change::RestartNeeded(_)))
            .map(|c| c.to_string())
            .collect();
        if provider_changed
            && !full.changes.iter().any(|c| {
                matches!(
                    c,
                    Change::RestartNeeded(crate::config::diff::RestartReason::Provider)
                )
            })
        {
            restart_needed.push(
                Change::RestartNeeded(crate::config::diff::RestartReason::Provider).to_string(),
            );
        }
        keep_boot_settings(&old, &mut new);
        let d = diff(&old, &new);
        if d.is_empty() {
            // Nothing for the shards; what only the control thread reads (the admin token)
            // takes effect at once.
            self.publish(Arc::new(new));
            return Ok(Report {
                version: self.version,
                changes: Vec::new(),
                restart_needed,
                source: source.to_string(),
            });
        }
        check_access_logs(&new)?;
        // Held until the table matches what the shards run: an upgrade never hands over a
        // half-applied set of sockets, and one in progress holds this change back.
        let sockets = Arc::clone(&self.sockets);
        let mut table = sockets.lock().await;
        let shard_count = self.shards.len();
        // New sockets first (one per shard each): a port that cannot be bound fails the whole
        // change before anything is applied.
        let mut fds: Vec<HashMap<String, RawFd>> =
            (0..shard_count).map(|_| HashMap::new()).collect();
        for c in &d.changes {
            let Change::ListenerAdded(name) = c else {
                continue;
            };
            let Some(l) = new.listeners.iter().find(|l| &l.name == name) else {
                continue;
            };
            for per in fds.iter_mut() {
                match crate::shard::listener::bind_listener(l.bind, l.backlog) {
                    Ok(fd) => {
                        per.insert(name.clone(), fd);
                    }
                    Err(source) => {
                        close_fds(&fds);
                        return Err(ChangeError::Bind {
                            name: name.clone(),
                            addr: l.bind,
                            source,
                        });
                    }
                }
            }
        }
        let added = match crate::takeover::SocketTable::dup_added(&fds) {
            Ok(a) => a,
            Err(e) => {
                close_fds(&fds);
                return Err(ChangeError::Refused(format!(
                    "copying new listening sockets: {e}"
                )));
            }
        };
        let ids = self.planner.ids(&old);
        self.planner.forget_removed(&old, &d);
        let mut plans = Vec::with_capacity(shard_count);
        for (shard, per) in fds.iter().enumerate() {
            match self.planner.reload(&ids, &new, &d, shard, per) {
                Ok(ops) => plans.push(ops),
                Err(e) => {
                    close_fds(&fds);
                    return Err(e.into());
                }
            }
        }
        let applied = self.shards.apply(plans).await;
        table.commit(&d, added, applied.is_ok());
        drop(table);
        applied.map_err(ChangeError::Apply)?;
        let new = Arc::new(new);
        self.publish(Arc::clone(&new));
        self.version += 1;
        self.checks.sync(
            crate::health::targets(&new, &self.planner.registry),
            &self.shards,
        );
        if let Ok(mut t) = self.passive.lock() {
            *t = crate::health::passive_table(&new, &self.planner.registry);
        }
        let changes: Vec<String> = d.changes.iter().map(|c| c.to_string()).collect();
        tracing::info!(
            version = self.version,
            source,
            changes = changes.len(),
            restart_needed = restart_needed.len(),
            "configuration applied"
        );
        // One line per change at info while that stays readable; a sync of thousands of Redis
        // routes logs the first ones and a count (all of them at debug).
        for (i, line) in changes.iter().enumerate() {
            if i < CHANGES_LOGGED_MAX {
                tracing::info!(change = %line, "configuration change");
            } else {
                tracing::debug!(change = %line, "configuration change");
            }
        }
        if changes.len() > CHANGES_LOGGED_MAX {
            tracing::info!(
                more = changes.len() - CHANGES_LOGGED_MAX,
                "more configuration changes (listed at debug level)"
            );
        }
        for line in &restart_needed {
            tracing::warn!(change = %line, "not applied: needs a restart");
        }
        Ok(Report {
            version: self.version,
            changes,
            restart_needed,
            source: source.to_string(),
        })
    }
}

fn close_fds(fds: &[HashMap<String, RawFd>]) {
    for per in fds {
        for &fd in per.values() {
            crate::shard::close_fd(fd);
        }
    }
}

/// Every access log file of `config` can be opened (a shard that cannot would refuse the change
/// half-way).
fn check_access_logs(config: &Config) -> Result<(), ChangeError> {
    for l in &config.listeners {
        if let Some(h) = &l.http
            && let crate::config::AccessLog::File(path) = &h.access_log
        {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| ChangeError::AccessLog {
                    name: l.name.clone(),
                    reason: format!("{}: {e}", path.display()),
                })?;
        }
    }
    Ok(())
}

/// A change of the running configuration, built from it (the runtime API).
pub type Edit = Box<dyn FnOnce(&Config) -> Result<Config, ChangeError> + Send>;

/// A request to the task that owns [`Live`] (changes are applied one at a time).
pub enum Request {
    Reload {
        path: Option<PathBuf>,
        source: &'static str,
        reply: tokio::sync::oneshot::Sender<Result<Report, ChangeError>>,
    },
    /// New routes from the route provider: merged into the running configuration.
    Routes {
        snapshot: Arc<crate::provider::RouteSnapshot>,
        reply: tokio::sync::oneshot::Sender<Result<Report, ChangeError>>,
    },
    /// Apply a configuration built from the running one (the runtime API).
    Edit {
        edit: Edit,
        reply: tokio::sync::oneshot::Sender<Result<Report, ChangeError>>,
    },
}

/// Where requests for changes are sent (the admin listener, the signal handler).
#[derive(Clone)]
pub struct Changes {
    tx: tokio::sync::mpsc::Sender<Request>,
    current: Arc<Mutex<Arc<Config>>>,
    /// The route provider, once started (its counters go in /stats).
    pub provider: Arc<std::sync::OnceLock<Arc<crate::provider::ProviderHandle>>>,
}

impl Changes {
    pub async fn reload(
        &self,
        path: Option<PathBuf>,
        source: &'static str,
    ) -> Result<Report, ChangeError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Request::Reload {
                path,
                source,
                reply,
            })
            .await
            .map_err(|_| ChangeError::Refused("ringway is stopping".into()))?;
        rx.await
            .map_err(|_| ChangeError::Refused("ringway is stopping".into()))?
    }

    pub async fn edit(
        &self,
        edit: impl FnOnce(&Config) -> Result<Config, ChangeError> + Send + 'static,
    ) -> Result<Report, ChangeError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Request::Edit {
                edit: Box::new(edit),
                reply,
            })
            .await
            .map_err(|_| ChangeError::Refused("ringway is stopping".into()))?;
        rx.await
            .map_err(|_| ChangeError::Refused("ringway is stopping".into()))?
    }

    /// Merges a new snapshot of the route provider into the running configuration.
    pub async fn routes(
        &self,
        snapshot: Arc<crate::provider::RouteSnapshot>,
    ) -> Result<Report, ChangeError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Request::Routes { snapshot, reply })
            .await
            .map_err(|_| ChangeError::Refused("ringway is stopping".into()))?;
        rx.await
            .map_err(|_| ChangeError::Refused("ringway is stopping".into()))?
    }

    /// The configuration being served.
    pub fn current(&self) -> Arc<Config> {
        self.current
            .lock()
            .map(|c| Arc::clone(&c))
            .unwrap_or_else(|e| Arc::clone(&e.into_inner()))
    }
}

/// Runs `live`: applies requests one at a time until every sender is gone.
pub fn spawn(mut live: Live) -> Changes {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Request>(16);
    let current = live.current();
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            match req {
                Request::Reload {
                    path,
                    source,
                    reply,
                } => {
                    let r = live.reload(path.as_deref(), source).await;
                    if let Err(e) = &r {
                        tracing::warn!(source, error = %e, "configuration not applied; the running one stays");
                    }
                    let _ = reply.send(r);
                }
                Request::Routes { snapshot, reply } => {
                    live.routes = Some(snapshot);
                    let current = Config::clone(live.config());
                    let r = live.apply(current, "redis").await;
                    if let Err(e) = &r {
                        tracing::warn!(error = %e, "routes from Redis not applied; the running ones stay");
                    }
                    let _ = reply.send(r);
                }
                Request::Edit { edit, reply } => {
                    let r = match edit(live.config()) {
                        Ok(new) => live.apply(new, "runtime API").await,
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(r);
                }
            }
        }
    });
    Changes {
        tx,
        current,
        provider: Arc::default(),
    }
}
