//! The maps the hot path reads: filled once per key, read by every later request.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};
use std::sync::{PoisonError, RwLock};

use rustc_hash::FxHasher;

/// A `HashMap` with the Fx hash: the keys are the crate's own small ids and label values, not
/// attacker-chosen in bulk (every label is capped), so a DoS-resistant hash buys nothing.
pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A map written once per key and read on every request after: a read lock for a hit, the write
/// lock only to fill a miss. Values are handles (`Arc`s, `&'static str`): a hit clones one.
pub(crate) struct ReadMostlyMap<K, V>(RwLock<FxMap<K, V>>);

impl<K, V> Default for ReadMostlyMap<K, V> {
    fn default() -> Self {
        ReadMostlyMap(RwLock::default())
    }
}

impl<K: Hash + Eq, V: Clone> ReadMostlyMap<K, V> {
    /// The value of `key`, if one was stored.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// The value of `key`, made by `make` (under the write lock, once) on the first call.
    pub(crate) fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V {
        if let Some(value) = self.get(&key) {
            return value;
        }
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert_with(make)
            .clone()
    }

    /// Stores `value` under `key` unless the map already holds `cap` keys, and returns what the
    /// map holds for `key` (an earlier value wins), or `value` itself when the map is full.
    pub(crate) fn insert_within(&self, key: K, value: V, cap: usize) -> V {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= cap {
            return value;
        }
        map.entry(key).or_insert(value).clone()
    }
}
