//! The binary in wrapper mode: exit codes, signals, the final scrape, zombies, configuration.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use wxcloudrun_telemetry_tests::target::serve_router;

const BIN: &str = env!("CARGO_BIN_EXE_wxcloudrun-sidecar");

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The sidecar with quick settings and nothing to export to.
fn sidecar(scrape_url: &str) -> Command {
    sidecar_with_budget(scrape_url, "2s")
}

fn sidecar_with_budget(scrape_url: &str, budget: &str) -> Command {
    let mut command = base(scrape_url, budget);
    command.args(["--admin-addr", "127.0.0.1:0"]);
    command
}

/// Quick settings, quiet logs, no admin address yet.
fn base(scrape_url: &str, budget: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["--scrape-url", scrape_url])
        .args(["--scrape-interval", "1s", "--scrape-timeout", "500ms"])
        .args(["--shutdown-budget", budget])
        .env("HOSTNAME", "test-pod")
        .env("WXCLOUDRUN_SIDECAR_LOG", "warn")
        .stdout(Stdio::null());
    command
}

/// Waits for `child` at most `limit` (a hang is a failure, not a stuck test run).
fn wait(child: &mut std::process::Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the sidecar did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sh(script: &str) -> [&str; 4] {
    ["--", "sh", "-c", script]
}

/// Nothing listens there: scrapes are refused.
const NOWHERE: &str = "http://127.0.0.1:9/metrics";

#[test]
fn exit_codes_propagate() {
    for (script, code) in [("exit 0", 0), ("exit 3", 3), ("kill -KILL $$", 137)] {
        let mut child = sidecar(NOWHERE).args(sh(script)).spawn().unwrap();
        let status = wait(&mut child, Duration::from_secs(15));
        assert_eq!(status.code(), Some(code), "{script}");
    }
}

#[test]
fn a_missing_program_exits_127() {
    let status = sidecar(NOWHERE)
        .args(["--", "/nonexistent/server"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(127));
}

/// A metrics target in a thread of its own that records when it was scraped.
struct Target {
    url: String,
    scrapes: Arc<Mutex<Vec<u128>>>,
}

fn target() -> Target {
    let scrapes: Arc<Mutex<Vec<u128>>> = Arc::default();
    let recorded = scrapes.clone();
    let addr = serve_router(move || {
        Router::new().route(
            "/metrics",
            get(move || {
                recorded.lock().unwrap().push(now_ns());
                async { "# TYPE jobs_total counter\njobs_total 7\n" }
            }),
        )
    });
    Target {
        url: format!("http://{addr}/metrics"),
        scrapes,
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(child: &std::process::Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
}

#[test]
fn sigterm_is_forwarded_after_a_final_scrape() {
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    let term_file = dir.path().join("term");
    let script = format!(
        "trap 'date +%s%N > {}; exit 0' TERM; while :; do sleep 0.05; done",
        term_file.display()
    );
    let mut child = sidecar(&target.url).args(sh(&script)).spawn().unwrap();
    wait_for("two scrapes", Duration::from_secs(15), || {
        target.scrapes.lock().unwrap().len() >= 2
    });
    let sent = now_ns();
    sigterm(&child);
    let status = wait(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "the app's own exit code");

    let app_got_term: u128 = std::fs::read_to_string(&term_file)
        .expect("the app received SIGTERM")
        .trim()
        .parse()
        .unwrap();
    let scrapes = target.scrapes.lock().unwrap().clone();
    assert!(
        scrapes.iter().any(|&t| t > sent && t < app_got_term),
        "a scrape between SIGTERM ({sent}) and the app receiving it ({app_got_term}): {scrapes:?}"
    );
}

#[test]
fn an_app_that_ignores_sigterm_is_killed_at_the_end_of_the_budget() {
    let target = target();
    let mut child = sidecar_with_budget(&target.url, "1s")
        .args(sh("trap '' TERM; while :; do sleep 0.05; done"))
        .spawn()
        .unwrap();
    wait_for("a scrape", Duration::from_secs(15), || {
        !target.scrapes.lock().unwrap().is_empty()
    });
    sigterm(&child);
    // Generous: the budget is 1 s; this only catches a sidecar that never gives up.
    let status = wait(&mut child, Duration::from_secs(6));
    assert_eq!(status.code(), Some(128 + 9));
}

fn is_zombie_or_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn orphans_of_the_app_are_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("orphan");
    // The subshell exits at once; its background `sleep` is orphaned, adopted by the sidecar
    // (child subreaper), and must not stay a zombie after it ends.
    let script = format!(
        "( sleep 0.3 & echo $! > {} ); while :; do sleep 0.05; done",
        pid_file.display()
    );
    let mut child = sidecar(NOWHERE).args(sh(&script)).spawn().unwrap();
    wait_for("the orphan's pid", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let orphan: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap_or_default();
    let parent: u32 = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|ppid| ppid.parse().ok())
        .unwrap_or(0);
    if parent != 0 {
        assert_eq!(parent, child.id(), "the orphan was adopted by the sidecar");
    }
    wait_for("the orphan to be reaped", Duration::from_secs(10), || {
        !is_zombie_or_alive(orphan)
    });
    sigterm(&child);
    wait(&mut child, Duration::from_secs(10));
}

fn check_config(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(BIN);
    command.arg("--check-config").args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn configuration_precedence_is_flags_env_file_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sidecar.toml");
    std::fs::write(
        &file,
        "scrape_interval = \"30s\"\nshutdown_budget = \"5s\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let env = [("WXCLOUDRUN_SIDECAR_SCRAPE_INTERVAL", "20s")];

    let (code, out, _) = check_config(&["--config", file, "--scrape-interval", "10s"], &env);
    assert_eq!(code, Some(0));
    // The effective configuration as TOML, each value followed by its source.
    assert!(
        out.contains("scrape_interval = \"10s\"  # flag --scrape-interval"),
        "flag wins:\n{out}"
    );
    let (_, out, _) = check_config(&["--config", file], &env);
    assert!(
        out.contains("scrape_interval = \"20s\"  # env WXCLOUDRUN_SIDECAR_SCRAPE_INTERVAL"),
        "env beats file:\n{out}"
    );
    let (_, out, _) = check_config(&["--config", file], &[]);
    assert!(
        out.contains("scrape_interval = \"30s\"  # file"),
        "file beats default:\n{out}"
    );
    assert!(out.contains("shutdown_budget = \"5s\"  # file"), "{out}");
    let (_, out, _) = check_config(&[], &[]);
    assert!(
        out.contains("scrape_interval = \"15s\"  # default"),
        "default:\n{out}"
    );
    // What it prints is a file the sidecar reads back.
    std::fs::write(dir.path().join("printed.toml"), &out).unwrap();
    let printed = dir.path().join("printed.toml");
    let (code, again, err) = check_config(&["--config", printed.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{err}\n{out}");
    assert!(
        again.contains("scrape_interval = \"15s\"  # file"),
        "{again}"
    );
}

#[test]
fn bad_configuration_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "scrape_url = \"http://127.0.0.1:1/metrics\"\nqueue_max = 5\n",
    )
    .unwrap();
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["--config", file.to_str().unwrap()], "queue_max"),
        (
            vec!["--scrape-interval", "1s", "--scrape-timeout", "5s"],
            "--scrape-timeout",
        ),
        (vec!["--label", "0bad=x"], "--label"),
        (vec!["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, key) in cases {
        let (code, _, err) = check_config(&args, &[]);
        assert_eq!(code, Some(64), "{args:?}: {err}");
        assert!(err.contains(key), "{args:?} should name {key}: {err}");
    }
    let (code, _, err) = check_config(&[], &[("WXCLOUDRUN_SIDECAR_SHUTDOWN_BUDGET", "soon")]);
    assert_eq!(code, Some(64));
    assert!(err.contains("WXCLOUDRUN_SIDECAR_SHUTDOWN_BUDGET"), "{err}");
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// `GET path` with a bare HTTP/1.0 request: (status, body), or `None` while nothing listens.
fn admin_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nhost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

#[test]
fn admin_endpoints_report_health_readiness_and_self_metrics() {
    let waiting_port = free_port();
    let mut waiting = base(NOWHERE, "2s")
        .args(["--admin-addr", &format!("127.0.0.1:{waiting_port}")])
        .args(sh("while :; do sleep 0.05; done"))
        .spawn()
        .unwrap();
    let target = target();
    let ready_port = free_port();
    let mut ready = base(&target.url, "2s")
        .args(["--admin-addr", &format!("127.0.0.1:{ready_port}")])
        .args(sh("while :; do sleep 0.05; done"))
        .spawn()
        .unwrap();

    wait_for("the admin listener", Duration::from_secs(10), || {
        admin_get(waiting_port, "/healthz").is_some()
    });
    assert_eq!(admin_get(waiting_port, "/healthz").unwrap().0, 200);
    assert_eq!(
        admin_get(waiting_port, "/readyz").unwrap().0,
        503,
        "not ready before a scrape succeeded"
    );
    wait_for("readiness after a scrape", Duration::from_secs(10), || {
        admin_get(ready_port, "/readyz").is_some_and(|(status, _)| status == 200)
    });
    let (status, metrics) = admin_get(ready_port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("wxcloudrun_sidecar_scrapes_total{outcome=\"success\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("wxcloudrun_sidecar_process_resident_memory_bytes"));

    for child in [&mut waiting, &mut ready] {
        sigterm(child);
        wait(child, Duration::from_secs(10));
    }
}

#[test]
fn shutdown_ends_within_the_budget_when_the_backend_hangs() {
    // A backend that accepts connections and never answers.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let write_url = format!("http://{}/api/v1/write", backend.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    std::thread::spawn(move || {
        for stream in backend.incoming().flatten() {
            holder.lock().unwrap().push(stream);
        }
    });
    let target = target();
    let mut child = sidecar_with_budget(&target.url, "2s")
        .args(["--remote-write-url", &write_url])
        .args(sh("trap 'exit 0' TERM; while :; do sleep 0.05; done"))
        .spawn()
        .unwrap();
    wait_for("a scrape", Duration::from_secs(15), || {
        !target.scrapes.lock().unwrap().is_empty()
    });
    let started = Instant::now();
    sigterm(&child);
    // The budget is 2 s; the slack only absorbs a loaded machine, not a hang.
    let status = wait(&mut child, Duration::from_secs(8));
    assert_eq!(status.code(), Some(0), "the app's exit code, not a failure");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "it kept trying until near the end of the budget ({:?})",
        started.elapsed()
    );
    assert!(
        !held.lock().unwrap().is_empty(),
        "the backend was contacted"
    );
}
