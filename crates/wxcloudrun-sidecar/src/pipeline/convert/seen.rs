//! What the converter remembers of each series between scrapes — its start time, its last value,
//! the scrape that last saw it, and enough to write its stale marker — in a small fixed-size
//! record (40 bytes, plus its 16-byte key) in one dense array, found through a table of 4-byte
//! record numbers, and 8 bytes per scraped label.
//!
//! A remembered series refers to its strings (family, sample name, label names and values) by
//! number in [`Strings`], to its histogram or summary bounds by number in a table of the bound
//! sets in use (a page has a handful), and to its labels by a range of `(name, value)` number
//! pairs in one shared array: no allocation per series, no label vector cloned per series. The
//! sidecar's own labels (`instance`, `wx_service`, …), on every series, are not stored at all;
//! they are put back when a stale marker is written.
//!
//! Forgotten series leave their labels behind in the array and their strings in the table; both
//! are compacted (and the series map shrunk) once they have doubled since the last compaction, so
//! memory follows the series remembered, not the largest page ever seen, at an amortised cost.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::model::{Family, Kind, Labels, Point, Value, stale_nan};

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
pub(super) struct Strings {
    /// String numbers, by the hash of their string.
    ids: HashTable<u32>,
    hasher: foldhash::quality::RandomState,
    by_id: Vec<Arc<str>>,
    /// The table's size after the last compaction.
    compacted_len: usize,
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
    pub(super) fn get(&mut self, text: &str) -> Arc<str> {
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
    fn id(&mut self, text: &Arc<str>) -> Option<u32> {
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
    fn rebuilt(by_id: Vec<Arc<str>>) -> Strings {
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
    fn at(&self, id: u32) -> Arc<str> {
        self.by_id
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    fn is(&self, id: u32, text: &Arc<str>) -> bool {
        self.by_id
            .get(id as usize)
            .is_some_and(|s| Arc::ptr_eq(s, text) || **s == **text)
    }

    /// How many strings the table holds.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// Which value a remembered series has, for its stale marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `marker` is the number of the sample name.
    Number,
    /// `marker` is the number of the bucket bounds.
    Histogram,
    /// `marker` is the number of the quantiles.
    Summary,
}

/// One remembered series.
#[derive(Clone, Debug)]
struct Seen {
    /// Start of the current cumulative interval.
    start_ms: i64,
    /// The last value (`_count` for histograms and summaries), to detect resets.
    last: f64,
    /// The family name's number.
    family: u32,
    /// See [`Shape`].
    marker: u32,
    /// Where its labels start in [`Remembered::labels`].
    labels: u32,
    /// The scrape that last saw it.
    generation: u32,
    /// How many labels it has there.
    label_count: u16,
    kind: Kind,
    shape: Shape,
    /// Its labels are stored without the sidecar's own (which it had, all of them).
    without_added: bool,
    /// Remembered for a learned page shape, not seen in a scrape yet: its first sight is still
    /// to come, and it gets no stale marker.
    fresh: bool,
}

/// A remembered series and its key: a 128-bit hash of its identity (see [`write_series_key`])
/// rather than the identity itself, which would cost each remembered series its length again
/// (~100 bytes on a typical page). Two keyed 64-bit hashes, as the replay's line hashes: a
/// collision is out of reach of any page.
#[derive(Clone, Debug)]
struct Record {
    key: (u64, u64),
    seen: Seen,
}

/// Start time, reset detection and staleness for every series seen in the last scrape.
#[derive(Debug, Default)]
pub(super) struct Remembered {
    /// The series seen, in no particular order, with no slack past an eighth (see
    /// [`Remembered::compact`]).
    records: Vec<Record>,
    /// The number of each record in `records`, by the first hash of its key (a keyed hash
    /// already): 5 bytes a slot, where a map holding the records would hold 57 bytes a slot,
    /// an eighth of them or more empty.
    index: HashTable<u32>,
    /// The keys of the two hashes.
    key_hashers: (
        foldhash::quality::RandomState,
        foldhash::quality::RandomState,
    ),
    /// Reused buffer for the key of the series being tracked.
    key: String,
    /// Every remembered series' labels, `(name, value)` string numbers, a range each.
    labels: Vec<[u32; 2]>,
    /// How many of `labels` belong to a remembered series (the rest were forgotten).
    live_labels: usize,
    bounds: Bounds,
    generation: u32,
}

/// The histogram and summary bound sets in use, numbered.
#[derive(Debug, Default)]
struct Bounds {
    by_id: Vec<Box<[f64]>>,
    /// Their numbers, by their bits.
    ids: HashMap<Box<[u64]>, u32, foldhash::fast::RandomState>,
    /// The number of bound sets after the last compaction.
    compacted_len: usize,
}

impl Bounds {
    /// The number of `entries`' bounds.
    fn id(&mut self, entries: &[(f64, f64)]) -> Option<u32> {
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
    fn is(&self, id: u32, entries: &[(f64, f64)]) -> bool {
        self.by_id.get(id as usize).is_some_and(|bounds| {
            bounds.len() == entries.len()
                && bounds
                    .iter()
                    .zip(entries)
                    .all(|(a, b)| a.to_bits() == b.0.to_bits())
        })
    }

    /// Stale entries with bound set `id`'s bounds.
    fn stale(&self, id: u32) -> Vec<(f64, f64)> {
        let bounds = self.by_id.get(id as usize).map_or(&[][..], |b| b);
        bounds.iter().map(|b| (*b, stale_nan())).collect()
    }

    /// Keeps only the sets `kept` numbered, renumbered.
    fn compact(&mut self, kept: &Renumber) {
        self.by_id = kept.kept(&self.by_id);
        self.ids = HashMap::with_capacity_and_hasher(self.by_id.len(), Default::default());
        for (id, bounds) in self.by_id.iter().enumerate() {
            let bits = bounds.iter().map(|b| b.to_bits()).collect();
            self.ids.insert(bits, u32::try_from(id).unwrap_or(u32::MAX));
        }
        self.compacted_len = self.by_id.len();
    }
}

/// Whether `seen`'s stale marker is the one `value` would have.
fn fits(seen: &Seen, strings: &Strings, bounds: &Bounds, value: &Value) -> bool {
    match (seen.shape, value) {
        (Shape::Number, Value::Number { name, .. }) => strings.is(seen.marker, name),
        (
            Shape::Histogram,
            Value::Histogram {
                buckets: entries, ..
            },
        )
        | (
            Shape::Summary,
            Value::Summary {
                quantiles: entries, ..
            },
        ) => bounds.is(seen.marker, entries),
        _ => false,
    }
}

/// The shape and number of `value`'s stale marker.
fn marker_of(strings: &mut Strings, bounds: &mut Bounds, value: &Value) -> Option<(Shape, u32)> {
    match value {
        Value::Number { name, .. } => Some((Shape::Number, strings.id(name)?)),
        Value::Histogram { buckets, .. } => Some((Shape::Histogram, bounds.id(buckets)?)),
        Value::Summary { quantiles, .. } => Some((Shape::Summary, bounds.id(quantiles)?)),
    }
}

/// What [`Remembered::track`] needs of the converter.
pub(super) struct Context<'c> {
    pub(super) strings: &'c mut Strings,
    pub(super) added: &'c [(Arc<str>, Arc<str>)],
    /// The app's start in wrapper mode.
    pub(super) process_start_ms: Option<i64>,
}

impl Remembered {
    /// Starts a scrape: the series it sees are marked with a new generation.
    pub(super) fn next_scrape(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// The capacity of the series array and of the label array.
    #[cfg(test)]
    pub(super) fn held(&self) -> (usize, usize) {
        (self.records.capacity(), self.labels.capacity())
    }

    /// How many series are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// Where the series `key` is in `records`.
    fn position(&self, key: (u64, u64)) -> Option<usize> {
        let records = &self.records;
        self.index
            .find(key.0, |&at| {
                records.get(at as usize).is_some_and(|r| r.key == key)
            })
            .map(|&at| at as usize)
    }

    fn get(&self, key: (u64, u64)) -> Option<&Seen> {
        let at = self.position(key)?;
        self.records.get(at).map(|r| &r.seen)
    }

    /// Remembers `seen` under `key`, which is not remembered yet (nothing past 4 billion series).
    fn insert(&mut self, key: (u64, u64), seen: Seen) {
        let Ok(at) = u32::try_from(self.records.len()) else {
            return;
        };
        self.live_labels += usize::from(seen.label_count);
        self.records.push(Record { key, seen });
        let records = &self.records;
        self.index.insert_unique(key.0, at, |&at| {
            records.get(at as usize).map_or(0, |r| r.key.0)
        });
    }

    /// Forgets the record at `at`: the last record takes its place.
    fn remove_at(&mut self, at: usize) -> Option<Record> {
        let key = self.records.get(at)?.key;
        if let Ok(entry) = self.index.find_entry(key.0, |&i| i as usize == at) {
            entry.remove();
        }
        let last = self.records.len() - 1;
        if at != last {
            let moved = self.records[last].key;
            if let Some(slot) = self.index.find_mut(moved.0, |&i| i as usize == last) {
                // Fits: `at` is below the last number.
                *slot = at as u32;
            }
        }
        let record = self.records.swap_remove(at);
        self.live_labels -= usize::from(record.seen.label_count);
        Some(record)
    }

    /// The key of the series of `point` in `family`: a 128-bit hash of its identity.
    fn key_of(&mut self, family: &Arc<str>, point: &Point) -> (u64, u64) {
        let series = match &point.value {
            Value::Number { name, .. } => name,
            Value::Histogram { .. } | Value::Summary { .. } => family,
        };
        write_series_key(&mut self.key, series, &point.labels);
        (
            self.key_hashers.0.hash_one(self.key.as_bytes()),
            self.key_hashers.1.hash_one(self.key.as_bytes()),
        )
    }

    /// The labels of the remembered series `key`, as it was exported.
    pub(super) fn labels_of(
        &self,
        key: (u64, u64),
        strings: &Strings,
        added: &[(Arc<str>, Arc<str>)],
    ) -> Option<Labels> {
        let seen = self.get(key)?;
        Some(decode_labels(seen, &self.labels, strings, added))
    }

    /// Remembers the series of `point` and sets its start time (counters, histograms, summaries):
    /// `_created` when exposed; else the app's start (wrapper mode) or first sight; a new interval
    /// after a reset.
    pub(super) fn track(
        &mut self,
        cx: Context<'_>,
        family: &Arc<str>,
        kind: Kind,
        point: &mut Point,
        created_ms: Option<i64>,
        timestamp_ms: i64,
    ) {
        let last = match &point.value {
            Value::Number { value, .. } => *value,
            Value::Histogram { count, .. } | Value::Summary { count, .. } => *count,
        };
        let key = self.key_of(family, point);
        let generation = self.generation;
        let first_sight = created_ms.unwrap_or_else(|| {
            cx.process_start_ms
                .unwrap_or(timestamp_ms)
                .min(timestamp_ms)
        });
        let at = self.position(key);
        // Through the field, not `get_mut`: the bounds are borrowed beside it.
        let record = at.and_then(|at| self.records.get_mut(at));
        let start_ms = if let Some(Record { seen, .. }) = record {
            if seen.fresh {
                seen.fresh = false;
                seen.start_ms = first_sight;
            } else if let Some(created) = created_ms {
                seen.start_ms = created;
            } else if last < seen.last {
                // A counter went down: the app restarted it. The new interval began after the
                // last scrape that saw the old one.
                seen.start_ms = timestamp_ms.saturating_sub(1);
            }
            seen.last = last;
            if !fits(seen, cx.strings, &self.bounds, &point.value)
                && let Some((shape, marker)) = marker_of(cx.strings, &mut self.bounds, &point.value)
            {
                seen.shape = shape;
                seen.marker = marker;
            }
            seen.generation = generation;
            seen.start_ms
        } else {
            // Not remembered only past 4 billion strings or labels: its start time is then
            // its first sight, scrape after scrape, and it gets no stale marker.
            if let Some(seen) = self.remember(cx, family, kind, point, first_sight, last) {
                self.insert(key, seen);
            }
            first_sight
        };
        point.start_ms = match (&point.value, kind) {
            (Value::Number { .. }, Kind::Counter) => Some(start_ms),
            (Value::Number { .. }, _) => None,
            (Value::Histogram { .. } | Value::Summary { .. }, _) => Some(start_ms),
        };
    }

    /// The record of a series seen for the first time.
    fn remember(
        &mut self,
        cx: Context<'_>,
        family: &Arc<str>,
        kind: Kind,
        point: &Point,
        start_ms: i64,
        last: f64,
    ) -> Option<Seen> {
        let is_added = |(name, value): &(Arc<str>, Arc<str>)| {
            cx.added.iter().any(|(n, v)| n == name && v == value)
        };
        let added_present = point.labels.iter().filter(|l| is_added(l)).count();
        let without_added = !cx.added.is_empty() && added_present == cx.added.len();
        let offset = u32::try_from(self.labels.len()).ok()?;
        let start = self.labels.len();
        for label in &point.labels {
            if without_added && is_added(label) {
                continue;
            }
            match (cx.strings.id(&label.0), cx.strings.id(&label.1)) {
                (Some(name), Some(value)) => self.labels.push([name, value]),
                _ => {
                    self.labels.truncate(start);
                    return None;
                }
            }
        }
        let Ok(label_count) = u16::try_from(self.labels.len() - start) else {
            self.labels.truncate(start);
            return None;
        };
        let family_id = cx.strings.id(family);
        let marker = marker_of(cx.strings, &mut self.bounds, &point.value);
        let (Some(family), Some((shape, marker))) = (family_id, marker) else {
            self.labels.truncate(start);
            return None;
        };
        Some(Seen {
            start_ms,
            last,
            family,
            marker,
            labels: offset,
            generation: self.generation,
            label_count,
            kind,
            shape,
            without_added,
            fresh: false,
        })
    }

    /// Remembers the series of `point` for a learned page shape, before a scrape sees it (its
    /// record is then completed as at its first sight); its key.
    pub(super) fn register(
        &mut self,
        cx: Context<'_>,
        family: &Arc<str>,
        kind: Kind,
        point: &Point,
    ) -> (u64, u64) {
        let key = self.key_of(family, point);
        if self.position(key).is_none()
            && let Some(mut seen) = self.remember(cx, family, kind, point, 0, f64::NAN)
        {
            seen.fresh = true;
            self.insert(key, seen);
        }
        key
    }

    /// Stale markers for every series the current scrape did not see; forgets them.
    pub(super) fn vanished(
        &mut self,
        strings: &Strings,
        added: &[(Arc<str>, Arc<str>)],
    ) -> Vec<Family> {
        let generation = self.generation;
        let mut by_family: HashMap<(u32, Kind), Vec<Point>> = HashMap::new();
        let mut at = 0;
        while let Some(record) = self.records.get(at) {
            if record.seen.generation == generation {
                at += 1;
                continue;
            }
            // The last record moves to `at`: it is looked at next.
            let Some(Record { seen, .. }) = self.remove_at(at) else {
                break;
            };
            if seen.fresh {
                continue;
            }
            by_family
                .entry((seen.family, seen.kind))
                .or_default()
                .push(self.stale_point(&seen, strings, added));
        }
        let mut families: Vec<Family> = by_family
            .into_iter()
            .map(|((name, kind), points)| Family {
                name: strings.at(name),
                help: Arc::from(""),
                unit: Arc::from(""),
                kind,
                points,
            })
            .collect();
        families.sort_by(|a, b| a.name.cmp(&b.name));
        families
    }

    /// The stale marker of the forgotten series `seen`.
    fn stale_point(&self, seen: &Seen, strings: &Strings, added: &[(Arc<str>, Arc<str>)]) -> Point {
        let entries = || self.bounds.stale(seen.marker);
        let value = match seen.shape {
            Shape::Number => Value::Number {
                name: strings.at(seen.marker),
                value: stale_nan(),
            },
            Shape::Histogram => Value::Histogram {
                count: stale_nan(),
                sum: Some(stale_nan()),
                buckets: entries(),
                stale: true,
            },
            Shape::Summary => Value::Summary {
                count: stale_nan(),
                sum: Some(stale_nan()),
                quantiles: entries(),
                stale: true,
            },
        };
        Point {
            labels: decode_labels(seen, &self.labels, strings, added),
            start_ms: Some(seen.start_ms),
            value,
        }
    }

    /// Compacts the strings, the labels and the bound sets, and shrinks the series map, once
    /// what forgotten series left behind has doubled them: memory follows the series
    /// remembered, at an amortised cost. To be called after the batch took its strings (those
    /// it holds are kept for sharing).
    pub(super) fn compact(&mut self, strings: &mut Strings) {
        let strings_grew = strings.len() > 2 * strings.compacted_len + 1024;
        let labels_left = self.labels.len() > 2 * self.live_labels + 4096;
        let bounds_grew = self.bounds.by_id.len() > 2 * self.bounds.compacted_len + 64;
        let sparse = self.index.capacity() > 4 * self.records.len() + 1024;
        trim(&mut self.records);
        trim(&mut strings.by_id);
        if !(strings_grew || labels_left || bounds_grew || sparse) {
            trim(&mut self.labels);
            return;
        }
        let mut string_ids = Renumber::new(strings.by_id.len());
        let mut bound_ids = Renumber::new(self.bounds.by_id.len());
        let mut labels = Vec::with_capacity(self.live_labels);
        for Record { seen, .. } in &mut self.records {
            seen.family = string_ids.keep(seen.family);
            seen.marker = match seen.shape {
                Shape::Number => string_ids.keep(seen.marker),
                Shape::Histogram | Shape::Summary => bound_ids.keep(seen.marker),
            };
            let start = seen.labels as usize;
            let stored = self
                .labels
                .get(start..start + usize::from(seen.label_count))
                .unwrap_or_default();
            // Fits: no more labels than before.
            seen.labels = u32::try_from(labels.len()).unwrap_or(u32::MAX);
            labels.extend(
                stored
                    .iter()
                    .map(|[k, v]| [string_ids.keep(*k), string_ids.keep(*v)]),
            );
        }
        // Only the strings of remembered series stay: one a batch or a learned shape still holds
        // has its copy there, and is interned again when a scrape has it again.
        *strings = Strings::rebuilt(string_ids.kept(&strings.by_id));
        self.bounds.compact(&bound_ids);
        self.labels = labels;
        if sparse {
            let records = &self.records;
            self.index
                .shrink_to_fit(|&at| records.get(at as usize).map_or(0, |r| r.key.0));
        }
        self.key = String::new();
    }
}

/// Gives back what `vec` grew past an eighth more than it holds: doubling leaves up to as much
/// again unused, for good once a page stops growing. (glibc shrinks a block in place.)
fn trim<T>(vec: &mut Vec<T>) {
    let enough = vec.len() + vec.len() / 8;
    if vec.capacity() > enough + 64 {
        vec.shrink_to(enough);
    }
}

/// The labels of `seen`, stored in `labels`, as they were exported.
fn decode_labels(
    seen: &Seen,
    labels: &[[u32; 2]],
    strings: &Strings,
    added: &[(Arc<str>, Arc<str>)],
) -> Labels {
    let start = seen.labels as usize;
    let stored = labels
        .get(start..start + usize::from(seen.label_count))
        .unwrap_or_default();
    let extra = if seen.without_added { added.len() } else { 0 };
    let mut decoded: Labels = Vec::with_capacity(stored.len() + extra);
    decoded.extend(stored.iter().map(|[k, v]| (strings.at(*k), strings.at(*v))));
    if seen.without_added {
        // Where they were: the names are unique and were sorted.
        for label in added {
            let at = decoded.partition_point(|l| l.0 < label.0);
            decoded.insert(at, label.clone());
        }
    }
    decoded
}

/// New numbers for the entries of a table that are kept, in the order they are first kept.
struct Renumber {
    new: Vec<u32>,
    order: Vec<u32>,
}

impl Renumber {
    fn new(len: usize) -> Self {
        Renumber {
            new: vec![u32::MAX; len],
            order: Vec::new(),
        }
    }

    /// The new number of entry `old`.
    fn keep(&mut self, old: u32) -> u32 {
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
    fn kept<T: Clone>(&self, table: &[T]) -> Vec<T> {
        self.order
            .iter()
            .filter_map(|old| table.get(*old as usize).cloned())
            .collect()
    }
}

/// The identity of a series across scrapes (the sample name of a number, the family name of a
/// histogram or summary, then the labels), written into a reused buffer (known series, the
/// common case, then cost no allocation).
fn write_series_key(key: &mut String, series: &str, labels: &Labels) {
    key.clear();
    key.push_str(series);
    for (name, value) in labels {
        key.push('\u{1}');
        key.push_str(name);
        key.push('\u{2}');
        key.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::convert::{Converter, Source};
    use wxcloudrun_exposition::{Format, parse};

    fn page(series: impl Iterator<Item = usize>) -> String {
        let mut text = String::from("# TYPE c counter\n");
        for i in series {
            text.push_str(&format!("c_total{{i=\"{i}\"}} 1\n"));
        }
        text
    }

    /// `(i, start, stale)` of every point, sorted.
    fn points(converter: &mut Converter, text: &str, at: i64) -> Vec<(usize, i64, bool)> {
        let parsed = parse(text, Format::PrometheusText).unwrap();
        let batch = converter.convert([Source::Page(&parsed)], at);
        let mut points: Vec<(usize, i64, bool)> = batch
            .families
            .iter()
            .flat_map(|f| &f.points)
            .filter_map(|p| {
                let i = p.labels.iter().find(|l| &*l.0 == "i")?.1.parse().ok()?;
                let stale = matches!(p.value, Value::Number { value, .. }
                    if value.to_bits() == stale_nan().to_bits());
                Some((i, p.start_ms?, stale))
            })
            .collect();
        points.sort_unstable();
        points
    }

    /// Series forgotten from the middle of the records move others into their places: each
    /// remaining one is still found (its start time is its first sight's) and each forgotten
    /// one gets its stale marker once.
    #[test]
    fn forgetting_series_keeps_the_others_found() {
        let mut converter = Converter::new(&[], None);
        points(&mut converter, &page(0..1000), 1_000);
        let evens_and_new = || (0..1000).step_by(2).chain(1000..1100);
        let second = points(&mut converter, &page(evens_and_new()), 2_000);
        let mut expected: Vec<(usize, i64, bool)> = (0..1000)
            .map(|i| (i, 1_000, i % 2 == 1))
            .chain((1000..1100).map(|i| (i, 2_000, false)))
            .collect();
        expected.sort_unstable();
        assert_eq!(second, expected);
        let third = points(&mut converter, &page(evens_and_new()), 3_000);
        expected.retain(|p| !p.2);
        assert_eq!(third, expected);
        assert_eq!(converter.remembered.len(), 600);
    }

    #[test]
    fn a_remembered_series_is_small() {
        assert!(size_of::<Seen>() <= 40);
        assert!(size_of::<Record>() <= 56);
    }
}
