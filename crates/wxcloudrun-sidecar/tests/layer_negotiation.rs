//! The sidecar scraping a service whose layer samples every span: it asks for OpenMetrics, gets
//! the layer's exemplars, and forwards them — the `trace_id` / `span_id` of spans the service
//! exported — while the page, whose exemplars change with every sampled request, still replays.

use std::collections::HashSet;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use wxcloudrun_exposition::{Format, Limits};
use wxcloudrun_sidecar::export::remote_write;
use wxcloudrun_sidecar::pipeline::convert::Converter;
use wxcloudrun_sidecar::pipeline::replay::{Read, Replay};
use wxcloudrun_sidecar::pipeline::scrape::Scraper;
use wxcloudrun_telemetry::WxTelemetryLayer;
use wxcloudrun_telemetry_tests::prometheus::http_get;

const TIMEOUT: Duration = Duration::from_secs(5);
const BUCKET: &str = "http_server_request_duration_seconds_bucket";

/// `(trace_id, span_id)` in hex of every span the service exported.
fn exported(spans: &InMemorySpanExporter) -> HashSet<(String, String)> {
    let spans = spans.get_finished_spans().expect("finished spans");
    let ids = spans.iter().map(|span| {
        let context = &span.span_context;
        (
            context.trace_id().to_string(),
            context.span_id().to_string(),
        )
    });
    ids.collect()
}

/// A sampled request, once its span is exported: its ids.
async fn sampled_request(
    addr: std::net::SocketAddr,
    spans: &InMemorySpanExporter,
) -> (String, String) {
    let before = exported(spans);
    assert_eq!(http_get(addr, "/api/ping").await.unwrap().0, 200);
    for _ in 0..200 {
        let new: Vec<_> = exported(spans).difference(&before).cloned().collect();
        if let [ids] = new.as_slice() {
            return ids.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the request's span was not exported");
}

#[tokio::test]
async fn a_sampled_layer_is_scraped_as_openmetrics_its_exemplars_forwarded_and_replayed() {
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let telemetry = WxTelemetryLayer::builder()
        .service_name("negotiation")
        .tracer(provider.tracer("sidecar-test"))
        .build()
        .expect("valid layer");
    let app = axum::Router::new()
        .route("/api/ping", axum::routing::get(|| async { "pong" }))
        .layer(telemetry.clone())
        .route_service("/metrics", telemetry.metrics_service());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    sampled_request(addr, &spans).await;

    let scraper = Scraper::new(&format!("http://{addr}/metrics")).unwrap();
    let mut converter = Converter::new(&[], None);
    let mut replay = Replay::default();
    let mut paths = Vec::new();
    let mut seen = HashSet::new();
    for round in 0..4 {
        // The newest sampled request is its bucket's exemplar now.
        let newest = sampled_request(addr, &spans).await;
        let page = scraper.fetch_into(Vec::new(), TIMEOUT).await.unwrap();
        assert_eq!(page.format, Format::OpenMetrics, "{}", page.text);
        assert!(page.text.contains(" # {trace_id=\""), "{}", page.text);
        let mut read = replay
            .read(&page.text, page.format, &Limits::default(), &mut converter)
            .unwrap();
        paths.push(match read {
            Read::Replayed(_) => "replayed",
            Read::Learned(_) => "learned",
            Read::Parsed(_) => "parsed",
        });
        let batch = converter.convert([read.source()], 1_000 * (round + 1));
        let forwarded: HashSet<(String, String)> = remote_write::timeseries(&batch)
            .iter()
            .filter(|s| {
                s.labels
                    .iter()
                    .any(|l| l.name == "__name__" && l.value == BUCKET)
            })
            .flat_map(|s| &s.exemplars)
            .map(|e| {
                let label = |name: &str| {
                    let found = e.labels.iter().find(|l| l.name == name);
                    found.map(|l| l.value.clone()).unwrap_or_default()
                };
                (label("trace_id"), label("span_id"))
            })
            .collect();
        assert!(
            forwarded.contains(&newest),
            "round {round}: {newest:?} not in {forwarded:?}"
        );
        let all = exported(&spans);
        let unknown: Vec<_> = forwarded.difference(&all).collect();
        assert!(
            unknown.is_empty(),
            "exemplars of no exported span: {unknown:?}"
        );
        seen.extend(forwarded);
    }
    assert_eq!(paths, ["learned", "replayed", "replayed", "replayed"]);
    assert!(seen.len() >= 4, "a new exemplar each round: {seen:?}");
    server.abort();
    let _ = provider.shutdown();
}
