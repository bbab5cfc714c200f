//! Shared by the `export_*` tests: batch builders, a programmable HTTP backend on loopback, and
//! readers for the exporters' self-metrics.

// Each test binary uses its own subset.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;
use tokio::time::Instant;
use wxcloudrun_sidecar::export::remote_write::WriteRequest;
use wxcloudrun_sidecar::export::{
    ExportConfig, Exporters, HttpUrl, OtlpConfig, OtlpProtocol, RemoteWriteConfig, RetryPolicy,
};
use wxcloudrun_sidecar::metrics::{ExporterMetrics, SelfMetrics};
use wxcloudrun_sidecar::model::{Batch, Family, Histogram, Kind, Labels, Point, Summary, Value};

/// The queue cap of the tests, unless a test needs a small one.
pub(crate) const QUEUE: u64 = 8 << 20;

/// Labels from pairs (sorted, as the model requires).
pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut labels: Labels = pairs
        .iter()
        .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
        .collect();
    labels.sort();
    labels
}

/// A one-point family of plain numbers.
pub(crate) fn number(kind: Kind, name: &str, value: f64, pairs: &[(&str, &str)]) -> Family {
    Family {
        name: name.into(),
        help: "".into(),
        unit: "".into(),
        kind,
        points: vec![Point {
            labels: labels(pairs).into(),
            start_ms: None,
            value: Value::Number {
                name: name.into(),
                value,
                exemplar: None,
            },
        }],
    }
}

/// A one-point histogram family.
pub(crate) fn histogram(
    name: &str,
    buckets: &[(f64, f64)],
    sum: f64,
    count: f64,
    pairs: &[(&str, &str)],
) -> Family {
    Family {
        name: name.into(),
        help: "".into(),
        unit: "".into(),
        kind: Kind::Histogram,
        points: vec![Point {
            labels: labels(pairs).into(),
            start_ms: None,
            value: Value::Histogram(Box::new(Histogram {
                count,
                sum: Some(sum),
                buckets: buckets.to_vec(),
                stale: false,
                exemplars: Default::default(),
            })),
        }],
    }
}

/// A one-point summary family.
pub(crate) fn summary(
    name: &str,
    quantiles: &[(f64, f64)],
    sum: f64,
    count: f64,
    pairs: &[(&str, &str)],
) -> Family {
    Family {
        name: name.into(),
        help: "".into(),
        unit: "".into(),
        kind: Kind::Summary,
        points: vec![Point {
            labels: labels(pairs).into(),
            start_ms: None,
            value: Value::Summary(Box::new(Summary {
                count,
                sum: Some(sum),
                quantiles: quantiles.to_vec(),
                stale: false,
            })),
        }],
    }
}

/// A batch with one gauge `seq{n}` = `n`: easy to follow through a backend in order.
pub(crate) fn numbered(n: u32) -> Arc<Batch> {
    Arc::new(Batch {
        timestamp_ms: 1_700_000_000_000 + i64::from(n),
        families: vec![number(
            Kind::Gauge,
            "seq",
            f64::from(n),
            &[("n", &n.to_string())],
        )],
    })
}

/// The `seq` values carried by remote-write bodies, in arrival order.
pub(crate) fn sequence(bodies: &[Bytes]) -> Vec<f64> {
    bodies
        .iter()
        .flat_map(|body| decode_remote_write(body).timeseries)
        .map(|series| series.samples[0].value)
        .collect()
}

/// A remote-write body, decompressed (snappy block format) and decoded.
pub(crate) fn decode_remote_write(body: &[u8]) -> WriteRequest {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .expect("snappy block format");
    prost::Message::decode(raw.as_slice()).expect("a WriteRequest")
}

/// A test's URL, which must be valid.
pub(crate) fn http_url(url: &str) -> HttpUrl {
    HttpUrl::parse(url).unwrap_or_else(|err| panic!("a test URL: {err}"))
}

/// A remote-write config for `urls` with short timeouts.
pub(crate) fn remote_write_config(urls: &[String], queue_max_bytes: u64) -> ExportConfig {
    ExportConfig {
        remote_write: urls
            .iter()
            .enumerate()
            .map(|(index, url)| {
                let mut backend =
                    RemoteWriteConfig::new(RemoteWriteConfig::default_name(index), http_url(url));
                backend.remote_timeout = Duration::from_secs(5);
                backend
            })
            .collect(),
        queue_max_bytes,
        otlp: None,
        ..ExportConfig::default()
    }
}

/// An OTLP config for `endpoint` with a request timeout.
pub(crate) fn otlp_config(
    endpoint: &str,
    protocol: OtlpProtocol,
    timeout: Duration,
) -> ExportConfig {
    let mut otlp = OtlpConfig::new(http_url(endpoint), protocol);
    otlp.timeout = timeout;
    ExportConfig {
        remote_write: Vec::new(),
        otlp: Some(otlp),
        queue_max_bytes: QUEUE,
        ..ExportConfig::default()
    }
}

/// Sets `headers` on every exporter of `config`.
pub(crate) fn with_headers(mut config: ExportConfig, headers: &[(&str, &str)]) -> ExportConfig {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for backend in &mut config.remote_write {
        backend.headers = headers.clone();
    }
    if let Some(otlp) = &mut config.otlp {
        otlp.headers = headers;
    }
    config
}

/// Sets the request timeout of every exporter of `config`.
pub(crate) fn with_timeout(mut config: ExportConfig, timeout: Duration) -> ExportConfig {
    for backend in &mut config.remote_write {
        backend.remote_timeout = timeout;
    }
    if let Some(otlp) = &mut config.otlp {
        otlp.timeout = timeout;
    }
    config
}

/// Retries quick enough for tests; requests give up after `max_age`.
pub(crate) fn quick_policy(max_age: Duration) -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
        max_age,
    }
}

/// Starts exporters with [`quick_policy`] (a minute of retries).
pub(crate) fn start(config: &ExportConfig, metrics: &SelfMetrics) -> Exporters {
    Exporters::start_with_policy(config, metrics, quick_policy(Duration::from_secs(60)))
        .expect("valid config")
}

/// One exporter's self-metrics read back at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExporterStats {
    /// Requests delivered.
    pub success: u64,
    /// Requests given up on (retries exhausted, shutdown).
    pub failed: u64,
    /// Requests the backend refused for good.
    pub dropped: u64,
    /// Retried attempts.
    pub retries: u64,
    /// Bytes queued now.
    pub queue_bytes: i64,
    /// Samples dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Samples the backend refused.
    pub dropped_rejected: u64,
    /// Samples given up on after retries.
    pub dropped_retries_exhausted: u64,
    /// Samples left when the flush deadline came.
    pub dropped_shutdown: u64,
}

impl ExporterStats {
    /// Reads the current values.
    pub(crate) fn read(metrics: &ExporterMetrics) -> Self {
        ExporterStats {
            success: metrics.success.get(),
            failed: metrics.failed.get(),
            dropped: metrics.dropped.get(),
            retries: metrics.retries.get(),
            queue_bytes: metrics.queue_bytes.get(),
            dropped_queue_full: metrics.dropped_queue_full.get(),
            dropped_rejected: metrics.dropped_rejected.get(),
            dropped_retries_exhausted: metrics.dropped_retries_exhausted.get(),
            dropped_shutdown: metrics.dropped_shutdown.get(),
        }
    }
}

/// One exporter's self-metrics, read back.
pub(crate) fn stats(metrics: &SelfMetrics, exporter: &str, queue_max_bytes: u64) -> ExporterStats {
    ExporterStats::read(&metrics.exporter(exporter, queue_max_bytes))
}

/// How the backend answers one request.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// This status, empty body.
    Status(u16),
    /// This status with a `Retry-After` header.
    RetryAfter(u16, String),
    /// 200 with this body.
    Body(Vec<u8>),
    /// Never answer.
    Hang,
}

/// A request the backend saw.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    /// When it arrived.
    pub at: Instant,
    /// Its path.
    pub path: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, as sent.
    pub body: Bytes,
}

/// An HTTP backend on loopback that records every request and answers from a script, then
/// with a default reply.
#[derive(Clone)]
pub(crate) struct Backend {
    script: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
}

impl Backend {
    /// A backend answering 200 unless scripted otherwise.
    pub(crate) fn new(script: impl IntoIterator<Item = Reply>) -> Self {
        Backend {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            default: Arc::new(Mutex::new(Reply::Status(200))),
            received: Arc::new(Mutex::new(Vec::new())),
            arrived: Arc::new(Notify::new()),
        }
    }

    /// Answers every unscripted request with `reply`.
    pub(crate) fn answer_with(&self, reply: Reply) {
        *self.default.lock().unwrap() = reply;
    }

    /// Serves on a new loopback port; returns the `…/api/v1/write` URL.
    pub(crate) async fn serve(&self) -> (SocketAddr, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        self.serve_on(listener);
        (addr, format!("http://{addr}/api/v1/write"))
    }

    /// Serves on `listener`.
    pub(crate) fn serve_on(&self, listener: tokio::net::TcpListener) {
        let backend = self.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let backend = backend.clone();
            async move { backend.answer(uri.path().to_owned(), headers, body).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    async fn answer(&self, path: String, headers: HeaderMap, body: Bytes) -> Response {
        self.received.lock().unwrap().push(Received {
            at: Instant::now(),
            path,
            headers,
            body,
        });
        self.arrived.notify_waiters();
        let scripted = self.script.lock().unwrap().pop_front();
        let reply = scripted.unwrap_or_else(|| self.default.lock().unwrap().clone());
        match reply {
            Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
            Reply::RetryAfter(code, after) => (
                StatusCode::from_u16(code).unwrap(),
                [("retry-after", after)],
            )
                .into_response(),
            Reply::Body(body) => (StatusCode::OK, body).into_response(),
            Reply::Hang => std::future::pending::<Response>().await,
        }
    }

    /// Every request so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The bodies of every request so far, in arrival order.
    pub(crate) fn bodies(&self) -> Vec<Bytes> {
        self.received().into_iter().map(|r| r.body).collect()
    }

    /// Waits (at most `within`) until `count` requests arrived; returns whether they did.
    pub(crate) async fn wait_for(&self, count: usize, within: Duration) -> bool {
        let until = Instant::now() + within;
        loop {
            let arrived = self.arrived.notified();
            if self.received.lock().unwrap().len() >= count {
                return true;
            }
            if tokio::time::timeout_at(until, arrived).await.is_err() {
                return self.received.lock().unwrap().len() >= count;
            }
        }
    }
}

/// A loopback port nobody listens on (yet).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `condition` every 10 ms for at most `within`.
pub(crate) async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}
