//! The OpenMetrics 1.0 text rendering of a registry, with the duration histogram's exemplars, and
//! the `Accept` negotiation that picks it over text 0.0.4.
//!
//! Our own encoder: `prometheus` 0.14 encodes text 0.0.4 and protobuf only, and its model has no
//! exemplars. What differs from text 0.0.4 here:
//!
//! - a counter named `x_total` is the family `x` in `# TYPE`/`# HELP`, its samples keep `x_total`;
//!   a counter whose name lacks `_total` is exposed as `unknown` under its own name, so that the
//!   series a scraper stores keep the same name whichever format it asked for;
//! - `"` is escaped in `# HELP` too, timestamps are in seconds, non-finite values are spelled
//!   `+Inf`, `-Inf`, `NaN`, and the page ends with `# EOF`;
//! - histogram buckets may carry ` # {trace_id="…",span_id="…"} value timestamp`.
//!
//! Bucket bounds (`le`) and quantiles are spelled exactly as the text 0.0.4 encoder spells them
//! (`le="1"`, not `"1.0"`): Prometheus 2 stores the label as written, so one spelling in both
//! formats keeps one series per bucket whichever format a scrape got.

use std::fmt::Write as _;

use http::{HeaderMap, header};
use prometheus::Registry;
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};

use crate::metrics::{Exemplar, ExemplarSnapshot, HistogramFamily, SPAN_ID_LABEL, TRACE_ID_LABEL};

/// The content type of OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

const OPENMETRICS_MEDIA_TYPE: &str = "application/openmetrics-text";

/// Whether `Accept` prefers OpenMetrics to text 0.0.4: some `application/openmetrics-text`
/// (version 1.0.0, 0.0.1 or none) with a quality above zero and not below that of `text/plain`.
/// Prometheus sends `application/openmetrics-text;version=1.0.0,…,text/plain;version=0.0.4;q=0.5`.
pub(crate) fn wants_openmetrics(headers: &HeaderMap) -> bool {
    let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
    let ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for range in ranges {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let (mut quality, mut version_ok) = (Some(1.0f32), true);
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => quality = value.parse().ok().filter(|q: &f32| (0.0..=1.0).contains(q)),
                "version" => version_ok = matches!(value, "1.0.0" | "0.0.1"),
                _ => {}
            }
        }
        let Some(quality) = quality else { continue };
        if media.eq_ignore_ascii_case(OPENMETRICS_MEDIA_TYPE) && version_ok {
            openmetrics = openmetrics.max(quality);
        } else if media.eq_ignore_ascii_case("text/plain") {
            text = text.max(quality);
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

/// Renders `registry` in OpenMetrics 1.0 text, with the exemplars of `exemplars` (a family
/// registered in `registry`) on its bucket lines.
pub(crate) fn render(registry: &Registry, exemplars: Option<&HistogramFamily>) -> String {
    // Before gathering: the counts gathered after it include every exemplar's observation.
    let snapshot = exemplars.map(|family| (family.name().to_owned(), family.exemplars()));
    let families = registry.gather();
    let mut out = String::with_capacity(16 * 1024);
    for family in &families {
        let exemplars = snapshot
            .as_ref()
            .filter(|(name, _)| name == family.name())
            .map(|(_, snapshot)| snapshot);
        write_family(&mut out, family, exemplars);
    }
    out.push_str("# EOF\n");
    out
}

fn write_family(out: &mut String, family: &MetricFamily, exemplars: Option<&ExemplarSnapshot>) {
    let name = family.name();
    let kind = family.get_field_type();
    let (family_name, type_name) = match kind {
        MetricType::COUNTER => match name.strip_suffix("_total") {
            Some(stem) => (stem, "counter"),
            None => (name, "unknown"),
        },
        MetricType::GAUGE => (name, "gauge"),
        MetricType::HISTOGRAM => (name, "histogram"),
        MetricType::SUMMARY => (name, "summary"),
        MetricType::UNTYPED => (name, "unknown"),
    };
    if !family.help().is_empty() {
        let _ = writeln!(out, "# HELP {family_name} {}", Escaped(family.help()));
    }
    let _ = writeln!(out, "# TYPE {family_name} {type_name}");
    for metric in family.get_metric() {
        match kind {
            MetricType::COUNTER => {
                let value = metric.get_counter().get_value();
                write_sample(out, (name, ""), metric, None, value);
                out.push('\n');
            }
            MetricType::GAUGE => {
                write_sample(
                    out,
                    (name, ""),
                    metric,
                    None,
                    metric.get_gauge().get_value(),
                );
                out.push('\n');
            }
            // No `prometheus` metric is untyped; a custom collector's can be (and would make
            // the text 0.0.4 encoder panic), so it is read through the deprecated accessor.
            #[allow(deprecated)]
            MetricType::UNTYPED => {
                let value = metric.get_untyped().get_value();
                write_sample(out, (name, ""), metric, None, value);
                out.push('\n');
            }
            MetricType::HISTOGRAM => write_histogram(out, name, metric, exemplars),
            MetricType::SUMMARY => write_summary(out, name, metric),
        }
    }
}

fn write_histogram(
    out: &mut String,
    name: &str,
    metric: &Metric,
    exemplars: Option<&ExemplarSnapshot>,
) {
    let histogram = metric.get_histogram();
    let slots = exemplars.and_then(|snapshot| Some((snapshot, snapshot.of(metric.get_label())?)));
    let mut inf_seen = false;
    let buckets = histogram.get_bucket();
    for (index, bucket) in buckets.iter().enumerate() {
        let bound = bucket.upper_bound();
        inf_seen |= bound == f64::INFINITY;
        let le = if bound == f64::INFINITY {
            "+Inf".to_owned()
        } else {
            bound.to_string()
        };
        let value = bucket.cumulative_count() as f64;
        write_sample(out, (name, "_bucket"), metric, Some(("le", &le)), value);
        write_exemplar(out, slots, index);
        out.push('\n');
    }
    if !inf_seen {
        let count = histogram.get_sample_count() as f64;
        write_sample(out, (name, "_bucket"), metric, Some(("le", "+Inf")), count);
        // The slots end with the one of `+Inf`, past the last explicit bound.
        write_exemplar(out, slots, buckets.len());
        out.push('\n');
    }
    write_sample(
        out,
        (name, "_sum"),
        metric,
        None,
        histogram.get_sample_sum(),
    );
    out.push('\n');
    let count = histogram.get_sample_count() as f64;
    write_sample(out, (name, "_count"), metric, None, count);
    out.push('\n');
}

fn write_summary(out: &mut String, name: &str, metric: &Metric) {
    let summary = metric.get_summary();
    for quantile in summary.get_quantile() {
        let q = quantile.quantile().to_string();
        write_sample(
            out,
            (name, ""),
            metric,
            Some(("quantile", &q)),
            quantile.value(),
        );
        out.push('\n');
    }
    write_sample(out, (name, "_sum"), metric, None, summary.sample_sum());
    out.push('\n');
    let count = summary.sample_count() as f64;
    write_sample(out, (name, "_count"), metric, None, count);
    out.push('\n');
}

/// One sample line without its end: name, labels, value, timestamp.
fn write_sample(
    out: &mut String,
    (name, suffix): (&str, &str),
    metric: &Metric,
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let pairs = metric.get_label();
    if !pairs.is_empty() || extra.is_some() {
        let mut separator = '{';
        let extra = extra.iter().map(|&(name, value)| (name, value));
        let all = pairs
            .iter()
            .map(LabelPair::name)
            .zip(pairs.iter().map(LabelPair::value));
        for (label, label_value) in all.chain(extra) {
            out.push(separator);
            let _ = write!(out, "{label}=\"{}\"", Escaped(label_value));
            separator = ',';
        }
        out.push('}');
    }
    out.push(' ');
    write_number(out, value);
    let timestamp_ms = metric.timestamp_ms();
    if timestamp_ms != 0 {
        let sign = if timestamp_ms < 0 { "-" } else { "" };
        let ms = timestamp_ms.unsigned_abs();
        let _ = write!(out, " {sign}{}.{:03}", ms / 1000, ms % 1000);
    }
}

/// ` # {trace_id="…",span_id="…"} value timestamp` when bucket `index` has an exemplar.
fn write_exemplar(
    out: &mut String,
    slots: Option<(&ExemplarSnapshot, &[Option<Exemplar>])>,
    index: usize,
) {
    let Some((snapshot, slots)) = slots else {
        return;
    };
    let Some(Some(exemplar)) = slots.get(index) else {
        return;
    };
    let request = &exemplar.request;
    let _ = write!(
        out,
        " # {{{TRACE_ID_LABEL}=\"{:032x}\",{SPAN_ID_LABEL}=\"{:016x}\"}} ",
        request.trace_id, request.span_id
    );
    write_number(out, snapshot.exposed(exemplar));
    let nanos = request.unix_nanos;
    let _ = write!(
        out,
        " {}.{:09}",
        nanos / 1_000_000_000,
        nanos % 1_000_000_000
    );
}

fn write_number(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

/// A label value or help text with `\`, newline and `"` escaped, as OpenMetrics requires of both.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['\\', '\n', '"']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'\n' => "\\n",
                _ => "\\\"",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, value.parse().unwrap());
        wants_openmetrics(&headers)
    }

    #[test]
    fn negotiation_follows_the_accept_header() {
        // Prometheus 2.42's scrape header.
        assert!(accept(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(accept("application/openmetrics-text"));
        assert!(accept("Application/OpenMetrics-Text; version=\"1.0.0\""));
        assert!(!accept("text/plain;version=0.0.4"));
        assert!(!accept("*/*"));
        assert!(!accept("application/openmetrics-text;q=0"));
        assert!(!accept(
            "application/openmetrics-text;q=0.4, text/plain;q=0.5"
        ));
        assert!(!accept("application/openmetrics-text;version=2.0.0"));
        assert!(!accept("application/openmetrics-text;q=banana"));
        assert!(!wants_openmetrics(&HeaderMap::new()));
    }

    #[test]
    fn escaping_covers_backslash_newline_and_quote() {
        assert_eq!(Escaped("a\\b\n\"c\"").to_string(), r#"a\\b\n\"c\""#);
        assert_eq!(Escaped("plain").to_string(), "plain");
    }

    #[test]
    fn counters_drop_total_in_metadata_only_and_the_page_ends_with_eof() {
        let registry = Registry::new();
        let total = prometheus::IntCounter::new("jobs_total", "Jobs \"done\".").unwrap();
        let bare = prometheus::IntCounter::new("legacy", "No suffix.").unwrap();
        let gauge = prometheus::Gauge::new("temperature", "T.").unwrap();
        registry.register(Box::new(total.clone())).unwrap();
        registry.register(Box::new(bare.clone())).unwrap();
        registry.register(Box::new(gauge.clone())).unwrap();
        total.inc_by(3);
        bare.inc();
        gauge.set(f64::NEG_INFINITY);
        let text = render(&registry, None);
        let expected = "# HELP jobs Jobs \\\"done\\\".\n# TYPE jobs counter\njobs_total 3\n\
                        # HELP legacy No suffix.\n# TYPE legacy unknown\nlegacy 1\n\
                        # HELP temperature T.\n# TYPE temperature gauge\ntemperature -Inf\n# EOF\n";
        assert_eq!(text, expected);
    }
}
