//! The metric contract the dashboards and rules may use: the layer's metrics (DESIGN.md, "Metric
//! contract"), the standard `process_*` metrics the layer registers, and the sidecar's
//! self-metrics, read from the table in `dashboards/README.md` that the sidecar implements.

use std::collections::BTreeSet;

/// How a metric family appears as series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One series per label set, named `…_total`.
    Counter,
    /// One series per label set.
    Gauge,
    /// `_bucket`, `_sum` and `_count` series.
    Histogram,
}

/// The layer's metrics, as DESIGN.md names them, and those of its client reports (DESIGN.md,
/// "Mini Program client and client metrics"; `dashboards/README.md`, "Client metric contract").
pub const LAYER: &[(&str, Kind)] = &[
    ("http_server_request_duration_seconds", Kind::Histogram),
    ("http_server_active_requests", Kind::Gauge),
    ("http_server_request_body_size_bytes", Kind::Histogram),
    ("http_server_response_body_size_bytes", Kind::Histogram),
    ("wxcloudrun_call_deadline_exceeded_total", Kind::Counter),
    ("wxcloudrun_cold_start_seconds", Kind::Gauge),
    ("wxcloudrun_label_overflow_total", Kind::Counter),
    ("wxcloudrun_telemetry_build_info", Kind::Gauge),
    (
        "wxcloudrun_client_request_duration_seconds",
        Kind::Histogram,
    ),
    ("wxcloudrun_client_overhead_seconds", Kind::Histogram),
    ("wxcloudrun_client_reports_total", Kind::Counter),
    ("wxcloudrun_client_dropped_calls_total", Kind::Counter),
];

/// The process collector's metrics (the layer registers them on Linux).
pub const PROCESS: &[(&str, Kind)] = &[
    ("process_cpu_seconds_total", Kind::Counter),
    ("process_open_fds", Kind::Gauge),
    ("process_max_fds", Kind::Gauge),
    ("process_virtual_memory_bytes", Kind::Gauge),
    ("process_resident_memory_bytes", Kind::Gauge),
    ("process_start_time_seconds", Kind::Gauge),
    ("process_threads", Kind::Gauge),
];

/// The heading of the sidecar's table in `dashboards/README.md`.
pub const SIDECAR_HEADING: &str = "Sidecar self-metric contract";

/// The sidecar's self-metrics: the rows of the table under [`SIDECAR_HEADING`], whose first two
/// cells are the name in backticks and its type.
pub fn sidecar(readme: &str) -> Vec<(String, Kind)> {
    let section = readme
        .split_once(SIDECAR_HEADING)
        .map(|(_, rest)| rest)
        .expect("dashboards/README.md has the sidecar self-metric contract");
    // The table ends at the next heading.
    let section = section.split("\n#").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let kind = match *cells.get(2)? {
                "counter" => Kind::Counter,
                "gauge" => Kind::Gauge,
                "histogram" => Kind::Histogram,
                other => panic!("sidecar metric {name}: unknown type {other:?}"),
            };
            Some((name.to_owned(), kind))
        })
        .collect()
}

/// Series names a family produces: a histogram's `_bucket`, `_sum` and `_count`.
pub fn series_names(families: &[(String, Kind)]) -> BTreeSet<String> {
    families
        .iter()
        .flat_map(|(name, kind)| match kind {
            Kind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{name}{suffix}"))
                .collect::<Vec<_>>(),
            _ => vec![name.clone()],
        })
        .collect()
}

/// Every series name the contract allows, given the README's text.
pub fn all_series(readme: &str) -> BTreeSet<String> {
    let mut families: Vec<(String, Kind)> = LAYER
        .iter()
        .chain(PROCESS)
        .map(|(name, kind)| ((*name).to_owned(), *kind))
        .collect();
    families.extend(sidecar(readme));
    series_names(&families)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sidecar_table_and_expands_histograms() {
        let readme = "# x\n## Sidecar self-metric contract\n\n| metric | type | labels |\n|---|---|---|\n\
            | `a_total` | counter | `outcome` |\n| `b_seconds` | histogram | |\n\n## Next\n| `c` | gauge | |\n";
        let all = all_series(readme);
        assert!(
            all.contains("a_total")
                && all.contains("b_seconds_bucket")
                && all.contains("b_seconds_count")
        );
        assert!(!all.contains("b_seconds") && !all.contains("c"), "{all:?}");
        assert!(all.contains("http_server_request_duration_seconds_sum"));
    }
}
