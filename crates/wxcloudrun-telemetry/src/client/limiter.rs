//! [`ReportLimiter`]: a token bucket per user, so one phone (or one forged flood through a real
//! Mini Program) cannot make the beacon do unbounded work.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::ring::RingMap;

/// How many users' report budgets are remembered; past it the oldest is forgotten (that user
/// starts again with a full budget). 519 KiB, allocated when the layer is built.
pub const REPORTING_USERS_CAPACITY: usize = 10_000;

/// Reports a user may send at once, after a quiet spell.
pub const CLIENT_REPORT_BURST: u32 = 20;

/// A user's budget grows back by one report per this interval (30 reports a minute).
pub const CLIENT_REPORT_REFILL: Duration = Duration::from_secs(2);

/// One user's budget.
#[derive(Clone, Copy)]
struct Budget {
    tokens: f64,
    /// Nanoseconds since the limiter's epoch of the last refill.
    at: u64,
}

/// Report budgets per user, keyed by a keyed hash of the OpenID: the OpenID itself is never
/// stored. Calls without an OpenID (the gateway was asked to exclude it) share one budget.
pub(crate) struct ReportLimiter {
    users: Mutex<RingMap<u64, Budget>>,
    /// A per-process random key: the stored hashes cannot be tested against a guessed OpenID
    /// from outside the process, nor do they survive a restart.
    ids: RandomState,
    epoch: Instant,
    burst: f64,
    refill: Duration,
}

impl ReportLimiter {
    pub(crate) fn new(users: usize, burst: u32, refill: Duration) -> Self {
        ReportLimiter {
            users: Mutex::new(RingMap::new(users)),
            ids: RandomState::new(),
            epoch: Instant::now(),
            burst: f64::from(burst.max(1)),
            refill: refill.max(Duration::from_nanos(1)),
        }
    }

    /// Takes one report from the budget of `user`; `Err(how long until the next one)` when it is
    /// spent.
    pub(crate) fn allow(&self, user: Option<&str>) -> Result<(), Duration> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.allow_at(self.ids.hash_one(user), now)
    }

    fn allow_at(&self, key: u64, now: u64) -> Result<(), Duration> {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let budget = users.get_or_insert_with(key, || Budget {
            tokens: self.burst,
            at: now,
        });
        let refill = self.refill.as_nanos() as f64;
        let grown = now.saturating_sub(budget.at) as f64 / refill;
        budget.tokens = (budget.tokens + grown).min(self.burst);
        budget.at = now;
        if budget.tokens >= 1.0 {
            budget.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - budget.tokens) * refill;
            Err(Duration::from_nanos(wait.ceil() as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_one_report_per_refill() {
        let limiter = ReportLimiter::new(8, 3, Duration::from_secs(2));
        for _ in 0..3 {
            assert!(limiter.allow_at(1, 0).is_ok());
        }
        let wait = limiter.allow_at(1, 0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(2));
        // Another user has a budget of its own.
        assert!(limiter.allow_at(2, 0).is_ok());
        assert!(limiter.allow_at(1, SECOND).is_err());
        assert!(limiter.allow_at(1, 2 * SECOND).is_ok());
        assert!(limiter.allow_at(1, 2 * SECOND).is_err());
        // A long pause refills to the burst, not beyond.
        let later = 1000 * SECOND;
        let allowed = (0..10)
            .filter(|_| limiter.allow_at(1, later).is_ok())
            .count();
        assert_eq!(allowed, 3);
    }

    #[test]
    fn users_past_the_capacity_forget_the_oldest() {
        let limiter = ReportLimiter::new(2, 1, Duration::from_secs(3600));
        assert!(limiter.allow_at(1, 0).is_ok());
        assert!(limiter.allow_at(1, 0).is_err());
        assert!(limiter.allow_at(2, 0).is_ok());
        assert!(limiter.allow_at(3, 0).is_ok());
        // User 1 was the oldest: forgotten, it starts again with a full budget.
        assert!(limiter.allow_at(1, 0).is_ok());
        assert!(limiter.allow_at(3, 0).is_err());
    }

    #[test]
    fn the_table_takes_what_its_documentation_says() {
        let limiter = ReportLimiter::new(REPORTING_USERS_CAPACITY, 1, Duration::from_secs(1));
        let bytes = limiter.users.lock().unwrap().heap_bytes();
        eprintln!("report budgets: {bytes} bytes");
        assert_eq!(bytes.div_ceil(1024), 519);
    }

    #[test]
    fn openids_are_stored_as_keyed_hashes() {
        let limiter = ReportLimiter::new(4, 1, Duration::from_secs(60));
        assert!(limiter.allow(Some("oUser")).is_ok());
        assert!(limiter.allow(Some("oUser")).is_err());
        assert!(limiter.allow(Some("oOther")).is_ok());
        assert!(limiter.allow(None).is_ok());
        assert!(limiter.allow(None).is_err());
        let other = ReportLimiter::new(4, 1, Duration::from_secs(60));
        assert_ne!(
            limiter.ids.hash_one(Some("oUser")),
            other.ids.hash_one(Some("oUser")),
            "each limiter keys its hashes"
        );
    }
}
