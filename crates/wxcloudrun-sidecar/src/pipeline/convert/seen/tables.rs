//! The tables a remembered series refers into by number: the shared strings and the bound sets,
//! and how they are renumbered when compacted.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::model::stale_nan;

/// Most strings the table takes in between compactions for sharing alone (within a batch, not
/// by a remembered series): past it, new strings are still shared by what holds them but not
/// remembered, so a page of unique values cannot grow the table without bound. Strings of
/// remembered series are always kept (the memory budget bounds the series), and a compaction
/// keeps only those.
const MAX_SHARED: usize = 1 << 20;

/// One shared copy of every name and label value in use, each with a number.
///
/// A page repeats the same few hundred strings across thousands of series, scrape after scrape;
/// sharing them keeps batches small and saves an allocation per label per scrape, and numbering
/// them lets a remembered series hold 4 bytes per string instead of 16. The numbers are found
/// through a table of numbers hashed by their string (5 bytes a slot), not a map from a second
/// `Arc` to the number (25): a page of unique values keeps one string per series.
#[derive(Debug, Default)]
pub(in crate::pipeline::convert) struct Strings {
    /// String numbers, by the hash of their string.
    ids: HashTable<u32>,
    hasher: foldhash::quality::RandomState,
    pub(super) by_id: Vec<Arc<str>>,
    /// The table's size after the last compaction.
    pub(super) compacted_len: usize,
}

impl Strings {
    /// The number of `text`, if it has one.
    fn find(&self, text: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(text);
        let by_id = &self.by_id;
        self.ids
            .find(hash, |&id| {
                by_id.get(id as usize).is_some_and(|s| **s == *text)
            })
            .copied()
    }

    /// The shared copy of `text`.
    pub(in crate::pipeline::convert) fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(id) = self.find(text) {
            return self.at(id);
        }
        let shared: Arc<str> = Arc::from(text);
        if self.ids.len() < MAX_SHARED {
            self.insert(shared.clone());
        }
        shared
    }

    /// The number of `text`, which is kept as long as a remembered series refers to it. `None`
    /// only past 4 billion strings.
    pub(super) fn id(&mut self, text: &Arc<str>) -> Option<u32> {
        match self.find(text) {
            Some(id) => Some(id),
            None => self.insert(text.clone()),
        }
    }

    fn insert(&mut self, shared: Arc<str>) -> Option<u32> {
        let id = u32::try_from(self.by_id.len()).ok()?;
        let Strings {
            ids, hasher, by_id, ..
        } = self;
        let hash = hasher.hash_one(&*shared);
        by_id.push(shared);
        ids.insert_unique(hash, id, |&id| {
            by_id.get(id as usize).map_or(0, |s| hasher.hash_one(&**s))
        });
        Some(id)
    }

    /// The strings `by_id`, numbered in that order (what a compaction kept).
    pub(super) fn rebuilt(by_id: Vec<Arc<str>>) -> Strings {
        let mut strings = Strings {
            ids: HashTable::with_capacity(by_id.len()),
            hasher: Default::default(),
            by_id: Vec::with_capacity(by_id.len()),
            compacted_len: by_id.len(),
        };
        for shared in by_id {
            strings.insert(shared);
        }
        strings
    }

    /// The string numbered `id` (empty for a number that is not one: never the case for the
    /// numbers a remembered series holds).
    pub(super) fn at(&self, id: u32) -> Arc<str> {
        self.by_id
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    pub(super) fn is(&self, id: u32, text: &Arc<str>) -> bool {
        self.by_id
            .get(id as usize)
            .is_some_and(|s| Arc::ptr_eq(s, text) || **s == **text)
    }

    /// How many strings the table holds.
    pub(in crate::pipeline::convert) fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// The histogram and summary bound sets in use, numbered.
#[derive(Debug, Default)]
pub(super) struct Bounds {
    pub(super) by_id: Vec<Box<[f64]>>,
    /// Their numbers, by their bits.
    ids: HashMap<Box<[u64]>, u32, foldhash::fast::RandomState>,
    /// The number of bound sets after the last compaction.
    pub(super) compacted_len: usize,
}

impl Bounds {
    /// The number of `entries`' bounds.
    pub(super) fn id(&mut self, entries: &[(f64, f64)]) -> Option<u32> {
        let bits: Box<[u64]> = entries.iter().map(|e| e.0.to_bits()).collect();
        if let Some(id) = self.ids.get(&bits) {
            return Some(*id);
        }
        let id = u32::try_from(self.by_id.len()).ok()?;
        self.by_id.push(entries.iter().map(|e| e.0).collect());
        self.ids.insert(bits, id);
        Some(id)
    }

    /// Whether bound set `id` is the bounds of `entries`.
    pub(super) fn is(&self, id: u32, entries: &[(f64, f64)]) -> bool {
        self.by_id.get(id as usize).is_some_and(|bounds| {
            bounds.len() == entries.len()
                && bounds
                    .iter()
                    .zip(entries)
                    .all(|(a, b)| a.to_bits() == b.0.to_bits())
        })
    }

    /// Stale entries with bound set `id`'s bounds.
    pub(super) fn stale(&self, id: u32) -> Vec<(f64, f64)> {
        let bounds = self.by_id.get(id as usize).map_or(&[][..], |b| b);
        bounds.iter().map(|b| (*b, stale_nan())).collect()
    }

    /// Keeps only the sets `kept` numbered, renumbered.
    pub(super) fn compact(&mut self, kept: &Renumber) {
        self.by_id = kept.kept(&self.by_id);
        self.ids = HashMap::with_capacity_and_hasher(self.by_id.len(), Default::default());
        for (id, bounds) in self.by_id.iter().enumerate() {
            let bits = bounds.iter().map(|b| b.to_bits()).collect();
            self.ids.insert(bits, u32::try_from(id).unwrap_or(u32::MAX));
        }
        self.compacted_len = self.by_id.len();
    }
}

/// Gives back what `vec` grew past an eighth more than it holds: doubling leaves up to as much
/// again unused, for good once a page stops growing. (glibc shrinks a block in place.)
pub(super) fn trim<T>(vec: &mut Vec<T>) {
    let enough = vec.len() + vec.len() / 8;
    if vec.capacity() > enough + 64 {
        vec.shrink_to(enough);
    }
}

/// New numbers for the entries of a table that are kept, in the order they are first kept.
pub(super) struct Renumber {
    new: Vec<u32>,
    order: Vec<u32>,
}

impl Renumber {
    pub(super) fn new(len: usize) -> Self {
        Renumber {
            new: vec![u32::MAX; len],
            order: Vec::new(),
        }
    }

    /// The new number of entry `old`.
    pub(super) fn keep(&mut self, old: u32) -> u32 {
        let Some(slot) = self.new.get_mut(old as usize) else {
            return old;
        };
        if *slot == u32::MAX {
            // Fits: fewer new numbers than old ones.
            *slot = u32::try_from(self.order.len()).unwrap_or(u32::MAX);
            self.order.push(old);
        }
        *slot
    }

    /// The kept entries of `table`, in their new order.
    pub(super) fn kept<T: Clone>(&self, table: &[T]) -> Vec<T> {
        self.order
            .iter()
            .filter_map(|old| table.get(*old as usize).cloned())
            .collect()
    }
}
