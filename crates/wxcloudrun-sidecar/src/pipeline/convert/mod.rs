//! From what one scrape produced to a [`Batch`]: the sidecar's labels added (a scraped label of
//! the same name becomes `exported_<name>`, as Prometheus does), counters given a start time, and
//! stale markers for every series that disappeared since the last scrape. Exemplars go with the
//! number or histogram bucket they were exposed on ([`crate::model`] says which are kept).
//!
//! A scrape is a list of [`Source`]s converted together: the app's page (parsed, or replayed and
//! so converted already), the sidecar's own families straight from its registry, and `up`.
//!
//! A histogram `_bucket` or summary sample whose `le` / `quantile` is missing or no number
//! (`h_bucket{le="fast"}`) fits in no point, so it is not exported: OTLP has no place for it, and
//! writing it to remote write under its own name would give a bucket no `histogram_quantile`
//! can use. It is counted instead, every scrape, in
//! `wxcloudrun_sidecar_scrape_samples_dropped_total{reason="unparsable_bound"}` (the pipeline
//! counts it from [`MetricFamily::samples_without_bound`]), so a dashboard shows the app
//! exposes something a direct Prometheus scrape would have stored as written.

mod gathered;
mod seen;

use std::sync::Arc;

use std::borrow::Borrow;

use wxcloudrun_exposition::{Exposition, MetricFamily, MetricType, Sample};

use crate::model::{
    Batch, BucketExemplars, Exemplar, Family, Histogram, Kind, Labels, Point, PointLabels, Summary,
    Value, normalize_nan, normalized,
};
use seen::{Remembered, Strings};

/// Families converted already, handed over a chunk at a time: a page read through its learned
/// shape (see [`Replay`](crate::pipeline::replay::Replay)) is filled chunk by chunk as the
/// converter asks, so that its batch is never whole in memory.
pub trait Chunks {
    /// The next families, about `max_samples` remote-write samples of them (at least one
    /// point, a family split between chunks where it has to be); empty when there are no more.
    /// `None` if the page cannot be filled after all (the rest of it is left out).
    fn next_chunk(&mut self, converter: &Converter, max_samples: usize) -> Option<Vec<Family>>;
}

impl<C: Chunks + ?Sized> Chunks for &mut C {
    fn next_chunk(&mut self, converter: &Converter, max_samples: usize) -> Option<Vec<Family>> {
        (**self).next_chunk(converter, max_samples)
    }
}

/// One part of a scrape.
pub enum Source<'a> {
    /// Families converted already (a page whose shape was just learned): only their start times
    /// are set here.
    Converted(Vec<Family>),
    /// The same, a chunk at a time; freed once the last is taken.
    Chunked(Box<dyn Chunks + 'a>),
    /// A parsed page the caller keeps.
    Page(&'a Exposition<'a>),
    /// A parsed page given up to the conversion: each family is freed once it is converted, and
    /// each counter, gauge or untyped sample at once, so that a scrape's peak is about the larger
    /// of its page and its batch rather than both (for a page of many small series the two are
    /// of a size).
    Parsed(Exposition<'a>),
    /// Families gathered from a Prometheus registry (the sidecar's self-metrics): the same
    /// families their text rendering would parse into.
    Gathered(&'a [prometheus::proto::MetricFamily]),
    /// The synthetic `up` gauge: whether the app's page was read.
    Up(bool),
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Converted(families) => f.debug_tuple("Converted").field(families).finish(),
            Source::Chunked(_) => f.write_str("Chunked(..)"),
            Source::Page(page) => f.debug_tuple("Page").field(page).finish(),
            Source::Parsed(page) => f.debug_tuple("Parsed").field(page).finish(),
            Source::Gathered(gathered) => f.debug_tuple("Gathered").field(gathered).finish(),
            Source::Up(up) => f.debug_tuple("Up").field(up).finish(),
        }
    }
}

/// Where a scrape's families go as they are converted: into chunks of about `chunk_samples`
/// remote-write samples, each handed to `emit` once full.
struct Out<'e> {
    timestamp_ms: i64,
    families: Vec<Family>,
    samples: usize,
    chunk_samples: usize,
    emit: &'e mut dyn FnMut(Batch),
}

impl Out<'_> {
    /// Room for `families` more, when the scrape is converted whole (its families in one list,
    /// not grown by doubling).
    fn reserve_whole(&mut self, families: usize) {
        if self.chunk_samples == usize::MAX {
            self.families.reserve(families);
        }
    }

    /// Samples the current chunk has room for (at least one).
    fn room(&self) -> usize {
        self.chunk_samples.saturating_sub(self.samples).max(1)
    }

    fn push(&mut self, family: Family) {
        self.samples += family.points.iter().map(Point::sample_count).sum::<usize>();
        self.families.push(family);
        if self.samples >= self.chunk_samples {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.families.is_empty() {
            let families = std::mem::take(&mut self.families);
            (self.emit)(Batch {
                timestamp_ms: self.timestamp_ms,
                families,
            });
        }
        self.samples = 0;
    }
}

/// A list taken from the front a piece at a time that gives its memory back as it empties: a
/// parsed page's families and a large family's samples are freed as they are converted, not
/// once the last is (kept reversed, so that a piece comes off the back).
struct Draining<T>(Vec<T>);

impl<T> Draining<T> {
    fn new(mut items: Vec<T>) -> Self {
        items.reverse();
        Draining(items)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn next(&mut self) -> Option<T> {
        let item = self.0.pop();
        self.give_back();
        item
    }

    /// The next `n` items (fewer at the end), in their order.
    fn take(&mut self, n: usize) -> Vec<T> {
        let mut piece = self.0.split_off(self.0.len().saturating_sub(n));
        piece.reverse();
        self.give_back();
        piece
    }

    /// Halves the list's memory once it is half empty: every item is moved once more at most.
    fn give_back(&mut self) {
        if self.0.capacity() > 1024 && self.0.len() < self.0.capacity() / 2 {
            self.0.shrink_to_fit();
        }
    }
}

/// Turns scrapes into batches, remembering series across scrapes.
#[derive(Debug)]
pub struct Converter {
    /// Sorted by name; shared by every point (see [`PointLabels`]).
    added: Arc<Labels>,
    /// The app's start in wrapper mode: every cumulative interval starts there until a reset.
    process_start_ms: Option<i64>,
    /// Start times and staleness of the series seen.
    remembered: Remembered,
    strings: Strings,
}

/// `pairs` as a label list (unsorted, as given).
fn label_list(pairs: &[(String, String)]) -> Labels {
    let label = |(k, v): &(String, String)| (Arc::from(k.as_str()), Arc::from(v.as_str()));
    pairs.iter().map(label).collect()
}

fn kind_of(metric_type: MetricType) -> Kind {
    match metric_type {
        MetricType::Counter => Kind::Counter,
        MetricType::Gauge => Kind::Gauge,
        MetricType::Unknown => Kind::Unknown,
        MetricType::Histogram => Kind::Histogram,
        MetricType::Summary => Kind::Summary,
        MetricType::Info | MetricType::StateSet | MetricType::GaugeHistogram => Kind::Other,
    }
}

/// A page family's `# HELP` and `# UNIT`, empty when absent.
fn help_and_unit<'f>(family: &'f MetricFamily<'_>) -> (&'f str, &'f str) {
    (family.help().unwrap_or(""), family.unit().unwrap_or(""))
}

impl Converter {
    /// `added`: the labels put on every series. `process_start_ms`: the child's start, in wrapper
    /// mode.
    pub fn new(added: &[(String, String)], process_start_ms: Option<i64>) -> Self {
        Converter {
            added: Arc::new(normalized(label_list(added))),
            process_start_ms,
            remembered: Remembered::default(),
            strings: Strings::default(),
        }
    }

    /// Converts one scrape taken at `timestamp_ms`, its sources in order, into one batch. Series
    /// of earlier scrapes that none of them has get a stale marker, after the sources' families.
    pub fn convert<'a>(
        &mut self,
        sources: impl IntoIterator<Item = Source<'a>>,
        timestamp_ms: i64,
    ) -> Batch {
        let mut whole = Batch {
            timestamp_ms,
            families: Vec::new(),
        };
        self.convert_in_chunks(sources, timestamp_ms, usize::MAX, &mut |batch| {
            whole = batch;
        });
        whole
    }

    /// [`convert`](Self::convert), the batch handed to `emit` in chunks of about
    /// `chunk_samples` remote-write samples (a large family split between chunks), each as soon
    /// as it is full: with a parsed page freed as it is converted and a replayed page filled as
    /// it is converted, what a scrape holds at once is the page and a chunk, not the page and its
    /// whole batch. Every chunk has the scrape's timestamp; together, in order, they are
    /// [`convert`](Self::convert)'s batch (its stale markers sorted by family within a chunk).
    pub fn convert_in_chunks<'a>(
        &mut self,
        sources: impl IntoIterator<Item = Source<'a>>,
        timestamp_ms: i64,
        chunk_samples: usize,
        emit: &mut dyn FnMut(Batch),
    ) {
        self.remembered.next_scrape();
        let at = Some(timestamp_ms);
        let mut out = Out {
            timestamp_ms,
            families: Vec::new(),
            samples: 0,
            chunk_samples: chunk_samples.max(1),
            emit,
        };
        for source in sources {
            match source {
                Source::Converted(converted) => self.push_converted(converted, &mut out),
                Source::Chunked(mut chunks) => loop {
                    match chunks.next_chunk(self, out.room()) {
                        Some(chunk) if chunk.is_empty() => break,
                        Some(chunk) => self.push_converted(chunk, &mut out),
                        None => {
                            // A replayed page is checked before its first chunk: a bug.
                            tracing::error!(
                                "a replayed page could not be filled: the rest of it is left out of this scrape"
                            );
                            break;
                        }
                    }
                },
                Source::Page(page) => {
                    out.reserve_whole(page.families.len());
                    for family in &page.families {
                        if let Some(family) = self.page_family(family, at) {
                            self.push_split(family, false, &mut out);
                        }
                    }
                }
                Source::Parsed(page) => {
                    out.reserve_whole(page.families.len());
                    let mut families = Draining::new(page.families);
                    while let Some(family) = families.next() {
                        self.taken_family(family, at, &mut out);
                    }
                }
                Source::Gathered(gathered) => {
                    for family in gathered {
                        if let Some(family) = self.gathered(family, timestamp_ms) {
                            out.push(family);
                        }
                    }
                }
                Source::Up(up) => out.push(self.up(up, timestamp_ms)),
            }
        }
        let mut cursor = 0;
        loop {
            let stale =
                self.remembered
                    .vanished(&mut cursor, out.room(), &self.strings, &self.added);
            if stale.is_empty() {
                break;
            }
            for family in stale {
                out.push(family);
            }
        }
        // After the batch took its references, so that only strings of forgotten series go.
        self.remembered.compact(&mut self.strings);
        out.flush();
    }

    /// Converted families, their series tracked (their start times set), onto `out`: split
    /// where a chunk fills; the list itself kept when it fits whole.
    fn push_converted(&mut self, mut families: Vec<Family>, out: &mut Out<'_>) {
        let points = families.iter().flat_map(|f| &f.points);
        let samples: usize = points.map(Point::sample_count).sum();
        if !out.families.is_empty() || samples >= out.room() {
            for family in families {
                self.push_split(family, true, out);
            }
            return;
        }
        for family in &mut families {
            for point in &mut family.points {
                self.track(&family.name, family.kind, point, None, out.timestamp_ms);
            }
        }
        out.families = families;
        out.samples = samples;
    }

    /// `family` onto `out`, split where a chunk fills; with `track`, its series tracked.
    fn push_split(&mut self, mut family: Family, track: bool, out: &mut Out<'_>) {
        let samples: usize = family.points.iter().map(Point::sample_count).sum();
        if samples <= out.room() {
            if track {
                for point in &mut family.points {
                    self.track(&family.name, family.kind, point, None, out.timestamp_ms);
                }
            }
            out.push(family);
            return;
        }
        let mut points = std::mem::take(&mut family.points).into_iter().peekable();
        while points.peek().is_some() {
            let room = out.room();
            let mut piece = Vec::new();
            let mut taken = 0;
            while taken < room
                && let Some(mut point) = points.next()
            {
                taken += point.sample_count();
                if track {
                    self.track(
                        &family.name,
                        family.kind,
                        &mut point,
                        None,
                        out.timestamp_ms,
                    );
                }
                piece.push(point);
            }
            out.push(Family {
                name: family.name.clone(),
                help: family.help.clone(),
                unit: family.unit.clone(),
                kind: family.kind,
                points: piece,
            });
        }
    }

    /// The families of `page` as [`convert`](Self::convert) would give them, without start
    /// times and without remembering anything: the template a learned page shape fills.
    /// The page is freed as it is converted (see [`Source::Parsed`]).
    pub(crate) fn template(&mut self, page: Exposition<'_>) -> Vec<Family> {
        let mut families = Vec::new();
        let mut out = Out {
            timestamp_ms: 0,
            families: Vec::new(),
            samples: 0,
            chunk_samples: usize::MAX,
            emit: &mut |batch| families = batch.families,
        };
        out.families.reserve(page.families.len());
        for family in page.families {
            self.taken_family(family, None, &mut out);
        }
        out.flush();
        families
    }

    /// One family of a parsed page; with `at`, its series are tracked as seen at that time.
    fn page_family(&mut self, family: &MetricFamily<'_>, at: Option<i64>) -> Option<Family> {
        let kind = kind_of(family.metric_type);
        let name = self.strings.get(&family.name);
        let points = match kind {
            Kind::Histogram => self.histogram_points(&name, family, at),
            Kind::Summary => self.summary_points(&name, family, at),
            _ => self.number_points(&name, kind, family.samples.iter(), at),
        };
        let (help, unit) = help_and_unit(family);
        self.family(name, help, unit, kind, points)
    }

    /// [`page_family`](Self::page_family) of a family the conversion owns, onto `out`: a
    /// counter's, gauge's or untyped family's samples are freed one by one as they become
    /// points, and the family is split where a chunk fills.
    fn taken_family(&mut self, mut family: MetricFamily<'_>, at: Option<i64>, out: &mut Out<'_>) {
        let kind = kind_of(family.metric_type);
        if matches!(kind, Kind::Histogram | Kind::Summary) {
            // Their samples are grouped into points by label set first: freed with the family.
            if let Some(family) = self.page_family(&family, at) {
                self.push_split(family, false, out);
            }
            return;
        }
        let name = self.strings.get(&family.name);
        let mut samples = Draining::new(std::mem::take(&mut family.samples));
        let (help, unit) = help_and_unit(&family);
        while !samples.is_empty() {
            let piece = samples.take(out.room());
            let points = self.number_points(&name, kind, piece.into_iter(), at);
            if let Some(family) = self.family(name.clone(), help, unit, kind, points) {
                out.push(family);
            }
        }
    }

    /// A point per sample of a counter, gauge or untyped family.
    fn number_points<'s, S: Borrow<Sample<'s>>>(
        &mut self,
        name: &Arc<str>,
        kind: Kind,
        samples: impl ExactSizeIterator<Item = S>,
        at: Option<i64>,
    ) -> Vec<Point> {
        let mut points = Vec::with_capacity(samples.len());
        for sample in samples {
            let sample = sample.borrow();
            let labels = self.labels(sample.labels.iter().map(|l| (&*l.name, &*l.value)));
            let value = Value::Number {
                name: self.strings.get(&sample.name),
                value: normalize_nan(sample.value),
                exemplar: sample
                    .exemplar
                    .as_deref()
                    .map(|e| Box::new(Exemplar::of(e))),
            };
            points.push(self.point(name, kind, labels, value, sample.created_ms.get(), at));
        }
        points
    }

    /// A family of `points`; none if it has no point (nothing to export).
    fn family(
        &mut self,
        name: Arc<str>,
        help: &str,
        unit: &str,
        kind: Kind,
        points: Vec<Point>,
    ) -> Option<Family> {
        if points.is_empty() {
            return None;
        }
        Some(Family {
            name,
            help: self.strings.get(help),
            unit: self.strings.get(unit),
            kind,
            points,
        })
    }

    /// A point of `family`; with `at`, tracked as seen at that time (its start time set).
    fn point(
        &mut self,
        family: &Arc<str>,
        kind: Kind,
        labels: PointLabels,
        value: Value,
        created_ms: Option<i64>,
        at: Option<i64>,
    ) -> Point {
        let mut point = Point {
            labels,
            start_ms: None,
            value,
        };
        if let Some(timestamp_ms) = at {
            self.track(family, kind, &mut point, created_ms, timestamp_ms);
        }
        point
    }

    fn histogram_points(
        &mut self,
        name: &Arc<str>,
        family: &MetricFamily<'_>,
        at: Option<i64>,
    ) -> Vec<Point> {
        let grouped = match family.histogram_points() {
            Ok(points) => points,
            Err(err) => {
                tracing::warn!(family = %name, error = %err, "histogram dropped from this scrape");
                return Vec::new();
            }
        };
        grouped
            .into_iter()
            .filter_map(|point| {
                let buckets: Vec<(f64, f64)> = point
                    .buckets
                    .iter()
                    .map(|b| (b.upper_bound, normalize_nan(b.cumulative_count)))
                    .collect();
                let mut exemplars = BucketExemplars::default();
                for (at, bucket) in point.buckets.iter().enumerate() {
                    if let Some(exemplar) = &bucket.exemplar {
                        exemplars.push(at, Exemplar::of(exemplar));
                    }
                }
                // `_count` equals the `+Inf` bucket; a point with neither cannot be exported.
                let count = point
                    .count
                    .or_else(|| buckets.last().filter(|b| b.0.is_infinite()).map(|b| b.1))?;
                let labels = self.labels(point.labels.iter().map(|l| (&*l.name, &*l.value)));
                let value = Value::Histogram(Box::new(Histogram {
                    count: normalize_nan(count),
                    sum: point.sum.map(normalize_nan),
                    buckets,
                    exemplars,
                    stale: false,
                }));
                Some(self.point(name, Kind::Histogram, labels, value, point.created_ms, at))
            })
            .collect()
    }

    fn summary_points(
        &mut self,
        name: &Arc<str>,
        family: &MetricFamily<'_>,
        at: Option<i64>,
    ) -> Vec<Point> {
        let grouped = match family.summary_points() {
            Ok(points) => points,
            Err(err) => {
                tracing::warn!(family = %name, error = %err, "summary dropped from this scrape");
                return Vec::new();
            }
        };
        grouped
            .into_iter()
            .filter_map(|point| {
                let count = point.count?;
                let labels = self.labels(point.labels.iter().map(|l| (&*l.name, &*l.value)));
                let value = Value::Summary(Box::new(Summary {
                    count: normalize_nan(count),
                    sum: point.sum.map(normalize_nan),
                    quantiles: point
                        .quantiles
                        .iter()
                        .map(|q| (q.quantile, normalize_nan(q.value)))
                        .collect(),
                    stale: false,
                }));
                Some(self.point(name, Kind::Summary, labels, value, point.created_ms, at))
            })
            .collect()
    }

    /// The scraped labels with the sidecar's added: a scraped label that clashes with an added one
    /// becomes `exported_<name>` (the same value is no clash: the layer's `wx_service` and the
    /// sidecar's usually agree); empty values are dropped; the result is sorted.
    fn labels<'l>(&mut self, scraped: impl Iterator<Item = (&'l str, &'l str)>) -> PointLabels {
        let mut labels: Labels = Vec::with_capacity(scraped.size_hint().0);
        let mut clashes: Vec<(&'l str, &'l str)> = Vec::new();
        for (name, value) in scraped {
            if value.is_empty() || name == "__name__" {
                continue;
            }
            match self.added.iter().find(|(added, _)| **added == *name) {
                Some((_, ours)) if **ours == *value => {}
                Some(_) => clashes.push((name, value)),
                None => labels.push((self.strings.get(name), self.strings.get(value))),
            }
        }
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        labels.dedup_by(|a, b| a.0 == b.0);
        if !clashes.is_empty() {
            self.rename(&mut labels, clashes);
        }
        let shared = (!self.added.is_empty()).then(|| Arc::clone(&self.added));
        PointLabels::new(labels, shared)
    }

    /// Adds the scraped labels that clash with the sidecar's to `labels` (sorted) as
    /// `exported_<name>`, or `exported_exported_<name>` and so on while that name is taken (by
    /// the sidecar's labels, or by the page's: `exported_instance` may be scraped too), shorter
    /// names first: what Prometheus does, so that no two series of the page become one.
    fn rename(&mut self, labels: &mut Labels, mut clashes: Vec<(&str, &str)>) {
        clashes.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then(a.0.cmp(b.0)));
        for (name, value) in clashes {
            let mut renamed = format!("exported_{name}");
            // Ends: every try is longer, and only finitely many names are taken.
            while self.added.iter().any(|(taken, _)| **taken == *renamed)
                || labels.iter().any(|(taken, _)| **taken == *renamed)
            {
                renamed.insert_str(0, "exported_");
            }
            let name = self.strings.get(&renamed);
            let at = labels.partition_point(|(other, _)| *other < name);
            labels.insert(at, (name, self.strings.get(value)));
        }
    }

    /// Remembers the series of `point` in `family` (unless it is already) for a learned page
    /// shape, whose labels are then [`remembered_labels`](Self::remembered_labels): the key by
    /// which it is. The series is seen when a scrape converts it; one that no scrape converts
    /// is forgotten at the next, without a stale marker.
    pub(crate) fn remember_series(
        &mut self,
        family: &Arc<str>,
        kind: Kind,
        point: &Point,
    ) -> (u64, u64) {
        let cx = seen::Context {
            strings: &mut self.strings,
            added: &self.added,
            process_start_ms: self.process_start_ms,
        };
        self.remembered.register(cx, family, kind, point)
    }

    /// The labels of the remembered series `key` as they were exported; `None` if it is not
    /// remembered (it was not in the last scrape, nor remembered for a shape since).
    pub(crate) fn remembered_labels(&self, key: (u64, u64)) -> Option<PointLabels> {
        self.remembered.labels_of(key, &self.strings, &self.added)
    }

    /// How many series the converter has forgotten, ever: while this has not moved, every
    /// series it remembered is still remembered.
    pub(crate) fn forgotten(&self) -> u64 {
        self.remembered.forgotten()
    }

    /// Whether the series `key` (see [`remember_series`](Self::remember_series)) is remembered.
    pub(crate) fn remembers(&self, key: (u64, u64)) -> bool {
        self.remembered.remembers(key)
    }

    /// Remembers the series of `point` and sets its start time (see [`Remembered::track`]).
    fn track(
        &mut self,
        family: &Arc<str>,
        kind: Kind,
        point: &mut Point,
        created_ms: Option<i64>,
        timestamp_ms: i64,
    ) {
        let cx = seen::Context {
            strings: &mut self.strings,
            added: &self.added,
            process_start_ms: self.process_start_ms,
        };
        self.remembered
            .track(cx, family, kind, point, created_ms, timestamp_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN_BITS;
    use wxcloudrun_exposition::{Format, parse};

    fn added() -> Vec<(String, String)> {
        vec![
            ("instance".to_owned(), "pod-1".to_owned()),
            ("wx_service".to_owned(), "orders".to_owned()),
        ]
    }

    fn labels_of(point: &Point) -> Vec<(&str, &str)> {
        point.labels.iter().map(|(k, v)| (&**k, &**v)).collect()
    }

    #[test]
    fn strings_are_shared_and_those_of_vanished_series_forgotten() {
        let mut converter = Converter::new(&added(), None);
        for round in 0..20 {
            let text: String = (0..500)
                .map(|i| format!("g{{v=\"r{round}-{i}\",zone=\"z\"}} 1\n"))
                .collect();
            let page = parse(&text, Format::PrometheusText).unwrap();
            let batch = converter.convert([Source::Page(&page)], 1_000 * (round + 1));
            let zones: Vec<&Arc<str>> = batch.families[0]
                .points
                .iter()
                .filter_map(|p| p.labels.iter().find(|(k, _)| &**k == "zone"))
                .map(|(_, v)| v)
                .collect();
            assert_eq!(zones.len(), 500);
            assert!(zones.iter().all(|zone| Arc::ptr_eq(zone, zones[0])));
        }
        // 10,000 distinct values went through; only about the live ones stay.
        assert!(
            converter.strings.len() < 3_000,
            "{} strings kept",
            converter.strings.len()
        );
        assert_eq!(converter.remembered.len(), 500);
    }

    /// A series as exported: its family, its labels, whether it is a stale marker.
    type Exported = (String, Vec<(String, String)>, bool);

    /// The series of a batch, sorted.
    fn exported(batch: &Batch) -> Vec<Exported> {
        let mut out: Vec<_> = batch
            .families
            .iter()
            .flat_map(|f| {
                f.points.iter().map(|p| {
                    let labels = p.labels.iter().map(|(k, v)| (k.to_string(), v.to_string()));
                    (f.name.to_string(), labels.collect(), p.value.is_stale())
                })
            })
            .collect();
        out.sort();
        out
    }

    /// Series remembered by numbers come back with their exact labels (the sidecar's own put
    /// back, a clash's `exported_` kept) in their stale markers, across the compactions that
    /// renumber them.
    #[test]
    fn stale_markers_have_the_labels_exported_across_compactions() {
        let mut converter = Converter::new(&added(), None);
        let mut last: Option<Vec<Exported>> = None;
        for round in 0..12u32 {
            // 3,000 series a round, a third of them new: compactions happen along the way.
            let text: String = (0..3000)
                .map(|i| {
                    let id = round * 1000 + i;
                    format!(
                        "# TYPE c{} counter\nc{}_total{{instance=\"app\",v=\"{id}\",z=\"z{}\"}} 1\n",
                        id % 7,
                        id % 7,
                        id % 5
                    )
                })
                .collect();
            let page = parse(&text, Format::PrometheusText).unwrap();
            let batch = converter.convert([Source::Page(&page)], 1_000 * i64::from(round + 1));
            let now = exported(&batch);
            if let Some(before) = &last {
                let stale: Vec<_> = now.iter().filter(|s| s.2).map(|s| (&s.0, &s.1)).collect();
                let gone: Vec<_> = before
                    .iter()
                    .filter(|b| !now.iter().any(|n| !n.2 && n.0 == b.0 && n.1 == b.1))
                    .map(|b| (&b.0, &b.1))
                    .collect();
                assert_eq!(stale.len(), 1000, "round {round}");
                assert_eq!(stale, gone, "round {round}");
            }
            last = Some(now.into_iter().filter(|s| !s.2).collect());
        }
        // What 12,000 distinct series left behind was compacted away.
        assert!(
            converter.strings.len() < 9_000,
            "{}",
            converter.strings.len()
        );
        assert_eq!(converter.remembered.len(), 3000);
    }

    /// After a large page went away, what the converter holds follows the series it remembers
    /// again, not the page.
    #[test]
    fn memory_follows_the_series_after_a_large_page() {
        let mut converter = Converter::new(&added(), None);
        let large: String = (0..50_000).map(|i| format!("g{{v=\"{i}\"}} 1\n")).collect();
        let page = parse(&large, Format::PrometheusText).unwrap();
        converter.convert([Source::Page(&page)], 1_000);
        let held = converter.remembered.held();
        assert!(held.0 >= 50_000 && held.1 >= 50_000, "{held:?}");
        let small = parse("g{v=\"0\"} 2\n", Format::PrometheusText).unwrap();
        let batch = converter.convert([Source::Page(&small)], 2_000);
        assert_eq!(batch.sample_count(), 50_000);
        drop(batch);
        converter.convert([Source::Page(&small)], 3_000);
        let held = converter.remembered.held();
        assert!(held.0 < 2_000 && held.1 < 2_000, "{held:?}");
        assert!(
            converter.strings.len() < 2_000,
            "{}",
            converter.strings.len()
        );
    }

    #[test]
    fn a_clash_is_renamed_until_its_name_is_free_so_no_two_series_become_one() {
        let page = parse(
            "m{instance=\"a\"} 1\nm{instance=\"b\"} 2\nm{instance=\"c\",exported_instance=\"page\"} 3\n",
            Format::PrometheusText,
        )
        .unwrap();
        let ours = [
            ("instance".to_owned(), "pod-1".to_owned()),
            ("exported_instance".to_owned(), "ours".to_owned()),
        ];
        let batch = Converter::new(&ours, None).convert([Source::Page(&page)], 5_000);
        let points: Vec<_> = batch.families[0].points.iter().map(labels_of).collect();
        assert_eq!(
            points,
            [
                vec![
                    ("exported_exported_instance", "a"),
                    ("exported_instance", "ours"),
                    ("instance", "pod-1"),
                ],
                vec![
                    ("exported_exported_instance", "b"),
                    ("exported_instance", "ours"),
                    ("instance", "pod-1"),
                ],
                // The page's own `exported_instance` clashes too. Shorter names first, as in
                // Prometheus: `instance` takes `exported_exported_instance`, and the page's
                // `exported_instance` then needs a third prefix.
                vec![
                    ("exported_exported_exported_instance", "page"),
                    ("exported_exported_instance", "c"),
                    ("exported_instance", "ours"),
                    ("instance", "pod-1"),
                ],
            ]
        );
    }

    #[test]
    fn adds_labels_and_renames_clashes() {
        let page = parse(
            "# TYPE jobs_total counter\njobs_total{instance=\"app:80\",queue=\"a\",empty=\"\",wx_service=\"orders\"} 3\n",
            Format::PrometheusText,
        )
        .unwrap();
        let batch = Converter::new(&added(), Some(1_000)).convert([Source::Page(&page)], 5_000);
        let point = &batch.families[0].points[0];
        assert_eq!(
            labels_of(point),
            [
                ("exported_instance", "app:80"),
                ("instance", "pod-1"),
                ("queue", "a"),
                ("wx_service", "orders")
            ]
        );
        assert_eq!(
            point.start_ms,
            Some(1_000),
            "wrapper mode: the child's start"
        );
        assert_eq!(
            point.value,
            Value::Number {
                name: Arc::from("jobs_total"),
                value: 3.0,
                exemplar: None,
            }
        );
    }

    #[test]
    fn start_times_follow_created_first_sight_and_resets() {
        let mut converter = Converter::new(&added(), None);
        let page = |v: u32| {
            parse(
                &format!("# TYPE c counter\nc_total {v}\n# EOF\n"),
                Format::OpenMetrics,
            )
            .unwrap()
            .into_owned()
        };
        let start = |batch: &Batch| batch.families[0].points[0].start_ms;
        assert_eq!(
            start(&converter.convert([Source::Page(&page(5))], 10_000)),
            Some(10_000)
        );
        assert_eq!(
            start(&converter.convert([Source::Page(&page(7))], 20_000)),
            Some(10_000)
        );
        assert_eq!(
            start(&converter.convert([Source::Page(&page(1))], 30_000)),
            Some(29_999),
            "reset"
        );
        let created = parse(
            "# TYPE c counter\nc_total 4\nc_created 1700000000.5\n# EOF\n",
            Format::OpenMetrics,
        )
        .unwrap();
        assert_eq!(
            start(&converter.convert([Source::Page(&created)], 40_000)),
            Some(1_700_000_000_500)
        );
    }

    /// Issue 15, item 3: `le` is only ignored for a histogram's `_created`, `quantile` only for a
    /// summary's; a counter with an `le` label, a histogram with a `quantile` label and a summary
    /// with an `le` label each take the start time of their own `_created`, not another series'.
    #[test]
    fn created_matches_le_and_quantile_only_where_they_are_the_bucket_and_quantile_labels() {
        let page = parse(
            "# TYPE c counter\n\
             c_total{le=\"1\"} 5\n\
             c_created{le=\"1\"} 1700000000\n\
             c_total 3\n\
             c_created 1600000000\n\
             # TYPE h histogram\n\
             h_bucket{quantile=\"a\",le=\"+Inf\"} 2\n\
             h_count{quantile=\"a\"} 2\n\
             h_created{quantile=\"a\"} 1700000001\n\
             h_bucket{le=\"+Inf\"} 1\n\
             h_count 1\n\
             h_created 1600000001\n\
             # TYPE s summary\n\
             s{le=\"x\",quantile=\"0.5\"} 1\n\
             s_count{le=\"x\"} 4\n\
             s_created{le=\"x\"} 1700000002\n\
             s_count 9\n\
             s_created 1600000002\n\
             # EOF\n",
            Format::OpenMetrics,
        )
        .unwrap();
        let batch = Converter::new(&[], Some(1_000)).convert([Source::Page(&page)], 5_000);
        type Start<'b> = (&'b str, Vec<(&'b str, &'b str)>, Option<i64>);
        let starts: Vec<Start<'_>> = batch
            .families
            .iter()
            .flat_map(|f| {
                f.points
                    .iter()
                    .map(|p| (&*f.name, labels_of(p), p.start_ms))
            })
            .collect();
        assert_eq!(
            starts,
            [
                ("c", vec![("le", "1")], Some(1_700_000_000_000)),
                ("c", vec![], Some(1_600_000_000_000)),
                ("h", vec![("quantile", "a")], Some(1_700_000_001_000)),
                ("h", vec![], Some(1_600_000_001_000)),
                ("s", vec![("le", "x")], Some(1_700_000_002_000)),
                ("s", vec![], Some(1_600_000_002_000)),
            ]
        );
    }

    #[test]
    fn vanished_series_get_stale_markers() {
        let mut converter = Converter::new(&added(), None);
        let both = parse(
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\ng 1\n",
            Format::PrometheusText,
        )
        .unwrap();
        let only_g = parse("g 2\n", Format::PrometheusText).unwrap();
        converter.convert([Source::Page(&both)], 1_000);
        let batch = converter.convert([Source::Page(&only_g)], 2_000);
        let stale = batch
            .families
            .iter()
            .find(|f| &*f.name == "h")
            .expect("stale histogram");
        match &stale.points[0].value {
            Value::Histogram(histogram) => {
                assert!(histogram.stale);
                assert_eq!(histogram.buckets.len(), 2);
                assert_eq!(histogram.buckets[0].1.to_bits(), STALE_NAN_BITS);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(converter.remembered.len(), 1);
        let gone = converter.convert([], 3_000);
        assert_eq!(gone.families.len(), 1);
        assert!(gone.families[0].points[0].value.is_stale());
        assert_eq!(converter.remembered.len(), 0);
    }

    #[test]
    fn real_nans_are_not_stale_markers() {
        let page = parse("g NaN\n", Format::PrometheusText).unwrap();
        let batch = Converter::new(&added(), None).convert([Source::Page(&page)], 1);
        let Value::Number { value, .. } = batch.families[0].points[0].value else {
            panic!("number")
        };
        assert!(value.is_nan());
        assert_ne!(value.to_bits(), STALE_NAN_BITS);
    }
}
