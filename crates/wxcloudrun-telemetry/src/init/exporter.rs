//! The OTLP span exporter, with wxcloudrun-connect's TLS for both transports.
//!
//! OTLP/HTTP protobuf is our own exporter (`http_exporter`), fed by the encoding span processor
//! (`encoding_processor`: the protobuf written as each span ends). OTLP/gRPC is opentelemetry-otlp's, which reads some `OTEL_EXPORTER_OTLP_*`
//! variables itself while building, from the process environment; everything it would read is
//! set explicitly here so the configuration wins (it may have been built in code, or from a
//! lookup that is not the process environment):
//!
//! - endpoint and timeout: the endpoint is in our channel; `with_timeout` takes precedence.
//! - TLS and `_INSECURE`: unused, the channel is ours.
//! - headers: the exporter merges the variables' headers over its own, so the interceptor
//!   replaces whatever headers the exporter put on a call with the configured ones, keeping only
//!   its user agent.
//! - compression: `with_compression(Gzip)` wins; for `none` there is no way to say so, and the
//!   exporter would apply a `gzip` from the process environment: that case is a warning.

use http::header::USER_AGENT;
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry_otlp::{ExporterBuildError, WithExportConfig, WithTonicConfig};
use wxcloudrun_connect::TlsConfig;
use wxcloudrun_connect::grpc::ConnectError;
use wxcloudrun_connect::otlp_env::Compression;
use wxcloudrun_connect::secret::{is_sensitive_header, redact_url};

use super::config::{OtlpProtocol, TelemetryConfig};
use super::error::InitError;
use super::http_exporter::HttpSpanExporter;

/// The gRPC user agent (tonic appends its own).
const GRPC_USER_AGENT: &str = concat!("wxcloudrun-telemetry/", env!("CARGO_PKG_VERSION"));

/// The exporter of one protocol: ours for HTTP, which the encoding span processor drives;
/// opentelemetry-otlp's for gRPC, behind the SDK's batch processor.
#[derive(Debug)]
pub(super) enum Exporter {
    Http(HttpSpanExporter),
    Grpc(opentelemetry_otlp::SpanExporter),
}

/// Builds the exporter for `endpoint`; `warnings` gets what the caller should log.
pub(super) fn build(
    config: &TelemetryConfig,
    endpoint: &str,
    protocol: OtlpProtocol,
    warnings: &mut Vec<String>,
) -> Result<Exporter, InitError> {
    let exporter_error = |reason: String| InitError::Exporter {
        endpoint: redact_url(endpoint),
        reason,
    };
    let headers = header_map(config)?;
    if endpoint.starts_with("https://") && config.otlp_tls.insecure_skip_verify {
        warnings.push(format!(
            "TLS certificate verification is OFF for the OTLP trace exporter to {} \
             (insecure_skip_verify): anyone on the path can read and forge the spans",
            redact_url(endpoint)
        ));
    }
    if protocol == OtlpProtocol::Grpc
        && config.otlp_compression == Compression::None
        && let Some(variable) = process_env_gzip()
    {
        warnings.push(format!(
            "{variable}=gzip in the process environment makes opentelemetry-otlp compress the \
             spans although this configuration says none"
        ));
    }
    match protocol {
        OtlpProtocol::HttpProtobuf => Ok(Exporter::Http(http_exporter(
            config,
            endpoint,
            headers,
            exporter_error,
        )?)),
        OtlpProtocol::Grpc => grpc_exporter(config, endpoint, headers, exporter_error)?
            .map(Exporter::Grpc)
            .map_err(|err| exporter_error(err.to_string())),
    }
}

/// OTLP/HTTP protobuf through our blocking reqwest client (on the span processor's thread).
fn http_exporter(
    config: &TelemetryConfig,
    endpoint: &str,
    headers: HeaderMap,
    exporter_error: impl Fn(String) -> InitError,
) -> Result<HttpSpanExporter, InitError> {
    let timeout = config.export_timeout();
    // reqwest needs a TLS config even for http:// (it could be redirected).
    let default_tls = TlsConfig::default();
    let tls = if endpoint.starts_with("https://") {
        &config.otlp_tls
    } else {
        &default_tls
    };
    let tls = wxcloudrun_connect::http::reqwest_tls(tls)?;
    let client = blocking_client(tls, timeout).map_err(exporter_error)?;
    let gzip = config.otlp_compression == Compression::Gzip;
    Ok(HttpSpanExporter::new(
        client, endpoint, headers, gzip, timeout,
    ))
}

/// OTLP/gRPC over wxcloudrun-connect's channel; the interceptor puts the configured headers on
/// every call in place of the exporter's own.
fn grpc_exporter(
    config: &TelemetryConfig,
    endpoint: &str,
    headers: HeaderMap,
    exporter_error: impl Fn(String) -> InitError,
) -> Result<Result<opentelemetry_otlp::SpanExporter, ExporterBuildError>, InitError> {
    let timeout = config.export_timeout();
    let channel =
        wxcloudrun_connect::grpc::channel(endpoint, &config.otlp_tls, timeout, GRPC_USER_AGENT)
            .map_err(|err| match err {
                ConnectError::Tls(err) => InitError::Tls(err),
                other => exporter_error(other.to_string()),
            })?;
    let builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_channel(channel)
        .with_timeout(timeout)
        .with_interceptor(move |mut request: tonic::Request<()>| {
            let user_agent = request.metadata().get(USER_AGENT.as_str()).cloned();
            *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers.clone());
            if let Some(agent) = user_agent
                && !headers.contains_key(USER_AGENT)
            {
                request.metadata_mut().insert(USER_AGENT.as_str(), agent);
            }
            Ok(request)
        });
    Ok(match gzip(config) {
        Some(gzip) => builder.with_compression(gzip),
        None => builder,
    }
    .build())
}

/// The exporter's compression; `None`: leave the builder's default (none).
fn gzip(config: &TelemetryConfig) -> Option<opentelemetry_otlp::Compression> {
    (config.otlp_compression == Compression::Gzip).then_some(opentelemetry_otlp::Compression::Gzip)
}

/// The configured headers, sensitive values marked so (hyper then keeps them out of HPACK's
/// dynamic table).
fn header_map(config: &TelemetryConfig) -> Result<HeaderMap, InitError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.otlp_headers {
        let invalid = || InitError::Header { name: name.clone() };
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| invalid())?;
        value.set_sensitive(is_sensitive_header(name));
        headers.insert(header, value);
    }
    Ok(headers)
}

/// The variable opentelemetry-otlp would take `gzip` from, as it reads them: the signal-specific
/// one first, the first one set decides.
fn process_env_gzip() -> Option<&'static str> {
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ] {
        if let Ok(value) = std::env::var(variable)
            && !value.trim().is_empty()
        {
            return value
                .trim()
                .eq_ignore_ascii_case("gzip")
                .then_some(variable);
        }
    }
    None
}

/// A blocking reqwest client (what the span processor's thread can drive) with our TLS.
/// Built on a thread of its own: reqwest's blocking client starts a runtime, which must not
/// happen on a thread already inside one (`init()` is usually called from `#[tokio::main]`).
fn blocking_client(
    tls: rustls::ClientConfig,
    timeout: std::time::Duration,
) -> Result<reqwest::blocking::Client, String> {
    std::thread::Builder::new()
        .name("otlp-http-client".to_owned())
        .spawn(move || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .tls_backend_preconfigured(tls)
                .build()
        })
        .map_err(|err| format!("cannot start a thread for the HTTP client: {err}"))?
        .join()
        .map_err(|_| "building the HTTP client panicked".to_owned())?
        .map_err(|err| format!("cannot build the HTTP client: {err}"))
}
