//! W3C Trace Context: `traceparent`/`tracestate` in, the same out, and the trace id for the
//! client.

use std::str::FromStr;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

pub(super) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The response header that carries the trace id by default.
pub const DEFAULT_TRACE_ID_HEADER: HeaderName = HeaderName::from_static("x-trace-id");

/// Reads a W3C `traceparent` (and `tracestate`) into a remote span context.
///
/// Follows Trace Context level 1: lowercase hex, all-zero ids and version `ff` are invalid, and a
/// future version may append fields after the flags.
pub fn extract_trace_context(headers: &HeaderMap) -> Option<SpanContext> {
    let (trace_id, span_id, flags) = parse_traceparent(headers)?;
    let trace_state = tracestate(headers).unwrap_or_default();
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
        true,
        trace_state,
    ))
}

/// The trace id of a valid `traceparent`, without reading `tracestate` (no allocation).
pub(crate) fn traceparent_trace_id(headers: &HeaderMap) -> Option<TraceId> {
    parse_traceparent(headers).map(|(trace_id, _, _)| trace_id)
}

/// The ids and flags of the one `traceparent` header, if it is valid: checked and decoded byte
/// by byte (splitting the text and parsing each part costs several times more, on every request
/// of a Mini Program).
fn parse_traceparent(headers: &HeaderMap) -> Option<(TraceId, SpanId, u8)> {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    let traceparent = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = traceparent.as_bytes().trim_ascii();
    // version "-" trace-id "-" parent-id "-" flags, then (future versions only) "-" more.
    const LEN: usize = 2 + 1 + 32 + 1 + 16 + 1 + 2;
    if text.len() < LEN || text[2] != b'-' || text[35] != b'-' || text[52] != b'-' {
        return None;
    }
    let version = lower_hex(&text[..2])?;
    let rest = &text[LEN..];
    // What a future version appends must be visible ASCII, like any header value we read.
    let rest_ok = match rest.split_first() {
        None => true,
        Some((dash, more)) => {
            version != 0 && *dash == b'-' && more.iter().all(|b| (0x20..0x7f).contains(b))
        }
    };
    if version == 0xff || !rest_ok {
        return None;
    }
    let high = lower_hex(&text[3..19])?;
    let low = lower_hex(&text[19..35])?;
    let span_id = lower_hex(&text[36..52])?;
    let flags = lower_hex(&text[53..55])?;
    let trace_id = u128::from(high) << 64 | u128::from(low);
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some((TraceId::from(trace_id), SpanId::from(span_id), flags as u8))
}

/// At most 16 lowercase hex digits as a number; `None` for anything else, uppercase included.
fn lower_hex(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for digit in digits {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        value = value << 4 | u64::from(nibble);
    }
    Some(value)
}

fn tracestate(headers: &HeaderMap) -> Option<TraceState> {
    let mut joined = String::new();
    for value in headers.get_all(&TRACESTATE) {
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(value.to_str().ok()?);
    }
    if joined.is_empty() {
        return None;
    }
    TraceState::from_str(&joined).ok()
}

/// A trace id in lowercase hex, as `TraceId`'s `Display` writes it, without going through
/// `core::fmt` (which costs ~1,400 instructions per request for the `x-trace-id` header, more
/// than the rest of a sampled-out span).
pub(crate) fn trace_id_hex(trace_id: TraceId) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, byte) in trace_id.to_bytes().iter().enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    out
}

/// The `traceparent` value of a span context: `00-{trace id}-{span id}-{flags}`.
pub fn traceparent(span_context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span_context.trace_id(),
        span_context.span_id(),
        span_context.trace_flags().to_u8()
    )
}

/// Writes the current OpenTelemetry context as W3C `traceparent`/`tracestate` headers, for calls
/// the service makes while handling a request (the layer attaches the request's context).
/// Does nothing outside a trace.
pub fn inject_trace_context(headers: &mut HeaderMap) {
    let cx = Context::current();
    let span = cx.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&traceparent(span_context)) {
        headers.insert(TRACEPARENT.clone(), value);
    }
    let state = span_context.trace_state().header();
    if let Ok(value) = HeaderValue::from_str(&state)
        && !state.is_empty()
    {
        headers.insert(TRACESTATE.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_traceparent(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn extracts_a_valid_traceparent() {
        let mut headers =
            with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        headers.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
        let parent = extract_trace_context(&headers).unwrap();
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parent.is_sampled());
        assert!(parent.is_remote());
        assert_eq!(parent.trace_state().get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(
            traceparent(&parent),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn rejects_invalid_traceparents() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00what",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701",
        ] {
            assert!(
                extract_trace_context(&with_traceparent(bad)).is_none(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn trace_id_hex_is_display() {
        for id in [1u128, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736, u128::MAX] {
            let trace_id = TraceId::from(id);
            assert_eq!(&trace_id_hex(trace_id)[..], trace_id.to_string().as_bytes());
        }
    }

    #[test]
    fn future_versions_may_append_fields() {
        let headers =
            with_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what");
        let parent = extract_trace_context(&headers).unwrap();
        assert!(!parent.is_sampled());
    }
}
