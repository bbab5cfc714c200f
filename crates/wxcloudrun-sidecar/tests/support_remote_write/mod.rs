//! Remote write for the tests and the benchmark: what the product's encoder sent, decoded; and a
//! readable reference of what it must send, built as `prost` messages by a walk of its own over
//! the batch (so a mistake in the encoder's walk cannot hide in its oracle).

// Each test binary uses its own subset.
#![allow(dead_code)]

use prost::Message;
use wxcloudrun_sidecar::export::remote_write::{
    self, BoundSpelling, Encoded, Label, MAX_SERIES_PER_REQUEST, Relabel, Sample, TimeSeries,
    WriteRequest,
};
use wxcloudrun_sidecar::model::{self, Batch, Point, Value, normalize_nan, stale_nan};

/// One request body as the receiver reads it: snappy block format decoded, then protobuf.
pub(crate) fn decode(encoded: &Encoded) -> WriteRequest {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&encoded.body)
        .expect("snappy block format");
    WriteRequest::decode(raw.as_slice()).expect("a WriteRequest")
}

/// Every series the product's encoder sends for `batch` (default spelling, no relabelling), in
/// order.
pub(crate) fn sent(batch: &Batch) -> Vec<TimeSeries> {
    let encoded = remote_write::encode(batch, &Relabel::default());
    encoded.iter().flat_map(|e| decode(e).timeseries).collect()
}

/// The reference: every series of `batch` as `prost` messages, one sample each, in exposition
/// order, `le` and `quantile` in `spelling`.
pub(crate) fn timeseries(batch: &Batch, spelling: BoundSpelling) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    for family in &batch.families {
        for point in &family.points {
            point_series(&family.name, point, batch.timestamp_ms, spelling, &mut out);
        }
    }
    out
}

/// The reference split into requests as the encoder splits them, each `prost`-encoded (not yet
/// compressed).
pub(crate) fn requests(batch: &Batch, spelling: BoundSpelling) -> Vec<Vec<u8>> {
    timeseries(batch, spelling)
        .chunks(MAX_SERIES_PER_REQUEST)
        .map(|chunk| {
            WriteRequest {
                timeseries: chunk.to_vec(),
            }
            .encode_to_vec()
        })
        .collect()
}

/// Snappy block format, as the spec requires, for the benchmark's prost path.
pub(crate) fn compress(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("a request far below snappy's 4 GiB limit")
}

/// `__name__`, the extra label (`le`, `quantile`) and the point's labels: sorted, empty names and
/// values dropped, and on a duplicate name the sidecar's own label wins.
pub(crate) fn series_labels(
    name: &str,
    labels: &model::PointLabels,
    extra: Option<(&str, String)>,
) -> Vec<Label> {
    let label = |name: &str, value: &str| Label {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    let mut out = vec![label("__name__", name)];
    out.extend(extra.map(|(name, value)| Label {
        name: name.to_owned(),
        value,
    }));
    out.extend(labels.iter().map(|(name, value)| label(name, value)));
    out.retain(|l| !l.name.is_empty() && !l.value.is_empty());
    // A stable sort keeps ours (pushed first) ahead of the app's label of the same name.
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|later, earlier| later.name == earlier.name);
    out
}

fn point_series(
    family: &str,
    point: &Point,
    timestamp_ms: i64,
    spelling: BoundSpelling,
    out: &mut Vec<TimeSeries>,
) {
    let stale = point.value.is_stale();
    let mut push =
        |name: &str, extra: Option<(&str, f64)>, value: f64, exemplar: Option<&model::Exemplar>| {
            let extra = extra.map(|(label, bound)| (label, spelling.format(bound)));
            out.push(TimeSeries {
                labels: series_labels(name, &point.labels, extra),
                samples: vec![Sample {
                    value: if stale {
                        stale_nan()
                    } else {
                        normalize_nan(value)
                    },
                    timestamp: timestamp_ms,
                }],
                // A stale marker carries no exemplar.
                exemplars: exemplar
                    .filter(|_| !stale)
                    .map(|e| exemplar_message(e, timestamp_ms))
                    .into_iter()
                    .collect(),
            });
        };
    match &point.value {
        Value::Number {
            name,
            value,
            exemplar,
        } => push(name, None, *value, exemplar.as_deref()),
        Value::Histogram(histogram) => {
            let model::Histogram {
                count,
                sum,
                buckets,
                exemplars,
                ..
            } = &**histogram;
            let bucket = format!("{family}_bucket");
            for (at, &(le, cumulative)) in buckets.iter().enumerate() {
                push(&bucket, Some(("le", le)), cumulative, exemplars.of(at));
            }
            if let Some(sum) = sum {
                push(&format!("{family}_sum"), None, *sum, None);
            }
            push(&format!("{family}_count"), None, *count, None);
        }
        Value::Summary(summary) => {
            let model::Summary {
                count,
                sum,
                quantiles,
                ..
            } = &**summary;
            for &(quantile, value) in quantiles {
                push(family, Some(("quantile", quantile)), value, None);
            }
            if let Some(sum) = sum {
                push(&format!("{family}_sum"), None, *sum, None);
            }
            push(&format!("{family}_count"), None, *count, None);
        }
    }
}

/// An exemplar as the spec's message: labels sorted by name without empty ones, its own time or
/// the scrape's.
fn exemplar_message(exemplar: &model::Exemplar, scrape_ms: i64) -> remote_write::Exemplar {
    let mut labels: Vec<Label> = exemplar
        .labels
        .iter()
        .filter(|(name, value)| !name.is_empty() && !value.is_empty())
        .map(|(name, value)| Label {
            name: name.to_string(),
            value: value.to_string(),
        })
        .collect();
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    remote_write::Exemplar {
        labels,
        value: exemplar.value,
        timestamp: exemplar.timestamp_ms.unwrap_or(scrape_ms),
    }
}
