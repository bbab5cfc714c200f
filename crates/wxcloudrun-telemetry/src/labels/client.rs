//! The vocabulary of the Mini Program's reports: how a call ended (`outcome`), callContainer's
//! error code (`wx_err_code`, from a fixed set) and what became of a report (`result`). Every
//! value set here is closed, so none of these labels needs a guard.

/// The callContainer `errCode`s that are `wx_err_code` values of their own; any other code is
/// `_other`, and a call without one has an empty `wx_err_code`.
///
/// | code | meaning | source |
/// |---|---|---|
/// | `-1` | generic error (network, no answer) | WeChat cloud error codes (`wxcloud/reference/errcode`) |
/// | `-501000` | path missing or unparsable, or the environment is not the calling app's (resource reuse) | callContainer FAQ (`wxcloudrun/src/development/call/faq`) |
/// | `-501001` … `-501005` | cloud resource errors: system error, response timeout, request quota, concurrency quota, environment | WeChat cloud error codes |
/// | `-601` | WeChat back-end error | no public page found (unconfirmed) |
/// | `-604100` | WeChat back-end system error | third-party reports only (cloud calls, not callContainer) |
/// | `-606001` | request larger than 100 KB: refused before the service | callContainer FAQ |
/// | `-606002` | response larger than 1 MB | callContainer FAQ |
/// | `40097` | invalid parameters | callContainer FAQ |
/// | `102002` | timeout: a slow request or a cold start past the client's `timeout` (15 s at most) | callContainer FAQ |
/// | `102003` | gateway error | no public page found (unconfirmed) |
/// | `102005` | HTTP method not GET/POST/PUT/DELETE | callContainer FAQ |
/// | `-405005` | the client gave up polling for the answer | third-party reports (`cloud.callContainer:fail -405005 exceed max poll retry`) |
pub const CLIENT_ERROR_CODES: [i64; 16] = [
    -1, -501000, -501001, -501002, -501003, -501004, -501005, -601, -604100, -606001, -606002,
    40097, 102002, 102003, 102005, -405005,
];

/// [`CLIENT_ERROR_CODES`] as label values, in the same order.
const ERROR_CODE_LABELS: [&str; CLIENT_ERROR_CODES.len()] = [
    "-1", "-501000", "-501001", "-501002", "-501003", "-501004", "-501005", "-601", "-604100",
    "-606001", "-606002", "40097", "102002", "102003", "102005", "-405005",
];

/// `wx_err_code`: none, one of [`CLIENT_ERROR_CODES`] by position, or `_other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ErrCode(u8);

impl ErrCode {
    /// No error code: the empty value.
    pub(crate) const NONE: ErrCode = ErrCode(u8::MAX);
    /// A code outside the set.
    pub(crate) const OTHER: ErrCode = ErrCode(u8::MAX - 1);

    /// The label of an integral code.
    pub(crate) fn of(code: i64) -> Self {
        CLIENT_ERROR_CODES
            .iter()
            .position(|known| *known == code)
            .map_or(Self::OTHER, |i| ErrCode(i as u8))
    }

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::NONE => "",
            Self::OTHER => "_other",
            ErrCode(i) => ERROR_CODE_LABELS
                .get(usize::from(i))
                .copied()
                .unwrap_or("_other"),
        }
    }
}

/// `outcome`: how a call ended as the Mini Program saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ClientOutcome {
    /// An answer below 500 (4xx included: the service answered).
    Ok,
    /// An answer of 500 or more.
    HttpError,
    /// callContainer failed: no answer from the service reached the client.
    Fail,
}

impl ClientOutcome {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClientOutcome::Ok => "ok",
            ClientOutcome::HttpError => "http_error",
            ClientOutcome::Fail => "fail",
        }
    }
}

/// `result` of `wxcloudrun_client_reports_total`: what became of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ReportResult {
    /// Recorded.
    Accepted,
    /// Not a call through the WeChat gateway.
    Untrusted,
    /// Not a report: wrong method, not JSON, wrong shape, unknown version.
    Malformed,
    /// The user's report budget is spent.
    RateLimited,
    /// Over the size limit or the call limit.
    TooLarge,
}

impl ReportResult {
    /// Every value, in the order of [`index`](Self::index).
    pub(crate) const ALL: [ReportResult; 5] = [
        ReportResult::Accepted,
        ReportResult::Untrusted,
        ReportResult::Malformed,
        ReportResult::RateLimited,
        ReportResult::TooLarge,
    ];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReportResult::Accepted => "accepted",
            ReportResult::Untrusted => "untrusted",
            ReportResult::Malformed => "malformed",
            ReportResult::RateLimited => "rate_limited",
            ReportResult::TooLarge => "too_large",
        }
    }

    /// A position below `ALL.len()`.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_labels_spell_their_codes() {
        for (i, code) in CLIENT_ERROR_CODES.iter().enumerate() {
            assert_eq!(ERROR_CODE_LABELS[i], code.to_string());
            assert_eq!(ErrCode::of(*code).as_str(), code.to_string());
        }
        assert_eq!(ErrCode::of(7).as_str(), "_other");
        assert_eq!(ErrCode::of(i64::MIN).as_str(), "_other");
        assert_eq!(ErrCode::NONE.as_str(), "");
        assert!(CLIENT_ERROR_CODES.len() < usize::from(u8::MAX - 1));
    }

    #[test]
    fn report_results_are_indexed_in_order() {
        for (i, result) in ReportResult::ALL.iter().enumerate() {
            assert_eq!(result.index(), i);
        }
    }
}
