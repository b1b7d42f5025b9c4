//! Owns: connections of `mode = "detect"` listeners until their protocol is known: waits (up to
//! `peek_timeout`) for the first bytes, peeks them without consuming (MSG_PEEK), classifies
//! them with `crate::detect`, and hands the untouched socket to the TLS, HTTP or TCP path.
//! Must not: consume client bytes or proxy anything itself.

use std::os::fd::RawFd;

use io_uring::{opcode, types};

use super::ring::{Completion, Op, OpKind};
use super::{Shard, close_fd};
use crate::config::SpliceMode;
use crate::detect::{Detected, Protocol, classify, classify_final};
use crate::timer::TimerKey;

/// Timer keys of connections being detected carry this bit.
pub(super) const DETECT_TIMER_BIT: u32 = 1 << 29;
/// Enough for a method token and its space, or a TLS record header.
const PEEK_BYTES: usize = 32;

/// A detect listener as this shard runs it.
pub(super) struct DetectListenerSlot {
    /// Index into `http_listeners` (plain HTTP clients).
    pub http: usize,
    /// Index into `tls_listeners` (TLS termination; decrypted clients go to `http`).
    pub tls: Option<usize>,
    /// TLS passthrough backend (when not terminating).
    pub tls_backend: Option<usize>,
    /// Everything else.
    pub tcp_backend: Option<usize>,
    pub splice: SpliceMode,
    pub peek_ms: u64,
}

pub(super) struct DetectConn {
    fd: RawFd,
    listener: usize,
    opened_ms: u64,
    /// A POLLIN is in flight.
    polling: bool,
    /// The deadline passed while polling: decide with what is there once the poll is cancelled.
    expired: bool,
    /// Bytes so far could still be HTTP: poll again on the next tick (POLLIN would fire at once).
    wait_tick: bool,
}

pub(super) struct DetectSlot {
    generation: u32,
    conn: Option<DetectConn>,
}

impl Shard {
    fn dconn(&mut self, slot: u32) -> Option<&mut DetectConn> {
        self.detect_slots.get_mut(slot as usize)?.conn.as_mut()
    }

    pub(super) fn open_detect(&mut self, fd: RawFd, listener: usize) {
        let conn = DetectConn {
            fd,
            listener,
            opened_ms: self.now_ms,
            polling: false,
            expired: false,
            wait_tick: false,
        };
        let slot = if let Some(slot) = self.free_detect_slots.pop()
            && let Some(s) = self.detect_slots.get_mut(slot as usize)
        {
            s.conn = Some(conn);
            slot
        } else {
            self.detect_slots.push(DetectSlot {
                generation: 0,
                conn: Some(conn),
            });
            (self.detect_slots.len() - 1) as u32
        };
        self.detect_pending += 1;
        self.detect_arm_poll(slot);
        let peek_ms = self
            .detect_listeners
            .get(listener)
            .map_or(5_000, |l| l.peek_ms);
        let Some(s) = self.detect_slots.get(slot as usize) else {
            return;
        };
        let key = TimerKey {
            slot: slot | DETECT_TIMER_BIT,
            generation: s.generation,
        };
        self.timers.insert(key, self.now_ms.saturating_add(peek_ms));
    }

    fn detect_arm_poll(&mut self, slot: u32) {
        let Some(d) = self.dconn(slot) else {
            return;
        };
        d.polling = true;
        d.wait_tick = false;
        let entry = opcode::PollAdd::new(types::Fd(d.fd), libc::POLLIN as u32)
            .build()
            .user_data(Op::new(OpKind::DetectPoll, slot, 0).encode());
        self.ring.push(entry);
    }

    pub(super) fn on_detect_completion(&mut self, op: Op, c: Completion) {
        let slot = op.slot;
        let Some(d) = self.dconn(slot) else {
            return;
        };
        d.polling = false;
        if c.result < 0 && c.result != -libc::ECANCELED {
            self.detect_finish(slot, None);
            return;
        }
        let expired = d.expired;
        self.detect_look(slot, expired);
    }

    /// Peeks what the client sent and decides, or waits for more.
    fn detect_look(&mut self, slot: u32, last_chance: bool) {
        let Some(d) = self.dconn(slot) else {
            return;
        };
        let mut buf = [0u8; PEEK_BYTES];
        // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
        let n = unsafe {
            libc::recv(
                d.fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        let bytes = if n > 0 { &buf[..n as usize] } else { &[][..] };
        if n == 0 {
            // The client closed before saying anything we could route.
            self.detect_finish(slot, None);
            return;
        }
        if n < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if errno != libc::EAGAIN && errno != libc::EWOULDBLOCK {
                self.detect_finish(slot, None);
                return;
            }
        }
        if last_chance {
            let p = classify_final(bytes);
            self.detect_finish(slot, Some(p));
            return;
        }
        match classify(bytes) {
            Detected::Known(p) => self.detect_finish(slot, Some(p)),
            Detected::Partial if n > 0 => d.wait_tick = true,
            Detected::Partial => self.detect_arm_poll(slot),
        }
    }

    /// A poll finished while draining: the connection is closed undecided.
    pub(super) fn on_detect_drained(&mut self, slot: u32) {
        if let Some(d) = self.dconn(slot) {
            d.polling = false;
        }
        self.detect_finish(slot, None);
    }

    /// Every timer tick: connections whose bytes so far were undecided look again.
    pub(super) fn detect_on_tick(&mut self) {
        if self.detect_pending == 0 {
            return;
        }
        for slot in 0..self.detect_slots.len() as u32 {
            let waiting = self
                .detect_slots
                .get(slot as usize)
                .and_then(|s| s.conn.as_ref())
                .is_some_and(|d| d.wait_tick && !d.polling);
            if waiting {
                if let Some(d) = self.dconn(slot) {
                    d.wait_tick = false;
                }
                self.detect_look(slot, false);
            }
        }
    }

    pub(super) fn on_detect_timer(&mut self, key: TimerKey) {
        let slot = key.slot & !DETECT_TIMER_BIT;
        let Some(s) = self.detect_slots.get_mut(slot as usize) else {
            return;
        };
        if s.generation != key.generation {
            return;
        }
        let Some(d) = s.conn.as_mut() else {
            return;
        };
        d.expired = true;
        if d.polling {
            // Decide when the cancelled poll completes (the kernel must let go of it first).
            let entry = opcode::PollRemove::new(Op::new(OpKind::DetectPoll, slot, 0).encode())
                .build()
                .user_data(Op::new(OpKind::Cancel, slot, 0).encode());
            self.ring.push(entry);
        } else {
            self.detect_look(slot, true);
        }
    }

    /// Hands the socket to the path for `protocol` (or closes it when that has no destination).
    fn detect_finish(&mut self, slot: u32, protocol: Option<Protocol>) {
        let Some(s) = self.detect_slots.get_mut(slot as usize) else {
            return;
        };
        let Some(d) = s.conn.take() else {
            return;
        };
        s.generation = s.generation.wrapping_add(1);
        self.free_detect_slots.push(slot);
        self.detect_pending = self.detect_pending.saturating_sub(1);
        let Some(l) = self.detect_listeners.get(d.listener) else {
            close_fd(d.fd);
            return;
        };
        let (http, tls, tls_backend, tcp_backend, splice) =
            (l.http, l.tls, l.tls_backend, l.tcp_backend, l.splice);
        tracing::debug!(shard = self.id, protocol = ?protocol, waited_ms = self.now_ms.saturating_sub(d.opened_ms), "protocol detected");
        match protocol {
            Some(Protocol::Http) => match super::peer_addr(d.fd) {
                Some(peer) => {
                    self.stats.detect_http += 1;
                    self.open_http(d.fd, http, peer, false);
                }
                None => close_fd(d.fd),
            },
            Some(Protocol::Tls) if tls.is_some() || tls_backend.is_some() => {
                self.stats.detect_tls += 1;
                match (tls, tls_backend) {
                    (Some(t), _) => self.open_tls(d.fd, t),
                    (None, Some(b)) => {
                        self.open_conn(d.fd, b, splice, super::conn::Intake::direct(None))
                    }
                    (None, None) => close_fd(d.fd),
                }
            }
            Some(Protocol::Other) if tcp_backend.is_some() => {
                self.stats.detect_other += 1;
                match tcp_backend {
                    Some(b) => self.open_conn(d.fd, b, splice, super::conn::Intake::direct(None)),
                    None => close_fd(d.fd),
                }
            }
            Some(Protocol::Tls) | Some(Protocol::Other) | None => {
                self.stats.detect_rejected += 1;
                close_fd(d.fd);
            }
        }
    }

    /// Drain: connections still undecided are closed.
    pub(super) fn detect_close_all(&mut self) {
        for slot in 0..self.detect_slots.len() as u32 {
            let polling = self
                .detect_slots
                .get(slot as usize)
                .and_then(|s| s.conn.as_ref())
                .map(|d| d.polling);
            match polling {
                Some(false) => self.detect_finish(slot, None),
                Some(true) => {
                    if let Some(d) = self
                        .detect_slots
                        .get_mut(slot as usize)
                        .and_then(|s| s.conn.as_mut())
                    {
                        d.expired = true;
                    }
                    let entry =
                        opcode::PollRemove::new(Op::new(OpKind::DetectPoll, slot, 0).encode())
                            .build()
                            .user_data(Op::new(OpKind::Cancel, slot, 0).encode());
                    self.ring.push(entry);
                }
                None => {}
            }
        }
    }
}
