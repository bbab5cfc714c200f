//! Exemplars of the duration histogram: per bucket of each series, the latest sampled request
//! that fell in it (`trace_id`, `span_id`, the value, the time), so a slow bucket leads to a trace.
//!
//! Our own slots rather than the `prometheus` crate's: version 0.14 has no exemplars at all (its
//! `proto::Bucket` carries a bound and a count, and it encodes text 0.0.4 and protobuf only), so
//! the slots sit beside the buckets of [`Histogram`](super::Histogram) and
//! [`openmetrics`](crate::openmetrics) renders them.
//!
//! A slot is a sequence lock made of atomics, so no `unsafe` and no lock. Writers never wait: a
//! writer that finds the slot being written gives up (the other one is just as recent), and a
//! reader that sees a write in progress retries a few times, then shows no exemplar for that
//! bucket in that scrape. Unsampled requests never touch a slot.

use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{SystemTime, UNIX_EPOCH};

/// The label names of an exemplar, as exposed.
pub(crate) const TRACE_ID_LABEL: &str = "trace_id";
/// See [`TRACE_ID_LABEL`].
pub(crate) const SPAN_ID_LABEL: &str = "span_id";

/// OpenMetrics caps an exemplar's label set (names and values, in UTF-8 characters) at 128; ours
/// is always 32 + 16 hex digits and the two names.
pub(crate) const EXEMPLAR_LABELS_LEN: usize = TRACE_ID_LABEL.len() + 32 + SPAN_ID_LABEL.len() + 16;
const _: () = assert!(EXEMPLAR_LABELS_LEN <= 128);

/// How often a reader retries a slot that is being written before it skips it for this scrape.
const READ_ATTEMPTS: usize = 4;

/// The ids and end time of a sampled request, as the layer hands them to the histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SampledRequest {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    /// When the request ended, in nanoseconds since the Unix epoch.
    pub(crate) unix_nanos: u64,
}

impl SampledRequest {
    /// A sampled request that ended at `end`; a time before 1970 counts as the epoch.
    pub(crate) fn new(trace_id: u128, span_id: u64, end: SystemTime) -> Self {
        let since_epoch = end.duration_since(UNIX_EPOCH).unwrap_or_default();
        SampledRequest {
            trace_id,
            span_id,
            unix_nanos: u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
        }
    }
}

/// One bucket's exemplar as read back: a sampled request and its observed value, in the
/// histogram's unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exemplar {
    pub(crate) request: SampledRequest,
    pub(crate) value: u64,
}

/// The exemplar slot of one bucket.
#[derive(Default)]
pub(crate) struct ExemplarSlot {
    /// Even: stable; odd: being written; `0`: never written.
    seq: AtomicU64,
    trace_hi: AtomicU64,
    trace_lo: AtomicU64,
    span_id: AtomicU64,
    value: AtomicU64,
    unix_nanos: AtomicU64,
}

impl ExemplarSlot {
    /// Keeps `request` with its `value` as this bucket's exemplar, unless another write is in
    /// progress (then that one is kept).
    pub(crate) fn store(&self, request: &SampledRequest, value: u64) {
        let seq = self.seq.load(Ordering::Relaxed);
        if seq & 1 == 1
            || self
                .seq
                .compare_exchange(
                    seq,
                    seq.wrapping_add(1),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        // The data stores must not move above the odd sequence number.
        fence(Ordering::Release);
        self.trace_hi
            .store((request.trace_id >> 64) as u64, Ordering::Relaxed);
        self.trace_lo
            .store(request.trace_id as u64, Ordering::Relaxed);
        self.span_id.store(request.span_id, Ordering::Relaxed);
        self.value.store(value, Ordering::Relaxed);
        self.unix_nanos.store(request.unix_nanos, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// The exemplar, when one was written and could be read whole.
    pub(crate) fn load(&self) -> Option<Exemplar> {
        for _ in 0..READ_ATTEMPTS {
            let before = self.seq.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let trace_hi = self.trace_hi.load(Ordering::Relaxed);
            let trace_lo = self.trace_lo.load(Ordering::Relaxed);
            let span_id = self.span_id.load(Ordering::Relaxed);
            let value = self.value.load(Ordering::Relaxed);
            let unix_nanos = self.unix_nanos.load(Ordering::Relaxed);
            // The data loads must not move below the second sequence load.
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Some(Exemplar {
                    request: SampledRequest {
                        trace_id: (u128::from(trace_hi) << 64) | u128::from(trace_lo),
                        span_id,
                        unix_nanos,
                    },
                    value,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_slot_has_no_exemplar_and_the_last_write_wins() {
        let slot = ExemplarSlot::default();
        assert_eq!(slot.load(), None);
        let first = SampledRequest {
            trace_id: u128::MAX - 1,
            span_id: 7,
            unix_nanos: 1,
        };
        slot.store(&first, 10);
        let second = SampledRequest {
            trace_id: 1 << 100 | 5,
            span_id: u64::MAX,
            unix_nanos: 2,
        };
        slot.store(&second, 20);
        assert_eq!(
            slot.load(),
            Some(Exemplar {
                request: second,
                value: 20
            })
        );
    }

    #[test]
    fn concurrent_writers_never_leave_a_torn_exemplar() {
        let slot = std::sync::Arc::new(ExemplarSlot::default());
        // Each writer writes one consistent pattern: every field derived from `n`.
        let request = |n: u64| SampledRequest {
            trace_id: (u128::from(n) << 64) | u128::from(n),
            span_id: n,
            unix_nanos: n,
        };
        let writers: Vec<_> = (1..=4u64)
            .map(|n| {
                let slot = slot.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        slot.store(&request(n), n);
                    }
                })
            })
            .collect();
        for _ in 0..20_000 {
            if let Some(exemplar) = slot.load() {
                assert_eq!(exemplar.request, request(exemplar.value), "torn read");
            }
        }
        for writer in writers {
            writer.join().unwrap();
        }
        let last = slot.load().expect("written");
        assert_eq!(last.request, request(last.value));
    }

    #[test]
    fn times_before_the_epoch_count_as_the_epoch() {
        let before = UNIX_EPOCH - std::time::Duration::from_secs(1);
        assert_eq!(SampledRequest::new(1, 2, before).unix_nanos, 0);
    }
}
