//! The request vocabulary: what a request is called in the metrics and on its span.
//!
//! A request is resolved once, when it arrives, into [`RequestLabels`]: interned ids of its
//! method, route template, AppID, call source and access node, each label capped by a
//! [`LabelGuard`] (values past the cap fold into `_other`). The metrics key
//! their series by it ([`SeriesKey`]); the span takes its attribute values from it
//! ([`SpanValues`]), sharing the strings the tables already hold. `metrics` and `trace` both
//! stand on this module and never on each other.
//!
//! Adding a label to the duration histogram happens here and only here: a [`MetricLabel`]
//! variant (its name and, if its values are open-ended, a cap in [`LabelCaps`]), a field of
//! [`RequestLabels`] that [`Vocabulary::request_labels`] fills and [`Vocabulary::resolve_key`]
//! covers, and its value in [`Vocabulary::duration_values`].
//!
//! The Mini Program's reports have a vocabulary of their own ([`client`]): closed sets of
//! outcomes, error codes and report results. Their routes, AppIDs and access nodes are the
//! server's own ids from these tables, under the same caps.

mod access_node;
mod client;
mod guard;
mod key;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use http::Method;
use prometheus::IntCounter;

use self::access_node::AccessNodes;
pub(crate) use self::access_node::{AccessNodeError, AccessNodeTable};
pub use self::client::CLIENT_ERROR_CODES;
pub(crate) use self::client::{ClientOutcome, ErrCode, ReportResult};
pub(crate) use self::guard::{EMPTY, LabelId, OTHER, UNMATCHED};
use self::guard::{LabelGuard, RESERVED};
pub(crate) use self::key::ResolveKey;
use crate::context::{WxContext, parse_hop};

/// The Prometheus label names of the contract.
pub(crate) mod name {
    /// The request method, `_OTHER` for methods outside the known set.
    pub(crate) const METHOD: &str = "http_request_method";
    /// The route template, `unmatched` without one.
    pub(crate) const ROUTE: &str = "http_route";
    /// The response status, empty when no response was sent.
    pub(crate) const STATUS: &str = "http_response_status_code";
    /// The service name.
    pub(crate) const SERVICE: &str = "wx_service";
    /// Why a request failed, empty on success.
    pub(crate) const ERROR_TYPE: &str = "error_type";
    /// The Mini Program's AppID.
    pub(crate) const APPID: &str = "wx_appid";
    /// The first element of `X-WX-SOURCE`.
    pub(crate) const SOURCE: &str = "wx_source";
    /// The hop that delivered the request.
    pub(crate) const ACCESS_NODE: &str = "wx_access_node";
    /// How a Mini Program call ended, as the client saw it: `ok`, `http_error`, `fail`.
    pub(crate) const OUTCOME: &str = "outcome";
    /// callContainer's `errCode` of a failed call, from a fixed set; empty when none.
    pub(crate) const ERR_CODE: &str = "wx_err_code";
}

/// Cap on distinct `http_route` values.
pub const DEFAULT_MAX_ROUTES: usize = 256;
/// Cap on distinct `wx_appid` values.
pub const DEFAULT_MAX_APPIDS: usize = 32;
/// Cap on distinct `wx_source` values.
pub const DEFAULT_MAX_SOURCES: usize = 16;
/// Cap on distinct `wx_access_node` values.
pub const DEFAULT_MAX_ACCESS_NODES: usize = 32;

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

/// The number of `http_request_method` values: the known methods and `_OTHER`.
pub(crate) const METHOD_COUNT: usize = KNOWN_METHODS.len() + 1;

/// `http_request_method` as an index: one of the methods semconv knows, else `_OTHER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MethodLabel(u8);

impl MethodLabel {
    /// Every value, in index order.
    pub(crate) const ALL: [MethodLabel; METHOD_COUNT] = {
        let mut all = [MethodLabel(0); METHOD_COUNT];
        let mut i = 0;
        while i < METHOD_COUNT {
            all[i] = MethodLabel(i as u8);
            i += 1;
        }
        all
    };
    const OTHER: MethodLabel = MethodLabel(KNOWN_METHODS.len() as u8);

    /// The label of a method: a known one, else `_OTHER`.
    pub(crate) fn of(method: &Method) -> Self {
        KNOWN_METHODS
            .iter()
            .position(|known| known == method)
            .map_or(Self::OTHER, |i| MethodLabel(i as u8))
    }

    /// The label of a method's name as text (a Mini Program's report): a known one, else
    /// `_OTHER`, whatever the text.
    pub(crate) fn of_name(name: &str) -> Self {
        KNOWN_METHODS
            .iter()
            .position(|known| known.as_str() == name)
            .map_or(Self::OTHER, |i| MethodLabel(i as u8))
    }

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        KNOWN_METHODS
            .get(usize::from(self.0))
            .map_or("_OTHER", Method::as_str)
    }

    /// Whether the method is outside the known set.
    pub(crate) fn is_other(self) -> bool {
        self == Self::OTHER
    }

    /// A position below [`METHOD_COUNT`], for per-method arrays.
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Why a request ended badly; `None` is success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ErrorKind {
    /// Success.
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

/// The optional labels of `http_server_request_duration_seconds`.
///
/// `http_request_method`, `http_route`, `http_response_status_code` and `wx_service` are always
/// present; each of these can be left off to cut the series count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricLabel {
    /// `error_type`: empty on success, else `500`-style, `cancelled`, `panic`, `body_error`, …
    ErrorType,
    /// `wx_appid`: the Mini Program's AppID (capped).
    AppId,
    /// `wx_source`: the first element of `X-WX-SOURCE` (capped).
    Source,
    /// `wx_access_node`: the delivering hop, named through the CIDR table (capped).
    AccessNode,
}

impl MetricLabel {
    /// Every optional label, in the order the histogram lists them.
    pub(crate) const ALL: [MetricLabel; 4] = [
        MetricLabel::ErrorType,
        MetricLabel::AppId,
        MetricLabel::Source,
        MetricLabel::AccessNode,
    ];

    /// The Prometheus label name.
    pub fn name(self) -> &'static str {
        match self {
            MetricLabel::ErrorType => name::ERROR_TYPE,
            MetricLabel::AppId => name::APPID,
            MetricLabel::Source => name::SOURCE,
            MetricLabel::AccessNode => name::ACCESS_NODE,
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The optional labels the duration histogram carries, as a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HistogramLabels(u8);

impl HistogramLabels {
    /// The set of `labels`.
    pub(crate) fn new(labels: &[MetricLabel]) -> Self {
        HistogramLabels(labels.iter().fold(0, |bits, label| bits | label.bit()))
    }

    fn contains(self, label: MetricLabel) -> bool {
        self.0 & label.bit() != 0
    }

    fn iter(self) -> impl Iterator<Item = MetricLabel> {
        MetricLabel::ALL
            .into_iter()
            .filter(move |label| self.contains(*label))
    }

    /// The label names of the duration histogram, in the order of
    /// [`Vocabulary::duration_values`].
    pub(crate) fn names(self) -> Vec<&'static str> {
        let mut names = vec![name::METHOD, name::ROUTE, name::STATUS, name::SERVICE];
        names.extend(self.iter().map(MetricLabel::name));
        names
    }
}

/// Per-label caps on distinct values; past a cap, values fold into `_other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LabelCaps {
    pub(crate) routes: usize,
    pub(crate) appids: usize,
    pub(crate) sources: usize,
    pub(crate) access_nodes: usize,
}

impl Default for LabelCaps {
    fn default() -> Self {
        LabelCaps {
            routes: DEFAULT_MAX_ROUTES,
            appids: DEFAULT_MAX_APPIDS,
            sources: DEFAULT_MAX_SOURCES,
            access_nodes: DEFAULT_MAX_ACCESS_NODES,
        }
    }
}

impl LabelCaps {
    /// The name of the first label whose cap is zero (which would fold every value).
    pub(crate) fn zero(&self) -> Option<&'static str> {
        [
            (name::ROUTE, self.routes),
            (name::APPID, self.appids),
            (name::SOURCE, self.sources),
            (name::ACCESS_NODE, self.access_nodes),
        ]
        .into_iter()
        .find_map(|(label, cap)| (cap == 0).then_some(label))
    }
}

/// The labels of one request, as interned ids (a disabled label is always [`EMPTY`]): what the
/// metrics key their series by, and what the span names its attributes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RequestLabels {
    pub(crate) method: MethodLabel,
    pub(crate) route: LabelId,
    pub(crate) appid: LabelId,
    pub(crate) source: LabelId,
    pub(crate) access_node: LabelId,
    /// Counted for the call deadline: the call came through the WeChat gateway.
    pub(crate) via_gateway: bool,
}

impl RequestLabels {
    /// Whether a value was folded into `_other`.
    fn folded(&self) -> bool {
        [self.route, self.appid, self.source, self.access_node].contains(&OTHER)
    }

    /// Whether the route has a name of its own: neither `unmatched` nor folded.
    pub(crate) fn has_named_route(&self) -> bool {
        self.route != UNMATCHED && self.route != OTHER
    }

    /// The key of the duration series of this request ending with `outcome`.
    pub(crate) fn series_key(self, outcome: Outcome) -> SeriesKey {
        SeriesKey {
            labels: self,
            outcome,
        }
    }
}

/// How a request ended, as the duration histogram tells it: the status and, when `error_type`
/// is one of its labels, the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Outcome {
    status: u16,
    error: ErrorKind,
}

/// The labels of one duration series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SeriesKey {
    labels: RequestLabels,
    outcome: Outcome,
}

/// Span attribute values the label tables already hold as shared strings: a span takes a
/// reference, not a copy.
#[derive(Debug)]
pub(crate) struct SpanValues {
    pub(crate) route: Option<Arc<str>>,
    pub(crate) appid: Option<Arc<str>>,
    pub(crate) service: Arc<str>,
    pub(crate) access_node: Arc<str>,
}

/// The label tables of one layer: the service name, which optional labels the histogram
/// carries, and the capped values of each label.
pub(crate) struct Vocabulary {
    service: Arc<str>,
    histogram: HistogramLabels,
    routes: LabelGuard,
    appids: LabelGuard,
    sources: LabelGuard,
    access_nodes: AccessNodes,
}

impl Vocabulary {
    /// The tables of a layer; `overflow` gives the `wxcloudrun_label_overflow_total` counter of a
    /// label name.
    pub(crate) fn new(
        service: Arc<str>,
        histogram: HistogramLabels,
        caps: &LabelCaps,
        access_node_table: AccessNodeTable,
        overflow: impl Fn(&'static str) -> IntCounter,
    ) -> Self {
        let guard = |label, cap, reserved| LabelGuard::new(cap, reserved, overflow(label));
        let values = &RESERVED[..=OTHER as usize];
        Vocabulary {
            service,
            histogram,
            routes: guard(name::ROUTE, caps.routes, &RESERVED),
            appids: guard(name::APPID, caps.appids, values),
            sources: guard(name::SOURCE, caps.sources, values),
            access_nodes: AccessNodes::new(
                access_node_table,
                guard(name::ACCESS_NODE, caps.access_nodes, values),
            ),
        }
    }

    /// `wx_service`.
    pub(crate) fn service(&self) -> &Arc<str> {
        &self.service
    }

    /// Everything [`request_labels`](Self::request_labels) reads, as bytes; `None` when it does
    /// not fit in a [`ResolveKey`].
    pub(crate) fn resolve_key(
        &self,
        method: &Method,
        route: Option<&str>,
        ctx: &WxContext,
    ) -> Option<ResolveKey> {
        let enabled = |label| self.histogram.contains(label);
        let mut key = ResolveKey::new();
        key.push(&[MethodLabel::of(method).0, u8::from(ctx.via_wechat())])?;
        key.field(route)?;
        key.field(ctx.appid().filter(|_| enabled(MetricLabel::AppId)))?;
        key.field(
            ctx.primary_source()
                .filter(|_| enabled(MetricLabel::Source)),
        )?;
        if enabled(MetricLabel::AccessNode) {
            match (ctx.access_hop_text(), ctx.peer()) {
                (Some(hop), _) => key.field(Some(hop))?,
                (None, Some(IpAddr::V4(peer))) => key.tagged(key::PEER, &peer.octets())?,
                (None, Some(IpAddr::V6(peer))) => key.tagged(key::PEER, &peer.octets())?,
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
        let enabled = |label| self.histogram.contains(label);
        let route = route.map_or(UNMATCHED, |route| self.routes.intern(route));
        let appid = match ctx.appid() {
            Some(appid) if enabled(MetricLabel::AppId) => self.appids.intern(appid),
            _ => EMPTY,
        };
        let source = match ctx.primary_source() {
            Some(source) if enabled(MetricLabel::Source) => self.sources.intern(source),
            _ => EMPTY,
        };
        let access_node = if enabled(MetricLabel::AccessNode) {
            self.access_nodes.id(ctx)
        } else {
            EMPTY
        };
        RequestLabels {
            method: MethodLabel::of(method),
            route,
            appid,
            source,
            access_node,
            via_gateway: ctx.via_wechat(),
        }
    }

    /// Whether later requests with the same [`resolve_key`](Self::resolve_key) may reuse
    /// `labels`: not when a value was folded (its overflow must count on every request), nor when
    /// the hop does not parse (it falls back to the peer address, which the key does not hold).
    pub(crate) fn reusable(&self, labels: &RequestLabels, ctx: &WxContext) -> bool {
        let unparsed_hop = ctx
            .access_hop_text()
            .is_some_and(|hop| parse_hop(hop).is_none());
        !labels.folded() && !unparsed_hop
    }

    /// How a request that ended with `status` and `error` is counted.
    pub(crate) fn outcome(&self, status: u16, error: ErrorKind) -> Outcome {
        let error = if self.histogram.contains(MetricLabel::ErrorType) {
            error
        } else {
            ErrorKind::None
        };
        Outcome { status, error }
    }

    /// The label values of a duration series, in the order of [`HistogramLabels::names`].
    pub(crate) fn duration_values(&self, key: &SeriesKey) -> Vec<Arc<str>> {
        let SeriesKey { labels, outcome } = key;
        let mut values: Vec<Arc<str>> = vec![
            Arc::from(labels.method.as_str()),
            self.route(labels.route),
            Arc::from(status_label(outcome.status)),
            self.service.clone(),
        ];
        values.extend(self.histogram.iter().map(|label| match label {
            MetricLabel::ErrorType => Arc::from(&*outcome.error.label(outcome.status)),
            MetricLabel::AppId => self.appid(labels.appid),
            MetricLabel::Source => self.sources.value(labels.source),
            MetricLabel::AccessNode => self.access_nodes.value(labels.access_node),
        }));
        values
    }

    /// The `http_route` value of an id.
    pub(crate) fn route(&self, id: LabelId) -> Arc<str> {
        self.routes.value(id)
    }

    /// The `wx_appid` value of an id.
    pub(crate) fn appid(&self, id: LabelId) -> Arc<str> {
        self.appids.value(id)
    }

    /// The `wx_access_node` value of an id.
    pub(crate) fn access_node(&self, id: LabelId) -> Arc<str> {
        self.access_nodes.value(id)
    }

    /// The `wx_appid` id of a client report's AppID under the same cap as the server's; `None`
    /// when the cap is full and the value is new (the caller folds it and counts the overflow
    /// against its own metric).
    pub(crate) fn client_appid(&self, appid: Option<&str>) -> Option<LabelId> {
        self.appids.try_intern(appid.unwrap_or_default())
    }

    /// The span attributes the label tables already hold: shared, not copied. Values folded into
    /// `_other` (or not interned because the label is off) are copied: spans carry the real value.
    pub(crate) fn span_values(
        &self,
        labels: &RequestLabels,
        route: Option<&str>,
        ctx: &WxContext,
    ) -> SpanValues {
        let interned = |id: LabelId| id != EMPTY && id != OTHER;
        SpanValues {
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::context::TrustMode;

    #[test]
    fn methods_outside_the_known_set_are_other() {
        assert_eq!(MethodLabel::of(&Method::GET).as_str(), "GET");
        assert_eq!(MethodLabel::of(&Method::PATCH).as_str(), "PATCH");
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(MethodLabel::of(&custom).as_str(), "_OTHER");
        assert_eq!(
            MethodLabel::of_name("DELETE"),
            MethodLabel::of(&Method::DELETE)
        );
        for other in ["_OTHER", "get", "GET /x", ""] {
            assert_eq!(MethodLabel::of_name(other).as_str(), "_OTHER", "{other:?}");
        }
        assert!(
            MethodLabel::ALL
                .iter()
                .enumerate()
                .all(|(i, m)| m.index() == i)
        );
    }

    #[test]
    fn status_labels_are_numeric() {
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(599), "599");
        assert_eq!(status_label(0), "");
        assert_eq!(ErrorKind::Status.label(503), "503");
        assert_eq!(ErrorKind::None.label(503), "");
    }

    /// A request context from header pairs and an optional peer address.
    pub(crate) fn ctx(headers: &[(&'static str, &'static str)], peer: Option<&str>) -> WxContext {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        let peer = peer.map(|peer| peer.parse().unwrap());
        WxContext::from_headers(&map, TrustMode::WhenSourcePresent, peer)
    }

    fn vocabulary(caps: LabelCaps) -> Vocabulary {
        Vocabulary::new(
            Arc::from("svc"),
            HistogramLabels::new(&MetricLabel::ALL),
            &caps,
            AccessNodeTable::default(),
            |_| IntCounter::new("o", "o").unwrap(),
        )
    }

    #[test]
    fn span_values_are_the_real_ones_even_when_the_metric_label_is_folded() {
        let labels = vocabulary(LabelCaps {
            routes: 1,
            appids: 1,
            ..LabelCaps::default()
        });
        let first = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wx1")], None);
        let second = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wx2")], None);
        let values = |route: &str, ctx: &WxContext| {
            let resolved = labels.request_labels(&Method::GET, Some(route), ctx);
            let span = labels.span_values(&resolved, Some(route), ctx);
            (
                span.route.unwrap().to_string(),
                span.appid.unwrap().to_string(),
            )
        };
        assert_eq!(values("/a", &first), ("/a".to_owned(), "wx1".to_owned()));
        assert_eq!(values("/b", &second), ("/b".to_owned(), "wx2".to_owned()));
        let unmatched = labels.request_labels(&Method::GET, None, &first);
        assert!(labels.span_values(&unmatched, None, &first).route.is_none());
    }

    #[test]
    fn the_histogram_names_and_values_line_up() {
        let labels = vocabulary(LabelCaps::default());
        let ctx = ctx(&[("x-wx-source", "wx_client"), ("x-wx-appid", "wx1")], None);
        let resolved = labels.request_labels(&Method::POST, Some("/u"), &ctx);
        let key = resolved.series_key(labels.outcome(503, ErrorKind::Status));
        let pairs: Vec<(&str, String)> = HistogramLabels::new(&MetricLabel::ALL)
            .names()
            .into_iter()
            .zip(labels.duration_values(&key).iter().map(|v| v.to_string()))
            .collect();
        let expected = [
            ("http_request_method", "POST"),
            ("http_route", "/u"),
            ("http_response_status_code", "503"),
            ("wx_service", "svc"),
            ("error_type", "503"),
            ("wx_appid", "wx1"),
            ("wx_source", "wx_client"),
            ("wx_access_node", ""),
        ];
        let expected: Vec<(&str, String)> = expected
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect();
        assert_eq!(pairs, expected);
    }
}
