//! Why telemetry could not be set up.

use wxcloudrun_connect::TlsError;

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
    /// A TLS setting of the exporter is unusable: a CA, certificate or key file that cannot be
    /// read or holds nothing usable (the message names the file), a key without a certificate.
    /// A missing system CA store is never this error.
    #[error("TLS of the OTLP trace exporter ({hint}): {0}", hint = tls_hint(.0))]
    Tls(#[from] TlsError),
    /// A configured header name or value is not valid HTTP (the value is not shown).
    #[error("OTLP header {name:?}: invalid name or value")]
    Header {
        /// The header's name.
        name: String,
    },
    /// Values of the environment that cannot be honoured
    /// ([`TelemetryConfig::errors`](super::TelemetryConfig::errors)).
    #[error("cannot honour the telemetry settings: {}", .problems.join("; "))]
    Environment {
        /// Each problem, naming its variable.
        problems: Vec<String>,
    },
}

/// Where a TLS field comes from when read from the environment.
fn tls_hint(err: &TlsError) -> &'static str {
    match err.field() {
        Some("ca_file") => "OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE",
        Some("cert_file") => "OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE",
        Some("key_file") => "OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_KEY",
        _ => "otlp_tls",
    }
}
