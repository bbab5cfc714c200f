//! A tonic [`Channel`] that follows the crate's TLS rules, for OTLP/gRPC.
//!
//! tonic's own `ClientTlsConfig` can neither skip verification nor merge the system store with
//! the bundled roots, so the channel gets its own connector: TCP (no Nagle), then TLS through
//! tokio-rustls with ALPN `h2` for `https://`, or nothing more for `http://` (h2c, prior
//! knowledge).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::secret::redact_url;
use crate::tls::{TlsConfig, TlsError};

/// The ALPN protocol gRPC runs on.
const ALPN_H2: &[u8] = b"h2";

/// Why [`channel`] could not build a channel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The endpoint is not a usable `http://` or `https://` URL (shown without userinfo).
    #[error("invalid gRPC endpoint {endpoint}: {reason}")]
    Endpoint {
        /// The endpoint, through [`redact_url`].
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The TLS settings are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// [`channel`] was called outside a Tokio runtime (tonic spawns the channel's worker on it).
    #[error("an OTLP/gRPC channel needs a Tokio runtime: build it inside one")]
    NoRuntime,
}

/// A lazily connecting tonic [`Channel`] to `endpoint` (`http://` plaintext h2c, `https://` with
/// `tls` through tokio-rustls, ALPN `h2`), with `connect_timeout` over TCP and TLS together.
/// One place so the sidecar's OTLP/gRPC exporter and `init()`'s trace exporter share the TLS
/// rules of [`crate::tls`]; the connection is kept and reused across exports.
///
/// `endpoint` needs a scheme (apply `OTEL_EXPORTER_OTLP_INSECURE` before); a path in it is
/// ignored, gRPC paths come from the service. With `server_name` set, it is sent as SNI and the
/// certificate is verified against it. Must be called inside a Tokio runtime; nothing connects
/// until the first request.
pub fn channel(
    endpoint: &str,
    tls: &TlsConfig,
    connect_timeout: Duration,
    user_agent: &str,
) -> Result<Channel, ConnectError> {
    let target = Target::parse(endpoint)?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ConnectError::NoRuntime);
    }
    let invalid = |reason: String| ConnectError::Endpoint {
        endpoint: redact_url(endpoint),
        reason,
    };
    // tonic sees a plaintext URI whatever the scheme: when some crate in the build enables a
    // tonic TLS feature, tonic's own connector would otherwise try TLS again on top of ours for
    // `https://` (and fail, having no TLS config). The origin keeps `:scheme` and `:authority`
    // of the real endpoint on every request.
    let connector_uri: Uri = format!("http://{}", target.authority_with_port())
        .parse()
        .map_err(|err: http::uri::InvalidUri| invalid(err.to_string()))?;
    let base = Endpoint::from(connector_uri)
        .origin(target.origin.clone())
        .connect_timeout(connect_timeout)
        .user_agent(user_agent)
        .map_err(|err| invalid(format!("user agent {user_agent:?}: {err}")))?;
    let channel = if target.https {
        let config = tls.client_config(&[ALPN_H2])?;
        let connector = TlsConnector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name: tls.sni_for(&target.host)?,
        };
        base.connect_with_connector_lazy(connector)
    } else {
        base.connect_with_connector_lazy(TcpConnector)
    };
    Ok(channel)
}

/// The parts of an endpoint the connector needs.
#[derive(Debug)]
struct Target {
    https: bool,
    /// As in the URL: an IPv6 literal keeps its brackets.
    host: String,
    port: u16,
    /// `scheme://authority` of the endpoint.
    origin: Uri,
}

impl Target {
    fn parse(endpoint: &str) -> Result<Self, ConnectError> {
        let invalid = |reason: &str| ConnectError::Endpoint {
            endpoint: redact_url(endpoint),
            reason: reason.to_owned(),
        };
        let uri: Uri = endpoint.trim().parse().map_err(|_| invalid("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(_) => return Err(invalid("the scheme must be http:// or https://")),
            None => {
                return Err(invalid(
                    "no scheme: use http:// (plaintext) or https:// (TLS)",
                ));
            }
        };
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?.clone();
        if authority.as_str().contains('@') {
            return Err(invalid(
                "credentials in the URL are not supported for gRPC: use a header",
            ));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let origin = Uri::builder()
            .scheme(if https { "https" } else { "http" })
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| invalid("not a URL"))?;
        Ok(Target {
            https,
            host: host.to_owned(),
            port,
            origin,
        })
    }

    fn authority_with_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, std::io::Error>> + Send>>;

/// TCP to the URI's host and port, Nagle off (OTLP requests are small and latency-bound).
async fn tcp(uri: Uri) -> Result<TcpStream, std::io::Error> {
    let host = uri
        .host()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The connector of `http://` channels.
#[derive(Clone, Copy, Debug)]
struct TcpConnector;

impl tower_service::Service<Uri> for TcpConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move { Ok(TokioIo::new(tcp(uri).await?)) })
    }
}

/// The connector of `https://` channels: TCP, then the TLS handshake.
#[derive(Clone)]
pub(crate) struct TlsConnector {
    tls: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let name = self.name.clone();
        Box::pin(async move {
            let stream = tcp(uri).await?;
            let stream = tls.connect(name, stream).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

#[cfg(test)]
impl TlsConnector {
    /// The connector [`channel`] would use for `endpoint`, for the handshake tests.
    pub(crate) fn for_tests(endpoint: &str, tls: &TlsConfig) -> Result<(Self, Uri), ConnectError> {
        let target = Target::parse(endpoint)?;
        let connector = TlsConnector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls.client_config(&[ALPN_H2])?)),
            name: tls.sni_for(&target.host)?,
        };
        let uri = format!("http://{}", target.authority_with_port())
            .parse()
            .unwrap();
        Ok((connector, uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_a_scheme_and_a_host() {
        let target = Target::parse("https://collector.example").unwrap();
        assert!(target.https);
        assert_eq!(target.authority_with_port(), "collector.example:443");
        assert_eq!(target.origin, "https://collector.example/");
        let target = Target::parse(" http://[::1]:4317/ignored ").unwrap();
        assert!(!target.https);
        assert_eq!(target.authority_with_port(), "[::1]:4317");
        assert_eq!(Target::parse("http://h").unwrap().port, 80);

        for (bad, why) in [
            ("collector:4317", "no scheme"),
            ("grpc://collector:4317", "http:// or https://"),
            ("https://user:sekrit@collector:4317", "credentials"),
            ("https:// bad", "not a URL"),
        ] {
            let err = Target::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("sekrit"), "{err}");
        }
    }

    #[test]
    fn needs_a_runtime() {
        let err = channel(
            "http://127.0.0.1:4317",
            &TlsConfig::default(),
            Duration::from_secs(1),
            "test",
        )
        .unwrap_err();
        assert!(matches!(err, ConnectError::NoRuntime), "{err}");
    }

    #[tokio::test]
    async fn tls_errors_surface_when_building() {
        let err = channel(
            "https://127.0.0.1:4317",
            &TlsConfig {
                cert_file: Some("/nonexistent/client.pem".into()),
                ..TlsConfig::default()
            },
            Duration::from_secs(1),
            "test",
        )
        .unwrap_err();
        assert!(matches!(err, ConnectError::Tls(_)), "{err}");
        // Plaintext ignores TLS settings entirely.
        channel(
            "http://127.0.0.1:4317",
            &TlsConfig {
                cert_file: Some("/nonexistent/client.pem".into()),
                ..TlsConfig::default()
            },
            Duration::from_secs(1),
            "test",
        )
        .unwrap();
    }
}
