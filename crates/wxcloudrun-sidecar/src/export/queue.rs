//! One exporter's bounded queue, shared by [`super::Exporters`] (which pushes) and its worker
//! (which sends), and the flush deadline both sides watch.
//!
//! The queue is measured in encoded bytes; when a new request does not fit, the oldest queued
//! ones are dropped (`queue_full`). Requests older than the queue's age limit are dropped too
//! (`too_old`), when a new one comes and when the worker takes the next: after a flood or an
//! outage the backlog does not hold fresh scrapes back for longer than that (each series stays
//! in order: only the oldest go). The request being sent is outside the queue.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::metrics::ExporterMetrics;

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

/// The queue and the worker's view of the flush, shared by `Exporters` and the worker task.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) name: String,
    state: Mutex<State>,
    /// Wakes the worker: a request was queued, or the flush began.
    pub(crate) wake: Notify,
    /// The flush deadline, once the flush began.
    pub(crate) deadline: watch::Sender<Option<Instant>>,
    max_bytes: u64,
    /// Requests older than this are dropped unsent; zero: never.
    max_age: Duration,
    pub(crate) metrics: ExporterMetrics,
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

impl Queue {
    pub(crate) fn new(
        name: String,
        max_bytes: u64,
        max_age: Duration,
        metrics: ExporterMetrics,
    ) -> Self {
        Queue {
            name,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            deadline: watch::Sender::new(None),
            max_bytes,
            max_age,
            metrics,
        }
    }

    /// Drops the queued requests older than the age limit, oldest first; logs and counts them.
    fn drop_too_old(&self, state: &mut State) {
        if self.max_age.is_zero() {
            return;
        }
        let mut dropped = 0;
        while let Some(oldest) = state.queue.front() {
            if oldest.queued_at.elapsed() <= self.max_age {
                break;
            }
            let bytes = oldest.bytes;
            dropped += oldest.samples;
            state.queue.pop_front();
            state.bytes -= bytes;
        }
        if dropped > 0 {
            tracing::warn!(
                exporter = %self.name,
                samples = dropped,
                max_age = ?self.max_age,
                "queued samples older than the queue's age limit dropped"
            );
            self.metrics.dropped_too_old.inc_by(dropped);
            self.metrics.queue_bytes.set(gauge(state.bytes));
        }
    }

    /// Bytes waiting in the queue (what counts against the memory budget).
    pub(crate) fn bytes(&self) -> u64 {
        self.state().bytes
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
        self.drop_too_old(&mut state);
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
    pub(crate) fn next(&self) -> Option<Payload> {
        let mut state = self.state();
        self.drop_too_old(&mut state);
        let payload = state.queue.pop_front()?;
        state.bytes -= payload.bytes;
        state.in_flight = Some(payload.samples);
        self.metrics.queue_bytes.set(gauge(state.bytes));
        Some(payload)
    }

    /// The in-flight request is done with (delivered or dropped); `failed` if for good.
    pub(crate) fn done(&self, failed: bool) {
        let mut state = self.state();
        state.in_flight = None;
        if failed && self.deadline.borrow().is_some() {
            state.failed_during_flush = true;
        }
    }

    /// Runs `future` unless the flush deadline (set now or later) passes first.
    pub(crate) async fn before_deadline<F: Future>(&self, future: F) -> Option<F::Output> {
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
                // The sender lives in the `Queue`, which outlives this call.
                _ = deadline.changed() => {}
            }
        }
    }
}

pub(crate) fn gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SelfMetrics;

    fn payload(samples: u64, age: Duration) -> Payload {
        Payload {
            body: Body::Http(Bytes::from_static(b"x")),
            bytes: 100,
            samples,
            queued_at: Instant::now().checked_sub(age).unwrap(),
        }
    }

    #[tokio::test]
    async fn requests_older_than_the_age_limit_are_dropped_and_fresh_ones_sent() {
        let metrics = SelfMetrics::new().exporter("x", 1 << 20);
        let queue = Queue::new("x".to_owned(), 1 << 20, Duration::from_secs(30), metrics);
        queue.push(payload(5, Duration::from_secs(60)));
        queue.push(payload(7, Duration::from_secs(40)));
        assert_eq!(
            queue.metrics.dropped_too_old.get(),
            5,
            "dropped on the next push"
        );
        queue.push(payload(3, Duration::ZERO));
        assert_eq!(queue.metrics.dropped_too_old.get(), 12);
        let next = queue.next().expect("the fresh request");
        assert_eq!(next.samples, 3);
        assert_eq!(queue.bytes(), 0);
        // Aged while waiting: dropped when the worker comes for it.
        queue.done(false);
        queue
            .state()
            .queue
            .push_back(payload(4, Duration::from_secs(31)));
        queue.state().bytes += 100;
        assert!(queue.next().is_none());
        assert_eq!(queue.metrics.dropped_too_old.get(), 16);
        assert_eq!(queue.bytes(), 0);
    }

    #[tokio::test]
    async fn without_an_age_limit_old_requests_wait() {
        let metrics = SelfMetrics::new().exporter("x", 1 << 20);
        let queue = Queue::new("x".to_owned(), 1 << 20, Duration::ZERO, metrics);
        queue.push(payload(5, Duration::from_secs(3600)));
        assert_eq!(queue.next().map(|p| p.samples), Some(5));
        assert_eq!(queue.metrics.dropped_too_old.get(), 0);
    }
}
