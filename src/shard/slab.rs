//! Owns: the shard's one table of connection state: a bounded slab whose entries are addressed by
//! slot index (what ring ops carry in `user_data`) and a generation (what timers carry, so a key
//! of a freed-and-reused slot is recognised as stale).
//! Must not: know what an entry is or decide when it may be freed; the driver frees an entry only
//! once the kernel holds nothing of it.

/// A slot index plus the generation it had when the key was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub slot: u32,
    pub generation: u32,
}

struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// At most `capacity_max` entries; grows on demand up to it (nothing is allocated for slots never
/// used), and reuses freed slots most recently freed first.
pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
    capacity_max: usize,
}

impl<T> Slab<T> {
    pub fn new(capacity_max: usize) -> Slab<T> {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
            capacity_max: capacity_max.min(u32::MAX as usize),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity_max(&self) -> usize {
        self.capacity_max
    }

    /// Stores `value`; `None` when the slab is full (the caller refuses the connection).
    pub fn insert(&mut self, value: T) -> Option<Key> {
        if let Some(slot) = self.free.pop()
            && let Some(e) = self.entries.get_mut(slot as usize)
        {
            e.value = Some(value);
            self.len += 1;
            return Some(Key {
                slot,
                generation: e.generation,
            });
        }
        if self.entries.len() >= self.capacity_max {
            return None;
        }
        let slot = self.entries.len() as u32;
        self.entries.push(Entry {
            generation: 0,
            value: Some(value),
        });
        self.len += 1;
        Some(Key {
            slot,
            generation: 0,
        })
    }

    pub fn get(&self, slot: u32) -> Option<&T> {
        self.entries.get(slot as usize)?.value.as_ref()
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut T> {
        self.entries.get_mut(slot as usize)?.value.as_mut()
    }

    /// The entry only if it still has `key`'s generation.
    pub fn get_key_mut(&mut self, key: Key) -> Option<&mut T> {
        let e = self.entries.get_mut(key.slot as usize)?;
        if e.generation != key.generation {
            return None;
        }
        e.value.as_mut()
    }

    /// The key of an occupied slot.
    pub fn key(&self, slot: u32) -> Option<Key> {
        let e = self.entries.get(slot as usize)?;
        e.value.as_ref().map(|_| Key {
            slot,
            generation: e.generation,
        })
    }

    /// Two distinct occupied entries at once (a client connection and its upstream connection).
    pub fn get2_mut(&mut self, a: u32, b: u32) -> Option<(&mut T, &mut T)> {
        if a == b {
            return None;
        }
        let (lo, hi, swapped) = if a < b { (a, b, false) } else { (b, a, true) };
        let (left, right) = self.entries.split_at_mut(hi as usize);
        let x = left.get_mut(lo as usize)?.value.as_mut()?;
        let y = right.first_mut()?.value.as_mut()?;
        Some(if swapped { (y, x) } else { (x, y) })
    }

    /// Takes the value out and frees the slot (its generation moves on).
    pub fn remove(&mut self, slot: u32) -> Option<T> {
        let e = self.entries.get_mut(slot as usize)?;
        let value = e.value.take()?;
        e.generation = e.generation.wrapping_add(1);
        self.free.push(slot);
        self.len -= 1;
        Some(value)
    }

    /// Slots in use now (for drain sweeps and reports).
    pub fn slots(&self) -> Vec<u32> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value.is_some())
            .map(|(i, _)| i as u32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_reuses_slots_with_a_new_generation() {
        let mut s = Slab::new(2);
        let a = s.insert("a").unwrap();
        let b = s.insert("b").unwrap();
        assert_eq!(s.insert("c"), None, "full");
        assert_eq!(s.remove(a.slot), Some("a"));
        let c = s.insert("c").unwrap();
        assert_eq!(c.slot, a.slot);
        assert_ne!(c.generation, a.generation);
        assert_eq!(s.get_key_mut(a), None, "stale key");
        assert_eq!(s.get_key_mut(c).copied(), Some("c"));
        assert_eq!(s.len(), 2);
        let (x, y) = s.get2_mut(b.slot, c.slot).unwrap();
        assert_eq!((*x, *y), ("b", "c"));
        let (x, y) = s.get2_mut(c.slot, b.slot).unwrap();
        assert_eq!((*x, *y), ("c", "b"));
        assert!(s.get2_mut(b.slot, b.slot).is_none());
        assert_eq!(s.slots(), vec![0, 1]);
    }
}
