//! The sidecar scraping a service whose layer samples every span: the layer would serve
//! OpenMetrics with exemplars, which change on every scrape and would push each scrape off the
//! replay path. The sidecar asks for the text format first, so the page replays (the sidecar
//! does not forward exemplars yet).

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use wxcloudrun_exposition::{Format, Limits};
use wxcloudrun_sidecar::pipeline::convert::Converter;
use wxcloudrun_sidecar::pipeline::replay::{Read, Replay};
use wxcloudrun_sidecar::pipeline::scrape::Scraper;
use wxcloudrun_telemetry::WxTelemetryLayer;
use wxcloudrun_telemetry_tests::prometheus::http_get;

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_sampled_layer_is_scraped_as_text_and_replays() {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(InMemorySpanExporter::default())
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

    // Sampled requests leave exemplars: OpenMetrics, when asked for, carries them.
    for _ in 0..3 {
        assert_eq!(http_get(addr, "/api/ping").await.unwrap().0, 200);
    }
    let openmetrics = telemetry.render_openmetrics();
    assert!(
        openmetrics.contains(" # {trace_id=\""),
        "the layer keeps exemplars of sampled requests:\n{openmetrics}"
    );

    let scraper = Scraper::new(&format!("http://{addr}/metrics")).unwrap();
    let mut converter = Converter::new(&[], None);
    let mut replay = Replay::default();
    let mut paths = Vec::new();
    for _ in 0..3 {
        let page = scraper.fetch_into(Vec::new(), TIMEOUT).await.unwrap();
        assert_eq!(page.format, Format::PrometheusText, "{}", page.text);
        assert!(!page.text.contains(" # {"), "{}", page.text);
        let read = replay
            .read(&page.text, page.format, &Limits::default(), &mut converter)
            .unwrap();
        paths.push(match read {
            Read::Replayed(_) => "replayed",
            Read::Learned(_) => "learned",
            Read::Parsed(_) => "parsed",
        });
        // A new sampled request between scrapes: new values, new exemplars, the same shape.
        assert_eq!(http_get(addr, "/api/ping").await.unwrap().0, 200);
    }
    assert_eq!(paths.last(), Some(&"replayed"), "{paths:?}");
    server.abort();
    let _ = provider.shutdown();
}
