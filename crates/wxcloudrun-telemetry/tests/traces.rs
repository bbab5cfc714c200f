//! The server span of every request: its contract checked against the SDK's in-memory exporter,
//! then exported for real over OTLP/HTTP and OTLP/gRPC to receivers on loopback.

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::get;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::ServiceExt;
use wxcloudrun_telemetry::{
    IdentityPolicy, OtlpProtocol, Telemetry, TelemetryConfig, TraceExport, TraceSampler,
    WxTelemetryBuilder, WxTelemetryLayer, render,
};

use support::otlp::{self, attr};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const OPENID: &str = "oSECRET-openid-1234567890";
const FROM_OPENID: &str = "oSECRET-from-openid-42";
const UNIONID: &str = "uSECRET-unionid-0987654321";
const TOKEN: &str = "SECRET-cloudbase-token-abcdef";

fn app(layer: &WxTelemetryLayer) -> Router {
    Router::new()
        .route(
            "/api/users/{id}",
            get(|Path(id): Path<u32>| async move {
                tracing::info!(user_id = id, "loading user");
                format!("user {id}")
            }),
        )
        .route(
            "/api/annotated",
            get(|| async {
                // What a handler adds to the server span through the current context.
                use opentelemetry::trace::TraceContextExt as _;
                let cx = opentelemetry::Context::current();
                let span = cx.span();
                span.set_attribute(opentelemetry::KeyValue::new("order.id", 42_i64));
                span.add_event(
                    "payment authorised",
                    vec![opentelemetry::KeyValue::new("provider", "wxpay")],
                );
                "annotated"
            }),
        )
        .route(
            "/api/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/api/panic",
            get(|| async {
                if true {
                    panic!("handler exploded");
                }
                "unreachable"
            }),
        )
        .route(
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "slow"
            }),
        )
        .layer(layer.clone())
}

fn gateway(uri: &str) -> http::request::Builder {
    Request::get(uri)
        .header("x-wx-source", "wx_client,scf")
        .header("x-wx-openid", OPENID)
        .header("x-wx-unionid", UNIONID)
        .header("x-wx-appid", "wxAPP1")
        .header("x-wx-env", "prod-1abc")
        .header("x-wx-call-id", "c4ll_1700000000000")
        .header("x-wx-cloudbase-access-token", TOKEN)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("x-forwarded-for", "203.0.113.9, 10.8.0.7")
        .header("user-agent", "MiniProgram/8.0")
}

fn with_parent(builder: http::request::Builder, sampled: bool) -> http::request::Builder {
    let flags = if sampled { "01" } else { "00" };
    builder.header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-{flags}"))
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let _ = body.collect().await;
    (parts.status, parts.headers)
}

/// A request the client gives up on while the handler still runs.
async fn cancel(router: &Router, uri: &str) {
    let mut call = router
        .clone()
        .oneshot(gateway(uri).body(Body::empty()).unwrap());
    assert!((&mut call).now_or_never().is_none());
    drop(call);
}

fn in_memory() -> (SdkTracerProvider, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (provider, exporter)
}

fn layer_with(
    provider: &SdkTracerProvider,
    configure: impl FnOnce(WxTelemetryBuilder) -> WxTelemetryBuilder,
) -> WxTelemetryLayer {
    configure(
        WxTelemetryLayer::builder()
            .service_name("orders")
            .tracer(provider.tracer("test")),
    )
    .build()
    .unwrap()
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn only_span(exporter: &InMemorySpanExporter) -> SpanData {
    let mut spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    spans.remove(0)
}

#[tokio::test]
async fn server_span_follows_the_contract() {
    let (provider, exporter) = in_memory();
    let layer = layer_with(&provider, |b| b);
    let router = app(&layer);
    let (status, headers) = send(
        &router,
        with_parent(gateway("/api/users/7"), true)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-trace-id"], TRACE_ID, "the id a user can report");
    assert!(!headers.contains_key("traceparent"), "off by default");

    let span = only_span(&exporter);
    assert_eq!(span.name, "GET /api/users/{id}");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).unwrap()
    );
    assert_eq!(span.parent_span_id, SpanId::from_hex(PARENT_ID).unwrap());
    assert_eq!(span.status, Status::Unset);
    let expected = [
        ("http.request.method", "GET"),
        ("http.route", "/api/users/{id}"),
        ("url.path", "/api/users/7"),
        ("url.scheme", "http"),
        ("http.response.status_code", "200"),
        ("network.protocol.version", "1.1"),
        ("user_agent.original", "MiniProgram/8.0"),
        ("client.address", "203.0.113.9"),
        ("wx.appid", "wxAPP1"),
        ("wx.env", "prod-1abc"),
        ("wx.source", "wx_client,scf"),
        ("wx.service", "orders"),
        ("wx.access_node", "10.8.0.7"),
        ("wx.call_id", "c4ll_1700000000000"),
    ];
    for (key, value) in expected {
        assert_eq!(attribute(&span, key).as_deref(), Some(value), "{key}");
    }
    assert!(attribute(&span, "wx.cold_start").is_some());
    assert_eq!(attribute(&span, "error.type"), None);
    let pseudo = attribute(&span, "enduser.pseudo.id").unwrap();
    assert_eq!(pseudo.len(), 32);
    assert!(attribute(&span, "wx.unionid_hash").is_some());

    let everything = format!("{span:?}");
    for secret in [OPENID, UNIONID, TOKEN] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }

    // One instant ends the histogram sample and the span.
    let text = render(layer.registry());
    let sum = support::value(
        &text,
        "http_server_request_duration_seconds_sum",
        &[("http_route", "/api/users/{id}")],
    );
    let span_seconds = span
        .end_time
        .duration_since(span.start_time)
        .unwrap()
        .as_secs_f64();
    assert!(
        (sum - span_seconds).abs() < 1e-6,
        "histogram {sum} vs span {span_seconds}"
    );
}

#[tokio::test]
async fn span_status_follows_the_outcome() {
    let (provider, exporter) = in_memory();
    let router = app(&layer_with(&provider, |b| b));
    let get = |uri: &str| gateway(uri).body(Body::empty()).unwrap();
    send(&router, get("/no/such/page")).await;
    send(&router, get("/api/fail")).await;
    let (status, headers) = send(&router, get("/api/panic")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(headers.contains_key("x-trace-id"));
    cancel(&router, "/api/slow").await;

    let spans = exporter.get_finished_spans().unwrap();
    let outcome: Vec<(String, Status, Option<String>, Option<String>)> = spans
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.status.clone(),
                attribute(s, "error.type"),
                attribute(s, "http.route"),
            )
        })
        .collect();
    let error = Status::error("");
    assert_eq!(
        outcome,
        [
            // Unmatched: the method alone, no route attribute, and 4xx is not an error.
            ("GET".to_owned(), Status::Unset, None, None),
            (
                "GET /api/fail".to_owned(),
                error.clone(),
                Some("500".to_owned()),
                Some("/api/fail".to_owned())
            ),
            (
                "GET /api/panic".to_owned(),
                error.clone(),
                Some("panic".to_owned()),
                Some("/api/panic".to_owned())
            ),
            (
                "GET /api/slow".to_owned(),
                error,
                Some("cancelled".to_owned()),
                Some("/api/slow".to_owned())
            ),
        ]
    );
    assert_eq!(
        attribute(&spans[0], "http.response.status_code").as_deref(),
        Some("404")
    );
    assert_eq!(
        attribute(&spans[3], "http.response.status_code"),
        None,
        "no response was sent"
    );
}

#[tokio::test]
async fn identity_policies() {
    let raw_and_hashed =
        async |policy: IdentityPolicy, key: Option<&str>, request: Request<Body>| {
            let (provider, exporter) = in_memory();
            let router = app(&layer_with(&provider, |b| {
                let b = b.identity(policy);
                match key {
                    Some(key) => b.identity_key(key),
                    None => b,
                }
            }));
            send(&router, request).await;
            let span = only_span(&exporter);
            (
                attribute(&span, "enduser.pseudo.id"),
                attribute(&span, "wx.unionid_hash"),
            )
        };
    let request = || gateway("/api/users/1").body(Body::empty()).unwrap();

    let (raw, raw_union) = raw_and_hashed(IdentityPolicy::Raw, None, request()).await;
    assert_eq!(raw.as_deref(), Some(OPENID));
    assert_eq!(raw_union.as_deref(), Some(UNIONID));

    let (omitted, omitted_union) = raw_and_hashed(IdentityPolicy::Omitted, None, request()).await;
    assert_eq!((omitted, omitted_union), (None, None));

    let (k1, _) = raw_and_hashed(IdentityPolicy::Hashed, Some("key-one"), request()).await;
    let (k1_again, _) = raw_and_hashed(IdentityPolicy::Hashed, Some("key-one"), request()).await;
    let (k2, _) = raw_and_hashed(IdentityPolicy::Hashed, Some("key-two"), request()).await;
    assert_eq!(
        k1, k1_again,
        "the same key joins the same user across services"
    );
    assert_ne!(k1, k2);

    // Resource reuse: the user is the calling app's.
    let reuse = Request::get("/api/users/1")
        .header("x-wx-source", "wx_client")
        .header("x-wx-appid", "wxOWNER")
        .header("x-wx-from-appid", "wxCALLER")
        .header("x-wx-from-openid", FROM_OPENID)
        .body(Body::empty())
        .unwrap();
    let (reuse_raw, _) = raw_and_hashed(IdentityPolicy::Raw, None, reuse).await;
    assert_eq!(reuse_raw.as_deref(), Some(FROM_OPENID));
}

#[tokio::test]
async fn response_traceparent_when_asked() {
    let (provider, exporter) = in_memory();
    let router = app(&layer_with(&provider, |b| {
        b.response_traceparent(true)
            .trace_id_header(Some("x-request-trace".parse().unwrap()))
    }));
    let (_, headers) = send(
        &router,
        gateway("/api/users/1").body(Body::empty()).unwrap(),
    )
    .await;
    let span = only_span(&exporter);
    let trace_id = span.span_context.trace_id().to_string();
    assert_eq!(headers["x-request-trace"], trace_id.as_str());
    assert!(!headers.contains_key("x-trace-id"));
    assert_eq!(
        headers["traceparent"],
        format!("00-{trace_id}-{}-01", span.span_context.span_id()).as_str()
    );
}

fn config(export: TraceExport, sampler: TraceSampler) -> TelemetryConfig {
    let mut config = TelemetryConfig::from_lookup(|_| None);
    config.service_name = "orders".to_owned();
    config.export = export;
    config.sampler = sampler;
    config.env_id = Some("prod-1abc".to_owned());
    config.with_service_version("9.9.9")
}

async fn export_over(protocol: OtlpProtocol) {
    let (endpoint, received) = match protocol {
        OtlpProtocol::HttpProtobuf => otlp::http_receiver().await,
        OtlpProtocol::Grpc => otlp::grpc_receiver().await,
    };
    let telemetry = Telemetry::new(config(
        TraceExport::Otlp { endpoint, protocol },
        TraceSampler::ParentBasedAlwaysOn,
    ))
    .unwrap();
    assert!(telemetry.exports_traces());
    let router = app(&telemetry.layer().build().unwrap());
    let get = |uri: &str| gateway(uri).body(Body::empty()).unwrap();
    let (_, headers) = send(
        &router,
        with_parent(gateway("/api/users/7"), true)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(headers["x-trace-id"], TRACE_ID);
    send(&router, get("/missing")).await;
    send(&router, get("/api/fail")).await;
    send(&router, get("/api/panic")).await;
    send(&router, get("/api/annotated")).await;
    cancel(&router, "/api/slow").await;
    // Dropping the guard flushes: no waiting, no sleeping.
    drop(telemetry);

    let spans = received.spans();
    let summary: Vec<(String, i32, i32, Option<String>)> = spans
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.kind,
                s.status.as_ref().map_or(0, |st| st.code),
                attr(&s.attributes, "error.type"),
            )
        })
        .collect();
    const SERVER: i32 = 2;
    const ERROR: i32 = 2;
    assert_eq!(
        summary,
        [
            ("GET /api/users/{id}".to_owned(), SERVER, 0, None),
            ("GET".to_owned(), SERVER, 0, None),
            (
                "GET /api/fail".to_owned(),
                SERVER,
                ERROR,
                Some("500".to_owned())
            ),
            (
                "GET /api/panic".to_owned(),
                SERVER,
                ERROR,
                Some("panic".to_owned())
            ),
            ("GET /api/annotated".to_owned(), SERVER, 0, None),
            (
                "GET /api/slow".to_owned(),
                SERVER,
                ERROR,
                Some("cancelled".to_owned())
            ),
        ],
        "{protocol:?}"
    );
    let first = &spans[0];
    assert_eq!(hex(&first.trace_id), TRACE_ID);
    assert_eq!(hex(&first.parent_span_id), PARENT_ID);
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.route", "/api/users/{id}"),
        ("url.path", "/api/users/7"),
        ("url.scheme", "http"),
        ("http.response.status_code", "200"),
        ("network.protocol.version", "1.1"),
        ("user_agent.original", "MiniProgram/8.0"),
        ("client.address", "203.0.113.9"),
        ("wx.appid", "wxAPP1"),
        ("wx.env", "prod-1abc"),
        ("wx.source", "wx_client,scf"),
        ("wx.service", "orders"),
        ("wx.access_node", "10.8.0.7"),
        ("wx.call_id", "c4ll_1700000000000"),
    ] {
        assert_eq!(
            attr(&first.attributes, key).as_deref(),
            Some(value),
            "{key}"
        );
    }
    assert_eq!(
        attr(&first.attributes, "enduser.pseudo.id").map(|v| v.len()),
        Some(32)
    );
    assert!(attr(&first.attributes, "wx.cold_start").is_some());
    // What the handler added to the current span.
    let annotated = &spans[4];
    assert_eq!(
        attr(&annotated.attributes, "order.id").as_deref(),
        Some("42")
    );
    assert_eq!(annotated.events.len(), 1, "{protocol:?}");
    assert_eq!(annotated.events[0].name, "payment authorised");
    assert_eq!(
        attr(&annotated.events[0].attributes, "provider").as_deref(),
        Some("wxpay")
    );
    let resource = received.resource();
    assert_eq!(attr(&resource, "service.name").as_deref(), Some("orders"));
    assert_eq!(attr(&resource, "service.version").as_deref(), Some("9.9.9"));
    assert_eq!(attr(&resource, "wx.env").as_deref(), Some("prod-1abc"));

    let raw = received.raw();
    for secret in [OPENID, UNIONID, TOKEN] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} left the process over {protocol:?}"
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_over_otlp_http() {
    export_over(OtlpProtocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_over_otlp_grpc() {
    export_over(OtlpProtocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratio_zero_samples_out_roots_but_follows_sampled_parents() {
    let (endpoint, received) = otlp::http_receiver().await;
    let telemetry = Telemetry::new(config(
        TraceExport::Otlp {
            endpoint,
            protocol: OtlpProtocol::HttpProtobuf,
        },
        TraceSampler::parse(Some("parentbased_traceidratio"), Some("0"), &mut Vec::new()),
    ))
    .unwrap();
    let router = app(&telemetry.layer().build().unwrap());
    for _ in 0..20 {
        let (_, headers) = send(
            &router,
            gateway("/api/users/1").body(Body::empty()).unwrap(),
        )
        .await;
        // Not sampled, still identifiable in the logs.
        assert_eq!(headers["x-trace-id"].len(), 32);
    }
    send(
        &router,
        with_parent(gateway("/api/users/2"), true)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    send(
        &router,
        with_parent(gateway("/api/users/3"), false)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    drop(telemetry);

    let spans = received.spans();
    assert_eq!(
        spans.len(),
        1,
        "only the sampled parent's child: {spans:#?}"
    );
    assert_eq!(
        attr(&spans[0].attributes, "url.path").as_deref(),
        Some("/api/users/2")
    );
    assert_eq!(hex(&spans[0].trace_id), TRACE_ID);
}

#[tokio::test]
async fn without_an_endpoint_ids_exist_but_nothing_is_exported() {
    let telemetry = Telemetry::new(config(
        TraceExport::NotExported,
        TraceSampler::ParentBasedAlwaysOn,
    ))
    .unwrap();
    assert!(!telemetry.exports_traces());
    let router = app(&telemetry.layer().build().unwrap());
    let (_, headers) = send(
        &router,
        gateway("/api/users/1").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(headers["x-trace-id"].len(), 32);

    let disabled = Telemetry::new(config(TraceExport::Disabled, TraceSampler::AlwaysOn)).unwrap();
    let router = app(&disabled.layer().build().unwrap());
    let (status, headers) = send(
        &router,
        gateway("/api/users/1").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key("x-trace-id"));
}

/// A step of a handler, traced with `#[instrument]`: its span is a child of whatever is current.
#[tracing::instrument]
async fn load_user(id: u32) -> String {
    // A second poll: the grandchild starts after the handler was suspended once.
    tokio::task::yield_now().await;
    query_user(id).await
}

#[tracing::instrument]
async fn query_user(id: u32) -> String {
    let (trace_id, sampled) = current_span_ids();
    format!("user {id} {trace_id} {sampled}")
}

/// What `#[instrument]` spans saw: their trace id and whether they are sampled.
fn current_span_ids() -> (String, bool) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let span_context = span.span_context();
    (
        span_context.trace_id().to_string(),
        span_context.is_sampled(),
    )
}

/// A handler whose `#[instrument]` span starts in the service's `call` (a `service_fn` calling
/// an instrumented `async fn` creates its span there) rather than in a poll.
#[tracing::instrument(skip_all)]
async fn instrumented_service<B>(
    _request: Request<B>,
) -> Result<axum::response::Response, std::convert::Infallible> {
    let seen = current_span_ids();
    tokio::task::yield_now().await;
    Ok(axum::response::Response::new(Body::from(format!(
        "{} {}",
        seen.0, seen.1
    ))))
}

/// Both the axum route (spans started in polls) and a bare `service_fn` (span started in `call`)
/// under the layer that `telemetry` builds, with `init()`'s subscriber current on this thread.
async fn instrumented_calls(
    telemetry: &Telemetry,
    parent: Option<bool>,
) -> [(HeaderMap, String); 2] {
    let subscriber = telemetry.subscriber(std::io::sink).unwrap();
    let _default = tracing::subscriber::set_default(subscriber);
    let layer = telemetry.layer().build().unwrap();
    let router = Router::new()
        .route("/api/users/{id}", get(|Path(id): Path<u32>| load_user(id)))
        .layer(layer.clone());
    let request = |uri: &str| match parent {
        Some(sampled) => with_parent(gateway(uri), sampled),
        None => gateway(uri),
    };
    let routed = router
        .oneshot(request("/api/users/7").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .service_fn(instrumented_service);
    let direct = service
        .oneshot(request("/direct").body(Body::empty()).unwrap())
        .await
        .unwrap()
        .map(Body::new);
    let mut answers = Vec::new();
    for response in [routed, direct] {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        answers.push((parts.headers, String::from_utf8(body.to_vec()).unwrap()));
    }
    answers.try_into().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instrumented_spans_in_handlers_are_children_of_the_server_span() {
    let (endpoint, received) = otlp::http_receiver().await;
    let telemetry = Telemetry::new(config(
        TraceExport::Otlp {
            endpoint,
            protocol: OtlpProtocol::HttpProtobuf,
        },
        TraceSampler::ParentBasedAlwaysOn,
    ))
    .unwrap();
    let [(routed, _), (direct, _)] = instrumented_calls(&telemetry, Some(true)).await;
    assert_eq!(routed["x-trace-id"], TRACE_ID);
    assert_eq!(direct["x-trace-id"], TRACE_ID);
    drop(telemetry);

    let spans = received.spans();
    let by_name = |name: &str| {
        let matching: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(matching.len(), 1, "one {name}: {spans:#?}");
        matching[0]
    };
    let server = by_name("GET /api/users/{id}");
    let load = by_name("load_user");
    let query = by_name("query_user");
    let direct_server = by_name("GET");
    let direct_child = by_name("instrumented_service");
    for span in [server, load, query, direct_server, direct_child] {
        assert_eq!(hex(&span.trace_id), TRACE_ID, "{}", span.name);
    }
    assert_eq!(load.parent_span_id, server.span_id, "started in a poll");
    assert_eq!(query.parent_span_id, load.span_id, "after a suspension");
    assert_eq!(
        direct_child.parent_span_id, direct_server.span_id,
        "started in call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instrumented_spans_in_sampled_out_requests_keep_the_trace_id() {
    let telemetry = Telemetry::new(config(
        TraceExport::NotExported,
        TraceSampler::ParentBasedAlwaysOn,
    ))
    .unwrap();
    for parent in [None, Some(false)] {
        let answers = instrumented_calls(&telemetry, parent).await;
        for (headers, body) in answers {
            let trace_id = headers["x-trace-id"].to_str().unwrap();
            if parent.is_some() {
                assert_eq!(trace_id, TRACE_ID);
            }
            // The handler's span, in a poll or in `call`, is in the request's trace, unsampled:
            // not a new root.
            assert!(
                body.ends_with(&format!("{trace_id} false")),
                "{body} in trace {trace_id}"
            );
        }
    }
}
