//! Owns: the choice of server for a new connection or request, per shard.
//! Must not: do I/O, read the clock, or see other shards. Each shard owns its own balancer state;
//! nothing here is shared.
//!
//! A balancer picks one server among those that may take traffic now; retrying means asking
//! again with the tried servers marked unavailable, so [`candidates`] yields servers in
//! preference order. Backup servers are considered only when no primary server is up (HAProxy
//! `backup`); weight 0 drains a server (never picked).

mod hash;
mod least_conn;
mod maglev;
mod p2c;
mod round_robin;

pub use hash::{hash_bytes, mix64};
pub use least_conn::LeastConn;
pub use maglev::{MAGLEV_TABLE_SIZE, Maglev};
pub use p2c::PowerOfTwo;
pub use round_robin::SmoothWeightedRoundRobin;

/// One server as a balancer sees it at pick time. Index = position in the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    /// Configured weight; 0 = draining.
    pub weight: u32,
    /// Used only when no primary server is up.
    pub backup: bool,
    /// Health: UP (active checks, passive ejection) — DOWN servers are never picked.
    pub up: bool,
    /// May take one more connection now: not at its per-shard `maxconn`, not already tried for
    /// this request.
    pub available: bool,
    /// Connections this shard has open to the server now (least-connections, p2c).
    pub active: u32,
    /// Stable identity for consistent hashing (the server's name).
    pub key: u64,
}

impl ServerView {
    fn in_tier(&self, backup: bool) -> bool {
        self.up && self.weight > 0 && self.backup == backup
    }
}

/// The algorithm of one backend (config `balance`).
#[derive(Debug, Clone)]
pub enum Algorithm {
    RoundRobin(SmoothWeightedRoundRobin),
    LeastConn(LeastConn),
    PowerOfTwo(PowerOfTwo),
    Maglev(Maglev),
}

/// Which servers an algorithm may choose from: the tier (primaries, or backups when no primary
/// is up) and, within it, the ones available now.
pub struct Eligible<'a> {
    pub servers: &'a [ServerView],
    pub backup_tier: bool,
}

impl Eligible<'_> {
    /// In the tier (up, weight > 0): what tables and weights are computed over.
    pub fn in_tier(&self, i: usize) -> bool {
        self.servers
            .get(i)
            .is_some_and(|s| s.in_tier(self.backup_tier))
    }

    /// In the tier and available now.
    pub fn pickable(&self, i: usize) -> bool {
        self.servers
            .get(i)
            .is_some_and(|s| s.in_tier(self.backup_tier) && s.available)
    }

    pub fn weight(&self, i: usize) -> u32 {
        self.servers.get(i).map_or(0, |s| s.weight)
    }

    pub fn active(&self, i: usize) -> u32 {
        self.servers.get(i).map_or(0, |s| s.active)
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

impl Algorithm {
    /// The server to try next, or `None` when no server may be picked now. `key` is the hash of
    /// the request's key (consistent hashing; ignored by the other algorithms).
    pub fn pick(&mut self, servers: &[ServerView], key: Option<u64>) -> Option<usize> {
        let any_primary_up = servers.iter().any(|s| s.in_tier(false));
        let e = Eligible {
            servers,
            backup_tier: !any_primary_up,
        };
        match self {
            Algorithm::RoundRobin(b) => b.pick(&e),
            Algorithm::LeastConn(b) => b.pick(&e),
            Algorithm::PowerOfTwo(b) => b.pick(&e),
            Algorithm::Maglev(b) => b.pick(&e, key.unwrap_or(0)),
        }
    }
}

/// Up to `max` servers to try, best first: pick, mark it unavailable, pick again.
pub fn candidates(
    algo: &mut Algorithm,
    servers: &mut [ServerView],
    key: Option<u64>,
    max: usize,
    out: &mut Vec<usize>,
) {
    out.clear();
    while out.len() < max {
        let Some(i) = algo.pick(servers, key) else {
            break;
        };
        out.push(i);
        match servers.get_mut(i) {
            Some(s) => s.available = false,
            None => break,
        }
    }
    for &i in out.iter() {
        if let Some(s) = servers.get_mut(i) {
            s.available = true;
        }
    }
}

#[cfg(test)]
pub(crate) fn views(weights: &[u32]) -> Vec<ServerView> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| ServerView {
            weight,
            backup: false,
            up: true,
            available: true,
            active: 0,
            key: hash_bytes(format!("s{i}").as_bytes()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_only_when_every_primary_is_down() {
        let mut s = views(&[1, 1, 1]);
        s[2].backup = true;
        let mut a = Algorithm::RoundRobin(SmoothWeightedRoundRobin::new(3, 0));
        for _ in 0..10 {
            assert_ne!(a.pick(&s, None), Some(2));
        }
        s[0].up = false;
        for _ in 0..10 {
            assert_eq!(a.pick(&s, None), Some(1));
        }
        s[1].up = false;
        assert_eq!(a.pick(&s, None), Some(2));
        s[2].up = false;
        assert_eq!(a.pick(&s, None), None);
    }

    #[test]
    fn a_full_primary_does_not_send_traffic_to_backups() {
        let mut s = views(&[1, 1]);
        s[1].backup = true;
        s[0].available = false;
        let mut a = Algorithm::LeastConn(LeastConn::new(0));
        assert_eq!(
            a.pick(&s, None),
            None,
            "queue rather than spill to the backup"
        );
    }

    #[test]
    fn candidates_are_distinct_in_preference_order() {
        let mut s = views(&[1, 1, 1]);
        let mut a = Algorithm::RoundRobin(SmoothWeightedRoundRobin::new(3, 0));
        let mut out = Vec::new();
        candidates(&mut a, &mut s, None, 3, &mut out);
        let mut sorted = out.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2]);
        assert!(s.iter().all(|v| v.available), "availability restored");
        candidates(&mut a, &mut s, None, 5, &mut out);
        assert_eq!(out.len(), 3, "never more than the servers");
    }
}
