//! The JSON log lines carry the event's fields at the top level (Tencent Cloud's log search
//! indexes the first level only), and a field named like one of the line's own keys is prefixed
//! with `field.` instead of overwriting it.
//!
//! A single test on purpose, as in `logs.rs`: it installs a thread-local subscriber, and
//! tracing caches callsite interest process-wide.

use std::io::Write;
use std::sync::{Arc, Mutex};

use opentelemetry::trace::{Span as _, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use wxcloudrun_telemetry::JsonLogLayer;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn event_fields_are_top_level_and_never_overwrite_the_line_keys() {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(InMemorySpanExporter::default())
        .build();
    let tracer = provider.tracer("test");
    let logs = Captured::default();
    let subscriber = tracing_subscriber::registry().with(JsonLogLayer::new(logs.clone()));
    let _default = tracing::subscriber::set_default(subscriber);

    let span = tracer.start("upstream call");
    let trace_id = span.span_context().trace_id().to_string();
    let span_id = span.span_context().span_id().to_string();
    let cx = opentelemetry::Context::current_with_span(span);
    {
        let _attached = cx.attach();
        let _entered = tracing::info_span!("checkout").entered();
        tracing::warn!(
            upstream = "inventory",
            attempt = 2,
            latency_ms = 12.5,
            ok = false,
            level = "custom",
            timestamp = 7,
            trace_id = "not-the-trace-id",
            span_id = "not-the-span-id",
            span = "not-the-span",
            "retrying the upstream"
        );
    }

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    // The event's fields, at the first level.
    assert_eq!(line["upstream"], "inventory", "{line}");
    assert_eq!(line["attempt"], 2);
    assert_eq!(line["latency_ms"], 12.5);
    assert_eq!(line["ok"], false);
    assert!(line.get("fields").is_none(), "{line}");
    // The line's own keys keep their meaning.
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["message"], "retrying the upstream");
    assert_eq!(line["trace_id"], trace_id.as_str());
    assert_eq!(line["span_id"], span_id.as_str());
    assert_eq!(line["span"], "checkout");
    assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
    assert_eq!(line["target"], "log_fields");
    // The clashing fields, prefixed.
    assert_eq!(line["field.level"], "custom");
    assert_eq!(line["field.timestamp"], 7);
    assert_eq!(line["field.trace_id"], "not-the-trace-id");
    assert_eq!(line["field.span_id"], "not-the-span-id");
    assert_eq!(line["field.span"], "not-the-span");
}
