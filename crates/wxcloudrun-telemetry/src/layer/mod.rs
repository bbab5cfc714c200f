//! The tower layer: [`WxTelemetryLayer`] → [`WxTelemetry`] → [`ResponseFuture`] →
//! [`ResponseBody`], one type per file, and [`Inflight`](inflight::Inflight), the one record of
//! a request from `call` until its response body is done.
//!
//! What is recorded when:
//!
//! - **`call`** ([`service`]): the gateway headers become a [`WxContext`](crate::WxContext) in the request's
//!   extensions (and, under [`TrustMode::Strip`](crate::TrustMode::Strip), leave the headers); the route template is found
//!   ([`HttpRoute`], axum's `MatchedPath`, a gRPC path, else `unmatched`) and the request's labels
//!   resolved, one cache lookup for a combination seen before. The request starts:
//!   `http_server_active_requests` rises, the process's first request is claimed as the cold
//!   start, the server span starts (its parent from `traceparent`) and the `request` span of the
//!   handler's logs opens. The request body is wrapped ([`RequestBody`]) to count its bytes.
//! - **response headers** ([`future`]): the status is noted and the trace id header added (with
//!   client reports on, `Server-Timing` too, and a gateway request with a trace id is remembered
//!   for the reports at `call`; see [`client`](crate::client)). A
//!   panic becomes a `500` recorded as `error_type="panic"` (unless `catch_panic(false)`); an
//!   error instead of a response ends the request as `service_error`.
//! - **end of the response body** ([`body`]): the request ends, at one instant for the duration
//!   histogram and the span: duration, `wxcloudrun_call_deadline_exceeded_total` for gateway
//!   calls past the deadline, the response body size, the active count back down, and for the
//!   first request `wxcloudrun_cold_start_seconds`. A body that fails ends as `body_error`.
//! - **dropped early**: a response (or body) dropped before its end records the request as
//!   `cancelled` (`panic` while unwinding), except bodies a server may drop unread (HEAD, 1xx,
//!   204, 304); the active count cannot leak. The request body's size is recorded when it ends
//!   or is dropped, at least its announced `Content-Length`.

mod body;
mod future;
mod inflight;
mod service;
mod state;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::Registry;
use tower_layer::Layer;

pub use self::body::{RequestBody, ResponseBody};
pub use self::future::ResponseFuture;
pub use self::service::{HttpRoute, WxTelemetry};
use self::state::LayerState;
use crate::client::ClientReportService;
use crate::config::{ConfigError, WxTelemetryBuilder};
use crate::endpoint::{MetricsService, spawn_metrics_server};

/// The tower layer: records every request in the metric contract and puts a [`WxContext`](crate::WxContext) into
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
    state: Arc<LayerState>,
}

impl std::fmt::Debug for WxTelemetryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxTelemetryLayer")
            .field("service", self.state.labels.service())
            .field("trust", &self.state.trust)
            .field("catch_panic", &self.state.catch_panic)
            .field("tracing", &self.state.tracing)
            .field("client_reports", &self.state.client.is_some())
            .finish_non_exhaustive()
    }
}

impl WxTelemetryBuilder {
    /// Validates the configuration and registers the metrics.
    pub fn build(self) -> Result<WxTelemetryLayer, ConfigError> {
        Ok(WxTelemetryLayer {
            state: Arc::new(LayerState::new(self)?),
        })
    }
}

impl WxTelemetryLayer {
    /// A builder with every default (see each setter's documentation).
    pub fn builder() -> WxTelemetryBuilder {
        WxTelemetryBuilder::default()
    }

    /// The registry holding the layer's metrics.
    pub fn registry(&self) -> &Registry {
        &self.state.registry
    }

    /// The service name in `wx_service`.
    pub fn service_name(&self) -> &str {
        self.state.labels.service()
    }

    /// A tower service that renders [`registry`](Self::registry), to mount on a router
    /// (`Router::route_service("/metrics", …)`) or serve on its own listener: OpenMetrics 1.0
    /// with the duration histogram's exemplars when the scraper asks for it (`Accept:
    /// application/openmetrics-text`), the Prometheus text format 0.0.4 otherwise.
    pub fn metrics_service(&self) -> MetricsService {
        let exemplars = self.state.metrics.duration_family();
        MetricsService::new(self.state.registry.clone(), Some(exemplars))
    }

    /// [`registry`](Self::registry) in OpenMetrics 1.0 text, as [`metrics_service`] serves it to
    /// a scraper that asks for OpenMetrics: each bucket of `http_server_request_duration_seconds`
    /// carries the latest sampled request that fell in it, as
    /// `# {trace_id="…",span_id="…"} value timestamp`.
    ///
    /// [`metrics_service`]: Self::metrics_service
    pub fn render_openmetrics(&self) -> String {
        self.metrics_service().render_openmetrics()
    }

    /// The beacon the Mini Program package reports to, to mount at
    /// [`DEFAULT_CLIENT_REPORT_PATH`](crate::DEFAULT_CLIENT_REPORT_PATH) (the package's default
    /// `beaconPath`), e.g. `Router::route_service(DEFAULT_CLIENT_REPORT_PATH,
    /// telemetry.client_reports())`; see [`ClientReportService`] for what it answers.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use wxcloudrun_telemetry::{DEFAULT_CLIENT_REPORT_PATH, WxTelemetryLayer};
    ///
    /// let telemetry = WxTelemetryLayer::builder().client_reports(true).build()?;
    /// let app: Router = Router::new()
    ///     .route("/api/hello", get(|| async { "hello" }))
    ///     .layer(telemetry.clone())
    ///     .route_service(DEFAULT_CLIENT_REPORT_PATH, telemetry.client_reports());
    /// # Ok::<(), wxcloudrun_telemetry::ConfigError>(())
    /// ```
    ///
    /// On a layer built without [`client_reports(true)`](WxTelemetryBuilder::client_reports) the
    /// service answers every call with `404`.
    pub fn client_reports(&self) -> ClientReportService {
        ClientReportService::new(self.state.client.clone())
    }

    /// Serves `/metrics` on its own listener at `addr` (usually
    /// [`DEFAULT_METRICS_ADDR`](crate::DEFAULT_METRICS_ADDR)), in a task on the current Tokio
    /// runtime, and returns the bound address.
    ///
    /// This is the recommended production set-up: the service's own port is reachable by every
    /// caller through the gateway, and metrics name routes, apps and volumes. So `addr` must be a
    /// loopback address; anything else is refused with [`io::ErrorKind::InvalidInput`].
    pub async fn spawn_metrics_server(&self, addr: SocketAddr) -> io::Result<SocketAddr> {
        spawn_metrics_server(addr, self.metrics_service()).await
    }
}

impl<S> Layer<S> for WxTelemetryLayer {
    type Service = WxTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WxTelemetry::new(inner, self.state.clone())
    }
}
