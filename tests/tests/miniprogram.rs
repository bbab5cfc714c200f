//! The Mini Program package (`miniprogram/`, plain JavaScript): runs its Node test suite
//! (`node --test miniprogram/test/`) and a short run of its overhead benchmark. Without `node` the
//! tests are skipped loudly, except under CI (`CI=true`), where a missing `node` is a failure.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wxcloudrun_telemetry_tests::{repo_root, require_tool};

/// `node --test` with a TAP reporter needs Node 18.15 or later.
const MIN_NODE: (u32, u32) = (18, 15);
/// A hung Node test run fails the test instead of hanging `cargo test`.
const TIMEOUT: Duration = Duration::from_secs(180);

fn miniprogram_dir() -> PathBuf {
    repo_root().join("miniprogram")
}

/// Finds `node` (`$NODE` or the `PATH`) and checks its version. `None`: skipped (said loudly on
/// stderr); under CI a missing or too old `node` panics instead.
fn node() -> Option<PathBuf> {
    let node = require_tool("node")?;
    let version = Command::new(&node)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run {} --version: {e}", node.display()));
    let text = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let mut parts = text
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_NODE {
        let message = format!(
            "node {text} at {} is older than {}.{} (node --test with --test-reporter)",
            node.display(),
            MIN_NODE.0,
            MIN_NODE.1
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{message}; CI must run this test"
        );
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {message} ***\n");
        return None;
    }
    Some(node)
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `node args…` in `dir`, collecting both outputs, killing it after [`TIMEOUT`].
fn run_node(node: &Path, dir: &Path, args: &[&str]) -> Run {
    let mut child = Command::new(node)
        .args(args)
        .current_dir(dir)
        // The package's tests must not depend on whatever the caller's shell preloads.
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", node.display()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().expect("stdout reader");
    let mut stderr = stderr.join().expect("stderr reader");
    if status.is_none() {
        stderr.push_str(&format!("\n[killed after {} s]", TIMEOUT.as_secs()));
    }
    Run {
        success: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    }
}

/// `# pass 65` → 65, from the TAP summary.
fn tap_count(stdout: &str, key: &str) -> Option<u64> {
    let prefix = format!("# {key} ");
    stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn miniprogram_node_tests_pass() {
    let Some(node) = node() else {
        return;
    };
    let dir = miniprogram_dir();
    let tests = dir.join("test");
    assert!(tests.is_dir(), "{} is missing", tests.display());
    let run = run_node(&node, &dir, &["--test", "--test-reporter=tap", "test/"]);
    let report = format!(
        "node --test {} failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
        tests.display(),
        run.stdout,
        run.stderr
    );
    assert!(run.success, "{report}");
    let pass = tap_count(&run.stdout, "pass");
    let fail = tap_count(&run.stdout, "fail");
    let cancelled = tap_count(&run.stdout, "cancelled");
    assert_eq!(fail, Some(0), "{report}");
    assert_eq!(cancelled, Some(0), "{report}");
    assert!(
        pass.is_some_and(|n| n >= 50),
        "expected the whole suite to run (>= 50 tests): {report}"
    );
    // Straight to stderr: libtest captures the output of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "miniprogram: node --test passed {} tests",
        pass.unwrap_or(0)
    );
}

#[test]
fn miniprogram_overhead_benchmark_runs() {
    let Some(node) = node() else {
        return;
    };
    let dir = miniprogram_dir();
    let run = run_node(&node, &dir, &["bench/overhead.js", "2000"]);
    let report = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        run.stdout, run.stderr
    );
    assert!(run.success, "node bench/overhead.js failed\n{report}");
    for style in ["callbacks", "promises"] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(style))
            .unwrap_or_else(|| panic!("no {style} line\n{report}"));
        assert!(line.contains("ns/call") && line.contains("ratio"), "{line}");
    }
    assert!(run.stdout.contains(" 0 internal errors"), "{report}");
}
