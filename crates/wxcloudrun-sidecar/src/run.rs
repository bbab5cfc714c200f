//! The sidecar's life: start the exporters and the app, scrape on a schedule, pass signals on,
//! and at the end — SIGTERM/SIGINT or the app exiting on its own — hand over to `shutdown`,
//! with the scrape that may be under way at that moment.

use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until};

use crate::admin::{self, Health};
use crate::config::{Config, EXIT_CANNOT_START, EXIT_CONFIG, EXIT_INTERNAL};
use crate::export::Exporters;
use crate::metrics::SelfMetrics;
use crate::pipeline::budget::Budget;
use crate::pipeline::convert::Converter;
use crate::pipeline::scrape::Scraper;
use crate::pipeline::{Fetched, InFlight, Pipeline, Scraped, unix_ms};
use crate::shutdown::{Ending, Stopping, shutdown};
use crate::signals::{Arrived, Signals};
use crate::supervisor::Child;

/// How often the target is polled until it first answers: the first data arrives as soon as the
/// app can give it, not one interval later.
const WARMUP_POLL: Duration = Duration::from_millis(250);

/// How often the loop looks for the app's exit when no signal says so.
const CHILD_POLL: Duration = Duration::from_millis(500);

/// The scrape under way, if any.
async fn finished(in_flight: &mut Option<InFlight>) -> Fetched {
    match in_flight {
        Some(in_flight) => in_flight.await,
        None => std::future::pending().await,
    }
}

/// The queues take at most this share of the memory budget, together: what is left is for the
/// scrape at its fullest and what the converter remembers.
const QUEUE_SHARE_OF_BUDGET: u64 = 4;

/// The export configuration with the queues' caps cut to their share of the memory budget.
fn within_budget(config: &Config) -> crate::export::ExportConfig {
    let mut export = config.export.clone();
    let exporters = export.remote_write.len() as u64 + u64::from(export.otlp.is_some());
    let share = config.memory.memory_limit_bytes / QUEUE_SHARE_OF_BUDGET / exporters.max(1);
    let capped = export
        .queue_max_bytes
        .min(share.max(crate::config::MIN_QUEUE_MAX_BYTES));
    if capped < export.queue_max_bytes {
        tracing::info!(
            queue_max_bytes = capped,
            memory_limit_bytes = config.memory.memory_limit_bytes,
            "each export queue is capped to its share of the memory limit"
        );
        export.queue_max_bytes = capped;
    }
    export
}

/// Runs the sidecar until the end; returns the process exit code.
pub async fn run(config: Config) -> i32 {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let metrics = SelfMetrics::new();
    // Exporters first: their configuration can still fail, and the app must not be started by a
    // sidecar that is about to exit with 64.
    let export = within_budget(&config);
    let exporters = match Exporters::start(&export, &metrics) {
        Ok(exporters) => exporters,
        Err(err) => {
            eprintln!("wxcloudrun-sidecar: invalid configuration: {err}");
            return EXIT_CONFIG;
        }
    };
    let scraper = match Scraper::new(&config.scrape_url) {
        Ok(scraper) => scraper,
        Err(err) => {
            eprintln!("wxcloudrun-sidecar: cannot build the scrape client: {err}");
            return EXIT_CONFIG;
        }
    };
    let Ok(mut signals) = Signals::install() else {
        eprintln!("wxcloudrun-sidecar: cannot install signal handlers");
        return EXIT_INTERNAL;
    };
    let mut child = match spawn_app(&config) {
        Ok(child) => child,
        Err(code) => return code,
    };
    let health = Health::default();
    start_admin(&config, &health, &metrics).await;

    let start_ms = child.as_ref().map(|c| unix_ms(c.started()));
    let converter = Converter::new(&config.labels, start_ms);
    let memory = &config.memory;
    let budget = Budget::new(
        memory.memory_limit_bytes,
        memory.scrape_limits,
        &config.labels,
    );
    let mut pipeline =
        Pipeline::new(scraper, converter, metrics, exporters, health).with_budget(budget);
    let (ending, in_flight) =
        scrape_until_the_end(&config, &mut pipeline, &mut signals, child.as_mut()).await;
    let stopping = Stopping {
        ending,
        in_flight,
        pipeline,
        signals: &mut signals,
    };
    shutdown(stopping, &config, child.as_mut()).await
}

/// Starts the app in wrapper mode (`None` in standalone mode); the exit code on failure.
fn spawn_app(config: &Config) -> Result<Option<Child>, i32> {
    if config.command.is_empty() {
        return Ok(None);
    }
    match Child::spawn(&config.command, true) {
        Ok(child) => {
            tracing::info!(pid = child.pid(), command = ?config.command, "started the app");
            Ok(Some(child))
        }
        Err(err) => {
            eprintln!(
                "wxcloudrun-sidecar: cannot start {:?}: {err}",
                config.command
            );
            Err(EXIT_CANNOT_START)
        }
    }
}

async fn start_admin(config: &Config, health: &Health, metrics: &SelfMetrics) {
    let registry = metrics.registry().clone();
    match admin::spawn(config.admin_addr, health.clone(), registry).await {
        Ok(addr) => tracing::info!(%addr, "admin listener (/healthz, /readyz, /metrics)"),
        // The app is already running: a busy admin port must not take it down.
        Err(err) => {
            tracing::error!(addr = %config.admin_addr, error = %err, "admin listener not started")
        }
    }
}

/// The main loop: scrapes on schedule and passes signals on until SIGTERM/SIGINT or the app's
/// exit; returns why it ended and the scrape under way then. Signals are watched during scrapes
/// too: the shutdown budget counts from the signal.
async fn scrape_until_the_end(
    config: &Config,
    pipeline: &mut Pipeline,
    signals: &mut Signals,
    mut child: Option<&mut Child>,
) -> (Ending, Option<InFlight>) {
    let mut next_scrape = Instant::now();
    let mut in_flight = None;
    loop {
        tokio::select! {
            arrived = signals.next() => match arrived {
                Arrived::Stop(signal) => {
                    let ending = Ending::Signal { signal, at: Instant::now() };
                    return (ending, in_flight);
                }
                Arrived::Forward(sig) => {
                    if let Some(child) = &child {
                        tracing::info!(signal = %sig, "passing the signal to the app");
                        child.signal(sig);
                    }
                }
                Arrived::ChildExited => {}
            },
            fetched = finished(&mut in_flight) => {
                in_flight = None;
                next_scrape = match pipeline.finish_scrape(fetched).await {
                    Scraped::WarmingUp => Instant::now() + WARMUP_POLL,
                    Scraped::Up | Scraped::Down => {
                        next_scrape.max(Instant::now() - config.scrape_interval)
                            + config.scrape_interval
                    }
                };
            }
            _ = sleep_until(next_scrape), if in_flight.is_none() => {
                in_flight = Some(pipeline.start_scrape(config.scrape_timeout));
            }
            _ = sleep(CHILD_POLL) => {}
        }
        if let Some(code) = child.as_deref_mut().and_then(Child::try_wait) {
            return (Ending::ChildExited(code), in_flight);
        }
    }
}
