//! The layer's builder: every knob with its default, validated once in [`WxTelemetryBuilder::build`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderName;
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::Tracer;
use prometheus::Registry;

use crate::context::TrustMode;
use crate::env;
use crate::labels::{AccessNodeError, AccessNodeTable, LabelCaps, MetricLabel};
use crate::trace::{DEFAULT_TRACE_ID_HEADER, IdentityPolicy, SampleFirst};

/// Bucket bounds of `http_server_request_duration_seconds`: the OpenTelemetry semconv advice, plus
/// 15 s (the callContainer limit) and 30 s so calls past the limit stay visible.
pub const DEFAULT_DURATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0,
];

/// Bucket bounds of the body-size histograms, in bytes: powers of four from 64 B to 16 MiB, which
/// bracket callContainer's limits (100 KiB text requests, 1000 KiB responses).
pub const DEFAULT_BODY_SIZE_BUCKETS: [f64; 10] = [
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// callContainer gives up after 15 seconds; a larger client `timeout` is silently ignored.
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(15);

/// An invalid layer configuration, returned by [`WxTelemetryBuilder::build`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Bucket bounds must be finite, positive and strictly increasing, and there must be some.
    #[error("invalid {histogram} buckets: {reason}")]
    InvalidBuckets {
        /// Which histogram.
        histogram: &'static str,
        /// What is wrong with them.
        reason: String,
    },
    /// An access-node entry that is not `CIDR` → non-empty name.
    #[error("invalid access node entry {entry:?}: {reason}")]
    InvalidAccessNode {
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A label cap of zero would fold every value into `_other`.
    #[error("the cap on distinct {label} values must be at least 1")]
    ZeroCap {
        /// The label.
        label: &'static str,
    },
    /// The service name is empty after trimming.
    #[error("the service name must not be empty")]
    EmptyServiceName,
    /// The call deadline must be positive.
    #[error("the call deadline must be longer than zero")]
    ZeroDeadline,
    /// The registry refused a metric (e.g. another layer already registered it there).
    #[error("cannot register the layer's metrics: {0}")]
    Registry(#[from] prometheus::Error),
}

/// Builds a [`WxTelemetryLayer`](crate::WxTelemetryLayer). Start from
/// [`WxTelemetryLayer::builder`](crate::WxTelemetryLayer::builder); `build` validates the
/// configuration and registers the metrics.
///
/// ```
/// use std::time::Duration;
/// use wxcloudrun_telemetry::{TrustMode, WxTelemetryLayer};
///
/// let layer = WxTelemetryLayer::builder()
///     .service_name("orders")
///     .trust(TrustMode::WhenSourcePresent)
///     .call_deadline(Duration::from_secs(15))
///     .max_appids(8)
///     .access_node("10.8.0.0/16", "shanghai-edge")
///     .build()?;
/// # Ok::<(), wxcloudrun_telemetry::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct WxTelemetryBuilder {
    pub(crate) service_name: Option<String>,
    pub(crate) registry: Option<Registry>,
    pub(crate) trust: TrustMode,
    pub(crate) call_deadline: Duration,
    pub(crate) duration_buckets: Vec<f64>,
    pub(crate) body_size_buckets: Vec<f64>,
    pub(crate) caps: LabelCaps,
    pub(crate) histogram_labels: Vec<MetricLabel>,
    pub(crate) access_nodes: Vec<(String, String)>,
    pub(crate) process_metrics: bool,
    pub(crate) catch_panic: bool,
    pub(crate) process_start: Option<SystemTime>,
    pub(crate) tracer: Option<Arc<BoxedTracer>>,
    /// The sampler of `tracer`, when known ([`Telemetry::layer`](crate::Telemetry::layer)).
    pub(crate) sample_first: Option<SampleFirst>,
    pub(crate) identity: IdentityPolicy,
    pub(crate) identity_key: Option<Vec<u8>>,
    pub(crate) trace_id_header: Option<HeaderName>,
    pub(crate) response_traceparent: bool,
    pub(crate) client_reports: bool,
}

impl std::fmt::Debug for WxTelemetryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxTelemetryBuilder")
            .field("service_name", &self.service_name)
            .field("trust", &self.trust)
            .field("call_deadline", &self.call_deadline)
            .field("duration_buckets", &self.duration_buckets)
            .field("body_size_buckets", &self.body_size_buckets)
            .field("caps", &self.caps)
            .field("histogram_labels", &self.histogram_labels)
            .field("access_nodes", &self.access_nodes)
            .field("process_metrics", &self.process_metrics)
            .field("catch_panic", &self.catch_panic)
            .field("traces", &self.tracer.is_some())
            .field("identity", &self.identity)
            .field("identity_key", &self.identity_key.as_ref().map(|_| "<set>"))
            .field("trace_id_header", &self.trace_id_header)
            .field("response_traceparent", &self.response_traceparent)
            .field("client_reports", &self.client_reports)
            .finish_non_exhaustive()
    }
}

impl Default for WxTelemetryBuilder {
    fn default() -> Self {
        WxTelemetryBuilder {
            service_name: None,
            registry: None,
            trust: TrustMode::default(),
            call_deadline: DEFAULT_CALL_DEADLINE,
            duration_buckets: DEFAULT_DURATION_BUCKETS.to_vec(),
            body_size_buckets: DEFAULT_BODY_SIZE_BUCKETS.to_vec(),
            caps: LabelCaps::default(),
            histogram_labels: MetricLabel::ALL.to_vec(),
            access_nodes: Vec::new(),
            process_metrics: true,
            catch_panic: true,
            process_start: None,
            tracer: None,
            sample_first: None,
            identity: IdentityPolicy::default(),
            identity_key: None,
            trace_id_header: Some(DEFAULT_TRACE_ID_HEADER),
            response_traceparent: false,
            client_reports: false,
        }
    }
}

impl WxTelemetryBuilder {
    /// The `wx_service` label and `wx.service` attribute.
    ///
    /// Defaults to `WXCLOUDRUN_SERVICE`, else `OTEL_SERVICE_NAME`, else `unknown_service`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The registry the metrics are registered in; `/metrics` renders it.
    ///
    /// Pass `prometheus::default_registry().clone()` to share the global one. Defaults to a new
    /// registry owned by the layer ([`WxTelemetryLayer::registry`](crate::WxTelemetryLayer::registry)).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// When the `X-WX-*` identity headers are believed. Defaults to
    /// [`TrustMode::WhenSourcePresent`].
    pub fn trust(mut self, trust: TrustMode) -> Self {
        self.trust = trust;
        self
    }

    /// Calls through the gateway that take longer than this are counted in
    /// `wxcloudrun_call_deadline_exceeded_total`: the client already got error 102002.
    ///
    /// Defaults to [`DEFAULT_CALL_DEADLINE`], the callContainer limit of 15 seconds.
    pub fn call_deadline(mut self, deadline: Duration) -> Self {
        self.call_deadline = deadline;
        self
    }

    /// Bucket bounds of the duration histogram, in seconds. Defaults to
    /// [`DEFAULT_DURATION_BUCKETS`].
    pub fn duration_buckets(mut self, bounds: impl Into<Vec<f64>>) -> Self {
        self.duration_buckets = bounds.into();
        self
    }

    /// Bucket bounds of the body-size histograms, in bytes. Defaults to
    /// [`DEFAULT_BODY_SIZE_BUCKETS`].
    pub fn body_size_buckets(mut self, bounds: impl Into<Vec<f64>>) -> Self {
        self.body_size_buckets = bounds.into();
        self
    }

    /// Cap on distinct `http_route` values. Defaults to
    /// [`DEFAULT_MAX_ROUTES`](crate::DEFAULT_MAX_ROUTES).
    pub fn max_routes(mut self, cap: usize) -> Self {
        self.caps.routes = cap;
        self
    }

    /// Cap on distinct `wx_appid` values. Defaults to
    /// [`DEFAULT_MAX_APPIDS`](crate::DEFAULT_MAX_APPIDS).
    pub fn max_appids(mut self, cap: usize) -> Self {
        self.caps.appids = cap;
        self
    }

    /// Cap on distinct `wx_source` values. Defaults to
    /// [`DEFAULT_MAX_SOURCES`](crate::DEFAULT_MAX_SOURCES).
    pub fn max_sources(mut self, cap: usize) -> Self {
        self.caps.sources = cap;
        self
    }

    /// Cap on distinct `wx_access_node` values. Defaults to
    /// [`DEFAULT_MAX_ACCESS_NODES`](crate::DEFAULT_MAX_ACCESS_NODES).
    pub fn max_access_nodes(mut self, cap: usize) -> Self {
        self.caps.access_nodes = cap;
        self
    }

    /// Which optional labels the duration histogram carries (the others are always there).
    ///
    /// Defaults to all of [`MetricLabel`]'s variants.
    pub fn histogram_labels(mut self, labels: impl IntoIterator<Item = MetricLabel>) -> Self {
        self.histogram_labels = labels.into_iter().collect();
        self
    }

    /// Names the access node for hops inside `cidr` (e.g. `"10.8.0.0/16"` or a single address).
    /// The most specific matching entry wins.
    ///
    /// Defaults to no entries: `wx_access_node` is then the hop's address itself, under the cap.
    pub fn access_node(mut self, cidr: impl Into<String>, name: impl Into<String>) -> Self {
        self.access_nodes.push((cidr.into(), name.into()));
        self
    }

    /// Registers the `process_*` metrics (CPU, memory, file descriptors, start time) on Linux.
    /// Defaults to `true`.
    pub fn process_metrics(mut self, enabled: bool) -> Self {
        self.process_metrics = enabled;
        self
    }

    /// Turns a panic in the service into a `500` response recorded with `error_type="panic"`,
    /// instead of letting it unwind into the server (which drops the connection). With `false`
    /// the panic is still recorded as it unwinds.
    ///
    /// Defaults to `true`.
    pub fn catch_panic(mut self, enabled: bool) -> Self {
        self.catch_panic = enabled;
        self
    }

    /// When the process started, for `wxcloudrun_cold_start_seconds`.
    ///
    /// Defaults to the start time the kernel reports on Linux, else the moment the layer is built.
    pub fn process_start(mut self, start: SystemTime) -> Self {
        self.process_start = Some(start);
        self
    }

    /// Records an OpenTelemetry server span per request with `tracer`, e.g.
    /// `provider.tracer("my-service")` or `opentelemetry::global::tracer("…")`. [`crate::init()`]'s
    /// [`Telemetry::layer`](crate::Telemetry::layer) sets this for you.
    ///
    /// Defaults to no spans (metrics only).
    pub fn tracer<T>(mut self, tracer: T) -> Self
    where
        T: Tracer + Send + Sync + 'static,
        T::Span: Send + Sync + 'static,
    {
        self.tracer = Some(Arc::new(BoxedTracer::new(Box::new(tracer))));
        // Another tracer's sampler says nothing about this one.
        self.sample_first = None;
        self
    }

    /// [`tracer`](Self::tracer), whose sampler and id generator `sampling` are: the layer then
    /// samples first and starts no span for a request that is sampled out.
    #[cfg(feature = "init")]
    pub(crate) fn sampled_tracer<T>(self, tracer: T, sampling: SampleFirst) -> Self
    where
        T: Tracer + Send + Sync + 'static,
        T::Span: Send + Sync + 'static,
    {
        let mut builder = self.tracer(tracer);
        builder.sample_first = Some(sampling);
        builder
    }

    /// How OpenIDs and UnionIDs appear on spans. Defaults to [`IdentityPolicy::Hashed`].
    pub fn identity(mut self, policy: IdentityPolicy) -> Self {
        self.identity = policy;
        self
    }

    /// The HMAC key for [`IdentityPolicy::Hashed`]: services sharing it produce the same
    /// `enduser.pseudo.id` for the same user, and nobody without it can test a guess.
    ///
    /// Defaults to the value of `WXCLOUDRUN_TELEMETRY_ID_KEY`, else no key (plain SHA-256).
    pub fn identity_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.identity_key = Some(key.as_ref().to_vec());
        self
    }

    /// The response header that carries the trace id, so a user reporting a failed call can hand
    /// it over; `None` sends none. Only set when spans are recorded.
    ///
    /// Defaults to [`DEFAULT_TRACE_ID_HEADER`], `x-trace-id`.
    pub fn trace_id_header(mut self, header: Option<HeaderName>) -> Self {
        self.trace_id_header = header;
        self
    }

    /// Also answers with a W3C `traceparent` header naming the server span, for callers that
    /// continue the trace. Defaults to `false`.
    pub fn response_traceparent(mut self, enabled: bool) -> Self {
        self.response_traceparent = enabled;
        self
    }

    /// Client reports from the Mini Program package (`wxcloudrun-telemetry-miniprogram`): every
    /// response carries `Server-Timing: app;dur=<ms>` (the service's own time, from the request
    /// reaching the layer to its response headers), requests through the gateway are remembered
    /// by trace id (the last [`RECENT_REQUESTS_CAPACITY`](crate::RECENT_REQUESTS_CAPACITY)), and
    /// [`WxTelemetryLayer::client_reports`](crate::WxTelemetryLayer::client_reports) serves the
    /// beacon that turns the phones' reports into `wxcloudrun_client_*` metrics.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use wxcloudrun_telemetry::{DEFAULT_CLIENT_REPORT_PATH, WxTelemetryLayer};
    ///
    /// let telemetry = WxTelemetryLayer::builder()
    ///     .service_name("orders")
    ///     .client_reports(true)
    ///     .build()?;
    /// let app: Router = Router::new()
    ///     .route("/api/orders/{id}", get(|| async { "order" }))
    ///     .layer(telemetry.clone())
    ///     // Beside the layer, like /metrics: the beacon's own calls are not requests of the
    ///     // service.
    ///     .route_service(DEFAULT_CLIENT_REPORT_PATH, telemetry.client_reports());
    /// # Ok::<(), wxcloudrun_telemetry::ConfigError>(())
    /// ```
    ///
    /// Defaults to `false`: no header is added, nothing is remembered, and responses are
    /// byte-identical to a layer without this option.
    pub fn client_reports(mut self, enabled: bool) -> Self {
        self.client_reports = enabled;
        self
    }

    pub(crate) fn resolved_identity_key(&self) -> Option<Vec<u8>> {
        self.identity_key.clone().or_else(env::identity_key)
    }

    /// The access-node table of the configured entries.
    pub(crate) fn access_node_table(&self) -> Result<AccessNodeTable, ConfigError> {
        Ok(AccessNodeTable::parse(&self.access_nodes)?)
    }

    pub(crate) fn resolved_service_name(&self) -> Result<Arc<str>, ConfigError> {
        resolve_service_name(self.service_name.as_deref(), |key| std::env::var(key).ok())
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_buckets("duration", &self.duration_buckets)?;
        check_buckets("body size", &self.body_size_buckets)?;
        if self.call_deadline.is_zero() {
            return Err(ConfigError::ZeroDeadline);
        }
        match self.caps.zero() {
            Some(label) => Err(ConfigError::ZeroCap { label }),
            None => Ok(()),
        }
    }
}

/// Builder > `WXCLOUDRUN_SERVICE` > `OTEL_SERVICE_NAME` > `unknown_service`; blank values skip.
fn resolve_service_name(
    explicit: Option<&str>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Arc<str>, ConfigError> {
    let name = match explicit {
        Some(name) => name.to_owned(),
        None => env::service_name(lookup).unwrap_or_else(|| env::UNKNOWN_SERVICE.to_owned()),
    };
    match name.trim() {
        "" => Err(ConfigError::EmptyServiceName),
        name => Ok(Arc::from(name)),
    }
}

fn check_buckets(histogram: &'static str, bounds: &[f64]) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidBuckets {
        histogram,
        reason: reason.to_owned(),
    };
    if bounds.is_empty() {
        return Err(invalid("at least one bound is needed"));
    }
    if bounds.iter().any(|b| !b.is_finite() || *b <= 0.0) {
        return Err(invalid("bounds must be finite and positive"));
    }
    if bounds.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(invalid("bounds must be strictly increasing"));
    }
    Ok(())
}

impl From<AccessNodeError> for ConfigError {
    fn from(err: AccessNodeError) -> Self {
        ConfigError::InvalidAccessNode {
            entry: err.entry,
            reason: err.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_validated() {
        for bad in [
            vec![],
            vec![1.0, 1.0],
            vec![2.0, 1.0],
            vec![f64::NAN],
            vec![-1.0],
        ] {
            let builder = WxTelemetryBuilder::default().duration_buckets(bad.clone());
            assert!(
                matches!(builder.validate(), Err(ConfigError::InvalidBuckets { .. })),
                "{bad:?}"
            );
        }
        assert!(WxTelemetryBuilder::default().validate().is_ok());
    }

    #[test]
    fn service_name_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let both = env(&[("WXCLOUDRUN_SERVICE", "wx"), ("OTEL_SERVICE_NAME", "otel")]);
        assert_eq!(
            &*resolve_service_name(Some("explicit"), both).unwrap(),
            "explicit"
        );
        assert_eq!(&*resolve_service_name(None, both).unwrap(), "wx");
        let otel = env(&[("WXCLOUDRUN_SERVICE", " "), ("OTEL_SERVICE_NAME", "otel")]);
        assert_eq!(&*resolve_service_name(None, otel).unwrap(), "otel");
        assert_eq!(
            &*resolve_service_name(None, env(&[])).unwrap(),
            "unknown_service"
        );
    }

    #[test]
    fn zero_caps_and_deadlines_are_rejected() {
        let err = WxTelemetryBuilder::default()
            .max_sources(0)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("wx_source"), "{err}");
        assert!(matches!(
            WxTelemetryBuilder::default()
                .call_deadline(Duration::ZERO)
                .validate(),
            Err(ConfigError::ZeroDeadline)
        ));
        assert!(matches!(
            WxTelemetryBuilder::default()
                .service_name("  ")
                .resolved_service_name(),
            Err(ConfigError::EmptyServiceName)
        ));
    }
}
