//! The TLS test support itself: the generated PKI, the loopback TLS listener, and a real
//! Prometheus (Debian 2.42) behind a web configuration with mTLS and basic auth, acting as a
//! remote-write receiver. What the sidecar's TLS tests rely on is proven here first.
//!
//! Without a `prometheus` binary the Prometheus test is skipped loudly, except under CI, where it
//! fails.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use wxcloudrun_telemetry_tests::prometheus::SecurePrometheus;
use wxcloudrun_telemetry_tests::require_tool;
use wxcloudrun_telemetry_tests::tls::{
    ClientSettings, HttpsClient, TestPki, TlsListener, server_config,
};
use wxcloudrun_telemetry_tests::web_config::WebConfig;

/// Serves `GET /hello` → `hi` over TLS; returns the listener's stats and address.
async fn hello_server(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> (
    wxcloudrun_telemetry_tests::tls::TlsStats,
    std::net::SocketAddr,
) {
    let listener = TlsListener::bind(server_config(cert, key, client_ca).unwrap())
        .await
        .unwrap();
    let (stats, addr) = (listener.stats(), listener.addr());
    let app = Router::new().route("/hello", get(|| async { "hi" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (stats, addr)
}

#[tokio::test]
async fn the_listener_requires_a_client_certificate_from_the_test_ca() {
    let pki = TestPki::generate().unwrap();
    let (stats, addr) = hello_server(&pki.server_cert, &pki.server_key, Some(&pki.ca_file)).await;

    let with_cert = ClientSettings {
        identity: pki.client_identity(),
        ..ClientSettings::trusting(&pki.ca_file)
    };
    let response = HttpsClient::new(addr, &with_cert)
        .unwrap()
        .get("/hello")
        .await;
    assert_eq!(response, Ok((200, "hi".to_owned())));
    // By name too: `localhost` is one of the server certificate's names.
    let by_name = ClientSettings {
        server_name: Some("localhost".to_owned()),
        ..with_cert.clone()
    };
    let response = HttpsClient::new(addr, &by_name)
        .unwrap()
        .get("/hello")
        .await;
    assert_eq!(response, Ok((200, "hi".to_owned())));
    assert_eq!(stats.handshakes(), 2);
    assert!(stats.failures().is_empty(), "{:?}", stats.failures());

    let without_cert = ClientSettings::trusting(&pki.ca_file);
    let refused = HttpsClient::new(addr, &without_cert)
        .unwrap()
        .get("/hello")
        .await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");

    let stranger = ClientSettings {
        identity: Some((pki.other_client_cert.clone(), pki.other_client_key.clone())),
        ..ClientSettings::trusting(&pki.ca_file)
    };
    let refused = HttpsClient::new(addr, &stranger)
        .unwrap()
        .get("/hello")
        .await;
    assert!(
        refused.is_err(),
        "a client certificate of another CA: {refused:?}"
    );

    // Both refusals are handshake failures on the server's side, nothing was served.
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats.failures().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.failures().len(), 2, "{:?}", stats.failures());
    assert_eq!(stats.handshakes(), 2);
    assert_eq!(stats.connections(), 4);
}

#[tokio::test]
async fn clients_check_the_issuer_and_the_name() {
    let pki = TestPki::generate().unwrap();

    // A server certificate from the other CA is refused by a client trusting the test CA, and
    // accepted by one trusting the other CA.
    let (stats, addr) = hello_server(&pki.other_server_cert, &pki.other_server_key, None).await;
    let refused = HttpsClient::new(addr, &ClientSettings::trusting(&pki.ca_file))
        .unwrap()
        .get("/hello")
        .await;
    let error = refused.expect_err("a server certificate of an unknown CA");
    assert!(error.contains("UnknownIssuer"), "{error}");
    let trusted = HttpsClient::new(addr, &ClientSettings::trusting(&pki.other_ca_file))
        .unwrap()
        .get("/hello")
        .await;
    assert_eq!(trusted, Ok((200, "hi".to_owned())));
    assert_eq!(stats.handshakes(), 1);

    // A certificate for `backend.test` only: not valid for 127.0.0.1, valid under that name.
    let (_, addr) = hello_server(&pki.backend_only_cert, &pki.backend_only_key, None).await;
    let by_address = HttpsClient::new(addr, &ClientSettings::trusting(&pki.ca_file))
        .unwrap()
        .get("/hello")
        .await;
    let error = by_address.expect_err("backend.test's certificate for 127.0.0.1");
    assert!(error.contains("not valid for name"), "{error}");
    let by_name = ClientSettings {
        server_name: Some("backend.test".to_owned()),
        ..ClientSettings::trusting(&pki.ca_file)
    };
    let response = HttpsClient::new(addr, &by_name)
        .unwrap()
        .get("/hello")
        .await;
    assert_eq!(response, Ok((200, "hi".to_owned())));
}

#[tokio::test]
async fn prometheus_behind_mtls_and_basic_auth_lets_only_the_right_client_in() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let pki = TestPki::generate().unwrap();
    let web = WebConfig::tls(&pki.server_cert, &pki.server_key)
        .require_client_cert(&pki.ca_file)
        .basic_auth("sidecar", "right-password");
    let client = ClientSettings {
        identity: pki.client_identity(),
        basic_auth: Some(("sidecar".to_owned(), "right-password".to_owned())),
        ..ClientSettings::trusting(&pki.ca_file)
    };
    let prometheus = SecurePrometheus::start(
        &binary,
        |_, _| "global:\n  scrape_interval: 1m\n".to_owned(),
        &["--web.enable-remote-write-receiver"],
        &web,
        &client,
    )
    .unwrap();
    prometheus
        .wait_ready(Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert!(prometheus.write_url().starts_with("https://127.0.0.1:"));
    let up = prometheus.query("vector(1)").await;
    assert!(up.is_ok_and(|result| result.len() == 1));

    let wrong_password = ClientSettings {
        basic_auth: Some(("sidecar".to_owned(), "wrong-password".to_owned())),
        ..client.clone()
    };
    let response = prometheus
        .client_with(&wrong_password)
        .unwrap()
        .get("/-/ready")
        .await;
    assert_eq!(response.map(|(status, _)| status), Ok(401));

    let no_password = ClientSettings {
        basic_auth: None,
        ..client.clone()
    };
    let response = prometheus
        .client_with(&no_password)
        .unwrap()
        .get("/-/ready")
        .await;
    assert_eq!(response.map(|(status, _)| status), Ok(401));

    // The right password without a client certificate does not get past the handshake.
    let no_cert = ClientSettings {
        identity: None,
        ..client.clone()
    };
    let response = prometheus
        .client_with(&no_cert)
        .unwrap()
        .get("/-/ready")
        .await;
    assert!(response.is_err(), "no client certificate: {response:?}");

    // The remote-write endpoint is behind the same door.
    let response = prometheus
        .client_with(&wrong_password)
        .unwrap()
        .get("/api/v1/write")
        .await;
    assert_eq!(response.map(|(status, _)| status), Ok(401));
}
