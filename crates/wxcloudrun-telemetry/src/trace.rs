//! The OpenTelemetry server span of a request, W3C Trace Context propagation, and the
//! pseudonymisation of OpenIDs and UnionIDs.
//!
//! The span is built with the OpenTelemetry API directly rather than through `tracing`: the span
//! contract (kind, parent, status, end instant) is then exact, and a request that is not sampled
//! costs no attribute work. A `tracing` span named `request` is entered alongside it, so handler
//! logs are attributed to the request, and the OpenTelemetry context is attached while the service
//! and its response body run, so log lines and outgoing calls see the trace.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Version};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use rustc_hash::FxHasher;
use sha2::{Digest, Sha256};

use crate::WxContext;
use crate::metrics::{ErrorKind, LabelId, OTHER, RequestLabels, UNMATCHED, method_label};

/// How the caller's OpenID and UnionID appear on spans (`enduser.pseudo.id`, `wx.unionid_hash`).
///
/// They are personal data: never metric labels, and on spans only as configured here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdentityPolicy {
    /// A hash: HMAC-SHA-256 under the configured key (so ids join across services that share it,
    /// and cannot be reversed without it), else an unkeyed SHA-256. 32 hex characters.
    #[default]
    Hashed,
    /// The raw OpenID and UnionID. Only where the trace backend may hold personal data.
    Raw,
    /// Neither appears.
    Omitted,
}

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The response header that carries the trace id by default.
pub const DEFAULT_TRACE_ID_HEADER: HeaderName = HeaderName::from_static("x-trace-id");

/// Reads a W3C `traceparent` (and `tracestate`) into a remote span context.
///
/// Follows Trace Context level 1: lowercase hex, all-zero ids and version `ff` are invalid, and a
/// future version may append fields after the flags.
pub fn extract_trace_context(headers: &HeaderMap) -> Option<SpanContext> {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    let traceparent = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = traceparent.to_str().ok()?.trim();
    let mut parts = text.split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let is_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !is_hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !is_hex(trace_id, 32) || !is_hex(span_id, 16) || !is_hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8();
    let trace_state = tracestate(headers).unwrap_or_default();
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        trace_state,
    ))
}

fn tracestate(headers: &HeaderMap) -> Option<TraceState> {
    let mut joined = String::new();
    for value in headers.get_all(&TRACESTATE) {
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(value.to_str().ok()?);
    }
    if joined.is_empty() {
        return None;
    }
    TraceState::from_str(&joined).ok()
}

/// The `traceparent` value of a span context: `00-{trace id}-{span id}-{flags}`.
pub fn traceparent(span_context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span_context.trace_id(),
        span_context.span_id(),
        span_context.trace_flags().to_u8()
    )
}

/// Writes the current OpenTelemetry context as W3C `traceparent`/`tracestate` headers, for calls
/// the service makes while handling a request (the layer attaches the request's context).
/// Does nothing outside a trace.
pub fn inject_trace_context(headers: &mut HeaderMap) {
    let cx = Context::current();
    let span = cx.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&traceparent(span_context)) {
        headers.insert(TRACEPARENT.clone(), value);
    }
    let state = span_context.trace_state().header();
    if let Ok(value) = HeaderValue::from_str(&state)
        && !state.is_empty()
    {
        headers.insert(TRACESTATE.clone(), value);
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The layer's tracing configuration, shared by every request.
pub(crate) struct Tracing {
    tracer: Arc<BoxedTracer>,
    identity: IdentityPolicy,
    pseudonyms: Pseudonyms,
    pub(crate) trace_id_header: Option<HeaderName>,
    pub(crate) response_traceparent: bool,
    /// `{method} {route}` span names, made `'static` once per (method, route) pair. Both are
    /// capped, so this holds at most 10 × the route cap names.
    names: RwLock<FxMap<(u8, LabelId), &'static str>>,
    cold: AtomicBool,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("identity", &self.identity)
            .field("keyed", &self.pseudonyms.keyed.is_some())
            .finish_non_exhaustive()
    }
}

/// Attribute values the metrics already hold as shared strings: a span takes a reference, not a
/// copy.
pub(crate) struct SharedValues {
    pub(crate) route: Option<Arc<str>>,
    pub(crate) appid: Option<Arc<str>>,
    pub(crate) service: Arc<str>,
    pub(crate) access_node: Arc<str>,
}

/// One request's span and the `tracing` span entered around the service.
pub(crate) struct RequestSpan {
    pub(crate) cx: Context,
    start: SystemTime,
}

impl RequestSpan {
    pub(crate) fn span_context(&self) -> SpanContext {
        self.cx.span().span_context().clone()
    }

    /// Ends the span `elapsed` after it started: the instant the duration histogram uses.
    pub(crate) fn finish(&self, status: u16, error: ErrorKind, elapsed: std::time::Duration) {
        let span = self.cx.span();
        if span.is_recording() {
            if status != 0 {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            if error != ErrorKind::None {
                span.set_attribute(KeyValue::new(
                    "error.type",
                    error.label(status).into_owned(),
                ));
                span.set_status(Status::error(""));
            }
        }
        span.end_with_timestamp(self.start + elapsed);
    }
}

impl Tracing {
    pub(crate) fn new(
        tracer: Arc<BoxedTracer>,
        identity: IdentityPolicy,
        identity_key: Option<Vec<u8>>,
        trace_id_header: Option<HeaderName>,
        response_traceparent: bool,
    ) -> Self {
        Tracing {
            tracer,
            identity,
            pseudonyms: Pseudonyms::new(identity_key.as_deref()),
            trace_id_header,
            response_traceparent,
            names: RwLock::default(),
            cold: AtomicBool::new(true),
        }
    }

    fn span_name(&self, labels: &RequestLabels, route: Option<&str>) -> Cow<'static, str> {
        let method = method_label(labels.method);
        let method = if method == "_OTHER" { "HTTP" } else { method };
        let Some(route) = route else {
            return Cow::Borrowed(method);
        };
        if labels.route == UNMATCHED || labels.route == OTHER {
            // Past the route cap: don't mint a new name per value.
            return Cow::Borrowed(method);
        }
        let key = (labels.method, labels.route);
        if let Some(name) = self
            .names
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Cow::Borrowed(name);
        }
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        let name = *names
            .entry(key)
            .or_insert_with(|| Box::leak(format!("{method} {route}").into_boxed_str()));
        Cow::Borrowed(name)
    }

    /// Starts the server span of a request.
    pub(crate) fn start<B>(
        &self,
        req: &Request<B>,
        ctx: &WxContext,
        labels: &RequestLabels,
        route: Option<&str>,
        shared: SharedValues,
    ) -> RequestSpan {
        let parent = match extract_trace_context(req.headers()) {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        };
        let start = SystemTime::now();
        let mut span = self
            .tracer
            .span_builder(self.span_name(labels, route))
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .start_with_context(&*self.tracer, &parent);
        let cold = self.cold.swap(false, Ordering::Relaxed);
        if span.is_recording() {
            span.set_attributes(self.attributes(req, ctx, labels, shared, cold));
        }
        RequestSpan {
            cx: parent.with_span(span),
            start,
        }
    }

    fn attributes<B>(
        &self,
        req: &Request<B>,
        ctx: &WxContext,
        labels: &RequestLabels,
        shared: SharedValues,
        cold: bool,
    ) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(20);
        let method = method_label(labels.method);
        attributes.push(KeyValue::new("http.request.method", method));
        if method == "_OTHER" {
            attributes.push(KeyValue::new(
                "http.request.method_original",
                truncate(req.method().as_str(), 64).to_owned(),
            ));
        }
        if let Some(route) = shared.route {
            attributes.push(KeyValue::new("http.route", route));
        }
        attributes.push(KeyValue::new("url.path", req.uri().path().to_owned()));
        attributes.push(KeyValue::new("url.scheme", scheme(req)));
        if let Some(version) = protocol_version(req.version()) {
            attributes.push(KeyValue::new("network.protocol.version", version));
        }
        if let Some(agent) = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            attributes.push(KeyValue::new(
                "user_agent.original",
                truncate(agent, 512).to_owned(),
            ));
        }
        if let Some(client) = ctx.client_addr() {
            attributes.push(KeyValue::new("client.address", client.to_string()));
        }
        if let Some(user) = ctx.user_openid().and_then(|id| self.pseudonym(id)) {
            attributes.push(KeyValue::new("enduser.pseudo.id", user));
        }
        let unionid = ctx.unionid().or_else(|| ctx.from_unionid());
        if let Some(union) = unionid.and_then(|id| self.pseudonym(id)) {
            attributes.push(KeyValue::new("wx.unionid_hash", union));
        }
        if let Some(appid) = shared.appid {
            attributes.push(KeyValue::new("wx.appid", appid));
        }
        let optional = [
            ("wx.from_appid", ctx.from_appid()),
            ("wx.env", ctx.env()),
            ("wx.source", ctx.source()),
            ("wx.call_id", ctx.call_id()),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                attributes.push(KeyValue::new(key, value.to_owned()));
            }
        }
        attributes.push(KeyValue::new("wx.service", shared.service));
        if !shared.access_node.is_empty() {
            attributes.push(KeyValue::new("wx.access_node", shared.access_node));
        }
        attributes.push(KeyValue::new("wx.cold_start", cold));
        attributes
    }

    fn pseudonym(&self, id: &str) -> Option<String> {
        match self.identity {
            IdentityPolicy::Omitted => None,
            IdentityPolicy::Raw => Some(id.to_owned()),
            IdentityPolicy::Hashed => Some(self.pseudonyms.of(id)),
        }
    }
}

/// Hashes identities: HMAC-SHA-256 under the configured key, else SHA-256 with a fixed prefix.
/// Both are keyed once: a request only hashes its own id.
struct Pseudonyms {
    keyed: Option<Hmac<Sha256>>,
    unkeyed: Sha256,
}

impl Pseudonyms {
    fn new(key: Option<&[u8]>) -> Self {
        let mut unkeyed = Sha256::new();
        unkeyed.update(b"wxcloudrun-telemetry/id\0");
        Pseudonyms {
            // HMAC accepts keys of any length: `None` is unreachable.
            keyed: key.and_then(|key| Hmac::<Sha256>::new_from_slice(key).ok()),
            unkeyed,
        }
    }

    /// The pseudonym of `id`: 32 hex characters (128 bits of the digest).
    fn of(&self, id: &str) -> String {
        let digest: [u8; 32] = match &self.keyed {
            Some(mac) => {
                let mut mac = mac.clone();
                mac.update(id.as_bytes());
                mac.finalize().into_bytes().into()
            }
            None => {
                let mut hasher = self.unkeyed.clone();
                hasher.update(id.as_bytes());
                hasher.finalize().into()
            }
        };
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(32);
        for byte in &digest[..16] {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        hex
    }
}

/// The pseudonym of `id` under `key`; see [`Pseudonyms`].
#[cfg(test)]
fn hash_id(key: Option<&[u8]>, id: &str) -> String {
    Pseudonyms::new(key).of(id)
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

    fn with_traceparent(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn extracts_a_valid_traceparent() {
        let mut headers =
            with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        headers.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
        let parent = extract_trace_context(&headers).unwrap();
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parent.is_sampled());
        assert!(parent.is_remote());
        assert_eq!(parent.trace_state().get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(
            traceparent(&parent),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn rejects_invalid_traceparents() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert!(
                extract_trace_context(&with_traceparent(bad)).is_none(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn future_versions_may_append_fields() {
        let headers =
            with_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what");
        let parent = extract_trace_context(&headers).unwrap();
        assert!(!parent.is_sampled());
    }

    #[test]
    fn hashes_are_keyed_and_stable() {
        let unkeyed = hash_id(None, "oUser");
        assert_eq!(unkeyed.len(), 32);
        assert_eq!(unkeyed, hash_id(None, "oUser"));
        assert_ne!(unkeyed, hash_id(None, "oUser2"));
        let keyed = hash_id(Some(b"k1"), "oUser");
        assert_ne!(keyed, unkeyed);
        assert_ne!(keyed, hash_id(Some(b"k2"), "oUser"));
        assert!(!keyed.contains("oUser"));
        // Pinned (Python: hashlib.sha256(b"wxcloudrun-telemetry/id\0oUser"), hmac.new(b"k1",
        // b"oUser", hashlib.sha256); the first 16 bytes in hex): pseudonyms must not change
        // between versions, or dashboards lose their users.
        assert_eq!(unkeyed, "61e9baf465c0f546ab3e649999dd2766");
        assert_eq!(keyed, "fd84179dc8b564692a1edd9354401a15");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("日本語", 4), "日");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
