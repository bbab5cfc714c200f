//! The metric families of the contract, registered once, with the series of each label combination
//! resolved once ([`RequestSeries`]) so a request for a known route and method costs one lookup and
//! a few atomic adds, not allocations.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use http::Method;
use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use rustc_hash::FxHasher;

use crate::config::{AccessNodeTable, LabelCaps, MetricLabel, WxTelemetryBuilder};
use crate::histogram::{Histogram, HistogramFamily};
use crate::trace::SharedValues;
use crate::{ConfigError, WxContext};

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

pub(crate) const DURATION: &str = "http_server_request_duration_seconds";

/// Durations are observed in nanoseconds and exposed in seconds.
const NANOS_PER_SECOND: f64 = 1e9;

/// Index of a label value interned by a [`LabelGuard`].
pub(crate) type LabelId = u32;

/// The empty value: no `X-WX-SOURCE`, no AppID, no error.
pub(crate) const EMPTY: LabelId = 0;
/// The value that every value past the cap folds into.
pub(crate) const OTHER: LabelId = 1;
/// `http_route` when no route template is known (never the raw path).
pub(crate) const UNMATCHED: LabelId = 2;

/// The methods semconv knows; anything else is `_OTHER`.
const KNOWN_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];
const METHOD_COUNT: usize = KNOWN_METHODS.len() + 1;
const OTHER_METHOD: u8 = KNOWN_METHODS.len() as u8;

/// The `http_request_method` label index of a method: a known one, else `_OTHER`.
pub(crate) fn method_index(method: &Method) -> u8 {
    KNOWN_METHODS
        .iter()
        .position(|known| known == method)
        .map_or(OTHER_METHOD, |i| i as u8)
}

pub(crate) fn method_label(index: u8) -> &'static str {
    KNOWN_METHODS
        .get(usize::from(index))
        .map_or("_OTHER", Method::as_str)
}

/// Why a request ended badly; `None` is success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ErrorKind {
    None,
    /// A 5xx response: `error_type` is the status code.
    Status,
    /// The client went away (or the server dropped the request) before the response was done.
    Cancelled,
    /// The service panicked.
    Panic,
    /// The response body failed while streaming.
    BodyError,
    /// The service returned an error instead of a response.
    ServiceError,
}

impl ErrorKind {
    /// The `error_type` label (and `error.type` attribute) for a request that ended with `status`.
    pub(crate) fn label(self, status: u16) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            ErrorKind::None => "",
            ErrorKind::Status => return Cow::Owned(status_label(status)),
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Panic => "panic",
            ErrorKind::BodyError => "body_error",
            ErrorKind::ServiceError => "service_error",
        })
    }
}

/// The `http_response_status_code` label: the code as text, empty when no response was sent.
/// Only built when a series is first seen, so the allocation is off the hot path.
fn status_label(status: u16) -> String {
    if status == 0 {
        String::new()
    } else {
        status.to_string()
    }
}

/// Distinct values of one label, capped: the first `cap` values keep their name, the rest fold
/// into `_other` and count in `wxcloudrun_label_overflow_total`.
pub(crate) struct LabelGuard {
    cap: usize,
    reserved: usize,
    table: RwLock<LabelTable>,
    overflow: IntCounter,
}

#[derive(Default)]
struct LabelTable {
    ids: FxMap<Arc<str>, LabelId>,
    values: Vec<Arc<str>>,
}

impl LabelGuard {
    fn new(cap: usize, reserved: &[&str], overflow: IntCounter) -> Self {
        let mut table = LabelTable::default();
        for value in reserved {
            let value: Arc<str> = Arc::from(*value);
            table
                .ids
                .insert(value.clone(), table.values.len() as LabelId);
            table.values.push(value);
        }
        LabelGuard {
            cap,
            reserved: reserved.len(),
            table: RwLock::new(table),
            overflow,
        }
    }

    /// The id of `value`, interning it while under the cap.
    pub(crate) fn intern(&self, value: &str) -> LabelId {
        if value.is_empty() {
            return EMPTY;
        }
        {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(id) = table.ids.get(value) {
                return *id;
            }
            if table.values.len() - self.reserved >= self.cap {
                self.overflow.inc();
                return OTHER;
            }
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = table.ids.get(value) {
            return *id;
        }
        if table.values.len() - self.reserved >= self.cap {
            self.overflow.inc();
            return OTHER;
        }
        let id = table.values.len() as LabelId;
        let value: Arc<str> = Arc::from(value);
        table.ids.insert(value.clone(), id);
        table.values.push(value);
        id
    }

    /// The id of a value already interned, without interning it.
    pub(crate) fn get(&self, value: &str) -> Option<LabelId> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.ids.get(value).copied()
    }

    pub(crate) fn value(&self, id: LabelId) -> Arc<str> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table
            .values
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }
}

/// The labels of one duration series, as interned ids (a disabled label is always `EMPTY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SeriesKey {
    pub(crate) method: u8,
    pub(crate) status: u16,
    pub(crate) error: ErrorKind,
    pub(crate) route: LabelId,
    pub(crate) appid: LabelId,
    pub(crate) source: LabelId,
    pub(crate) access_node: LabelId,
}

/// The per-request facts the metrics need, resolved when the request arrives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestLabels {
    pub(crate) method: u8,
    pub(crate) route: LabelId,
    pub(crate) appid: LabelId,
    pub(crate) source: LabelId,
    pub(crate) access_node: LabelId,
    /// Counted for the call deadline: the call came through the WeChat gateway.
    pub(crate) via_gateway: bool,
}

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
    usual_duration: OnceLock<(u16, ErrorKind, Histogram)>,
}

/// How many label combinations [`Metrics::resolve`] remembers. The label caps bound each label,
/// not their product; past this, requests take the per-label path (and allocate their
/// [`RequestSeries`]).
const RESOLVED_CAP: usize = 8192;

/// Keys of the resolved-series cache longer than this are not cached (routes are rarely long).
const RESOLVED_KEY_MAX: usize = 512;

/// Every metric family of the contract, registered in one registry.
pub(crate) struct Metrics {
    service: Arc<str>,
    duration: HistogramFamily,
    duration_labels: Vec<MetricLabel>,
    active: [IntGauge; METHOD_COUNT],
    request_size: HistogramFamily,
    response_size: HistogramFamily,
    deadline_exceeded: IntCounterVec,
    call_deadline: Duration,
    cold_start: Gauge,
    cold_start_recorded: AtomicBool,
    process_start: SystemTime,
    pub(crate) routes: LabelGuard,
    appids: LabelGuard,
    sources: LabelGuard,
    access_nodes: LabelGuard,
    access_node_table: AccessNodeTable,
    series: RwLock<FxMap<SeriesKey, Histogram>>,
    body_sizes: RwLock<FxMap<(u8, LabelId), BodySizes>>,
    /// Keyed by the raw inputs of [`Metrics::request_labels`] (see [`ResolveKey`]).
    resolved: RwLock<FxMap<Box<[u8]>, Arc<RequestSeries>>>,
}

fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, ConfigError> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

impl Metrics {
    pub(crate) fn new(
        builder: &WxTelemetryBuilder,
        registry: &Registry,
        service: Arc<str>,
    ) -> Result<Self, ConfigError> {
        let access_node_table = AccessNodeTable::parse(&builder.access_nodes)?;
        let duration_labels: Vec<MetricLabel> = MetricLabel::ALL
            .into_iter()
            .filter(|label| builder.histogram_labels.contains(label))
            .collect();
        let mut names = vec![
            "http_request_method",
            "http_route",
            "http_response_status_code",
            "wx_service",
        ];
        names.extend(duration_labels.iter().map(|label| label.name()));

        let duration = register(
            registry,
            HistogramFamily::new(
                DURATION,
                "Duration of HTTP server requests, to the end of the response body.",
                &names,
                &builder.duration_buckets,
                NANOS_PER_SECOND,
            )?,
        )?;
        let active = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "http_server_active_requests",
                    "Number of HTTP server requests in flight.",
                ),
                &["http_request_method", "wx_service"],
            )?,
        )?;
        let size_labels = ["http_request_method", "http_route", "wx_service"];
        let request_size = register(
            registry,
            HistogramFamily::new(
                "http_server_request_body_size_bytes",
                "Size of HTTP server request bodies, in bytes.",
                &size_labels,
                &builder.body_size_buckets,
                1.0,
            )?,
        )?;
        let response_size = register(
            registry,
            HistogramFamily::new(
                "http_server_response_body_size_bytes",
                "Size of HTTP server response bodies, in bytes.",
                &size_labels,
                &builder.body_size_buckets,
                1.0,
            )?,
        )?;
        let deadline_exceeded = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "wxcloudrun_call_deadline_exceeded_total",
                    "Calls through the WeChat gateway that finished after the callContainer limit; \
                     the client already got error 102002.",
                ),
                &["http_route", "wx_service", "wx_appid"],
            )?,
        )?;
        let cold_start = register(
            registry,
            GaugeVec::new(
                Opts::new(
                    "wxcloudrun_cold_start_seconds",
                    "Time from process start to the end of the first response.",
                ),
                &["wx_service"],
            )?,
        )?;
        let overflow = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "wxcloudrun_label_overflow_total",
                    "Requests whose label value was folded into _other by the cardinality guard.",
                ),
                &["metric", "label"],
            )?,
        )?;
        let build_info = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "wxcloudrun_telemetry_build_info",
                    "Always 1; the version of wxcloudrun-telemetry that serves these metrics.",
                ),
                &["version"],
            )?,
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let caps: LabelCaps = builder.caps;
        let guard = |label: &str, cap: usize, reserved: &[&str]| {
            LabelGuard::new(
                cap,
                reserved,
                overflow.with_label_values(&[DURATION, label]),
            )
        };
        let active =
            std::array::from_fn(|i| active.with_label_values(&[method_label(i as u8), &service]));
        Ok(Metrics {
            duration,
            duration_labels,
            active,
            request_size,
            response_size,
            deadline_exceeded,
            call_deadline: builder.call_deadline,
            cold_start: cold_start.with_label_values(&[&service]),
            cold_start_recorded: AtomicBool::new(false),
            process_start: builder.process_start.unwrap_or_else(process_start_time),
            routes: guard("http_route", caps.routes, &["", "_other", "unmatched"]),
            appids: guard("wx_appid", caps.appids, &["", "_other"]),
            sources: guard("wx_source", caps.sources, &["", "_other"]),
            access_nodes: guard("wx_access_node", caps.access_nodes, &["", "_other"]),
            access_node_table,
            series: RwLock::default(),
            body_sizes: RwLock::default(),
            resolved: RwLock::default(),
            service,
        })
    }

    pub(crate) fn service(&self) -> &Arc<str> {
        &self.service
    }

    /// The series of a request, from its method, route template and gateway context: one cache
    /// lookup for a label combination seen before.
    pub(crate) fn resolve(
        &self,
        method: &Method,
        route: Option<&str>,
        ctx: &WxContext,
    ) -> Arc<RequestSeries> {
        let key = self.resolve_key(method, route, ctx);
        if let Some(key) = &key
            && let Some(series) = self
                .resolved
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(key.as_bytes())
        {
            return series.clone();
        }
        let labels = self.request_labels(method, route, ctx);
        let series = Arc::new(RequestSeries {
            labels,
            sizes: self.body_sizes(&labels),
            usual_duration: OnceLock::new(),
        });
        // A folded label must keep counting its overflow on every request, and a hop that does
        // not parse falls back to the peer address, which the key does not hold.
        let folded = [
            labels.route,
            labels.appid,
            labels.source,
            labels.access_node,
        ]
        .contains(&OTHER);
        let unparsed_hop = ctx
            .access_hop_text()
            .is_some_and(|hop| crate::context::parse_hop(hop).is_none());
        if let Some(key) = key
            && !folded
            && !unparsed_hop
        {
            let mut resolved = self
                .resolved
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if resolved.len() < RESOLVED_CAP {
                return resolved
                    .entry(key.as_bytes().into())
                    .or_insert(series)
                    .clone();
            }
        }
        series
    }

    /// Everything [`request_labels`](Self::request_labels) reads, as bytes: each field with its
    /// length, so no value can imitate another's boundary. `None` when it does not fit.
    fn resolve_key(
        &self,
        method: &Method,
        route: Option<&str>,
        ctx: &WxContext,
    ) -> Option<ResolveKey> {
        let enabled = |label| self.duration_labels.contains(&label);
        let mut key = ResolveKey::new();
        key.push(&[method_index(method), u8::from(ctx.via_wechat())])?;
        key.field(route)?;
        key.field(ctx.appid().filter(|_| enabled(MetricLabel::AppId)))?;
        key.field(
            ctx.primary_source()
                .filter(|_| enabled(MetricLabel::Source)),
        )?;
        if enabled(MetricLabel::AccessNode) {
            match (ctx.access_hop_text(), ctx.peer()) {
                (Some(hop), _) => key.field(Some(hop))?,
                (None, Some(IpAddr::V4(peer))) => key.tagged(PEER, &peer.octets())?,
                (None, Some(IpAddr::V6(peer))) => key.tagged(PEER, &peer.octets())?,
                (None, None) => key.field(None)?,
            }
        }
        Some(key)
    }

    /// Resolves the labels of a request from its method, route template and gateway context.
    pub(crate) fn request_labels(
        &self,
        method: &Method,
        route: Option<&str>,
        ctx: &WxContext,
    ) -> RequestLabels {
        let route = route.map_or(UNMATCHED, |route| self.routes.intern(route));
        let enabled = |label| self.duration_labels.contains(&label);
        let appid = match ctx.appid() {
            Some(appid) if enabled(MetricLabel::AppId) => self.appids.intern(appid),
            _ => EMPTY,
        };
        let source = match ctx.primary_source() {
            Some(source) if enabled(MetricLabel::Source) => self.sources.intern(source),
            _ => EMPTY,
        };
        let access_node = if enabled(MetricLabel::AccessNode) {
            self.access_node_id(ctx)
        } else {
            EMPTY
        };
        RequestLabels {
            method: method_index(method),
            route,
            appid,
            source,
            access_node,
            via_gateway: ctx.via_wechat(),
        }
    }

    fn access_node_id(&self, ctx: &WxContext) -> LabelId {
        // Fast path: the gateway writes addresses canonically, so a hop seen before is found by
        // its text, without parsing and formatting it again.
        if self.access_node_table.is_empty()
            && let Some(id) = ctx
                .access_hop_text()
                .and_then(|text| self.access_nodes.get(text))
        {
            return id;
        }
        let Some(hop) = ctx.access_hop() else {
            return EMPTY;
        };
        if let Some(name) = self.access_node_table.lookup(hop) {
            return self.access_nodes.intern(name);
        }
        if !self.access_node_table.is_empty() {
            // With a table, unknown hops are one value rather than a stream of addresses.
            return self.access_nodes.intern("unknown");
        }
        // Formatted on the stack: an address is at most 45 bytes.
        let mut buf = StackStr::<48>::new();
        let _ = std::fmt::Write::write_fmt(&mut buf, format_args!("{hop}"));
        self.access_nodes.intern(buf.as_str())
    }

    /// The `wx_access_node` value of an interned id.
    #[cfg(test)]
    fn access_node_value(&self, id: LabelId) -> Arc<str> {
        self.access_nodes.value(id)
    }

    /// The span attributes the label tables already hold: shared, not copied. Values folded into
    /// `_other` (or not interned because the label is off) are copied: spans carry the real value.
    pub(crate) fn shared_values(
        &self,
        labels: &RequestLabels,
        route: Option<&str>,
        ctx: &WxContext,
    ) -> SharedValues {
        let interned = |id: LabelId| id != EMPTY && id != OTHER;
        SharedValues {
            route: route.map(|route| match labels.route {
                id if interned(id) && id != UNMATCHED => self.routes.value(id),
                _ => Arc::from(route),
            }),
            appid: ctx.appid().map(|appid| match labels.appid {
                id if interned(id) => self.appids.value(id),
                _ => Arc::from(appid),
            }),
            service: self.service.clone(),
            access_node: self.access_nodes.value(labels.access_node),
        }
    }

    pub(crate) fn request_started(&self, labels: &RequestLabels) {
        self.active_gauge(labels.method).inc();
    }

    fn active_gauge(&self, method: u8) -> &IntGauge {
        &self.active[usize::from(method).min(METHOD_COUNT - 1)]
    }

    /// The body-size histograms of a method and route.
    pub(crate) fn body_sizes(&self, labels: &RequestLabels) -> BodySizes {
        let key = (labels.method, labels.route);
        if let Some(sizes) = self
            .body_sizes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return sizes.clone();
        }
        let route = self.routes.value(labels.route);
        let values = [method_label(labels.method), &route, &self.service];
        let sizes = BodySizes {
            request: self.request_size.with_label_values(&values),
            response: self.response_size.with_label_values(&values),
        };
        self.body_sizes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert(sizes)
            .clone()
    }

    /// Records the end of a request: duration, deadline, in-flight count.
    pub(crate) fn request_finished(
        &self,
        series: &RequestSeries,
        status: u16,
        error: ErrorKind,
        elapsed: Duration,
    ) {
        let labels = &series.labels;
        self.active_gauge(labels.method).dec();
        let error = if self.duration_labels.contains(&MetricLabel::ErrorType) {
            error
        } else {
            ErrorKind::None
        };
        let (usual_status, usual_error, usual) = series.usual_duration.get_or_init(|| {
            (
                status,
                error,
                self.duration_histogram(labels, status, error),
            )
        });
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        if (*usual_status, *usual_error) == (status, error) {
            usual.observe(nanos);
        } else {
            self.duration_histogram(labels, status, error)
                .observe(nanos);
        }
        if labels.via_gateway && elapsed > self.call_deadline {
            let route = self.routes.value(labels.route);
            let appid = self.appids.value(labels.appid);
            self.deadline_exceeded
                .with_label_values(&[&*route, &self.service, &appid])
                .inc();
        }
        // A load first: after the first request this is a plain read, not a write to a shared line.
        if !self.cold_start_recorded.load(Ordering::Relaxed)
            && !self.cold_start_recorded.swap(true, Ordering::Relaxed)
        {
            let since_start = SystemTime::now()
                .duration_since(self.process_start)
                .unwrap_or_default();
            self.cold_start.set(since_start.as_secs_f64());
        }
    }

    fn duration_histogram(
        &self,
        labels: &RequestLabels,
        status: u16,
        error: ErrorKind,
    ) -> Histogram {
        let enabled = |label| self.duration_labels.contains(&label);
        let key = SeriesKey {
            method: labels.method,
            status,
            error: if enabled(MetricLabel::ErrorType) {
                error
            } else {
                ErrorKind::None
            },
            route: labels.route,
            appid: labels.appid,
            source: labels.source,
            access_node: labels.access_node,
        };
        if let Some(histogram) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return histogram.clone();
        }
        let route = self.routes.value(key.route);
        let mut values: Vec<Arc<str>> = vec![
            Arc::from(method_label(key.method)),
            route,
            Arc::from(status_label(status)),
            self.service.clone(),
        ];
        for label in &self.duration_labels {
            values.push(match label {
                MetricLabel::ErrorType => Arc::from(&*key.error.label(status)),
                MetricLabel::AppId => self.appids.value(key.appid),
                MetricLabel::Source => self.sources.value(key.source),
                MetricLabel::AccessNode => self.access_nodes.value(key.access_node),
            });
        }
        let values: Vec<&str> = values.iter().map(|v| &**v).collect();
        let histogram = self.duration.with_label_values(&values);
        self.series
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert(histogram)
            .clone()
    }
}

/// When the process started: from the kernel on Linux, else now.
fn process_start_time() -> SystemTime {
    #[cfg(target_os = "linux")]
    {
        let from_proc = || -> Option<SystemTime> {
            let ticks = procfs::process::Process::myself()
                .ok()?
                .stat()
                .ok()?
                .starttime;
            let boot = procfs::boot_time_secs().ok()?;
            let secs = boot as f64 + ticks as f64 / procfs::ticks_per_second() as f64;
            SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs_f64(secs))
        };
        if let Some(start) = from_proc() {
            return start;
        }
    }
    SystemTime::now()
}

/// The key of [`Metrics::resolve`]'s cache, built on the stack: fields as tag, length, bytes.
struct ResolveKey {
    buf: [u8; RESOLVED_KEY_MAX],
    len: usize,
}

/// Field tags of a [`ResolveKey`].
const ABSENT: u8 = 0;
const PRESENT: u8 = 1;
/// The peer address, which stands in for the access hop when no `X-Forwarded-For` was sent.
const PEER: u8 = 2;

impl ResolveKey {
    fn new() -> Self {
        ResolveKey {
            buf: [0; RESOLVED_KEY_MAX],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len + bytes.len();
        self.buf.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    fn tagged(&mut self, tag: u8, bytes: &[u8]) -> Option<()> {
        let len = u16::try_from(bytes.len()).ok()?;
        self.push(&[tag])?;
        self.push(&len.to_le_bytes())?;
        self.push(bytes)
    }

    fn field(&mut self, value: Option<&str>) -> Option<()> {
        match value {
            Some(value) => self.tagged(PRESENT, value.as_bytes()),
            None => self.push(&[ABSENT]),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A fixed-capacity string on the stack, for formatting an address without allocating.
struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackStr<N> {
    fn new() -> Self {
        StackStr {
            buf: [0; N],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl<const N: usize> std::fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_known_set_are_other() {
        assert_eq!(method_label(method_index(&Method::GET)), "GET");
        assert_eq!(method_label(method_index(&Method::PATCH)), "PATCH");
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(method_label(method_index(&custom)), "_OTHER");
    }

    #[test]
    fn status_labels_are_numeric() {
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(599), "599");
        assert_eq!(status_label(0), "");
        assert_eq!(ErrorKind::Status.label(503), "503");
        assert_eq!(ErrorKind::None.label(503), "");
    }

    #[test]
    fn guard_folds_past_the_cap() {
        let overflow = IntCounter::new("o", "o").unwrap();
        let guard = LabelGuard::new(2, &["", "_other"], overflow.clone());
        let a = guard.intern("a");
        let b = guard.intern("b");
        assert_eq!(guard.intern("a"), a);
        assert_eq!(guard.intern("c"), OTHER);
        assert_eq!(guard.intern("d"), OTHER);
        assert_eq!(guard.intern("b"), b);
        assert_eq!(guard.intern(""), EMPTY);
        assert_eq!(&*guard.value(a), "a");
        assert_eq!(&*guard.value(OTHER), "_other");
        assert_eq!(overflow.get(), 2);
    }

    fn metrics(builder: WxTelemetryBuilder) -> (Metrics, Registry) {
        let registry = Registry::new();
        let metrics = Metrics::new(&builder, &registry, Arc::from("svc")).unwrap();
        (metrics, registry)
    }

    fn ctx(headers: &[(&'static str, &'static str)], peer: Option<&str>) -> WxContext {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        let peer = peer.map(|peer| peer.parse().unwrap());
        WxContext::from_headers(&map, crate::TrustMode::WhenSourcePresent, peer)
    }

    #[test]
    fn resolved_series_are_shared_by_equal_labels_only() {
        let (metrics, _) = metrics(WxTelemetryBuilder::default());
        let a = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wxa")], None);
        let a_again = ctx(&[("x-wx-appid", "wxa"), ("x-wx-source", "wx_client")], None);
        let b = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wxb")], None);
        let first = metrics.resolve(&Method::GET, Some("/u"), &a);
        assert!(Arc::ptr_eq(
            &first,
            &metrics.resolve(&Method::GET, Some("/u"), &a_again)
        ));
        for (method, route, ctx) in [
            (Method::POST, Some("/u"), &a),
            (Method::GET, Some("/v"), &a),
            (Method::GET, None, &a),
            (Method::GET, Some("/u"), &b),
        ] {
            let other = metrics.resolve(&method, route, ctx);
            assert!(!Arc::ptr_eq(&first, &other), "{method} {route:?}");
            assert_ne!(
                (first.labels.method, first.labels.route, first.labels.appid),
                (other.labels.method, other.labels.route, other.labels.appid)
            );
        }
    }

    #[test]
    fn folded_values_count_their_overflow_on_every_request() {
        let (metrics, registry) = metrics(WxTelemetryBuilder::default().max_appids(1));
        let first = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wx1")], None);
        let second = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wx2")], None);
        metrics.resolve(&Method::GET, Some("/u"), &first);
        for _ in 0..3 {
            let series = metrics.resolve(&Method::GET, Some("/u"), &second);
            assert_eq!(series.labels.appid, OTHER);
        }
        let text = crate::render(&registry);
        let line = r#"wxcloudrun_label_overflow_total{label="wx_appid",metric="http_server_request_duration_seconds"} 3"#;
        assert!(text.lines().any(|l| l == line), "{text}");
    }

    #[test]
    fn a_hop_that_does_not_parse_falls_back_to_each_requests_peer() {
        let (metrics, _) = metrics(WxTelemetryBuilder::default());
        // Without X-Forwarded-For the peer is the hop; its four bytes must not pass for the text
        // "abcd" of a hop that does not parse (which also falls back to the peer).
        let by_peer = ctx(&[], Some("97.98.99.100"));
        let garbled = ctx(&[("x-forwarded-for", "abcd")], Some("10.0.0.1"));
        let garbled_elsewhere = ctx(&[("x-forwarded-for", "abcd")], Some("10.0.0.2"));
        let node = |ctx: &WxContext| {
            let id = metrics
                .resolve(&Method::GET, Some("/"), ctx)
                .labels
                .access_node;
            metrics.access_node_value(id).to_string()
        };
        assert_eq!(node(&by_peer), "97.98.99.100");
        assert_eq!(node(&garbled), "10.0.0.1");
        assert_eq!(node(&garbled_elsewhere), "10.0.0.2");
        assert_eq!(node(&by_peer), "97.98.99.100");
    }

    #[test]
    fn span_values_are_the_real_ones_even_when_the_metric_label_is_folded() {
        let (metrics, _) = metrics(WxTelemetryBuilder::default().max_routes(1).max_appids(1));
        let first = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wx1")], None);
        let second = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wx2")], None);
        let values = |route: &str, ctx: &WxContext| {
            let series = metrics.resolve(&Method::GET, Some(route), ctx);
            let shared = metrics.shared_values(&series.labels, Some(route), ctx);
            (
                shared.route.unwrap().to_string(),
                shared.appid.unwrap().to_string(),
            )
        };
        assert_eq!(values("/a", &first), ("/a".to_owned(), "wx1".to_owned()));
        assert_eq!(values("/b", &second), ("/b".to_owned(), "wx2".to_owned()));
        let unmatched = metrics.resolve(&Method::GET, None, &first);
        assert!(
            metrics
                .shared_values(&unmatched.labels, None, &first)
                .route
                .is_none()
        );
    }

    #[test]
    fn requests_ending_unlike_the_first_get_their_own_duration_series() {
        let (metrics, registry) = metrics(WxTelemetryBuilder::default());
        let ctx = ctx(&[], None);
        let series = metrics.resolve(&Method::GET, Some("/u"), &ctx);
        for (status, error) in [
            (200, ErrorKind::None),
            (500, ErrorKind::Status),
            (200, ErrorKind::None),
            (0, ErrorKind::Cancelled),
        ] {
            metrics.request_started(&series.labels);
            metrics.request_finished(&series, status, error, Duration::from_millis(3));
        }
        let text = crate::render(&registry);
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

    #[test]
    fn stack_str_refuses_to_overflow() {
        let mut s = StackStr::<4>::new();
        assert!(std::fmt::Write::write_str(&mut s, "abcd").is_ok());
        assert!(std::fmt::Write::write_str(&mut s, "e").is_err());
        assert_eq!(s.as_str(), "abcd");
    }
}
