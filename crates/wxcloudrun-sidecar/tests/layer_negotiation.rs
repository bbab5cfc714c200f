//! The sidecar scraping a service whose layer samples every span: it asks for OpenMetrics, gets
//! the layer's exemplars, and forwards them — the `trace_id` / `span_id` of spans the service
//! exported — to remote write and to an OTLP receiver on loopback, while the page, whose
//! exemplars change with every sampled request, still replays.

mod support_export;
mod support_remote_write;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{exemplar, metric};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use prost::Message;
use support_export::{Backend, otlp_config, start};
use wxcloudrun_exposition::{Format, Limits};
use wxcloudrun_sidecar::export::{FlushOutcome, OtlpProtocol};
use wxcloudrun_sidecar::metrics::SelfMetrics;
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

/// A service whose layer samples every span into `spans`, on a loopback port.
struct Service {
    addr: std::net::SocketAddr,
    spans: InMemorySpanExporter,
    provider: SdkTracerProvider,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Service {
    async fn start() -> Service {
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
        Service {
            addr,
            spans,
            provider,
            server,
        }
    }

    fn stop(self) {
        self.server.abort();
        let _ = self.provider.shutdown();
    }
}

fn path(read: &Read<'_>) -> &'static str {
    match read {
        Read::Replayed(_) => "replayed",
        Read::Learned(_) => "learned",
        Read::Parsed(_) => "parsed",
    }
}

#[tokio::test]
async fn a_sampled_layer_is_scraped_as_openmetrics_its_exemplars_forwarded_and_replayed() {
    let service = Service::start().await;
    let (addr, spans) = (service.addr, &service.spans);
    sampled_request(addr, spans).await;

    let scraper = Scraper::new(&format!("http://{addr}/metrics")).unwrap();
    let mut converter = Converter::new(&[], None);
    let mut replay = Replay::default();
    let mut paths = Vec::new();
    let mut seen = HashSet::new();
    for round in 0..4 {
        // The newest sampled request is its bucket's exemplar now.
        let newest = sampled_request(addr, spans).await;
        let page = scraper.fetch_into(Vec::new(), TIMEOUT).await.unwrap();
        assert_eq!(page.format, Format::OpenMetrics, "{}", page.text);
        assert!(page.text.contains(" # {trace_id=\""), "{}", page.text);
        let mut read = replay
            .read(&page.text, page.format, &Limits::default(), &mut converter)
            .unwrap();
        paths.push(path(&read));
        let batch = converter.convert([read.source()], 1_000 * (round + 1));
        let forwarded: HashSet<(String, String)> = support_remote_write::sent(&batch)
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
        let all = exported(spans);
        let unknown: Vec<_> = forwarded.difference(&all).collect();
        assert!(
            unknown.is_empty(),
            "exemplars of no exported span: {unknown:?}"
        );
        seen.extend(forwarded);
    }
    assert_eq!(paths, ["learned", "replayed", "replayed", "replayed"]);
    assert!(seen.len() >= 4, "a new exemplar each round: {seen:?}");
    service.stop();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The same chain into OTLP: the duration histogram's data points carry the exemplars, ids as
/// the bytes of exported spans, the time the exemplar's, on a learned and on a replayed scrape.
#[tokio::test]
async fn otlp_histogram_points_carry_the_layers_exemplars_with_ids_as_bytes() {
    let service = Service::start().await;
    let (addr, spans) = (service.addr, &service.spans);
    let backend = Backend::new([]);
    let (receiver, _) = backend.serve().await;
    let metrics = SelfMetrics::new();
    let endpoint = format!("http://{receiver}/v1/metrics");
    let exporters = start(
        &otlp_config(&endpoint, OtlpProtocol::HttpProtobuf, TIMEOUT),
        &metrics,
    );
    let scraper = Scraper::new(&format!("http://{addr}/metrics")).unwrap();
    let mut converter = Converter::new(&[], None);
    let mut replay = Replay::default();
    let mut paths = Vec::new();
    let mut newest = Vec::new();
    let since_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    for round in 0..2 {
        newest.push(sampled_request(addr, spans).await);
        let page = scraper.fetch_into(Vec::new(), TIMEOUT).await.unwrap();
        let mut read = replay
            .read(&page.text, page.format, &Limits::default(), &mut converter)
            .unwrap();
        paths.push(path(&read));
        exporters.submit(Arc::new(
            converter.convert([read.source()], 1_000 * (round + 1)),
        ));
    }
    assert_eq!(paths, ["learned", "replayed"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    assert_eq!(exporters.flush(deadline).await, FlushOutcome::Success);
    let until_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();

    let exported_ids = exported(spans);
    let requests = backend.received();
    assert_eq!(requests.len(), 2);
    for (round, received) in requests.iter().enumerate() {
        let request = ExportMetricsServiceRequest::decode(received.body.clone()).unwrap();
        let metrics = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics);
        let duration = metrics
            .flat_map(|s| &s.metrics)
            .find(|m| m.name == "http_server_request_duration_seconds")
            .expect("the duration histogram");
        let Some(metric::Data::Histogram(histogram)) = &duration.data else {
            panic!("not a histogram: {duration:?}");
        };
        let exemplars: Vec<_> = histogram
            .data_points
            .iter()
            .flat_map(|p| &p.exemplars)
            .collect();
        let ids: HashSet<(String, String)> = exemplars
            .iter()
            .map(|e| (hex(&e.trace_id), hex(&e.span_id)))
            .collect();
        assert!(ids.contains(&newest[round]), "round {round}: {ids:?}");
        for exemplar in exemplars {
            assert_eq!((exemplar.trace_id.len(), exemplar.span_id.len()), (16, 8));
            assert!(exported_ids.contains(&(hex(&exemplar.trace_id), hex(&exemplar.span_id))));
            assert!(exemplar.filtered_attributes.is_empty(), "{exemplar:?}");
            let millis = u128::from(exemplar.time_unix_nano / 1_000_000);
            assert!((since_ms..=until_ms).contains(&millis), "{exemplar:?}");
            let Some(exemplar::Value::AsDouble(seconds)) = exemplar.value else {
                panic!("no value: {exemplar:?}");
            };
            assert!((0.0..10.0).contains(&seconds), "{exemplar:?}");
        }
    }
    service.stop();
}
