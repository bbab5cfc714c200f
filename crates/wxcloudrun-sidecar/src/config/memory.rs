//! The memory budget (`--memory-limit`) and Prometheus's per-scrape limits (`sample_limit`,
//! `label_limit`, `label_name_length_limit`, `label_value_length_limit`, `body_size_limit`).
//!
//! The budget defaults to a fraction of the container's cgroup memory limit: the sidecar shares
//! the container with the app (it is PID 1 in wrapper mode), and must never be the reason the
//! kernel kills it. How the budget is kept is `pipeline::budget`'s.

use std::path::Path;
use std::time::Duration;

use super::cli::Cli;
use super::file::{FileConfig, NumberOrText};
use super::merge::{ConfigError, Loader};
use super::units::{parse_bytes, parse_duration};

/// Where cgroup file systems are mounted in a container.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The share of the container's cgroup memory limit the sidecar allows itself by default: an
/// eighth — 64 MiB of a 0.5 GiB instance, 256 MiB of a 2 GiB one.
pub const DEFAULT_MEMORY_LIMIT_FRACTION: f64 = 0.125;
/// The budget without a cgroup limit (not in a container, or an unlimited one).
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 256 << 20;
/// The smallest budget: below it even a small page and the sidecar's own footprint do not fit.
pub const MIN_MEMORY_LIMIT_BYTES: u64 = 32 << 20;
/// Queued batches older than this are dropped when the worker reaches them, unless the scrape
/// interval is longer (then two intervals): after a flood, fresh scrapes are not stuck behind
/// a stale backlog. Defaults to 30 s.
pub const DEFAULT_QUEUE_MAX_AGE: Duration = Duration::from_secs(30);

/// Prometheus's per-scrape limits, with Prometheus's names and meaning: `0` is no limit (the
/// default of each, as in Prometheus); exceeding one fails the whole scrape (`up` 0, the app's
/// series stale) and counts it by the limit's name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeLimits {
    /// Most samples in one page (Prometheus counts them after relabelling; the sidecar has no
    /// metric relabelling, so every sample line). Defaults to 0, no limit.
    pub sample_limit: u64,
    /// Most labels on one series, counted as Prometheus does: with `__name__` and the labels the
    /// sidecar adds (`instance`, `wx_env`, `wx_service`, `--label`s). Defaults to 0, no limit.
    pub label_limit: u64,
    /// Longest label name in bytes. Defaults to 0, no limit.
    pub label_name_length_limit: u64,
    /// Longest label value in bytes, the metric name included (it is the `__name__` label's
    /// value). Defaults to 0, no limit.
    pub label_value_length_limit: u64,
    /// Largest body in bytes, after gzip is undone. Defaults to 0, no limit (the memory budget
    /// and the parser's 32 MiB still bound it).
    pub body_size_limit_bytes: u64,
}

/// The container's memory limit under `root` (a cgroup v2 `memory.max`, else a cgroup v1
/// `memory/memory.limit_in_bytes`); `None` when there is none, it is unlimited (`max`, or v1's
/// "no limit" value near `i64::MAX`), or it cannot be read.
pub fn cgroup_memory_limit(root: &Path) -> Option<u64> {
    // v1 writes "no limit" as the largest page-aligned i64; anything above 2^60 is no limit.
    const UNLIMITED_FROM: u64 = 1 << 60;
    let read = |path: &Path| std::fs::read_to_string(path).ok();
    let text = read(&root.join("memory.max"))
        .or_else(|| read(&root.join("memory").join("memory.limit_in_bytes")))?;
    let text = text.trim();
    if text == "max" {
        return None;
    }
    text.parse::<u64>()
        .ok()
        .filter(|&bytes| bytes > 0 && bytes < UNLIMITED_FROM)
}

/// The default budget for a container limit of `cgroup_limit` bytes (see
/// [`DEFAULT_MEMORY_LIMIT_FRACTION`], [`DEFAULT_MEMORY_LIMIT_BYTES`]), never below
/// [`MIN_MEMORY_LIMIT_BYTES`].
pub fn default_memory_limit(cgroup_limit: Option<u64>) -> u64 {
    match cgroup_limit {
        Some(limit) => {
            ((limit as f64 * DEFAULT_MEMORY_LIMIT_FRACTION) as u64).max(MIN_MEMORY_LIMIT_BYTES)
        }
        None => DEFAULT_MEMORY_LIMIT_BYTES,
    }
}

/// `--memory-limit`: a size of at least [`MIN_MEMORY_LIMIT_BYTES`].
pub(crate) fn parse_memory_limit(text: &str) -> Result<u64, String> {
    let bytes = parse_bytes(text)?;
    if bytes < MIN_MEMORY_LIMIT_BYTES {
        return Err(format!(
            "must be at least {}MiB",
            MIN_MEMORY_LIMIT_BYTES >> 20
        ));
    }
    Ok(bytes)
}

/// A count limit: a whole number, 0 for none.
pub(crate) fn parse_count(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<u64>()
        .map_err(|_| format!("{text:?} is not a whole number (0 for no limit)"))
}

/// `body_size_limit`: a size, 0 for none.
pub(crate) fn parse_size_limit(text: &str) -> Result<u64, String> {
    parse_bytes(text)
}

/// `queue_max_age`: a duration, 0 for none.
pub(crate) fn parse_max_age(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// The default `queue_max_age` for a scrape interval: [`DEFAULT_QUEUE_MAX_AGE`], or two
/// intervals when that is longer (a batch must be able to wait for the next scrape).
pub fn default_queue_max_age(scrape_interval: Duration) -> Duration {
    DEFAULT_QUEUE_MAX_AGE.max(scrape_interval.saturating_mul(2))
}

/// The budget and limits, as `Config::load` resolves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySettings {
    /// The budget in bytes.
    pub memory_limit_bytes: u64,
    /// The container's cgroup limit the default was taken from, if any.
    pub cgroup_limit_bytes: Option<u64>,
    /// Prometheus's per-scrape limits.
    pub scrape_limits: ScrapeLimits,
    /// The age past which queued requests are dropped (zero: never).
    pub queue_max_age: Duration,
}

/// The flags (or their variables) of this module, taken out of the [`Cli`].
#[derive(Debug, Default)]
pub(super) struct Flags {
    memory_limit: Option<String>,
    queue_max_age: Option<String>,
    sample_limit: Option<String>,
    label_limit: Option<String>,
    label_name_length_limit: Option<String>,
    label_value_length_limit: Option<String>,
    body_size_limit: Option<String>,
}

impl Flags {
    pub(super) fn take(cli: &mut Cli) -> Flags {
        Flags {
            memory_limit: cli.memory_limit.take(),
            queue_max_age: cli.queue_max_age.take(),
            sample_limit: cli.sample_limit.take(),
            label_limit: cli.label_limit.take(),
            label_name_length_limit: cli.label_name_length_limit.take(),
            label_value_length_limit: cli.label_value_length_limit.take(),
            body_size_limit: cli.body_size_limit.take(),
        }
    }
}

/// Resolves `--memory-limit`, the per-scrape limits and `--queue-max-age` (flags > env > file >
/// defaults). The cgroup root is `WXCLOUDRUN_SIDECAR_CGROUP_ROOT` when set (for tests), else
/// [`CGROUP_ROOT`].
pub(super) fn load(
    loader: &mut Loader<'_>,
    cli: Flags,
    file: &FileConfig,
    scrape_interval: Duration,
) -> Result<MemorySettings, ConfigError> {
    let root = loader
        .env("WXCLOUDRUN_SIDECAR_CGROUP_ROOT")
        .unwrap_or_else(|| CGROUP_ROOT.to_owned());
    let cgroup_limit_bytes = cgroup_memory_limit(Path::new(&root));
    let memory_limit_bytes = loader.pick_flag(
        "memory_limit",
        ("--memory-limit", cli.memory_limit.clone()),
        file.memory_limit.clone(),
        parse_memory_limit,
        default_memory_limit(cgroup_limit_bytes),
    )?;
    let queue_max_age = loader.pick_flag(
        "queue_max_age",
        ("--queue-max-age", cli.queue_max_age.clone()),
        file.queue_max_age.clone(),
        parse_max_age,
        default_queue_max_age(scrape_interval),
    )?;
    let scrape_limits = scrape_limits(loader, &cli, file)?;
    Ok(MemorySettings {
        memory_limit_bytes,
        cgroup_limit_bytes,
        scrape_limits,
        queue_max_age,
    })
}

/// Prometheus's per-scrape limits, each 0 (no limit) by default.
fn scrape_limits(
    loader: &mut Loader<'_>,
    cli: &Flags,
    file: &FileConfig,
) -> Result<ScrapeLimits, ConfigError> {
    let text = |value: &Option<NumberOrText>| value.as_ref().map(NumberOrText::text);
    let mut count =
        |key: &str, flag: &'static str, value: &Option<String>, file: &Option<NumberOrText>| {
            loader.pick_flag(key, (flag, value.clone()), text(file), parse_count, 0)
        };
    let sample_limit = count(
        "sample_limit",
        "--sample-limit",
        &cli.sample_limit,
        &file.sample_limit,
    )?;
    let label_limit = count(
        "label_limit",
        "--label-limit",
        &cli.label_limit,
        &file.label_limit,
    )?;
    let label_name_length_limit = count(
        "label_name_length_limit",
        "--label-name-length-limit",
        &cli.label_name_length_limit,
        &file.label_name_length_limit,
    )?;
    let label_value_length_limit = count(
        "label_value_length_limit",
        "--label-value-length-limit",
        &cli.label_value_length_limit,
        &file.label_value_length_limit,
    )?;
    let body_size_limit_bytes = loader.pick_flag(
        "body_size_limit",
        ("--body-size-limit", cli.body_size_limit.clone()),
        text(&file.body_size_limit),
        parse_size_limit,
        0,
    )?;
    Ok(ScrapeLimits {
        sample_limit,
        label_limit,
        label_name_length_limit,
        label_value_length_limit,
        body_size_limit_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn the_cgroup_limit_is_read_from_v2_then_v1() {
        let v2 = root_with(&[("memory.max", "536870912\n")]);
        assert_eq!(cgroup_memory_limit(v2.path()), Some(512 << 20));
        let v1 = root_with(&[("memory/memory.limit_in_bytes", "1073741824\n")]);
        assert_eq!(cgroup_memory_limit(v1.path()), Some(1 << 30));
        // v2 wins when both are there.
        let both = root_with(&[
            ("memory.max", "268435456"),
            ("memory/memory.limit_in_bytes", "1073741824"),
        ]);
        assert_eq!(cgroup_memory_limit(both.path()), Some(256 << 20));
    }

    #[test]
    fn unlimited_missing_or_garbled_cgroups_give_no_limit() {
        let max = root_with(&[("memory.max", "max\n")]);
        assert_eq!(cgroup_memory_limit(max.path()), None);
        let v1_unlimited = root_with(&[("memory/memory.limit_in_bytes", "9223372036854771712\n")]);
        assert_eq!(cgroup_memory_limit(v1_unlimited.path()), None);
        let garbled = root_with(&[("memory.max", "lots")]);
        assert_eq!(cgroup_memory_limit(garbled.path()), None);
        let empty = root_with(&[]);
        assert_eq!(cgroup_memory_limit(empty.path()), None);
    }

    #[test]
    fn the_default_budget_is_a_fraction_of_the_container_with_a_floor() {
        assert_eq!(default_memory_limit(Some(512 << 20)), 64 << 20);
        assert_eq!(default_memory_limit(Some(2 << 30)), 256 << 20);
        assert_eq!(
            default_memory_limit(Some(128 << 20)),
            MIN_MEMORY_LIMIT_BYTES
        );
        assert_eq!(default_memory_limit(None), DEFAULT_MEMORY_LIMIT_BYTES);
        assert!(parse_memory_limit("16MiB").is_err());
        assert_eq!(parse_memory_limit("96MiB"), Ok(96 << 20));
    }

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<super::super::Config, ConfigError> {
        use clap::Parser;
        let cli =
            Cli::try_parse_from(std::iter::once("wxcloudrun-sidecar").chain(args.iter().copied()))
                .unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        super::super::Config::load(cli, move |key| {
            env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_budget_follows_the_cgroup_unless_set_and_the_limits_load_by_their_names() {
        let v2 = root_with(&[("memory.max", "1073741824\n")]);
        let root = v2.path().to_str().unwrap();
        let config = load(&[], &[("WXCLOUDRUN_SIDECAR_CGROUP_ROOT", root)]).unwrap();
        assert_eq!(config.memory.memory_limit_bytes, 128 << 20);
        assert_eq!(config.memory.cgroup_limit_bytes, Some(1 << 30));
        assert_eq!(config.memory.scrape_limits, ScrapeLimits::default());
        assert_eq!(config.memory.queue_max_age, DEFAULT_QUEUE_MAX_AGE);
        let unlimited = root_with(&[("memory.max", "max\n")]);
        let root = unlimited.path().to_str().unwrap();
        let config = load(&[], &[("WXCLOUDRUN_SIDECAR_CGROUP_ROOT", root)]).unwrap();
        assert_eq!(config.memory.memory_limit_bytes, DEFAULT_MEMORY_LIMIT_BYTES);

        let set = load(
            &[
                "--memory-limit",
                "48MiB",
                "--sample-limit",
                "5000",
                "--body-size-limit",
                "10MiB",
                "--label-value-length-limit",
                "200",
            ],
            &[("WXCLOUDRUN_SIDECAR_CGROUP_ROOT", root)],
        )
        .unwrap();
        assert_eq!(set.memory.memory_limit_bytes, 48 << 20);
        let limits = set.memory.scrape_limits;
        assert_eq!(limits.sample_limit, 5000);
        assert_eq!(limits.body_size_limit_bytes, 10 << 20);
        assert_eq!(limits.label_value_length_limit, 200);
        let err = load(&["--label-limit", "many"], &[]).unwrap_err();
        assert_eq!(err.key, "--label-limit");
        let err = load(&["--memory-limit", "1MiB"], &[]).unwrap_err();
        assert_eq!(err.key, "--memory-limit");
    }

    #[test]
    fn the_default_max_age_covers_two_intervals() {
        assert_eq!(
            default_queue_max_age(Duration::from_secs(15)),
            DEFAULT_QUEUE_MAX_AGE
        );
        assert_eq!(
            default_queue_max_age(Duration::from_secs(60)),
            Duration::from_secs(120)
        );
    }
}
