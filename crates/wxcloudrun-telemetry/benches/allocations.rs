//! Heap allocations per request that the layer adds, counted by dhat's allocator (which is too
//! slow to share a binary with the timing benchmark).
//!
//! Run with `cargo bench -p wxcloudrun-telemetry --bench allocations`.

mod common;

use opentelemetry_sdk::trace::Sampler;
use tower::ServiceBuilder;

use common::{
    SpanPipeline, Traced, call, exporting_telemetry, handler, our_layer, our_layer_with, provider,
    request, sampled_out_telemetry,
};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const REQUESTS: u64 = 10_000;
const WARM_UP: u64 = 100;

/// Allocations per request of `service`, after a warm-up that fills the label caches.
fn per_request<S, B>(service: &mut S) -> f64
where
    S: tower::Service<
            http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = http::Response<B>,
        >,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    per_request_of(service, request)
}

/// [`per_request`] with requests made by `make`.
fn per_request_of<S, B>(
    service: &mut S,
    mut make: impl FnMut() -> http::Request<http_body_util::Full<bytes::Bytes>>,
) -> f64
where
    S: tower::Service<
            http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = http::Response<B>,
        >,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    for _ in 0..WARM_UP {
        call(service, make());
    }
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..REQUESTS {
        call(service, make());
    }
    let after = dhat::HeapStats::get().total_blocks;
    (after - before) as f64 / REQUESTS as f64
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();

    let bare = per_request(&mut tower::service_fn(handler));
    let metrics = per_request(
        &mut ServiceBuilder::new()
            .layer(our_layer(None))
            .service_fn(handler),
    );
    let mut traced = Traced::new();
    let traceparent = per_request_of(
        &mut ServiceBuilder::new()
            .layer(our_layer(None))
            .service_fn(handler),
        || traced.request(),
    );
    let client_reports = per_request_of(
        &mut ServiceBuilder::new()
            .layer(our_layer_with(None, true))
            .service_fn(handler),
        || traced.request(),
    );
    // As `init()` sets it up without an endpoint (the layer samples first); like every variant
    // here, without a subscriber.
    let (_telemetry, layer) = sampled_out_telemetry();
    let sampled_out = per_request(&mut ServiceBuilder::new().layer(layer).service_fn(handler));
    let sampled_out_provider = provider(Sampler::AlwaysOff);
    let any_tracer = per_request(
        &mut ServiceBuilder::new()
            .layer(our_layer(Some(&sampled_out_provider)))
            .service_fn(handler),
    );
    let always_on_provider = provider(Sampler::AlwaysOn);
    let always_on = per_request(
        &mut ServiceBuilder::new()
            .layer(our_layer(Some(&always_on_provider)))
            .service_fn(handler),
    );
    // What `init()` sets up for an OTLP/HTTP collector, always on, by span pipeline (nothing is
    // sent while counting: see `exporting_telemetry`).
    let mut exported = Vec::new();
    let mut kept = Vec::new();
    for (name, pipeline) in [
        ("wx_traces_exported", SpanPipeline::Encoded),
        ("  …_sdk_spans", SpanPipeline::SdkServerSpans),
        ("  …_sdk_batch", SpanPipeline::SdkBatching),
    ] {
        let (telemetry, layer) = exporting_telemetry(pipeline, None);
        let total = per_request(&mut ServiceBuilder::new().layer(layer).service_fn(handler));
        exported.push((name, total));
        kept.push(telemetry);
    }

    println!("allocations per request (request building and the handler included in bare):");
    println!("  bare                     {bare:>6.2}");
    for (name, total) in [
        ("wx_metrics", metrics),
        ("wx_metrics_traceparent", traceparent),
        ("wx_metrics_client_reports", client_reports),
        ("wx_traces_sampled_out", sampled_out),
        ("  …_any_tracer", any_tracer),
        ("wx_traces_always_on", always_on),
    ]
    .into_iter()
    .chain(exported)
    {
        println!(
            "  {name:<24} {total:>6.2}  (+{:.2} over bare)",
            total - bare
        );
    }
    let _ = sampled_out_provider.shutdown();
    let _ = always_on_provider.shutdown();
    drop(kept);
}
