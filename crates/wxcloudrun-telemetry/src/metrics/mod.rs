//! The metric families of the contract, registered once in one registry, and what a request
//! records in them when it starts and when it ends.

mod client;
mod exemplar;
mod histogram;
mod process;
mod register;
mod series;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use self::client::CLIENT_DURATION;
pub(crate) use self::client::{ClientCall, ClientMetrics};
pub(crate) use self::exemplar::{Exemplar, SPAN_ID_LABEL, SampledRequest, TRACE_ID_LABEL};
pub(crate) use self::histogram::{ExemplarSnapshot, Histogram, HistogramFamily};
use self::process::{ColdStart, register_process_metrics};
use self::register::register_vec;
pub(crate) use self::series::RequestSeries;
use self::series::{DURATION, SeriesCache};
use crate::config::{ConfigError, WxTelemetryBuilder};
use crate::context::WxContext;
use crate::labels::{
    ErrorKind, HistogramLabels, METHOD_COUNT, MethodLabel, RequestLabels, Vocabulary, name,
};

/// Every metric family of the contract, registered in one registry.
pub(crate) struct Metrics {
    series: SeriesCache,
    active: [IntGauge; METHOD_COUNT],
    deadline_exceeded: IntCounterVec,
    call_deadline: Duration,
    overflow: IntCounterVec,
    cold_start: ColdStart,
}

impl Metrics {
    /// Registers every family of the contract in `registry` (the histograms through
    /// [`SeriesCache::register`]), and the `process_*` metrics when the builder asks for them.
    pub(crate) fn register(
        registry: &Registry,
        builder: &WxTelemetryBuilder,
        histogram: HistogramLabels,
        service: &str,
    ) -> Result<Self, ConfigError> {
        let series = SeriesCache::register(registry, builder, histogram)?;
        let active = register_vec(
            registry,
            (
                "http_server_active_requests",
                "Number of HTTP server requests in flight.",
            ),
            &[name::METHOD, name::SERVICE],
            IntGaugeVec::new,
        )?;
        let deadline_exceeded = register_vec(
            registry,
            (
                "wxcloudrun_call_deadline_exceeded_total",
                "Calls through the WeChat gateway that finished after the callContainer limit; \
                 the client already got error 102002.",
            ),
            &[name::ROUTE, name::SERVICE, name::APPID],
            IntCounterVec::new,
        )?;
        let cold_start = register_vec(
            registry,
            (
                "wxcloudrun_cold_start_seconds",
                "Time from process start to the end of the first response.",
            ),
            &[name::SERVICE],
            GaugeVec::new,
        )?;
        let overflow = register_vec(
            registry,
            (
                "wxcloudrun_label_overflow_total",
                "Requests whose label value was folded into _other by the cardinality guard.",
            ),
            &["metric", "label"],
            IntCounterVec::new,
        )?;
        register_build_info(registry)?;
        if builder.process_metrics {
            register_process_metrics(registry)?;
        }
        Ok(Metrics {
            series,
            active: MethodLabel::ALL
                .map(|method| active.with_label_values(&[method.as_str(), service])),
            deadline_exceeded,
            call_deadline: builder.call_deadline,
            overflow,
            cold_start: ColdStart::new(
                cold_start.with_label_values(&[service]),
                builder.process_start,
            ),
        })
    }

    /// The duration histogram, whose series keep exemplars: for the OpenMetrics rendering.
    pub(crate) fn duration_family(&self) -> HistogramFamily {
        self.series.duration_family().clone()
    }

    /// The `wxcloudrun_label_overflow_total` counter of a label of the duration histogram.
    pub(crate) fn overflow(&self, label: &str) -> IntCounter {
        self.overflow.with_label_values(&[DURATION, label])
    }

    /// Registers the client-report families in the same registry, with the same duration
    /// buckets; AppIDs the cap folds count in `wxcloudrun_label_overflow_total` under the client
    /// histogram's name.
    pub(crate) fn register_client(
        &self,
        registry: &Registry,
        builder: &WxTelemetryBuilder,
        service: Arc<str>,
    ) -> Result<ClientMetrics, ConfigError> {
        let appid_overflow = self
            .overflow
            .with_label_values(&[CLIENT_DURATION, name::APPID]);
        ClientMetrics::register(registry, &builder.duration_buckets, service, appid_overflow)
    }

    /// The series of a request: see [`SeriesCache::resolve`].
    pub(crate) fn resolve(
        &self,
        labels: &Vocabulary,
        method: &Method,
        route: Option<&str>,
        ctx: &WxContext,
    ) -> Arc<RequestSeries> {
        self.series.resolve(labels, method, route, ctx)
    }

    /// Records the start of a request; `true` when it is the process's first (the cold start).
    pub(crate) fn request_started(&self, labels: &RequestLabels) -> bool {
        self.active_gauge(labels).inc();
        self.cold_start.claim()
    }

    fn active_gauge(&self, labels: &RequestLabels) -> &IntGauge {
        &self.active[labels.method.index()]
    }

    /// Records the end of a request: duration (with its exemplar when the request was
    /// `sampled`), deadline, in-flight count and, for the first request, the cold start.
    pub(crate) fn request_finished(
        &self,
        labels: &Vocabulary,
        series: &RequestSeries,
        (status, error): (u16, ErrorKind),
        (elapsed, sampled): (Duration, Option<&SampledRequest>),
        cold: bool,
    ) {
        let request = &series.labels;
        self.active_gauge(request).dec();
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let outcome = labels.outcome(status, error);
        self.series
            .observe_duration(labels, series, outcome, (nanos, sampled));
        if request.via_gateway && elapsed > self.call_deadline {
            let route = labels.route(request.route);
            let appid = labels.appid(request.appid);
            self.deadline_exceeded
                .with_label_values(&[&*route, labels.service(), &appid])
                .inc();
        }
        if cold {
            self.cold_start.record();
        }
    }
}

/// `wxcloudrun_telemetry_build_info{version}`, always 1.
fn register_build_info(registry: &Registry) -> Result<(), ConfigError> {
    let build_info = register_vec(
        registry,
        (
            "wxcloudrun_telemetry_build_info",
            "Always 1; the version of wxcloudrun-telemetry that serves these metrics.",
        ),
        &["version"],
        IntGaugeVec::new,
    )?;
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{AccessNodeTable, OTHER, tests::ctx};
    use crate::metrics::exemplar::SampledRequest;

    fn metrics(builder: WxTelemetryBuilder) -> (Metrics, Vocabulary, Registry) {
        let registry = Registry::new();
        let histogram = HistogramLabels::new(&builder.histogram_labels);
        let metrics = Metrics::register(&registry, &builder, histogram, "svc").unwrap();
        let labels = Vocabulary::new(
            Arc::from("svc"),
            histogram,
            &builder.caps,
            AccessNodeTable::default(),
            |label| metrics.overflow(label),
        );
        (metrics, labels, registry)
    }

    /// Requests with fixed durations: (route, status, microseconds, sampled). The same list, run
    /// through the code from before exemplars, wrote `tests/golden/text-0.0.4.prom`.
    const GOLDEN: [(&str, u16, u64, bool); 10] = [
        ("/api/users/{id}", 200, 40, true),
        ("/api/users/{id}", 200, 55, false),
        ("/api/users/{id}", 200, 7_300, true),
        ("/api/users/{id}", 404, 120, true),
        ("/api/orders", 201, 31_000, true),
        ("/api/orders", 201, 31_500, false),
        ("/api/orders", 503, 2_400_000, true),
        ("/api/slow", 200, 16_000_000, true),
        ("/api/slow", 200, 45_000_000, true),
        ("/api/slow", 200, 900_000, false),
    ];

    /// The ids of request `n` of [`GOLDEN`], when it is sampled.
    fn golden_ids(n: usize) -> SampledRequest {
        let n = n as u64 + 1;
        let end = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + n);
        SampledRequest::new(u128::from(n) << 64 | 0xabc, n << 8, end)
    }

    /// [`GOLDEN`] recorded in a fresh registry, which is returned with the layer's metrics.
    fn golden() -> (Metrics, Vocabulary, Registry) {
        let builder = WxTelemetryBuilder::default().process_metrics(false);
        let (metrics, labels, registry) = metrics(builder);
        let gateway = ctx(
            &[("x-wx-source", "wx_client"), ("x-wx-appid", "wxa")],
            Some("10.0.0.1"),
        );
        let internet = ctx(&[], Some("10.0.0.2"));
        for (n, (route, status, micros, sampled)) in GOLDEN.iter().enumerate() {
            let ctx = if n % 2 == 0 { &gateway } else { &internet };
            let method = if *status == 201 {
                Method::POST
            } else {
                Method::GET
            };
            let series = metrics.resolve(&labels, &method, Some(route), ctx);
            let _ = metrics.request_started(&series.labels);
            let error = match *status >= 500 {
                true => ErrorKind::Status,
                false => ErrorKind::None,
            };
            let elapsed = Duration::from_micros(*micros);
            let ids = sampled.then(|| golden_ids(n));
            let finished = (elapsed, ids.as_ref());
            metrics.request_finished(&labels, &series, (*status, error), finished, false);
        }
        (metrics, labels, registry)
    }

    #[test]
    fn text_0_0_4_is_byte_identical_to_the_rendering_from_before_exemplars() {
        let (_, _, registry) = golden();
        let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
        let text = crate::endpoint::render(&registry).replace(&version, "version=\"0.1.0\"");
        let expected = include_str!("../../tests/golden/text-0.0.4.prom");
        assert!(
            text == expected,
            "text 0.0.4 changed:\n{}",
            first_difference(&text, expected)
        );
        assert!(!text.contains("trace_id"));
    }

    fn first_difference(actual: &str, expected: &str) -> String {
        let mut lines = actual.lines().zip(expected.lines());
        match lines.find(|(a, e)| a != e) {
            Some((a, e)) => format!("got      {a}\nexpected {e}"),
            None => format!(
                "{} lines, expected {}",
                actual.lines().count(),
                expected.lines().count()
            ),
        }
    }

    #[test]
    fn openmetrics_shows_the_latest_sampled_request_of_each_bucket() {
        let (metrics, labels, registry) = golden();
        // A later sampled request in the bucket of request 0 (same series, 0–5 ms) replaces it.
        let gateway = ctx(
            &[("x-wx-source", "wx_client"), ("x-wx-appid", "wxa")],
            Some("10.0.0.1"),
        );
        let series = metrics.resolve(&labels, &Method::GET, Some("/api/users/{id}"), &gateway);
        let later = golden_ids(100);
        let finished = (Duration::from_micros(60), Some(&later));
        metrics.request_finished(&labels, &series, (200, ErrorKind::None), finished, false);
        let text = crate::openmetrics::render(&registry, Some(&metrics.duration_family()));
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        let exemplar_lines: Vec<&str> = text.lines().filter(|l| l.contains(" # {")).collect();
        // Sampled: requests 0 (replaced by the later one), 2, 3, 4, 6, 7, 8, each in a bucket of
        // its own.
        assert_eq!(exemplar_lines.len(), 7, "{exemplar_lines:#?}");
        for line in &exemplar_lines {
            assert!(line.contains("_bucket{"), "exemplar off a bucket: {line}");
            assert_eq!(line.matches(" # {").count(), 1, "{line}");
            let labels = line.split(" # {").nth(1).and_then(|e| e.split('}').next());
            let labels = labels.expect("an exemplar label set");
            let chars: usize = labels
                .split(',')
                .map(|pair| pair.replace(['=', '"'], "").chars().count())
                .sum();
            assert!(chars <= 128, "{chars} characters: {line}");
        }
        let bucket = r#"http_route="/api/users/{id}",wx_access_node="10.0.0.1",wx_appid="wxa",wx_service="svc",wx_source="wx_client",le="0.005"} 2"#;
        let expected = format!(
            "{bucket} # {{trace_id=\"{:032x}\",span_id=\"{:016x}\"}} 0.00006 1700000000.101000000",
            later.trace_id, later.span_id
        );
        assert!(
            text.lines().any(|l| l.ends_with(&expected)),
            "{expected}\n{text}"
        );
        let beyond = golden_ids(8);
        let inf = format!("le=\"+Inf\"}} 1 # {{trace_id=\"{:032x}\"", beyond.trace_id);
        assert!(text.contains(&inf), "{inf}\n{text}");
        for unsampled in [0, 1, 5, 9] {
            let trace_id = format!("{:032x}", golden_ids(unsampled).trace_id);
            assert!(
                !text.contains(&trace_id),
                "request {unsampled} is not sampled"
            );
        }
        // Counters: the family without `_total`, the samples with it.
        assert!(text.contains("# TYPE wxcloudrun_call_deadline_exceeded counter\n"));
        assert!(text.contains("\nwxcloudrun_call_deadline_exceeded_total{"));
    }

    #[test]
    fn resolved_series_are_shared_by_equal_labels_only() {
        let (metrics, labels, _) = metrics(WxTelemetryBuilder::default());
        let a = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wxa")], None);
        let a_again = ctx(&[("x-wx-appid", "wxa"), ("x-wx-source", "wx_client")], None);
        let b = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wxb")], None);
        let first = metrics.resolve(&labels, &Method::GET, Some("/u"), &a);
        assert!(Arc::ptr_eq(
            &first,
            &metrics.resolve(&labels, &Method::GET, Some("/u"), &a_again)
        ));
        for (method, route, ctx) in [
            (Method::POST, Some("/u"), &a),
            (Method::GET, Some("/v"), &a),
            (Method::GET, None, &a),
            (Method::GET, Some("/u"), &b),
        ] {
            let other = metrics.resolve(&labels, &method, route, ctx);
            assert!(!Arc::ptr_eq(&first, &other), "{method} {route:?}");
            assert_ne!(
                (first.labels.method, first.labels.route, first.labels.appid),
                (other.labels.method, other.labels.route, other.labels.appid)
            );
        }
    }

    #[test]
    fn folded_values_count_their_overflow_on_every_request() {
        let (metrics, labels, registry) = metrics(WxTelemetryBuilder::default().max_appids(1));
        let first = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wx1")], None);
        let second = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wx2")], None);
        metrics.resolve(&labels, &Method::GET, Some("/u"), &first);
        for _ in 0..3 {
            let series = metrics.resolve(&labels, &Method::GET, Some("/u"), &second);
            assert_eq!(series.labels.appid, OTHER);
        }
        let text = crate::endpoint::render(&registry);
        let line = r#"wxcloudrun_label_overflow_total{label="wx_appid",metric="http_server_request_duration_seconds"} 3"#;
        assert!(text.lines().any(|l| l == line), "{text}");
    }

    #[test]
    fn a_hop_that_does_not_parse_falls_back_to_each_requests_peer() {
        let (metrics, labels, _) = metrics(WxTelemetryBuilder::default());
        // Without X-Forwarded-For the peer is the hop; its four bytes must not pass for the text
        // "abcd" of a hop that does not parse (which also falls back to the peer).
        let by_peer = ctx(&[], Some("97.98.99.100"));
        let garbled = ctx(&[("x-forwarded-for", "abcd")], Some("10.0.0.1"));
        let garbled_elsewhere = ctx(&[("x-forwarded-for", "abcd")], Some("10.0.0.2"));
        let node = |ctx: &WxContext| {
            let id = metrics
                .resolve(&labels, &Method::GET, Some("/"), ctx)
                .labels
                .access_node;
            labels.access_node(id).to_string()
        };
        assert_eq!(node(&by_peer), "97.98.99.100");
        assert_eq!(node(&garbled), "10.0.0.1");
        assert_eq!(node(&garbled_elsewhere), "10.0.0.2");
        assert_eq!(node(&by_peer), "97.98.99.100");
    }

    #[test]
    fn requests_ending_unlike_the_first_get_their_own_duration_series() {
        let (metrics, labels, registry) = metrics(WxTelemetryBuilder::default());
        let ctx = ctx(&[], None);
        let series = metrics.resolve(&labels, &Method::GET, Some("/u"), &ctx);
        for (status, error) in [
            (200, ErrorKind::None),
            (500, ErrorKind::Status),
            (200, ErrorKind::None),
            (0, ErrorKind::Cancelled),
        ] {
            let cold = metrics.request_started(&series.labels);
            let elapsed = Duration::from_millis(3);
            metrics.request_finished(&labels, &series, (status, error), (elapsed, None), cold);
        }
        let text = crate::endpoint::render(&registry);
        let count = |status: &str, error: &str| {
            let prefix = format!(
                "http_server_request_duration_seconds_count{{error_type=\"{error}\",http_request_method=\"GET\",http_response_status_code=\"{status}\",http_route=\"/u\","
            );
            text.lines()
                .find(|line| line.starts_with(&prefix))
                .and_then(|line| line.rsplit(' ').next())
                .unwrap_or_else(|| panic!("no series {status} {error} in\n{text}"))
                .to_owned()
        };
        assert_eq!(count("200", ""), "2");
        assert_eq!(count("500", "500"), "1");
        assert_eq!(count("", "cancelled"), "1");
    }
}
