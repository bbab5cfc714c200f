//! The layer's server span when `Telemetry` exports over OTLP/HTTP: a span of our own, written
//! as OTLP protobuf while it records, with no SDK span behind it.
//!
//! Why: the SDK's path for a sampled request builds a `SpanBuilder`, asks the sampler a second
//! time, boxes the span twice, keeps every attribute as a `KeyValue` with its own `String` (the
//! path, the user agent, the `wx.*` values), moves it all into a `SpanData` at the end, and the
//! processor then walks that to encode it: ~12,500 instructions and 8 allocations a request over
//! a sampled-out one (callgrind, `wx_traces_always_on` against `wx_sampled_out`, README). This
//! span writes each attribute's protobuf when it is set, from the layer's borrowed strings, and
//! the rest of the span when it ends, into the same queue as the SDK spans of the encoding
//! processor. Measured, exported to a loopback collector (2026-12-03, callgrind and dhat, the
//! README's table): 26,438 instructions a request on all threads and 7 allocations more than bare
//! axum, against 30,976 and 13 with the SDK's span behind the same processor
//! (`wx_traces_exported_sdk_spans`).
//!
//! It is a full `opentelemetry::trace::Span`: what handlers do to the current span
//! (`Context::current().span().set_attribute(…)`, events, links, status, a new name) is recorded
//! as the SDK records it, within the same [`SpanLimits`], and `#[instrument]` spans are its
//! children through the context. The sampler, the ids and the other spans stay the SDK's.
//! `tests::same_bytes_as_an_sdk_span` checks that it encodes what the SDK span's `SpanData`
//! encodes.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::SpanLimits;

use super::encoding_processor::SpanQueue;
use super::span_proto::{
    SpanBody, SpanHead, encode_attribute, encode_borrowed_attribute, encode_event, encode_link,
    encode_span_parts,
};
use crate::trace::AttributeValue;

/// What the server spans share: where they go, under which scope, within which limits.
#[derive(Debug)]
pub(crate) struct SpanDestination {
    pub(crate) queue: SpanQueue,
    pub(crate) scope: InstrumentationScope,
    pub(crate) limits: SpanLimits,
}

/// Attribute bytes of a typical server span: about twenty attributes, a user agent among them.
const ATTRIBUTE_BYTES: usize = 512;

/// A sampled server span, encoded as it records.
#[derive(Debug)]
pub(crate) struct EncodedSpan {
    context: SpanContext,
    parent_span_id: SpanId,
    parent_is_remote: bool,
    name: Cow<'static, str>,
    start: SystemTime,
    /// Each an encoded `Span.attributes` field.
    attributes: Vec<u8>,
    attribute_count: u32,
    dropped_attributes: u32,
    /// Each an encoded `Span.events` field.
    events: Vec<u8>,
    event_count: u32,
    dropped_events: u32,
    /// Each an encoded `Span.links` field.
    links: Vec<u8>,
    link_count: u32,
    dropped_links: u32,
    status: Status,
    /// Where the span goes when it ends; `None` once it has (it records nothing more).
    destination: Option<Arc<SpanDestination>>,
}

impl EncodedSpan {
    pub(crate) fn new(
        destination: Arc<SpanDestination>,
        context: SpanContext,
        parent: &SpanContext,
        name: Cow<'static, str>,
        start: SystemTime,
    ) -> Self {
        let (parent_span_id, parent_is_remote) = match parent.is_valid() {
            true => (parent.span_id(), parent.is_remote()),
            false => (SpanId::INVALID, false),
        };
        EncodedSpan {
            context,
            parent_span_id,
            parent_is_remote,
            name,
            start,
            attributes: Vec::with_capacity(ATTRIBUTE_BYTES),
            attribute_count: 0,
            dropped_attributes: 0,
            events: Vec::new(),
            event_count: 0,
            dropped_events: 0,
            links: Vec::new(),
            link_count: 0,
            dropped_links: 0,
            status: Status::Unset,
            destination: Some(destination),
        }
    }

    /// Whether one more attribute fits; counts it dropped when not.
    fn attribute_fits(&mut self) -> bool {
        let Some(destination) = &self.destination else {
            return false;
        };
        if self.attribute_count < destination.limits.max_attributes_per_span {
            self.attribute_count += 1;
            true
        } else {
            self.dropped_attributes += 1;
            false
        }
    }

    /// Records one of the layer's attributes without turning it into a `KeyValue`.
    pub(crate) fn set_borrowed_attribute(&mut self, key: &str, value: &AttributeValue<'_>) {
        if self.attribute_fits() {
            encode_borrowed_attribute(&mut self.attributes, key, value);
        }
    }
}

/// An event or a link under the span's limits, as the SDK applies them: `None` (and one more
/// dropped) when the span already holds `max_items`, else the attributes cut to
/// `max_attributes` and how many were cut.
fn admit(
    items: u32,
    max_items: u32,
    dropped_items: &mut u32,
    attributes: &mut Vec<KeyValue>,
    max_attributes: u32,
) -> Option<u32> {
    if items >= max_items {
        *dropped_items += 1;
        return None;
    }
    let cut = attributes.len().saturating_sub(max_attributes as usize);
    attributes.truncate(max_attributes as usize);
    Some(u32::try_from(cut).unwrap_or(u32::MAX))
}

impl opentelemetry::trace::Span for EncodedSpan {
    fn add_event_with_timestamp<T>(
        &mut self,
        name: T,
        timestamp: SystemTime,
        mut attributes: Vec<KeyValue>,
    ) where
        T: Into<Cow<'static, str>>,
    {
        let Some(destination) = &self.destination else {
            return;
        };
        let limits = destination.limits;
        let Some(dropped) = admit(
            self.event_count,
            limits.max_events_per_span,
            &mut self.dropped_events,
            &mut attributes,
            limits.max_attributes_per_event,
        ) else {
            return;
        };
        let name = name.into();
        encode_event(&mut self.events, &name, timestamp, &attributes, dropped);
        self.event_count += 1;
    }

    fn span_context(&self) -> &SpanContext {
        &self.context
    }

    fn is_recording(&self) -> bool {
        self.destination.is_some()
    }

    fn set_attribute(&mut self, attribute: KeyValue) {
        if self.attribute_fits() {
            encode_attribute(&mut self.attributes, &attribute);
        }
    }

    fn set_status(&mut self, status: Status) {
        // Ok > Error > Unset, as the SDK orders them: Ok is final, Unset changes nothing.
        if self.destination.is_some() && status > self.status {
            self.status = status;
        }
    }

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        if self.destination.is_some() {
            self.name = new_name.into();
        }
    }

    fn add_link(&mut self, span_context: SpanContext, mut attributes: Vec<KeyValue>) {
        let Some(destination) = &self.destination else {
            return;
        };
        let limits = destination.limits;
        let Some(dropped) = admit(
            self.link_count,
            limits.max_links_per_span,
            &mut self.dropped_links,
            &mut attributes,
            limits.max_attributes_per_link,
        ) else {
            return;
        };
        encode_link(&mut self.links, &span_context, &attributes, dropped);
        self.link_count += 1;
    }

    fn end_with_timestamp(&mut self, timestamp: SystemTime) {
        let Some(destination) = self.destination.take() else {
            return;
        };
        let head = SpanHead {
            context: &self.context,
            parent_span_id: self.parent_span_id,
            parent_is_remote: self.parent_is_remote,
            name: &self.name,
            kind: &SpanKind::Server,
            start: self.start,
            end: timestamp,
            status: &self.status,
        };
        let parts = SpanBody {
            attributes: &self.attributes[..],
            dropped_attributes: self.dropped_attributes,
            events: &self.events[..],
            dropped_events: self.dropped_events,
            links: &self.links[..],
            dropped_links: self.dropped_links,
        };
        destination
            .queue
            .encode_and_enqueue(&destination.scope, |buf| {
                encode_span_parts(buf, &head, parts)
            });
    }
}

impl Drop for EncodedSpan {
    /// A span dropped without an end ends now, as an SDK span does.
    fn drop(&mut self) {
        if self.destination.is_some() {
            opentelemetry::trace::Span::end_with_timestamp(self, opentelemetry::time::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::Context;
    use opentelemetry::trace::{
        Span as _, SpanContext, TraceContextExt as _, TraceFlags, TraceId, TraceState, Tracer as _,
        TracerProvider as _,
    };
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{
        IdGenerator, InMemorySpanExporter, SdkTracerProvider, SpanData, SpanProcessor as _,
    };

    use super::super::config::SpanBatching;
    use super::super::encoding_processor::EncodingSpanProcessor;
    use super::super::http_exporter::tests::{collector, exporter};
    use super::super::span_proto::{EncodedResource, encode_request};
    use super::*;

    const TRACE: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
    const SPAN: u64 = 0x00f067aa0ba902b7;

    /// The ids the SDK span gets: the same as the encoded span's.
    #[derive(Debug)]
    struct FixedIds;

    impl IdGenerator for FixedIds {
        fn new_trace_id(&self) -> TraceId {
            TraceId::from(TRACE)
        }
        fn new_span_id(&self) -> SpanId {
            SpanId::from(SPAN)
        }
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("wxcloudrun-telemetry")
            .with_version("0.1.0")
            .build()
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_service_name("orders")
            .build()
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn user_agent() -> String {
        "MiniProgram/8.0 ".repeat(12)
    }

    /// The layer's attributes: one of each kind of value, a long one among them.
    fn layer_attributes(
        agent: &str,
        service: &Arc<str>,
    ) -> Vec<(&'static str, AttributeValue<'static>)> {
        let agent: &'static str = Box::leak(agent.to_owned().into_boxed_str());
        let service: &'static Arc<str> = Box::leak(Box::new(Arc::clone(service)));
        vec![
            ("http.request.method", AttributeValue::Static("GET")),
            ("http.route", AttributeValue::Shared(service)),
            ("url.path", AttributeValue::Borrowed("/api/users/7")),
            ("user_agent.original", AttributeValue::Borrowed(agent)),
            (
                "enduser.pseudo.id",
                AttributeValue::Borrowed("0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"),
            ),
            ("wx.env", AttributeValue::Borrowed("")),
            ("wx.cold_start", AttributeValue::Bool(false)),
        ]
    }

    /// What both spans go through after they start: the handler's and the layer's calls.
    fn record(span: &mut impl opentelemetry::trace::Span) {
        span.set_attribute(KeyValue::new("http.response.status_code", 503_i64));
        span.set_attribute(KeyValue::new("error.type", "503"));
        span.set_attribute(KeyValue::new("ratio", 0.25));
        span.add_event_with_timestamp(
            "cache miss",
            at(1),
            vec![
                KeyValue::new("key", "user:7"),
                KeyValue::new("tries", 2_i64),
            ],
        );
        span.add_event_with_timestamp("retry", at(2), vec![]);
        let linked = SpanContext::new(
            TraceId::from(5),
            SpanId::from(6),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("wx", "1")]).unwrap(),
        );
        span.add_link(linked, vec![KeyValue::new("why", "batch")]);
        span.set_status(Status::error("upstream unavailable"));
        // Unset after Error changes nothing.
        span.set_status(Status::Unset);
        span.update_name("GET /api/users/{id}");
        span.end_with_timestamp(at(3));
    }

    /// The SDK span of the same request, as its processor gets it.
    fn sdk_span(parent: &Context, limits: SpanLimits) -> SpanData {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_id_generator(FixedIds)
            .with_span_limits(limits)
            .build();
        let tracer = provider.tracer_with_scope(scope());
        let service: Arc<str> = Arc::from("orders");
        let attributes = layer_attributes(&user_agent(), &service)
            .into_iter()
            .map(|(key, value)| value.key_value(key))
            .collect::<Vec<_>>();
        let mut span = tracer
            .span_builder("GET")
            .with_kind(SpanKind::Server)
            .with_start_time(at(0))
            .with_attributes(attributes)
            .start_with_context(&tracer, parent);
        record(&mut span);
        drop(span);
        let mut spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        spans.remove(0)
    }

    /// The encoded span of the same request, as the collector gets it, beside what the SDK
    /// span's `SpanData` encodes to.
    fn both(parent: &Context, limits: SpanLimits) -> (Vec<u8>, Vec<u8>) {
        let (url, seen) = collector(vec![]);
        let mut processor = EncodingSpanProcessor::new(
            exporter(&url, false, Duration::from_secs(5)),
            &SpanBatching::default(),
        )
        .unwrap();
        processor.set_resource(&resource());
        let destination = Arc::new(SpanDestination {
            queue: processor.queue(),
            scope: scope(),
            limits,
        });
        let parent_span = parent.span();
        let parent_context = parent_span.span_context();
        let trace_id = match parent_context.is_valid() {
            true => parent_context.trace_id(),
            false => TraceId::from(TRACE),
        };
        let context = SpanContext::new(
            trace_id,
            SpanId::from(SPAN),
            TraceFlags::SAMPLED,
            false,
            parent_context.trace_state().clone(),
        );
        let mut span = EncodedSpan::new(destination, context, parent_context, "GET".into(), at(0));
        let service: Arc<str> = Arc::from("orders");
        for (key, value) in layer_attributes(&user_agent(), &service) {
            span.set_borrowed_attribute(key, &value);
        }
        record(&mut span);
        assert!(!span.is_recording(), "ended");
        span.set_attribute(KeyValue::new("after", "the end"));
        drop(span);
        processor.force_flush().unwrap();
        processor.shutdown().unwrap();
        let ours = seen.lock().unwrap().pop().expect("one request").body;

        let mut sdk = sdk_span(parent, limits);
        sdk.instrumentation_scope = scope();
        let mut expected = Vec::new();
        encode_request(&[sdk], &EncodedResource::new(&resource()), &mut expected);
        (ours, expected)
    }

    #[test]
    fn same_bytes_as_an_sdk_span() {
        let remote = SpanContext::new(
            TraceId::from(TRACE + 1),
            SpanId::from(77),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("congo", "t61rcWkgMzE")]).unwrap(),
        );
        let parents = [
            Context::new(),
            Context::new().with_remote_span_context(remote),
        ];
        for parent in &parents {
            let (ours, expected) = both(parent, SpanLimits::default());
            assert_eq!(ours, expected);
        }
    }

    #[test]
    fn limits_drop_what_the_sdk_drops() {
        let limits = SpanLimits {
            max_attributes_per_span: 5,
            max_events_per_span: 1,
            max_links_per_span: 0,
            max_attributes_per_event: 1,
            max_attributes_per_link: 1,
        };
        let (ours, expected) = both(&Context::new(), limits);
        assert_eq!(ours, expected);
        let request = <opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest as prost::Message>::decode(&ours[..]).unwrap();
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.attributes.len(), 5);
        assert_eq!(span.dropped_attributes_count, 5);
        assert_eq!((span.events.len(), span.dropped_events_count), (1, 1));
        assert_eq!(span.events[0].dropped_attributes_count, 1);
        assert_eq!((span.links.len(), span.dropped_links_count), (0, 1));
    }

    #[test]
    fn a_span_dropped_without_an_end_ends_then() {
        let (url, seen) = collector(vec![]);
        let mut processor = EncodingSpanProcessor::new(
            exporter(&url, false, Duration::from_secs(5)),
            &SpanBatching::default(),
        )
        .unwrap();
        processor.set_resource(&resource());
        let destination = Arc::new(SpanDestination {
            queue: processor.queue(),
            scope: scope(),
            limits: SpanLimits::default(),
        });
        let context = SpanContext::new(
            TraceId::from(TRACE),
            SpanId::from(SPAN),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let start = SystemTime::now();
        let span = EncodedSpan::new(
            destination,
            context,
            &SpanContext::empty_context(),
            "GET".into(),
            start,
        );
        assert!(span.is_recording());
        drop(span);
        processor.force_flush().unwrap();
        processor.shutdown().unwrap();
        let body = seen.lock().unwrap().pop().expect("one request").body;
        let request = <opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest as prost::Message>::decode(&body[..]).unwrap();
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.name, "GET");
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
        assert!(span.parent_span_id.is_empty());
    }
}
