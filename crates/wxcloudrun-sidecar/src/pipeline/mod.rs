//! One scrape, from the app's page to the exporters' queues:
//!
//! ```text
//! scrape (fetch the page) → replay | parse → convert (+ self-metrics, up) → batch → exporters
//! ```
//!
//! [`scrape`] fetches, [`replay`] reads the page through its learned shape or parses it,
//! [`convert`] adds the sidecar's labels, start times and stale markers, with the sidecar's own
//! families taken straight from its registry (no text in between). The batch goes to the
//! exporters in chunks of [`CHUNK_SAMPLES`], each encoded and queued once full and then freed: a
//! parsed page is freed as it is converted and a replayed page filled as it is converted, so a
//! scrape holds its page and one chunk at a time, never the page and its whole batch (the
//! `pipeline_memory` bench: a replayed 100,000-series page peaks at 36.9 MiB, 54.6 converted
//! whole).

pub mod budget;
pub mod convert;
pub mod replay;
pub mod scrape;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::admin::Health;
use crate::export::{Exporters, FlushOutcome};
use crate::metrics::SelfMetrics;
use budget::{Budget, Exceeded};
use convert::{Converter, Source};
use replay::{Read, ReadError, Replay};
use scrape::{Page, ScrapeError, Scraper};

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// How long the app is given to start: before its first successful scrape, failed scrapes in
/// this first stretch are neither counted nor logged.
const WARMUP_GRACE: Duration = Duration::from_secs(1);

/// How one scrape went, for the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scraped {
    /// The app's page was read; its series are on their way.
    Up,
    /// The scrape failed or the page did not parse: counted, `up 0`, the app's series stale.
    Down,
    /// The app is starting: nothing has succeeded yet, and nothing listens (or it is the first
    /// second): poll again soon.
    WarmingUp,
}

/// A scrape under way: the fetch, which owns what it needs, so that it can be raced against a
/// signal, and given up on by dropping it.
pub(crate) struct InFlight {
    started: Instant,
    timestamp_ms: i64,
    fetch: Pin<Box<dyn Future<Output = Result<Page, ScrapeError>>>>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl InFlight {
    /// Gives up on the scrape: what the pipeline then records.
    pub(crate) fn cancelled(self) -> Fetched {
        Fetched {
            timestamp_ms: self.timestamp_ms,
            result: Err(ScrapeError::Cancelled(self.started.elapsed())),
        }
    }
}

impl Future for InFlight {
    type Output = Fetched;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Fetched> {
        let timestamp_ms = self.timestamp_ms;
        self.fetch.as_mut().poll(cx).map(|result| Fetched {
            timestamp_ms,
            result,
        })
    }
}

/// A finished (or given up) fetch, for [`Pipeline::finish_scrape`].
#[derive(Debug)]
pub(crate) struct Fetched {
    timestamp_ms: i64,
    result: Result<Page, ScrapeError>,
}

/// Why a scrape failed, for the metrics, the log and `/readyz`.
struct Failure {
    /// The `outcome` label.
    outcome: &'static str,
    /// What kind of failure: a new kind is logged, a repeated one is not.
    kind: String,
    /// The whole reason.
    reason: String,
    /// The budget or limit that refused the scrape, if one did.
    limit: Option<&'static str>,
}

impl Failure {
    fn of(err: &ScrapeError) -> Failure {
        if let ScrapeError::TooLarge(exceeded) = err {
            return Failure::exceeded(exceeded);
        }
        let kind = match err {
            ScrapeError::Timeout(_) | ScrapeError::Cancelled(_) => "timeout".to_owned(),
            ScrapeError::Refused(_) => "refused".to_owned(),
            ScrapeError::Status(code) => format!("status {code}"),
            ScrapeError::Body(_) => "body".to_owned(),
            ScrapeError::Transport(_) => "transport".to_owned(),
            ScrapeError::TooLarge(_) => "too_large".to_owned(),
        };
        Failure {
            outcome: err.outcome(),
            kind,
            reason: err.to_string(),
            limit: None,
        }
    }

    fn unparsable(err: &wxcloudrun_exposition::ParseError) -> Failure {
        Failure {
            outcome: "error",
            kind: "unparsable".to_owned(),
            reason: format!("the page does not parse: {err}"),
            limit: None,
        }
    }

    /// A scrape refused by the budget or a limit: its kind is the limit, so a change of limit
    /// is logged and a repeat is not.
    fn exceeded(exceeded: &Exceeded) -> Failure {
        let label = exceeded.reason.label();
        Failure {
            outcome: "error",
            kind: label.to_owned(),
            reason: exceeded.message.clone(),
            limit: Some(label),
        }
    }
}

/// The scrape side of the sidecar, and the exporters it feeds.
#[derive(Debug)]
pub(crate) struct Pipeline {
    scraper: Scraper,
    replay: Replay,
    converter: Converter,
    /// The memory budget and Prometheus's per-scrape limits.
    budget: Budget,
    /// The last page's body buffer, for the next scrape.
    spare_buffer: Vec<u8>,
    metrics: SelfMetrics,
    exporters: Exporters,
    progress: Progress,
}

/// How scraping has gone so far, for readiness and the log.
#[derive(Debug)]
struct Progress {
    health: Health,
    /// When scraping began: the app's first second is not counted against it.
    started: Instant,
    /// Whether a scrape has ever succeeded.
    warmed_up: bool,
    /// Whether the target has ever answered (anything): until then it is polled quickly.
    answered: bool,
    /// The kind of the current failure (`None` while scrapes succeed): logged when it changes.
    failing: Option<String>,
}

/// Remote-write samples the pipeline converts and encodes at a time: a scrape's batch is handed
/// to the exporters in chunks of this size, so that a large page never has its whole batch in
/// memory (10,000: five full remote-write requests, and one more at most for each chunk's end).
pub const CHUNK_SAMPLES: usize = 10_000;

impl Pipeline {
    pub(crate) fn new(
        scraper: Scraper,
        converter: Converter,
        metrics: SelfMetrics,
        exporters: Exporters,
        health: Health,
    ) -> Self {
        Pipeline {
            scraper,
            replay: Replay::new(),
            converter,
            budget: Budget::unlimited(),
            spare_buffer: Vec::new(),
            metrics,
            exporters,
            progress: Progress {
                health,
                started: Instant::now(),
                warmed_up: false,
                answered: false,
                failing: None,
            },
        }
    }

    /// Keeps every scrape within `budget`.
    pub(crate) fn with_budget(mut self, budget: Budget) -> Self {
        self.metrics.set_memory_limit(budget.memory_limit_bytes());
        self.budget = budget;
        self
    }

    /// Starts a scrape that gives up after `timeout`, reading no more body than the budget
    /// leaves.
    pub(crate) fn start_scrape(&mut self, timeout: Duration) -> InFlight {
        let scraper = self.scraper.clone();
        let buffer = std::mem::take(&mut self.spare_buffer);
        let bound = self.budget.body_bound(self.exporters.queued_bytes());
        InFlight {
            started: Instant::now(),
            timestamp_ms: now_ms(),
            fetch: Box::pin(async move { scraper.fetch_bounded(buffer, timeout, bound).await }),
        }
    }

    /// Reads what a scrape fetched, records it and submits its batch: on success the app's
    /// series, else stale markers for them; the self-metrics and `up` either way — except
    /// while the app starts (see [`Scraped::WarmingUp`]).
    pub(crate) async fn finish_scrape(&mut self, fetched: Fetched) -> Scraped {
        let page = fetched.result.as_ref().ok();
        let failure = fetched.result.as_ref().err().map(Failure::of);
        self.progress.answered |= !matches!(fetched.result, Err(ScrapeError::Refused(_)));
        let scraped = self.submit(page, failure, fetched.timestamp_ms);
        if let Ok(page) = fetched.result {
            self.spare_buffer = page.text.into_bytes();
        }
        if scraped != Scraped::WarmingUp {
            // After the exporters have encoded the batch (they run at the next yield on this
            // single-threaded runtime), so that their buffers are returned too.
            tokio::task::yield_now().await;
            crate::allocator::release_free_memory();
        }
        scraped
    }

    /// Reads a fetched page, records the scrape and submits its batch, a chunk at a time.
    fn submit(
        &mut self,
        page: Option<&Page>,
        mut failure: Option<Failure>,
        timestamp_ms: i64,
    ) -> Scraped {
        let Pipeline {
            replay,
            converter,
            budget,
            metrics,
            exporters,
            progress,
            ..
        } = self;
        let mut read: Option<Read<'_>> = None;
        if let Some(page) = page {
            let queued = exporters.queued_bytes();
            match read_page(replay, converter, budget, queued, page) {
                Ok(page) => read = Some(page),
                Err(refused) => failure = Some(refused),
            }
        }
        let up = read.is_some();
        if !progress.note(failure.as_ref()) {
            return Scraped::WarmingUp;
        }
        if let Some(limit) = failure.as_ref().and_then(|f| f.limit) {
            metrics.limit_exceeded(limit);
        }
        let elapsed = page.map_or(Duration::ZERO, |page| page.elapsed);
        let outcome = failure.as_ref().map_or("success", |f| f.outcome);
        let samples = read.as_ref().map(Read::sample_count);
        let without_bound = read.as_ref().map_or(0, Read::samples_without_bound);
        metrics.scrape_samples_dropped("unparsable_bound", without_bound);
        metrics.scrape(outcome, elapsed.as_secs_f64(), samples);
        // The self-metrics after this scrape is counted in them.
        let own = metrics.registry().gather();
        let app = read.map(Read::into_source);
        let sources = app
            .into_iter()
            .chain([Source::Gathered(&own), Source::Up(up)]);
        // Each chunk is encoded and queued as soon as it is full, and freed.
        let mut submit = |chunk| exporters.submit(Arc::new(chunk));
        converter.convert_in_chunks(sources, timestamp_ms, CHUNK_SAMPLES, &mut submit);
        if up {
            Scraped::Up
        } else if !progress.warmed_up && !progress.answered {
            Scraped::WarmingUp
        } else {
            Scraped::Down
        }
    }
}

/// Reads a fetched page, if the budget and the limits let it: through the learned shape, else
/// parsed and checked.
fn read_page<'p>(
    replay: &'p mut Replay,
    converter: &mut Converter,
    budget: &Budget,
    queued_bytes: u64,
    page: &'p Page,
) -> Result<Read<'p>, Failure> {
    let text = (page.text.as_str(), page.format);
    budget
        .read(replay, converter, text, queued_bytes)
        .map_err(|err| match err {
            ReadError::Check(exceeded) => Failure::exceeded(&exceeded),
            ReadError::Parse(err) => match budget.parse_failure(&err) {
                Some(exceeded) => Failure::exceeded(&exceeded),
                None => Failure::unparsable(&err),
            },
        })
}

impl Progress {
    /// Takes note of a scrape's success or failure: readiness, and a log line when the state
    /// changes. Whether the scrape counts: a failure before any success, in the app's first
    /// second, does not.
    fn note(&mut self, failure: Option<&Failure>) -> bool {
        let Some(failure) = failure else {
            if !self.warmed_up || self.failing.is_some() {
                tracing::info!("scraping the app's metrics");
            }
            self.warmed_up = true;
            self.failing = None;
            self.health.set_ready();
            return true;
        };
        if !self.warmed_up {
            self.health.set_waiting(&failure.reason);
            if self.started.elapsed() < WARMUP_GRACE {
                return false;
            }
        }
        if self.failing.as_deref() != Some(failure.kind.as_str()) {
            if self.warmed_up || failure.kind != "refused" {
                tracing::warn!(error = %failure.reason, "scrape failed");
            } else {
                tracing::warn!(error = %failure.reason, "the app's metrics endpoint does not answer yet");
            }
            self.failing = Some(failure.kind.clone());
        }
        true
    }
}

impl Pipeline {
    /// Waits until every queue is empty and nothing is in flight, or `until` passes.
    pub(crate) async fn wait_idle(&self, until: Instant) -> FlushOutcome {
        self.exporters.wait_idle(until).await
    }

    /// The last batch: the self-metrics, with how the delivery of the app's data went; every
    /// other series of this instance ends here with a stale marker.
    pub(crate) fn submit_last(&mut self, delivered: FlushOutcome) {
        self.metrics.shutdown_flush(delivered.label());
        let own = self.metrics.registry().gather();
        let last = self.converter.convert([Source::Gathered(&own)], now_ms());
        self.exporters.submit(Arc::new(last));
    }

    /// Delivers what is queued until `deadline`, then stops the exporters.
    pub(crate) async fn flush(self, deadline: Instant) -> FlushOutcome {
        self.exporters.flush(deadline).await
    }
}
