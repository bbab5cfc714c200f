//! A fixed number of requests through one variant, for instruction counts under callgrind
//! (load-independent, unlike wall time on a shared machine).
//!
//! ```text
//! cargo bench -p wxcloudrun-telemetry --bench callgrind --no-run
//! scripts/callgrind-layer.sh            # every variant, instructions per request
//! ```
//!
//! By hand: `valgrind --tool=callgrind --callgrind-out-file=/dev/null <bench binary> <variant> <n>`
//! for two values of `n`; the difference of the "Collected" totals over the difference of `n` is
//! the cost of one request, start-up and warm-up cancelled out. Every thread is counted, the
//! batch exporter's included. Without arguments (as `cargo bench` runs it) each variant runs a
//! few requests, as a smoke test.

mod common;

use std::sync::atomic::Ordering;

use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tower::ServiceBuilder;

use common::{
    EXPORTED, SpanPipeline, call, direct_encoding_provider, encoding_provider, exporting_telemetry,
    handler, init_like_subscriber, our_layer, provider, request, sampled_out_telemetry,
};
use wxcloudrun_telemetry::WxTelemetryLayer;

const VARIANTS: &[&str] = &[
    "bare",
    "wx_metrics",
    "wx_metrics_subscriber",
    "wx_traces_sampled_out",
    "wx_traces_sampled_out_any_tracer",
    "wx_traces_always_on",
    "wx_traces_always_on_otlp_encoded",
    "wx_traces_always_on_direct_encoded",
    "wx_traces_exported",
    "wx_traces_exported_sdk_spans",
    "wx_traces_exported_sdk_batch",
];

/// Requests before counting starts: the label caches and the span-name table fill.
const WARM_UP: u64 = 200;

/// Requests between two flushes: under valgrind the threads take turns, and without a flush the
/// request thread would fill the batch queue (2,048 spans) before the exporter ran, dropping
/// spans and undercounting.
const FLUSH_EVERY: u64 = 256;

fn run_layer(provider: Option<&SdkTracerProvider>, n: u64) {
    run_with(our_layer(provider), provider, n);
}

fn run_with(layer: WxTelemetryLayer, provider: Option<&SdkTracerProvider>, n: u64) {
    let mut service = ServiceBuilder::new().layer(layer).service_fn(handler);
    for i in 0..WARM_UP + n {
        call(&mut service, request());
        if let Some(provider) = provider.filter(|_| i % FLUSH_EVERY == FLUSH_EVERY - 1) {
            let _ = provider.force_flush();
        }
    }
}

fn run(variant: &str, n: u64) -> Result<(), String> {
    match variant {
        "bare" => {
            let mut service = tower::service_fn(handler);
            for _ in 0..WARM_UP + n {
                call(&mut service, request());
            }
        }
        "wx_metrics" => run_layer(None, n),
        // Metrics only, under the subscriber `init` installs: what the `request` log span costs.
        "wx_metrics_subscriber" => {
            let unused = provider(Sampler::AlwaysOff);
            tracing::subscriber::with_default(init_like_subscriber(&unused), || run_layer(None, n));
        }
        // What `init()` does without an endpoint: the layer samples first.
        "wx_traces_sampled_out" => {
            let (telemetry, layer) = sampled_out_telemetry();
            let subscriber = telemetry.subscriber(std::io::sink).expect("a subscriber");
            tracing::subscriber::with_default(subscriber, || run_with(layer, None, n));
        }
        // Any tracer given to `.tracer(…)`: the SDK builds a span, sampled or not.
        "wx_traces_sampled_out_any_tracer" | "wx_traces_always_on" => {
            let sampler = match variant {
                "wx_traces_sampled_out_any_tracer" => Sampler::AlwaysOff,
                _ => Sampler::AlwaysOn,
            };
            let provider = provider(sampler);
            tracing::subscriber::with_default(init_like_subscriber(&provider), || {
                run_layer(Some(&provider), n)
            });
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        }
        // Always on, each batch encoded as opentelemetry-otlp's HTTP exporter encodes it, or as
        // ours does.
        "wx_traces_always_on_otlp_encoded" | "wx_traces_always_on_direct_encoded" => {
            let provider = match variant {
                "wx_traces_always_on_otlp_encoded" => encoding_provider(),
                _ => direct_encoding_provider(),
            };
            tracing::subscriber::with_default(init_like_subscriber(&provider), || {
                run_layer(Some(&provider), n)
            });
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        }
        // What `init()` sets up for an OTLP/HTTP collector, always on: the server span the
        // layer's own, encoded as it records (`Telemetry::new`); the SDK's, encoded as it ends
        // by our processor; the SDK's, batched by the SDK's processor to our exporter.
        "wx_traces_exported" | "wx_traces_exported_sdk_spans" | "wx_traces_exported_sdk_batch" => {
            let pipeline = match variant {
                "wx_traces_exported" => SpanPipeline::Encoded,
                "wx_traces_exported_sdk_spans" => SpanPipeline::SdkServerSpans,
                _ => SpanPipeline::SdkBatching,
            };
            let (telemetry, layer) = exporting_telemetry(pipeline, None);
            let subscriber = telemetry.subscriber(std::io::sink).expect("a subscriber");
            tracing::subscriber::with_default(subscriber, || run_with(layer, None, n));
        }
        other => return Err(format!("unknown variant {other:?}; one of {VARIANTS:?}")),
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let result = match args.as_slice() {
        [] => VARIANTS.iter().try_for_each(|variant| run(variant, 10)),
        [variant, n] => match n.parse() {
            Ok(n) => run(variant, n),
            Err(_) => Err(format!("not a request count: {n:?}")),
        },
        _ => Err("usage: callgrind [<variant> <requests>]".to_owned()),
    };
    if let Err(err) = result {
        eprintln!("{err}");
        std::process::exit(2);
    }
    // Spans recorded and handed to the exporter, warm-up included: all of them, or the run lost
    // some (a full queue) and undercounts.
    println!("exported {}", EXPORTED.load(Ordering::Relaxed));
}
