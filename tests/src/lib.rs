//! Helpers shared by the end-to-end tests: where the repository's files are, the metric contract,
//! reading the Grafana dashboards and the Prometheus rules, a PromQL lexer that finds the metric
//! names in an expression, finding the Prometheus binaries, and running a real Prometheus (also
//! over HTTPS behind a web configuration, with a throwaway PKI made at run time), an OTLP
//! trace receiver, and scrape targets served from threads of their own.

pub mod contract;
pub mod dashboards;
pub mod otlp;
pub mod prometheus;
pub mod promql;
pub mod rules;
pub mod target;
pub mod tls;
pub mod web_config;

use std::io::Write;
use std::path::{Path, PathBuf};

/// The workspace root (this package lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits inside the workspace")
        .to_path_buf()
}

/// `dashboards/` in the repository.
pub fn dashboards_dir() -> PathBuf {
    repo_root().join("dashboards")
}

/// Reads a file of the repository, naming it in the panic message.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Files in `dir` whose name ends with `suffix`, sorted.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// Finds a Prometheus tool (`prometheus`, `promtool`): `$PROMETHEUS` / `$PROMTOOL` when set, else
/// the `PATH`. Without it the test is skipped loudly, except under CI (`CI=true`), where a
/// missing tool is a failure: CI must not go green without running these tests.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let from_env = std::env::var_os(name.to_uppercase()).map(PathBuf::from);
    let from_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    };
    let found = from_env.filter(|p| p.is_file()).or_else(from_path);
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} not found (set ${} or put it on PATH); CI must run this test",
            name.to_uppercase()
        );
        // Straight to stderr: libtest captures eprintln! of passing tests, and a skip must show.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: {name} not found (set ${} or put it on PATH) ***\n",
            name.to_uppercase()
        );
    }
    found
}
