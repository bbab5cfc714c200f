//! The cardinality guard: the first values of a label keep their name, later ones fold into
//! `_other`.

use std::sync::{Arc, PoisonError, RwLock};

use prometheus::IntCounter;

use crate::cache::FxMap;

/// Index of a label value interned by a [`LabelGuard`].
pub(crate) type LabelId = u32;

/// The empty value: no `X-WX-SOURCE`, no AppID, no error.
pub(crate) const EMPTY: LabelId = 0;
/// The value that every value past the cap folds into.
pub(crate) const OTHER: LabelId = 1;
/// `http_route` when no route template is known (never the raw path).
pub(crate) const UNMATCHED: LabelId = 2;

/// The values behind [`EMPTY`], [`OTHER`] and [`UNMATCHED`], in id order: reserved by every guard
/// up to [`OTHER`], by the route guard up to [`UNMATCHED`].
pub(super) const RESERVED: [&str; 3] = ["", "_other", "unmatched"];

/// Distinct values of one label, capped: the first `cap` values keep their name, the rest fold
/// into `_other` and count in `wxcloudrun_label_overflow_total`.
pub(crate) struct LabelGuard {
    cap: usize,
    reserved: usize,
    table: RwLock<LabelTable>,
    overflow: IntCounter,
}

#[derive(Default)]
struct LabelTable {
    ids: FxMap<Arc<str>, LabelId>,
    values: Vec<Arc<str>>,
}

impl LabelGuard {
    /// A guard for `cap` values besides the `reserved` ones (whose ids are their positions).
    pub(super) fn new(cap: usize, reserved: &[&str], overflow: IntCounter) -> Self {
        let mut table = LabelTable::default();
        for value in reserved {
            let value: Arc<str> = Arc::from(*value);
            table
                .ids
                .insert(value.clone(), table.values.len() as LabelId);
            table.values.push(value);
        }
        LabelGuard {
            cap,
            reserved: reserved.len(),
            table: RwLock::new(table),
            overflow,
        }
    }

    /// The id of `value`, interning it while under the cap; past it, `_other`, counted in this
    /// guard's overflow counter.
    pub(super) fn intern(&self, value: &str) -> LabelId {
        self.try_intern(value).unwrap_or_else(|| {
            self.overflow.inc();
            OTHER
        })
    }

    /// The id of `value`, interning it while under the cap; `None` past it, counted nowhere (the
    /// caller counts the fold where it belongs).
    pub(super) fn try_intern(&self, value: &str) -> Option<LabelId> {
        if value.is_empty() {
            return Some(EMPTY);
        }
        {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(id) = table.ids.get(value) {
                return Some(*id);
            }
            if table.values.len() - self.reserved >= self.cap {
                return None;
            }
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = table.ids.get(value) {
            return Some(*id);
        }
        if table.values.len() - self.reserved >= self.cap {
            return None;
        }
        let id = table.values.len() as LabelId;
        let value: Arc<str> = Arc::from(value);
        table.ids.insert(value.clone(), id);
        table.values.push(value);
        Some(id)
    }

    /// The id of a value already interned, without interning it.
    pub(super) fn get(&self, value: &str) -> Option<LabelId> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.ids.get(value).copied()
    }

    /// The value of an id (empty for an id this guard never gave out).
    pub(super) fn value(&self, id: LabelId) -> Arc<str> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table
            .values
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_folds_past_the_cap() {
        let overflow = IntCounter::new("o", "o").unwrap();
        let guard = LabelGuard::new(2, &["", "_other"], overflow.clone());
        let a = guard.intern("a");
        let b = guard.intern("b");
        assert_eq!(guard.intern("a"), a);
        assert_eq!(guard.intern("c"), OTHER);
        assert_eq!(guard.intern("d"), OTHER);
        assert_eq!(guard.intern("b"), b);
        assert_eq!(guard.intern(""), EMPTY);
        assert_eq!(&*guard.value(a), "a");
        assert_eq!(&*guard.value(OTHER), "_other");
        assert_eq!(overflow.get(), 2);
        // The uncounted form folds the same values, and counts nothing.
        assert_eq!(guard.try_intern("b"), Some(b));
        assert_eq!(guard.try_intern("e"), None);
        assert_eq!(guard.try_intern(""), Some(EMPTY));
        assert_eq!(overflow.get(), 2);
    }
}
