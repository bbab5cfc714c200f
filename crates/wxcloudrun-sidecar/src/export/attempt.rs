//! What one attempt to deliver a request came to, and why it failed: the [`FailureReason`] (the
//! `reason` of `wxcloudrun_sidecar_export_errors_total`, a self-metric label defined with the
//! metrics) a status or a transport error gives.

use std::time::Duration;

use http::StatusCode;

use crate::metrics::FailureReason;

impl FailureReason {
    /// The reason an HTTP status gives.
    pub(crate) fn of_status(status: StatusCode) -> FailureReason {
        match status.as_u16() {
            401 | 403 => FailureReason::Auth,
            400..=499 => FailureReason::Http4xx,
            500..=599 => FailureReason::Http5xx,
            _ => FailureReason::Other,
        }
    }

    /// The reason a transport error gives, from its chain of causes: rustls errors say
    /// "certificate", "handshake" or name an alert; hyper and the OS say "refused", "reset", ….
    pub(crate) fn of_error(error: &(dyn std::error::Error + 'static)) -> FailureReason {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
        let mut timeout = false;
        while let Some(cause) = current {
            if cause.is::<rustls::Error>() {
                return FailureReason::Tls;
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.is::<rustls::Error>())
                {
                    return FailureReason::Tls;
                }
                if io.kind() == std::io::ErrorKind::TimedOut {
                    timeout = true;
                }
            }
            let text = cause.to_string().to_ascii_lowercase();
            if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
                return FailureReason::Tls;
            }
            if text.contains("timed out") || text.contains("deadline") {
                timeout = true;
            }
            current = cause.source();
        }
        if timeout {
            FailureReason::Timeout
        } else {
            FailureReason::Connect
        }
    }
}

/// The outcome of one attempt.
#[derive(Debug, PartialEq)]
pub(crate) enum Attempt {
    /// Accepted; the backend may report points it rejected (OTLP partial success).
    Delivered { rejected: u64 },
    /// Worth retrying, after `after` if the backend said so.
    Retry {
        after: Option<Duration>,
        failure: AttemptFailure,
    },
    /// Refused for good.
    Rejected { failure: AttemptFailure },
}

/// A failed attempt: why, the HTTP status (0 when there was none) and what the backend said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AttemptFailure {
    pub(crate) reason: FailureReason,
    pub(crate) status: u16,
    /// The error, or the first 256 bytes of the answer.
    pub(crate) detail: String,
}

impl AttemptFailure {
    /// An HTTP answer that is not a success.
    pub(crate) fn http(status: StatusCode, answer: &[u8]) -> AttemptFailure {
        let text = String::from_utf8_lossy(&answer[..answer.len().min(256)]);
        AttemptFailure {
            reason: FailureReason::of_status(status),
            status: status.as_u16(),
            detail: text.trim().to_owned(),
        }
    }

    /// A request that got no answer.
    pub(crate) fn transport(error: &(dyn std::error::Error + 'static)) -> AttemptFailure {
        AttemptFailure {
            reason: FailureReason::of_error(error),
            status: 0,
            detail: error_chain(error),
        }
    }
}

/// An error with its causes (reqwest's own message hides "connection refused").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_reasons() {
        let reason = |code| FailureReason::of_status(StatusCode::from_u16(code).unwrap());
        assert_eq!(reason(401), FailureReason::Auth);
        assert_eq!(reason(403), FailureReason::Auth);
        assert_eq!(reason(400), FailureReason::Http4xx);
        assert_eq!(reason(429), FailureReason::Http4xx);
        assert_eq!(reason(503), FailureReason::Http5xx);
        assert_eq!(reason(302), FailureReason::Other);
    }

    #[test]
    fn transport_errors_map_to_reasons() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(FailureReason::of_error(&refused), FailureReason::Connect);
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(FailureReason::of_error(&timed_out), FailureReason::Timeout);
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(FailureReason::of_error(&tls), FailureReason::Tls);
        let labels: Vec<&str> = FailureReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(
            labels,
            [
                "tls", "auth", "connect", "timeout", "http_4xx", "http_5xx", "other"
            ]
        );
    }
}
