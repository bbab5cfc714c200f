//! Prometheus remote write 1.0: a [`Batch`] becomes snappy-compressed `WriteRequest`s.
//!
//! Series are named and labelled exactly as a direct scrape would store them (`_bucket{le}`,
//! `_sum`, `_count`, `{quantile}`, with `le`/`quantile` formatted like Go's
//! `strconv.FormatFloat(v, 'g', -1, 64)`), so a backend cannot tell the sidecar from a scrape.

use crate::model::{Batch, STALE_NAN_BITS, Value, normalize_nan, stale_nan};

/// Series per request: small enough for any receiver's limits, large enough to keep requests few.
pub const MAX_SERIES_PER_REQUEST: usize = 2_000;

/// `prometheus.WriteRequest` (fields 2 and 3 are reserved in 1.0).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// `__name__` and the labels, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The samples, in timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    /// The label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The label value, never empty.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value; a stale marker keeps its exact bit pattern.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// One compressed request body and the number of samples it carries.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The snappy (block format) compressed `WriteRequest`.
    pub body: Vec<u8>,
    /// Samples in it, for the dropped-samples counters.
    pub samples: u64,
}

/// Every series of `batch`, one sample each, in exposition order.
pub fn timeseries(batch: &Batch) -> Vec<TimeSeries> {
    let mut out = Vec::with_capacity(batch.sample_count());
    for family in &batch.families {
        for point in &family.points {
            let stale = point.value.is_stale();
            // A stale point marks every series it expands to; a real NaN never looks stale.
            let value = |v: f64| if stale { stale_nan() } else { normalize_nan(v) };
            let series = |name: &str, extra: Option<(&str, String)>, v: f64| TimeSeries {
                labels: series_labels(name, &point.labels, extra),
                samples: vec![Sample {
                    value: v,
                    timestamp: batch.timestamp_ms,
                }],
            };
            let base = &*family.name;
            match &point.value {
                Value::Number { name, value: v } => {
                    let v = if v.to_bits() == STALE_NAN_BITS {
                        *v
                    } else {
                        normalize_nan(*v)
                    };
                    out.push(series(name, None, v));
                }
                Value::Histogram {
                    count,
                    sum,
                    buckets,
                    ..
                } => {
                    let bucket = format!("{base}_bucket");
                    for &(le, cumulative) in buckets {
                        out.push(series(
                            &bucket,
                            Some(("le", format_float(le))),
                            value(cumulative),
                        ));
                    }
                    if let Some(sum) = sum {
                        out.push(series(&format!("{base}_sum"), None, value(*sum)));
                    }
                    out.push(series(&format!("{base}_count"), None, value(*count)));
                }
                Value::Summary {
                    count,
                    sum,
                    quantiles,
                    ..
                } => {
                    for &(quantile, v) in quantiles {
                        out.push(series(
                            base,
                            Some(("quantile", format_float(quantile))),
                            value(v),
                        ));
                    }
                    if let Some(sum) = sum {
                        out.push(series(&format!("{base}_sum"), None, value(*sum)));
                    }
                    out.push(series(&format!("{base}_count"), None, value(*count)));
                }
            }
        }
    }
    out
}

/// `__name__`, the extra label (`le`, `quantile`) and the point's labels: sorted, empty values
/// dropped, and on a duplicate name the sidecar's own label (`__name__`, `le`, …) wins.
pub fn series_labels(
    name: &str,
    labels: &[(std::sync::Arc<str>, std::sync::Arc<str>)],
    extra: Option<(&str, String)>,
) -> Vec<Label> {
    let mut out = Vec::with_capacity(labels.len() + 2);
    out.push(Label {
        name: "__name__".to_owned(),
        value: name.to_owned(),
    });
    if let Some((name, value)) = extra {
        out.push(Label {
            name: name.to_owned(),
            value,
        });
    }
    out.extend(labels.iter().map(|(name, value)| Label {
        name: name.to_string(),
        value: value.to_string(),
    }));
    out.retain(|label| !label.value.is_empty() && !label.name.is_empty());
    // Stable: among equal names the first pushed (ours) stays first and survives the dedup.
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|later, earlier| later.name == earlier.name);
    out
}

/// The batch as compressed requests of at most [`MAX_SERIES_PER_REQUEST`] series each.
pub fn encode(batch: &Batch) -> Vec<Encoded> {
    let series = timeseries(batch);
    series
        .chunks(MAX_SERIES_PER_REQUEST)
        .map(|chunk| {
            let request = WriteRequest {
                timeseries: chunk.to_vec(),
            };
            Encoded {
                body: compress(&prost::Message::encode_to_vec(&request)),
                samples: chunk.iter().map(|s| s.samples.len() as u64).sum(),
            }
        })
        .collect()
}

/// Snappy block format, as the spec requires (never the framed format).
pub fn compress(raw: &[u8]) -> Vec<u8> {
    // Only inputs over ~4 GiB fail; a request is far below that. Fall back to an empty body
    // (which the receiver rejects) rather than panic.
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .unwrap_or_default()
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it, with Prometheus' `+Inf`,
/// `-Inf` and `NaN`: `0.005`, `1`, `2.5`, `1e+06`, `1e-05`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as Go: `d[.ddd]e[-]x`.
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    // With shortest precision Go picks the exponent form outside 1e-4 <= |v| < 1e6 (`eprec` 6).
    let nd = digits.len() as i32;
    if !(-4..6).contains(&exp) {
        out.push(digit(&digits, 0));
        if digits.len() > 1 {
            out.push('.');
            out.extend(digits[1..].iter().map(|&d| char::from(d)));
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let abs = exp.unsigned_abs();
        if abs < 10 {
            out.push('0');
        }
        out.push_str(&abs.to_string());
        return out;
    }
    // Fixed notation: `dp` digits before the point.
    let dp = exp + 1;
    if dp <= 0 {
        out.push('0');
    } else {
        for i in 0..dp {
            out.push(digit(&digits, i));
        }
    }
    if nd > dp {
        out.push('.');
        for i in dp..nd {
            out.push(digit(&digits, i));
        }
    }
    out
}

/// The digit at position `i` of the shortest representation, `0` outside it.
fn digit(digits: &[u8], i: i32) -> char {
    usize::try_from(i)
        .ok()
        .and_then(|i| digits.get(i))
        .map_or('0', |&d| char::from(d))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message;

    use super::*;
    use crate::model::{Family, Kind, Point};

    fn labels(pairs: &[(&str, &str)]) -> crate::model::Labels {
        pairs
            .iter()
            .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
            .collect()
    }

    fn family(name: &str, kind: Kind, points: Vec<Point>) -> Family {
        Family {
            name: name.into(),
            help: "".into(),
            unit: "".into(),
            kind,
            points,
        }
    }

    fn number(name: &str, value: f64, pairs: &[(&str, &str)]) -> Point {
        Point {
            labels: labels(pairs),
            start_ms: None,
            value: Value::Number {
                name: name.into(),
                value,
            },
        }
    }

    fn decode(encoded: &Encoded) -> WriteRequest {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&encoded.body)
            .expect("snappy block format");
        WriteRequest::decode(raw.as_slice()).expect("a WriteRequest")
    }

    fn names(series: &TimeSeries) -> Vec<(&str, &str)> {
        series
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn floats_are_formatted_like_go() {
        let cases = [
            (0.005, "0.005"),
            (0.01, "0.01"),
            (0.1, "0.1"),
            (0.25, "0.25"),
            (1.0, "1"),
            (2.5, "2.5"),
            (10.0, "10"),
            (60.0, "60"),
            (100_000.0, "100000"),
            (123_456.0, "123456"),
            (1e6, "1e+06"),
            (1_234_567.0, "1.234567e+06"),
            (1e21, "1e+21"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (2.5e-10, "2.5e-10"),
            (1.5e100, "1.5e+100"),
            (-0.5, "-0.5"),
            (0.0, "0"),
            (0.99, "0.99"),
            (0.999, "0.999"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_float(value), expected, "{value:e}");
        }
    }

    #[test]
    fn labels_are_sorted_deduplicated_and_never_empty() {
        let point = labels(&[
            ("Zone", "z"),
            ("a", "1"),
            ("empty", ""),
            ("le", "from-the-app"),
            ("zz", "2"),
        ]);
        let got = series_labels("m_bucket", &point, Some(("le", "0.5".to_owned())));
        let got: Vec<_> = got
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        // Byte order: upper case sorts before `_`, which sorts before lower case.
        assert_eq!(
            got,
            [
                ("Zone", "z"),
                ("__name__", "m_bucket"),
                ("a", "1"),
                ("le", "0.5"),
                ("zz", "2"),
            ]
        );
    }

    #[test]
    fn a_batch_round_trips_through_snappy_block_format() {
        let odd_nan = f64::from_bits(0x7ff8_0000_0000_0001);
        let batch = Batch {
            timestamp_ms: 1_700_000_000_123,
            families: vec![
                family(
                    "requests_total",
                    Kind::Counter,
                    vec![number("requests_total", 7.0, &[("path", "/a")])],
                ),
                family("nan", Kind::Gauge, vec![number("nan", odd_nan, &[])]),
                family("gone", Kind::Gauge, vec![number("gone", stale_nan(), &[])]),
                family(
                    "latency",
                    Kind::Histogram,
                    vec![Point {
                        labels: labels(&[("path", "/a")]),
                        start_ms: Some(1),
                        value: Value::Histogram {
                            count: 10.0,
                            sum: Some(2.5),
                            buckets: vec![(0.1, 3.0), (0.5, 7.0), (f64::INFINITY, 10.0)],
                            stale: false,
                        },
                    }],
                ),
                family(
                    "rpc",
                    Kind::Summary,
                    vec![Point {
                        labels: Vec::new(),
                        start_ms: None,
                        value: Value::Summary {
                            count: 4.0,
                            sum: None,
                            quantiles: vec![(0.5, 1.0), (0.99, 3.0)],
                            stale: true,
                        },
                    }],
                ),
            ],
        };
        let encoded = encode(&batch);
        assert_eq!(encoded.len(), 1);
        assert_eq!(encoded[0].samples, batch.sample_count() as u64);
        let request = decode(&encoded[0]);
        let series: Vec<_> = request.timeseries.iter().map(names).collect();
        assert_eq!(
            series,
            vec![
                vec![("__name__", "requests_total"), ("path", "/a")],
                vec![("__name__", "nan")],
                vec![("__name__", "gone")],
                vec![
                    ("__name__", "latency_bucket"),
                    ("le", "0.1"),
                    ("path", "/a")
                ],
                vec![
                    ("__name__", "latency_bucket"),
                    ("le", "0.5"),
                    ("path", "/a")
                ],
                vec![
                    ("__name__", "latency_bucket"),
                    ("le", "+Inf"),
                    ("path", "/a")
                ],
                vec![("__name__", "latency_sum"), ("path", "/a")],
                vec![("__name__", "latency_count"), ("path", "/a")],
                vec![("__name__", "rpc"), ("quantile", "0.5")],
                vec![("__name__", "rpc"), ("quantile", "0.99")],
                vec![("__name__", "rpc_count")],
            ]
        );
        let bits: Vec<u64> = request
            .timeseries
            .iter()
            .map(|s| s.samples[0].value.to_bits())
            .collect();
        assert_eq!(bits[0], 7f64.to_bits());
        assert_eq!(bits[1], f64::NAN.to_bits(), "a real NaN is normalised");
        assert_eq!(
            bits[2], STALE_NAN_BITS,
            "the stale marker survives encoding"
        );
        assert_eq!(bits[3..8], [3f64, 7.0, 10.0, 2.5, 10.0].map(f64::to_bits));
        assert!(bits[8..].iter().all(|&b| b == STALE_NAN_BITS));
        assert!(
            request
                .timeseries
                .iter()
                .all(|s| s.samples.len() == 1 && s.samples[0].timestamp == batch.timestamp_ms)
        );
    }

    #[test]
    fn large_batches_are_split_in_order() {
        let points = (0..4_500)
            .map(|i| number("up", f64::from(i), &[("i", &i.to_string())]))
            .collect();
        let batch = Batch {
            timestamp_ms: 1,
            families: vec![family("up", Kind::Gauge, points)],
        };
        let encoded = encode(&batch);
        assert_eq!(encoded.len(), 3);
        assert_eq!(encoded.iter().map(|e| e.samples).sum::<u64>(), 4_500);
        let values: Vec<f64> = encoded
            .iter()
            .flat_map(|e| decode(e).timeseries)
            .map(|s| s.samples[0].value)
            .collect();
        assert_eq!(values, (0..4_500).map(f64::from).collect::<Vec<_>>());
        assert!(
            encoded
                .iter()
                .all(|e| decode(e).timeseries.len() <= MAX_SERIES_PER_REQUEST)
        );
    }
}
