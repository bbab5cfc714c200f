//! A realistic 10,000-series page, shared by the pipeline benchmarks: what a busy service wrapped
//! with `WxTelemetryLayer` exposes (duration histograms by route, status and app) plus plain
//! counters and gauges.

use std::fmt::Write;

const BUCKETS: [&str; 16] = [
    "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5", "5",
    "7.5", "10", "15", "30",
];

/// 500 histogram label sets × 18 series (16 finite buckets, `+Inf`, sum, count) = 9,000 series,
/// then 500 counters and 500 gauges: 10,000 series in all.
pub(crate) fn page() -> String {
    let mut out = String::with_capacity(2 << 20);
    out.push_str("# HELP http_server_request_duration_seconds Duration of HTTP server requests.\n");
    out.push_str("# TYPE http_server_request_duration_seconds histogram\n");
    for route in 0..20 {
        for status in ["200", "201", "404", "500", "503"] {
            for app in 0..5 {
                let labels = format!(
                    "error_type=\"\",http_request_method=\"GET\",http_response_status_code=\"{status}\",\
                     http_route=\"/api/v1/resource{route}/{{id}}\",wx_access_node=\"10.8.0.{app}\",\
                     wx_appid=\"wx00000000000000{app:02}\",wx_service=\"orders\",wx_source=\"wx_client\""
                );
                let mut cumulative = 0;
                for (i, le) in BUCKETS.iter().enumerate() {
                    cumulative += (route + app + i) % 7;
                    let _ = writeln!(
                        out,
                        "http_server_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(
                    out,
                    "http_server_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
                );
                let _ = writeln!(
                    out,
                    "http_server_request_duration_seconds_sum{{{labels}}} {}.25",
                    cumulative / 3
                );
                let _ = writeln!(
                    out,
                    "http_server_request_duration_seconds_count{{{labels}}} {cumulative}"
                );
            }
        }
    }
    out.push_str("# TYPE jobs_processed_total counter\n");
    for i in 0..500 {
        let _ = writeln!(
            out,
            "jobs_processed_total{{queue=\"q{i}\",worker=\"w{}\"}} {}",
            i % 8,
            i * 17
        );
    }
    out.push_str("# TYPE queue_depth gauge\n");
    for i in 0..500 {
        let _ = writeln!(out, "queue_depth{{queue=\"q{i}\"}} {}", i % 50);
    }
    out
}

/// [`page`] as OpenMetrics with an exemplar on every bucket line, as the layer writes them with
/// every request sampled (`trace_id`, `span_id`, the duration, a nanosecond time): 8,500
/// exemplars. `round` changes every id, value and time, not the shape: each scrape's page.
#[allow(dead_code)] // Each bench binary uses its own subset.
pub(crate) fn page_with_exemplars(round: u32) -> String {
    let text = page().replace(
        "# TYPE jobs_processed_total counter",
        "# TYPE jobs_processed counter",
    );
    let mut out = String::with_capacity(text.len() * 2);
    for (i, line) in text.lines().enumerate() {
        out.push_str(line);
        if line.starts_with("http_server_request_duration_seconds_bucket") {
            let _ = write!(
                out,
                " # {{trace_id=\"{round:08x}{i:024x}\",span_id=\"{i:08x}{round:08x}\"}} 0.{:04} 1700000{:03}.{:09}",
                (i * 7 + round as usize) % 10_000,
                round % 1000,
                i * 1_000 + round as usize
            );
        }
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}
