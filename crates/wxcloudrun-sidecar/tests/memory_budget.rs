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

use axum::Router;
use axum::routing::get;
use serde_json::Value;
use wxcloudrun_telemetry_tests::prometheus::{Prometheus, wait_for};
use wxcloudrun_telemetry_tests::require_tool;

const BIN: &str = env!("CARGO_BIN_EXE_wxcloudrun-sidecar");

/// 200,000 series: ~3.5 MB of text, ~100 MiB to read — far over a 32 MiB budget.
fn large_page() -> String {
    let mut page = String::from("# TYPE flood gauge\n");
    for i in 0..200_000 {
        let _ = writeln!(page, "flood{{i=\"{i}\"}} 1");
    }
    page
}

/// A target whose page the test can change, served from a thread of its own.
fn serve(page_text: Arc<Mutex<String>>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = Router::new().route(
                "/metrics",
                get(move || {
                    let text = page_text.lock().unwrap().clone();
                    async move { ([("content-type", "text/plain; version=0.0.4")], text) }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    format!("http://{addr}/metrics")
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
    let scrape_url = serve(page_text.clone());
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
