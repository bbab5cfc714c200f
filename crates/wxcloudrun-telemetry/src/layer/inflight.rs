//! [`Inflight`]: the one record of a request, from `call` until its response body is done.

use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, Response, StatusCode};

use super::state::LayerState;
use crate::client::{SERVER_TIMING, server_timing};
use crate::context::WxContext;
use crate::labels::ErrorKind;
use crate::metrics::{RequestSeries, SampledRequest};
use crate::trace::{RequestSpan, log_span, request_trace_id};

/// The state of one request from `call` until its response body is done. Whoever holds it last
/// records the request; dropping it unfinished records a cancellation (or a panic, while
/// unwinding), so the in-flight gauge cannot leak.
pub(super) struct Inflight {
    state: Arc<LayerState>,
    series: Arc<RequestSeries>,
    start: Instant,
    /// `0` until a response exists.
    status: u16,
    /// A body the server may legitimately drop unread: HEAD, 1xx, 204, 304.
    bodiless: bool,
    response_bytes: u64,
    finished: bool,
    /// The process's first request: its end is the cold start.
    cold: bool,
    /// The OpenTelemetry server span, when the layer records spans.
    span: Option<RequestSpan>,
    /// The `tracing` span handler logs are attributed to (disabled when nobody listens).
    log_span: tracing::Span,
}

/// What is current while the service or its body runs: the `tracing` span and the OpenTelemetry
/// context. Held only for one poll: the OpenTelemetry guard is bound to the thread.
type Entered<'a> = (
    tracing::span::Entered<'a>,
    Option<opentelemetry::ContextGuard>,
);

impl Inflight {
    /// Starts recording `req`: the in-flight count, the cold start, the spans.
    pub(super) fn start<B>(
        state: Arc<LayerState>,
        series: Arc<RequestSeries>,
        req: &Request<B>,
        ctx: &WxContext,
        route: Option<&str>,
    ) -> Self {
        let labels = &series.labels;
        let cold = state.metrics.request_started(labels);
        let span = state.tracing.as_ref().map(|tracing| {
            let values = state.labels.span_values(labels, route, ctx);
            tracing.start(req, ctx, labels, (route, values), cold)
        });
        if let Some(client) = state.client.as_ref().filter(|_| labels.via_gateway)
            && let Some(trace_id) = request_trace_id(req, span.as_ref())
        {
            client.remember(trace_id, labels);
        }
        let log_span = log_span(labels.method, route, span.as_ref());
        Inflight {
            series,
            start: Instant::now(),
            status: 0,
            bodiless: req.method() == Method::HEAD,
            response_bytes: 0,
            finished: false,
            cold,
            span,
            log_span,
            state,
        }
    }

    /// `None` when there is nothing to make current (no span recorded, nobody listening to logs),
    /// or nothing left to attribute: once the request is recorded and its span ended, a further
    /// poll (the body's closing `None`, which `collect()` asks for) pays no attach. Fewer attaches
    /// than one per poll are not possible: the guard is bound to the thread, and between `call`,
    /// the polls of the future and those of the body the runtime may run other tasks.
    pub(super) fn enter(&self) -> Option<Entered<'_>> {
        if self.finished || (self.span.is_none() && self.log_span.is_disabled()) {
            return None;
        }
        let otel = self.span.as_ref().map(|span| span.cx.clone().attach());
        Some((self.log_span.enter(), otel))
    }

    /// Notes the response's status and adds the trace id (and, if configured, `traceparent`) to
    /// its headers.
    pub(super) fn responded<B>(&mut self, response: &mut Response<B>) {
        let status = response.status();
        self.status = status.as_u16();
        self.bodiless |= status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if let (Some(span), Some(tracing)) = (&self.span, &self.state.tracing) {
            tracing.tag_response(span, response.headers_mut());
        }
        if self.state.client.is_some()
            && let Some(value) = server_timing(self.start.elapsed())
        {
            // A list header: the service's own metrics, if any, stay.
            response.headers_mut().append(SERVER_TIMING.clone(), value);
        }
    }

    /// Counts response body bytes handed over.
    pub(super) fn sent(&mut self, bytes: u64) {
        self.response_bytes += bytes;
    }

    /// Records the request, once: the first call wins.
    pub(super) fn finish(&mut self, error: ErrorKind) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let error = match error {
            ErrorKind::None if self.status >= 500 => ErrorKind::Status,
            other => other,
        };
        // One instant ends both the histogram sample and the span.
        let elapsed = self.start.elapsed();
        let state = &*self.state;
        let sampled = self.span.as_ref().and_then(|span| span.sampled(elapsed));
        let sampled = sampled.map(|(trace, span, end)| SampledRequest::new(trace, span, end));
        state.metrics.request_finished(
            &state.labels,
            &self.series,
            (self.status, error),
            (elapsed, sampled.as_ref()),
            self.cold,
        );
        if let Some(span) = &self.span {
            span.finish(self.status, error, elapsed);
        }
        if self.status != 0 {
            self.series.sizes.response.observe(self.response_bytes);
        }
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        let error = if std::thread::panicking() {
            ErrorKind::Panic
        } else if self.status != 0 && self.bodiless {
            ErrorKind::None
        } else {
            ErrorKind::Cancelled
        };
        self.finish(error);
    }
}
