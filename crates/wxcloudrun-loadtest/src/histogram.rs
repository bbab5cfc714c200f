//! A log-linear latency histogram: exact below 128 ns, then 64 linear buckets per power of two
//! (under 1.6 % relative error), up to about 18 minutes. Recording is one index computation and
//! one increment; no allocation after creation.

use std::time::Duration;

/// Linear buckets per power of two (a power of two itself).
const SUB_BUCKETS: u64 = 64;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Values at or above `2^MAX_BITS` ns are clamped into the last bucket.
const MAX_BITS: u32 = 40;
const BUCKETS: usize = (SUB_BUCKETS * (MAX_BITS - SUB_BITS + 1) as u64) as usize;

/// Latencies in nanoseconds.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

fn index_of(nanos: u64) -> usize {
    let v = nanos.min((1 << MAX_BITS) - 1);
    if v < 2 * SUB_BUCKETS {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    (SUB_BUCKETS * (u64::from(shift) + 1) + ((v >> shift) - SUB_BUCKETS)) as usize
}

/// The smallest and largest value of a bucket.
fn bounds_of(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < 2 * SUB_BUCKETS {
        return (index, index);
    }
    let shift = index / SUB_BUCKETS - 1;
    let low = (index % SUB_BUCKETS + SUB_BUCKETS) << shift;
    (low, low + (1 << shift) - 1)
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index_of(nanos)] += 1;
        self.total += 1;
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0 ..= 1): the midpoint of the bucket holding the value of rank
    /// `ceil(q × count)`. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, high) = bounds_of(index);
                return Some(Duration::from_nanos(low + (high - low) / 2));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut expected_low = 0;
        for index in 0..BUCKETS {
            let (low, high) = bounds_of(index);
            assert_eq!(low, expected_low, "bucket {index}");
            assert!(high >= low);
            assert!((high - low) as f64 <= low as f64 / SUB_BUCKETS as f64 + 1.0);
            assert_eq!(index_of(low), index);
            assert_eq!(index_of(high), index);
            expected_low = high + 1;
        }
        assert_eq!(expected_low, 1 << MAX_BITS);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.99), None);
        for micros in 1..=1000 {
            h.record(Duration::from_micros(micros));
        }
        let p50 = h.quantile(0.5).unwrap().as_nanos() as f64;
        let p99 = h.quantile(0.99).unwrap().as_nanos() as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.02, "{p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.02, "{p99}");
        let mut other = Histogram::default();
        other.record(Duration::from_secs(3600));
        h.merge(&other);
        assert_eq!(h.count(), 1001);
        assert!(h.quantile(1.0).unwrap() > Duration::from_secs(1000));
    }
}
