//! Exporters: encode each scrape's [`Batch`] for every configured backend and deliver it through a
//! bounded queue per backend, with retries that follow each protocol's rules.
//!
//! Each protocol owns its folder — configuration, headers, retry rule, encoder, transport — and
//! plugs in through one seam, `plan.rs`: its configuration's `plan()` gives the exporter's name,
//! an encoder (`Encode`), a transport and a timeout; the queue, the worker, the retries and the
//! fan-out below never look at the protocol. Adding one is its folder, a field of
//! [`ExportConfig`], a line in `plan` here, and its settings in `config/`.
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
mod plan;
mod queue;
mod transport;
mod url;
mod worker;

use std::sync::Arc;
use std::time::Duration;

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

use plan::{Encode, Planned};
use queue::{Payload, Queue};

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

/// The running exporters: one queue and one delivery task per backend.
pub struct Exporters {
    workers: Vec<Worker>,
}

struct Worker {
    queue: Arc<Queue>,
    encoding_key: String,
    encoder: Arc<dyn Encode>,
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
                     encoding_key,
                     encoder,
                     transport,
                     timeout,
                     ..
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
                        encoding_key,
                        encoder,
                        handle,
                    }
                },
            )
            .collect();
        Ok(Exporters { workers })
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
        let mut encoded: Vec<(&str, Vec<Payload>)> = Vec::new();
        for worker in &self.workers {
            let key = worker.encoding_key.as_str();
            let at = match encoded.iter().position(|(done, _)| *done == key) {
                Some(at) => at,
                None => {
                    encoded.push((key, worker.encoder.encode(&batch, queued_at)));
                    encoded.len() - 1
                }
            };
            for payload in &encoded[at].1 {
                // Cheap: bodies are reference-counted.
                worker.queue.push(payload.clone());
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
/// Every configured exporter, checked: names unique, a queue cap and timeouts above zero.
fn plan(config: &ExportConfig) -> Result<Vec<Planned>, ExportError> {
    let remote_write = config.remote_write.iter().enumerate();
    let planned = remote_write
        .map(|(index, backend)| backend.plan(index))
        .chain(config.otlp.iter().map(OtlpConfig::plan))
        .collect::<Result<Vec<Planned>, ExportError>>()?;
    for exporter in planned.iter().filter(|p| p.insecure_skip_verify) {
        tracing::warn!(exporter = %exporter.name, "tls_config.insecure_skip_verify is on: the backend's certificate is NOT verified");
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
