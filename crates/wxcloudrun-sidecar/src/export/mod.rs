//! Exporters: encode each scrape's [`Batch`] for every configured backend and deliver it through a
//! bounded queue per backend, with retries that follow each protocol's rules.
//!
//! Each protocol owns its folder — configuration, headers, retry rule, encoder, transport:
//! - [`remote_write`]: Prometheus remote write 1.0 (snappy block format, sorted labels, stale
//!   markers, `write_relabel_configs`), any number of backends, each with its own credentials.
//! - [`otlp`]: OTLP metrics over HTTP/protobuf or gRPC.
//!
//! What every exporter shares is protocol-agnostic: [`queue`](self) (bounded by bytes, oldest
//! dropped), the worker (in-order delivery, retries, failures counted by [`FailureReason`] and
//! logged once per change of state), [`RetryPolicy`], [`auth`] (basic or `Authorization`
//! credentials, files re-read on change) and the transports a protocol picks from: the HTTP
//! client (TLS through wxcloudrun-connect, one kept-alive connection per exporter) and the
//! OTLP/gRPC channel. Imports run one way: this file uses its children, the protocol folders use
//! the shared files, the shared files use none of them.
//!
//! Exporter names (the `exporter` label of the self-metrics): the `name` of a `[[remote_write]]`
//! block, else `remote_write`, `remote_write_2`, … in order; then `otlp_http` or `otlp_grpc`.

pub mod attempt;
pub mod auth;
pub mod otlp;
pub mod remote_write;
pub mod retry;

mod error;
mod grpc;
mod http;
mod queue;
mod transport;
mod url;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use crate::metrics::FailureReason;
pub use error::ExportError;
pub use http::USER_AGENT;
pub(crate) use http::header_pair;
pub use otlp::{Compression, OtlpConfig, OtlpProtocol};
pub use remote_write::RemoteWriteConfig;
pub use retry::RetryPolicy;
pub use url::HttpUrl;

use queue::{Body, Payload, Queue};
use transport::Transport;

use crate::metrics::SelfMetrics;
use crate::model::Batch;

/// Cap on the bytes queued per exporter. Defaults to 64 MiB.
pub const DEFAULT_QUEUE_MAX_BYTES: u64 = 64 << 20;

/// Where and how to export.
#[derive(Clone, Debug, Default)]
pub struct ExportConfig {
    /// Prometheus remote-write 1.0 backends, each with its own queue.
    pub remote_write: Vec<RemoteWriteConfig>,
    /// The OTLP backend, if any.
    pub otlp: Option<OtlpConfig>,
    /// Cap on the bytes waiting in each exporter's queue; the oldest requests go first.
    pub queue_max_bytes: u64,
    /// Queued requests older than this are dropped (`too_old`) rather than sent, so that fresh
    /// scrapes are not stuck behind a stale backlog; zero keeps them until the queue is full.
    /// `Config` defaults it to 30 s (two scrape intervals if longer); `Default` leaves it off.
    pub queue_max_age: Duration,
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

/// How a worker's requests are encoded: exporters with the same encoding share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    /// Remote write with its bounds' spelling; `Some(i)` for the `i`-th backend's own relabelled
    /// encoding.
    RemoteWrite(Option<usize>, remote_write::BoundSpelling),
    OtlpHttp,
    OtlpGrpc,
}

/// The running exporters: one queue and one delivery task per backend.
pub struct Exporters {
    workers: Vec<Worker>,
    remote_write: Vec<RemoteWriteConfig>,
    otlp: Option<OtlpConfig>,
}

struct Worker {
    queue: Arc<Queue>,
    encoding: Encoding,
    handle: JoinHandle<()>,
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
        let planned = plan(config)?;
        let workers = planned
            .into_iter()
            .map(
                |Planned {
                     name,
                     encoding,
                     transport,
                     timeout,
                 }| {
                    let exporter_metrics = metrics.exporter(&name, config.queue_max_bytes);
                    let queue = Arc::new(Queue::new(
                        name,
                        config.queue_max_bytes,
                        config.queue_max_age,
                        exporter_metrics,
                    ));
                    let handle = tokio::spawn(worker::deliver_queue(
                        queue.clone(),
                        transport,
                        policy.clone(),
                        timeout,
                    ));
                    Worker {
                        queue,
                        encoding,
                        handle,
                    }
                },
            )
            .collect();
        Ok(Exporters {
            workers,
            remote_write: config.remote_write.clone(),
            otlp: config.otlp.clone(),
        })
    }

    /// The exporters' names, as in the `exporter` label of the self-metrics.
    pub fn names(&self) -> Vec<&str> {
        self.workers.iter().map(|w| w.queue.name.as_str()).collect()
    }

    /// Bytes waiting in every queue, what the queues take of the memory budget.
    pub fn queued_bytes(&self) -> u64 {
        self.workers.iter().map(|w| w.queue.bytes()).sum()
    }

    /// Encodes `batch` for every backend and queues it; never waits on the network.
    pub fn submit(&self, batch: Arc<Batch>) {
        if batch.families.iter().all(|f| f.points.is_empty()) {
            return;
        }
        let queued_at = Instant::now();
        // Each encoding is done once and shared by the exporters that use it.
        let mut encoded: Vec<(Encoding, Vec<Payload>)> = Vec::new();
        for worker in &self.workers {
            let at = match encoded.iter().position(|(e, _)| *e == worker.encoding) {
                Some(at) => at,
                None => {
                    encoded.push((
                        worker.encoding,
                        self.encode(&batch, worker.encoding, queued_at),
                    ));
                    encoded.len() - 1
                }
            };
            for payload in &encoded[at].1 {
                // Cheap: bodies are reference-counted.
                worker.queue.push(payload.clone());
            }
        }
    }

    fn encode(&self, batch: &Batch, encoding: Encoding, queued_at: Instant) -> Vec<Payload> {
        match encoding {
            Encoding::RemoteWrite(relabelled, spelling) => {
                let no_rules = remote_write::Relabel::default();
                let relabel = relabelled
                    .and_then(|index| self.remote_write.get(index))
                    .map_or(&no_rules, |backend| &backend.relabel);
                remote_write::encode::encode_spelled(batch, relabel, spelling)
                    .into_iter()
                    .map(|encoded| Payload {
                        bytes: encoded.body.len() as u64,
                        body: Body::Http(Bytes::from(encoded.body)),
                        samples: encoded.samples,
                        queued_at,
                    })
                    .collect()
            }
            Encoding::OtlpHttp | Encoding::OtlpGrpc => {
                let Some(otlp) = &self.otlp else {
                    return Vec::new();
                };
                otlp::encode::encode(batch, &otlp.resource)
                    .into_iter()
                    .map(|encoded| {
                        let (bytes, body) = if encoding == Encoding::OtlpGrpc {
                            let bytes = prost::Message::encoded_len(&encoded.request);
                            (bytes, Body::Grpc(Arc::new(encoded.request)))
                        } else {
                            let body = otlp.http_body(&encoded.request);
                            (body.len(), Body::Http(body))
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
    }

    /// Waits, with the exporters running as usual, until every queue is empty and nothing is in
    /// flight (`Success`) or `until` passes (`Timeout`). The shutdown uses it to learn how the
    /// flush of the app's data went before it sends its own last batch.
    pub async fn wait_idle(&self, until: Instant) -> FlushOutcome {
        loop {
            if self.workers.iter().all(|w| w.queue.is_idle()) {
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
            worker.queue.begin_flush(deadline);
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
            let (left, failed_here) = worker.queue.finish_flush();
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

/// An exporter about to start: its name, how its requests are encoded, its transport and its
/// request timeout.
struct Planned {
    name: String,
    encoding: Encoding,
    transport: Transport,
    timeout: Duration,
}

/// Every configured exporter, checked: names unique, a queue cap and timeouts above zero.
fn plan(config: &ExportConfig) -> Result<Vec<Planned>, ExportError> {
    let mut planned = Vec::new();
    for (index, backend) in config.remote_write.iter().enumerate() {
        let encoding = Encoding::RemoteWrite(
            (!backend.relabel.is_empty()).then_some(index),
            backend.bound_spelling,
        );
        planned.push(Planned {
            name: backend.name.clone(),
            encoding,
            transport: backend.transport()?,
            timeout: backend.remote_timeout,
        });
        if backend.tls.insecure_skip_verify {
            tracing::warn!(exporter = %backend.name, "tls_config.insecure_skip_verify is on: the backend's certificate is NOT verified");
        }
    }
    if let Some(otlp) = &config.otlp {
        let encoding = match otlp.protocol {
            OtlpProtocol::Grpc => Encoding::OtlpGrpc,
            OtlpProtocol::HttpProtobuf => Encoding::OtlpHttp,
        };
        planned.push(Planned {
            name: otlp.name().to_owned(),
            encoding,
            transport: otlp.transport()?,
            timeout: otlp.timeout,
        });
        if otlp.tls.insecure_skip_verify {
            tracing::warn!(
                exporter = otlp.name(),
                "tls_config.insecure_skip_verify is on: the backend's certificate is NOT verified"
            );
        }
    }
    let mut names: Vec<&str> = planned.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    if let Some(twice) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(ExportError::new(
            "remote_write.name",
            format!("{:?} names two exporters", twice[0]),
        ));
    }
    if !planned.is_empty() && config.queue_max_bytes == 0 {
        return Err(ExportError::new("queue_max_bytes", "must be above 0"));
    }
    if let Some(zero) = planned.iter().find(|p| p.timeout.is_zero()) {
        return Err(ExportError::new(
            "remote_timeout",
            format!("{}: must be above 0", zero.name),
        ));
    }
    Ok(planned)
}

impl Drop for Exporters {
    fn drop(&mut self) {
        // Dropped without a flush (start-up failed elsewhere, tests): stop the tasks.
        for worker in &self.workers {
            worker.handle.abort();
        }
    }
}
