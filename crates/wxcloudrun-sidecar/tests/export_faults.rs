//! Delivery under faults, against a programmable backend on loopback: retries per protocol,
//! `Retry-After`, refusals, a backend that comes late or hangs, the queue cap, and isolation
//! between exporters. Also the request shape and config validation.
//!
//! The tests run on Tokio's current-thread runtime: the worker tasks only run while a test
//! awaits, so "submit, then flush" is deterministic.

mod support_export;

use std::sync::Arc;
use std::time::Duration;

use support_export::*;
use tokio::time::Instant;
use wxcloudrun_sidecar::export::{ExportConfig, Exporters, FlushOutcome, OtlpProtocol};
use wxcloudrun_sidecar::metrics::SelfMetrics;
use wxcloudrun_sidecar::model::{Batch, Kind};

fn soon(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

/// How late a flush may return after its deadline on a busy machine.
const SLACK: Duration = Duration::from_secs(1);

#[tokio::test]
async fn remote_write_requests_carry_the_protocol_headers() {
    let backend = Backend::new([]);
    let (_, url) = backend.serve().await;
    let metrics = SelfMetrics::new();
    let config = with_headers(
        remote_write_config(&[url], QUEUE),
        &[
            ("Authorization", "Bearer s3cret"),
            // Reserved by the protocol: must not replace the real ones.
            ("Content-Type", "text/plain"),
            ("User-Agent", "impostor"),
            ("X-Prometheus-Remote-Write-Version", "9"),
        ],
    );
    let exporters = start(&config, &metrics);
    exporters.submit(numbered(1));
    assert_eq!(exporters.flush(soon(10)).await, FlushOutcome::Success);

    let received = backend.received();
    assert_eq!(received.len(), 1);
    let headers = &received[0].headers;
    let all = |name: &str| -> Vec<&str> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(all("content-encoding"), ["snappy"]);
    assert_eq!(all("content-type"), ["application/x-protobuf"]);
    assert_eq!(all("x-prometheus-remote-write-version"), ["0.1.0"]);
    assert_eq!(
        all("user-agent"),
        [format!("wxcloudrun-sidecar/{}", env!("CARGO_PKG_VERSION")).as_str()]
    );
    assert_eq!(all("authorization"), ["Bearer s3cret"]);
    assert_eq!(received[0].path, "/api/v1/write");
    assert_eq!(sequence(&backend.bodies()), [1.0]);
    let stats = stats(&metrics, "remote_write", QUEUE);
    assert_eq!((stats.success, stats.retries, stats.queue_bytes), (1, 0, 0));
}

#[tokio::test]
async fn a_server_error_is_retried_and_data_arrives_once_in_order() {
    let backend = Backend::new([Reply::Status(500)]);
    let (_, url) = backend.serve().await;
    let metrics = SelfMetrics::new();
    let exporters = start(&remote_write_config(&[url], QUEUE), &metrics);
    for n in 1..=3 {
        exporters.submit(numbered(n));
    }
    assert_eq!(exporters.flush(soon(10)).await, FlushOutcome::Success);

    // The first attempt (answered 500) and then each request once, in order.
    assert_eq!(sequence(&backend.bodies()), [1.0, 1.0, 2.0, 3.0]);
    let stats = stats(&metrics, "remote_write", QUEUE);
    assert_eq!((stats.success, stats.retries, stats.failed), (3, 1, 0));
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let backend = Backend::new([Reply::RetryAfter(429, "1".to_owned())]);
    let (_, url) = backend.serve().await;
    let metrics = SelfMetrics::new();
    let exporters = start(&remote_write_config(&[url], QUEUE), &metrics);
    exporters.submit(numbered(1));
    assert_eq!(exporters.flush(soon(10)).await, FlushOutcome::Success);

    let received = backend.received();
    assert_eq!(received.len(), 2);
    let waited = received[1].at - received[0].at;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert_eq!(stats(&metrics, "remote_write", QUEUE).retries, 1);
}

#[tokio::test]
async fn a_client_error_is_dropped_counted_and_not_retried() {
    let backend = Backend::new([Reply::Status(400)]);
    let (_, url) = backend.serve().await;
    let metrics = SelfMetrics::new();
    let exporters = start(&remote_write_config(&[url], QUEUE), &metrics);
    exporters.submit(numbered(1));
    exporters.submit(numbered(2));
    // The worker only runs once the flush awaits: the refusal happens during the flush.
    assert_eq!(exporters.flush(soon(10)).await, FlushOutcome::Error);

    assert_eq!(sequence(&backend.bodies()), [1.0, 2.0]);
    let stats = stats(&metrics, "remote_write", QUEUE);
    assert_eq!(stats.dropped, 1);
    assert_eq!(stats.dropped_rejected, 1);
    assert_eq!(stats.retries, 0);
    assert_eq!(stats.success, 1);
}

#[tokio::test]
async fn a_backend_that_comes_up_late_gets_everything() {
    let port = free_port();
    let metrics = SelfMetrics::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let exporters = start(&remote_write_config(&[url], QUEUE), &metrics);
    for n in 1..=3 {
        exporters.submit(numbered(n));
    }
    let backend = Backend::new([]);
    let late = backend.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        late.serve_on(listener);
    });
    assert_eq!(exporters.flush(soon(15)).await, FlushOutcome::Success);

    assert_eq!(sequence(&backend.bodies()), [1.0, 2.0, 3.0]);
    let stats = stats(&metrics, "remote_write", QUEUE);
    assert!(stats.retries >= 1, "{stats:?}");
    assert_eq!(stats.success, 3);
}

#[tokio::test]
async fn a_hung_backend_cannot_hold_the_flush_past_its_deadline() {
    let backend = Backend::new([]);
    backend.answer_with(Reply::Hang);
    let (_, url) = backend.serve().await;
    let metrics = SelfMetrics::new();
    let config = with_timeout(remote_write_config(&[url], QUEUE), Duration::from_secs(60));
    let exporters = start(&config, &metrics);
    exporters.submit(numbered(1));
    exporters.submit(numbered(2));
    assert!(backend.wait_for(1, Duration::from_secs(10)).await);

    let deadline = soon(1);
    assert_eq!(exporters.flush(deadline).await, FlushOutcome::Timeout);
    assert!(
        Instant::now() <= deadline + SLACK,
        "flush overran its deadline"
    );
    let stats = stats(&metrics, "remote_write", QUEUE);
    // The request in flight and the one queued behind it.
    assert_eq!((stats.dropped_shutdown, stats.failed), (2, 2));
    assert_eq!(stats.queue_bytes, 0);
}

#[tokio::test]
async fn a_long_retry_wait_ends_at_the_flush_deadline() {
    let backend = Backend::new([]);
    backend.answer_with(Reply::RetryAfter(503, "4".to_owned()));
    let (_, url) = backend.serve().await;
    let metrics = SelfMetrics::new();
    let exporters = start(&remote_write_config(&[url], QUEUE), &metrics);
    exporters.submit(numbered(1));
    assert!(backend.wait_for(1, Duration::from_secs(10)).await);

    let deadline = Instant::now() + Duration::from_millis(500);
    assert_eq!(exporters.flush(deadline).await, FlushOutcome::Timeout);
    assert!(
        Instant::now() <= deadline + SLACK,
        "flush overran its deadline"
    );
    assert_eq!(backend.received().len(), 1, "no retry before Retry-After");
    assert_eq!(stats(&metrics, "remote_write", QUEUE).dropped_shutdown, 1);
}

#[tokio::test]
async fn the_queue_keeps_to_its_cap_and_drops_the_oldest() {
    let port = free_port();
    let metrics = SelfMetrics::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let one = wxcloudrun_sidecar::export::remote_write::encode(&numbered(1), &Default::default())[0]
        .body
        .len() as u64;
    let cap = one * 10;
    let exporters = start(&remote_write_config(&[url], cap), &metrics);
    for n in 1..=100 {
        exporters.submit(numbered(n));
        let queued = stats(&metrics, "remote_write", cap).queue_bytes;
        assert!(queued as u64 <= cap, "{queued} bytes queued, cap {cap}");
    }
    // Now the backend appears and gets what the queue kept.
    let backend = Backend::new([]);
    backend.serve_on(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
    );
    assert_eq!(exporters.flush(soon(10)).await, FlushOutcome::Success);

    let delivered = sequence(&backend.bodies());
    let stats = stats(&metrics, "remote_write", cap);
    assert!(stats.dropped_queue_full > 0);
    assert_eq!(stats.dropped_queue_full + delivered.len() as u64, 100);
    // The newest survived, in order.
    assert_eq!(delivered.last(), Some(&100.0));
    assert!(
        delivered.windows(2).all(|w| w[1] == w[0] + 1.0),
        "{delivered:?}"
    );
}

#[tokio::test]
async fn every_sample_is_accounted_for_with_a_dead_backend() {
    let port = free_port();
    let metrics = SelfMetrics::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let cap = 1_000;
    let exporters = start(&remote_write_config(&[url], cap), &metrics);
    for n in 1..=50 {
        exporters.submit(numbered(n));
        // Let the worker fail a few attempts in between.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let queued = stats(&metrics, "remote_write", cap).queue_bytes;
        assert!(queued as u64 <= cap, "{queued} bytes queued, cap {cap}");
    }
    let deadline = Instant::now() + Duration::from_millis(300);
    assert_eq!(exporters.flush(deadline).await, FlushOutcome::Timeout);
    let stats = stats(&metrics, "remote_write", cap);
    assert!(stats.retries > 0);
    assert_eq!(stats.success, 0);
    assert!(stats.dropped_queue_full > 0, "{stats:?}");
    assert_eq!(
        stats.dropped_queue_full + stats.dropped_shutdown + stats.dropped_retries_exhausted,
        50,
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_request_failing_too_long_is_given_up() {
    let backend = Backend::new([]);
    backend.answer_with(Reply::Status(503));
    let (_, url) = backend.serve().await;
    let metrics = SelfMetrics::new();
    let config = remote_write_config(&[url], QUEUE);
    let exporters =
        Exporters::start_with_policy(&config, &metrics, quick_policy(Duration::from_millis(300)))
            .unwrap();
    exporters.submit(numbered(1));
    let gave_up = eventually(Duration::from_secs(10), || {
        stats(&metrics, "remote_write", QUEUE).dropped_retries_exhausted == 1
    })
    .await;
    assert!(gave_up);
    let attempts = backend.received().len();
    assert!(attempts >= 2, "{attempts} attempts");
    // Nothing left, and nothing more is sent for it.
    assert_eq!(exporters.flush(soon(5)).await, FlushOutcome::Success);
    assert_eq!(backend.received().len(), attempts);
    let stats = stats(&metrics, "remote_write", QUEUE);
    assert_eq!((stats.failed, stats.success), (1, 0));
}

#[tokio::test]
async fn one_dead_backend_does_not_block_another() {
    let dead = Backend::new([]);
    dead.answer_with(Reply::Hang);
    let (_, dead_url) = dead.serve().await;
    let live = Backend::new([]);
    let (_, live_url) = live.serve().await;
    let metrics = SelfMetrics::new();
    let exporters = start(&remote_write_config(&[dead_url, live_url], QUEUE), &metrics);
    assert_eq!(exporters.names(), ["remote_write", "remote_write_2"]);
    for n in 1..=3 {
        exporters.submit(numbered(n));
    }
    // Delivered while the other backend still holds its first request.
    assert!(live.wait_for(3, Duration::from_secs(10)).await);
    assert_eq!(sequence(&live.bodies()), [1.0, 2.0, 3.0]);
    assert_eq!(dead.received().len(), 1);

    let deadline = Instant::now() + Duration::from_millis(300);
    assert_eq!(exporters.flush(deadline).await, FlushOutcome::Timeout);
    assert_eq!(stats(&metrics, "remote_write", QUEUE).dropped_shutdown, 3);
    let live_stats = stats(&metrics, "remote_write_2", QUEUE);
    assert_eq!((live_stats.success, live_stats.dropped_shutdown), (3, 0));
}

#[tokio::test]
async fn otlp_http_retries_only_its_own_status_codes() {
    // 503 is retried; 500 is final for OTLP/HTTP (unlike remote write).
    let backend = Backend::new([Reply::Status(503), Reply::Status(500)]);
    let (addr, _) = backend.serve().await;
    let metrics = SelfMetrics::new();
    let config = otlp_config(
        &format!("http://{addr}/v1/metrics"),
        OtlpProtocol::HttpProtobuf,
        Duration::from_secs(5),
    );
    let exporters = start(&config, &metrics);
    assert_eq!(exporters.names(), ["otlp_http"]);
    exporters.submit(numbered(1));
    assert_eq!(exporters.flush(soon(10)).await, FlushOutcome::Error);

    let received = backend.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].path, "/v1/metrics");
    let stats = stats(&metrics, "otlp_http", QUEUE);
    assert_eq!(
        (stats.retries, stats.dropped, stats.dropped_rejected),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn bad_config_is_refused_naming_the_key() {
    let metrics = SelfMetrics::new();
    let refuse = |config: ExportConfig| {
        Exporters::start(&config, &metrics)
            .expect_err("bad config accepted")
            .key
    };
    // A URL that is not http(s) with a host cannot reach an exporter: `HttpUrl::parse` refuses
    // it where it is configured (its unit tests, and the config tests naming the key).
    let rw = |url: &str| remote_write_config(&[url.to_owned()], QUEUE);
    let otlp = |endpoint: &str, protocol| otlp_config(endpoint, protocol, Duration::from_secs(1));
    // TLS for gRPC: accepted (rustls, webpki and system roots), connected lazily.
    let tls = Exporters::start(
        &otlp("https://collector.example:4317", OtlpProtocol::Grpc),
        &metrics,
    )
    .expect("https gRPC endpoint");
    assert_eq!(tls.names(), ["otlp_grpc"]);
    drop(tls);
    let bad_header = with_headers(rw("http://127.0.0.1:9/api/v1/write"), &[("bad name", "x")]);
    assert_eq!(refuse(bad_header), "remote_write.headers");
    let bad_value = with_headers(
        otlp("http://127.0.0.1:9", OtlpProtocol::Grpc),
        &[("x-token", "line\nbreak")],
    );
    assert_eq!(refuse(bad_value), "otlp.headers");
    assert_eq!(
        refuse(rw("http://127.0.0.1:9/api/v1/write").with_queue(0)),
        "queue_max_bytes"
    );

    // Nothing configured is valid: no exporters.
    let none = Exporters::start(&ExportConfig::default(), &metrics).unwrap();
    assert!(none.names().is_empty());
    none.submit(numbered(1));
    assert_eq!(none.flush(soon(1)).await, FlushOutcome::Success);
}

trait WithQueue {
    fn with_queue(self, bytes: u64) -> Self;
}

impl WithQueue for ExportConfig {
    fn with_queue(mut self, bytes: u64) -> Self {
        self.queue_max_bytes = bytes;
        self
    }
}

#[tokio::test]
async fn empty_batches_send_nothing() {
    let backend = Backend::new([]);
    let (_, url) = backend.serve().await;
    let metrics = SelfMetrics::new();
    let exporters = start(&remote_write_config(&[url], QUEUE), &metrics);
    let mut pointless = number(Kind::Gauge, "x", 1.0, &[]);
    pointless.points.clear();
    for families in [vec![], vec![pointless]] {
        exporters.submit(Arc::new(Batch {
            timestamp_ms: 1,
            families,
        }));
    }
    assert_eq!(exporters.flush(soon(5)).await, FlushOutcome::Success);
    assert!(backend.received().is_empty());
}

/// Backends share an encoding only when they would write the same bytes: two plain backends get
/// identical bodies; one with its own relabelling and one with the other bound spelling each get
/// theirs.
#[tokio::test]
async fn each_backend_gets_the_bytes_its_own_settings_write() {
    use wxcloudrun_sidecar::export::remote_write::{BoundSpelling, Relabel, RelabelRule};

    let backends: Vec<Backend> = (0..4).map(|_| Backend::new([])).collect();
    let mut urls = Vec::new();
    for backend in &backends {
        urls.push(backend.serve().await.1);
    }
    let mut config = remote_write_config(&urls, QUEUE);
    config.remote_write[2].relabel = Relabel::new(vec![
        RelabelRule::new(
            Some("drop"),
            vec!["__name__".into()],
            None,
            Some("h_bucket"),
        )
        .unwrap(),
    ]);
    config.remote_write[3].bound_spelling = BoundSpelling::Prometheus2;
    let metrics = SelfMetrics::new();
    let exporters = start(&config, &metrics);
    exporters.submit(Arc::new(Batch {
        timestamp_ms: 1_700_000_000_000,
        families: vec![histogram(
            "h",
            &[(1.0, 1.0), (f64::INFINITY, 2.0)],
            0.5,
            2.0,
            &[],
        )],
    }));
    assert_eq!(exporters.flush(soon(10)).await, FlushOutcome::Success);

    let series = |backend: &Backend| -> Vec<String> {
        let bodies = backend.bodies();
        assert_eq!(bodies.len(), 1);
        let request = decode_remote_write(&bodies[0]);
        request
            .timeseries
            .iter()
            .map(|s| {
                let label = |name: &str| {
                    let found = s.labels.iter().find(|l| l.name == name);
                    found.map_or("", |l| l.value.as_str()).to_owned()
                };
                format!("{}{{le={}}}", label("__name__"), label("le"))
            })
            .collect()
    };
    let plain = [
        "h_bucket{le=1.0}",
        "h_bucket{le=+Inf}",
        "h_sum{le=}",
        "h_count{le=}",
    ];
    assert_eq!(series(&backends[0]), plain);
    assert_eq!(backends[0].bodies(), backends[1].bodies());
    assert_eq!(series(&backends[2]), ["h_sum{le=}", "h_count{le=}"]);
    assert_eq!(
        series(&backends[3]),
        [
            "h_bucket{le=1}",
            "h_bucket{le=+Inf}",
            "h_sum{le=}",
            "h_count{le=}"
        ]
    );
}
