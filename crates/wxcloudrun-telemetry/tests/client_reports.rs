//! Client reports from outside: an axum app with the layer and its beacon served over real HTTP
//! on loopback, `Server-Timing` on its answers, and reports honest and hostile sent over raw TCP
//! (so that bodies can be huge, half-sent or chunked), then the registry rendered and counted.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wxcloudrun_telemetry::{
    CLIENT_ERROR_CODES, DEFAULT_CLIENT_REPORT_PATH, OtlpProtocol, Telemetry, TelemetryConfig,
    TraceExport, TraceSampler, TrustMode, WxTelemetryLayer, render,
};

use support::{find, otlp, value};

const BEACON: &str = DEFAULT_CLIENT_REPORT_PATH;
const OPENID: &str = "oSECRET-openid-1234567890";
const CLIENT_DURATION: &str = "wxcloudrun_client_request_duration_seconds";
const OVERHEAD: &str = "wxcloudrun_client_overhead_seconds";
const REPORTS: &str = "wxcloudrun_client_reports_total";

fn layer(reports: bool) -> WxTelemetryLayer {
    WxTelemetryLayer::builder()
        .service_name("orders")
        .process_metrics(false)
        .client_reports(reports)
        .build()
        .unwrap()
}

fn routes() -> Router {
    Router::new()
        .route(
            "/api/users/{id}",
            get(|Path(id): Path<u32>| async move { format!("user {id}") }),
        )
        .route(
            "/api/orders",
            post(|| async { (http::StatusCode::CREATED, "created") }),
        )
}

/// The app with `layer` and its beacon beside it, served on loopback.
async fn serve(layer: &WxTelemetryLayer) -> SocketAddr {
    let app = routes()
        .layer(layer.clone())
        .route_service(BEACON, layer.client_reports());
    serve_router(app).await
}

async fn serve_router(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One HTTP/1.1 exchange as the server sent it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    raw: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The raw answer without its `date` line (the only part that changes by itself).
    fn without_date(&self) -> String {
        String::from_utf8_lossy(&self.raw)
            .lines()
            .filter(|line| !line.to_ascii_lowercase().starts_with("date:"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Sends `head` and `body` (already framed) on a fresh connection and reads until the server
/// closes it, or resets it after answering: what arrived is the reply.
async fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may refuse before reading the body: a failed write is part of the test.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer within 10 s; so far: {raw:?}"),
        }
    }
    parse_reply(raw)
}

fn parse_reply(raw: Vec<u8>) -> Reply {
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
        raw,
    }
}

/// A request head with `connection: close`.
fn head(method: &str, path: &str, headers: &[(&str, String)]) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: orders\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Request headers, name and value.
type Headers = Vec<(&'static str, String)>;

/// The gateway's headers for a call from `openid` of `appid`.
fn gateway(openid: &str, appid: &str) -> Headers {
    vec![
        ("x-wx-source", "wx_client".to_owned()),
        ("x-wx-openid", openid.to_owned()),
        ("x-wx-appid", appid.to_owned()),
        ("x-forwarded-for", "203.0.113.9, 10.8.0.7".to_owned()),
    ]
}

async fn get_with(addr: SocketAddr, path: &str, headers: Headers) -> Reply {
    exchange(addr, &head("GET", path, &headers), b"").await
}

/// POSTs `body` to the beacon with `headers` and a `content-length`.
async fn beacon(addr: SocketAddr, mut headers: Headers, body: &str) -> Reply {
    headers.push(("content-type", "application/json".to_owned()));
    headers.push(("content-length", body.len().to_string()));
    exchange(addr, &head("POST", BEACON, &headers), body.as_bytes()).await
}

fn report(calls: &[String]) -> String {
    format!(
        r#"{{"v":1,"sdk":"wxcloudrun-telemetry-miniprogram/0.1.0","dropped":0,"calls":[{}]}}"#,
        calls.join(",")
    )
}

fn call(trace_id: &str, method: &str, duration_ms: f64, tail: &str) -> String {
    format!(
        r#"{{"trace_id":"{trace_id}","span_id":"00f067aa0ba902b7","method":"{method}","duration_ms":{duration_ms},{tail},"ts":1733000000000}}"#
    )
}

fn ok_call(trace_id: &str, duration_ms: f64, server_ms: f64) -> String {
    call(
        trace_id,
        "GET",
        duration_ms,
        &format!(r#""outcome":"ok","status":200,"err_code":null,"server_ms":{server_ms}"#),
    )
}

fn failed_call(trace_id: &str, err_code: &str) -> String {
    call(
        trace_id,
        "GET",
        80.0,
        &format!(r#""outcome":"fail","status":null,"err_code":{err_code},"server_ms":null"#),
    )
}

fn trace_id(n: u64) -> String {
    format!("{:016x}{:016x}", 0x4bf9_2f35_77b3_4da6u64, n + 1)
}

fn traceparent(trace_id: &str) -> (&'static str, String) {
    ("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
}

/// `app;dur=12.3` → 12.3.
fn server_ms(reply: &Reply) -> f64 {
    let header = reply
        .header("server-timing")
        .expect("a Server-Timing header");
    let dur = header
        .strip_prefix("app;dur=")
        .unwrap_or_else(|| panic!("{header}"));
    let (_, decimals) = dur.split_once('.').expect("one decimal");
    assert_eq!(decimals.len(), 1, "{header}");
    dur.parse().unwrap()
}

fn client_series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| line.starts_with("wxcloudrun_client_"))
        .collect()
}

#[tokio::test]
async fn server_timing_only_when_reports_are_on_and_nothing_else_changes() {
    let bare = serve_router(routes()).await;
    let off_layer = layer(false);
    let off = serve(&off_layer).await;
    let on = serve(&layer(true)).await;
    let request = || gateway(OPENID, "wxAPP1");
    let from_bare = get_with(bare, "/api/users/7", request()).await;
    let from_off = get_with(off, "/api/users/7", request()).await;
    let from_on = get_with(on, "/api/users/7", request()).await;
    // Off: byte for byte what the service says without the layer.
    assert_eq!(from_off.without_date(), from_bare.without_date());
    assert!(from_off.header("server-timing").is_none());
    // On: the same answer plus one header, the service's own time.
    assert!((0.0..1000.0).contains(&server_ms(&from_on)));
    let on_without_timing: Vec<&(String, String)> = from_on
        .headers
        .iter()
        .filter(|(k, _)| k != "server-timing")
        .collect();
    let off_headers: Vec<&(String, String)> = from_off.headers.iter().collect();
    assert_eq!(
        on_without_timing.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        off_headers.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    assert_eq!(from_on.body, from_off.body);
    // Off, the beacon is not there and no client family is registered.
    let refused = beacon(off, request(), &report(&[])).await;
    assert_eq!(refused.status, 404, "{refused:?}");
    assert!(client_series(&render(off_layer.registry())).is_empty());
}

#[tokio::test]
async fn a_report_counts_each_call_under_the_route_the_server_saw() {
    let telemetry = layer(true);
    let addr = serve(&telemetry).await;
    let text = render(telemetry.registry());
    for result in [
        "accepted",
        "untrusted",
        "malformed",
        "rate_limited",
        "too_large",
    ] {
        assert_eq!(
            value(&text, REPORTS, &[("result", result)]),
            0.0,
            "{result}"
        );
    }

    let known = trace_id(1);
    let mut headers = gateway(OPENID, "wxAPP1");
    headers.push(traceparent(&known));
    let answered = get_with(addr, "/api/users/7", headers).await;
    assert_eq!(answered.status, 200);
    let server = server_ms(&answered);
    // A call through the gateway with a POST: remembered with its method.
    let posted = trace_id(2);
    let mut headers = gateway(OPENID, "wxAPP1");
    headers.push(traceparent(&posted));
    headers.push(("content-length", "0".to_owned()));
    let created = exchange(addr, &head("POST", "/api/orders", &headers), b"").await;
    assert_eq!(created.status, 201);

    let calls = [
        ok_call(&known, server + 40.0, server),
        // Never seen by the server: its route is unknown, never a path from the phone.
        ok_call(&trace_id(99), 30.0, 5.0),
        // The right trace id with another method is not the same request.
        call(
            &posted,
            "GET",
            20.0,
            r#""outcome":"http_error","status":502,"err_code":null,"server_ms":3"#,
        ),
        failed_call(&trace_id(100), "-606001"),
        failed_call(&known, "102002"),
    ];
    let accepted = beacon(addr, gateway(OPENID, "wxAPP1"), &report(&calls)).await;
    assert_eq!(accepted.status, 204, "{accepted:?}");
    assert!(accepted.body.is_empty());

    let text = render(telemetry.registry());
    let count = |labels: &[(&str, &str)]| value(&text, &format!("{CLIENT_DURATION}_count"), labels);
    let route = "/api/users/{id}";
    let common = [("wx_service", "orders"), ("wx_appid", "wxAPP1")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut labels = common.to_vec();
        labels.extend_from_slice(extra);
        labels
    };
    assert_eq!(
        count(&with(&[
            ("http_route", route),
            ("outcome", "ok"),
            ("wx_err_code", "")
        ])),
        1.0
    );
    assert_eq!(
        count(&with(&[("http_route", "unknown"), ("outcome", "ok")])),
        1.0
    );
    assert_eq!(
        count(&with(&[
            ("http_route", "unknown"),
            ("outcome", "http_error")
        ])),
        1.0
    );
    assert_eq!(
        count(&with(&[
            ("http_route", "unknown"),
            ("wx_err_code", "-606001")
        ])),
        1.0
    );
    assert_eq!(
        count(&with(&[
            ("http_route", route),
            ("outcome", "fail"),
            ("wx_err_code", "102002")
        ])),
        1.0
    );
    // Overhead: only for calls that reached the service, by the access node of the joined
    // request (the last X-Forwarded-For hop), else unknown.
    let node = |n: &'static str| {
        let mut labels = common.to_vec();
        labels.push(("wx_access_node", n));
        labels
    };
    assert_eq!(
        value(&text, &format!("{OVERHEAD}_count"), &node("10.8.0.7")),
        1.0
    );
    let sum = value(&text, &format!("{OVERHEAD}_sum"), &node("10.8.0.7"));
    assert!((sum - 0.040).abs() < 1e-6, "{sum}");
    assert_eq!(
        value(&text, &format!("{OVERHEAD}_count"), &node("unknown")),
        2.0
    );
    assert_eq!(value(&text, REPORTS, &[("result", "accepted")]), 1.0);
    assert_eq!(
        value(
            &text,
            "wxcloudrun_client_dropped_calls_total",
            &[("wx_service", "orders")]
        ),
        0.0
    );
    assert!(!text.contains(OPENID));
}

#[tokio::test]
async fn hostile_beacons_are_refused_counted_and_the_service_keeps_answering() {
    let telemetry = layer(true);
    let addr = serve(&telemetry).await;
    let trusted = || gateway(OPENID, "wxAPP1");

    // 1 MB announced: refused before a byte of it is sent.
    let mut headers = trusted();
    headers.push(("content-length", (1024 * 1024).to_string()));
    let announced = exchange(addr, &head("POST", BEACON, &headers), b"").await;
    assert_eq!(announced.status, 413, "{announced:?}");
    assert!(announced.body.contains("too large"), "{announced:?}");

    // 1 MB chunked (no length announced): refused after 16 KiB, without reading the rest: only
    // the first 20 KiB are ever sent.
    let mut headers = trusted();
    headers.push(("transfer-encoding", "chunked".to_owned()));
    let chunk = format!("1000\r\n{}\r\n", "x".repeat(0x1000));
    let partial = chunk.repeat(5);
    let chunked = exchange(addr, &head("POST", BEACON, &headers), partial.as_bytes()).await;
    assert_eq!(chunked.status, 413, "{chunked:?}");

    let refusals: Vec<(u16, &str, Headers, String)> = vec![
        (400, "not valid JSON", trusted(), "{\"v\":1,".to_owned()),
        (400, "not valid JSON", trusted(), "\u{1f4a9}".to_owned()),
        (
            400,
            "version",
            trusted(),
            r#"{"v":2,"calls":[]}"#.to_owned(),
        ),
        (
            400,
            "wrong type",
            trusted(),
            report(&[call(&trace_id(1), "GET", 1.0, r#""outcome":"ok""#)
                .replace("\"duration_ms\":1", "\"duration_ms\":\"1\"")]),
        ),
        (
            400,
            "not valid JSON",
            trusted(),
            report(&[call(&trace_id(1), "GET", 1.0, r#""outcome":"ok""#)
                .replace("\"duration_ms\":1", "\"duration_ms\":1e309")]),
        ),
        (
            400,
            "wrong type",
            trusted(),
            report(&[call(&trace_id(1), "GET", 1.0, r#""outcome":"lost""#)]),
        ),
        (
            413,
            "64 calls",
            trusted(),
            report(&vec![ok_call(&trace_id(1), 1.0, 1.0); 65]),
        ),
        (
            403,
            "untrusted",
            vec![
                ("x-wx-openid", OPENID.to_owned()),
                ("x-wx-appid", "wxAPP1".to_owned()),
            ],
            report(&[]),
        ),
    ];
    for (status, reason, headers, body) in refusals {
        let reply = beacon(addr, headers, &body).await;
        assert_eq!(reply.status, status, "{body:.80}: {reply:?}");
        assert!(reply.body.contains(reason), "{body:.80}: {reply:?}");
        assert!(reply.body.len() < 120, "a short reason: {reply:?}");
    }
    let get = exchange(addr, &head("GET", BEACON, &trusted()), b"").await;
    assert_eq!((get.status, get.header("allow")), (405, Some("POST")));

    // Negative and huge durations are clamped, not refused.
    let clamped = [
        ok_call(&trace_id(7), -1e9, -5.0),
        ok_call(&trace_id(8), 1e300, 1e300),
    ];
    let reply = beacon(addr, trusted(), &report(&clamped)).await;
    assert_eq!(reply.status, 204, "{reply:?}");

    let text = render(telemetry.registry());
    let counted = |result| value(&text, REPORTS, &[("result", result)]);
    assert_eq!(counted("too_large"), 3.0);
    assert_eq!(counted("malformed"), 7.0);
    assert_eq!(counted("untrusted"), 1.0);
    assert_eq!(counted("accepted"), 1.0);
    let unknown = [("http_route", "unknown"), ("outcome", "ok")];
    let bucket = |le| {
        let mut labels = unknown.to_vec();
        labels.push(("le", le));
        value(&text, &format!("{CLIENT_DURATION}_bucket"), &labels)
    };
    assert_eq!(bucket("0.005"), 1.0, "the negative duration counts as 0");
    assert_eq!(
        bucket("30"),
        1.0,
        "the huge one is past every bound but +Inf"
    );
    let sum = value(&text, &format!("{CLIENT_DURATION}_sum"), &unknown);
    assert_eq!(sum, 60.0, "clamped to 60 s");

    let still = get_with(addr, "/api/users/1", trusted()).await;
    assert_eq!(still.status, 200);
}

#[tokio::test]
async fn ten_thousand_disguised_routes_and_codes_leave_the_series_bounded() {
    let telemetry = layer(true);
    let addr = serve(&telemetry).await;
    // A few real requests the reports may name.
    for n in 0..3 {
        let mut headers = gateway(OPENID, "wxAPP1");
        headers.push(traceparent(&trace_id(n)));
        assert_eq!(
            get_with(addr, &format!("/api/users/{n}"), headers)
                .await
                .status,
            200
        );
    }
    let mut sent = 0u64;
    let mut report_no = 0u64;
    while sent < 10_000 {
        // A different user and app for each report: no budget runs out, the AppID cap does.
        let openid = format!("{OPENID}-{report_no}");
        let appid = format!("wxFORGED{report_no:05}");
        let calls: Vec<String> = (0..64)
            .map(|i| {
                let n = sent + i;
                // Routes in disguise: paths, ids and templates in fields the protocol does not
                // have, and in the method; error codes of every kind.
                let method = if n % 2 == 0 {
                    "GET".to_owned()
                } else {
                    format!("GET /api/users/{n}")
                };
                let err_code = match n % 4 {
                    0 => "null".to_owned(),
                    1 => "-606001".to_owned(),
                    _ => format!("{}", -(n as i64) * 7 - 1),
                };
                format!(
                    r#"{{"trace_id":"{}","method":"{method}","http_route":"/api/users/{n}","path":"/x/{n}","duration_ms":{},"outcome":"{}","err_code":{err_code},"server_ms":{}}}"#,
                    trace_id(n % 5),
                    n % 3000,
                    ["ok", "http_error", "fail"][(n % 3) as usize],
                    n % 100
                )
            })
            .collect();
        let reply = beacon(addr, gateway(&openid, &appid), &report(&calls)).await;
        assert_eq!(reply.status, 204, "{reply:?}");
        sent += 64;
        report_no += 1;
    }
    let text = render(telemetry.registry());
    let series = client_series(&text);
    let durations = find(&text, &format!("{CLIENT_DURATION}_count"), &[]);
    let distinct = |label: &str| -> BTreeSet<String> {
        durations
            .iter()
            .filter_map(|s| s.label(label).map(str::to_owned))
            .collect()
    };
    // Only the server's own route (for its trace ids, with its method) or `unknown`: a method
    // with a path in it is not the server's GET, and no other field names a route.
    assert_eq!(
        distinct("http_route"),
        BTreeSet::from(["/api/users/{id}".to_owned(), "unknown".to_owned()])
    );
    let codes = distinct("wx_err_code");
    let allowed: BTreeSet<String> = CLIENT_ERROR_CODES
        .iter()
        .map(i64::to_string)
        .chain(["".to_owned(), "_other".to_owned()])
        .collect();
    assert!(codes.is_subset(&allowed), "{codes:?}");
    assert_eq!(
        codes,
        BTreeSet::from(["".to_owned(), "-606001".to_owned(), "_other".to_owned()])
    );
    // The AppID cap (32, one taken by the server's wxAPP1) holds: 31 forged AppIDs keep their
    // name, the rest is _other, counted call by call as an overflow of the client histogram.
    let appids = distinct("wx_appid");
    assert_eq!(appids.len(), 32, "{appids:?}");
    assert!(appids.contains("_other") && !appids.contains("wxFORGED00031"));
    let overflow = value(
        &text,
        "wxcloudrun_label_overflow_total",
        &[("metric", CLIENT_DURATION), ("label", "wx_appid")],
    );
    assert_eq!(overflow, ((report_no - 31) * 64) as f64);
    // 33 AppIDs × 3 outcomes × 18 codes at most; far fewer in fact, whatever was sent.
    assert!(durations.len() <= 33 * 3 * 18, "{}", durations.len());
    assert!(
        series.len() < 20 * 33 * 3 * 18,
        "{} client series",
        series.len()
    );
    assert!(!text.contains("wxFORGED00100") && !text.contains("/x/"));
    assert!(!text.contains(OPENID), "no OpenID in any metric");
    assert_eq!(
        get_with(addr, "/api/users/1", gateway(OPENID, "wxAPP1"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_flood_from_one_openid_is_rate_limited_and_others_still_report() {
    let telemetry = layer(true);
    let addr = serve(&telemetry).await;
    let body = report(&[ok_call(&trace_id(1), 10.0, 1.0)]);
    let mut statuses = Vec::new();
    for _ in 0..100 {
        let reply = beacon(addr, gateway(OPENID, "wxAPP1"), &body).await;
        if reply.status == 429 {
            let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=2).contains(&retry), "{reply:?}");
        }
        statuses.push(reply.status);
    }
    let accepted = statuses.iter().filter(|s| **s == 204).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    // A burst of 20, then one every 2 s: the loop takes well under a few seconds.
    assert!((20..=23).contains(&accepted), "{statuses:?}");
    assert_eq!(accepted + limited, 100, "{statuses:?}");
    let other = beacon(addr, gateway("oSomeoneElse", "wxAPP1"), &body).await;
    assert_eq!(other.status, 204);
    let text = render(telemetry.registry());
    assert_eq!(
        value(&text, REPORTS, &[("result", "rate_limited")]),
        limited as f64
    );
    assert_eq!(
        get_with(addr, "/api/users/1", gateway(OPENID, "wxAPP1"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn strip_mode_trusts_no_beacon_and_the_beacon_also_works_behind_the_layer() {
    let strip = WxTelemetryLayer::builder()
        .trust(TrustMode::Strip)
        .client_reports(true)
        .process_metrics(false)
        .build()
        .unwrap();
    let addr = serve(&strip).await;
    let reply = beacon(addr, gateway(OPENID, "wxAPP1"), &report(&[])).await;
    assert_eq!(reply.status, 403, "{reply:?}");

    // Mounted behind the layer: the context comes from the layer, and the beacon's own calls
    // are requests of the service.
    let telemetry = layer(true);
    let app = routes()
        .route_service(BEACON, telemetry.client_reports())
        .layer(telemetry.clone());
    let addr = serve_router(app).await;
    let reply = beacon(
        addr,
        gateway(OPENID, "wxAPP1"),
        &report(&[ok_call(&trace_id(3), 5.0, 1.0)]),
    )
    .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    let text = render(telemetry.registry());
    assert_eq!(
        value(
            &text,
            "http_server_request_duration_seconds_count",
            &[("http_route", BEACON), ("http_response_status_code", "204")]
        ),
        1.0
    );
    assert_eq!(value(&text, REPORTS, &[("result", "accepted")]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_span_continues_the_clients_span_and_its_trace_id_joins_the_report() {
    let (endpoint, received) = otlp::http_receiver().await;
    let mut config = TelemetryConfig::from_lookup(|_| None);
    config.service_name = "orders".to_owned();
    config.export = TraceExport::Otlp {
        endpoint,
        protocol: OtlpProtocol::HttpProtobuf,
    };
    config.sampler = TraceSampler::ParentBasedAlwaysOn;
    let telemetry = Telemetry::new(config).unwrap();
    let layer = telemetry
        .layer()
        .client_reports(true)
        .process_metrics(false)
        .build()
        .unwrap();
    let addr = serve(&layer).await;

    // What the Mini Program package sends: a traceparent naming its own span.
    let client_trace = "0af7651916cd43dd8448eb211c80319c";
    let client_span = "b7ad6b7169203331";
    let mut headers = gateway(OPENID, "wxAPP1");
    headers.push(("traceparent", format!("00-{client_trace}-{client_span}-01")));
    let answered = get_with(addr, "/api/users/7", headers).await;
    assert_eq!(answered.status, 200);
    assert_eq!(answered.header("x-trace-id"), Some(client_trace));
    let server = server_ms(&answered);
    let reply = beacon(
        addr,
        gateway(OPENID, "wxAPP1"),
        &report(&[ok_call(client_trace, server + 25.0, server)]),
    )
    .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    drop(telemetry);

    let spans = received.spans();
    let [span] = spans.as_slice() else {
        panic!("one server span expected (the beacon is beside the layer): {spans:?}")
    };
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    assert_eq!(hex(&span.trace_id), client_trace);
    assert_eq!(hex(&span.parent_span_id), client_span);
    assert_eq!(span.name, "GET /api/users/{id}");
    let raw = received.raw();
    assert!(
        !raw.windows(OPENID.len()).any(|w| w == OPENID.as_bytes()),
        "the OpenID left the process in a span"
    );
    let text = render(layer.registry());
    assert_eq!(
        value(
            &text,
            &format!("{CLIENT_DURATION}_count"),
            &[("http_route", "/api/users/{id}"), ("outcome", "ok")]
        ),
        1.0
    );
    assert!(!text.contains(OPENID));
}
