//! Per-request cost of the layer against a bare service and the popular alternatives, in one run.
//!
//! Run with `cargo bench -p wxcloudrun-telemetry --bench layer`.
//!
//! Variants, all wrapping the same `service_fn` handler and sending the same gateway request:
//! - `bare`: the handler alone;
//! - `wx_context_only`: not the layer, only what its `WxContext` contract costs (parse the gateway
//!   headers, insert the context into the request's extensions);
//! - `wx_metrics`: our layer, metrics only;
//! - `wx_metrics_traceparent`: the same, each request with a new `traceparent` (what the Mini
//!   Program package sends);
//! - `wx_metrics_client_reports`: the same requests with `client_reports(true)`: the
//!   `Server-Timing` header and the recent-requests table on top of `wx_metrics_traceparent`;
//! - `wx_traces_sampled_out`: metrics + spans, sampler `always_off`, under the subscriber `init`
//!   installs (JSON logs to a sink, the tracing → OpenTelemetry bridge);
//! - `wx_traces_always_on`: the same with every span recorded and batched to an exporter that
//!   drops them;
//! - `axum_prometheus`: axum-prometheus's `PrometheusMetricLayer`;
//! - `tower_http_trace_otel`: tower-http's `TraceLayer` with tracing-opentelemetry, always on,
//!   batched to the same dropping exporter.

mod common;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::Full;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::Sampler;
use tower::ServiceBuilder;
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt;
use wxcloudrun_telemetry::{TrustMode, WxContext};

use common::{
    SpanPipeline, Traced, call, exporting_telemetry, handler, init_like_subscriber,
    loopback_collector, our_layer, our_layer_with, provider, request, sampled_out_telemetry,
};

fn layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");

    let mut bare = tower::service_fn(handler);
    group.bench_function("bare", |b| b.iter(|| call(&mut bare, request())));

    // Not a variant of the layer: what the `WxContext` contract costs by itself (parse the
    // gateway headers, put the context into the request's extensions), the floor under
    // `wx_metrics`.
    let mut context_only = ServiceBuilder::new()
        .map_request(|mut req: http::Request<Full<Bytes>>| {
            let ctx = WxContext::from_headers(req.headers(), TrustMode::WhenSourcePresent, None);
            req.extensions_mut().insert(ctx);
            req
        })
        .service_fn(handler);
    group.bench_function("wx_context_only", |b| {
        b.iter(|| call(&mut context_only, request()))
    });

    let mut metrics = ServiceBuilder::new()
        .layer(our_layer(None))
        .service_fn(handler);
    group.bench_function("wx_metrics", |b| b.iter(|| call(&mut metrics, request())));

    // Client reports: the same requests, each with a fresh traceparent, without and with the
    // option, side by side.
    let mut traced = Traced::new();
    group.bench_function("wx_metrics_traceparent", |b| {
        b.iter(|| call(&mut metrics, traced.request()))
    });
    let mut reporting = ServiceBuilder::new()
        .layer(our_layer_with(None, true))
        .service_fn(handler);
    group.bench_function("wx_metrics_client_reports", |b| {
        b.iter(|| call(&mut reporting, traced.request()))
    });

    // What `init()` sets up without an endpoint: the layer asks the sampler first.
    let (telemetry, layer) = sampled_out_telemetry();
    let mut traced_out = ServiceBuilder::new().layer(layer).service_fn(handler);
    let subscriber = telemetry.subscriber(std::io::sink).expect("a subscriber");
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("wx_traces_sampled_out", |b| {
            b.iter(|| call(&mut traced_out, request()))
        });
    });
    // Any tracer given to `.tracer(…)`: the SDK builds a span, sampled or not.
    let sampled_out = provider(Sampler::AlwaysOff);
    let mut traced_out = ServiceBuilder::new()
        .layer(our_layer(Some(&sampled_out)))
        .service_fn(handler);
    tracing::subscriber::with_default(init_like_subscriber(&sampled_out), || {
        group.bench_function("wx_traces_sampled_out_any_tracer", |b| {
            b.iter(|| call(&mut traced_out, request()))
        });
    });

    let always_on = provider(Sampler::AlwaysOn);
    let mut traced = ServiceBuilder::new()
        .layer(our_layer(Some(&always_on)))
        .service_fn(handler);
    tracing::subscriber::with_default(init_like_subscriber(&always_on), || {
        group.bench_function("wx_traces_always_on", |b| {
            b.iter(|| call(&mut traced, request()))
        });
    });

    // axum-prometheus spawns its exporter's upkeep task: it needs a runtime to exist.
    // What `init()` sets up for an OTLP/HTTP collector (one on loopback), always on, under its
    // subscriber: the layer's own encoded server span; the SDK's, encoded as it ends; the
    // SDK's, batched by the SDK's processor to our exporter.
    let collector = loopback_collector();
    for (name, pipeline) in [
        ("wx_traces_exported", SpanPipeline::Encoded),
        ("wx_traces_exported_sdk_spans", SpanPipeline::SdkServerSpans),
        ("wx_traces_exported_sdk_batch", SpanPipeline::SdkBatching),
    ] {
        let (telemetry, layer) = exporting_telemetry(pipeline, Some(&collector));
        let mut exported = ServiceBuilder::new().layer(layer).service_fn(handler);
        let subscriber = telemetry.subscriber(std::io::sink).expect("a subscriber");
        tracing::subscriber::with_default(subscriber, || {
            group.bench_function(name, |b| b.iter(|| call(&mut exported, request())));
        });
    }

    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let _entered = runtime.enter();
    let (prometheus_layer, _handle) = axum_prometheus::PrometheusMetricLayer::pair();
    let mut axum_prometheus = ServiceBuilder::new()
        .layer(prometheus_layer)
        .service_fn(handler);
    group.bench_function("axum_prometheus", |b| {
        b.iter(|| call(&mut axum_prometheus, request()))
    });

    let peer_provider = provider(Sampler::AlwaysOn);
    let peer_subscriber = Registry::default()
        .with(tracing_opentelemetry::layer().with_tracer(peer_provider.tracer("bench")));
    let mut trace_layer = ServiceBuilder::new()
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .service_fn(handler);
    tracing::subscriber::with_default(peer_subscriber, || {
        group.bench_function("tower_http_trace_otel", |b| {
            b.iter(|| call(&mut trace_layer, request()))
        });
    });

    group.finish();
    for provider in [sampled_out, always_on, peer_provider] {
        let _ = provider.shutdown();
    }
}

criterion_group!(benches, layers);
criterion_main!(benches);
