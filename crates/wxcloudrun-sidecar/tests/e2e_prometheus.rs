//! End to end: the sidecar binary in wrapper mode scrapes a tricky page and remote-writes it to a
//! real Prometheus (Debian 2.42, `--web.enable-remote-write-receiver`). Every series and value is
//! compared with what the page says, with the sidecar's labels added; the value changed just before
//! SIGTERM must arrive (the final scrape), and the series must end with stale markers.
//!
//! Without a `prometheus` binary the test is skipped loudly, except under CI, where it fails.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use wxcloudrun_telemetry_tests::prometheus::{Prometheus, wait_for};
use wxcloudrun_telemetry_tests::require_tool;
use wxcloudrun_telemetry_tests::target::{TEXT_CONTENT_TYPE, serve_page};

const BIN: &str = env!("CARGO_BIN_EXE_wxcloudrun-sidecar");

/// Escapes, a `,`/`}`/`=` inside a value, a recording-rule name with colons, a clashing
/// `instance` label, UTF-8, NaN and ±Inf, an untyped sample, a histogram and a summary.
fn page(requests: u32) -> String {
    format!(
        r#"# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{{method="GET",path="/a,b=c}}"}} {requests}
http_requests_total{{method="POST",path="quote\"back\\slash\nnewline"}} 3
# TYPE job:latency_seconds:rate5m gauge
job:latency_seconds:rate5m{{instance="app:80"}} 0.25
# TYPE temperature_celsius gauge
temperature_celsius{{room="客厅"}} -3.5
temperature_celsius{{room="cold store"}} -Inf
temperature_celsius{{room="sensor broken"}} NaN
# TYPE request_seconds histogram
request_seconds_bucket{{le="0.1"}} 1
request_seconds_bucket{{le="1"}} 3
request_seconds_bucket{{le="+Inf"}} 4
request_seconds_sum 2.5
request_seconds_count 4
# TYPE rpc_seconds summary
rpc_seconds{{quantile="0.5"}} 0.2
rpc_seconds{{quantile="0.99"}} 0.9
rpc_seconds_sum 12
rpc_seconds_count 30
untyped_thing 42
"#
    )
}

/// Every series of the page as Prometheus must store it: (name, labels) → value.
fn expected(requests: u32) -> BTreeMap<String, String> {
    let added = r#"instance="e2e-pod",region="sh",wx_env="prod-e2e",wx_service="e2e-svc""#;
    [
        (
            r#"http_requests_total{method="GET",path="/a,b=c}","#,
            requests.to_string(),
        ),
        (
            r#"http_requests_total{method="POST",path="quote\"back\\slash\nnewline","#,
            "3".to_owned(),
        ),
        (
            r#"job:latency_seconds:rate5m{exported_instance="app:80","#,
            "0.25".to_owned(),
        ),
        (r#"temperature_celsius{room="客厅","#, "-3.5".to_owned()),
        (
            r#"temperature_celsius{room="cold store","#,
            "-Inf".to_owned(),
        ),
        (
            r#"temperature_celsius{room="sensor broken","#,
            "NaN".to_owned(),
        ),
        (r#"request_seconds_bucket{le="0.1","#, "1".to_owned()),
        (r#"request_seconds_bucket{le="1.0","#, "3".to_owned()),
        (r#"request_seconds_bucket{le="+Inf","#, "4".to_owned()),
        (r#"request_seconds_sum{"#, "2.5".to_owned()),
        (r#"request_seconds_count{"#, "4".to_owned()),
        (r#"rpc_seconds{quantile="0.5","#, "0.2".to_owned()),
        (r#"rpc_seconds{quantile="0.99","#, "0.9".to_owned()),
        (r#"rpc_seconds_sum{"#, "12".to_owned()),
        (r#"rpc_seconds_count{"#, "30".to_owned()),
        (r#"untyped_thing{"#, "42".to_owned()),
    ]
    .into_iter()
    .map(|(series, value)| (canonical(&format!("{series}{added}}}")), value))
    .collect()
}

/// A series written as `name{a="x",b="y"}` with its labels sorted, whatever order they came in.
fn canonical(series: &str) -> String {
    let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
    let mut pairs: Vec<String> = split_labels(labels.trim_end_matches('}'));
    pairs.sort();
    format!("{name}{{{}}}", pairs.join(","))
}

/// Splits `a="x",b="y"` at the commas between pairs (not those inside quoted values).
fn split_labels(text: &str) -> Vec<String> {
    let mut pairs = Vec::new();
    let (mut current, mut quoted, mut escaped) = (String::new(), false, false);
    for c in text.chars() {
        match c {
            ',' if !quoted => pairs.push(std::mem::take(&mut current)),
            '"' if !escaped => {
                quoted = !quoted;
                current.push(c);
            }
            _ => current.push(c),
        }
        escaped = c == '\\' && !escaped;
    }
    if !current.is_empty() {
        pairs.push(current);
    }
    pairs
}

/// A label value escaped as in the exposition format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The series key of one API result, in the same form as [`expected`].
fn key(metric: &Value) -> String {
    let object = metric.as_object().cloned().unwrap_or_default();
    let name = object
        .get("__name__")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let labels: Vec<String> = object
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v.as_str().unwrap_or_default())))
        .collect();
    canonical(&format!("{name}{{{}}}", labels.join(",")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapper_mode_remote_writes_every_series_exactly_and_the_last_scrape_arrives() {
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

    let page_text = Arc::new(Mutex::new(page(10)));
    let scrape_url = serve_page(page_text.clone(), TEXT_CONTENT_TYPE);
    let write_url = format!("http://{}/api/v1/write", prometheus.addr());
    // A long interval: after the first scrape, only the final one can see the change.
    let mut sidecar = Command::new(BIN)
        .args([
            "--scrape-url",
            &scrape_url,
            "--remote-write-url",
            &write_url,
        ])
        .args(["--scrape-interval", "1h", "--scrape-timeout", "2s"])
        .args(["--shutdown-budget", "8s", "--admin-addr", "127.0.0.1:0"])
        .args(["--label", "region=sh"])
        .args([
            "--",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.05; done",
        ])
        .env("HOSTNAME", "e2e-pod")
        .env("CBR_ENV_ID", "prod-e2e")
        .env("WXCLOUDRUN_SERVICE", "e2e-svc")
        .env("WXCLOUDRUN_SIDECAR_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let first = wait_for(deadline, || async {
        let result = prometheus
            .query(r#"http_requests_total{method="GET",wx_service="e2e-svc"}"#)
            .await?;
        match result.first().map(|r| r["value"][1].clone()) {
            Some(Value::String(v)) if v == "10" => Ok(()),
            other => Err(format!("first scrape not there yet: {other:?}")),
        }
    })
    .await;
    assert!(first.is_ok(), "{first:?}\n{}", prometheus.log_tail());

    *page_text.lock().unwrap() = page(11);
    kill(Pid::from_raw(sidecar.id() as i32), Signal::SIGTERM).unwrap();
    let exit = tokio::task::spawn_blocking(move || {
        let limit = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = sidecar.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > limit {
                let _ = sidecar.kill();
                panic!("the sidecar did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert_eq!(exit.code(), Some(0));

    // The raw samples of the last minute: stale markers are not returned, values are.
    let raw = prometheus
        .query(r#"{wx_service="e2e-svc",__name__!~"up|wxcloudrun_sidecar_.*"}[1m]"#)
        .await
        .unwrap();
    let last_values: BTreeMap<String, String> = raw
        .iter()
        .map(|series| {
            let last = series["values"]
                .as_array()
                .and_then(|values| values.last())
                .map(|pair| pair[1].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            (key(&series["metric"]), last)
        })
        .collect();
    assert_eq!(
        last_values,
        expected(11),
        "every series, exactly, with the final value"
    );

    // The sidecar's own series travelled along.
    let own = prometheus
        .query(r#"{__name__="wxcloudrun_sidecar_scrapes_total",outcome="success"}[1m]"#)
        .await
        .unwrap();
    assert_eq!(own.len(), 1, "{own:?}");

    // The instance is gone: stale markers end every series of the app (and `up`), so none is
    // current any more; the sidecar's last batch reports how the flush of the app's data went.
    let current = prometheus
        .query(r#"{wx_service="e2e-svc",__name__!~"wxcloudrun_sidecar_.*"}"#)
        .await
        .unwrap();
    assert!(
        current.is_empty(),
        "series still current after shutdown: {current:?}"
    );
    let flushes = prometheus
        .query(r#"wxcloudrun_sidecar_shutdown_flushes_total{wx_service="e2e-svc"}"#)
        .await
        .unwrap();
    let by_outcome: BTreeMap<String, String> = flushes
        .iter()
        .map(|r| {
            (
                r["metric"]["outcome"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["value"][1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected_flushes = [("error", "0"), ("success", "1"), ("timeout", "0")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
    assert_eq!(by_outcome, BTreeMap::from(expected_flushes));
}
