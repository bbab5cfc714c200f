//! The SDK side of the layer's sampling first ([`SampleFirst`](crate::trace::SampleFirst)):
//! the configured sampler and the id generator, asked by the layer before any span exists.

use std::sync::Arc;

use opentelemetry::Context;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceFlags, TraceId,
};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};

use super::encoded_span::{EncodedSpan, SpanDestination};
use crate::trace::{Attributes, SampleFirst, Sampling, ServerSpanStart, preset_trace_id};

/// The sampler the provider was built with, ids from the same random source, and where the
/// layer's own server spans go when the pipeline takes them (OTLP/HTTP).
#[derive(Debug)]
struct SdkSampling {
    sampler: Sampler,
    ids: RandomIdGenerator,
    encoded: Option<Arc<SpanDestination>>,
}

impl Sampling for SdkSampling {
    fn new_trace_id(&self) -> TraceId {
        self.ids.new_trace_id()
    }

    fn new_span_id(&self) -> SpanId {
        self.ids.new_span_id()
    }

    fn records(&self, parent: &Context, trace_id: TraceId, name: &str) -> bool {
        // The arguments the SDK passes for the layer's span, but for its attributes: they are
        // built only once the span is sampled. The built-in samplers (the only ones
        // `TraceSampler` configures) do not read attributes, so the SDK, asking again with
        // them, decides the same.
        let result =
            self.sampler
                .should_sample(Some(parent), trace_id, name, &SpanKind::Server, &[], &[]);
        result.decision != SamplingDecision::Drop
    }

    fn record(
        &self,
        parent: &Context,
        span: ServerSpanStart<'_>,
        attributes: &mut Attributes<'_>,
    ) -> Option<Context> {
        let destination = self.encoded.as_ref()?;
        // The built-in samplers keep the parent's trace state, and every span they keep is
        // sampled (none is record-only).
        let context = SpanContext::new(
            span.trace_id,
            self.ids.new_span_id(),
            TraceFlags::SAMPLED,
            false,
            span.trace_state,
        );
        let parent_span = parent.span();
        let mut encoded = EncodedSpan::new(
            Arc::clone(destination),
            context,
            parent_span.span_context(),
            span.name.clone(),
            span.start,
        );
        attributes(&mut |key, value| encoded.set_borrowed_attribute(key, &value));
        Some(parent.with_span(encoded))
    }
}

/// What the layer asks for a provider built with `sampler` and [`LayerIds`]; with `encoded`,
/// sampled server spans are the layer's own ([`EncodedSpan`]), queued there.
pub(super) fn sample_first(sampler: Sampler, encoded: Option<Arc<SpanDestination>>) -> SampleFirst {
    SampleFirst::new(Arc::new(SdkSampling {
        sampler,
        ids: RandomIdGenerator::default(),
        encoded,
    }))
}

/// The provider's id generator: random ids, except the trace id of a root server span the
/// layer has already sampled, which it hands over through [`preset_trace_id`].
#[derive(Debug, Default)]
pub(super) struct LayerIds(RandomIdGenerator);

impl IdGenerator for LayerIds {
    fn new_trace_id(&self) -> TraceId {
        preset_trace_id().unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use futures_util::FutureExt;
    use http::{HeaderMap, Request, Response};
    use http_body_util::BodyExt;
    use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tower::{Service, ServiceExt};

    use super::*;
    use crate::layer::WxTelemetryLayer;
    use crate::trace::inject_trace_context;

    const REQUESTS: usize = 400;

    /// A layer over an SDK provider sampling with `sampler`, wired the way `Telemetry` does.
    fn sampled(sampler: Sampler) -> (SdkTracerProvider, InMemorySpanExporter, WxTelemetryLayer) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_sampler(sampler.clone())
            .with_id_generator(LayerIds::default())
            .build();
        let layer = WxTelemetryLayer::builder()
            .process_metrics(false)
            .registry(prometheus::Registry::new())
            .sampled_tracer(provider.tracer("test"), sample_first(sampler, None))
            .build()
            .unwrap();
        (provider, exporter, layer)
    }

    type Seen = Arc<Mutex<Vec<(SpanContext, HeaderMap)>>>;

    /// Sends `request` through `layer` and returns the `x-trace-id` answered; `seen` gets the span
    /// context current in the handler and the headers it would send downstream.
    fn call(layer: &WxTelemetryLayer, request: Request<String>, seen: &Seen) -> String {
        let seen = seen.clone();
        let handler = tower::service_fn(move |_req: Request<_>| {
            let cx = Context::current();
            let mut headers = HeaderMap::new();
            inject_trace_context(&mut headers);
            let span_context = cx.span().span_context().clone();
            seen.lock().unwrap().push((span_context, headers));
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        });
        let mut service = tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service(handler);
        let ready = service.ready().now_or_never().unwrap().unwrap();
        let response = ready.call(request).now_or_never().unwrap().unwrap();
        let trace_id = response.headers()["x-trace-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let _ = response.into_body().collect().now_or_never().unwrap();
        trace_id
    }

    #[test]
    fn a_ratio_sampler_judges_the_trace_id_the_span_gets() {
        let ratio = Sampler::TraceIdRatioBased(0.5);
        let (provider, exporter, layer) = sampled(ratio.clone());
        let seen = Seen::default();
        let answered: Vec<String> = (0..REQUESTS)
            .map(|_| call(&layer, Request::new(String::new()), &seen))
            .collect();
        provider.force_flush().unwrap();
        let exported: BTreeSet<String> = exporter
            .get_finished_spans()
            .unwrap()
            .iter()
            .map(|span| span.span_context.trace_id().to_string())
            .collect();
        // Exactly the trace ids the sampler keeps were recorded, each under the id the client
        // got (judging a second, new id would keep about a quarter, under ids nobody saw).
        let kept: BTreeSet<String> = answered
            .iter()
            .filter(|id| {
                let trace_id = TraceId::from_hex(id).unwrap();
                let result = ratio.should_sample(None, trace_id, "", &SpanKind::Server, &[], &[]);
                result.decision == SamplingDecision::RecordAndSample
            })
            .cloned()
            .collect();
        assert_eq!(exported, kept);
        // Sampled once, about half are kept (mean 200, σ 10); sampled twice (a new id judged by
        // the SDK) about a quarter (mean 100, σ 8.7). The bounds are six σ from both.
        assert!((148..=252).contains(&kept.len()), "{} kept", kept.len());
        assert_eq!(
            preset_trace_id(),
            None,
            "a preset never outlives the span's start"
        );
        // Every handler, sampled or not, saw its request's trace.
        for ((span_context, _), id) in seen.lock().unwrap().iter().zip(&answered) {
            assert_eq!(&span_context.trace_id().to_string(), id);
            assert_eq!(span_context.is_sampled(), kept.contains(id));
        }
    }

    #[test]
    fn sampled_out_requests_keep_their_ids_downstream() {
        let parent_based = Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
        let (provider, exporter, layer) = sampled(parent_based);
        let request = Request::builder()
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            )
            .body(String::new())
            .unwrap();
        let seen = Seen::default();
        let answered = call(&layer, request, &seen);
        assert_eq!(answered, "4bf92f3577b34da6a3ce929d0e0e4736");
        let seen = seen.lock().unwrap();
        let (span_context, headers) = &seen[0];
        // The server span's own id, not the caller's; not sampled; not remote.
        assert!(span_context.is_valid());
        assert!(!span_context.is_sampled() && !span_context.is_remote());
        assert_ne!(span_context.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(
            headers["traceparent"],
            format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-00",
                span_context.span_id()
            )
        );
        provider.force_flush().unwrap();
        assert!(exporter.get_finished_spans().unwrap().is_empty());
    }
}
