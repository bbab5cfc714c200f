//! The families the Mini Program's reports feed, registered once when client reports are on.
//!
//! Every label value is bounded: routes and access nodes are the server's own ids (or
//! `unknown`), the AppID goes through the server's AppID cap, and `outcome`, `wx_err_code` and
//! `result` are closed sets. So the series count is bounded by the caps, whatever arrives.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, Registry};

use super::histogram::{Histogram, HistogramFamily};
use super::register::register_vec;
use crate::cache::ReadMostlyMap;
use crate::config::ConfigError;
use crate::labels::{
    ClientOutcome, EMPTY, ErrCode, LabelId, OTHER, ReportResult, Vocabulary, name,
};

/// The client duration histogram, and its `metric` in `wxcloudrun_label_overflow_total`.
pub(crate) const CLIENT_DURATION: &str = "wxcloudrun_client_request_duration_seconds";

/// `http_route` and `wx_access_node` of a call the server has no record of.
const UNKNOWN: &str = "unknown";

/// Durations are observed in nanoseconds and exposed in seconds.
const NANOS_PER_SECOND: f64 = 1e9;

/// One reported call, resolved: what the server knows of it and what the client measured.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientCall {
    /// The server's `http_route` id of the call; `None`: unknown.
    pub(crate) route: Option<LabelId>,
    /// The server's `wx_access_node` id; `None`: unknown.
    pub(crate) access_node: Option<LabelId>,
    pub(crate) outcome: ClientOutcome,
    pub(crate) err_code: ErrCode,
    pub(crate) duration: Duration,
    /// The service's own time, when the call reached it.
    pub(crate) server: Option<Duration>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct DurationKey {
    route: Option<LabelId>,
    appid: LabelId,
    outcome: ClientOutcome,
    err_code: ErrCode,
}

/// The client families and their series, by label ids.
pub(crate) struct ClientMetrics {
    duration: HistogramFamily,
    overhead: HistogramFamily,
    reports: [IntCounter; ReportResult::ALL.len()],
    dropped: IntCounter,
    /// `wxcloudrun_label_overflow_total{metric="wxcloudrun_client_request_duration_seconds",label="wx_appid"}`.
    appid_overflow: IntCounter,
    service: Arc<str>,
    durations: ReadMostlyMap<DurationKey, Histogram>,
    overheads: ReadMostlyMap<(LabelId, Option<LabelId>), Histogram>,
}

impl ClientMetrics {
    /// Registers the client families in `registry`, with the server's duration `buckets`.
    pub(crate) fn register(
        registry: &Registry,
        buckets: &[f64],
        service: Arc<str>,
        appid_overflow: IntCounter,
    ) -> Result<Self, ConfigError> {
        let duration = HistogramFamily::register(
            registry,
            (
                CLIENT_DURATION,
                "Duration of callContainer calls as the Mini Program measured them, from its \
                 reports.",
            ),
            &[
                name::ROUTE,
                name::SERVICE,
                name::APPID,
                name::OUTCOME,
                name::ERR_CODE,
            ],
            buckets,
            NANOS_PER_SECOND,
        )?;
        let overhead = HistogramFamily::register(
            registry,
            (
                "wxcloudrun_client_overhead_seconds",
                "Client duration minus the service's own time (Server-Timing) of calls that \
                 reached the service: gateway, network and the client itself.",
            ),
            &[name::SERVICE, name::APPID, name::ACCESS_NODE],
            buckets,
            NANOS_PER_SECOND,
        )?;
        let reports = register_vec(
            registry,
            (
                "wxcloudrun_client_reports_total",
                "Mini Program reports received by the beacon, by what became of them.",
            ),
            &["result"],
            IntCounterVec::new,
        )?;
        let dropped = register_vec(
            registry,
            (
                "wxcloudrun_client_dropped_calls_total",
                "Calls the Mini Program lost before reporting them (queue full, report refused), \
                 as its accepted reports say.",
            ),
            &[name::SERVICE],
            IntCounterVec::new,
        )?;
        Ok(ClientMetrics {
            duration,
            overhead,
            reports: ReportResult::ALL.map(|result| reports.with_label_values(&[result.as_str()])),
            dropped: dropped.with_label_values(&[&*service]),
            appid_overflow,
            service,
            durations: ReadMostlyMap::default(),
            overheads: ReadMostlyMap::default(),
        })
    }

    /// Counts a report by what became of it.
    pub(crate) fn report(&self, result: ReportResult) {
        self.reports[result.index()].inc();
    }

    /// Counts calls the client says it lost.
    pub(crate) fn dropped(&self, calls: u64) {
        self.dropped.inc_by(calls);
    }

    /// Records one call of a report from the AppID `appid` (`None`: a value past the cap,
    /// counted as `_other` and, like the server's labels, as one overflow per call).
    pub(crate) fn record(&self, labels: &Vocabulary, appid: Option<LabelId>, call: &ClientCall) {
        let appid = appid.unwrap_or_else(|| {
            self.appid_overflow.inc();
            OTHER
        });
        let key = DurationKey {
            route: call.route,
            appid,
            outcome: call.outcome,
            err_code: call.err_code,
        };
        let histogram = self.durations.get_or_insert_with(key, || {
            let route = call.route.map(|id| labels.route(id));
            let appid = labels.appid(appid);
            self.duration.with_label_values(&[
                route.as_deref().unwrap_or(UNKNOWN),
                &self.service,
                &appid,
                call.outcome.as_str(),
                call.err_code.as_str(),
            ])
        });
        histogram.observe(nanos(call.duration));
        let Some(server) = call.server else {
            return;
        };
        // Clamped at zero: a client clock coarser than the server's must not make it negative.
        let overhead = call.duration.saturating_sub(server);
        let node = call.access_node.filter(|id| *id != EMPTY);
        let histogram = self.overheads.get_or_insert_with((appid, node), || {
            let node = node.map(|id| labels.access_node(id));
            self.overhead.with_label_values(&[
                &self.service,
                &labels.appid(appid),
                node.as_deref().unwrap_or(UNKNOWN),
            ])
        });
        histogram.observe(nanos(overhead));
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
