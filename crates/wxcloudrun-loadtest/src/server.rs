//! The server side: one OS thread with a current-thread runtime, pinned to its own core, serving
//! one variant at a time on a fresh loopback listener.
//!
//! Everything a variant needs (layers, tracer providers and their batch exporters) is built on
//! that thread after pinning, so the exporters' threads inherit the pinning: all of a variant's
//! cost lands on the serving core, as it would in a one-vCPU container.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use axum::serve::ListenerExt as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing_subscriber::layer::SubscriberExt as _;
use wxcloudrun_telemetry::__bench::{SpanPipeline, telemetry_with_pipeline};
use wxcloudrun_telemetry::{
    OtlpProtocol, Telemetry, TelemetryConfig, TraceExport, TraceSampler, WxTelemetryLayer,
};

use crate::variant::Variant;

/// The service name every variant reports.
const SERVICE: &str = "loadtest";

/// How long a stopping server waits for its connections to close before giving up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize)]
struct User {
    id: u64,
    nickname: String,
    level: u32,
}

/// `GET /users/{id}`: a small JSON body, the same for every variant.
async fn user(Path(id): Path<u64>) -> axum::Json<User> {
    axum::Json(User {
        id,
        nickname: format!("user-{id}"),
        level: 3,
    })
}

fn routes() -> Router {
    Router::new().route("/users/{id}", get(user))
}

/// axum-prometheus installs a process-wide `metrics` recorder: one pair per process.
fn axum_prometheus_layer() -> axum_prometheus::PrometheusMetricLayer<'static> {
    static LAYER: OnceLock<axum_prometheus::PrometheusMetricLayer<'static>> = OnceLock::new();
    LAYER
        .get_or_init(|| {
            // `pair` spawns the recorder's upkeep task on the current runtime (the server's) and
            // returns the handle a `/metrics` route would render; it is not scraped here.
            let (layer, _handle) = axum_prometheus::PrometheusMetricLayer::pair();
            layer
        })
        .clone()
}

/// The tracer provider of the `trace_otel` variant: always on, batched to OTLP/HTTP, built the
/// way `wxcloudrun_telemetry::Telemetry` builds its own.
fn otlp_provider(endpoint: &str) -> Result<SdkTracerProvider, String> {
    // opentelemetry-otlp's default client needs a rustls provider (the workspace builds reqwest
    // without one): the same one `Telemetry` installs.
    wxcloudrun_connect::tls::install_default_provider();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|err| format!("OTLP exporter: {err}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(Resource::builder_empty().with_service_name(SERVICE).build())
        .build())
}

/// Accepts every batch of spans and drops it: recording and batching without encoding.
#[derive(Debug)]
struct DropExporter;

impl SpanExporter for DropExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        drop(batch);
        Ok(())
    }
}

/// `wx_traces`, or `wx_sampled_out` (no endpoint: ids only): the layer as `Telemetry` sets it up;
/// `wx_traces_sdk_spans` and `wx_traces_sdk_batch` with the OTLP/HTTP spans taking `pipeline`.
fn wx_telemetry(
    export: TraceExport,
    pipeline: SpanPipeline,
) -> Result<(Telemetry, WxTelemetryLayer), String> {
    let config = TelemetryConfig {
        service_name: SERVICE.to_owned(),
        export,
        sampler: TraceSampler::AlwaysOn,
        ..TelemetryConfig::from_lookup(|_| None)
    };
    let telemetry = match pipeline {
        SpanPipeline::Encoded => Telemetry::new(config),
        other => telemetry_with_pipeline(config, other),
    }
    .map_err(|err| format!("telemetry: {err}"))?;
    let layer = telemetry
        .layer()
        .build()
        .map_err(|err| format!("layer: {err}"))?;
    Ok((telemetry, layer))
}

/// `wx_traces_dropped`: always on, batched by the SDK to [`DropExporter`].
fn wx_traces_dropped() -> Result<(SdkTracerProvider, WxTelemetryLayer), String> {
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(DropExporter)
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(Resource::builder_empty().with_service_name(SERVICE).build())
        .build();
    let layer = WxTelemetryLayer::builder()
        .service_name(SERVICE)
        .tracer(provider.tracer(SERVICE))
        .build()
        .map_err(|err| format!("wx_traces_dropped: {err}"))?;
    Ok((provider, layer))
}

/// `wx_traces_otlp_crate`: always on, batched to opentelemetry-otlp's HTTP exporter.
fn wx_traces_otlp_crate(endpoint: &str) -> Result<(SdkTracerProvider, WxTelemetryLayer), String> {
    let provider = otlp_provider(endpoint)?;
    let layer = WxTelemetryLayer::builder()
        .service_name(SERVICE)
        .tracer(provider.tracer(SERVICE))
        .build()
        .map_err(|err| format!("wx_traces_otlp_crate: {err}"))?;
    Ok((provider, layer))
}

/// The layer of a variant built with what it needs kept alive.
fn layer_of<T>(built: &Option<(T, WxTelemetryLayer)>) -> Option<WxTelemetryLayer> {
    built.as_ref().map(|(_, layer)| layer.clone())
}

/// What the variants need, built once per process on the server thread.
struct Stack {
    wx_metrics: Option<WxTelemetryLayer>,
    wx_sampled_out: Option<(Telemetry, WxTelemetryLayer)>,
    wx_traces_dropped: Option<(SdkTracerProvider, WxTelemetryLayer)>,
    wx_traces: Option<(Telemetry, WxTelemetryLayer)>,
    wx_traces_sdk_spans: Option<(Telemetry, WxTelemetryLayer)>,
    wx_traces_sdk_batch: Option<(Telemetry, WxTelemetryLayer)>,
    wx_traces_otlp_crate: Option<(SdkTracerProvider, WxTelemetryLayer)>,
    axum_prometheus: Option<axum_prometheus::PrometheusMetricLayer<'static>>,
    trace_otel: Option<SdkTracerProvider>,
}

impl Stack {
    /// Builds what `variants` need, outside any runtime context (the OTLP exporter builds a
    /// blocking HTTP client); axum-prometheus spawns its upkeep task on `runtime`.
    fn build(
        variants: &[Variant],
        otlp_endpoint: &str,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<Stack, String> {
        let wants = |v| variants.contains(&v);
        let wx_metrics = if wants(Variant::WxMetrics) {
            Some(
                WxTelemetryLayer::builder()
                    .service_name(SERVICE)
                    .build()
                    .map_err(|err| format!("wx_metrics: {err}"))?,
            )
        } else {
            None
        };
        let wx_sampled_out = match wants(Variant::WxSampledOut) {
            true => Some(wx_telemetry(
                TraceExport::NotExported,
                SpanPipeline::Encoded,
            )?),
            false => None,
        };
        let wx_traces_dropped = match wants(Variant::WxTracesDropped) {
            true => Some(wx_traces_dropped()?),
            false => None,
        };
        let otlp_http = || TraceExport::Otlp {
            endpoint: otlp_endpoint.to_owned(),
            protocol: OtlpProtocol::HttpProtobuf,
        };
        let wx_traces = match wants(Variant::WxTraces) {
            true => Some(wx_telemetry(otlp_http(), SpanPipeline::Encoded)?),
            false => None,
        };
        let wx_traces_sdk_spans = match wants(Variant::WxTracesSdkSpans) {
            true => Some(wx_telemetry(otlp_http(), SpanPipeline::SdkServerSpans)?),
            false => None,
        };
        let wx_traces_sdk_batch = match wants(Variant::WxTracesSdkBatch) {
            true => Some(wx_telemetry(otlp_http(), SpanPipeline::SdkBatching)?),
            false => None,
        };
        let wx_traces_otlp_crate = match wants(Variant::WxTracesOtlpCrate) {
            true => Some(wx_traces_otlp_crate(otlp_endpoint)?),
            false => None,
        };
        let axum_prometheus = wants(Variant::AxumPrometheus).then(|| {
            let _context = runtime.enter();
            axum_prometheus_layer()
        });
        let trace_otel = if wants(Variant::TraceOtel) {
            Some(otlp_provider(otlp_endpoint)?)
        } else {
            None
        };
        Ok(Stack {
            wx_metrics,
            wx_sampled_out,
            wx_traces_dropped,
            wx_traces,
            wx_traces_sdk_spans,
            wx_traces_sdk_batch,
            wx_traces_otlp_crate,
            axum_prometheus,
            trace_otel,
        })
    }

    fn router(&self, variant: Variant) -> Router {
        const BUILT: &str = "Stack::build builds every variant it is asked for";
        match variant {
            Variant::Bare => routes(),
            Variant::WxMetrics => routes().layer(self.wx_metrics.clone().expect(BUILT)),
            Variant::WxSampledOut => routes().layer(layer_of(&self.wx_sampled_out).expect(BUILT)),
            Variant::WxTracesDropped => {
                routes().layer(layer_of(&self.wx_traces_dropped).expect(BUILT))
            }
            Variant::WxTraces => routes().layer(layer_of(&self.wx_traces).expect(BUILT)),
            Variant::WxTracesSdkSpans => {
                routes().layer(layer_of(&self.wx_traces_sdk_spans).expect(BUILT))
            }
            Variant::WxTracesSdkBatch => {
                routes().layer(layer_of(&self.wx_traces_sdk_batch).expect(BUILT))
            }
            Variant::WxTracesOtlpCrate => {
                routes().layer(layer_of(&self.wx_traces_otlp_crate).expect(BUILT))
            }
            Variant::AxumPrometheus => routes().layer(self.axum_prometheus.clone().expect(BUILT)),
            Variant::TraceOtel => routes().layer(tower_http::trace::TraceLayer::new_for_http()),
        }
    }

    /// The `tracing` subscriber a variant runs under: only `trace_otel` has one, made anew for
    /// each run and set for the server thread only, so no other variant pays for it. (No variant
    /// logs: there is no global subscriber.)
    fn dispatch(&self, variant: Variant) -> Option<tracing::Dispatch> {
        match variant {
            Variant::TraceOtel => self.trace_otel.as_ref().map(|provider| {
                tracing::Dispatch::new(
                    tracing_subscriber::registry()
                        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer(SERVICE))),
                )
            }),
            _ => None,
        }
    }

    /// Pushes a traced variant's queued spans to the sink, so they count for that variant.
    fn flush(&self, variant: Variant) {
        match variant {
            Variant::WxTraces | Variant::WxTracesSdkSpans | Variant::WxTracesSdkBatch => {
                let built = match variant {
                    Variant::WxTraces => &self.wx_traces,
                    Variant::WxTracesSdkSpans => &self.wx_traces_sdk_spans,
                    _ => &self.wx_traces_sdk_batch,
                };
                if let Some((telemetry, _)) = built {
                    telemetry.flush();
                }
            }
            Variant::WxTracesDropped => {
                if let Some((provider, _)) = &self.wx_traces_dropped {
                    let _ = provider.force_flush();
                }
            }
            Variant::WxTracesOtlpCrate => {
                if let Some((provider, _)) = &self.wx_traces_otlp_crate {
                    let _ = provider.force_flush();
                }
            }
            Variant::TraceOtel => {
                if let Some(provider) = &self.trace_otel {
                    let _ = provider.force_flush();
                }
            }
            _ => {}
        }
    }

    fn shutdown(self) {
        if let Some(provider) = self.trace_otel {
            let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
        }
        for (provider, _) in [self.wx_traces_dropped, self.wx_traces_otlp_crate]
            .into_iter()
            .flatten()
        {
            let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
        }
        // Dropping `Telemetry` shuts its provider down, exporting what is left.
        drop(self.wx_traces);
        drop(self.wx_traces_sdk_spans);
        drop(self.wx_traces_sdk_batch);
        drop(self.wx_sampled_out);
    }
}

/// Where the threads a variant starts (the batch span processors' workers, the OTLP HTTP
/// client's) may run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExporterThreads {
    /// On the server's core, competing with the server: the cost a one-vCPU container pays.
    #[default]
    ServerCore,
    /// On any core (so also on the load generator's).
    Anywhere,
}

/// A request to serve one variant until `stop` fires.
#[derive(Debug)]
pub struct Serve {
    /// The server to run.
    pub variant: Variant,
    /// Receives the listener's address once it accepts.
    pub ready: oneshot::Sender<Result<SocketAddr, String>>,
    /// Fires when the server should stop.
    pub stop: oneshot::Receiver<()>,
    /// Fires once the server has stopped and the variant's spans were flushed.
    pub done: oneshot::Sender<()>,
}

/// The running server thread.
#[derive(Debug)]
pub struct ServerThread {
    /// Where to send the variants to serve, one after the other.
    pub commands: mpsc::UnboundedSender<Serve>,
    /// The kernel id of the serving thread (for its CPU time), when known.
    pub tid: Option<i32>,
    /// Whether it is pinned, and to which CPU.
    pub pinned: Option<usize>,
    /// Fires when the thread has ended: its command channel closed, the exporters shut down.
    pub finished: oneshot::Receiver<()>,
    /// The thread itself.
    pub handle: std::thread::JoinHandle<()>,
}

/// Starts the server thread: pins it to `cpu` (when given), builds what `variants` need, then
/// serves commands until the command channel closes.
pub fn spawn(
    cpu: Option<usize>,
    exporters: ExporterThreads,
    variants: Vec<Variant>,
    otlp_endpoint: String,
) -> Result<ServerThread, String> {
    let (commands, mut rx) = mpsc::unbounded_channel::<Serve>();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (finished_tx, finished) = oneshot::channel();
    let handle = std::thread::Builder::new()
        .name("loadtest-server".into())
        .spawn(move || {
            // Pinned before the exporters start, their threads share the server's core; else
            // they may run anywhere and the server is pinned after.
            let mut pinned = match exporters {
                ExporterThreads::ServerCore => pin_current_thread(cpu),
                ExporterThreads::Anywhere => {
                    widen_current_thread();
                    None
                }
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = started_tx.send(Err(format!("server runtime: {err}")));
                    return;
                }
            };
            let stack = match Stack::build(&variants, &otlp_endpoint, &runtime) {
                Ok(stack) => stack,
                Err(err) => {
                    let _ = started_tx.send(Err(err));
                    return;
                }
            };
            if exporters == ExporterThreads::Anywhere {
                pinned = pin_current_thread(cpu);
            }
            let _ = started_tx.send(Ok((crate::sys::current_thread_id(), pinned)));
            runtime.block_on(async {
                while let Some(command) = rx.recv().await {
                    serve(&stack, command).await;
                }
            });
            stack.shutdown();
            drop(runtime);
            let _ = finished_tx.send(());
        })
        .map_err(|err| format!("cannot start the server thread: {err}"))?;
    match started_rx.recv() {
        Ok(Ok((tid, pinned))) => Ok(ServerThread {
            commands,
            tid,
            pinned,
            finished,
            handle,
        }),
        Ok(Err(err)) => {
            let _ = handle.join();
            Err(err)
        }
        Err(_) => {
            let _ = handle.join();
            Err("the server thread died while starting".into())
        }
    }
}

/// Pins the calling thread to `cpu`, if given; the CPU it is pinned to, `None` (with a warning)
/// when that failed.
fn pin_current_thread(cpu: Option<usize>) -> Option<usize> {
    cpu.and_then(|cpu| match crate::sys::pin_current_thread(cpu) {
        Ok(()) => Some(cpu),
        Err(err) => {
            eprintln!("warning: server thread not pinned: {err}");
            None
        }
    })
}

/// Lets the calling thread, and the threads it starts, run on every usable CPU: threads inherit
/// the affinity of the thread that starts them, and the server thread was started by the
/// (pinned) load generator thread.
fn widen_current_thread() {
    let all = crate::sys::usable_cpus();
    if let Err(err) = crate::sys::set_current_thread_cpus(&all) {
        eprintln!("warning: exporter threads keep the load generator's CPU: {err}");
    }
}

async fn serve(stack: &Stack, command: Serve) {
    let Serve {
        variant,
        ready,
        stop,
        done,
    } = command;
    let listener = match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await {
        Ok(listener) => listener,
        Err(err) => {
            let _ = ready.send(Err(format!("bind: {err}")));
            return;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(err) => {
            let _ = ready.send(Err(format!("local_addr: {err}")));
            return;
        }
    };
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = stack.router(variant);
    // Set for this thread only while the variant runs; dropped before the next one.
    let dispatch = stack.dispatch(variant);
    let subscriber = dispatch.as_ref().map(tracing::dispatcher::set_default);
    let _ = ready.send(Ok(addr));
    let (draining_tx, draining) = oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop.await;
        let _ = draining_tx.send(());
    });
    let drain_limit = async move {
        let _ = draining.await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        result = server => {
            if let Err(err) = result {
                eprintln!("warning: {} server: {err}", variant.name());
            }
        }
        () = drain_limit => eprintln!("warning: {} server did not drain in time", variant.name()),
    }
    if let Some(guard) = subscriber {
        drop(guard);
        drop(dispatch);
        // With the subscriber gone, return every callsite (tower-http's, axum's, the layer's own
        // `request` span) to "never enabled", so the variants that follow don't pay for it.
        tracing::callsite::rebuild_interest_cache();
    }
    stack.flush(variant);
    let _ = done.send(());
}
