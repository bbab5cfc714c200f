//! The binary's exporters over TLS, black-box: a real Prometheus (Debian 2.42) as remote-write
//! receiver behind `--web.config.file` (server certificate, required client certificate, basic
//! auth), an OTLP/HTTP receiver over HTTPS on loopback, certificates made at run time. Also the
//! error reasons on the admin endpoint, password rotation, `server_name`, the OTLP environment
//! variables, secrets that never print, and starting without any CA store.
//!
//! Every child runs in a cleared environment (plus `PATH`, `HOSTNAME` and what the test sets).
//! Without a `prometheus` binary the Prometheus tests are skipped loudly, except under CI, where
//! they fail.

mod support_tls;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support_tls::*;
use wxcloudrun_telemetry_tests::prometheus::{Prometheus, SecurePrometheus, wait_for};
use wxcloudrun_telemetry_tests::require_tool;
use wxcloudrun_telemetry_tests::tls::{ClientSettings, TestPki};
use wxcloudrun_telemetry_tests::web_config::{WebConfig, basic_auth_header};

const USER: &str = "sidecar";
const PASSWORD: &str = "right-password";
const REQUESTS: &str = "wxcloudrun_sidecar_export_requests_total";
const ERRORS: &str = "wxcloudrun_sidecar_export_errors_total";
/// The name of the remote-write exporter in the TOML files (its `exporter` label).
const EXPORTER: &str = "secure";

fn deadline(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

/// A Prometheus remote-write receiver behind `web`, ready; queried with `client`.
async fn secure_prometheus(
    binary: &Path,
    web: &WebConfig,
    client: &ClientSettings,
) -> SecurePrometheus {
    let prometheus = SecurePrometheus::start(
        binary,
        |_, _| "global:\n  scrape_interval: 1m\n".to_owned(),
        &["--web.enable-remote-write-receiver"],
        web,
        client,
    )
    .unwrap();
    prometheus.wait_ready(deadline(60)).await.unwrap();
    prometheus
}

/// The client that gets through [`full_web_config`].
fn full_client(pki: &TestPki) -> ClientSettings {
    ClientSettings {
        identity: pki.client_identity(),
        basic_auth: Some((USER.to_owned(), PASSWORD.to_owned())),
        ..ClientSettings::trusting(&pki.ca_file)
    }
}

/// The test PKI's server certificate, a client certificate of the test CA required, basic auth.
fn full_web_config(pki: &TestPki) -> WebConfig {
    WebConfig::tls(&pki.server_cert, &pki.server_key)
        .require_client_cert(&pki.ca_file)
        .basic_auth(USER, PASSWORD)
}

/// The sidecar's TOML: scrape `scrape_url` every second, one `[[remote_write]]` named
/// [`EXPORTER`] to `url` with `extra` lines (auth, TLS, …) added to it.
fn remote_write_toml(scrape_url: &str, url: &str, extra: &str) -> String {
    format!(
        "scrape_url = {}\nscrape_interval = \"1s\"\n\n[[remote_write]]\nname = {}\nurl = {}\n\
         remote_timeout = \"5s\"\n{extra}",
        toml_str(scrape_url),
        toml_str(EXPORTER),
        toml_str(url),
    )
}

/// `tls_config` trusting the test CA and presenting its client certificate.
fn tls_config_line(pki: &TestPki, server_name: Option<&str>) -> String {
    let server_name = server_name
        .map(|name| format!(", server_name = {}", toml_str(name)))
        .unwrap_or_default();
    format!(
        "tls_config = {{ ca_file = {}, cert_file = {}, key_file = {}{server_name} }}\n",
        toml_path(&pki.ca_file),
        toml_path(&pki.client_cert),
        toml_path(&pki.client_key),
    )
}

fn basic_auth_file_line(password_file: &Path) -> String {
    format!(
        "basic_auth = {{ username = {}, password_file = {} }}\n",
        toml_str(USER),
        toml_path(password_file)
    )
}

/// A real Prometheus behind [`full_web_config`], the page to scrape, and a password file holding
/// `password`; `None` (test skipped) without a `prometheus` binary.
struct MtlsBackend {
    pki: TestPki,
    prometheus: SecurePrometheus,
    scrape_url: String,
    password_file: std::path::PathBuf,
    _secrets: tempfile::TempDir,
}

impl MtlsBackend {
    async fn start(password: &str) -> Option<MtlsBackend> {
        let binary = require_tool("prometheus")?;
        let pki = TestPki::generate().unwrap();
        let prometheus =
            secure_prometheus(&binary, &full_web_config(&pki), &full_client(&pki)).await;
        let secrets = tempfile::tempdir().unwrap();
        let password_file = secrets.path().join("password");
        write_password(&password_file, password);
        Some(MtlsBackend {
            pki,
            prometheus,
            scrape_url: serve_page().await,
            password_file,
            _secrets: secrets,
        })
    }

    /// A sidecar pushing to this backend with the password file, the test CA and the client
    /// certificate, plus `extra` TOML lines for its `[[remote_write]]` block.
    fn sidecar(&self, extra: &str) -> Sidecar {
        let block = format!(
            "{extra}{}{}",
            basic_auth_file_line(&self.password_file),
            tls_config_line(&self.pki, None)
        );
        let toml = remote_write_toml(&self.scrape_url, &self.prometheus.write_url(), &block);
        Sidecar::spawn(&toml, &[], &[])
    }
}

/// Waits until the sidecar counted a failed attempt of [`EXPORTER`] for `reason`.
async fn wait_reason(sidecar: &Sidecar, reason: &str, seconds: u64) -> Result<f64, String> {
    sidecar
        .wait_metric(
            ERRORS,
            &[("exporter", EXPORTER), ("reason", reason)],
            1.0,
            deadline(seconds),
        )
        .await
}

/// Writes `password` to `path` the way a secret volume changes: a new file renamed over the old.
fn write_password(path: &Path, password: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, password).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// Waits until `app_requests_total{route="/a"}` is 7 in what `query` returns.
async fn wait_for_app_series<F, Fut>(mut query: F, until: Instant) -> Result<(), String>
where
    F: FnMut(&'static str) -> Fut,
    Fut: Future<Output = Result<Vec<Value>, String>>,
{
    wait_for(until, || {
        let result = query(r#"app_requests_total{route="/a"}"#);
        async move {
            let result = result.await?;
            match result.first().map(|series| series["value"][1].clone()) {
                Some(Value::String(value)) if value == "7" => Ok(()),
                other => Err(format!("app_requests_total not there yet: {other:?}")),
            }
        }
    })
    .await
}

/// Fails unless `app_requests_total` is absent from what `query` returns.
async fn assert_no_app_series<F, Fut>(mut query: F, why: &str)
where
    F: FnMut(&'static str) -> Fut,
    Fut: Future<Output = Result<Vec<Value>, String>>,
{
    let result = query("app_requests_total").await;
    assert_eq!(result, Ok(Vec::new()), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_and_basic_auth_deliver_to_prometheus_and_relabeling_drops_series() {
    let Some(backend) = MtlsBackend::start(PASSWORD).await else {
        return;
    };
    let prometheus = &backend.prometheus;
    let mut sidecar = backend.sidecar(
        "headers = { \"X-Scope-OrgID\" = \"tenant-a\" }\n\
         write_relabel_configs = [ { source_labels = [\"__name__\"], regex = \"process_.*\", \
         action = \"drop\" } ]\n",
    );

    let arrived = wait_for_app_series(|q| prometheus.query(q), deadline(20)).await;
    assert!(
        arrived.is_ok(),
        "{arrived:?}\n{}\n{}",
        sidecar.output_tail(),
        prometheus.log_tail()
    );
    // The same scrape carried `process_cpu_seconds_total`: the relabel rule dropped it.
    let process = prometheus.query(r#"{__name__=~"process_.+"}"#).await;
    assert_eq!(process, Ok(Vec::new()), "write_relabel_configs drop");
    let successes = sidecar
        .metric(REQUESTS, &[("exporter", EXPORTER), ("outcome", "success")])
        .await;
    assert!(successes.is_some_and(|n| n >= 1.0), "{successes:?}");
    sidecar.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_auth_error_dropped_logged_and_survived() {
    let Some(backend) = MtlsBackend::start("wrong-password").await else {
        return;
    };
    let prometheus = &backend.prometheus;
    let mut sidecar = backend.sidecar("");

    let auth = wait_reason(&sidecar, "auth", 20).await;
    assert!(auth.is_ok(), "{auth:?}");
    let dropped = sidecar
        .wait_metric(
            REQUESTS,
            &[("exporter", EXPORTER), ("outcome", "dropped")],
            1.0,
            deadline(10),
        )
        .await;
    assert!(dropped.is_ok(), "401 is dropped, not retried: {dropped:?}");
    // No other reason was counted for these 401s.
    for reason in ["tls", "connect", "timeout", "http_4xx", "http_5xx", "other"] {
        let count = sidecar
            .metric(ERRORS, &[("exporter", EXPORTER), ("reason", reason)])
            .await;
        assert_eq!(count, Some(0.0), "reason {reason}");
    }
    let logged = sidecar.wait_stdout("401", deadline(10)).await;
    assert!(logged.is_ok(), "{logged:?}");
    let failure_line = sidecar.stdout().lines().any(|line| {
        serde_json::from_str::<Value>(line).is_ok_and(|entry| {
            entry["exporter"] == EXPORTER
                && entry["status"].to_string().contains("401")
                && entry["url"]
                    .as_str()
                    .is_some_and(|url| url.contains(&prometheus.addr().to_string()))
        })
    });
    assert!(
        failure_line,
        "a JSON log line with exporter, url and status 401\n{}",
        sidecar.output_tail()
    );

    assert!(sidecar.running(), "the sidecar keeps running");
    let health = sidecar
        .admin_get("/healthz")
        .await
        .map(|(status, _)| status);
    assert_eq!(health, Some(200));
    assert_no_app_series(|q| prometheus.query(q), "nothing got past the password").await;
    sidecar.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_file_is_picked_up_without_a_restart() {
    let Some(backend) = MtlsBackend::start("old-password").await else {
        return;
    };
    let prometheus = &backend.prometheus;
    let mut sidecar = backend.sidecar("");

    let auth = wait_reason(&sidecar, "auth", 20).await;
    assert!(auth.is_ok(), "{auth:?}");
    assert_no_app_series(|q| prometheus.query(q), "the old password is refused").await;

    write_password(&backend.password_file, PASSWORD);
    let arrived = wait_for_app_series(|q| prometheus.query(q), deadline(20)).await;
    assert!(
        arrived.is_ok(),
        "{arrived:?}\n{}\n{}",
        sidecar.output_tail(),
        prometheus.log_tail()
    );
    assert!(sidecar.running(), "the same process, not a restart");
    sidecar.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_of_an_unknown_ca_is_a_tls_error() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let pki = TestPki::generate().unwrap();
    let web = WebConfig::tls(&pki.other_server_cert, &pki.other_server_key);
    let prometheus =
        secure_prometheus(&binary, &web, &ClientSettings::trusting(&pki.other_ca_file)).await;
    let scrape_url = serve_page().await;
    let toml = remote_write_toml(
        &scrape_url,
        &prometheus.write_url(),
        &tls_config_line(&pki, None),
    );
    let mut sidecar = Sidecar::spawn(&toml, &[], &[]);

    let tls = wait_reason(&sidecar, "tls", 20).await;
    assert!(tls.is_ok(), "{tls:?}");
    assert_no_app_series(|q| prometheus.query(q), "the sidecar must not trust it").await;
    assert!(sidecar.running());
    sidecar.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_name_verifies_a_certificate_that_does_not_name_the_address() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let pki = TestPki::generate().unwrap();
    let web = WebConfig::tls(&pki.backend_only_cert, &pki.backend_only_key);
    let by_name = ClientSettings {
        server_name: Some("backend.test".to_owned()),
        ..ClientSettings::trusting(&pki.ca_file)
    };
    let prometheus = secure_prometheus(&binary, &web, &by_name).await;
    let scrape_url = serve_page().await;
    // By address: the certificate names only backend.test.
    let url = format!("https://{}/api/v1/write", prometheus.addr());

    let mut without = Sidecar::spawn(
        &remote_write_toml(&scrape_url, &url, &tls_config_line(&pki, None)),
        &[],
        &[],
    );
    let tls = wait_reason(&without, "tls", 20).await;
    assert!(tls.is_ok(), "without server_name: {tls:?}");
    assert_no_app_series(|q| prometheus.query(q), "without server_name").await;
    without.stop_cleanly();

    let mut with = Sidecar::spawn(
        &remote_write_toml(
            &scrape_url,
            &url,
            &tls_config_line(&pki, Some("backend.test")),
        ),
        &[],
        &[],
    );
    let arrived = wait_for_app_series(|q| prometheus.query(q), deadline(20)).await;
    assert!(
        arrived.is_ok(),
        "with server_name = \"backend.test\": {arrived:?}\n{}\n{}",
        with.output_tail(),
        prometheus.log_tail()
    );
    let tls = with
        .metric(ERRORS, &[("exporter", EXPORTER), ("reason", "tls")])
        .await;
    assert_eq!(tls, Some(0.0), "with server_name");
    with.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_over_https_is_configured_by_the_environment_alone() {
    let pki = TestPki::generate().unwrap();
    let receiver = OtlpReceiver::start(&pki, true).await;
    let scrape_url = serve_page().await;
    // 15 characters: base64 without `=` padding, so the header's only `=` is the separator.
    let (user, password) = ("otlp", "s3cr3t-pw1");
    let authorization = basic_auth_header(user, password);
    assert!(!authorization.contains('='), "{authorization}");
    let headers = format!("Authorization={}", authorization.replace(' ', "%20"));
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_EXPORTER_OTLP_HEADERS", headers),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000".to_owned()),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", path_text(&pki.ca_file)),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            path_text(&pki.client_cert),
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path_text(&pki.client_key)),
        ("OTEL_RESOURCE_ATTRIBUTES", "token=apm-token".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The file configures scraping only.
    let toml = format!(
        "scrape_url = {}\nscrape_interval = \"1s\"\n",
        toml_str(&scrape_url)
    );
    let mut sidecar = Sidecar::spawn(&toml, &[], &env);

    let request = receiver
        .wait_for_metric("app_requests_total", deadline(20))
        .await;
    let Some(request) = request else {
        panic!(
            "no OTLP request with app_requests_total; {} requests, TLS failures {:?}\n{}",
            receiver.requests().len(),
            receiver.stats().failures(),
            sidecar.output_tail()
        );
    };
    assert_eq!(request.path, "/v1/metrics");
    assert_eq!(request.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(
        request.header("authorization").as_deref(),
        Some(authorization.as_str())
    );
    assert!(request.body.is_ok(), "{:?}", request.body);
    assert_eq!(
        request.resource_attribute("token").as_deref(),
        Some("apm-token")
    );
    // The receiver requires a client certificate: every handshake presented one.
    assert!(receiver.stats().handshakes() >= 1);
    assert!(
        receiver.stats().failures().is_empty(),
        "{:?}",
        receiver.stats().failures()
    );
    sidecar.stop_cleanly();
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_metrics_exporter_none_disables_otlp_but_not_remote_write() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let prometheus = Prometheus::start(
        &binary,
        |_, _| "global:\n  scrape_interval: 1m\n".to_owned(),
        &["--web.enable-remote-write-receiver"],
    );
    prometheus.wait_ready(deadline(60)).await.unwrap();
    let pki = TestPki::generate().unwrap();
    let receiver = OtlpReceiver::start(&pki, false).await;
    let scrape_url = serve_page().await;
    let endpoint = receiver.endpoint();
    let ca_file = path_text(&pki.ca_file);
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file.as_str()),
        ("OTEL_METRICS_EXPORTER", "none"),
    ];
    let write_url = format!("http://{}/api/v1/write", prometheus.addr());
    let mut sidecar = Sidecar::spawn(&remote_write_toml(&scrape_url, &write_url, ""), &[], &env);

    let arrived = wait_for_app_series(|q| prometheus.query(q), deadline(20)).await;
    assert!(
        arrived.is_ok(),
        "{arrived:?}\n{}\n{}",
        sidecar.output_tail(),
        prometheus.log_tail()
    );
    // A few more scrape intervals for an OTLP exporter to show itself.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        receiver.stats().connections(),
        0,
        "OTEL_METRICS_EXPORTER=none: nothing may reach the OTLP endpoint"
    );
    assert!(receiver.requests().is_empty());
    sidecar.stop_cleanly();
}

/// Three remote-write exporters holding four secrets between them (password, bearer token, a
/// header value, the URL's userinfo), each to a closed loopback port.
fn secrets_toml(scrape_url: &str, ports: [u16; 3]) -> String {
    format!(
        "scrape_url = {}\nscrape_interval = \"1s\"\n\n\
         [[remote_write]]\nname = \"with-password\"\n\
         url = \"https://127.0.0.1:{}/api/v1/write\"\n\
         basic_auth = {{ username = \"u\", password = \"pw-SECRET-1\" }}\n\
         headers = {{ \"X-Api-Key\" = \"key-SECRET-3\" }}\n\n\
         [[remote_write]]\nname = \"with-token\"\n\
         url = \"https://127.0.0.1:{}/api/v1/write\"\n\
         authorization = {{ type = \"Bearer\", credentials = \"tok-SECRET-2\" }}\n\n\
         [[remote_write]]\nname = \"with-userinfo\"\n\
         url = \"https://user:pw-SECRET-4@127.0.0.1:{}/api/v1/write\"\n",
        toml_str(scrape_url),
        ports[0],
        ports[1],
        ports[2],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_never_printed() {
    let ports = [free_port(), free_port(), free_port()];
    let otlp_port = free_port();
    let otlp_endpoint = format!("https://127.0.0.1:{otlp_port}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint.as_str()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20env-SECRET-5",
        ),
    ];

    // --check-config: the effective configuration, as TOML, secrets masked.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    std::fs::write(&config, secrets_toml("http://127.0.0.1:9/metrics", ports)).unwrap();
    let mut command = Command::new(BIN);
    clean_env(&mut command, &env);
    command
        .arg("--check-config")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = command.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("SECRET-") && !stderr.contains("SECRET-"),
        "a secret printed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("<secret>"), "{stdout}");
    let parsed = toml::from_str::<toml::Table>(&stdout);
    assert!(
        parsed.is_ok(),
        "--check-config prints TOML: {parsed:?}\n{stdout}"
    );
    // What is printed is the whole configuration, not a part that happens to hold no secret.
    for expected in [
        "X-Api-Key".to_owned(),
        format!("127.0.0.1:{}", ports[2]),
        format!("127.0.0.1:{otlp_port}"),
    ] {
        assert!(stdout.contains(&expected), "{expected} missing:\n{stdout}");
    }

    // Running, against endpoints that refuse: failures are logged, secrets are not.
    let scrape_url = serve_page().await;
    let mut sidecar = Sidecar::spawn(
        &secrets_toml(&scrape_url, ports),
        &[],
        &[env[0], env[1], ("WXCLOUDRUN_SIDECAR_LOG", "debug")],
    );
    for exporter in ["with-password", "with-token", "with-userinfo"] {
        let failed = sidecar
            .wait_metric(ERRORS, &[("exporter", exporter)], 1.0, deadline(15))
            .await;
        assert!(failed.is_ok(), "{exporter}: {failed:?}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    sidecar.stop();
    let (stdout, stderr) = (sidecar.stdout(), sidecar.stderr());
    assert!(
        !stdout.contains("SECRET-") && !stderr.contains("SECRET-"),
        "a secret printed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("127.0.0.1:{}", ports[2])),
        "the failing URL is logged (without its userinfo):\n{stdout}"
    );
}

/// Whether this process may make a mount namespace with an empty tmpfs on `/etc/ssl`.
fn can_hide_the_ca_store() -> Result<(), String> {
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs none /etc/ssl"])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_without_a_ca_store_still_runs_the_app() {
    if let Err(why) = can_hide_the_ca_store() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "unshare -m / mount tmpfs not permitted ({why}); CI must run this test"
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: cannot hide /etc/ssl in a mount namespace ({why}) ***\n"
        );
        return;
    }
    let scrape_url = serve_page().await;
    let write_url = format!("https://127.0.0.1:{}/api/v1/write", free_port());
    let otlp_endpoint = format!("https://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut command = Command::new("unshare");
    clean_env(&mut command, &[]);
    // `$0 "$@"`: the sidecar and its arguments, no quoting by hand. The check that /etc/ssl is
    // empty makes sure the sidecar really starts without a CA store.
    command
        .args([
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs none /etc/ssl && test -z \"$(ls -A /etc/ssl)\" && exec \"$0\" \"$@\"",
            BIN,
        ])
        .args(["--remote-write-url", &write_url])
        .args(["--otlp-endpoint", &otlp_endpoint])
        .args(["--scrape-url", &scrape_url])
        .args(["--scrape-interval", "1s", "--scrape-timeout", "500ms"])
        .args(["--shutdown-budget", "2s", "--admin-addr", "127.0.0.1:0"])
        .args(["--", "sh", "-c", "echo app-started; sleep 1"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut child = command.spawn().unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_bounded(&mut child, Duration::from_secs(30));
        (status, child)
    })
    .await
    .unwrap()
    .0;
    let (out, err) = (
        std::fs::read_to_string(&stdout).unwrap_or_default(),
        std::fs::read_to_string(&stderr).unwrap_or_default(),
    );
    let status = status.unwrap_or_else(|| panic!("did not exit within 30 s\n{out}\n{err}"));
    assert!(out.contains("app-started"), "the app ran:\n{out}\n{err}");
    assert_eq!(
        status.code(),
        Some(0),
        "the app's exit code, not a configuration error:\n{out}\n{err}"
    );
}
