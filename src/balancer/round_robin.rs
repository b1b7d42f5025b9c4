//! Owns: smooth weighted round robin (the nginx algorithm) over one backend's servers.
//! Must not: do I/O or see other shards.
//!
//! Each pick adds every server's weight to its running score, takes the highest score and
//! subtracts the total weight from it. With weights 5:1:1 this yields a a b a c a a rather than
//! a a a a a b c, so load is spread evenly within each cycle. Weight 0 is never picked.

use super::{Balancer, Candidate};

#[derive(Debug, Clone)]
pub struct SmoothWeightedRoundRobin {
    weights: Vec<i64>,
    scores: Vec<i64>,
    total: i64,
}

impl SmoothWeightedRoundRobin {
    /// `rotate` shifts the starting point so that shards with identical state do not all send
    /// their first connection to the same server.
    pub fn new(candidates: &[Candidate], rotate: usize) -> SmoothWeightedRoundRobin {
        let weights: Vec<i64> = candidates.iter().map(|c| i64::from(c.weight)).collect();
        let total = weights.iter().sum();
        let mut balancer = SmoothWeightedRoundRobin {
            scores: vec![0; weights.len()],
            weights,
            total,
        };
        let cycle = usize::try_from(total).unwrap_or(0);
        if cycle > 0 {
            for _ in 0..rotate % cycle {
                balancer.pick();
            }
        }
        balancer
    }
}

impl Balancer for SmoothWeightedRoundRobin {
    fn pick(&mut self) -> Option<usize> {
        if self.total <= 0 {
            return None;
        }
        let mut best: Option<(usize, i64)> = None;
        for (i, (score, weight)) in self.scores.iter_mut().zip(&self.weights).enumerate() {
            if *weight == 0 {
                continue;
            }
            *score += weight;
            if best.is_none_or(|(_, best_score)| *score > best_score) {
                best = Some((i, *score));
            }
        }
        let (chosen, _) = best?;
        if let Some(score) = self.scores.get_mut(chosen) {
            *score -= self.total;
        }
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(weights: &[u32], rotate: usize) -> SmoothWeightedRoundRobin {
        let c: Vec<Candidate> = weights.iter().map(|&weight| Candidate { weight }).collect();
        SmoothWeightedRoundRobin::new(&c, rotate)
    }

    #[test]
    fn equal_weights_alternate() {
        let mut b = rr(&[1, 1], 0);
        let picks: Vec<_> = (0..6).filter_map(|_| b.pick()).collect();
        assert_eq!(picks, vec![0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn smooth_sequence_matches_nginx_for_5_1_1() {
        let mut b = rr(&[5, 1, 1], 0);
        let picks: Vec<_> = (0..7).filter_map(|_| b.pick()).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_give_exact_shares_per_cycle() {
        let mut b = rr(&[1, 2, 3], 0);
        let mut counts = [0usize; 3];
        for _ in 0..600 {
            if let Some(i) = b.pick() {
                counts[i] += 1;
            }
        }
        assert_eq!(counts, [100, 200, 300]);
    }

    #[test]
    fn weight_zero_is_never_picked_and_all_zero_picks_nothing() {
        let mut b = rr(&[0, 1], 0);
        assert!((0..10).all(|_| b.pick() == Some(1)));
        let mut none = rr(&[0, 0], 0);
        assert_eq!(none.pick(), None);
    }

    #[test]
    fn rotate_shifts_the_start() {
        let mut b = rr(&[1, 1], 1);
        assert_eq!(b.pick(), Some(1));
    }
}
