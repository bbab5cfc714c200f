//! TLS for HTTP clients (reqwest): OTLP/HTTP and Prometheus remote write.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_http1_only() {
        let config = reqwest_tls(&TlsConfig::default()).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
