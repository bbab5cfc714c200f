//! The remote-write backends: `--remote-write-url` (or its variable) as plain backends, else the
//! file's `remote_write_url` list and `[[remote_write]]` blocks with Prometheus's field names.

use super::file::{self, FileConfig, RemoteWriteFile};
use super::merge::{ConfigError, Loader, Origin, error, positive_duration};
use super::validate::{check_tls, credentials, header_table, is_label_value_safe};
use crate::export::remote_write::{Relabel, RelabelRule};
use crate::export::{HttpUrl, RemoteWriteConfig};

/// `--remote-write-url` (or its variable) as plain backends, replacing the file's; else the
/// file's `remote_write_url` list and `[[remote_write]]` blocks.
pub(super) fn remote_write_backends(
    loader: &mut Loader<'_>,
    cli_urls: &[String],
    file: &FileConfig,
) -> Result<Vec<RemoteWriteConfig>, ConfigError> {
    let var = "WXCLOUDRUN_SIDECAR_REMOTE_WRITE_URL";
    let (cli_urls, origin) = loader.list(("--remote-write-url", cli_urls), var);
    let mut backends = Vec::new();
    if let Some(origin) = origin {
        let key = match &origin {
            Origin::Env(var) => var.clone(),
            _ => "--remote-write-url".to_owned(),
        };
        for url in cli_urls {
            let url = HttpUrl::parse(&url).map_err(|reason| error(key.as_str(), reason))?;
            let index = backends.len();
            loader
                .origins
                .insert(format!("remote_write[{index}]"), origin.clone());
            backends.push(RemoteWriteConfig::new(
                RemoteWriteConfig::default_name(index),
                url,
            ));
        }
        return Ok(backends);
    }
    let simple = file
        .remote_write_url
        .as_ref()
        .map(file::OneOrMany::to_vec)
        .unwrap_or_default();
    for url in simple.iter().filter(|u| !u.trim().is_empty()) {
        let url = HttpUrl::parse(url).map_err(|reason| error("remote_write_url", reason))?;
        let index = backends.len();
        loader
            .origins
            .insert(format!("remote_write[{index}]"), Origin::File);
        backends.push(RemoteWriteConfig::new(
            RemoteWriteConfig::default_name(index),
            url,
        ));
    }
    for block in file.remote_write.iter().flatten() {
        let index = backends.len();
        let backend = remote_write_block(index, block)?;
        loader
            .origins
            .insert(format!("remote_write[{index}]"), Origin::File);
        backends.push(backend);
    }
    Ok(backends)
}

/// One `[[remote_write]]` block, the `index`-th backend.
fn remote_write_block(
    index: usize,
    block: &RemoteWriteFile,
) -> Result<RemoteWriteConfig, ConfigError> {
    let key = |field: &str| format!("remote_write[{index}].{field}");
    let url = HttpUrl::parse(&block.url).map_err(|reason| error(key("url"), reason))?;
    let name = match &block.name {
        Some(name) if is_label_value_safe(name) => name.clone(),
        Some(name) => {
            return Err(error(
                key("name"),
                format!("{name:?} must be letters, digits, '_' or '-'"),
            ));
        }
        None => RemoteWriteConfig::default_name(index),
    };
    let mut backend = RemoteWriteConfig::new(name, url);
    if let Some(timeout) = &block.remote_timeout {
        backend.remote_timeout =
            positive_duration(timeout).map_err(|reason| error(key("remote_timeout"), reason))?;
    }
    backend.headers = header_table(&key("headers"), block.headers.as_ref())?;
    backend.auth = credentials(
        &key(""),
        block.basic_auth.as_ref(),
        block.authorization.as_ref(),
    )?;
    backend.tls = block.tls_config.clone().unwrap_or_default();
    check_tls(&key("tls_config"), &backend.tls)?;
    let mut rules = Vec::new();
    for (i, rule) in block.write_relabel_configs.iter().flatten().enumerate() {
        rules.push(
            RelabelRule::new(
                rule.action.as_deref(),
                rule.source_labels.clone(),
                rule.separator.as_deref(),
                rule.regex.as_deref(),
            )
            .map_err(|reason| error(key(&format!("write_relabel_configs[{i}]")), reason))?,
        );
    }
    backend.relabel = Relabel::new(rules);
    Ok(backend)
}
