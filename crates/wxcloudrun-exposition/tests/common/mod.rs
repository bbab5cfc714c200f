//! Renders a parse result to a canonical text, so that expectations read like the page:
//!
//! ```text
//! family <name> <type> [help=<debug>] [unit=<debug>]
//!   <sample>{<label>=<debug value>,…} <value> [ts=<ms>] [created=<ms>] [# {…} <value> [ts=<ms>]]
//!   point{…} buckets=[<le>:<count>,…] count=<c> sum=<s> [created=<ms>]
//!   point{…} quantiles=[<q>:<v>,…] count=<c> sum=<s>
//!   no bound: <sample>{…}
//! duplicates=<n>
//! ```
//!
//! Values use Rust's `{:?}` (`1.0`, `NaN`, `inf`); label values and help use `{:?}`, so escapes
//! show as written in Rust source. `no bound` lists what `samples_without_bound` returns.

#![allow(dead_code)] // each test file uses part of it

use std::fmt::Write as _;

use wxcloudrun_exposition::{Exposition, Format, Label, MetricType, ParseError, parse};

pub(crate) const TEXT: Format = Format::PrometheusText;
pub(crate) const OM: Format = Format::OpenMetrics;

pub(crate) fn labels(labels: &[Label<'_>]) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", inner.join(","))
}

pub(crate) fn render(exposition: &Exposition<'_>, format: Format) -> String {
    let mut out = String::new();
    for family in &exposition.families {
        write!(
            out,
            "family {} {}",
            family.name,
            family.metric_type.as_str(format)
        )
        .unwrap();
        if let Some(help) = family.help() {
            write!(out, " help={help:?}").unwrap();
        }
        if let Some(unit) = family.unit() {
            write!(out, " unit={unit:?}").unwrap();
        }
        out.push('\n');
        for s in &family.samples {
            write!(out, "  {}{} {:?}", s.name, labels(&s.labels), s.value).unwrap();
            if let Some(ts) = s.timestamp_ms.get() {
                write!(out, " ts={ts}").unwrap();
            }
            if let Some(created) = s.created_ms.get() {
                write!(out, " created={created}").unwrap();
            }
            if let Some(e) = &s.exemplar {
                write!(out, " # {} {:?}", labels(&e.labels), e.value).unwrap();
                if let Some(ts) = e.timestamp_ms {
                    write!(out, " ts={ts}").unwrap();
                }
            }
            out.push('\n');
        }
        if matches!(
            family.metric_type,
            MetricType::Histogram | MetricType::GaugeHistogram
        ) {
            for p in family.histogram_points().expect("histogram groups") {
                let buckets: Vec<String> = p
                    .buckets
                    .iter()
                    .map(|b| format!("{:?}:{:?}", b.upper_bound, b.cumulative_count))
                    .collect();
                write!(
                    out,
                    "  point{} buckets=[{}] count={:?} sum={:?}",
                    labels(&p.labels),
                    buckets.join(","),
                    p.count,
                    p.sum
                )
                .unwrap();
                if let Some(created) = p.created_ms {
                    write!(out, " created={created}").unwrap();
                }
                out.push('\n');
            }
        }
        if family.metric_type == MetricType::Summary {
            for p in family.summary_points().expect("summary groups") {
                let quantiles: Vec<String> = p
                    .quantiles
                    .iter()
                    .map(|q| format!("{:?}:{:?}", q.quantile, q.value))
                    .collect();
                writeln!(
                    out,
                    "  point{} quantiles=[{}] count={:?} sum={:?}",
                    labels(&p.labels),
                    quantiles.join(","),
                    p.count,
                    p.sum
                )
                .unwrap();
            }
        }
        for s in family.samples_without_bound() {
            writeln!(out, "  no bound: {}{}", s.name, labels(&s.labels)).unwrap();
        }
    }
    writeln!(out, "duplicates={}", exposition.duplicates).unwrap();
    out
}

pub(crate) fn outcome(result: Result<Exposition<'_>, ParseError>, format: Format) -> String {
    match result {
        Ok(exposition) => render(&exposition, format),
        Err(e) => format!("error: {e}\n"),
    }
}

/// Runs a table of `(name, format, page, expected rendering)`; reports every mismatch at once.
pub(crate) fn run_table(cases: &[(&str, Format, &str, &str)]) {
    let mut failures = Vec::new();
    for &(name, format, page, expected) in cases {
        let actual = outcome(parse(page, format), format);
        if actual != expected {
            failures.push(format!(
                "--- {name} ({format:?})\npage:\n{page}\nexpected:\n{expected}actual:\n{actual}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
