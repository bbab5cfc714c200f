//! Prometheus remote write 1.0: the backend's configuration (Prometheus's own `remote_write`
//! field names), its headers, its retry rule, the encoder and the relabelling.
//!
//! - [`encode`]: a [`Batch`](crate::model::Batch) as snappy block-format `WriteRequest`s, written
//!   straight from the batch.
//! - [`relabel`]: `write_relabel_configs` (`keep`, `drop`, `labeldrop`, `labelkeep`).
//! - Retries: 5xx and 429 (with `Retry-After`); every other 4xx is dropped and counted.

pub mod encode;
mod exemplar;
pub mod relabel;
mod spelling;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, StatusCode, header};
use tokio::time::Instant;
use wxcloudrun_connect::tls::TlsConfig;

pub use encode::{
    BoundSpelling, Encoded, MAX_SERIES_PER_REQUEST, encode, encode_spelled, format_float,
};
pub use relabel::{Relabel, RelabelRule};
pub use wire::{Exemplar, Label, Sample, TimeSeries, WriteRequest};

use super::auth::Auth;
use super::error::ExportError;
use super::http::{HttpTransport, RedactedHeaders, USER_AGENT, no_rejections};
use super::plan::{Encode, Planned};
use super::queue::{Body, Payload};
use super::transport::Transport;
use super::url::HttpUrl;
use crate::model::Batch;

/// How long one request may take. Defaults to 10 s (Prometheus: 30 s; the shutdown budget is 8 s).
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(10);

/// One remote-write backend (`[[remote_write]]`, or `--remote-write-url`).
#[derive(Clone)]
pub struct RemoteWriteConfig {
    /// The `exporter` label of the self-metrics. Defaults to `remote_write`, `remote_write_2`, …
    /// in the order of the backends.
    pub name: String,
    /// The endpoint, e.g. `http://127.0.0.1:9090/api/v1/write`; userinfo in it is sent as basic
    /// auth and never logged.
    pub url: HttpUrl,
    /// Timeout of one request. Defaults to [`DEFAULT_REMOTE_TIMEOUT`].
    pub remote_timeout: Duration,
    /// Extra headers (`X-Scope-OrgID`, …); they cannot replace the protocol's own.
    pub headers: Vec<(String, String)>,
    /// Credentials.
    pub auth: Auth,
    /// TLS settings.
    pub tls: TlsConfig,
    /// `write_relabel_configs`.
    pub relabel: Relabel,
    /// How `le` and `quantile` are spelled: the sidecar's `bound_spelling` setting, the same for
    /// every backend. Defaults to Prometheus 3's.
    pub bound_spelling: BoundSpelling,
}

impl RemoteWriteConfig {
    /// A backend with the defaults.
    pub fn new(name: impl Into<String>, url: HttpUrl) -> Self {
        RemoteWriteConfig {
            name: name.into(),
            url,
            remote_timeout: DEFAULT_REMOTE_TIMEOUT,
            headers: Vec::new(),
            auth: Auth::None,
            tls: TlsConfig::default(),
            relabel: Relabel::default(),
            bound_spelling: BoundSpelling::default(),
        }
    }

    /// The default name of the `index`-th backend (0-based).
    pub fn default_name(index: usize) -> String {
        match index {
            0 => "remote_write".to_owned(),
            n => format!("remote_write_{}", n + 1),
        }
    }

    /// This backend, the `index`-th, as an exporter to start. Backends of one spelling without
    /// rules of their own write the same bytes and share one encoding of each batch.
    pub(crate) fn plan(&self, index: usize) -> Result<Planned, ExportError> {
        let encoding_key = if self.relabel.is_empty() {
            format!("remote_write/{}", self.bound_spelling.as_str())
        } else {
            format!("remote_write[{index}]")
        };
        Ok(Planned {
            name: self.name.clone(),
            encoding_key,
            encoder: Arc::new(Encoder {
                relabel: self.relabel.clone(),
                spelling: self.bound_spelling,
            }),
            transport: self.transport()?,
            timeout: self.remote_timeout,
            insecure_skip_verify: self.tls.insecure_skip_verify,
        })
    }

    fn transport(&self) -> Result<Transport, ExportError> {
        let headers = super::http::headers(
            &self.headers,
            &[
                (header::CONTENT_ENCODING, "snappy"),
                (header::CONTENT_TYPE, "application/x-protobuf"),
                (header::USER_AGENT, USER_AGENT),
                (
                    HeaderName::from_static("x-prometheus-remote-write-version"),
                    "0.1.0",
                ),
            ],
        )
        .map_err(|reason| ExportError::new("remote_write.headers", reason))?;
        let client = super::http::client(&self.tls)
            .map_err(|reason| ExportError::new("remote_write.tls_config", reason))?;
        Ok(Transport::Http {
            display_url: self.url.redacted(),
            http: HttpTransport {
                client,
                url: self.url.parsed().clone(),
                headers,
                auth: self.auth.clone(),
                retryable,
                rejected: no_rejections,
            },
        })
    }
}

impl std::fmt::Debug for RemoteWriteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriteConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("remote_timeout", &self.remote_timeout)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("relabel", &self.relabel)
            .field("bound_spelling", &self.bound_spelling)
            .finish()
    }
}

/// A backend's encoding: its rules and spelling.
struct Encoder {
    relabel: Relabel,
    spelling: BoundSpelling,
}

impl Encode for Encoder {
    fn encode(&self, batch: &Batch, queued_at: Instant) -> Vec<Payload> {
        encode_spelled(batch, &self.relabel, self.spelling)
            .into_iter()
            .map(|encoded| Payload {
                bytes: encoded.body.len() as u64,
                body: Body::Http(bytes::Bytes::from(encoded.body)),
                samples: encoded.samples,
                queued_at,
            })
            .collect()
    }
}

/// Remote write 1.0: 5xx and 429.
pub(crate) fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_spec() {
        for code in [500, 502, 503, 429] {
            assert!(retryable(StatusCode::from_u16(code).unwrap()));
        }
        for code in [400, 401, 403, 404, 409, 413] {
            assert!(!retryable(StatusCode::from_u16(code).unwrap()));
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let mut config = RemoteWriteConfig::new(
            "tmp",
            HttpUrl::parse("https://u:pw-SECRET@prom.example/api/v1/write").unwrap(),
        );
        config.headers = vec![
            ("X-Scope-OrgID".to_owned(), "tenant-a".to_owned()),
            ("X-Api-Token".to_owned(), "tok-SECRET".to_owned()),
        ];
        let debug = format!("{config:?}");
        assert!(
            debug.contains("tenant-a") && debug.contains("prom.example"),
            "{debug}"
        );
        assert!(!debug.contains("SECRET"), "{debug}");
    }
}
