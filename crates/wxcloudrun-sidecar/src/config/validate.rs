//! Checks shared by several keys: URLs, header names and values, TLS files, label names,
//! `NAME=VALUE` lists and credentials. Each error names the key it was given.

use std::collections::BTreeMap;
use std::sync::Arc;

use wxcloudrun_connect::secret::SecretFile;
use wxcloudrun_connect::tls::TlsConfig;

use super::file::{AuthorizationFile, BasicAuthFile};
use super::merge::{ConfigError, error};
use crate::export::auth::{Auth, SecretSource};

/// `basic_auth` or `authorization` (not both), each with a value or a file (not both).
pub(super) fn credentials(
    prefix: &str,
    basic: Option<&BasicAuthFile>,
    authorization: Option<&AuthorizationFile>,
) -> Result<Auth, ConfigError> {
    let source = |key: String,
                  inline: Option<&wxcloudrun_connect::secret::Secret>,
                  path: Option<&std::path::PathBuf>| {
        match (inline, path) {
            (Some(secret), None) => Ok(SecretSource::Inline(secret.clone())),
            (None, Some(path)) => SecretFile::open(path)
                .map(|file| SecretSource::File(Arc::new(file)))
                .map_err(|err| error(key, format!("cannot read {}: {err}", path.display()))),
            (Some(_), Some(_)) => Err(error(key, "give the value or the file, not both")),
            (None, None) => Err(error(key, "needs a value or a file")),
        }
    };
    match (basic, authorization) {
        (Some(_), Some(_)) => Err(error(
            format!("{prefix}basic_auth"),
            "basic_auth and authorization cannot both be set",
        )),
        (Some(basic), None) => Ok(Auth::Basic {
            username: basic.username.clone(),
            password: source(
                format!("{prefix}basic_auth.password"),
                basic.password.as_ref(),
                basic.password_file.as_ref(),
            )?,
        }),
        (None, Some(authorization)) => Ok(Auth::Authorization {
            scheme: authorization
                .scheme
                .clone()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "Bearer".to_owned()),
            credentials: source(
                format!("{prefix}authorization.credentials"),
                authorization.credentials.as_ref(),
                authorization.credentials_file.as_ref(),
            )?,
        }),
        (None, None) => Ok(Auth::None),
    }
}

/// The TLS files must be usable now, not at the first push.
pub(super) fn check_tls(key: &str, tls: &TlsConfig) -> Result<(), ConfigError> {
    tls.client_config(&[])
        .map(|_| ())
        .map_err(|err| error(key, err.to_string()))
}
/// `base` first, then `overrides`, replacing headers of the same name (case-insensitive).
pub(super) fn merge_headers(
    base: &[(String, String)],
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let mut merged: Vec<(String, String)> = base
        .iter()
        .filter(|(name, _)| !overrides.iter().any(|(o, _)| o.eq_ignore_ascii_case(name)))
        .cloned()
        .collect();
    merged.extend(overrides.iter().cloned());
    merged
}

/// A file's header table as pairs, each checked; `key` names the table in errors.
pub(super) fn header_table(
    key: &str,
    table: Option<&BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let headers: Vec<(String, String)> = table.cloned().unwrap_or_default().into_iter().collect();
    for (name, value) in &headers {
        check_header(key, name, value)?;
    }
    Ok(headers)
}

/// A header the exporters can send, name and value: their own rule, checked at start-up.
pub(super) fn check_header(key: &str, name: &str, value: &str) -> Result<(), ConfigError> {
    crate::export::header_pair(name, value)
        .map(|_| ())
        .map_err(|reason| error(key, reason))
}
/// `NAME=VALUE` entries (`--label`, `--header`); blank entries skipped.
pub(super) fn pairs(key: &str, values: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    values
        .iter()
        .filter(|value| !value.trim().is_empty())
        .map(|value| match value.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok((name.trim().to_owned(), value.trim().to_owned()))
            }
            _ => Err(error(key, "an entry is not NAME=VALUE")),
        })
        .collect()
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(super) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Letters, digits, `_` and `-`: safe as a label value and in a log line (exporter names).
pub(super) fn is_label_value_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
