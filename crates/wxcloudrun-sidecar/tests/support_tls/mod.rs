//! Shared by the TLS tests of the binary: an OTLP/HTTP metrics receiver over HTTPS on loopback,
//! a plain-HTTP scrape target, the sidecar as a child process (cleared environment, output in
//! files, admin endpoint read back), and reading the Prometheus text format.

// Each test binary uses its own subset.
#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::IntoResponse;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use wxcloudrun_telemetry_tests::prometheus::{http_get, wait_for};
use wxcloudrun_telemetry_tests::tls::{TestPki, TlsListener, TlsStats, server_config};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_wxcloudrun-sidecar");

/// One request the OTLP receiver got.
#[derive(Clone, Debug)]
pub(crate) struct OtlpRequest {
    /// Its path (`/v1/metrics` expected).
    pub path: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body decoded (gunzipped first when `Content-Encoding: gzip`), or why it could not be.
    pub body: Result<ExportMetricsServiceRequest, String>,
}

impl OtlpRequest {
    /// A header's value as text.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    }

    /// The string value of a resource attribute, from the first resource that has it.
    pub(crate) fn resource_attribute(&self, key: &str) -> Option<String> {
        let request = self.body.as_ref().ok()?;
        request
            .resource_metrics
            .iter()
            .filter_map(|rm| rm.resource.as_ref())
            .flat_map(|resource| resource.attributes.iter())
            .find(|kv| kv.key == key)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(text) => Some(text.clone()),
                _ => None,
            })
    }

    /// The names of every metric carried.
    pub(crate) fn metric_names(&self) -> Vec<String> {
        let Ok(request) = &self.body else {
            return Vec::new();
        };
        request
            .resource_metrics
            .iter()
            .flat_map(|rm| rm.scope_metrics.iter())
            .flat_map(|sm| sm.metrics.iter())
            .map(|metric| metric.name.clone())
            .collect()
    }
}

/// An OTLP/HTTP (protobuf) metrics receiver over HTTPS on 127.0.0.1, presenting the test PKI's
/// server certificate and optionally requiring a client certificate of the test CA. Records each
/// request and answers 200 with an empty `ExportMetricsServiceResponse`.
#[derive(Debug)]
pub(crate) struct OtlpReceiver {
    addr: SocketAddr,
    stats: TlsStats,
    requests: Arc<Mutex<Vec<OtlpRequest>>>,
}

impl OtlpReceiver {
    /// Starts on the current Tokio runtime.
    pub(crate) async fn start(pki: &TestPki, require_client_cert: bool) -> OtlpReceiver {
        let client_ca = require_client_cert.then_some(pki.ca_file.as_path());
        let config = server_config(&pki.server_cert, &pki.server_key, client_ca).unwrap();
        let listener = TlsListener::bind(config).await.unwrap();
        let (addr, stats) = (listener.addr(), listener.stats());
        let requests: Arc<Mutex<Vec<OtlpRequest>>> = Arc::default();
        let recorded = requests.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let recorded = recorded.clone();
            async move {
                let body = decode_otlp(&headers, &body);
                recorded.lock().unwrap().push(OtlpRequest {
                    path: uri.path().to_owned(),
                    headers,
                    body,
                });
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    ExportMetricsServiceResponse::default().encode_to_vec(),
                )
                    .into_response()
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        OtlpReceiver {
            addr,
            stats,
            requests,
        }
    }

    /// `https://127.0.0.1:PORT` (no path: the exporter appends `/v1/metrics`).
    pub(crate) fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Connections and handshakes seen.
    pub(crate) fn stats(&self) -> &TlsStats {
        &self.stats
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<OtlpRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits (at most until `deadline`) for a request carrying the metric `name`.
    pub(crate) async fn wait_for_metric(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Option<OtlpRequest> {
        loop {
            let found = self
                .requests()
                .into_iter()
                .find(|request| request.metric_names().iter().any(|n| n == name));
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn decode_otlp(headers: &HeaderMap, body: &[u8]) -> Result<ExportMetricsServiceRequest, String> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let raw = if gzip {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut raw)
            .map_err(|e| format!("gunzip: {e}"))?;
        raw
    } else {
        body.to_vec()
    };
    ExportMetricsServiceRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

/// A metrics page of two series: `app_requests_total{route="/a"} 7` and
/// `process_cpu_seconds_total 1.5`.
pub(crate) const PAGE: &str = "# TYPE app_requests_total counter\n\
app_requests_total{route=\"/a\"} 7\n\
# TYPE process_cpu_seconds_total counter\n\
process_cpu_seconds_total 1.5\n";

/// Serves [`PAGE`] on `GET /metrics` of a free loopback port (plain HTTP) on the current
/// runtime; returns the URL.
pub(crate) async fn serve_page() -> String {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], PAGE)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/metrics")
}

/// A loopback port nobody listens on (bound, read, released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A TOML basic string holding `text`.
pub(crate) fn toml_str(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A TOML string holding a path.
pub(crate) fn toml_path(path: &Path) -> String {
    toml_str(path.to_str().expect("a UTF-8 path"))
}

/// `command` with an empty environment but `PATH` and `HOSTNAME=tls-pod`, then `env`: the
/// developer's own `OTEL_*` or `WXCLOUDRUN_*` variables never reach the child.
pub(crate) fn clean_env(command: &mut Command, env: &[(&str, &str)]) {
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOSTNAME", "tls-pod");
    for (key, value) in env {
        command.env(key, value);
    }
}

/// Waits for `child` at most `limit`; killed and `None` after that.
pub(crate) fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sidecar binary in standalone mode (no app), `--scrape-interval 1s`, its admin listener on
/// a free port, stdout and stderr in files. Killed when dropped if still running.
#[derive(Debug)]
pub(crate) struct Sidecar {
    child: Child,
    admin: SocketAddr,
    stdout: PathBuf,
    stderr: PathBuf,
    dir: tempfile::TempDir,
}

impl Sidecar {
    /// Starts the sidecar with `--config` holding `toml`, then `args`, in a clean environment
    /// plus `env`.
    pub(crate) fn spawn(toml: &str, args: &[&str], env: &[(&str, &str)]) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sidecar.toml");
        std::fs::write(&config, toml).unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let mut command = Command::new(BIN);
        clean_env(&mut command, env);
        command
            .arg("--config")
            .arg(&config)
            .args(["--scrape-interval", "1s", "--scrape-timeout", "500ms"])
            .args(["--shutdown-budget", "3s"])
            .args(["--admin-addr", &admin.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let child = command.spawn().expect("start the sidecar");
        Sidecar {
            child,
            admin,
            stdout,
            stderr,
            dir,
        }
    }

    /// A directory that lives as long as the sidecar (for password files and the like).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything it printed on stdout so far.
    pub(crate) fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Everything it printed on stderr so far.
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The last lines of stdout and stderr, for failure messages.
    pub(crate) fn output_tail(&self) -> String {
        let tail = |text: String| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        format!(
            "--- sidecar stdout ---\n{}\n--- sidecar stderr ---\n{}",
            tail(self.stdout()),
            tail(self.stderr())
        )
    }

    /// Whether the process is still running.
    pub(crate) fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// `GET path` on the admin listener: (status, body), `None` while it does not answer.
    pub(crate) async fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.admin, path).await.ok()
    }

    /// The sum of the samples of `name` whose labels include all of `labels`, on the admin
    /// listener's `/metrics`; `None` while it does not answer.
    pub(crate) async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.admin_get("/metrics").await {
            Some((200, text)) => Some(sum_samples(&text, name, labels)),
            _ => None,
        }
    }

    /// Waits until [`Sidecar::metric`] is at least `at_least`, at most until `deadline`.
    pub(crate) async fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        at_least: f64,
        deadline: Instant,
    ) -> Result<f64, String> {
        let mut last = None;
        loop {
            last = self.metric(name, labels).await.or(last);
            if last.is_some_and(|value| value >= at_least) {
                return Ok(last.unwrap_or_default());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name}{labels:?} is {last:?}, not ≥ {at_least}\n{}",
                    self.output_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until stdout contains `needle`, at most until `deadline`.
    pub(crate) async fn wait_stdout(&self, needle: &str, deadline: Instant) -> Result<(), String> {
        wait_for(deadline, || async {
            if self.stdout().contains(needle) {
                Ok(())
            } else {
                Err(format!("no {needle:?} on stdout\n{}", self.output_tail()))
            }
        })
        .await
    }

    /// SIGTERM, then waits (at most 15 s) for the exit.
    pub(crate) fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        wait_bounded(&mut self.child, Duration::from_secs(15))
    }

    /// [`Sidecar::stop`], and fails unless it exited with 0.
    pub(crate) fn stop_cleanly(&mut self) {
        let status = self.stop();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{}",
            self.output_tail()
        );
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Labels of one exposition line (`name{a="x",b="y"} value`), unescaped.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').trim().to_owned(), value));
        rest = &after[end..];
    }
    labels
}

/// The sum of the samples of `name` in the text format whose labels include all of `labels`
/// (0 when none matches).
pub(crate) fn sum_samples(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = match line.rfind('}') {
                Some(close) => (&line[..=close], line[close + 1..].trim()),
                None => line.split_once(' ')?,
            };
            let (series_name, label_text) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let found = parse_labels(label_text);
            let matches = labels
                .iter()
                .all(|(k, v)| found.iter().any(|(fk, fv)| fk == k && fv == v));
            let value = value.split_whitespace().next()?;
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[test]
fn sum_samples_reads_labels_and_values() {
    let text = "# HELP x_total X.\n# TYPE x_total counter\n\
x_total{exporter=\"a\",reason=\"auth\"} 2\n\
x_total{exporter=\"a\",reason=\"tls\"} 3 1700000000000\n\
x_total{exporter=\"b\",reason=\"auth\",note=\"q\\\"}x\"} 5\n\
x_total_other{exporter=\"a\"} 100\n\
plain 1.5\n";
    assert_eq!(sum_samples(text, "x_total", &[("exporter", "a")]), 5.0);
    assert_eq!(sum_samples(text, "x_total", &[("reason", "auth")]), 7.0);
    assert_eq!(
        sum_samples(text, "x_total", &[("exporter", "b"), ("note", "q\"}x")]),
        5.0
    );
    assert_eq!(sum_samples(text, "x_total", &[("exporter", "c")]), 0.0);
    assert_eq!(sum_samples(text, "plain", &[]), 1.5);
}
