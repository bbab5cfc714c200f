//! OTLP `ExportTraceServiceRequest` bytes written straight from the SDK's finished spans.
//!
//! Why not opentelemetry-otlp's path: it first converts every `SpanData` into
//! `opentelemetry-proto` messages (a `String` per attribute key and value, a `Vec` per id, the
//! resource's attributes cloned into every request) and then lets prost walk them twice, once for
//! the lengths and once to write. Under callgrind that conversion and encoding cost ~26,000
//! instructions a span on the exporter thread (`wx_traces_always_on_otlp_encoded` against the
//! dropping exporter), as much as the request and its span together. Here each field is written
//! once from the span, the resource is encoded once when the SDK hands it over, and a nested
//! message's length is written after its body (moved by the few bytes its varint needs), so
//! nothing is walked twice.
//!
//! The bytes are the ones prost writes for the request opentelemetry-otlp builds (same fields,
//! same order, same defaults left out): `tests::same_bytes_as_opentelemetry_otlp` checks it.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};

use crate::trace::AttributeValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// `SpanFlags`: the span says whether its parent is remote, and says so in bit 9.
const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
const CONTEXT_IS_REMOTE: u32 = 0x200;

/// A protobuf writer over one growing buffer.
struct Writer<'b> {
    buf: &'b mut Vec<u8>,
}

impl Writer<'_> {
    /// A length-delimited field, written even when empty.
    fn bytes_always(&mut self, tag: u32, value: &[u8]) {
        encode_key(tag, WireType::LengthDelimited, self.buf);
        encode_varint(value.len() as u64, self.buf);
        self.buf.extend_from_slice(value);
    }

    /// A `bytes` or `string` field, left out when empty (proto3's default).
    fn bytes(&mut self, tag: u32, value: &[u8]) {
        if !value.is_empty() {
            self.bytes_always(tag, value);
        }
    }

    fn string(&mut self, tag: u32, value: &str) {
        self.bytes(tag, value.as_bytes());
    }

    /// A varint field (`uint32`, `int64`, enums), left out when zero.
    fn varint(&mut self, tag: u32, value: u64) {
        if value != 0 {
            self.varint_always(tag, value);
        }
    }

    fn varint_always(&mut self, tag: u32, value: u64) {
        encode_key(tag, WireType::Varint, self.buf);
        encode_varint(value, self.buf);
    }

    /// A `fixed64` or `double` field's bits, written even when zero.
    fn fixed64_always(&mut self, tag: u32, bits: u64) {
        encode_key(tag, WireType::SixtyFourBit, self.buf);
        self.buf.extend_from_slice(&bits.to_le_bytes());
    }

    fn fixed64(&mut self, tag: u32, bits: u64) {
        if bits != 0 {
            self.fixed64_always(tag, bits);
        }
    }

    fn fixed32(&mut self, tag: u32, bits: u32) {
        if bits != 0 {
            encode_key(tag, WireType::ThirtyTwoBit, self.buf);
            self.buf.extend_from_slice(&bits.to_le_bytes());
        }
    }

    /// A nested message (always written, as prost writes a `Some` message). Its length is
    /// known only once the body is written: one byte is kept for it, and the body moves right
    /// by the varint's extra bytes when it is 128 bytes or longer.
    fn message(&mut self, tag: u32, body: impl FnOnce(&mut Writer<'_>)) {
        encode_key(tag, WireType::LengthDelimited, self.buf);
        let at = self.buf.len();
        self.buf.push(0);
        body(&mut Writer { buf: self.buf });
        let len = self.buf.len() - at - 1;
        let extra = encoded_len_varint(len as u64) - 1;
        if extra > 0 {
            let end = self.buf.len();
            self.buf.resize(end + extra, 0);
            self.buf.copy_within(at + 1..end, at + 1 + extra);
        }
        let mut prefix = [0u8; 10];
        let mut slot = &mut prefix[..];
        encode_varint(len as u64, &mut slot);
        self.buf[at..=at + extra].copy_from_slice(&prefix[..=extra]);
    }
}

/// `AnyValue`: its one field is written even when it holds the default.
fn any_value(w: &mut Writer<'_>, value: &Value) {
    match value {
        Value::String(s) => w.bytes_always(1, s.as_str().as_bytes()),
        Value::Bool(b) => w.varint_always(2, u64::from(*b)),
        Value::I64(i) => w.varint_always(3, *i as u64),
        Value::F64(f) => w.fixed64_always(4, f.to_bits()),
        Value::Array(array) => w.message(5, |w| array_values(w, array)),
        // A kind added to the API after this was written: its text, rather than nothing.
        other => w.bytes_always(1, other.as_str().as_bytes()),
    }
}

/// `ArrayValue.values`.
fn array_values(w: &mut Writer<'_>, array: &Array) {
    match array {
        Array::Bool(values) => {
            for v in values {
                w.message(1, |w| w.varint_always(2, u64::from(*v)));
            }
        }
        Array::I64(values) => {
            for v in values {
                w.message(1, |w| w.varint_always(3, *v as u64));
            }
        }
        Array::F64(values) => {
            for v in values {
                w.message(1, |w| w.fixed64_always(4, v.to_bits()));
            }
        }
        Array::String(values) => {
            for v in values {
                w.message(1, |w| w.bytes_always(1, v.as_str().as_bytes()));
            }
        }
        other => {
            let text = other.to_string();
            w.message(1, |w| w.bytes_always(1, text.as_bytes()));
        }
    }
}

/// A `KeyValue` field per attribute.
fn attributes<'a>(
    w: &mut Writer<'_>,
    tag: u32,
    attributes: impl IntoIterator<Item = &'a KeyValue>,
) {
    for attribute in attributes {
        key_value(w, tag, attribute.key.as_str(), &attribute.value);
    }
}

fn key_value(w: &mut Writer<'_>, tag: u32, key: &str, value: &Value) {
    let scalar = match value {
        Value::String(s) => Scalar::Bytes(s.as_str().as_bytes()),
        Value::Bool(b) => Scalar::Bool(*b),
        Value::I64(i) => Scalar::I64(*i),
        Value::F64(f) => Scalar::F64(*f),
        _ => {
            w.message(tag, |w| {
                w.string(1, key);
                w.message(2, |w| any_value(w, value));
            });
            return;
        }
    };
    scalar_key_value(w.buf, tag, key, scalar);
}

/// An attribute value that is not an array.
enum Scalar<'v> {
    Bytes(&'v [u8]),
    Bool(bool),
    I64(i64),
    F64(f64),
}

/// One `KeyValue` field holding a scalar: the bytes `key_value`'s nested messages would write,
/// in one pass. Every length is known before the bytes are written, so nothing is moved after
/// (a nested `message` shifts its body when its length needs a second byte), and the buffer
/// grows at most once. Attributes are most of a span's bytes, and this runs once per attribute
/// on the request thread.
fn scalar_key_value(buf: &mut Vec<u8>, tag: u32, key: &str, value: Scalar<'_>) {
    let field = |len: usize| 1 + encoded_len_varint(len as u64) + len;
    let key_len = if key.is_empty() { 0 } else { field(key.len()) };
    let any_len = match value {
        Scalar::Bytes(bytes) => field(bytes.len()),
        Scalar::Bool(_) => 2,
        Scalar::I64(i) => 1 + encoded_len_varint(i as u64),
        Scalar::F64(_) => 9,
    };
    let kv_len = key_len + field(any_len);
    buf.reserve(kv_len + 11);
    encode_key(tag, WireType::LengthDelimited, buf);
    put_varint(buf, kv_len as u64);
    if !key.is_empty() {
        buf.push(KEY_VALUE_KEY);
        put_varint(buf, key.len() as u64);
        buf.extend_from_slice(key.as_bytes());
    }
    buf.push(KEY_VALUE_VALUE);
    put_varint(buf, any_len as u64);
    match value {
        Scalar::Bytes(bytes) => {
            buf.push(ANY_VALUE_STRING);
            put_varint(buf, bytes.len() as u64);
            buf.extend_from_slice(bytes);
        }
        Scalar::Bool(b) => buf.extend_from_slice(&[ANY_VALUE_BOOL, u8::from(b)]),
        Scalar::I64(i) => {
            buf.push(ANY_VALUE_INT);
            put_varint(buf, i as u64);
        }
        Scalar::F64(f) => {
            buf.push(ANY_VALUE_DOUBLE);
            buf.extend_from_slice(&f.to_bits().to_le_bytes());
        }
    }
}

/// The keys (tag and wire type) of `KeyValue.key`, `KeyValue.value` and `AnyValue`'s scalars.
const KEY_VALUE_KEY: u8 = 1 << 3 | 2;
const KEY_VALUE_VALUE: u8 = 2 << 3 | 2;
const ANY_VALUE_STRING: u8 = 1 << 3 | 2;
const ANY_VALUE_BOOL: u8 = 2 << 3;
const ANY_VALUE_INT: u8 = 3 << 3;
const ANY_VALUE_DOUBLE: u8 = 4 << 3 | 1;

/// A varint, as `prost::encoding::encode_varint` writes it, without its `BufMut` indirection.
fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Nanoseconds since the epoch; a time before it is 0, as opentelemetry-proto makes it.
fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

fn flags(context: &SpanContext, parent_is_remote: bool) -> u32 {
    let mut flags = u32::from(context.trace_flags().to_u8()) | CONTEXT_HAS_IS_REMOTE;
    if parent_is_remote {
        flags |= CONTEXT_IS_REMOTE;
    }
    flags
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// What every span has besides its attributes, events and links, in the form both the SDK's
/// `SpanData` and the layer's own span ([`super::encoded_span`]) give it.
pub(crate) struct SpanHead<'a> {
    pub(crate) context: &'a SpanContext,
    pub(crate) parent_span_id: SpanId,
    pub(crate) parent_is_remote: bool,
    pub(crate) name: &'a str,
    pub(crate) kind: &'a SpanKind,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    pub(crate) status: &'a Status,
}

/// A span's repeated parts, each with what its limit dropped.
pub(crate) struct SpanBody<A, E, L> {
    /// Writes the `attributes` fields.
    pub(crate) attributes: A,
    pub(crate) dropped_attributes: u32,
    /// Writes the `events` fields.
    pub(crate) events: E,
    pub(crate) dropped_events: u32,
    /// Writes the `links` fields.
    pub(crate) links: L,
    pub(crate) dropped_links: u32,
}

/// The fields of a `Span` message, in field order.
fn span_fields<A, E, L>(w: &mut Writer<'_>, head: &SpanHead<'_>, body: SpanBody<A, E, L>)
where
    A: FnOnce(&mut Writer<'_>),
    E: FnOnce(&mut Writer<'_>),
    L: FnOnce(&mut Writer<'_>),
{
    let context = head.context;
    w.bytes(1, &context.trace_id().to_bytes());
    w.bytes(2, &context.span_id().to_bytes());
    w.string(3, &context.trace_state().header());
    if head.parent_span_id != SpanId::INVALID {
        w.bytes(4, &head.parent_span_id.to_bytes());
    }
    w.string(5, head.name);
    w.varint(6, kind(head.kind));
    w.fixed64(7, nanos(head.start));
    w.fixed64(8, nanos(head.end));
    (body.attributes)(w);
    w.varint(10, u64::from(body.dropped_attributes));
    (body.events)(w);
    w.varint(12, u64::from(body.dropped_events));
    (body.links)(w);
    w.varint(14, u64::from(body.dropped_links));
    w.message(15, |w| {
        let (code, message) = match head.status {
            Status::Unset => (0, ""),
            Status::Ok => (1, ""),
            Status::Error { description } => (2, description.as_ref()),
        };
        w.string(2, message);
        w.varint(3, code);
    });
    w.fixed32(16, flags(context, head.parent_is_remote));
}

fn span(w: &mut Writer<'_>, span: &SpanData) {
    let head = SpanHead {
        context: &span.span_context,
        parent_span_id: span.parent_span_id,
        parent_is_remote: span.parent_span_is_remote,
        name: &span.name,
        kind: &span.span_kind,
        start: span.start_time,
        end: span.end_time,
        status: &span.status,
    };
    let body = SpanBody {
        attributes: |w: &mut Writer<'_>| attributes(w, 9, &span.attributes),
        dropped_attributes: span.dropped_attributes_count,
        events: |w: &mut Writer<'_>| {
            for event in span.events.iter() {
                event_field(
                    w,
                    &event.name,
                    event.timestamp,
                    &event.attributes,
                    event.dropped_attributes_count,
                );
            }
        },
        dropped_events: span.events.dropped_count,
        links: |w: &mut Writer<'_>| {
            for link in span.links.iter() {
                link_field(
                    w,
                    &link.span_context,
                    &link.attributes,
                    link.dropped_attributes_count,
                );
            }
        },
        dropped_links: span.links.dropped_count,
    };
    span_fields(w, &head, body);
}

/// One `Span.events` field.
fn event_field(
    w: &mut Writer<'_>,
    name: &str,
    timestamp: SystemTime,
    event_attributes: &[KeyValue],
    dropped_attributes: u32,
) {
    w.message(11, |w| {
        w.fixed64(1, nanos(timestamp));
        w.string(2, name);
        attributes(w, 3, event_attributes);
        w.varint(4, u64::from(dropped_attributes));
    });
}

/// One `Span.links` field.
fn link_field(
    w: &mut Writer<'_>,
    linked: &SpanContext,
    link_attributes: &[KeyValue],
    dropped_attributes: u32,
) {
    w.message(13, |w| {
        w.bytes(1, &linked.trace_id().to_bytes());
        w.bytes(2, &linked.span_id().to_bytes());
        w.string(3, &linked.trace_state().header());
        attributes(w, 4, link_attributes);
        w.varint(5, u64::from(dropped_attributes));
        w.fixed32(6, flags(linked, linked.is_remote()));
    });
}

/// Appends one `Span.attributes` field.
pub(crate) fn encode_attribute(buf: &mut Vec<u8>, attribute: &KeyValue) {
    key_value(
        &mut Writer { buf },
        9,
        attribute.key.as_str(),
        &attribute.value,
    );
}

/// Appends one `Span.attributes` field from a value the layer has not turned into a `Value`.
pub(crate) fn encode_borrowed_attribute(buf: &mut Vec<u8>, key: &str, value: &AttributeValue<'_>) {
    let scalar = match value {
        AttributeValue::Static(s) => Scalar::Bytes(s.as_bytes()),
        AttributeValue::Shared(s) => Scalar::Bytes(s.as_bytes()),
        AttributeValue::Borrowed(s) => Scalar::Bytes(s.as_bytes()),
        AttributeValue::Bool(b) => Scalar::Bool(*b),
    };
    scalar_key_value(buf, 9, key, scalar);
}

/// Appends one `Span.events` field.
pub(crate) fn encode_event(
    buf: &mut Vec<u8>,
    name: &str,
    timestamp: SystemTime,
    attributes: &[KeyValue],
    dropped_attributes: u32,
) {
    event_field(
        &mut Writer { buf },
        name,
        timestamp,
        attributes,
        dropped_attributes,
    );
}

/// Appends one `Span.links` field.
pub(crate) fn encode_link(
    buf: &mut Vec<u8>,
    linked: &SpanContext,
    attributes: &[KeyValue],
    dropped_attributes: u32,
) {
    link_field(&mut Writer { buf }, linked, attributes, dropped_attributes);
}

/// Appends a span as a `ScopeSpans.spans` field (as [`encode_span`] does for a `SpanData`), its
/// attributes, events and links already encoded by the functions above.
pub(crate) fn encode_span_parts(
    buf: &mut Vec<u8>,
    head: &SpanHead<'_>,
    parts: SpanBody<&[u8], &[u8], &[u8]>,
) {
    let body = SpanBody {
        attributes: |w: &mut Writer<'_>| w.buf.extend_from_slice(parts.attributes),
        dropped_attributes: parts.dropped_attributes,
        events: |w: &mut Writer<'_>| w.buf.extend_from_slice(parts.events),
        dropped_events: parts.dropped_events,
        links: |w: &mut Writer<'_>| w.buf.extend_from_slice(parts.links),
        dropped_links: parts.dropped_links,
    };
    Writer { buf }.message(2, |w| span_fields(w, head, body));
}

fn scope(w: &mut Writer<'_>, scope: &InstrumentationScope) {
    w.string(1, scope.name());
    w.string(2, scope.version().unwrap_or_default());
    attributes(w, 3, scope.attributes());
}

/// The process's resource, encoded once: the body of `ResourceSpans.resource` and the schema
/// URL that follows the scopes.
#[derive(Debug, Default, Clone)]
pub struct EncodedResource {
    body: Vec<u8>,
    schema_url: String,
}

impl EncodedResource {
    /// Encodes `resource` (what the SDK hands an exporter once, before any batch).
    pub fn new(resource: &Resource) -> EncodedResource {
        let mut body = Vec::new();
        let mut w = Writer { buf: &mut body };
        for (key, value) in resource.iter() {
            key_value(&mut w, 1, key.as_str(), value);
        }
        EncodedResource {
            body,
            schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        }
    }
}

/// Appends the `ExportTraceServiceRequest` of `spans` to `buf`: one `ResourceSpans`, a
/// `ScopeSpans` per instrumentation scope in order of first appearance, each scope's spans in
/// batch order (as opentelemetry-otlp groups them).
pub fn encode_request(spans: &[SpanData], resource: &EncodedResource, buf: &mut Vec<u8>) {
    // A batch has one or two scopes (the layer's, tracing-opentelemetry's): a list beats a map.
    let mut scopes: Vec<&InstrumentationScope> = Vec::new();
    for span in spans {
        if !scopes.contains(&&span.instrumentation_scope) {
            scopes.push(&span.instrumentation_scope);
        }
    }
    request(buf, resource, |w| {
        for &instrumentation in &scopes {
            scope_spans(w, instrumentation, |w| {
                for data in spans {
                    if data.instrumentation_scope == *instrumentation {
                        w.message(2, |w| span(w, data));
                    }
                }
            });
        }
    });
}

/// Appends one span as a `ScopeSpans.spans` field (tag and length included), for
/// [`encode_encoded_request`].
pub(crate) fn encode_span(data: &SpanData, buf: &mut Vec<u8>) {
    Writer { buf }.message(2, |w| span(w, data));
}

/// Appends the `ExportTraceServiceRequest` of spans already encoded by [`encode_span`], given
/// per scope (a scope without spans is left out): the bytes [`encode_request`] writes for the
/// same spans in the same order.
pub(crate) fn encode_encoded_request<'s>(
    scopes: impl IntoIterator<Item = (&'s InstrumentationScope, &'s [u8])>,
    resource: &EncodedResource,
    buf: &mut Vec<u8>,
) {
    request(buf, resource, |w| {
        for (instrumentation, spans) in scopes {
            if !spans.is_empty() {
                scope_spans(w, instrumentation, |w| w.buf.extend_from_slice(spans));
            }
        }
    });
}

/// The request around its `ScopeSpans`: one `ResourceSpans` with the process's resource.
fn request(buf: &mut Vec<u8>, resource: &EncodedResource, scopes: impl FnOnce(&mut Writer<'_>)) {
    Writer { buf }.message(1, |w| {
        w.bytes_always(1, &resource.body);
        scopes(w);
        w.string(3, &resource.schema_url);
    });
}

/// One `ScopeSpans`: the scope, what `spans` writes, the scope's schema URL.
fn scope_spans(
    w: &mut Writer<'_>,
    instrumentation: &InstrumentationScope,
    spans: impl FnOnce(&mut Writer<'_>),
) {
    w.message(2, |w| {
        w.message(1, |w| scope(w, instrumentation));
        spans(w);
        w.string(3, instrumentation.schema_url().unwrap_or_default());
    });
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{Event, Link, TraceFlags, TraceId, TraceState};
    use opentelemetry::{Array, KeyValue, StringValue};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message;

    use super::*;

    fn context(trace: u128, span: u64, remote: bool, state: &str) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::SAMPLED,
            remote,
            TraceState::from_key_value(
                state
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .filter_map(|p| p.split_once('=')),
            )
            .unwrap(),
        )
    }

    fn every_value() -> Vec<KeyValue> {
        vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("empty", ""),
            KeyValue::new("ok", true),
            KeyValue::new("not", false),
            KeyValue::new("zero", 0_i64),
            KeyValue::new("negative", -7_i64),
            KeyValue::new("largest", i64::MAX),
            KeyValue::new("", "a value without a key"),
            KeyValue::new("ratio", 0.25),
            KeyValue::new("nothing", 0.0),
            KeyValue::new("nan", f64::NAN),
            KeyValue::new(
                "strings",
                Value::Array(Array::String(vec![
                    StringValue::from("a"),
                    StringValue::from(""),
                ])),
            ),
            KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("ints", Value::Array(Array::I64(vec![0, i64::MIN, 3]))),
            KeyValue::new("floats", Value::Array(Array::F64(vec![0.0, -1.5]))),
            KeyValue::new("none", Value::Array(Array::I64(vec![]))),
            // Long enough that its message's length takes two varint bytes, then three.
            KeyValue::new("long", "x".repeat(300)),
            KeyValue::new("longer", "y".repeat(20_000)),
            KeyValue::new("日本語", "値"),
        ]
    }

    fn spans() -> Vec<SpanData> {
        let at = |nanos: u64| UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + nanos);
        let layer = InstrumentationScope::builder("wxcloudrun-telemetry")
            .with_version("0.1.0")
            .build();
        let bridge = InstrumentationScope::builder("tracing-opentelemetry")
            .with_version("0.34.0")
            .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
            .with_attributes([KeyValue::new("scope.attr", 1_i64)])
            .build();
        let base = SpanData {
            span_context: context(0xabc, 0x11, false, ""),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed("GET /api/users/{id}"),
            start_time: at(0),
            end_time: at(1_234_567),
            attributes: every_value(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: layer.clone(),
        };
        let mut events = SpanEvents::default();
        events.events.push(Event::new(
            "exception",
            at(5),
            vec![KeyValue::new("exception.message", "boom")],
            2,
        ));
        events
            .events
            .push(Event::new("bare", UNIX_EPOCH, vec![], 0));
        events.dropped_count = 3;
        let mut links = SpanLinks::default();
        links.links.push(Link::new(
            context(0xdef, 0x22, true, "vendor=1,other=two"),
            vec![KeyValue::new("link.kind", "follows")],
            1,
        ));
        links.dropped_count = 4;
        let mut child = base.clone();
        child.span_context = context(0xabc, 0x12, false, "vendor=1");
        child.parent_span_id = SpanId::from(0x11);
        child.span_kind = SpanKind::Internal;
        child.name = Cow::Owned("load_user".to_owned());
        child.attributes = vec![KeyValue::new("user.id", 7_i64)];
        child.dropped_attributes_count = 5;
        child.events = events;
        child.links = links;
        child.status = Status::error("database gone");
        child.instrumentation_scope = bridge.clone();
        let mut remote_child = base.clone();
        remote_child.parent_span_id = SpanId::from(0x99);
        remote_child.parent_span_is_remote = true;
        remote_child.status = Status::Ok;
        remote_child.span_kind = SpanKind::Client;
        remote_child.attributes = vec![];
        let mut before_epoch = base.clone();
        before_epoch.start_time = UNIX_EPOCH - Duration::from_secs(1);
        before_epoch.name = Cow::Borrowed("");
        before_epoch.span_kind = SpanKind::Producer;
        let mut consumer = child.clone();
        consumer.span_kind = SpanKind::Consumer;
        consumer.instrumentation_scope = layer;
        vec![base, child, remote_child, before_epoch, consumer]
    }

    fn reference(spans: Vec<SpanData>, resource: &Resource) -> Vec<u8> {
        let resource_spans =
            group_spans_by_resource_and_scope(spans, &ResourceAttributesWithSchema::from(resource));
        ExportTraceServiceRequest { resource_spans }.encode_to_vec()
    }

    fn ours(spans: &[SpanData], resource: &Resource) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_request(spans, &EncodedResource::new(resource), &mut buf);
        buf
    }

    /// Equal bytes; else where they part, and the two requests decoded.
    fn same(actual: &[u8], expected: &[u8]) {
        if actual == expected {
            return;
        }
        let at = actual
            .iter()
            .zip(expected)
            .take_while(|(a, e)| a == e)
            .count();
        let decoded = |bytes: &[u8]| format!("{:?}", ExportTraceServiceRequest::decode(bytes));
        let short = |text: String| text.chars().take(4000).collect::<String>();
        panic!(
            "bytes part at {at} of {} / {}\nours:     {}\nexpected: {}",
            actual.len(),
            expected.len(),
            short(decoded(actual)),
            short(decoded(expected))
        );
    }

    #[test]
    fn same_bytes_as_opentelemetry_otlp() {
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "orders"),
                KeyValue::new("service.version", "9.9.9"),
                KeyValue::new("wx.env", "prod-1abc"),
                KeyValue::new("process.pid", 42_i64),
            ])
            .with_schema_url([], "https://opentelemetry.io/schemas/1.26.0")
            .build();
        let spans = spans();
        let expected = reference(spans.clone(), &resource);
        same(&ours(&spans, &resource), &expected);
        // One span at a time, too: a request whose only length is short.
        for span in spans {
            same(
                &ours(std::slice::from_ref(&span), &resource),
                &reference(vec![span], &resource),
            );
        }
    }

    #[test]
    fn spans_encoded_one_by_one_make_the_same_request() {
        let resource = Resource::builder_empty()
            .with_attributes([KeyValue::new("service.name", "orders")])
            .build();
        let spans = spans();
        // Each scope's spans, encoded as they end, in the order the scopes first appear.
        let mut scopes: Vec<(InstrumentationScope, Vec<u8>)> = Vec::new();
        for data in &spans {
            let at = match scopes
                .iter()
                .position(|(s, _)| *s == data.instrumentation_scope)
            {
                Some(at) => at,
                None => {
                    scopes.push((data.instrumentation_scope.clone(), Vec::new()));
                    scopes.len() - 1
                }
            };
            encode_span(data, &mut scopes[at].1);
        }
        assert!(scopes.len() > 1, "the spans cover more than one scope");
        // A scope whose spans all went elsewhere is left out.
        scopes.push((InstrumentationScope::builder("idle").build(), Vec::new()));
        let mut buf = Vec::new();
        let encoded = scopes.iter().map(|(s, b)| (s, b.as_slice()));
        encode_encoded_request(encoded, &EncodedResource::new(&resource), &mut buf);
        same(&buf, &reference(spans, &resource));
    }

    #[test]
    fn an_empty_batch_and_an_empty_resource() {
        let resource = Resource::builder_empty().build();
        same(&ours(&[], &resource), &reference(vec![], &resource));
    }

    #[test]
    fn appends_to_what_the_buffer_holds() {
        let resource = Resource::builder_empty().build();
        let mut buf = b"kept".to_vec();
        encode_request(&spans(), &EncodedResource::new(&resource), &mut buf);
        assert_eq!(&buf[..4], b"kept");
        same(&buf[4..], &reference(spans(), &resource));
    }
}
