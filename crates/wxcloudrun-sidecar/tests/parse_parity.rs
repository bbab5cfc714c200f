//! Parse parity with Prometheus, end to end: pages Prometheus accepts but a stricter parser
//! would reject — two registries concatenated (every `# TYPE` / `# HELP` again), families
//! interleaved (in OpenMetrics too), a late `# TYPE`, blanks before `{`, no blank after `}`,
//! labels without commas, `# HELP` without a name, exemplars Prometheus reads but does not store
//! (a label named twice, a label set over 128 characters) — served on loopback and scraped two ways into
//! one real Prometheus (Debian 2.42, `--web.enable-remote-write-receiver`):
//!
//! - directly by Prometheus (`job="direct_*"`), the oracle: it must take the page at all;
//! - by the sidecar binary in standalone mode, remote-writing, once per `le` / `quantile`
//!   spelling (`job="*_p3"`: the default; `job="*_p2"`: `--bound-spelling prometheus2` or its
//!   variable).
//!
//! Every series and value is compared with the page's (OpenMetrics `_created` series aside: the
//! sidecar makes them start times). The dashboards' two ways of reading integral bounds (the regex
//! matcher, the heatmaps' rewrite of `le`) are checked over both spellings at once. Prometheus 2.42 stores bounds as written, so its direct scrape
//! of the Go-style text page equals the Prometheus 2 spelling and of the OpenMetrics page (which
//! writes `1.0`) the Prometheus 3 one.
//!
//! Without a `prometheus` binary the test is skipped loudly, except under CI, where it fails.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use serde_json::Value;
use wxcloudrun_telemetry_tests::prometheus::{Prometheus, wait_for};
use wxcloudrun_telemetry_tests::require_tool;
use wxcloudrun_telemetry_tests::target::{TEXT_CONTENT_TYPE, serve_router};

const BIN: &str = env!("CARGO_BIN_EXE_wxcloudrun-sidecar");

/// Two registries' output concatenated, as Go-style text: the bounds as the Go client writes them.
const TEXT_PAGE: &str = r#"# HELP build_info Build.
# TYPE build_info gauge
build_info{lib="a",version="1"} 1
# HELP rpc_requests_total Calls.
# TYPE rpc_requests_total counter
rpc_requests_total {lib="a", code="200"} 7
rpc_requests_total{lib="a" code="500"}2
# HELP rpc_seconds Latency.
# TYPE rpc_seconds histogram
rpc_seconds_bucket{lib="a",le="0.5"} 1
rpc_seconds_bucket{lib="a",le="1"} 3
rpc_seconds_bucket{lib="a",le="10"} 4
rpc_seconds_bucket{lib="a",le="+Inf"} 5
rpc_seconds_sum{lib="a"} 12.5
rpc_seconds_count{lib="a"} 5
# HELP gc_seconds GC pauses.
# TYPE gc_seconds summary
gc_seconds{lib="a",quantile="0"} 0.001
gc_seconds{lib="a",quantile="0.5"} 0.002
gc_seconds{lib="a",quantile="1"} 0.01
gc_seconds_sum{lib="a"} 1.5
gc_seconds_count{lib="a"} 300
# HELP process_open_fds Open fds.
# TYPE process_open_fds gauge
process_open_fds 9
# HELP
# HELP nohelp
# The second registry: the same families again, with their metadata.
# HELP build_info Build.
# TYPE build_info gauge
build_info{lib="b",version="2"} 1
# HELP rpc_requests_total Calls.
# TYPE rpc_requests_total counter
rpc_requests_total{lib="b",code="200"} 11
# HELP rpc_seconds Latency.
# TYPE rpc_seconds histogram
rpc_seconds_bucket{lib="b",le="0.5"} 0
rpc_seconds_bucket{lib="b",le="1"} 0
rpc_seconds_bucket{lib="b",le="10"} 2
rpc_seconds_bucket{lib="b",le="+Inf"} 2
rpc_seconds_sum{lib="b"} 9
rpc_seconds_count{lib="b"} 2
# HELP process_open_fds Open fds.
# TYPE process_open_fds gauge
process_open_fds 10
queue_depth{q="x"} 4
other_thing 1
queue_depth{q="y"} 5
late_total 1
# TYPE late_total counter
late_total{x="2"} 2
# TYPE stray histogram
stray 3
stray_bucket{le="+Inf"} 1
stray_count 1
"#;

/// OpenMetrics with families interleaved and metadata repeated; bounds as OpenMetrics writes them.
const OM_PAGE: &str = r#"# TYPE rpc_requests counter
# HELP rpc_requests Calls.
rpc_requests_total{lib="a",code="200"} 7
rpc_requests_created{lib="a",code="200"} 1700000000
# TYPE queue_depth gauge
queue_depth{q="x"} 4
rpc_requests_total{lib="a",code="500"} 2 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",trace_id="00f067aa0ba902b7"} 1
# TYPE rpc_seconds histogram
rpc_seconds_bucket{lib="a",le="0.5"} 1
rpc_seconds_bucket{lib="a",le="1.0"} 3 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",user="uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"} 0.7 1700000000.5
queue_depth{q="y"} 5
rpc_seconds_bucket{lib="a",le="10.0"} 4 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 8.5
rpc_seconds_bucket{lib="a",le="+Inf"} 5
rpc_seconds_count{lib="a"} 5
rpc_seconds_sum{lib="a"} 12.5
# TYPE gc_seconds summary
gc_seconds{quantile="0.0"} 0.001
gc_seconds{quantile="1.0"} 0.01
gc_seconds_count 300
gc_seconds_sum 1.5
# HELP rpc_requests Calls.
# TYPE rpc_requests counter
rpc_requests_total{lib="b",code="200"} 11
# EOF
"#;

/// A bound as written on the page, in the Prometheus 3 spelling, in the Prometheus 2 one.
type Bound = (&'static str, &'static str, &'static str);

/// `(series without the bound, the bound label and its spellings, value)`.
type Row = (&'static str, Option<(&'static str, Bound)>, &'static str);

const TEXT_SERIES: &[Row] = &[
    (r#"build_info{lib="a",version="1"}"#, None, "1"),
    (r#"build_info{lib="b",version="2"}"#, None, "1"),
    (r#"rpc_requests_total{code="200",lib="a"}"#, None, "7"),
    (r#"rpc_requests_total{code="500",lib="a"}"#, None, "2"),
    (r#"rpc_requests_total{code="200",lib="b"}"#, None, "11"),
    (
        r#"rpc_seconds_bucket{lib="a"}"#,
        Some(("le", ("0.5", "0.5", "0.5"))),
        "1",
    ),
    (
        r#"rpc_seconds_bucket{lib="a"}"#,
        Some(("le", ("1", "1.0", "1"))),
        "3",
    ),
    (
        r#"rpc_seconds_bucket{lib="a"}"#,
        Some(("le", ("10", "10.0", "10"))),
        "4",
    ),
    (
        r#"rpc_seconds_bucket{lib="a"}"#,
        Some(("le", ("+Inf", "+Inf", "+Inf"))),
        "5",
    ),
    (r#"rpc_seconds_sum{lib="a"}"#, None, "12.5"),
    (r#"rpc_seconds_count{lib="a"}"#, None, "5"),
    (
        r#"rpc_seconds_bucket{lib="b"}"#,
        Some(("le", ("0.5", "0.5", "0.5"))),
        "0",
    ),
    (
        r#"rpc_seconds_bucket{lib="b"}"#,
        Some(("le", ("1", "1.0", "1"))),
        "0",
    ),
    (
        r#"rpc_seconds_bucket{lib="b"}"#,
        Some(("le", ("10", "10.0", "10"))),
        "2",
    ),
    (
        r#"rpc_seconds_bucket{lib="b"}"#,
        Some(("le", ("+Inf", "+Inf", "+Inf"))),
        "2",
    ),
    (r#"rpc_seconds_sum{lib="b"}"#, None, "9"),
    (r#"rpc_seconds_count{lib="b"}"#, None, "2"),
    (
        r#"gc_seconds{lib="a"}"#,
        Some(("quantile", ("0", "0.0", "0"))),
        "0.001",
    ),
    (
        r#"gc_seconds{lib="a"}"#,
        Some(("quantile", ("0.5", "0.5", "0.5"))),
        "0.002",
    ),
    (
        r#"gc_seconds{lib="a"}"#,
        Some(("quantile", ("1", "1.0", "1"))),
        "0.01",
    ),
    (r#"gc_seconds_sum{lib="a"}"#, None, "1.5"),
    (r#"gc_seconds_count{lib="a"}"#, None, "300"),
    // Both registries expose it: the first is kept (Prometheus: "duplicate sample").
    (r#"process_open_fds{}"#, None, "9"),
    (r#"queue_depth{q="x"}"#, None, "4"),
    (r#"queue_depth{q="y"}"#, None, "5"),
    (r#"other_thing{}"#, None, "1"),
    (r#"late_total{}"#, None, "1"),
    (r#"late_total{x="2"}"#, None, "2"),
    (r#"stray{}"#, None, "3"),
    (
        r#"stray_bucket{}"#,
        Some(("le", ("+Inf", "+Inf", "+Inf"))),
        "1",
    ),
    (r#"stray_count{}"#, None, "1"),
];

const OM_SERIES: &[Row] = &[
    (r#"rpc_requests_total{code="200",lib="a"}"#, None, "7"),
    (r#"rpc_requests_total{code="500",lib="a"}"#, None, "2"),
    (r#"rpc_requests_total{code="200",lib="b"}"#, None, "11"),
    (r#"queue_depth{q="x"}"#, None, "4"),
    (r#"queue_depth{q="y"}"#, None, "5"),
    (
        r#"rpc_seconds_bucket{lib="a"}"#,
        Some(("le", ("0.5", "0.5", "0.5"))),
        "1",
    ),
    (
        r#"rpc_seconds_bucket{lib="a"}"#,
        Some(("le", ("1.0", "1.0", "1"))),
        "3",
    ),
    (
        r#"rpc_seconds_bucket{lib="a"}"#,
        Some(("le", ("10.0", "10.0", "10"))),
        "4",
    ),
    (
        r#"rpc_seconds_bucket{lib="a"}"#,
        Some(("le", ("+Inf", "+Inf", "+Inf"))),
        "5",
    ),
    (r#"rpc_seconds_count{lib="a"}"#, None, "5"),
    (r#"rpc_seconds_sum{lib="a"}"#, None, "12.5"),
    (
        r#"gc_seconds{}"#,
        Some(("quantile", ("0.0", "0.0", "0"))),
        "0.001",
    ),
    (
        r#"gc_seconds{}"#,
        Some(("quantile", ("1.0", "1.0", "1"))),
        "0.01",
    ),
    (r#"gc_seconds_count{}"#, None, "300"),
    (r#"gc_seconds_sum{}"#, None, "1.5"),
];

#[derive(Clone, Copy, Debug)]
enum Spelling {
    AsWritten,
    Prometheus3,
    Prometheus2,
}

/// The rows as `series → value`, series in the canonical form of [`key`].
fn expected(rows: &[Row], spelling: Spelling) -> BTreeMap<String, String> {
    rows.iter()
        .map(|&(series, bound, value)| {
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let mut pairs: Vec<String> = split_labels(labels.trim_end_matches('}'));
            if let Some((label, (written, p3, p2))) = bound {
                let text = match spelling {
                    Spelling::AsWritten => written,
                    Spelling::Prometheus3 => p3,
                    Spelling::Prometheus2 => p2,
                };
                pairs.push(format!("{label}=\"{text}\""));
            }
            pairs.sort();
            (format!("{name}{{{}}}", pairs.join(",")), value.to_owned())
        })
        .collect()
}

/// Splits `a="x",b="y"` at the commas between pairs (the pages' values have none inside).
fn split_labels(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Labels the scrapers add, left out of the comparison.
const ADDED: [&str; 4] = ["instance", "job", "wx_env", "wx_service"];

/// One API result as `name{sorted labels}` without the added labels.
fn key(metric: &Value) -> String {
    let object = metric.as_object().cloned().unwrap_or_default();
    let name = object
        .get("__name__")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut labels: Vec<String> = object
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__" && !ADDED.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default()))
        .collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

/// The page's series a job stored: `up`, the scrape's and the sidecar's own series and
/// OpenMetrics `_created` series left out.
async fn stored(prometheus: &Prometheus, job: &str) -> Result<BTreeMap<String, String>, String> {
    let query =
        format!(r#"{{job="{job}",__name__!~"up|scrape_.+|wxcloudrun_sidecar_.+|.+_created"}}"#);
    Ok(prometheus
        .query(&query)
        .await?
        .iter()
        .map(|series| {
            let value = series["value"][1].as_str().unwrap_or_default().to_owned();
            (key(&series["metric"]), value)
        })
        .collect())
}

/// Serves both pages from a thread of its own; returns the base URL.
fn serve() -> String {
    let addr = serve_router(|| {
        Router::new()
            .route(
                "/text",
                get(|| async { ([("content-type", TEXT_CONTENT_TYPE)], TEXT_PAGE) }),
            )
            .route(
                "/om",
                get(|| async {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        OM_PAGE,
                    )
                }),
            )
    });
    format!("http://{addr}")
}

/// Sidecars, killed when the test ends however it ends.
struct Sidecars(Vec<Child>);

impl Drop for Sidecars {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_prometheus_accepts_arrive_whole_in_both_spellings() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let base = serve();
    let target = base.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(
        &binary,
        |_, _| {
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n\
                 \x20 - job_name: direct_text\n    metrics_path: /text\n    static_configs:\n      - targets: ['{target}']\n\
                 \x20 - job_name: direct_om\n    metrics_path: /om\n    static_configs:\n      - targets: ['{target}']\n"
            )
        },
        &["--web.enable-remote-write-receiver"],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    prometheus.wait_ready(deadline).await.unwrap();

    let write_url = format!("http://{}/api/v1/write", prometheus.addr());
    // (job, page, spelling given by flag, by variable)
    let runs = [
        ("text_p3", "/text", None, None),
        ("text_p2", "/text", Some("prometheus2"), None),
        ("om_p3", "/om", Some("prometheus3"), None),
        ("om_p2", "/om", None, Some("prometheus2")),
    ];
    let mut sidecars = Sidecars(Vec::new());
    for (job, path, flag, variable) in runs {
        let mut command = Command::new(BIN);
        command
            .args(["--scrape-url", &format!("{base}{path}")])
            .args(["--remote-write-url", &write_url])
            .args(["--scrape-interval", "1s", "--scrape-timeout", "900ms"])
            .args(["--admin-addr", "127.0.0.1:0"])
            .args(["--label", &format!("job={job}")])
            .env("HOSTNAME", format!("{job}-pod"))
            .env("WXCLOUDRUN_SIDECAR_LOG", "warn")
            .env_remove("WXCLOUDRUN_SIDECAR_BOUND_SPELLING")
            .env_remove("WXCLOUDRUN_SIDECAR_CONFIG")
            .stdout(Stdio::null());
        if let Some(spelling) = flag {
            command.args(["--bound-spelling", spelling]);
        }
        if let Some(spelling) = variable {
            command.env("WXCLOUDRUN_SIDECAR_BOUND_SPELLING", spelling);
        }
        sidecars.0.push(command.spawn().unwrap());
    }

    let checks = [
        ("direct_text", expected(TEXT_SERIES, Spelling::AsWritten)),
        ("direct_om", expected(OM_SERIES, Spelling::AsWritten)),
        ("text_p3", expected(TEXT_SERIES, Spelling::Prometheus3)),
        ("text_p2", expected(TEXT_SERIES, Spelling::Prometheus2)),
        ("om_p3", expected(OM_SERIES, Spelling::Prometheus3)),
        ("om_p2", expected(OM_SERIES, Spelling::Prometheus2)),
    ];
    // The oracle agrees with the spellings: Prometheus 2 stores a Go-style text page as our
    // Prometheus 2 spelling, an OpenMetrics page (`1.0`) as our Prometheus 3 spelling.
    assert_eq!(checks[0].1, checks[3].1);
    assert_eq!(checks[1].1, checks[4].1);

    let p = &prometheus;
    let checks_ref = &checks;
    let all_arrived = wait_for(deadline, move || async move {
        let mut problems = Vec::new();
        for (job, want) in checks_ref {
            let up = p.query(&format!(r#"up{{job="{job}"}}"#)).await?;
            let up: Vec<&str> = up
                .iter()
                .map(|r| r["value"][1].as_str().unwrap_or_default())
                .collect();
            if up != ["1"] {
                problems.push(format!("{job}: up = {up:?}"));
                continue;
            }
            let got = stored(p, job).await?;
            if &got != want {
                let missing: Vec<_> = want
                    .iter()
                    .filter(|(k, v)| got.get(*k) != Some(v))
                    .collect();
                let extra: Vec<_> = got
                    .iter()
                    .filter(|(k, v)| want.get(*k) != Some(v))
                    .collect();
                problems.push(format!(
                    "{job}:\n  missing {missing:?}\n  unexpected {extra:?}"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    })
    .await;
    if let Err(problems) = all_arrived {
        panic!("{problems}\n{}", prometheus.log_tail());
    }

    // Not a scrape was lost, and a rule's matcher finds the bucket in the spelling it was told.
    for job in ["text_p3", "text_p2", "om_p3", "om_p2"] {
        let errors = prometheus
            .query(&format!(
                r#"wxcloudrun_sidecar_scrapes_total{{job="{job}",outcome!="success"}} > 0"#
            ))
            .await
            .unwrap();
        assert!(errors.is_empty(), "{job}: failed scrapes {errors:?}");
    }
    for (job, found, absent) in [
        ("text_p3", "1.0", "1"),
        ("om_p3", "1.0", "1"),
        ("text_p2", "1", "1.0"),
        ("om_p2", "1", "1.0"),
    ] {
        let series = if job.starts_with("text") { "2" } else { "1" };
        for (le, want) in [(found, series), (absent, "0")] {
            let query = format!(r#"count(rpc_seconds_bucket{{job="{job}",le="{le}"}})"#);
            let result = prometheus.query(&query).await.unwrap();
            let count = result
                .first()
                .and_then(|r| r["value"][1].as_str())
                .unwrap_or("0");
            assert_eq!(count, want, "{job}: le=\"{le}\"");
        }
    }
    // Both spellings at once, as the dashboards meet them: the regex form matches either, and
    // the heatmaps' rewrite of `le` makes one bound one row.
    let both = prometheus
        .query(r#"count(rpc_seconds_bucket{job=~"text_p3|text_p2",le=~"10([.]0)?"})"#)
        .await
        .unwrap();
    assert_eq!(both[0]["value"][1], "4", "{both:?}");
    let rows = prometheus
        .query(
            r#"sum by (le) (label_replace(rpc_seconds_bucket{job=~"text_p3|text_p2",lib="a"}, "le", "${1}", "le", "(.+)[.]0"))"#,
        )
        .await
        .unwrap();
    let rows: BTreeMap<String, String> = rows
        .iter()
        .map(|r| {
            (
                r["metric"]["le"].as_str().unwrap_or_default().to_owned(),
                r["value"][1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want = [("+Inf", "10"), ("0.5", "2"), ("1", "6"), ("10", "8")]
        .map(|(le, v)| (le.to_owned(), v.to_owned()));
    assert_eq!(rows, BTreeMap::from(want));
}
