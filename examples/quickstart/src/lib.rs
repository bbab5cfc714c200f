//! The quickstart service: a small axum API wrapped with [`WxTelemetryLayer`], a simulated
//! `wx.cloud.callContainer` client to drive it, and a live summary read from the registry.
//!
//! `main.rs` wires these together; tests use [`app`] and [`drive_traffic`] directly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
use wxcloudrun_telemetry::{TelemetryConfig, WxContext, WxTelemetryLayer};

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

/// A metrics-only layer as the quickstart configures it, with a fresh registry per call.
pub fn telemetry_layer() -> WxTelemetryLayer {
    WxTelemetryLayer::builder()
        .service_name(telemetry_config().service_name)
        .build()
        .expect("the quickstart's telemetry configuration is valid")
}

/// The demo service with its own, fresh metrics, including `/metrics` on the same port.
pub fn app() -> Router {
    app_with(&telemetry_layer())
}

/// The demo service recording into `telemetry`, with `/metrics` on the same port for a quick
/// look. (In production serve metrics on loopback only: see `spawn_metrics_server`.)
pub fn app_with(telemetry: &WxTelemetryLayer) -> Router {
    Router::new()
        .route("/api/users/{id}", get(user))
        .route("/api/orders", post(create_order))
        .route("/api/flaky", get(flaky))
        .route("/api/slow", get(slow))
        .route("/api/whoami", get(whoami))
        .layer(telemetry.clone())
        .route_service("/metrics", telemetry.metrics_service())
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
}

const APPIDS: [&str; 3] = [
    "wx1b2c3d4e5f6a7b8c",
    "wx9a8b7c6d5e4f3a2b",
    "wx00aa11bb22cc33dd",
];
const SOURCES: [&str; 4] = ["wx_client", "wx_client", "wx_devtools", "wx_client,scf"];
const ACCESS_HOPS: [&str; 2] = ["10.8.0.11", "10.9.0.23"];

/// One simulated call: what a Mini Program's `wx.cloud.callContainer` would produce after the
/// gateway has added its headers (or, for some, a plain call from the internet).
fn simulated_request(base_url: &str, n: u64) -> axum::http::Request<Full<Bytes>> {
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
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(format!("{base_url}{path}"))
        .header(
            "x-forwarded-for",
            format!("198.51.100.{}, {}", r % 250, ACCESS_HOPS[pick(1, 2)]),
        );
    // One call in seven comes straight from the internet, with no gateway headers.
    if r % 7 != 0 {
        let appid = APPIDS[pick(2, APPIDS.len())];
        let user = format!("oSimUser{:04}", pick(3, 40));
        request = request
            .header("x-wx-source", SOURCES[pick(4, SOURCES.len())])
            .header("x-wx-env", "prod-quickstart")
            .header(
                "x-wx-call-id",
                format!("{:x}_{}", r >> 32, 1_700_000_000_000 + n),
            );
        // Resource reuse: another app's user calls this environment.
        request = if r % 10 == 3 {
            request
                .header("x-wx-appid", APPIDS[0])
                .header("x-wx-from-appid", appid)
                .header("x-wx-from-openid", user)
        } else {
            request
                .header("x-wx-appid", appid)
                .header("x-wx-openid", user)
        };
    }
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Full::new(Bytes::from(json))
        }
        None => Full::new(Bytes::new()),
    };
    request
        .body(body)
        .expect("simulated requests are well formed")
}

/// Sends `requests` simulated callContainer calls to `base_url` (e.g. `http://127.0.0.1:8080`)
/// over eight keep-alive connections. The mix is fixed by `seed`: several AppIDs and users,
/// `X-WX-SOURCE` values such as `wx_client` and `wx_devtools`, resource-reuse calls, calls from
/// the internet, malformed bodies, 404s, 5xx and slow calls.
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
            for i in (worker..requests).step_by(CONCURRENCY) {
                let request = simulated_request(&base_url, seed.wrapping_mul(1_000_003) + i as u64);
                let call = client.request(request);
                match tokio::time::timeout(Duration::from_secs(30), call).await {
                    Ok(Ok(response)) => {
                        let status = response.status();
                        // Read the body so the server's timing ends where a client's would.
                        let _ = response.into_body().collect().await;
                        stats.responses += 1;
                        stats.client_errors += usize::from(status.is_client_error());
                        stats.server_errors += usize::from(status.is_server_error());
                    }
                    Ok(Err(_)) | Err(_) => stats.failed += 1,
                }
            }
            stats
        });
    }
    let mut total = TrafficStats::default();
    while let Some(joined) = workers.join_next().await {
        let stats = joined.map_err(std::io::Error::other)?;
        total.responses += stats.responses;
        total.client_errors += stats.client_errors;
        total.server_errors += stats.server_errors;
        total.failed += stats.failed;
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
    /// Per route: request count, p50 and p99 in seconds (estimated from the buckets).
    pub routes: BTreeMap<String, RouteSummary>,
}

/// One route's line of the [`Summary`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RouteSummary {
    /// Requests on this route.
    pub requests: u64,
    /// Median latency in seconds.
    pub p50: f64,
    /// 99th percentile latency in seconds.
    pub p99: f64,
}

impl Summary {
    /// Reads `http_server_request_duration_seconds` from `registry`.
    pub fn from_registry(registry: &prometheus::Registry) -> Self {
        // Per route: cumulative counts per upper bound, merged over the other labels.
        let mut buckets: BTreeMap<String, BTreeMap<u64, (f64, u64)>> = BTreeMap::new();
        let (mut requests, mut errors) = (0, 0);
        let families = registry.gather();
        let duration = families
            .iter()
            .filter(|family| family.name() == "http_server_request_duration_seconds");
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
            writeln!(
                f,
                "  {route:<18} n={:<6} p50={:>7.1}ms p99={:>7.1}ms",
                s.requests,
                s.p50 * 1e3,
                s.p99 * 1e3
            )?;
        }
        Ok(())
    }
}

/// `histogram_quantile` as Prometheus computes it: linear interpolation inside the bucket.
fn quantile(q: f64, cumulative: &[(f64, u64)]) -> f64 {
    let Some(&(_, total)) = cumulative.last() else {
        return 0.0;
    };
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let (mut lower_bound, mut lower_count) = (0.0, 0u64);
    for &(bound, count) in cumulative {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return lower_bound;
            }
            let in_bucket = (count - lower_count) as f64;
            let fraction = if in_bucket == 0.0 {
                1.0
            } else {
                (rank - lower_count as f64) / in_bucket
            };
            return lower_bound + (bound - lower_bound) * fraction;
        }
        (lower_bound, lower_count) = (bound, count);
    }
    lower_bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_prometheus() {
        let buckets = [(0.1, 50), (0.5, 90), (1.0, 100), (f64::INFINITY, 100)];
        assert!((quantile(0.5, &buckets) - 0.1).abs() < 1e-9);
        assert!((quantile(0.7, &buckets) - 0.3).abs() < 1e-9);
        assert!((quantile(0.99, &buckets) - 0.95).abs() < 1e-9);
        assert_eq!(quantile(0.5, &[]), 0.0);
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
