//! From a parsed page to a [`Batch`]: the sidecar's labels added (a scraped label of the same
//! name becomes `exported_<name>`, as Prometheus does), counters given a start time, and stale
//! markers for every series that disappeared since the last scrape.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use wxcloudrun_exposition::{Exposition, Label, MetricFamily, MetricType};

use crate::model::{Batch, Family, Kind, Labels, Point, Value, normalize_nan, stale_nan};

/// What the converter remembers about a series between scrapes.
#[derive(Clone, Debug)]
struct Seen {
    family: Arc<str>,
    kind: Kind,
    labels: Labels,
    shape: Shape,
    /// Start of the current cumulative interval.
    start_ms: i64,
    /// The last value (`_count` for histograms and summaries), to detect resets.
    last: f64,
    /// The scrape that last saw it.
    generation: u64,
}

/// Enough of a series to write its stale marker.
#[derive(Clone, Debug)]
enum Shape {
    Number(Arc<str>),
    Histogram(Vec<f64>),
    Summary(Vec<f64>),
}

/// Turns scrapes into batches, remembering series across scrapes.
#[derive(Debug)]
pub struct Converter {
    added: Vec<(Arc<str>, Arc<str>)>,
    /// The app's start in wrapper mode: every cumulative interval starts there until a reset.
    process_start_ms: Option<i64>,
    seen: HashMap<String, Seen, foldhash::quality::RandomState>,
    /// Reused buffer for the key of the series being tracked.
    key: String,
    strings: Interner,
    generation: u64,
}

/// One shared copy of every name and label value in use.
///
/// A page repeats the same few hundred strings across thousands of series, scrape after scrape;
/// sharing them keeps the remembered series small and saves an allocation per label per scrape.
#[derive(Debug, Default)]
struct Interner {
    strings: HashSet<Arc<str>, foldhash::quality::RandomState>,
    /// The set's size after the last sweep.
    swept_len: usize,
}

impl Interner {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(shared.clone());
        shared
    }

    /// Forgets the strings nothing else holds any more (series that vanished, values that
    /// changed), once the set has doubled since the last sweep: bounded memory, amortised cost.
    fn sweep(&mut self) {
        if self.strings.len() > 2 * self.swept_len + 1024 {
            self.strings.retain(|shared| Arc::strong_count(shared) > 1);
            self.swept_len = self.strings.len();
        }
    }
}

impl Converter {
    /// `added`: the labels put on every series. `process_start_ms`: the child's start, in wrapper
    /// mode.
    pub fn new(added: &[(String, String)], process_start_ms: Option<i64>) -> Self {
        let added = added
            .iter()
            .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str())))
            .collect();
        Converter::with_added(added, process_start_ms)
    }

    /// Series remembered from the last scrape.
    pub fn series_count(&self) -> usize {
        self.seen.len()
    }

    /// Converts one scrape taken at `timestamp_ms`. `extra` pages (the sidecar's self-metrics, the
    /// synthetic `up`) are converted alongside. Series of earlier scrapes absent from this one get
    /// a stale marker.
    pub fn convert(&mut self, pages: &[&Exposition<'_>], timestamp_ms: i64) -> Batch {
        self.convert_with(Vec::new(), pages, timestamp_ms).0
    }

    /// [`convert`](Self::convert), with `replayed` families in front: converted already (by
    /// [`Replay`](crate::replay::Replay)), they only get their start times here. Also returns how
    /// many of the batch's families came from `replayed` and the first page.
    pub fn convert_with(
        &mut self,
        replayed: Vec<Family>,
        pages: &[&Exposition<'_>],
        timestamp_ms: i64,
    ) -> (Batch, usize) {
        self.generation += 1;
        let mut families = replayed;
        for family in &mut families {
            self.track_replayed(family, timestamp_ms);
        }
        let mut leading = families.len();
        for (index, page) in pages.iter().enumerate() {
            for family in &page.families {
                if let Some(family) = self.family(family, timestamp_ms) {
                    families.push(family);
                }
            }
            if index == 0 {
                leading = families.len();
            }
        }
        families.extend(self.vanished(|seen, generation| seen.generation != generation));
        // After the batch took its references, so that only strings of forgotten series go.
        self.strings.sweep();
        let batch = Batch {
            timestamp_ms,
            families,
        };
        (batch, leading)
    }

    /// A converter with the same added labels and no memory of any series: for conversions that
    /// must not count as a scrape.
    pub fn untracked(&self) -> Converter {
        Converter::with_added(self.added.clone(), self.process_start_ms)
    }

    fn with_added(added: Vec<(Arc<str>, Arc<str>)>, process_start_ms: Option<i64>) -> Self {
        Converter {
            added,
            process_start_ms,
            seen: HashMap::default(),
            key: String::new(),
            strings: Interner::default(),
            generation: 0,
        }
    }

    /// Start times for a replayed family's points, exactly as [`family`](Self::family) sets them.
    fn track_replayed(&mut self, family: &mut Family, timestamp_ms: i64) {
        let kind = family.kind;
        for point in &mut family.points {
            let (shape, value) = match &point.value {
                Value::Number { name, value } => (Shape::Number(name.clone()), *value),
                Value::Histogram { count, buckets, .. } => (
                    Shape::Histogram(buckets.iter().map(|b| b.0).collect()),
                    *count,
                ),
                Value::Summary {
                    count, quantiles, ..
                } => (
                    Shape::Summary(quantiles.iter().map(|q| q.0).collect()),
                    *count,
                ),
            };
            let start_ms = self.track(
                &family.name,
                kind,
                &point.labels,
                shape,
                value,
                None,
                timestamp_ms,
            );
            point.start_ms = match (&point.value, kind) {
                (Value::Number { .. }, Kind::Counter) => Some(start_ms),
                (Value::Number { .. }, _) => None,
                _ => Some(start_ms),
            };
        }
    }

    /// Stale markers for every series still remembered: the instance is going away (shutdown) or
    /// the target stopped answering.
    pub fn stale_all(&mut self, timestamp_ms: i64) -> Batch {
        self.generation += 1;
        Batch {
            timestamp_ms,
            families: self.vanished(|_, _| true),
        }
    }

    fn vanished(&mut self, gone: impl Fn(&Seen, u64) -> bool) -> Vec<Family> {
        let generation = self.generation;
        let mut by_family: HashMap<(Arc<str>, Kind), Vec<Point>> = HashMap::new();
        self.seen.retain(|_, seen| {
            if !gone(seen, generation) {
                return true;
            }
            let value = match &seen.shape {
                Shape::Number(name) => Value::Number {
                    name: name.clone(),
                    value: stale_nan(),
                },
                Shape::Histogram(bounds) => Value::Histogram {
                    count: stale_nan(),
                    sum: Some(stale_nan()),
                    buckets: bounds.iter().map(|le| (*le, stale_nan())).collect(),
                    stale: true,
                },
                Shape::Summary(quantiles) => Value::Summary {
                    count: stale_nan(),
                    sum: Some(stale_nan()),
                    quantiles: quantiles.iter().map(|q| (*q, stale_nan())).collect(),
                    stale: true,
                },
            };
            by_family
                .entry((seen.family.clone(), seen.kind))
                .or_default()
                .push(Point {
                    labels: seen.labels.clone(),
                    start_ms: Some(seen.start_ms),
                    value,
                });
            false
        });
        let mut families: Vec<Family> = by_family
            .into_iter()
            .map(|((name, kind), points)| Family {
                name,
                help: Arc::from(""),
                unit: Arc::from(""),
                kind,
                points,
            })
            .collect();
        families.sort_by(|a, b| a.name.cmp(&b.name));
        families
    }

    fn family(&mut self, family: &MetricFamily<'_>, timestamp_ms: i64) -> Option<Family> {
        let kind = match family.metric_type {
            MetricType::Counter => Kind::Counter,
            MetricType::Gauge => Kind::Gauge,
            MetricType::Unknown => Kind::Unknown,
            MetricType::Histogram => Kind::Histogram,
            MetricType::Summary => Kind::Summary,
            MetricType::Info | MetricType::StateSet | MetricType::GaugeHistogram => Kind::Other,
        };
        let name = self.strings.get(&family.name);
        let points = match kind {
            Kind::Histogram => self.histogram_points(&name, family, timestamp_ms),
            Kind::Summary => self.summary_points(&name, family, timestamp_ms),
            _ => family
                .samples
                .iter()
                .map(|sample| {
                    let labels = self.labels(&sample.labels);
                    let sample_name = self.strings.get(&sample.name);
                    let value = normalize_nan(sample.value);
                    let start_ms = self.track(
                        &name,
                        kind,
                        &labels,
                        Shape::Number(sample_name.clone()),
                        value,
                        sample.created_ms,
                        timestamp_ms,
                    );
                    Point {
                        labels,
                        start_ms: (kind == Kind::Counter).then_some(start_ms),
                        value: Value::Number {
                            name: sample_name,
                            value,
                        },
                    }
                })
                .collect(),
        };
        if points.is_empty() {
            return None;
        }
        Some(Family {
            name,
            help: self.strings.get(family.help.as_deref().unwrap_or("")),
            unit: self.strings.get(family.unit.as_deref().unwrap_or("")),
            kind,
            points,
        })
    }

    fn histogram_points(
        &mut self,
        name: &Arc<str>,
        family: &MetricFamily<'_>,
        timestamp_ms: i64,
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
                // `_count` equals the `+Inf` bucket; a point with neither cannot be exported.
                let count = point
                    .count
                    .or_else(|| buckets.last().filter(|b| b.0.is_infinite()).map(|b| b.1))?;
                let labels = self.labels(&point.labels);
                let bounds = buckets.iter().map(|b| b.0).collect();
                let start_ms = self.track(
                    name,
                    Kind::Histogram,
                    &labels,
                    Shape::Histogram(bounds),
                    count,
                    point.created_ms,
                    timestamp_ms,
                );
                Some(Point {
                    labels,
                    start_ms: Some(start_ms),
                    value: Value::Histogram {
                        count: normalize_nan(count),
                        sum: point.sum.map(normalize_nan),
                        buckets,
                        stale: false,
                    },
                })
            })
            .collect()
    }

    fn summary_points(
        &mut self,
        name: &Arc<str>,
        family: &MetricFamily<'_>,
        timestamp_ms: i64,
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
                let labels = self.labels(&point.labels);
                let quantiles: Vec<(f64, f64)> = point
                    .quantiles
                    .iter()
                    .map(|q| (q.quantile, normalize_nan(q.value)))
                    .collect();
                let shape = Shape::Summary(quantiles.iter().map(|q| q.0).collect());
                let start_ms = self.track(
                    name,
                    Kind::Summary,
                    &labels,
                    shape,
                    count,
                    point.created_ms,
                    timestamp_ms,
                );
                Some(Point {
                    labels,
                    start_ms: Some(start_ms),
                    value: Value::Summary {
                        count: normalize_nan(count),
                        sum: point.sum.map(normalize_nan),
                        quantiles,
                        stale: false,
                    },
                })
            })
            .collect()
    }

    /// The scraped labels with the sidecar's added: a scraped label that clashes with an added one
    /// becomes `exported_<name>` (the same value is no clash: the layer's `wx_service` and the
    /// sidecar's usually agree); empty values are dropped; the result is sorted.
    fn labels(&mut self, scraped: &[Label<'_>]) -> Labels {
        let mut labels: Labels = Vec::with_capacity(scraped.len() + self.added.len());
        for label in scraped {
            if label.value.is_empty() || label.name == "__name__" {
                continue;
            }
            let added = self.added.iter().find(|(name, _)| **name == *label.name);
            if added.is_some_and(|(_, value)| **value == *label.value) {
                continue;
            }
            let name = if added.is_some() {
                self.strings.get(&format!("exported_{}", label.name))
            } else {
                self.strings.get(&label.name)
            };
            labels.push((name, self.strings.get(&label.value)));
        }
        labels.extend(self.added.iter().cloned());
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        labels.dedup_by(|a, b| a.0 == b.0);
        labels
    }

    /// Remembers a series and returns the start of its cumulative interval: `_created` when
    /// exposed; else the app's start (wrapper mode) or first sight; a new interval after a reset.
    #[allow(clippy::too_many_arguments)]
    fn track(
        &mut self,
        family: &Arc<str>,
        kind: Kind,
        labels: &Labels,
        shape: Shape,
        value: f64,
        created_ms: Option<i64>,
        timestamp_ms: i64,
    ) -> i64 {
        write_series_key(&mut self.key, &shape, family, labels);
        let generation = self.generation;
        if let Some(seen) = self.seen.get_mut(&self.key) {
            if let Some(created) = created_ms {
                seen.start_ms = created;
            } else if value < seen.last {
                // A counter went down: the app restarted it. The new interval began after the
                // last scrape that saw the old one.
                seen.start_ms = timestamp_ms.saturating_sub(1);
            }
            seen.last = value;
            seen.shape = shape;
            seen.generation = generation;
            return seen.start_ms;
        }
        let start_ms = created_ms.unwrap_or_else(|| {
            self.process_start_ms
                .unwrap_or(timestamp_ms)
                .min(timestamp_ms)
        });
        let seen = Seen {
            family: family.clone(),
            kind,
            labels: labels.clone(),
            shape,
            start_ms,
            last: value,
            generation,
        };
        self.seen.insert(self.key.clone(), seen);
        start_ms
    }
}

/// The identity of a series across scrapes, written into a reused buffer (known series, the
/// common case, then cost no allocation).
fn write_series_key(key: &mut String, shape: &Shape, family: &str, labels: &Labels) {
    key.clear();
    key.push_str(match shape {
        Shape::Number(name) => name,
        Shape::Histogram(_) | Shape::Summary(_) => family,
    });
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
            let batch = converter.convert(&[&page], 1_000 * (round + 1));
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
            converter.strings.strings.len() < 3_000,
            "{} strings kept",
            converter.strings.strings.len()
        );
        assert_eq!(converter.series_count(), 500);
    }

    #[test]
    fn adds_labels_and_renames_clashes() {
        let page = parse(
            "# TYPE jobs_total counter\njobs_total{instance=\"app:80\",queue=\"a\",empty=\"\",wx_service=\"orders\"} 3\n",
            Format::PrometheusText,
        )
        .unwrap();
        let batch = Converter::new(&added(), Some(1_000)).convert(&[&page], 5_000);
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
                value: 3.0
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
        assert_eq!(start(&converter.convert(&[&page(5)], 10_000)), Some(10_000));
        assert_eq!(start(&converter.convert(&[&page(7)], 20_000)), Some(10_000));
        assert_eq!(
            start(&converter.convert(&[&page(1)], 30_000)),
            Some(29_999),
            "reset"
        );
        let created = parse(
            "# TYPE c counter\nc_total 4\nc_created 1700000000.5\n# EOF\n",
            Format::OpenMetrics,
        )
        .unwrap();
        assert_eq!(
            start(&converter.convert(&[&created], 40_000)),
            Some(1_700_000_000_500)
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
        converter.convert(&[&both], 1_000);
        let batch = converter.convert(&[&only_g], 2_000);
        let stale = batch
            .families
            .iter()
            .find(|f| &*f.name == "h")
            .expect("stale histogram");
        match &stale.points[0].value {
            Value::Histogram { buckets, stale, .. } => {
                assert!(stale);
                assert_eq!(buckets.len(), 2);
                assert_eq!(buckets[0].1.to_bits(), STALE_NAN_BITS);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(converter.series_count(), 1);
        let gone = converter.stale_all(3_000);
        assert_eq!(gone.families.len(), 1);
        assert!(gone.families[0].points[0].value.is_stale());
        assert_eq!(converter.series_count(), 0);
    }

    #[test]
    fn real_nans_are_not_stale_markers() {
        let page = parse("g NaN\n", Format::PrometheusText).unwrap();
        let batch = Converter::new(&added(), None).convert(&[&page], 1);
        let Value::Number { value, .. } = batch.families[0].points[0].value else {
            panic!("number")
        };
        assert!(value.is_nan());
        assert_ne!(value.to_bits(), STALE_NAN_BITS);
    }
}
