//! The services the benchmarks compare, built once and called in a loop without a runtime: every
//! inner future is ready at once, so what is measured is the middleware, not a scheduler.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use tower::{Service, ServiceExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer as _, Registry};
pub(crate) use wxcloudrun_telemetry::__bench::SpanPipeline;
use wxcloudrun_telemetry::__bench::telemetry_with_pipeline;
use wxcloudrun_telemetry::{
    HttpRoute, JsonLogLayer, OtlpProtocol, SpanBatching, Telemetry, TelemetryConfig, TraceExport,
    TraceSampler, WxTelemetryLayer,
};

/// The handler every variant wraps: what a tiny JSON endpoint costs.
pub(crate) async fn handler<B>(_req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        br#"{"id":42,"nickname":"user-42"}"#,
    ))))
}

/// `GET /users/42` as the WeChat gateway delivers it, with the route template already known
/// (what axum's router provides to a `Router::layer`).
///
/// Header values are `from_static`: like the values hyper parses (slices of its shared read
/// buffer), cloning them only bumps a reference count. Values made with `from_str` would instead
/// allocate on their first clone, which a server never sees.
pub(crate) fn request() -> Request<Full<Bytes>> {
    let mut request = Request::get("/users/42")
        .header("x-wx-source", HeaderValue::from_static("wx_client"))
        .header(
            "x-wx-openid",
            HeaderValue::from_static("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
        )
        .header("x-wx-appid", HeaderValue::from_static("wx1b2c3d4e5f6a7b8c"))
        .header(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.7, 10.8.0.11"),
        )
        .header(
            "user-agent",
            HeaderValue::from_static("Mozilla/5.0 MicroMessenger/8.0.47"),
        )
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    request
        .extensions_mut()
        .insert(HttpRoute("/users/{id}".into()));
    request
}

/// [`request`] with a W3C `traceparent`, as the Mini Program package sends every call: a new
/// trace id per request (so that the recent-requests table of client reports takes its
/// insert-and-evict path), written into a fresh header value the way a server's parser hands it
/// over, its bytes just written (a pool of values made in advance would make every request read
/// a cold cache line that a server never has to).
pub(crate) struct Traced {
    next: u64,
}

impl Traced {
    pub(crate) fn new() -> Self {
        Traced { next: 0 }
    }

    pub(crate) fn request(&mut self) -> Request<Full<Bytes>> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut value = *b"00-0af7651916cd43dd0000000000000000-00f067aa0ba902b7-01";
        let n = self.next;
        self.next += 1;
        for (i, digit) in value[19..35].iter_mut().enumerate() {
            *digit = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
        let mut request = request();
        request.headers_mut().insert(
            "traceparent",
            HeaderValue::from_bytes(&value).expect("a valid traceparent"),
        );
        request
    }
}

/// Sends one request through `service` and reads the whole response body.
pub(crate) fn call<S, B>(service: &mut S, request: Request<Full<Bytes>>)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let ready = service.ready().now_or_never().expect("ready at once");
    let response = ready
        .expect("service is ready")
        .call(request)
        .now_or_never()
        .expect("handler completes at once")
        .expect("no service error");
    let body = response
        .into_body()
        .collect()
        .now_or_never()
        .expect("body completes at once");
    std::hint::black_box(body.expect("no body error"));
}

/// Spans [`DropExporter`] has been handed, for checking that a run lost none.
pub(crate) static EXPORTED: AtomicU64 = AtomicU64::new(0);

/// Accepts every batch and drops it: the cost of recording and batching, without a network.
#[derive(Debug)]
pub(crate) struct DropExporter;

impl SpanExporter for DropExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        EXPORTED.fetch_add(batch.len() as u64, Ordering::Relaxed);
        drop(batch);
        std::future::ready(Ok(()))
    }
}

/// A tracer provider with a batch processor in front of [`DropExporter`].
pub(crate) fn provider(sampler: Sampler) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_batch_exporter(DropExporter)
        .with_sampler(sampler)
        .build()
}

/// Encodes every batch as opentelemetry-otlp's OTLP/HTTP exporter does before sending it (the
/// conversion into `opentelemetry-proto` messages, then prost), and drops the bytes: what the
/// encoding costs per span, without a network.
#[derive(Debug, Default)]
pub(crate) struct EncodeExporter {
    resource: Option<opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema>,
}

impl SpanExporter for EncodeExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
        use prost::Message as _;
        EXPORTED.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let resource = self.resource.as_ref().expect("a resource is set first");
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, resource),
        };
        std::hint::black_box(request.encode_to_vec());
        std::future::ready(Ok(()))
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.resource = Some(resource.into());
    }
}

/// Encodes every batch as the layer's own OTLP/HTTP exporter does (`init/span_proto.rs`), and
/// drops the bytes: [`EncodeExporter`]'s counterpart.
#[derive(Debug, Default)]
pub(crate) struct DirectEncodeExporter {
    resource: wxcloudrun_telemetry::__bench::EncodedResource,
}

impl SpanExporter for DirectEncodeExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        EXPORTED.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut body = Vec::new();
        wxcloudrun_telemetry::__bench::encode_request(&batch, &self.resource, &mut body);
        std::hint::black_box(body);
        std::future::ready(Ok(()))
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.resource = wxcloudrun_telemetry::__bench::EncodedResource::new(resource);
    }
}

/// [`provider`] with [`DirectEncodeExporter`]: always on.
pub(crate) fn direct_encoding_provider() -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_batch_exporter(DirectEncodeExporter::default())
        .with_sampler(Sampler::AlwaysOn)
        .build()
}

/// [`provider`] with [`EncodeExporter`]: always on.
pub(crate) fn encoding_provider() -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_batch_exporter(EncodeExporter::default())
        .with_sampler(Sampler::AlwaysOn)
        .build()
}

pub(crate) fn our_layer(provider: Option<&SdkTracerProvider>) -> WxTelemetryLayer {
    our_layer_with(provider, false)
}

/// [`our_layer`], with client reports on or off.
pub(crate) fn our_layer_with(
    provider: Option<&SdkTracerProvider>,
    client_reports: bool,
) -> WxTelemetryLayer {
    let builder = WxTelemetryLayer::builder()
        .service_name("bench")
        .process_metrics(false)
        .client_reports(client_reports);
    match provider {
        Some(provider) => builder.tracer(provider.tracer("bench")),
        None => builder,
    }
    .build()
    .expect("valid configuration")
}

/// The subscriber `init` installs, writing to a sink.
pub(crate) fn init_like_subscriber(
    provider: &SdkTracerProvider,
) -> impl tracing::Subscriber + Send + Sync {
    let bridge = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("bench"))
        .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.target() != "wxcloudrun_telemetry::request"
        }));
    Registry::default()
        .with(EnvFilter::new("info"))
        .with(JsonLogLayer::new(std::io::sink))
        .with(bridge)
}

/// What `init()` sets up without an OTLP endpoint: every span sampled out (ids only), the layer
/// asking the sampler first. Its layer and its subscriber (JSON logs to a sink) as `init` builds
/// them.
pub(crate) fn sampled_out_telemetry() -> (Telemetry, WxTelemetryLayer) {
    let mut config = TelemetryConfig::from_env();
    config.service_name = "bench".to_owned();
    config.export = TraceExport::NotExported;
    let telemetry = Telemetry::new(config).expect("a telemetry set-up");
    let layer = bench_layer(&telemetry);
    (telemetry, layer)
}

/// What `init()` sets up for an OTLP/HTTP collector, always on, its spans taking `pipeline`
/// (`SpanPipeline::Encoded` is `Telemetry::new`'s), exporting to `collector` with the default
/// batching. Without a collector nothing leaves during a measurement: the batch holds a million
/// spans and waits an hour, so what is counted is the request and the encoding or queueing of its
/// span, not the network (callgrind, dhat); the last export at drop fails fast (a closed loopback
/// port, 100 ms timeout).
pub(crate) fn exporting_telemetry(
    pipeline: SpanPipeline,
    collector: Option<&str>,
) -> (Telemetry, WxTelemetryLayer) {
    let mut config = TelemetryConfig::from_env();
    config.service_name = "bench".to_owned();
    config.export = TraceExport::Otlp {
        endpoint: collector
            .unwrap_or("http://127.0.0.1:9/v1/traces")
            .to_owned(),
        protocol: OtlpProtocol::HttpProtobuf,
    };
    config.sampler = TraceSampler::AlwaysOn;
    if collector.is_none() {
        config.otlp_timeout = Some(std::time::Duration::from_millis(100));
        config.batch = SpanBatching {
            max_queue_size: 1_000_000,
            max_export_batch_size: 1_000_000,
            scheduled_delay: std::time::Duration::from_secs(3600),
            ..SpanBatching::default()
        };
    }
    let telemetry = telemetry_with_pipeline(config, pipeline).expect("a telemetry set-up");
    let layer = bench_layer(&telemetry);
    (telemetry, layer)
}

/// `telemetry`'s layer, without the process metrics (they are not per request).
fn bench_layer(telemetry: &Telemetry) -> WxTelemetryLayer {
    telemetry
        .layer()
        .process_metrics(false)
        .build()
        .expect("valid configuration")
}

/// A loopback OTLP/HTTP collector that reads every request and answers 200: its URL.
pub(crate) fn loopback_collector() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let address = listener.local_addr().expect("a bound address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = answer_each_request(stream);
            });
        }
    });
    format!("http://{address}/v1/traces")
}

/// Reads HTTP/1.1 requests off one keep-alive connection, answering each with 200.
fn answer_each_request(stream: std::net::TcpStream) -> std::io::Result<()> {
    use std::io::{BufRead as _, Read as _, Write as _};
    let mut writer = stream.try_clone()?;
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        let mut length = 0;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
        writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
    }
}
