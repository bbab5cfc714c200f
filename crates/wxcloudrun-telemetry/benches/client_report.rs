//! What one Mini Program report costs the beacon, called directly (no network, no runtime: the
//! body is in memory, so every future is ready at once).
//!
//! Run with `cargo bench -p wxcloudrun-telemetry --bench client_report`.
//!
//! - `accepted_8_calls`, `accepted_64_calls`: a report of 8 (64) calls whose trace ids the
//!   server remembers, from a different user each time (so no budget runs out): read, parsed,
//!   joined and recorded, answered `204`;
//! - `rate_limited`: a report from a user whose budget is spent, answered `429` unread (but
//!   for the one report the budget grows back every 2 s);
//! - `malformed`: a report that is not JSON, answered `400`.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Service, ServiceBuilder, ServiceExt};
use wxcloudrun_telemetry::{ClientReportService, HttpRoute, WxTelemetryLayer};

/// Trace ids the server has served, so the reports join.
const TRACES: u64 = 64;

fn trace_id(n: u64) -> String {
    format!("0af7651916cd43dd{:016x}", n + 1)
}

/// Sends the requests the reports will name through the layer.
fn serve_known_requests(layer: &WxTelemetryLayer) {
    let mut service =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|_req: Request<_>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                    b"ok",
                ))))
            });
    for n in 0..TRACES {
        let mut request = gateway(HeaderValue::from_static("oUser"))
            .uri("/users/42")
            .header(
                "traceparent",
                format!("00-{}-00f067aa0ba902b7-01", trace_id(n)),
            )
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        request
            .extensions_mut()
            .insert(HttpRoute("/users/{id}".into()));
        let response = service
            .ready()
            .now_or_never()
            .and_then(Result::ok)
            .expect("ready")
            .call(request)
            .now_or_never()
            .expect("answers at once")
            .expect("no error");
        drop(response);
    }
}

fn gateway(openid: HeaderValue) -> http::request::Builder {
    Request::post("/_wxtelemetry/v1/client")
        .header("x-wx-source", HeaderValue::from_static("wx_client"))
        .header("x-wx-appid", HeaderValue::from_static("wx1b2c3d4e5f6a7b8c"))
        .header("x-wx-openid", openid)
        .header("content-type", HeaderValue::from_static("application/json"))
}

/// A report of `calls` calls, as the Mini Program package writes it.
fn report(calls: u64) -> Bytes {
    let calls: Vec<String> = (0..calls)
        .map(|n| {
            format!(
                r#"{{"trace_id":"{}","span_id":"00f067aa0ba902b7","method":"GET","duration_ms":{}.4,"outcome":"{}","status":200,"err_code":{},"server_ms":12.3,"ts":1733000000000}}"#,
                trace_id(n % TRACES),
                80 + n,
                if n % 8 == 7 { "fail" } else { "ok" },
                if n % 8 == 7 { "102002" } else { "null" },
            )
        })
        .collect();
    Bytes::from(format!(
        r#"{{"v":1,"sdk":"wxcloudrun-telemetry-miniprogram/0.1.0","dropped":0,"calls":[{}]}}"#,
        calls.join(",")
    ))
}

fn send(service: &mut ClientReportService, request: Request<Full<Bytes>>) -> StatusCode {
    let response = service
        .call(request)
        .now_or_never()
        .expect("the beacon answers at once")
        .expect("infallible");
    response.status()
}

/// OpenIDs enough that each is evicted from the budget table before it comes round again.
fn users() -> Vec<HeaderValue> {
    (0..20_000)
        .map(|n| HeaderValue::from_str(&format!("oBenchUser{n:08}")).expect("valid"))
        .collect()
}

fn client_report(c: &mut Criterion) {
    let layer = WxTelemetryLayer::builder()
        .service_name("bench")
        .process_metrics(false)
        .client_reports(true)
        .build()
        .expect("valid configuration");
    serve_known_requests(&layer);
    let mut beacon = layer.client_reports();
    let users = users();
    let mut group = c.benchmark_group("client_report");

    for calls in [8, 64] {
        let body = report(calls);
        let mut next = 0;
        group.bench_function(format!("accepted_{calls}_calls"), |b| {
            b.iter(|| {
                let user = users[next % users.len()].clone();
                next += 1;
                let request = gateway(user)
                    .body(Full::new(body.clone()))
                    .expect("a valid request");
                assert_eq!(send(&mut beacon, request), StatusCode::NO_CONTENT);
            })
        });
    }

    let body = report(8);
    let spent = HeaderValue::from_static("oSpentUser");
    while send(
        &mut beacon,
        gateway(spent.clone())
            .body(Full::new(body.clone()))
            .expect("valid"),
    ) != StatusCode::TOO_MANY_REQUESTS
    {}
    // The budget grows back by one report every 2 s: a few of the millions of calls are
    // accepted, so count rather than assert each one.
    let mut limited = 0u64;
    let mut calls = 0u64;
    group.bench_function("rate_limited", |b| {
        b.iter(|| {
            let request = gateway(spent.clone())
                .body(Full::new(body.clone()))
                .expect("a valid request");
            calls += 1;
            limited += u64::from(send(&mut beacon, request) == StatusCode::TOO_MANY_REQUESTS);
        })
    });
    assert!(
        limited * 1000 >= calls * 999,
        "{limited} of {calls} calls were limited"
    );

    let garbage = Bytes::from_static(b"{\"v\":1,\"calls\":[{\"duration_ms\":");
    let mut next = 0;
    group.bench_function("malformed", |b| {
        b.iter(|| {
            let user = users[next % users.len()].clone();
            next += 1;
            let request = gateway(user)
                .body(Full::new(garbage.clone()))
                .expect("a valid request");
            assert_eq!(send(&mut beacon, request), StatusCode::BAD_REQUEST);
        })
    });
    group.finish();
}

criterion_group!(benches, client_report);
criterion_main!(benches);
