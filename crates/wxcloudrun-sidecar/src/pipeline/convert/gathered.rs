//! The sidecar's own families straight from its registry, and `up`: exactly what rendering them
//! in the text format and parsing that back gave (the test below holds the two side by side),
//! without the text.

use std::sync::Arc;

use prometheus::proto::{self, MetricType};

use super::Converter;
use crate::model::{Family, Histogram, Kind, Point, Summary, Value, normalize_nan};

impl Converter {
    /// One gathered family, tracked as seen at `timestamp_ms`; none if it has no point.
    pub(super) fn gathered(
        &mut self,
        family: &proto::MetricFamily,
        timestamp_ms: i64,
    ) -> Option<Family> {
        let name = self.strings.get(family.name());
        let metric_type = family.get_field_type();
        let kind = match metric_type {
            MetricType::COUNTER => Kind::Counter,
            MetricType::GAUGE => Kind::Gauge,
            MetricType::HISTOGRAM => Kind::Histogram,
            MetricType::SUMMARY => Kind::Summary,
            // No metric of the prometheus crate gathers as untyped (its text encoder could not
            // render one either).
            MetricType::UNTYPED => return None,
        };
        let points: Vec<Point> = family
            .get_metric()
            .iter()
            .map(|metric| {
                let labels = metric.get_label().iter();
                let labels = self.labels(labels.map(|l| (l.name(), l.value())));
                let value = gathered_value(&name, metric_type, metric);
                self.point(&name, kind, labels, value, None, Some(timestamp_ms))
            })
            .collect();
        self.family(name, family.help(), "", kind, points)
    }

    /// `up`: whether the app's page was read in this scrape.
    pub(super) fn up(&mut self, up: bool, timestamp_ms: i64) -> Family {
        let name = self.strings.get("up");
        let labels = self.labels(std::iter::empty());
        let value = Value::Number {
            name: name.clone(),
            value: f64::from(u8::from(up)),
            exemplar: None,
        };
        let point = self.point(&name, Kind::Gauge, labels, value, None, Some(timestamp_ms));
        Family {
            name,
            help: self.strings.get(""),
            unit: self.strings.get(""),
            kind: Kind::Gauge,
            points: vec![point],
        }
    }
}

/// A metric's value as its text rendering says it: histogram buckets with `+Inf` (the count)
/// added when missing, sorted by bound as the parser sorts them.
fn gathered_value(name: &Arc<str>, metric_type: MetricType, metric: &proto::Metric) -> Value {
    let number = |value: f64| Value::Number {
        name: name.clone(),
        value: normalize_nan(value),
        exemplar: None,
    };
    match metric_type {
        MetricType::COUNTER | MetricType::UNTYPED => number(metric.get_counter().get_value()),
        MetricType::GAUGE => number(metric.get_gauge().get_value()),
        MetricType::HISTOGRAM => {
            let histogram = metric.get_histogram();
            let count = histogram.get_sample_count() as f64;
            let mut buckets: Vec<(f64, f64)> = histogram
                .get_bucket()
                .iter()
                .map(|b| (b.upper_bound(), b.cumulative_count() as f64))
                .collect();
            if !buckets
                .iter()
                .any(|b| b.0.is_infinite() && b.0.is_sign_positive())
            {
                buckets.push((f64::INFINITY, count));
            }
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            Value::Histogram(Box::new(Histogram {
                count,
                sum: Some(normalize_nan(histogram.get_sample_sum())),
                buckets,
                exemplars: Default::default(),
                stale: false,
            }))
        }
        MetricType::SUMMARY => {
            let summary = metric.get_summary();
            let mut quantiles: Vec<(f64, f64)> = summary
                .get_quantile()
                .iter()
                .map(|q| (q.quantile(), normalize_nan(q.value())))
                .collect();
            quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
            Value::Summary(Box::new(Summary {
                count: summary.sample_count() as f64,
                sum: Some(normalize_nan(summary.sample_sum())),
                quantiles,
                stale: false,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};
    use wxcloudrun_exposition::{Format, parse};

    use crate::metrics::SelfMetrics;
    use crate::model::Batch;
    use crate::pipeline::convert::{Converter, Source};

    fn added() -> Vec<(String, String)> {
        vec![
            ("instance".to_owned(), "pod-1".to_owned()),
            ("wx_service".to_owned(), "orders".to_owned()),
        ]
    }

    /// The self-metrics as the sidecar exported them before: rendered as text, parsed back, and
    /// converted with a text `up` page.
    fn text_path(
        converter: &mut Converter,
        gathered: &[prometheus::proto::MetricFamily],
        up: bool,
        timestamp_ms: i64,
    ) -> Batch {
        let mut text = Vec::new();
        TextEncoder::new().encode(gathered, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        let own = parse(&text, Format::PrometheusText).unwrap();
        let up_text = format!("# TYPE up gauge\nup {}\n", u8::from(up));
        let up = parse(&up_text, Format::PrometheusText).unwrap();
        converter.convert([Source::Page(&own), Source::Page(&up)], timestamp_ms)
    }

    /// Every kind of self-metric, with values that exercise the rendering (a fraction, a large
    /// count, a histogram with observations in several buckets and past the last).
    fn busy_metrics() -> SelfMetrics {
        let metrics = SelfMetrics::new();
        for (outcome, seconds) in [
            ("success", 0.0004),
            ("success", 0.03),
            ("error", 0.7),
            ("timeout", 14.0),
        ] {
            metrics.scrape(outcome, seconds, Some(10_503));
        }
        metrics.shutdown_flush("timeout");
        let exporter = metrics.exporter("remote_write \"eu\\1\"", 64 << 20);
        exporter.success.inc_by(123_456_789);
        exporter.retries.inc();
        exporter.queue_bytes.set(1 << 40);
        exporter.dropped_queue_full.inc_by(7);
        exporter.last_success.set(1_700_000_000.123_456);
        exporter
            .errors(crate::export::FailureReason::ALL[0])
            .inc_by(3);
        metrics.exporter("otlp", 1 << 16);
        metrics
    }

    #[test]
    fn gathered_families_are_what_their_text_gave() {
        let metrics = busy_metrics();
        let mut by_text = Converter::new(&added(), Some(1_000));
        let mut direct = Converter::new(&added(), Some(1_000));
        for (round, up) in [(0, true), (1, false), (2, true)] {
            if round == 1 {
                metrics.scrape("success", 0.2, None);
            }
            // One gathering for both: the process collector's values move between two.
            let gathered = metrics.registry().gather();
            let timestamp_ms = 10_000 + 1_000 * round;
            let expected = text_path(&mut by_text, &gathered, up, timestamp_ms);
            let batch = direct.convert([Source::Gathered(&gathered), Source::Up(up)], timestamp_ms);
            assert_eq!(batch, expected, "round {round}");
            let names: Vec<&str> = batch.families.iter().map(|f| &*f.name).collect();
            for name in [
                "up",
                "wxcloudrun_sidecar_scrape_duration_seconds",
                "wxcloudrun_sidecar_scrapes_total",
                "wxcloudrun_sidecar_last_export_success_timestamp_seconds",
                "wxcloudrun_sidecar_export_errors_total",
            ] {
                assert!(names.contains(&name), "{name} missing from {names:?}");
            }
            #[cfg(target_os = "linux")]
            assert!(
                names.contains(&"wxcloudrun_sidecar_process_resident_memory_bytes"),
                "{names:?}"
            );
        }
    }

    #[test]
    fn a_family_gone_from_the_registry_gets_stale_markers_as_before() {
        let metrics = busy_metrics();
        let mut by_text = Converter::new(&added(), None);
        let mut direct = Converter::new(&added(), None);
        let gathered = metrics.registry().gather();
        text_path(&mut by_text, &gathered, true, 1_000);
        direct.convert([Source::Gathered(&gathered), Source::Up(true)], 1_000);
        // The next scrape has only `up`.
        let up = parse("# TYPE up gauge\nup 1\n", Format::PrometheusText).unwrap();
        let mut expected = by_text.convert([Source::Page(&up)], 2_000);
        let mut batch = direct.convert([Source::Up(true)], 2_000);
        for batch in [&mut expected, &mut batch] {
            for family in &mut batch.families {
                family.points.sort_by(|a, b| a.labels.cmp(&b.labels));
            }
        }
        // Stale markers are NaNs, which `==` never equals: compared as printed, stale checked.
        assert_eq!(format!("{batch:?}"), format!("{expected:?}"));
        let stale = batch.families.iter().filter(|f| &*f.name != "up");
        assert!(stale.flat_map(|f| &f.points).all(|p| p.value.is_stale()));
        assert!(batch.families.len() > 5);
    }
}
