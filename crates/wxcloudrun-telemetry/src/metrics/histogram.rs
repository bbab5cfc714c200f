//! A histogram family that costs two relaxed atomic adds per observation, registered in a
//! `prometheus::Registry` like any other collector.
//!
//! `prometheus::Histogram` spends four read-modify-write operations per observation (a hot/cold
//! shard switch, the bucket, a compare-and-swap loop on an `f64` sum, the count) so that a scrape
//! never sees a count that disagrees with the buckets. Here observations are integers (nanoseconds,
//! bytes), the count is the sum of the buckets, so the two always agree, and the sum is an integer
//! add. What a scrape can still see is the sum of an observation whose bucket it has not seen yet
//! (or the reverse): one observation, in a value only ever used in rates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto;

use super::exemplar::{Exemplar, ExemplarSlot, SampledRequest};

/// One series: its buckets (the last one is `+Inf`) and its sum, in the family's unit.
#[derive(Clone)]
pub(crate) struct Histogram(Arc<Core>);

struct Core {
    /// Upper bounds in the family's unit, in increasing order (`+Inf` not included).
    bounds: Arc<[u64]>,
    /// Observations per bucket, not cumulative; one more than `bounds`.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    /// One per bucket in a family that keeps exemplars, else empty.
    exemplars: Box<[ExemplarSlot]>,
}

impl Histogram {
    fn new(bounds: Arc<[u64]>, exemplars: bool) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        let slots = if exemplars { bounds.len() + 1 } else { 0 };
        Histogram(Arc::new(Core {
            bounds,
            counts,
            sum: AtomicU64::new(0),
            exemplars: (0..slots).map(|_| ExemplarSlot::default()).collect(),
        }))
    }

    /// Records one observation, in the family's unit (see [`HistogramFamily::new`]).
    pub(crate) fn observe(&self, value: u64) {
        self.record(value);
    }

    /// Records one observation of a sampled request and, in a family that keeps exemplars,
    /// makes it its bucket's exemplar.
    pub(crate) fn observe_sampled(&self, value: u64, request: &SampledRequest) {
        let bucket = self.record(value);
        // After the count: a scrape that reads the exemplar also sees its observation.
        if let Some(slot) = self.0.exemplars.get(bucket) {
            slot.store(request, value);
        }
    }

    /// Counts `value`; returns its bucket.
    #[inline]
    fn record(&self, value: u64) -> usize {
        let core = &*self.0;
        // The first bound that is not below the value; past the last one, `+Inf`.
        let bucket = core.bounds.partition_point(|&bound| bound < value);
        if let Some(count) = core.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        core.sum.fetch_add(value, Ordering::Relaxed);
        bucket
    }

    /// The number of observations so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }
}

/// The series of one histogram metric, by label values.
#[derive(Clone)]
pub(crate) struct HistogramFamily(Arc<Family>);

struct Family {
    desc: Desc,
    /// Bucket bounds as configured, for the `le` labels.
    bounds: Vec<f64>,
    /// The same bounds in the observation unit.
    unit_bounds: Arc<[u64]>,
    /// Observation units per exposed unit (`1e9` for nanoseconds exposed as seconds). A divisor,
    /// not a factor: dividing by the exact `1e9` rounds once, multiplying by the inexact `1e-9`
    /// shows its error (30.020000001000003).
    units_per_exposed: f64,
    /// By label values: the label pairs to expose (built once) and the series.
    series: Mutex<HashMap<Vec<String>, Series>>,
    /// Whether the series keep an exemplar per bucket.
    exemplars: bool,
}

type Series = (Vec<proto::LabelPair>, Histogram);

/// The exemplars of a family at one instant, by series, for the OpenMetrics rendering.
pub(crate) struct ExemplarSnapshot {
    /// Keyed by the label values in the order they are exposed (sorted by label name), like the
    /// label pairs of a gathered `proto::Metric`; only series with at least one exemplar.
    by_series: HashMap<Vec<String>, Box<[Option<Exemplar>]>>,
    units_per_exposed: f64,
}

impl ExemplarSnapshot {
    /// The exemplars of the series with these label pairs, one per bucket (the last is `+Inf`).
    pub(crate) fn of(&self, labels: &[proto::LabelPair]) -> Option<&[Option<Exemplar>]> {
        if self.by_series.is_empty() {
            return None;
        }
        let key: Vec<String> = labels.iter().map(|pair| pair.value().to_owned()).collect();
        self.by_series.get(&key).map(|slots| &**slots)
    }

    /// An exemplar's value in the exposed unit.
    pub(crate) fn exposed(&self, exemplar: &Exemplar) -> f64 {
        exemplar.value as f64 / self.units_per_exposed
    }
}

impl HistogramFamily {
    /// A family named `name` with the labels `label_names` and the upper `bounds`, given in the
    /// exposed unit (seconds, bytes); observations are integers, `units_per_exposed` of them to
    /// the exposed unit: `1e9` records nanoseconds into a histogram of seconds.
    pub(crate) fn new(
        name: &str,
        help: &str,
        label_names: &[&str],
        bounds: &[f64],
        units_per_exposed: f64,
    ) -> prometheus::Result<Self> {
        Self::with_exemplars(name, help, label_names, bounds, units_per_exposed, false)
    }

    /// A family as [`new`](Self::new) makes it; with `exemplars`, each series keeps the latest
    /// sampled observation of each bucket (see [`Histogram::observe_sampled`]).
    pub(crate) fn with_exemplars(
        name: &str,
        help: &str,
        label_names: &[&str],
        bounds: &[f64],
        units_per_exposed: f64,
        exemplars: bool,
    ) -> prometheus::Result<Self> {
        let desc = Desc::new(
            name.to_owned(),
            help.to_owned(),
            label_names.iter().map(|&label| label.to_owned()).collect(),
            HashMap::new(),
        )?;
        // Observations are whole units, so `x <= bound` is `x <= floor(bound * units)`; rounding
        // first absorbs the float error of the product.
        let unit_bounds = bounds
            .iter()
            .map(|bound| {
                let scaled = bound * units_per_exposed;
                let rounded = scaled.round();
                let whole = if (scaled - rounded).abs() < 1e-6 {
                    rounded
                } else {
                    scaled.floor()
                };
                // Saturating: a bound past u64::MAX units holds every observation.
                whole as u64
            })
            .collect();
        Ok(HistogramFamily(Arc::new(Family {
            desc,
            bounds: bounds.to_vec(),
            unit_bounds,
            units_per_exposed,
            series: Mutex::default(),
            exemplars,
        })))
    }

    /// A family as [`new`](Self::new) makes it, registered in `registry`.
    pub(crate) fn register(
        registry: &prometheus::Registry,
        (name, help): (&str, &str),
        label_names: &[&str],
        bounds: &[f64],
        units_per_exposed: f64,
    ) -> prometheus::Result<Self> {
        let family = Self::new(name, help, label_names, bounds, units_per_exposed)?;
        registry.register(Box::new(family.clone()))?;
        Ok(family)
    }

    /// The family's name, as exposed.
    pub(crate) fn name(&self) -> &str {
        &self.0.desc.fq_name
    }

    /// The exemplars of every series now. Take it before gathering the registry: an exemplar
    /// is stored after its observation is counted, so the counts gathered later include it.
    pub(crate) fn exemplars(&self) -> ExemplarSnapshot {
        let family = &*self.0;
        let mut by_series = HashMap::new();
        if family.exemplars {
            let series = family.series.lock().unwrap_or_else(PoisonError::into_inner);
            for (pairs, histogram) in series.values() {
                let slots: Box<[Option<Exemplar>]> = histogram
                    .0
                    .exemplars
                    .iter()
                    .map(ExemplarSlot::load)
                    .collect();
                if slots.iter().any(Option::is_some) {
                    let key = pairs.iter().map(|pair| pair.value().to_owned()).collect();
                    by_series.insert(key, slots);
                }
            }
        }
        ExemplarSnapshot {
            by_series,
            units_per_exposed: family.units_per_exposed,
        }
    }

    /// The series with these label values, one per label name and in the same order, created on
    /// first use. Callers keep the handle: this takes a lock and allocates.
    pub(crate) fn with_label_values(&self, values: &[&str]) -> Histogram {
        let family = &*self.0;
        let names = &family.desc.variable_labels;
        debug_assert_eq!(names.len(), values.len(), "one value per label");
        let key: Vec<String> = values.iter().map(|&value| value.to_owned()).collect();
        let mut series = family.series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, histogram)) = series.get(&key) {
            return histogram.clone();
        }
        // Sorted by name, as every `prometheus` metric's labels are.
        let mut pairs: Vec<proto::LabelPair> = names
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let mut pair = proto::LabelPair::default();
                pair.set_name(name.clone());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect();
        pairs.sort_by(|a, b| a.name().cmp(b.name()));
        let histogram = Histogram::new(family.unit_bounds.clone(), family.exemplars);
        series.insert(key, (pairs, histogram.clone()));
        histogram
    }
}

impl Collector for HistogramFamily {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let family = &*self.0;
        let series = family.series.lock().unwrap_or_else(PoisonError::into_inner);
        let metrics = series
            .values()
            .map(|(pairs, histogram)| {
                let core = &*histogram.0;
                let mut cumulative = 0;
                let mut buckets = Vec::with_capacity(family.bounds.len());
                for (bound, count) in family.bounds.iter().zip(core.counts.iter()) {
                    cumulative += count.load(Ordering::Relaxed);
                    let mut bucket = proto::Bucket::default();
                    bucket.set_cumulative_count(cumulative);
                    bucket.set_upper_bound(*bound);
                    buckets.push(bucket);
                }
                let beyond = core.counts.last().map_or(0, |c| c.load(Ordering::Relaxed));
                let mut proto_histogram = proto::Histogram::default();
                proto_histogram.set_bucket(buckets);
                proto_histogram.set_sample_count(cumulative + beyond);
                proto_histogram.set_sample_sum(
                    core.sum.load(Ordering::Relaxed) as f64 / family.units_per_exposed,
                );
                let mut metric = proto::Metric::from_label(pairs.clone());
                metric.set_histogram(proto_histogram);
                metric
            })
            .collect();
        let mut metric_family = proto::MetricFamily::default();
        metric_family.set_name(family.desc.fq_name.clone());
        metric_family.set_help(family.desc.help.clone());
        metric_family.set_field_type(proto::MetricType::HISTOGRAM);
        metric_family.set_metric(metrics);
        vec![metric_family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(family: &HistogramFamily) -> String {
        let registry = prometheus::Registry::new();
        registry.register(Box::new(family.clone())).unwrap();
        crate::endpoint::render(&registry)
    }

    #[test]
    fn observations_land_in_the_first_bucket_not_below_them() {
        let family =
            HistogramFamily::new("d_seconds", "d", &["route"], &[0.005, 0.01], 1e9).unwrap();
        let h = family.with_label_values(&["/a"]);
        h.observe(5_000_000); // exactly on the bound: counts in it
        h.observe(5_000_001);
        h.observe(10_000_000);
        h.observe(30_000_000_000);
        let text = render(&family);
        for line in [
            r#"d_seconds_bucket{route="/a",le="0.005"} 1"#,
            r#"d_seconds_bucket{route="/a",le="0.01"} 3"#,
            r#"d_seconds_bucket{route="/a",le="+Inf"} 4"#,
            r#"d_seconds_sum{route="/a"} 30.020000001"#,
            r#"d_seconds_count{route="/a"} 4"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn same_labels_share_a_series_and_labels_are_sorted() {
        let family = HistogramFamily::new("b", "b", &["z", "a"], &[1.0], 1.0).unwrap();
        family.with_label_values(&["1", "2"]).observe(1);
        family.with_label_values(&["1", "2"]).observe(2);
        assert_eq!(family.with_label_values(&["1", "2"]).count(), 2);
        let text = render(&family);
        assert!(text.contains(r#"b_bucket{a="2",z="1",le="1"} 1"#), "{text}");
        assert!(text.contains(r#"b_count{a="2",z="1"} 2"#), "{text}");
    }

    #[test]
    fn registering_the_same_name_twice_is_refused() {
        let registry = prometheus::Registry::new();
        let family = || HistogramFamily::new("x", "x", &["a"], &[1.0], 1.0).unwrap();
        registry.register(Box::new(family())).unwrap();
        assert!(registry.register(Box::new(family())).is_err());
    }
}
