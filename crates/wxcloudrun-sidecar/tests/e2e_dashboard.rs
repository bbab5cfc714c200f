//! End to end for the sidecar-health dashboard: the quickstart service under simulated traffic,
//! the sidecar scraping it every second and remote-writing to a real Prometheus that has the
//! project's rules loaded and scrapes itself. Every query of the sidecar dashboard — macros and
//! variables substituted as Grafana would — must succeed and return data.
//!
//! Without a `prometheus` binary the test is skipped loudly, except under CI, where it fails.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use wxcloudrun_telemetry::WxTelemetryLayer;
use wxcloudrun_telemetry_tests::dashboards::{self, macros, substitute};
use wxcloudrun_telemetry_tests::prometheus::{Prometheus, encode, wait_for};
use wxcloudrun_telemetry_tests::{require_tool, rules};

const BIN: &str = env!("CARGO_BIN_EXE_wxcloudrun-sidecar");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sidecar_dashboard_query_returns_data() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let prometheus = Prometheus::start(
        &binary,
        |dir, addr| {
            let rules: Vec<String> = rules::fast_copies(dir)
                .iter()
                .map(|p| format!("  - {}", p.display()))
                .collect();
            // Prometheus scrapes itself for the rule-evaluation panels; the app's data arrives
            // only through the sidecar.
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{}\n\
                 scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['{addr}']\n",
                rules.join("\n")
            )
        },
        &["--web.enable-remote-write-receiver"],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    prometheus.wait_ready(deadline).await.unwrap();

    let telemetry = WxTelemetryLayer::builder()
        .service_name("dash-svc")
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, example_quickstart::app_with(&telemetry)).await
    });
    let base_url = format!("http://{app_addr}");
    let traffic = tokio::spawn(async move {
        for seed in 0.. {
            let _ = example_quickstart::drive_traffic(&base_url, 20, seed).await;
        }
    });

    let mut sidecar = Command::new(BIN)
        .args(["--scrape-url", &format!("http://{app_addr}/metrics")])
        .args([
            "--remote-write-url",
            &format!("http://{}/api/v1/write", prometheus.addr()),
        ])
        .args(["--scrape-interval", "1s", "--scrape-timeout", "900ms"])
        .args(["--admin-addr", "127.0.0.1:0", "--label", "job=dash"])
        .env("HOSTNAME", "dash-pod")
        .env("WXCLOUDRUN_SERVICE", "dash-svc")
        .env("WXCLOUDRUN_SIDECAR_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let dashboard = dashboards::load_all()
        .into_iter()
        .find(|d| d.uid() == "wxcloudrun-sidecar")
        .expect("the sidecar dashboard");
    let mut values: BTreeMap<String, String> = macros("10s", "10m");
    values.extend(dashboard.all_values());
    let queries: Vec<(String, String)> = dashboard
        .queries()
        .iter()
        .map(|q| (q.id(), substitute(&q.expr, &values)))
        .collect();
    let p = &prometheus;
    let queries_ref = &queries;
    let all_have_data = wait_for(deadline, move || async move {
        let mut missing = Vec::new();
        for (id, expr) in queries_ref {
            match p
                .get(&format!("/api/v1/query?query={}", encode(expr)))
                .await
            {
                Ok((200, body)) if body["status"] == "success" => {
                    if body["data"]["result"].as_array().is_none_or(Vec::is_empty) {
                        missing.push(format!("{id}: no data\n    {expr}"));
                    }
                }
                other => missing.push(format!("{id}: {other:?}\n    {expr}")),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("\n"))
        }
    })
    .await;

    kill(Pid::from_raw(sidecar.id() as i32), Signal::SIGTERM).unwrap();
    let _ = tokio::task::spawn_blocking(move || sidecar.wait()).await;
    traffic.abort();
    server.abort();
    if let Err(missing) = all_have_data {
        panic!(
            "sidecar dashboard queries without data:\n{missing}\n{}",
            prometheus.log_tail()
        );
    }
    eprintln!(
        "{} sidecar dashboard queries verified with data",
        queries.len()
    );
}
