//! The JSON log lines a handler writes carry the ids of the request's server span.
//!
//! This file holds a single test on purpose. It installs a thread-local subscriber with
//! `tracing::subscriber::set_default`, and tracing caches each callsite's interest process-wide:
//! a test on another thread that reaches the same callsite with no subscriber can race the
//! interest rebuild and leave the handler's `info!` cached as "never", so the line goes missing.
//! Alone in its own binary, nothing else runs in the process.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::Request;
use axum::routing::get;
use http_body_util::BodyExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;
use wxcloudrun_telemetry::{JsonLogLayer, WxTelemetryLayer};

const OPENID: &str = "oSECRET-openid-1234567890";

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn handler_logs_carry_the_trace_id() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = WxTelemetryLayer::builder()
        .service_name("orders")
        .tracer(provider.tracer("test"))
        .build()
        .unwrap();
    let router = Router::new()
        .route(
            "/api/users/{id}",
            get(|Path(id): Path<u32>| async move {
                tracing::info!(user_id = id, "loading user");
                format!("user {id}")
            }),
        )
        .layer(layer);
    let logs = Captured::default();
    let subscriber = tracing_subscriber::registry().with(JsonLogLayer::new(logs.clone()));
    let _default = tracing::subscriber::set_default(subscriber);

    let request = Request::get("/api/users/42")
        .header("x-wx-source", "wx_client")
        .header("x-wx-openid", OPENID)
        .header("x-wx-appid", "wxAPP1")
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let _ = response.into_body().collect().await;
    tracing::info!("outside any request");

    let mut spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = spans.remove(0);
    let lines = logs.lines();
    let handler = lines
        .iter()
        .find(|line| line["message"] == "loading user")
        .unwrap_or_else(|| panic!("the handler's log line in {lines:#?}"));
    assert_eq!(
        handler["trace_id"],
        span.span_context.trace_id().to_string()
    );
    assert_eq!(handler["span_id"], span.span_context.span_id().to_string());
    assert_eq!(handler["span"], "request");
    assert_eq!(handler["level"], "INFO");
    // Event fields sit at the top level (the platform's log search indexes only that level).
    assert_eq!(handler["user_id"], 42);
    assert!(handler["timestamp"].as_str().unwrap().ends_with('Z'));
    let outside = lines
        .iter()
        .find(|line| line["message"] == "outside any request")
        .unwrap();
    assert!(outside.get("trace_id").is_none());
    assert!(
        !logs.text().contains(OPENID),
        "the openid must not reach the logs"
    );
}
