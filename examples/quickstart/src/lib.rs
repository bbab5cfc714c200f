//! The quickstart service: a small axum API wrapped with [`WxTelemetryLayer`], a simulated
//! `wx.cloud.callContainer` client to drive it (which reports its calls to the layer's beacon the
//! way the Mini Program package does), and a live summary read from the registry.
//!
//! `main.rs` wires these together; tests use [`app`] and [`drive_traffic`] directly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Value, json};
use wxcloudrun_telemetry::{
    DEFAULT_CLIENT_REPORT_PATH, TelemetryConfig, WxContext, WxTelemetryLayer,
};

/// The telemetry configuration from the `OTEL_*` variables, with the service called `quickstart`
/// unless `WXCLOUDRUN_SERVICE` or `OTEL_SERVICE_NAME` names it.
pub fn telemetry_config() -> TelemetryConfig {
    let named = ["WXCLOUDRUN_SERVICE", "OTEL_SERVICE_NAME"]
        .iter()
        .any(|key| std::env::var(key).is_ok_and(|v| !v.trim().is_empty()));
    let mut config = TelemetryConfig::from_env().with_service_version(env!("CARGO_PKG_VERSION"));
    if !named {
        config.service_name = "quickstart".to_owned();
    }
    config
}

/// A metrics-only layer as the quickstart configures it, with a fresh registry per call, and
/// client reports on (`Server-Timing` and the beacon).
pub fn telemetry_layer() -> WxTelemetryLayer {
    WxTelemetryLayer::builder()
        .service_name(telemetry_config().service_name)
        .client_reports(true)
        .build()
        .expect("the quickstart's telemetry configuration is valid")
}

/// The demo service with its own, fresh metrics, including `/metrics` on the same port.
pub fn app() -> Router {
    app_with(&telemetry_layer())
}

/// The demo service recording into `telemetry`, with `/metrics` on the same port for a quick
/// look (in production serve metrics on loopback only: see `spawn_metrics_server`), and the
/// beacon the Mini Program package reports to at [`DEFAULT_CLIENT_REPORT_PATH`] (it answers
/// `404` unless `telemetry` was built with `client_reports(true)`). Both sit beside the layer:
/// their own calls are not requests of the service.
pub fn app_with(telemetry: &WxTelemetryLayer) -> Router {
    Router::new()
        .route("/api/users/{id}", get(user))
        .route("/api/orders", post(create_order))
        .route("/api/flaky", get(flaky))
        .route("/api/slow", get(slow))
        .route("/api/whoami", get(whoami))
        .layer(telemetry.clone())
        .route_service("/metrics", telemetry.metrics_service())
        .route_service(DEFAULT_CLIENT_REPORT_PATH, telemetry.client_reports())
}

async fn user(Path(id): Path<u64>) -> Result<Json<Value>, StatusCode> {
    // Users above 1000 don't exist: a realistic trickle of 404s.
    if id > 1000 {
        return Err(StatusCode::NOT_FOUND);
    }
    Ok(Json(json!({ "id": id, "nickname": format!("user-{id}") })))
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
    quantity: u32,
}

async fn create_order(ctx: WxContext, Json(order): Json<NewOrder>) -> (StatusCode, Json<Value>) {
    if order.quantity == 0 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "quantity must be at least 1" })),
        );
    }
    static NEXT_ORDER: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ORDER.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(order_id = id, item = %order.item, "order created");
    (
        StatusCode::CREATED,
        Json(json!({
            "order_id": id,
            "item": order.item,
            "quantity": order.quantity,
            // The app the order was placed from; the OpenID stays out of responses and metrics.
            "appid": ctx.appid().or(ctx.from_appid()),
        })),
    )
}

/// Fails about one call in eight, like a dependency having a bad day.
async fn flaky() -> Result<&'static str, StatusCode> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    if mix(CALLS.fetch_add(1, Ordering::Relaxed)) % 8 == 0 {
        // This line carries the request's trace_id: grep for a user's x-trace-id to find it.
        tracing::warn!(upstream = "inventory", "upstream call failed");
        Err(StatusCode::BAD_GATEWAY)
    } else {
        Ok("fine this time")
    }
}

#[derive(Deserialize)]
struct SlowParams {
    ms: Option<u64>,
}

/// Sleeps `?ms=` milliseconds (default 400, at most 20 s: long enough to pass the 15 s limit).
async fn slow(Query(params): Query<SlowParams>) -> String {
    let ms = params.ms.unwrap_or(400).min(20_000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms")
}

async fn whoami(ctx: WxContext) -> Json<Value> {
    Json(json!({
        "via_wechat": ctx.via_wechat(),
        "source": ctx.primary_source(),
        "appid": ctx.appid(),
        "resource_reuse": ctx.is_resource_reuse(),
        "has_openid": ctx.user_openid().is_some(),
        "client": ctx.client_addr().map(|ip| ip.to_string()),
    }))
}

/// splitmix64: a small deterministic mixer, so simulated traffic is reproducible from a seed.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A value fixed for the process and different in every run: trace and span ids are salted with
/// it, so two runs against one collector never share a trace id, while the traffic itself stays
/// reproducible.
fn run_salt() -> u64 {
    use std::hash::BuildHasher;
    static SALT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SALT.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u8))
}

/// What [`drive_traffic`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficStats {
    /// Requests that got a response.
    pub responses: usize,
    /// Responses with a 4xx status.
    pub client_errors: usize,
    /// Responses with a 5xx status.
    pub server_errors: usize,
    /// Requests that got no response (connection errors).
    pub failed: usize,
    /// Calls the simulated Mini Program reported in accepted reports.
    pub reported_calls: usize,
    /// Reports the beacon accepted (`204`).
    pub reports_accepted: usize,
    /// Reports the beacon refused (a `4xx` other than `404`, e.g. `429` when a user's budget is
    /// spent); their calls count as dropped in that user's next report.
    pub reports_refused: usize,
}

impl TrafficStats {
    fn add(&mut self, other: &TrafficStats) {
        self.responses += other.responses;
        self.client_errors += other.client_errors;
        self.server_errors += other.server_errors;
        self.failed += other.failed;
        self.reported_calls += other.reported_calls;
        self.reports_accepted += other.reports_accepted;
        self.reports_refused += other.reports_refused;
    }
}

const APPIDS: [&str; 3] = [
    "wx1b2c3d4e5f6a7b8c",
    "wx9a8b7c6d5e4f3a2b",
    "wx00aa11bb22cc33dd",
];
const SOURCES: [&str; 4] = ["wx_client", "wx_client", "wx_devtools", "wx_client,scf"];
const ACCESS_HOPS: [&str; 2] = ["10.8.0.11", "10.9.0.23"];

/// Simulated time the gateway and the network add per access hop, in ms: the part of a call's
/// duration on the phone that the service never sees (on loopback it is next to nothing).
const HOP_OVERHEAD_MS: [f64; 2] = [35.0, 80.0];

/// The simulated phone's `timeout` for callContainer: a call that takes longer fails with
/// `102002` on the phone, whatever the service answers later.
const CLIENT_TIMEOUT_MS: f64 = 800.0;

/// Every this many calls through the gateway, the phone also tries an upload over 100 KB: the
/// gateway refuses it with `-606001` and the service never sees it.
const OVERSIZED_EVERY: u64 = 23;

/// The identity headers of a Mini Program user: what the gateway adds to the user's calls, and
/// so to the beacon calls of the user's phone.
type Identity = Vec<(&'static str, String)>;

/// One simulated call: the request as the gateway delivers it and, for calls from a Mini
/// Program, what its phone knows of it.
struct SimulatedCall {
    request: axum::http::Request<Full<Bytes>>,
    phone: Option<Phone>,
}

/// What the Mini Program package knows of a call it made.
struct Phone {
    identity: Identity,
    method: &'static str,
    trace_id: String,
    /// The gateway and network time added on top of what loopback takes.
    overhead_ms: f64,
    /// Whether the phone also tries an upload the gateway refuses.
    oversized: bool,
    /// A trace id for that refused upload.
    oversized_trace_id: String,
}

/// One simulated request: what a Mini Program's `wx.cloud.callContainer` would produce after the
/// gateway has added its headers (or, for some, a plain call from the internet).
#[cfg(test)]
fn simulated_request(base_url: &str, n: u64) -> axum::http::Request<Full<Bytes>> {
    simulated_call(base_url, n).request
}

fn simulated_call(base_url: &str, n: u64) -> SimulatedCall {
    let r = mix(n);
    let pick = |salt: u64, len: usize| (mix(r ^ salt) % len as u64) as usize;
    let (method, path, body) = match r % 100 {
        0..=44 => ("GET", format!("/api/users/{}", 1 + r % 1100), None),
        45..=59 => {
            let quantity = if r % 17 == 0 { 0 } else { 1 + r % 5 };
            let body = format!(r#"{{"item":"sku-{}","quantity":{quantity}}}"#, r % 50);
            ("POST", "/api/orders".to_owned(), Some(body))
        }
        60..=62 => (
            "POST",
            "/api/orders".to_owned(),
            Some("{not json".to_owned()),
        ),
        63..=77 => ("GET", "/api/flaky".to_owned(), None),
        78..=87 => ("GET", format!("/api/slow?ms={}", 20 + r % 900), None),
        88..=94 => ("GET", "/api/whoami".to_owned(), None),
        _ => ("GET", format!("/wp-login.php?probe={r}"), None),
    };
    let hop = pick(1, 2);
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(format!("{base_url}{path}"))
        .header(
            "x-forwarded-for",
            format!("198.51.100.{}, {}", r % 250, ACCESS_HOPS[hop]),
        );
    let mut phone = None;
    // One call in seven comes straight from the internet, with no gateway headers.
    if r % 7 != 0 {
        let appid = APPIDS[pick(2, APPIDS.len())];
        let user = format!("oSimUser{:04}", pick(3, 40));
        // Resource reuse: another app's user calls this environment.
        let mut identity: Identity = if r % 10 == 3 {
            vec![
                ("x-wx-appid", APPIDS[0].to_owned()),
                ("x-wx-from-appid", appid.to_owned()),
                ("x-wx-from-openid", user),
            ]
        } else {
            vec![("x-wx-appid", appid.to_owned()), ("x-wx-openid", user)]
        };
        identity.push(("x-wx-source", SOURCES[pick(4, SOURCES.len())].to_owned()));
        identity.push(("x-wx-env", "prod-quickstart".to_owned()));
        for (name, value) in &identity {
            request = request.header(*name, value);
        }
        request = request.header(
            "x-wx-call-id",
            format!("{:x}_{}", r >> 32, 1_700_000_000_000 + n),
        );
        // The Mini Program package's traceparent: the server span continues the phone's trace,
        // and the report names the call by this trace id.
        let id = r ^ run_salt();
        let trace_id = format!(
            "{:016x}{:016x}",
            mix(id ^ 0x7472_6163),
            mix(id ^ 0x6964) | 1
        );
        let span_id = format!("{:016x}", mix(id ^ 0x7370_616e) | 1);
        request = request.header("traceparent", format!("00-{trace_id}-{span_id}-01"));
        phone = Some(Phone {
            identity,
            method,
            trace_id,
            overhead_ms: HOP_OVERHEAD_MS[hop] + (r % 20) as f64,
            oversized: n % OVERSIZED_EVERY == 0,
            oversized_trace_id: format!("{:016x}{:016x}", mix(id ^ 0x0062_6967) | 1, n),
        });
    }
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Full::new(Bytes::from(json))
        }
        None => Full::new(Bytes::new()),
    };
    SimulatedCall {
        request: request
            .body(body)
            .expect("simulated requests are well formed"),
        phone,
    }
}

/// The `dur` of `app` in a `Server-Timing` value (`app;dur=12.3`), in ms.
fn server_timing_ms(value: &str) -> Option<f64> {
    value.split(',').find_map(|metric| {
        let mut parts = metric.trim().split(';');
        if parts.next()?.trim() != "app" {
            return None;
        }
        parts.find_map(|param| param.trim().strip_prefix("dur=")?.parse().ok())
    })
}

/// The calls one simulated phone has not reported yet, per user.
#[derive(Default)]
struct Reports {
    pending: BTreeMap<Identity, (Vec<Value>, u64)>,
}

impl Reports {
    fn push(&mut self, identity: &Identity, call: Value) {
        self.pending
            .entry(identity.clone())
            .or_default()
            .0
            .push(call);
    }

    /// What the phone records of a call that got an answer: `ok` below 500, `http_error` from
    /// 500, and `fail` with `102002` when it took longer than the phone's timeout.
    fn answered(&mut self, phone: &Phone, status: u16, elapsed: Duration, server_ms: Option<f64>) {
        let duration_ms = elapsed.as_secs_f64() * 1e3 + phone.overhead_ms;
        let call = if duration_ms > CLIENT_TIMEOUT_MS {
            json!({
                "trace_id": phone.trace_id, "span_id": "00f067aa0ba902b7", "method": phone.method,
                "duration_ms": CLIENT_TIMEOUT_MS, "outcome": "fail", "status": null,
                "err_code": 102002, "server_ms": null, "ts": 1_733_000_000_000u64,
            })
        } else {
            let outcome = if status >= 500 { "http_error" } else { "ok" };
            json!({
                "trace_id": phone.trace_id, "span_id": "00f067aa0ba902b7", "method": phone.method,
                "duration_ms": (duration_ms * 10.0).round() / 10.0, "outcome": outcome,
                "status": status, "err_code": null, "server_ms": server_ms,
                "ts": 1_733_000_000_000u64,
            })
        };
        self.push(&phone.identity, call);
    }

    /// The upload the gateway refused with `-606001`: it never reached the service.
    fn refused_upload(&mut self, phone: &Phone) {
        let call = json!({
            "trace_id": phone.oversized_trace_id, "span_id": "00f067aa0ba902b7", "method": "POST",
            "duration_ms": (phone.overhead_ms / 2.0).round(), "outcome": "fail", "status": null,
            "err_code": -606001, "server_ms": null, "ts": 1_733_000_000_000u64,
        });
        self.push(&phone.identity, call);
    }

    /// Sends every pending report to the beacon, 64 calls at most each, with the gateway
    /// headers of its user. Stops at a `404`: the service has no beacon.
    async fn send(
        self,
        client: &Client<HttpConnector, Full<Bytes>>,
        base_url: &str,
        stats: &mut TrafficStats,
    ) {
        for (identity, (calls, dropped)) in self.pending {
            let mut dropped = dropped;
            for batch in calls.chunks(64) {
                let body = json!({
                    "v": 1, "sdk": "wxcloudrun-telemetry-miniprogram/0.1.0",
                    "dropped": dropped, "calls": batch,
                })
                .to_string();
                let mut request =
                    axum::http::Request::post(format!("{base_url}{DEFAULT_CLIENT_REPORT_PATH}"))
                        .header("content-type", "application/json");
                for (name, value) in &identity {
                    request = request.header(*name, value);
                }
                let request = request
                    .body(Full::new(Bytes::from(body)))
                    .expect("reports are well formed");
                let status =
                    match tokio::time::timeout(Duration::from_secs(10), client.request(request))
                        .await
                    {
                        Ok(Ok(response)) => {
                            let status = response.status();
                            let _ = response.into_body().collect().await;
                            status
                        }
                        // Kept by a real phone for later; here the round ends.
                        _ => return,
                    };
                match status.as_u16() {
                    204 => {
                        stats.reports_accepted += 1;
                        stats.reported_calls += batch.len();
                        dropped = 0;
                    }
                    404 => return,
                    _ => {
                        stats.reports_refused += 1;
                        dropped += batch.len() as u64;
                    }
                }
            }
        }
    }
}

/// Sends `requests` simulated callContainer calls to `base_url` (e.g. `http://127.0.0.1:8080`)
/// over eight keep-alive connections. The mix is fixed by `seed`: several AppIDs and users,
/// `X-WX-SOURCE` values such as `wx_client` and `wx_devtools`, resource-reuse calls, calls from
/// the internet, malformed bodies, 404s, 5xx and slow calls.
///
/// Calls through the gateway come from simulated Mini Programs that do what the Mini Program
/// package does: a `traceparent` on every call, the duration on the phone (loopback time plus a
/// simulated gateway and network time per access hop), the service's own time from
/// `Server-Timing`, `102002` for calls past the phone's 800 ms timeout, an occasional upload the
/// gateway refuses with `-606001` (never sent), and at the end one report per user to the beacon
/// at [`DEFAULT_CLIENT_REPORT_PATH`].
pub async fn drive_traffic(
    base_url: &str,
    requests: usize,
    seed: u64,
) -> std::io::Result<TrafficStats> {
    const CONCURRENCY: usize = 8;
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let base_url = base_url.trim_end_matches('/').to_owned();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let client = client.clone();
        let base_url = base_url.clone();
        workers.spawn(async move {
            let mut stats = TrafficStats::default();
            let mut reports = Reports::default();
            for i in (worker..requests).step_by(CONCURRENCY) {
                let SimulatedCall { request, phone } =
                    simulated_call(&base_url, seed.wrapping_mul(1_000_003) + i as u64);
                let started = Instant::now();
                let call = client.request(request);
                match tokio::time::timeout(Duration::from_secs(30), call).await {
                    Ok(Ok(response)) => {
                        let status = response.status();
                        let server_ms = response
                            .headers()
                            .get("server-timing")
                            .and_then(|v| v.to_str().ok())
                            .and_then(server_timing_ms);
                        // Read the body so the server's timing ends where a client's would.
                        let _ = response.into_body().collect().await;
                        stats.responses += 1;
                        stats.client_errors += usize::from(status.is_client_error());
                        stats.server_errors += usize::from(status.is_server_error());
                        if let Some(phone) = &phone {
                            reports.answered(phone, status.as_u16(), started.elapsed(), server_ms);
                        }
                    }
                    Ok(Err(_)) | Err(_) => stats.failed += 1,
                }
                if let Some(phone) = phone.as_ref().filter(|phone| phone.oversized) {
                    reports.refused_upload(phone);
                }
            }
            reports.send(&client, &base_url, &mut stats).await;
            stats
        });
    }
    let mut total = TrafficStats::default();
    while let Some(joined) = workers.join_next().await {
        let stats = joined.map_err(std::io::Error::other)?;
        total.add(&stats);
    }
    Ok(total)
}

/// Requests, error ratio and latency percentiles per route, read from the layer's registry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Requests recorded since the start.
    pub requests: u64,
    /// Share of them that ended with a 5xx, a panic or a cancellation.
    pub error_ratio: f64,
    /// Per route: request count, p50 and p99 (estimated from the buckets), the slowest sampled
    /// request.
    pub routes: BTreeMap<String, RouteSummary>,
}

/// One route's line of the [`Summary`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteSummary {
    /// Requests on this route.
    pub requests: u64,
    /// Median latency.
    pub p50: Estimate,
    /// 99th percentile latency.
    pub p99: Estimate,
    /// The slowest of the route's exemplars (the latest sampled request of each bucket): its
    /// trace id and duration in seconds. `None` without sampled requests.
    pub slowest: Option<(String, f64)>,
}

/// A quantile estimated from histogram buckets: all the buckets say is that it lies in
/// `bucket` (lower, upper bound in seconds); `value` interpolates linearly inside it, as
/// Prometheus's `histogram_quantile` does.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    /// The interpolated value in seconds.
    pub value: f64,
    /// The bucket it lies in, in seconds; the upper bound is `+Inf` past the last bucket.
    pub bucket: (f64, f64),
}

impl std::fmt::Display for Estimate {
    /// `< 5 ms` in the first bucket (interpolating from zero would invent a value: 2.5 ms for
    /// 50 µs handlers), `> 30 s` past the last, else the estimate with its bucket.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |seconds: f64| seconds * 1e3;
        let (lower, upper) = self.bucket;
        let text = if upper.is_infinite() {
            format!("> {} ms", ms(lower))
        } else if lower <= 0.0 {
            format!("< {} ms", ms(upper))
        } else {
            format!("~{:.1} ms ({}-{})", ms(self.value), ms(lower), ms(upper))
        };
        f.pad(&text)
    }
}

impl Summary {
    /// Reads `http_server_request_duration_seconds` from `registry` (no exemplars: see
    /// [`from_layer`](Self::from_layer)).
    pub fn from_registry(registry: &prometheus::Registry) -> Self {
        // Per route: cumulative counts per upper bound, merged over the other labels.
        let mut buckets: BTreeMap<String, BTreeMap<u64, (f64, u64)>> = BTreeMap::new();
        let (mut requests, mut errors) = (0, 0);
        let families = registry.gather();
        let duration = families.iter().filter(|family| family.name() == DURATION);
        for metric in duration.flat_map(|family| family.get_metric()) {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|pair| pair.name() == name)
                    .map_or("", |pair| pair.value())
            };
            let histogram = metric.get_histogram();
            requests += histogram.get_sample_count();
            if !label("error_type").is_empty() {
                errors += histogram.get_sample_count();
            }
            let route = buckets.entry(label("http_route").to_owned()).or_default();
            for bucket in histogram.get_bucket() {
                let bound = bucket.upper_bound();
                let entry = route.entry(bound.to_bits()).or_insert((bound, 0));
                entry.1 += bucket.cumulative_count();
            }
            let total = route
                .entry(f64::INFINITY.to_bits())
                .or_insert((f64::INFINITY, 0));
            total.1 += histogram.get_sample_count();
        }
        let routes = buckets
            .into_iter()
            .map(|(route, bounds)| {
                let mut cumulative: Vec<(f64, u64)> = bounds.into_values().collect();
                cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
                let summary = RouteSummary {
                    requests: cumulative.last().map_or(0, |b| b.1),
                    p50: quantile(0.5, &cumulative),
                    p99: quantile(0.99, &cumulative),
                    slowest: None,
                };
                (route, summary)
            })
            .collect();
        Summary {
            requests,
            error_ratio: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            routes,
        }
    }

    /// [`from_registry`](Self::from_registry) of the layer's registry, with each route's slowest
    /// exemplar from the layer's OpenMetrics rendering.
    pub fn from_layer(telemetry: &WxTelemetryLayer) -> Self {
        let mut summary = Summary::from_registry(telemetry.registry());
        for (route, trace_id, seconds) in exemplars(&telemetry.render_openmetrics()) {
            if let Some(line) = summary.routes.get_mut(&route)
                && line
                    .slowest
                    .as_ref()
                    .is_none_or(|(_, slowest)| seconds > *slowest)
            {
                line.slowest = Some((trace_id, seconds));
            }
        }
        summary
    }
}

const DURATION: &str = "http_server_request_duration_seconds";

/// `(http_route, trace_id, value)` of every exemplar on the duration histogram's bucket lines of
/// an OpenMetrics page (`name{labels} count # {trace_id="…",span_id="…"} value timestamp`).
fn exemplars(page: &str) -> Vec<(String, String, f64)> {
    let prefix = format!("{DURATION}_bucket{{");
    let exemplar = |line: &str| {
        let (labels, rest) = read_labels(line.strip_prefix(&prefix)?)?;
        let (_, exemplar) = rest.split_once(" # {")?;
        let (exemplar_labels, rest) = read_labels(exemplar)?;
        let value = rest.split_whitespace().next()?.parse().ok()?;
        let get = |pairs: &[(String, String)], name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        Some((
            get(&labels, "http_route")?,
            get(&exemplar_labels, "trace_id")?,
            value,
        ))
    };
    page.lines().filter_map(exemplar).collect()
}

/// Reads `name="value",…}` (values escaped with `\`); returns the pairs and what follows `}`.
fn read_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut pairs = Vec::new();
    loop {
        text = text.strip_prefix(',').unwrap_or(text);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((pairs, rest));
        }
        let (name, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        pairs.push((name.to_owned(), value));
        text = &rest[end + 1..];
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "requests={} errors={:.1}%",
            self.requests,
            self.error_ratio * 100.0
        )?;
        for (route, s) in &self.routes {
            write!(
                f,
                "  {route:<18} n={:<6} p50={:<22} p99={:<22}",
                s.requests, s.p50, s.p99
            )?;
            match &s.slowest {
                Some((trace_id, seconds)) => writeln!(
                    f,
                    " slowest sampled: {:.1} ms trace {trace_id}",
                    seconds * 1e3
                )?,
                None => writeln!(f)?,
            }
        }
        Ok(())
    }
}

/// `histogram_quantile` as Prometheus computes it: linear interpolation inside the bucket, and
/// the bucket itself.
fn quantile(q: f64, cumulative: &[(f64, u64)]) -> Estimate {
    let Some(&(_, total)) = cumulative.last() else {
        return Estimate::default();
    };
    if total == 0 {
        return Estimate::default();
    }
    let rank = q * total as f64;
    let (mut lower_bound, mut lower_count) = (0.0, 0u64);
    for &(bound, count) in cumulative {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return Estimate {
                    value: lower_bound,
                    bucket: (lower_bound, bound),
                };
            }
            let in_bucket = (count - lower_count) as f64;
            let fraction = if in_bucket == 0.0 {
                1.0
            } else {
                (rank - lower_count as f64) / in_bucket
            };
            return Estimate {
                value: lower_bound + (bound - lower_bound) * fraction,
                bucket: (lower_bound, bound),
            };
        }
        (lower_bound, lower_count) = (bound, count);
    }
    Estimate {
        value: lower_bound,
        bucket: (lower_bound, f64::INFINITY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_prometheus() {
        let buckets = [(0.1, 50), (0.5, 90), (1.0, 100), (f64::INFINITY, 100)];
        assert!((quantile(0.5, &buckets).value - 0.1).abs() < 1e-9);
        assert!((quantile(0.7, &buckets).value - 0.3).abs() < 1e-9);
        assert_eq!(quantile(0.7, &buckets).bucket, (0.1, 0.5));
        assert!((quantile(0.99, &buckets).value - 0.95).abs() < 1e-9);
        assert_eq!(quantile(0.5, &[]).value, 0.0);
    }

    #[test]
    fn quantiles_show_what_the_buckets_know() {
        // 50 µs handlers: everything in the first bucket; interpolation would say 2.5 ms.
        let fast = [(0.005, 100), (0.01, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(0.5, &fast).to_string(), "< 5 ms");
        let mid = [(0.005, 0), (0.01, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(0.5, &mid).to_string(), "~7.5 ms (5-10)");
        let beyond = [(0.005, 0), (30.0, 0), (f64::INFINITY, 10)];
        assert_eq!(quantile(0.5, &beyond).to_string(), "> 30000 ms");
    }

    #[test]
    fn exemplars_are_read_off_the_bucket_lines() {
        let page = concat!(
            "# TYPE http_server_request_duration_seconds histogram\n",
            r#"http_server_request_duration_seconds_bucket{http_route="/a/{id}",note="x\"}y",le="0.005"} 3 # {trace_id="0af7651916cd43dd8448eb211c80319c",span_id="b7ad6b7169203331"} 0.0001 1700000000.5"#,
            "\n",
            r#"http_server_request_duration_seconds_bucket{http_route="/a/{id}",le="0.01"} 3"#,
            "\n# EOF\n",
        );
        assert_eq!(
            exemplars(page),
            [(
                "/a/{id}".to_owned(),
                "0af7651916cd43dd8448eb211c80319c".to_owned(),
                0.0001
            )]
        );
        assert!(exemplars("garbage {\n http_server_request_duration_seconds_bucket{").is_empty());
    }

    #[test]
    fn server_timing_is_read_like_the_mini_program_package_reads_it() {
        assert_eq!(server_timing_ms("app;dur=12.3"), Some(12.3));
        assert_eq!(server_timing_ms("cache;desc=hit, app;dur=4"), Some(4.0));
        assert_eq!(server_timing_ms("db;dur=3"), None);
        assert_eq!(server_timing_ms("app"), None);
    }

    #[test]
    fn simulated_phones_trace_their_calls_and_some_uploads_fail() {
        let calls: Vec<SimulatedCall> = (0..400).map(|n| simulated_call("http://x", n)).collect();
        let phones: Vec<&Phone> = calls.iter().filter_map(|c| c.phone.as_ref()).collect();
        assert!(phones.len() > 300);
        for call in &calls {
            let traced = call.request.headers().get("traceparent");
            let phone = call.phone.as_ref();
            assert_eq!(traced.is_some(), phone.is_some());
            if let (Some(traced), Some(phone)) = (traced, phone) {
                assert!(traced.to_str().unwrap().contains(&phone.trace_id));
                assert_eq!(phone.trace_id.len(), 32);
            }
        }
        assert!(phones.iter().any(|p| p.oversized));
        let overheads: std::collections::BTreeSet<u64> =
            phones.iter().map(|p| p.overhead_ms as u64 / 40).collect();
        assert!(overheads.len() >= 2, "{overheads:?}");
    }

    #[test]
    fn simulated_traffic_is_deterministic_and_varied() {
        let requests: Vec<_> = (0..400).map(|n| simulated_request("http://x", n)).collect();
        let again = simulated_request("http://x", 17);
        assert_eq!(requests[17].uri(), again.uri());
        assert_eq!(requests[17].headers(), again.headers());
        let has = |name: &str| {
            requests
                .iter()
                .filter(|r| r.headers().contains_key(name))
                .count()
        };
        assert!(has("x-wx-source") > 300);
        assert!(
            has("x-wx-source") < 400,
            "some calls come from the internet"
        );
        assert!(has("x-wx-from-openid") > 10, "resource reuse");
        let sources: std::collections::HashSet<_> = requests
            .iter()
            .filter_map(|r| r.headers().get("x-wx-source"))
            .collect();
        assert!(sources.len() >= 3);
    }
}
