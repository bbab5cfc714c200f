//! TLS for the end-to-end tests: a throwaway PKI made at run time ([`TestPki`]), the two ends of
//! a loopback TLS connection built on its PEM files ([`server_config`], [`client_config`],
//! [`https_client`]), and a TLS listener that `axum::serve` accepts ([`TlsListener`]).
//!
//! Everything uses rustls with the `ring` provider, named explicitly: the tree may hold a second
//! provider (through a dependency's features), and then rustls has no process default.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// How long a TLS handshake on a [`TlsListener`] may take before it counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A throwaway PKI, as PEM files in a temporary directory that lives as long as this value.
///
/// Two unrelated certificate authorities: the test CA signs the server and client certificates
/// the tests trust; the other CA stands for "a certificate from somewhere else". Keys are ECDSA
/// P-256 in PKCS#8 PEM (what Go's `crypto/tls` and rustls both read).
#[derive(Debug)]
pub struct TestPki {
    /// The directory holding every file below.
    pub dir: tempfile::TempDir,
    /// The test CA's certificate.
    pub ca_file: PathBuf,
    /// A server certificate signed by the test CA, for `127.0.0.1`, `localhost` and
    /// `backend.test` (subject alternative names).
    pub server_cert: PathBuf,
    /// The key of [`TestPki::server_cert`].
    pub server_key: PathBuf,
    /// A server certificate signed by the test CA for `backend.test` only: a client connecting
    /// to `127.0.0.1` must name `backend.test` to accept it.
    pub backend_only_cert: PathBuf,
    /// The key of [`TestPki::backend_only_cert`].
    pub backend_only_key: PathBuf,
    /// A client certificate (`CN=sidecar-client`, client-auth usage) signed by the test CA.
    pub client_cert: PathBuf,
    /// The key of [`TestPki::client_cert`].
    pub client_key: PathBuf,
    /// The other CA's certificate, unrelated to the test CA.
    pub other_ca_file: PathBuf,
    /// A server certificate signed by the other CA, with the same names as
    /// [`TestPki::server_cert`]: only its issuer is wrong.
    pub other_server_cert: PathBuf,
    /// The key of [`TestPki::other_server_cert`].
    pub other_server_key: PathBuf,
    /// A client certificate signed by the other CA: a server trusting the test CA refuses it.
    pub other_client_cert: PathBuf,
    /// The key of [`TestPki::other_client_cert`].
    pub other_client_key: PathBuf,
}

/// The names of [`TestPki::server_cert`].
pub const SERVER_NAMES: [&str; 3] = ["127.0.0.1", "localhost", "backend.test"];

impl TestPki {
    /// Generates the whole PKI into a new temporary directory.
    pub fn generate() -> Result<TestPki, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let write = |name: &str, pem: &str| -> Result<PathBuf, String> {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).map_err(|e| format!("write {}: {e}", path.display()))?;
            Ok(path)
        };
        let fail = |e: rcgen::Error| format!("rcgen: {e}");

        let (ca, ca_pem) = authority("wxcloudrun test CA").map_err(fail)?;
        let (other_ca, other_ca_pem) = authority("unrelated test CA").map_err(fail)?;
        let server = leaf(
            &ca,
            "server",
            &SERVER_NAMES,
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let backend_only = leaf(
            &ca,
            "backend.test",
            &["backend.test"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf(
            &ca,
            "sidecar-client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let other_server = leaf(
            &other_ca,
            "server",
            &SERVER_NAMES,
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let other_client = leaf(
            &other_ca,
            "stranger",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (server, backend_only, client, other_server, other_client) = (
            server.map_err(fail)?,
            backend_only.map_err(fail)?,
            client.map_err(fail)?,
            other_server.map_err(fail)?,
            other_client.map_err(fail)?,
        );

        Ok(TestPki {
            ca_file: write("ca.pem", &ca_pem)?,
            server_cert: write("server.pem", &server.0)?,
            server_key: write("server-key.pem", &server.1)?,
            backend_only_cert: write("backend-only.pem", &backend_only.0)?,
            backend_only_key: write("backend-only-key.pem", &backend_only.1)?,
            client_cert: write("client.pem", &client.0)?,
            client_key: write("client-key.pem", &client.1)?,
            other_ca_file: write("other-ca.pem", &other_ca_pem)?,
            other_server_cert: write("other-server.pem", &other_server.0)?,
            other_server_key: write("other-server-key.pem", &other_server.1)?,
            other_client_cert: write("other-client.pem", &other_client.0)?,
            other_client_key: write("other-client-key.pem", &other_client.1)?,
            dir,
        })
    }

    /// The client certificate and key of the test CA, as [`ClientSettings::identity`] takes it.
    pub fn client_identity(&self) -> Option<(PathBuf, PathBuf)> {
        Some((self.client_cert.clone(), self.client_key.clone()))
    }
}

/// A self-signed CA: its issuer (to sign with) and its certificate as PEM.
fn authority(name: &str) -> Result<(Issuer<'static, KeyPair>, String), rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let certificate = params.self_signed(&key)?;
    Ok((Issuer::new(params, key), certificate.pem()))
}

/// An end-entity certificate signed by `issuer`: (certificate PEM, key PEM).
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), rcgen::Error> {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, issuer)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("read certificates {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("read key {}: {e}", path.display()))
}

fn root_store(ca_file: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca_file)? {
        roots
            .add(cert)
            .map_err(|e| format!("CA {}: {e}", ca_file.display()))?;
    }
    Ok(roots)
}

/// A server configuration presenting `cert_file`/`key_file`; with `client_ca_file`, a client
/// certificate signed by that CA is required. ALPN offers HTTP/1.1 only.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("protocol versions: {e}"))?;
    let builder = match client_ca_file {
        Some(ca_file) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(root_store(ca_file)?),
                provider(),
            )
            .build()
            .map_err(|e| format!("client verifier: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(read_certs(cert_file)?, read_key(key_file)?)
        .map_err(|e| format!("server certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How a test client reaches a TLS server.
#[derive(Clone, Debug, Default)]
pub struct ClientSettings {
    /// The only CA the client trusts.
    pub ca_file: PathBuf,
    /// A client certificate and its key, to present when asked.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Basic auth (user, password) sent with every request.
    pub basic_auth: Option<(String, String)>,
    /// The name to connect to and verify instead of the IP address (resolved to it).
    pub server_name: Option<String>,
}

impl ClientSettings {
    /// Trusting `ca_file`, no client certificate, no credentials.
    pub fn trusting(ca_file: &Path) -> ClientSettings {
        ClientSettings {
            ca_file: ca_file.to_path_buf(),
            ..ClientSettings::default()
        }
    }
}

/// A client configuration trusting only `ca_file`, presenting `identity` (certificate file, key
/// file) when the server asks for one.
pub fn client_config(
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("protocol versions: {e}"))?
        .with_root_certificates(root_store(ca_file)?);
    match identity {
        Some((cert_file, key_file)) => builder
            .with_client_auth_cert(read_certs(cert_file)?, read_key(key_file)?)
            .map_err(|e| format!("client certificate: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// An HTTPS client with `settings`' trust and identity (not its credentials, see
/// [`HttpsClient`]), bounded to 10 s a request, never using a proxy.
pub fn https_client(
    settings: &ClientSettings,
    addr: SocketAddr,
) -> Result<reqwest::Client, String> {
    let identity = settings
        .identity
        .as_ref()
        .map(|(cert, key)| (cert.as_path(), key.as_path()));
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(&settings.ca_file, identity)?)
        .no_proxy()
        .timeout(Duration::from_secs(10));
    if let Some(name) = &settings.server_name {
        builder = builder.resolve(name, addr);
    }
    builder.build().map_err(|e| format!("HTTPS client: {e}"))
}

/// A client for one HTTPS server: trust, identity and basic auth from [`ClientSettings`].
#[derive(Clone, Debug)]
pub struct HttpsClient {
    client: reqwest::Client,
    base: String,
    basic_auth: Option<(String, String)>,
}

impl HttpsClient {
    /// A client for the server at `addr` (by `settings.server_name` when set).
    pub fn new(addr: SocketAddr, settings: &ClientSettings) -> Result<HttpsClient, String> {
        let host = match &settings.server_name {
            Some(name) => format!("{name}:{}", addr.port()),
            None => addr.to_string(),
        };
        Ok(HttpsClient {
            client: https_client(settings, addr)?,
            base: format!("https://{host}"),
            basic_auth: settings.basic_auth.clone(),
        })
    }

    /// `https://HOST:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET path`: the status and the body as text; `Err` when no response came (refused
    /// handshake, timeout, …), with the whole error chain.
    pub async fn get(&self, path: &str) -> Result<(u16, String), String> {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| error_chain(&e))?;
        Ok((status, body))
    }
}

/// An error and its sources, `: `-separated (reqwest's own message hides the TLS cause).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What a [`TlsListener`] saw: TCP connections, completed handshakes, failed handshakes.
#[derive(Clone, Debug, Default)]
pub struct TlsStats {
    inner: Arc<Mutex<StatsInner>>,
}

#[derive(Debug, Default)]
struct StatsInner {
    connections: usize,
    handshakes: usize,
    failures: Vec<String>,
}

impl TlsStats {
    /// TCP connections accepted, whatever became of them.
    pub fn connections(&self) -> usize {
        self.inner.lock().expect("stats lock").connections
    }

    /// TLS handshakes completed (the client certificate, if required, verified).
    pub fn handshakes(&self) -> usize {
        self.inner.lock().expect("stats lock").handshakes
    }

    /// Why each failed handshake failed, in order.
    pub fn failures(&self) -> Vec<String> {
        self.inner.lock().expect("stats lock").failures.clone()
    }
}

/// A loopback TLS listener for `axum::serve`: accepts TCP connections and completes each
/// handshake in a task of its own (a slow or failing client holds up no other), recording what
/// happened in [`TlsStats`]. Needs a Tokio runtime; stops accepting once dropped.
#[derive(Debug)]
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    stats: TlsStats,
}

impl TlsListener {
    /// Listens on a free port of 127.0.0.1 with `config`.
    pub async fn bind(config: Arc<rustls::ServerConfig>) -> io::Result<TlsListener> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        TlsListener::from_tcp(listener, config)
    }

    /// Accepts TLS on `listener` with `config`.
    pub fn from_tcp(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<TlsListener> {
        let local_addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let stats = TlsStats::default();
        let (tx, ready) = mpsc::channel(16);
        let recorded = stats.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = tx.closed() => return,
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        // Out of file descriptors or the like: try again shortly.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                recorded.inner.lock().expect("stats lock").connections += 1;
                let (acceptor, tx, recorded) = (acceptor.clone(), tx.clone(), recorded.clone());
                tokio::spawn(async move {
                    let outcome =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    match outcome {
                        Ok(Ok(tls)) => {
                            recorded.inner.lock().expect("stats lock").handshakes += 1;
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => recorded
                            .inner
                            .lock()
                            .expect("stats lock")
                            .failures
                            .push(e.to_string()),
                        Err(_) => recorded
                            .inner
                            .lock()
                            .expect("stats lock")
                            .failures
                            .push("handshake timed out".to_owned()),
                    }
                });
            }
        });
        Ok(TlsListener {
            local_addr,
            ready,
            stats,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What it saw so far (and will see: the stats are shared).
    pub fn stats(&self) -> TlsStats {
        self.stats.clone()
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task is gone (its runtime is shutting down): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
