//! Exporters: encode each scrape's [`Batch`] for every configured backend and deliver it through a
//! bounded queue per backend, with retries that follow each protocol's rules.
//!
//! - [`remote_write`]: Prometheus remote write 1.0 (snappy block format, sorted labels, stale
//!   markers), at most [`remote_write::MAX_SERIES_PER_REQUEST`] series per request.
//! - [`otlp`]: OTLP metrics over HTTP/protobuf or gRPC; the mapping is documented there.
//! - `delivery`: the queues, the worker tasks and the retry rules ([`RetryPolicy`]).
//!
//! Exporter names (the `exporter` label of the self-metrics): `remote_write`, `remote_write_2`, …
//! in the order of the URLs, then `otlp_http` or `otlp_grpc`.

pub mod otlp;
pub mod remote_write;

mod delivery;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use delivery::RetryPolicy;
use delivery::{Body, Payload, Shared, Transport};

use crate::metrics::{ExporterMetrics, SelfMetrics};
use crate::model::Batch;

/// `User-Agent` of every export request.
pub const USER_AGENT: &str = concat!("wxcloudrun-sidecar/", env!("CARGO_PKG_VERSION"));

/// The OTLP transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC: `MetricsService/Export`.
    Grpc,
    /// OTLP/HTTP with protobuf bodies: `POST …/v1/metrics`.
    #[default]
    HttpProtobuf,
}

/// Where and how to export.
#[derive(Clone, Debug, Default)]
pub struct ExportConfig {
    /// Prometheus remote-write 1.0 endpoints (`http://host:9090/api/v1/write`), each its own queue.
    pub remote_write_urls: Vec<String>,
    /// The OTLP metrics endpoint: for HTTP the full `…/v1/metrics` URL; for gRPC the base URL.
    pub otlp_endpoint: Option<String>,
    /// The OTLP transport.
    pub otlp_protocol: OtlpProtocol,
    /// Extra headers on every export request (auth), `(name, value)`; they cannot replace the
    /// protocol's own (`Content-Type`, `Content-Encoding`, `User-Agent`, remote-write version).
    pub headers: Vec<(String, String)>,
    /// Cap on the bytes waiting in each exporter's queue; the oldest requests go first.
    pub queue_max_bytes: u64,
    /// OTLP resource attributes (`service.name`, `service.instance.id`, `wx.env`, …).
    pub resource: Vec<(String, String)>,
    /// Timeout of one export request.
    pub request_timeout: Duration,
}

/// How the final flush ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushOutcome {
    /// Every queue drained.
    Success,
    /// The deadline came first; what was left is dropped and counted (`reason="shutdown"`).
    Timeout,
    /// Some requests failed for good (rejected or retries exhausted) during the flush.
    Error,
}

impl FlushOutcome {
    /// The `outcome` label of `wxcloudrun_sidecar_shutdown_flushes_total`.
    pub fn label(self) -> &'static str {
        match self {
            FlushOutcome::Success => "success",
            FlushOutcome::Timeout => "timeout",
            FlushOutcome::Error => "error",
        }
    }
}

/// A failure to start the exporters (bad URL, bad header).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ExportError {
    /// The configuration key at fault (`remote_write_url`, `otlp_endpoint`, `header`,
    /// `queue_max_bytes`, `request_timeout`).
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

/// One exporter's self-metrics read back at once (tests, diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExporterStats {
    /// Requests delivered.
    pub success: u64,
    /// Requests given up on (retries exhausted, shutdown).
    pub failed: u64,
    /// Requests the backend refused for good.
    pub dropped: u64,
    /// Retried attempts.
    pub retries: u64,
    /// Bytes queued now.
    pub queue_bytes: i64,
    /// Samples dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Samples the backend refused.
    pub dropped_rejected: u64,
    /// Samples given up on after retries.
    pub dropped_retries_exhausted: u64,
    /// Samples left when the flush deadline came.
    pub dropped_shutdown: u64,
}

impl ExporterStats {
    /// Reads the current values.
    pub fn read(metrics: &ExporterMetrics) -> Self {
        ExporterStats {
            success: metrics.success.get(),
            failed: metrics.failed.get(),
            dropped: metrics.dropped.get(),
            retries: metrics.retries.get(),
            queue_bytes: metrics.queue_bytes.get(),
            dropped_queue_full: metrics.dropped_queue_full.get(),
            dropped_rejected: metrics.dropped_rejected.get(),
            dropped_retries_exhausted: metrics.dropped_retries_exhausted.get(),
            dropped_shutdown: metrics.dropped_shutdown.get(),
        }
    }
}

/// The running exporters: one queue and one delivery task per backend.
pub struct Exporters {
    workers: Vec<Worker>,
    /// OTLP resource attributes.
    resource: Vec<(String, String)>,
}

struct Worker {
    shared: Arc<Shared>,
    format: Format,
    handle: JoinHandle<()>,
}

/// How a worker's requests are encoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    RemoteWrite,
    OtlpHttp,
    OtlpGrpc,
}

impl std::fmt::Debug for Exporters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporters")
            .field("names", &self.names())
            .finish()
    }
}

impl Exporters {
    /// Validates `config` and spawns the delivery tasks on the current Tokio runtime.
    pub fn start(config: &ExportConfig, metrics: &SelfMetrics) -> Result<Self, ExportError> {
        Self::start_with_policy(config, metrics, RetryPolicy::default())
    }

    /// [`Exporters::start`] with another retry policy (tests use short waits).
    pub fn start_with_policy(
        config: &ExportConfig,
        metrics: &SelfMetrics,
        policy: RetryPolicy,
    ) -> Result<Self, ExportError> {
        let mut planned = Vec::new();
        for (index, url) in config.remote_write_urls.iter().enumerate() {
            let name = match index {
                0 => "remote_write".to_owned(),
                n => format!("remote_write_{}", n + 1),
            };
            let url = http_url("remote_write_url", url)?;
            let headers = http_headers(
                &config.headers,
                &[
                    (header::CONTENT_ENCODING, "snappy"),
                    (header::CONTENT_TYPE, "application/x-protobuf"),
                    (header::USER_AGENT, USER_AGENT),
                    (
                        HeaderName::from_static("x-prometheus-remote-write-version"),
                        "0.1.0",
                    ),
                ],
            )?;
            let transport = Transport::Http {
                client: http_client("remote_write_url")?,
                url,
                headers,
                retryable: delivery::remote_write_retryable,
                otlp: false,
            };
            planned.push((name, Format::RemoteWrite, transport));
        }
        if let Some(endpoint) = &config.otlp_endpoint {
            planned.push(match config.otlp_protocol {
                OtlpProtocol::HttpProtobuf => {
                    let headers = http_headers(
                        &config.headers,
                        &[
                            (header::CONTENT_TYPE, "application/x-protobuf"),
                            (header::USER_AGENT, USER_AGENT),
                        ],
                    )?;
                    let transport = Transport::Http {
                        client: http_client("otlp_endpoint")?,
                        url: http_url("otlp_endpoint", endpoint)?,
                        headers,
                        retryable: delivery::otlp_http_retryable,
                        otlp: true,
                    };
                    ("otlp_http".to_owned(), Format::OtlpHttp, transport)
                }
                OtlpProtocol::Grpc => {
                    let transport = grpc_transport(endpoint, &config.headers)?;
                    ("otlp_grpc".to_owned(), Format::OtlpGrpc, transport)
                }
            });
        }
        if !planned.is_empty() && config.queue_max_bytes == 0 {
            return Err(ExportError {
                key: "queue_max_bytes",
                reason: "must be above 0".to_owned(),
            });
        }
        if config.request_timeout.is_zero() && !planned.is_empty() {
            return Err(ExportError {
                key: "request_timeout",
                reason: "must be above 0".to_owned(),
            });
        }
        let workers = planned
            .into_iter()
            .map(|(name, format, transport)| {
                let exporter_metrics = metrics.exporter(&name, config.queue_max_bytes);
                let shared = Arc::new(Shared::new(name, config.queue_max_bytes, exporter_metrics));
                let handle = tokio::spawn(delivery::run(
                    shared.clone(),
                    transport,
                    policy.clone(),
                    config.request_timeout,
                ));
                Worker {
                    shared,
                    format,
                    handle,
                }
            })
            .collect();
        Ok(Exporters {
            workers,
            resource: config.resource.clone(),
        })
    }

    /// The exporters' names, as in the `exporter` label of the self-metrics.
    pub fn names(&self) -> Vec<&str> {
        self.workers
            .iter()
            .map(|w| w.shared.name.as_str())
            .collect()
    }

    /// Encodes `batch` for every backend and queues it; never waits on the network.
    pub fn submit(&self, batch: Arc<Batch>) {
        if batch.families.iter().all(|f| f.points.is_empty()) {
            return;
        }
        let queued_at = Instant::now();
        // Each encoding is done once and shared by the exporters that use it (at most one OTLP).
        let remote_write: Vec<Payload> =
            if self.workers.iter().any(|w| w.format == Format::RemoteWrite) {
                remote_write::encode(&batch)
                    .into_iter()
                    .map(|encoded| Payload {
                        bytes: encoded.body.len() as u64,
                        body: Body::Http(Bytes::from(encoded.body)),
                        samples: encoded.samples,
                        queued_at,
                    })
                    .collect()
            } else {
                Vec::new()
            };
        let otlp_format = self
            .workers
            .iter()
            .map(|w| w.format)
            .find(|&format| format != Format::RemoteWrite);
        let otlp: Vec<Payload> = match otlp_format {
            None => Vec::new(),
            Some(format) => otlp::encode(&batch, &self.resource)
                .into_iter()
                .map(|encoded| {
                    let (bytes, body) = if format == Format::OtlpGrpc {
                        let bytes = prost::Message::encoded_len(&encoded.request);
                        (bytes, Body::Grpc(Arc::new(encoded.request)))
                    } else {
                        let body = prost::Message::encode_to_vec(&encoded.request);
                        (body.len(), Body::Http(Bytes::from(body)))
                    };
                    Payload {
                        bytes: bytes as u64,
                        body,
                        samples: encoded.samples,
                        queued_at,
                    }
                })
                .collect(),
        };
        for worker in &self.workers {
            let payloads = match worker.format {
                Format::RemoteWrite => &remote_write,
                Format::OtlpHttp | Format::OtlpGrpc => &otlp,
            };
            for payload in payloads {
                // Cheap: bodies are reference-counted.
                worker.shared.push(payload.clone());
            }
        }
    }

    /// Waits, with the exporters running as usual, until every queue is empty and nothing is in
    /// flight (`Success`) or `until` passes (`Timeout`). The shutdown uses it to learn how the
    /// flush of the app's data went before it sends its own last batch.
    pub async fn wait_idle(&self, until: Instant) -> FlushOutcome {
        loop {
            if self.workers.iter().all(|w| w.shared.is_idle()) {
                return FlushOutcome::Success;
            }
            if Instant::now() >= until {
                return FlushOutcome::Timeout;
            }
            tokio::time::sleep(Duration::from_millis(10).min(until - Instant::now())).await;
        }
    }

    /// Delivers what is queued until every queue is empty or `deadline` passes, then stops the
    /// tasks. Requests still queued at the deadline are dropped and counted.
    pub async fn flush(mut self, deadline: Instant) -> FlushOutcome {
        for worker in &self.workers {
            worker.shared.begin_flush(deadline);
        }
        let mut left_over = false;
        let mut failed = false;
        // The workers run concurrently; waiting on them in turn costs nothing extra.
        for mut worker in std::mem::take(&mut self.workers) {
            if tokio::time::timeout_at(deadline, &mut worker.handle)
                .await
                .is_err()
            {
                // Every wait in the worker ends at the deadline; this only backs that up.
                worker.handle.abort();
                let _ = (&mut worker.handle).await;
            }
            let (left, failed_here) = worker.shared.finish_flush();
            left_over |= left;
            failed |= failed_here;
        }
        if left_over {
            FlushOutcome::Timeout
        } else if failed {
            FlushOutcome::Error
        } else {
            FlushOutcome::Success
        }
    }
}

impl Drop for Exporters {
    fn drop(&mut self) {
        // Dropped without a flush (start-up failed elsewhere, tests): stop the tasks.
        for worker in &self.workers {
            worker.handle.abort();
        }
    }
}

/// An `http://` or `https://` URL with a host.
fn http_url(key: &'static str, url: &str) -> Result<reqwest::Url, ExportError> {
    let parsed = reqwest::Url::parse(url).map_err(|error| ExportError {
        key,
        reason: format!("{url:?} is not a URL: {error}"),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ExportError {
            key,
            reason: format!("{url:?} must be an http:// or https:// URL with a host"),
        });
    }
    Ok(parsed)
}

fn http_client(key: &'static str) -> Result<reqwest::Client, ExportError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| ExportError {
            key,
            reason: format!("cannot build the HTTP client: {error}"),
        })
}

/// The user's headers, then the protocol's own, which replace any user header of the same name.
fn http_headers(
    user: &[(String, String)],
    reserved: &[(HeaderName, &'static str)],
) -> Result<HeaderMap, ExportError> {
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

fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), ExportError> {
    let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| ExportError {
        key: "header",
        reason: format!("{name:?} is not a valid header name"),
    })?;
    let header_value = HeaderValue::from_str(value).map_err(|_| ExportError {
        key: "header",
        reason: format!("the value of {name:?} is not a valid header value"),
    })?;
    Ok((header_name, header_value))
}

fn grpc_transport(
    endpoint: &str,
    user_headers: &[(String, String)],
) -> Result<Transport, ExportError> {
    let key = "otlp_endpoint";
    let url = http_url(key, endpoint)?;
    let mut builder = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .and_then(|e| e.user_agent(USER_AGENT))
        .map_err(|error| ExportError {
            key,
            reason: format!("{endpoint:?}: {error}"),
        })?;
    if url.scheme() == "https" {
        // rustls with ring and the webpki roots: no OpenSSL, no system certificate store needed
        // in a slim image.
        let tls = tonic::transport::ClientTlsConfig::new()
            .with_webpki_roots()
            .domain_name(url.host_str().unwrap_or_default());
        builder = builder.tls_config(tls).map_err(|error| ExportError {
            key,
            reason: format!("{endpoint:?}: TLS: {error}"),
        })?;
    }
    let channel = builder
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let mut metadata = Vec::with_capacity(user_headers.len());
    for (name, value) in user_headers {
        header_pair(name, value)?;
        let key_of = tonic::metadata::AsciiMetadataKey::from_bytes(name.as_bytes());
        let value_of = tonic::metadata::AsciiMetadataValue::try_from(value.as_str());
        match (key_of, value_of) {
            (Ok(k), Ok(v)) => metadata.push((k, v)),
            _ => {
                return Err(ExportError {
                    key: "header",
                    reason: format!("{name:?} cannot be sent as gRPC metadata"),
                });
            }
        }
    }
    Ok(Transport::Grpc {
        client: MetricsServiceClient::new(channel),
        metadata,
    })
}
