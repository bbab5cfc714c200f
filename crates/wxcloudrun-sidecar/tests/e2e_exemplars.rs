//! End to end through the push path: the quickstart service, every span sampled and exported over
//! OTLP/HTTP to a receiver in this test, is scraped by the sidecar binary, which remote-writes
//! into Prometheus 2.42 (`--web.enable-remote-write-receiver --enable-feature=exemplar-storage`).
//! The exemplars `/api/v1/query_exemplars` returns must be those the page showed, and name spans
//! the receiver got.
//!
//! Without a `prometheus` binary the test is skipped loudly, except under CI, where it fails.

use std::collections::HashSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use wxcloudrun_exposition::{ACCEPT_HEADER, Format};
use wxcloudrun_telemetry_tests::otlp::{always_on_layer, http_trace_receiver};
use wxcloudrun_telemetry_tests::prometheus::{Prometheus, encode, wait_for};
use wxcloudrun_telemetry_tests::require_tool;

const BIN: &str = env!("CARGO_BIN_EXE_wxcloudrun-sidecar");
const DURATION_BUCKET: &str = "http_server_request_duration_seconds_bucket";
/// How long the whole chain gets to converge.
const CONVERGE: Duration = Duration::from_secs(90);

/// `(trace_id, span_id)` of an exemplar.
type Ids = (String, String);

/// The exemplar ids on the duration buckets of the service's OpenMetrics page, read with
/// Prometheus's `Accept`.
async fn ids_on_the_page(addr: SocketAddr) -> HashSet<Ids> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request =
        format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\nAccept: {ACCEPT_HEADER}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let page = wxcloudrun_exposition::parse(body, Format::OpenMetrics).expect("OpenMetrics");
    let samples = page.families.iter().flat_map(|f| &f.samples);
    samples
        .filter(|s| s.name == DURATION_BUCKET)
        .filter_map(|s| {
            let exemplar = s.exemplar.as_ref()?;
            let label = |name: &str| {
                let found = exemplar.labels.iter().find(|l| l.name == name);
                found.map(|l| l.value.to_string())
            };
            Some((label("trace_id")?, label("span_id")?))
        })
        .collect()
}

/// The exemplar ids Prometheus holds for the duration buckets of the last two minutes.
async fn stored_ids(prometheus: &Prometheus) -> Result<HashSet<Ids>, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64();
    let query = format!("{DURATION_BUCKET}{{wx_service=\"quickstart\"}}");
    let path = format!(
        "/api/v1/query_exemplars?query={}&start={}&end={now}",
        encode(&query),
        now - 120.0
    );
    let (status, body) = prometheus.get(&path).await?;
    if status != 200 || body["status"] != "success" {
        return Err(format!("HTTP {status}: {body}"));
    }
    let series = body["data"].as_array().cloned().unwrap_or_default();
    let ids = series
        .iter()
        .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
        .filter_map(|e: Value| {
            let label = |name: &str| e["labels"][name].as_str().map(str::to_owned);
            Some((label("trace_id")?, label("span_id")?))
        })
        .collect();
    Ok(ids)
}

fn start_sidecar(app: SocketAddr, prometheus: &Prometheus) -> Child {
    Command::new(BIN)
        .args(["--scrape-url", &format!("http://{app}/metrics")])
        .args([
            "--remote-write-url",
            &format!("http://{}/api/v1/write", prometheus.addr()),
        ])
        .args(["--scrape-interval", "1s", "--scrape-timeout", "900ms"])
        .args(["--admin-addr", "127.0.0.1:0"])
        .env("HOSTNAME", "exemplar-pod")
        .env("WXCLOUDRUN_SERVICE", "quickstart")
        .env("WXCLOUDRUN_SIDECAR_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the sidecar")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplars_reach_prometheus_through_the_sidecar_and_name_exported_spans() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let (endpoint, received) = http_trace_receiver().await.expect("receiver");
    let (telemetry, layer) = always_on_layer(&endpoint);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    let server =
        tokio::spawn(
            async move { axum::serve(listener, example_quickstart::app_with(&layer)).await },
        );
    let base_url = format!("http://{app}");
    let traffic = tokio::spawn(async move {
        for seed in 0.. {
            let _ = example_quickstart::drive_traffic(&base_url, 40, seed).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let prometheus = Prometheus::start(
        &binary,
        |_, _| "global:\n  scrape_interval: 1m\n".to_owned(),
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=exemplar-storage",
        ],
    );
    let deadline = Instant::now() + CONVERGE;
    let ready = prometheus.wait_ready(deadline).await;
    assert!(ready.is_ok(), "{ready:?}");
    let mut sidecar = start_sidecar(app, &prometheus);

    let p = &prometheus;
    let some = wait_for(deadline, || async move {
        match stored_ids(p).await?.len() {
            0 => Err("no exemplar stored yet".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    assert!(some.is_ok(), "{some:?}\n{}", prometheus.log_tail());

    // Traffic stops, so the page keeps its exemplars: every one of them must arrive.
    traffic.abort();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let on_page = ids_on_the_page(app).await;
    assert!(!on_page.is_empty());
    let on_page_ref = &on_page;
    let arrived = wait_for(deadline, || async move {
        let stored = stored_ids(p).await?;
        let missing: Vec<_> = on_page_ref.difference(&stored).collect();
        match missing.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "{} of the page's exemplars not stored: {missing:?}",
                missing.len()
            )),
        }
    })
    .await;
    assert!(arrived.is_ok(), "{arrived:?}\n{}", prometheus.log_tail());
    let stored = stored_ids(p).await.expect("exemplars");

    // Every exemplar stored names a span the receiver got (once the batch has been flushed).
    let telemetry = Arc::new(telemetry);
    let matched = wait_for(deadline, || {
        let (telemetry, received, stored) = (telemetry.clone(), received.clone(), &stored);
        async move {
            tokio::task::spawn_blocking(move || telemetry.flush())
                .await
                .map_err(|e| e.to_string())?;
            received.all_received(stored)
        }
    })
    .await;
    kill(Pid::from_raw(sidecar.id() as i32), Signal::SIGTERM).unwrap();
    let _ = tokio::task::spawn_blocking(move || sidecar.wait()).await;
    server.abort();
    assert!(matched.is_ok(), "{matched:?}");
    let example = on_page.iter().next().expect("an exemplar");
    // Straight to stderr, so the evidence shows with --nocapture and in CI logs.
    let _ = writeln!(
        std::io::stderr(),
        "{} exemplars stored through the sidecar ({} on the last page); e.g. trace_id={} \
         span_id={}, a span the OTLP receiver got ({} spans received)",
        stored.len(),
        on_page.len(),
        example.0,
        example.1,
        received.ids().len()
    );
}
