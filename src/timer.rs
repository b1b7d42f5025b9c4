//! Owns: a hashed timer wheel that maps deadlines (ms) to connection keys.
//! Must not: read the clock or know what a key means; callers pass `now_ms` and re-check each
//! expired key against the connection's real deadline (entries are lazy: a connection whose
//! deadline moved later is simply re-inserted when its old slot fires).

/// A key the wheel hands back on expiry: slot index plus generation, so a key of a connection that
/// was freed and its slot reused is recognised as stale by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerKey {
    pub slot: u32,
    pub generation: u32,
}

/// `slots_count` buckets of `tick_ms` each. Deadlines further out than one revolution land in
/// `deadline % revolution` and are re-inserted by the caller when they fire early.
pub struct TimerWheel {
    slots: Vec<Vec<TimerKey>>,
    tick_ms: u64,
    /// The next tick (absolute, in ticks since the epoch the caller uses) not yet expired.
    cursor_tick: u64,
}

impl TimerWheel {
    pub fn new(slots_count: usize, tick_ms: u64, now_ms: u64) -> TimerWheel {
        let slots_count = slots_count.max(1);
        let tick_ms = tick_ms.max(1);
        TimerWheel {
            slots: (0..slots_count).map(|_| Vec::new()).collect(),
            tick_ms,
            cursor_tick: now_ms / tick_ms,
        }
    }

    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// Schedules `key` to come back from [`TimerWheel::expire`] at or after `deadline_ms`
    /// (rounded up to the next tick).
    pub fn insert(&mut self, key: TimerKey, deadline_ms: u64) {
        let tick = deadline_ms.div_ceil(self.tick_ms).max(self.cursor_tick);
        let index = (tick % self.slots.len() as u64) as usize;
        if let Some(slot) = self.slots.get_mut(index) {
            slot.push(key);
        }
    }

    /// Moves every key whose tick is <= `now_ms` into `out`. Keys from a later revolution that share
    /// a slot come back early; the caller re-inserts them.
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<TimerKey>) {
        let now_tick = now_ms / self.tick_ms;
        let len = self.slots.len() as u64;
        // Never walk more than one revolution: every slot is visited once at most.
        let first = self.cursor_tick.max(now_tick.saturating_sub(len - 1));
        for tick in first..=now_tick {
            if let Some(slot) = self.slots.get_mut((tick % len) as usize) {
                out.append(slot);
            }
        }
        self.cursor_tick = now_tick + 1;
    }

    pub fn len(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Vec::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(slot: u32) -> TimerKey {
        TimerKey {
            slot,
            generation: 0,
        }
    }

    #[test]
    fn fires_at_or_after_deadline_never_before() {
        let mut wheel = TimerWheel::new(16, 100, 1_000);
        wheel.insert(key(1), 1_250);
        let mut out = Vec::new();
        wheel.expire(1_200, &mut out);
        assert!(out.is_empty());
        wheel.expire(1_299, &mut out);
        assert!(out.is_empty());
        wheel.expire(1_300, &mut out);
        assert_eq!(out, vec![key(1)]);
    }

    #[test]
    fn far_deadline_comes_back_early_for_reinsert() {
        let mut wheel = TimerWheel::new(4, 100, 0);
        wheel.insert(key(7), 1_000); // 10 ticks out, wheel spans 4
        let mut out = Vec::new();
        wheel.expire(200, &mut out); // tick 10 % 4 == 2
        assert_eq!(out, vec![key(7)]);
    }

    #[test]
    fn long_pause_visits_each_slot_once() {
        let mut wheel = TimerWheel::new(8, 10, 0);
        for i in 0..8 {
            wheel.insert(key(i), u64::from(i) * 10);
        }
        let mut out = Vec::new();
        wheel.expire(10_000, &mut out);
        assert_eq!(out.len(), 8);
        assert!(wheel.is_empty());
    }

    #[test]
    fn past_deadline_fires_on_next_expire() {
        let mut wheel = TimerWheel::new(8, 10, 500);
        let mut out = Vec::new();
        wheel.expire(500, &mut out);
        wheel.insert(key(3), 100);
        wheel.expire(510, &mut out);
        assert_eq!(out, vec![key(3)]);
    }
}
