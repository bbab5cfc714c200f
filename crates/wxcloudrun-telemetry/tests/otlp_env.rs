//! `init()`'s trace exporter configured only through the standard `OTEL_EXPORTER_OTLP_*`
//! variables (fed through `TelemetryConfig::from_lookup`, so tests running in parallel threads
//! do not share the process environment): a CA file, a client certificate and key for a
//! receiver that requires them, an `Authorization` header and gzip, over HTTPS and gRPC/TLS.

mod support;

use std::collections::HashMap;
use std::path::Path;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use support::otlp::{self, Received, SeenHeaders, attr};
use support::pki::Pki;
use tower::ServiceExt;
use wxcloudrun_telemetry::{InitError, Telemetry, TelemetryConfig, TraceExport};

/// `user:pass`.
const BASIC: &str = "Basic dXNlcjpwYXNz";

fn lookup(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<&'static str, String> = pairs.into_iter().collect();
    move |key| map.get(key).cloned()
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// The variables for `endpoint`, TLS from `pki` (client certificate optional), our header,
/// gzip and resource attributes.
fn variables(
    pki: &Pki,
    protocol: &str,
    endpoint: &str,
    client_cert: bool,
) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca_file())),
        // Signal-specific over generic, and percent-decoded.
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Basic%20wrong,x-tenant=acme".to_owned(),
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "authorization=Basic%20dXNlcjpwYXNz".to_owned(),
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip".to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "4000".to_owned()),
        ("OTEL_SERVICE_NAME", "orders".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=test%2D1".to_owned(),
        ),
        ("HOSTNAME", "orders-7d9f-abcde".to_owned()),
    ];
    if client_cert {
        vars.push((
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            path(&pki.client_cert_file()),
        ));
        vars.push((
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            path(&pki.client_key_file()),
        ));
    }
    vars
}

/// Three requests through the layer, then the guard dropped (which flushes).
async fn traffic(telemetry: Telemetry) {
    let router = Router::new()
        .route("/api/ping", get(|| async { "pong" }))
        .layer(telemetry.layer().build().unwrap());
    for _ in 0..3 {
        let response = router
            .clone()
            .oneshot(Request::get("/api/ping").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let _ = response.into_body().collect().await;
    }
    drop(telemetry);
}

fn assert_arrived(received: &Received, heads: &SeenHeaders, encoding_header: &str) {
    let spans = received.spans();
    assert_eq!(spans.len(), 3, "{spans:#?}");
    assert!(spans.iter().all(|s| s.name == "GET /api/ping"));
    let resource = received.resource();
    assert_eq!(attr(&resource, "service.name").as_deref(), Some("orders"));
    assert_eq!(
        attr(&resource, "deployment.environment").as_deref(),
        Some("test-1")
    );
    assert_eq!(
        attr(&resource, "host.name").as_deref(),
        Some("orders-7d9f-abcde")
    );
    let heads = heads.lock().unwrap();
    assert!(!heads.is_empty());
    for head in heads.iter() {
        assert_eq!(head["authorization"], BASIC, "{head:?}");
        assert_eq!(head["x-tenant"], "acme");
        assert_eq!(head[encoding_header], "gzip", "{head:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_client_certificate_a_header_and_gzip() {
    let pki = Pki::new();
    let (base, received, heads) = otlp::https_receiver(
        pki.server_config_requiring_client_certs(&[b"http/1.1"]),
        BASIC,
    )
    .await;
    let config =
        TelemetryConfig::from_lookup(lookup(variables(&pki, "http/protobuf", &base, true)));
    assert!(
        config.errors.is_empty() && config.warnings.is_empty(),
        "{config:?}"
    );
    assert_eq!(
        config.export,
        TraceExport::Otlp {
            endpoint: format!("{base}/v1/traces"),
            protocol: wxcloudrun_telemetry::OtlpProtocol::HttpProtobuf,
        }
    );
    traffic(Telemetry::new(config).unwrap()).await;
    assert_arrived(&received, &heads, "content-encoding");
    // The body really was gzip: the receiver decoded it (a plain body would not have had the
    // header), and the protobuf content type is the exporter's own.
    assert_eq!(
        heads.lock().unwrap()[0]["content-type"],
        "application/x-protobuf"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_without_the_client_certificate_exports_nothing() {
    let pki = Pki::new();
    let (base, received, heads) = otlp::https_receiver(
        pki.server_config_requiring_client_certs(&[b"http/1.1"]),
        BASIC,
    )
    .await;
    let config =
        TelemetryConfig::from_lookup(lookup(variables(&pki, "http/protobuf", &base, false)));
    traffic(Telemetry::new(config).unwrap()).await;
    assert!(received.spans().is_empty());
    assert!(heads.lock().unwrap().is_empty(), "no request got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_with_a_client_certificate_a_header_and_gzip() {
    let pki = Pki::new();
    let (endpoint, received, heads) =
        otlp::grpc_tls_receiver(pki.server_config_requiring_client_certs(&[b"h2"])).await;
    let config = TelemetryConfig::from_lookup(lookup(variables(&pki, "grpc", &endpoint, true)));
    assert!(
        config.errors.is_empty() && config.warnings.is_empty(),
        "{config:?}"
    );
    traffic(Telemetry::new(config).unwrap()).await;
    assert_arrived(&received, &heads, "grpc-encoding");
}

#[tokio::test]
async fn bad_tls_files_fail_start_up_naming_the_file() {
    let pki = Pki::new();
    let mut vars = variables(&pki, "http/protobuf", "https://127.0.0.1:9", true);
    // The CA file given as the client certificate's key.
    vars.push(("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", path(&pki.ca_file())));
    let err = Telemetry::new(TelemetryConfig::from_lookup(lookup(vars))).unwrap_err();
    assert!(matches!(err, InitError::Tls(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("tls_config.key_file {}", pki.ca_file().display()))
            && message.contains("no private key")
            && message.contains("CLIENT_KEY"),
        "{message}"
    );

    let mut vars = variables(&pki, "grpc", "https://127.0.0.1:9", false);
    vars.retain(|(key, _)| *key != "OTEL_EXPORTER_OTLP_CERTIFICATE");
    vars.push((
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "/nonexistent/ca.pem".to_owned(),
    ));
    let err = Telemetry::new(TelemetryConfig::from_lookup(lookup(vars))).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/ca.pem: cannot read"),
        "{err}"
    );
}

#[test]
fn values_that_cannot_be_honoured_stop_start_up() {
    let config = TelemetryConfig::from_lookup(lookup(vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318".to_owned(),
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd".to_owned()),
    ]));
    let err = Telemetry::new(config).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"cannot honour the telemetry settings: OTEL_EXPORTER_OTLP_TRACES_COMPRESSION="zstd": not supported (gzip, none)"#
    );
}

#[test]
fn debug_of_the_config_hides_header_values() {
    let config = TelemetryConfig::from_lookup(lookup(vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector.example:4318".to_owned(),
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Bearer%20sekrit,x-api-key=k2".to_owned(),
        ),
    ]));
    let debug = format!("{config:?}");
    assert!(!debug.contains("sekrit"), "{debug}");
    assert!(!debug.contains("k2"), "{debug}");
    // The names are there, and the values are what the exporter sends.
    assert!(
        debug.contains("Authorization") && debug.contains("x-api-key"),
        "{debug}"
    );
    assert_eq!(config.otlp_headers[0].1.expose(), "Bearer sekrit");
    assert_eq!(config.otlp_headers[1].1.expose(), "k2");
}
