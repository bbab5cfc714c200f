//! The OTLP backend, field by field: flag > `OTEL_EXPORTER_OTLP_METRICS_*` >
//! `OTEL_EXPORTER_OTLP_*` > the file's `[otlp]` block (or its `otlp_*` keys) > default.
//! `OTEL_METRICS_EXPORTER=none` turns it off unless `--otlp-endpoint` is given.

use std::collections::BTreeMap;
use std::time::Duration;

use wxcloudrun_connect::otlp_env::{self, Compression, OtlpEnv, Protocol, Signal};
use wxcloudrun_connect::secret::redact_url;
use wxcloudrun_connect::tls::TlsConfig;

use super::file::{FileConfig, OtlpFile};
use super::merge::{ConfigError, Loader, Origin, error, positive_duration};
use super::validate::{check_tls, credentials, header_table, merge_headers};
use crate::export::{HttpUrl, OtlpConfig};

/// The OTLP backend, `None` when no endpoint is set or `OTEL_METRICS_EXPORTER=none` says so.
pub(super) fn otlp_backend(
    loader: &mut Loader<'_>,
    cli_endpoint: Option<String>,
    cli_protocol: Option<String>,
    file: &FileConfig,
    labels: &[(String, String)],
) -> Result<Option<OtlpConfig>, ConfigError> {
    let env_error = |err: otlp_env::EnvError| error(err.variable.clone(), err.reason.clone());
    let from_env = OtlpEnv::read(Signal::Metrics, loader.env).map_err(env_error)?;
    let enabled = otlp_env::exporter_enabled(Signal::Metrics, loader.env).map_err(env_error)?;
    let default_block = OtlpFile::default();
    let block = file.otlp.as_ref().unwrap_or(&default_block);

    let (protocol, protocol_origin) = protocol(cli_protocol, &from_env, block, file)?;
    let cli_endpoint = cli_endpoint.filter(|e| !e.trim().is_empty());
    let from_flag = cli_endpoint.is_some();
    let Some((endpoint, endpoint_origin)) =
        endpoint(cli_endpoint, &from_env, block, file, protocol)
    else {
        return Ok(None);
    };
    if !enabled && !from_flag {
        loader.warnings.push(format!(
            "OTEL_METRICS_EXPORTER=none: metrics are not sent to the OTLP endpoint {}",
            redact_url(&endpoint)
        ));
        loader.origins.insert(
            "otlp".to_owned(),
            Origin::Env("OTEL_METRICS_EXPORTER".to_owned()),
        );
        return Ok(None);
    }
    let endpoint =
        HttpUrl::parse(&endpoint).map_err(|reason| error(endpoint_origin.to_string(), reason))?;
    let mut otlp = OtlpConfig::new(endpoint, protocol);
    loader
        .origins
        .insert("otlp.endpoint".to_owned(), endpoint_origin);
    loader
        .origins
        .insert("otlp.protocol".to_owned(), protocol_origin);

    otlp.compression = compression(loader, &from_env, block)?;
    otlp.timeout = timeout(loader, &from_env, block)?;
    otlp.headers = headers(loader, &from_env, block)?;
    otlp.auth = credentials(
        "otlp.",
        block.basic_auth.as_ref(),
        block.authorization.as_ref(),
    )?;
    otlp.tls = tls(loader, &from_env, block)?;
    if from_env.insecure == Some(true) && otlp.endpoint.parsed().scheme() == "https" {
        loader.warnings.push(
            "OTEL_EXPORTER_OTLP_INSECURE=true is ignored for an https:// endpoint: the scheme decides".to_owned(),
        );
    }
    otlp.resource = resource(loader, block, labels);
    Ok(Some(otlp))
}

/// The variable that set `field`, else the default.
fn env_origin(from_env: &OtlpEnv, field: &str) -> Origin {
    from_env
        .origin(field)
        .map_or(Origin::Default, |var| Origin::Env(var.to_owned()))
}

/// `grpc` or `http/protobuf` (the default), and where it came from.
fn protocol(
    cli_protocol: Option<String>,
    from_env: &OtlpEnv,
    block: &OtlpFile,
    file: &FileConfig,
) -> Result<(Protocol, Origin), ConfigError> {
    let from_file = block.protocol.as_ref().or(file.otlp_protocol.as_ref());
    Ok(
        match (
            cli_protocol.filter(|p| !p.trim().is_empty()),
            from_env.protocol,
            from_file,
        ) {
            (Some(text), ..) => (
                parse_protocol("--otlp-protocol", &text)?,
                Origin::Flag("--otlp-protocol"),
            ),
            (None, Some(protocol), _) => (protocol, env_origin(from_env, "protocol")),
            (None, None, Some(text)) => (parse_protocol("otlp.protocol", text)?, Origin::File),
            (None, None, None) => (Protocol::HttpProtobuf, Origin::Default),
        },
    )
}

/// The URL requests go to (`/v1/metrics` added for HTTP), and where it came from; `None` when
/// nothing sets one.
fn endpoint(
    cli_endpoint: Option<String>,
    from_env: &OtlpEnv,
    block: &OtlpFile,
    file: &FileConfig,
    protocol: Protocol,
) -> Option<(String, Origin)> {
    let file_endpoint = block
        .endpoint
        .clone()
        .or_else(|| file.otlp_endpoint.clone())
        .filter(|e| !e.trim().is_empty());
    match (cli_endpoint, &from_env.endpoint, file_endpoint) {
        (Some(base), ..) => Some((otlp_url(&base, protocol), Origin::Flag("--otlp-endpoint"))),
        (None, Some(url), _) => {
            // The variable was resolved for http/protobuf; gRPC takes the base as is.
            let url = match (protocol, from_env.origin("endpoint")) {
                (Protocol::Grpc, Some("OTEL_EXPORTER_OTLP_ENDPOINT")) => {
                    url.trim_end_matches("/v1/metrics").to_owned()
                }
                _ => url.clone(),
            };
            Some((url, env_origin(from_env, "endpoint")))
        }
        (None, None, Some(base)) => Some((otlp_url(&base, protocol), Origin::File)),
        (None, None, None) => None,
    }
}

/// `gzip` or `none` (the default).
fn compression(
    loader: &mut Loader<'_>,
    from_env: &OtlpEnv,
    block: &OtlpFile,
) -> Result<Compression, ConfigError> {
    Ok(match (from_env.compression, &block.compression) {
        (Some(compression), _) => {
            loader.origins.insert(
                "otlp.compression".into(),
                env_origin(from_env, "compression"),
            );
            compression
        }
        (None, Some(text)) => {
            loader
                .origins
                .insert("otlp.compression".into(), Origin::File);
            match text.as_str() {
                "gzip" => Compression::Gzip,
                "none" => Compression::None,
                other => {
                    return Err(error(
                        "otlp.compression",
                        format!("{other:?} is not supported (gzip, none)"),
                    ));
                }
            }
        }
        (None, None) => Compression::None,
    })
}

/// The request timeout, above zero.
fn timeout(
    loader: &mut Loader<'_>,
    from_env: &OtlpEnv,
    block: &OtlpFile,
) -> Result<Duration, ConfigError> {
    let timeout = match (from_env.timeout, &block.timeout) {
        (Some(timeout), _) => {
            loader
                .origins
                .insert("otlp.timeout".into(), env_origin(from_env, "timeout"));
            timeout
        }
        (None, Some(text)) => {
            loader.origins.insert("otlp.timeout".into(), Origin::File);
            positive_duration(text).map_err(|reason| error("otlp.timeout", reason))?
        }
        (None, None) => crate::export::otlp::DEFAULT_TIMEOUT,
    };
    if timeout.is_zero() {
        return Err(error(
            env_origin(from_env, "timeout").to_string(),
            "must be above 0",
        ));
    }
    Ok(timeout)
}

/// Headers: the file's, then the variables', replacing same-named ones.
fn headers(
    loader: &mut Loader<'_>,
    from_env: &OtlpEnv,
    block: &OtlpFile,
) -> Result<Vec<(String, String)>, ConfigError> {
    let file_headers = header_table("otlp.headers", block.headers.as_ref())?;
    if !from_env.headers.is_empty() {
        loader
            .origins
            .insert("otlp.headers".into(), env_origin(from_env, "headers"));
    } else if !file_headers.is_empty() {
        loader.origins.insert("otlp.headers".into(), Origin::File);
    }
    Ok(merge_headers(&file_headers, &from_env.headers))
}

/// TLS: the file's `tls_config`, each file given by a variable replacing the file's; usable now.
fn tls(
    loader: &mut Loader<'_>,
    from_env: &OtlpEnv,
    block: &OtlpFile,
) -> Result<TlsConfig, ConfigError> {
    let mut tls = block.tls_config.clone().unwrap_or_default();
    let env_tls = from_env.tls();
    if env_tls.ca_file.is_some() {
        tls.ca_file = env_tls.ca_file;
        loader.origins.insert(
            "otlp.tls_config.ca_file".into(),
            env_origin(from_env, "certificate"),
        );
    }
    if env_tls.cert_file.is_some() {
        tls.cert_file = env_tls.cert_file;
        loader.origins.insert(
            "otlp.tls_config.cert_file".into(),
            env_origin(from_env, "client_certificate"),
        );
    }
    if env_tls.key_file.is_some() {
        tls.key_file = env_tls.key_file;
        loader.origins.insert(
            "otlp.tls_config.key_file".into(),
            env_origin(from_env, "client_key"),
        );
    }
    check_tls("otlp.tls_config", &tls)?;
    Ok(tls)
}

/// Resource attributes: what the sidecar knows (from its labels), then the file's, then
/// `OTEL_RESOURCE_ATTRIBUTES`; `service.name` first, the rest sorted.
fn resource(
    loader: &mut Loader<'_>,
    block: &OtlpFile,
    labels: &[(String, String)],
) -> Vec<(String, String)> {
    let label = |key: &str| {
        labels
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, v)| v.clone())
    };
    let mut resource: BTreeMap<String, String> = BTreeMap::new();
    resource.insert(
        "service.name".to_owned(),
        label("wx_service").unwrap_or_else(|| "unknown_service".to_owned()),
    );
    if let Some(instance) = label("instance") {
        resource.insert("service.instance.id".to_owned(), instance.clone());
        resource.insert("host.name".to_owned(), instance);
    }
    if let Some(env_id) = label("wx_env") {
        resource.insert("wx.env".to_owned(), env_id);
        resource.insert("cloud.provider".to_owned(), "tencent_cloud".to_owned());
        resource.insert("cloud.platform".to_owned(), "tencent_cloud_eks".to_owned());
    }
    if let Some(extra) = &block.resource_attributes {
        resource.extend(extra.clone());
        loader
            .origins
            .insert("otlp.resource_attributes".into(), Origin::File);
    }
    let (from_variable, warnings) = otlp_env::resource_attributes(loader.env);
    if !from_variable.is_empty() {
        loader.origins.insert(
            "otlp.resource_attributes".into(),
            Origin::Env("OTEL_RESOURCE_ATTRIBUTES".to_owned()),
        );
    }
    resource.extend(from_variable);
    loader.warnings.extend(warnings);
    let service = resource.remove("service.name");
    service
        .map(|name| ("service.name".to_owned(), name))
        .into_iter()
        .chain(resource)
        .collect()
}

/// `grpc` or `http/protobuf`, as `OTEL_EXPORTER_OTLP_PROTOCOL` spells them.
fn parse_protocol(key: &str, text: &str) -> Result<Protocol, ConfigError> {
    match text.trim() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        other => Err(error(
            key,
            format!("{other:?} is not grpc or http/protobuf"),
        )),
    }
}

/// `http://collector:4318` → `http://collector:4318/v1/metrics` for HTTP; gRPC takes the base.
fn otlp_url(base: &str, protocol: Protocol) -> String {
    let base = base.trim().trim_end_matches('/');
    if protocol == Protocol::Grpc || base.ends_with("/v1/metrics") {
        base.to_owned()
    } else {
        format!("{base}/v1/metrics")
    }
}
