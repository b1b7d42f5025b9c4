//! Owns: the hand-over of listening sockets from a running ringway (the old process) to a new
//! one over a unix stream socket: every SO_REUSEPORT socket of every listener, one per shard,
//! passed with SCM_RIGHTS, plus an opaque state blob, and the new process's `ready`/`failed`
//! answer.
//! Must not: bind, close, shut down or change any listening socket it hands over (the old
//! process keeps serving on them until it sees [`HandoverOutcome::Ready`]), interpret the state
//! blob, or touch shards and rings. The only socket it binds is the unix upgrade socket
//! ([`bind_upgrade_socket`]). All calls block: run them on a dedicated thread or in
//! `spawn_blocking`, never on a shard.
//!
//! # Why hand sockets over
//!
//! Every listener has one SO_REUSEPORT socket per shard, each with its own accept queue. A new
//! process that bound fresh sockets and let the old ones close would lose every connection queued
//! in a closed socket: the kernel resets them. Passing the same sockets keeps the queues; old and
//! new then accept from them side by side until the old one stops.
//!
//! # Flow
//!
//! ```text
//! old process (control thread or spawn_blocking)       new process (at start, before shards)
//! ---------------------------------------------       ------------------------------------
//! listener = bind_upgrade_socket(path)   (mode 0600)
//! serve_handover(&listener, &sockets, &state, t) ---- fetch_handover(path, t)
//!   accept, SO_PEERCRED: same uid or root                connect (retried until t), SO_PEERCRED
//!   -> hello: version, socket count, state blob  ---->   check version
//!   -> batches of <= 253 fds, each with a JSON   ---->   check each fd: listening TCP, bound addr;
//!      manifest [{"name":..,"shard":..}]                 -> (Vec<Inherited>, state, HandoverConn)
//!                                                        adopt sockets (crate::adopt), start
//!                                                        shards, health-check, then:
//!   <- ready                                     <----   conn.report_ready()   (or report_failed)
//!   -> ack                                       ---->   report_ready returns Ok: now serving
//! Ok(Ready { new_pid }): stop accepting, drain, exit
//! ```
//!
//! `timeout` on the old side bounds the whole exchange (waiting for the connection, sending, and
//! the new process's start-up until it says `ready`), so choose it above the new process's
//! start-up time. On the new side it bounds connecting and receiving, and separately the wait for
//! the ack in [`HandoverConn::report_ready`].
//!
//! # Rules for the integrator
//!
//! - Old side: only `Ok(HandoverOutcome::Ready { .. })` means "stop accepting and drain".
//!   `Ok(NewFailed)` and every `Err` mean "keep serving": nothing of ours was closed or changed.
//! - Old side, after `Ready`: stop accepting by cancelling each shard's in-flight accept on the
//!   ring (an io_uring op holds its own reference to the file, so closing the fd alone does not
//!   stop it), then close the fd once the cancel has completed. Never `shutdown(2)` a handed-over
//!   listening socket: it is the same socket the new process accepts on, and shutdown would stop
//!   it there too.
//! - Both sides share one open file per socket, so file status flags are shared: never change
//!   O_NONBLOCK, and note that `listen(2)` again with another backlog changes it for both.
//! - New side: every [`Inherited`] socket that belongs to a listener must be accepted on (see
//!   [`crate::adopt`]); closing one resets the connections queued in it.
//! - New side: if [`HandoverConn::report_ready`] fails, the old process did not take the
//!   hand-over (it timed out or went away) and may still be serving: stop and exit. Dropping the
//!   [`HandoverConn`] without reporting tells the old process the upgrade failed.
//! - Old side: hold listener changes (reload) while a hand-over runs; the sockets passed must be
//!   every listening socket the process has, and none may be closed until the call returns.
//! - New side, once serving: bind the upgrade socket for the next upgrade with
//!   [`bind_upgrade_socket`] (it replaces the old process's socket file at the same path).
//! - Under systemd (`Type=notify`) the new process is not the unit's main process: it needs
//!   `NotifyAccess=all` and must send `MAINPID=<its pid>` with `READY=1`, or systemd treats the
//!   old process's exit as the service's end and stops the new one too.
//! - The state blob is opaque here (JSON by convention: config version, runtime overrides, health,
//!   counter baselines); both sides must agree on its format, and it is capped at
//!   [`STATE_BYTES_MAX`].
//!
//! # Wire format (version 1)
//!
//! Frames on a SOCK_STREAM unix socket: `u32` big-endian length of what follows, a kind byte,
//! the payload. Kinds: 1 hello (`b"RWUP"`, `u16` version, `u32` socket count, state blob),
//! 2 batch (JSON manifest; its fds ride on the frame's first byte), 3 ready, 4 failed (UTF-8
//! reason), 5 ack. The kernel attaches passed fds to the bytes of the `sendmsg` that carried
//! them and never merges two such messages in one read, so the receiver queues fds in arrival
//! order and each batch takes as many as its manifest names.

use std::collections::{HashSet, VecDeque};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};

use crate::adopt::{Candidate, InspectError, inspect_listener};

/// Version of the wire format; both sides must speak the same one.
pub const PROTOCOL_VERSION: u16 = 1;
/// The kernel's cap on fds in one SCM_RIGHTS message (SCM_MAX_FD in include/net/scm.h);
/// more fail the whole sendmsg with EINVAL.
pub const FDS_PER_MESSAGE_MAX: usize = 253;
/// Largest state blob either side accepts.
pub const STATE_BYTES_MAX: usize = 16 << 20;
/// Most sockets one hand-over carries (e.g. 256 listeners of 256 shards).
pub const SOCKETS_MAX: usize = 65_536;
/// Longest listener name in a manifest.
pub const NAME_BYTES_MAX: usize = 1024;
/// Longest `failed` reason kept; longer ones are cut at a character boundary.
pub const REASON_BYTES_MAX: usize = 4096;

const MAGIC: [u8; 4] = *b"RWUP";
/// Magic, version, socket count.
const HELLO_FIXED_BYTES: usize = 4 + 2 + 4;
/// Kind byte plus the largest payload (a hello with the largest state).
const FRAME_BYTES_MAX: usize = 1 + HELLO_FIXED_BYTES + STATE_BYTES_MAX;
const RECV_CHUNK_BYTES: usize = 64 * 1024;
/// Between connect attempts while the old process's socket does not exist or listen yet.
const CONNECT_RETRY: Duration = Duration::from_millis(20);
/// After a send fails, how long to look for a `failed` frame that explains why.
const SALVAGE_WAIT: Duration = Duration::from_millis(200);
/// Room for one SCM_RIGHTS message of [`FDS_PER_MESSAGE_MAX`] fds.
const CMSG_BYTES: usize = rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE_MAX));

/// A frame's kind byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hello = 1,
    Batch = 2,
    Ready = 3,
    Failed = 4,
    Ack = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Hello),
            2 => Some(Kind::Batch),
            3 => Some(Kind::Ready),
            4 => Some(Kind::Failed),
            5 => Some(Kind::Ack),
            _ => None,
        }
    }
}

/// Where in the exchange something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Accepting,
    Connecting,
    Sending,
    Receiving,
    WaitingReady,
    Reporting,
    WaitingAck,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Accepting => "waiting for the new process to connect",
            Phase::Connecting => "connecting to the old process",
            Phase::Sending => "sending the listening sockets",
            Phase::Receiving => "receiving the listening sockets",
            Phase::WaitingReady => "waiting for the new process to report ready",
            Phase::Reporting => "reporting to the old process",
            Phase::WaitingAck => "waiting for the old process to acknowledge ready",
        })
    }
}

/// Why a hand-over did not complete. On the old side every variant means "keep serving".
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("upgrade socket {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("upgrade socket {}: {source}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("upgrade socket {}: exists and is not a socket; not replacing it", path.display())]
    NotASocket { path: PathBuf },
    #[error("hand-over timed out after {timeout:?} while {phase}")]
    Timeout { phase: Phase, timeout: Duration },
    #[error(
        "hand-over refused: peer pid {pid} runs as uid {uid}; only uid {ours} or root may take part"
    )]
    PeerRefused { pid: i32, uid: u32, ours: u32 },
    #[error("hand-over peer closed the connection while {phase}")]
    PeerClosed { phase: Phase },
    #[error("hand-over I/O failed while {phase}: {source}")]
    Io {
        phase: Phase,
        #[source]
        source: io::Error,
    },
    #[error("hand-over protocol version {theirs} is not ours ({ours}); upgrade in two steps")]
    Version { ours: u16, theirs: u16 },
    #[error("hand-over protocol error while {phase}: {what}")]
    Protocol { phase: Phase, what: String },
    #[error("the kernel dropped passed fds (MSG_CTRUNC): is RLIMIT_NOFILE too low?")]
    FdsTruncated,
    #[error("handed-over socket `{name}` shard {shard} is not a listening TCP socket: {source}")]
    NotListening {
        name: String,
        shard: u16,
        #[source]
        source: InspectError,
    },
    #[error("socket `{name}` shard {shard} is in the hand-over twice")]
    Duplicate { name: String, shard: u16 },
    #[error("hand-over limit: {what}")]
    TooLarge { what: String },
}

impl UpgradeError {
    /// Worth trying the upgrade again as is: the other side was slow, absent or went away.
    /// Not: refused credentials, protocol or version mismatch, bad sockets, limits.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpgradeError::Connect { .. }
            | UpgradeError::Bind { .. }
            | UpgradeError::Timeout { .. }
            | UpgradeError::PeerClosed { .. }
            | UpgradeError::Io { .. } => true,
            UpgradeError::NotASocket { .. }
            | UpgradeError::PeerRefused { .. }
            | UpgradeError::Version { .. }
            | UpgradeError::Protocol { .. }
            | UpgradeError::FdsTruncated
            | UpgradeError::NotListening { .. }
            | UpgradeError::Duplicate { .. }
            | UpgradeError::TooLarge { .. } => false,
        }
    }
}

/// One listening socket to hand over: `shard`'s SO_REUSEPORT socket of listener `name`.
#[derive(Debug, Clone, Copy)]
pub struct HandoverSocket<'a> {
    pub name: &'a str,
    pub shard: u16,
    /// Borrowed: it stays open in the old process, which goes on serving on it.
    pub fd: BorrowedFd<'a>,
}

/// One listening socket received from the old process.
#[derive(Debug)]
pub struct Inherited {
    /// Listener name in the old process's config.
    pub name: String,
    /// The old process's shard that accepted on it.
    pub shard: u16,
    /// Where it is bound (getsockname), to check against the new config.
    pub addr: SocketAddr,
    /// Close-on-exec, listening TCP; the same open socket the old process still holds.
    pub fd: OwnedFd,
}

impl Inherited {
    /// For [`crate::adopt::match_listeners`]: named after its listener. [`fetch_handover`]
    /// returns sockets sorted by (name, shard), so old shard `i` maps to new shard `i` when the
    /// shard count is unchanged.
    pub fn candidate(&self) -> Candidate {
        Candidate {
            name: Some(self.name.clone()),
            addr: Some(self.addr),
        }
    }
}

/// How a hand-over the old process served ended (errors are in [`UpgradeError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoverOutcome {
    /// The new process adopted every socket and reported ready, and we sent it our ack: stop
    /// accepting, drain and exit.
    Ready { new_pid: i32 },
    /// The new process could not start; keep serving.
    NewFailed { new_pid: i32, reason: String },
}

/// The new process's end of the connection, kept until it reports.
#[derive(Debug)]
pub struct HandoverConn {
    stream: UnixStream,
    timeout: Duration,
    old_pid: i32,
    batch_count: usize,
}

impl HandoverConn {
    /// The old process's pid (SO_PEERCRED), e.g. for `MAINPID=` to systemd once ready.
    pub fn old_pid(&self) -> i32 {
        self.old_pid
    }

    /// How many SCM_RIGHTS messages carried the sockets (for the log).
    pub fn batch_count(&self) -> usize {
        self.batch_count
    }

    /// Tells the old process we serve, and waits (up to the `fetch_handover` timeout) for its
    /// ack. `Ok`: the old process stops accepting and drains. `Err`: it did not take the
    /// hand-over and may still be serving; stop and exit.
    pub fn report_ready(self) -> Result<(), UpgradeError> {
        let deadline = Deadline::after(self.timeout);
        send_frame(
            &self.stream,
            Kind::Ready,
            &[],
            &[],
            deadline,
            Phase::Reporting,
        )?;
        let mut reader = FrameReader::new();
        let (kind, _) = reader.read_frame(&self.stream, deadline, Phase::WaitingAck)?;
        if kind == Kind::Ack {
            Ok(())
        } else {
            Err(UpgradeError::Protocol {
                phase: Phase::WaitingAck,
                what: format!("expected ack, got {kind:?}"),
            })
        }
    }

    /// Tells the old process we cannot serve (it keeps serving), with a reason for its log.
    pub fn report_failed(self, reason: &str) -> Result<(), UpgradeError> {
        let deadline = Deadline::after(self.timeout);
        send_failed(&self.stream, reason, deadline)
    }
}

/// Binds the upgrade socket at `path` with mode 0600, for [`serve_handover`]. A stale socket file
/// (left by the ringway this one took over from) is replaced; anything else at `path` is refused.
/// In a process that was itself started by a hand-over, call it only after
/// [`HandoverConn::report_ready`] succeeded: until then the old process serves on that path.
pub fn bind_upgrade_socket(path: &Path) -> Result<UnixListener, UpgradeError> {
    let bind_error = |source| UpgradeError::Bind {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(bind_error)?
        }
        Ok(_) => {
            return Err(UpgradeError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_error(e)),
    }
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    // Between bind and chmod the file has 0777 less the umask; with any umask that clears the
    // others' write bit (022, 077) nobody else can connect meanwhile, and SO_PEERCRED is checked
    // on every connection anyway.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// Old side: waits for the new process to connect to `listener`, checks its credentials, hands
/// over `sockets` and `state`, and waits for its answer; all within `timeout`. Blocking.
/// Only `Ok(Ready)` means the new process took over; see the module docs.
pub fn serve_handover(
    listener: &UnixListener,
    sockets: &[HandoverSocket<'_>],
    state: &[u8],
    timeout: Duration,
) -> Result<HandoverOutcome, UpgradeError> {
    check_outgoing(sockets, state)?;
    let deadline = Deadline::after(timeout);
    let stream = accept_within(listener, deadline)?;
    let new_pid = check_peer(&stream, Phase::Accepting)?;
    let mut reader = FrameReader::new();
    if let Err(e) = send_sockets(&stream, sockets, state, deadline) {
        // A new process that gave up early (wrong version, bad socket) says why before closing;
        // its `failed` is more useful to the operator than our EPIPE.
        let salvage = Deadline::after(deadline.remaining_or_zero().min(SALVAGE_WAIT));
        return match reader.read_frame(&stream, salvage, Phase::WaitingReady) {
            Ok((Kind::Failed, reason)) => Ok(HandoverOutcome::NewFailed {
                new_pid,
                reason: reason_text(&reason),
            }),
            _ => Err(e),
        };
    }
    let (kind, payload) = reader.read_frame(&stream, deadline, Phase::WaitingReady)?;
    match kind {
        Kind::Ready => {
            // The ack closes the race where we give up just as `ready` arrives: without it the
            // new process would serve while we keep serving too.
            send_frame(&stream, Kind::Ack, &[], &[], deadline, Phase::WaitingReady)?;
            Ok(HandoverOutcome::Ready { new_pid })
        }
        Kind::Failed => Ok(HandoverOutcome::NewFailed {
            new_pid,
            reason: reason_text(&payload),
        }),
        Kind::Hello | Kind::Batch | Kind::Ack => Err(UpgradeError::Protocol {
            phase: Phase::WaitingReady,
            what: format!("expected ready or failed, got {kind:?}"),
        }),
    }
}

/// New side: connects to the old process's upgrade socket at `path` (retrying while it does not
/// exist or listen yet), checks its credentials, and receives every socket and the state blob,
/// all within `timeout`. Sockets come sorted by (name, shard). Blocking. On error the old process
/// is told `failed` (best effort) and keeps serving.
pub fn fetch_handover(
    path: &Path,
    timeout: Duration,
) -> Result<(Vec<Inherited>, Vec<u8>, HandoverConn), UpgradeError> {
    let deadline = Deadline::after(timeout);
    let stream = connect_within(path, deadline)?;
    let old_pid = check_peer(&stream, Phase::Connecting)?;
    let mut conn = HandoverConn {
        stream,
        timeout,
        old_pid,
        batch_count: 0,
    };
    match receive_sockets(&mut conn, deadline) {
        Ok((sockets, state)) => Ok((sockets, state, conn)),
        Err(e) => {
            let _ = send_failed(&conn.stream, &e.to_string(), Deadline::after(SALVAGE_WAIT));
            Err(e)
        }
    }
}

/// A point in time every step of one exchange must finish by.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
        }
    }

    fn remaining_or_zero(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Time left, never zero (a zero socket timeout means "block forever").
    fn remaining(&self, phase: Phase) -> Result<Duration, UpgradeError> {
        let left = self.remaining_or_zero();
        if left.is_zero() {
            Err(self.expired(phase))
        } else {
            Ok(left)
        }
    }

    fn expired(&self, phase: Phase) -> UpgradeError {
        UpgradeError::Timeout {
            phase,
            timeout: self.timeout,
        }
    }
}

fn io_error(phase: Phase) -> impl Fn(io::Error) -> UpgradeError {
    move |source| UpgradeError::Io { phase, source }
}

/// Same uid as us, or root: a socket file's 0600 mode already says this, but the check also
/// holds when the file was made wider by mistake or lives in a shared directory.
fn peer_allowed(peer_uid: u32, our_uid: u32) -> bool {
    peer_uid == our_uid || peer_uid == 0
}

/// Checks the peer's credentials; returns its pid.
fn check_peer(stream: &UnixStream, phase: Phase) -> Result<i32, UpgradeError> {
    let cred = rustix::net::sockopt::socket_peercred(stream).map_err(|e| UpgradeError::Io {
        phase,
        source: e.into(),
    })?;
    let pid = cred.pid.as_raw_pid();
    let uid = cred.uid.as_raw();
    let ours = rustix::process::geteuid().as_raw();
    if peer_allowed(uid, ours) {
        Ok(pid)
    } else {
        Err(UpgradeError::PeerRefused { pid, uid, ours })
    }
}

fn check_outgoing(sockets: &[HandoverSocket<'_>], state: &[u8]) -> Result<(), UpgradeError> {
    if state.len() > STATE_BYTES_MAX {
        return Err(UpgradeError::TooLarge {
            what: format!("state of {} bytes exceeds {STATE_BYTES_MAX}", state.len()),
        });
    }
    if sockets.len() > SOCKETS_MAX {
        return Err(UpgradeError::TooLarge {
            what: format!("{} sockets exceed {SOCKETS_MAX}", sockets.len()),
        });
    }
    let mut seen = HashSet::with_capacity(sockets.len());
    for s in sockets {
        if s.name.len() > NAME_BYTES_MAX {
            return Err(UpgradeError::TooLarge {
                what: format!("listener name of {} bytes", s.name.len()),
            });
        }
        if !seen.insert((s.name, s.shard)) {
            return Err(UpgradeError::Duplicate {
                name: s.name.to_owned(),
                shard: s.shard,
            });
        }
    }
    Ok(())
}

fn accept_within(listener: &UnixListener, deadline: Deadline) -> Result<UnixStream, UpgradeError> {
    loop {
        let left = deadline.remaining(Phase::Accepting)?;
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(listener, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(io_error(Phase::Accepting)(e.into())),
        }
        match listener.accept() {
            Ok((stream, _)) => {
                // A non-blocking listener hands out non-blocking streams on some systems; the
                // exchange relies on socket timeouts, which need blocking mode.
                stream
                    .set_nonblocking(false)
                    .map_err(io_error(Phase::Accepting))?;
                return Ok(stream);
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted
                    || e.raw_os_error() == Some(libc::ECONNABORTED) => {}
            Err(e) => return Err(io_error(Phase::Accepting)(e)),
        }
    }
}

fn connect_within(path: &Path, deadline: Deadline) -> Result<UnixStream, UpgradeError> {
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => return Ok(stream),
            // Not there yet, or not listening yet: the old process may still be setting up.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::ECONNREFUSED) | Some(libc::EINTR)
                ) =>
            {
                let left = deadline.remaining(Phase::Connecting)?;
                std::thread::sleep(left.min(CONNECT_RETRY));
            }
            Err(source) => {
                return Err(UpgradeError::Connect {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestEntry {
    name: String,
    shard: u16,
}

fn send_sockets(
    stream: &UnixStream,
    sockets: &[HandoverSocket<'_>],
    state: &[u8],
    deadline: Deadline,
) -> Result<(), UpgradeError> {
    let count = u32::try_from(sockets.len()).map_err(|_| UpgradeError::TooLarge {
        what: format!("{} sockets", sockets.len()),
    })?;
    let mut hello = Vec::with_capacity(HELLO_FIXED_BYTES + state.len());
    hello.extend_from_slice(&MAGIC);
    hello.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    hello.extend_from_slice(&count.to_be_bytes());
    hello.extend_from_slice(state);
    send_frame(stream, Kind::Hello, &hello, &[], deadline, Phase::Sending)?;
    for batch in sockets.chunks(FDS_PER_MESSAGE_MAX) {
        let manifest: Vec<ManifestEntry> = batch
            .iter()
            .map(|s| ManifestEntry {
                name: s.name.to_owned(),
                shard: s.shard,
            })
            .collect();
        let json = serde_json::to_vec(&manifest).map_err(|e| UpgradeError::Protocol {
            phase: Phase::Sending,
            what: format!("manifest: {e}"),
        })?;
        let fds: Vec<BorrowedFd<'_>> = batch.iter().map(|s| s.fd).collect();
        send_frame(stream, Kind::Batch, &json, &fds, deadline, Phase::Sending)?;
    }
    Ok(())
}

fn receive_sockets(
    conn: &mut HandoverConn,
    deadline: Deadline,
) -> Result<(Vec<Inherited>, Vec<u8>), UpgradeError> {
    let phase = Phase::Receiving;
    let protocol = |what: String| UpgradeError::Protocol { phase, what };
    let mut reader = FrameReader::new();
    let (kind, hello) = reader.read_frame(&conn.stream, deadline, phase)?;
    if kind != Kind::Hello {
        return Err(protocol(format!("expected hello, got {kind:?}")));
    }
    let (version, count, state) = parse_hello(&hello).ok_or_else(|| {
        protocol(format!(
            "hello of {} bytes is not a ringway hand-over",
            hello.len()
        ))
    })?;
    if version != PROTOCOL_VERSION {
        return Err(UpgradeError::Version {
            ours: PROTOCOL_VERSION,
            theirs: version,
        });
    }
    if count > SOCKETS_MAX {
        return Err(UpgradeError::TooLarge {
            what: format!("{count} sockets announced, at most {SOCKETS_MAX}"),
        });
    }
    let mut sockets: Vec<Inherited> = Vec::with_capacity(count);
    let mut seen = HashSet::with_capacity(count);
    while sockets.len() < count {
        let (kind, json) = reader.read_frame(&conn.stream, deadline, phase)?;
        if kind != Kind::Batch {
            return Err(protocol(format!(
                "expected a batch ({} of {count} sockets so far), got {kind:?}",
                sockets.len()
            )));
        }
        let manifest: Vec<ManifestEntry> =
            serde_json::from_slice(&json).map_err(|e| protocol(format!("manifest: {e}")))?;
        if manifest.is_empty()
            || manifest.len() > FDS_PER_MESSAGE_MAX
            || sockets.len() + manifest.len() > count
        {
            return Err(protocol(format!(
                "a batch of {} sockets after {} of {count}",
                manifest.len(),
                sockets.len()
            )));
        }
        if reader.fds.len() < manifest.len() {
            return Err(protocol(format!(
                "a batch names {} sockets but {} fds arrived",
                manifest.len(),
                reader.fds.len()
            )));
        }
        for entry in manifest {
            let Some(fd) = reader.fds.pop_front() else {
                return Err(protocol("fewer fds than the manifest names".into()));
            };
            if entry.name.len() > NAME_BYTES_MAX {
                return Err(UpgradeError::TooLarge {
                    what: format!("listener name of {} bytes", entry.name.len()),
                });
            }
            if !seen.insert((entry.name.clone(), entry.shard)) {
                return Err(UpgradeError::Duplicate {
                    name: entry.name,
                    shard: entry.shard,
                });
            }
            let addr = match inspect_listener(fd.as_fd()) {
                Ok(addr) => addr,
                Err(source) => {
                    return Err(UpgradeError::NotListening {
                        name: entry.name,
                        shard: entry.shard,
                        source,
                    });
                }
            };
            sockets.push(Inherited {
                name: entry.name,
                shard: entry.shard,
                addr,
                fd,
            });
        }
        conn.batch_count += 1;
    }
    if !reader.fds.is_empty() || !reader.buf.is_empty() {
        return Err(protocol(format!(
            "{} fds and {} bytes after the last batch",
            reader.fds.len(),
            reader.buf.len()
        )));
    }
    sockets.sort_by(|a, b| (a.name.as_str(), a.shard).cmp(&(b.name.as_str(), b.shard)));
    Ok((sockets, state.to_vec()))
}

/// Version, socket count and state of a hello payload; `None` if it is not one.
fn parse_hello(payload: &[u8]) -> Option<(u16, usize, &[u8])> {
    let (magic, rest) = payload.split_first_chunk::<4>()?;
    if *magic != MAGIC {
        return None;
    }
    let (version, rest) = rest.split_first_chunk::<2>()?;
    let (count, state) = rest.split_first_chunk::<4>()?;
    let count = usize::try_from(u32::from_be_bytes(*count)).ok()?;
    Some((u16::from_be_bytes(*version), count, state))
}

fn reason_text(payload: &[u8]) -> String {
    let end = payload.len().min(REASON_BYTES_MAX);
    String::from_utf8_lossy(payload.get(..end).unwrap_or_default()).into_owned()
}

fn send_failed(stream: &UnixStream, reason: &str, deadline: Deadline) -> Result<(), UpgradeError> {
    let mut end = reason.len().min(REASON_BYTES_MAX);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = reason.get(..end).unwrap_or_default();
    send_frame(
        stream,
        Kind::Failed,
        reason.as_bytes(),
        &[],
        deadline,
        Phase::Reporting,
    )
}

/// Sends one frame; `fds` ride on its first byte. Loops over partial sends (a large hello can
/// exceed the socket buffer), each bounded by what is left of `deadline`.
fn send_frame(
    stream: &UnixStream,
    kind: Kind,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
    deadline: Deadline,
    phase: Phase,
) -> Result<(), UpgradeError> {
    if payload.len() + 1 > FRAME_BYTES_MAX || fds.len() > FDS_PER_MESSAGE_MAX {
        return Err(UpgradeError::TooLarge {
            what: format!(
                "frame of {} bytes with {} fds",
                payload.len() + 1,
                fds.len()
            ),
        });
    }
    let len = u32::try_from(payload.len() + 1).map_err(|_| UpgradeError::TooLarge {
        what: format!("frame of {} bytes", payload.len() + 1),
    })?;
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&len.to_be_bytes());
    head[4] = kind as u8;
    let total = head.len() + payload.len();
    let mut sent = 0;
    let mut fds_pending = fds;
    while sent < total {
        stream
            .set_write_timeout(Some(deadline.remaining(phase)?))
            .map_err(io_error(phase))?;
        let mut space = [MaybeUninit::<u8>::uninit(); CMSG_BYTES];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds_pending.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds_pending)) {
            return Err(UpgradeError::TooLarge {
                what: format!("{} fds in one message", fds_pending.len()),
            });
        }
        let iov = if sent < head.len() {
            [
                IoSlice::new(head.get(sent..).unwrap_or_default()),
                IoSlice::new(payload),
            ]
        } else {
            [
                IoSlice::new(payload.get(sent - head.len()..).unwrap_or_default()),
                IoSlice::new(&[]),
            ]
        };
        match rustix::net::sendmsg(stream, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(0) => return Err(UpgradeError::PeerClosed { phase }),
            Ok(n) => {
                sent += n;
                // The kernel attached them to the bytes just sent.
                fds_pending = &[];
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Err(deadline.expired(phase)),
            Err(Errno::PIPE) | Err(Errno::CONNRESET) => {
                return Err(UpgradeError::PeerClosed { phase });
            }
            Err(e) => return Err(io_error(phase)(e.into())),
        }
    }
    Ok(())
}

/// Reassembles frames from the stream and queues the fds that arrive with them.
struct FrameReader {
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    chunk: Vec<u8>,
}

impl FrameReader {
    fn new() -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            fds: VecDeque::new(),
            chunk: vec![0; RECV_CHUNK_BYTES],
        }
    }

    fn read_frame(
        &mut self,
        stream: &UnixStream,
        deadline: Deadline,
        phase: Phase,
    ) -> Result<(Kind, Vec<u8>), UpgradeError> {
        loop {
            if let Some(frame) = self.take_frame(phase)? {
                return Ok(frame);
            }
            self.fill(stream, deadline, phase)?;
        }
    }

    fn take_frame(&mut self, phase: Phase) -> Result<Option<(Kind, Vec<u8>)>, UpgradeError> {
        let Some(len) = self.buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        if len == 0 || len > FRAME_BYTES_MAX {
            return Err(UpgradeError::Protocol {
                phase,
                what: format!("frame of {len} bytes"),
            });
        }
        let Some(frame) = self.buf.get(4..4 + len) else {
            return Ok(None);
        };
        let Some((&kind_byte, payload)) = frame.split_first() else {
            return Ok(None);
        };
        let Some(kind) = Kind::from_byte(kind_byte) else {
            return Err(UpgradeError::Protocol {
                phase,
                what: format!("unknown frame kind {kind_byte}"),
            });
        };
        let payload = payload.to_vec();
        self.buf.drain(..4 + len);
        Ok(Some((kind, payload)))
    }

    fn fill(
        &mut self,
        stream: &UnixStream,
        deadline: Deadline,
        phase: Phase,
    ) -> Result<(), UpgradeError> {
        stream
            .set_read_timeout(Some(deadline.remaining(phase)?))
            .map_err(io_error(phase))?;
        let mut space = [MaybeUninit::<u8>::uninit(); CMSG_BYTES];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        // CMSG_CLOEXEC: received fds are close-on-exec from the start, so no fork+exec elsewhere
        // in the process can leak them between recvmsg and a later fcntl.
        let received = rustix::net::recvmsg(
            stream,
            &mut [IoSliceMut::new(&mut self.chunk)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        );
        // Take ownership of whatever fds came, before any early return, so none leaks.
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                self.fds.extend(fds);
            }
        }
        let msg = match received {
            Ok(msg) => msg,
            Err(Errno::INTR) => return Ok(()),
            Err(Errno::AGAIN) => return Err(deadline.expired(phase)),
            Err(Errno::CONNRESET) => return Err(UpgradeError::PeerClosed { phase }),
            Err(e) => return Err(io_error(phase)(e.into())),
        };
        if msg.flags.contains(ReturnFlags::CTRUNC) {
            return Err(UpgradeError::FdsTruncated);
        }
        if msg.bytes == 0 {
            return Err(UpgradeError::PeerClosed { phase });
        }
        self.buf
            .extend_from_slice(self.chunk.get(..msg.bytes).unwrap_or_default());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh path for an upgrade socket; removed again by [`SocketPath`]'s drop.
    struct SocketPath(PathBuf);

    impl SocketPath {
        fn new() -> SocketPath {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!(
                "ringway-upgrade-test-{}-{n}.sock",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&p);
            SocketPath(p)
        }
    }

    impl Drop for SocketPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Like a shard's listener: SO_REUSEPORT, non-blocking, listening.
    fn reuseport_listener(addr: SocketAddr) -> OwnedFd {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        s.set_reuse_port(true).expect("reuseport");
        s.set_nonblocking(true).expect("nonblocking");
        s.bind(&addr.into()).expect("bind");
        s.listen(64).expect("listen");
        OwnedFd::from(s)
    }

    fn bound(fd: &OwnedFd) -> SocketAddr {
        inspect_listener(fd.as_fd()).expect("listening")
    }

    /// The socket's inode: equal for two fds exactly when they are the same socket.
    fn inode(fd: BorrowedFd<'_>) -> u64 {
        let dup = rustix::io::dup(fd).expect("dup");
        std::fs::File::from(dup).metadata().expect("fstat").ino()
    }

    fn is_cloexec(fd: BorrowedFd<'_>) -> bool {
        rustix::io::fcntl_getfd(fd)
            .expect("F_GETFD")
            .contains(rustix::io::FdFlags::CLOEXEC)
    }

    /// (listener name, shard, socket) as the old side holds them.
    type Entries = Vec<(String, u16, OwnedFd)>;
    /// The old side's result, and its sockets so the test can check they are still open.
    type OldSide = std::thread::JoinHandle<(Result<HandoverOutcome, UpgradeError>, Entries)>;

    /// Runs the old side on a thread, handing over `entries`.
    fn serve_on_thread(
        path: &Path,
        entries: Entries,
        state: Vec<u8>,
        timeout: Duration,
    ) -> OldSide {
        let listener = UnixListener::bind(path).expect("bind upgrade socket");
        std::thread::spawn(move || {
            let sockets: Vec<HandoverSocket<'_>> = entries
                .iter()
                .map(|(name, shard, fd)| HandoverSocket {
                    name,
                    shard: *shard,
                    fd: fd.as_fd(),
                })
                .collect();
            let result = serve_handover(&listener, &sockets, &state, timeout);
            drop(sockets);
            (result, entries)
        })
    }

    /// Connects to `addr` and accepts the connection on whichever of `fds` it was queued in.
    fn accept_on_one_of(addr: SocketAddr, fds: &[BorrowedFd<'_>]) -> SocketAddr {
        let client = std::net::TcpStream::connect(addr).expect("connect to the original address");
        let mut polls: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
            .collect();
        let timeout = Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        let ready = rustix::event::poll(&mut polls, Some(&timeout)).expect("poll");
        assert!(ready > 0, "no received socket got the connection to {addr}");
        let fd = polls
            .iter()
            .zip(fds)
            .find(|(p, _)| p.revents().contains(PollFlags::IN))
            .map(|(_, fd)| *fd)
            .expect("a readable socket");
        let (_conn, peer) = rustix::net::acceptfrom(fd).expect("accept on the received socket");
        let peer = SocketAddr::try_from(peer.expect("peer address")).expect("inet peer");
        assert_eq!(peer, client.local_addr().expect("client addr"));
        peer
    }

    #[test]
    fn every_socket_arrives_with_its_name_shard_and_state_and_still_accepts() {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let web0 = reuseport_listener(any);
        let web_addr = bound(&web0);
        let web1 = reuseport_listener(web_addr);
        let api0 = reuseport_listener(any);
        let api_addr = bound(&api0);
        let inodes = [
            inode(api0.as_fd()),
            inode(web0.as_fd()),
            inode(web1.as_fd()),
        ];
        let state = br#"{"config_version":7,"health":{"web":["up","down"]}}"#.to_vec();
        let path = SocketPath::new();
        // Sent out of order on purpose: the receiver sorts by (name, shard).
        let old = serve_on_thread(
            &path.0,
            vec![
                ("web".into(), 1, web1),
                ("api".into(), 0, api0),
                ("web".into(), 0, web0),
            ],
            state.clone(),
            Duration::from_secs(10),
        );

        let (inherited, got_state, conn) =
            fetch_handover(&path.0, Duration::from_secs(10)).expect("fetch");
        assert_eq!(got_state, state);
        assert_eq!(conn.old_pid(), std::process::id() as i32);
        assert_eq!(conn.batch_count(), 1);
        let seen: Vec<(&str, u16, SocketAddr)> = inherited
            .iter()
            .map(|i| (i.name.as_str(), i.shard, i.addr))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("api", 0, api_addr),
                ("web", 0, web_addr),
                ("web", 1, web_addr)
            ]
        );
        for (i, want) in inherited.iter().zip(inodes) {
            assert_eq!(inode(i.fd.as_fd()), want, "{} shard {}", i.name, i.shard);
            assert!(is_cloexec(i.fd.as_fd()), "{} shard {}", i.name, i.shard);
        }
        accept_on_one_of(api_addr, &[inherited[0].fd.as_fd()]);
        // The kernel picks one of the two web sockets by hash; either must be one we received.
        accept_on_one_of(
            web_addr,
            &[inherited[1].fd.as_fd(), inherited[2].fd.as_fd()],
        );

        conn.report_ready().expect("the old side acks ready");
        let (result, _fds) = old.join().expect("old side");
        assert_eq!(
            result.expect("old side outcome"),
            HandoverOutcome::Ready {
                new_pid: std::process::id() as i32
            }
        );
    }

    #[test]
    fn failed_is_reported_back_and_the_old_side_keeps_its_sockets() {
        let fd = reuseport_listener("127.0.0.1:0".parse().expect("addr"));
        let addr = bound(&fd);
        let path = SocketPath::new();
        let old = serve_on_thread(
            &path.0,
            vec![("web".into(), 0, fd)],
            Vec::new(),
            Duration::from_secs(10),
        );
        let (inherited, state, conn) =
            fetch_handover(&path.0, Duration::from_secs(10)).expect("fetch");
        assert!(state.is_empty());
        drop(inherited);
        conn.report_failed("listener `web`: backend `app` is not defined")
            .expect("report");
        let (result, fds) = old.join().expect("old side");
        match result.expect("outcome") {
            HandoverOutcome::NewFailed { reason, .. } => {
                assert_eq!(reason, "listener `web`: backend `app` is not defined")
            }
            other => panic!("expected NewFailed, got {other:?}"),
        }
        // Dropping the new side's copies did not close or stop the old side's socket.
        assert_eq!(bound(&fds[0].2), addr);
        accept_on_one_of(addr, &[fds[0].2.as_fd()]);
    }

    #[test]
    fn a_silent_new_process_times_out_and_cannot_claim_ready_afterwards() {
        let fd = reuseport_listener("127.0.0.1:0".parse().expect("addr"));
        let addr = bound(&fd);
        let path = SocketPath::new();
        let old = serve_on_thread(
            &path.0,
            vec![("web".into(), 0, fd)],
            b"{}".to_vec(),
            // Long enough that even a loaded CI machine finishes sending before it expires.
            Duration::from_secs(2),
        );
        let (_inherited, _state, conn) =
            fetch_handover(&path.0, Duration::from_secs(10)).expect("fetch");
        let (result, fds) = old.join().expect("old side");
        match result {
            Err(UpgradeError::Timeout { phase, .. }) => assert_eq!(phase, Phase::WaitingReady),
            other => panic!("expected a timeout waiting for ready, got {other:?}"),
        }
        assert!(
            conn.report_ready().is_err(),
            "ready after the old side gave up must not be acknowledged"
        );
        assert_eq!(bound(&fds[0].2), addr);
    }

    #[test]
    fn nobody_connecting_is_a_timeout_while_accepting() {
        let path = SocketPath::new();
        let listener = UnixListener::bind(&path.0).expect("bind");
        match serve_handover(&listener, &[], b"", Duration::from_millis(100)) {
            Err(e @ UpgradeError::Timeout { .. }) => {
                assert!(matches!(
                    e,
                    UpgradeError::Timeout {
                        phase: Phase::Accepting,
                        ..
                    }
                ));
                assert!(e.is_retryable());
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[test]
    fn no_old_process_is_a_timeout_while_connecting() {
        let path = SocketPath::new();
        match fetch_handover(&path.0, Duration::from_millis(100)) {
            Err(UpgradeError::Timeout { phase, .. }) => assert_eq!(phase, Phase::Connecting),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[test]
    fn more_than_253_sockets_travel_in_batches_and_keep_their_shards() {
        crate::startup::raise_nofile();
        let fd = reuseport_listener("127.0.0.1:0".parse().expect("addr"));
        let addr = bound(&fd);
        let want_inode = inode(fd.as_fd());
        let entries: Entries = (0..300u16)
            .map(|shard| {
                let dup = rustix::io::fcntl_dupfd_cloexec(&fd, 0).expect("dup");
                ("many".into(), shard, dup)
            })
            .collect();
        let path = SocketPath::new();
        let old = serve_on_thread(&path.0, entries, Vec::new(), Duration::from_secs(20));
        let (inherited, _state, conn) =
            fetch_handover(&path.0, Duration::from_secs(20)).expect("fetch");
        assert_eq!(conn.batch_count(), 2, "253 + 47");
        assert_eq!(inherited.len(), 300);
        for (n, i) in inherited.iter().enumerate() {
            assert_eq!((i.name.as_str(), usize::from(i.shard)), ("many", n));
            assert_eq!(i.addr, addr);
            assert_eq!(inode(i.fd.as_fd()), want_inode);
        }
        conn.report_ready().expect("ready");
        let (result, _fds) = old.join().expect("old side");
        assert!(matches!(result, Ok(HandoverOutcome::Ready { .. })));
    }

    #[test]
    fn a_socket_that_is_not_listening_is_refused_by_name_and_the_old_side_hears_why() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let path = SocketPath::new();
        let old = serve_on_thread(
            &path.0,
            vec![("dns".into(), 3, OwnedFd::from(udp))],
            Vec::new(),
            Duration::from_secs(10),
        );
        match fetch_handover(&path.0, Duration::from_secs(10)) {
            Err(UpgradeError::NotListening { name, shard, .. }) => {
                assert_eq!((name.as_str(), shard), ("dns", 3))
            }
            other => panic!("expected NotListening, got {:?}", other.map(|(s, _, _)| s)),
        }
        let (result, _fds) = old.join().expect("old side");
        match result.expect("outcome") {
            HandoverOutcome::NewFailed { reason, .. } => {
                assert!(reason.contains("`dns` shard 3"), "{reason}")
            }
            other => panic!("expected NewFailed, got {other:?}"),
        }
    }

    #[test]
    fn another_protocol_version_is_refused_and_told() {
        let path = SocketPath::new();
        let listener = UnixListener::bind(&path.0).expect("bind");
        let fake_old = std::thread::spawn(move || {
            let deadline = Deadline::after(Duration::from_secs(10));
            let stream = accept_within(&listener, deadline).expect("accept");
            let mut hello = MAGIC.to_vec();
            hello.extend_from_slice(&99u16.to_be_bytes());
            hello.extend_from_slice(&0u32.to_be_bytes());
            send_frame(&stream, Kind::Hello, &hello, &[], deadline, Phase::Sending)
                .expect("send hello");
            FrameReader::new()
                .read_frame(&stream, deadline, Phase::WaitingReady)
                .expect("a reply")
        });
        match fetch_handover(&path.0, Duration::from_secs(10)) {
            Err(UpgradeError::Version { ours, theirs }) => {
                assert_eq!((ours, theirs), (PROTOCOL_VERSION, 99))
            }
            other => panic!("expected Version, got {:?}", other.map(|(s, _, _)| s)),
        }
        let (kind, reason) = fake_old.join().expect("fake old side");
        assert_eq!(kind, Kind::Failed);
        assert!(reason_text(&reason).contains("version 99"));
    }

    #[test]
    fn duplicates_and_oversized_state_are_refused_before_anyone_connects() {
        let fd = reuseport_listener("127.0.0.1:0".parse().expect("addr"));
        let path = SocketPath::new();
        let listener = UnixListener::bind(&path.0).expect("bind");
        let twice = [
            HandoverSocket {
                name: "web",
                shard: 0,
                fd: fd.as_fd(),
            },
            HandoverSocket {
                name: "web",
                shard: 0,
                fd: fd.as_fd(),
            },
        ];
        assert!(matches!(
            serve_handover(&listener, &twice, b"", Duration::from_secs(10)),
            Err(UpgradeError::Duplicate { shard: 0, .. })
        ));
        let big = vec![b' '; STATE_BYTES_MAX + 1];
        assert!(matches!(
            serve_handover(&listener, &twice[..1], &big, Duration::from_secs(10)),
            Err(UpgradeError::TooLarge { .. })
        ));
    }

    #[test]
    fn frames_split_anywhere_reassemble_and_garbage_is_refused() {
        let mut reader = FrameReader::new();
        let frame = [0, 0, 0, 3, Kind::Failed as u8, b'n', b'o'];
        for (i, b) in frame.iter().enumerate() {
            reader.buf.push(*b);
            let got = reader.take_frame(Phase::Receiving).expect("valid so far");
            if i + 1 < frame.len() {
                assert!(got.is_none(), "complete after {} bytes?", i + 1);
            } else {
                assert_eq!(got, Some((Kind::Failed, b"no".to_vec())));
            }
        }
        assert!(reader.buf.is_empty());
        reader.buf.extend_from_slice(&[0, 0, 0, 0]);
        assert!(reader.take_frame(Phase::Receiving).is_err(), "empty frame");
        reader.buf = vec![0, 0, 0, 1, 42];
        assert!(reader.take_frame(Phase::Receiving).is_err(), "unknown kind");
        reader.buf = vec![0xff, 0xff, 0xff, 0xff];
        assert!(reader.take_frame(Phase::Receiving).is_err(), "too large");
        assert_eq!(
            parse_hello(b"RWUP\0\x01\0\0\0\x02{}"),
            Some((1, 2, &b"{}"[..]))
        );
        assert_eq!(parse_hello(b"HTTP/1.1 200"), None);
        assert_eq!(parse_hello(b"RWUP\0"), None);
    }

    #[test]
    fn the_upgrade_socket_is_private_replaces_a_stale_one_and_nothing_else() {
        let path = SocketPath::new();
        let first = bind_upgrade_socket(&path.0).expect("bind");
        let mode = std::fs::metadata(&path.0)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(first);
        // What a previous ringway leaves behind.
        let again = bind_upgrade_socket(&path.0).expect("replace the stale socket");
        UnixStream::connect(&path.0).expect("the new socket listens");
        drop(again);

        let file = SocketPath::new();
        std::fs::write(&file.0, b"not a socket").expect("write");
        assert!(matches!(
            bind_upgrade_socket(&file.0),
            Err(UpgradeError::NotASocket { .. })
        ));
        assert_eq!(
            std::fs::read(&file.0).expect("still there"),
            b"not a socket"
        );
    }

    #[test]
    fn only_our_uid_or_root_may_take_part() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(0, 0));
        assert!(!peer_allowed(1001, 1000));
        assert!(!peer_allowed(1000, 0));
    }
}
