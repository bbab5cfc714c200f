//! Parse speed on a realistic 10,000-series page, in lines per second (the goal is ≥ 2 million
//! per core) — run `cargo bench -p wxcloudrun-exposition`.
//!
//! The page looks like what the layer exposes for a busy service: the request-duration histogram
//! with eight labels and 16 buckets, a body-size histogram, counters and gauges, with HELP/TYPE
//! lines. Throughput is reported per line; the page size is printed so MB/s can be derived.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wxcloudrun_exposition::{Format, MetricType, parse};

const DURATION_BUCKETS: [&str; 16] = [
    "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5", "5",
    "7.5", "10", "15", "30",
];
const SIZE_BUCKETS: [&str; 10] = [
    "100", "1000", "10000", "100000", "1e+06", "1e+07", "1e+08", "1e+09", "1e+10", "1e+11",
];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const ROUTES: [&str; 10] = [
    "/api/users/{id}",
    "/api/orders",
    "/api/orders/{id}",
    "/api/pay/callback",
    "/api/login",
    "/healthz",
    "/api/items",
    "/api/items/{id}/reviews",
    "/api/cart",
    "unmatched",
];
const STATUSES: [&str; 5] = ["200", "201", "400", "404", "500"];

/// The page and its number of lines. `om` writes OpenMetrics (counters declared without
/// `_total`, `# EOF`), else the text format.
fn page(om: bool) -> (String, usize) {
    let mut out = String::new();
    duration_histograms(&mut out);
    body_size_histograms(&mut out);
    counters_and_gauges(&mut out, om);
    if om {
        out.push_str("# EOF\n");
    }
    let lines = out.lines().count();
    (out, lines)
}

/// The request-duration histogram: 300 label sets of eight labels.
fn duration_histograms(out: &mut String) {
    let service =
        "wx_service=\"order-api\",wx_appid=\"wx1234567890abcdef\",wx_source=\"wx_client\"";

    // 300 label sets × (16 + 1 buckets + sum + count) = 5,700 series.
    out.push_str("# HELP http_server_request_duration_seconds Duration of HTTP server requests.\n");
    out.push_str("# TYPE http_server_request_duration_seconds histogram\n");
    for i in 0..300 {
        let labels = format!(
            "http_request_method=\"{}\",http_route=\"{}\",http_response_status_code=\"{}\",error_type=\"{}\",{service},wx_access_node=\"10.0.{}.1\"",
            METHODS[i % 4],
            ROUTES[i / 4 % 10],
            STATUSES[i / 40 % 5],
            if STATUSES[i / 40 % 5] == "500" {
                "500"
            } else {
                ""
            },
            i / 200
        );
        let mut cumulative = 0;
        for (b, le) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += (i * 7 + b * 13) % 50;
            writeln!(
                out,
                "http_server_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            )
            .unwrap();
        }
        cumulative += 3;
        writeln!(
            out,
            "http_server_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
        )
        .unwrap();
        writeln!(
            out,
            "http_server_request_duration_seconds_sum{{{labels}}} {}",
            cumulative as f64 * 0.173
        )
        .unwrap();
        writeln!(
            out,
            "http_server_request_duration_seconds_count{{{labels}}} {cumulative}"
        )
        .unwrap();
    }
}

/// The request body-size histogram: 100 label sets of three labels.
fn body_size_histograms(out: &mut String) {
    // 100 label sets × (10 + 1 + 2) = 1,300 series.
    out.push_str(
        "# HELP http_server_request_body_size_bytes Size of HTTP server request bodies.\n",
    );
    out.push_str("# TYPE http_server_request_body_size_bytes histogram\n");
    for i in 0..100 {
        let labels = format!(
            "http_request_method=\"{}\",http_route=\"{}\",wx_service=\"svc-{}\"",
            METHODS[i % 4],
            ROUTES[i / 4 % 10],
            i / 40
        );
        for (b, le) in SIZE_BUCKETS.iter().enumerate() {
            writeln!(
                out,
                "http_server_request_body_size_bytes_bucket{{{labels},le=\"{le}\"}} {}",
                i + b * 3
            )
            .unwrap();
        }
        writeln!(
            out,
            "http_server_request_body_size_bytes_bucket{{{labels},le=\"+Inf\"}} {}",
            i + 40
        )
        .unwrap();
        writeln!(
            out,
            "http_server_request_body_size_bytes_sum{{{labels}}} {}",
            (i + 40) * 512
        )
        .unwrap();
        writeln!(
            out,
            "http_server_request_body_size_bytes_count{{{labels}}} {}",
            i + 40
        )
        .unwrap();
    }
}

/// A counter and a gauge of 1,500 series each; OpenMetrics declares the counter without `_total`.
fn counters_and_gauges(out: &mut String, om: bool) {
    // 1,500 counter series.
    let counter = "wxcloudrun_call_deadline_exceeded";
    writeln!(
        out,
        "# HELP {counter}_total Calls answered after the callContainer limit."
    )
    .unwrap();
    if om {
        writeln!(out, "# TYPE {counter} counter").unwrap();
    } else {
        writeln!(out, "# TYPE {counter}_total counter").unwrap();
    }
    for i in 0..1500 {
        writeln!(out, "{counter}_total{{http_route=\"/api/v{}/things/{{id}}\",wx_service=\"order-api\",wx_appid=\"wx{:016x}\"}} {}", i % 37, i, i * 3).unwrap();
    }

    // 1,500 gauge series.
    out.push_str("# HELP http_server_active_requests Number of active HTTP server requests.\n");
    out.push_str("# TYPE http_server_active_requests gauge\n");
    for i in 0..1500 {
        writeln!(
            out,
            "http_server_active_requests{{http_request_method=\"{}\",wx_service=\"svc-{i}\"}} {}",
            METHODS[i % 4],
            i % 9
        )
        .unwrap();
    }
}

fn bench(c: &mut Criterion) {
    for (om, label) in [(false, "text"), (true, "openmetrics")] {
        let (body, lines) = page(om);
        let format = if om {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        };
        let parsed = parse(&body, format).expect("the benchmark page parses");
        assert_eq!(parsed.sample_count(), 10_000);
        eprintln!(
            "{label} page: {lines} lines, {} series, {} bytes ({:.1} bytes/line)",
            parsed.sample_count(),
            body.len(),
            body.len() as f64 / lines as f64
        );
        let mut group = c.benchmark_group("parse_10k_series");
        group.throughput(Throughput::Elements(lines as u64));
        group.bench_function(label, |b| b.iter(|| parse(black_box(&body), format)));
        group.finish();
    }

    let (body, _) = page(false);
    let parsed = parse(&body, Format::PrometheusText).expect("parses");
    c.bench_function("histogram_points_10k_series", |b| {
        b.iter(|| {
            let mut buckets = 0;
            for family in &parsed.families {
                if family.metric_type == MetricType::Histogram {
                    for point in family.histogram_points().expect("groups") {
                        buckets += point.buckets.len();
                    }
                }
            }
            black_box(buckets)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
