//! Owns: the compact form of an HTTP keep-alive client between requests ([`IdleHttp`]: its
//! socket's ring state, listener, peer and request count; no buffers, no session) — entering it
//! when a session is idle with nothing queued, waking a full connection (a cached box, buffers
//! kept) when the next request arrives, its keep-alive deadline, and closing it.
//! Must not: hold per-request state; anything an idle client needs must fit in `IdleHttp`.

use std::sync::Arc;

use io_uring::{opcode, types};

use super::driver::Shard;
use super::ring::{Completion, Op, Tag};
use super::sock::{Received, Recv, Sock};
use super::stream::{IDLE_CACHE_MAX, IdleHttp, Proto, StreamConn};
use super::{Conn, sys};
use crate::session::h1::H1Session;
use crate::session::{CLIENT, Term, Wire};

impl Shard {
    /// A compact idle client got bytes (or closed): bring its session back.
    pub(super) fn on_idle_completion(&mut self, tag: Tag, c: Completion) {
        let slot = tag.slot;
        let Some(Conn::Idle(i)) = self.slab.get_mut(slot) else {
            return;
        };
        let mut sock = Sock {
            fd: i.fd,
            inflight: i.inflight,
            recv: i.recv,
            ..Sock::default()
        };
        let got = match tag.op {
            Op::Recv => sock.on_recv(&c),
            _ => {
                sock.inflight = sock.inflight.saturating_sub(1);
                Received::Cancelled
            }
        };
        i.inflight = sock.inflight;
        i.recv = sock.recv;
        match got {
            Received::Data { bid, len } => {
                self.bufs.taken();
                self.wake_idle(slot, sock);
                if let (Some(Conn::Stream(s)), Some(bytes)) =
                    (self.slab.get_mut(slot), self.bufs.slice(bid, 0, len))
                {
                    s.wire.rx[CLIENT].extend_from_slice(bytes);
                }
                self.bufs.put(bid);
                self.mark_dirty(slot);
            }
            Received::NoBufs => {
                if let Some(k) = self.slab.key(slot) {
                    self.waiting_bufs.push(k);
                }
            }
            Received::Refused => {
                self.recv_limit_refused();
                let group = self.bufs.group;
                if let Some(Conn::Idle(i)) = self.slab.get_mut(slot) {
                    let mut sock = Sock {
                        fd: i.fd,
                        inflight: i.inflight,
                        recv: i.recv,
                        ..Sock::default()
                    };
                    sock.sync_recv(&mut self.ring, slot, group, true, true);
                    i.inflight = sock.inflight;
                    i.recv = sock.recv;
                }
            }
            Received::Cancelled => {
                if i.inflight == 0 && self.world.draining {
                    self.free_idle(slot, Term::Drain);
                }
            }
            Received::Eof | Received::Error(_) => {
                // The client closed between requests: the normal end of keep-alive.
                self.free_idle(slot, Term::Done);
            }
        }
    }

    /// Turns a compact idle client back into a full connection (reusing a cached box).
    pub(super) fn wake_idle(&mut self, slot: u32, sock: Sock) {
        let now = self.world.now_ms;
        let Some(Conn::Idle(i)) = self.slab.get_mut(slot) else {
            return;
        };
        let (cfg, peer, requests, opened, timer_at) = (
            Arc::clone(&i.cfg),
            i.peer,
            i.requests,
            i.opened_ms,
            i.timer_at,
        );
        let conn = match self.idle_cache.pop() {
            Some(mut b) => {
                let proto =
                    match std::mem::replace(&mut b.proto, Proto::H1(H1Session::resume(peer, 0, 0)))
                    {
                        Proto::H1(mut s) => {
                            s.reuse(peer, requests, now);
                            Proto::H1(s)
                        }
                        Proto::H2(_) | Proto::Tcp(_) => {
                            Proto::H1(H1Session::resume(peer, requests, now))
                        }
                    };
                let mut wire = std::mem::take(&mut b.wire);
                for v in wire.rx.iter_mut().chain(wire.tx.iter_mut()) {
                    v.clear();
                }
                let mut send = std::mem::take(&mut b.sock.send);
                send.clear();
                *b = StreamConn {
                    sock: Sock { send, ..sock },
                    tls: None,
                    wire: Wire {
                        rx: wire.rx,
                        tx: wire.tx,
                        active_ms: [now, now],
                        ..Wire::default()
                    },
                    proto,
                    cfg,
                    peer,
                    upstream: None,
                    lanes_up: Vec::new(),
                    splice: [None, None],
                    closing: None,
                    timer_at,
                    queued: false,
                    again: false,
                    opened_ms: opened,
                    opened_us: opened.saturating_mul(1000),
                    tls_started_us: 0,
                };
                b
            }
            None => Box::new(StreamConn {
                sock,
                tls: None,
                wire: Wire {
                    active_ms: [now, now],
                    ..Wire::default()
                },
                proto: Proto::H1(H1Session::resume(peer, requests, now)),
                cfg,
                peer,
                upstream: None,
                lanes_up: Vec::new(),
                splice: [None, None],
                closing: None,
                timer_at,
                queued: false,
                again: false,
                opened_ms: opened,
                opened_us: opened.saturating_mul(1000),
                tls_started_us: 0,
            }),
        };
        if let Some(entry) = self.slab.get_mut(slot) {
            *entry = Conn::Stream(conn);
        }
    }

    /// Closes a compact idle client (keep-alive timeout, drain, or the client closed).
    pub(super) fn free_idle(&mut self, slot: u32, term: Term) {
        let Some(Conn::Idle(i)) = self.slab.get_mut(slot) else {
            return;
        };
        if i.inflight > 0 {
            if i.recv != Recv::Cancelling {
                i.recv = Recv::Cancelling;
                let fd = i.fd;
                self.ring.push(
                    opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
                        .build()
                        .user_data(Tag::new(Op::Cancel, slot).encode()),
                );
            }
            return;
        }
        sys::close(i.fd);
        let listener = i.cfg.id;
        self.slab.remove(slot);
        self.world.listener_conn(listener, false);
        self.world.stats.closed += 1;
        self.world.stats.active = self.world.stats.active.saturating_sub(1);
        tracing::trace!(
            shard = self.world.shard,
            term = term.as_str(),
            "http connection closed"
        );
    }

    /// An HTTP client between requests with nothing buffered becomes a compact idle entry.
    pub(super) fn compact_if_idle(&mut self, slot: u32) {
        let Some(c) = self.stream(slot) else {
            return;
        };
        if !c.may_compact() || c.queued || c.again {
            return;
        }
        if c.cfg.http.as_ref().is_some_and(|h| h.draining) {
            // Its listener was removed: an idle keep-alive client is not kept.
            self.abort_stream(slot, Term::Drain);
            return;
        }
        let Proto::H1(s) = &c.proto else {
            return;
        };
        // The timer already in the wheel for this slot stays valid (same slot and generation).
        let timer_at = c.timer_at;
        let idle = IdleHttp {
            fd: c.sock.fd,
            inflight: c.sock.inflight,
            recv: c.sock.recv,
            cfg: Arc::clone(&c.cfg),
            peer: s.client,
            requests: s.requests(),
            since_ms: c.wire.active_ms[CLIENT],
            opened_ms: c.opened_ms,
            timer_at,
        };
        let Some(key) = self.slab.key(slot) else {
            return;
        };
        if let Some(entry) = self.slab.get_mut(slot) {
            let old = std::mem::replace(entry, Conn::Idle(idle));
            if let Conn::Stream(mut b) = old
                && self.idle_cache.len() < IDLE_CACHE_MAX
            {
                // Keep the buffers' capacity for the next request, within bounds.
                for v in b.wire.rx.iter_mut().chain(b.wire.tx.iter_mut()) {
                    v.clear();
                    if v.capacity() > 64 * 1024 {
                        *v = Vec::new();
                    }
                }
                b.sock.send.clear();
                if b.sock.send.capacity() > 64 * 1024 {
                    b.sock.send = Vec::new();
                }
                b.sock.fd = -1;
                self.idle_cache.push(b);
            }
        }
        // The keep-alive deadline of the compact entry, unless an earlier timer will fire first
        // (it finds the entry idle and schedules the next one).
        if let Some(deadline) = self.idle_deadline(slot)
            && timer_at.is_none_or(|t| t > deadline)
        {
            self.timers.insert(
                crate::timer::TimerKey {
                    slot,
                    generation: key.generation,
                },
                deadline,
            );
            if let Some(Conn::Idle(i)) = self.slab.get_mut(slot) {
                i.timer_at = Some(deadline);
            }
        }
    }

    pub(super) fn idle_deadline(&self, slot: u32) -> Option<u64> {
        match self.slab.get(slot)? {
            Conn::Idle(i) => Some(
                i.since_ms.saturating_add(
                    i.cfg
                        .http
                        .as_ref()
                        .map_or(self.world.timeouts.http_keep_alive, |h| {
                            h.timeouts.http_keep_alive
                        }),
                ),
            ),
            _ => None,
        }
    }
}
