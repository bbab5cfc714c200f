//! Remote write 1.0 exemplars: `TimeSeries.exemplars` (field 3), one per series that has one (a
//! histogram's `_bucket`, a counter's `_total`, any number point), written by the encoder the way
//! `prost` writes [`Exemplar`](super::Exemplar).
//!
//! Labels are sorted by name, empty values left out, as for series; the timestamp is the
//! exemplar's own, or the scrape's when the page gave none (Prometheus' scrape does the same).

use prost::encoding::{encode_varint, encoded_len_varint};

use super::wire::{label_field_len, put_label_field};
use crate::model;

const EXEMPLARS_FIELD: u8 = 0x1A; // TimeSeries.exemplars (3, length-delimited)
const VALUE_FIELD: u8 = 0x11; // Exemplar.value (2, 64-bit)
const TIMESTAMP_FIELD: u8 = 0x18; // Exemplar.timestamp (3, varint)

/// Its labels sorted by name, without empty names or values (one name once: the parser lets no
/// label set name a label twice).
fn sorted_labels(exemplar: &model::Exemplar) -> Vec<(&str, &str)> {
    let mut labels: Vec<(&str, &str)> = exemplar
        .labels
        .iter()
        .map(|(name, value)| (&**name, &**value))
        .filter(|(name, value)| !name.is_empty() && !value.is_empty())
        .collect();
    labels.sort_unstable();
    labels
}

/// An exemplar ready to be written: its labels sorted and the size of its message.
pub(super) struct Prepared<'e> {
    labels: Vec<(&'e str, &'e str)>,
    value: f64,
    timestamp_ms: i64,
    message_len: usize,
}

impl<'e> Prepared<'e> {
    pub(super) fn new(exemplar: &'e model::Exemplar, scrape_ms: i64) -> Prepared<'e> {
        let labels = sorted_labels(exemplar);
        let timestamp_ms = exemplar.timestamp_ms.unwrap_or(scrape_ms);
        let labels_len: usize = labels
            .iter()
            .map(|(name, value)| label_field_len(name, value))
            .sum();
        let message_len = labels_len
            + if exemplar.value == 0.0 { 0 } else { 9 }
            + if timestamp_ms == 0 {
                0
            } else {
                1 + encoded_len_varint(timestamp_ms as u64)
            };
        Prepared {
            labels,
            value: exemplar.value,
            timestamp_ms,
            message_len,
        }
    }

    /// The size of the `TimeSeries.exemplars` field.
    pub(super) fn field_len(&self) -> usize {
        1 + encoded_len_varint(self.message_len as u64) + self.message_len
    }

    /// Writes the `TimeSeries.exemplars` field.
    pub(super) fn put(&self, out: &mut Vec<u8>) {
        out.push(EXEMPLARS_FIELD);
        encode_varint(self.message_len as u64, out);
        // `Exemplar.labels` is field 1, as `TimeSeries.labels` is: the same bytes.
        for (name, value) in &self.labels {
            put_label_field(out, name, value);
        }
        if self.value != 0.0 {
            out.push(VALUE_FIELD);
            out.extend_from_slice(&self.value.to_bits().to_le_bytes());
        }
        if self.timestamp_ms != 0 {
            out.push(TIMESTAMP_FIELD);
            encode_varint(self.timestamp_ms as u64, out);
        }
    }
}
