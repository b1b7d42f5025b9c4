//! Owns: the control thread's side of the message bus to the shards — every shard's bounded queue
//! ([`Shards`]), delivery that never loses a state change (what does not fit a full queue waits
//! in a per-shard backlog, and server health is coalesced to the latest value per server so the
//! backlog stays bounded by the number of servers), asking every shard for its counters, applying
//! a plan on every shard and waiting for each to confirm, and the relay of shard events (TLS
//! session copies, passive-health ejections).
//! Must not: touch shard state; shards are reached only through their queues.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ids::{BackendId, ServerId};
use crate::shard::{ShardHandle, ShardMsg, ShardOp};
use crate::stats::{ShardReport, StatsReport};

/// Messages waiting for room in one shard's queue.
#[derive(Default)]
pub struct Backlog {
    msgs: VecDeque<ShardMsg>,
    /// Latest health per server not delivered yet (coalesced).
    health: Vec<(BackendId, ServerId, bool)>,
}

/// What a delivery attempt did with a message.
pub enum Sent {
    Delivered,
    /// The queue is full: try again later.
    Full(ShardMsg),
    /// The shard is gone: drop it.
    Gone,
}

impl Backlog {
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty() && self.health.is_empty()
    }

    /// Records a health change to deliver; an older pending value for the server is replaced.
    pub fn set_health(&mut self, backend: BackendId, server: ServerId, up: bool) {
        match self
            .health
            .iter_mut()
            .find(|(b, s, _)| *b == backend && *s == server)
        {
            Some(e) => e.2 = up,
            None => self.health.push((backend, server, up)),
        }
    }

    /// Delivers what waits, in order, until the queue is full again.
    pub fn flush(&mut self, send: &mut impl FnMut(ShardMsg) -> Sent) {
        while let Some(msg) = self.msgs.pop_front() {
            match send(msg) {
                Sent::Delivered | Sent::Gone => {}
                Sent::Full(m) => {
                    self.msgs.push_front(m);
                    return;
                }
            }
        }
        while let Some(&(backend, server, up)) = self.health.first() {
            match send(ShardMsg::ServerHealth {
                backend,
                server,
                up,
            }) {
                Sent::Delivered | Sent::Gone => {
                    self.health.remove(0);
                }
                Sent::Full(_) => return,
            }
        }
    }
}

/// The shards as the control thread sees them.
pub struct Shards {
    handles: Vec<ShardHandle>,
    started: Instant,
    backlogs: Mutex<Vec<Backlog>>,
    flush_wanted: tokio::sync::Notify,
    /// Health check results (control thread only), shown in /stats.
    pub checks: crate::stats::CheckTable,
}

fn deliver(h: &ShardHandle, msg: ShardMsg) -> Sent {
    match h.send(msg) {
        Ok(()) => Sent::Delivered,
        Err((m, true)) => Sent::Full(m),
        Err((_, false)) => Sent::Gone,
    }
}

impl Shards {
    pub fn new(handles: Vec<ShardHandle>, checks: crate::stats::CheckTable) -> Arc<Shards> {
        let backlogs = handles.iter().map(|_| Backlog::default()).collect();
        Arc::new(Shards {
            handles,
            started: Instant::now(),
            backlogs: Mutex::new(backlogs),
            flush_wanted: tokio::sync::Notify::new(),
            checks,
        })
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Takes the join handles (once) for the final wait.
    pub fn take_joins(&mut self) -> Vec<std::thread::JoinHandle<crate::shard::ShardExit>> {
        self.handles
            .iter_mut()
            .filter_map(|h| h.join.take())
            .collect()
    }

    /// Sends `msg` to shard `i` without ever losing it: behind anything already waiting for that
    /// shard, or into its backlog when its queue is full.
    pub fn send_lossless(&self, i: usize, msg: ShardMsg) {
        let Some(h) = self.handles.get(i) else {
            return;
        };
        let Ok(mut backlogs) = self.backlogs.lock() else {
            return;
        };
        let Some(b) = backlogs.get_mut(i) else {
            return;
        };
        if b.is_empty() {
            match deliver(h, msg) {
                Sent::Delivered | Sent::Gone => return,
                Sent::Full(m) => b.msgs.push_back(m),
            }
        } else {
            b.msgs.push_back(msg);
        }
        drop(backlogs);
        self.flush_wanted.notify_one();
    }

    /// A server's health changed: every shard hears it, the latest value wins, nothing is dropped.
    pub fn broadcast_health(&self, backend: BackendId, server: ServerId, up: bool) {
        let Ok(mut backlogs) = self.backlogs.lock() else {
            return;
        };
        let mut waiting = false;
        for (h, b) in self.handles.iter().zip(backlogs.iter_mut()) {
            b.set_health(backend, server, up);
            b.flush(&mut |m| deliver(h, m));
            waiting |= !b.is_empty();
        }
        drop(backlogs);
        if waiting {
            self.flush_wanted.notify_one();
        }
    }

    /// Best effort, to every shard but `except` (TLS session copies: a full queue drops them).
    pub fn broadcast_except(&self, except: usize, msg: impl Fn() -> ShardMsg) {
        for h in self.handles.iter().filter(|h| h.id != except) {
            let _ = h.send(msg());
        }
    }

    /// Delivers backlogs until they are empty (runs on the control thread for the process's life).
    pub async fn flusher(self: Arc<Shards>) {
        loop {
            self.flush_wanted.notified().await;
            loop {
                let pending = match self.backlogs.lock() {
                    Ok(mut backlogs) => {
                        let mut pending = false;
                        for (h, b) in self.handles.iter().zip(backlogs.iter_mut()) {
                            b.flush(&mut |m| deliver(h, m));
                            pending |= !b.is_empty();
                        }
                        pending
                    }
                    Err(_) => false,
                };
                if !pending {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Sends each shard its ops and waits until every shard has applied them.
    pub async fn apply(&self, per_shard: Vec<Vec<ShardOp>>) -> Result<(), String> {
        let mut waits = Vec::with_capacity(per_shard.len());
        for (i, ops) in per_shard.into_iter().enumerate() {
            let (done, rx) = tokio::sync::oneshot::channel();
            self.send_lossless(i, ShardMsg::Apply { ops, done });
            waits.push(rx);
        }
        let mut errors = Vec::new();
        for (i, rx) in waits.into_iter().enumerate() {
            match tokio::time::timeout(Duration::from_secs(10), rx).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => errors.push(format!("shard {i}: {e}")),
                Ok(Err(_)) => errors.push(format!("shard {i}: gone")),
                Err(_) => errors.push(format!("shard {i}: no answer within 10 s")),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Stops every shard (drain with `deadline`), lossless.
    pub fn drain(&self, deadline: Instant) {
        for i in 0..self.handles.len() {
            self.send_lossless(i, ShardMsg::Drain { deadline });
        }
    }

    /// Asks every shard for its counters and merges them (on demand; nothing is kept centrally).
    pub async fn report(&self) -> StatsReport {
        let mut waits = Vec::with_capacity(self.handles.len());
        for h in &self.handles {
            let (tx, rx) = tokio::sync::oneshot::channel::<ShardReport>();
            if h.send(ShardMsg::Stats { reply: tx }).is_ok() {
                waits.push(rx);
            }
        }
        let mut reports = Vec::with_capacity(waits.len());
        for rx in waits {
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), rx).await {
                reports.push(r);
            }
        }
        let mut report =
            StatsReport::from_shards(reports, self.started.elapsed().as_millis() as u64);
        if let Ok(table) = self.checks.lock() {
            for b in report.backends.iter_mut() {
                for s in b.servers.iter_mut() {
                    s.checks = table.get(&(b.name.clone(), s.name.clone())).cloned();
                }
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_delays_health_but_never_loses_the_latest_state() {
        let mut b = Backlog::default();
        let mut delivered = Vec::new();
        let mut room = 0usize;
        let send = |m: ShardMsg, room: &mut usize, delivered: &mut Vec<(u32, bool)>| {
            if *room == 0 {
                return Sent::Full(m);
            }
            *room -= 1;
            if let ShardMsg::ServerHealth { server, up, .. } = m {
                delivered.push((server.0, up));
            }
            Sent::Delivered
        };
        // Flapping while the shard's queue is full: only the last value per server is kept.
        for up in [false, true, false] {
            b.set_health(BackendId(1), ServerId(7), up);
            b.flush(&mut |m| send(m, &mut room, &mut delivered));
        }
        b.set_health(BackendId(1), ServerId(8), false);
        b.flush(&mut |m| send(m, &mut room, &mut delivered));
        assert!(delivered.is_empty());
        assert!(!b.is_empty());
        room = 1;
        b.flush(&mut |m| send(m, &mut room, &mut delivered));
        assert_eq!(delivered, vec![(7, false)]);
        room = 10;
        b.flush(&mut |m| send(m, &mut room, &mut delivered));
        assert_eq!(delivered, vec![(7, false), (8, false)]);
        assert!(b.is_empty());
    }

    #[test]
    fn queued_messages_keep_their_order() {
        let mut b = Backlog::default();
        for i in 0..3u32 {
            b.msgs.push_back(ShardMsg::ServerHealth {
                backend: BackendId(1),
                server: ServerId(i),
                up: true,
            });
        }
        let mut seen = Vec::new();
        b.flush(&mut |m| {
            if let ShardMsg::ServerHealth { server, .. } = m {
                seen.push(server.0);
            }
            Sent::Delivered
        });
        assert_eq!(seen, vec![0, 1, 2]);
    }
}
