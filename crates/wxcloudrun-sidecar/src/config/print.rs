//! `--check-config`: the effective configuration in the TOML form the file accepts, each value
//! followed by where it came from, every secret as `<secret>` (passwords, credentials, the values
//! of sensitive headers, URL userinfo). Credential files are shown by path, never by content.

use std::fmt::Write as _;

use wxcloudrun_connect::secret::{REDACTED, is_sensitive_header, redact_url};
use wxcloudrun_connect::tls::TlsConfig;

use super::units::format_duration;
use super::{Config, Origin};
use crate::export::auth::{Auth, SecretSource};
use crate::export::remote_write::Relabel;
use crate::export::{Compression, OtlpProtocol};

/// The configuration as TOML.
pub fn render(config: &Config) -> String {
    let mut out = String::new();
    out.push_str(
        "# wxcloudrun-sidecar: the effective configuration. Secrets are shown as <secret>;\n\
         # after each value, where it came from (flag, env, file, default).\n",
    );
    write_settings(&mut out, config);
    write_remote_write(&mut out, config);
    write_otlp(&mut out, config);
    for warning in &config.warnings {
        let _ = writeln!(out, "# warning: {warning}");
    }
    out
}

/// `key = value  # from`.
fn line(out: &mut String, key: &str, value: String, from: String) {
    let _ = writeln!(out, "{key} = {value}  # {from}");
}

/// Where the value of `key` came from, as printed after it.
fn origin(config: &Config, key: &str) -> String {
    config
        .origins
        .get(key)
        .map_or_else(|| Origin::Default.to_string(), Origin::to_string)
}

/// The top-level keys, and the wrapped app as a comment.
fn write_settings(out: &mut String, config: &Config) {
    let origin = |key: &str| origin(config, key);
    line(
        out,
        "scrape_url",
        quote(&redact_url(&config.scrape_url)),
        origin("scrape_url"),
    );
    line(
        out,
        "scrape_interval",
        quote(&format_duration(config.scrape_interval)),
        origin("scrape_interval"),
    );
    line(
        out,
        "scrape_timeout",
        quote(&format_duration(config.scrape_timeout)),
        origin("scrape_timeout"),
    );
    line(
        out,
        "shutdown_budget",
        quote(&format_duration(config.shutdown_budget)),
        origin("shutdown_budget"),
    );
    line(
        out,
        "queue_max_bytes",
        quote(&config.export.queue_max_bytes.to_string()),
        origin("queue_max_bytes"),
    );
    line(
        out,
        "queue_max_age",
        quote(&format_duration(config.memory.queue_max_age)),
        origin("queue_max_age"),
    );
    write_memory(out, config);
    line(
        out,
        "bound_spelling",
        quote(config.bound_spelling.as_str()),
        origin("bound_spelling"),
    );
    line(
        out,
        "admin_addr",
        quote(&config.admin_addr.to_string()),
        origin("admin_addr"),
    );
    line(
        out,
        "label",
        table(config.labels.iter().map(|(k, v)| (k.as_str(), v.clone()))),
        "HOSTNAME, CBR_ENV_ID, WXCLOUDRUN_SERVICE / OTEL_SERVICE_NAME, --label".to_owned(),
    );
    if !config.command.is_empty() {
        let command: Vec<String> = config
            .command
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let _ = writeln!(out, "# wrapped app: {command:?}");
    }
}

/// The memory budget and Prometheus's per-scrape limits.
fn write_memory(out: &mut String, config: &Config) {
    let origin = |key: &str| origin(config, key);
    let memory = &config.memory;
    let cgroup = memory.cgroup_limit_bytes.map_or_else(
        || "no cgroup limit".to_owned(),
        |bytes| format!("cgroup limit {bytes}"),
    );
    line(
        out,
        "memory_limit",
        quote(&memory.memory_limit_bytes.to_string()),
        format!("{}, {cgroup}", origin("memory_limit")),
    );
    let limits = &memory.scrape_limits;
    for (key, value) in [
        ("sample_limit", limits.sample_limit),
        ("label_limit", limits.label_limit),
        ("label_name_length_limit", limits.label_name_length_limit),
        ("label_value_length_limit", limits.label_value_length_limit),
    ] {
        line(out, key, value.to_string(), origin(key));
    }
    line(
        out,
        "body_size_limit",
        quote(&limits.body_size_limit_bytes.to_string()),
        origin("body_size_limit"),
    );
}

/// One `[[remote_write]]` block per backend.
fn write_remote_write(out: &mut String, config: &Config) {
    for (index, backend) in config.export.remote_write.iter().enumerate() {
        let _ = writeln!(
            out,
            "\n[[remote_write]]  # {}",
            origin(config, &format!("remote_write[{index}]"))
        );
        let _ = writeln!(out, "name = {}", quote(&backend.name));
        let _ = writeln!(out, "url = {}", quote(&backend.url.redacted()));
        let _ = writeln!(
            out,
            "remote_timeout = {}",
            quote(&format_duration(backend.remote_timeout))
        );
        write_common(out, &backend.headers, &backend.auth, &backend.tls);
        write_relabel(out, &backend.relabel);
    }
}

/// The `[otlp]` block, or a comment saying why it is off.
fn write_otlp(out: &mut String, config: &Config) {
    let origin = |key: &str| origin(config, key);
    match &config.export.otlp {
        Some(otlp) => {
            let _ = writeln!(out, "\n[otlp]");
            let _ = writeln!(
                out,
                "endpoint = {}  # {}",
                quote(&otlp.endpoint.redacted()),
                origin("otlp.endpoint")
            );
            let protocol = match otlp.protocol {
                OtlpProtocol::Grpc => "grpc",
                OtlpProtocol::HttpProtobuf => "http/protobuf",
            };
            let _ = writeln!(
                out,
                "protocol = {}  # {}",
                quote(protocol),
                origin("otlp.protocol")
            );
            let compression = match otlp.compression {
                Compression::Gzip => "gzip",
                Compression::None => "none",
            };
            let _ = writeln!(
                out,
                "compression = {}  # {}",
                quote(compression),
                origin("otlp.compression")
            );
            let _ = writeln!(
                out,
                "timeout = {}  # {}",
                quote(&format_duration(otlp.timeout)),
                origin("otlp.timeout")
            );
            write_common(out, &otlp.headers, &otlp.auth, &otlp.tls);
            let _ = writeln!(
                out,
                "resource_attributes = {}  # {}",
                table(otlp.resource.iter().map(|(k, v)| (k.as_str(), shown(k, v)))),
                origin("otlp.resource_attributes")
            );
        }
        None if config.origins.contains_key("otlp") => {
            let _ = writeln!(out, "\n# [otlp] off: {}", origin("otlp"));
        }
        None => {}
    }
}

/// `headers`, the credentials and `tls_config`, secrets as `<secret>`.
fn write_common(out: &mut String, headers: &[(String, String)], auth: &Auth, tls: &TlsConfig) {
    if !headers.is_empty() {
        let _ = writeln!(
            out,
            "headers = {}",
            table(headers.iter().map(|(k, v)| (k.as_str(), shown(k, v))))
        );
    }
    let secret = |source: &SecretSource, inline: &str, file: &str| match source {
        SecretSource::Inline(_) => (inline.to_owned(), REDACTED.to_owned()),
        SecretSource::File(f) => (file.to_owned(), f.path().display().to_string()),
    };
    match auth {
        Auth::None => {}
        Auth::Basic { username, password } => {
            let (key, value) = secret(password, "password", "password_file");
            let _ = writeln!(
                out,
                "basic_auth = {{ username = {}, {key} = {} }}",
                quote(username),
                quote(&value)
            );
        }
        Auth::Authorization {
            scheme,
            credentials,
        } => {
            let (key, value) = secret(credentials, "credentials", "credentials_file");
            let _ = writeln!(
                out,
                "authorization = {{ type = {}, {key} = {} }}",
                quote(scheme),
                quote(&value)
            );
        }
    }
    if !tls.is_default() {
        let mut fields = Vec::new();
        let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
        for (key, value) in [
            ("ca_file", path(&tls.ca_file)),
            ("cert_file", path(&tls.cert_file)),
            ("key_file", path(&tls.key_file)),
            ("server_name", tls.server_name.clone()),
        ] {
            if let Some(value) = value {
                fields.push(format!("{key} = {}", quote(&value)));
            }
        }
        fields.push(format!(
            "insecure_skip_verify = {}",
            tls.insecure_skip_verify
        ));
        let _ = writeln!(out, "tls_config = {{ {} }}", fields.join(", "));
    }
}

fn write_relabel(out: &mut String, relabel: &Relabel) {
    if relabel.is_empty() {
        return;
    }
    let rules: Vec<String> = relabel
        .rules()
        .iter()
        .map(|rule| {
            let (action, sources, separator, regex) = rule.parts();
            let sources: Vec<String> = sources.iter().map(|s| quote(s)).collect();
            format!(
                "{{ source_labels = [{}], separator = {}, regex = {}, action = {} }}",
                sources.join(", "),
                quote(separator),
                quote(regex),
                quote(action)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "write_relabel_configs = [\n  {},\n]",
        rules.join(",\n  ")
    );
}

/// A header or attribute value, or `<secret>` for a sensitive name.
fn shown(name: &str, value: &str) -> String {
    if is_sensitive_header(name) {
        REDACTED.to_owned()
    } else {
        value.to_owned()
    }
}

/// An inline table `{ a = "x", "b.c" = "y" }`.
fn table<'a>(pairs: impl Iterator<Item = (&'a str, String)>) -> String {
    let fields: Vec<String> = pairs
        .map(|(key, value)| format!("{} = {}", key_of(key), quote(&value)))
        .collect();
    if fields.is_empty() {
        "{}".to_owned()
    } else {
        format!("{{ {} }}", fields.join(", "))
    }
}

/// A bare key when TOML allows one, else a quoted key.
fn key_of(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        quote(key)
    }
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
