//! [`TelemetryConfig`]: everything [`init`](super::init) reads from the environment.

use std::fmt;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfig, BatchConfigBuilder, Sampler, SpanLimits};
use wxcloudrun_connect::otlp_env::{self, Compression, OtlpEnv, Signal};
use wxcloudrun_connect::secret::{REDACTED, is_sensitive_header, redact_url};
use wxcloudrun_connect::{Secret, TlsConfig};

use crate::env;

/// The OTLP transport, from `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`: `Grpc` (`TraceService/Export`,
/// usually on port 4317) or `HttpProtobuf` (`POST /v1/traces`, usually on port 4318, the spec's
/// default). The same type the sidecar reads its variables into.
pub use wxcloudrun_connect::otlp_env::Protocol as OtlpProtocol;

/// Export attempts must end: the platform kills the process soon after SIGTERM. The default of
/// `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`, and the budget of the final flush.
pub(crate) const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where spans go.
#[derive(Clone, PartialEq, Eq)]
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

/// The endpoint without its userinfo.
impl fmt::Debug for TraceExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceExport::Disabled => f.write_str("Disabled"),
            TraceExport::NotExported => f.write_str("NotExported"),
            TraceExport::Otlp { endpoint, protocol } => f
                .debug_struct("Otlp")
                .field("endpoint", &redact_url(endpoint))
                .field("protocol", protocol)
                .finish(),
        }
    }
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

    pub(crate) fn to_sdk(self) -> Sampler {
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

/// The `OTEL_*_COUNT_LIMIT` variables; a value that is not a whole number keeps its default,
/// with a warning.
fn read_span_limits(
    get: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> SpanLimits {
    let mut limits = SpanLimits::default();
    let fields = [
        (
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
            &mut limits.max_attributes_per_span,
        ),
        (
            "OTEL_SPAN_EVENT_COUNT_LIMIT",
            &mut limits.max_events_per_span,
        ),
        ("OTEL_SPAN_LINK_COUNT_LIMIT", &mut limits.max_links_per_span),
        (
            "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
            &mut limits.max_attributes_per_event,
        ),
        (
            "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
            &mut limits.max_attributes_per_link,
        ),
    ];
    for (name, limit) in fields {
        match get(name).map(|v| v.parse::<u32>()) {
            None => {}
            Some(Ok(value)) => *limit = value,
            Some(Err(_)) => warnings.push(format!("{name} must be a whole number; using {limit}")),
        }
    }
    limits
}

/// How finished spans wait for export: the `OTEL_BSP_*` variables, with the SDK batch
/// processor's defaults and meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanBatching {
    /// Spans held while waiting for export; a span that ends while the queue is full is
    /// dropped (and counted in a warning). `OTEL_BSP_MAX_QUEUE_SIZE`. Defaults to 2048.
    pub max_queue_size: usize,
    /// The longest a span waits before its batch is sent, when the batch does not fill first.
    /// `OTEL_BSP_SCHEDULE_DELAY` (milliseconds). Defaults to 5 s.
    pub scheduled_delay: Duration,
    /// The most spans in one export request; at most `max_queue_size`.
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`. Defaults to 512.
    pub max_export_batch_size: usize,
    /// The longest one export may take, all retries included; the OTLP timeout
    /// ([`TelemetryConfig::otlp_timeout`]) bounds it too, and the shorter wins.
    /// `OTEL_BSP_EXPORT_TIMEOUT` (milliseconds). Defaults to 30 s.
    pub export_timeout: Duration,
}

impl Default for SpanBatching {
    fn default() -> Self {
        SpanBatching {
            max_queue_size: 2048,
            scheduled_delay: Duration::from_millis(5000),
            max_export_batch_size: 512,
            export_timeout: Duration::from_millis(30_000),
        }
    }
}

impl SpanBatching {
    /// The same settings for the SDK's batch processor (OTLP/gRPC). Its thread ignores an
    /// export timeout: the exporter's timeout ([`TelemetryConfig::export_timeout`]) carries it.
    pub(crate) fn to_sdk(self) -> BatchConfig {
        BatchConfigBuilder::default()
            .with_max_queue_size(self.max_queue_size)
            .with_scheduled_delay(self.scheduled_delay)
            .with_max_export_batch_size(self.max_export_batch_size)
            .build()
    }

    /// Reads the `OTEL_BSP_*` variables; a value that is not a number (or is 0) keeps its
    /// default, with a warning, where the SDK would ignore it silently.
    fn read(get: &impl Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> Self {
        let defaults = SpanBatching::default();
        let mut number = |name: &str, default: u64| -> u64 {
            match get(name).map(|v| v.parse::<u64>()) {
                None => default,
                Some(Ok(n)) if n > 0 => n,
                Some(_) => {
                    warnings.push(format!(
                        "{name} must be a positive whole number; using {default}"
                    ));
                    default
                }
            }
        };
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let max_queue_size = as_usize(number(
            "OTEL_BSP_MAX_QUEUE_SIZE",
            defaults.max_queue_size as u64,
        ));
        let scheduled_delay = Duration::from_millis(number(
            "OTEL_BSP_SCHEDULE_DELAY",
            millis(defaults.scheduled_delay),
        ));
        let mut max_export_batch_size = as_usize(number(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            defaults.max_export_batch_size as u64,
        ));
        let export_timeout = Duration::from_millis(number(
            "OTEL_BSP_EXPORT_TIMEOUT",
            millis(defaults.export_timeout),
        ));
        if max_export_batch_size > max_queue_size {
            if get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").is_some() {
                warnings.push(format!(
                    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE is larger than the queue; using \
                     OTEL_BSP_MAX_QUEUE_SIZE ({max_queue_size})"
                ));
            }
            max_export_batch_size = max_queue_size;
        }
        SpanBatching {
            max_queue_size,
            scheduled_delay,
            max_export_batch_size,
            export_timeout,
        }
    }
}

/// Everything [`init`](super::init) reads from the environment; build one by hand (or adjust
/// one from [`TelemetryConfig::from_env`]) to configure in code.
///
/// `Debug` shows sensitive header values (`Authorization`, anything with `token`, `key`, …) as
/// `<secret>` and endpoints without userinfo.
#[derive(Clone)]
pub struct TelemetryConfig {
    /// `service.name` and `wx_service`: `WXCLOUDRUN_SERVICE`, else `OTEL_SERVICE_NAME`, else
    /// `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else `unknown_service`.
    pub service_name: String,
    /// `service.version`, when known (`OTEL_RESOURCE_ATTRIBUTES` may also set it; this wins).
    pub service_version: Option<String>,
    /// `service.instance.id`: `HOSTNAME` (the pod name on the platform).
    pub instance_id: Option<String>,
    /// `host.name`: `HOSTNAME`, unless `OTEL_RESOURCE_ATTRIBUTES` sets `host.name`.
    pub host_name: Option<String>,
    /// `CBR_ENV_ID`: the WeChat Cloud Run environment; its presence means "on the platform".
    pub env_id: Option<String>,
    /// Where spans go.
    pub export: TraceExport,
    /// Headers sent with every export: `OTEL_EXPORTER_OTLP_HEADERS`, then
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` replacing same-named entries; values percent-decoded.
    /// These are the only headers sent (besides the exporter's content type and user agent).
    pub otlp_headers: Vec<(String, Secret)>,
    /// The export timeout: `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT` (milliseconds); `None` is 5 s.
    pub otlp_timeout: Option<Duration>,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION`: `gzip` or `none` (the default).
    pub otlp_compression: Compression,
    /// TLS for an `https://` endpoint: `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE` (the only CAs
    /// trusted when set), `…_CLIENT_CERTIFICATE` and `…_CLIENT_KEY` (mTLS). By default the
    /// bundled webpki roots plus the system store when the image has one.
    pub otlp_tls: TlsConfig,
    /// Which requests are sampled.
    pub sampler: TraceSampler,
    /// How finished spans are queued and batched (`OTEL_BSP_*`).
    pub batch: SpanBatching,
    /// The most attributes, events and links a span keeps (the rest are counted as dropped):
    /// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, `OTEL_SPAN_EVENT_COUNT_LIMIT`,
    /// `OTEL_SPAN_LINK_COUNT_LIMIT`, `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT`,
    /// `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT`. Each defaults to 128.
    pub span_limits: SpanLimits,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource_attributes: Vec<(String, String)>,
    /// The log filter in `RUST_LOG` syntax. Defaults to `info`.
    pub log_filter: String,
    /// Problems found while reading the environment that do not stop start-up (a value replaced
    /// by its default, a setting with no effect); [`init`](super::init) logs them once.
    pub warnings: Vec<String>,
    /// Values that cannot be honoured (an unsupported compression, a malformed header, an
    /// endpoint without a scheme): [`Telemetry::new`](super::Telemetry::new) fails with them
    /// rather than export differently from what was asked. Each names its variable.
    pub errors: Vec<String>,
}

/// Header values shown only when not sensitive.
struct Headers<'a>(&'a [(String, Secret)]);

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, value)| {
                let shown = if is_sensitive_header(name) {
                    REDACTED
                } else {
                    value.expose()
                };
                (name, shown)
            }))
            .finish()
    }
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("instance_id", &self.instance_id)
            .field("host_name", &self.host_name)
            .field("env_id", &self.env_id)
            .field("export", &self.export)
            .field("otlp_headers", &Headers(&self.otlp_headers))
            .field("otlp_timeout", &self.otlp_timeout)
            .field("otlp_compression", &self.otlp_compression)
            .field("otlp_tls", &self.otlp_tls)
            .field("sampler", &self.sampler)
            .field("batch", &self.batch)
            .field("span_limits", &self.span_limits)
            .field("resource_attributes", &self.resource_attributes)
            .field("log_filter", &self.log_filter)
            .field("warnings", &self.warnings)
            .field("errors", &self.errors)
            .finish()
    }
}

/// The trace exporter's part of [`TelemetryConfig`], read from the `OTEL_EXPORTER_OTLP_*` family.
struct ExporterSettings {
    export: TraceExport,
    headers: Vec<(String, Secret)>,
    timeout: Option<Duration>,
    compression: Compression,
    tls: TlsConfig,
}

impl ExporterSettings {
    /// Reads the exporter variables when spans may be exported (`sdk_enabled` and
    /// `OTEL_TRACES_EXPORTER` allow it); unusable values go to `errors`, values without effect to
    /// `warnings`.
    fn read(
        sdk_enabled: bool,
        lookup: &impl Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
        errors: &mut Vec<String>,
    ) -> Self {
        let enabled = sdk_enabled
            && otlp_env::exporter_enabled(Signal::Traces, lookup).unwrap_or_else(|err| {
                errors.push(err.to_string());
                true
            });
        // The exporter variables matter only when spans may be exported.
        let otlp = if enabled {
            OtlpEnv::read(Signal::Traces, lookup).unwrap_or_else(|err| {
                errors.push(err.to_string());
                OtlpEnv::default()
            })
        } else {
            OtlpEnv::default()
        };
        let protocol = otlp.protocol.unwrap_or_default();
        let endpoint = otlp
            .endpoint
            .as_deref()
            .and_then(|endpoint| resolve_endpoint(&otlp, endpoint, warnings, errors));
        if let Some(endpoint) = &endpoint
            && !endpoint.starts_with("https://")
        {
            for field in ["certificate", "client_certificate", "client_key"] {
                if let Some(variable) = otlp.origin(field) {
                    warnings.push(format!(
                        "{variable} has no effect: the endpoint {} is plaintext",
                        redact_url(endpoint)
                    ));
                }
            }
        }
        let timeout = match otlp.timeout {
            Some(Duration::ZERO) => {
                warnings.push(format!(
                    "{}=0 would fail every export; using {} ms",
                    otlp.origin("timeout")
                        .unwrap_or("OTEL_EXPORTER_OTLP_TIMEOUT"),
                    EXPORT_TIMEOUT.as_millis()
                ));
                None
            }
            other => other,
        };
        let export = match (enabled, endpoint) {
            (false, _) => TraceExport::Disabled,
            (true, None) => TraceExport::NotExported,
            (true, Some(endpoint)) => TraceExport::Otlp { endpoint, protocol },
        };
        ExporterSettings {
            export,
            tls: otlp.tls(),
            headers: otlp
                .headers
                .into_iter()
                .map(|(name, value)| (name, Secret::from(value)))
                .collect(),
            timeout,
            compression: otlp.compression.unwrap_or_default(),
        }
    }
}

/// Whether `endpoint` starts with a scheme (`://` before any path, query or fragment).
fn has_scheme(endpoint: &str) -> bool {
    endpoint
        .split_once("://")
        .is_some_and(|(scheme, _)| !scheme.is_empty() && !scheme.contains(['/', '?', '#']))
}

impl TelemetryConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads the configuration through `lookup` (a stand-in for the environment, for tests).
    ///
    /// The `OTEL_EXPORTER_OTLP_*` variables, `OTEL_RESOURCE_ATTRIBUTES`, the service name and
    /// `OTEL_TRACES_EXPORTER` are read by `wxcloudrun-connect`, as the sidecar reads them.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut warnings = Vec::new();
        let mut errors = Vec::new();
        let sdk_disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let exporter = ExporterSettings::read(!sdk_disabled, &lookup, &mut warnings, &mut errors);
        let sampler = TraceSampler::parse(
            get("OTEL_TRACES_SAMPLER").as_deref(),
            get("OTEL_TRACES_SAMPLER_ARG").as_deref(),
            &mut warnings,
        );
        let batch = SpanBatching::read(&get, &mut warnings);
        let span_limits = read_span_limits(&get, &mut warnings);
        let (resource_attributes, attribute_warnings) = otlp_env::resource_attributes(&lookup);
        warnings.extend(attribute_warnings);
        let service_name = env::service_name(&lookup)
            .or_else(|| {
                resource_attributes
                    .iter()
                    .find(|(key, _)| key == "service.name")
                    .map(|(_, value)| value.clone())
            })
            .unwrap_or_else(|| env::UNKNOWN_SERVICE.to_owned());
        TelemetryConfig {
            service_name,
            service_version: None,
            instance_id: get("HOSTNAME"),
            host_name: get("HOSTNAME"),
            env_id: get("CBR_ENV_ID"),
            export: exporter.export,
            otlp_headers: exporter.headers,
            otlp_timeout: exporter.timeout,
            otlp_compression: exporter.compression,
            otlp_tls: exporter.tls,
            sampler,
            batch,
            span_limits,
            resource_attributes,
            log_filter: get("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
            warnings,
            errors,
        }
    }

    /// Sets `service.version` (e.g. `env!("CARGO_PKG_VERSION")`).
    pub fn with_service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// The timeout of one export, all attempts included: the OTLP timeout, or
    /// `OTEL_BSP_EXPORT_TIMEOUT` when that is shorter.
    pub(crate) fn export_timeout(&self) -> Duration {
        self.otlp_timeout
            .unwrap_or(EXPORT_TIMEOUT)
            .min(self.batch.export_timeout)
    }

    /// Detected values first, then `OTEL_RESOURCE_ATTRIBUTES` over them, then what the code set
    /// (`service.version`, `service.name`) over everything.
    pub(crate) fn resource(&self) -> Resource {
        let mut attributes = Vec::new();
        if let Some(instance) = &self.instance_id {
            attributes.push(KeyValue::new("service.instance.id", instance.clone()));
        }
        if let Some(host) = &self.host_name {
            attributes.push(KeyValue::new("host.name", host.clone()));
        }
        if let Some(env) = &self.env_id {
            // WeChat Cloud Run runs on Tencent Cloud's elastic Kubernetes service.
            attributes.push(KeyValue::new("cloud.provider", "tencent_cloud"));
            attributes.push(KeyValue::new("cloud.platform", "tencent_cloud_eks"));
            attributes.push(KeyValue::new("wx.platform", "wxcloudrun"));
            attributes.push(KeyValue::new("wx.env", env.clone()));
        }
        for (key, value) in &self.resource_attributes {
            attributes.push(KeyValue::new(key.clone(), value.clone()));
        }
        if let Some(version) = &self.service_version {
            attributes.push(KeyValue::new("service.version", version.clone()));
        }
        Resource::builder_empty()
            .with_attributes(attributes)
            .with_service_name(self.service_name.clone())
            .build()
    }
}

/// The endpoint to export to, after `OTEL_EXPORTER_OTLP_INSECURE` (gRPC, scheme-less endpoints
/// only, as the spec says); `None` with an error when it cannot be used.
fn resolve_endpoint(
    otlp: &OtlpEnv,
    endpoint: &str,
    warnings: &mut Vec<String>,
    errors: &mut Vec<String>,
) -> Option<String> {
    let variable = otlp
        .origin("endpoint")
        .unwrap_or("OTEL_EXPORTER_OTLP_ENDPOINT");
    let insecure_variable = otlp.origin("insecure");
    let protocol = otlp.protocol.unwrap_or_default();
    let endpoint = if has_scheme(endpoint) {
        if let Some(insecure) = insecure_variable {
            warnings.push(format!(
                "{insecure} has no effect: the scheme of {variable} decides (http:// plaintext, https:// TLS)"
            ));
        }
        endpoint.to_owned()
    } else {
        match protocol {
            OtlpProtocol::Grpc if otlp.insecure == Some(true) => format!("http://{endpoint}"),
            OtlpProtocol::Grpc => format!("https://{endpoint}"),
            OtlpProtocol::HttpProtobuf => {
                errors.push(format!(
                    "{variable}={:?}: no scheme (http:// or https://)",
                    redact_url(endpoint)
                ));
                return None;
            }
        }
    };
    if protocol == OtlpProtocol::HttpProtobuf
        && let Some(insecure) = insecure_variable
    {
        warnings.push(format!(
            "{insecure} has no effect on http/protobuf (the scheme decides)"
        ));
    }
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        errors.push(format!(
            "{variable}={:?}: the scheme must be http:// or https://",
            redact_url(&endpoint)
        ));
        return None;
    }
    Some(endpoint)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    pub(crate) fn config(pairs: &[(&str, &str)]) -> TelemetryConfig {
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
        assert!(c.otlp_headers.is_empty());
        assert_eq!(c.otlp_timeout, None);
        assert_eq!(c.export_timeout(), EXPORT_TIMEOUT);
        assert_eq!(c.otlp_compression, Compression::None);
        assert!(c.otlp_tls.is_default());
        assert!(c.warnings.is_empty());
        assert!(c.errors.is_empty());
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
        let none = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
            // Not read when nothing is exported.
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
        ]);
        assert_eq!(none.export, TraceExport::Disabled);
        assert!(none.errors.is_empty(), "{:?}", none.errors);
    }

    #[test]
    fn insecure_applies_to_scheme_less_grpc_endpoints_only() {
        let grpc = |endpoint: &str, insecure: Option<&str>| {
            let mut pairs = vec![
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ];
            if let Some(insecure) = insecure {
                pairs.push(("OTEL_EXPORTER_OTLP_INSECURE", insecure));
            }
            config(&pairs)
        };
        let endpoint = |c: &TelemetryConfig| match &c.export {
            TraceExport::Otlp { endpoint, .. } => endpoint.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            endpoint(&grpc("collector:4317", None)),
            "https://collector:4317"
        );
        assert_eq!(
            endpoint(&grpc("collector:4317", Some("true"))),
            "http://collector:4317"
        );
        assert_eq!(
            endpoint(&grpc("collector:4317", Some("false"))),
            "https://collector:4317"
        );
        let schemed = grpc("https://collector:4317", Some("true"));
        assert_eq!(endpoint(&schemed), "https://collector:4317");
        assert_eq!(schemed.warnings.len(), 1, "{:?}", schemed.warnings);
        assert!(schemed.warnings[0].starts_with("OTEL_EXPORTER_OTLP_INSECURE has no effect"));

        let http = config(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "u:sekrit@collector:4318",
        )]);
        assert_eq!(http.export, TraceExport::NotExported);
        assert_eq!(
            http.errors,
            [
                r#"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="collector:4318": no scheme (http:// or https://)"#
            ]
        );
        let ftp = config(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector")]);
        assert!(
            ftp.errors[0].contains("the scheme must be http:// or https://"),
            "{:?}",
            ftp.errors
        );
    }

    #[test]
    fn exporter_settings_are_read_through_connect() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20generic,x-tenant=acme",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "authorization=Bearer%20traces",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1500"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/otel/ca.pem"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                "/etc/otel/client.pem",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
                "/etc/otel/client.key",
            ),
        ]);
        assert!(c.errors.is_empty() && c.warnings.is_empty(), "{c:?}");
        assert_eq!(
            c.otlp_headers,
            [
                ("x-tenant".to_owned(), Secret::from("acme")),
                ("authorization".to_owned(), Secret::from("Bearer traces")),
            ]
        );
        assert_eq!(c.otlp_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(c.export_timeout(), Duration::from_millis(1500));
        assert_eq!(c.otlp_compression, Compression::Gzip);
        assert_eq!(
            c.otlp_tls,
            TlsConfig {
                ca_file: Some("/etc/otel/ca.pem".into()),
                cert_file: Some("/etc/otel/client.pem".into()),
                key_file: Some("/etc/otel/client.key".into()),
                ..TlsConfig::default()
            }
        );
    }

    #[test]
    fn values_that_cannot_be_honoured_are_errors_or_warnings() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
        ]);
        assert_eq!(
            c.errors,
            [r#"OTEL_EXPORTER_OTLP_COMPRESSION="zstd": not supported (gzip, none)"#]
        );
        let c = config(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        assert_eq!(c.errors.len(), 1);
        let c = config(&[("OTEL_TRACES_EXPORTER", "zipkin")]);
        assert!(
            c.errors[0].starts_with("OTEL_TRACES_EXPORTER="),
            "{:?}",
            c.errors
        );
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
        ]);
        assert!(c.errors.is_empty());
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("OTEL_EXPORTER_OTLP_CERTIFICATE has no effect"));
        assert!(c.warnings[1].contains("OTEL_EXPORTER_OTLP_TIMEOUT=0"));
        assert_eq!(c.otlp_timeout, None);
    }

    #[test]
    fn batching_follows_the_bsp_variables() {
        let c = config(&[]);
        assert_eq!(c.batch, SpanBatching::default());
        assert_eq!(c.batch.max_queue_size, 2048);
        assert_eq!(c.batch.max_export_batch_size, 512);
        assert_eq!(c.batch.scheduled_delay, Duration::from_secs(5));
        assert_eq!(c.batch.export_timeout, Duration::from_secs(30));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        let c = config(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "2000"),
        ]);
        let expected = SpanBatching {
            max_queue_size: 100,
            scheduled_delay: Duration::from_millis(250),
            max_export_batch_size: 10,
            export_timeout: Duration::from_secs(2),
        };
        assert_eq!(c.batch, expected);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // Not numbers, zero, a batch larger than the queue: defaults and the queue, with warnings.
        let c = config(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
            ("OTEL_BSP_SCHEDULE_DELAY", "5s"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "0"),
        ]);
        assert_eq!(c.batch.max_queue_size, 64);
        assert_eq!(c.batch.max_export_batch_size, 64);
        assert_eq!(c.batch.scheduled_delay, Duration::from_secs(5));
        assert_eq!(c.batch.export_timeout, Duration::from_secs(30));
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with("OTEL_BSP_SCHEDULE_DELAY must be"));
        assert!(c.warnings[1].starts_with("OTEL_BSP_EXPORT_TIMEOUT must be"));
        assert!(c.warnings[2].contains("larger than the queue"));
    }

    #[test]
    fn span_limits_follow_the_count_limit_variables() {
        let c = config(&[]);
        assert_eq!(c.span_limits.max_attributes_per_span, 128);
        assert_eq!(c.span_limits.max_attributes_per_link, 128);
        let c = config(&[
            ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "4"),
            ("OTEL_SPAN_EVENT_COUNT_LIMIT", "0"),
            ("OTEL_SPAN_LINK_COUNT_LIMIT", "2"),
            ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "3"),
            ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "many"),
        ]);
        let limits = c.span_limits;
        assert_eq!(
            (
                limits.max_attributes_per_span,
                limits.max_events_per_span,
                limits.max_links_per_span,
                limits.max_attributes_per_event,
                limits.max_attributes_per_link,
            ),
            (4, 0, 2, 3, 128)
        );
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT must be"));
    }

    #[test]
    fn debug_hides_secrets() {
        let c = config(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://user:pa55@collector:4318",
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20sekrit,x-api-key=k2,x-tenant=acme",
            ),
        ]);
        let debug = format!("{c:?}");
        for secret in ["sekrit", "k2", "pa55", "user"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(
            debug.contains(r#"("Authorization", "<secret>")"#),
            "{debug}"
        );
        assert!(debug.contains(r#"("x-tenant", "acme")"#), "{debug}");
        assert!(
            debug.contains("https://collector:4318/v1/traces"),
            "{debug}"
        );
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

    fn resource_value(c: &TelemetryConfig, key: &'static str) -> Option<String> {
        c.resource()
            .get(&opentelemetry::Key::from_static_str(key))
            .map(|v| v.to_string())
    }

    #[test]
    fn service_name_and_platform() {
        let c = config(&[
            ("WXCLOUDRUN_SERVICE", "orders"),
            ("CBR_ENV_ID", "prod-1abc"),
            ("HOSTNAME", "orders-001-abcde"),
        ]);
        assert_eq!(c.service_name, "orders");
        let get = |key| resource_value(&c, key);
        assert_eq!(get("service.name").as_deref(), Some("orders"));
        assert_eq!(get("wx.env").as_deref(), Some("prod-1abc"));
        assert_eq!(get("cloud.provider").as_deref(), Some("tencent_cloud"));
        assert_eq!(
            get("service.instance.id").as_deref(),
            Some("orders-001-abcde")
        );
        assert_eq!(get("host.name").as_deref(), Some("orders-001-abcde"));
        let both = config(&[
            ("WXCLOUDRUN_SERVICE", "orders"),
            ("OTEL_SERVICE_NAME", "otel"),
        ]);
        assert_eq!(both.service_name, "orders");
    }

    #[test]
    fn resource_attributes_override_detected_values_but_not_the_code() {
        let c = config(&[
            ("HOSTNAME", "pod-1"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "host.name=node-7,service.name=from-attributes,service.version=0.0.1",
            ),
        ])
        .with_service_version("2.0.0");
        assert_eq!(c.service_name, "from-attributes");
        assert_eq!(resource_value(&c, "host.name").as_deref(), Some("node-7"));
        assert_eq!(
            resource_value(&c, "service.instance.id").as_deref(),
            Some("pod-1")
        );
        assert_eq!(
            resource_value(&c, "service.version").as_deref(),
            Some("2.0.0")
        );
        let named = config(&[
            ("OTEL_SERVICE_NAME", "otel"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes"),
        ]);
        assert_eq!(
            resource_value(&named, "service.name").as_deref(),
            Some("otel")
        );
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
}
