//! Configuration: flags > environment > TOML file > defaults. Every key is validated here, once;
//! the exporters receive parsed values. A bad key stops the sidecar with exit code 64 and a
//! message naming it.
//!
//! - [`cli`]: the flags (and the `WXCLOUDRUN_SIDECAR_*` variables clap reads for them).
//! - `file`: the TOML file, with `[[remote_write]]` and `[otlp]` blocks.
//! - The standard `OTEL_*` variables for the OTLP exporter, read through wxcloudrun-connect,
//!   each `OTEL_EXPORTER_OTLP_METRICS_*` variant winning over the generic one.
//! - [`print`]: `--check-config`, the effective configuration as TOML with every value's source
//!   and secrets as `<secret>`.

pub mod cli;
mod file;
pub mod memory;
pub mod print;
pub mod units;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use wxcloudrun_connect::otlp_env::{self, Compression, OtlpEnv, Protocol, Signal};
use wxcloudrun_connect::secret::{SecretFile, redact_url};
use wxcloudrun_connect::tls::TlsConfig;

pub use cli::Cli;
pub use units::{parse_bytes, parse_duration};

use crate::export::auth::{Auth, SecretSource};
use crate::export::remote_write::{BoundSpelling, Relabel, RelabelRule};
use crate::export::{DEFAULT_QUEUE_MAX_BYTES, ExportConfig, OtlpConfig, RemoteWriteConfig};
use file::{AuthorizationFile, BasicAuthFile, FileConfig, OtlpFile, RemoteWriteFile};

/// Exit code for bad configuration (`EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;
/// Exit code when the app cannot be started (as a shell says).
pub const EXIT_CANNOT_START: i32 = 127;
/// Exit code for an internal failure (`EX_SOFTWARE`).
pub const EXIT_INTERNAL: i32 = 70;

/// The app's metrics endpoint: the layer's loopback listener.
pub const DEFAULT_SCRAPE_URL: &str = "http://127.0.0.1:9464/metrics";
/// Time between scrapes.
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(15);
/// The scrape timeout, unless 0.8 × the interval is shorter.
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the final scrape, the app's exit and the flush after SIGTERM.
pub const DEFAULT_SHUTDOWN_BUDGET: Duration = Duration::from_secs(8);
/// The admin listener.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9465";
/// The smallest queue cap accepted.
pub const MIN_QUEUE_MAX_BYTES: u64 = 64 << 10;

/// A configuration error: the key and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {key}: {reason}")]
pub struct ConfigError {
    /// The key as the user wrote it (`--scrape-timeout`, `remote_write[0].tls_config`, …).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

fn error(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Where a value came from, for `--check-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag.
    Flag(&'static str),
    /// An environment variable.
    Env(String),
    /// The `--config` file.
    File,
    /// The built-in default.
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::File => f.write_str("file"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The app's metrics endpoint.
    pub scrape_url: String,
    /// Time between scrapes.
    pub scrape_interval: Duration,
    /// Timeout of one scrape.
    pub scrape_timeout: Duration,
    /// Exporters.
    pub export: ExportConfig,
    /// Labels added to every series (`instance`, `wx_env`, `wx_service` and `--label`s), sorted.
    pub labels: Vec<(String, String)>,
    /// Budget for the whole shutdown.
    pub shutdown_budget: Duration,
    /// How remote write spells `le` and `quantile` (every backend's
    /// [`RemoteWriteConfig::bound_spelling`]).
    pub bound_spelling: BoundSpelling,
    /// The memory budget, Prometheus's per-scrape limits and the queues' age limit.
    pub memory: memory::MemorySettings,
    /// Admin listener.
    pub admin_addr: SocketAddr,
    /// The app to run, if any.
    pub command: Vec<OsString>,
    /// Only print the configuration.
    pub check_only: bool,
    /// Where each printed key's value came from (`scrape_url`, `otlp.endpoint`, …).
    pub origins: BTreeMap<String, Origin>,
    /// Things worth saying once at start (ignored values, unusual settings).
    pub warnings: Vec<String>,
}

/// Picks a flag's value and says where it came from: clap fills the field from the flag or its
/// environment variable; which one is told by whether the variable holds that same value.
fn from_cli(
    value: Option<String>,
    flag: &'static str,
    var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(String, Origin)> {
    let value = value.filter(|v| !v.trim().is_empty())?;
    let origin = if env(var).as_deref() == Some(value.as_str()) {
        Origin::Env(var.to_owned())
    } else {
        Origin::Flag(flag)
    };
    Some((value, origin))
}

/// Loading state: the environment and the origins found so far.
struct Loader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    origins: BTreeMap<String, Origin>,
    warnings: Vec<String>,
}

impl Loader<'_> {
    fn env(&self, key: &str) -> Option<String> {
        (self.env)(key).filter(|v| !v.trim().is_empty())
    }

    /// flag/env, else file, else default; records the origin under `key`.
    fn pick<T>(
        &mut self,
        key: &str,
        cli: Option<(String, Origin)>,
        file: Option<String>,
        parse: impl FnOnce(&str) -> Result<T, String>,
        default: T,
    ) -> Result<T, ConfigError> {
        let (text, origin) = match (cli, file) {
            (Some((text, origin)), _) => (text, origin),
            (None, Some(text)) => (text, Origin::File),
            (None, None) => {
                self.origins.insert(key.to_owned(), Origin::Default);
                return Ok(default);
            }
        };
        let shown = match &origin {
            Origin::Flag(flag) => (*flag).to_owned(),
            Origin::Env(var) => var.clone(),
            _ => key.to_owned(),
        };
        let value = parse(&text).map_err(|reason| error(shown, reason))?;
        self.origins.insert(key.to_owned(), origin);
        Ok(value)
    }
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    let parsed = parse_duration(text)?;
    if parsed.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(parsed)
}

impl Config {
    /// Parses flags (and their environment variables) from `args`, reads the file they name, and
    /// validates. `env` looks up the variables that have no flag of their own (`OTEL_*`,
    /// `HOSTNAME`, `CBR_ENV_ID`, `WXCLOUDRUN_SERVICE`).
    pub fn load(mut cli: Cli, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let memory_flags = memory::Flags::take(&mut cli);
        let env: &dyn Fn(&str) -> Option<String> = &env;
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    error("--config", format!("cannot read {}: {err}", path.display()))
                })?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|err| error("--config", format!("{}: {err}", path.display())))?
            }
            None => FileConfig::default(),
        };
        let mut loader = Loader {
            env,
            origins: BTreeMap::new(),
            warnings: Vec::new(),
        };

        let scrape_url = loader.pick(
            "scrape_url",
            from_cli(
                cli.scrape_url,
                "--scrape-url",
                "WXCLOUDRUN_SIDECAR_SCRAPE_URL",
                env,
            ),
            file.scrape_url.clone(),
            |url| check_http_url(url).map(|()| url.to_owned()),
            DEFAULT_SCRAPE_URL.to_owned(),
        )?;
        let scrape_interval = loader.pick(
            "scrape_interval",
            from_cli(
                cli.scrape_interval,
                "--scrape-interval",
                "WXCLOUDRUN_SIDECAR_SCRAPE_INTERVAL",
                env,
            ),
            file.scrape_interval.clone(),
            positive_duration,
            DEFAULT_SCRAPE_INTERVAL,
        )?;
        let scrape_timeout = loader.pick(
            "scrape_timeout",
            from_cli(
                cli.scrape_timeout,
                "--scrape-timeout",
                "WXCLOUDRUN_SIDECAR_SCRAPE_TIMEOUT",
                env,
            ),
            file.scrape_timeout.clone(),
            positive_duration,
            DEFAULT_SCRAPE_TIMEOUT.min(scrape_interval.mul_f64(0.8)),
        )?;
        if scrape_timeout >= scrape_interval {
            return Err(error(
                "--scrape-timeout",
                format!(
                    "{scrape_timeout:?} must be shorter than the scrape interval {scrape_interval:?}"
                ),
            ));
        }
        let shutdown_budget = loader.pick(
            "shutdown_budget",
            from_cli(
                cli.shutdown_budget,
                "--shutdown-budget",
                "WXCLOUDRUN_SIDECAR_SHUTDOWN_BUDGET",
                env,
            ),
            file.shutdown_budget.clone(),
            positive_duration,
            DEFAULT_SHUTDOWN_BUDGET,
        )?;
        let queue_max_bytes = loader.pick(
            "queue_max_bytes",
            from_cli(
                cli.queue_max_bytes,
                "--queue-max-bytes",
                "WXCLOUDRUN_SIDECAR_QUEUE_MAX_BYTES",
                env,
            ),
            file.queue_max_bytes.clone(),
            |text| {
                let bytes = parse_bytes(text)?;
                if bytes < MIN_QUEUE_MAX_BYTES {
                    return Err("must be at least 64KiB".to_owned());
                }
                Ok(bytes)
            },
            DEFAULT_QUEUE_MAX_BYTES,
        )?;
        let memory = memory::load(&mut loader, memory_flags, &file, scrape_interval)?;
        let bound_spelling = loader.pick(
            "bound_spelling",
            from_cli(
                cli.bound_spelling,
                "--bound-spelling",
                "WXCLOUDRUN_SIDECAR_BOUND_SPELLING",
                env,
            ),
            file.bound_spelling.clone(),
            |text| {
                BoundSpelling::parse(text)
                    .ok_or_else(|| format!("{text:?} is not prometheus3 or prometheus2"))
            },
            BoundSpelling::default(),
        )?;
        let admin_addr = loader.pick(
            "admin_addr",
            from_cli(
                cli.admin_addr,
                "--admin-addr",
                "WXCLOUDRUN_SIDECAR_ADMIN_ADDR",
                env,
            ),
            file.admin_addr.clone(),
            |text| {
                text.parse::<SocketAddr>()
                    .map_err(|err| format!("not an address: {err}"))
            },
            DEFAULT_ADMIN_ADDR
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9465))),
        )?;

        // Headers on every exporter: flags (or their variable) replace the file's.
        let mut common_headers = pairs("--header", &cli.headers)?;
        if common_headers.is_empty() {
            common_headers = file
                .header
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
        }
        for (name, value) in &common_headers {
            check_header("--header", name, value)?;
        }

        let labels = labels(&mut loader, &cli.labels, file.label.as_ref())?;

        let mut remote_write = remote_write_backends(&mut loader, &cli.remote_write_url, &file)?;
        for backend in &mut remote_write {
            backend.headers = merge_headers(&common_headers, &backend.headers);
            backend.bound_spelling = bound_spelling;
        }
        let otlp = otlp_backend(
            &mut loader,
            cli.otlp_endpoint,
            cli.otlp_protocol,
            &file,
            &labels,
        )?
        .map(|mut otlp| {
            otlp.headers = merge_headers(&common_headers, &otlp.headers);
            otlp
        });

        Ok(Config {
            scrape_url,
            scrape_interval,
            scrape_timeout,
            export: ExportConfig {
                remote_write,
                otlp,
                queue_max_bytes,
                queue_max_age: memory.queue_max_age,
            },
            labels,
            shutdown_budget,
            bound_spelling,
            memory,
            admin_addr,
            command: cli.command,
            check_only: cli.check_config,
            origins: loader.origins,
            warnings: loader.warnings,
        })
    }
}

/// `instance` (host name), `wx_env`, `wx_service`, then the static labels, sorted; empty values
/// dropped.
fn labels(
    loader: &mut Loader<'_>,
    cli_labels: &[String],
    file_labels: Option<&BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut static_labels = pairs("--label", cli_labels)?;
    if static_labels.is_empty() {
        static_labels = file_labels
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
    }
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    if let Some(host) = loader.env("HOSTNAME").or_else(hostname) {
        labels.insert("instance".to_owned(), host);
    }
    if let Some(env_id) = loader.env("CBR_ENV_ID") {
        labels.insert("wx_env".to_owned(), env_id);
    }
    if let Some(service) = otlp_env::service_name(loader.env) {
        labels.insert("wx_service".to_owned(), service);
    }
    for (name, value) in static_labels {
        if !is_label_name(&name) || name.starts_with("__") {
            return Err(error("--label", format!("{name:?} is not a label name")));
        }
        labels.insert(name, value);
    }
    labels.retain(|_, value| !value.is_empty());
    Ok(labels.into_iter().collect())
}

/// `--remote-write-url` (or its variable) as plain backends, replacing the file's; else the
/// file's `remote_write_url` list and `[[remote_write]]` blocks.
fn remote_write_backends(
    loader: &mut Loader<'_>,
    cli_urls: &[String],
    file: &FileConfig,
) -> Result<Vec<RemoteWriteConfig>, ConfigError> {
    let cli_urls: Vec<&String> = cli_urls.iter().filter(|u| !u.trim().is_empty()).collect();
    let mut backends = Vec::new();
    if !cli_urls.is_empty() {
        let var = "WXCLOUDRUN_SIDECAR_REMOTE_WRITE_URL";
        let joined: Vec<&str> = cli_urls.iter().map(|u| u.as_str()).collect();
        let origin = if loader.env(var) == Some(joined.join(",")) {
            Origin::Env(var.to_owned())
        } else {
            Origin::Flag("--remote-write-url")
        };
        for url in cli_urls {
            check_http_url(url).map_err(|reason| error("--remote-write-url", reason))?;
            let index = backends.len();
            loader
                .origins
                .insert(format!("remote_write[{index}]"), origin.clone());
            backends.push(RemoteWriteConfig::new(
                RemoteWriteConfig::default_name(index),
                url.trim(),
            ));
        }
        return Ok(backends);
    }
    let simple = file
        .remote_write_url
        .as_ref()
        .map(file::OneOrMany::to_vec)
        .unwrap_or_default();
    for url in simple.iter().filter(|u| !u.trim().is_empty()) {
        check_http_url(url).map_err(|reason| error("remote_write_url", reason))?;
        let index = backends.len();
        loader
            .origins
            .insert(format!("remote_write[{index}]"), Origin::File);
        backends.push(RemoteWriteConfig::new(
            RemoteWriteConfig::default_name(index),
            url.trim(),
        ));
    }
    for block in file.remote_write.iter().flatten() {
        let index = backends.len();
        let backend = remote_write_block(index, block)?;
        loader
            .origins
            .insert(format!("remote_write[{index}]"), Origin::File);
        backends.push(backend);
    }
    Ok(backends)
}

fn remote_write_block(
    index: usize,
    block: &RemoteWriteFile,
) -> Result<RemoteWriteConfig, ConfigError> {
    let key = |field: &str| format!("remote_write[{index}].{field}");
    check_http_url(&block.url).map_err(|reason| error(key("url"), reason))?;
    let name = match &block.name {
        Some(name) if is_label_value_safe(name) => name.clone(),
        Some(name) => {
            return Err(error(
                key("name"),
                format!("{name:?} must be letters, digits, '_' or '-'"),
            ));
        }
        None => RemoteWriteConfig::default_name(index),
    };
    let mut backend = RemoteWriteConfig::new(name, block.url.trim());
    if let Some(timeout) = &block.remote_timeout {
        backend.remote_timeout =
            positive_duration(timeout).map_err(|reason| error(key("remote_timeout"), reason))?;
    }
    backend.headers = block
        .headers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (name, value) in &backend.headers {
        check_header(&key("headers"), name, value)?;
    }
    backend.auth = auth(
        &key(""),
        block.basic_auth.as_ref(),
        block.authorization.as_ref(),
    )?;
    backend.tls = block.tls_config.clone().unwrap_or_default();
    check_tls(&key("tls_config"), &backend.tls)?;
    let mut rules = Vec::new();
    for (i, rule) in block.write_relabel_configs.iter().flatten().enumerate() {
        rules.push(
            RelabelRule::new(
                rule.action.as_deref(),
                rule.source_labels.clone(),
                rule.separator.as_deref(),
                rule.regex.as_deref(),
            )
            .map_err(|reason| error(key(&format!("write_relabel_configs[{i}]")), reason))?,
        );
    }
    backend.relabel = Relabel::new(rules);
    Ok(backend)
}

/// `basic_auth` or `authorization` (not both), each with a value or a file (not both).
fn auth(
    prefix: &str,
    basic: Option<&BasicAuthFile>,
    authorization: Option<&AuthorizationFile>,
) -> Result<Auth, ConfigError> {
    let source = |key: String,
                  inline: Option<&wxcloudrun_connect::secret::Secret>,
                  path: Option<&std::path::PathBuf>| {
        match (inline, path) {
            (Some(secret), None) => Ok(SecretSource::Inline(secret.clone())),
            (None, Some(path)) => SecretFile::open(path)
                .map(|file| SecretSource::File(Arc::new(file)))
                .map_err(|err| error(key, format!("cannot read {}: {err}", path.display()))),
            (Some(_), Some(_)) => Err(error(key, "give the value or the file, not both")),
            (None, None) => Err(error(key, "needs a value or a file")),
        }
    };
    match (basic, authorization) {
        (Some(_), Some(_)) => Err(error(
            format!("{prefix}basic_auth"),
            "basic_auth and authorization cannot both be set",
        )),
        (Some(basic), None) => Ok(Auth::Basic {
            username: basic.username.clone(),
            password: source(
                format!("{prefix}basic_auth.password"),
                basic.password.as_ref(),
                basic.password_file.as_ref(),
            )?,
        }),
        (None, Some(authorization)) => Ok(Auth::Authorization {
            scheme: authorization
                .scheme
                .clone()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "Bearer".to_owned()),
            credentials: source(
                format!("{prefix}authorization.credentials"),
                authorization.credentials.as_ref(),
                authorization.credentials_file.as_ref(),
            )?,
        }),
        (None, None) => Ok(Auth::None),
    }
}

/// The TLS files must be usable now, not at the first push.
fn check_tls(key: &str, tls: &TlsConfig) -> Result<(), ConfigError> {
    tls.client_config(&[])
        .map(|_| ())
        .map_err(|err| error(key, err.to_string()))
}

/// The OTLP backend: flag > `OTEL_EXPORTER_OTLP_METRICS_*` > `OTEL_EXPORTER_OTLP_*` > file, field
/// by field. `OTEL_METRICS_EXPORTER=none` turns it off unless `--otlp-endpoint` is given.
fn otlp_backend(
    loader: &mut Loader<'_>,
    cli_endpoint: Option<String>,
    cli_protocol: Option<String>,
    file: &FileConfig,
    labels: &[(String, String)],
) -> Result<Option<OtlpConfig>, ConfigError> {
    let env_error = |err: otlp_env::EnvError| error(err.variable.clone(), err.reason.clone());
    let from_env = OtlpEnv::read(Signal::Metrics, loader.env).map_err(env_error)?;
    let enabled = otlp_env::exporter_enabled(Signal::Metrics, loader.env).map_err(env_error)?;
    let block = file.otlp.as_ref();
    let default_block = OtlpFile::default();
    let block_or_default = block.unwrap_or(&default_block);
    let env_origin = |field: &str| {
        from_env
            .origin(field)
            .map_or(Origin::Default, |var| Origin::Env(var.to_owned()))
    };

    let (protocol, protocol_origin) = match (
        cli_protocol.filter(|p| !p.trim().is_empty()),
        from_env.protocol,
        block_or_default
            .protocol
            .as_ref()
            .or(file.otlp_protocol.as_ref()),
    ) {
        (Some(text), ..) => (
            parse_protocol("--otlp-protocol", &text)?,
            Origin::Flag("--otlp-protocol"),
        ),
        (None, Some(protocol), _) => (protocol, env_origin("protocol")),
        (None, None, Some(text)) => (parse_protocol("otlp.protocol", text)?, Origin::File),
        (None, None, None) => (Protocol::HttpProtobuf, Origin::Default),
    };
    let cli_endpoint = cli_endpoint.filter(|e| !e.trim().is_empty());
    let file_endpoint = block_or_default
        .endpoint
        .clone()
        .or_else(|| file.otlp_endpoint.clone())
        .filter(|e| !e.trim().is_empty());
    let from_flag = cli_endpoint.is_some();
    let (endpoint, endpoint_origin) = match (cli_endpoint, &from_env.endpoint, file_endpoint) {
        (Some(base), ..) => (otlp_url(&base, protocol), Origin::Flag("--otlp-endpoint")),
        (None, Some(url), _) => {
            // The variable was resolved for http/protobuf; gRPC takes the base as is.
            let url = match (protocol, from_env.origin("endpoint")) {
                (Protocol::Grpc, Some("OTEL_EXPORTER_OTLP_ENDPOINT")) => {
                    url.trim_end_matches("/v1/metrics").to_owned()
                }
                _ => url.clone(),
            };
            (url, env_origin("endpoint"))
        }
        (None, None, Some(base)) => (otlp_url(&base, protocol), Origin::File),
        (None, None, None) => return Ok(None),
    };
    if !enabled && !from_flag {
        loader.warnings.push(format!(
            "OTEL_METRICS_EXPORTER=none: metrics are not sent to the OTLP endpoint {}",
            redact_url(&endpoint)
        ));
        loader.origins.insert(
            "otlp".to_owned(),
            Origin::Env("OTEL_METRICS_EXPORTER".to_owned()),
        );
        return Ok(None);
    }
    check_http_url(&endpoint).map_err(|reason| error(endpoint_origin.to_string(), reason))?;
    let mut otlp = OtlpConfig::new(endpoint, protocol);
    loader
        .origins
        .insert("otlp.endpoint".to_owned(), endpoint_origin);
    loader
        .origins
        .insert("otlp.protocol".to_owned(), protocol_origin);

    otlp.compression = match (from_env.compression, &block_or_default.compression) {
        (Some(compression), _) => {
            loader
                .origins
                .insert("otlp.compression".into(), env_origin("compression"));
            compression
        }
        (None, Some(text)) => {
            loader
                .origins
                .insert("otlp.compression".into(), Origin::File);
            match text.as_str() {
                "gzip" => Compression::Gzip,
                "none" => Compression::None,
                other => {
                    return Err(error(
                        "otlp.compression",
                        format!("{other:?} is not supported (gzip, none)"),
                    ));
                }
            }
        }
        (None, None) => Compression::None,
    };
    otlp.timeout = match (from_env.timeout, &block_or_default.timeout) {
        (Some(timeout), _) => {
            loader
                .origins
                .insert("otlp.timeout".into(), env_origin("timeout"));
            timeout
        }
        (None, Some(text)) => {
            loader.origins.insert("otlp.timeout".into(), Origin::File);
            positive_duration(text).map_err(|reason| error("otlp.timeout", reason))?
        }
        (None, None) => crate::export::otlp::DEFAULT_TIMEOUT,
    };
    if otlp.timeout.is_zero() {
        return Err(error(env_origin("timeout").to_string(), "must be above 0"));
    }
    // Headers: the file's, then the variables', replacing same-named ones.
    let file_headers: Vec<(String, String)> = block_or_default
        .headers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (name, value) in &file_headers {
        check_header("otlp.headers", name, value)?;
    }
    otlp.headers = merge_headers(&file_headers, &from_env.headers);
    if !from_env.headers.is_empty() {
        loader
            .origins
            .insert("otlp.headers".into(), env_origin("headers"));
    } else if !file_headers.is_empty() {
        loader.origins.insert("otlp.headers".into(), Origin::File);
    }
    otlp.auth = auth(
        "otlp.",
        block_or_default.basic_auth.as_ref(),
        block_or_default.authorization.as_ref(),
    )?;
    // TLS: each file given by a variable replaces the file's.
    let mut tls = block_or_default.tls_config.clone().unwrap_or_default();
    let env_tls = from_env.tls();
    if env_tls.ca_file.is_some() {
        tls.ca_file = env_tls.ca_file;
        loader
            .origins
            .insert("otlp.tls_config.ca_file".into(), env_origin("certificate"));
    }
    if env_tls.cert_file.is_some() {
        tls.cert_file = env_tls.cert_file;
        loader.origins.insert(
            "otlp.tls_config.cert_file".into(),
            env_origin("client_certificate"),
        );
    }
    if env_tls.key_file.is_some() {
        tls.key_file = env_tls.key_file;
        loader
            .origins
            .insert("otlp.tls_config.key_file".into(), env_origin("client_key"));
    }
    check_tls("otlp.tls_config", &tls)?;
    otlp.tls = tls;
    if from_env.insecure == Some(true) && otlp.endpoint.starts_with("https://") {
        loader.warnings.push(
            "OTEL_EXPORTER_OTLP_INSECURE=true is ignored for an https:// endpoint: the scheme decides".to_owned(),
        );
    }

    // Resource: what the sidecar knows, then the file's, then OTEL_RESOURCE_ATTRIBUTES.
    let label = |key: &str| {
        labels
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, v)| v.clone())
    };
    let mut resource: BTreeMap<String, String> = BTreeMap::new();
    resource.insert(
        "service.name".to_owned(),
        label("wx_service").unwrap_or_else(|| "unknown_service".to_owned()),
    );
    if let Some(instance) = label("instance") {
        resource.insert("service.instance.id".to_owned(), instance.clone());
        resource.insert("host.name".to_owned(), instance);
    }
    if let Some(env_id) = label("wx_env") {
        resource.insert("wx.env".to_owned(), env_id);
        resource.insert("cloud.provider".to_owned(), "tencent_cloud".to_owned());
        resource.insert("cloud.platform".to_owned(), "tencent_cloud_eks".to_owned());
    }
    if let Some(extra) = &block_or_default.resource_attributes {
        resource.extend(extra.clone());
        loader
            .origins
            .insert("otlp.resource_attributes".into(), Origin::File);
    }
    let (from_variable, warnings) = otlp_env::resource_attributes(loader.env);
    if !from_variable.is_empty() {
        loader.origins.insert(
            "otlp.resource_attributes".into(),
            Origin::Env("OTEL_RESOURCE_ATTRIBUTES".to_owned()),
        );
    }
    resource.extend(from_variable);
    loader.warnings.extend(warnings);
    // `service.name` first, as before; the rest sorted.
    let service = resource.remove("service.name");
    otlp.resource = service
        .map(|name| ("service.name".to_owned(), name))
        .into_iter()
        .chain(resource)
        .collect();
    Ok(Some(otlp))
}

fn parse_protocol(key: &str, text: &str) -> Result<Protocol, ConfigError> {
    match text.trim() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        other => Err(error(
            key,
            format!("{other:?} is not grpc or http/protobuf"),
        )),
    }
}

/// `base` first, then `overrides`, replacing headers of the same name (case-insensitive).
fn merge_headers(
    base: &[(String, String)],
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let mut merged: Vec<(String, String)> = base
        .iter()
        .filter(|(name, _)| !overrides.iter().any(|(o, _)| o.eq_ignore_ascii_case(name)))
        .cloned()
        .collect();
    merged.extend(overrides.iter().cloned());
    merged
}

fn check_header(key: &str, name: &str, value: &str) -> Result<(), ConfigError> {
    http::HeaderName::try_from(name)
        .map_err(|_| error(key, format!("{name:?} is not a header name")))?;
    http::HeaderValue::try_from(value)
        .map_err(|_| error(key, format!("the value of {name} is not valid")))?;
    Ok(())
}

/// `http://collector:4318` → `http://collector:4318/v1/metrics` for HTTP; gRPC takes the base.
fn otlp_url(base: &str, protocol: Protocol) -> String {
    let base = base.trim().trim_end_matches('/');
    if protocol == Protocol::Grpc || base.ends_with("/v1/metrics") {
        base.to_owned()
    } else {
        format!("{base}/v1/metrics")
    }
}

/// An `http(s)://` URL with a host; the message never repeats userinfo.
fn check_http_url(url: &str) -> Result<(), String> {
    let shown = redact_url(url);
    let uri: http::Uri = url
        .trim()
        .parse()
        .map_err(|err| format!("{shown:?} is not a URL: {err}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(format!("{shown:?} is not an http(s) URL")),
    }
}

fn pairs(key: &str, values: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    values
        .iter()
        .filter(|value| !value.trim().is_empty())
        .map(|value| match value.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok((name.trim().to_owned(), value.trim().to_owned()))
            }
            _ => Err(error(key, "an entry is not NAME=VALUE")),
        })
        .collect()
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_label_value_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::export::OtlpProtocol;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut argv = vec!["wxcloudrun-sidecar"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|err| error("args", err.to_string()))?;
        Config::load(cli, |key| env.get(key).cloned())
    }

    fn with_file(toml: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sidecar.toml");
        std::fs::write(&path, toml).unwrap();
        let mut all = vec!["--config", path.to_str().unwrap()];
        all.extend_from_slice(args);
        load(&all, env)
    }

    #[test]
    fn defaults() {
        let config = load(&[], &[("HOSTNAME", "pod-1")]).unwrap();
        assert_eq!(config.scrape_url, DEFAULT_SCRAPE_URL);
        assert_eq!(config.scrape_interval, DEFAULT_SCRAPE_INTERVAL);
        assert_eq!(config.scrape_timeout, DEFAULT_SCRAPE_TIMEOUT);
        assert_eq!(config.shutdown_budget, DEFAULT_SHUTDOWN_BUDGET);
        assert_eq!(config.export.queue_max_bytes, DEFAULT_QUEUE_MAX_BYTES);
        assert_eq!(config.admin_addr, DEFAULT_ADMIN_ADDR.parse().unwrap());
        assert_eq!(config.labels, [("instance".to_owned(), "pod-1".to_owned())]);
        assert!(config.command.is_empty());
        assert!(config.export.remote_write.is_empty() && config.export.otlp.is_none());
        assert_eq!(config.origins["scrape_url"], Origin::Default);
    }

    #[test]
    fn bound_spelling_is_one_setting_for_every_remote_write_backend() {
        let urls = ["--remote-write-url", "http://a/w,http://b/w"];
        let default = load(&urls, &[]).unwrap();
        assert_eq!(default.bound_spelling, BoundSpelling::Prometheus3);
        assert_eq!(default.origins["bound_spelling"], Origin::Default);
        assert!(
            default
                .export
                .remote_write
                .iter()
                .all(|b| b.bound_spelling == BoundSpelling::Prometheus3)
        );

        let mut args = urls.to_vec();
        args.extend(["--bound-spelling", "prometheus2"]);
        let flag = load(&args, &[]).unwrap();
        assert_eq!(
            flag.origins["bound_spelling"],
            Origin::Flag("--bound-spelling")
        );
        assert_eq!(flag.export.remote_write.len(), 2);
        assert!(
            flag.export
                .remote_write
                .iter()
                .all(|b| b.bound_spelling == BoundSpelling::Prometheus2)
        );

        // clap fills the field from the variable (the binary's tests set it for real); the
        // origin is the variable when it holds that same value.
        let var = "WXCLOUDRUN_SIDECAR_BOUND_SPELLING";
        let mut args = urls.to_vec();
        args.extend(["--bound-spelling", "Prometheus2"]);
        let env = load(&args, &[(var, "Prometheus2")]).unwrap();
        assert_eq!(env.bound_spelling, BoundSpelling::Prometheus2);
        assert_eq!(env.origins["bound_spelling"], Origin::Env(var.to_owned()));

        let file = with_file(
            "bound_spelling = \"prometheus2\"\n[[remote_write]]\nurl = \"http://c/w\"\n",
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(file.origins["bound_spelling"], Origin::File);
        assert_eq!(
            file.export.remote_write[0].bound_spelling,
            BoundSpelling::Prometheus2
        );
        let printed = print::render(&file);
        assert!(
            printed.contains("bound_spelling = \"prometheus2\"  # file"),
            "{printed}"
        );
        // The flag wins over the file.
        let both = with_file(
            "bound_spelling = \"prometheus2\"\n",
            &["--bound-spelling", "prometheus3"],
            &[],
        )
        .unwrap();
        assert_eq!(both.bound_spelling, BoundSpelling::Prometheus3);

        let err = load(&["--bound-spelling", "go"], &[]).unwrap_err();
        assert_eq!(err.key, "--bound-spelling");
        assert_eq!(err.reason, "\"go\" is not prometheus3 or prometheus2");
        let err = with_file("bound_spelling = \"p3\"\n", &[], &[]).unwrap_err();
        assert_eq!(err.key, "bound_spelling");
    }

    #[test]
    fn timeout_must_be_below_the_interval() {
        let err = load(&["--scrape-interval", "2s", "--scrape-timeout", "2s"], &[]).unwrap_err();
        assert_eq!(err.key, "--scrape-timeout");
        // Short intervals get a default timeout below them.
        let config = load(&["--scrape-interval", "1s"], &[]).unwrap();
        assert!(config.scrape_timeout < Duration::from_secs(1));
    }

    fn otlp(config: &Config) -> &OtlpConfig {
        config.export.otlp.as_ref().expect("an OTLP exporter")
    }

    #[test]
    fn otlp_endpoints_follow_the_spec() {
        let http = load(&[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]).unwrap();
        assert_eq!(otlp(&http).endpoint, "http://c:4318/v1/metrics");
        assert_eq!(
            http.origins["otlp.endpoint"],
            Origin::Env("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned())
        );
        let exact = load(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:9/custom"),
            ],
        )
        .unwrap();
        assert_eq!(otlp(&exact).endpoint, "http://c:9/custom");
        let grpc = load(
            &[
                "--otlp-endpoint",
                "http://c:4317",
                "--otlp-protocol",
                "grpc",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(otlp(&grpc).endpoint, "http://c:4317");
        assert_eq!(otlp(&grpc).protocol, OtlpProtocol::Grpc);
        let grpc_env = load(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            ],
        )
        .unwrap();
        assert_eq!(otlp(&grpc_env).endpoint, "http://c:4317");
        let err = load(&["--otlp-protocol", "udp"], &[]).unwrap_err();
        assert_eq!(err.key, "--otlp-protocol");
    }

    #[test]
    fn the_standard_otlp_variables_are_honoured() {
        let config = load(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://apm.example:4318"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "x-a=generic,authorization=Basic%20abc",
                ),
                ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-a=specific"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip"),
                ("OTEL_RESOURCE_ATTRIBUTES", "token=apm-token,host.name=h1"),
                ("OTEL_SERVICE_NAME", "orders"),
                ("HOSTNAME", "pod-1"),
            ],
        )
        .unwrap();
        let otlp = otlp(&config);
        assert_eq!(otlp.endpoint, "https://apm.example:4318/v1/metrics");
        assert_eq!(otlp.timeout, Duration::from_millis(2500));
        assert_eq!(otlp.compression, Compression::Gzip);
        let header = |name: &str| {
            otlp.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-a"), Some("specific"));
        assert_eq!(header("authorization"), Some("Basic abc"));
        let attribute = |key: &str| {
            otlp.resource
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(attribute("service.name"), Some("orders"));
        assert_eq!(attribute("token"), Some("apm-token"));
        assert_eq!(attribute("host.name"), Some("h1"), "the variable wins");
        assert_eq!(attribute("service.instance.id"), Some("pod-1"));

        let err = load(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ],
        )
        .unwrap_err();
        assert_eq!(err.key, "OTEL_EXPORTER_OTLP_COMPRESSION");
        let err = load(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/no/such/ca.pem"),
            ],
        )
        .unwrap_err();
        assert!(err.reason.contains("/no/such/ca.pem"), "{err}");
    }

    #[test]
    fn otel_metrics_exporter_none_keeps_otlp_off() {
        let config = load(
            &["--remote-write-url", "http://p:9090/api/v1/write"],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://traces-only:4318"),
                ("OTEL_METRICS_EXPORTER", "none"),
            ],
        )
        .unwrap();
        assert!(config.export.otlp.is_none());
        assert_eq!(config.export.remote_write.len(), 1);
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        // An explicit flag still wins.
        let config = load(
            &["--otlp-endpoint", "http://c:4318"],
            &[("OTEL_METRICS_EXPORTER", "none")],
        )
        .unwrap();
        assert!(config.export.otlp.is_some());
        let err = load(&[], &[("OTEL_METRICS_EXPORTER", "console")]).unwrap_err();
        assert_eq!(err.key, "OTEL_METRICS_EXPORTER");
    }

    #[test]
    fn labels_and_headers() {
        let config = load(
            &[
                "--label",
                "region=shanghai",
                "--label",
                "tier=web",
                "--header",
                "X-Scope-OrgID=tenant-a",
                "--remote-write-url",
                "http://a:9090/api/v1/write,http://b:9090/api/v1/write",
            ],
            &[
                ("HOSTNAME", "pod-1"),
                ("CBR_ENV_ID", "prod-1abc"),
                ("WXCLOUDRUN_SERVICE", "orders"),
            ],
        )
        .unwrap();
        let labels: Vec<(&str, &str)> = config
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("instance", "pod-1"),
                ("region", "shanghai"),
                ("tier", "web"),
                ("wx_env", "prod-1abc"),
                ("wx_service", "orders")
            ]
        );
        let names: Vec<&str> = config
            .export
            .remote_write
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(names, ["remote_write", "remote_write_2"]);
        for backend in &config.export.remote_write {
            assert_eq!(
                backend.headers,
                [("X-Scope-OrgID".to_owned(), "tenant-a".to_owned())]
            );
        }
        assert_eq!(
            config.origins["remote_write[0]"],
            Origin::Flag("--remote-write-url")
        );
        for (args, key) in [
            (vec!["--label", "bad-name=x"], "--label"),
            (vec!["--label", "novalue"], "--label"),
            (vec!["--header", "Bad Header=x"], "--header"),
            (
                vec!["--remote-write-url", "ftp://x/y"],
                "--remote-write-url",
            ),
            (vec!["--scrape-url", "not a url"], "--scrape-url"),
            (vec!["--queue-max-bytes", "1KiB"], "--queue-max-bytes"),
            (vec!["--admin-addr", "localhost"], "--admin-addr"),
            (vec!["--shutdown-budget", "0s"], "--shutdown-budget"),
        ] {
            assert_eq!(load(&args, &[]).unwrap_err().key, key, "{args:?}");
        }
    }

    #[test]
    fn wrapper_command_after_double_dash() {
        let config = load(
            &["--scrape-interval", "1s", "--", "./server", "--port", "80"],
            &[],
        )
        .unwrap();
        assert_eq!(config.command, ["./server", "--port", "80"]);
    }

    #[test]
    fn file_keys_sit_below_flags_and_unknown_keys_are_rejected() {
        let config = with_file(
            r#"
scrape_url = "http://127.0.0.1:8080/metrics"
scrape_interval = "30s"
remote_write_url = ["http://file:9090/api/v1/write"]
label = { region = "guangzhou" }
"#,
            &["--scrape-interval", "10s"],
            &[],
        )
        .unwrap();
        assert_eq!(
            config.scrape_url, "http://127.0.0.1:8080/metrics",
            "file beats default"
        );
        assert_eq!(config.origins["scrape_url"], Origin::File);
        assert_eq!(
            config.scrape_interval,
            Duration::from_secs(10),
            "flag beats file"
        );
        assert_eq!(
            config.export.remote_write[0].url,
            "http://file:9090/api/v1/write"
        );
        assert!(
            config
                .labels
                .contains(&("region".to_owned(), "guangzhou".to_owned()))
        );
        let err = with_file("scrape_intervall = \"1s\"\n", &[], &[]).unwrap_err();
        assert_eq!(err.key, "--config");
        assert!(err.reason.contains("scrape_intervall"), "{}", err.reason);
    }

    #[test]
    fn remote_write_blocks_carry_prometheus_fields() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("pw");
        std::fs::write(&password, "from-file\n").unwrap();
        let toml = format!(
            r#"
[[remote_write]]
name = "tmp"
url = "http://10.0.0.8:9090/api/v1/prom/write"
remote_timeout = "3s"
headers = {{ "X-Scope-OrgID" = "tenant-a" }}
basic_auth = {{ username = "1300000000", password_file = "{}" }}
write_relabel_configs = [
  {{ source_labels = ["__name__"], regex = "process_.*", action = "drop" }},
  {{ regex = "instance", action = "labeldrop" }},
]

[[remote_write]]
url = "http://mimir:8080/api/v1/push"
authorization = {{ credentials = "tok" }}
"#,
            password.display()
        );
        let config = with_file(&toml, &[], &[]).unwrap();
        let [tmp, mimir] = &config.export.remote_write[..] else {
            panic!("two backends: {:?}", config.export.remote_write);
        };
        assert_eq!(tmp.name, "tmp");
        assert_eq!(tmp.remote_timeout, Duration::from_secs(3));
        assert_eq!(tmp.relabel.rules().len(), 2);
        assert_eq!(
            tmp.auth.header_value().unwrap(),
            "Basic MTMwMDAwMDAwMDpmcm9tLWZpbGU="
        );
        assert_eq!(mimir.name, "remote_write_2");
        assert_eq!(mimir.auth.header_value().unwrap(), "Bearer tok");

        for (block, key, says) in [
            (
                "[[remote_write]]\nurl = \"http://a/w\"\nwrite_relabel_configs = [{ source_labels = [\"a\"], action = \"hashmod\" }]\n",
                "remote_write[0].write_relabel_configs[0]",
                "hashmod",
            ),
            (
                "[[remote_write]]\nurl = \"http://a/w\"\nwrite_relabel_configs = [{ source_labels = [\"a\"], target_label = \"b\" }]\n",
                "remote_write[0].write_relabel_configs[0]",
                "replace",
            ),
            (
                "[[remote_write]]\nurl = \"http://a/w\"\nbasic_auth = { username = \"u\", password = \"p\", password_file = \"/x\" }\n",
                "remote_write[0].basic_auth.password",
                "not both",
            ),
            (
                "[[remote_write]]\nurl = \"http://a/w\"\nbasic_auth = { username = \"u\", password_file = \"/no/such/file\" }\n",
                "remote_write[0].basic_auth.password",
                "/no/such/file",
            ),
            (
                "[[remote_write]]\nurl = \"http://a/w\"\ntls_config = { cert_file = \"/no/cert.pem\" }\n",
                "remote_write[0].tls_config",
                "key_file",
            ),
            (
                "[[remote_write]]\nurl = \"http://a/w\"\nquery_timeout = \"1s\"\n",
                "--config",
                "query_timeout",
            ),
        ] {
            let err = with_file(block, &[], &[]).unwrap_err();
            assert_eq!(err.key, key, "{block}: {err}");
            assert!(err.reason.contains(says), "{block}: {err}");
        }
    }

    #[test]
    fn otlp_block_below_the_variables() {
        let config = with_file(
            r#"
[otlp]
endpoint = "http://file:4318"
compression = "gzip"
timeout = "3s"
headers = { "x-a" = "file", "x-b" = "file" }
resource_attributes = { token = "apm-token" }
authorization = { type = "Bearer", credentials = "tok" }
"#,
            &[],
            &[("OTEL_EXPORTER_OTLP_HEADERS", "x-b=env")],
        )
        .unwrap();
        let otlp = otlp(&config);
        assert_eq!(otlp.endpoint, "http://file:4318/v1/metrics");
        assert_eq!(otlp.compression, Compression::Gzip);
        assert_eq!(otlp.timeout, Duration::from_secs(3));
        assert_eq!(
            otlp.headers,
            [
                ("x-a".to_owned(), "file".to_owned()),
                ("x-b".to_owned(), "env".to_owned())
            ]
        );
        assert!(
            otlp.resource
                .contains(&("token".to_owned(), "apm-token".to_owned()))
        );
        assert_eq!(otlp.auth.header_value().unwrap(), "Bearer tok");
    }

    #[test]
    fn check_config_prints_toml_without_secrets() {
        let config = with_file(
            r#"
[[remote_write]]
url = "https://user:pw-SECRET-4@prom.example/api/v1/write"
headers = { "X-Api-Key" = "key-SECRET-3", "X-Scope-OrgID" = "tenant-a" }
basic_auth = { username = "u", password = "pw-SECRET-1" }
write_relabel_configs = [{ source_labels = ["__name__"], regex = "process_.*", action = "drop" }]

[otlp]
endpoint = "https://apm.example:4318"
authorization = { credentials = "tok-SECRET-2" }
resource_attributes = { token = "apm-SECRET-6" }
"#,
            &["--scrape-interval", "10s"],
            &[(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20env-SECRET-5",
            )],
        )
        .unwrap();
        let printed = print::render(&config);
        assert!(!printed.contains("SECRET"), "{printed}");
        assert!(!format!("{config:?}").contains("SECRET"), "{config:?}");
        assert!(printed.contains("<secret>"), "{printed}");
        assert!(printed.contains("tenant-a"), "{printed}");
        assert!(
            printed.contains("scrape_interval = \"10s\"  # flag --scrape-interval"),
            "{printed}"
        );
        assert!(
            printed.contains("# env OTEL_EXPORTER_OTLP_HEADERS") || printed.contains("headers ="),
            "{printed}"
        );
        // Secrets given by flag (or the flags' variables) are hidden too.
        let argv = [
            "wxcloudrun-sidecar",
            "--header",
            "Authorization=Bearer flag-SECRET-7",
            "--remote-write-url",
            "https://u:pw-SECRET-8@prom.example/api/v1/write",
        ];
        let cli = Cli::try_parse_from(argv).unwrap();
        assert!(!format!("{cli:?}").contains("SECRET"), "{cli:?}");
        let from_flags = Config::load(cli, |_| None).unwrap();
        let printed_flags = print::render(&from_flags);
        assert!(!printed_flags.contains("SECRET"), "{printed_flags}");
        assert!(
            !format!("{from_flags:?}").contains("SECRET"),
            "{from_flags:?}"
        );
        assert!(printed_flags.contains("prom.example"), "{printed_flags}");
        // What it prints is a file the sidecar accepts (comments and all), secrets aside.
        let reparsed: toml::Table =
            toml::from_str(&printed).unwrap_or_else(|err| panic!("{err}\n{printed}"));
        assert!(reparsed.contains_key("remote_write") && reparsed.contains_key("otlp"));
    }
}
