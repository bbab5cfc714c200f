//! Configuration: flags > environment > TOML file > defaults. Every key is validated here, once;
//! the exporters receive parsed values. A bad key stops the sidecar with exit code 64 and a
//! message naming it.
//!
//! - [`cli`]: the flags (each with a `WXCLOUDRUN_SIDECAR_*` variable, read through the lookup
//!   [`Config::load`] is given).
//! - `file`: the TOML file, with `[[remote_write]]` and `[otlp]` blocks.
//! - The standard `OTEL_*` variables for the OTLP exporter, read through wxcloudrun-connect,
//!   each `OTEL_EXPORTER_OTLP_METRICS_*` variant winning over the generic one.
//! - [`print`]: `--check-config`, the effective configuration as TOML with every value's source
//!   and secrets as `<secret>`.
//!
//! How: `merge` is the one precedence rule (and the origin of every value), `validate` the checks
//! several keys share, [`memory`] the memory budget and per-scrape limits,
//! `remote_write_backends` and `otlp_backend` resolve the exporters. [`Config::load`] reads them in
//! that order.

pub mod cli;
mod file;
pub mod memory;
mod merge;
mod otlp_backend;
pub mod print;
mod remote_write_backends;
pub mod units;
mod validate;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wxcloudrun_connect::otlp_env;

pub use cli::Cli;
pub use merge::{ConfigError, Origin};
pub use units::{parse_bytes, parse_duration};

use crate::export::remote_write::BoundSpelling;
use crate::export::{
    DEFAULT_QUEUE_MAX_BYTES, ExportConfig, HttpUrl, OtlpConfig, RemoteWriteConfig,
};
use file::FileConfig;
use merge::{Loader, error, positive_duration};
use otlp_backend::otlp_backend;
use remote_write_backends::remote_write_backends;
use validate::{check_header, header_table, is_label_name, merge_headers, pairs};

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

impl Config {
    /// Takes the flags in `cli`, reads the file they name, and validates. `env` is the one source
    /// of environment variables: each flag's `WXCLOUDRUN_SIDECAR_*` variable (clap reads none)
    /// and those without a flag (`OTEL_*`, `HOSTNAME`, `CBR_ENV_ID`, `WXCLOUDRUN_SERVICE`).
    pub fn load(mut cli: Cli, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let memory_flags = memory::Flags::take(&mut cli);
        let env: &dyn Fn(&str) -> Option<String> = &env;
        let mut loader = Loader::new(env);
        let config_path = cli
            .config
            .take()
            .or_else(|| loader.env("WXCLOUDRUN_SIDECAR_CONFIG").map(PathBuf::from));
        let file = read_file(config_path.as_deref())?;

        let schedule = schedule(&mut loader, &mut cli, &file)?;
        let queue_max_bytes = loader.pick_flag(
            "queue_max_bytes",
            ("--queue-max-bytes", cli.queue_max_bytes.take()),
            file.queue_max_bytes.clone(),
            |text| match parse_bytes(text)? {
                bytes if bytes < MIN_QUEUE_MAX_BYTES => Err("must be at least 64KiB".to_owned()),
                bytes => Ok(bytes),
            },
            DEFAULT_QUEUE_MAX_BYTES,
        )?;
        let memory = memory::load(&mut loader, memory_flags, &file, schedule.scrape_interval)?;
        let bound_spelling = loader.pick_flag(
            "bound_spelling",
            ("--bound-spelling", cli.bound_spelling.take()),
            file.bound_spelling.clone(),
            |text| {
                BoundSpelling::parse(text)
                    .ok_or_else(|| format!("{text:?} is not prometheus3 or prometheus2"))
            },
            BoundSpelling::default(),
        )?;
        let admin_addr = loader.pick_flag(
            "admin_addr",
            ("--admin-addr", cli.admin_addr.take()),
            file.admin_addr.clone(),
            |text| {
                text.parse::<SocketAddr>()
                    .map_err(|err| format!("not an address: {err}"))
            },
            DEFAULT_ADMIN_ADDR
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9465))),
        )?;
        let labels = labels(&mut loader, &cli.labels, file.label.as_ref())?;
        let (remote_write, otlp) =
            exporters(&mut loader, &mut cli, &file, &labels, bound_spelling)?;

        Ok(Config {
            scrape_url: schedule.scrape_url,
            scrape_interval: schedule.scrape_interval,
            scrape_timeout: schedule.scrape_timeout,
            export: ExportConfig {
                remote_write,
                otlp,
                queue_max_bytes,
                queue_max_age: memory.queue_max_age,
            },
            labels,
            shutdown_budget: schedule.shutdown_budget,
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

/// The `--config` file, or an empty one.
fn read_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|err| error("--config", format!("cannot read {}: {err}", path.display())))?;
    toml::from_str::<FileConfig>(&text)
        .map_err(|err| error("--config", format!("{}: {err}", path.display())))
}

/// What to scrape, how often, for how long, and how long the shutdown may take.
struct Schedule {
    scrape_url: String,
    scrape_interval: Duration,
    scrape_timeout: Duration,
    shutdown_budget: Duration,
}

/// The [`Schedule`]: the scrape timeout defaults to min(5 s, 0.8 × the interval) and must be
/// shorter than the interval.
fn schedule(
    loader: &mut Loader<'_>,
    cli: &mut Cli,
    file: &FileConfig,
) -> Result<Schedule, ConfigError> {
    let scrape_url = loader.pick_flag(
        "scrape_url",
        ("--scrape-url", cli.scrape_url.take()),
        file.scrape_url.clone(),
        |url| HttpUrl::parse(url).map(|url| url.as_str().to_owned()),
        DEFAULT_SCRAPE_URL.to_owned(),
    )?;
    let scrape_interval = loader.pick_flag(
        "scrape_interval",
        ("--scrape-interval", cli.scrape_interval.take()),
        file.scrape_interval.clone(),
        positive_duration,
        DEFAULT_SCRAPE_INTERVAL,
    )?;
    let scrape_timeout = loader.pick_flag(
        "scrape_timeout",
        ("--scrape-timeout", cli.scrape_timeout.take()),
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
    let shutdown_budget = loader.pick_flag(
        "shutdown_budget",
        ("--shutdown-budget", cli.shutdown_budget.take()),
        file.shutdown_budget.clone(),
        positive_duration,
        DEFAULT_SHUTDOWN_BUDGET,
    )?;
    Ok(Schedule {
        scrape_url,
        scrape_interval,
        scrape_timeout,
        shutdown_budget,
    })
}

/// The remote-write backends and the OTLP one, each with the headers for every exporter
/// (`--header`, or its variable, replacing the file's) under its own.
fn exporters(
    loader: &mut Loader<'_>,
    cli: &mut Cli,
    file: &FileConfig,
    labels: &[(String, String)],
    bound_spelling: BoundSpelling,
) -> Result<(Vec<RemoteWriteConfig>, Option<OtlpConfig>), ConfigError> {
    let (headers, key) = flag_list(
        loader,
        ("--header", &cli.headers),
        "WXCLOUDRUN_SIDECAR_HEADERS",
    );
    let mut common_headers = pairs(&key, &headers)?;
    for (name, value) in &common_headers {
        check_header(&key, name, value)?;
    }
    if common_headers.is_empty() {
        common_headers = header_table("--header", file.header.as_ref())?;
    }
    let mut remote_write = remote_write_backends(loader, &cli.remote_write_url, file)?;
    for backend in &mut remote_write {
        backend.headers = merge_headers(&common_headers, &backend.headers);
        backend.bound_spelling = bound_spelling;
    }
    let otlp = otlp_backend(
        loader,
        cli.otlp_endpoint.take(),
        cli.otlp_protocol.take(),
        file,
        labels,
    )?
    .map(|mut otlp| {
        otlp.headers = merge_headers(&common_headers, &otlp.headers);
        otlp
    });
    Ok((remote_write, otlp))
}

/// `instance` (host name), `wx_env`, `wx_service`, then the static labels, sorted; empty values
/// dropped.
fn labels(
    loader: &mut Loader<'_>,
    cli_labels: &[String],
    file_labels: Option<&BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let (cli_labels, key) = flag_list(loader, ("--label", cli_labels), "WXCLOUDRUN_SIDECAR_LABELS");
    let mut static_labels = pairs(&key, &cli_labels)?;
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
            return Err(error(key.as_str(), format!("{name:?} is not a label name")));
        }
        labels.insert(name, value);
    }
    labels.retain(|_, value| !value.is_empty());
    Ok(labels.into_iter().collect())
}
/// A list flag's values, else its variable's ([`Loader::list`]), and the name to give in an
/// error about them.
fn flag_list(
    loader: &Loader<'_>,
    flag: (&'static str, &[String]),
    var: &str,
) -> (Vec<String>, String) {
    let (values, origin) = loader.list(flag, var);
    let key = match origin {
        Some(Origin::Env(var)) => var,
        _ => flag.0.to_owned(),
    };
    (values, key)
}

/// The kernel's host name, when `HOSTNAME` is not set.
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
    use crate::export::{Compression, OtlpProtocol};

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

    /// `Loader::pick_flag` reads a flag's variable `WXCLOUDRUN_SIDECAR_<KEY>`, the key being the
    /// long flag with `_` for `-`: the help must name the same variable. (Lists — `--header`,
    /// `--label`, `--remote-write-url` — are read apart, and their variables are plural.) clap
    /// itself reads none: `Config::load`'s lookup is the one source.
    #[test]
    fn every_flag_variable_is_named_after_its_flag() {
        use clap::CommandFactory as _;
        let command = Cli::command();
        let mut checked = 0;
        for arg in command.get_arguments() {
            assert!(arg.get_env().is_none(), "clap reads {:?}", arg.get_env());
            let Some(long) = arg.get_long() else {
                continue;
            };
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let Some((_, var)) = help.split_once("[env: WXCLOUDRUN_SIDECAR_") else {
                continue;
            };
            let var = var.split(']').next().unwrap_or_default();
            if !matches!(arg.get_action(), clap::ArgAction::Set) {
                continue;
            }
            assert_eq!(var, long.replace('-', "_").to_uppercase(), "--{long}");
            checked += 1;
        }
        assert!(checked >= 15, "only {checked} flags with a variable");
    }

    /// Every flag's variable is read through the lookup `Config::load` is given (the process
    /// environment in the binary): a test's table sets them as the process would.
    #[test]
    fn flag_variables_come_from_the_given_environment() {
        let env = [
            ("WXCLOUDRUN_SIDECAR_SCRAPE_INTERVAL", "30s"),
            ("WXCLOUDRUN_SIDECAR_MEMORY_LIMIT", "48MiB"),
            ("WXCLOUDRUN_SIDECAR_SAMPLE_LIMIT", "500"),
            ("WXCLOUDRUN_SIDECAR_LABELS", "region=sh,zone=a"),
            (
                "WXCLOUDRUN_SIDECAR_REMOTE_WRITE_URL",
                "http://a/w,http://b/w",
            ),
            ("WXCLOUDRUN_SIDECAR_HEADERS", "x-a=1"),
            ("HOSTNAME", "pod-1"),
        ];
        let config = load(&[], &env).unwrap();
        assert_eq!(config.scrape_interval, Duration::from_secs(30));
        let interval_var = "WXCLOUDRUN_SIDECAR_SCRAPE_INTERVAL".to_owned();
        assert_eq!(config.origins["scrape_interval"], Origin::Env(interval_var));
        assert_eq!(config.memory.memory_limit_bytes, 48 << 20);
        assert_eq!(config.memory.scrape_limits.sample_limit, 500);
        let labels: Vec<&str> = config.labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(labels, ["instance", "region", "zone"]);
        let urls: Vec<&str> = config
            .export
            .remote_write
            .iter()
            .map(|b| b.url.as_str())
            .collect();
        assert_eq!(urls, ["http://a/w", "http://b/w"]);
        assert_eq!(
            config.export.remote_write[0].headers,
            [("x-a".to_owned(), "1".to_owned())]
        );
        // A flag wins over its variable, and says so.
        let flag = load(&["--scrape-interval", "20s"], &env).unwrap();
        assert_eq!(flag.scrape_interval, Duration::from_secs(20));
        assert_eq!(
            flag.origins["scrape_interval"],
            Origin::Flag("--scrape-interval")
        );
        // A bad value names the variable it came from.
        let bad = load(&[], &[("WXCLOUDRUN_SIDECAR_SCRAPE_INTERVAL", "soon")]).unwrap_err();
        assert_eq!(bad.key, "WXCLOUDRUN_SIDECAR_SCRAPE_INTERVAL");
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

        // The variable, through the lookup `Config::load` is given.
        let var = "WXCLOUDRUN_SIDECAR_BOUND_SPELLING";
        let env = load(&urls, &[(var, "Prometheus2")]).unwrap();
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
        assert_eq!(otlp(&http).endpoint.as_str(), "http://c:4318/v1/metrics");
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
        assert_eq!(otlp(&exact).endpoint.as_str(), "http://c:9/custom");
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
        assert_eq!(otlp(&grpc).endpoint.as_str(), "http://c:4317");
        assert_eq!(otlp(&grpc).protocol, OtlpProtocol::Grpc);
        let grpc_env = load(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            ],
        )
        .unwrap();
        assert_eq!(otlp(&grpc_env).endpoint.as_str(), "http://c:4317");
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
        assert_eq!(
            otlp.endpoint.as_str(),
            "https://apm.example:4318/v1/metrics"
        );
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
            (
                vec!["--otlp-endpoint", "localhost:4318"],
                "flag --otlp-endpoint",
            ),
            (
                vec![
                    "--otlp-endpoint",
                    "grpc://c:4317",
                    "--otlp-protocol",
                    "grpc",
                ],
                "flag --otlp-endpoint",
            ),
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
            config.export.remote_write[0].url.as_str(),
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
        assert_eq!(otlp.endpoint.as_str(), "http://file:4318/v1/metrics");
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
