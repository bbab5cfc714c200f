//! OTLP exemplars from the page's: `trace_id` and `span_id` labels become the exemplar's ids
//! (16 and 8 bytes from their hex), every other label a filtered attribute, the value `as_double`,
//! the time the exemplar's own (the scrape's when the page gave none).
//!
//! An id label that is not an id — not 32 (16) hex digits, or all zeros, which OTLP reads as no
//! id — is kept as a filtered attribute under its name rather than dropped: the exemplar still
//! says which observation it was, and nothing the page said is lost.

use opentelemetry_proto::tonic::metrics::v1::{Exemplar, exemplar};

use super::fields::{nanos, string_kv};
use crate::model;

/// The OTLP form of `exemplar`; `scrape_nanos` its time when it has none.
pub(super) fn exemplar(exemplar: &model::Exemplar, scrape_nanos: u64) -> Exemplar {
    let mut out = Exemplar {
        time_unix_nano: exemplar.timestamp_ms.map_or(scrape_nanos, nanos),
        value: Some(exemplar::Value::AsDouble(exemplar.value)),
        ..Default::default()
    };
    for (name, value) in &exemplar.labels {
        let id = match &**name {
            "trace_id" => id_bytes::<16>(value).map(|id| out.trace_id = id),
            "span_id" => id_bytes::<8>(value).map(|id| out.span_id = id),
            _ => None,
        };
        if id.is_none() {
            out.filtered_attributes.push(string_kv(name, value));
        }
    }
    out
}

/// `N` bytes from `2N` hex digits (either case); `None` for anything else or an all-zero id.
fn id_bytes<const N: usize>(hex: &str) -> Option<Vec<u8>> {
    let digits = hex.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |d: u8| {
        char::from(d)
            .to_digit(16)
            .and_then(|n| u8::try_from(n).ok())
    };
    let bytes = digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => Some(nibble(*high)? << 4 | nibble(*low)?),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()?;
    bytes.iter().any(|b| *b != 0).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_exemplar(labels: &[(&str, &str)]) -> model::Exemplar {
        model::Exemplar {
            labels: labels
                .iter()
                .map(|(n, v)| (Box::from(*n), Box::from(*v)))
                .collect(),
            value: 0.042,
            timestamp_ms: Some(1_700_000_000_123),
        }
    }

    fn attribute_names(exemplar: &Exemplar) -> Vec<&str> {
        let attributes = exemplar.filtered_attributes.iter();
        attributes.map(|kv| kv.key.as_str()).collect()
    }

    #[test]
    fn hex_ids_become_bytes_and_other_labels_attributes() {
        let trace = "4BF92F3577B34DA6a3ce929d0e0e4736";
        let page = page_exemplar(&[
            ("trace_id", trace),
            ("span_id", "00f067aa0ba902b7"),
            ("user", "u1"),
        ]);
        let otlp = exemplar(&page, 5);
        assert_eq!(
            otlp.trace_id,
            [
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36
            ]
        );
        assert_eq!(
            otlp.span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(attribute_names(&otlp), ["user"]);
        assert_eq!(otlp.time_unix_nano, 1_700_000_000_123_000_000);
        assert_eq!(otlp.value, Some(exemplar::Value::AsDouble(0.042)));
    }

    /// Ids that are no ids stay attributes, under their names, with their text.
    #[test]
    fn invalid_ids_are_kept_as_attributes() {
        for (trace, span) in [
            ("4bf9", "00f067aa0ba902b7x"),
            ("4bf92f3577b34da6a3ce929d0e0e473g", "00f067aa0ba902"),
            ("00000000000000000000000000000000", "0000000000000000"),
            ("4bf92f3577b34da6a3ce929d0e0e47364b", "+0f067aa0ba902b7"),
        ] {
            let otlp = exemplar(&page_exemplar(&[("trace_id", trace), ("span_id", span)]), 5);
            assert!(
                otlp.trace_id.is_empty() && otlp.span_id.is_empty(),
                "{trace} {span}"
            );
            assert_eq!(attribute_names(&otlp), ["trace_id", "span_id"]);
            let values: Vec<_> = otlp
                .filtered_attributes
                .iter()
                .map(|kv| kv.value.clone())
                .collect();
            assert_eq!(values, [trace, span].map(|v| string_kv("", v).value));
        }
        // One valid, one not: each on its own.
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let otlp = exemplar(
            &page_exemplar(&[("trace_id", trace), ("span_id", "nope")]),
            5,
        );
        assert_eq!(
            (otlp.trace_id.len(), attribute_names(&otlp)),
            (16, vec!["span_id"])
        );
    }

    #[test]
    fn an_exemplar_without_a_time_takes_the_scrape_time() {
        let mut page = page_exemplar(&[]);
        page.timestamp_ms = None;
        assert_eq!(exemplar(&page, 77).time_unix_nano, 77);
    }
}
