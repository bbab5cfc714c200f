//! When a failed request is tried again: exponential backoff with jitter, or the backend's own
//! `Retry-After` / gRPC `RetryInfo`, and an age past which a request is given up on.

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;

/// The first backoff. Defaults to 100 ms.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest backoff. Defaults to 5 s.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The longest wait a backend can ask for. Defaults to 30 s.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long a request may keep failing before it is dropped. Defaults to 5 min.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// How failed requests are retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff; it doubles on each failure.
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// The longest wait a backend's `Retry-After` or `RetryInfo` can ask for.
    pub max_retry_after: Duration,
    /// A request still failing this long after it was queued is dropped (`retries_exhausted`),
    /// so a dead backend cannot hold its queue forever.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based): full doubling, jittered to 50–100 %.
    pub(crate) fn backoff(&self, attempt: u32, rng: &mut StdRng) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max_backoff);
        base.mul_f64(rng.random_range(0.5..=1.0))
    }
}

/// `Retry-After` as seconds or an HTTP date (shared with the telemetry crate's exporter).
pub(crate) use wxcloudrun_connect::http::retry_after;

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..40 {
            let base = (policy.initial_backoff * 2u32.pow(attempt.min(10))).min(policy.max_backoff);
            let wait = policy.backoff(attempt, &mut rng);
            assert!(wait >= base / 2 && wait <= base, "{attempt}: {wait:?}");
        }
    }
}
