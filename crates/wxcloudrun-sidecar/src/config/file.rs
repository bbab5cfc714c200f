//! The optional TOML file (`--config`): the flags' keys, plus `[[remote_write]]` blocks with
//! Prometheus's own `remote_write` field names (a block can be carried over from a Prometheus
//! configuration) and one `[otlp]` block. Unknown keys are errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use wxcloudrun_connect::secret::Secret;
use wxcloudrun_connect::tls::TlsConfig;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) scrape_url: Option<String>,
    pub(crate) scrape_interval: Option<String>,
    pub(crate) scrape_timeout: Option<String>,
    /// The simple form: URLs only (`--remote-write-url`).
    pub(crate) remote_write_url: Option<OneOrMany>,
    /// Backends with their own credentials, TLS and relabelling.
    pub(crate) remote_write: Option<Vec<RemoteWriteFile>>,
    /// The simple form of `[otlp] endpoint` (`--otlp-endpoint`).
    pub(crate) otlp_endpoint: Option<String>,
    /// The simple form of `[otlp] protocol`.
    pub(crate) otlp_protocol: Option<String>,
    pub(crate) otlp: Option<OtlpFile>,
    /// Headers on every exporter's requests (`--header`).
    pub(crate) header: Option<BTreeMap<String, String>>,
    /// Static labels (`--label`).
    pub(crate) label: Option<BTreeMap<String, String>>,
    pub(crate) queue_max_bytes: Option<String>,
    pub(crate) shutdown_budget: Option<String>,
    /// `--queue-max-age`.
    pub(crate) queue_max_age: Option<String>,
    /// `--memory-limit`.
    pub(crate) memory_limit: Option<String>,
    /// Prometheus's per-scrape limits, by their Prometheus names (numbers or strings).
    pub(crate) sample_limit: Option<NumberOrText>,
    pub(crate) label_limit: Option<NumberOrText>,
    pub(crate) label_name_length_limit: Option<NumberOrText>,
    pub(crate) label_value_length_limit: Option<NumberOrText>,
    /// A size (`"10MiB"`) or a number of bytes.
    pub(crate) body_size_limit: Option<NumberOrText>,
    /// `prometheus3` or `prometheus2` (`--bound-spelling`).
    pub(crate) bound_spelling: Option<String>,
    pub(crate) admin_addr: Option<String>,
}

/// A limit written as a number (`sample_limit = 5000`, as in Prometheus) or a string.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum NumberOrText {
    Number(u64),
    Text(String),
}

impl NumberOrText {
    pub(crate) fn text(&self) -> String {
        match self {
            NumberOrText::Number(n) => n.to_string(),
            NumberOrText::Text(t) => t.clone(),
        }
    }
}

/// One string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

/// `[[remote_write]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoteWriteFile {
    pub(crate) name: Option<String>,
    pub(crate) url: String,
    pub(crate) remote_timeout: Option<String>,
    pub(crate) headers: Option<BTreeMap<String, String>>,
    pub(crate) basic_auth: Option<BasicAuthFile>,
    pub(crate) authorization: Option<AuthorizationFile>,
    pub(crate) tls_config: Option<TlsConfig>,
    pub(crate) write_relabel_configs: Option<Vec<RelabelFile>>,
}

/// `[otlp]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OtlpFile {
    pub(crate) endpoint: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) compression: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) headers: Option<BTreeMap<String, String>>,
    pub(crate) basic_auth: Option<BasicAuthFile>,
    pub(crate) authorization: Option<AuthorizationFile>,
    pub(crate) tls_config: Option<TlsConfig>,
    pub(crate) resource_attributes: Option<BTreeMap<String, String>>,
}

/// `basic_auth = { username, password | password_file }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BasicAuthFile {
    pub(crate) username: String,
    pub(crate) password: Option<Secret>,
    pub(crate) password_file: Option<PathBuf>,
}

/// `authorization = { type, credentials | credentials_file }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthorizationFile {
    #[serde(rename = "type")]
    pub(crate) scheme: Option<String>,
    pub(crate) credentials: Option<Secret>,
    pub(crate) credentials_file: Option<PathBuf>,
}

/// One `write_relabel_configs` entry. `target_label`, `replacement` and `modulus` belong to
/// actions this sidecar does not support; they are accepted (a carried-over block parses) and
/// the action itself is refused with its name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RelabelFile {
    #[serde(default)]
    pub(crate) source_labels: Vec<String>,
    pub(crate) separator: Option<String>,
    pub(crate) regex: Option<String>,
    pub(crate) action: Option<String>,
    #[allow(dead_code)]
    pub(crate) target_label: Option<String>,
    #[allow(dead_code)]
    pub(crate) replacement: Option<String>,
    #[allow(dead_code)]
    pub(crate) modulus: Option<u64>,
}
