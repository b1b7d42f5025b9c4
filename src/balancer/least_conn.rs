//! Owns: weighted least connections over this shard's own counts (HAProxy `leastconn`): the
//! server with the fewest open connections relative to its weight. Counts are per shard — no
//! shared counters — so with N shards each balances its own share of the load.
//! Must not: do I/O or see other shards.

use super::Eligible;

#[derive(Debug, Clone)]
pub struct LeastConn {
    /// Where the tie-break scan starts; advances every pick so equal servers take turns.
    next: usize,
}

impl LeastConn {
    pub fn new(rotate: usize) -> LeastConn {
        LeastConn { next: rotate }
    }

    pub fn pick(&mut self, e: &Eligible<'_>) -> Option<usize> {
        let n = e.len();
        if n == 0 {
            return None;
        }
        let start = self.next % n;
        self.next = self.next.wrapping_add(1);
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !e.pickable(i) {
                continue;
            }
            best = match best {
                // active_i / w_i < active_b / w_b, without division.
                Some(b)
                    if u64::from(e.active(i)) * u64::from(e.weight(b))
                        >= u64::from(e.active(b)) * u64::from(e.weight(i)) =>
                {
                    Some(b)
                }
                _ => Some(i),
            };
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Algorithm, views};
    use super::*;

    #[test]
    fn picks_the_least_loaded_relative_to_weight() {
        let mut a = Algorithm::LeastConn(LeastConn::new(0));
        let mut s = views(&[1, 1, 2]);
        s[0].active = 3;
        s[1].active = 1;
        s[2].active = 3; // 1.5 per weight unit
        assert_eq!(a.pick(&s, None), Some(1));
        s[1].active = 2;
        assert_eq!(a.pick(&s, None), Some(2));
    }

    #[test]
    fn ties_take_turns() {
        let mut a = Algorithm::LeastConn(LeastConn::new(0));
        let s = views(&[1, 1, 1]);
        let picks: Vec<_> = (0..3).filter_map(|_| a.pick(&s, None)).collect();
        let mut sorted = picks.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2]);
    }

    #[test]
    fn a_slow_server_gets_fewer_requests() {
        // Simulate: server 0 holds each request 10 ticks, servers 1-2 one tick.
        let mut a = Algorithm::LeastConn(LeastConn::new(0));
        let mut s = views(&[1, 1, 1]);
        let mut ends: Vec<(usize, usize)> = Vec::new();
        let mut counts = [0usize; 3];
        for t in 0..3000 {
            ends.retain(|&(i, end)| {
                if end <= t {
                    s[i].active -= 1;
                    false
                } else {
                    true
                }
            });
            if let Some(i) = a.pick(&s, None) {
                s[i].active += 1;
                counts[i] += 1;
                ends.push((i, t + if i == 0 { 10 } else { 1 }));
            }
        }
        assert!(counts[0] * 3 < counts[1], "{counts:?}");
    }
}
