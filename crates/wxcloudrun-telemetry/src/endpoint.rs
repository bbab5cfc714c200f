//! Serving `/metrics`: a tower service for any router, and a loopback-only listener of its own.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use tower_service::Service;

use crate::metrics::HistogramFamily;
use crate::openmetrics::{self, OPENMETRICS_CONTENT_TYPE, wants_openmetrics};

/// Where OpenTelemetry's Prometheus exporter listens by default, and where the sidecar scrapes.
pub const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// The content type of the Prometheus text exposition format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut buffer = Vec::with_capacity(16 * 1024);
    // Encoding into a Vec cannot fail on I/O; a collector producing an invalid family is a bug
    // in that collector, and the families that did encode are still worth serving.
    if let Err(err) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::warn!(error = %err, "some metrics could not be rendered");
    }
    String::from_utf8(buffer)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

/// A tower service answering every request with the registry: in OpenMetrics 1.0 text, with
/// the duration histogram's exemplars, when the `Accept` header prefers
/// `application/openmetrics-text` (as Prometheus's does), else in the Prometheus text format
/// 0.0.4, exactly as [`render`] writes it.
///
/// Get one from [`WxTelemetryLayer::metrics_service`](crate::WxTelemetryLayer::metrics_service).
/// With axum: `Router::new().route_service("/metrics", telemetry.metrics_service())`.
#[derive(Clone)]
pub struct MetricsService {
    registry: Registry,
    exemplars: Option<HistogramFamily>,
}

impl std::fmt::Debug for MetricsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsService")
            .field("registry", &self.registry)
            .field(
                "exemplars",
                &self.exemplars.as_ref().map(HistogramFamily::name),
            )
            .finish()
    }
}

impl MetricsService {
    pub(crate) fn new(registry: Registry, exemplars: Option<HistogramFamily>) -> Self {
        MetricsService {
            registry,
            exemplars,
        }
    }

    /// The registry in OpenMetrics 1.0 text, with exemplars.
    pub(crate) fn render_openmetrics(&self) -> String {
        openmetrics::render(&self.registry, self.exemplars.as_ref())
    }

    fn response(&self, openmetrics: bool) -> Response<Full<Bytes>> {
        let (body, content_type) = if openmetrics {
            (self.render_openmetrics(), OPENMETRICS_CONTENT_TYPE)
        } else {
            (render(&self.registry), TEXT_CONTENT_TYPE)
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        // Caches between a scraper and the service must not serve one format for the other.
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept"));
        response
    }
}

impl<B> Service<Request<B>> for MetricsService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let response = if req.uri().path() == "/metrics" || req.uri().path() == "/" {
            self.response(wants_openmetrics(req.headers()))
        } else {
            let mut not_found = Response::new(Full::new(Bytes::from_static(b"try /metrics\n")));
            *not_found.status_mut() = StatusCode::NOT_FOUND;
            not_found
        };
        ready(Ok(response))
    }
}

/// Serves `/metrics` from `service` on a loopback listener at `addr`, in a task on the current
/// Tokio runtime, and returns the bound address. A non-loopback `addr` is refused with
/// [`io::ErrorKind::InvalidInput`].
pub(crate) async fn spawn_metrics_server(
    addr: SocketAddr,
    service: MetricsService,
) -> io::Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "refusing to serve metrics on {addr}: not a loopback address \
                 (the service port is public through the gateway; scrape from inside the container)"
            ),
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    tokio::spawn(serve(listener, service));
    Ok(local_addr)
}

async fn serve(listener: tokio::net::TcpListener, service: MetricsService) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %err, "metrics listener failed to accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = service.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let mut service = service.clone();
                service.call(req)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "metrics connection ended with an error");
            }
        });
    }
}
