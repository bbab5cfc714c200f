//! The sampling decision made once, before any span exists, so that a request that is not
//! sampled costs no SDK span.
//!
//! Through the OpenTelemetry API a request that is sampled out still gets a full SDK `Span`: a
//! clone of the tracer (two reference counts), the boxed span `BoxedTracer` returns, a second
//! box when it goes into the `Context`, its drop and end (`+1.16 µs`, 8 allocations per request
//! over metrics only in the layer bench, README). All the request needs of it is ids: the trace
//! id for the `x-trace-id` header and the log lines, a span context for downstream calls and
//! `#[instrument]` children. So when the layer knows the sampler and the id generator of its
//! tracer (only [`Telemetry`](crate::Telemetry) does: the API cannot tell them), it asks the
//! sampler itself; a `Drop` becomes a context holding nothing but the span context (one
//! allocation), the rest goes to the tracer as before.
//!
//! So that the tracer samples the same trace id it was asked about (a `traceidratio` sampler
//! decides by trace id, and would otherwise judge a second, new id: a ratio of `r²`), the trace
//! id of a root span is handed to the provider's id generator through a thread-local
//! ([`preset_trace_id`]); the SDK takes it within the same call.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

use super::PushAttribute;

/// Gives the server span's attributes, one call of the argument each.
pub(crate) type Attributes<'a> = dyn FnMut(&mut PushAttribute<'_>) + 'a;

/// A tracer's sampler and id generator, as the layer asks them (implemented over the SDK by
/// [`Telemetry`](crate::Telemetry)).
pub(crate) trait Sampling: Send + Sync + 'static {
    /// A new random trace id.
    fn new_trace_id(&self) -> TraceId;
    /// A new random span id.
    fn new_span_id(&self) -> SpanId;
    /// Whether the server span named `name`, child of `parent`, with `trace_id`, is recorded.
    fn records(&self, parent: &Context, trace_id: TraceId, name: &str) -> bool;

    /// Records the sampled server span itself, when the pipeline has a span of its own that is
    /// encoded as it records (`Telemetry` over OTLP/HTTP): `parent` with that span, which has
    /// `trace_id`, `trace_state` and the attributes `attributes` gives. `None`: the layer
    /// builds an SDK span.
    fn record(
        &self,
        _parent: &Context,
        _span: ServerSpanStart<'_>,
        _attributes: &mut Attributes<'_>,
    ) -> Option<Context> {
        None
    }
}

/// The server span the layer starts, for [`Sampling::record`].
#[derive(Debug)]
#[cfg_attr(not(feature = "init"), allow(dead_code))]
pub(crate) struct ServerSpanStart<'a> {
    pub(crate) trace_id: TraceId,
    pub(crate) trace_state: TraceState,
    pub(crate) name: &'a Cow<'static, str>,
    pub(crate) start: SystemTime,
}

/// The layer's handle on [`Sampling`].
#[derive(Clone)]
pub(crate) struct SampleFirst(Arc<dyn Sampling>);

impl std::fmt::Debug for SampleFirst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SampleFirst")
    }
}

thread_local! {
    static PRESET_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// The trace id the layer already sampled for the root span being started on this thread, if
/// any: taken (once) by the provider's id generator.
#[cfg(feature = "init")]
pub(crate) fn preset_trace_id() -> Option<TraceId> {
    PRESET_TRACE_ID.with(Cell::take)
}

/// Clears the preset even if the tracer did not take it (a provider that was shut down).
struct Preset;

impl Drop for Preset {
    fn drop(&mut self) {
        PRESET_TRACE_ID.with(Cell::take);
    }
}

impl SampleFirst {
    #[cfg(feature = "init")]
    pub(crate) fn new(sampling: Arc<dyn Sampling>) -> Self {
        SampleFirst(sampling)
    }

    /// The context of a server span named `name` under `parent`: without any span if it is
    /// sampled out, else the pipeline's own span ([`Sampling::record`]) or the SDK span
    /// `sdk_span` starts (the trace id it gets being the one sampled), with `attributes`.
    // `name` is a `Cow` so that the encoded span clones a `&'static str` name, not its text.
    #[allow(clippy::ptr_arg)]
    pub(crate) fn start(
        &self,
        parent: Context,
        name: &Cow<'static, str>,
        start: SystemTime,
        attributes: &mut Attributes<'_>,
        sdk_span: impl FnOnce(&Context, &mut Attributes<'_>) -> Context,
    ) -> Context {
        let (trace_id, trace_state, root) = {
            let parent_span = parent.span();
            let parent_context = parent_span.span_context();
            if parent_context.is_valid() {
                let state = parent_context.trace_state().clone();
                (parent_context.trace_id(), state, false)
            } else {
                (self.0.new_trace_id(), Default::default(), true)
            }
        };
        if self.0.records(&parent, trace_id, name) {
            let server_span = ServerSpanStart {
                trace_id,
                trace_state,
                name,
                start,
            };
            if let Some(cx) = self.0.record(&parent, server_span, attributes) {
                return cx;
            }
            let _preset = root.then(|| {
                PRESET_TRACE_ID.with(|preset| preset.set(Some(trace_id)));
                Preset
            });
            return sdk_span(&parent, attributes);
        }
        let span_id = self.0.new_span_id();
        let span_context =
            SpanContext::new(trace_id, span_id, TraceFlags::default(), false, trace_state);
        parent.with_remote_span_context(span_context)
    }
}
