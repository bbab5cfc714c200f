//! The series of the histogram families, resolved once per label combination: a request for a
//! known route and method costs one lookup and a few atomic adds, not allocations.

use std::sync::{Arc, OnceLock};

use http::Method;
use prometheus::Registry;

use super::exemplar::SampledRequest;
use super::histogram::{Histogram, HistogramFamily};
use crate::cache::ReadMostlyMap;
use crate::config::{ConfigError, WxTelemetryBuilder};
use crate::context::WxContext;
use crate::labels::{
    HistogramLabels, LabelId, MethodLabel, Outcome, RequestLabels, SeriesKey, Vocabulary, name,
};

/// The duration histogram, and the `metric` of every `wxcloudrun_label_overflow_total` series.
pub(super) const DURATION: &str = "http_server_request_duration_seconds";

/// Durations are observed in nanoseconds and exposed in seconds.
const NANOS_PER_SECOND: f64 = 1e9;

/// How many label combinations [`SeriesCache::resolve`] remembers. The label caps bound each
/// label, not their product; past this, requests take the per-label path (and allocate their
/// [`RequestSeries`]).
const RESOLVED_CAP: usize = 8192;

/// The request and response body-size histograms of one method and route.
#[derive(Clone)]
pub(crate) struct BodySizes {
    pub(crate) request: Histogram,
    pub(crate) response: Histogram,
}

/// Everything the metrics need for requests with one set of labels, resolved once and shared by
/// every later request with the same method, route, AppID, source and access hop: the hot path is
/// one lookup instead of one per label and per family.
pub(crate) struct RequestSeries {
    pub(crate) labels: RequestLabels,
    pub(crate) sizes: BodySizes,
    /// The duration series of the first request that finished: most requests of a route end the
    /// same way (status, error), and then need no lookup at all.
    usual_duration: OnceLock<(Outcome, Histogram)>,
}

/// The three histogram families and their series, by label combination.
pub(crate) struct SeriesCache {
    duration: HistogramFamily,
    request_size: HistogramFamily,
    response_size: HistogramFamily,
    durations: ReadMostlyMap<SeriesKey, Histogram>,
    body_sizes: ReadMostlyMap<(MethodLabel, LabelId), BodySizes>,
    /// Keyed by the raw inputs of [`Vocabulary::request_labels`] (see
    /// [`ResolveKey`](crate::labels::ResolveKey)).
    resolved: ReadMostlyMap<Box<[u8]>, Arc<RequestSeries>>,
}

impl SeriesCache {
    /// Registers the duration histogram, with the labels `histogram` names, and the body-size
    /// histograms.
    pub(super) fn register(
        registry: &Registry,
        builder: &WxTelemetryBuilder,
        histogram: HistogramLabels,
    ) -> Result<Self, ConfigError> {
        let duration = HistogramFamily::with_exemplars(
            DURATION,
            "Duration of HTTP server requests, to the end of the response body.",
            &histogram.names(),
            &builder.duration_buckets,
            NANOS_PER_SECOND,
            true,
        )?;
        registry.register(Box::new(duration.clone()))?;
        let size_labels = [name::METHOD, name::ROUTE, name::SERVICE];
        let request_size = HistogramFamily::register(
            registry,
            (
                "http_server_request_body_size_bytes",
                "Size of HTTP server request bodies, in bytes.",
            ),
            &size_labels,
            &builder.body_size_buckets,
            1.0,
        )?;
        let response_size = HistogramFamily::register(
            registry,
            (
                "http_server_response_body_size_bytes",
                "Size of HTTP server response bodies, in bytes.",
            ),
            &size_labels,
            &builder.body_size_buckets,
            1.0,
        )?;
        Ok(SeriesCache {
            duration,
            request_size,
            response_size,
            durations: ReadMostlyMap::default(),
            body_sizes: ReadMostlyMap::default(),
            resolved: ReadMostlyMap::default(),
        })
    }

    /// The series of a request, from its method, route template and gateway context: one cache
    /// lookup for a label combination seen before.
    pub(super) fn resolve(
        &self,
        labels: &Vocabulary,
        method: &Method,
        route: Option<&str>,
        ctx: &WxContext,
    ) -> Arc<RequestSeries> {
        let key = labels.resolve_key(method, route, ctx);
        if let Some(key) = &key
            && let Some(series) = self.resolved.get(key.as_bytes())
        {
            return series;
        }
        let request_labels = labels.request_labels(method, route, ctx);
        let series = Arc::new(RequestSeries {
            labels: request_labels,
            sizes: self.body_sizes(labels, &request_labels),
            usual_duration: OnceLock::new(),
        });
        match key {
            Some(key) if labels.reusable(&request_labels, ctx) => {
                self.resolved
                    .insert_within(key.as_bytes().into(), series, RESOLVED_CAP)
            }
            _ => series,
        }
    }

    /// The body-size histograms of a method and route.
    fn body_sizes(&self, labels: &Vocabulary, request: &RequestLabels) -> BodySizes {
        self.body_sizes
            .get_or_insert_with((request.method, request.route), || {
                let route = labels.route(request.route);
                let values = [request.method.as_str(), &route, labels.service()];
                BodySizes {
                    request: self.request_size.with_label_values(&values),
                    response: self.response_size.with_label_values(&values),
                }
            })
    }

    /// Observes `nanos` in the duration series of `series` ending with `outcome`; a `sampled`
    /// request becomes its bucket's exemplar.
    pub(super) fn observe_duration(
        &self,
        labels: &Vocabulary,
        series: &RequestSeries,
        outcome: Outcome,
        (nanos, sampled): (u64, Option<&SampledRequest>),
    ) {
        let (usual_outcome, usual) = series
            .usual_duration
            .get_or_init(|| (outcome, self.duration(labels, series.labels, outcome)));
        let observe = |histogram: &Histogram| match sampled {
            None => histogram.observe(nanos),
            Some(request) => histogram.observe_sampled(nanos, request),
        };
        if *usual_outcome == outcome {
            observe(usual);
        } else {
            observe(&self.duration(labels, series.labels, outcome));
        }
    }

    /// The duration family, which keeps the exemplars.
    pub(super) fn duration_family(&self) -> &HistogramFamily {
        &self.duration
    }

    fn duration(&self, labels: &Vocabulary, request: RequestLabels, outcome: Outcome) -> Histogram {
        let key = request.series_key(outcome);
        self.durations.get_or_insert_with(key, || {
            let values = labels.duration_values(&key);
            let values: Vec<&str> = values.iter().map(|v| &**v).collect();
            self.duration.with_label_values(&values)
        })
    }
}
