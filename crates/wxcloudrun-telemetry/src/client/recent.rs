//! [`RecentRequests`]: what the server knows of its latest requests, by trace id, so that a
//! client report names routes only as the server knows them.

use std::sync::{Mutex, PoisonError};

use super::ring::RingMap;
use crate::labels::{LabelId, MethodLabel, RequestLabels};

/// How many requests the trace-id table remembers; the oldest is forgotten first.
///
/// The Mini Program package reports at most every 10 s, so this holds the last 4096 gateway
/// requests: a few seconds of traffic at a thousand requests per second. Reports of calls it no
/// longer holds count under `http_route="unknown"`. It takes 224 KiB, allocated when the layer
/// is built.
pub const RECENT_REQUESTS_CAPACITY: usize = 4096;

/// What a report may learn of one request the server served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recent {
    pub(crate) method: MethodLabel,
    /// The `http_route` id, capped like the server's own label.
    pub(crate) route: LabelId,
    /// The `wx_access_node` id.
    pub(crate) access_node: LabelId,
}

impl Recent {
    pub(crate) fn of(labels: &RequestLabels) -> Self {
        Recent {
            method: labels.method,
            route: labels.route,
            access_node: labels.access_node,
        }
    }
}

/// Trace id → [`Recent`], for the last [`RECENT_REQUESTS_CAPACITY`] requests through the
/// gateway. One lock and an O(1) insert per request, with no allocation: the table is allocated
/// once.
pub(crate) struct RecentRequests(Mutex<RingMap<TraceKey, Recent>>);

/// A trace id as two words: 8-byte alignment keeps a table entry at 48 bytes (a `u128` would
/// align it to 64).
type TraceKey = [u64; 2];

fn key(trace_id: u128) -> TraceKey {
    [(trace_id >> 64) as u64, trace_id as u64]
}

impl RecentRequests {
    pub(crate) fn new(capacity: usize) -> Self {
        RecentRequests(Mutex::new(RingMap::new(capacity)))
    }

    /// Remembers the request of `trace_id` (a later request with the same trace id replaces it).
    pub(crate) fn remember(&self, trace_id: u128, recent: Recent) {
        let mut table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        table.insert(key(trace_id), recent);
    }

    /// The request of `trace_id`, if it is still remembered.
    pub(crate) fn get(&self, trace_id: u128) -> Option<Recent> {
        let table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        table.get(&key(trace_id)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_takes_what_its_documentation_says() {
        let table = RecentRequests::new(RECENT_REQUESTS_CAPACITY);
        let bytes = table.0.lock().unwrap().heap_bytes();
        eprintln!("recent requests: {bytes} bytes");
        assert_eq!(bytes, 224 * 1024);
        table.remember(
            u128::MAX,
            Recent {
                method: MethodLabel::ALL[0],
                route: 7,
                access_node: 3,
            },
        );
        assert_eq!(table.get(u128::MAX).map(|r| r.route), Some(7));
        assert_eq!(table.get(u128::MAX >> 1), None);
    }
}
