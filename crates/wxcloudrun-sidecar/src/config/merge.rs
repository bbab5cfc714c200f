//! The one merge of every key: flag > its `WXCLOUDRUN_SIDECAR_*` variable > file > default, recording where each value came from for `--check-config`, and the error
//! that names the key at fault.

use std::collections::BTreeMap;
use std::time::Duration;

use super::units::parse_duration;

/// A configuration error: the key and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {key}: {reason}")]
pub struct ConfigError {
    /// The key as the user wrote it (`--scrape-timeout`, `remote_write[0].tls_config`, …).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// A [`ConfigError`] for `key`.
pub(super) fn error(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
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

/// Picks a flag's value and says where it came from: the flag, else its variable looked up in
/// `env` (clap reads no variable itself, so `env` is the one source: the process environment in
/// the binary, a table in tests).
fn from_cli(
    value: Option<String>,
    flag: &'static str,
    var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(String, Origin)> {
    if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
        return Some((value, Origin::Flag(flag)));
    }
    let value = env(var).filter(|v| !v.trim().is_empty())?;
    Some((value, Origin::Env(var.to_owned())))
}

/// Loading state: the environment and the origins found so far.
pub(super) struct Loader<'a> {
    /// Looks up a variable (the process environment, or a test's table).
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    /// Where each key's value came from.
    pub(super) origins: BTreeMap<String, Origin>,
    /// What to say once at start.
    pub(super) warnings: Vec<String>,
}

impl<'a> Loader<'a> {
    /// Nothing loaded yet.
    pub(super) fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Loader {
            env,
            origins: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// A variable's value, blank counting as unset.
    pub(super) fn env(&self, key: &str) -> Option<String> {
        (self.env)(key).filter(|v| !v.trim().is_empty())
    }

    /// [`Loader::pick`] for a key with a flag: `flag` is the flag's name and the value clap read
    /// for it from the command line; without one, `WXCLOUDRUN_SIDECAR_<KEY>` (every flag's
    /// variable is named so: a test in `config` holds the help text to it).
    pub(super) fn pick_flag<T>(
        &mut self,
        key: &str,
        (flag, value): (&'static str, Option<String>),
        file: Option<String>,
        parse: impl FnOnce(&str) -> Result<T, String>,
        default: T,
    ) -> Result<T, ConfigError> {
        let var = format!("WXCLOUDRUN_SIDECAR_{}", key.to_ascii_uppercase());
        let cli = from_cli(value, flag, &var, self.env);
        self.pick(key, cli, file, parse, default)
    }

    /// A list flag's values (`--header`, `--label`, `--remote-write-url`), else its variable's,
    /// separated by commas as on the command line; with where they came from (`None`: neither).
    pub(super) fn list(
        &self,
        (flag, values): (&'static str, &[String]),
        var: &str,
    ) -> (Vec<String>, Option<Origin>) {
        let values: Vec<String> = values
            .iter()
            .filter(|v| !v.trim().is_empty())
            .cloned()
            .collect();
        if !values.is_empty() {
            return (values, Some(Origin::Flag(flag)));
        }
        let Some(text) = self.env(var) else {
            return (Vec::new(), None);
        };
        let values = text
            .split(',')
            .filter(|v| !v.trim().is_empty())
            .map(str::to_owned)
            .collect();
        (values, Some(Origin::Env(var.to_owned())))
    }

    /// flag/env, else file, else default; records the origin under `key`.
    pub(super) fn pick<T>(
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

/// A duration above zero (`15s`, `500ms`).
pub(super) fn positive_duration(text: &str) -> Result<Duration, String> {
    let parsed = parse_duration(text)?;
    if parsed.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(parsed)
}
