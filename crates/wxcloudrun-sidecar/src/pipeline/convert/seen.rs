//! What the converter remembers of each series between scrapes — its start time, its last value,
//! the scrape that last saw it, and enough to write its stale marker — in a small fixed-size
//! record (40 bytes, plus its 16-byte key) in one dense array, found through a table of 4-byte
//! record numbers, and 8 bytes per scraped label.
//!
//! A remembered series refers to its strings (family, sample name, label names and values) by
//! number in [`Strings`], to its histogram or summary bounds by number in a table of the bound
//! sets in use (a page has a handful; both tables are in `tables`), and to its labels by a range
//! of `(name, value)` number pairs in one shared array: no allocation per series, no label vector
//! cloned per series. The
//! sidecar's own labels (`instance`, `wx_service`, …), on every series, are not stored at all;
//! they are put back when a stale marker is written.
//!
//! Forgotten series leave their labels behind in the array and their strings in the table; both
//! are compacted (and the index shrunk) once they have doubled since the last compaction, so
//! memory follows the series remembered, not the largest page ever seen, at an amortised cost. A
//! forgotten record's place is taken by the last record (its number in the index rewritten).

mod tables;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::model::{
    Family, Histogram, Kind, Labels, Point, PointLabels, Summary, Value, stale_nan,
};
pub(super) use tables::Strings;
use tables::{Bounds, Renumber, trim};

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
    /// Its labels are stored without the sidecar's own (which it shared).
    without_added: bool,
    /// Remembered for a learned page shape, not seen in a scrape yet: its first sight is still
    /// to come, and it gets no stale marker.
    fresh: bool,
}

/// A remembered series and its key: a 128-bit hash of its identity (see [`write_series_key`])
/// rather than the identity itself, which would cost each remembered series its length again
/// (~100 bytes on a typical page). Two keyed 64-bit hashes, as the replay's page hash: a
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
    /// Series forgotten so far: a learned shape whose series were all remembered still has
    /// them while this has not moved.
    forgotten: u64,
}

/// Whether `seen`'s stale marker is the one `value` would have.
fn fits(seen: &Seen, strings: &Strings, bounds: &Bounds, value: &Value) -> bool {
    match (seen.shape, value) {
        (Shape::Number, Value::Number { name, .. }) => strings.is(seen.marker, name),
        (Shape::Histogram, Value::Histogram(histogram)) => {
            bounds.is(seen.marker, &histogram.buckets)
        }
        (Shape::Summary, Value::Summary(summary)) => bounds.is(seen.marker, &summary.quantiles),
        _ => false,
    }
}

/// The shape and number of `value`'s stale marker.
fn marker_of(strings: &mut Strings, bounds: &mut Bounds, value: &Value) -> Option<(Shape, u32)> {
    match value {
        Value::Number { name, .. } => Some((Shape::Number, strings.id(name)?)),
        Value::Histogram(histogram) => Some((Shape::Histogram, bounds.id(&histogram.buckets)?)),
        Value::Summary(summary) => Some((Shape::Summary, bounds.id(&summary.quantiles)?)),
    }
}

/// What [`Remembered::track`] needs of the converter.
pub(super) struct Context<'c> {
    pub(super) strings: &'c mut Strings,
    pub(super) added: &'c Arc<Labels>,
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
        self.forgotten += 1;
        Some(record)
    }

    /// The key of the series of `point` in `family`: a 128-bit hash of its identity.
    fn key_of(&mut self, family: &Arc<str>, point: &Point) -> (u64, u64) {
        let series = match &point.value {
            Value::Number { name, .. } => name,
            Value::Histogram(_) | Value::Summary(_) => family,
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
        added: &Arc<Labels>,
    ) -> Option<PointLabels> {
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
            Value::Histogram(histogram) => histogram.count,
            Value::Summary(summary) => summary.count,
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
            (Value::Histogram(_) | Value::Summary(_), _) => Some(start_ms),
        };
    }

    /// Appends `labels` to the stored labels as string numbers; `None` if a string has none.
    fn store_labels<'l>(
        &mut self,
        strings: &mut Strings,
        labels: impl Iterator<Item = &'l (Arc<str>, Arc<str>)>,
    ) -> Option<()> {
        for (name, value) in labels {
            self.labels.push([strings.id(name)?, strings.id(value)?]);
        }
        Some(())
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
        // The sidecar's labels, shared by the point, are kept once (by the converter), not here.
        let own = point.labels.own_beside(cx.added);
        let without_added = own.is_some();
        let offset = u32::try_from(self.labels.len()).ok()?;
        let start = self.labels.len();
        let stored = match own {
            Some(own) => self.store_labels(cx.strings, own.iter()),
            None => self.store_labels(cx.strings, point.labels.iter()),
        };
        if stored.is_none() {
            self.labels.truncate(start);
            return None;
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

    /// How many series have been forgotten, ever (see [`Remembered::vanished`]).
    pub(super) fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Whether the series `key` is remembered.
    pub(super) fn remembers(&self, key: (u64, u64)) -> bool {
        self.get(key).is_some()
    }

    /// Stale markers for the series the current scrape did not see, from the record at `*at`
    /// on, until they make `max_samples` remote-write samples (a chunk: empty when there are no
    /// more); forgets them. `*at` is where the next call goes on: start at 0, with no series tracked between
    /// calls.
    pub(super) fn vanished(
        &mut self,
        at: &mut usize,
        max_samples: usize,
        strings: &Strings,
        added: &Arc<Labels>,
    ) -> Vec<Family> {
        let generation = self.generation;
        let mut by_family: HashMap<(u32, Kind), Vec<Point>> = HashMap::new();
        let mut made = 0;
        while made < max_samples
            && let Some(record) = self.records.get(*at)
        {
            if record.seen.generation == generation {
                *at += 1;
                continue;
            }
            // The last record moves to `at`: it is looked at next.
            let Some(Record { seen, .. }) = self.remove_at(*at) else {
                break;
            };
            if seen.fresh {
                continue;
            }
            let point = self.stale_point(&seen, strings, added);
            made += point.sample_count();
            by_family
                .entry((seen.family, seen.kind))
                .or_default()
                .push(point);
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
    fn stale_point(&self, seen: &Seen, strings: &Strings, added: &Arc<Labels>) -> Point {
        let entries = || self.bounds.stale(seen.marker);
        let value = match seen.shape {
            Shape::Number => Value::Number {
                name: strings.at(seen.marker),
                value: stale_nan(),
                exemplar: None,
            },
            Shape::Histogram => Value::Histogram(Box::new(Histogram {
                count: stale_nan(),
                sum: Some(stale_nan()),
                buckets: entries(),
                exemplars: Default::default(),
                stale: true,
            })),
            Shape::Summary => Value::Summary(Box::new(Summary {
                count: stale_nan(),
                sum: Some(stale_nan()),
                quantiles: entries(),
                stale: true,
            })),
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

/// The labels of `seen`, stored in `labels`, as they were exported.
fn decode_labels(
    seen: &Seen,
    labels: &[[u32; 2]],
    strings: &Strings,
    added: &Arc<Labels>,
) -> PointLabels {
    let start = seen.labels as usize;
    let stored = labels
        .get(start..start + usize::from(seen.label_count))
        .unwrap_or_default();
    let decoded: Labels = stored
        .iter()
        .map(|[k, v]| (strings.at(*k), strings.at(*v)))
        .collect();
    if seen.without_added {
        PointLabels::new(decoded, Some(Arc::clone(added)))
    } else {
        PointLabels::from(decoded)
    }
}

/// The identity of a series across scrapes (the sample name of a number, the family name of a
/// histogram or summary, then the labels), written into a reused buffer (known series, the
/// common case, then cost no allocation).
fn write_series_key(key: &mut String, series: &str, labels: &PointLabels) {
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
