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

use std::cell::Cell;
use std::sync::Arc;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId};

/// A tracer's sampler and id generator, as the layer asks them (implemented over the SDK by
/// [`Telemetry`](crate::Telemetry)).
pub(crate) trait Sampling: Send + Sync + 'static {
    /// A new random trace id.
    fn new_trace_id(&self) -> TraceId;
    /// A new random span id.
    fn new_span_id(&self) -> SpanId;
    /// Whether the server span named `name`, child of `parent`, with `trace_id`, is recorded.
    fn records(&self, parent: &Context, trace_id: TraceId, name: &str) -> bool;
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
    /// sampled out, else the span `record` starts (the trace id it gets being the one sampled).
    pub(crate) fn start(
        &self,
        parent: Context,
        name: &str,
        record: impl FnOnce(&Context) -> Context,
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
            let _preset = root.then(|| {
                PRESET_TRACE_ID.with(|preset| preset.set(Some(trace_id)));
                Preset
            });
            return record(&parent);
        }
        let span_id = self.0.new_span_id();
        let span_context =
            SpanContext::new(trace_id, span_id, TraceFlags::default(), false, trace_state);
        parent.with_remote_span_context(span_context)
    }
}
