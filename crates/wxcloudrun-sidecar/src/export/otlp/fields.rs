//! OTLP field values written alike by points and exemplars.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// Milliseconds since the epoch as OTLP's nanoseconds; before the epoch is 0.
pub(super) fn nanos(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

/// A string attribute.
pub(super) fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}
