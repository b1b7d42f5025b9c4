//! Owns: connections of `mode = "detect"` listeners until their protocol is known: waits (up to
//! `peek_timeout`) for the first bytes, peeks them without consuming (MSG_PEEK), classifies them
//! with `crate::detect`, and turns the entry into a client connection of the right kind (TLS
//! terminated into HTTP, TLS passed through, plain HTTP, raw TCP) on the untouched socket.
//! Must not: consume client bytes or proxy anything itself.

use std::sync::Arc;

use io_uring::{opcode, types};

use super::driver::Shard;
use super::listener::ListenerCfg;
use super::ring::{Completion, Op, Tag};
use super::{Conn, sys};
use crate::detect::{Detected, Protocol, classify, classify_final};

/// Enough for a method token and its space, or a TLS record header.
const PEEK_BYTES: usize = 32;

pub(super) struct DetectConn {
    pub fd: i32,
    pub cfg: Arc<ListenerCfg>,
    pub opened_ms: u64,
    /// A POLLIN is in flight.
    pub polling: bool,
    /// The deadline passed while polling: decide with what is there once the poll is cancelled.
    pub expired: bool,
    /// Bytes so far could still be HTTP: look again on the next tick (POLLIN would fire at once).
    pub wait_tick: bool,
}

impl Shard {
    pub(super) fn open_detect(&mut self, fd: i32, cfg: Arc<ListenerCfg>) {
        let peek_ms = cfg.detect.as_ref().map_or(5_000, |d| d.peek_ms);
        let conn = DetectConn {
            fd,
            cfg,
            opened_ms: self.world.now_ms,
            polling: false,
            expired: false,
            wait_tick: false,
        };
        let listener = conn.cfg.id;
        let Some(key) = self.slab.insert(Conn::Detect(conn)) else {
            self.world.stats.rejected += 1;
            sys::close(fd);
            return;
        };
        self.world.stats.active += 1;
        self.world.listener_conn(listener, true);
        self.detect_pending += 1;
        self.detect_arm_poll(key.slot);
        self.timers.insert(
            crate::timer::TimerKey {
                slot: key.slot,
                generation: key.generation,
            },
            self.world.now_ms.saturating_add(peek_ms),
        );
    }

    fn detect_arm_poll(&mut self, slot: u32) {
        let Some(Conn::Detect(d)) = self.slab.get_mut(slot) else {
            return;
        };
        d.polling = true;
        d.wait_tick = false;
        self.ring.push(
            opcode::PollAdd::new(types::Fd(d.fd), libc::POLLIN as u32)
                .build()
                .user_data(Tag::new(Op::PollIn, slot).encode()),
        );
    }

    pub(super) fn on_detect_completion(&mut self, tag: Tag, c: Completion) {
        let slot = tag.slot;
        let draining = self.world.draining;
        let Some(Conn::Detect(d)) = self.slab.get_mut(slot) else {
            return;
        };
        if tag.op != Op::PollIn {
            return;
        }
        d.polling = false;
        if draining || (c.result < 0 && c.result != -libc::ECANCELED) {
            self.detect_finish(slot, None);
            return;
        }
        let expired = d.expired;
        self.detect_look(slot, expired);
    }

    /// Peeks what the client sent and decides, or waits for more.
    fn detect_look(&mut self, slot: u32, last_chance: bool) {
        let Some(Conn::Detect(d)) = self.slab.get_mut(slot) else {
            return;
        };
        let mut buf = [0u8; PEEK_BYTES];
        let n = match sys::peek(d.fd, &mut buf) {
            sys::Peeked::Bytes(n) => n,
            sys::Peeked::Empty => 0,
            // The client closed (or failed) before saying anything we could route.
            sys::Peeked::Eof | sys::Peeked::Error(_) => {
                self.detect_finish(slot, None);
                return;
            }
        };
        let bytes = buf.get(..n).unwrap_or_default();
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

    /// Every timer tick: connections whose bytes so far were undecided look again.
    pub(super) fn detect_on_tick(&mut self) {
        if self.detect_pending == 0 {
            return;
        }
        for slot in self.slab.slots() {
            let waiting =
                matches!(self.slab.get(slot), Some(Conn::Detect(d)) if d.wait_tick && !d.polling);
            if waiting {
                if let Some(Conn::Detect(d)) = self.slab.get_mut(slot) {
                    d.wait_tick = false;
                }
                self.detect_look(slot, false);
            }
        }
    }

    pub(super) fn on_detect_timer(&mut self, slot: u32) {
        let now = self.world.now_ms;
        let Some(Conn::Detect(d)) = self.slab.get_mut(slot) else {
            return;
        };
        let peek_ms = d.cfg.detect.as_ref().map_or(5_000, |x| x.peek_ms);
        if now < d.opened_ms.saturating_add(peek_ms) {
            let generation = self.slab.key(slot).map_or(0, |k| k.generation);
            self.timers.insert(
                crate::timer::TimerKey { slot, generation },
                now.saturating_add(peek_ms),
            );
            return;
        }
        d.expired = true;
        if d.polling {
            // Decide when the cancelled poll completes (the kernel must let go of it first).
            self.ring.push(
                opcode::PollRemove::new(Tag::new(Op::PollIn, slot).encode())
                    .build()
                    .user_data(Tag::new(Op::Cancel, slot).encode()),
            );
        } else {
            self.detect_look(slot, true);
        }
    }

    /// Hands the socket to the path for `protocol` (or closes it when that has no destination).
    fn detect_finish(&mut self, slot: u32, protocol: Option<Protocol>) {
        let Some(Conn::Detect(d)) = self.slab.get(slot) else {
            return;
        };
        if d.polling {
            return;
        }
        let Some(Conn::Detect(d)) = self.slab.remove(slot) else {
            return;
        };
        self.detect_pending = self.detect_pending.saturating_sub(1);
        self.world.stats.active = self.world.stats.active.saturating_sub(1);
        self.world.listener_conn(d.cfg.id, false);
        let cfg = d.cfg;
        tracing::debug!(shard = self.world.shard, protocol = ?protocol, waited_ms = self.world.now_ms.saturating_sub(d.opened_ms), "protocol detected");
        let (tls_backend, tcp_backend) = cfg
            .detect
            .as_ref()
            .map_or((None, None), |x| (x.tls_backend, x.tcp_backend));
        match protocol {
            Some(Protocol::Http) => {
                self.world.stats.detect_http += 1;
                self.open_client(d.fd, &cfg, super::driver::ClientKind::Http { tls: false });
            }
            Some(Protocol::Tls) if cfg.tls.is_some() => {
                self.world.stats.detect_tls += 1;
                self.open_client(d.fd, &cfg, super::driver::ClientKind::Http { tls: true });
            }
            Some(Protocol::Tls) if tls_backend.is_some() => {
                self.world.stats.detect_tls += 1;
                self.open_client(
                    d.fd,
                    &cfg,
                    super::driver::ClientKind::Tcp {
                        backend: tls_backend,
                    },
                );
            }
            Some(Protocol::Other) if tcp_backend.is_some() => {
                self.world.stats.detect_other += 1;
                self.open_client(
                    d.fd,
                    &cfg,
                    super::driver::ClientKind::Tcp {
                        backend: tcp_backend,
                    },
                );
            }
            Some(Protocol::Tls) | Some(Protocol::Other) | None => {
                self.world.stats.detect_rejected += 1;
                self.world.stats.closed += 1;
                sys::close(d.fd);
            }
        }
    }

    /// Drain: connections still undecided are closed.
    pub(super) fn detect_close_all(&mut self) {
        for slot in self.slab.slots() {
            let polling = match self.slab.get_mut(slot) {
                Some(Conn::Detect(d)) => {
                    d.expired = true;
                    d.polling
                }
                _ => continue,
            };
            if polling {
                self.ring.push(
                    opcode::PollRemove::new(Tag::new(Op::PollIn, slot).encode())
                        .build()
                        .user_data(Tag::new(Op::Cancel, slot).encode()),
                );
            } else {
                self.detect_finish(slot, None);
            }
        }
    }
}
