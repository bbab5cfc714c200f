//! The end of the sidecar's life, inside the shutdown budget counted from the signal: a final
//! scrape, the app told to stop and waited for, the app's data delivered, then the last batch
//! (the self-metrics with how that went, stale markers for every other series) flushed.
//!
//! The budget is split as it is spent: the final scrape may take a quarter of it (less if the
//! scrape timeout is shorter), the app's exit what is left up to the flush's reserve (a quarter,
//! at least 500 ms), the flush the rest. A scrape under way when the signal came may finish
//! within that quarter (it is cancelled otherwise); the final scrape follows it in what is left.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::{Instant, sleep};

use crate::config::Config;
use crate::export::FlushOutcome;
use crate::pipeline::{InFlight, Pipeline};
use crate::signals::Signals;
use crate::supervisor::Child;

/// Why the main loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// SIGTERM or SIGINT, and when it arrived: the budget counts from then.
    Signal {
        /// The signal, passed on to the app after the final scrape.
        signal: Signal,
        /// When the sidecar received it.
        at: Instant,
    },
    /// The app exited on its own, with this code.
    ChildExited(i32),
}

/// What the main loop hands over to the shutdown.
#[derive(Debug)]
pub(crate) struct Stopping<'s> {
    pub(crate) ending: Ending,
    /// The scrape under way when the loop ended.
    pub(crate) in_flight: Option<InFlight>,
    pub(crate) pipeline: Pipeline,
    /// Still listened to: a second signal is noted, and changes nothing.
    pub(crate) signals: &'s mut Signals,
}

/// The shutdown budget, counted from the signal.
#[derive(Debug, Clone, Copy)]
struct ShutdownBudget {
    began: Instant,
    total: Duration,
}

impl ShutdownBudget {
    fn deadline(self) -> Instant {
        self.began + self.total
    }

    /// Kept for the final flush however long the app takes to exit.
    fn flush_reserve(self) -> Duration {
        (self.total / 4)
            .max(Duration::from_millis(500))
            .min(self.total)
    }

    /// When the final scrape must have finished: within the scrape timeout, and within a
    /// quarter of the budget (half is the app's to exit, a quarter the flush's).
    fn final_scrape_until(self, scrape_timeout: Duration) -> Instant {
        self.began + scrape_timeout.min(self.total / 4)
    }

    /// When the app is killed if it has not exited.
    fn app_exit_until(self) -> Instant {
        self.deadline() - self.flush_reserve()
    }
}

/// Runs the shutdown; returns the process exit code (the app's).
pub(crate) async fn shutdown(
    stopping: Stopping<'_>,
    config: &Config,
    child: Option<&mut Child>,
) -> i32 {
    let Stopping {
        ending,
        in_flight,
        mut pipeline,
        signals,
    } = stopping;
    let began = match ending {
        Ending::Signal { at, .. } => at,
        Ending::ChildExited(_) => Instant::now(),
    };
    let budget = ShutdownBudget {
        began,
        total: config.shutdown_budget,
    };
    tracing::info!(?ending, budget = ?config.shutdown_budget, "shutting down");

    let mut exit_code = match ending {
        Ending::ChildExited(code) => code,
        Ending::Signal { .. } => 0,
    };
    if let Ending::Signal { signal, .. } = ending {
        // The last data, taken before the app is told to stop.
        let until = budget.final_scrape_until(config.scrape_timeout);
        signals
            .during(final_scrape(&mut pipeline, in_flight, until))
            .await;
        if let Some(child) = child {
            child.signal(signal);
            let exited = wait_for_exit(child, budget.app_exit_until());
            exit_code = signals.during(exited).await;
        }
    }
    signals.during(flush(pipeline, budget)).await;
    exit_code
}

/// The scrape under way at the signal, if any, may finish by `until` (it is cancelled then);
/// then the final scrape, the last data, taken after the signal, within what is left.
async fn final_scrape(pipeline: &mut Pipeline, in_flight: Option<InFlight>, until: Instant) {
    if let Some(in_flight) = in_flight
        && !scrape_until(pipeline, in_flight, until, "the scrape under way").await
    {
        return;
    }
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        tracing::warn!("no time left in the shutdown budget for a final scrape");
        return;
    }
    let in_flight = pipeline.start_scrape(left);
    scrape_until(pipeline, in_flight, until, "the final scrape").await;
}

/// Lets a scrape finish until `until`, else cancels it; either way records it. Whether it
/// finished.
async fn scrape_until(
    pipeline: &mut Pipeline,
    mut in_flight: InFlight,
    until: Instant,
    what: &str,
) -> bool {
    let (fetched, finished) = match tokio::time::timeout_at(until, &mut in_flight).await {
        Ok(fetched) => (fetched, true),
        Err(_) => {
            tracing::warn!("{what} did not finish within the shutdown budget; cancelled");
            (in_flight.cancelled(), false)
        }
    };
    pipeline.finish_scrape(fetched).await;
    finished
}

/// The app's data first; how its delivery went is the last thing the sidecar reports.
async fn flush(mut pipeline: Pipeline, budget: ShutdownBudget) {
    let deadline = budget.deadline();
    let reserve =
        (deadline.saturating_duration_since(Instant::now()) / 4).max(Duration::from_millis(200));
    let delivered = pipeline.wait_idle(deadline - reserve).await;
    pipeline.submit_last(delivered);
    let outcome = pipeline.flush(deadline).await;
    // Measured from the signal: what the platform sees.
    let elapsed = budget.began.elapsed();
    match (delivered, outcome) {
        (FlushOutcome::Success, FlushOutcome::Success) => {
            tracing::info!(?elapsed, "flushed")
        }
        _ => tracing::warn!(
            app_data = delivered.label(),
            last_batch = outcome.label(),
            ?elapsed,
            "final flush incomplete"
        ),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_split_from_the_signal() {
        let began = Instant::now();
        let at = |d: Instant| d - began;
        let budget = ShutdownBudget {
            began,
            total: Duration::from_secs(8),
        };
        // The case: a 14 s scrape timeout gets a quarter of the budget.
        let scrape = at(budget.final_scrape_until(Duration::from_secs(14)));
        assert_eq!(scrape, Duration::from_secs(2));
        assert_eq!(
            at(budget.final_scrape_until(Duration::from_millis(500))),
            Duration::from_millis(500)
        );
        assert_eq!(at(budget.app_exit_until()), Duration::from_secs(6));
        assert_eq!(at(budget.deadline()), Duration::from_secs(8));
        // A small budget keeps at least 500 ms for the flush.
        let small = ShutdownBudget {
            began,
            total: Duration::from_secs(1),
        };
        let scrape = at(small.final_scrape_until(Duration::from_secs(5)));
        assert_eq!(scrape, Duration::from_millis(250));
        assert_eq!(at(small.app_exit_until()), Duration::from_millis(500));
    }
}
