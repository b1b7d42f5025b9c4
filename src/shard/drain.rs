//! Owns: a shard's graceful stop: listeners closed, pooled and idle keep-alive connections
//! closed at once, requests in flight allowed to finish until the drain deadline, and everything
//! left closed at the deadline (or at a second stop signal).
//! Must not: wait on anything itself; the loop exits once the slab is empty.

use std::time::Instant;

use io_uring::{opcode, types};

use super::driver::Shard;
use super::ring::{Op, Tag};
use super::stream::Proto;
use super::{Conn, sys};
use crate::ids::ListenerId;
use crate::session::Term;

impl Shard {
    pub(super) fn start_drain(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let deadline_ms = self.world.now_ms + left.as_millis() as u64;
        if let Some(current) = self.drain_deadline_ms {
            // A later Drain (second stop signal) can only bring the deadline forward.
            self.drain_deadline_ms = Some(current.min(deadline_ms));
            if deadline_ms <= self.world.now_ms {
                self.close_all_for_drain();
            }
            return;
        }
        self.drain_deadline_ms = Some(deadline_ms);
        self.world.draining = true;
        let ids: Vec<ListenerId> = self.listeners.keys().copied().collect();
        for id in ids {
            if let Some(l) = self.listeners.get_mut(&id) {
                if l.accepting {
                    self.ring.push(
                        opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(l.fd)).all())
                            .build()
                            .user_data(Tag::new(Op::Cancel, id.0).encode()),
                    );
                } else if !l.closed {
                    l.closed = true;
                    sys::close(l.fd);
                }
            }
        }
        self.close_pools();
        self.close_idle_for_drain();
        self.detect_close_all();
        if deadline_ms <= self.world.now_ms {
            self.close_all_for_drain();
        }
        tracing::debug!(
            shard = self.world.shard,
            active = self.world.stats.active,
            "draining"
        );
    }

    pub(super) fn close_pools(&mut self) {
        let mut out = Vec::new();
        for b in self.world.backends.values_mut() {
            b.pool.take_all(&mut out);
        }
        for k in out {
            self.close_upstream(k.slot);
            self.try_free_upstream(k.slot);
        }
    }

    /// During a drain, idle keep-alive clients (between requests) are closed at once, as nginx
    /// and HAProxy do; requests in flight finish.
    pub(super) fn close_idle_for_drain(&mut self) {
        let mut goaway = Vec::new();
        for slot in self.slab.slots() {
            match self.slab.get(slot) {
                Some(Conn::Idle(_)) => self.free_idle(slot, Term::Drain),
                Some(Conn::Stream(c)) => {
                    let idle = match &c.proto {
                        Proto::H1(s) => {
                            s.is_idle(&c.wire) || (s.requests() == 0 && c.wire.rx[0].is_empty())
                        }
                        // GOAWAY first (the session sends it when driven while draining).
                        Proto::H2(_) => {
                            goaway.push(slot);
                            false
                        }
                        Proto::Tcp(_) => false,
                    };
                    let handshaking = c.tls.as_ref().is_some_and(|t| t.is_handshaking());
                    if (idle && c.upstream.is_none()) || handshaking {
                        self.abort_stream(slot, Term::Drain);
                    }
                }
                Some(Conn::Upstream(_)) | Some(Conn::Detect(_)) | None => {}
            }
        }
        for slot in goaway {
            self.mark_dirty(slot);
        }
    }

    pub(super) fn close_all_for_drain(&mut self) {
        for slot in self.slab.slots() {
            match self.slab.get(slot) {
                Some(Conn::Stream(c)) if !c.sock.closing => {
                    self.world.stats.drain_closed += 1;
                    self.abort_stream(slot, Term::Drain);
                }
                Some(Conn::Idle(_)) => self.free_idle(slot, Term::Drain),
                Some(Conn::Upstream(_)) => {
                    self.close_upstream(slot);
                    self.try_free_upstream(slot);
                }
                Some(Conn::Stream(_)) | Some(Conn::Detect(_)) | None => {}
            }
        }
    }
}
