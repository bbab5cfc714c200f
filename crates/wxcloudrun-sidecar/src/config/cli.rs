//! The command line. Options without a value here fall back to their `WXCLOUDRUN_SIDECAR_*`
//! variable (read by `Config::load` through the lookup it is given, never by clap from the
//! process), then to the file, then to the defaults (`super::DEFAULT_*`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

/// The command line. Options without a value here fall back to the file, then to the defaults.
#[derive(Parser)]
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
    /// The app's metrics endpoint [env: WXCLOUDRUN_SIDECAR_SCRAPE_URL] [default: http://127.0.0.1:9464/metrics]
    #[arg(long, value_name = "URL")]
    pub scrape_url: Option<String>,

    /// Time between scrapes, e.g. 500ms, 15s, 1m [env: WXCLOUDRUN_SIDECAR_SCRAPE_INTERVAL] [default: 15s]
    #[arg(long, value_name = "DURATION")]
    pub scrape_interval: Option<String>,

    /// Give up on a scrape after this long; must be below the interval [env: WXCLOUDRUN_SIDECAR_SCRAPE_TIMEOUT] [default: 5s, or 0.8 × the interval when that is shorter]
    #[arg(long, value_name = "DURATION")]
    pub scrape_timeout: Option<String>,

    /// Prometheus remote-write endpoint; repeat or separate with commas for several [env: WXCLOUDRUN_SIDECAR_REMOTE_WRITE_URL]
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub remote_write_url: Vec<String>,

    /// OTLP endpoint (base URL; `/v1/metrics` is appended for http/protobuf). Env:
    /// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT (used as is), else OTEL_EXPORTER_OTLP_ENDPOINT
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// OTLP transport: grpc or http/protobuf [env: OTEL_EXPORTER_OTLP_PROTOCOL] [default: http/protobuf]
    #[arg(long, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<String>,

    /// Extra header on every export request, e.g. `X-Scope-OrgID=tenant-a`; repeatable. For
    /// credentials prefer the file's `basic_auth` / `authorization` with `*_file` [env: WXCLOUDRUN_SIDECAR_HEADERS]
    #[arg(long = "header", value_name = "NAME=VALUE", value_delimiter = ',')]
    pub headers: Vec<String>,

    /// Static label on every series, e.g. `region=shanghai`; repeatable [env: WXCLOUDRUN_SIDECAR_LABELS]
    #[arg(long = "label", value_name = "NAME=VALUE", value_delimiter = ',')]
    pub labels: Vec<String>,

    /// Cap on bytes queued per exporter; the oldest are dropped first, e.g. 64MiB [env: WXCLOUDRUN_SIDECAR_QUEUE_MAX_BYTES] [default: 64MiB]
    #[arg(long, value_name = "BYTES")]
    pub queue_max_bytes: Option<String>,

    /// Age past which a queued export request is dropped unless sent (fresh data first after a
    /// flood or an outage); 0 keeps requests until the queue is full [env: WXCLOUDRUN_SIDECAR_QUEUE_MAX_AGE] [default: 30s, or two
    /// scrape intervals if longer]
    #[arg(long, value_name = "DURATION")]
    pub queue_max_age: Option<String>,

    /// The sidecar's memory budget: a scrape that would take it past it fails (`too_large`), and
    /// the queues count against it [env: WXCLOUDRUN_SIDECAR_MEMORY_LIMIT] [default: 1/8 of the container's cgroup memory limit, at
    /// least 32MiB; 256MiB without one]
    #[arg(long, value_name = "BYTES")]
    pub memory_limit: Option<String>,

    /// Prometheus's `sample_limit`: most samples per scrape, else the scrape fails; 0 = none [env: WXCLOUDRUN_SIDECAR_SAMPLE_LIMIT] [default: 0]
    #[arg(long, value_name = "COUNT")]
    pub sample_limit: Option<String>,

    /// Prometheus's `label_limit`: most labels per series (`__name__` and the sidecar's labels
    /// included), else the scrape fails; 0 = none [env: WXCLOUDRUN_SIDECAR_LABEL_LIMIT] [default: 0]
    #[arg(long, value_name = "COUNT")]
    pub label_limit: Option<String>,

    /// Prometheus's `label_name_length_limit`: longest label name in bytes; 0 = none [env: WXCLOUDRUN_SIDECAR_LABEL_NAME_LENGTH_LIMIT] [default: 0]
    #[arg(long, value_name = "BYTES")]
    pub label_name_length_limit: Option<String>,

    /// Prometheus's `label_value_length_limit`: longest label value (and metric name) in bytes;
    /// 0 = none [env: WXCLOUDRUN_SIDECAR_LABEL_VALUE_LENGTH_LIMIT] [default: 0]
    #[arg(long, value_name = "BYTES")]
    pub label_value_length_limit: Option<String>,

    /// Prometheus's `body_size_limit`: largest uncompressed body, e.g. 10MiB; 0 = none [env: WXCLOUDRUN_SIDECAR_BODY_SIZE_LIMIT] [default: 0]
    #[arg(long, value_name = "BYTES")]
    pub body_size_limit: Option<String>,

    /// Total time for the final scrape, the app's exit and the final flush after SIGTERM [env: WXCLOUDRUN_SIDECAR_SHUTDOWN_BUDGET] [default: 8s]
    #[arg(long, value_name = "DURATION")]
    pub shutdown_budget: Option<String>,

    /// How remote write spells `le` and `quantile`: prometheus3 (`le="1.0"`, as Prometheus 3
    /// stores any scrape) or prometheus2 (`le="1"`, as Prometheus 2 stored the Go client's text
    /// format; for series already stored that way) [env: WXCLOUDRUN_SIDECAR_BOUND_SPELLING] [default: prometheus3]
    #[arg(long, value_name = "SPELLING")]
    pub bound_spelling: Option<String>,

    /// Admin listener (/healthz, /readyz, /metrics); keep it on loopback [env: WXCLOUDRUN_SIDECAR_ADMIN_ADDR] [default: 127.0.0.1:9465]
    #[arg(long, value_name = "ADDR")]
    pub admin_addr: Option<String>,

    /// TOML file with the same keys (scrape_url = "...", label = { region = "sh" }, ...) [env: WXCLOUDRUN_SIDECAR_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML (secrets as <secret>, each value's source) and
    /// exit (0 if valid, 64 if not)
    #[arg(long)]
    pub check_config: bool,

    /// The app to run (wrapper mode)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// By hand: header values may be credentials and URLs may carry userinfo.
impl std::fmt::Debug for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use wxcloudrun_connect::secret::{REDACTED, is_sensitive_header, redact_url};
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_sensitive_header(name.trim()) => format!("{name}={REDACTED}"),
                Some(_) => pair.clone(),
                None => REDACTED.to_owned(),
            })
            .collect();
        let urls: Vec<String> = self
            .remote_write_url
            .iter()
            .map(|u| redact_url(u))
            .collect();
        f.debug_struct("Cli")
            .field("scrape_url", &self.scrape_url.as_deref().map(redact_url))
            .field("scrape_interval", &self.scrape_interval)
            .field("scrape_timeout", &self.scrape_timeout)
            .field("remote_write_url", &urls)
            .field(
                "otlp_endpoint",
                &self.otlp_endpoint.as_deref().map(redact_url),
            )
            .field("otlp_protocol", &self.otlp_protocol)
            .field("headers", &headers)
            .field("labels", &self.labels)
            .field("queue_max_bytes", &self.queue_max_bytes)
            .field("queue_max_age", &self.queue_max_age)
            .field("memory_limit", &self.memory_limit)
            .field("sample_limit", &self.sample_limit)
            .field("label_limit", &self.label_limit)
            .field("label_name_length_limit", &self.label_name_length_limit)
            .field("label_value_length_limit", &self.label_value_length_limit)
            .field("body_size_limit", &self.body_size_limit)
            .field("shutdown_budget", &self.shutdown_budget)
            .field("bound_spelling", &self.bound_spelling)
            .field("admin_addr", &self.admin_addr)
            .field("config", &self.config)
            .field("check_config", &self.check_config)
            .field("command", &self.command)
            .finish()
    }
}
