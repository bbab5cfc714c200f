//! [`RingMap`]: a map of fixed capacity, allocated once, that forgets its oldest entry to make
//! room for a new one.

use std::hash::{BuildHasher, Hash, RandomState};

/// A map of at most `capacity` entries, preallocated, oldest-inserted evicted first.
///
/// Entries live in a ring in insertion order: the next insertion overwrites the oldest. An
/// open-addressing index (linear probing, at most half full, backward-shift deletion, so no
/// tombstones) finds them by key. Every operation is O(1) expected and none allocates. The
/// default hasher is std's keyed SipHash: keys may be chosen by callers (trace ids), and a keyed
/// hash stops them from lining up long probe sequences.
pub(crate) struct RingMap<K, V, S = RandomState> {
    /// Entries in insertion order: `next` is the oldest, the next to be overwritten.
    ring: Box<[Option<Slot<K, V>>]>,
    next: usize,
    /// Ring position + 1 of the entry whose probe sequence passes here; 0 is empty. A power of
    /// two, at least twice the capacity.
    index: Box<[u32]>,
    hasher: S,
}

struct Slot<K, V> {
    hash: u64,
    key: K,
    value: V,
}

impl<K: Hash + Eq, V> RingMap<K, V> {
    /// An empty map for `capacity` entries (at least 1), keyed by a fresh random hasher.
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_hasher(capacity, RandomState::new())
    }
}

impl<K: Hash + Eq, V, S: BuildHasher> RingMap<K, V, S> {
    /// An empty map for `capacity` entries (at least 1; at most `u32::MAX / 4`).
    pub(crate) fn with_hasher(capacity: usize, hasher: S) -> Self {
        let capacity = capacity.clamp(1, (u32::MAX / 4) as usize);
        let ring = (0..capacity).map(|_| None).collect();
        let index = vec![0; (capacity * 2).next_power_of_two()].into_boxed_slice();
        RingMap {
            ring,
            next: 0,
            index,
            hasher,
        }
    }

    fn mask(&self) -> usize {
        self.index.len() - 1
    }

    /// The ring slot an index entry points at (`entry` is non-zero).
    fn slot(&self, entry: u32) -> Option<&Slot<K, V>> {
        self.ring.get(entry as usize - 1)?.as_ref()
    }

    /// `Ok(index position)` of `key`, else `Err(the empty position where it would go)`.
    fn find(&self, hash: u64, key: &K) -> Result<usize, usize> {
        let mask = self.mask();
        let mut at = hash as usize & mask;
        // The index is at most half full, so an empty position ends every probe.
        loop {
            let entry = self.index[at];
            if entry == 0 {
                return Err(at);
            }
            if let Some(slot) = self.slot(entry)
                && slot.hash == hash
                && slot.key == *key
            {
                return Ok(at);
            }
            at = (at + 1) & mask;
        }
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        let at = self.find(self.hasher.hash_one(key), key).ok()?;
        self.slot(self.index[at]).map(|slot| &slot.value)
    }

    /// The value of `key`, inserted with `make` (evicting the oldest entry when full) if absent.
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let hash = self.hasher.hash_one(&key);
        let position = match self.find(hash, &key) {
            Ok(at) => self.index[at] as usize - 1,
            Err(_) => self.push(hash, key, make()),
        };
        let slot = self.ring[position].as_mut();
        // `position` holds an entry on both paths.
        &mut slot.expect("the entry just found or stored").value
    }

    /// Stores `value` under `key`: in place when the key is present, else as the newest entry
    /// (evicting the oldest when full).
    pub(crate) fn insert(&mut self, key: K, value: V) {
        let hash = self.hasher.hash_one(&key);
        match self.find(hash, &key) {
            Ok(at) => {
                let position = self.index[at] as usize - 1;
                if let Some(slot) = self.ring[position].as_mut() {
                    slot.value = value;
                }
            }
            Err(_) => {
                self.push(hash, key, value);
            }
        }
    }

    /// Stores a key known to be absent in the oldest ring slot; returns its ring position.
    fn push(&mut self, hash: u64, key: K, value: V) -> usize {
        let position = self.next;
        if let Some(oldest) = self.ring[position].take()
            && let Ok(at) = self.find_position(oldest.hash, position)
        {
            self.remove_at(at);
        }
        self.ring[position] = Some(Slot { hash, key, value });
        // Removal may have shifted entries: look for the empty position again.
        let mask = self.mask();
        let mut at = hash as usize & mask;
        while self.index[at] != 0 {
            at = (at + 1) & mask;
        }
        self.index[at] = position as u32 + 1;
        self.next = (position + 1) % self.ring.len();
        position
    }

    /// The index position that points at ring `position`, found along the probe sequence of
    /// `hash` (the entry's slot is already vacated, so compare positions, not keys).
    fn find_position(&self, hash: u64, position: usize) -> Result<usize, ()> {
        let mask = self.mask();
        let mut at = hash as usize & mask;
        loop {
            match self.index[at] {
                0 => return Err(()),
                entry if entry as usize - 1 == position => return Ok(at),
                _ => at = (at + 1) & mask,
            }
        }
    }

    /// Empties index position `hole`, shifting later entries of the same run back so that every
    /// entry stays reachable from its home position without tombstones.
    fn remove_at(&mut self, mut hole: usize) {
        let mask = self.mask();
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let entry = self.index[at];
            if entry == 0 {
                break;
            }
            let Some(home) = self.slot(entry).map(|slot| slot.hash as usize & mask) else {
                // Unreachable: every index entry points at a stored slot.
                continue;
            };
            // The entry may move into the hole when the hole lies on its probe path, i.e.
            // between its home (inclusive) and its current position.
            if (hole.wrapping_sub(home) & mask) < (at.wrapping_sub(home) & mask) {
                self.index[hole] = entry;
                hole = at;
            }
        }
        self.index[hole] = 0;
    }

    /// The number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ring.iter().filter(|slot| slot.is_some()).count()
    }

    /// The bytes the map holds, allocated once.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        size_of_val(&*self.ring) + size_of_val(&*self.index)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};
    use std::hash::{BuildHasherDefault, Hasher};

    use super::*;

    /// Hashes every key into one of a few values: long runs, wrap-around, many collisions.
    #[derive(Default)]
    struct Crowded(u64);

    impl Hasher for Crowded {
        fn finish(&self) -> u64 {
            // Near the top of the index too, so runs wrap around its end.
            (self.0 % 5).wrapping_add(u64::MAX - 2)
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = self.0.wrapping_mul(31).wrapping_add(u64::from(*b));
            }
        }
    }

    /// splitmix64, for reproducible operation sequences.
    fn mix(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Runs the same random inserts and look-ups against the map and a plain model (a FIFO of
    /// keys and a HashMap) and compares every answer.
    fn agrees_with_the_model<S: BuildHasher>(capacity: usize, hasher: S, seed: u64) {
        let mut map = RingMap::with_hasher(capacity, hasher);
        let mut order: VecDeque<u64> = VecDeque::new();
        let mut model: HashMap<u64, u64> = HashMap::new();
        let keys = (capacity as u64) * 3;
        for step in 0..4000u64 {
            let r = mix(seed ^ step);
            let key = r % keys;
            match r >> 62 {
                0 | 1 => {
                    map.insert(key, step);
                    if model.insert(key, step).is_none() {
                        order.push_back(key);
                        if order.len() > capacity {
                            let oldest = order.pop_front().unwrap();
                            model.remove(&oldest);
                        }
                    }
                }
                2 => {
                    let value = map.get_or_insert_with(key, || step);
                    *value += 1;
                    let expected = match model.get_mut(&key) {
                        Some(v) => v,
                        None => {
                            order.push_back(key);
                            if order.len() > capacity {
                                let oldest = order.pop_front().unwrap();
                                model.remove(&oldest);
                            }
                            model.entry(key).or_insert(step)
                        }
                    };
                    *expected += 1;
                }
                _ => {}
            }
            assert_eq!(map.get(&key), model.get(&key), "step {step} key {key}");
            assert_eq!(map.len(), model.len(), "step {step}");
            // One index entry per stored entry, each pointing at a different slot.
            let used: Vec<u32> = map.index.iter().copied().filter(|e| *e != 0).collect();
            let distinct: std::collections::BTreeSet<u32> = used.iter().copied().collect();
            assert_eq!(
                (used.len(), distinct.len()),
                (map.len(), map.len()),
                "step {step}"
            );
        }
        for key in 0..keys {
            assert_eq!(map.get(&key), model.get(&key), "key {key} at the end");
        }
    }

    #[test]
    fn agrees_with_a_fifo_model() {
        for capacity in [1, 2, 3, 7, 64] {
            for seed in 0..4 {
                agrees_with_the_model(capacity, RandomState::new(), seed);
            }
        }
    }

    #[test]
    fn agrees_with_a_fifo_model_under_collisions() {
        for capacity in [1, 2, 5, 16] {
            for seed in 0..4 {
                agrees_with_the_model(capacity, BuildHasherDefault::<Crowded>::default(), seed);
            }
        }
    }

    #[test]
    fn the_oldest_entry_makes_room() {
        let mut map = RingMap::new(3);
        for key in 0..3u32 {
            map.insert(key, key * 10);
        }
        // Updating in place does not make an entry younger.
        map.insert(0, 1);
        map.insert(3, 30);
        assert_eq!(map.get(&0), None);
        assert_eq!(map.get(&1), Some(&10));
        assert_eq!(map.get(&3), Some(&30));
        assert_eq!(map.len(), 3);
        assert_eq!(map.index.len(), 8);
    }
}
