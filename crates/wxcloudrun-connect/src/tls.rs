//! The TLS rules every exporter follows: which roots are trusted, client certificates,
//! `server_name` and `insecure_skip_verify`, all with the ring provider.
//!
//! Roots are the bundled webpki roots plus the system store when there is one. A container image
//! without `ca-certificates` has no system store: that is not an error, public endpoints still
//! verify against the bundled roots. A `ca_file`, when set, replaces both (as Prometheus's
//! `tls_config.ca_file` does).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// How to verify a server and, for mTLS, what to present to it. Field names are Prometheus's
/// `tls_config` ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA bundle (PEM) to verify the server with; when set, ONLY these CAs are trusted (as
    /// Prometheus's `tls_config.ca_file`). Defaults to the bundled webpki roots plus the system
    /// store when there is one.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), for mTLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key: PKCS#8, PKCS#1 or SEC1 PEM.
    pub key_file: Option<PathBuf>,
    /// The name the server certificate must carry, when it differs from the URL host (e.g. the
    /// endpoint is a VPC IP address).
    pub server_name: Option<String>,
    /// Accept any server certificate. Handshake signatures are still checked, so the peer must
    /// hold the key of the certificate it sent, but anyone can be that peer. Whoever builds a
    /// client with this set logs it at `warn`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A TLS setting that cannot be used. The message names the setting, the file and what is wrong:
/// `tls_config.cert_file /x: no certificate in the file`.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct TlsError {
    field: Option<&'static str>,
    path: Option<PathBuf>,
    reason: String,
}

impl TlsError {
    fn file(field: &'static str, path: &Path, reason: impl Into<String>) -> Self {
        TlsError {
            field: Some(field),
            path: Some(path.to_owned()),
            reason: reason.into(),
        }
    }

    fn config(field: Option<&'static str>, reason: impl Into<String>) -> Self {
        TlsError {
            field,
            path: None,
            reason: reason.into(),
        }
    }

    /// The [`TlsConfig`] field at fault (`ca_file`, `cert_file`, `key_file`, `server_name`),
    /// when one is; callers that read the settings from elsewhere (e.g. the
    /// `OTEL_EXPORTER_OTLP_*_CERTIFICATE` variables) use it to name their own source.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }

    /// The file at fault, when one is.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// What is wrong, without the field and the file.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    fn describe(&self) -> String {
        match (self.field, &self.path) {
            (Some(field), Some(path)) => {
                format!("tls_config.{field} {}: {}", path.display(), self.reason)
            }
            (Some(field), None) => format!("tls_config.{field}: {}", self.reason),
            (None, _) => format!("tls_config: {}", self.reason),
        }
    }
}

/// How many roots the default trust store holds, for a debug log at start-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootsSummary {
    /// The bundled Mozilla roots (webpki-roots).
    pub webpki: usize,
    /// Roots from the system store that parsed and were added.
    pub system: usize,
    /// Problems reading the system store (an absent store is one of these, not a failure).
    pub system_errors: Vec<String>,
}

impl fmt::Display for RootsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bundled webpki roots, {} system roots",
            self.webpki, self.system
        )?;
        if !self.system_errors.is_empty() {
            write!(f, " (system store: {})", self.system_errors.join("; "))?;
        }
        Ok(())
    }
}

/// The default roots (bundled + system), loaded once per process.
fn default_roots() -> &'static (Arc<RootCertStore>, RootsSummary) {
    static ROOTS: OnceLock<(Arc<RootCertStore>, RootsSummary)> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let (roots, summary) = roots_with(rustls_native_certs::load_native_certs);
        (Arc::new(roots), summary)
    })
}

/// The bundled roots plus whatever `load_system` finds. `load_system` is injected so the
/// "no system store" path is testable without touching the process environment: errors and an
/// empty result never fail, the bundled roots are there regardless.
fn roots_with(
    load_system: impl FnOnce() -> rustls_native_certs::CertificateResult,
) -> (RootCertStore, RootsSummary) {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let webpki = roots.len();
    let system = load_system();
    let (added, _ignored) = roots.add_parsable_certificates(system.certs);
    let summary = RootsSummary {
        webpki,
        system: added,
        system_errors: system.errors.iter().map(ToString::to_string).collect(),
    };
    (roots, summary)
}

/// Installs ring as the process-wide rustls provider, unless one is installed already.
///
/// Our own clients never need it: each carries its config. But our crates compile reqwest with
/// `rustls-no-provider`, and reqwest then panics when *other* code in the process builds a client
/// without a preconfigured TLS config and no default provider (e.g. opentelemetry-otlp's own
/// default client). Call it once at start-up; `init()` and the sidecar do.
pub fn install_default_provider() {
    // An error only says a provider is installed already: that one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How many bundled and system roots the default trust store holds (loading it if needed).
pub fn roots_summary() -> RootsSummary {
    default_roots().1.clone()
}

/// The provider every config uses: ring, whatever the process default is.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn read_file(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|err| TlsError::file(field, path, format!("cannot read: {err}")))
}

/// Every certificate in a PEM file; none is an error.
fn certificates(
    field: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::file(field, path, format!("not a PEM certificate file: {err}")))?;
    if certs.is_empty() {
        return Err(TlsError::file(field, path, "no certificate in the file"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file("key_file", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::file(
            "key_file",
            path,
            "no private key in the file (PKCS#8, PKCS#1 or SEC1 PEM)",
        ),
        other => TlsError::file("key_file", path, format!("not a PEM key file: {other}")),
    })
}

impl TlsConfig {
    /// Whether every field has its default value (nothing to say in a config dump).
    pub fn is_default(&self) -> bool {
        *self == TlsConfig::default()
    }

    /// A rustls client config (ring provider, TLS 1.2 and 1.3) following these settings, with
    /// `alpn` as the ALPN protocols (e.g. `[b"h2"]` for gRPC, empty for none).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<ClientConfig, TlsError> {
        self.client_config_with(alpn, || default_roots().0.clone())
    }

    /// [`TlsConfig::client_config`] with the default roots from `default_roots` (called only
    /// when they are needed).
    fn client_config_with(
        &self,
        alpn: &[&[u8]],
        default_roots: impl FnOnce() -> Arc<RootCertStore>,
    ) -> Result<ClientConfig, TlsError> {
        let provider = provider();
        let algorithms = provider.signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure_skip_verify {
            Arc::new(AcceptAnyCertificate { algorithms })
        } else {
            let roots = match &self.ca_file {
                Some(path) => ca_roots(path)?,
                None => default_roots(),
            };
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|err| TlsError::config(Some("ca_file"), err.to_string()))?;
            match &self.server_name {
                Some(name) => {
                    let name = ServerName::try_from(name.trim().to_owned()).map_err(|_| {
                        TlsError::config(
                            Some("server_name"),
                            format!("{name:?} is not a DNS name or an IP address"),
                        )
                    })?;
                    Arc::new(VerifyAsName {
                        inner: webpki,
                        name,
                    })
                }
                None => webpki,
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::config(None, err.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let chain = certificates("cert_file", cert_file)?;
                let key = private_key(key_file)?;
                builder.with_client_auth_cert(chain, key).map_err(|err| {
                    TlsError::file(
                        "key_file",
                        key_file,
                        format!(
                            "does not go with the certificate in {}: {err}",
                            cert_file.display()
                        ),
                    )
                })?
            }
            (Some(_), None) => {
                return Err(TlsError::config(
                    Some("key_file"),
                    "cert_file is set without key_file",
                ));
            }
            (None, Some(_)) => {
                return Err(TlsError::config(
                    Some("cert_file"),
                    "key_file is set without cert_file",
                ));
            }
            (None, None) => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// Only the CAs of `path` (as Prometheus's `ca_file`: the public roots are not added).
fn ca_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("ca_file", path)? {
        roots.add(cert).map_err(|err| {
            TlsError::file("ca_file", path, format!("unusable CA certificate: {err}"))
        })?;
    }
    Ok(Arc::new(roots))
}

impl TlsConfig {
    /// The name to send as SNI and verify against for a connection to `host`: `server_name`
    /// when set, else the host itself (brackets of an IPv6 literal removed).
    pub(crate) fn sni_for(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        let name = self
            .server_name
            .as_deref()
            .map(str::trim)
            .unwrap_or_else(|| host.trim_start_matches('[').trim_end_matches(']'));
        ServerName::try_from(name.to_owned()).map_err(|_| {
            TlsError::config(
                Some("server_name"),
                format!("{name:?} is not a DNS name or an IP address"),
            )
        })
    }
}

/// Verifies the chain against the configured roots but the name against `server_name`, whatever
/// the connection asked for. reqwest sends the URL host as SNI (it cannot be told otherwise), so
/// for reqwest clients SNI stays the URL host while the certificate is checked for this name;
/// the gRPC connector sends this name as SNI too.
#[derive(Debug)]
struct VerifyAsName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAsName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake signatures are
/// verified with the provider's algorithms, so the connection is at least with the holder of the
/// certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn err(config: &TlsConfig) -> String {
        config.client_config(&[]).unwrap_err().to_string()
    }

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["backend.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn defaults_build_with_bundled_roots() {
        let config = TlsConfig::default();
        assert!(config.is_default());
        let client = config.client_config(&[b"h2"]).unwrap();
        assert_eq!(client.alpn_protocols, [b"h2".to_vec()]);
        let summary = roots_summary();
        assert!(summary.webpki > 100, "{summary}");
        assert!(summary.to_string().contains("bundled webpki roots"));
        assert!(
            !TlsConfig {
                insecure_skip_verify: true,
                ..TlsConfig::default()
            }
            .is_default()
        );
    }

    /// The "no system store" path through an injected loader: an absent store (the loader's
    /// errors and no certificates) still gives a working config with the bundled roots. The
    /// telemetry crate's `no_ca_store` test covers the real thing (an empty `/etc/ssl`).
    #[test]
    fn an_absent_system_store_is_not_a_failure() {
        let (roots, summary) = roots_with(|| {
            // What rustls-native-certs reports when /etc/ssl/certs is not there.
            let mut result = rustls_native_certs::CertificateResult::default();
            result.errors.push(rustls_native_certs::Error {
                context: "failed to read certificate directory",
                kind: rustls_native_certs::ErrorKind::Io {
                    inner: std::io::ErrorKind::NotFound.into(),
                    path: PathBuf::from("/etc/ssl/certs"),
                },
            });
            result
        });
        assert_eq!(summary.system, 0);
        assert_eq!(summary.system_errors.len(), 1, "{summary}");
        assert!(summary.to_string().contains("/etc/ssl/certs"), "{summary}");
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len());
        let config = TlsConfig::default()
            .client_config_with(&[], || Arc::new(roots))
            .unwrap();
        assert!(config.alpn_protocols.is_empty());

        // Through the real loader, with the variables it honours pointing at an empty directory
        // (in a child process, so no other test sees the changed environment).
        if std::env::var_os("WXCLOUDRUN_CONNECT_CHILD").is_some() {
            let summary = roots_summary();
            assert_eq!(summary.system, 0, "{summary}");
            TlsConfig::default().client_config(&[]).unwrap();
            return;
        }
        let empty = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tls::tests::an_absent_system_store_is_not_a_failure",
                "--nocapture",
            ])
            .env("WXCLOUDRUN_CONNECT_CHILD", "1")
            .env("SSL_CERT_FILE", empty.path().join("none.pem"))
            .env("SSL_CERT_DIR", empty.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn pem_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let cert_path = write(dir.path(), "client.pem", &cert);
        let key_path = write(dir.path(), "client.key", &key);
        let text = write(dir.path(), "notes.txt", "hello\n");
        let broken = write(
            dir.path(),
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let missing = dir.path().join("missing.pem");

        let ca = |path: &Path| TlsConfig {
            ca_file: Some(path.to_owned()),
            ..TlsConfig::default()
        };
        let message = err(&ca(&text));
        assert_eq!(
            message,
            format!(
                "tls_config.ca_file {}: no certificate in the file",
                text.display()
            )
        );
        let message = err(&ca(&broken));
        assert!(
            message.starts_with(&format!(
                "tls_config.ca_file {}: not a PEM",
                broken.display()
            )),
            "{message}"
        );
        let message = err(&ca(&missing));
        assert!(message.contains("missing.pem: cannot read"), "{message}");
        // A key is not a certificate.
        let message = err(&ca(&key_path));
        assert!(
            message.contains("client.key: no certificate in the file"),
            "{message}"
        );

        let mtls = |cert: &Path, key: &Path| TlsConfig {
            cert_file: Some(cert.to_owned()),
            key_file: Some(key.to_owned()),
            ..TlsConfig::default()
        };
        let message = err(&mtls(&text, &key_path));
        assert_eq!(
            message,
            format!(
                "tls_config.cert_file {}: no certificate in the file",
                text.display()
            )
        );
        let error = mtls(&cert_path, &cert_path).client_config(&[]).unwrap_err();
        assert_eq!(error.field(), Some("key_file"));
        assert_eq!(error.path(), Some(cert_path.as_path()));
        assert!(
            error.reason().starts_with("no private key in the file"),
            "{error}"
        );
        // A key that does not go with the certificate.
        let (_, other_key) = self_signed();
        let other_key = write(dir.path(), "other.key", &other_key);
        let message = err(&mtls(&cert_path, &other_key));
        assert!(
            message.contains("other.key: does not go with the certificate"),
            "{message}"
        );
        mtls(&cert_path, &key_path).client_config(&[]).unwrap();

        let message = err(&TlsConfig {
            cert_file: Some(cert_path.clone()),
            ..TlsConfig::default()
        });
        assert_eq!(
            message,
            "tls_config.key_file: cert_file is set without key_file"
        );
        let message = err(&TlsConfig {
            key_file: Some(key_path.clone()),
            ..TlsConfig::default()
        });
        assert_eq!(
            message,
            "tls_config.cert_file: key_file is set without cert_file"
        );
        let message = err(&TlsConfig {
            server_name: Some("not a name".to_owned()),
            ..TlsConfig::default()
        });
        assert!(message.starts_with("tls_config.server_name:"), "{message}");
    }

    #[test]
    fn parses_from_prometheus_field_names() {
        let config: TlsConfig = serde_json::from_str(
            r#"{"ca_file":"/etc/ca.pem","server_name":"backend.test","insecure_skip_verify":true}"#,
        )
        .unwrap();
        assert_eq!(config.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(config.server_name.as_deref(), Some("backend.test"));
        assert!(config.insecure_skip_verify);
        let unknown = serde_json::from_str::<TlsConfig>(r#"{"ca":"x"}"#).unwrap_err();
        assert!(unknown.to_string().contains("unknown field"), "{unknown}");
    }

    #[test]
    fn sni_is_the_host_unless_server_name_is_set() {
        let default = TlsConfig::default();
        assert_eq!(
            default.sni_for("collector.example").unwrap(),
            ServerName::try_from("collector.example").unwrap()
        );
        assert!(matches!(
            default.sni_for("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        let named = TlsConfig {
            server_name: Some("backend.test".to_owned()),
            ..TlsConfig::default()
        };
        assert_eq!(
            named.sni_for("10.0.0.7").unwrap(),
            ServerName::try_from("backend.test").unwrap()
        );
    }
}
