//! Owns: the ring-side state of one socket — its multishot recv, the send in flight and the
//! bytes it owns, readiness polls, and the count of ops the kernel still holds — and the SQEs
//! that arm, send and cancel them, tagged with the slot of the connection that owns the fd.
//! Must not: interpret bytes or decide what to read or send; the driver does, from the session.
//! Invariant: every op on `fd` is tagged with the owner's slot and counted in `inflight`, so the
//! owner is freed (and `fd` closed) only when `inflight` is 0 and the kernel holds nothing of it.

use std::os::fd::RawFd;

use io_uring::{opcode, types};

use super::ring::{Completion, Op, Ring, Tag};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recv {
    #[default]
    Off,
    /// A multishot recv is in flight.
    Armed,
    /// ... and an AsyncCancel for it has been queued.
    Cancelling,
    /// The last recv ended with ENOBUFS: re-arm once buffers are back.
    NoBufs,
}

/// What one recv completion brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// `len` bytes in provided buffer `bid` (give it back once copied).
    Data {
        bid: u16,
        len: u32,
    },
    Eof,
    NoBufs,
    Cancelled,
    /// The kernel refused the recv as armed (a multishot byte limit it does not know): arm again
    /// without it.
    Refused,
    Error(i32),
}

#[derive(Debug, Default)]
pub struct Sock {
    pub fd: RawFd,
    /// Ops on `fd` whose final completion has not arrived.
    pub inflight: u16,
    pub recv: Recv,
    /// Bytes handed to the kernel: `send[sent..]` is in flight or next. Never touched while
    /// `sending` (the SQE points into it).
    pub send: Vec<u8>,
    pub sent: usize,
    pub sending: bool,
    pub poll_in: bool,
    pub poll_out: bool,
    /// The peer will send nothing more.
    pub eof: bool,
    /// The write side was shut down.
    pub shut: bool,
    /// Everything on this socket is being cancelled (the owner is closing).
    pub closing: bool,
}

impl Sock {
    pub fn new(fd: RawFd) -> Sock {
        Sock {
            fd,
            ..Sock::default()
        }
    }

    /// Bytes handed to this socket and not yet sent.
    pub fn queued(&self) -> usize {
        self.send.len().saturating_sub(self.sent)
    }

    pub fn idle_send(&self) -> bool {
        !self.sending && self.queued() == 0
    }

    pub fn recv_armed(&self) -> bool {
        matches!(self.recv, Recv::Armed | Recv::Cancelling)
    }

    /// Keeps a multishot recv armed (`want`) or cancels it. Returns false when no buffer is free
    /// (the caller lists the socket to re-arm later).
    pub fn sync_recv(
        &mut self,
        ring: &mut Ring,
        slot: u32,
        group: u16,
        want: bool,
        bufs_free: bool,
    ) -> bool {
        if self.closing || self.fd < 0 {
            return true;
        }
        match (want, self.recv) {
            (true, Recv::Off) | (true, Recv::NoBufs) => {
                if !bufs_free {
                    self.recv = Recv::NoBufs;
                    return false;
                }
                self.recv = Recv::Armed;
                self.inflight += 1;
                let entry = opcode::RecvMulti::new(types::Fd(self.fd), group)
                    .build()
                    .user_data(Tag::new(Op::Recv, slot).encode());
                ring.push(if ring.recv_limit {
                    super::ring::with_optlen(entry, super::ring::RECV_MULTISHOT_BYTES_MAX)
                } else {
                    entry
                });
            }
            (false, Recv::Armed) => {
                self.recv = Recv::Cancelling;
                let target = Tag::new(Op::Recv, slot).encode();
                ring.push(
                    opcode::AsyncCancel2::new(types::CancelBuilder::user_data(target))
                        .build()
                        .user_data(Tag::new(Op::Cancel, slot).encode()),
                );
            }
            (false, Recv::NoBufs) => self.recv = Recv::Off,
            (true, Recv::Armed)
            | (true, Recv::Cancelling)
            | (false, Recv::Off)
            | (false, Recv::Cancelling) => {}
        }
        true
    }

    /// Accounts for one recv completion.
    pub fn on_recv(&mut self, c: &Completion) -> Received {
        if !c.more() {
            self.inflight = self.inflight.saturating_sub(1);
            self.recv = Recv::Off;
        }
        match (c.result, c.buffer_id()) {
            (n, Some(bid)) if n > 0 => Received::Data { bid, len: n as u32 },
            (0, _) => {
                self.eof = true;
                Received::Eof
            }
            (n, _) if n == -libc::ENOBUFS => {
                if self.recv == Recv::Off {
                    self.recv = Recv::NoBufs;
                }
                Received::NoBufs
            }
            (n, _) if n == -libc::ECANCELED => Received::Cancelled,
            (n, _) if n == -libc::EINVAL && self.recv == Recv::Off => Received::Refused,
            (n, _) if n < 0 => Received::Error(-n),
            // A positive result without a buffer cannot happen with buffer selection.
            (_, _) => Received::Error(libc::EIO),
        }
    }

    /// Starts a send of what is queued, if none is in flight.
    pub fn start_send(&mut self, ring: &mut Ring, slot: u32) {
        if self.sending || self.closing || self.fd < 0 {
            return;
        }
        if self.sent >= self.send.len() {
            self.send.clear();
            self.sent = 0;
            return;
        }
        let Some(rest) = self.send.get(self.sent..) else {
            return;
        };
        self.sending = true;
        self.inflight += 1;
        // SAFETY (pointer lifetime): `send` is neither modified nor dropped while `sending`; the
        // owner (and so this Vec's heap buffer) is freed only once `inflight` is zero.
        let entry = opcode::Send::new(types::Fd(self.fd), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(Tag::new(Op::Send, slot).encode());
        ring.push(entry);
    }

    /// Accounts for one send completion; returns the bytes sent or the errno.
    pub fn on_send(&mut self, result: i32) -> Result<usize, i32> {
        self.inflight = self.inflight.saturating_sub(1);
        self.sending = false;
        if result <= 0 {
            self.send.clear();
            self.sent = 0;
            return Err(if result == 0 { libc::EPIPE } else { -result });
        }
        let n = result as usize;
        self.sent += n;
        if self.sent >= self.send.len() {
            self.send.clear();
            self.sent = 0;
        }
        Ok(n)
    }

    /// Arms a one-shot readiness poll (splice).
    pub fn arm_poll(&mut self, ring: &mut Ring, slot: u32, readable: bool) {
        let armed = if readable {
            &mut self.poll_in
        } else {
            &mut self.poll_out
        };
        if *armed || self.closing || self.fd < 0 {
            return;
        }
        *armed = true;
        self.inflight += 1;
        let (mask, op) = if readable {
            (libc::POLLIN | libc::POLLRDHUP, Op::PollIn)
        } else {
            (libc::POLLOUT, Op::PollOut)
        };
        ring.push(
            opcode::PollAdd::new(types::Fd(self.fd), mask as u32)
                .build()
                .user_data(Tag::new(op, slot).encode()),
        );
    }

    pub fn on_poll(&mut self, op: Op) -> bool {
        self.inflight = self.inflight.saturating_sub(1);
        match op {
            Op::PollIn => self.poll_in = false,
            _ => self.poll_out = false,
        }
        !self.closing
    }

    /// Forwards EOF: shuts the write side (once).
    pub fn shutdown_write(&mut self) {
        if !self.shut && self.fd >= 0 {
            self.shut = true;
            super::sys::shutdown_write(self.fd);
        }
    }

    /// Cancels every op the kernel holds on `fd`; their completions arrive with -ECANCELED.
    pub fn cancel_all(&mut self, ring: &mut Ring, slot: u32) {
        if self.closing {
            return;
        }
        self.closing = true;
        if self.inflight > 0 && self.fd >= 0 {
            ring.push(
                opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(self.fd)).all())
                    .build()
                    .user_data(Tag::new(Op::Cancel, slot).encode()),
            );
        }
    }

    /// Closes `fd` once nothing is in flight on it. Returns true when closed (or there was none).
    pub fn close_if_done(&mut self) -> bool {
        if self.inflight > 0 {
            return false;
        }
        if self.fd >= 0 {
            super::sys::close(self.fd);
            self.fd = -1;
        }
        true
    }
}
