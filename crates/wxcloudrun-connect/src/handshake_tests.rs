//! Real TLS handshakes on loopback: a tokio-rustls server with certificates made by rcgen, and
//! the client configs, the gRPC connector and a whole tonic channel against it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::grpc::{self, TlsConnector};
use crate::tls::TlsConfig;

/// A test CA, and files on disk for the configs to point at.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, DER for the server side, PEM files for the client side.
struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: a certificate from another test CA must look unknown, not forged.
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        params.distinguished_name.push(
            DnType::CommonName,
            format!("wxcloudrun-connect test CA {serial}"),
        );
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).unwrap();
        pki
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn leaf(&self, name: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        write_leaf(self.dir.path(), name, cert.der().clone(), cert.pem(), &key)
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        Arc::new(roots)
    }
}

fn write_leaf(
    dir: &Path,
    name: &str,
    der: CertificateDer<'static>,
    pem: String,
    key: &KeyPair,
) -> Leaf {
    let cert_file = dir.join(format!("{name}.pem"));
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&cert_file, pem).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    Leaf {
        chain: vec![der],
        key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        cert_file,
        key_file,
    }
}

/// A self-signed certificate no CA vouches for.
fn self_signed(dir: &Path, names: &[&str]) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    write_leaf(dir, "self-signed", cert.der().clone(), cert.pem(), &key)
}

/// What the server saw of one connection.
#[derive(Clone, Debug, Default)]
struct Seen {
    alpn: Option<Vec<u8>>,
    sni: Option<String>,
    client_cert: bool,
}

/// A TLS server on loopback answering `ping` with `pong` (or, with `h2`, an HTTP/2 server
/// recording each request's head). Client certificates are required when `client_roots` is set.
async fn server(
    leaf: &Leaf,
    client_roots: Option<Arc<RootCertStore>>,
    alpn: &[&[u8]],
) -> (
    SocketAddr,
    Arc<Mutex<Vec<Seen>>>,
    Arc<Mutex<Vec<http::request::Parts>>>,
) {
    let provider = crate::tls::provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_roots {
        Some(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let h2 = alpn.contains(&b"h2".as_slice());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (seen_by_server, requests_by_server) = (seen.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen_by_server.clone();
            let requests = requests_by_server.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (_, connection) = tls.get_ref();
                seen.lock().unwrap().push(Seen {
                    alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
                    sni: connection.server_name().map(str::to_owned),
                    client_cert: connection.peer_certificates().is_some(),
                });
                if h2 {
                    serve_h2(hyper_util::rt::TokioIo::new(tls), requests).await;
                } else {
                    let mut buf = [0u8; 4];
                    if tls.read_exact(&mut buf).await.is_ok() && &buf == b"ping" {
                        let _ = tls.write_all(b"pong").await;
                        let _ = tls.shutdown().await;
                    }
                }
            });
        }
    });
    (addr, seen, requests)
}

/// An HTTP/2 server that records each request's head and answers 200 with a gRPC-style OK.
async fn serve_h2<I>(io: I, requests: Arc<Mutex<Vec<http::request::Parts>>>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let requests = requests.clone();
            async move {
                requests.lock().unwrap().push(request.into_parts().0);
                let response = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "0")
                    .body(String::new())
                    .unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

/// A plaintext HTTP/2 (h2c) server.
async fn h2c_server() -> (SocketAddr, Arc<Mutex<Vec<http::request::Parts>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let sink = requests.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve_h2(hyper_util::rt::TokioIo::new(tcp), sink.clone()));
        }
    });
    (addr, requests)
}

/// A handshake with `config`, sending `name` as SNI, then one ping/pong exchange (with TLS 1.3
/// a rejected client certificate shows only after the handshake, on the first read).
async fn exchange(
    addr: SocketAddr,
    config: &TlsConfig,
    name: ServerName<'static>,
) -> Result<(), String> {
    let client = config.client_config(&[]).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    if &buf == b"pong" {
        Ok(())
    } else {
        Err(format!("unexpected answer {buf:?}"))
    }
}

/// The server's record of the latest connection (it lands just after the client's handshake).
async fn last_seen(seen: &Mutex<Vec<Seen>>) -> Seen {
    for _ in 0..200 {
        if let Some(last) = seen.lock().unwrap().last().cloned() {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server saw no connection")
}

fn dns(name: &'static str) -> ServerName<'static> {
    ServerName::try_from(name).unwrap()
}

fn loopback_ip() -> ServerName<'static> {
    ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
}

#[tokio::test]
async fn default_roots_reject_an_unknown_ca_and_ca_file_accepts_it() {
    let pki = Pki::new();
    let leaf = pki.leaf(
        "backend",
        &["backend.test"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (addr, seen, _) = server(&leaf, None, &[]).await;

    let err = exchange(addr, &TlsConfig::default(), dns("backend.test"))
        .await
        .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    let with_ca = TlsConfig {
        ca_file: Some(pki.ca_file()),
        ..TlsConfig::default()
    };
    exchange(addr, &with_ca, dns("backend.test")).await.unwrap();
    assert_eq!(last_seen(&seen).await.sni.as_deref(), Some("backend.test"));
    // The name is still checked.
    let err = exchange(addr, &with_ca, dns("other.test"))
        .await
        .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn a_ca_file_replaces_the_default_roots() {
    // A certificate from one CA with only another CA's file: rejected, even though the default
    // roots would not have helped either: ca_file is "only these".
    let pki = Pki::new();
    let other = Pki::new();
    let leaf = pki.leaf(
        "backend",
        &["backend.test"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (addr, _, _) = server(&leaf, None, &[]).await;
    let err = exchange(
        addr,
        &TlsConfig {
            ca_file: Some(other.ca_file()),
            ..TlsConfig::default()
        },
        dns("backend.test"),
    )
    .await
    .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn server_name_verifies_an_ip_url_against_the_certificate_name() {
    let pki = Pki::new();
    let leaf = pki.leaf(
        "backend",
        &["backend.test"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (addr, seen, _) = server(&leaf, None, &[]).await;
    let with_ca = TlsConfig {
        ca_file: Some(pki.ca_file()),
        ..TlsConfig::default()
    };
    // The URL is the IP, as reqwest would connect: the certificate does not name it.
    let err = exchange(addr, &with_ca, loopback_ip()).await.unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
    // Same connection (SNI stays the IP, as with reqwest), verified as backend.test.
    let named = TlsConfig {
        server_name: Some("backend.test".to_owned()),
        ..with_ca.clone()
    };
    exchange(addr, &named, loopback_ip()).await.unwrap();
    assert_eq!(last_seen(&seen).await.sni, None);
    // The wrong name fails.
    let wrong = TlsConfig {
        server_name: Some("elsewhere.test".to_owned()),
        ..with_ca
    };
    let err = exchange(addr, &wrong, loopback_ip()).await.unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn insecure_skip_verify_accepts_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let leaf = self_signed(dir.path(), &["self.test"]);
    let (addr, _, _) = server(&leaf, None, &[]).await;
    let err = exchange(addr, &TlsConfig::default(), loopback_ip())
        .await
        .unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
    let insecure = TlsConfig {
        insecure_skip_verify: true,
        // Ignored: nothing is verified.
        server_name: Some("unrelated.test".to_owned()),
        ..TlsConfig::default()
    };
    exchange(addr, &insecure, loopback_ip()).await.unwrap();
}

#[tokio::test]
async fn client_certificates_for_a_server_that_requires_them() {
    let pki = Pki::new();
    let leaf = pki.leaf(
        "backend",
        &["backend.test"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client = pki.leaf("client", &[], ExtendedKeyUsagePurpose::ClientAuth);
    let (addr, seen, _) = server(&leaf, Some(pki.roots()), &[]).await;
    let without = TlsConfig {
        ca_file: Some(pki.ca_file()),
        ..TlsConfig::default()
    };
    let err = exchange(addr, &without, dns("backend.test"))
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let with = TlsConfig {
        cert_file: Some(client.cert_file.clone()),
        key_file: Some(client.key_file.clone()),
        ..without.clone()
    };
    exchange(addr, &with, dns("backend.test")).await.unwrap();
    assert!(last_seen(&seen).await.client_cert);

    // A client certificate from another CA is refused too.
    let stranger = Pki::new().leaf("stranger", &[], ExtendedKeyUsagePurpose::ClientAuth);
    let err = exchange(
        addr,
        &TlsConfig {
            cert_file: Some(stranger.cert_file.clone()),
            key_file: Some(stranger.key_file.clone()),
            ..without
        },
        dns("backend.test"),
    )
    .await
    .unwrap_err();
    assert!(!err.is_empty());
}

#[tokio::test]
async fn the_grpc_connector_negotiates_h2_over_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf(
        "backend",
        &["backend.test"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (addr, seen, _) = server(&leaf, None, &[b"h2", b"http/1.1"]).await;
    let tls = TlsConfig {
        ca_file: Some(pki.ca_file()),
        server_name: Some("backend.test".to_owned()),
        ..TlsConfig::default()
    };
    let (connector, uri) =
        TlsConnector::for_tests(&format!("https://127.0.0.1:{}", addr.port()), &tls).unwrap();
    let stream = connector.oneshot(uri).await.unwrap();
    let (tcp, connection) = stream.inner().get_ref();
    assert_eq!(connection.alpn_protocol(), Some(b"h2".as_slice()));
    assert!(tcp.nodelay().unwrap());
    let seen = last_seen(&seen).await;
    assert_eq!(seen.alpn.as_deref(), Some(b"h2".as_slice()));
    // The gRPC connector sends server_name as SNI.
    assert_eq!(seen.sni.as_deref(), Some("backend.test"));

    // Without the CA the connector fails like any client.
    let (connector, uri) = TlsConnector::for_tests(
        &format!("https://127.0.0.1:{}", addr.port()),
        &TlsConfig {
            server_name: Some("backend.test".to_owned()),
            ..TlsConfig::default()
        },
    )
    .unwrap();
    let err = connector.oneshot(uri).await.unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

/// One request through a channel, as tonic's generated clients send it.
async fn grpc_call(channel: tonic::transport::Channel) -> Result<http::StatusCode, String> {
    let request = http::Request::builder()
        .method("POST")
        .uri("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::empty())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), channel.oneshot(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|err| {
            let mut message = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            message
        })?;
    Ok(response.status())
}

#[tokio::test]
async fn a_channel_reaches_an_h2_server_over_tls_and_in_plaintext() {
    let pki = Pki::new();
    let leaf = pki.leaf(
        "backend",
        &["backend.test", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client = pki.leaf("client", &[], ExtendedKeyUsagePurpose::ClientAuth);
    let (addr, seen, requests) = server(&leaf, Some(pki.roots()), &[b"h2"]).await;
    let endpoint = format!("https://127.0.0.1:{}", addr.port());
    let tls = TlsConfig {
        ca_file: Some(pki.ca_file()),
        cert_file: Some(client.cert_file.clone()),
        key_file: Some(client.key_file.clone()),
        ..TlsConfig::default()
    };
    let channel = grpc::channel(&endpoint, &tls, Duration::from_secs(5), "wx-test/1.0").unwrap();
    assert_eq!(
        grpc_call(channel.clone()).await.unwrap(),
        http::StatusCode::OK
    );
    // The connection is kept: a second call makes no second handshake.
    assert_eq!(grpc_call(channel).await.unwrap(), http::StatusCode::OK);
    assert_eq!(seen.lock().unwrap().len(), 1);
    {
        let requests = requests.lock().unwrap();
        assert_eq!(requests.len(), 2);
        let head = &requests[0];
        assert_eq!(head.version, http::Version::HTTP_2);
        assert_eq!(head.uri.scheme_str(), Some("https"));
        assert_eq!(
            head.uri.authority().map(|a| a.as_str().to_owned()),
            Some(format!("127.0.0.1:{}", addr.port()))
        );
        assert_eq!(
            head.uri.path(),
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        let agent = head.headers["user-agent"].to_str().unwrap();
        assert!(agent.starts_with("wx-test/1.0"), "{agent}");
    }

    // Without the client certificate the server refuses the call.
    let no_client_cert = TlsConfig {
        ca_file: Some(pki.ca_file()),
        ..TlsConfig::default()
    };
    let channel = grpc::channel(&endpoint, &no_client_cert, Duration::from_secs(5), "t").unwrap();
    assert!(grpc_call(channel).await.is_err());

    // An untrusted server is refused.
    let channel = grpc::channel(
        &endpoint,
        &TlsConfig::default(),
        Duration::from_secs(5),
        "t",
    )
    .unwrap();
    let err = grpc_call(channel).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    // Plaintext h2c.
    let (addr, requests) = h2c_server().await;
    let channel = grpc::channel(
        &format!("http://127.0.0.1:{}", addr.port()),
        &TlsConfig::default(),
        Duration::from_secs(5),
        "wx-test/1.0",
    )
    .unwrap();
    assert_eq!(grpc_call(channel).await.unwrap(), http::StatusCode::OK);
    assert_eq!(requests.lock().unwrap()[0].uri.scheme_str(), Some("http"));
}

#[tokio::test]
async fn the_connect_timeout_covers_a_server_that_never_answers_the_handshake() {
    // A listener that accepts TCP and then says nothing: the TLS handshake never completes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let channel = grpc::channel(
        &format!("https://127.0.0.1:{}", addr.port()),
        &TlsConfig::default(),
        Duration::from_millis(300),
        "t",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = grpc_call(channel).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    assert!(err.contains("deadline has elapsed"), "{err}");
}
