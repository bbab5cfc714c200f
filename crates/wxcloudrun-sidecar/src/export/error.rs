//! The one error of starting the exporters.

/// A failure to start the exporters (bad URL, header, certificate).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ExportError {
    /// The configuration key at fault (`remote_write.url`, `otlp.tls_config`, …).
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

impl ExportError {
    pub(crate) fn new(key: &'static str, reason: impl Into<String>) -> Self {
        ExportError {
            key,
            reason: reason.into(),
        }
    }
}
