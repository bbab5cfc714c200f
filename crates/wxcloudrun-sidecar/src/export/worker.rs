//! Delivery: one bounded queue and one sequential worker task per backend.
//!
//! - The queue is measured in encoded bytes; when a new request does not fit, the oldest queued
//!   ones are dropped (`queue_full`). The request being sent is outside the queue.
//! - One worker sends requests in order, so a series' samples arrive in timestamp order, and a
//!   slow backend only ever holds up its own queue.
//! - Failed attempts are retried per protocol ([`Attempt`]) with exponential backoff and jitter,
//!   or after the backend's `Retry-After` / `RetryInfo`, until the request is older than
//!   [`RetryPolicy::max_age`] (`retries_exhausted`).
//! - Once a flush deadline is set, every wait (request, backoff, idle) ends at it; the worker
//!   returns when its queue is empty or the deadline passes, and the flush counts what is left.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::Channel;

use crate::metrics::ExporterMetrics;

/// How failed requests are retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff; it doubles on each failure.
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// The longest wait a backend's `Retry-After` or `RetryInfo` can ask for.
    pub max_retry_after: Duration,
    /// A request still failing this long after it was queued is dropped (`retries_exhausted`),
    /// so a dead backend cannot hold its queue forever.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            max_age: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based): full doubling, jittered to 50–100 %.
    fn backoff(&self, attempt: u32, rng: &mut StdRng) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max_backoff);
        base.mul_f64(rng.random_range(0.5..=1.0))
    }
}

/// What a request carries: raw bytes for HTTP, the message for tonic's codec.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    /// An HTTP body (snappy remote write, or OTLP protobuf).
    Http(Bytes),
    /// An OTLP/gRPC request.
    Grpc(Arc<ExportMetricsServiceRequest>),
}

/// One queued request.
#[derive(Clone, Debug)]
pub(crate) struct Payload {
    pub(crate) body: Body,
    /// Encoded size, what the queue cap counts.
    pub(crate) bytes: u64,
    /// Samples inside, what the dropped-samples counters count.
    pub(crate) samples: u64,
    pub(crate) queued_at: Instant,
}

/// The outcome of one attempt.
#[derive(Debug, PartialEq)]
pub(crate) enum Attempt {
    /// Accepted; the backend may report points it rejected (OTLP partial success).
    Delivered { rejected: u64 },
    /// Worth retrying, after `after` if the backend said so.
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// Refused for good.
    Rejected { why: String },
}

/// How one backend is reached.
#[derive(Debug)]
pub(crate) enum Transport {
    /// A `POST` of the body; `retryable` tells which statuses are worth another attempt.
    Http {
        client: reqwest::Client,
        url: reqwest::Url,
        headers: HeaderMap,
        retryable: fn(StatusCode) -> bool,
        otlp: bool,
    },
    /// OTLP/gRPC `MetricsService/Export`.
    Grpc {
        client: MetricsServiceClient<Channel>,
        metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    },
}

/// Remote write 1.0: 5xx and 429.
pub(crate) fn remote_write_retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// OTLP/HTTP: 429, 502, 503, 504 only.
pub(crate) fn otlp_http_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

impl Transport {
    async fn send(&self, body: &Body, timeout: Duration) -> Attempt {
        match (self, body) {
            (
                Transport::Http {
                    client,
                    url,
                    headers,
                    retryable,
                    otlp,
                },
                Body::Http(bytes),
            ) => {
                let sent = client
                    .post(url.clone())
                    .headers(headers.clone())
                    .body(bytes.clone())
                    .timeout(timeout)
                    .send()
                    .await;
                let response = match sent {
                    Ok(response) => response,
                    // Connection refused, reset, timed out: the request may not have arrived.
                    Err(error) => {
                        return Attempt::Retry {
                            after: None,
                            why: error_chain(&error),
                        };
                    }
                };
                let status = response.status();
                let after = retry_after(response.headers());
                // Read the body so the connection can be reused (and to explain a refusal).
                let answer = response.bytes().await.unwrap_or_default();
                if status.is_success() {
                    let rejected = if *otlp { rejected_points(&answer) } else { 0 };
                    Attempt::Delivered { rejected }
                } else if retryable(status) {
                    Attempt::Retry {
                        after,
                        why: describe(status, &answer),
                    }
                } else {
                    Attempt::Rejected {
                        why: describe(status, &answer),
                    }
                }
            }
            (Transport::Grpc { client, metadata }, Body::Grpc(message)) => {
                let mut request = tonic::Request::new(ExportMetricsServiceRequest::clone(message));
                for (key, value) in metadata {
                    request.metadata_mut().append(key.clone(), value.clone());
                }
                request.set_timeout(timeout);
                match client.clone().export(request).await {
                    Ok(response) => Attempt::Delivered {
                        rejected: response
                            .into_inner()
                            .partial_success
                            .map_or(0, |p| u64::try_from(p.rejected_data_points).unwrap_or(0)),
                    },
                    Err(status) => grpc_attempt(&status),
                }
            }
            // Bodies are encoded for their transport in `Exporters::submit`.
            _ => Attempt::Rejected {
                why: "request encoded for another transport".to_owned(),
            },
        }
    }
}

/// The OTLP/gRPC retry rules (protocols.md §4).
pub(crate) fn grpc_attempt(status: &tonic::Status) -> Attempt {
    use tonic::Code;
    use tonic_types::StatusExt;
    let why = format!("gRPC {:?}: {}", status.code(), status.message());
    let hint = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    match status.code() {
        Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => Attempt::Retry { after: hint, why },
        // Only a server that says when to come back is worth retrying when it is out of quota.
        Code::ResourceExhausted if hint.is_some() => Attempt::Retry { after: hint, why },
        _ => Attempt::Rejected { why },
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `partial_success.rejected_data_points` of an OTLP/HTTP answer (0 if absent or unreadable).
fn rejected_points(answer: &[u8]) -> u64 {
    let response: ExportMetricsServiceResponse = prost::Message::decode(answer).unwrap_or_default();
    response
        .partial_success
        .map_or(0, |p| u64::try_from(p.rejected_data_points).unwrap_or(0))
}

fn describe(status: StatusCode, answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(&answer[..answer.len().min(256)]);
    format!("HTTP {status}: {}", text.trim())
}

/// An error with its causes (reqwest's own message hides "connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The queue and the worker's view of the flush, shared by `Exporters` and the worker task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: String,
    state: Mutex<State>,
    /// Wakes the worker: a request was queued, or the flush began.
    wake: Notify,
    /// The flush deadline, once the flush began.
    deadline: watch::Sender<Option<Instant>>,
    max_bytes: u64,
    metrics: ExporterMetrics,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Payload>,
    bytes: u64,
    /// The request being sent (samples), so a flush cut short can count it.
    in_flight: Option<u64>,
    /// A request failed for good after the flush began.
    failed_during_flush: bool,
}

impl Shared {
    pub(crate) fn new(name: String, max_bytes: u64, metrics: ExporterMetrics) -> Self {
        Shared {
            name,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            deadline: watch::Sender::new(None),
            max_bytes,
            metrics,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every lock (no await, no panic inside).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `payload`, dropping the oldest queued requests until it fits.
    pub(crate) fn push(&self, payload: Payload) {
        let mut state = self.state();
        if payload.bytes > self.max_bytes {
            tracing::warn!(
                exporter = %self.name,
                bytes = payload.bytes,
                max_bytes = self.max_bytes,
                "export request larger than the whole queue; dropped"
            );
            self.metrics.dropped_queue_full.inc_by(payload.samples);
            return;
        }
        let mut dropped = 0;
        while state.bytes.saturating_add(payload.bytes) > self.max_bytes {
            let Some(oldest) = state.queue.pop_front() else {
                break;
            };
            state.bytes -= oldest.bytes;
            dropped += oldest.samples;
        }
        if dropped > 0 {
            tracing::warn!(exporter = %self.name, samples = dropped, "export queue full; oldest samples dropped");
            self.metrics.dropped_queue_full.inc_by(dropped);
        }
        state.bytes += payload.bytes;
        state.queue.push_back(payload);
        self.metrics.queue_bytes.set(gauge(state.bytes));
        drop(state);
        self.wake.notify_one();
    }

    /// Sets the flush deadline and wakes the worker so it can finish.
    pub(crate) fn begin_flush(&self, deadline: Instant) {
        self.deadline.send_replace(Some(deadline));
        self.wake.notify_one();
    }

    /// After the worker stopped: drops and counts what it left (`shutdown`); tells whether
    /// anything was left, and whether a request failed for good during the flush.
    pub(crate) fn finish_flush(&self) -> (bool, bool) {
        let mut state = self.state();
        let mut requests = 0;
        let mut samples = 0;
        for payload in state.queue.drain(..) {
            requests += 1;
            samples += payload.samples;
        }
        if let Some(in_flight) = state.in_flight.take() {
            requests += 1;
            samples += in_flight;
        }
        state.bytes = 0;
        self.metrics.queue_bytes.set(0);
        if requests > 0 {
            tracing::warn!(exporter = %self.name, requests, samples, "flush deadline reached; queued samples dropped");
            self.metrics.failed.inc_by(requests);
            self.metrics.dropped_shutdown.inc_by(samples);
        }
        (requests > 0, state.failed_during_flush)
    }

    /// Nothing queued and nothing in flight.
    pub(crate) fn is_idle(&self) -> bool {
        let state = self.state();
        state.queue.is_empty() && state.in_flight.is_none()
    }

    /// The next request, now in flight; `None` when the queue is empty.
    fn next(&self) -> Option<Payload> {
        let mut state = self.state();
        let payload = state.queue.pop_front()?;
        state.bytes -= payload.bytes;
        state.in_flight = Some(payload.samples);
        self.metrics.queue_bytes.set(gauge(state.bytes));
        Some(payload)
    }

    /// The in-flight request is done with (delivered or dropped); `failed` if for good.
    fn done(&self, failed: bool) {
        let mut state = self.state();
        state.in_flight = None;
        if failed && self.deadline.borrow().is_some() {
            state.failed_during_flush = true;
        }
    }

    /// Runs `future` unless the flush deadline (set now or later) passes first.
    async fn before_deadline<F: Future>(&self, future: F) -> Option<F::Output> {
        let mut deadline = self.deadline.subscribe();
        tokio::pin!(future);
        loop {
            let at = *deadline.borrow_and_update();
            let reached = async move {
                match at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                output = &mut future => return Some(output),
                () = reached => return None,
                // The sender lives in `Shared`, which outlives this call.
                _ = deadline.changed() => {}
            }
        }
    }
}

fn gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// The worker task: sends the queue in order until the flush ends it.
pub(crate) async fn run(
    shared: Arc<Shared>,
    transport: Transport,
    policy: RetryPolicy,
    request_timeout: Duration,
) {
    let mut rng = StdRng::from_os_rng();
    loop {
        let Some(payload) = shared.next() else {
            if shared.deadline.borrow().is_some() {
                return;
            }
            shared.wake.notified().await;
            continue;
        };
        if !deliver(
            &shared,
            &transport,
            &policy,
            request_timeout,
            &payload,
            &mut rng,
        )
        .await
        {
            // The deadline passed with the request unsent: the flush counts it.
            return;
        }
    }
}

/// Sends one request until it is delivered or dropped (`true`), or the deadline passes (`false`).
async fn deliver(
    shared: &Shared,
    transport: &Transport,
    policy: &RetryPolicy,
    request_timeout: Duration,
    payload: &Payload,
    rng: &mut StdRng,
) -> bool {
    let metrics = &shared.metrics;
    let name = &shared.name;
    let mut attempt = 0u32;
    loop {
        // A hung backend is cut off by the request timeout, and by the flush deadline.
        let sent = shared
            .before_deadline(tokio::time::timeout(
                request_timeout,
                transport.send(&payload.body, request_timeout),
            ))
            .await;
        let outcome = match sent {
            None => return false,
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => Attempt::Retry {
                after: None,
                why: format!("no answer within {request_timeout:?}"),
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
                    tracing::warn!(exporter = %name, rejected, "backend rejected some data points");
                    metrics.dropped_rejected.inc_by(rejected);
                }
                shared.done(false);
                return true;
            }
            Attempt::Rejected { why } => {
                tracing::warn!(exporter = %name, samples = payload.samples, %why, "export request rejected; dropped");
                metrics.dropped.inc();
                metrics.dropped_rejected.inc_by(payload.samples);
                shared.done(true);
                return true;
            }
            Attempt::Retry { after, why } => {
                if payload.queued_at.elapsed() >= policy.max_age {
                    tracing::warn!(exporter = %name, samples = payload.samples, %why, "export request still failing; giving up");
                    metrics.failed.inc();
                    metrics.dropped_retries_exhausted.inc_by(payload.samples);
                    shared.done(true);
                    return true;
                }
                let wait = match after {
                    Some(after) => after.min(policy.max_retry_after),
                    None => policy.backoff(attempt, rng),
                };
                // Say it once per request; every further attempt only at debug level.
                if attempt == 0 {
                    tracing::warn!(exporter = %name, %why, ?wait, "export attempt failed; retrying");
                } else {
                    tracing::debug!(exporter = %name, %why, ?wait, attempt, "export attempt failed; retrying");
                }
                attempt = attempt.saturating_add(1);
                metrics.retries.inc();
                if shared
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
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..40 {
            let base = (policy.initial_backoff * 2u32.pow(attempt.min(10))).min(policy.max_backoff);
            let wait = policy.backoff(attempt, &mut rng);
            assert!(wait >= base / 2 && wait <= base, "{attempt}: {wait:?}");
        }
    }

    #[test]
    fn status_rules_follow_each_protocol() {
        for code in [500, 502, 503, 429] {
            assert!(remote_write_retryable(StatusCode::from_u16(code).unwrap()));
        }
        for code in [400, 401, 404, 409, 413] {
            assert!(!remote_write_retryable(StatusCode::from_u16(code).unwrap()));
        }
        for code in [429, 502, 503, 504] {
            assert!(otlp_http_retryable(StatusCode::from_u16(code).unwrap()));
        }
        for code in [400, 401, 500, 501] {
            assert!(!otlp_http_retryable(StatusCode::from_u16(code).unwrap()));
        }
    }

    #[test]
    fn grpc_codes_follow_the_otlp_rules() {
        use tonic::Code;
        use tonic_types::{ErrorDetails, StatusExt};
        let retried =
            |status: tonic::Status| matches!(grpc_attempt(&status), Attempt::Retry { .. });
        for code in [
            Code::Unavailable,
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert!(retried(tonic::Status::new(code, "x")), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Internal,
            Code::ResourceExhausted,
        ] {
            assert!(!retried(tonic::Status::new(code, "x")), "{code:?}");
        }
        let with_hint = tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(2))),
        );
        assert_eq!(
            grpc_attempt(&with_hint),
            Attempt::Retry {
                after: Some(Duration::from_secs(2)),
                why: "gRPC ResourceExhausted: slow down".to_owned(),
            }
        );
    }
}
