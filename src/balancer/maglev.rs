//! Owns: Maglev consistent hashing (Eisenbud et al., NSDI 2016) over one backend: a lookup table
//! of `MAGLEV_TABLE_SIZE` entries filled from each server's own permutation, so a key (client
//! address, header, cookie or path hash) always lands on the same server, and removing one of N
//! servers moves only about 1/N of the keys. Weights give servers proportional shares of the
//! table. All shards build the same table from the same servers, so a key maps to the same server
//! whichever shard handles it.
//! Must not: do I/O or see other shards. The table is rebuilt only when the set of servers in the
//! tier changes (health, drain), never per request.

use super::{Eligible, mix64};

/// A prime well above the number of servers times 100 (the paper's rule of thumb).
pub const MAGLEV_TABLE_SIZE: usize = 65_537;

/// Tries with a re-mixed key when the mapped server is full or already tried, before falling back
/// to the first available server.
const REHASH_TRIES: u64 = 8;

#[derive(Debug, Clone)]
pub struct Maglev {
    table: Vec<u16>,
    /// Which servers the table was built over (index -> in tier), to know when to rebuild.
    built_for: Vec<bool>,
}

impl Default for Maglev {
    fn default() -> Self {
        Maglev::new()
    }
}

impl Maglev {
    pub fn new() -> Maglev {
        Maglev {
            table: Vec::new(),
            built_for: Vec::new(),
        }
    }

    /// Fills the table over the servers in `members` (index, identity key, weight).
    fn build(&mut self, members: &[(usize, u64, u32)]) {
        let m = MAGLEV_TABLE_SIZE as u64;
        self.table = vec![u16::MAX; MAGLEV_TABLE_SIZE];
        if members.is_empty() {
            return;
        }
        let perms: Vec<(u64, u64)> = members
            .iter()
            .map(|&(_, key, _)| {
                let offset = mix64(key ^ 0x5bd1_e995) % m;
                let skip = mix64(key ^ 0x1b87_3593) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; members.len()];
        let mut filled = 0usize;
        'outer: loop {
            for (n, &(index, _, weight)) in members.iter().enumerate() {
                // A server with weight w claims w slots per round.
                for _ in 0..weight.max(1) {
                    let (offset, skip) = perms[n];
                    loop {
                        let slot = ((offset + next[n] * skip) % m) as usize;
                        next[n] += 1;
                        if let Some(entry) = self.table.get_mut(slot)
                            && *entry == u16::MAX
                        {
                            *entry = index as u16;
                            filled += 1;
                            break;
                        }
                    }
                    if filled == MAGLEV_TABLE_SIZE {
                        break 'outer;
                    }
                }
            }
        }
    }

    fn ensure_built(&mut self, e: &Eligible<'_>) {
        let current: Vec<bool> = (0..e.len()).map(|i| e.in_tier(i)).collect();
        if current == self.built_for && !self.table.is_empty() {
            return;
        }
        let members: Vec<(usize, u64, u32)> = (0..e.len())
            .filter(|&i| e.in_tier(i))
            .filter_map(|i| e.servers.get(i).map(|s| (i, s.key, s.weight)))
            .collect();
        self.build(&members);
        self.built_for = current;
    }

    /// The server for `key`, or the next by re-mixed keys if it is full or already tried.
    pub fn pick(&mut self, e: &Eligible<'_>, key: u64) -> Option<usize> {
        self.ensure_built(e);
        let m = MAGLEV_TABLE_SIZE as u64;
        let mut k = key;
        for attempt in 0..REHASH_TRIES {
            let slot = (k % m) as usize;
            let i = usize::from(*self.table.get(slot)?);
            if e.pickable(i) {
                return Some(i);
            }
            k = mix64(key ^ (attempt + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        (0..e.len()).find(|&i| e.pickable(i))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Algorithm, hash_bytes, views};
    use super::*;

    fn owner(a: &mut Algorithm, s: &[super::super::ServerView], k: u64) -> Option<usize> {
        a.pick(s, Some(k))
    }

    #[test]
    fn same_key_same_server_on_every_shard() {
        let s = views(&[1, 1, 1, 1]);
        let mut a = Algorithm::Maglev(Maglev::new());
        let mut b = Algorithm::Maglev(Maglev::new());
        for k in 0..1000u64 {
            let key = hash_bytes(&k.to_le_bytes());
            assert_eq!(owner(&mut a, &s, key), owner(&mut b, &s, key));
            assert_eq!(owner(&mut a, &s, key), owner(&mut a, &s, key));
        }
    }

    #[test]
    fn distribution_is_even_within_tolerance_and_follows_weights() {
        let s = views(&[1, 1, 1, 1]);
        let mut a = Algorithm::Maglev(Maglev::new());
        let mut counts = [0usize; 4];
        for k in 0..100_000u64 {
            if let Some(i) = owner(&mut a, &s, hash_bytes(&k.to_le_bytes())) {
                counts[i] += 1;
            }
        }
        let min = counts.iter().min().copied().unwrap_or(0) as f64;
        let max = counts.iter().max().copied().unwrap_or(0) as f64;
        assert!(max / min < 1.05, "{counts:?}");

        let s = views(&[1, 2, 3]);
        let mut a = Algorithm::Maglev(Maglev::new());
        let mut counts = [0f64; 3];
        for k in 0..120_000u64 {
            if let Some(i) = owner(&mut a, &s, hash_bytes(&k.to_le_bytes())) {
                counts[i] += 1.0;
            }
        }
        assert!((counts[1] / counts[0] - 2.0).abs() < 0.1, "{counts:?}");
        assert!((counts[2] / counts[0] - 3.0).abs() < 0.15, "{counts:?}");
    }

    #[test]
    fn removing_one_of_five_moves_about_a_fifth_of_the_keys() {
        let mut s = views(&[1, 1, 1, 1, 1]);
        let mut a = Algorithm::Maglev(Maglev::new());
        let keys: Vec<u64> = (0..50_000u64)
            .map(|k| hash_bytes(&k.to_le_bytes()))
            .collect();
        let before: Vec<Option<usize>> = keys.iter().map(|&k| owner(&mut a, &s, k)).collect();
        s[2].up = false;
        let after: Vec<Option<usize>> = keys.iter().map(|&k| owner(&mut a, &s, k)).collect();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let on_removed = before.iter().filter(|b| **b == Some(2)).count();
        assert!(after.iter().all(|o| *o != Some(2)));
        // Every key of the removed server moves; of the others, only a few percent.
        let fraction = moved as f64 / keys.len() as f64;
        assert!((0.18..0.25).contains(&fraction), "moved {fraction}");
        assert!(moved >= on_removed);
    }

    #[test]
    fn a_full_server_sends_its_keys_elsewhere_without_rebuilding() {
        let mut s = views(&[1, 1, 1]);
        let mut a = Algorithm::Maglev(Maglev::new());
        let key = hash_bytes(b"client");
        let home = owner(&mut a, &s, key).unwrap_or(0);
        s[home].available = false;
        let other = owner(&mut a, &s, key);
        assert!(other.is_some() && other != Some(home));
        s[home].available = true;
        assert_eq!(owner(&mut a, &s, key), Some(home));
    }
}
