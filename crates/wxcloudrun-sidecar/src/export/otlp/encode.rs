//! OTLP metrics: a [`Batch`] becomes `ExportMetricsServiceRequest`s (protocols.md §5).
//!
//! - Metric name: the **family name** as exposed in `# TYPE` (`http_requests_total` for a text
//!   counter, `http_requests` for an OpenMetrics one), for every kind; description = `# HELP`,
//!   unit = `# UNIT`. Attributes are the point's labels (the sidecar's included).
//! - counter → monotonic cumulative Sum; gauge, unknown → Gauge; info/stateset/gaugehistogram
//!   (`Kind::Other`) → non-monotonic cumulative Sum; histogram → explicit-bucket cumulative
//!   Histogram with per-bucket counts; summary → Summary. A histogram or summary family holding
//!   plain numbers (malformed exposition) exports them as gauges.
//! - Cumulative points carry `start_time_unix_nano` from `Point::start_ms` (0 when unknown).
//! - A stale point carries the `NO_RECORDED_VALUE` flag and no value.
//! - Exemplars (a number's, a histogram's buckets') become the data point's `exemplars`, ids as
//!   bytes (see `exemplar.rs` for ids that are no ids).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric,
    number_data_point, summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::fields::{nanos, string_kv};
use crate::model::{self, Batch, Family, Kind, Point, PointLabels, Value, normalize_nan};

/// Data points per request: keeps a request well below gRPC's usual 4 MiB receive limit.
pub const MAX_POINTS_PER_REQUEST: usize = 2_000;

/// `NO_RECORDED_VALUE`: the OTLP form of a Prometheus stale marker.
const NO_RECORDED_VALUE: u32 = DataPointFlags::NoRecordedValueMask as u32;

/// One request and the number of (remote-write style) samples it carries.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The request.
    pub request: ExportMetricsServiceRequest,
    /// Samples in it (`Point::sample_count`), for the dropped-samples counters.
    pub samples: u64,
}

/// The batch as requests of at most [`MAX_POINTS_PER_REQUEST`] data points; a large family is
/// split across requests, keeping its points in order.
pub fn encode(batch: &Batch, resource: &[(String, String)]) -> Vec<Encoded> {
    let resource = Resource {
        attributes: resource.iter().map(|(k, v)| string_kv(k, v)).collect(),
        ..Default::default()
    };
    let time = nanos(batch.timestamp_ms);
    let mut out = Vec::new();
    let mut metrics = Vec::new();
    let mut room = MAX_POINTS_PER_REQUEST;
    let mut samples = 0;
    let flush = |metrics: &mut Vec<Metric>, samples: &mut u64, out: &mut Vec<Encoded>| {
        if metrics.is_empty() {
            return;
        }
        out.push(Encoded {
            request: request(&resource, std::mem::take(metrics)),
            samples: std::mem::take(samples),
        });
    };
    for family in &batch.families {
        let mut points = family.points.as_slice();
        while !points.is_empty() {
            let take = points.len().min(room);
            let (chunk, rest) = points.split_at(take);
            metrics.extend(metrics_of(family, chunk, time));
            samples += chunk.iter().map(|p| p.sample_count() as u64).sum::<u64>();
            points = rest;
            room -= take;
            if room == 0 {
                flush(&mut metrics, &mut samples, &mut out);
                room = MAX_POINTS_PER_REQUEST;
            }
        }
    }
    flush(&mut metrics, &mut samples, &mut out);
    out
}

fn request(resource: &Resource, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "wxcloudrun-sidecar".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The metrics for some points of one family: one metric, or for a histogram/summary family
/// with stray number points, the structured metric plus a gauge.
fn metrics_of(family: &Family, points: &[Point], time: u64) -> Vec<Metric> {
    let metric = |data| Metric {
        name: family.name.to_string(),
        description: family.help.to_string(),
        unit: family.unit.to_string(),
        metadata: Vec::new(),
        data: Some(data),
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    let numbers = || -> Vec<NumberDataPoint> {
        points
            .iter()
            .filter_map(|p| number_point(p, time, family.kind))
            .collect()
    };
    let mut out = Vec::with_capacity(1);
    match family.kind {
        Kind::Counter | Kind::Other => out.push(metric(metric::Data::Sum(Sum {
            data_points: numbers(),
            aggregation_temporality: cumulative,
            is_monotonic: family.kind == Kind::Counter,
        }))),
        Kind::Gauge | Kind::Unknown => out.push(metric(metric::Data::Gauge(Gauge {
            data_points: numbers(),
        }))),
        Kind::Histogram | Kind::Summary => {
            let histograms: Vec<_> = points
                .iter()
                .filter_map(|p| histogram_point(p, time))
                .collect();
            let summaries: Vec<_> = points
                .iter()
                .filter_map(|p| summary_point(p, time))
                .collect();
            if !histograms.is_empty() {
                out.push(metric(metric::Data::Histogram(Histogram {
                    data_points: histograms,
                    aggregation_temporality: cumulative,
                })));
            }
            if !summaries.is_empty() {
                out.push(metric(metric::Data::Summary(Summary {
                    data_points: summaries,
                })));
            }
            let stray = numbers();
            if !stray.is_empty() {
                out.push(metric(metric::Data::Gauge(Gauge { data_points: stray })));
            }
        }
    }
    out.retain(|m| !is_empty(m));
    out
}

fn is_empty(metric: &Metric) -> bool {
    match &metric.data {
        Some(metric::Data::Sum(s)) => s.data_points.is_empty(),
        Some(metric::Data::Gauge(g)) => g.data_points.is_empty(),
        _ => false,
    }
}

fn number_point(point: &Point, time: u64, kind: Kind) -> Option<NumberDataPoint> {
    let Value::Number { value, .. } = &point.value else {
        return None;
    };
    let stale = point.value.is_stale();
    let cumulative = matches!(kind, Kind::Counter | Kind::Other);
    Some(NumberDataPoint {
        attributes: attributes(&point.labels),
        start_time_unix_nano: if cumulative { start(point) } else { 0 },
        time_unix_nano: time,
        exemplars: match &point.value {
            Value::Number {
                exemplar: Some(e), ..
            } if !stale => vec![super::exemplar::exemplar(e, time)],
            _ => Vec::new(),
        },
        flags: if stale { NO_RECORDED_VALUE } else { 0 },
        value: (!stale).then(|| number_data_point::Value::AsDouble(normalize_nan(*value))),
    })
}

fn histogram_point(point: &Point, time: u64) -> Option<HistogramDataPoint> {
    let Value::Histogram(histogram) = &point.value else {
        return None;
    };
    let model::Histogram {
        count,
        sum,
        buckets,
        exemplars,
        stale,
    } = &**histogram;
    let mut data = HistogramDataPoint {
        attributes: attributes(&point.labels),
        start_time_unix_nano: start(point),
        time_unix_nano: time,
        flags: if *stale { NO_RECORDED_VALUE } else { 0 },
        ..Default::default()
    };
    if !*stale {
        let (bounds, counts) = per_bucket(buckets, *count);
        data.count = to_count(*count);
        data.sum = sum.map(normalize_nan);
        data.explicit_bounds = bounds;
        data.bucket_counts = counts;
        data.exemplars = exemplars
            .iter()
            .map(|(_, e)| super::exemplar::exemplar(e, time))
            .collect();
    }
    Some(data)
}

fn summary_point(point: &Point, time: u64) -> Option<SummaryDataPoint> {
    let Value::Summary(summary) = &point.value else {
        return None;
    };
    let model::Summary {
        count,
        sum,
        quantiles,
        stale,
    } = &**summary;
    let mut data = SummaryDataPoint {
        attributes: attributes(&point.labels),
        start_time_unix_nano: start(point),
        time_unix_nano: time,
        flags: if *stale { NO_RECORDED_VALUE } else { 0 },
        ..Default::default()
    };
    if !*stale {
        data.count = to_count(*count);
        data.sum = sum.map_or(0.0, normalize_nan);
        data.quantile_values = quantiles
            .iter()
            .map(|&(quantile, value)| summary_data_point::ValueAtQuantile {
                quantile,
                value: normalize_nan(value),
            })
            .collect();
    }
    Some(data)
}

/// Prometheus' cumulative `(le, count)` buckets as OTLP's finite bounds and per-bucket counts,
/// the last count being the implicit `+Inf` bucket: `0.1:3, 0.5:7, +Inf:10` ⇒ `[0.1, 0.5]`,
/// `[3, 4, 3]`. Without a `+Inf` bucket, `count` closes the last one. Decreasing counts
/// (a broken page) give 0, never a wrapped-around number.
pub fn per_bucket(buckets: &[(f64, f64)], count: f64) -> (Vec<f64>, Vec<u64>) {
    let mut bounds = Vec::with_capacity(buckets.len());
    let mut counts = Vec::with_capacity(buckets.len() + 1);
    let mut previous = 0;
    let mut total = to_count(count);
    for &(le, cumulative) in buckets {
        let cumulative = to_count(cumulative);
        if le.is_infinite() && le > 0.0 {
            total = cumulative;
            break;
        }
        bounds.push(le);
        counts.push(cumulative.saturating_sub(previous));
        previous = cumulative;
    }
    counts.push(total.saturating_sub(previous));
    (bounds, counts)
}

/// A count as exposed (a float) as OTLP's integer; NaN and negatives become 0.
fn to_count(value: f64) -> u64 {
    // `as` saturates and maps NaN to 0.
    value.round() as u64
}

fn start(point: &Point) -> u64 {
    point.start_ms.map_or(0, nanos)
}

fn attributes(labels: &PointLabels) -> Vec<KeyValue> {
    labels.iter().map(|(k, v)| string_kv(k, v)).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::stale_nan;

    fn point(value: Value, start_ms: Option<i64>) -> Point {
        Point {
            labels: vec![(Arc::from("instance"), Arc::from("host-1"))].into(),
            start_ms,
            value,
        }
    }

    fn family(name: &str, kind: Kind, points: Vec<Point>) -> Family {
        Family {
            name: name.into(),
            help: "Help.".into(),
            unit: "".into(),
            kind,
            points,
        }
    }

    fn metrics(request: &ExportMetricsServiceRequest) -> Vec<&Metric> {
        request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .collect()
    }

    #[test]
    fn cumulative_buckets_become_per_bucket_counts() {
        let buckets = [(0.1, 3.0), (0.5, 7.0), (f64::INFINITY, 10.0)];
        assert_eq!(per_bucket(&buckets, 10.0), (vec![0.1, 0.5], vec![3, 4, 3]));
        // No +Inf bucket: the count closes the last one.
        assert_eq!(
            per_bucket(&buckets[..2], 12.0),
            (vec![0.1, 0.5], vec![3, 4, 5])
        );
        // A broken page never wraps around.
        assert_eq!(
            per_bucket(&[(1.0, 5.0), (2.0, 4.0), (f64::INFINITY, 3.0)], 3.0),
            (vec![1.0, 2.0], vec![5, 0, 0])
        );
        assert_eq!(per_bucket(&[], 4.0), (vec![], vec![4]));
        // The OpenMetrics specification's example histogram, bounds as Prometheus 3 reads them.
        let bounds = [0.0, 1e-5, 0.1, 1.0, 1.55555555555552e6, 1e23];
        let spec: Vec<(f64, f64)> = bounds
            .into_iter()
            .zip([0.0, 0.0, 8.0, 10.0, 17.0, 17.0])
            .chain([(f64::INFINITY, 17.0)])
            .collect();
        assert_eq!(
            per_bucket(&spec, 17.0),
            (bounds.to_vec(), vec![0, 0, 8, 2, 7, 0, 0])
        );
    }

    #[test]
    fn families_map_to_otlp_kinds() {
        let batch = Batch {
            timestamp_ms: 2_000,
            families: vec![
                family(
                    "hits_total",
                    Kind::Counter,
                    vec![point(
                        Value::Number {
                            name: "hits_total".into(),
                            value: 5.0,
                            exemplar: None,
                        },
                        Some(1_000),
                    )],
                ),
                family(
                    "temp",
                    Kind::Gauge,
                    vec![point(
                        Value::Number {
                            name: "temp".into(),
                            value: stale_nan(),
                            exemplar: None,
                        },
                        Some(1_000),
                    )],
                ),
                family(
                    "latency",
                    Kind::Histogram,
                    vec![point(
                        Value::Histogram(Box::new(model::Histogram {
                            count: 10.0,
                            sum: Some(1.5),
                            buckets: vec![(0.1, 3.0), (0.5, 7.0), (f64::INFINITY, 10.0)],
                            stale: false,
                            exemplars: Default::default(),
                        })),
                        Some(1_500),
                    )],
                ),
            ],
        };
        let encoded = encode(&batch, &[("service.name".to_owned(), "svc".to_owned())]);
        assert_eq!(encoded.len(), 1);
        assert_eq!(encoded[0].samples, batch.sample_count() as u64);
        let request = &encoded[0].request;
        let resource = request.resource_metrics[0].resource.as_ref().unwrap();
        assert_eq!(resource.attributes, vec![string_kv("service.name", "svc")]);
        let metrics = metrics(request);
        assert_eq!(metrics.len(), 3);
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
            panic!("counter → Sum: {:?}", metrics[0]);
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(sum.data_points[0].start_time_unix_nano, 1_000_000_000);
        assert_eq!(sum.data_points[0].time_unix_nano, 2_000_000_000);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsDouble(5.0))
        );
        assert_eq!(
            sum.data_points[0].attributes,
            vec![string_kv("instance", "host-1")]
        );
        assert_eq!(metrics[0].name, "hits_total");
        assert_eq!(metrics[0].description, "Help.");
        let Some(metric::Data::Gauge(gauge)) = &metrics[1].data else {
            panic!("gauge → Gauge: {:?}", metrics[1]);
        };
        assert_eq!(gauge.data_points[0].flags, 1, "stale → NO_RECORDED_VALUE");
        assert_eq!(gauge.data_points[0].value, None);
        assert_eq!(gauge.data_points[0].start_time_unix_nano, 0);
        let Some(metric::Data::Histogram(histogram)) = &metrics[2].data else {
            panic!("histogram → Histogram: {:?}", metrics[2]);
        };
        let data = &histogram.data_points[0];
        assert_eq!(data.explicit_bounds, [0.1, 0.5]);
        assert_eq!(data.bucket_counts, [3, 4, 3]);
        assert_eq!((data.count, data.sum), (10, Some(1.5)));
        assert_eq!(data.start_time_unix_nano, 1_500_000_000);
    }

    #[test]
    fn large_families_are_split_in_order() {
        let points = (0..4_500)
            .map(|i| {
                point(
                    Value::Number {
                        name: "g".into(),
                        value: f64::from(i),
                        exemplar: None,
                    },
                    None,
                )
            })
            .collect();
        let batch = Batch {
            timestamp_ms: 1,
            families: vec![family("g", Kind::Gauge, points)],
        };
        let encoded = encode(&batch, &[]);
        assert_eq!(encoded.len(), 3);
        let values: Vec<f64> = encoded
            .iter()
            .flat_map(|e| metrics(&e.request).into_iter().cloned().collect::<Vec<_>>())
            .flat_map(|m| match m.data {
                Some(metric::Data::Gauge(g)) => g.data_points,
                _ => Vec::new(),
            })
            .filter_map(|p| match p.value {
                Some(number_data_point::Value::AsDouble(v)) => Some(v),
                _ => None,
            })
            .collect();
        assert_eq!(values, (0..4_500).map(f64::from).collect::<Vec<_>>());
    }
}
