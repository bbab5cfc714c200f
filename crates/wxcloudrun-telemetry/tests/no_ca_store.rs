//! An image without `ca-certificates` must still start with an `https://` collector: the
//! bundled roots are enough, a missing system store is not an error.
//!
//! The test re-runs this binary inside a new mount namespace where `/etc/ssl` is an empty tmpfs
//! (`unshare -m`), with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a closed `https://` port on
//! loopback, and checks there that `init()` (http/protobuf) and `Telemetry::new` (gRPC) return
//! `Ok`. Without the privilege to do so it skips loudly, unless `CI=true`.

use std::process::Command;

use wxcloudrun_telemetry::{Telemetry, TelemetryConfig};

/// Set in the re-run child.
const CHILD: &str = "WXCLOUDRUN_TELEMETRY_NO_CA_STORE_CHILD";
/// What the child prints when everything held.
const CHILD_OK: &str = "no-ca-store child: init() and Telemetry::new succeeded";
const MOUNT: &str = "mount -t tmpfs none /etc/ssl";

#[test]
fn starts_without_a_ca_store() {
    if std::env::var_os(CHILD).is_some() {
        return in_the_empty_namespace();
    }
    if !can_unshare() {
        let message = "*** SKIPPED starts_without_a_ca_store: `unshare -m` + `mount -t tmpfs` \
                       are not permitted here (run as root) ***";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{message} — required under CI=true");
        }
        eprintln!("{message}");
        return;
    }
    // A port nothing listens on: start-up must not need the collector either.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new("unshare");
    command
        .args(["-m", "sh", "-c"])
        .arg(format!("{MOUNT} && exec \"$0\" \"$@\""))
        .arg(&exe)
        .args(["--exact", "starts_without_a_ca_store", "--nocapture"]);
    // Only our variables: nothing inherited may point rustls-native-certs or the exporter
    // elsewhere.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("OTEL_") || key.starts_with("SSL_CERT") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    let output = command
        .env(CHILD, "1")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("https://127.0.0.1:{port}"),
        )
        .env("OTEL_SERVICE_NAME", "no-ca-store")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(CHILD_OK) && stdout.contains("1 passed"),
        "child failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

/// Whether this process may make a mount namespace and mount a tmpfs in it.
fn can_unshare() -> bool {
    Command::new("unshare")
        .args(["-m", "sh", "-c", MOUNT])
        .output()
        .is_ok_and(|output| output.status.success())
}

fn in_the_empty_namespace() {
    let entries: Vec<_> = std::fs::read_dir("/etc/ssl").unwrap().collect();
    assert!(entries.is_empty(), "/etc/ssl is not empty: {entries:?}");
    let roots = wxcloudrun_connect::tls::roots_summary();
    assert_eq!(roots.system, 0, "a system store was found: {roots}");
    assert!(roots.webpki > 0, "{roots}");

    // http/protobuf, the default, through init() itself and the process environment.
    let telemetry = wxcloudrun_telemetry::init().expect("init() without a CA store");
    assert!(telemetry.exports_traces());
    assert!(
        telemetry.config().errors.is_empty(),
        "{:?}",
        telemetry.config()
    );

    // gRPC, inside a runtime as it needs one.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let config = TelemetryConfig::from_lookup(|key| match key {
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".to_owned()),
        key => std::env::var(key).ok(),
    });
    let grpc = Telemetry::new(config).expect("Telemetry::new over gRPC without a CA store");
    assert!(grpc.exports_traces());
    drop(grpc);
    drop(telemetry);
    println!("{CHILD_OK}");
}
