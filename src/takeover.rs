//! Owns: the zero-downtime binary upgrade as a running ringway carries it out (nginx's SIGUSR2
//! model, over [`crate::upgrade`]'s socket hand-over): the table of the process's current
//! listening sockets ([`SocketTable`], kept up to date by control at start and by
//! [`crate::live::Live`] on every applied change), the upgrade itself (bind the upgrade socket,
//! start the new binary, hand the sockets over, wait for `ready`, report), stopping a new process
//! that failed, and the new process's side of fetching the sockets ([`fetch`]).
//! Must not: touch shards or connections (control.rs drains once an upgrade succeeded), close or
//! change a socket it hands over, or block the control runtime (blocking steps run on
//! `spawn_blocking`).
//!
//! # The table holds copies
//!
//! Every socket in the table is a `dup` of the fd a shard accepts on (or of the admin listener's),
//! so the fds handed over can never be closed and reused under the hand-over's feet. The price:
//! a copy keeps its socket open, and an open socket in a SO_REUSEPORT group keeps getting its
//! share of new connections even when nobody accepts on it. So a copy must go as soon as the
//! process stops accepting on its socket: removed listeners' copies are dropped when a change is
//! applied ([`SocketTable::commit`]), and every copy when the process starts draining
//! ([`SocketTable::clear`]).
//!
//! # One change at a time
//!
//! The table lives behind an async mutex. [`crate::live::Live::apply`] holds it for a whole
//! change and an upgrade holds it for the whole hand-over, so a reload waits for an upgrade in
//! progress (and the other way round), and the sockets handed over are always every listening
//! socket the process has.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::diff::{Change, ConfigDiff};
use crate::inherit::{Listening, Origin, Passed};
use crate::upgrade::{
    HandoverConn, HandoverOutcome, HandoverSocket, UpgradeError, bind_upgrade_socket,
    fetch_handover, serve_handover,
};

/// The admin listener's name in a hand-over. Not a valid listener name (`:` is refused by the
/// config), so it can never be taken for one.
pub const ADMIN_SOCKET_NAME: &str = "ringway:admin";
/// Old side: from starting the new binary to its `ready`. Below the 30 s `ringway upgrade` waits
/// for the admin listener's answer, so the command always hears how the upgrade ended.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(15);
/// New side: connecting to the old process and receiving the sockets; then again for the old
/// process's ack of `ready`.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the old side looks whether the new process connected or exited meanwhile.
const CHILD_POLL: Duration = Duration::from_millis(20);
/// After a failed hand-over, how long the old side waits to see whether the new process exited
/// (its exit status explains more than a closed connection).
const EXIT_WAIT: Duration = Duration::from_millis(500);
/// On top of the drain timeout: how long a failed new process gets to stop after SIGTERM before
/// it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The listening sockets of this process, as copies (see the module docs): per listener name one
/// per shard (index = shard), plus the admin listener's.
#[derive(Debug, Default)]
pub struct SocketTable {
    listeners: BTreeMap<String, Vec<OwnedFd>>,
    admin: Option<OwnedFd>,
    /// Set by [`SocketTable::clear`]: the process drains and takes no copies any more.
    closed: bool,
}

/// The table as control, [`crate::live::Live`] and an upgrade share it.
pub type SharedSockets = Arc<tokio::sync::Mutex<SocketTable>>;

/// A close-on-exec copy of a raw fd this process owns and keeps open for the call.
fn dup_raw(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: every caller passes an fd this process holds open for at least this call (just
    // bound, or owned by a shard that closes it only when draining or when its listener is
    // removed, neither of which runs while the table is being filled); the borrow ends here.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    crate::inherit::dup(borrowed)
}

impl SocketTable {
    /// Copies of the sockets the shards are about to take (`listening.per_shard`, by listener
    /// index into `config.listeners`).
    pub fn from_listening(
        config: &crate::config::Config,
        listening: &Listening,
    ) -> std::io::Result<SocketTable> {
        let mut table = SocketTable::default();
        for fds in &listening.per_shard {
            for &(index, fd) in fds {
                let Some(l) = config.listeners.get(index) else {
                    continue;
                };
                table
                    .listeners
                    .entry(l.name.clone())
                    .or_default()
                    .push(dup_raw(fd)?);
            }
        }
        Ok(table)
    }

    pub fn set_admin(&mut self, fd: Option<OwnedFd>) {
        self.admin = fd;
    }

    /// Drops every copy, for good: the process stops accepting (drain).
    pub fn clear(&mut self) {
        self.listeners.clear();
        self.admin = None;
        self.closed = true;
    }

    /// Sockets a hand-over would carry.
    pub fn len(&self) -> usize {
        self.listeners.values().map(Vec::len).sum::<usize>() + usize::from(self.admin.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn handover(&self) -> Vec<HandoverSocket<'_>> {
        let mut out: Vec<HandoverSocket<'_>> = Vec::with_capacity(self.len());
        for (name, fds) in &self.listeners {
            for (shard, fd) in fds.iter().enumerate() {
                out.push(HandoverSocket {
                    name,
                    shard: u16::try_from(shard).unwrap_or(u16::MAX),
                    fd: fd.as_fd(),
                });
            }
        }
        if let Some(fd) = &self.admin {
            out.push(HandoverSocket {
                name: ADMIN_SOCKET_NAME,
                shard: 0,
                fd: fd.as_fd(),
            });
        }
        out
    }

    /// [`crate::live::Live::apply`]: copies of the sockets bound for added listeners (`fds`: per
    /// shard, by listener name), taken before the shards own them.
    pub fn dup_added(
        fds: &[HashMap<String, RawFd>],
    ) -> std::io::Result<HashMap<String, Vec<OwnedFd>>> {
        let mut out: HashMap<String, Vec<OwnedFd>> = HashMap::new();
        for per in fds {
            for (name, &fd) in per {
                out.entry(name.clone()).or_default().push(dup_raw(fd)?);
            }
        }
        Ok(out)
    }

    /// [`crate::live::Live::apply`], once the shards applied `diff` (`applied`) or failed to:
    /// removed listeners' copies go either way (a shard that applied the removal closes its own
    /// socket when its accept ends, and our copy would keep it in its reuseport group), added
    /// ones come in only when every shard took them.
    pub fn commit(
        &mut self,
        diff: &ConfigDiff,
        added: HashMap<String, Vec<OwnedFd>>,
        applied: bool,
    ) {
        for c in &diff.changes {
            if let Change::ListenerRemoved(name) = c {
                self.listeners.remove(name);
            }
        }
        if applied && !self.closed {
            self.listeners.extend(added);
        }
    }
}

/// What the old process tells the new one besides the sockets (the hand-over's state blob).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HandoverState {
    pub ringway_version: String,
    pub pid: u32,
}

/// How the running process starts its successor.
#[derive(Debug, Clone)]
pub struct Relaunch {
    /// The binary ringway was started from (`current_exe()` at start). Not `/proc/self/exe`:
    /// once the file was replaced by the new version (`install`, a package upgrade),
    /// `/proc/self/exe` still names the old, deleted binary, and an upgrade would start the old
    /// code again.
    pub program: PathBuf,
    /// Options before the subcommand (`--log-level debug`).
    pub global_args: Vec<OsString>,
    /// The configuration file ringway was started with (absolute).
    pub config: PathBuf,
    /// `--allow-root` was given.
    pub allow_root: bool,
}

impl Relaunch {
    /// `PROGRAM [global args] run -c FILE [--allow-root] --upgrade-from SOCKET`, with our
    /// environment (LISTEN_* were removed at start, NOTIFY_SOCKET stays for `MAINPID=`), stdout
    /// and stderr (so both processes log to the same place).
    fn command(&self, req: &UpgradeRequest, socket: &Path) -> (PathBuf, Command) {
        let program = req.bin.clone().unwrap_or_else(|| self.program.clone());
        let mut cmd = Command::new(&program);
        cmd.args(&self.global_args)
            .arg("run")
            .arg("-c")
            .arg(req.config.as_ref().unwrap_or(&self.config));
        if self.allow_root {
            cmd.arg("--allow-root");
        }
        cmd.arg("--upgrade-from").arg(socket).stdin(Stdio::null());
        (program, cmd)
    }
}

/// One upgrade asked for by SIGUSR2 or `POST /upgrade`.
#[derive(Debug, Clone, Default)]
pub struct UpgradeRequest {
    /// The file the new process runs (default: the one this process was started with).
    pub config: Option<PathBuf>,
    /// The binary to start (default: [`Relaunch::program`]).
    pub bin: Option<PathBuf>,
    /// Who asked (for the log).
    pub source: &'static str,
}

/// An upgrade that happened: this process stops accepting and drains.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Upgraded {
    pub old_pid: u32,
    pub new_pid: i32,
}

/// Why an upgrade did not happen. In every case this process keeps serving as before.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeFailed {
    #[error("an upgrade is already in progress")]
    Busy,
    #[error("ringway already handed over to pid {new_pid} and is draining")]
    Done { new_pid: i32 },
    #[error("ringway is stopping")]
    Stopping,
    #[error("{0}")]
    Socket(#[source] UpgradeError),
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the new process (pid {pid}, {}) {status} before taking over; its log says why",
        program.display()
    )]
    Exited {
        pid: i32,
        program: PathBuf,
        status: String,
    },
    #[error("the new process (pid {pid}) could not start: {reason}")]
    Refused { pid: i32, reason: String },
    #[error("hand-over to the new process (pid {pid}) failed: {source}")]
    Handover {
        pid: i32,
        #[source]
        source: UpgradeError,
    },
    #[error("upgrade: {0}")]
    Internal(String),
}

impl UpgradeFailed {
    /// The admin API's status: 409 when this process cannot upgrade now, 502 when the new
    /// process failed, 500 for our own failures.
    pub fn http_status(&self) -> u16 {
        match self {
            UpgradeFailed::Busy | UpgradeFailed::Done { .. } | UpgradeFailed::Stopping => 409,
            UpgradeFailed::Exited { .. }
            | UpgradeFailed::Refused { .. }
            | UpgradeFailed::Handover { .. } => 502,
            UpgradeFailed::Socket(_) | UpgradeFailed::Spawn { .. } | UpgradeFailed::Internal(_) => {
                500
            }
        }
    }

    /// Worth asking again as is.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpgradeFailed::Busy => true,
            UpgradeFailed::Handover { source, .. } | UpgradeFailed::Socket(source) => {
                source.is_retryable()
            }
            UpgradeFailed::Done { .. }
            | UpgradeFailed::Stopping
            | UpgradeFailed::Spawn { .. }
            | UpgradeFailed::Exited { .. }
            | UpgradeFailed::Refused { .. }
            | UpgradeFailed::Internal(_) => false,
        }
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<Upgraded, UpgradeFailed>>;

struct Job {
    req: UpgradeRequest,
    reply: Option<Reply>,
}

/// Where upgrades are asked for (SIGUSR2, the admin listener); one runs at a time.
#[derive(Clone)]
pub struct Upgrades {
    tx: tokio::sync::mpsc::Sender<Job>,
    busy: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
}

/// The admin listener's way to [`Upgrades`] (one control thread per process).
static ADMIN: OnceLock<Upgrades> = OnceLock::new();

/// Starts the task that runs upgrades for this process. The receiver yields the new process's
/// pid once one took over.
pub fn start(
    sockets: SharedSockets,
    relaunch: Relaunch,
    changes: crate::live::Changes,
) -> (Upgrades, tokio::sync::oneshot::Receiver<i32>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(1);
    let (took_over, took_over_rx) = tokio::sync::oneshot::channel();
    let upgrades = Upgrades {
        tx,
        busy: Arc::new(AtomicBool::new(false)),
        stopping: Arc::new(AtomicBool::new(false)),
    };
    let busy = Arc::clone(&upgrades.busy);
    let stopping = Arc::clone(&upgrades.stopping);
    tokio::spawn(async move {
        let mut took_over = Some(took_over);
        let mut done: Option<i32> = None;
        while let Some(job) = rx.recv().await {
            let result = match done {
                Some(new_pid) => Err(UpgradeFailed::Done { new_pid }),
                None if stopping.load(Ordering::SeqCst) => Err(UpgradeFailed::Stopping),
                None => {
                    let drain_timeout = changes.current().global.drain_timeout;
                    upgrade(&sockets, &relaunch, &job.req, drain_timeout).await
                }
            };
            match &result {
                Ok(u) => {
                    // The old process is still the unit's main process here, so systemd takes
                    // this even with NotifyAccess=main, and the switch does not depend on whether
                    // the new process's own MAINPID= or our exit comes first.
                    crate::startup::sd_notify(&format!("MAINPID={}", u.new_pid));
                    tracing::info!(
                        new_pid = u.new_pid,
                        source = job.req.source,
                        "upgrade: the new process took over; this one stops accepting and drains"
                    );
                    if done.is_none()
                        && let Some(t) = took_over.take()
                    {
                        let _ = t.send(u.new_pid);
                    }
                    done = Some(u.new_pid);
                }
                Err(e) => tracing::warn!(
                    source = job.req.source,
                    error = %e,
                    "upgrade failed; this process keeps serving"
                ),
            }
            busy.store(false, Ordering::SeqCst);
            if let Some(reply) = job.reply {
                let _ = reply.send(result);
            }
        }
    });
    (upgrades, took_over_rx)
}

impl Upgrades {
    /// Queues an upgrade; the receiver gets its outcome. Refused at once while another runs.
    pub fn submit(
        &self,
        req: UpgradeRequest,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Upgraded, UpgradeFailed>>, UpgradeFailed>
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.enqueue(req, Some(reply))?;
        Ok(rx)
    }

    /// Queues an upgrade whose outcome is only logged (SIGUSR2).
    pub fn trigger(&self, req: UpgradeRequest) {
        let source = req.source;
        if let Err(e) = self.enqueue(req, None) {
            tracing::warn!(source, error = %e, "upgrade not started");
        }
    }

    fn enqueue(&self, req: UpgradeRequest, reply: Option<Reply>) -> Result<(), UpgradeFailed> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(UpgradeFailed::Stopping);
        }
        if self.busy.swap(true, Ordering::SeqCst) {
            return Err(UpgradeFailed::Busy);
        }
        self.tx.try_send(Job { req, reply }).map_err(|_| {
            self.busy.store(false, Ordering::SeqCst);
            UpgradeFailed::Stopping
        })
    }

    /// No more upgrades: the process drains.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Makes `POST /upgrade` reach these upgrades.
    pub fn serve_admin(&self) {
        let _ = ADMIN.set(self.clone());
    }
}

/// `POST /upgrade`: runs an upgrade and waits for its outcome.
pub async fn request(req: UpgradeRequest) -> Result<Upgraded, UpgradeFailed> {
    let Some(upgrades) = ADMIN.get() else {
        return Err(UpgradeFailed::Internal(
            "upgrades are not available in this process".into(),
        ));
    };
    let rx = upgrades.submit(req)?;
    rx.await.map_err(|_| UpgradeFailed::Stopping)?
}

/// Where the upgrade socket goes: `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`) or the
/// temp dir, named after our pid so two ringways on one host never meet.
pub fn socket_path() -> PathBuf {
    let dir = std::env::var_os("RUNTIME_DIRECTORY")
        .and_then(|d| {
            let first = d.to_string_lossy().split(':').next()?.to_owned();
            (!first.is_empty()).then(|| PathBuf::from(first))
        })
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("ringway-upgrade-{}.sock", std::process::id()))
}

/// Removes the upgrade socket's file when the upgrade ends, however it ends.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove the upgrade socket");
        }
    }
}

/// One upgrade, from binding the upgrade socket to the outcome.
async fn upgrade(
    sockets: &SharedSockets,
    relaunch: &Relaunch,
    req: &UpgradeRequest,
    drain_timeout: Duration,
) -> Result<Upgraded, UpgradeFailed> {
    let table = Arc::clone(sockets).lock_owned().await;
    if table.closed {
        return Err(UpgradeFailed::Stopping);
    }
    let path = socket_path();
    let listener = bind_upgrade_socket(&path).map_err(UpgradeFailed::Socket)?;
    let socket_file = SocketFile(path.clone());
    let (program, mut cmd) = relaunch.command(req, &path);
    let mut child = cmd.spawn().map_err(|source| UpgradeFailed::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    tracing::info!(
        new_pid = pid,
        program = %program.display(),
        sockets = table.len(),
        source = req.source,
        "upgrade: started the new binary; handing over the listening sockets"
    );
    let deadline = Instant::now() + UPGRADE_TIMEOUT;
    // Until the new process connects, watch it: one that exits early (a wrong binary, a bad
    // config) is reported at once rather than at the timeout.
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(UpgradeFailed::Exited {
                pid,
                program,
                status: describe(status),
            });
        }
        if connection_waiting(&listener) {
            break;
        }
        if Instant::now() >= deadline {
            stop_child(child, drain_timeout);
            return Err(UpgradeFailed::Handover {
                pid,
                source: UpgradeError::Timeout {
                    phase: crate::upgrade::Phase::Accepting,
                    timeout: UPGRADE_TIMEOUT,
                },
            });
        }
        tokio::time::sleep(CHILD_POLL).await;
    }
    let state = serde_json::to_vec(&HandoverState {
        ringway_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
    })
    .unwrap_or_default();
    let left = deadline.saturating_duration_since(Instant::now());
    let served = tokio::task::spawn_blocking(move || {
        let outcome = serve_handover(&listener, &table.handover(), &state, left);
        drop(listener);
        // The table goes back to the mutex only now: no change could close a socket while it
        // was being handed over.
        drop(table);
        outcome
    })
    .await;
    drop(socket_file);
    let outcome = match served {
        Ok(o) => o,
        Err(e) => {
            stop_child(child, drain_timeout);
            return Err(UpgradeFailed::Internal(format!("hand-over thread: {e}")));
        }
    };
    match outcome {
        Ok(HandoverOutcome::Ready { new_pid }) => {
            if new_pid != pid {
                tracing::info!(
                    started = pid,
                    serving = new_pid,
                    "upgrade: the hand-over was taken by a child of the started program"
                );
            }
            // The new process lives on; dropping the handle neither kills nor waits for it.
            drop(child);
            Ok(Upgraded {
                old_pid: std::process::id(),
                new_pid,
            })
        }
        Ok(HandoverOutcome::NewFailed { new_pid, reason }) => {
            stop_child(child, drain_timeout);
            Err(UpgradeFailed::Refused {
                pid: new_pid,
                reason,
            })
        }
        Err(source) => {
            // A process that died mid-way closes the connection: its exit status says more.
            let waited = Instant::now() + EXIT_WAIT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(UpgradeFailed::Exited {
                        pid,
                        program,
                        status: describe(status),
                    });
                }
                if Instant::now() >= waited {
                    break;
                }
                tokio::time::sleep(CHILD_POLL).await;
            }
            stop_child(child, drain_timeout);
            Err(UpgradeFailed::Handover { pid, source })
        }
    }
}

/// Someone connected to the upgrade socket (a poll without waiting).
fn connection_waiting(listener: &std::os::unix::net::UnixListener) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(n) if n > 0)
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => format!("ended ({status})"),
    }
}

/// Stops a new process that did not take over, in the background: SIGTERM (it may have started
/// shards that accepted connections on the shared sockets; they drain), SIGKILL after the drain
/// timeout and a grace period, and always reaped.
fn stop_child(mut child: Child, drain_timeout: Duration) {
    tokio::spawn(async move {
        let pid = child.id();
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if let Some(p) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
        }
        let until = Instant::now() + drain_timeout + STOP_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    tracing::info!(pid, status = %describe(status), "upgrade: the failed new process stopped");
                    return;
                }
                Ok(None) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Ok(None) | Err(_) => break,
            }
        }
        tracing::warn!(
            pid,
            "upgrade: the failed new process did not stop; killing it"
        );
        let _ = child.kill();
        let until = Instant::now() + STOP_GRACE;
        while Instant::now() < until {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// How long after taking over the new process looks for connections left waiting in an accept
/// queue, and how often.
pub const WATCH_ACCEPT_FOR: Duration = Duration::from_secs(10);
const WATCH_ACCEPT_EVERY: Duration = Duration::from_millis(50);

/// New side, once the old process acknowledged: re-arms the accept of any shard whose socket
/// has connections waiting at two checks in a row, for [`WATCH_ACCEPT_FOR`].
///
/// Why: io_uring accepts poll with EPOLLEXCLUSIVE, so a new connection wakes one waiter per
/// socket, and while both processes accept, that is the old process's (it waited first). When the
/// old process cancels its accepts to drain, a connection whose wakeup it had just taken stays
/// queued, and our accept, never woken for it, takes it only with the next connection on that
/// socket: with little traffic, a client would wait indefinitely. A fresh accept tries the queue
/// at once.
pub async fn watch_accept_queues(sockets: SharedSockets, shards: Arc<crate::bus::Shards>) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let until = Instant::now() + WATCH_ACCEPT_FOR;
    let mut waiting_before: Vec<usize> = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(WATCH_ACCEPT_EVERY).await;
        // A change in progress holds the table: look again next round.
        let Ok(table) = sockets.try_lock() else {
            continue;
        };
        if table.closed {
            return;
        }
        let shard_fds: Vec<(usize, BorrowedFd<'_>)> = table
            .listeners
            .values()
            .flat_map(|fds| fds.iter().enumerate().map(|(s, fd)| (s, fd.as_fd())))
            .collect();
        let mut polls: Vec<PollFd<'_>> = shard_fds
            .iter()
            .map(|(_, fd)| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
            .collect();
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if rustix::event::poll(&mut polls, Some(&now)).is_err() {
            continue;
        }
        let mut waiting: Vec<usize> = polls
            .iter()
            .zip(&shard_fds)
            .filter(|(p, _)| p.revents().contains(PollFlags::IN))
            .map(|(_, (s, _))| *s)
            .collect();
        waiting.sort_unstable();
        waiting.dedup();
        drop(polls);
        drop(table);
        for &shard in waiting.iter().filter(|s| waiting_before.contains(s)) {
            tracing::debug!(
                shard,
                "connections wait in an accept queue; re-arming accepts"
            );
            shards.send_lossless(shard, crate::shard::ShardMsg::RearmAccepts);
        }
        waiting_before = waiting;
    }
}

/// What the new process gets from the old one: the listeners' sockets, the admin listener's (if
/// the old process had one), and the connection to report on.
pub struct Fetched {
    pub listeners: Vec<Passed>,
    pub admin: Option<OwnedFd>,
    pub conn: HandoverConn,
}

/// New side: fetches the sockets from the old process at `path` (blocking, within
/// [`FETCH_TIMEOUT`]).
pub fn fetch(path: &Path) -> Result<Fetched, UpgradeError> {
    let (inherited, state, conn) = fetch_handover(path, FETCH_TIMEOUT)?;
    let old_pid = conn.old_pid();
    let old: HandoverState = serde_json::from_slice(&state).unwrap_or_default();
    tracing::info!(
        old_pid,
        old_version = %old.ringway_version,
        sockets = inherited.len(),
        batches = conn.batch_count(),
        "upgrade: received the listening sockets"
    );
    let mut admin = None;
    let mut listeners = Vec::with_capacity(inherited.len());
    for i in inherited {
        if i.name == ADMIN_SOCKET_NAME {
            admin = Some(i.fd);
        } else {
            listeners.push(Passed {
                name: Some(i.name),
                fd: i.fd,
                origin: Origin::OldProcess { pid: old_pid },
            });
        }
    }
    Ok(Fetched {
        listeners,
        admin,
        conn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> std::net::TcpListener {
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind")
    }

    #[test]
    fn the_table_follows_added_and_removed_listeners() {
        use std::os::fd::AsRawFd;
        let (a, b) = (listener(), listener());
        let per_shard: Vec<HashMap<String, RawFd>> = vec![
            HashMap::from([("new".to_string(), a.as_raw_fd())]),
            HashMap::from([("new".to_string(), b.as_raw_fd())]),
        ];
        let added = SocketTable::dup_added(&per_shard).expect("dup");
        let mut table = SocketTable::default();
        table.listeners.insert(
            "old".into(),
            vec![crate::inherit::dup(a.as_fd()).expect("dup")],
        );
        let diff = ConfigDiff {
            changes: vec![
                Change::ListenerRemoved("old".into()),
                Change::ListenerAdded("new".into()),
            ],
        };
        table.commit(&diff, added, true);
        let names: Vec<(&str, u16)> = table.handover().iter().map(|s| (s.name, s.shard)).collect();
        assert_eq!(names, vec![("new", 0), ("new", 1)]);
        // A change the shards refused adds nothing, but removals still go.
        let again = SocketTable::dup_added(&per_shard[..1]).expect("dup");
        let removal = ConfigDiff {
            changes: vec![Change::ListenerRemoved("new".into())],
        };
        table.commit(&removal, again, false);
        assert!(table.is_empty());
    }

    #[test]
    fn the_new_process_is_started_with_the_same_options_and_the_socket() {
        let relaunch = Relaunch {
            program: "/usr/local/bin/ringway".into(),
            global_args: vec!["--log-level".into(), "debug".into()],
            config: "/etc/ringway/ringway.toml".into(),
            allow_root: true,
        };
        let (program, cmd) = relaunch.command(&UpgradeRequest::default(), Path::new("/run/x.sock"));
        assert_eq!(program, Path::new("/usr/local/bin/ringway"));
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--log-level",
                "debug",
                "run",
                "-c",
                "/etc/ringway/ringway.toml",
                "--allow-root",
                "--upgrade-from",
                "/run/x.sock"
            ]
        );
        let req = UpgradeRequest {
            config: Some("/tmp/new.toml".into()),
            bin: Some("/opt/ringway-2".into()),
            source: "test",
        };
        let (program, cmd) = relaunch.command(&req, Path::new("/run/x.sock"));
        assert_eq!(program, Path::new("/opt/ringway-2"));
        assert!(cmd.get_args().any(|a| a == "/tmp/new.toml"));
    }

    #[test]
    fn failures_map_to_statuses() {
        assert_eq!(UpgradeFailed::Busy.http_status(), 409);
        assert!(UpgradeFailed::Busy.is_retryable());
        let refused = UpgradeFailed::Refused {
            pid: 7,
            reason: "bind".into(),
        };
        assert_eq!(refused.http_status(), 502);
        assert!(!refused.is_retryable());
    }
}
