#![warn(missing_docs, unreachable_pub)]
//! Observability for services on WeChat Cloud Run (微信云托管).
//!
//! Mini Programs call these services through `wx.cloud.callContainer`, and the gateway hands every
//! request the caller's OpenID, AppID and call source in `X-WX-*` headers. [`WxTelemetryLayer`]
//! reads them into a typed [`WxContext`] (an extractor with axum) and records every request in
//! Prometheus metrics: latency to the end of the response body, status, route, app, call source,
//! access node, in-flight requests, body sizes, calls past the 15 s callContainer limit and the
//! cold start. OpenIDs and UnionIDs never become metric labels, and credential headers are never
//! recorded anywhere.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use wxcloudrun_telemetry::{DEFAULT_METRICS_ADDR, WxContext, WxTelemetryLayer};
//!
//! async fn hello(ctx: WxContext) -> String {
//!     format!("hello from {}", ctx.primary_source().unwrap_or("the internet"))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let telemetry = WxTelemetryLayer::builder().service_name("hello").build()?;
//!     // Metrics on loopback only: the service port is public through the gateway.
//!     telemetry.spawn_metrics_server(DEFAULT_METRICS_ADDR).await?;
//!
//!     let app = Router::new()
//!         .route("/hello", get(hello))
//!         .layer(telemetry);
//!     let listener = tokio::net::TcpListener::bind("0.0.0.0:80").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! With [`client_reports(true)`](WxTelemetryBuilder::client_reports) the layer also serves the
//! other end of the Mini Program package (`wxcloudrun-telemetry-miniprogram`): every response
//! carries `Server-Timing: app;dur=<ms>`, and [`WxTelemetryLayer::client_reports`] is the beacon
//! that turns the phones' reports into `wxcloudrun_client_*` metrics (what callContainer calls
//! took on the phone, the gateway and network time, the calls that failed before reaching the
//! service), routes joined by trace id with the server's own requests.
//!
//! The metric names, labels and buckets are a contract shared with the project's dashboards and
//! alerting rules; see the README's metric table.

#[cfg(feature = "axum")]
mod axum;
mod cache;
mod client;
mod config;
mod context;
mod endpoint;
mod env;
#[cfg(feature = "init")]
mod init;
mod labels;
mod layer;
#[cfg(feature = "init")]
mod logs;
mod metrics;
mod openmetrics;
mod redact;
mod stack_str;
mod trace;

#[cfg(feature = "axum")]
pub use crate::axum::MissingWxContext;
pub use crate::client::{
    CLIENT_REPORT_BURST, CLIENT_REPORT_REFILL, ClientReportFuture, ClientReportService,
    DEFAULT_CLIENT_REPORT_PATH, MAX_CLIENT_CALL_DURATION, MAX_CLIENT_REPORT_BYTES,
    MAX_CLIENT_REPORT_CALLS, RECENT_REQUESTS_CAPACITY, REPORTING_USERS_CAPACITY,
};
pub use crate::config::{
    ConfigError, DEFAULT_BODY_SIZE_BUCKETS, DEFAULT_CALL_DEADLINE, DEFAULT_DURATION_BUCKETS,
    WxTelemetryBuilder,
};
pub use crate::context::{MAX_HEADER_BYTES, TrustMode, WxContext};
pub use crate::endpoint::{DEFAULT_METRICS_ADDR, MetricsService, TEXT_CONTENT_TYPE, render};
#[cfg(feature = "init")]
pub use crate::init::{
    InitError, OtlpProtocol, SpanBatching, Telemetry, TelemetryConfig, TraceExport, TraceSampler,
    init, init_with,
};

/// For the benches and the load test only (the OTLP/HTTP encoder against opentelemetry-otlp's,
/// the encoding span processor against the SDK's): not an API.
#[cfg(feature = "init")]
#[doc(hidden)]
pub mod __bench {
    pub use crate::init::span_proto::{EncodedResource, encode_request};
    pub use crate::init::{SpanPipeline, telemetry_with_pipeline};
}
pub use crate::labels::{
    CLIENT_ERROR_CODES, DEFAULT_MAX_ACCESS_NODES, DEFAULT_MAX_APPIDS, DEFAULT_MAX_ROUTES,
    DEFAULT_MAX_SOURCES, MetricLabel,
};
pub use crate::layer::{
    HttpRoute, RequestBody, ResponseBody, ResponseFuture, WxTelemetry, WxTelemetryLayer,
};
#[cfg(feature = "init")]
pub use crate::logs::JsonLogLayer;
pub use crate::openmetrics::OPENMETRICS_CONTENT_TYPE;
pub use crate::redact::{SENSITIVE_HEADERS, is_sensitive_header};
pub use crate::trace::{
    DEFAULT_TRACE_ID_HEADER, IdentityPolicy, extract_trace_context, inject_trace_context,
    traceparent,
};

/// The README's examples compile.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
