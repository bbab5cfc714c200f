//! Configuration: flags > environment > TOML file > defaults. Every key is validated up front, and
//! a bad one stops the sidecar with exit code 64 and a message naming the key.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::export::{ExportConfig, OtlpProtocol};

/// Exit code for bad configuration (`EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;

/// The command line. Options without a value here fall back to the file, then to the defaults.
#[derive(Debug, Parser)]
#[command(
    name = "wxcloudrun-sidecar",
    version,
    about = "Scrapes the app's /metrics inside a WeChat Cloud Run container and pushes it to a \
             real backend, losing nothing at scale-in.",
    long_about = None,
    after_help = "With `-- COMMAND [ARGS...]` the sidecar runs COMMAND as its child (wrapper mode): \
                  it forwards signals, reaps zombies as PID 1 and exits with the child's exit code. \
                  Without, it scrapes until SIGTERM/SIGINT (standalone mode).\n\n\
                  Precedence: flags > environment > --config file > defaults. Bad configuration \
                  exits with code 64."
)]
pub struct Cli {
    /// The app's metrics endpoint [default: http://127.0.0.1:9464/metrics]
    #[arg(long, env = "WXCLOUDRUN_SIDECAR_SCRAPE_URL", value_name = "URL")]
    pub scrape_url: Option<String>,

    /// Time between scrapes, e.g. 500ms, 15s, 1m [default: 15s]
    #[arg(
        long,
        env = "WXCLOUDRUN_SIDECAR_SCRAPE_INTERVAL",
        value_name = "DURATION"
    )]
    pub scrape_interval: Option<String>,

    /// Give up on a scrape after this long; must be below the interval [default: 5s]
    #[arg(
        long,
        env = "WXCLOUDRUN_SIDECAR_SCRAPE_TIMEOUT",
        value_name = "DURATION"
    )]
    pub scrape_timeout: Option<String>,

    /// Prometheus remote-write endpoint; repeat or separate with commas for several
    #[arg(
        long,
        env = "WXCLOUDRUN_SIDECAR_REMOTE_WRITE_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub remote_write_url: Vec<String>,

    /// OTLP endpoint (base URL; `/v1/metrics` is appended for http/protobuf). Env:
    /// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT (used as is), else OTEL_EXPORTER_OTLP_ENDPOINT
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// OTLP transport: grpc or http/protobuf [env: OTEL_EXPORTER_OTLP_PROTOCOL] [default: http/protobuf]
    #[arg(long, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<String>,

    /// Extra header on every export request, e.g. `Authorization=Bearer abc`; repeatable
    #[arg(
        long = "header",
        env = "WXCLOUDRUN_SIDECAR_HEADERS",
        value_name = "NAME=VALUE",
        value_delimiter = ','
    )]
    pub headers: Vec<String>,

    /// Static label on every series, e.g. `region=shanghai`; repeatable
    #[arg(
        long = "label",
        env = "WXCLOUDRUN_SIDECAR_LABELS",
        value_name = "NAME=VALUE",
        value_delimiter = ','
    )]
    pub labels: Vec<String>,

    /// Cap on bytes queued per exporter; the oldest are dropped first, e.g. 64MiB [default: 64MiB]
    #[arg(long, env = "WXCLOUDRUN_SIDECAR_QUEUE_MAX_BYTES", value_name = "BYTES")]
    pub queue_max_bytes: Option<String>,

    /// Total time for the final scrape, the app's exit and the final flush after SIGTERM [default: 8s]
    #[arg(
        long,
        env = "WXCLOUDRUN_SIDECAR_SHUTDOWN_BUDGET",
        value_name = "DURATION"
    )]
    pub shutdown_budget: Option<String>,

    /// Admin listener (/healthz, /readyz, /metrics); keep it on loopback [default: 127.0.0.1:9465]
    #[arg(long, env = "WXCLOUDRUN_SIDECAR_ADMIN_ADDR", value_name = "ADDR")]
    pub admin_addr: Option<String>,

    /// TOML file with the same keys (scrape_url = "...", label = { region = "sh" }, ...)
    #[arg(long, env = "WXCLOUDRUN_SIDECAR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration and exit (0 if valid, 64 if not)
    #[arg(long)]
    pub check_config: bool,

    /// The app to run (wrapper mode)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// The optional TOML file: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    scrape_url: Option<String>,
    scrape_interval: Option<String>,
    scrape_timeout: Option<String>,
    remote_write_url: Option<OneOrMany>,
    otlp_endpoint: Option<String>,
    otlp_protocol: Option<String>,
    header: Option<BTreeMap<String, String>>,
    label: Option<BTreeMap<String, String>>,
    queue_max_bytes: Option<String>,
    shutdown_budget: Option<String>,
    admin_addr: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A configuration error: the key and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {key}: {reason}")]
pub struct ConfigError {
    /// The key as the user wrote it (`--scrape-timeout`, `config file`, …).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

fn error(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        reason: reason.into(),
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
    /// Admin listener.
    pub admin_addr: SocketAddr,
    /// The app to run, if any.
    pub command: Vec<OsString>,
    /// Only print the configuration.
    pub check_only: bool,
}

impl Config {
    /// Parses flags (and their environment variables) from `args`, reads the file they name, and
    /// validates. `env` looks up the variables that have no flag of their own (`OTEL_*`,
    /// `HOSTNAME`, `CBR_ENV_ID`, `WXCLOUDRUN_SERVICE`).
    pub fn load(cli: Cli, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = |key: &str| env(key).filter(|v| !v.trim().is_empty());
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

        let scrape_url = cli
            .scrape_url
            .or(file.scrape_url)
            .unwrap_or_else(|| "http://127.0.0.1:9464/metrics".to_owned());
        check_http_url("--scrape-url", &scrape_url)?;
        let scrape_interval = duration(
            "--scrape-interval",
            cli.scrape_interval.or(file.scrape_interval),
            Duration::from_secs(15),
        )?;
        let scrape_timeout = duration(
            "--scrape-timeout",
            cli.scrape_timeout.or(file.scrape_timeout),
            Duration::from_secs(5).min(scrape_interval.mul_f64(0.8)),
        )?;
        if scrape_timeout >= scrape_interval {
            return Err(error(
                "--scrape-timeout",
                format!(
                    "{scrape_timeout:?} must be shorter than the scrape interval {scrape_interval:?}"
                ),
            ));
        }
        let shutdown_budget = duration(
            "--shutdown-budget",
            cli.shutdown_budget.or(file.shutdown_budget),
            Duration::from_secs(8),
        )?;
        let queue_max_bytes = match cli.queue_max_bytes.or(file.queue_max_bytes) {
            Some(text) => {
                parse_bytes(&text).map_err(|reason| error("--queue-max-bytes", reason))?
            }
            None => 64 << 20,
        };
        if queue_max_bytes < 64 << 10 {
            return Err(error("--queue-max-bytes", "must be at least 64KiB"));
        }
        let admin_addr: SocketAddr = cli
            .admin_addr
            .or(file.admin_addr)
            .unwrap_or_else(|| "127.0.0.1:9465".to_owned())
            .parse()
            .map_err(|err| error("--admin-addr", format!("not an address: {err}")))?;

        let mut remote_write_urls: Vec<String> = cli.remote_write_url;
        if remote_write_urls.is_empty() {
            remote_write_urls = match file.remote_write_url {
                Some(OneOrMany::One(url)) => vec![url],
                Some(OneOrMany::Many(urls)) => urls,
                None => Vec::new(),
            };
        }
        remote_write_urls.retain(|url| !url.trim().is_empty());
        for url in &remote_write_urls {
            check_http_url("--remote-write-url", url)?;
        }

        let otlp_protocol = match cli
            .otlp_protocol
            .or_else(|| env("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .or(file.otlp_protocol)
            .as_deref()
        {
            None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some("grpc") => OtlpProtocol::Grpc,
            Some(other) => {
                return Err(error(
                    "--otlp-protocol",
                    format!("{other:?} is not grpc or http/protobuf"),
                ));
            }
        };
        let otlp_endpoint = match (
            cli.otlp_endpoint,
            env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
            env("OTEL_EXPORTER_OTLP_ENDPOINT"),
            file.otlp_endpoint,
        ) {
            (Some(base), ..) => Some(otlp_url(base, otlp_protocol)),
            (None, Some(exact), ..) => Some(exact),
            (None, None, Some(base), _) => Some(otlp_url(base, otlp_protocol)),
            (None, None, None, Some(base)) => Some(otlp_url(base, otlp_protocol)),
            (None, None, None, None) => None,
        };
        if let Some(url) = &otlp_endpoint {
            check_http_url("--otlp-endpoint", url)?;
        }

        let mut headers = pairs("--header", &cli.headers)?;
        if headers.is_empty() {
            headers = file.header.unwrap_or_default().into_iter().collect();
        }
        for (name, value) in &headers {
            http::HeaderName::try_from(name.as_str())
                .map_err(|_| error("--header", format!("{name:?} is not a header name")))?;
            http::HeaderValue::try_from(value.as_str())
                .map_err(|_| error("--header", format!("the value of {name} is not valid")))?;
        }

        let mut static_labels = pairs("--label", &cli.labels)?;
        if static_labels.is_empty() {
            static_labels = file.label.unwrap_or_default().into_iter().collect();
        }
        let mut labels: BTreeMap<String, String> = BTreeMap::new();
        if let Some(host) = env("HOSTNAME").or_else(hostname) {
            labels.insert("instance".to_owned(), host);
        }
        if let Some(env_id) = env("CBR_ENV_ID") {
            labels.insert("wx_env".to_owned(), env_id);
        }
        if let Some(service) = env("WXCLOUDRUN_SERVICE").or_else(|| env("OTEL_SERVICE_NAME")) {
            labels.insert("wx_service".to_owned(), service);
        }
        for (name, value) in static_labels {
            if !is_label_name(&name) || name.starts_with("__") {
                return Err(error("--label", format!("{name:?} is not a label name")));
            }
            labels.insert(name, value);
        }
        labels.retain(|_, value| !value.is_empty());
        let labels: Vec<(String, String)> = labels.into_iter().collect();

        let label = |key: &str| {
            labels
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, v)| v.clone())
        };
        let mut resource = vec![(
            "service.name".to_owned(),
            label("wx_service").unwrap_or_else(|| "unknown_service".to_owned()),
        )];
        if let Some(instance) = label("instance") {
            resource.push(("service.instance.id".to_owned(), instance));
        }
        if let Some(env_id) = label("wx_env") {
            resource.push(("wx.env".to_owned(), env_id));
            resource.push(("cloud.provider".to_owned(), "tencent_cloud".to_owned()));
            resource.push(("cloud.platform".to_owned(), "tencent_cloud_eks".to_owned()));
        }

        Ok(Config {
            scrape_url,
            scrape_interval,
            scrape_timeout,
            export: ExportConfig {
                remote_write_urls,
                otlp_endpoint,
                otlp_protocol,
                headers,
                queue_max_bytes,
                resource,
                request_timeout: Duration::from_secs(10),
            },
            labels,
            shutdown_budget,
            admin_addr,
            command: cli.command,
            check_only: cli.check_config,
        })
    }
}

/// `http://collector:4318` → `http://collector:4318/v1/metrics` for HTTP; gRPC takes the base.
fn otlp_url(base: String, protocol: OtlpProtocol) -> String {
    let base = base.trim_end_matches('/');
    if protocol == OtlpProtocol::Grpc || base.ends_with("/v1/metrics") {
        base.to_owned()
    } else {
        format!("{base}/v1/metrics")
    }
}

fn check_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|err| error(key, format!("{url:?} is not a URL: {err}")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(error(key, format!("{url:?} is not an http(s) URL"))),
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
            _ => Err(error(key, format!("{value:?} is not NAME=VALUE"))),
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

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

fn duration(key: &str, value: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let parsed = parse_duration(&text).map_err(|reason| error(key, reason))?;
    if parsed.is_zero() {
        return Err(error(key, "must be longer than zero"));
    }
    Ok(parsed)
}

/// `500ms`, `15s`, `1m`, `1h`, `1m30s`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("{text:?} is not a duration"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?} lacks a unit (ms, s, m, h)"))?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration"))?;
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
        };
        total += Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("{text:?} is not a duration"))?;
        rest = tail;
    }
    Ok(total)
}

/// `65536`, `512KiB`, `64MiB`, `1GiB`, `10MB`, `100kB`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 64MiB"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (B, KiB, MiB, GiB, kB, MB, GB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("15").is_ok());
        assert!(parse_duration("15x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1").is_err());
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999999GiB").is_err());
    }

    #[test]
    fn defaults() {
        let config = load(&[], &[("HOSTNAME", "pod-1")]).unwrap();
        assert_eq!(config.scrape_url, "http://127.0.0.1:9464/metrics");
        assert_eq!(config.scrape_interval, Duration::from_secs(15));
        assert_eq!(config.scrape_timeout, Duration::from_secs(5));
        assert_eq!(config.shutdown_budget, Duration::from_secs(8));
        assert_eq!(config.export.queue_max_bytes, 64 << 20);
        assert_eq!(config.admin_addr, "127.0.0.1:9465".parse().unwrap());
        assert_eq!(config.labels, [("instance".to_owned(), "pod-1".to_owned())]);
        assert!(config.command.is_empty());
    }

    #[test]
    fn timeout_must_be_below_the_interval() {
        let err = load(&["--scrape-interval", "2s", "--scrape-timeout", "2s"], &[]).unwrap_err();
        assert_eq!(err.key, "--scrape-timeout");
        // Short intervals get a default timeout below them.
        let config = load(&["--scrape-interval", "1s"], &[]).unwrap();
        assert!(config.scrape_timeout < Duration::from_secs(1));
    }

    #[test]
    fn otlp_endpoints_follow_the_spec() {
        let http = load(&[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]).unwrap();
        assert_eq!(
            http.export.otlp_endpoint.as_deref(),
            Some("http://c:4318/v1/metrics")
        );
        let exact = load(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:9/custom"),
            ],
        )
        .unwrap();
        assert_eq!(
            exact.export.otlp_endpoint.as_deref(),
            Some("http://c:9/custom")
        );
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
        assert_eq!(grpc.export.otlp_endpoint.as_deref(), Some("http://c:4317"));
        assert_eq!(grpc.export.otlp_protocol, OtlpProtocol::Grpc);
        let err = load(&["--otlp-protocol", "udp"], &[]).unwrap_err();
        assert_eq!(err.key, "--otlp-protocol");
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
                "Authorization=Bearer abc",
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
        assert_eq!(
            config.export.headers,
            [("Authorization".to_owned(), "Bearer abc".to_owned())]
        );
        assert_eq!(config.export.remote_write_urls.len(), 2);
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sidecar.toml");
        std::fs::write(
            &path,
            r#"
scrape_url = "http://127.0.0.1:8080/metrics"
scrape_interval = "30s"
remote_write_url = ["http://file:9090/api/v1/write"]
label = { region = "guangzhou" }
"#,
        )
        .unwrap();
        let path = path.to_str().unwrap();
        let config = load(&["--config", path, "--scrape-interval", "10s"], &[]).unwrap();
        assert_eq!(
            config.scrape_url, "http://127.0.0.1:8080/metrics",
            "file beats default"
        );
        assert_eq!(
            config.scrape_interval,
            Duration::from_secs(10),
            "flag beats file"
        );
        assert_eq!(
            config.export.remote_write_urls,
            ["http://file:9090/api/v1/write"]
        );
        assert!(
            config
                .labels
                .contains(&("region".to_owned(), "guangzhou".to_owned()))
        );

        std::fs::write(dir.path().join("bad.toml"), "scrape_intervall = \"1s\"\n").unwrap();
        let bad = dir.path().join("bad.toml");
        let err = load(&["--config", bad.to_str().unwrap()], &[]).unwrap_err();
        assert_eq!(err.key, "--config");
        assert!(err.reason.contains("scrape_intervall"), "{}", err.reason);
    }
}
