//! The quickstart: a WeChat Cloud Run style service with the telemetry layer, driving itself with
//! simulated callContainer traffic and printing a live summary.
//!
//! Run with
//! ```not_rust
//! cargo run -p example-quickstart
//! ```
//! then open <http://127.0.0.1:8080/metrics>. `PORT` sets the service port (default 8080, on all
//! interfaces as the platform requires); `--no-traffic` serves without the simulated client.
//! Metrics are also served on 127.0.0.1:9464, the loopback listener a production service uses.
//! Logs are JSON lines with trace ids; set `OTEL_EXPORTER_OTLP_ENDPOINT` to export the traces.

use std::net::SocketAddr;
use std::time::Duration;

use example_quickstart::{Summary, app_with, drive_traffic, telemetry_config};
use wxcloudrun_telemetry::DEFAULT_METRICS_ADDR;

const SUMMARY_EVERY: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let no_traffic = std::env::args().skip(1).any(|arg| arg == "--no-traffic");
    if let Some(unknown) = std::env::args().skip(1).find(|arg| arg != "--no-traffic") {
        eprintln!("unknown argument {unknown:?}; usage: example-quickstart [--no-traffic]");
        std::process::exit(64);
    }
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT={port:?} is not a port number"))?,
        Err(_) => 8080,
    };

    // Keep `_guard` alive: dropping it flushes the last spans.
    let _guard = wxcloudrun_telemetry::init_with(telemetry_config())?;
    // Client reports on: `Server-Timing` on every answer and the beacon the simulated Mini
    // Program (and the real package) reports to.
    let telemetry = _guard.layer().client_reports(true).build()?;
    match telemetry.spawn_metrics_server(DEFAULT_METRICS_ADDR).await {
        Ok(addr) => println!("metrics (loopback only): http://{addr}/metrics"),
        Err(err) => eprintln!("not serving metrics on {DEFAULT_METRICS_ADDR}: {err}"),
    }
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
    println!(
        "service {:?} on http://127.0.0.1:{port} (metrics also at /metrics)",
        telemetry.service_name()
    );
    let server = axum::serve(listener, app_with(&telemetry)).with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    });

    if !no_traffic {
        let base_url = format!("http://127.0.0.1:{port}");
        tokio::spawn(async move {
            for round in 0u64.. {
                if let Err(err) = drive_traffic(&base_url, 40, round).await {
                    eprintln!("simulated traffic stopped: {err}");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        let summarised = telemetry.clone();
        let exported = _guard.exports_traces();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SUMMARY_EVERY);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                print!("{}", Summary::from_layer(&summarised));
                if !exported {
                    // Without an exporter no span is sampled, so no exemplar names a trace.
                    println!("  (set OTEL_EXPORTER_OTLP_ENDPOINT for a sample trace id per route)");
                }
            }
        });
        println!(
            "driving simulated callContainer traffic; a summary every {SUMMARY_EVERY:?}; Ctrl-C stops"
        );
    }
    server.await?;
    Ok(())
}
