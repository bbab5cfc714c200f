//! The one seam between a protocol and the shared machinery: a protocol's configuration plans
//! its exporter ([`Planned`]: name, encoder, transport, timeout), and everything after that —
//! queue, worker, retries, fan-out — is protocol-agnostic.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::queue::Payload;
use super::transport::Transport;
use crate::model::Batch;

/// Turns a scrape's batch into the request payloads of one protocol.
pub(crate) trait Encode: Send + Sync {
    /// The payloads for `batch`, stamped `queued_at` (their age counts from it).
    fn encode(&self, batch: &Batch, queued_at: Instant) -> Vec<Payload>;
}

/// One exporter, ready to start.
pub(crate) struct Planned {
    /// The `exporter` label of the self-metrics.
    pub(crate) name: String,
    /// Exporters with the same key write the same bytes: a batch is encoded once for all of
    /// them (two remote-write backends without their own relabelling, say).
    pub(crate) encoding_key: String,
    pub(crate) encoder: Arc<dyn Encode>,
    pub(crate) transport: Transport,
    /// Timeout of one request.
    pub(crate) timeout: Duration,
    /// The backend's certificate is not verified (logged loudly at start).
    pub(crate) insecure_skip_verify: bool,
}
