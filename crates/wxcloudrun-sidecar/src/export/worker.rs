//! One sequential worker task per exporter: it sends its queue in order, so a series' samples
//! arrive in timestamp order and a slow backend only ever holds up its own queue.
//!
//! - Failed attempts are retried by the protocol's rule with exponential backoff and jitter, or
//!   after the backend's `Retry-After` / `RetryInfo`, until the request is older than
//!   [`RetryPolicy::max_age`] (`retries_exhausted`). Refusals (401, 403, other 4xx) are dropped
//!   and counted at once, never retried.
//! - Every failed attempt is counted by reason; the log says so once per change of state (a new
//!   reason or status), with the exporter, its URL without userinfo, the status and the start of
//!   the answer, and once more when the backend accepts again.
//! - Once a flush deadline is set, every wait (request, backoff, idle) ends at it; the worker
//!   returns when its queue is empty or the deadline passes, and the flush counts what is left.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::attempt::{Attempt, AttemptFailure};
use super::queue::{Payload, Queue};
use super::retry::RetryPolicy;
use super::transport::Transport;
use crate::metrics::FailureReason;

/// The worker task: sends the queue in order until the flush ends it.
pub(crate) async fn deliver_queue(
    queue: Arc<Queue>,
    transport: Transport,
    policy: RetryPolicy,
    request_timeout: Duration,
) {
    let mut rng = StdRng::from_os_rng();
    let mut health = LoggedState::default();
    loop {
        let Some(payload) = queue.next() else {
            if queue.deadline.borrow().is_some() {
                return;
            }
            queue.wake.notified().await;
            continue;
        };
        let mut sender = Sender {
            queue: &queue,
            transport: &transport,
            policy: &policy,
            request_timeout,
            health: &mut health,
            rng: &mut rng,
        };
        if !sender.deliver(&payload).await {
            // The deadline passed with the request unsent: the flush counts it.
            return;
        }
    }
}

/// What the log last said about the backend: a line only when this changes.
#[derive(Debug, Default)]
struct LoggedState {
    failing: Option<(FailureReason, u16)>,
}

struct Sender<'a> {
    queue: &'a Queue,
    transport: &'a Transport,
    policy: &'a RetryPolicy,
    request_timeout: Duration,
    health: &'a mut LoggedState,
    rng: &'a mut StdRng,
}

impl Sender<'_> {
    /// Sends one request until it is delivered or dropped (`true`), or the deadline passes
    /// (`false`).
    async fn deliver(&mut self, payload: &Payload) -> bool {
        let metrics = &self.queue.metrics;
        let mut attempt = 0u32;
        loop {
            // A hung backend is cut off by the request timeout, and by the flush deadline.
            let sent = self
                .queue
                .before_deadline(tokio::time::timeout(
                    self.request_timeout,
                    self.transport.send(&payload.body, self.request_timeout),
                ))
                .await;
            let outcome = match sent {
                None => return false,
                Some(Ok(outcome)) => outcome,
                Some(Err(_)) => Attempt::Retry {
                    after: None,
                    failure: AttemptFailure {
                        reason: FailureReason::Timeout,
                        status: 0,
                        detail: format!("no answer within {:?}", self.request_timeout),
                    },
                },
            };
            match outcome {
                Attempt::Delivered { rejected } => {
                    metrics.success.inc();
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    metrics.last_success.set(now.as_secs_f64());
                    if rejected > 0 {
                        // Final by the spec: the rest was ingested, resending would duplicate it.
                        tracing::warn!(exporter = %self.queue.name, rejected, "backend rejected some data points");
                        metrics.dropped_rejected.inc_by(rejected);
                    }
                    if self.health.failing.take().is_some() {
                        tracing::info!(exporter = %self.queue.name, url = %self.transport.url(), "export recovered");
                    }
                    self.queue.done(false);
                    return true;
                }
                Attempt::Rejected { failure } => {
                    self.failed(&failure, "export request rejected; dropped, not retried");
                    metrics.dropped.inc();
                    metrics.dropped_rejected.inc_by(payload.samples);
                    self.queue.done(true);
                    return true;
                }
                Attempt::Retry { after, failure } => {
                    self.failed(&failure, "export attempt failed; retrying");
                    if payload.queued_at.elapsed() >= self.policy.max_age {
                        tracing::warn!(exporter = %self.queue.name, samples = payload.samples, "export request still failing; giving up");
                        metrics.failed.inc();
                        metrics.dropped_retries_exhausted.inc_by(payload.samples);
                        self.queue.done(true);
                        return true;
                    }
                    let wait = match after {
                        Some(after) => after.min(self.policy.max_retry_after),
                        None => self.policy.backoff(attempt, self.rng),
                    };
                    tracing::debug!(exporter = %self.queue.name, ?wait, attempt, "retrying");
                    attempt = attempt.saturating_add(1);
                    metrics.retries.inc();
                    if self
                        .queue
                        .before_deadline(tokio::time::sleep(wait))
                        .await
                        .is_none()
                    {
                        return false;
                    }
                }
            }
        }
    }

    /// Counts a failed attempt by reason and logs it when the backend's state changed.
    fn failed(&mut self, failure: &AttemptFailure, message: &'static str) {
        self.queue.metrics.errors(failure.reason).inc();
        let state = Some((failure.reason, failure.status));
        if self.health.failing == state {
            tracing::debug!(exporter = %self.queue.name, reason = failure.reason.label(), status = failure.status, detail = %failure.detail, "{message}");
            return;
        }
        self.health.failing = state;
        tracing::warn!(
            exporter = %self.queue.name,
            url = %self.transport.url(),
            reason = failure.reason.label(),
            status = failure.status,
            detail = %failure.detail,
            "{message}"
        );
    }
}
