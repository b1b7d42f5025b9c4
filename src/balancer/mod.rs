//! Owns: the choice of server for a new connection or request, per shard.
//! Must not: do I/O, read the clock, or see other shards. Each shard owns its own balancer state;
//! nothing here is shared.
//!
//! A balancer picks one server among those that may take traffic now; retrying means asking
//! again with the tried servers marked unavailable, so [`Candidates`] yields servers in
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

/// Most attempts one request or connection makes (the first plus retries).
pub const ATTEMPTS_MAX: usize = 8;

/// The servers one request tries, in preference order, produced lazily (Pingora's
/// `BackendIter`): each `next` asks the algorithm again with the servers already tried marked
/// unavailable, so a retry goes to the next best server and stateful algorithms (round robin)
/// advance once per attempt, not once per candidate. Capped at `attempts_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidates {
    tried: [u32; ATTEMPTS_MAX],
    len: u8,
    attempts_max: u8,
    /// Retries go to another server (HAProxy `option redispatch`); otherwise to the first one.
    redispatch: bool,
}

impl Candidates {
    /// `attempts_max` = 1 + retries (at most [`ATTEMPTS_MAX`]).
    pub fn new(attempts_max: usize, redispatch: bool) -> Candidates {
        Candidates {
            tried: [0; ATTEMPTS_MAX],
            len: 0,
            attempts_max: attempts_max.clamp(1, ATTEMPTS_MAX) as u8,
            redispatch,
        }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> usize {
        usize::from(self.len)
    }

    /// Another attempt is allowed.
    pub fn can_retry(&self) -> bool {
        self.len < self.attempts_max
    }

    pub fn tried(&self) -> &[u32] {
        self.tried.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// Records an attempt at server index `i` made without asking the algorithm (a sticky
    /// cookie chose it).
    pub fn record(&mut self, i: usize) {
        if let Some(t) = self.tried.get_mut(usize::from(self.len)) {
            *t = i as u32;
            self.len += 1;
        }
    }

    /// Takes back the last attempt: it does not count and its server may be picked again (a
    /// pooled connection that turned out dead is replayed on a new one for free).
    pub fn forget_last(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// The next server to try, or `None` when the attempts are used up or nothing can be picked.
    /// With every server tried already, one of them is tried again (a single-server backend
    /// retries its only server, as HAProxy does).
    pub fn next(
        &mut self,
        algo: &mut Algorithm,
        servers: &mut [ServerView],
        key: Option<u64>,
    ) -> Option<usize> {
        if !self.can_retry() {
            return None;
        }
        if !self.redispatch
            && let Some(&first) = self.tried().first()
        {
            let first = first as usize;
            let up = servers.get(first).is_some_and(|v| v.up);
            if up {
                self.record(first);
            }
            return up.then_some(first);
        }
        let mut hidden = [usize::MAX; ATTEMPTS_MAX];
        for (h, &t) in hidden.iter_mut().zip(self.tried()) {
            if let Some(v) = servers.get_mut(t as usize)
                && v.available
            {
                v.available = false;
                *h = t as usize;
            }
        }
        let mut picked = algo.pick(servers, key);
        for &h in hidden.iter().filter(|&&h| h != usize::MAX) {
            if let Some(v) = servers.get_mut(h) {
                v.available = true;
            }
        }
        if picked.is_none() && self.len > 0 {
            picked = algo.pick(servers, key);
        }
        if let Some(i) = picked {
            self.record(i);
        }
        picked
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
    fn lazy_candidates_go_to_the_next_server_then_repeat_when_all_were_tried() {
        let mut s = views(&[1, 1, 1]);
        let mut a = Algorithm::RoundRobin(SmoothWeightedRoundRobin::new(3, 0));
        let mut c = Candidates::new(5, true);
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(c.next(&mut a, &mut s, None).unwrap());
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2], "three distinct servers first");
        assert!(c.next(&mut a, &mut s, None).is_some(), "then a repeat");
        assert!(c.next(&mut a, &mut s, None).is_some());
        assert_eq!(c.next(&mut a, &mut s, None), None, "capped at attempts_max");
        assert!(s.iter().all(|v| v.available), "availability restored");
    }

    #[test]
    fn lazy_candidates_without_redispatch_retry_the_first_server() {
        let mut s = views(&[1, 1]);
        let mut a = Algorithm::RoundRobin(SmoothWeightedRoundRobin::new(2, 0));
        let mut c = Candidates::new(3, false);
        let first = c.next(&mut a, &mut s, None).unwrap();
        assert_eq!(c.next(&mut a, &mut s, None), Some(first));
        s[first].up = false;
        assert_eq!(c.next(&mut a, &mut s, None), None);
    }

    #[test]
    fn round_robin_shares_are_exact_with_one_candidate_per_request() {
        let mut s = views(&[1, 2, 3]);
        let mut a = Algorithm::RoundRobin(SmoothWeightedRoundRobin::new(3, 0));
        let mut counts = [0; 3];
        for _ in 0..600 {
            let mut c = Candidates::new(3, true);
            counts[c.next(&mut a, &mut s, None).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 200, 300]);
    }
}
