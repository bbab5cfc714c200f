//! End to end: a real Prometheus, started here on loopback, scrapes the quickstart service under
//! simulated callContainer traffic with the project's rules loaded. Every rule must be healthy,
//! and every dashboard query, with Grafana's macros and variables substituted, must succeed and
//! return data. Queries on the sidecar's self-metrics only need to succeed here: this test runs no
//! sidecar (the sidecar crate's `e2e_dashboard` test requires data for each of them).
//!
//! Without a `prometheus` binary the test is skipped loudly, except under CI, where it fails.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use wxcloudrun_telemetry::WxTelemetryLayer;
use wxcloudrun_telemetry_tests::dashboards::{self, Query, macros, substitute};
use wxcloudrun_telemetry_tests::prometheus::{Prometheus, encode, wait_for};
use wxcloudrun_telemetry_tests::{promql, require_tool, rules};

/// Grafana computes `$__rate_interval` as at least four scrape intervals; with 1 s scrapes, 10 s
/// keeps several samples in every window while the test runs.
const RATE_INTERVAL: &str = "10s";
/// Longer than the whole test, so "over the range" panels see all of it.
const RANGE: &str = "10m";
/// How long Prometheus gets to scrape, evaluate and have every panel filled.
const CONVERGE: Duration = Duration::from_secs(120);

/// Scrapes `target` every second, with the rule files copied and their group intervals set to
/// 1 s, so recordings exist within seconds.
fn quickstart_config(dir: &Path, target: SocketAddr) -> String {
    let rule_paths: Vec<String> = rules::fast_copies(dir)
        .iter()
        .map(|path| format!("  - {}", path.display()))
        .collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
         rule_files:\n{}\n\
         scrape_configs:\n  - job_name: quickstart\n    static_configs:\n      - targets: ['{target}']\n",
        rule_paths.join("\n")
    )
}

/// Why a query may legitimately come back empty in this test; `None` when it must have data.
fn no_data_expected(query: &Query) -> Option<&'static str> {
    let names = promql::metric_names(&query.expr).unwrap_or_default();
    names
        .iter()
        .any(|name| name.starts_with("wxcloudrun_sidecar_"))
        .then_some(
            "sidecar self-metric: verified by crates/wxcloudrun-sidecar/tests/e2e_dashboard.rs",
        )
}

/// Outcome of one dashboard query.
enum Outcome {
    Data(usize),
    Empty,
    Error(String),
}

async fn run_query(prometheus: &Prometheus, query: &Query, expr: &str) -> Outcome {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    // Instant queries as stats and tables send them, range queries as time series panels do.
    let path = if query.instant {
        format!("/api/v1/query?query={}&time={now}", encode(expr))
    } else {
        format!(
            "/api/v1/query_range?query={}&start={}&end={now}&step=2",
            encode(expr),
            now - 30.0
        )
    };
    match prometheus.get(&path).await {
        Ok((200, body)) if body["status"] == "success" => {
            let series = body["data"]["result"].as_array().map_or(0, Vec::len);
            if series > 0 {
                Outcome::Data(series)
            } else {
                Outcome::Empty
            }
        }
        Ok((status, body)) => Outcome::Error(format!("HTTP {status}: {}", body["error"])),
        Err(e) => Outcome::Error(e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_quickstart_and_every_dashboard_query_returns_data() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };

    // The quickstart with a 600 ms call deadline (its slow route sleeps up to ~0.9 s) and room
    // for two AppIDs (it sends three), so the late-call and label-overflow panels have data
    // within seconds rather than after 15 s calls; with client reports, so that its simulated
    // Mini Programs fill the client panels.
    let telemetry = WxTelemetryLayer::builder()
        .service_name("quickstart")
        .call_deadline(Duration::from_millis(600))
        .max_appids(2)
        .client_reports(true)
        .build()
        .expect("telemetry configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let app_addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move {
        axum::serve(listener, example_quickstart::app_with(&telemetry)).await
    });
    let base_url = format!("http://{app_addr}");
    let traffic = tokio::spawn(async move {
        for seed in 0.. {
            if let Err(e) = example_quickstart::drive_traffic(&base_url, 40, seed).await {
                eprintln!("traffic: {e}");
            }
        }
    });

    let prometheus = Prometheus::start(&binary, |dir, _| quickstart_config(dir, app_addr), &[]);
    let deadline = Instant::now() + CONVERGE;
    let p = &prometheus;
    let ready = wait_for(deadline, move || async move {
        match p.get("/-/ready").await {
            Ok((200, _)) => Ok(()),
            other => Err(format!("not ready: {other:?}")),
        }
    })
    .await;
    assert!(
        ready.is_ok(),
        "Prometheus did not become ready: {ready:?}\n{}",
        prometheus.log_tail()
    );

    let scraped = wait_for(deadline, move || async move {
        let (_, body) = p.get("/api/v1/targets").await?;
        let targets = body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match targets.as_slice() {
            [target] if target["health"] == "up" => Ok(()),
            _ => Err(format!("targets: {targets:?}")),
        }
    })
    .await;
    assert!(
        scraped.is_ok(),
        "the quickstart is not scraped: {scraped:?}"
    );

    // Every rule loaded, evaluated and healthy (bad joins, many-to-many matches and the like
    // only show up here).
    let expected_rules = rules::all_rules().len();
    let healthy = wait_for(deadline, move || async move {
        let (_, body) = p.get("/api/v1/rules").await?;
        let rules: Vec<Value> = body["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let unhealthy: Vec<String> = rules
            .iter()
            .filter(|r| r["health"] != "ok")
            .map(|r| format!("{} {} {}", r["name"], r["health"], r["lastError"]))
            .collect();
        if rules.len() == expected_rules && unhealthy.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} of {expected_rules} rules loaded; not ok: {unhealthy:#?}",
                rules.len()
            ))
        }
    })
    .await;
    if let Err(e) = healthy {
        panic!("rules: {e}");
    }

    // Every query of every dashboard, with the macros and "All" for every variable.
    let mut queries = Vec::new();
    for dashboard in dashboards::load_all() {
        let mut values: BTreeMap<String, String> = macros(RATE_INTERVAL, RANGE);
        values.extend(dashboard.all_values());
        for query in dashboard.queries() {
            let expr = substitute(&query.expr, &values);
            assert!(
                !expr.contains('$') || expr.contains("${1}"),
                "{}: unsubstituted {expr}",
                query.id()
            );
            queries.push((query, expr));
        }
    }
    // Panels fill as rates and recordings get their samples: poll until all are there.
    let mut report = Vec::new();
    let converged = loop {
        report.clear();
        let mut failures = Vec::new();
        for (query, expr) in &queries {
            match (run_query(p, query, expr).await, no_data_expected(query)) {
                (Outcome::Error(e), _) => failures.push(format!("{}: {e}\n    {expr}", query.id())),
                // Reported apart even when an `or vector(0)` fallback makes it non-empty.
                (_, Some(why)) => report.push(format!("executed  {} ({why})", query.id())),
                (Outcome::Data(n), None) => {
                    report.push(format!("verified  {} ({n} series)", query.id()))
                }
                (Outcome::Empty, None) => {
                    failures.push(format!("{}: no data\n    {expr}", query.id()))
                }
            }
        }
        if failures.is_empty() {
            break Ok(());
        }
        if Instant::now() >= deadline {
            break Err(failures.join("\n"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    traffic.abort();
    server.abort();
    if let Err(failures) = converged {
        panic!("dashboard queries failing after {CONVERGE:?}:\n{failures}");
    }
    eprintln!(
        "{} dashboard queries:\n{}",
        queries.len(),
        report.join("\n")
    );
    let verified = report
        .iter()
        .filter(|line| line.starts_with("verified"))
        .count();
    assert!(
        verified * 2 > queries.len(),
        "most queries must be verified with data"
    );
}
