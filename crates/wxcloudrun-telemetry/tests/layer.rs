//! The layer end to end inside one process: an axum router wrapped with the layer, requests sent
//! with `oneshot`, and the registry rendered and matched line by line.

mod support;

use std::convert::Infallible;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{self, HeaderMap, Method, Request, StatusCode};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tower::ServiceExt;
use wxcloudrun_telemetry::{HttpRoute, TrustMode, WxContext, WxTelemetryLayer, render};

use support::{find, value};

const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";
const OPENID: &str = "oSECRET-openid-1234567890";
const UNIONID: &str = "uSECRET-unionid-0987654321";
const TOKEN: &str = "SECRET-cloudbase-token-abcdef";

fn layer() -> WxTelemetryLayer {
    WxTelemetryLayer::builder()
        .service_name("orders")
        .build()
        .unwrap()
}

fn app(layer: &WxTelemetryLayer) -> Router {
    Router::new()
        .route(
            "/api/users/{id}",
            get(|Path(id): Path<u32>| async move { format!("user {id}") }),
        )
        .route(
            "/api/orders",
            post(|body: Bytes| async move { format!("{} bytes", body.len()) }),
        )
        .route("/api/ignore-body", post(|| async { "not read" }))
        .route(
            "/api/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/api/whoami", get(whoami))
        .route("/api/slow", get(slow))
        .route("/api/stream", get(stream))
        .route("/api/broken-stream", get(broken_stream))
        .route("/api/panic", get(panics))
        .layer(layer.clone())
}

async fn whoami(ctx: WxContext, headers: HeaderMap) -> String {
    format!(
        "openid={:?} appid={:?} source={:?} raw_openid_header={}",
        ctx.openid(),
        ctx.appid(),
        ctx.primary_source(),
        headers.contains_key("x-wx-openid"),
    )
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(120)).await;
    "slow"
}

async fn panics() -> &'static str {
    panic!("handler exploded")
}

/// Three 100-byte chunks, 100 ms apart: the headers are ready long before the body ends.
async fn stream() -> Body {
    let chunks = futures_util::stream::unfold(0u8, |n| async move {
        if n == 3 {
            return None;
        }
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some((Ok::<_, Infallible>(Bytes::from(vec![b'x'; 100])), n + 1))
    });
    Body::from_stream(chunks)
}

async fn broken_stream() -> Body {
    let chunks = futures_util::stream::iter([
        Ok(Bytes::from_static(b"partial")),
        Err(std::io::Error::other("backend went away")),
    ]);
    Body::from_stream(chunks)
}

fn gateway_request(method: Method, uri: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("x-wx-source", "wx_client")
        .header("x-wx-openid", OPENID)
        .header("x-wx-unionid", UNIONID)
        .header("x-wx-appid", "wxAPP1")
        .header("x-wx-cloudbase-access-token", TOKEN)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("cookie", format!("session={TOKEN}"))
        .header("x-forwarded-for", "203.0.113.9, 10.8.0.7")
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Bytes) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

async fn get_ok(router: &Router, uri: &str) -> Bytes {
    let (status, body) = send(
        router,
        gateway_request(Method::GET, uri)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{uri}");
    body
}

fn active(text: &str) -> f64 {
    find(text, "http_server_active_requests", &[])
        .iter()
        .map(|s| s.value)
        .sum()
}

#[tokio::test]
async fn records_the_contract_after_known_traffic() {
    let layer = layer();
    let router = app(&layer);
    for id in [1, 2, 3] {
        get_ok(&router, &format!("/api/users/{id}")).await;
    }
    let (status, _) = send(
        &router,
        gateway_request(Method::GET, "/api/fail")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = send(
        &router,
        Request::get("/no/such/path/42")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let text = render(layer.registry());
    let users = [
        ("http_request_method", "GET"),
        ("http_route", "/api/users/{id}"),
        ("http_response_status_code", "200"),
        ("error_type", ""),
        ("wx_service", "orders"),
        ("wx_appid", "wxAPP1"),
        ("wx_source", "wx_client"),
        ("wx_access_node", "10.8.0.7"),
    ];
    assert_eq!(value(&text, DURATION_COUNT, &users), 3.0);
    let bucket = find(&text, "http_server_request_duration_seconds_bucket", &users);
    let bounds: Vec<&str> = bucket.iter().map(|s| s.label("le").unwrap()).collect();
    assert_eq!(
        bounds,
        [
            "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5",
            "5", "7.5", "10", "15", "30", "+Inf"
        ]
    );
    assert_eq!(bucket.last().unwrap().value, 3.0);

    let fail = [
        ("http_route", "/api/fail"),
        ("http_response_status_code", "503"),
        ("error_type", "503"),
    ];
    assert_eq!(value(&text, DURATION_COUNT, &fail), 1.0);

    // Unknown paths are `unmatched`, never the raw path; no gateway headers, empty labels.
    let unmatched = [
        ("http_route", "unmatched"),
        ("http_response_status_code", "404"),
        ("error_type", ""),
        ("wx_appid", ""),
        ("wx_source", ""),
    ];
    assert_eq!(value(&text, DURATION_COUNT, &unmatched), 1.0);
    assert!(!text.contains("/no/such/path"));

    assert_eq!(active(&text), 0.0);
    assert_eq!(
        value(
            &text,
            "http_server_response_body_size_bytes_count",
            &[("http_route", "/api/users/{id}")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "wxcloudrun_telemetry_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let cold = value(
        &text,
        "wxcloudrun_cold_start_seconds",
        &[("wx_service", "orders")],
    );
    assert!(cold > 0.0, "cold start {cold}");
    if cfg!(target_os = "linux") {
        assert!(text.contains("process_resident_memory_bytes"));
    }
}

#[tokio::test]
async fn personal_ids_and_credentials_appear_nowhere() {
    let layer = layer();
    let router = app(&layer);
    get_ok(&router, "/api/users/1").await;
    let body = get_ok(&router, "/api/whoami").await;
    // The handler does see the caller.
    assert!(String::from_utf8_lossy(&body).contains(OPENID));

    let text = render(layer.registry());
    for secret in [OPENID, UNIONID, TOKEN, "Bearer", "session="] {
        assert!(!text.contains(secret), "{secret} leaked into\n{text}");
    }
}

#[tokio::test]
async fn forged_identity_without_source_is_not_a_label() {
    let layer = layer();
    let router = app(&layer);
    let request = Request::get("/api/whoami")
        .header("x-wx-openid", "oForged")
        .header("x-wx-appid", "wxForged")
        .body(Body::empty())
        .unwrap();
    let (_, body) = send(&router, request).await;
    assert!(String::from_utf8_lossy(&body).contains("openid=None appid=None"));
    let text = render(layer.registry());
    assert!(!text.contains("wxForged"));
}

#[tokio::test]
async fn strip_mode_hides_gateway_headers_from_the_service() {
    let layer = WxTelemetryLayer::builder()
        .service_name("orders")
        .trust(TrustMode::Strip)
        .build()
        .unwrap();
    let router = app(&layer);
    let body = get_ok(&router, "/api/whoami").await;
    assert_eq!(
        String::from_utf8_lossy(&body),
        "openid=None appid=None source=None raw_openid_header=false"
    );
    let text = render(layer.registry());
    assert_eq!(
        value(
            &text,
            DURATION_COUNT,
            &[
                ("http_route", "/api/whoami"),
                ("wx_appid", ""),
                ("wx_source", "")
            ]
        ),
        1.0
    );
}

#[tokio::test]
async fn streaming_body_is_timed_to_its_end_and_counted_once() {
    let layer = layer();
    let router = app(&layer);
    let response = router
        .clone()
        .oneshot(
            gateway_request(Method::GET, "/api/stream")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    // Headers are here, the body is not: the request is still in flight.
    assert_eq!(active(&render(layer.registry())), 1.0);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 300);

    let text = render(layer.registry());
    let route = [("http_route", "/api/stream")];
    let sum = value(&text, "http_server_request_duration_seconds_sum", &route);
    assert!(sum >= 0.2, "timed at the headers, not the body: {sum}s");
    assert_eq!(value(&text, DURATION_COUNT, &route), 1.0);
    assert_eq!(
        value(&text, "http_server_response_body_size_bytes_sum", &route),
        300.0
    );
    assert_eq!(
        value(&text, "http_server_response_body_size_bytes_count", &route),
        1.0
    );
    assert_eq!(active(&text), 0.0);
}

#[tokio::test]
async fn request_body_bytes_are_counted_read_or_not() {
    let layer = layer();
    let router = app(&layer);
    for uri in ["/api/orders", "/api/ignore-body"] {
        let request = gateway_request(Method::POST, uri)
            .header("content-length", "1234")
            .body(Body::from(vec![b'{'; 1234]))
            .unwrap();
        let (status, _) = send(&router, request).await;
        assert_eq!(status, StatusCode::OK);
    }
    // A chunked body of unknown length, read by the handler.
    let chunks = futures_util::stream::iter([
        Ok::<_, Infallible>(Bytes::from_static(b"abc")),
        Ok(Bytes::from_static(b"defgh")),
    ]);
    let request = gateway_request(Method::POST, "/api/orders")
        .body(Body::from_stream(chunks))
        .unwrap();
    let (_, body) = send(&router, request).await;
    assert_eq!(&body[..], b"8 bytes");

    let text = render(layer.registry());
    let orders = [("http_route", "/api/orders")];
    assert_eq!(
        value(&text, "http_server_request_body_size_bytes_sum", &orders),
        1242.0
    );
    assert_eq!(
        value(&text, "http_server_request_body_size_bytes_count", &orders),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "http_server_request_body_size_bytes_sum",
            &[("http_route", "/api/ignore-body")]
        ),
        1234.0
    );
}

#[tokio::test]
async fn cancelled_request_is_recorded_and_the_gauge_returns_to_zero() {
    let layer = layer();
    let router = app(&layer);
    let mut call = router.clone().oneshot(
        gateway_request(Method::GET, "/api/slow")
            .body(Body::empty())
            .unwrap(),
    );
    // Poll once so the handler is running, then drop it like a server whose client hung up.
    assert!((&mut call).now_or_never().is_none());
    assert_eq!(active(&render(layer.registry())), 1.0);
    drop(call);

    let text = render(layer.registry());
    assert_eq!(active(&text), 0.0);
    assert_eq!(
        value(
            &text,
            DURATION_COUNT,
            &[
                ("http_route", "/api/slow"),
                ("error_type", "cancelled"),
                ("http_response_status_code", "")
            ]
        ),
        1.0
    );
}

#[tokio::test]
async fn body_dropped_mid_stream_is_cancelled_with_its_status() {
    let layer = layer();
    let router = app(&layer);
    let response = router
        .clone()
        .oneshot(
            gateway_request(Method::GET, "/api/stream")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.data_ref().unwrap().len(), 100);
    drop(body);

    let text = render(layer.registry());
    assert_eq!(active(&text), 0.0);
    let route = [
        ("http_route", "/api/stream"),
        ("http_response_status_code", "200"),
        ("error_type", "cancelled"),
    ];
    assert_eq!(value(&text, DURATION_COUNT, &route), 1.0);
    assert_eq!(
        value(
            &text,
            "http_server_response_body_size_bytes_sum",
            &[("http_route", "/api/stream")]
        ),
        100.0
    );
}

#[tokio::test]
async fn body_error_is_recorded() {
    let layer = layer();
    let router = app(&layer);
    let response = router
        .clone()
        .oneshot(
            gateway_request(Method::GET, "/api/broken-stream")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(response.into_body().collect().await.is_err());
    let text = render(layer.registry());
    assert_eq!(
        value(
            &text,
            DURATION_COUNT,
            &[
                ("http_route", "/api/broken-stream"),
                ("error_type", "body_error")
            ]
        ),
        1.0
    );
    assert_eq!(active(&text), 0.0);
}

#[tokio::test]
async fn head_and_no_content_responses_are_not_cancellations() {
    let layer = layer();
    let router = Router::new()
        .route("/api/users/{id}", get(|| async { "user" }))
        .route("/api/empty", get(|| async { StatusCode::NO_CONTENT }))
        .layer(layer.clone());
    // Servers drop the body of a HEAD response unread.
    let response = router
        .clone()
        .oneshot(Request::head("/api/users/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    drop(response);
    send(
        &router,
        Request::get("/api/empty").body(Body::empty()).unwrap(),
    )
    .await;

    let text = render(layer.registry());
    assert!(
        find(&text, DURATION_COUNT, &[("error_type", "cancelled")]).is_empty(),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            DURATION_COUNT,
            &[("http_request_method", "HEAD"), ("error_type", "")]
        ),
        1.0
    );
}

#[tokio::test]
async fn panicking_handler_answers_500_and_is_recorded() {
    let layer = layer();
    let router = app(&layer);
    let (status, _) = send(
        &router,
        gateway_request(Method::GET, "/api/panic")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let text = render(layer.registry());
    assert_eq!(
        value(
            &text,
            DURATION_COUNT,
            &[
                ("http_route", "/api/panic"),
                ("http_response_status_code", "500"),
                ("error_type", "panic")
            ]
        ),
        1.0
    );
    assert_eq!(active(&text), 0.0);
}

#[tokio::test]
async fn uncaught_panic_is_still_recorded() {
    let layer = WxTelemetryLayer::builder()
        .service_name("orders")
        .catch_panic(false)
        .build()
        .unwrap();
    let router = app(&layer);
    let call = router.oneshot(
        gateway_request(Method::GET, "/api/panic")
            .body(Body::empty())
            .unwrap(),
    );
    let joined = tokio::spawn(call).await;
    assert!(joined.unwrap_err().is_panic());
    let text = render(layer.registry());
    assert_eq!(
        value(
            &text,
            DURATION_COUNT,
            &[
                ("http_route", "/api/panic"),
                ("http_response_status_code", ""),
                ("error_type", "panic")
            ]
        ),
        1.0
    );
    assert_eq!(active(&text), 0.0);
}

#[tokio::test]
async fn calls_past_the_deadline_are_counted_only_through_the_gateway() {
    let layer = WxTelemetryLayer::builder()
        .service_name("orders")
        .call_deadline(Duration::from_millis(50))
        .build()
        .unwrap();
    let router = app(&layer);
    get_ok(&router, "/api/slow").await;
    get_ok(&router, "/api/users/1").await;
    // Straight from the internet: no callContainer limit applies.
    send(
        &router,
        Request::get("/api/slow").body(Body::empty()).unwrap(),
    )
    .await;

    let text = render(layer.registry());
    let exceeded = find(&text, "wxcloudrun_call_deadline_exceeded_total", &[]);
    assert_eq!(exceeded.len(), 1, "{exceeded:?}");
    assert_eq!(exceeded[0].label("http_route"), Some("/api/slow"));
    assert_eq!(exceeded[0].label("wx_appid"), Some("wxAPP1"));
    assert_eq!(exceeded[0].label("wx_service"), Some("orders"));
    assert_eq!(exceeded[0].value, 1.0);
}

#[tokio::test]
async fn ten_thousand_distinct_values_leave_the_series_count_bounded() {
    let layer = WxTelemetryLayer::builder()
        .service_name("orders")
        .max_appids(32)
        .max_routes(256)
        .build()
        .unwrap();
    let router = app(&layer);
    for i in 0..10_000 {
        let request = Request::get("/api/users/1")
            .header("x-wx-source", format!("src{}", i % 40))
            .header("x-wx-appid", format!("wxFLOOD{i}"))
            .header(
                "x-forwarded-for",
                format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256),
            )
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        drop(response.into_body().collect().await.unwrap());
    }
    // Unmatched scanner paths: one series, whatever the paths.
    for i in 0..1_000 {
        let uri = format!("/wp-admin/{i}.php");
        send(
            &router,
            Request::get(uri.as_str()).body(Body::empty()).unwrap(),
        )
        .await;
    }

    let text = render(layer.registry());
    let series = find(&text, DURATION_COUNT, &[]);
    // The first 32 requests keep their appid and node (32 series); after that appid and node are
    // `_other` and only the source varies: 16 kept sources + `_other` (17); plus the 404s (1).
    assert_eq!(series.len(), 32 + 17 + 1);
    for (label, cap) in [("wx_source", 16), ("wx_access_node", 32)] {
        let values: std::collections::HashSet<_> =
            series.iter().filter_map(|s| s.label(label)).collect();
        assert_eq!(values.len(), cap + 2, "{label}: kept, _other and empty");
    }
    let appids: std::collections::HashSet<_> =
        series.iter().filter_map(|s| s.label("wx_appid")).collect();
    assert_eq!(
        appids.len(),
        32 + 1 + 1,
        "32 kept, _other, empty for the 404s"
    );
    assert!(appids.contains("_other"));
    let total: f64 = series.iter().map(|s| s.value).sum();
    assert_eq!(total, 11_000.0, "nothing is lost by folding");
    assert_eq!(
        value(
            &text,
            "wxcloudrun_label_overflow_total",
            &[
                ("label", "wx_appid"),
                ("metric", "http_server_request_duration_seconds")
            ]
        ),
        10_000.0 - 32.0
    );
    assert_eq!(
        value(
            &text,
            "wxcloudrun_label_overflow_total",
            &[("label", "wx_source")]
        ),
        // 40 sources, 16 kept: 24 of every 40 requests fold.
        (10_000 / 40 * 24) as f64
    );
    assert!(!text.contains("wp-admin"));
}

#[tokio::test]
async fn explicit_routes_are_capped_too() {
    let layer = WxTelemetryLayer::builder()
        .service_name("grpc")
        .max_routes(4)
        .build()
        .unwrap();
    let service = tower::ServiceBuilder::new()
        .map_request(|mut req: Request<Body>| {
            let route = req.uri().path().to_owned();
            req.extensions_mut().insert(HttpRoute(route.into()));
            req
        })
        .layer(layer.clone())
        .service_fn(|_req: Request<_>| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
    for i in 0..10 {
        let uri = format!("/pkg.Service/Method{i}");
        let response = service
            .clone()
            .oneshot(Request::post(uri.as_str()).body(Body::empty()).unwrap())
            .await
            .unwrap();
        drop(response);
    }
    let text = render(layer.registry());
    assert_eq!(find(&text, DURATION_COUNT, &[]).len(), 5);
    assert_eq!(
        value(&text, DURATION_COUNT, &[("http_route", "_other")]),
        6.0
    );
    assert_eq!(
        value(
            &text,
            DURATION_COUNT,
            &[("http_route", "/pkg.Service/Method0")]
        ),
        1.0
    );
}

#[tokio::test]
async fn access_nodes_are_named_through_the_cidr_table() {
    let layer = WxTelemetryLayer::builder()
        .service_name("orders")
        .access_node("10.8.0.0/16", "shanghai-edge")
        .build()
        .unwrap();
    let router = app(&layer);
    get_ok(&router, "/api/users/1").await;
    let request = gateway_request(Method::GET, "/api/users/2")
        .header("x-forwarded-for", "203.0.113.9, 192.0.2.77")
        .body(Body::empty())
        .unwrap();
    // The second X-Forwarded-For line carries the delivering hop.
    send(&router, request).await;
    let text = render(layer.registry());
    assert_eq!(
        value(
            &text,
            DURATION_COUNT,
            &[("wx_access_node", "shanghai-edge")]
        ),
        1.0
    );
    assert_eq!(
        value(&text, DURATION_COUNT, &[("wx_access_node", "unknown")]),
        1.0
    );
}

#[tokio::test]
async fn histogram_labels_can_be_dropped() {
    let layer = WxTelemetryLayer::builder()
        .service_name("orders")
        .histogram_labels([wxcloudrun_telemetry::MetricLabel::Source])
        .build()
        .unwrap();
    let router = app(&layer);
    get_ok(&router, "/api/users/1").await;
    let text = render(layer.registry());
    let series = find(&text, DURATION_COUNT, &[]);
    assert_eq!(series.len(), 1);
    let names: Vec<&str> = series[0].labels.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "http_request_method",
            "http_response_status_code",
            "http_route",
            "wx_service",
            "wx_source"
        ]
    );
}

#[tokio::test]
async fn two_layers_cannot_share_a_registry_silently() {
    let registry = prometheus::Registry::new();
    WxTelemetryLayer::builder()
        .registry(registry.clone())
        .build()
        .unwrap();
    let err = WxTelemetryLayer::builder()
        .registry(registry)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("register"), "{err}");
}

#[tokio::test]
async fn metrics_service_and_loopback_listener() {
    let layer = layer();
    let router = app(&layer).route_service("/metrics", layer.metrics_service());
    get_ok(&router, "/api/users/1").await;
    let response = router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains(DURATION_COUNT));

    let public = "0.0.0.0:0".parse().unwrap();
    let err = layer.spawn_metrics_server(public).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);

    let addr = layer
        .spawn_metrics_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut scraped = String::new();
    stream.read_to_string(&mut scraped).await.unwrap();
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    assert!(scraped.contains("http_route=\"/api/users/{id}\""));
}

#[tokio::test]
async fn rendered_output_passes_promtool_check_metrics() {
    let Some(promtool) = support::promtool() else {
        return;
    };
    let layer = layer();
    let router = app(&layer);
    get_ok(&router, "/api/users/1").await;
    get_ok(&router, "/api/stream").await;
    send(&router, Request::get("/nope").body(Body::empty()).unwrap()).await;
    let text = render(layer.registry());

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn extractors_without_the_layer() {
    // `Option<WxContext>` is `None` and `WxContext` rejects with a 500 that names the fix.
    let router: Router = Router::new()
        .route(
            "/optional",
            get(|ctx: Option<WxContext>| async move { format!("{}", ctx.is_some()) }),
        )
        .route("/required", get(|_: WxContext| async { "unreachable" }));
    let (status, body) = send(
        &router,
        Request::get("/optional").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"false"[..]));
    let (status, body) = send(
        &router,
        Request::get("/required").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(String::from_utf8_lossy(&body).contains("WxTelemetryLayer"));

    // Behind the layer, the optional form is always there, even for a call from the internet.
    let layer = layer();
    let router = router.layer(layer.clone());
    let (_, body) = send(
        &router,
        Request::get("/optional").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(&body[..], b"true");
}

/// How routes of mounted routers and services come out: `Router::nest` keeps the full template;
/// `route_service` with a wildcard names a mounted service; `nest_service` is `unmatched`, because
/// axum hides its matched path from middleware (in a private extension).
#[tokio::test]
async fn routes_of_mounted_routers_and_services() {
    let telemetry = layer();
    let inner = Router::new().route(
        "/users/{id}",
        get(|Path(id): Path<u32>| async move { format!("v2 user {id}") }),
    );
    let files = tower::service_fn(|req: Request<Body>| async move {
        Ok::<_, Infallible>(axum::response::Response::new(Body::from(
            req.uri().path().to_owned(),
        )))
    });
    let router = Router::new()
        .nest("/api/v2", inner)
        .route_service("/static/{*path}", files)
        .nest_service("/assets", files)
        .layer(telemetry.clone());

    get_ok(&router, "/api/v2/users/7").await;
    assert_eq!(
        &get_ok(&router, "/static/css/site.css").await[..],
        b"/static/css/site.css"
    );
    // `nest_service` strips its prefix before the service sees the path.
    assert_eq!(&get_ok(&router, "/assets/logo.png").await[..], b"/logo.png");

    let text = render(telemetry.registry());
    for (route, count) in [
        ("/api/v2/users/{id}", 1.0),
        ("/static/{*path}", 1.0),
        ("unmatched", 1.0),
    ] {
        let labels = [("http_route", route), ("http_response_status_code", "200")];
        assert_eq!(value(&text, DURATION_COUNT, &labels), count, "{route}");
    }
    assert!(
        !text.contains("logo.png") && !text.contains("site.css"),
        "{text}"
    );
}
