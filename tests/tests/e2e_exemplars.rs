//! End to end: exemplars from the layer to a real Prometheus. The quickstart service, with its
//! spans exported over OTLP/HTTP to a receiver in this test, is scraped by Prometheus 2.42 with
//! `--enable-feature=exemplar-storage` (which asks for OpenMetrics); the exemplars
//! `/api/v1/query_exemplars` returns must name spans the receiver got. Both exposition formats the
//! service serves must also parse with the workspace's parser.
//!
//! Without a `prometheus` binary the Prometheus test is skipped loudly, except under CI, where it
//! fails.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use wxcloudrun_exposition::{Format, MetricType};
use wxcloudrun_telemetry::WxTelemetryLayer;
use wxcloudrun_telemetry_tests::otlp::{always_on_layer, http_trace_receiver};
use wxcloudrun_telemetry_tests::prometheus::{Prometheus, encode, wait_for};
use wxcloudrun_telemetry_tests::require_tool;

const DURATION_BUCKET: &str = "http_server_request_duration_seconds_bucket";
/// How long Prometheus gets to scrape exemplars, and the receiver to get their spans.
const CONVERGE: Duration = Duration::from_secs(60);

/// Serves the quickstart recording into `layer` on a loopback port, and drives it with its
/// simulated callContainer traffic until the test ends.
async fn serve_with_traffic(layer: &WxTelemetryLayer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let app = example_quickstart::app_with(layer);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base_url = format!("http://{addr}");
    tokio::spawn(async move {
        for seed in 0.. {
            if let Err(e) = example_quickstart::drive_traffic(&base_url, 40, seed).await {
                eprintln!("traffic: {e}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    addr
}

/// `GET /metrics` with `accept` (none when `None`): the content type and body.
async fn scrape(addr: SocketAddr, accept: Option<&str>) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    let read = stream.read_to_string(&mut response);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("scrape timed out")
        .expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (content_type, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_formats_parse_and_only_openmetrics_carries_exemplars() {
    let (endpoint, _received) = http_trace_receiver().await.expect("receiver");
    let (_telemetry, layer) = always_on_layer(&endpoint);
    let addr = serve_with_traffic(&layer).await;
    let deadline = Instant::now() + CONVERGE;
    let with_exemplars = wait_for(deadline, || async {
        let (content_type, body) = scrape(addr, Some(wxcloudrun_exposition::ACCEPT_HEADER)).await;
        let format = Format::from_content_type(&content_type);
        if format != Format::OpenMetrics {
            return Err(format!("asked for OpenMetrics, got {content_type}"));
        }
        let page = wxcloudrun_exposition::parse(&body, format).map_err(|e| format!("{e}"))?;
        let duration = page
            .families
            .iter()
            .find(|f| f.name == "http_server_request_duration_seconds")
            .ok_or("no duration histogram")?;
        assert_eq!(duration.metric_type, MetricType::Histogram);
        let exemplars = duration
            .samples
            .iter()
            .filter_map(|s| Some((s, s.exemplar.as_ref()?)))
            .inspect(|(sample, _)| assert_eq!(sample.name, DURATION_BUCKET));
        let ids = exemplars.flat_map(|(_, e)| e.labels.iter().map(|l| l.name.to_string()));
        let names: HashSet<String> = ids.collect();
        match names == HashSet::from(["trace_id".to_owned(), "span_id".to_owned()]) {
            true => Ok(()),
            false => Err(format!("exemplar labels {names:?}")),
        }
    })
    .await;
    assert!(with_exemplars.is_ok(), "{with_exemplars:?}");

    // The quickstart's live summary names a sampled trace per route.
    let summary = example_quickstart::Summary::from_layer(&layer);
    let slowest: Vec<_> = summary
        .routes
        .values()
        .filter_map(|r| r.slowest.clone())
        .collect();
    assert!(!slowest.is_empty(), "{summary}");
    for (trace_id, _) in &slowest {
        assert!(trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    let (content_type, body) = scrape(addr, None).await;
    assert_eq!(content_type, wxcloudrun_telemetry::TEXT_CONTENT_TYPE);
    let page = wxcloudrun_exposition::parse(&body, Format::PrometheusText).expect("text parses");
    assert!(
        page.families
            .iter()
            .any(|f| f.name == DURATION_BUCKET.trim_end_matches("_bucket"))
    );
    assert!(!body.contains("trace_id") && !body.contains("# EOF"));
}

/// Scrapes `target` every second, keeping exemplars.
fn exemplar_config(target: SocketAddr) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
         scrape_configs:\n  - job_name: quickstart\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

/// `(trace_id, span_id, value)` of every exemplar Prometheus holds for the duration buckets of the
/// last minute.
async fn stored_exemplars(prometheus: &Prometheus) -> Result<Vec<(String, String, f64)>, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64();
    let path = format!(
        "/api/v1/query_exemplars?query={}&start={}&end={now}",
        encode(DURATION_BUCKET),
        now - 60.0
    );
    let (status, body) = prometheus.get(&path).await?;
    if status != 200 || body["status"] != "success" {
        return Err(format!("HTTP {status}: {body}"));
    }
    let series = body["data"].as_array().cloned().unwrap_or_default();
    let exemplars = series
        .iter()
        .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
        .filter_map(|e: Value| {
            let label = |name: &str| e["labels"][name].as_str().map(str::to_owned);
            let value = e["value"].as_str()?.parse().ok()?;
            Some((label("trace_id")?, label("span_id")?, value))
        })
        .collect();
    Ok(exemplars)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stores_exemplars_that_name_exported_spans() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let (endpoint, received) = http_trace_receiver().await.expect("receiver");
    let (telemetry, layer) = always_on_layer(&endpoint);
    let app_addr = serve_with_traffic(&layer).await;
    let prometheus = Prometheus::start(
        &binary,
        |_, _| exemplar_config(app_addr),
        &["--enable-feature=exemplar-storage"],
    );
    let deadline = Instant::now() + CONVERGE;
    let ready = prometheus.wait_ready(deadline).await;
    assert!(ready.is_ok(), "{ready:?}");

    let p = &prometheus;
    let stored = wait_for(deadline, || async move {
        match stored_exemplars(p).await?.len() {
            0 => Err("no exemplar stored yet".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    assert!(stored.is_ok(), "{stored:?}\n{}", prometheus.log_tail());
    let exemplars = stored_exemplars(p).await.expect("exemplars");

    // Every exemplar stored names a span the receiver got (once the batch has been flushed).
    let telemetry = std::sync::Arc::new(telemetry);
    let wanted: HashSet<(String, String)> = exemplars
        .iter()
        .map(|(t, s, _)| (t.clone(), s.clone()))
        .collect();
    let matched = wait_for(deadline, || {
        let (telemetry, received, wanted) = (telemetry.clone(), received.clone(), &wanted);
        async move {
            tokio::task::spawn_blocking(move || telemetry.flush())
                .await
                .map_err(|e| e.to_string())?;
            received.all_received(wanted)
        }
    })
    .await;
    assert!(matched.is_ok(), "{matched:?}");
    let (trace_id, span_id, value) = &exemplars[0];
    // Straight to stderr, so the evidence shows with --nocapture and in CI logs.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "{} exemplars stored; e.g. trace_id={trace_id} span_id={span_id} value={value}s, \
         a span the OTLP receiver got ({} spans received)",
        exemplars.len(),
        received.ids().len()
    );
}
