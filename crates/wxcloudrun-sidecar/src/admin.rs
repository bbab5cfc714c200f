//! The admin listener: `/healthz` (the process runs), `/readyz` (a scrape has succeeded; until
//! then, why not) and `/metrics` (the self-metrics). Loopback by default: it is for the platform's
//! shell and tests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};

/// Shared state the admin endpoints read.
#[derive(Clone, Debug, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    /// Why the sidecar is not ready yet (the last scrape's failure); empty before any scrape.
    waiting: Arc<Mutex<String>>,
}

impl Health {
    /// Marks the sidecar ready (after the first successful scrape).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Whether the first scrape has succeeded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Records why no scrape has succeeded yet.
    pub fn set_waiting(&self, reason: &str) {
        if let Ok(mut waiting) = self.waiting.lock() {
            reason.clone_into(&mut waiting);
        }
    }

    /// The `/readyz` body while not ready.
    fn not_ready(&self) -> String {
        let waiting = self.waiting.lock().map(|w| w.clone()).unwrap_or_default();
        if waiting.is_empty() {
            "not ready: waiting for the first scrape of the app's metrics\n".to_owned()
        } else {
            format!("not ready: no scrape of the app's metrics has succeeded yet: {waiting}\n")
        }
    }
}

/// Renders a registry in the Prometheus text format.
fn render(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    if let Err(err) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::warn!(error = %err, "self-metrics could not be rendered");
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

fn respond(
    req: &Request<hyper::body::Incoming>,
    health: &Health,
    registry: &Registry,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" if health.is_ready() => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            health.not_ready(),
        ),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(registry),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /healthz, /readyz or /metrics\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// Binds `addr` and serves the admin endpoints in a background task; returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
    health: Health,
    registry: Registry,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let health = health.clone();
            let registry = registry.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let response = respond(&req, &health, &registry);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(local)
}
