//! Remote write 1.0 against a real Prometheus (`--web.enable-remote-write-receiver`): every
//! series kind arrives under the names, labels and values a direct scrape would store, and a
//! stale marker ends a series.
//!
//! Without a `prometheus` binary the test prints `SKIPPED: prometheus not found` and passes,
//! unless `CI=true`, where it fails.

mod support_export;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support_export::*;
use tokio::time::Instant;
use wxcloudrun_sidecar::export::FlushOutcome;
use wxcloudrun_sidecar::metrics::SelfMetrics;
use wxcloudrun_sidecar::model::{Batch, Kind, stale_nan};
use wxcloudrun_telemetry_tests::prometheus::{Prometheus, encode};
use wxcloudrun_telemetry_tests::require_tool;

/// An instant query at `at_ms`: each series' labels (with `__name__`) and value as text.
async fn query_at(
    prometheus: &Prometheus,
    query: &str,
    at_ms: i64,
) -> BTreeMap<BTreeMap<String, String>, String> {
    let time = format!("{:.3}", at_ms as f64 / 1000.0);
    let (status, response) = prometheus
        .get(&format!(
            "/api/v1/query?query={}&time={time}",
            encode(query)
        ))
        .await
        .unwrap();
    assert_eq!(
        (status, &response["status"]),
        (200, &serde_json::json!("success")),
        "{response}"
    );
    response["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|series| {
            let labels = series["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            (labels, series["value"][1].as_str().unwrap().to_owned())
        })
        .collect()
}

fn series(name: &str, pairs: &[(&str, &str)], value: &str) -> (BTreeMap<String, String>, String) {
    let mut labels: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.insert("__name__".to_owned(), name.to_owned());
    (labels, value.to_owned())
}

#[tokio::test]
async fn remote_write_lands_in_prometheus_like_a_scrape() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let prometheus = Prometheus::start(
        &binary,
        |_, _| "global:\n  scrape_interval: 1m\n".to_owned(),
        &["--web.enable-remote-write-receiver"],
    );
    prometheus
        .wait_ready(Instant::now().into_std() + Duration::from_secs(60))
        .await
        .unwrap();

    // Recent timestamps: the head block accepts them and a 5 m lookback sees them.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t1 = now_ms - 20_000;
    let t2 = t1 + 10_000;
    let host = [("instance", "host-1"), ("wx_env", "prod-1a2b")];
    let tricky = "say \"hi\" \\ 你好\nnext line";
    let first = Batch {
        timestamp_ms: t1,
        families: vec![
            number(
                Kind::Counter,
                "rwtest_requests_total",
                7.0,
                &[host[0], host[1], ("note", tricky), ("route", "/pay")],
            ),
            number(Kind::Gauge, "rwtest_temperature", -21.5, &host),
            number(Kind::Gauge, "rwtest_nan", f64::NAN, &host),
            number(Kind::Gauge, "rwtest_gone", 1.0, &host),
            histogram(
                "rwtest_latency_seconds",
                &[
                    (0.005, 1.0),
                    (0.1, 3.0),
                    (1.0, 7.0),
                    (2.5, 8.0),
                    (f64::INFINITY, 10.0),
                ],
                3.25,
                10.0,
                &host,
            ),
            summary(
                "rwtest_rpc_seconds",
                &[(0.5, 0.2), (0.99, 0.9)],
                5.0,
                20.0,
                &host,
            ),
        ],
    };
    // The next scrape: `rwtest_gone` disappeared, so it gets a stale marker.
    let second = Batch {
        timestamp_ms: t2,
        families: vec![
            number(Kind::Gauge, "rwtest_temperature", -20.0, &host),
            number(Kind::Gauge, "rwtest_gone", stale_nan(), &host),
        ],
    };

    let metrics = SelfMetrics::new();
    let url = format!("http://{}/api/v1/write", prometheus.addr());
    let exporters = start(&remote_write_config(&[url], QUEUE), &metrics);
    exporters.submit(Arc::new(first));
    exporters.submit(Arc::new(second));
    let deadline = Instant::now() + Duration::from_secs(20);
    assert_eq!(exporters.flush(deadline).await, FlushOutcome::Success);
    let stats = stats(&metrics, "remote_write", QUEUE);
    assert_eq!((stats.success, stats.dropped, stats.failed), (2, 0, 0));

    let bucket = |le| {
        series(
            "rwtest_latency_seconds_bucket",
            &[host[0], host[1], ("le", le)],
            "",
        )
        .0
    };
    let mut expected: BTreeMap<_, _> = [
        series(
            "rwtest_requests_total",
            &[host[0], host[1], ("note", tricky), ("route", "/pay")],
            "7",
        ),
        series("rwtest_temperature", &host, "-21.5"),
        series("rwtest_nan", &host, "NaN"),
        series("rwtest_gone", &host, "1"),
        (bucket("0.005"), "1".to_owned()),
        (bucket("0.1"), "3".to_owned()),
        (bucket("1.0"), "7".to_owned()),
        (bucket("2.5"), "8".to_owned()),
        (bucket("+Inf"), "10".to_owned()),
        series("rwtest_latency_seconds_sum", &host, "3.25"),
        series("rwtest_latency_seconds_count", &host, "10"),
        series(
            "rwtest_rpc_seconds",
            &[host[0], host[1], ("quantile", "0.5")],
            "0.2",
        ),
        series(
            "rwtest_rpc_seconds",
            &[host[0], host[1], ("quantile", "0.99")],
            "0.9",
        ),
        series("rwtest_rpc_seconds_sum", &host, "5"),
        series("rwtest_rpc_seconds_count", &host, "20"),
    ]
    .into_iter()
    .collect();
    let query = r#"{__name__=~"rwtest_.+"}"#;
    assert_eq!(query_at(&prometheus, query, t1 + 1_000).await, expected);

    // After the stale marker the series is gone from instant queries; the rest stays (lookback).
    expected.remove(&series("rwtest_gone", &host, "").0);
    let temperature = series("rwtest_temperature", &host, "").0;
    expected.insert(temperature, "-20".to_owned());
    assert_eq!(query_at(&prometheus, query, t2 + 1_000).await, expected);
}
