//! One call that sets up what most services need, from the standard `OTEL_*` variables: the OTLP
//! trace pipeline, JSON logs on stdout with trace ids, and a layer builder wired to both.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer as _, Registry};

use crate::{JsonLogLayer, WxTelemetryBuilder, WxTelemetryLayer};

/// The `tracing` target of the layer's own `request` span. It is kept out of the
/// tracing → OpenTelemetry bridge: the layer records the server span itself.
pub(crate) const REQUEST_SPAN_TARGET: &str = "wxcloudrun_telemetry::request";

/// The OTLP transport, from `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `grpc`: `TraceService/Export`, usually on port 4317.
    Grpc,
    /// `http/protobuf`: `POST /v1/traces`, usually on port 4318. The spec's default.
    #[default]
    HttpProtobuf,
}

/// Where spans go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceExport {
    /// No spans at all (`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`).
    Disabled,
    /// Spans get trace ids (in logs and the response header) but are not exported: no endpoint.
    NotExported,
    /// Spans are exported over OTLP to `endpoint` (for HTTP the full `…/v1/traces` URL).
    Otlp {
        /// The collector's URL.
        endpoint: String,
        /// The transport.
        protocol: OtlpProtocol,
    },
}

/// Which requests are sampled, from `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TraceSampler {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`, with the ratio.
    TraceIdRatio(f64),
    /// `parentbased_always_on`: the spec's default.
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`, with the ratio for root requests.
    ParentBasedTraceIdRatio(f64),
}

impl TraceSampler {
    /// Reads a sampler name and its argument as the OpenTelemetry spec defines them. Unknown
    /// names and bad ratios fall back to the defaults, with a warning.
    pub fn parse(name: Option<&str>, arg: Option<&str>, warnings: &mut Vec<String>) -> Self {
        let mut ratio = || match arg.map(str::trim) {
            None | Some("") => 1.0,
            Some(text) => match text.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    warnings.push(format!(
                        "OTEL_TRACES_SAMPLER_ARG={text:?} is not a ratio in [0, 1]; using 1.0"
                    ));
                    1.0
                }
            },
        };
        match name.map(|n| n.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("parentbased_always_on") => TraceSampler::ParentBasedAlwaysOn,
            Some("always_on") => TraceSampler::AlwaysOn,
            Some("always_off") => TraceSampler::AlwaysOff,
            Some("traceidratio") => TraceSampler::TraceIdRatio(ratio()),
            Some("parentbased_always_off") => TraceSampler::ParentBasedAlwaysOff,
            Some("parentbased_traceidratio") => TraceSampler::ParentBasedTraceIdRatio(ratio()),
            Some(other) => {
                warnings.push(format!(
                    "OTEL_TRACES_SAMPLER={other:?} is not supported; using parentbased_always_on"
                ));
                TraceSampler::ParentBasedAlwaysOn
            }
        }
    }

    fn to_sdk(self) -> Sampler {
        let parent_based = |root| Sampler::ParentBased(Box::new(root));
        match self {
            TraceSampler::AlwaysOn => Sampler::AlwaysOn,
            TraceSampler::AlwaysOff => Sampler::AlwaysOff,
            TraceSampler::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            TraceSampler::ParentBasedAlwaysOn => parent_based(Sampler::AlwaysOn),
            TraceSampler::ParentBasedAlwaysOff => parent_based(Sampler::AlwaysOff),
            TraceSampler::ParentBasedTraceIdRatio(r) => parent_based(Sampler::TraceIdRatioBased(r)),
        }
    }
}

/// Everything [`init`] reads from the environment; build one by hand to configure in code.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// `service.name` and `wx_service`: `WXCLOUDRUN_SERVICE`, else `OTEL_SERVICE_NAME`, else
    /// `unknown_service` (the layer's own precedence).
    pub service_name: String,
    /// `service.version`, when known (`OTEL_RESOURCE_ATTRIBUTES` may also set it).
    pub service_version: Option<String>,
    /// `service.instance.id`: `HOSTNAME` (the pod name on the platform).
    pub instance_id: Option<String>,
    /// `CBR_ENV_ID`: the WeChat Cloud Run environment; its presence means "on the platform".
    pub env_id: Option<String>,
    /// Where spans go.
    pub export: TraceExport,
    /// Which requests are sampled.
    pub sampler: TraceSampler,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource_attributes: Vec<(String, String)>,
    /// The log filter in `RUST_LOG` syntax. Defaults to `info`.
    pub log_filter: String,
    /// Problems found while reading the environment; [`init`] logs them once.
    pub warnings: Vec<String>,
}

impl TelemetryConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads the configuration through `lookup` (a stand-in for the environment, for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut warnings = Vec::new();
        let disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        let protocol = match get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some("grpc") => OtlpProtocol::Grpc,
            Some(other) => {
                warnings.push(format!(
                    "OTLP protocol {other:?} is not supported (grpc, http/protobuf); using http/protobuf"
                ));
                OtlpProtocol::HttpProtobuf
            }
        };
        let endpoint = match (
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            // The signal-specific URL is used as is.
            (Some(url), _) => Some(url),
            (None, Some(base)) if protocol == OtlpProtocol::HttpProtobuf => {
                Some(format!("{}/v1/traces", base.trim_end_matches('/')))
            }
            (None, base) => base,
        };
        let export = match (disabled, endpoint) {
            (true, _) => TraceExport::Disabled,
            (false, None) => TraceExport::NotExported,
            (false, Some(endpoint)) => TraceExport::Otlp { endpoint, protocol },
        };
        let sampler = TraceSampler::parse(
            get("OTEL_TRACES_SAMPLER").as_deref(),
            get("OTEL_TRACES_SAMPLER_ARG").as_deref(),
            &mut warnings,
        );
        let resource_attributes = get("OTEL_RESOURCE_ATTRIBUTES")
            .map(|text| parse_resource_attributes(&text, &mut warnings))
            .unwrap_or_default();
        TelemetryConfig {
            service_name: get("WXCLOUDRUN_SERVICE")
                .or_else(|| get("OTEL_SERVICE_NAME"))
                .unwrap_or_else(|| "unknown_service".to_owned()),
            service_version: None,
            instance_id: get("HOSTNAME"),
            env_id: get("CBR_ENV_ID"),
            export,
            sampler,
            resource_attributes,
            log_filter: get("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
            warnings,
        }
    }

    /// Sets `service.version` (e.g. `env!("CARGO_PKG_VERSION")`).
    pub fn with_service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    fn resource(&self) -> Resource {
        let mut attributes = Vec::new();
        for (key, value) in &self.resource_attributes {
            attributes.push(KeyValue::new(key.clone(), value.clone()));
        }
        if let Some(version) = &self.service_version {
            attributes.push(KeyValue::new("service.version", version.clone()));
        }
        if let Some(instance) = &self.instance_id {
            attributes.push(KeyValue::new("service.instance.id", instance.clone()));
        }
        if let Some(env) = &self.env_id {
            // WeChat Cloud Run runs on Tencent Cloud's elastic Kubernetes service.
            attributes.push(KeyValue::new("cloud.provider", "tencent_cloud"));
            attributes.push(KeyValue::new("cloud.platform", "tencent_cloud_eks"));
            attributes.push(KeyValue::new("wx.platform", "wxcloudrun"));
            attributes.push(KeyValue::new("wx.env", env.clone()));
        }
        Resource::builder_empty()
            .with_attributes(attributes)
            .with_service_name(self.service_name.clone())
            .build()
    }
}

/// `key1=value1,key2=value2`, values percent-decoded (the W3C Baggage octet rules).
fn parse_resource_attributes(text: &str, warnings: &mut Vec<String>) -> Vec<(String, String)> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .filter_map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Some((key.trim().to_owned(), percent_decode(value.trim())))
            }
            _ => {
                warnings.push(format!(
                    "OTEL_RESOURCE_ATTRIBUTES entry {pair:?} is not key=value; ignored"
                ));
                None
            }
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A failure to set up telemetry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The OTLP exporter could not be built (bad endpoint, …).
    #[error("cannot build the OTLP trace exporter for {endpoint}: {reason}")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// `RUST_LOG` does not parse.
    #[error("invalid log filter {filter:?}: {reason}")]
    LogFilter {
        /// The filter.
        filter: String,
        /// Why.
        reason: String,
    },
    /// Another global `tracing` subscriber is already installed.
    #[error("a global tracing subscriber is already installed: {0}")]
    Subscriber(#[from] tracing::subscriber::SetGlobalDefaultError),
}

/// The telemetry of one process: the trace pipeline and what is needed to build the layer and
/// the log subscriber. Dropping it flushes the spans of the last requests.
#[derive(Debug)]
pub struct Telemetry {
    config: TelemetryConfig,
    provider: Option<SdkTracerProvider>,
    tracer: Option<SdkTracer>,
}

/// Export attempts inside shutdown must end: the platform kills the process soon after SIGTERM.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

impl Telemetry {
    /// Builds the trace pipeline described by `config`, installing nothing globally.
    pub fn new(config: TelemetryConfig) -> Result<Self, InitError> {
        let provider = match &config.export {
            TraceExport::Disabled => None,
            // Ids without export: spans never record, but the trace id still reaches the logs
            // and the response header, and propagates downstream.
            TraceExport::NotExported => Some(
                SdkTracerProvider::builder()
                    .with_sampler(Sampler::AlwaysOff)
                    .with_resource(config.resource())
                    .build(),
            ),
            TraceExport::Otlp { endpoint, protocol } => {
                let exporter =
                    build_exporter(endpoint, *protocol).map_err(|reason| InitError::Exporter {
                        endpoint: endpoint.clone(),
                        reason,
                    })?;
                Some(
                    SdkTracerProvider::builder()
                        .with_batch_exporter(exporter)
                        .with_sampler(config.sampler.to_sdk())
                        .with_resource(config.resource())
                        .build(),
                )
            }
        };
        let tracer = provider.as_ref().map(|provider| {
            provider.tracer_with_scope(
                InstrumentationScope::builder("wxcloudrun-telemetry")
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build(),
            )
        });
        Ok(Telemetry {
            config,
            provider,
            tracer,
        })
    }

    /// A layer builder with the service name and, unless tracing is disabled, the tracer set.
    pub fn layer(&self) -> WxTelemetryBuilder {
        let builder = WxTelemetryLayer::builder().service_name(&self.config.service_name);
        match &self.tracer {
            Some(tracer) => builder.tracer(tracer.clone()),
            None => builder,
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

fn build_exporter(
    endpoint: &str,
    protocol: OtlpProtocol,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match protocol {
        OtlpProtocol::HttpProtobuf => builder
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
        OtlpProtocol::Grpc => {
            let mut builder = builder
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(EXPORT_TIMEOUT);
            if endpoint.starts_with("https://") {
                builder = builder.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_webpki_roots(),
                );
            }
            builder.build()
        }
    };
    exporter.map_err(|err| err.to_string())
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
            tracing::info!(endpoint = %endpoint, protocol = ?protocol, "exporting traces over OTLP");
        }
        TraceExport::NotExported => tracing::info!(
            "traces are not exported: set OTEL_EXPORTER_OTLP_ENDPOINT to send them to a collector"
        ),
        TraceExport::Disabled => tracing::info!("tracing is disabled (OTEL_SDK_DISABLED)"),
    }
    Ok(telemetry)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> TelemetryConfig {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetryConfig::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn defaults_without_any_variable() {
        let c = config(&[]);
        assert_eq!(c.export, TraceExport::NotExported);
        assert_eq!(c.sampler, TraceSampler::ParentBasedAlwaysOn);
        assert_eq!(c.service_name, "unknown_service");
        assert_eq!(c.log_filter, "info");
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn endpoints_follow_the_spec() {
        let http = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(
            http.export,
            TraceExport::Otlp {
                endpoint: "http://collector:4318/v1/traces".into(),
                protocol: OtlpProtocol::HttpProtobuf
            }
        );
        let grpc = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(
            grpc.export,
            TraceExport::Otlp {
                endpoint: "http://collector:4317".into(),
                protocol: OtlpProtocol::Grpc
            }
        );
        let specific = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
        ]);
        assert_eq!(
            specific.export,
            TraceExport::Otlp {
                endpoint: "http://traces:9999/custom".into(),
                protocol: OtlpProtocol::HttpProtobuf
            }
        );
        let off = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ]);
        assert_eq!(off.export, TraceExport::Disabled);
    }

    #[test]
    fn samplers_follow_the_spec() {
        let parse = |name, arg| TraceSampler::parse(name, arg, &mut Vec::new());
        assert_eq!(parse(Some("always_off"), None), TraceSampler::AlwaysOff);
        assert_eq!(
            parse(Some("parentbased_traceidratio"), Some("0")),
            TraceSampler::ParentBasedTraceIdRatio(0.0)
        );
        assert_eq!(
            parse(Some("traceidratio"), Some("0.25")),
            TraceSampler::TraceIdRatio(0.25)
        );
        let mut warnings = Vec::new();
        assert_eq!(
            TraceSampler::parse(Some("traceidratio"), Some("2"), &mut warnings),
            TraceSampler::TraceIdRatio(1.0)
        );
        assert_eq!(
            TraceSampler::parse(Some("xray"), None, &mut warnings),
            TraceSampler::ParentBasedAlwaysOn
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    #[test]
    fn resource_attributes_are_parsed_and_decoded() {
        let c = config(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.version=1.2.3,deployment.environment=prod%2Dcn, broken",
        )]);
        assert_eq!(
            c.resource_attributes,
            [
                ("service.version".to_owned(), "1.2.3".to_owned()),
                ("deployment.environment".to_owned(), "prod-cn".to_owned())
            ]
        );
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn service_name_and_platform() {
        let c = config(&[
            ("WXCLOUDRUN_SERVICE", "orders"),
            ("CBR_ENV_ID", "prod-1abc"),
            ("HOSTNAME", "orders-001-abcde"),
        ]);
        assert_eq!(c.service_name, "orders");
        let resource = c.resource();
        let get = |key: &'static str| {
            resource
                .get(&opentelemetry::Key::from_static_str(key))
                .map(|v| v.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("orders"));
        assert_eq!(get("wx.env").as_deref(), Some("prod-1abc"));
        assert_eq!(get("cloud.provider").as_deref(), Some("tencent_cloud"));
        assert_eq!(
            get("service.instance.id").as_deref(),
            Some("orders-001-abcde")
        );
        let both = config(&[
            ("WXCLOUDRUN_SERVICE", "orders"),
            ("OTEL_SERVICE_NAME", "otel"),
        ]);
        assert_eq!(both.service_name, "orders");
    }
}
