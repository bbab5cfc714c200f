//! Each family name's latest piece, found by name.
//!
//! The index holds only piece numbers (`u32`, 5 bytes a slot with its control byte); the names
//! are the pieces' own, looked up in the family list to hash and compare. A map keyed by the name
//! (`HashMap<Cow<str>, usize>`, 33 bytes a slot) was 4.3 MB of the 100,000-names page's parse
//! peak, twice that page's text.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::model::MetricFamily;

pub(super) struct NameIndex {
    /// Unseeded: the page comes from the app in the same container; a flood of colliding names
    /// would cost time, never a sample.
    hasher: foldhash::fast::FixedState,
    pieces: HashTable<u32>,
}

/// The name of piece `index`; `""` for none (indices come from the family list, so never).
fn name_of<'f>(families: &'f [MetricFamily<'_>], index: u32) -> &'f str {
    let piece = usize::try_from(index).ok().and_then(|i| families.get(i));
    piece.map_or("", |family| family.name.as_ref())
}

impl NameIndex {
    pub(super) fn new() -> NameIndex {
        NameIndex {
            hasher: foldhash::fast::FixedState::default(),
            pieces: HashTable::new(),
        }
    }

    /// The latest piece named `name`.
    pub(super) fn get(&self, name: &str, families: &[MetricFamily<'_>]) -> Option<usize> {
        let hash = self.hasher.hash_one(name);
        let found = self
            .pieces
            .find(hash, |&index| name_of(families, index) == name)?;
        usize::try_from(*found).ok()
    }

    /// Whether some piece is named `name`.
    pub(super) fn contains(&self, name: &str, families: &[MetricFamily<'_>]) -> bool {
        self.get(name, families).is_some()
    }

    /// Makes `index` the latest piece named `name`. `index` may be the next piece, not yet in
    /// `families`: only the pieces already there are read. `None` when `index` is past `u32`
    /// (the caller's family limit is far below).
    pub(super) fn set(
        &mut self,
        name: &str,
        index: usize,
        families: &[MetricFamily<'_>],
    ) -> Option<()> {
        let index = u32::try_from(index).ok()?;
        let NameIndex { hasher, pieces } = self;
        let hash = hasher.hash_one(name);
        let rehash = |&piece: &u32| hasher.hash_one(name_of(families, piece));
        match pieces.entry(hash, |&piece| name_of(families, piece) == name, rehash) {
            Entry::Occupied(mut entry) => *entry.get_mut() = index,
            Entry::Vacant(entry) => {
                entry.insert(index);
            }
        }
        Some(())
    }
}
