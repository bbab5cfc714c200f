//! OTLP metrics: the backend's configuration (`[otlp]` and the `OTEL_EXPORTER_OTLP_*`
//! variables), its transports (HTTP/protobuf, gRPC), retry rules and the encoder.
//!
//! - [`encode`]: a [`Batch`](crate::model::Batch) as `ExportMetricsServiceRequest`s; the mapping
//!   is documented there.
//! - Retries: OTLP/HTTP 429, 502, 503, 504 (with `Retry-After`); gRPC by status code. A 200 with
//!   `partial_success` is final.

pub mod encode;
mod exemplar;
mod fields;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, header};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use tokio::time::Instant;
use wxcloudrun_connect::tls::TlsConfig;

pub use encode::{Encoded, MAX_POINTS_PER_REQUEST, encode, per_bucket};
pub use wxcloudrun_connect::otlp_env::{Compression, Protocol as OtlpProtocol};

use super::auth::Auth;
use super::error::ExportError;
use super::grpc::GrpcTransport;
use super::http::{HttpTransport, RedactedHeaders, USER_AGENT};
use super::plan::{Encode, Planned};
use super::queue::{Body, Payload};
use super::transport::Transport;
use super::url::HttpUrl;
use crate::model::Batch;

/// How long one request may take. Defaults to 10 s (the OTLP default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The OTLP backend.
#[derive(Clone)]
pub struct OtlpConfig {
    /// For HTTP the full `…/v1/metrics` URL; for gRPC the base URL.
    pub endpoint: HttpUrl,
    /// The transport. Defaults to http/protobuf.
    pub protocol: OtlpProtocol,
    /// Body compression. Defaults to none.
    pub compression: Compression,
    /// Timeout of one request. Defaults to [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// Extra headers (gRPC: metadata).
    pub headers: Vec<(String, String)>,
    /// Credentials.
    pub auth: Auth,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Resource attributes (`service.name`, `service.instance.id`, `token` for Tencent APM, …).
    pub resource: Vec<(String, String)>,
}

impl OtlpConfig {
    /// A backend with the defaults.
    pub fn new(endpoint: HttpUrl, protocol: OtlpProtocol) -> Self {
        OtlpConfig {
            endpoint,
            protocol,
            compression: Compression::None,
            timeout: DEFAULT_TIMEOUT,
            headers: Vec::new(),
            auth: Auth::None,
            tls: TlsConfig::default(),
            resource: Vec::new(),
        }
    }

    /// The `exporter` label: `otlp_http` or `otlp_grpc`.
    pub fn name(&self) -> &'static str {
        match self.protocol {
            OtlpProtocol::Grpc => "otlp_grpc",
            OtlpProtocol::HttpProtobuf => "otlp_http",
        }
    }

    /// The backend as an exporter to start.
    pub(crate) fn plan(&self) -> Result<Planned, ExportError> {
        Ok(Planned {
            name: self.name().to_owned(),
            encoding_key: self.name().to_owned(),
            encoder: Arc::new(Encoder(self.clone())),
            transport: self.transport()?,
            timeout: self.timeout,
            insecure_skip_verify: self.tls.insecure_skip_verify,
        })
    }

    fn transport(&self) -> Result<Transport, ExportError> {
        let display_url = self.endpoint.redacted();
        match self.protocol {
            OtlpProtocol::Grpc => Ok(Transport::Grpc {
                display_url,
                grpc: GrpcTransport::new(
                    self.endpoint.as_str(),
                    &self.tls,
                    self.compression,
                    &self.headers,
                    &self.auth,
                )?,
            }),
            OtlpProtocol::HttpProtobuf => {
                let mut reserved = vec![
                    (header::CONTENT_TYPE, "application/x-protobuf"),
                    (header::USER_AGENT, USER_AGENT),
                ];
                if self.compression == Compression::Gzip {
                    reserved.push((header::CONTENT_ENCODING, "gzip"));
                }
                let headers = super::http::headers(&self.headers, &reserved)
                    .map_err(|reason| ExportError::new("otlp.headers", reason))?;
                let client = super::http::client(&self.tls)
                    .map_err(|reason| ExportError::new("otlp.tls_config", reason))?;
                Ok(Transport::Http {
                    display_url,
                    http: HttpTransport {
                        client,
                        url: self.endpoint.parsed().clone(),
                        headers,
                        auth: self.auth.clone(),
                        retryable: http_retryable,
                        rejected: rejected_points,
                    },
                })
            }
        }
    }

    /// An HTTP body: the protobuf, gzipped when configured.
    pub(crate) fn http_body(&self, request: &impl prost::Message) -> Bytes {
        let raw = request.encode_to_vec();
        if self.compression != Compression::Gzip {
            return Bytes::from(raw);
        }
        let mut gzip = flate2::write::GzEncoder::new(
            Vec::with_capacity(raw.len() / 4),
            flate2::Compression::fast(),
        );
        // Writing into a Vec cannot fail.
        match gzip.write_all(&raw).and_then(|()| gzip.finish()) {
            Ok(body) => Bytes::from(body),
            Err(_) => Bytes::new(),
        }
    }
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("compression", &self.compression)
            .field("timeout", &self.timeout)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("resource", &RedactedHeaders(&self.resource))
            .finish()
    }
}

/// The backend's encoding: its resource, and for HTTP its compression.
struct Encoder(OtlpConfig);

impl Encode for Encoder {
    fn encode(&self, batch: &Batch, queued_at: Instant) -> Vec<Payload> {
        let otlp = &self.0;
        encode(batch, &otlp.resource)
            .into_iter()
            .map(|encoded| {
                let (bytes, body) = match otlp.protocol {
                    OtlpProtocol::Grpc => {
                        let bytes = prost::Message::encoded_len(&encoded.request);
                        (bytes, Body::Grpc(Arc::new(encoded.request)))
                    }
                    OtlpProtocol::HttpProtobuf => {
                        let body = otlp.http_body(&encoded.request);
                        (body.len(), Body::Http(body))
                    }
                };
                Payload {
                    bytes: bytes as u64,
                    body,
                    samples: encoded.samples,
                    queued_at,
                }
            })
            .collect()
    }
}

/// OTLP/HTTP: 429, 502, 503, 504 only.
pub(crate) fn http_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// `partial_success.rejected_data_points` of an OTLP/HTTP answer (0 if absent or unreadable).
fn rejected_points(answer: &[u8]) -> u64 {
    let response: ExportMetricsServiceResponse = prost::Message::decode(answer).unwrap_or_default();
    response
        .partial_success
        .map_or(0, |p| u64::try_from(p.rejected_data_points).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use prost::Message as _;

    use super::*;

    #[test]
    fn http_statuses_follow_the_spec() {
        for code in [429, 502, 503, 504] {
            assert!(http_retryable(StatusCode::from_u16(code).unwrap()));
        }
        for code in [400, 401, 403, 500, 501] {
            assert!(!http_retryable(StatusCode::from_u16(code).unwrap()));
        }
    }

    #[test]
    fn gzip_bodies_decode_to_the_protobuf() {
        let request = ExportMetricsServiceResponse::default();
        let mut config = OtlpConfig::new(
            HttpUrl::parse("http://c:4318/v1/metrics").unwrap(),
            OtlpProtocol::HttpProtobuf,
        );
        config.resource = vec![("token".to_owned(), "apm-SECRET".to_owned())];
        assert_eq!(
            config.http_body(&request),
            Bytes::from(request.encode_to_vec())
        );
        config.compression = Compression::Gzip;
        let body = config.http_body(&request);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw, prost::Message::encode_to_vec(&request));
        // The APM token is a resource attribute; Debug never shows it.
        assert!(!format!("{config:?}").contains("SECRET"));
    }
}
