//! Remote write 1.0 on the wire: the `prost` messages (the readable model of what the encoder
//! writes, and what tests decode), and the label field both series and exemplars write.

use prost::encoding::{encode_varint, encoded_len_varint};

const LABELS_FIELD: u8 = 0x0A; // TimeSeries.labels (1, length-delimited); Exemplar.labels too
const NAME_FIELD: u8 = 0x0A; // Label.name (1, length-delimited)
const VALUE_FIELD: u8 = 0x12; // Label.value (2, length-delimited)

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
    /// The series' exemplar, if its sample has one.
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
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

/// `prometheus.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// The exemplar's labels (`trace_id`, `span_id`, …), sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The observed value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// The encoded size of a `TimeSeries.labels` field; an empty name or value is left out.
pub(super) fn label_field_len(name: &str, value: &str) -> usize {
    if name.is_empty() || value.is_empty() {
        return 0;
    }
    let label = label_len(name, value);
    1 + encoded_len_varint(label as u64) + label
}

fn label_len(name: &str, value: &str) -> usize {
    1 + encoded_len_varint(name.len() as u64)
        + name.len()
        + 1
        + encoded_len_varint(value.len() as u64)
        + value.len()
}

pub(super) fn put_label_field(out: &mut Vec<u8>, name: &str, value: &str) {
    if name.is_empty() || value.is_empty() {
        return;
    }
    out.push(LABELS_FIELD);
    encode_varint(label_len(name, value) as u64, out);
    out.push(NAME_FIELD);
    encode_varint(name.len() as u64, out);
    out.extend_from_slice(name.as_bytes());
    out.push(VALUE_FIELD);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value.as_bytes());
}
