//! Owns: one backend's idle keep-alive connections on one shard, keyed by what makes two
//! connections interchangeable ([`ReuseKey`]: the server and the TLS settings they were made
//! with; connections that carried a PROXY header speak for one client and are never pooled).
//! Must not: close or touch sockets: entries are slab keys of upstream connections the driver
//! owns (each keeps a recv armed, so a server closing an idle connection is seen at once and the
//! driver takes it out with [`Pool::remove`]).

use crate::ids::ServerId;
use crate::shard::slab::Key;

/// Two pooled connections with the same key may serve the same request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReuseKey {
    pub server: ServerId,
    /// Generation of the backend's TLS settings the connection was made with (0: plain TCP); a
    /// reload that changes them makes older connections unusable.
    pub tls_generation: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooled {
    pub conn: Key,
    pub since_ms: u64,
}

/// Per key, most recently used last (reuse takes the warmest connection).
#[derive(Debug, Default)]
pub struct Pool {
    idle: Vec<(ReuseKey, Vec<Pooled>)>,
}

impl Pool {
    /// Keeps `conn` for reuse unless `key` already has `idle_max` connections.
    pub fn put(&mut self, key: ReuseKey, conn: Key, now_ms: u64, idle_max: usize) -> bool {
        let list = match self.idle.iter_mut().position(|(k, _)| *k == key) {
            Some(i) => &mut self.idle[i].1,
            None => {
                self.idle.push((key, Vec::new()));
                match self.idle.last_mut() {
                    Some((_, l)) => l,
                    None => return false,
                }
            }
        };
        if list.len() >= idle_max {
            return false;
        }
        list.push(Pooled {
            conn,
            since_ms: now_ms,
        });
        true
    }

    /// The most recently pooled connection for `key`.
    pub fn take(&mut self, key: ReuseKey) -> Option<Key> {
        let (_, list) = self.idle.iter_mut().find(|(k, _)| *k == key)?;
        list.pop().map(|p| p.conn)
    }

    /// Forgets `conn` (it closed, or is being closed).
    pub fn remove(&mut self, conn: Key) -> bool {
        for (_, list) in &mut self.idle {
            if let Some(i) = list.iter().position(|p| p.conn == conn) {
                list.remove(i);
                return true;
            }
        }
        false
    }

    /// Takes out connections idle since before `now_ms - idle_ms` (every one with `idle_ms` 0)
    /// into `out`, for the driver to close.
    pub fn expire(&mut self, now_ms: u64, idle_ms: u64, out: &mut Vec<Key>) {
        for (_, list) in &mut self.idle {
            list.retain(|p| {
                let keep = idle_ms > 0 && now_ms < p.since_ms.saturating_add(idle_ms);
                if !keep {
                    out.push(p.conn);
                }
                keep
            });
        }
    }

    /// Takes out every connection to `server` (it went DOWN or was removed).
    pub fn take_server(&mut self, server: ServerId, out: &mut Vec<Key>) {
        for (k, list) in &mut self.idle {
            if k.server == server {
                out.extend(list.drain(..).map(|p| p.conn));
            }
        }
    }

    /// Takes out connections to servers not in `live`, and with another TLS generation than
    /// `tls_generation`, into `out`.
    pub fn take_stale(&mut self, live: &[ServerId], tls_generation: u32, out: &mut Vec<Key>) {
        for (k, list) in &mut self.idle {
            if !live.contains(&k.server) || k.tls_generation != tls_generation {
                out.extend(list.drain(..).map(|p| p.conn));
            }
        }
        self.idle.retain(|(_, l)| !l.is_empty());
    }

    /// Every pooled connection (drain, backend removed).
    pub fn take_all(&mut self, out: &mut Vec<Key>) {
        for (_, list) in self.idle.drain(..) {
            out.extend(list.into_iter().map(|p| p.conn));
        }
    }

    pub fn len(&self) -> usize {
        self.idle.iter().map(|(_, l)| l.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(slot: u32) -> Key {
        Key {
            slot,
            generation: 0,
        }
    }

    #[test]
    fn reuse_is_per_key_newest_first_and_bounded() {
        let a = ReuseKey {
            server: ServerId(1),
            tls_generation: 0,
        };
        let b = ReuseKey {
            server: ServerId(2),
            tls_generation: 0,
        };
        let mut p = Pool::default();
        assert!(p.put(a, k(1), 0, 2));
        assert!(p.put(a, k(2), 5, 2));
        assert!(!p.put(a, k(3), 6, 2), "bounded per key");
        assert!(p.put(b, k(4), 6, 2));
        assert_eq!(p.take(a), Some(k(2)));
        assert!(p.remove(k(1)));
        assert_eq!(p.take(a), None);
        let mut out = Vec::new();
        p.expire(100, 50, &mut out);
        assert_eq!(out, vec![k(4)]);
    }

    #[test]
    fn stale_tls_generation_and_removed_servers_are_taken_out() {
        let a = ReuseKey {
            server: ServerId(1),
            tls_generation: 1,
        };
        let mut p = Pool::default();
        p.put(a, k(1), 0, 4);
        p.put(
            ReuseKey {
                server: ServerId(2),
                tls_generation: 2,
            },
            k(2),
            0,
            4,
        );
        let mut out = Vec::new();
        p.take_stale(&[ServerId(1), ServerId(2)], 2, &mut out);
        assert_eq!(out, vec![k(1)]);
        out.clear();
        p.take_stale(&[ServerId(1)], 2, &mut out);
        assert_eq!(out, vec![k(2)]);
        assert!(p.is_empty());
    }
}
