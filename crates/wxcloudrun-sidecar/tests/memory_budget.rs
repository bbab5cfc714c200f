//! The memory budget end to end: the sidecar binary, standalone, scrapes a loopback target whose
//! page is first far over `--memory-limit`, then small again, and remote-writes into a real
//! Prometheus (Debian 2.42, `--web.enable-remote-write-receiver`). The large page must fail with
//! `too_large` (counted, `up` 0) and the small one that follows must arrive.
//!
//! Without a `prometheus` binary the test is skipped loudly, except under CI, where it fails.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use wxcloudrun_telemetry_tests::prometheus::{Prometheus, wait_for};
use wxcloudrun_telemetry_tests::require_tool;
use wxcloudrun_telemetry_tests::target::{TEXT_CONTENT_TYPE, serve_page};

const BIN: &str = env!("CARGO_BIN_EXE_wxcloudrun-sidecar");

/// 200,000 series: ~3.5 MB of text, ~100 MiB to read — far over a 32 MiB budget.
fn large_page() -> String {
    let mut page = String::from("# TYPE flood gauge\n");
    for i in 0..200_000 {
        let _ = writeln!(page, "flood{{i=\"{i}\"}} 1");
    }
    page
}

/// The value of the one series `query` returns, if there is one.
async fn value(prometheus: &Prometheus, query: &str) -> Result<f64, String> {
    let result = prometheus.query(query).await?;
    match result.first().map(|r| r["value"][1].clone()) {
        Some(Value::String(v)) => v.parse().map_err(|_| format!("not a number: {v}")),
        other => Err(format!("{query}: nothing yet ({other:?})")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_over_the_budget_fails_with_too_large_and_the_next_page_is_delivered() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let prometheus = Prometheus::start(
        &binary,
        |_, _| "global:\n  scrape_interval: 1m\n".to_owned(),
        &["--web.enable-remote-write-receiver"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    prometheus.wait_ready(deadline).await.unwrap();

    let page_text = Arc::new(Mutex::new(large_page()));
    let scrape_url = serve_page(page_text.clone(), TEXT_CONTENT_TYPE);
    let write_url = format!("http://{}/api/v1/write", prometheus.addr());
    let mut sidecar = Command::new(BIN)
        .args([
            "--scrape-url",
            &scrape_url,
            "--remote-write-url",
            &write_url,
        ])
        .args(["--scrape-interval", "1s", "--scrape-timeout", "800ms"])
        .args(["--memory-limit", "32MiB", "--admin-addr", "127.0.0.1:0"])
        .env("HOSTNAME", "budget-pod")
        .env("WXCLOUDRUN_SERVICE", "budget-svc")
        .env("WXCLOUDRUN_SIDECAR_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let refused = wait_for(deadline, || async {
        let too_large = value(
            &prometheus,
            r#"wxcloudrun_sidecar_scrapes_exceeded_limit_total{reason="too_large",wx_service="budget-svc"}"#,
        )
        .await?;
        let up = value(&prometheus, r#"up{wx_service="budget-svc"}"#).await?;
        let budget = value(&prometheus, r#"wxcloudrun_sidecar_memory_limit_bytes{wx_service="budget-svc"}"#).await?;
        if too_large >= 1.0 && up == 0.0 && budget == f64::from(32u32 << 20) {
            Ok(())
        } else {
            Err(format!("too_large {too_large}, up {up}, budget {budget}"))
        }
    })
    .await;
    let flood = prometheus.query(r#"count(flood)"#).await.unwrap();
    assert!(flood.is_empty(), "no series of the large page: {flood:?}");

    *page_text.lock().unwrap() = "# TYPE small gauge\nsmall{n=\"1\"} 7\n".to_owned();
    let delivered = wait_for(deadline, || async {
        let small = value(&prometheus, r#"small{wx_service="budget-svc"}"#).await?;
        let up = value(&prometheus, r#"up{wx_service="budget-svc"}"#).await?;
        if small == 7.0 && up == 1.0 {
            Ok(())
        } else {
            Err(format!("small {small}, up {up}"))
        }
    })
    .await;
    let _ = sidecar.kill();
    let _ = sidecar.wait();
    assert!(refused.is_ok(), "{refused:?}\n{}", prometheus.log_tail());
    assert!(
        delivered.is_ok(),
        "{delivered:?}\n{}",
        prometheus.log_tail()
    );
}
