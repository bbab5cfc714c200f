//! One call that sets up what most services need, from the standard `OTEL_*` variables: the OTLP
//! trace pipeline, JSON logs on stdout with trace ids, and a layer builder wired to both.
//!
//! How the exporter reaches the collector (TLS, the `OTEL_EXPORTER_OTLP_*` variables, secrets)
//! is wxcloudrun-connect's, shared with the sidecar.

mod config;
mod encoded_span;
mod encoding_processor;
mod error;
mod exporter;
mod http_exporter;
mod sampling;
pub(crate) mod span_proto;

use std::sync::Arc;

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanExporter,
};
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer as _, Registry};
use wxcloudrun_connect::secret::redact_url;

use self::config::EXPORT_TIMEOUT;
pub use self::config::{OtlpProtocol, SpanBatching, TelemetryConfig, TraceExport, TraceSampler};
use self::encoded_span::SpanDestination;
use self::encoding_processor::EncodingSpanProcessor;
pub use self::error::InitError;
use self::exporter::Exporter;
use self::sampling::{LayerIds, sample_first};
use crate::config::WxTelemetryBuilder;
use crate::layer::WxTelemetryLayer;
use crate::logs::JsonLogLayer;
use crate::trace::{REQUEST_SPAN_TARGET, SampleFirst};

/// The SDK's batch processor over `exporter`, with the configured batching.
fn sdk_batch(exporter: impl SpanExporter + 'static, batching: &SpanBatching) -> BatchSpanProcessor {
    BatchSpanProcessor::builder(exporter)
        .with_batch_config(batching.to_sdk())
        .build()
}

/// How OTLP/HTTP spans reach the exporter: for the load test's side-by-side comparison only.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanPipeline {
    /// What [`Telemetry::new`] builds: the layer's server spans encoded as they record
    /// (`encoded_span`), the other spans encoded as they end (`encoding_processor`).
    Encoded,
    /// The encoding processor, the server spans the SDK's.
    SdkServerSpans,
    /// The SDK's spans and `BatchSpanProcessor`, our exporter behind it.
    SdkBatching,
}

/// [`Telemetry::new`] with the OTLP/HTTP spans taking `pipeline`: for the load test only.
#[doc(hidden)]
pub fn telemetry_with_pipeline(
    config: TelemetryConfig,
    pipeline: SpanPipeline,
) -> Result<Telemetry, InitError> {
    Telemetry::build(config, pipeline)
}

/// The telemetry of one process: the trace pipeline and what is needed to build the layer and
/// the log subscriber. Dropping it flushes the spans of the last requests.
#[derive(Debug)]
pub struct Telemetry {
    config: TelemetryConfig,
    provider: Option<SdkTracerProvider>,
    tracer: Option<SdkTracer>,
    /// The provider's sampler, for the layer to ask first.
    sample_first: Option<SampleFirst>,
}

impl Telemetry {
    /// Builds the trace pipeline described by `config`, installing nothing globally. Fails when
    /// `config.errors` is not empty, or on a TLS file that cannot be used; new warnings (e.g.
    /// `insecure_skip_verify`) go to `config().warnings`, which [`init`] logs.
    ///
    /// OTLP/gRPC must be set up inside a Tokio runtime.
    pub fn new(config: TelemetryConfig) -> Result<Self, InitError> {
        Self::build(config, SpanPipeline::Encoded)
    }

    /// [`Telemetry::new`], the OTLP/HTTP spans taking `pipeline`.
    fn build(mut config: TelemetryConfig, pipeline: SpanPipeline) -> Result<Self, InitError> {
        // Other reqwest clients in the process (the app's own) need a default provider.
        wxcloudrun_connect::tls::install_default_provider();
        if !config.errors.is_empty() {
            return Err(InitError::Environment {
                problems: config.errors.clone(),
            });
        }
        let mut warnings = Vec::new();
        let scope = InstrumentationScope::builder("wxcloudrun-telemetry")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let (provider, sample_first) = match &config.export {
            TraceExport::Disabled => (None, None),
            // Ids without export: spans never record, but the trace id still reaches the logs
            // and the response header, and propagates downstream.
            TraceExport::NotExported => (
                Some(
                    SdkTracerProvider::builder()
                        .with_sampler(Sampler::AlwaysOff)
                        .with_id_generator(LayerIds::default())
                        .with_resource(config.resource())
                        .build(),
                ),
                Some(sample_first(Sampler::AlwaysOff, None)),
            ),
            TraceExport::Otlp { endpoint, protocol } => {
                let exporter = exporter::build(&config, endpoint, *protocol, &mut warnings)?;
                let builder = SdkTracerProvider::builder();
                let (builder, encoded) =
                    match exporter {
                        Exporter::Http(http) if pipeline == SpanPipeline::SdkBatching => (
                            builder.with_span_processor(sdk_batch(http, &config.batch)),
                            None,
                        ),
                        Exporter::Http(http) => {
                            let processor = EncodingSpanProcessor::new(http, &config.batch)
                                .map_err(|err| InitError::Exporter {
                                    endpoint: redact_url(endpoint),
                                    reason: format!("cannot start the span export thread: {err}"),
                                })?;
                            let encoded = (pipeline == SpanPipeline::Encoded).then(|| {
                                Arc::new(SpanDestination {
                                    queue: processor.queue(),
                                    scope: scope.clone(),
                                    limits: config.span_limits,
                                })
                            });
                            (builder.with_span_processor(processor), encoded)
                        }
                        Exporter::Grpc(grpc) => (
                            builder.with_span_processor(sdk_batch(grpc, &config.batch)),
                            None,
                        ),
                    };
                let provider = builder
                    .with_sampler(config.sampler.to_sdk())
                    .with_id_generator(LayerIds::default())
                    .with_span_limits(config.span_limits)
                    .with_resource(config.resource())
                    .build();
                (
                    Some(provider),
                    Some(sample_first(config.sampler.to_sdk(), encoded)),
                )
            }
        };
        config.warnings.extend(warnings);
        let tracer = provider
            .as_ref()
            .map(|provider| provider.tracer_with_scope(scope));
        Ok(Telemetry {
            config,
            provider,
            tracer,
            sample_first,
        })
    }

    /// A layer builder with the service name and, unless tracing is disabled, the tracer set.
    pub fn layer(&self) -> WxTelemetryBuilder {
        let builder = WxTelemetryLayer::builder().service_name(&self.config.service_name);
        match (&self.tracer, &self.sample_first) {
            (Some(tracer), Some(sampling)) => {
                builder.sampled_tracer(tracer.clone(), sampling.clone())
            }
            (Some(tracer), None) => builder.tracer(tracer.clone()),
            (None, _) => builder,
        }
    }

    /// Whether spans leave the process.
    pub fn exports_traces(&self) -> bool {
        matches!(self.config.export, TraceExport::Otlp { .. })
    }

    /// The configuration in use.
    pub fn config(&self) -> &TelemetryConfig {
        &self.config
    }

    /// The subscriber [`init`] installs: the `RUST_LOG` filter, JSON lines to `writer`, and the
    /// `tracing` → OpenTelemetry bridge so `#[instrument]` spans in handlers become child spans.
    pub fn subscriber<W>(
        &self,
        writer: W,
    ) -> Result<impl Subscriber + Send + Sync + 'static, InitError>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let filter =
            EnvFilter::try_new(&self.config.log_filter).map_err(|err| InitError::LogFilter {
                filter: self.config.log_filter.clone(),
                reason: err.to_string(),
            })?;
        let bridge = self.tracer.clone().map(|tracer| {
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter_fn(|metadata| {
                    metadata.target() != REQUEST_SPAN_TARGET
                }))
        });
        Ok(Registry::default()
            .with(filter)
            .with(JsonLogLayer::new(writer))
            .with(bridge))
    }

    /// Exports the spans still queued. [`Drop`] does this too.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(err) = provider.force_flush()
        {
            tracing::warn!(error = %err, "could not flush spans");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown_with_timeout(EXPORT_TIMEOUT)
        {
            eprintln!("wxcloudrun-telemetry: spans may be lost at shutdown: {err}");
        }
    }
}

/// Sets up telemetry from the standard `OTEL_*` variables and installs it process-wide: the
/// global `tracing` subscriber (JSON lines on stdout with `trace_id` and `span_id`, filtered by
/// `RUST_LOG`, default `info`), the global tracer provider, and the W3C propagator.
///
/// Build the layer from the returned value's [`Telemetry::layer`], and keep the value alive for
/// the life of the process: dropping it flushes the last spans.
///
/// Without `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`), traces are not exported —
/// logs and metrics still work, and a log line says so once.
///
/// The variables read, the `…_TRACES_…` form winning over the generic one:
/// `OTEL_EXPORTER_OTLP_[TRACES_]{ENDPOINT, PROTOCOL, HEADERS, TIMEOUT, COMPRESSION, CERTIFICATE,
/// CLIENT_CERTIFICATE, CLIENT_KEY, INSECURE}`, `OTEL_TRACES_EXPORTER`, `OTEL_SDK_DISABLED`,
/// `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_{MAX_QUEUE_SIZE, SCHEDULE_DELAY, MAX_EXPORT_BATCH_SIZE,
/// EXPORT_TIMEOUT}`, `OTEL_{SPAN_ATTRIBUTE, SPAN_EVENT, SPAN_LINK, EVENT_ATTRIBUTE,
/// LINK_ATTRIBUTE}_COUNT_LIMIT`, `OTEL_RESOURCE_ATTRIBUTES`, `WXCLOUDRUN_SERVICE` /
/// `OTEL_SERVICE_NAME`, `HOSTNAME`, `CBR_ENV_ID` and `RUST_LOG`. An `https://` collector is
/// verified against the bundled webpki roots plus the system store when the image has one (a
/// missing store is not an error), or only the `CERTIFICATE` file when set. A value that cannot
/// be honoured fails with [`InitError`]; one replaced by a default is a logged warning.
///
/// OTLP/gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`) needs a Tokio runtime: call `init` inside it.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let telemetry = wxcloudrun_telemetry::init()?;
/// let layer = telemetry.layer().build()?;
/// # let _ = layer;
/// # Ok(()) }
/// ```
pub fn init() -> Result<Telemetry, InitError> {
    init_with(TelemetryConfig::from_env())
}

/// [`init`] with a configuration built or adjusted in code (start from
/// [`TelemetryConfig::from_env`]).
pub fn init_with(config: TelemetryConfig) -> Result<Telemetry, InitError> {
    let telemetry = Telemetry::new(config)?;
    tracing::subscriber::set_global_default(telemetry.subscriber(std::io::stdout)?)?;
    if let Some(provider) = &telemetry.provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    for warning in &telemetry.config.warnings {
        tracing::warn!("{warning}");
    }
    match &telemetry.config.export {
        TraceExport::Otlp { endpoint, protocol } => {
            let config = &telemetry.config;
            let headers: Vec<&str> = config
                .otlp_headers
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            tracing::info!(
                endpoint = %redact_url(endpoint),
                protocol = protocol.as_str(),
                compression = ?config.otlp_compression,
                timeout_ms = config.export_timeout().as_millis() as u64,
                headers = %headers.join(","),
                "exporting traces over OTLP"
            );
            if endpoint.starts_with("https://") && config.otlp_tls.ca_file.is_none() {
                tracing::debug!(
                    roots = %wxcloudrun_connect::tls::roots_summary(),
                    "verifying the collector with the default trust store"
                );
            }
        }
        TraceExport::NotExported => tracing::info!(
            "traces are not exported: set OTEL_EXPORTER_OTLP_ENDPOINT to send them to a collector"
        ),
        TraceExport::Disabled => tracing::info!("tracing is disabled (OTEL_SDK_DISABLED)"),
    }
    Ok(telemetry)
}
