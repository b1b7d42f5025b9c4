//! Owns: one shard's pool of pipes used to splice(2) bytes between sockets without copying.
//! Must not: be shared between shards, or take back a pipe that still holds bytes (those are
//! closed instead, so no stale byte can leak into another connection).

use std::io;
use std::os::fd::RawFd;

/// A pipe as a (read end, write end) pair, both O_NONBLOCK and O_CLOEXEC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipe {
    pub read_fd: RawFd,
    pub write_fd: RawFd,
}

/// Keeps up to `idle_max` empty pipes for reuse; creates new ones on demand.
pub struct PipePool {
    idle: Vec<Pipe>,
    idle_max: usize,
    pipe_bytes: u32,
    /// Pipes handed out and not yet returned.
    in_use: usize,
}

impl PipePool {
    pub fn new(idle_max: usize, pipe_bytes: u32) -> PipePool {
        PipePool {
            idle: Vec::with_capacity(idle_max.min(4096)),
            idle_max,
            pipe_bytes,
            in_use: 0,
        }
    }

    pub fn pipe_bytes(&self) -> u32 {
        self.pipe_bytes
    }

    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Takes an idle pipe or creates one. Fails (and the caller keeps copying) when the process is
    /// out of file descriptors.
    pub fn take(&mut self) -> io::Result<Pipe> {
        if let Some(p) = self.idle.pop() {
            self.in_use += 1;
            return Ok(p);
        }
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // A larger pipe moves more per splice call. Failure (e.g. over /proc/sys/fs/pipe-max-size
        // for an unprivileged user) only costs throughput, so it is ignored.
        // SAFETY: fcntl on a pipe fd we own; no memory is passed.
        unsafe { libc::fcntl(fds[0], libc::F_SETPIPE_SZ, self.pipe_bytes as libc::c_int) };
        self.in_use += 1;
        Ok(Pipe {
            read_fd: fds[0],
            write_fd: fds[1],
        })
    }

    /// Returns a pipe. `empty` must say whether every byte written into it was read out; a
    /// non-empty pipe is closed rather than reused.
    pub fn give_back(&mut self, pipe: Pipe, empty: bool) {
        self.in_use = self.in_use.saturating_sub(1);
        if empty && self.idle.len() < self.idle_max {
            self.idle.push(pipe);
        } else {
            close_pipe(pipe);
        }
    }
}

impl Drop for PipePool {
    fn drop(&mut self) {
        for p in self.idle.drain(..) {
            close_pipe(p);
        }
    }
}

fn close_pipe(p: Pipe) {
    // SAFETY: both fds belong to this pool's pipe and are closed exactly once here.
    unsafe {
        libc::close(p.read_fd);
        libc::close(p.write_fd);
    }
}

/// Why [`pump`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpStop {
    /// The source has nothing to read now: wait for it to become readable.
    WaitIn,
    /// The destination is full: wait for it to become writable.
    WaitOut,
    /// `rounds_max` reads done; let other connections run, then continue.
    Yield,
    /// `to_read` bytes were read and all of them written.
    Finished,
    /// The source reached EOF and the pipe is empty.
    Eof,
    /// A splice failed with this errno.
    Failed(i32),
}

/// What one [`pump`] call moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    pub read_bytes: u64,
    pub written_bytes: u64,
}

/// One spliced direction: its pipe, what sits in it, and how much may still be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub pipe: Pipe,
    /// Bytes in the pipe, not yet written to the destination.
    pub in_pipe: u32,
    /// Bytes still to read from the source; `u64::MAX` reads until EOF.
    pub to_read: u64,
    /// The source returned EOF.
    pub eof: bool,
}

/// Moves bytes `src` -> pipe -> `dst` with non-blocking splice(2) until one side would block,
/// the flow is finished, or `rounds_max` reads were done. The pipe is always drained before the
/// next read, so a slow destination stops reading from the source (backpressure). Shared by the
/// L4 path and HTTP bodies/tunnels.
pub fn pump(
    src: RawFd,
    dst: RawFd,
    flow: &mut Flow,
    pipe_bytes: u32,
    rounds_max: u32,
) -> (PumpStop, Moved) {
    let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    let mut moved = Moved::default();
    let mut rounds = 0;
    let stop = loop {
        if flow.in_pipe > 0 {
            // SAFETY: splice between fds the caller owns; null offsets (sockets and pipes).
            let n = unsafe {
                libc::splice(
                    flow.pipe.read_fd,
                    std::ptr::null_mut(),
                    dst,
                    std::ptr::null_mut(),
                    flow.in_pipe as usize,
                    flags,
                )
            };
            if n > 0 {
                flow.in_pipe -= n as u32;
                moved.written_bytes += n as u64;
                continue;
            }
            match errno() {
                libc::EINTR => continue,
                libc::EAGAIN => break PumpStop::WaitOut,
                e => break PumpStop::Failed(e),
            }
        }
        if flow.eof {
            break PumpStop::Eof;
        }
        if flow.to_read == 0 {
            break PumpStop::Finished;
        }
        if rounds >= rounds_max {
            break PumpStop::Yield;
        }
        rounds += 1;
        let want = flow.to_read.min(u64::from(pipe_bytes)) as usize;
        // SAFETY: as above.
        let n = unsafe {
            libc::splice(
                src,
                std::ptr::null_mut(),
                flow.pipe.write_fd,
                std::ptr::null_mut(),
                want,
                flags,
            )
        };
        if n > 0 {
            flow.in_pipe += n as u32;
            moved.read_bytes += n as u64;
            if flow.to_read != u64::MAX {
                flow.to_read -= n as u64;
            }
            continue;
        }
        if n == 0 {
            flow.eof = true;
            continue;
        }
        match errno() {
            libc::EINTR => continue,
            libc::EAGAIN => break PumpStop::WaitIn,
            e => break PumpStop::Failed(e),
        }
    };
    (stop, moved)
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
