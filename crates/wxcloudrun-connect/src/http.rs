//! HTTP clients (reqwest) for OTLP/HTTP and Prometheus remote write: their TLS, and the
//! backend's `Retry-After`.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::tls::{TlsConfig, TlsError};

/// The ALPN protocols [`reqwest_tls`] offers: HTTP/1.1 only.
///
/// Not `h2`: the reqwest in this tree is built without its `http2` feature, and when a server
/// picks `h2` for a client that cannot speak it, hyper-util's client panics ("http2 feature is
/// not enabled") instead of falling back. Collectors and remote-write receivers all speak
/// HTTP/1.1. A caller whose reqwest has `http2` can build its own with
/// [`TlsConfig::client_config`]`(&[b"h2", b"http/1.1"])`.
pub const REQWEST_ALPN: &[&[u8]] = &[b"http/1.1"];

/// The rustls config for reqwest clients (ALPN [`REQWEST_ALPN`]), so callers do
/// `reqwest::Client::builder().tls_backend_preconfigured(cfg)`.
///
/// With `server_name` set, reqwest still sends the URL host as SNI; the certificate is verified
/// against `server_name`.
pub fn reqwest_tls(tls: &TlsConfig) -> Result<rustls::ClientConfig, TlsError> {
    tls.client_config(REQWEST_ALPN)
}

/// The wait a response's `Retry-After` asks for: seconds, or an HTTP date (one already past is
/// no wait). `None` when there is none or it cannot be read. Callers cap it.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    retry_after_value(value, SystemTime::now())
}

/// [`retry_after`] of one header value, read at `now`.
pub fn retry_after_value(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", http::HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        headers.insert("retry-after", later.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(120));
        headers.insert("retry-after", past.parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", http::HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn offers_http1_only() {
        let config = reqwest_tls(&TlsConfig::default()).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
