//! What one scrape becomes once the sidecar has added its labels: the unit every exporter encodes.
//!
//! Families keep the exposition's grouping (OTLP needs histograms whole); each number point keeps
//! the sample name it was exposed under (remote write needs `foo_total`, not the family `foo`).
//!
//! Exemplars are kept where remote write and OTLP both have a place for them: on number points
//! (a counter's `_total`, a gauge, an untyped sample) and on histogram buckets. One on a
//! histogram's `_sum` or `_count`, or on a summary's line, is left out (OpenMetrics allows them
//! only on `_total` and `_bucket` lines, and OTLP has none on summaries).

use std::sync::Arc;

/// A label set, sorted by name, without `__name__`, no empty values.
pub type Labels = Vec<(Arc<str>, Arc<str>)>;

/// A point's label set: its own labels and the sidecar's (`instance`, `wx_env`, `wx_service`,
/// `--label`s), read as one set sorted by name ([`iter`](Self::iter)).
///
/// The sidecar's labels are the same on every point of a scrape, so the points share one copy:
/// copied into each point they were 32 bytes a label a series, 64–96 bytes a series of a page of
/// tiny series, a third of its batch.
#[derive(Clone, Default)]
pub struct PointLabels {
    /// Sorted by name; no name of `shared`.
    own: Labels,
    /// Sorted by name.
    shared: Option<Arc<Labels>>,
}

impl PointLabels {
    /// `own` and `shared` as the converter makes them: each without empty values, sorted by
    /// name, names unique, and no name in both (a scraped label that clashes with one of the
    /// sidecar's is renamed `exported_<name>`). Unchecked: [`with_shared`](Self::with_shared)
    /// takes labels as anyone may have them.
    pub(crate) fn new(own: Labels, shared: Option<Arc<Labels>>) -> Self {
        debug_assert!(is_normal(&own));
        debug_assert!(shared.as_deref().is_none_or(is_normal));
        PointLabels { own, shared }
    }

    /// A point's `own` labels and the labels it shares with other points, as anyone may have
    /// them: empty names and values are dropped, each list is sorted by name keeping the first
    /// label of a name, and an own label named like a shared one is dropped (the shared labels
    /// are the sidecar's, and the sidecar's win, as they do in remote write).
    pub fn with_shared(own: Labels, mut shared: Arc<Labels>) -> Self {
        if !is_normal(&shared) {
            normalize(Arc::make_mut(&mut shared));
        }
        let mut own = PointLabels::from(own).own;
        own.retain(|(name, _)| shared.binary_search_by(|s| s.0.cmp(name)).is_err());
        let shared = (!shared.is_empty()).then_some(shared);
        PointLabels { own, shared }
    }

    /// The point's own labels, if the rest are `shared` itself (not only an equal list).
    pub(crate) fn own_beside(&self, shared: &Arc<Labels>) -> Option<&[(Arc<str>, Arc<str>)]> {
        let ours = self.shared.as_ref()?;
        Arc::ptr_eq(ours, shared).then_some(self.own.as_slice())
    }

    /// The labels, sorted by name.
    pub fn iter(&self) -> Merged<'_> {
        Merged {
            own: &self.own,
            shared: self.shared.as_deref().map_or(&[], Vec::as_slice),
        }
    }

    /// How many labels there are.
    pub fn len(&self) -> usize {
        self.own.len() + self.shared.as_ref().map_or(0, |s| s.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of the label called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| &**n == name).map(|(_, v)| &**v)
    }

    /// The labels, sorted by name, in one vector.
    pub fn to_vec(&self) -> Labels {
        self.iter().cloned().collect()
    }
}

/// A label set of the point's own labels alone, as anyone may have them: empty names and values
/// dropped, sorted by name, the first label of a name kept.
impl From<Labels> for PointLabels {
    fn from(own: Labels) -> Self {
        PointLabels {
            own: normalized(own),
            shared: None,
        }
    }
}

/// Whether `labels` have no empty name or value and are sorted by name, names unique.
fn is_normal(labels: &Labels) -> bool {
    labels.is_sorted_by(|a, b| a.0 < b.0)
        && labels.iter().all(|(n, v)| !n.is_empty() && !v.is_empty())
}

/// `labels` with empty names and values dropped, then sorted by name keeping the first label of
/// a name (the order in which remote write reads a hand-built label list).
pub(crate) fn normalized(mut labels: Labels) -> Labels {
    if !is_normal(&labels) {
        normalize(&mut labels);
    }
    labels
}

fn normalize(labels: &mut Labels) {
    labels.retain(|(n, v)| !n.is_empty() && !v.is_empty());
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    labels.dedup_by(|later, earlier| later.0 == earlier.0);
}

impl PartialEq for PointLabels {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for PointLabels {}

impl PartialOrd for PointLabels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PointLabels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.iter().cmp(other.iter())
    }
}

impl std::fmt::Debug for PointLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a PointLabels {
    type Item = &'a (Arc<str>, Arc<str>);
    type IntoIter = Merged<'a>;
    fn into_iter(self) -> Merged<'a> {
        self.iter()
    }
}

/// The labels of a [`PointLabels`], sorted by name: its two sorted lists merged.
#[derive(Clone, Debug)]
pub struct Merged<'a> {
    own: &'a [(Arc<str>, Arc<str>)],
    shared: &'a [(Arc<str>, Arc<str>)],
}

impl<'a> Iterator for Merged<'a> {
    type Item = &'a (Arc<str>, Arc<str>);

    fn next(&mut self) -> Option<Self::Item> {
        let take_own = match (self.own.first(), self.shared.first()) {
            (Some(own), Some(shared)) => own.0 <= shared.0,
            (own, _) => own.is_some(),
        };
        let list = if take_own {
            &mut self.own
        } else {
            &mut self.shared
        };
        let (first, rest) = list.split_first()?;
        *list = rest;
        Some(first)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.own.len() + self.shared.len();
        (len, Some(len))
    }
}

impl ExactSizeIterator for Merged<'_> {}

/// The stale marker of the remote-write spec: a NaN with this exact bit pattern, never used for a
/// real value (real NaNs are normalised to the canonical quiet NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// One scrape, ready to export.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// When the scrape started, in milliseconds since the Unix epoch: every point's timestamp.
    pub timestamp_ms: i64,
    /// The families, in exposition order.
    pub families: Vec<Family>,
}

impl Batch {
    /// How many remote-write samples the batch holds (a histogram point is `_bucket`s + sum + count).
    pub fn sample_count(&self) -> usize {
        self.families
            .iter()
            .flat_map(|family| &family.points)
            .map(Point::sample_count)
            .sum()
    }
}

/// The type of a family, as exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Monotonic, cumulative.
    Counter,
    /// Any value.
    Gauge,
    /// No `# TYPE`, or `unknown`: exported as a gauge.
    Unknown,
    /// Cumulative buckets, sum and count.
    Histogram,
    /// Quantiles, sum and count.
    Summary,
    /// OpenMetrics `info`, `stateset`, `gaugehistogram`: numbers, exported as they are exposed.
    Other,
}

/// A metric family.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The family name (`http_server_request_duration_seconds`; `foo` for an OpenMetrics counter
    /// exposed as `foo_total`).
    pub name: Arc<str>,
    /// `# HELP`, unescaped; empty when absent.
    pub help: Arc<str>,
    /// `# UNIT` (OpenMetrics); empty when absent.
    pub unit: Arc<str>,
    /// The type.
    pub kind: Kind,
    /// The points, one per label set.
    pub points: Vec<Point>,
}

/// One label set's value in a family.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The labels, the sidecar's own included.
    pub labels: PointLabels,
    /// Start of the cumulative interval (counters, histograms, summaries), in milliseconds since
    /// the epoch: `_created` when exposed, else the app's start in wrapper mode, else first sight.
    pub start_ms: Option<i64>,
    /// The value.
    pub value: Value,
}

impl Point {
    /// How many remote-write samples this point becomes.
    pub fn sample_count(&self) -> usize {
        match &self.value {
            Value::Number { .. } => 1,
            Value::Histogram(h) => h.buckets.len() + 1 + usize::from(h.sum.is_some()),
            Value::Summary(s) => s.quantiles.len() + 1 + usize::from(s.sum.is_some()),
        }
    }
}

/// A traced observation behind a sample, from OpenMetrics' `# {trace_id="…",span_id="…"} 0.042
/// 1700000000.123` after it.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// Its labels as exposed, in page order (the layer's are `trace_id` and `span_id`, in hex).
    pub labels: Vec<(Box<str>, Box<str>)>,
    /// The observed value (NaN normalised).
    pub value: f64,
    /// When it was observed, in milliseconds since the epoch, if exposed.
    pub timestamp_ms: Option<i64>,
}

impl Exemplar {
    /// The model's copy of a parsed exemplar.
    pub fn of(parsed: &wxcloudrun_exposition::Exemplar<'_>) -> Exemplar {
        Exemplar {
            labels: parsed
                .labels
                .iter()
                .map(|label| (Box::from(&*label.name), Box::from(&*label.value)))
                .collect(),
            value: normalize_nan(parsed.value),
            timestamp_ms: parsed.timestamp_ms,
        }
    }

    /// The value of the label called `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        let mut labels = self.labels.iter();
        labels.find(|(n, _)| &**n == name).map(|(_, v)| &**v)
    }
}

/// The exemplars of a histogram's buckets, by bucket position, ascending. Most histograms have
/// none; then this is one word and no allocation.
#[derive(Clone, Debug, Default, PartialEq)]
// Boxed: one word in every histogram value instead of a `Vec`'s three, for the rare one that has
// exemplars.
#[allow(clippy::box_collection)]
pub struct BucketExemplars(Option<Box<Vec<(u32, Exemplar)>>>);

impl BucketExemplars {
    /// Adds the exemplar of bucket `bucket`, which comes after every bucket added so far (else it
    /// is not added: a bucket has one exemplar, in order).
    pub fn push(&mut self, bucket: usize, exemplar: Exemplar) {
        let Ok(bucket) = u32::try_from(bucket) else {
            return;
        };
        let list = self.0.get_or_insert_with(Box::default);
        if list.last().is_none_or(|(last, _)| *last < bucket) {
            list.push((bucket, exemplar));
        }
    }

    /// The exemplar of bucket `bucket`, if it has one.
    pub fn of(&self, bucket: usize) -> Option<&Exemplar> {
        let list = self.0.as_deref()?;
        let bucket = u32::try_from(bucket).ok()?;
        let at = list.binary_search_by_key(&bucket, |(b, _)| *b).ok()?;
        list.get(at).map(|(_, exemplar)| exemplar)
    }

    /// Every exemplar with its bucket's position, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Exemplar)> {
        let list = self.0.as_deref().map_or(&[][..], Vec::as_slice);
        list.iter().map(|(b, exemplar)| (*b as usize, exemplar))
    }

    /// Whether no bucket has an exemplar.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|list| list.is_empty())
    }
}

/// A point's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A counter, gauge or untyped sample.
    Number {
        /// The sample name as exposed (`foo_total`, `up`, `info_metric_info`).
        name: Arc<str>,
        /// The value; [`STALE_NAN_BITS`] marks a series that disappeared.
        value: f64,
        /// The sample's exemplar, if it has one.
        exemplar: Option<Box<Exemplar>>,
    },
    /// A histogram. Boxed, as is a summary: a value (most are numbers) is then 40 bytes, not 64.
    Histogram(Box<Histogram>),
    /// A summary.
    Summary(Box<Summary>),
}

/// A histogram point: cumulative buckets as exposed (upper bound, cumulative count), `+Inf` last.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// `_count`.
    pub count: f64,
    /// `_sum`, when exposed.
    pub sum: Option<f64>,
    /// `(le, cumulative count)`, increasing `le`, ending with `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    /// The buckets' exemplars.
    pub exemplars: BucketExemplars,
    /// The whole point is a stale marker (the series disappeared).
    pub stale: bool,
}

/// A summary point.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// `_count`.
    pub count: f64,
    /// `_sum`, when exposed.
    pub sum: Option<f64>,
    /// `(quantile, value)`.
    pub quantiles: Vec<(f64, f64)>,
    /// The whole point is a stale marker.
    pub stale: bool,
}

impl Value {
    /// Whether this value marks a series that disappeared.
    pub fn is_stale(&self) -> bool {
        match self {
            Value::Number { value, .. } => value.to_bits() == STALE_NAN_BITS,
            Value::Histogram(histogram) => histogram.stale,
            Value::Summary(summary) => summary.stale,
        }
    }
}

/// The canonical quiet NaN for a real NaN, so it can never be read as a stale marker.
pub fn normalize_nan(value: f64) -> f64 {
    if value.is_nan() { f64::NAN } else { value }
}

/// A stale marker.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
            .collect()
    }

    #[test]
    fn point_labels_read_as_one_sorted_set_however_they_are_split() {
        let own = labels(&[("a", "1"), ("m", "2"), ("zz", "3")]);
        let shared = Arc::new(labels(&[("b", "s"), ("instance", "pod"), ("zzz", "t")]));
        let split = PointLabels::new(own.clone(), Some(Arc::clone(&shared)));
        let names: Vec<&str> = split.iter().map(|(n, _)| &**n).collect();
        assert_eq!(names, ["a", "b", "instance", "m", "zz", "zzz"]);
        assert_eq!(split.iter().len(), 6);
        assert_eq!(split.len(), 6);
        let mut whole = own;
        whole.extend(shared.iter().cloned());
        let whole = PointLabels::from(whole);
        assert_eq!(split, whole);
        assert_eq!(split.cmp(&whole), std::cmp::Ordering::Equal);
        assert_eq!(split.to_vec(), whole.to_vec());
        assert_eq!(split.get("instance"), Some("pod"));
        assert_eq!(split.get("zzz"), Some("t"));
        assert_eq!(split.get("nope"), None);
        let only_shared = PointLabels::new(Vec::new(), Some(shared));
        assert_eq!(only_shared.iter().count(), 3);
        assert!(PointLabels::default().is_empty());
        assert_eq!(
            format!("{:?}", PointLabels::from(labels(&[("k", "v")]))),
            "[(\"k\", \"v\")]"
        );
    }

    #[test]
    fn a_point_stays_small() {
        // A batch holds one per series: 104 bytes (plus 32 a label of the sidecar's) before
        // those labels were shared and histograms and summaries boxed; 88 on 64-bit targets now:
        // labels 32, start 16, value 40.
        let (point, value) = (size_of::<Point>(), size_of::<Value>());
        assert!(point <= 11 * size_of::<usize>(), "{point}");
        assert!(value <= 5 * size_of::<usize>(), "{value}");
    }

    #[test]
    fn own_labels_alone_are_sorted_and_the_first_of_a_name_kept() {
        let point = PointLabels::from(labels(&[("z", "1"), ("a", "first"), ("a", "second")]));
        assert_eq!(point.to_vec(), labels(&[("a", "first"), ("z", "1")]));
        // Empty values go before duplicates are removed: `a=""` does not hide `a="x"`.
        let point = PointLabels::from(labels(&[("a", ""), ("a", "x"), ("", "v"), ("b", "1")]));
        assert_eq!(point.to_vec(), labels(&[("a", "x"), ("b", "1")]));
    }

    #[test]
    fn labels_as_anyone_may_have_them_are_made_a_set_where_shared_labels_win() {
        let own = labels(&[("zone", "z"), ("instance", "app"), ("a", ""), ("a", "1")]);
        let shared = Arc::new(labels(&[
            ("wx_service", "orders"),
            ("instance", "pod"),
            ("e", ""),
        ]));
        let point = PointLabels::with_shared(own, shared);
        let expected = labels(&[
            ("a", "1"),
            ("instance", "pod"),
            ("wx_service", "orders"),
            ("zone", "z"),
        ]);
        assert_eq!(point.to_vec(), expected);
        assert_eq!(point.len(), 4);
        let point = PointLabels::with_shared(labels(&[("k", "v")]), Arc::new(Vec::new()));
        assert_eq!(point.iter().len(), 1);
    }
}
