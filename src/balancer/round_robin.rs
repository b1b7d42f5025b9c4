//! Owns: smooth weighted round robin (the nginx algorithm) over one backend's servers.
//! Must not: do I/O or see other shards.
//!
//! Each pick adds every eligible server's weight to its running score, takes the highest score
//! and subtracts the eligible total from it. With weights 5:1:1 this yields a a b a c a a rather
//! than a a a a a b c, so load is spread evenly within each cycle. Servers that are down, full or
//! already tried are skipped for this pick; weight 0 is never picked.

use super::Eligible;

#[derive(Debug, Clone)]
pub struct SmoothWeightedRoundRobin {
    scores: Vec<i64>,
    /// Shifts the first picks so that shards with identical state do not all start with the
    /// same server.
    rotate: usize,
}

impl SmoothWeightedRoundRobin {
    pub fn new(servers: usize, rotate: usize) -> SmoothWeightedRoundRobin {
        SmoothWeightedRoundRobin {
            scores: vec![0; servers],
            rotate,
        }
    }

    pub fn pick(&mut self, e: &Eligible<'_>) -> Option<usize> {
        if self.scores.len() != e.len() {
            self.scores = vec![0; e.len()];
        }
        while self.rotate > 0 {
            self.rotate -= 1;
            let _ = self.step(e);
        }
        self.step(e)
    }

    fn step(&mut self, e: &Eligible<'_>) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (i, score) in self.scores.iter_mut().enumerate() {
            if !e.pickable(i) {
                continue;
            }
            let w = i64::from(e.weight(i));
            *score += w;
            total += w;
            if best.is_none_or(|(_, best_score)| *score > best_score) {
                best = Some((i, *score));
            }
        }
        let (chosen, _) = best?;
        if let Some(score) = self.scores.get_mut(chosen) {
            *score -= total;
        }
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Algorithm, views};
    use super::*;

    fn rr(weights: &[u32], rotate: usize) -> (Algorithm, Vec<super::super::ServerView>) {
        (
            Algorithm::RoundRobin(SmoothWeightedRoundRobin::new(weights.len(), rotate)),
            views(weights),
        )
    }

    #[test]
    fn equal_weights_alternate() {
        let (mut b, s) = rr(&[1, 1], 0);
        let picks: Vec<_> = (0..6).filter_map(|_| b.pick(&s, None)).collect();
        assert_eq!(picks, vec![0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn smooth_sequence_matches_nginx_for_5_1_1() {
        let (mut b, s) = rr(&[5, 1, 1], 0);
        let picks: Vec<_> = (0..7).filter_map(|_| b.pick(&s, None)).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_give_exact_shares_per_cycle() {
        let (mut b, s) = rr(&[1, 2, 3], 0);
        let mut counts = [0usize; 3];
        for _ in 0..600 {
            if let Some(i) = b.pick(&s, None) {
                counts[i] += 1;
            }
        }
        assert_eq!(counts, [100, 200, 300]);
    }

    #[test]
    fn weight_zero_is_never_picked_and_all_zero_picks_nothing() {
        let (mut b, s) = rr(&[0, 1], 0);
        assert!((0..10).all(|_| b.pick(&s, None) == Some(1)));
        let (mut none, s) = rr(&[0, 0], 0);
        assert_eq!(none.pick(&s, None), None);
    }

    #[test]
    fn down_and_unavailable_servers_are_skipped() {
        let (mut b, mut s) = rr(&[1, 1, 1], 0);
        s[1].up = false;
        s[2].available = false;
        assert!((0..5).all(|_| b.pick(&s, None) == Some(0)));
    }

    #[test]
    fn rotate_shifts_the_start() {
        let (mut b, s) = rr(&[1, 1], 1);
        assert_eq!(b.pick(&s, None), Some(1));
    }
}
