//! The OpenTelemetry server span of a request, and the `tracing` span around it.
//!
//! The span is built with the OpenTelemetry API directly rather than through `tracing`: the span
//! contract (kind, parent, status, end instant) is then exact, and a request that is not sampled
//! costs no attribute work. A `tracing` span named `request` is entered alongside it, so handler
//! logs are attributed to the request, and the OpenTelemetry context is attached while the service
//! and its response body run, so log lines and outgoing calls see the trace.
//!
//! [`propagation`] reads and writes W3C Trace Context; [`pseudonym`] decides what a span shows of
//! an OpenID or UnionID.

mod address;
mod propagation;
mod pseudonym;
mod sample_first;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Version};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceId, Tracer as _,
};
use opentelemetry::{Context, KeyValue};

use self::address::address_text;
pub use self::propagation::{
    DEFAULT_TRACE_ID_HEADER, extract_trace_context, inject_trace_context, traceparent,
};
pub use self::pseudonym::IdentityPolicy;
use self::pseudonym::Pseudonyms;
pub(crate) use self::sample_first::SampleFirst;
#[cfg(feature = "init")]
pub(crate) use self::sample_first::{Attributes, Sampling, ServerSpanStart, preset_trace_id};
use crate::cache::ReadMostlyMap;
use crate::context::WxContext;
use crate::labels::{ErrorKind, LabelId, MethodLabel, RequestLabels, SpanValues};

/// The `tracing` target of the layer's own `request` span. It is kept out of the
/// tracing → OpenTelemetry bridge: the layer records the server span itself.
pub(crate) const REQUEST_SPAN_TARGET: &str = "wxcloudrun_telemetry::request";

/// The attribute keys of the span contract (OpenTelemetry semantic conventions, then `wx.*`).
mod key {
    pub(super) const HTTP_REQUEST_METHOD: &str = "http.request.method";
    pub(super) const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
    pub(super) const HTTP_ROUTE: &str = "http.route";
    pub(super) const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    pub(super) const URL_PATH: &str = "url.path";
    pub(super) const URL_SCHEME: &str = "url.scheme";
    pub(super) const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
    pub(super) const USER_AGENT_ORIGINAL: &str = "user_agent.original";
    pub(super) const CLIENT_ADDRESS: &str = "client.address";
    pub(super) const ERROR_TYPE: &str = "error.type";
    pub(super) const ENDUSER_PSEUDO_ID: &str = "enduser.pseudo.id";
    pub(super) const WX_UNIONID_HASH: &str = "wx.unionid_hash";
    pub(super) const WX_APPID: &str = "wx.appid";
    pub(super) const WX_FROM_APPID: &str = "wx.from_appid";
    pub(super) const WX_ENV: &str = "wx.env";
    pub(super) const WX_SOURCE: &str = "wx.source";
    pub(super) const WX_CALL_ID: &str = "wx.call_id";
    pub(super) const WX_SERVICE: &str = "wx.service";
    pub(super) const WX_ACCESS_NODE: &str = "wx.access_node";
    pub(super) const WX_COLD_START: &str = "wx.cold_start";
}

/// The most attributes a server span carries: every key of [`key`] once.
const MAX_ATTRIBUTES: usize = 20;

/// Longest `http.request.method_original` recorded.
const MAX_METHOD_BYTES: usize = 64;
/// Longest `user_agent.original` recorded.
const MAX_USER_AGENT_BYTES: usize = 512;

/// A server span attribute's value as the layer has it, turned into an OpenTelemetry `Value`
/// only for an SDK span: the layer's own encoded span writes it as it is, copying nothing.
#[derive(Debug)]
pub(crate) enum AttributeValue<'a> {
    Static(&'static str),
    Shared(&'a Arc<str>),
    /// Copied for an SDK span.
    Borrowed(&'a str),
    Bool(bool),
}

impl AttributeValue<'_> {
    /// The attribute for an SDK span.
    pub(crate) fn key_value(self, key: &'static str) -> KeyValue {
        match self {
            AttributeValue::Static(s) => KeyValue::new(key, s),
            AttributeValue::Shared(s) => KeyValue::new(key, Arc::clone(s)),
            AttributeValue::Borrowed(s) => KeyValue::new(key, s.to_owned()),
            AttributeValue::Bool(b) => KeyValue::new(key, b),
        }
    }
}

/// Where the layer puts the server span's attributes: an SDK span's vector, or the layer's own
/// encoded span.
pub(crate) type PushAttribute<'p> = dyn FnMut(&'static str, AttributeValue<'_>) + 'p;

/// The layer's tracing configuration, shared by every request.
pub(crate) struct Tracing {
    tracer: Arc<BoxedTracer>,
    /// The tracer's sampler, when the layer may ask it first (see [`sample_first`]).
    sample_first: Option<SampleFirst>,
    pseudonyms: Pseudonyms,
    trace_id_header: Option<HeaderName>,
    response_traceparent: bool,
    /// `{method} {route}` span names, made `'static` once per (method, route) pair. Both are
    /// capped, so this holds at most 10 × the route cap names.
    names: ReadMostlyMap<(MethodLabel, LabelId), &'static str>,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("identity", &self.pseudonyms.policy())
            .field("keyed", &self.pseudonyms.is_keyed())
            .finish_non_exhaustive()
    }
}

/// One request's OpenTelemetry span, in the context that is current while the service runs.
pub(crate) struct RequestSpan {
    pub(crate) cx: Context,
    start: SystemTime,
}

impl RequestSpan {
    pub(crate) fn span_context(&self) -> SpanContext {
        self.cx.span().span_context().clone()
    }

    /// The span's trace id, when it has a valid one (also when it is not sampled).
    fn trace_id(&self) -> Option<TraceId> {
        let span = self.cx.span();
        let span_context = span.span_context();
        span_context.is_valid().then(|| span_context.trace_id())
    }

    /// The trace and span ids and end time of a sampled span (one that will be exported), for
    /// the exemplar of its duration; `None` for the rest, at the cost of one flag check.
    pub(crate) fn sampled(&self, elapsed: Duration) -> Option<(u128, u64, SystemTime)> {
        let span = self.cx.span();
        let span_context = span.span_context();
        if !span_context.is_sampled() || !span_context.is_valid() {
            return None;
        }
        Some((
            u128::from_be_bytes(span_context.trace_id().to_bytes()),
            u64::from_be_bytes(span_context.span_id().to_bytes()),
            self.start + elapsed,
        ))
    }

    /// Ends the span `elapsed` after it started: the instant the duration histogram uses.
    pub(crate) fn finish(&self, status: u16, error: ErrorKind, elapsed: Duration) {
        let span = self.cx.span();
        if span.is_recording() {
            if status != 0 {
                span.set_attribute(KeyValue::new(
                    key::HTTP_RESPONSE_STATUS_CODE,
                    i64::from(status),
                ));
            }
            if error != ErrorKind::None {
                span.set_attribute(KeyValue::new(
                    key::ERROR_TYPE,
                    error.label(status).into_owned(),
                ));
                span.set_status(Status::error(""));
            }
        }
        span.end_with_timestamp(self.start + elapsed);
    }
}

/// The trace id a request is known by, as 128 bits: its server span's (which continues the
/// caller's `traceparent`, and is what the `x-trace-id` header returns), else the caller's
/// `traceparent` itself when no span is recorded. `None` outside a trace.
pub(crate) fn request_trace_id<B>(req: &Request<B>, span: Option<&RequestSpan>) -> Option<u128> {
    let trace_id = match span {
        Some(span) => span.trace_id(),
        None => propagation::traceparent_trace_id(req.headers()),
    }?;
    Some(u128::from_be_bytes(trace_id.to_bytes()))
}

/// The `tracing` span handler logs are attributed to, carrying the trace id of `span` when there
/// is one (disabled when nobody listens). The trace id is a field from the start rather than
/// recorded after: a `record` is one more dispatch through every layer of the subscriber.
pub(crate) fn log_span(
    method: MethodLabel,
    route: Option<&str>,
    span: Option<&RequestSpan>,
) -> tracing::Span {
    let trace_id = span.and_then(RequestSpan::trace_id);
    tracing::info_span!(
        target: REQUEST_SPAN_TARGET,
        "request",
        http.request.method = method.as_str(),
        http.route = route,
        trace_id = trace_id.map(tracing::field::display),
    )
}

impl Tracing {
    pub(crate) fn new(
        (tracer, sample_first): (Arc<BoxedTracer>, Option<SampleFirst>),
        identity: IdentityPolicy,
        identity_key: Option<Vec<u8>>,
        trace_id_header: Option<HeaderName>,
        response_traceparent: bool,
    ) -> Self {
        Tracing {
            tracer,
            sample_first,
            pseudonyms: Pseudonyms::new(identity, identity_key.as_deref()),
            trace_id_header,
            response_traceparent,
            names: ReadMostlyMap::default(),
        }
    }

    fn span_name(&self, labels: &RequestLabels, route: Option<&str>) -> Cow<'static, str> {
        let method = labels.method;
        let prefix = if method.is_other() {
            "HTTP"
        } else {
            method.as_str()
        };
        let Some(route) = route else {
            return Cow::Borrowed(prefix);
        };
        if !labels.has_named_route() {
            // Past the route cap: don't mint a new name per value.
            return Cow::Borrowed(prefix);
        }
        Cow::Borrowed(self.names.get_or_insert_with((method, labels.route), || {
            Box::leak(format!("{prefix} {route}").into_boxed_str())
        }))
    }

    /// Starts the server span of a request; `cold` when it is the process's first.
    pub(crate) fn start<B>(
        &self,
        req: &Request<B>,
        ctx: &WxContext,
        labels: &RequestLabels,
        (route, values): (Option<&str>, SpanValues),
        cold: bool,
    ) -> RequestSpan {
        let parent = match extract_trace_context(req.headers()) {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        };
        let start = SystemTime::now();
        let name = self.span_name(labels, route);
        let builder = || {
            self.tracer
                .span_builder(name.clone())
                .with_kind(SpanKind::Server)
                .with_start_time(start)
        };
        let mut attributes = |push: &mut PushAttribute<'_>| {
            self.attributes(req, ctx, labels.method, &values, cold, push);
        };
        let cx = match &self.sample_first {
            // Sampled already: recorded by the pipeline's own span when it has one, else the
            // attributes go in through the builder, in one vector of the right size that becomes
            // the span's own (no regrowth, no per-attribute call).
            Some(first) => first.start(
                parent,
                &name,
                start,
                &mut attributes,
                |parent, attributes| {
                    let mut all = Vec::with_capacity(MAX_ATTRIBUTES);
                    attributes(&mut |key, value| all.push(value.key_value(key)));
                    let span = builder()
                        .with_attributes(all)
                        .start_with_context(&*self.tracer, parent);
                    parent.with_span(span)
                },
            ),
            // The tracer samples: the span gets a vector of the right size, empty, and the
            // attributes only if it records (one allocation wasted when it does not).
            None => {
                let mut span = builder()
                    .with_attributes(Vec::with_capacity(MAX_ATTRIBUTES))
                    .start_with_context(&*self.tracer, &parent);
                if span.is_recording() {
                    attributes(&mut |key, value| span.set_attribute(value.key_value(key)));
                }
                parent.with_span(span)
            }
        };
        RequestSpan { cx, start }
    }

    fn attributes<B>(
        &self,
        req: &Request<B>,
        ctx: &WxContext,
        method: MethodLabel,
        values: &SpanValues,
        cold: bool,
        push: &mut PushAttribute<'_>,
    ) {
        use AttributeValue::{Bool, Borrowed, Shared, Static};
        push(key::HTTP_REQUEST_METHOD, Static(method.as_str()));
        if method.is_other() {
            let original = truncate(req.method().as_str(), MAX_METHOD_BYTES);
            push(key::HTTP_REQUEST_METHOD_ORIGINAL, Borrowed(original));
        }
        if let Some(route) = &values.route {
            push(key::HTTP_ROUTE, Shared(route));
        }
        push(key::URL_PATH, Borrowed(req.uri().path()));
        push(key::URL_SCHEME, Static(scheme(req)));
        if let Some(version) = protocol_version(req.version()) {
            push(key::NETWORK_PROTOCOL_VERSION, Static(version));
        }
        if let Some(agent) = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            push(
                key::USER_AGENT_ORIGINAL,
                Borrowed(truncate(agent, MAX_USER_AGENT_BYTES)),
            );
        }
        if let Some(client) = ctx.client_addr() {
            push(key::CLIENT_ADDRESS, Borrowed(address_text(client).as_str()));
        }
        if let Some(user) = ctx.user_openid().and_then(|id| self.pseudonyms.shown(id)) {
            push(key::ENDUSER_PSEUDO_ID, Borrowed(user.as_str()));
        }
        let unionid = ctx.unionid().or_else(|| ctx.from_unionid());
        if let Some(union) = unionid.and_then(|id| self.pseudonyms.shown(id)) {
            push(key::WX_UNIONID_HASH, Borrowed(union.as_str()));
        }
        if let Some(appid) = &values.appid {
            push(key::WX_APPID, Shared(appid));
        }
        let optional = [
            (key::WX_FROM_APPID, ctx.from_appid()),
            (key::WX_ENV, ctx.env()),
            (key::WX_SOURCE, ctx.source()),
            (key::WX_CALL_ID, ctx.call_id()),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                push(key, Borrowed(value));
            }
        }
        push(key::WX_SERVICE, Shared(&values.service));
        if !values.access_node.is_empty() {
            push(key::WX_ACCESS_NODE, Shared(&values.access_node));
        }
        push(key::WX_COLD_START, Bool(cold));
    }

    /// Adds the trace id (and, if configured, `traceparent`) of `span` to the response headers.
    pub(crate) fn tag_response(&self, span: &RequestSpan, headers: &mut HeaderMap) {
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return;
        }
        if let Some(name) = &self.trace_id_header
            && let Ok(value) =
                HeaderValue::from_bytes(&propagation::trace_id_hex(span_context.trace_id()))
        {
            headers.insert(name.clone(), value);
        }
        if self.response_traceparent
            && let Ok(value) = HeaderValue::from_str(&traceparent(&span_context))
        {
            headers.insert(propagation::TRACEPARENT.clone(), value);
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `url.scheme`: what the client used, per `X-Forwarded-Proto`, else plain HTTP (the gateway
/// reaches the container over HTTP).
fn scheme<B>(req: &Request<B>) -> &'static str {
    let forwarded = req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    match forwarded {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        Some(proto) if proto.eq_ignore_ascii_case("http") => "http",
        _ => match req.uri().scheme_str() {
            Some("https") => "https",
            _ => "http",
        },
    }
}

fn protocol_version(version: Version) -> Option<&'static str> {
    Some(match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("日本語", 4), "日");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
