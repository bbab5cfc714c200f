//! Exemplars through the real layer: an axum router wrapped with a layer that records spans into
//! an in-memory exporter, `/metrics` asked for OpenMetrics (and for text 0.0.4) through the
//! metrics service and the loopback listener.

use std::collections::HashSet;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::get;
use http_body_util::BodyExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use wxcloudrun_telemetry::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, WxTelemetryLayer, render};

/// What Prometheus 2.42 sends on every scrape.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const REQUESTS: usize = 40;

fn traced(sampler: Sampler) -> (WxTelemetryLayer, SdkTracerProvider, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .with_sampler(sampler)
        .build();
    let layer = WxTelemetryLayer::builder()
        .service_name("orders")
        .process_metrics(false)
        .tracer(provider.tracer("test"))
        .build()
        .unwrap();
    (layer, provider, exporter)
}

async fn drive(layer: &WxTelemetryLayer) {
    let app = Router::new()
        .route("/api/users/{id}", get(|| async { "user" }))
        .layer(layer.clone());
    for n in 0..REQUESTS {
        let request = Request::get(format!("/api/users/{n}"))
            .header("x-wx-source", "wx_client")
            .header("x-wx-appid", "wxa")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
}

/// `/metrics` from the layer's metrics service with this `Accept` (none when `None`): the
/// content type and the body.
async fn scrape(layer: &WxTelemetryLayer, accept: Option<&str>) -> (String, String) {
    let mut request = Request::get("/metrics");
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let response = layer
        .metrics_service()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(body.to_vec()).unwrap())
}

/// `(trace_id, span_id)` of every exemplar, with its bucket line.
fn exemplars(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|line| {
            let (sample, exemplar) = line.split_once(" # {")?;
            let (labels, _) = exemplar.split_once('}')?;
            let value = |name: &str| {
                labels
                    .split(',')
                    .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
            };
            Some((value("trace_id")?, value("span_id")?, sample.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn sampled_requests_leave_exemplars_that_name_their_spans() {
    let (layer, provider, exporter) = traced(Sampler::AlwaysOn);
    drive(&layer).await;
    let (content_type, text) = scrape(&layer, Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
    assert!(text.ends_with("# EOF\n"), "{text}");
    let spans: HashSet<(String, String)> = exporter
        .get_finished_spans()
        .unwrap()
        .iter()
        .map(|span| {
            let context = &span.span_context;
            (
                context.trace_id().to_string(),
                context.span_id().to_string(),
            )
        })
        .collect();
    assert_eq!(spans.len(), REQUESTS);
    let found = exemplars(&text);
    assert!(!found.is_empty(), "no exemplar in\n{text}");
    for (trace_id, span_id, sample) in &found {
        assert!(
            sample.starts_with("http_server_request_duration_seconds_bucket{"),
            "{sample}"
        );
        assert!(
            spans.contains(&(trace_id.clone(), span_id.clone())),
            "exemplar {trace_id}/{span_id} names no exported span"
        );
    }
    // One exemplar per bucket line at most, and only the duration histogram has them.
    let lines: HashSet<&String> = found.iter().map(|(_, _, sample)| sample).collect();
    assert_eq!(lines.len(), found.len());
    let _ = provider.shutdown();
}

#[tokio::test]
async fn a_ratio_of_zero_leaves_no_exemplar() {
    let (layer, provider, exporter) = traced(Sampler::TraceIdRatioBased(0.0));
    drive(&layer).await;
    assert!(exporter.get_finished_spans().unwrap().is_empty());
    let (_, text) = scrape(&layer, Some(PROMETHEUS_ACCEPT)).await;
    let count = text
        .lines()
        .find(|line| line.starts_with("http_server_request_duration_seconds_count{"))
        .expect("the requests are counted");
    assert!(count.ends_with(&format!(" {REQUESTS}")), "{count}");
    assert!(
        !text.contains(" # {"),
        "an exemplar without a sampled span:\n{text}"
    );
    let _ = provider.shutdown();
}

#[tokio::test]
async fn without_openmetrics_in_accept_the_text_format_is_served_unchanged() {
    let (layer, provider, _exporter) = traced(Sampler::AlwaysOn);
    drive(&layer).await;
    for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
        let (content_type, text) = scrape(&layer, accept).await;
        assert_eq!(content_type, TEXT_CONTENT_TYPE, "{accept:?}");
        assert_eq!(text, render(layer.registry()), "{accept:?}");
        assert!(!text.contains("# EOF") && !text.contains("trace_id"));
    }
    let _ = provider.shutdown();
}

#[tokio::test]
async fn the_loopback_listener_negotiates_too() {
    let (layer, provider, _exporter) = traced(Sampler::AlwaysOn);
    drive(&layer).await;
    let addr = layer
        .spawn_metrics_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    for (accept, expected) in [
        (Some(PROMETHEUS_ACCEPT), OPENMETRICS_CONTENT_TYPE),
        (None, TEXT_CONTENT_TYPE),
    ] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
        let request = format!("GET /metrics HTTP/1.0\r\nHost: x\r\n{accept}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let head = response
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-type: {expected}")),
            "{head}"
        );
        assert_eq!(
            response.contains(" # {trace_id=\""),
            expected == OPENMETRICS_CONTENT_TYPE
        );
    }
    let _ = provider.shutdown();
}
