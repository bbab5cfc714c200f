//! The HTTP side shared by remote write and OTLP/HTTP: one keep-alive client per exporter (one
//! TLS session reused across pushes, no handshake per request), a `POST` per request with the
//! exporter's headers and current credentials, and the answer read into an [`Attempt`].

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use wxcloudrun_connect::secret::{REDACTED, is_sensitive_header};
use wxcloudrun_connect::tls::TlsConfig;

use super::attempt::{Attempt, AttemptFailure};
use super::auth::Auth;
use super::retry::retry_after;

/// `User-Agent` of every export request.
pub const USER_AGENT: &str = concat!("wxcloudrun-sidecar/", env!("CARGO_PKG_VERSION"));

/// How long a connection attempt may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle connection is kept for the next push. Defaults to 5 minutes: longer than any
/// sensible scrape interval, so a push every 15 s reuses its TLS session.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A keep-alive HTTP client with the exporter's TLS settings: the bundled webpki roots and the
/// system store (when the image has one), or only `ca_file`; a client certificate for mTLS.
pub(crate) fn client(tls: &TlsConfig) -> Result<reqwest::Client, String> {
    let tls = wxcloudrun_connect::http::reqwest_tls(tls).map_err(|err| err.to_string())?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()
        .map_err(|err| super::attempt::error_chain(&err))
}

/// The user's headers, then the protocol's own, which replace any user header of the same name.
/// Values of sensitive headers (authorization, tokens, keys) are marked so `Debug` hides them.
pub(crate) fn headers(
    user: &[(String, String)],
    reserved: &[(HeaderName, &'static str)],
) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in user {
        let (name, value) = header_pair(name, value)?;
        headers.append(name, value);
    }
    for (name, value) in reserved {
        if headers.contains_key(name) {
            tracing::warn!(header = %name, "header is set by the protocol; the configured value is ignored");
        }
        headers.insert(name.clone(), HeaderValue::from_static(value));
    }
    Ok(headers)
}

/// One header, validated; sensitive values marked.
pub(crate) fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let header_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    let mut header_value = HeaderValue::from_str(value)
        .map_err(|_| format!("the value of {name:?} is not a valid header value"))?;
    header_value.set_sensitive(is_sensitive_header(name));
    Ok((header_name, header_value))
}

/// A `POST` of prepared bodies to one URL.
#[derive(Debug)]
pub(crate) struct HttpTransport {
    pub(crate) client: reqwest::Client,
    pub(crate) url: reqwest::Url,
    pub(crate) headers: HeaderMap,
    pub(crate) auth: Auth,
    /// Which statuses are worth another attempt (the protocol's rule).
    pub(crate) retryable: fn(StatusCode) -> bool,
    /// Data points the backend says it rejected in a 2xx answer (OTLP partial success).
    pub(crate) rejected: fn(&[u8]) -> u64,
}

impl HttpTransport {
    pub(crate) async fn send(&self, body: &Bytes, timeout: Duration) -> Attempt {
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body.clone())
            .timeout(timeout);
        if let Some(value) = self.auth.header_value() {
            request = request.header(http::header::AUTHORIZATION, value);
        }
        let response = match request.send().await {
            Ok(response) => response,
            // Connection refused, reset, TLS, timed out: the request may not have arrived.
            Err(error) => {
                return Attempt::Retry {
                    after: None,
                    failure: AttemptFailure::transport(&error),
                };
            }
        };
        let status = response.status();
        let after = retry_after(response.headers());
        // Read the body so the connection can be reused (and to explain a refusal).
        let answer = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            Attempt::Delivered {
                rejected: (self.rejected)(&answer),
            }
        } else if (self.retryable)(status) {
            Attempt::Retry {
                after,
                failure: AttemptFailure::http(status, &answer),
            }
        } else {
            Attempt::Rejected {
                failure: AttemptFailure::http(status, &answer),
            }
        }
    }
}

/// No partial-success information (remote write 1.0).
pub(crate) fn no_rejections(_: &[u8]) -> u64 {
    0
}

/// Header pairs with the values of sensitive ones shown as `<secret>`.
pub(crate) struct RedactedHeaders<'a>(pub(crate) &'a [(String, String)]);

impl std::fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, value)| {
                let shown = if is_sensitive_header(name) {
                    REDACTED
                } else {
                    value.as_str()
                };
                (name, shown)
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_header_values_are_hidden_from_debug() {
        let map = headers(
            &[
                ("X-Scope-OrgID".to_owned(), "tenant-a".to_owned()),
                ("X-Api-Key".to_owned(), "key-SECRET".to_owned()),
                ("Authorization".to_owned(), "Bearer tok-SECRET".to_owned()),
            ],
            &[(http::header::USER_AGENT, "ua")],
        )
        .unwrap();
        let debug = format!("{map:?}");
        assert!(debug.contains("tenant-a"), "{debug}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(headers(&[("bad name".to_owned(), "x".to_owned())], &[]).is_err());
        assert!(headers(&[("x".to_owned(), "bad\nvalue".to_owned())], &[]).is_err());
    }
}
