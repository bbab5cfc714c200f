//! The Mini Program package end to end: Node runs the package (`miniprogram/index.js`) over a fake
//! `wx.cloud` whose `callContainer` plays the WeChat gateway and makes real HTTP requests to the
//! quickstart service (`tests/node/gateway-client.js`). The service's `/metrics` must then hold
//! the client metrics of those calls, routes joined by trace id, the failures the service never
//! saw included, and every server span must be the child of the client span the package started.
//!
//! Without `node` the test is skipped loudly, except under CI (`CI=true`), where it fails.

use std::io::Write;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::Value;
use wxcloudrun_telemetry::{DEFAULT_CLIENT_REPORT_PATH, WxTelemetryLayer};
use wxcloudrun_telemetry_tests::prometheus::http_get;
use wxcloudrun_telemetry_tests::{repo_root, require_tool};

/// The driver makes eight calls and one beacon; a hung run fails instead of hanging `cargo test`.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);
/// What the driver sends as the caller's OpenID: it must reach no metric.
const OPENID: &str = "oE2E-openid-must-never-leave-the-phone";

/// Sums the samples of `name` whose labels include every `(label, value)` of `matching`.
fn sum(text: &str, name: &str, matching: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = rest.strip_prefix('{')?.rsplit_once("} ")?;
            matching
                .iter()
                .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// `00-<trace id>-<span id>-<flags>` → (trace id, span id), lowercase hex checked.
fn parse_traceparent(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(
        parts.len() == 4 && parts[0] == "00" && hex(parts[1], 32) && hex(parts[2], 16),
        "not a W3C traceparent: {value:?}"
    );
    assert!(parts[3] == "01" || parts[3] == "00", "flags of {value:?}");
    (parts[1].to_owned(), parts[2].to_owned())
}

async fn run_driver(node: &std::path::Path, base: &str) -> Value {
    let script = repo_root().join("tests/node/gateway-client.js");
    let child = tokio::process::Command::new(node)
        .arg(&script)
        .arg(base)
        .env_remove("NODE_OPTIONS")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(NODE_TIMEOUT, child)
        .await
        .unwrap_or_else(|_| panic!("{} did not finish in {NODE_TIMEOUT:?}", script.display()))
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the driver failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("driver output is not JSON ({e}): {stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_reports_through_the_gateway_and_joins_the_server_trace() {
    let Some(node) = require_tool("node") else {
        return;
    };
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let telemetry = WxTelemetryLayer::builder()
        .service_name("quickstart")
        .client_reports(true)
        .tracer(provider.tracer("miniprogram-e2e"))
        .build()
        .expect("valid layer");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move {
        axum::serve(listener, example_quickstart::app_with(&telemetry)).await
    });
    let base = format!("http://{addr}");

    let report = run_driver(&node, &base).await;
    let _ = writeln!(std::io::stderr(), "driver: {report}");

    // The caller saw callContainer's own results, unchanged by the package.
    let outcomes = report["outcomes"].as_array().expect("outcomes");
    let outcome = |name: &str| {
        outcomes
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("no outcome {name}: {report}"))
    };
    for name in ["user 7", "user 8", "user 9", "user 10 (callbacks)"] {
        assert_eq!(outcome(name)["statusCode"], 200, "{report}");
    }
    assert_eq!(outcome("order")["statusCode"], 201, "{report}");
    assert_eq!(outcome("oversized order")["errCode"], -606001, "{report}");
    assert_eq!(outcome("cold start timeout")["errCode"], 102002, "{report}");
    assert_eq!(report["flush"]["status"], "sent", "{report}");
    assert_eq!(report["flush"]["sent"], 7, "every call reported: {report}");
    assert_eq!(report["stats"]["internalErrors"], 0, "{report}");

    // Every call the service saw carried the package's traceparent, and its server span is the
    // child of that client span.
    let forwarded: Vec<(String, String, String)> = report["forwarded"]
        .as_array()
        .expect("forwarded")
        .iter()
        .filter(|f| f["path"] != DEFAULT_CLIENT_REPORT_PATH)
        .map(|f| {
            let path = f["path"].as_str().expect("path").to_owned();
            let tp = f["traceparent"]
                .as_str()
                .unwrap_or_else(|| panic!("{path} was sent without a traceparent"));
            let (trace, span) = parse_traceparent(tp);
            (path, trace, span)
        })
        .collect();
    assert_eq!(
        forwarded.len(),
        6,
        "oversized never left the phone: {report}"
    );
    provider.force_flush().expect("flush spans");
    let spans = exporter.get_finished_spans().expect("finished spans");
    for (path, trace, parent) in forwarded
        .iter()
        .filter(|(p, ..)| !p.starts_with("/api/slow"))
    {
        let span = spans
            .iter()
            .find(|s| s.span_context.trace_id().to_string() == *trace)
            .unwrap_or_else(|| panic!("no server span in trace {trace} ({path}): {spans:#?}"));
        assert_eq!(
            span.parent_span_id.to_string(),
            *parent,
            "{path}: the server span's parent is the client span"
        );
    }

    // The client metrics, as the service's /metrics shows them.
    let (status, metrics) = http_get(addr, "/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200, "{metrics}");
    let duration = "wxcloudrun_client_request_duration_seconds_count";
    let users = [
        ("http_route", "/api/users/{id}"),
        ("wx_service", "quickstart"),
        ("outcome", "ok"),
    ];
    assert_eq!(sum(&metrics, duration, &users), 4.0, "{metrics}");
    let order = [("http_route", "/api/orders"), ("outcome", "ok")];
    assert_eq!(sum(&metrics, duration, &order), 1.0, "{metrics}");
    for code in ["-606001", "102002"] {
        let failed = [("outcome", "fail"), ("wx_err_code", code)];
        assert_eq!(sum(&metrics, duration, &failed), 1.0, "{code}: {metrics}");
    }
    let accepted = [("result", "accepted")];
    assert_eq!(
        sum(&metrics, "wxcloudrun_client_reports_total", &accepted),
        1.0,
        "{metrics}"
    );
    // Overhead exists only for calls the service answered with Server-Timing.
    let overhead = [("wx_service", "quickstart")];
    assert_eq!(
        sum(
            &metrics,
            "wxcloudrun_client_overhead_seconds_count",
            &overhead
        ),
        5.0,
        "{metrics}"
    );
    assert!(!metrics.contains(OPENID), "the OpenID reached /metrics");
    assert!(
        !metrics.contains(DEFAULT_CLIENT_REPORT_PATH),
        "the beacon is not a request of the service: {metrics}"
    );

    server.abort();
    let _ = provider.shutdown();
}
