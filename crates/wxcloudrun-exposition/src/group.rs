//! Histograms and summaries as points: the samples of one label set merged, as an OTLP exporter
//! needs them (protocols.md §5).

use std::collections::HashMap;

use crate::lexer::parse_float;
use crate::model::{Exemplar, Label, MetricFamily, MetricType, Sample};
use crate::parser::series_key;

/// One histogram label set: its buckets, sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPoint<'a> {
    /// The label set without `le`, in page order.
    pub labels: Vec<Label<'a>>,
    /// The `_bucket` samples sorted by upper bound, counts cumulative as exposed, `+Inf`
    /// included when exposed.
    pub buckets: Vec<Bucket<'a>>,
    /// `_count` (`_gcount` for a gauge histogram), if exposed.
    pub count: Option<f64>,
    /// `_sum` (`_gsum`), if exposed.
    pub sum: Option<f64>,
    /// The first sample timestamp found among the point's samples.
    pub timestamp_ms: Option<i64>,
    /// The start time from OpenMetrics `_created`.
    pub created_ms: Option<i64>,
}

/// One `_bucket{le}` sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket<'a> {
    /// `le` parsed as a float (`"1"`, `"1.0"` and `"1e+00"` are the same bound).
    pub upper_bound: f64,
    /// The cumulative count: observations ≤ `upper_bound`.
    pub cumulative_count: f64,
    /// The bucket's exemplar.
    pub exemplar: Option<Exemplar<'a>>,
}

/// One summary label set.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryPoint<'a> {
    /// The label set without `quantile`, in page order.
    pub labels: Vec<Label<'a>>,
    /// The quantiles sorted by quantile.
    pub quantiles: Vec<Quantile>,
    /// `_count`, if exposed.
    pub count: Option<f64>,
    /// `_sum`, if exposed (OTLP: 0 when missing).
    pub sum: Option<f64>,
    /// The first sample timestamp found among the point's samples.
    pub timestamp_ms: Option<i64>,
    /// The start time from OpenMetrics `_created`.
    pub created_ms: Option<i64>,
}

/// One `{quantile="…"}` sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantile {
    /// The `quantile` label as a float.
    pub quantile: f64,
    /// The value (NaN when the summary has no observations in its window).
    pub value: f64,
}

/// Why a family could not be grouped into points.
///
/// A bucket or quantile without a usable bound is no error: it is left out of the points and
/// listed by [`MetricFamily::samples_without_bound`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// `histogram_points` on a non-histogram, or `summary_points` on a non-summary.
    #[error("metric family {family:?} is not a {expected}")]
    WrongType {
        /// The family name.
        family: String,
        /// `histogram` or `summary`.
        expected: &'static str,
    },
}

impl<'a> MetricFamily<'a> {
    /// Groups a histogram (or gauge histogram) family by label set minus `le`, in order of first
    /// appearance, whatever the order of the lines (label sets may interleave).
    ///
    /// ```
    /// use wxcloudrun_exposition::{Format, parse};
    ///
    /// let page = "# TYPE rpc_seconds histogram\n\
    ///     rpc_seconds_bucket{le=\"0.1\"} 3\n\
    ///     rpc_seconds_bucket{le=\"0.5\"} 7\n\
    ///     rpc_seconds_bucket{le=\"+Inf\"} 10\n\
    ///     rpc_seconds_sum 2.5\n\
    ///     rpc_seconds_count 10\n";
    /// let exposition = parse(page, Format::PrometheusText)?;
    /// let points = exposition.families[0].histogram_points()?;
    /// let bounds: Vec<(f64, f64)> = points[0]
    ///     .buckets
    ///     .iter()
    ///     .map(|b| (b.upper_bound, b.cumulative_count))
    ///     .collect();
    /// assert_eq!(bounds, [(0.1, 3.0), (0.5, 7.0), (f64::INFINITY, 10.0)]);
    /// assert_eq!((points[0].count, points[0].sum), (Some(10.0), Some(2.5)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn histogram_points(&self) -> Result<Vec<HistogramPoint<'a>>, GroupError> {
        let (sum_suffix, count_suffix) = match self.metric_type {
            MetricType::Histogram => ("_sum", "_count"),
            MetricType::GaugeHistogram => ("_gsum", "_gcount"),
            _ => return Err(self.wrong_type("histogram")),
        };
        let mut points: Vec<HistogramPoint<'a>> = Vec::new();
        let mut index = PointIndex::new("le");
        for sample in &self.samples {
            let suffix = sample.name.strip_prefix(self.name.as_ref()).unwrap_or("");
            let upper_bound = if suffix == "_bucket" {
                match bound(sample, "le") {
                    Some(upper_bound) => Some(upper_bound),
                    None => continue, // listed by `samples_without_bound`
                }
            } else {
                None
            };
            let slot = index.slot(sample, || {
                points.push(HistogramPoint {
                    labels: labels_without(sample, "le"),
                    buckets: Vec::new(),
                    count: None,
                    sum: None,
                    timestamp_ms: None,
                    created_ms: None,
                });
                points.len() - 1
            });
            let Some(point) = points.get_mut(slot) else {
                continue;
            };
            point.timestamp_ms = point.timestamp_ms.or(sample.timestamp_ms.get());
            point.created_ms = point.created_ms.or(sample.created_ms.get());
            if let Some(upper_bound) = upper_bound {
                point.buckets.push(Bucket {
                    upper_bound,
                    cumulative_count: sample.value,
                    exemplar: sample.exemplar.as_deref().cloned(),
                });
            } else if suffix == sum_suffix {
                point.sum = Some(sample.value);
            } else if suffix == count_suffix {
                point.count = Some(sample.value);
            }
        }
        for point in &mut points {
            point
                .buckets
                .sort_by(|a, b| a.upper_bound.total_cmp(&b.upper_bound));
        }
        Ok(points)
    }

    /// Groups a summary family by label set minus `quantile`, in order of first appearance.
    pub fn summary_points(&self) -> Result<Vec<SummaryPoint<'a>>, GroupError> {
        if self.metric_type != MetricType::Summary {
            return Err(self.wrong_type("summary"));
        }
        let mut points: Vec<SummaryPoint<'a>> = Vec::new();
        let mut index = PointIndex::new("quantile");
        for sample in &self.samples {
            let suffix = sample.name.strip_prefix(self.name.as_ref()).unwrap_or("");
            let quantile = if suffix.is_empty() {
                match bound(sample, "quantile") {
                    Some(quantile) => Some(quantile),
                    None => continue, // listed by `samples_without_bound`
                }
            } else {
                None
            };
            let slot = index.slot(sample, || {
                points.push(SummaryPoint {
                    labels: labels_without(sample, "quantile"),
                    quantiles: Vec::new(),
                    count: None,
                    sum: None,
                    timestamp_ms: None,
                    created_ms: None,
                });
                points.len() - 1
            });
            let Some(point) = points.get_mut(slot) else {
                continue;
            };
            point.timestamp_ms = point.timestamp_ms.or(sample.timestamp_ms.get());
            point.created_ms = point.created_ms.or(sample.created_ms.get());
            match (quantile, suffix) {
                (Some(quantile), _) => point.quantiles.push(Quantile {
                    quantile,
                    value: sample.value,
                }),
                (None, "_sum") => point.sum = Some(sample.value),
                (None, "_count") => point.count = Some(sample.value),
                _ => {}
            }
        }
        for point in &mut points {
            point
                .quantiles
                .sort_by(|a, b| a.quantile.total_cmp(&b.quantile));
        }
        Ok(points)
    }

    /// The samples [`histogram_points`](Self::histogram_points) and
    /// [`summary_points`](Self::summary_points) leave out: a histogram's `_bucket` (or a gauge
    /// histogram's) or a summary's quantile sample whose `le` / `quantile` is missing or not a
    /// number. Prometheus stores them as written (`h_bucket{le="fast"}`); no point can hold them.
    /// Empty for other types.
    ///
    /// ```
    /// use wxcloudrun_exposition::{Format, parse};
    ///
    /// let page = "# TYPE h histogram\n\
    ///     h_bucket{le=\"fast\"} 1\n\
    ///     h_bucket{le=\"+Inf\"} 2\n\
    ///     h_count 2\n";
    /// let exposition = parse(page, Format::PrometheusText)?;
    /// let family = &exposition.families[0];
    /// assert_eq!(family.histogram_points()?[0].buckets.len(), 1);
    /// let left_out: Vec<_> = family.samples_without_bound().collect();
    /// assert_eq!(left_out[0].label("le"), Some("fast"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn samples_without_bound(&self) -> impl Iterator<Item = &Sample<'a>> + '_ {
        let (suffix, label) = match self.metric_type {
            MetricType::Histogram | MetricType::GaugeHistogram => ("_bucket", "le"),
            MetricType::Summary => ("", "quantile"),
            _ => ("", ""),
        };
        self.samples.iter().filter(move |sample| {
            !label.is_empty()
                && sample.name.strip_prefix(self.name.as_ref()) == Some(suffix)
                && bound(sample, label).is_none()
        })
    }

    fn wrong_type(&self, expected: &'static str) -> GroupError {
        GroupError::WrongType {
            family: self.name.to_string(),
            expected,
        }
    }
}

/// Finds the point each sample of a histogram or summary belongs to.
struct PointIndex<'s, 'a> {
    /// The label that tells a point's samples apart (`le`, `quantile`).
    excluded: &'static str,
    by_labels: HashMap<Vec<(&'s str, &'s str)>, usize, foldhash::quality::RandomState>,
    /// The last sample and its point: the next line almost always belongs there too.
    previous: Option<(&'s Sample<'a>, usize)>,
}

impl<'s, 'a> PointIndex<'s, 'a> {
    fn new(excluded: &'static str) -> Self {
        PointIndex {
            excluded,
            by_labels: HashMap::default(),
            previous: None,
        }
    }

    /// The index of `sample`'s point; `new_point` creates it and returns its index.
    fn slot(&mut self, sample: &'s Sample<'a>, new_point: impl FnOnce() -> usize) -> usize {
        let slot = match self.previous {
            Some((last, slot)) if same_in_order(&last.labels, &sample.labels, self.excluded) => {
                slot
            }
            _ => *self
                .by_labels
                .entry(series_key(&sample.labels, &[self.excluded]))
                .or_insert_with(new_point),
        };
        self.previous = Some((sample, slot));
        slot
    }
}

/// Whether two label sets are one series once `excluded` and empty values are set aside, judged
/// in page order. Cheap, and true for consecutive lines of one point as every client writes them;
/// `false` only sends the caller to its index.
fn same_in_order(a: &[Label<'_>], b: &[Label<'_>], excluded: &str) -> bool {
    let kept = |label: &&Label<'_>| !label.value.is_empty() && label.name != excluded;
    a.iter().filter(kept).eq(b.iter().filter(kept))
}

fn labels_without<'a>(sample: &Sample<'a>, excluded: &str) -> Vec<Label<'a>> {
    sample
        .labels
        .iter()
        .filter(|l| l.name != excluded)
        .cloned()
        .collect()
}

/// The sample's `label` (`le`, `quantile`) as a number, if it is one (Go `ParseFloat` syntax,
/// NaN and infinities included: what Prometheus 3 normalises).
fn bound(sample: &Sample<'_>, label: &str) -> Option<f64> {
    parse_float(sample.label(label)?)
}
