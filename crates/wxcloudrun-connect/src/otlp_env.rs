//! The standard OpenTelemetry exporter variables, read in one place for the sidecar (metrics)
//! and `init()` (traces): `OTEL_EXPORTER_OTLP_[<SIGNAL>_]{ENDPOINT,PROTOCOL,HEADERS,TIMEOUT,
//! COMPRESSION,CERTIFICATE,CLIENT_CERTIFICATE,CLIENT_KEY,INSECURE}`, `OTEL_RESOURCE_ATTRIBUTES`,
//! the service name and `OTEL_<SIGNAL>_EXPORTER`.
//!
//! Every function takes a `lookup` (a stand-in for `std::env::var(..).ok()`), so tests and
//! config layers can feed values without touching the process environment.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::{REDACTED, is_sensitive_header, redact_url};
use crate::tls::TlsConfig;

/// Which signal's variables to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Spans: `OTEL_EXPORTER_OTLP_TRACES_*`, `/v1/traces`.
    Traces,
    /// Metrics: `OTEL_EXPORTER_OTLP_METRICS_*`, `/v1/metrics`.
    Metrics,
}

impl Signal {
    /// `TRACES` or `METRICS`, as in the variable names.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        }
    }

    /// The OTLP/HTTP path: `/v1/traces` or `/v1/metrics`.
    pub fn path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }

    /// `OTEL_TRACES_EXPORTER` or `OTEL_METRICS_EXPORTER`.
    pub fn exporter_variable(self) -> &'static str {
        match self {
            Signal::Traces => "OTEL_TRACES_EXPORTER",
            Signal::Metrics => "OTEL_METRICS_EXPORTER",
        }
    }
}

/// The OTLP transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc`: `<Signal>Service/Export`, usually on port 4317.
    Grpc,
    /// `http/protobuf`: `POST /v1/<signal>`, usually on port 4318. The spec's default.
    #[default]
    HttpProtobuf,
}

impl Protocol {
    /// The variable's spelling: `grpc` or `http/protobuf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Request body compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed: the spec's default.
    #[default]
    None,
    /// gzip (`Content-Encoding: gzip` over HTTP, `grpc-encoding: gzip` over gRPC).
    Gzip,
}

/// A variable whose value cannot be honoured. Displays as
/// `OTEL_EXPORTER_OTLP_METRICS_COMPRESSION="zstd": not supported (gzip, none)`; the value is left
/// out when it may hold a secret (headers).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}", self.describe())]
pub struct EnvError {
    /// The variable, e.g. `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`.
    pub variable: String,
    /// What is wrong.
    pub reason: String,
    /// The offending value, when it is safe to show.
    pub value: Option<String>,
}

impl EnvError {
    fn new(variable: &str, value: Option<&str>, reason: impl Into<String>) -> Self {
        EnvError {
            variable: variable.to_owned(),
            reason: reason.into(),
            value: value.map(str::to_owned),
        }
    }

    fn describe(&self) -> String {
        match &self.value {
            Some(value) => format!("{}={value:?}: {}", self.variable, self.reason),
            None => format!("{}: {}", self.variable, self.reason),
        }
    }
}

/// Everything the standard OTLP exporter variables say for one signal, the signal-specific
/// variable (`OTEL_EXPORTER_OTLP_<SIGNAL>_X`) winning over the generic one
/// (`OTEL_EXPORTER_OTLP_X`). Values are trimmed; an empty value counts as unset.
///
/// `Debug` shows sensitive header values ([`is_sensitive_header`]) as `<secret>` and the
/// endpoint without userinfo.
#[derive(Clone, Default, PartialEq)]
pub struct OtlpEnv {
    /// The signal-specific endpoint as is; else the generic one plus `/v1/<signal>` for
    /// http/protobuf (no double slash), as is for gRPC.
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`; `http/json` is an error (not supported).
    pub protocol: Option<Protocol>,
    /// `k=v,k2=v2`, values percent-decoded (W3C baggage octets); the generic ones first, then
    /// the signal-specific ones replacing same-named (case-insensitive) entries.
    pub headers: Vec<(String, String)>,
    /// The export timeout (the variables are in milliseconds).
    pub timeout: Option<Duration>,
    /// `gzip` or `none`.
    pub compression: Option<Compression>,
    /// `_CERTIFICATE`: the CA bundle ([`TlsConfig::ca_file`]).
    pub certificate: Option<PathBuf>,
    /// `_CLIENT_CERTIFICATE` ([`TlsConfig::cert_file`]).
    pub client_certificate: Option<PathBuf>,
    /// `_CLIENT_KEY` ([`TlsConfig::key_file`]).
    pub client_key: Option<PathBuf>,
    /// `_INSECURE`: gRPC only, plaintext for an endpoint without a scheme.
    pub insecure: Option<bool>,
    /// Which variable set each field, by field name.
    origins: Vec<(&'static str, String)>,
}

impl fmt::Debug for OtlpEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if is_sensitive_header(name) {
                    REDACTED
                } else {
                    value.as_str()
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("OtlpEnv")
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field("protocol", &self.protocol)
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("certificate", &self.certificate)
            .field("client_certificate", &self.client_certificate)
            .field("client_key", &self.client_key)
            .field("insecure", &self.insecure)
            .field("origins", &self.origins)
            .finish()
    }
}

/// A lookup that trims and treats empty as unset.
fn getter(lookup: impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        lookup(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL` (or a signal's): `grpc` or `http/protobuf`, in any case.
fn parse_protocol(variable: &str, value: &str) -> Result<Protocol, EnvError> {
    match value.to_ascii_lowercase().as_str() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Err(EnvError::new(
            variable,
            Some(value),
            "http/json is not supported (grpc, http/protobuf)",
        )),
        _ => Err(EnvError::new(
            variable,
            Some(value),
            "not supported (grpc, http/protobuf)",
        )),
    }
}

/// `OTEL_EXPORTER_OTLP_COMPRESSION` (or a signal's): `gzip` or `none`, in any case.
fn parse_compression(variable: &str, value: &str) -> Result<Compression, EnvError> {
    match value.to_ascii_lowercase().as_str() {
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        _ => Err(EnvError::new(
            variable,
            Some(value),
            "not supported (gzip, none)",
        )),
    }
}

impl OtlpEnv {
    /// Reads the variables of `signal` through `lookup`. The first value that cannot be honoured
    /// is the error.
    pub fn read(signal: Signal, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let get = getter(lookup);
        let mut env = OtlpEnv::default();
        let specific = |field: &str| format!("OTEL_EXPORTER_OTLP_{}_{field}", signal.as_str());
        let generic = |field: &str| format!("OTEL_EXPORTER_OTLP_{field}");
        // The signal-specific value, else the generic one, with the variable that set it.
        let pick = |field: &str| {
            let (specific, generic) = (specific(field), generic(field));
            get(&specific)
                .map(|value| (specific, value))
                .or_else(|| get(&generic).map(|value| (generic, value)))
        };

        if let Some((variable, value)) = pick("PROTOCOL") {
            env.protocol = Some(parse_protocol(&variable, &value)?);
            env.origins.push(("protocol", variable));
        }

        let protocol = env.protocol.unwrap_or_default();
        let endpoint = match (get(&specific("ENDPOINT")), get(&generic("ENDPOINT"))) {
            (Some(url), _) => Some((specific("ENDPOINT"), url)),
            (None, Some(base)) if protocol == Protocol::HttpProtobuf => Some((
                generic("ENDPOINT"),
                format!("{}{}", base.trim_end_matches('/'), signal.path()),
            )),
            (None, Some(base)) => Some((generic("ENDPOINT"), base)),
            (None, None) => None,
        };
        if let Some((variable, url)) = endpoint {
            env.endpoint = Some(url);
            env.origins.push(("endpoint", variable));
        }

        env.read_headers(&get, [generic("HEADERS"), specific("HEADERS")])?;

        if let Some((variable, value)) = pick("TIMEOUT") {
            let millis: u64 = value.parse().map_err(|_| {
                EnvError::new(
                    &variable,
                    Some(&value),
                    "not a whole number of milliseconds",
                )
            })?;
            env.timeout = Some(Duration::from_millis(millis));
            env.origins.push(("timeout", variable));
        }

        if let Some((variable, value)) = pick("COMPRESSION") {
            env.compression = Some(parse_compression(&variable, &value)?);
            env.origins.push(("compression", variable));
        }

        for (field, suffix) in [
            ("certificate", "CERTIFICATE"),
            ("client_certificate", "CLIENT_CERTIFICATE"),
            ("client_key", "CLIENT_KEY"),
        ] {
            if let Some((variable, value)) = pick(suffix) {
                let path = Some(PathBuf::from(value));
                match field {
                    "certificate" => env.certificate = path,
                    "client_certificate" => env.client_certificate = path,
                    _ => env.client_key = path,
                }
                env.origins.push((field, variable));
            }
        }

        if let Some((variable, value)) = pick("INSECURE") {
            env.insecure = Some(match value.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(EnvError::new(&variable, Some(&value), "not true or false")),
            });
            env.origins.push(("insecure", variable));
        }
        Ok(env)
    }

    /// Merges the header lists of `variables` in order (generic, then signal-specific): a later
    /// one replaces a header of the same name, in any case.
    fn read_headers(
        &mut self,
        get: &impl Fn(&str) -> Option<String>,
        variables: [String; 2],
    ) -> Result<(), EnvError> {
        let mut sources = Vec::new();
        for variable in variables {
            let Some(text) = get(&variable) else { continue };
            for (name, value) in parse_headers(&variable, &text)? {
                self.headers
                    .retain(|(known, _)| !known.eq_ignore_ascii_case(&name));
                self.headers.push((name, value));
            }
            sources.push(variable);
        }
        if !sources.is_empty() {
            self.origins.push(("headers", sources.join(", ")));
        }
        Ok(())
    }

    /// The TLS part as a [`TlsConfig`]: `certificate` → `ca_file`, `client_certificate` →
    /// `cert_file`, `client_key` → `key_file`.
    pub fn tls(&self) -> TlsConfig {
        TlsConfig {
            ca_file: self.certificate.clone(),
            cert_file: self.client_certificate.clone(),
            key_file: self.client_key.clone(),
            ..TlsConfig::default()
        }
    }

    /// Which variable set `field` (a field name of this struct), for "where did this value come
    /// from" output: `origin("endpoint")` → `Some("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")`. For
    /// headers set by both variables, both names, comma-separated.
    pub fn origin(&self, field: &str) -> Option<&str> {
        self.origins
            .iter()
            .find(|(known, _)| *known == field)
            .map(|(_, variable)| variable.as_str())
    }
}

/// `k=v,k2=v2`; values percent-decoded; each name and value checked as HTTP allows. Errors name
/// the entry, never a value.
fn parse_headers(variable: &str, text: &str) -> Result<Vec<(String, String)>, EnvError> {
    let mut headers = Vec::new();
    for (index, entry) in text.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let position = index + 1;
        let Some((name, value)) = entry.split_once('=') else {
            return Err(EnvError::new(
                variable,
                None,
                format!("entry {position} is not key=value"),
            ));
        };
        let name = name.trim();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            // A name is not a secret, unless the entry was garbled into one: show it only when
            // it looks like a name at all.
            let shown = if name.len() <= 64 && !name.contains(char::is_whitespace) {
                format!(" {name:?}")
            } else {
                String::new()
            };
            return Err(EnvError::new(
                variable,
                None,
                format!("entry {position}: invalid header name{shown}"),
            ));
        }
        let value = percent_decode(value.trim()).ok_or_else(|| {
            EnvError::new(
                variable,
                None,
                format!("header {name}: the value is not UTF-8 once percent-decoded"),
            )
        })?;
        if http::HeaderValue::from_str(&value).is_err() {
            let what = if is_sensitive_header(name) {
                "the (secret) value"
            } else {
                "the value"
            };
            return Err(EnvError::new(
                variable,
                None,
                format!("header {name}: {what} has characters HTTP does not allow"),
            ));
        }
        headers.push((name.to_owned(), value));
    }
    Ok(headers)
}

/// `%XX` sequences decoded (the W3C Baggage octet rule); a `%` not followed by two hex digits
/// stays as it is. `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `k=v,k2=v2`, values percent-decoded. Malformed entries are
/// skipped, with one warning string each.
pub fn resource_attributes(
    lookup: impl Fn(&str) -> Option<String>,
) -> (Vec<(String, String)>, Vec<String>) {
    const VARIABLE: &str = "OTEL_RESOURCE_ATTRIBUTES";
    let mut attributes = Vec::new();
    let mut warnings = Vec::new();
    let Some(text) = getter(lookup)(VARIABLE) else {
        return (attributes, warnings);
    };
    for entry in text.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        match entry.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => match percent_decode(value.trim()) {
                Some(value) => attributes.push((key.trim().to_owned(), value)),
                None => warnings.push(format!(
                    "{VARIABLE}: the value of {:?} is not UTF-8 once percent-decoded; ignored",
                    key.trim()
                )),
            },
            _ => warnings.push(format!(
                "{VARIABLE} entry {entry:?} is not key=value; ignored"
            )),
        }
    }
    (attributes, warnings)
}

/// The service name: `WXCLOUDRUN_SERVICE`, else `OTEL_SERVICE_NAME`, else `None` (callers
/// default to `unknown_service`).
pub fn service_name(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let get = getter(lookup);
    get("WXCLOUDRUN_SERVICE").or_else(|| get("OTEL_SERVICE_NAME"))
}

/// `OTEL_METRICS_EXPORTER` / `OTEL_TRACES_EXPORTER`: `otlp` (the default) or `none`. In a comma
/// list `none` wins only alone (`otlp,none` exports). Anything else is an error naming the
/// variable.
pub fn exporter_enabled(
    signal: Signal,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<bool, EnvError> {
    let variable = signal.exporter_variable();
    let Some(text) = getter(lookup)(variable) else {
        return Ok(true);
    };
    let mut otlp = false;
    let mut none = false;
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name.to_ascii_lowercase().as_str() {
            "otlp" => otlp = true,
            "none" => none = true,
            _ => {
                return Err(EnvError::new(
                    variable,
                    Some(&text),
                    format!("exporter {name:?} is not supported (otlp, none)"),
                ));
            }
        }
    }
    Ok(otlp || !none)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| map.get(key).cloned()
    }

    fn read(signal: Signal, pairs: &[(&str, &str)]) -> Result<OtlpEnv, EnvError> {
        OtlpEnv::read(signal, env(pairs))
    }

    #[test]
    fn nothing_set_is_all_none() {
        let nothing = read(Signal::Traces, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]).unwrap();
        assert_eq!(nothing, OtlpEnv::default());
        assert_eq!(nothing.origin("endpoint"), None);
        assert!(nothing.tls().is_default());
    }

    #[test]
    fn endpoints_follow_the_spec() {
        let http = read(
            Signal::Metrics,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")],
        )
        .unwrap();
        assert_eq!(
            http.endpoint.as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
        assert_eq!(http.origin("endpoint"), Some("OTEL_EXPORTER_OTLP_ENDPOINT"));
        assert_eq!(http.protocol, None);

        let base_path = read(
            Signal::Traces,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://gw.example/otlp")],
        )
        .unwrap();
        assert_eq!(
            base_path.endpoint.as_deref(),
            Some("https://gw.example/otlp/v1/traces")
        );

        let grpc = read(
            Signal::Traces,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
        .unwrap();
        assert_eq!(grpc.endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(grpc.protocol, Some(Protocol::Grpc));
        assert_eq!(grpc.origin("protocol"), Some("OTEL_EXPORTER_OTLP_PROTOCOL"));

        let specific = read(
            Signal::Metrics,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
                (
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                    "http://m:9999/custom/",
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "HTTP/PROTOBUF"),
            ],
        )
        .unwrap();
        assert_eq!(specific.endpoint.as_deref(), Some("http://m:9999/custom/"));
        assert_eq!(
            specific.origin("endpoint"),
            Some("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        );
        assert_eq!(specific.protocol, Some(Protocol::HttpProtobuf));
        assert_eq!(
            specific.origin("protocol"),
            Some("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        );
        // The other signal's variables are not read.
        let traces = read(
            Signal::Traces,
            &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:9999")],
        )
        .unwrap();
        assert_eq!(traces.endpoint, None);
    }

    #[test]
    fn headers_merge_and_decode() {
        let e = read(
            Signal::Traces,
            &[
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "Authorization=Basic%20dTpw, x-tenant = acme ,,X-Scope=a%2Cb",
                ),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                    "authorization=Bearer%20t,x-extra=%E4%BD%A0%ZZ",
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            e.headers,
            [
                ("x-tenant".to_owned(), "acme".to_owned()),
                ("X-Scope".to_owned(), "a,b".to_owned()),
                ("authorization".to_owned(), "Bearer t".to_owned()),
                ("x-extra".to_owned(), "你%ZZ".to_owned()),
            ]
        );
        assert_eq!(
            e.origin("headers"),
            Some("OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        );
        let debug = format!("{e:?}");
        assert!(!debug.contains("Bearer"), "{debug}");
        assert!(
            debug.contains(r#"("authorization", "<secret>")"#),
            "{debug}"
        );
        assert!(debug.contains(r#"("x-tenant", "acme")"#), "{debug}");
        // `=` inside a value stays.
        let e = read(
            Signal::Metrics,
            &[("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-sig=a=b==")],
        )
        .unwrap();
        assert_eq!(e.headers, [("x-sig".to_owned(), "a=b==".to_owned())]);
    }

    #[test]
    fn bad_headers_are_errors_that_hide_the_value() {
        let cases = [
            ("no-equals-sign", "entry 1 is not key=value"),
            ("ok=1,bad name=v", "entry 2: invalid header name"),
            ("x(y)=v", "entry 1: invalid header name \"x(y)\""),
            (
                "x-api-key=line%0Abreak-sekrit",
                "header x-api-key: the (secret) value",
            ),
            ("x-bin=%FF%FE", "not UTF-8"),
        ];
        for (text, expected) in cases {
            let err = read(
                Signal::Traces,
                &[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", text)],
            )
            .unwrap_err();
            assert_eq!(err.variable, "OTEL_EXPORTER_OTLP_TRACES_HEADERS");
            assert_eq!(err.value, None);
            let message = err.to_string();
            assert!(
                message.starts_with("OTEL_EXPORTER_OTLP_TRACES_HEADERS: ")
                    && message.contains(expected),
                "{text}: {message}"
            );
            assert!(!message.contains("sekrit"), "{message}");
        }
    }

    #[test]
    fn timeouts_compression_tls_and_insecure() {
        let e = read(
            Signal::Metrics,
            &[
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "10000"),
                ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
                (
                    "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
                    "/etc/client.pem",
                ),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/client.key"),
                ("OTEL_EXPORTER_OTLP_INSECURE", "True"),
            ],
        )
        .unwrap();
        assert_eq!(e.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(
            e.origin("timeout"),
            Some("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT")
        );
        assert_eq!(e.compression, Some(Compression::Gzip));
        assert_eq!(e.insecure, Some(true));
        assert_eq!(
            e.origin("client_certificate"),
            Some("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE")
        );
        assert_eq!(
            e.origin("client_key"),
            Some("OTEL_EXPORTER_OTLP_CLIENT_KEY")
        );
        assert_eq!(
            e.tls(),
            TlsConfig {
                ca_file: Some("/etc/ca.pem".into()),
                cert_file: Some("/etc/client.pem".into()),
                key_file: Some("/etc/client.key".into()),
                ..TlsConfig::default()
            }
        );
        let none = read(
            Signal::Traces,
            &[
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
            ],
        )
        .unwrap();
        assert_eq!(none.compression, Some(Compression::None));
    }

    #[test]
    fn unsupported_values_name_their_variable() {
        let err = read(
            Signal::Metrics,
            &[("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "zstd")],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"OTEL_EXPORTER_OTLP_METRICS_COMPRESSION="zstd": not supported (gzip, none)"#
        );
        for (variable, value, reason) in [
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "http/json",
                "http/json is not supported",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "thrift",
                "not supported (grpc, http/protobuf)",
            ),
            (
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "10s",
                "not a whole number of milliseconds",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "-1",
                "not a whole number",
            ),
            ("OTEL_EXPORTER_OTLP_INSECURE", "yes", "not true or false"),
        ] {
            let err = read(Signal::Traces, &[(variable, value)]).unwrap_err();
            assert_eq!(err.variable, variable);
            assert_eq!(err.value.as_deref(), Some(value));
            assert!(err.reason.contains(reason), "{err}");
        }
    }

    #[test]
    fn resource_attributes_are_decoded_and_bad_entries_warned() {
        let (attributes, warnings) = resource_attributes(env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.version=1.2.3, deployment.environment=prod%2Dcn,broken,=nokey,,k=%FF",
        )]));
        assert_eq!(
            attributes,
            [
                ("service.version".to_owned(), "1.2.3".to_owned()),
                ("deployment.environment".to_owned(), "prod-cn".to_owned()),
            ]
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("\"broken\""), "{warnings:?}");
        assert_eq!(resource_attributes(env(&[])), (Vec::new(), Vec::new()));
    }

    #[test]
    fn service_name_precedence() {
        assert_eq!(
            service_name(env(&[
                ("WXCLOUDRUN_SERVICE", "orders"),
                ("OTEL_SERVICE_NAME", "otel")
            ])),
            Some("orders".to_owned())
        );
        assert_eq!(
            service_name(env(&[
                ("WXCLOUDRUN_SERVICE", " "),
                ("OTEL_SERVICE_NAME", "otel")
            ])),
            Some("otel".to_owned())
        );
        assert_eq!(service_name(env(&[])), None);
    }

    #[test]
    fn exporter_selection() {
        let enabled = |value: &str| {
            exporter_enabled(Signal::Metrics, env(&[("OTEL_METRICS_EXPORTER", value)]))
        };
        assert_eq!(exporter_enabled(Signal::Traces, env(&[])), Ok(true));
        assert_eq!(enabled("otlp"), Ok(true));
        assert_eq!(enabled("none"), Ok(false));
        assert_eq!(enabled(" NONE "), Ok(false));
        assert_eq!(enabled("none,otlp"), Ok(true));
        assert_eq!(enabled(","), Ok(true));
        let err = enabled("otlp,prometheus").unwrap_err();
        assert_eq!(err.variable, "OTEL_METRICS_EXPORTER");
        assert!(
            err.to_string().contains("\"prometheus\" is not supported"),
            "{err}"
        );
        let err = exporter_enabled(Signal::Traces, env(&[("OTEL_TRACES_EXPORTER", "zipkin")]))
            .unwrap_err();
        assert_eq!(err.variable, "OTEL_TRACES_EXPORTER");
    }
}
