//! The sidecar's life: start the exporters and the app, scrape on a schedule, and at the end —
//! SIGTERM/SIGINT or the app exiting on its own — scrape once more, let the app go, mark its series
//! stale and flush, all inside the shutdown budget.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, sleep, sleep_until};
use wxcloudrun_exposition::{Exposition, Format, Limits, parse, parse_with_limits};

use crate::admin::{self, Health};
use crate::config::{Config, EXIT_CANNOT_START, EXIT_CONFIG, EXIT_INTERNAL};
use crate::convert::Converter;
use crate::export::{Exporters, FlushOutcome};
use crate::metrics::SelfMetrics;
use crate::model::{Batch, Family};
use crate::replay::Replay;
use crate::scrape::{ScrapeError, Scraper};
use crate::supervisor::Child;

/// How often the target is polled until it first answers: the first data arrives as soon as the
/// app can give it, not one interval later.
const WARMUP_POLL: Duration = Duration::from_millis(250);

/// Signals passed straight on to the app. SIGTERM and SIGINT start the shutdown first.
const FORWARDED: [(SignalKind, Signal); 4] = [
    (SignalKind::hangup(), Signal::SIGHUP),
    (SignalKind::user_defined1(), Signal::SIGUSR1),
    (SignalKind::user_defined2(), Signal::SIGUSR2),
    (SignalKind::quit(), Signal::SIGQUIT),
];

fn now_ms() -> i64 {
    millis(SystemTime::now())
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Why the main loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Signal(Signal),
    ChildExited(i32),
}

/// The scrape side of the sidecar: fetch, parse, convert, submit.
struct Pipeline {
    scraper: Scraper,
    converter: Converter,
    /// The learned shape of the app's page, to skip parsing while it holds.
    replay: Replay,
    /// The last page's body buffer, for the next scrape.
    spare_buffer: Vec<u8>,
    metrics: SelfMetrics,
    exporters: Exporters,
    health: Health,
    /// Whether a scrape has ever succeeded: before that, failures are the app starting up.
    warmed_up: bool,
}

impl Pipeline {
    /// One scrape: on success the app's series, else stale markers for them; always the
    /// self-metrics and `up`. Returns whether the scrape succeeded.
    async fn scrape_once(&mut self) -> bool {
        let timestamp_ms = now_ms();
        let buffer = std::mem::take(&mut self.spare_buffer);
        let fetched = self.scraper.fetch_into(buffer).await;
        let (page_text, format, elapsed, mut outcome) = match fetched {
            Ok(page) => (Some(page.text), page.format, page.elapsed, "success"),
            Err(ScrapeError::Refused(_)) if !self.warmed_up => return false,
            Err(err) => {
                tracing::warn!(error = %err, "scrape failed");
                (None, Format::PrometheusText, Duration::ZERO, err.outcome())
            }
        };
        let limits = Limits::default();
        let mut replayed = None;
        let mut app_page = None;
        if let Some(text) = page_text.as_deref() {
            // The page's shape as last time: only its values are read.
            replayed = self.replay.replay(text, format, &limits);
            if replayed.is_none() {
                match parse_with_limits(text, format, &limits) {
                    Ok(page) => app_page = Some(page),
                    Err(err) => {
                        tracing::warn!(error = %err, "the app's metrics page does not parse");
                        outcome = "error";
                    }
                }
            }
        }
        let up = replayed.is_some() || app_page.is_some();
        if !up && !self.warmed_up {
            return false;
        }
        self.warmed_up = true;
        let samples = replayed
            .as_ref()
            .map(|replayed| replayed.sample_count)
            .or_else(|| app_page.as_ref().map(Exposition::sample_count));
        self.metrics.scrape(outcome, elapsed.as_secs_f64(), samples);
        if up {
            self.health.set_ready();
        }
        let replayed_families = replayed.map_or_else(Vec::new, |replayed| replayed.families);
        let (batch, app_families) =
            self.batch(replayed_families, app_page.as_ref(), timestamp_ms, up);
        if let (Some(text), Some(page)) = (page_text.as_deref(), app_page.take()) {
            let families = batch.families.get(..app_families).unwrap_or_default();
            self.replay
                .learn(text, format, page, families, &self.converter);
        }
        self.exporters.submit(Arc::new(batch));
        if let Some(text) = page_text {
            self.spare_buffer = text.into_bytes();
        }
        // After the exporters have encoded the batch (they run at the next yield on this
        // single-threaded runtime), so that their buffers are returned too.
        tokio::task::yield_now().await;
        crate::allocator::release_free_memory();
        up
    }

    /// The self-metrics alone: every other series gets its stale marker.
    fn final_batch(&mut self, timestamp_ms: i64) -> Batch {
        let self_text = admin::render(self.metrics.registry());
        match parse(&self_text, Format::PrometheusText) {
            Ok(page) => self.converter.convert(&[&page], timestamp_ms),
            Err(_) => self.converter.stale_all(timestamp_ms),
        }
    }

    /// The app's families (replayed, or its parsed page), the self-metrics and `up`, converted
    /// together so that series missing from this scrape get their stale markers. Also returns
    /// how many of the batch's families are the app's.
    fn batch(
        &mut self,
        replayed: Vec<Family>,
        app_page: Option<&Exposition<'_>>,
        timestamp_ms: i64,
        up: bool,
    ) -> (Batch, usize) {
        let self_text = admin::render(self.metrics.registry());
        let up_text = format!("# TYPE up gauge\nup {}\n", u8::from(up));
        let self_page = parse(&self_text, Format::PrometheusText);
        let up_page = parse(&up_text, Format::PrometheusText);
        let empty = Exposition::default();
        let mut pages: Vec<&Exposition<'_>> = Vec::with_capacity(3);
        // The app's page comes first even when absent, so that the count covers its families.
        pages.push(app_page.unwrap_or(&empty));
        pages.extend(self_page.as_ref().ok());
        pages.extend(up_page.as_ref().ok());
        self.converter.convert_with(replayed, &pages, timestamp_ms)
    }
}

/// Runs the sidecar until the end; returns the process exit code.
pub async fn run(config: Config) -> i32 {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let metrics = SelfMetrics::new();
    // Exporters first: their configuration can still fail, and the app must not be started by a
    // sidecar that is about to exit with 64.
    let exporters = match Exporters::start(&config.export, &metrics) {
        Ok(exporters) => exporters,
        Err(err) => {
            eprintln!("wxcloudrun-sidecar: invalid configuration: {err}");
            return EXIT_CONFIG;
        }
    };
    let scraper = match Scraper::new(&config.scrape_url, config.scrape_timeout) {
        Ok(scraper) => scraper,
        Err(err) => {
            eprintln!("wxcloudrun-sidecar: cannot build the scrape client: {err}");
            return EXIT_CONFIG;
        }
    };

    // Handlers before the child exists, so no signal or exit is missed.
    let (Ok(mut sigterm), Ok(mut sigint), Ok(mut sigchld)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::child()),
    ) else {
        eprintln!("wxcloudrun-sidecar: cannot install signal handlers");
        return EXIT_INTERNAL;
    };
    let (forward_tx, mut forward_rx) = tokio::sync::mpsc::unbounded_channel();
    for (kind, to_forward) in FORWARDED {
        match signal(kind) {
            Ok(mut stream) => {
                let forward_tx = forward_tx.clone();
                tokio::spawn(async move {
                    while stream.recv().await.is_some() && forward_tx.send(to_forward).is_ok() {}
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, signal = %to_forward, "signal will not be forwarded")
            }
        }
    }

    let mut child = if config.command.is_empty() {
        None
    } else {
        match Child::spawn(&config.command, true) {
            Ok(child) => {
                tracing::info!(pid = child.pid(), command = ?config.command, "started the app");
                Some(child)
            }
            Err(err) => {
                eprintln!(
                    "wxcloudrun-sidecar: cannot start {:?}: {err}",
                    config.command
                );
                return EXIT_CANNOT_START;
            }
        }
    };

    let health = Health::default();
    match admin::spawn(
        config.admin_addr,
        health.clone(),
        metrics.registry().clone(),
    )
    .await
    {
        Ok(addr) => tracing::info!(%addr, "admin listener (/healthz, /readyz, /metrics)"),
        // The app is already running: a busy admin port must not take it down.
        Err(err) => {
            tracing::error!(addr = %config.admin_addr, error = %err, "admin listener not started")
        }
    }

    let start_ms = child.as_ref().map(|c| millis(c.started()));
    let mut pipeline = Pipeline {
        scraper,
        converter: Converter::new(&config.labels, start_ms),
        replay: Replay::new(true),
        spare_buffer: Vec::new(),
        metrics,
        exporters,
        health,
        warmed_up: false,
    };

    let mut next_scrape = Instant::now();
    let ending = loop {
        tokio::select! {
            _ = sigterm.recv() => break Ending::Signal(Signal::SIGTERM),
            _ = sigint.recv() => break Ending::Signal(Signal::SIGINT),
            Some(sig) = forward_rx.recv() => {
                if let Some(child) = &child {
                    tracing::info!(signal = %sig, "passing the signal to the app");
                    child.signal(sig);
                }
            }
            _ = sigchld.recv() => {}
            _ = sleep(Duration::from_millis(500)) => {}
            _ = sleep_until(next_scrape) => {
                let succeeded = pipeline.scrape_once().await;
                next_scrape = if pipeline.warmed_up || succeeded {
                    next_scrape.max(Instant::now() - config.scrape_interval) + config.scrape_interval
                } else {
                    Instant::now() + WARMUP_POLL
                };
            }
        }
        if let Some(code) = child.as_mut().and_then(Child::try_wait) {
            break Ending::ChildExited(code);
        }
    };

    shutdown(ending, &config, pipeline, child.as_mut()).await
}

async fn shutdown(
    ending: Ending,
    config: &Config,
    mut pipeline: Pipeline,
    child: Option<&mut Child>,
) -> i32 {
    let started = Instant::now();
    let deadline = started + config.shutdown_budget;
    // Time kept for the final flush however long the app takes to exit.
    let flush_reserve = (config.shutdown_budget / 4).max(Duration::from_millis(500));
    tracing::info!(?ending, budget = ?config.shutdown_budget, "shutting down");

    let mut exit_code = match ending {
        Ending::ChildExited(code) => code,
        Ending::Signal(_) => 0,
    };
    if let Ending::Signal(sig) = ending {
        // The last data, taken before the app is told to stop.
        let final_scrape = tokio::time::timeout(
            config.scrape_timeout.min(config.shutdown_budget / 4),
            pipeline.scrape_once(),
        )
        .await;
        if final_scrape.is_err() {
            tracing::warn!("the final scrape did not finish in time");
        }
        if let Some(child) = child {
            child.signal(sig);
            exit_code = wait_for_exit(child, deadline - flush_reserve).await;
        }
    }

    // The app's data first; how its delivery went is the last thing the sidecar reports.
    let reserve =
        (deadline.saturating_duration_since(Instant::now()) / 4).max(Duration::from_millis(200));
    let delivered = pipeline.exporters.wait_idle(deadline - reserve).await;
    pipeline.metrics.shutdown_flush(delivered.label());
    // The last batch: the self-metrics with that outcome; every other series of this instance
    // ends here with a stale marker.
    let last = pipeline.final_batch(now_ms());
    pipeline.exporters.submit(Arc::new(last));
    let outcome = pipeline.exporters.flush(deadline).await;
    match (delivered, outcome) {
        (FlushOutcome::Success, FlushOutcome::Success) => {
            tracing::info!(elapsed = ?started.elapsed(), "flushed")
        }
        _ => tracing::warn!(
            app_data = delivered.label(),
            last_batch = outcome.label(),
            elapsed = ?started.elapsed(),
            "final flush incomplete"
        ),
    }
    exit_code
}

/// Waits for the child until `until`, then kills it; returns its exit code.
async fn wait_for_exit(child: &mut Child, until: Instant) -> i32 {
    loop {
        if let Some(code) = child.try_wait() {
            return code;
        }
        if Instant::now() >= until {
            tracing::warn!("the app did not exit within the shutdown budget; killing it");
            child.signal(Signal::SIGKILL);
            for _ in 0..100 {
                if let Some(code) = child.try_wait() {
                    return code;
                }
                sleep(Duration::from_millis(10)).await;
            }
            return 128 + Signal::SIGKILL as i32;
        }
        sleep(Duration::from_millis(20)).await;
    }
}
