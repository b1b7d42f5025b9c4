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
