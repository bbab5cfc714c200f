//! The report protocol: what the Mini Program package sends, read strictly and checked whole
//! before anything is recorded.
//!
//! ```json
//! {"v":1,"sdk":"wxcloudrun-telemetry-miniprogram/0.1.0","dropped":0,
//!  "calls":[{"trace_id":"<32 hex>","span_id":"<16 hex>","method":"GET","duration_ms":123.4,
//!            "outcome":"ok","status":200,"err_code":null,"server_ms":12.3,"ts":1733000000000}]}
//! ```
//!
//! Unknown fields are ignored, and so are `sdk`, `span_id`, `status` and `ts`, which no metric
//! uses. A report is refused whole (nothing recorded) when it is not JSON, `v` is not 1, `calls`
//! is missing or holds more than [`MAX_CLIENT_REPORT_CALLS`] calls, or a call lacks a numeric
//! `duration_ms` or a known `outcome`, or has a field of the wrong type (a string duration, a
//! negative `dropped`). Numbers JSON cannot hold as a double (`1e309`) are not JSON to this
//! reader. Durations are clamped to [0, [`MAX_CLIENT_CALL_DURATION`]].

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use crate::labels::{ClientOutcome, ErrCode, MethodLabel, ReportResult};

/// Largest report body read, in bytes; a larger one is refused (`413`) without reading the rest.
pub const MAX_CLIENT_REPORT_BYTES: usize = 16 * 1024;

/// Most calls in one report; a report with more is refused (`413`).
pub const MAX_CLIENT_REPORT_CALLS: usize = 64;

/// Longest call duration (and server time) a report may claim; longer ones count as this.
/// callContainer gives up after 15 s, the platform's general limit is 60 s.
pub const MAX_CLIENT_CALL_DURATION: Duration = Duration::from_secs(60);

/// Largest `dropped` one report may add (one report can only have lost so much; the rest is a
/// lie or a bug).
const MAX_DROPPED_PER_REPORT: u64 = 10_000;

/// A report as it arrives.
#[derive(Deserialize)]
struct Wire<'a> {
    v: u64,
    #[serde(default)]
    dropped: u64,
    #[serde(borrow)]
    calls: Vec<WireCall<'a>>,
}

#[derive(Deserialize)]
struct WireCall<'a> {
    #[serde(default, borrow)]
    trace_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    method: Option<Cow<'a, str>>,
    duration_ms: f64,
    outcome: ClientOutcome,
    #[serde(default)]
    err_code: Option<serde_json::Number>,
    #[serde(default)]
    server_ms: Option<f64>,
}

/// A report that passed every check.
#[derive(Debug, PartialEq)]
pub(crate) struct Report {
    /// Calls the client lost before reporting them (clamped).
    pub(crate) dropped: u64,
    pub(crate) calls: Vec<Call>,
}

/// One call of a report, its numbers clamped and its labels resolved.
#[derive(Debug, PartialEq)]
pub(crate) struct Call {
    /// The trace id as 128 bits; `None` when absent or not 32 hex digits.
    pub(crate) trace_id: Option<u128>,
    /// The method as sent (`GET`; `_OTHER` for anything but the nine standard methods), for
    /// checking the join.
    pub(crate) method: Option<MethodLabel>,
    pub(crate) duration: Duration,
    pub(crate) outcome: ClientOutcome,
    pub(crate) err_code: ErrCode,
    /// The service's own time, from its `Server-Timing` header, when the call reached it.
    pub(crate) server: Option<Duration>,
}

/// Why a report was refused: the `result` it counts as, the status and a short reason.
#[derive(Debug, PartialEq)]
pub(crate) struct Refusal {
    pub(crate) result: ReportResult,
    pub(crate) status: u16,
    pub(crate) reason: Cow<'static, str>,
}

impl Refusal {
    pub(crate) fn malformed(reason: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            result: ReportResult::Malformed,
            status: 400,
            reason: reason.into(),
        }
    }

    pub(crate) fn too_large(reason: &'static str) -> Self {
        Refusal {
            result: ReportResult::TooLarge,
            status: 413,
            reason: Cow::Borrowed(reason),
        }
    }
}

/// A duration in milliseconds, clamped to [0, [`MAX_CLIENT_CALL_DURATION`]] (JSON has no NaN;
/// a NaN from elsewhere would count as 0).
fn clamp_ms(ms: f64) -> Duration {
    let max = MAX_CLIENT_CALL_DURATION.as_secs_f64() * 1e3;
    let ms = if ms.is_nan() { 0.0 } else { ms.clamp(0.0, max) };
    Duration::from_secs_f64(ms / 1e3)
}

/// A W3C trace id: 32 hex digits, not all zero.
fn parse_trace_id(text: &str) -> Option<u128> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(text, 16).ok().filter(|id| *id != 0)
}

fn err_code(code: Option<&serde_json::Number>) -> ErrCode {
    match code {
        None => ErrCode::NONE,
        Some(number) => number.as_i64().map_or(ErrCode::OTHER, ErrCode::of),
    }
}

/// Reads and checks a report body.
pub(crate) fn parse(body: &[u8]) -> Result<Report, Refusal> {
    let wire: Wire<'_> = serde_json::from_slice(body).map_err(|err| {
        // Never serde's message: it quotes the input.
        let what = match err.classify() {
            serde_json::error::Category::Data => "a field is missing or has the wrong type",
            _ => "not valid JSON",
        };
        Refusal::malformed(format!(
            "malformed report: {what} (line {}, column {})",
            err.line(),
            err.column()
        ))
    })?;
    if wire.v != 1 {
        return Err(Refusal::malformed(
            "malformed report: unsupported version (this server reads v 1)",
        ));
    }
    if wire.calls.len() > MAX_CLIENT_REPORT_CALLS {
        return Err(Refusal::too_large(
            "report too large: at most 64 calls per report",
        ));
    }
    let calls = wire
        .calls
        .iter()
        .map(|call| Call {
            trace_id: call.trace_id.as_deref().and_then(parse_trace_id),
            method: call.method.as_deref().map(MethodLabel::of_name),
            duration: clamp_ms(call.duration_ms),
            outcome: call.outcome,
            err_code: err_code(call.err_code.as_ref()),
            server: call.server_ms.map(clamp_ms),
        })
        .collect();
    Ok(Report {
        dropped: wire.dropped.min(MAX_DROPPED_PER_REPORT),
        calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn call(fields: &str) -> String {
        format!(r#"{{"v":1,"sdk":"x/0.1.0","dropped":0,"calls":[{{{fields}}}]}}"#)
    }

    #[test]
    fn reads_the_protocol_example() {
        let body = call(&format!(
            r#""trace_id":"{TRACE}","span_id":"00f067aa0ba902b7","method":"GET","duration_ms":123.4,"outcome":"ok","status":200,"err_code":null,"server_ms":12.3,"ts":1733000000000,"extra":{{"ignored":[1,2]}}"#
        ));
        let report = parse(body.as_bytes()).unwrap();
        assert_eq!(report.dropped, 0);
        let [call] = report.calls.as_slice() else {
            panic!("{report:?}")
        };
        assert_eq!(call.trace_id, Some(0x4bf92f3577b34da6a3ce929d0e0e4736));
        assert_eq!(call.method.map(MethodLabel::as_str), Some("GET"));
        assert_eq!(call.duration, Duration::from_secs_f64(0.1234));
        assert_eq!(call.outcome, ClientOutcome::Ok);
        assert_eq!(call.err_code, ErrCode::NONE);
        assert_eq!(call.server, Some(Duration::from_secs_f64(0.0123)));
    }

    #[test]
    fn clamps_durations_and_maps_error_codes() {
        let body =
            call(r#""duration_ms":-5,"outcome":"fail","err_code":-606001,"server_ms":1e300"#);
        let report = parse(body.as_bytes()).unwrap();
        let call = &report.calls[0];
        assert_eq!(call.duration, Duration::ZERO);
        assert_eq!(call.server, Some(MAX_CLIENT_CALL_DURATION));
        assert_eq!(call.err_code.as_str(), "-606001");
        assert_eq!(call.trace_id, None);
        for (code, label) in [("102002", "102002"), ("7", "_other"), ("1.5", "_other")] {
            let body = call_with_code(code);
            assert_eq!(
                parse(body.as_bytes()).unwrap().calls[0].err_code.as_str(),
                label
            );
        }
        let many = r#"{"v":1,"dropped":99999999,"calls":[]}"#;
        assert_eq!(parse(many.as_bytes()).unwrap().dropped, 10_000);
    }

    fn call_with_code(code: &str) -> String {
        call(&format!(
            r#""duration_ms":1,"outcome":"fail","err_code":{code}"#
        ))
    }

    #[test]
    fn trace_ids_must_be_32_hex_digits() {
        for (id, expected) in [
            (TRACE, Some(0x4bf92f3577b34da6a3ce929d0e0e4736)),
            ("00000000000000000000000000000000", None),
            ("4bf92f3577b34da6a3ce929d0e0e473", None),
            ("4bf92f3577b34da6a3ce929d0e0e473g", None),
            ("+bf92f3577b34da6a3ce929d0e0e4736", None),
        ] {
            assert_eq!(parse_trace_id(id), expected, "{id}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_report() {
        let malformed = |body: &str| {
            let refusal = parse(body.as_bytes()).unwrap_err();
            assert_eq!(
                (refusal.result, refusal.status),
                (ReportResult::Malformed, 400),
                "{body}"
            );
            refusal.reason
        };
        malformed("not json");
        malformed("");
        malformed("[]");
        malformed(r#"{"v":1}"#);
        assert!(malformed(r#"{"v":2,"calls":[]}"#).contains("version"));
        malformed(r#"{"v":"1","calls":[]}"#);
        malformed(&call(r#""duration_ms":"12","outcome":"ok""#));
        malformed(&call(r#""duration_ms":1e309,"outcome":"ok""#));
        malformed(&call(r#""duration_ms":1,"outcome":"maybe""#));
        malformed(&call(r#""outcome":"ok""#));
        malformed(r#"{"v":1,"dropped":-1,"calls":[]}"#);
        let secret = "oSECRET-openid-in-a-field";
        let reason = malformed(&call(&format!(
            r#""duration_ms":"{secret}","outcome":"ok""#
        )));
        assert!(!reason.contains(secret), "{reason}");
        let deep = "[".repeat(10_000);
        malformed(&deep);
    }

    #[test]
    fn more_than_64_calls_is_too_large() {
        let one = r#"{"duration_ms":1,"outcome":"ok"}"#;
        let calls = |n: usize| vec![one; n].join(",");
        let body = |n| format!(r#"{{"v":1,"calls":[{}]}}"#, calls(n));
        assert_eq!(parse(body(64).as_bytes()).unwrap().calls.len(), 64);
        let refusal = parse(body(MAX_CLIENT_REPORT_CALLS + 1).as_bytes()).unwrap_err();
        assert_eq!(
            (refusal.result, refusal.status),
            (ReportResult::TooLarge, 413)
        );
        assert!(
            refusal
                .reason
                .contains(&MAX_CLIENT_REPORT_CALLS.to_string())
        );
    }
}
