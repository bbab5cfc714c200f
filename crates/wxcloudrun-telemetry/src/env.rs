//! What the layer reads from the process environment, each variable in one place.
//!
//! The service-name precedence is wxcloudrun-connect's (`otlp_env::service_name`, shared with the
//! sidecar) when the `init` feature brings that crate in. Without it (`default-features = false`
//! and no `init`), the crate carries the same rule itself, so the layer alone does not pull in a
//! TLS stack; a test keeps the two in agreement.

/// The service name when nothing names one (the OpenTelemetry default).
pub(crate) const UNKNOWN_SERVICE: &str = "unknown_service";

/// The HMAC key of hashed identities on spans.
const ID_KEY: &str = "WXCLOUDRUN_TELEMETRY_ID_KEY";

/// The service name the environment gives: `WXCLOUDRUN_SERVICE`, else `OTEL_SERVICE_NAME`, blank
/// values skipped and values trimmed; `None` when neither is set.
pub(crate) fn service_name(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    #[cfg(feature = "init")]
    return wxcloudrun_connect::otlp_env::service_name(lookup);
    #[cfg(not(feature = "init"))]
    return local_service_name(lookup);
}

/// [`service_name`] without wxcloudrun-connect.
#[cfg(any(test, not(feature = "init")))]
fn local_service_name(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let get = |key: &str| {
        lookup(key)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    };
    get("WXCLOUDRUN_SERVICE").or_else(|| get("OTEL_SERVICE_NAME"))
}

/// `WXCLOUDRUN_TELEMETRY_ID_KEY`, when set and not empty.
pub(crate) fn identity_key() -> Option<Vec<u8>> {
    std::env::var(ID_KEY)
        .ok()
        .filter(|key| !key.is_empty())
        .map(String::into_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_local_reader_agrees_with_the_shared_one() {
        let cases: [&'static [(&'static str, &'static str)]; 5] = [
            &[],
            &[("WXCLOUDRUN_SERVICE", "wx"), ("OTEL_SERVICE_NAME", "otel")],
            &[("WXCLOUDRUN_SERVICE", " "), ("OTEL_SERVICE_NAME", "otel")],
            &[("OTEL_SERVICE_NAME", "  padded  ")],
            &[("WXCLOUDRUN_SERVICE", ""), ("OTEL_SERVICE_NAME", "")],
        ];
        for case in cases {
            assert_eq!(
                local_service_name(env(case)),
                service_name(env(case)),
                "{case:?}"
            );
        }
        assert_eq!(
            service_name(env(&[("OTEL_SERVICE_NAME", "  padded  ")])).as_deref(),
            Some("padded")
        );
    }
}
