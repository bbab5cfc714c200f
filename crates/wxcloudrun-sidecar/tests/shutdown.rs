//! The shutdown budget counts from the signal (issue 17): the binary in wrapper mode around a
//! small Python app whose `/metrics` answers, hangs or is slow on command, SIGTERM (or SIGINT)
//! sent at chosen moments. Each case asserts the promise — the sidecar is gone within the budget
//! plus one second, with the app's exit code, after delivering what it scraped — and prints what
//! it measured (`cargo test --test shutdown -- --nocapture`): they are measurements, the
//! assertion is the promise.
//!
//! The cases run one at a time, so that their timings do not disturb each other.

mod support_export;

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use support_export::{Backend, Reply, decode_remote_write, free_port};
use tokio::time::{Instant, sleep};
use wxcloudrun_sidecar::model::STALE_NAN_BITS;
use wxcloudrun_telemetry_tests::prometheus::{Prometheus, wait_for};
use wxcloudrun_telemetry_tests::require_tool;

const BIN: &str = env!("CARGO_BIN_EXE_wxcloudrun-sidecar");

/// One case at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The app: serves `/metrics` on `PORT` (`app_scrapes_total`, the number of requests so far);
/// requests after the first `HANG_AFTER` (`-1`: none) first append a line to `MARKER` and then
/// hang for `DELAY` seconds (`inf`: for good). `ANSWER` is `ok`, `500` or `garbage`. On SIGTERM
/// or SIGINT it exits with `ON_STOP` at once, or ignores the signal (`ignore`). Its pid is the
/// first line of `MARKER`.
const APP: &str = r##"
import http.server, os, signal, sys, threading, time
port, hang_after, delay, answer, on_stop, marker = sys.argv[1:7]
port, hang_after, delay = int(port), int(hang_after), float(delay)
with open(marker, "w") as f:
    f.write("%d\n" % os.getpid())
def stop(signum, frame):
    if on_stop != "ignore":
        os._exit(int(on_stop))
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
served = [0]
lock = threading.Lock()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with lock:
            served[0] += 1
            n = served[0]
        if hang_after >= 0 and n > hang_after:
            with open(marker, "a") as f:
                f.write("%d %f\n" % (n, time.time()))
            if delay == float("inf"):
                while True:
                    time.sleep(1)
            time.sleep(delay)
        if answer == "500":
            self.send_response(500)
            self.end_headers()
            return
        if answer == "garbage":
            body = b"this is { not a metrics page\n"
        else:
            body = ("# TYPE app_scrapes_total counter\napp_scrapes_total %d\n" % n).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"##;

/// How the app behaves.
#[derive(Clone, Copy)]
struct AppSpec {
    hang_after: i32,
    delay: &'static str,
    answer: &'static str,
    on_stop: &'static str,
}

impl AppSpec {
    fn healthy(on_stop: &'static str) -> Self {
        AppSpec {
            hang_after: -1,
            delay: "0",
            answer: "ok",
            on_stop,
        }
    }

    /// Answers `answered` scrapes, then hangs for good.
    fn hanging_after(answered: i32, on_stop: &'static str) -> Self {
        AppSpec {
            hang_after: answered,
            delay: "inf",
            ..AppSpec::healthy(on_stop)
        }
    }
}

/// The sidecar's settings for one case.
struct Settings {
    interval: &'static str,
    timeout: &'static str,
    budget: Duration,
}

/// A running sidecar with its app.
struct Case {
    name: &'static str,
    /// The `instance` label (`HOSTNAME`), one per case.
    host: String,
    started: Instant,
    sidecar: std::process::Child,
    marker: PathBuf,
    log: PathBuf,
    admin_port: u16,
    budget: Duration,
    _dir: tempfile::TempDir,
}

fn secs(duration: Duration) -> String {
    format!("{:.2}s", duration.as_secs_f64())
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

impl Case {
    /// Starts the sidecar in wrapper mode around the Python app, remote-writing to `write_url`.
    fn start(name: &'static str, settings: Settings, app: AppSpec, write_url: &str) -> Case {
        let python = require_tool("python3").expect("python3 runs the test app");
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let log = dir.path().join("sidecar.log");
        let port = free_port();
        let admin_port = free_port();
        let budget = format!("{}ms", settings.budget.as_millis());
        let host = format!("shutdown-test-{port}");
        let sidecar = Command::new(BIN)
            .args(["--scrape-url", &format!("http://127.0.0.1:{port}/metrics")])
            .args(["--scrape-interval", settings.interval])
            .args(["--scrape-timeout", settings.timeout])
            .args(["--shutdown-budget", &budget])
            .args(["--remote-write-url", write_url])
            .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .arg("--")
            .arg(python)
            .args(["-c", APP, &port.to_string(), &app.hang_after.to_string()])
            .args([app.delay, app.answer, app.on_stop])
            .arg(&marker)
            .env("HOSTNAME", &host)
            .env("WXCLOUDRUN_SIDECAR_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Case {
            name,
            host,
            started: Instant::now(),
            sidecar,
            marker,
            log,
            admin_port,
            budget: settings.budget,
            _dir: dir,
        }
    }

    fn marker_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.marker)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The app's pid.
    async fn app_pid(&self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = self.marker_lines().first().and_then(|l| l.parse().ok()) {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the app did not start",
                self.name
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the app has begun `count` hanging (or slow) answers; returns when the last
    /// began, in Unix seconds.
    async fn hanging(&self, count: usize) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let lines = self.marker_lines();
            if lines.len() > count {
                let began = lines[count].split(' ').nth(1).unwrap();
                return began.parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no hanging scrape",
                self.name
            );
            sleep(Duration::from_millis(5)).await;
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.sidecar.id() as i32), signal).unwrap();
    }

    /// Sends `signal` and waits for the sidecar to end (at most the budget plus ten seconds);
    /// returns its status and how long it took, and prints the measurement.
    async fn stop(&mut self, signal: Signal) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        self.signal(signal);
        self.ended(sent).await
    }

    /// Waits for the sidecar to end, timed from `since`.
    async fn ended(&mut self, since: Instant) -> (ExitStatus, Duration) {
        let limit = since + self.budget + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.sidecar.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > limit {
                let _ = self.sidecar.kill();
                panic!("{}: the sidecar did not exit", self.name);
            }
            sleep(Duration::from_millis(5)).await;
        };
        let took = since.elapsed();
        println!(
            "MEASURED {}: exit {:?} after {} (budget {}); the sidecar's log says elapsed {}",
            self.name,
            status.code(),
            secs(took),
            secs(self.budget),
            self.logged_elapsed().unwrap_or_else(|| "-".to_owned()),
        );
        (status, took)
    }

    /// The promise: gone within the budget plus one second.
    fn assert_within_budget(&self, took: Duration) {
        assert!(
            took <= self.budget + Duration::from_secs(1),
            "{}: {} after the signal, budget {}\n{}",
            self.name,
            secs(took),
            secs(self.budget),
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sidecar's log lines, parsed.
    fn log_lines(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The `elapsed` of the sidecar's last log line (the flush's).
    fn logged_elapsed(&self) -> Option<String> {
        self.log_lines()
            .iter()
            .rev()
            .find_map(|line| line["elapsed"].as_str().map(str::to_owned))
    }

    /// Lines with this message.
    fn logged(&self, message: &str) -> usize {
        let lines = self.log_lines();
        lines
            .iter()
            .filter(|line| line["message"].as_str() == Some(message))
            .count()
    }

    /// `GET path` on the admin listener: (status, body).
    async fn admin(&self, path: &str) -> Option<(u16, String)> {
        let addr = format!("127.0.0.1:{}", self.admin_port).parse().unwrap();
        let (status, body) = wxcloudrun_telemetry_tests::prometheus::http_get(addr, path)
            .await
            .ok()?;
        Some((status, body))
    }
}

/// The values of every `name` sample (stale markers left out) that reached the backend, in
/// arrival order.
fn delivered(backend: &Backend, name: &str) -> Vec<f64> {
    backend
        .bodies()
        .iter()
        .flat_map(|body| decode_remote_write(body).timeseries)
        .filter(|series| {
            series
                .labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == name)
        })
        .flat_map(|series| series.samples)
        .map(|sample| sample.value)
        .filter(|value| value.to_bits() != STALE_NAN_BITS)
        .collect()
}

async fn backend() -> (Backend, String) {
    let backend = Backend::new([]);
    let (_, url) = backend.serve().await;
    (backend, url)
}

/// The issue's own case: 15 s interval, 14 s timeout, 8 s budget, SIGTERM one second into a
/// scrape that hangs. It used to take 15.8 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_one_second_into_a_hanging_scrape_ends_within_the_budget() {
    let _serial = SERIAL.lock().await;
    let (backend, url) = backend().await;
    let settings = Settings {
        interval: "15s",
        timeout: "14s",
        budget: Duration::from_secs(8),
    };
    let app = AppSpec::hanging_after(1, "3");
    let mut case = Case::start("hanging scrape, SIGTERM 1s in", settings, app, &url);
    let began = case.hanging(1).await;
    sleep(Duration::from_secs_f64((began + 1.0 - now_unix()).max(0.0))).await;
    let (status, took) = case.stop(Signal::SIGTERM).await;
    case.assert_within_budget(took);
    assert_eq!(status.code(), Some(3), "the app's exit code");
    assert_eq!(
        delivered(&backend, "app_scrapes_total"),
        [1.0],
        "the first scrape"
    );
    // The cancelled scrape counts as a timed-out one, and `up` fell to 0.
    assert!(delivered(&backend, "up").ends_with(&[0.0]));
    let cancelled = "the scrape under way did not finish within the shutdown budget; cancelled";
    assert_eq!(case.logged(cancelled), 1, "{}", case.log_text());
}

/// Other timeouts and budgets, and SIGTERM at other moments of a hanging scrape: as it begins
/// (cancelled at a quarter of the budget), and late (its own timeout ends it first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_at_the_start_or_late_in_a_hanging_scrape() {
    let _serial = SERIAL.lock().await;
    for (name, interval, timeout, budget, into_the_scrape) in [
        (
            "hanging scrape, SIGTERM as it begins, 2s budget",
            "1s",
            "900ms",
            2,
            0.0,
        ),
        (
            "hanging scrape, SIGTERM 0.3s in, 3s budget",
            "2s",
            "1500ms",
            3,
            0.3,
        ),
        (
            "hanging scrape, SIGTERM 2.5s in, 3s timeout",
            "4s",
            "3s",
            8,
            2.5,
        ),
    ] {
        let (backend, url) = backend().await;
        let settings = Settings {
            interval,
            timeout,
            budget: Duration::from_secs(budget),
        };
        let mut case = Case::start(name, settings, AppSpec::hanging_after(2, "0"), &url);
        let began = case.hanging(1).await;
        let wait = began + into_the_scrape - now_unix();
        sleep(Duration::from_secs_f64(wait.max(0.0))).await;
        let (status, took) = case.stop(Signal::SIGTERM).await;
        case.assert_within_budget(took);
        assert_eq!(status.code(), Some(0), "{name}");
        assert_eq!(
            delivered(&backend, "app_scrapes_total"),
            [1.0, 2.0],
            "{name}"
        );
    }
}

/// A slow scrape under way at SIGTERM that fits its quarter of the budget finishes, and the
/// final scrape follows it: the values of both arrive. With a smaller budget it is cancelled,
/// and the exit still comes in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_scrape_finishes_within_the_budget_or_is_cancelled() {
    let _serial = SERIAL.lock().await;
    for (name, budget, finishes) in [
        ("slow scrape (1s), SIGTERM 0.2s in, 8s budget", 8, true),
        ("slow scrape (1s), SIGTERM 0.2s in, 2s budget", 2, false),
    ] {
        let (backend, url) = backend().await;
        let settings = Settings {
            interval: "3s",
            timeout: "2500ms",
            budget: Duration::from_secs(budget),
        };
        let app = AppSpec {
            delay: "1",
            ..AppSpec::hanging_after(1, "0")
        };
        let mut case = Case::start(name, settings, app, &url);
        let began = case.hanging(1).await;
        sleep(Duration::from_secs_f64((began + 0.2 - now_unix()).max(0.0))).await;
        let (status, took) = case.stop(Signal::SIGTERM).await;
        case.assert_within_budget(took);
        assert_eq!(status.code(), Some(0), "{name}");
        let values = delivered(&backend, "app_scrapes_total");
        if finishes {
            assert_eq!(values, [1.0, 2.0, 3.0], "{name}: both scrapes' values");
            assert!(
                took >= Duration::from_millis(1700),
                "{name}: it waited for both"
            );
        } else {
            assert_eq!(values, [1.0], "{name}");
        }
    }
}

/// SIGINT is SIGTERM; a second signal during the shutdown changes nothing (the budget counts
/// from the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_and_a_second_sigterm_count_from_the_first_signal() {
    let _serial = SERIAL.lock().await;
    for (name, first) in [
        (
            "hanging scrape, SIGINT 0.5s in, then SIGTERM",
            Signal::SIGINT,
        ),
        (
            "hanging scrape, SIGTERM 0.5s in, then SIGTERM",
            Signal::SIGTERM,
        ),
    ] {
        let (backend, url) = backend().await;
        let settings = Settings {
            interval: "4s",
            timeout: "3s",
            budget: Duration::from_secs(4),
        };
        let mut case = Case::start(name, settings, AppSpec::hanging_after(1, "7"), &url);
        let began = case.hanging(1).await;
        sleep(Duration::from_secs_f64((began + 0.5 - now_unix()).max(0.0))).await;
        let sent = Instant::now();
        case.signal(first);
        sleep(Duration::from_millis(500)).await;
        case.signal(Signal::SIGTERM);
        let (status, took) = case.ended(sent).await;
        case.assert_within_budget(took);
        assert_eq!(status.code(), Some(7), "{name}");
        assert_eq!(delivered(&backend, "app_scrapes_total"), [1.0], "{name}");
        assert_eq!(
            case.logged("already shutting down; the budget counts from the first signal"),
            1,
            "{name}"
        );
    }
}

/// A backend that answers 503 to everything: the sidecar retries until the end of the budget,
/// then gives up on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_export_retries_ends_at_the_budget() {
    let _serial = SERIAL.lock().await;
    let (backend, url) = backend().await;
    backend.answer_with(Reply::Status(503));
    let settings = Settings {
        interval: "1s",
        timeout: "500ms",
        budget: Duration::from_secs(3),
    };
    let mut case = Case::start(
        "export retrying (503), SIGTERM",
        settings,
        AppSpec::healthy("0"),
        &url,
    );
    assert!(backend.wait_for(2, Duration::from_secs(15)).await);
    let (status, took) = case.stop(Signal::SIGTERM).await;
    case.assert_within_budget(took);
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= Duration::from_secs(2),
        "it kept trying ({})",
        secs(took)
    );
}

/// An app that ignores SIGTERM is killed when the flush's reserve begins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_ignoring_sigterm_is_killed_within_the_budget() {
    let _serial = SERIAL.lock().await;
    let (backend, url) = backend().await;
    let settings = Settings {
        interval: "1s",
        timeout: "500ms",
        budget: Duration::from_secs(3),
    };
    let mut case = Case::start(
        "app ignoring SIGTERM",
        settings,
        AppSpec::healthy("ignore"),
        &url,
    );
    assert!(backend.wait_for(1, Duration::from_secs(15)).await);
    let (status, took) = case.stop(Signal::SIGTERM).await;
    case.assert_within_budget(took);
    assert_eq!(status.code(), Some(128 + 9), "killed");
    assert!(!delivered(&backend, "app_scrapes_total").is_empty());
}

/// SIGTERM when the app is already gone (killed just before): no waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_the_app_is_gone_ends_at_once() {
    let _serial = SERIAL.lock().await;
    let (backend, url) = backend().await;
    let settings = Settings {
        interval: "1s",
        timeout: "500ms",
        budget: Duration::from_secs(8),
    };
    let mut case = Case::start("app already gone", settings, AppSpec::healthy("0"), &url);
    assert!(backend.wait_for(1, Duration::from_secs(15)).await);
    kill(Pid::from_raw(case.app_pid().await), Signal::SIGKILL).unwrap();
    let (status, took) = case.stop(Signal::SIGTERM).await;
    case.assert_within_budget(took);
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "the app's end, as a shell reports it"
    );
    assert!(took < Duration::from_secs(2), "{}", secs(took));
    assert!(!delivered(&backend, "app_scrapes_total").is_empty());
}

/// SIGTERM while the app has not answered yet (warm-up): it ends at once with the app's code.
/// Until then, failed polls after the first second are counted, logged once, and `/readyz`
/// says why it is not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_warm_up_and_what_warm_up_shows() {
    let _serial = SERIAL.lock().await;
    let (backend, url) = backend().await;
    let settings = Settings {
        interval: "15s",
        timeout: "1s",
        budget: Duration::from_secs(8),
    };
    // The "app" never listens: a shell that exits 4 on SIGTERM.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sidecar.log");
    let admin_port = free_port();
    let sidecar = Command::new(BIN)
        .args([
            "--scrape-url",
            &format!("http://127.0.0.1:{}/metrics", free_port()),
        ])
        .args(["--scrape-interval", settings.interval])
        .args(["--scrape-timeout", settings.timeout])
        .args(["--shutdown-budget", "8s", "--remote-write-url", &url])
        .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
        .args([
            "--",
            "sh",
            "-c",
            "trap 'exit 4' TERM; while :; do sleep 0.05; done",
        ])
        .env("HOSTNAME", "shutdown-test")
        .env("WXCLOUDRUN_SIDECAR_LOG", "info")
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut case = Case {
        name: "warm-up (nothing listens), SIGTERM",
        host: "shutdown-test".to_owned(),
        started: Instant::now(),
        sidecar,
        marker: dir.path().join("none"),
        log,
        admin_port,
        budget: settings.budget,
        _dir: dir,
    };
    sleep(Duration::from_millis(2500)).await;
    let (status, body) = case.admin("/readyz").await.expect("the admin listener");
    assert_eq!(status, 503);
    assert!(body.contains("connection refused"), "{body}");
    let (_, metrics) = case.admin("/metrics").await.unwrap();
    let errors = scrape_errors(&metrics);
    // Polled every 250 ms; counted after the first second.
    assert!(errors >= 3.0, "{errors} failed polls counted\n{metrics}");
    assert!(delivered(&backend, "up").iter().all(|up| *up == 0.0));
    assert!(!delivered(&backend, "up").is_empty(), "up 0 is sent");
    assert_eq!(
        case.logged("the app's metrics endpoint does not answer yet"),
        1,
        "one line for the state, not one per poll\n{}",
        case.log_text()
    );
    let (status, took) = case.stop(Signal::SIGTERM).await;
    case.assert_within_budget(took);
    assert_eq!(status.code(), Some(4));
    assert!(took < Duration::from_secs(2), "{}", secs(took));
}

/// A target broken from the start (500, then a page that does not parse) is scraped on the
/// interval and shows as `up 0` in a real Prometheus receiving remote write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_broken_from_the_start_is_up_0_in_prometheus() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let prometheus = Prometheus::start(
        &binary,
        |_, _| "global:\n  scrape_interval: 1m\n".to_owned(),
        &["--web.enable-remote-write-receiver"],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    prometheus.wait_ready(deadline).await.unwrap();
    let url = format!("http://{}/api/v1/write", prometheus.addr());
    for (name, answer) in [
        ("broken target (500)", "500"),
        ("broken target (garbage)", "garbage"),
    ] {
        let settings = Settings {
            interval: "1s",
            timeout: "500ms",
            budget: Duration::from_secs(4),
        };
        let app = AppSpec {
            answer,
            ..AppSpec::healthy("0")
        };
        let mut case = Case::start(name, settings, app, &url);
        let up_query = format!("up{{instance=\"{}\"}}", case.host);
        let errors_query = format!(
            "wxcloudrun_sidecar_scrapes_total{{instance=\"{}\",outcome=\"error\"}} > 0",
            case.host
        );
        let reached = wait_for(deadline, || async {
            let up = prometheus.query(&up_query).await?;
            let errors = prometheus.query(&errors_query).await?;
            match (up.first().map(|r| r["value"][1].clone()), errors.len()) {
                (Some(Value::String(v)), 1) if v == "0" => Ok(()),
                other => Err(format!("not there yet: {other:?}")),
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "{name}: {reached:?}\n{}",
            prometheus.log_tail()
        );
        let (status, body) = case.admin("/readyz").await.unwrap();
        assert_eq!(status, 503, "{name}");
        let why = if answer == "500" {
            "HTTP status 500"
        } else {
            "does not parse"
        };
        assert!(body.contains(why), "{name}: {body}");
        // Scraped on the interval (1 s), not every 250 ms.
        let (_, metrics) = case.admin("/metrics").await.unwrap();
        let errors = scrape_errors(&metrics);
        let seconds = case.started.elapsed().as_secs_f64();
        assert!(
            errors <= seconds + 1.0,
            "{name}: {errors} failed scrapes counted in {seconds:.1}s"
        );
        let (status, took) = case.stop(Signal::SIGTERM).await;
        case.assert_within_budget(took);
        assert_eq!(status.code(), Some(0), "{name}");
    }
}

/// `wxcloudrun_sidecar_scrapes_total{outcome="error"}` on an admin `/metrics` page.
fn scrape_errors(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("wxcloudrun_sidecar_scrapes_total{outcome=\"error\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
