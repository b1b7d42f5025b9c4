//! Owns: power of two choices: take two servers at random (weighted by nothing but chance) and
//! send to the one with fewer open connections relative to its weight. Nearly least-connections
//! quality at O(1) cost for large backends; per shard counts, as least_conn.
//! Must not: do I/O or see other shards. The generator is a per-shard xorshift, seeded by shard.

use super::{Eligible, mix64};

#[derive(Debug, Clone)]
pub struct PowerOfTwo {
    state: u64,
}

impl PowerOfTwo {
    pub fn new(seed: u64) -> PowerOfTwo {
        PowerOfTwo {
            state: mix64(seed.wrapping_add(0x9e37_79b9_7f4a_7c15)) | 1,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn pick(&mut self, e: &Eligible<'_>) -> Option<usize> {
        let count = (0..e.len()).filter(|&i| e.pickable(i)).count();
        if count == 0 {
            return None;
        }
        let nth = |k: usize| (0..e.len()).filter(|&i| e.pickable(i)).nth(k);
        let a = (self.next() % count as u64) as usize;
        if count == 1 {
            return nth(0);
        }
        let mut b = (self.next() % (count as u64 - 1)) as usize;
        if b >= a {
            b += 1;
        }
        let (a, b) = (nth(a)?, nth(b)?);
        let a_load = u64::from(e.active(a)) * u64::from(e.weight(b));
        let b_load = u64::from(e.active(b)) * u64::from(e.weight(a));
        Some(if b_load < a_load { b } else { a })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Algorithm, views};
    use super::*;

    #[test]
    fn spreads_evenly_when_loads_are_equal() {
        let mut a = Algorithm::PowerOfTwo(PowerOfTwo::new(1));
        let s = views(&[1, 1, 1, 1]);
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            if let Some(i) = a.pick(&s, None) {
                counts[i] += 1;
            }
        }
        let (min, max) = (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        );
        assert!(max as f64 / min as f64 <= 1.1, "{counts:?}");
    }

    #[test]
    fn prefers_the_less_loaded_of_the_two() {
        let mut a = Algorithm::PowerOfTwo(PowerOfTwo::new(7));
        let mut s = views(&[1, 1]);
        s[0].active = 5;
        assert!((0..50).all(|_| a.pick(&s, None) == Some(1)));
    }

    #[test]
    fn one_or_no_candidate() {
        let mut a = Algorithm::PowerOfTwo(PowerOfTwo::new(7));
        let mut s = views(&[1, 1]);
        s[0].up = false;
        assert_eq!(a.pick(&s, None), Some(1));
        s[1].available = false;
        assert_eq!(a.pick(&s, None), None);
    }
}
