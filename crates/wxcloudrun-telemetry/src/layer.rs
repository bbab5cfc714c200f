//! [`WxTelemetryLayer`] → [`WxTelemetry`] → [`ResponseFuture`] → [`ResponseBody`]: a request is
//! timed from `call` until its response body has been handed over completely, failed, or dropped.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Buf;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prometheus::Registry;
use tower_layer::Layer;
use tower_service::Service;

use crate::endpoint::MetricsService;
use crate::histogram::Histogram;
use crate::metrics::{ErrorKind, Metrics, RequestSeries, method_label};
use crate::trace::{RequestSpan, Tracing, traceparent};
use crate::{ConfigError, TrustMode, WxContext, WxTelemetryBuilder};

/// A route template (`/api/users/{id}`) for services that don't use axum: insert it into the
/// request's extensions before [`WxTelemetryLayer`] sees the request, and it becomes `http_route`.
///
/// With axum, `MatchedPath` is used and nothing needs to be done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute(pub Cow<'static, str>);

/// The tower layer: records every request in the metric contract and puts a [`WxContext`] into
/// the request's extensions.
///
/// Cloning is cheap (one shared state); clones record into the same metrics.
///
/// ```
/// use axum::{Router, routing::get};
/// use wxcloudrun_telemetry::WxTelemetryLayer;
///
/// let telemetry = WxTelemetryLayer::builder().service_name("demo").build()?;
/// let app: Router = Router::new()
///     .route("/api/users/{id}", get(|| async { "user" }))
///     // `Router::layer` runs after routing, so the route template is known.
///     .layer(telemetry.clone());
/// // Serve `telemetry.metrics_service()` on 127.0.0.1:9464 (see `spawn_metrics_server`).
/// # Ok::<(), wxcloudrun_telemetry::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct WxTelemetryLayer {
    shared: Arc<Shared>,
}

struct Shared {
    metrics: Metrics,
    registry: Registry,
    trust: TrustMode,
    catch_panic: bool,
    tracing: Option<Tracing>,
}

impl std::fmt::Debug for WxTelemetryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxTelemetryLayer")
            .field("service", &self.shared.metrics.service())
            .field("trust", &self.shared.trust)
            .field("catch_panic", &self.shared.catch_panic)
            .field("tracing", &self.shared.tracing)
            .finish_non_exhaustive()
    }
}

impl WxTelemetryLayer {
    /// A builder with every default (see each setter's documentation).
    pub fn builder() -> WxTelemetryBuilder {
        WxTelemetryBuilder::default()
    }

    pub(crate) fn from_builder(builder: WxTelemetryBuilder) -> Result<Self, ConfigError> {
        builder.validate()?;
        let service = builder.resolved_service_name()?;
        let registry = builder.registry.clone().unwrap_or_default();
        let metrics = Metrics::new(&builder, &registry, service)?;
        if builder.process_metrics {
            register_process_metrics(&registry)?;
        }
        let tracing = builder.tracer.clone().map(|tracer| {
            Tracing::new(
                tracer,
                builder.identity,
                builder.resolved_identity_key(),
                builder.trace_id_header.clone(),
                builder.response_traceparent,
            )
        });
        Ok(WxTelemetryLayer {
            shared: Arc::new(Shared {
                metrics,
                registry,
                trust: builder.trust,
                catch_panic: builder.catch_panic,
                tracing,
            }),
        })
    }

    /// The registry holding the layer's metrics.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// The service name in `wx_service`.
    pub fn service_name(&self) -> &str {
        self.shared.metrics.service()
    }

    /// A tower service that renders [`registry`](Self::registry) in the Prometheus text format, to
    /// mount on a router (`Router::route_service("/metrics", …)`) or serve on its own listener.
    pub fn metrics_service(&self) -> MetricsService {
        MetricsService::new(self.shared.registry.clone())
    }
}

#[cfg(target_os = "linux")]
fn register_process_metrics(registry: &Registry) -> Result<(), ConfigError> {
    let collector = prometheus::process_collector::ProcessCollector::for_self();
    match registry.register(Box::new(collector)) {
        // The global registry comes with one already.
        Ok(()) | Err(prometheus::Error::AlreadyReg) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn register_process_metrics(_: &Registry) -> Result<(), ConfigError> {
    Ok(())
}

impl<S> Layer<S> for WxTelemetryLayer {
    type Service = WxTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WxTelemetry {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`WxTelemetryLayer`] wraps around another.
#[derive(Clone)]
pub struct WxTelemetry<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for WxTelemetry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxTelemetry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The route template of a request: an explicit [`HttpRoute`], axum's `MatchedPath`, or the path
/// of a gRPC call (which names the method). Never the raw path of anything else.
fn route_of<B>(req: &Request<B>) -> Option<&str> {
    if let Some(HttpRoute(route)) = req.extensions().get::<HttpRoute>() {
        return Some(route);
    }
    #[cfg(feature = "axum")]
    if let Some(path) = req.extensions().get::<axum::extract::MatchedPath>() {
        return Some(path.as_str());
    }
    let is_grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"));
    is_grpc.then(|| req.uri().path())
}

fn peer_of<B>(_req: &Request<B>) -> Option<std::net::IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = _req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    None
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for WxTelemetry<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let metrics = &shared.metrics;
        let ctx = WxContext::from_headers(req.headers(), shared.trust, peer_of(&req))
            .with_service(metrics.service().clone());
        if shared.trust == TrustMode::Strip {
            WxContext::strip_identity_headers(req.headers_mut());
        }
        let route = route_of(&req);
        let series = metrics.resolve(req.method(), route, &ctx);
        let labels = &series.labels;
        let span = shared.tracing.as_ref().map(|tracing| {
            let shared = metrics.shared_values(labels, route, &ctx);
            tracing.start(&req, &ctx, labels, route, shared)
        });
        let log_span = tracing::info_span!(
            target: "wxcloudrun_telemetry::request",
            "request",
            http.request.method = method_label(labels.method),
            http.route = route,
            trace_id = tracing::field::Empty,
        );
        if let Some(span) = span.as_ref().filter(|_| !log_span.is_disabled()) {
            let span_context = span.span_context();
            if span_context.is_valid() {
                log_span.record("trace_id", tracing::field::display(span_context.trace_id()));
            }
        }
        let head = req.method() == Method::HEAD;
        let request_size = series.sizes.request.clone();
        let mut inflight = Inflight::start(shared.clone(), series, head);
        inflight.span = span;
        inflight.log_span = log_span;
        req.extensions_mut().insert(ctx);
        let req = req.map(|body| RequestBody::new(body, request_size));

        let guards = inflight.enter();
        let inner = if shared.catch_panic {
            match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
                Ok(future) => Some(future),
                Err(payload) => {
                    log_panic(payload.as_ref());
                    None
                }
            }
        } else {
            Some(self.inner.call(req))
        };
        drop(guards);
        ResponseFuture {
            inner,
            inflight: Some(inflight),
            catch_panic: shared.catch_panic,
        }
    }
}

fn log_panic(payload: &(dyn Any + Send)) {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)");
    tracing::error!(panic = message, "the service panicked; answering 500");
}

/// The state of one request from `call` until its response body is done. Whoever holds it last
/// records the request; dropping it unfinished records a cancellation (or a panic, while
/// unwinding), so the in-flight gauge cannot leak.
struct Inflight {
    shared: Arc<Shared>,
    series: Arc<RequestSeries>,
    start: Instant,
    /// `0` until a response exists.
    status: u16,
    /// A body the server may legitimately drop unread: HEAD, 1xx, 204, 304.
    bodiless: bool,
    response_bytes: u64,
    finished: bool,
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
    fn start(shared: Arc<Shared>, series: Arc<RequestSeries>, head: bool) -> Self {
        shared.metrics.request_started(&series.labels);
        Inflight {
            shared,
            series,
            start: Instant::now(),
            status: 0,
            bodiless: head,
            response_bytes: 0,
            finished: false,
            span: None,
            log_span: tracing::Span::none(),
        }
    }

    /// `None` when there is nothing to make current (no span recorded, nobody listening to logs).
    fn enter(&self) -> Option<Entered<'_>> {
        if self.span.is_none() && self.log_span.is_disabled() {
            return None;
        }
        let otel = self.span.as_ref().map(|span| span.cx.clone().attach());
        Some((self.log_span.enter(), otel))
    }

    /// Adds the trace id (and, if configured, `traceparent`) to the response headers.
    fn tag_response<B>(&self, response: &mut Response<B>) {
        let (Some(span), Some(tracing)) = (&self.span, &self.shared.tracing) else {
            return;
        };
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return;
        }
        let headers = response.headers_mut();
        if let Some(name) = &tracing.trace_id_header
            && let Ok(value) = http::HeaderValue::from_str(&span_context.trace_id().to_string())
        {
            headers.insert(name.clone(), value);
        }
        if tracing.response_traceparent
            && let Ok(value) = http::HeaderValue::from_str(&traceparent(&span_context))
        {
            headers.insert(http::HeaderName::from_static("traceparent"), value);
        }
    }

    fn responded(&mut self, status: StatusCode) {
        self.status = status.as_u16();
        self.bodiless |= status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
    }

    fn finish(&mut self, error: ErrorKind) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let error = match error {
            ErrorKind::None if self.status >= 500 => ErrorKind::Status,
            other => other,
        };
        // One instant ends both the histogram sample and the span.
        let elapsed = self.start.elapsed();
        self.shared
            .metrics
            .request_finished(&self.series, self.status, error, elapsed);
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

pin_project! {
    /// The response future of [`WxTelemetry`].
    pub struct ResponseFuture<F> {
        // `None` when the service panicked in `call`.
        #[pin]
        inner: Option<F>,
        inflight: Option<Inflight>,
        catch_panic: bool,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = {
            let _entered = this.inflight.as_ref().and_then(Inflight::enter);
            match this.inner.as_mut().as_pin_mut() {
                None => Err(None),
                Some(future) if *this.catch_panic => {
                    catch_unwind(AssertUnwindSafe(|| future.poll(cx))).map_err(Some)
                }
                Some(future) => Ok(future.poll(cx)),
            }
        };
        let mut inflight = this.inflight.take();
        let result = match polled {
            Ok(Poll::Pending) => {
                *this.inflight = inflight;
                return Poll::Pending;
            }
            Ok(Poll::Ready(result)) => result,
            Err(payload) => {
                if let Some(payload) = payload {
                    log_panic(payload.as_ref());
                }
                // A panicked future must not be polled again.
                this.inner.set(None);
                let mut response = Response::new(ResponseBody::empty());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                if let Some(inflight) = inflight.as_mut() {
                    inflight.responded(StatusCode::INTERNAL_SERVER_ERROR);
                    inflight.tag_response(&mut response);
                    inflight.finish(ErrorKind::Panic);
                }
                return Poll::Ready(Ok(response));
            }
        };
        Poll::Ready(match result {
            Ok(mut response) => {
                if let Some(inflight) = inflight.as_mut() {
                    inflight.responded(response.status());
                    inflight.tag_response(&mut response);
                    if response.body().is_end_stream() {
                        inflight.finish(ErrorKind::None);
                    }
                }
                Ok(response.map(|body| ResponseBody::new(body, inflight)))
            }
            Err(err) => {
                if let Some(inflight) = inflight.as_mut() {
                    inflight.finish(ErrorKind::ServiceError);
                }
                Err(err)
            }
        })
    }
}

pin_project! {
    /// The response body of [`WxTelemetry`]: counts the bytes and records the request when the
    /// last frame has been handed over, the body fails, or it is dropped early.
    pub struct ResponseBody<B> {
        // `None` for the empty body of a caught panic.
        #[pin]
        inner: Option<B>,
        inflight: Option<Inflight>,
    }
}

impl<B> ResponseBody<B> {
    fn new(inner: B, inflight: Option<Inflight>) -> Self {
        ResponseBody {
            inner: Some(inner),
            inflight,
        }
    }

    fn empty() -> Self {
        ResponseBody {
            inner: None,
            inflight: None,
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(mut body) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let frame = {
            let _entered = this.inflight.as_ref().and_then(Inflight::enter);
            ready!(body.as_mut().poll_frame(cx))
        };
        if let Some(inflight) = this.inflight.as_mut() {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        inflight.response_bytes += data.remaining() as u64;
                    }
                    // Servers stop polling once the body says it has ended.
                    if body.is_end_stream() {
                        inflight.finish(ErrorKind::None);
                    }
                }
                Some(Err(_)) => inflight.finish(ErrorKind::BodyError),
                None => inflight.finish(ErrorKind::None),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

pin_project! {
    /// The request body as the wrapped service sees it: the original body, with its bytes counted
    /// into `http_server_request_body_size_bytes` when it ends or is dropped.
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        size: RequestSize,
    }
}

impl<B: Body> RequestBody<B> {
    fn new(inner: B, histogram: Histogram) -> Self {
        let declared = inner.size_hint().exact().unwrap_or(0);
        RequestBody {
            inner,
            size: RequestSize {
                histogram: Some(histogram),
                read: 0,
                declared,
            },
        }
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody").finish_non_exhaustive()
    }
}

/// Records the request body's size once: at its end, or when the service drops it.
struct RequestSize {
    histogram: Option<Histogram>,
    read: u64,
    /// The exact length the body announced (`Content-Length`), for bodies the service never read.
    declared: u64,
}

impl RequestSize {
    fn record(&mut self) {
        if let Some(histogram) = self.histogram.take() {
            histogram.observe(self.read.max(self.declared));
        }
    }
}

impl Drop for RequestSize {
    fn drop(&mut self) {
        self.record();
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.size.read += data.remaining() as u64;
                }
            }
            Some(Err(_)) => {}
            None => this.size.record(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
