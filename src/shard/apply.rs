//! Owns: applying configuration changes ([`ShardOp`]s) to a running shard between loop turns —
//! backends added, replaced (servers reconciled by id: state, pools and counters kept) or removed
//! (pooled connections closed, queued requests woken), listeners added (accepting at once),
//! replaced (new connections and new requests use the new settings) or removed (stop accepting,
//! existing connections finish). Boot is the same path from nothing.
//! Must not: fail half-way on input the control thread validated; a listener whose access log
//! cannot be opened is the only refusal, reported back.

use std::sync::Arc;

use io_uring::{opcode, types};

use super::driver::{ListenerRt, ListenerSlot, Shard};
use super::listener::ListenerCfg;
use super::ring::{Op, Tag};
use super::{BootError, Conn, ShardOp, sys};
use crate::access_log::Sink;
use crate::ids::{BackendId, ListenerId};
use crate::latency::LatencySet;
use crate::session::Term;
use crate::stats::ListenerStats;
use crate::upstream::{Backend, BackendCfg};

impl Shard {
    /// Applies configuration changes between loop turns (boot is the same path from nothing).
    pub(super) fn apply(&mut self, ops: Vec<ShardOp>) -> Result<(), BootError> {
        for op in ops {
            match op {
                ShardOp::PutBackend(cfg) => self.put_backend(*cfg),
                ShardOp::RemoveBackend(id) => self.remove_backend(id),
                ShardOp::PutListener { cfg, fd } => self.put_listener(cfg, fd)?,
                ShardOp::RemoveListener(id) => self.remove_listener(id),
                ShardOp::SetTimeouts(t) => self.world.timeouts = t,
            }
        }
        Ok(())
    }

    pub(super) fn put_backend(&mut self, cfg: BackendCfg) {
        let (shard, count) = (self.world.shard, self.shard_count);
        let mut stale = std::mem::take(&mut self.expire_buf);
        match self.world.backends.get_mut(&cfg.id) {
            Some(b) => b.update(cfg, &mut stale),
            None => {
                let b = Backend::with_histograms(cfg, shard, count, self.world.histograms);
                self.world.backends.insert(b.cfg.id, b);
            }
        }
        for k in stale.drain(..) {
            self.close_upstream(k.slot);
            self.try_free_upstream(k.slot);
        }
        self.expire_buf = stale;
    }

    pub(super) fn remove_backend(&mut self, id: BackendId) {
        let Some(mut b) = self.world.backends.remove(&id) else {
            return;
        };
        let mut pooled = Vec::new();
        b.pool.take_all(&mut pooled);
        // Removed from the map first, so closing does not put anything back.
        for k in pooled {
            if let Some(Conn::Upstream(u)) = self.slab.get_key_mut(k) {
                u.state = super::stream::UpState::Open;
            }
            self.close_upstream(k.slot);
            self.try_free_upstream(k.slot);
        }
        // Requests waiting in its queue get their 503 from their own deadline; wake them now.
        for (k, lane) in b.queue.drain(..) {
            self.world.queued = self.world.queued.saturating_sub(1);
            self.on_dequeued(k, lane);
        }
    }

    pub(super) fn put_listener(
        &mut self,
        cfg: Arc<ListenerCfg>,
        fd: Option<i32>,
    ) -> Result<(), BootError> {
        let mode = if cfg.detect.is_some() {
            "detect"
        } else if cfg.http.is_some() {
            "http"
        } else {
            "tcp"
        };
        match self.world.listeners.get_mut(&cfg.id) {
            Some(rt) => {
                if rt.stats.mode != mode {
                    rt.stats.mode = mode.to_string();
                }
            }
            None => {
                let histograms = self.world.histograms;
                self.world.listeners.insert(
                    cfg.id,
                    ListenerRt {
                        stats: ListenerStats {
                            name: cfg.name.clone(),
                            mode: mode.to_string(),
                            ..ListenerStats::default()
                        },
                        latency: histograms.then(LatencySet::new),
                    },
                );
            }
        }
        if let Some(l) = self.listeners.get_mut(&cfg.id) {
            l.cfg = cfg;
            if let Some(fd) = fd {
                sys::close(fd);
            }
            return Ok(());
        }
        let Some(fd) = fd else {
            return Ok(());
        };
        let sink = Sink::open(&cfg.access_log, cfg.access_log_format).map_err(|source| {
            BootError::AccessLog {
                shard: self.world.shard,
                listener: cfg.name.clone(),
                source,
            }
        })?;
        let id = cfg.id;
        self.listeners.insert(
            id,
            ListenerSlot {
                fd,
                cfg,
                accepting: false,
                closed: false,
                paused: false,
                removing: false,
                sink,
            },
        );
        if !self.world.draining {
            self.arm_accept(id);
        }
        Ok(())
    }

    pub(super) fn remove_listener(&mut self, id: ListenerId) {
        let Some(l) = self.listeners.get_mut(&id) else {
            return;
        };
        l.removing = true;
        // HTTP connections of this listener finish the request in flight and keep nothing alive.
        if let Some(h) = &l.cfg.http {
            let mut cfg = (*l.cfg).clone();
            cfg.http = Some(crate::session::h1::H1Cfg {
                draining: true,
                ..h.clone()
            });
            // HTTP/2 connections send GOAWAY: streams in flight finish, new ones are refused.
            if let Some(h2) = &mut cfg.h2 {
                h2.h1.draining = true;
            }
            l.cfg = Arc::new(cfg);
        }
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
        // Idle keep-alive clients of the removed listener go now.
        for slot in self.slab.slots() {
            match self.slab.get(slot) {
                Some(Conn::Idle(i)) if i.cfg.id == id => self.free_idle(slot, Term::Drain),
                Some(Conn::Stream(c)) if c.cfg.id == id => self.mark_dirty(slot),
                _ => {}
            }
        }
    }
}
