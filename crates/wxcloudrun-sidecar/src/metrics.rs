//! The sidecar's self-metrics (`wxcloudrun_sidecar_*`), exactly the contract in
//! `dashboards/README.md` ("Sidecar self-metric contract"). They are served on the admin listener
//! and travel with the app's series in every export.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Why an export attempt failed: the `reason` of `wxcloudrun_sidecar_export_errors_total`.
/// What gives which is in [`crate::export::attempt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The TLS handshake failed: unknown CA, wrong name, expired or missing client certificate.
    Tls,
    /// The backend refused the credentials: HTTP 401/403, gRPC `UNAUTHENTICATED` /
    /// `PERMISSION_DENIED`.
    Auth,
    /// No connection: refused, reset, DNS, unreachable.
    Connect,
    /// No answer within the request timeout.
    Timeout,
    /// Any other 4xx (429 included).
    Http4xx,
    /// A 5xx.
    Http5xx,
    /// Anything else (other gRPC statuses, unreadable answers).
    Other,
}

impl FailureReason {
    /// Every reason, in the order of the contract (dashboards/README.md).
    pub const ALL: [FailureReason; 7] = [
        FailureReason::Tls,
        FailureReason::Auth,
        FailureReason::Connect,
        FailureReason::Timeout,
        FailureReason::Http4xx,
        FailureReason::Http5xx,
        FailureReason::Other,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            FailureReason::Tls => "tls",
            FailureReason::Auth => "auth",
            FailureReason::Connect => "connect",
            FailureReason::Timeout => "timeout",
            FailureReason::Http4xx => "http_4xx",
            FailureReason::Http5xx => "http_5xx",
            FailureReason::Other => "other",
        }
    }
}

/// Scrape outcomes.
pub const SCRAPE_OUTCOMES: [&str; 3] = ["success", "error", "timeout"];
/// Final outcomes of an export request.
pub const EXPORT_OUTCOMES: [&str; 3] = ["success", "failed", "dropped"];
/// Why samples never reach a backend.
pub const DROP_REASONS: [&str; 5] = [
    "queue_full",
    "too_old",
    "rejected",
    "retries_exhausted",
    "shutdown",
];
/// Why a scrape was refused before it could cost its memory (`reason` of
/// `wxcloudrun_sidecar_scrapes_exceeded_limit_total`): the memory budget, then Prometheus's
/// per-scrape limits by their names.
pub const LIMIT_REASONS: [&str; 6] = [
    "too_large",
    "sample_limit",
    "label_limit",
    "label_name_length_limit",
    "label_value_length_limit",
    "body_size_limit",
];
/// Why scraped samples are not exported (`reason` of
/// `wxcloudrun_sidecar_scrape_samples_dropped_total`).
pub const SCRAPE_DROP_REASONS: [&str; 1] = ["unparsable_bound"];
/// Outcomes of the final flush at shutdown.
pub const SHUTDOWN_OUTCOMES: [&str; 3] = ["success", "timeout", "error"];

/// Every self-metric, registered once.
#[derive(Clone, Debug)]
pub struct SelfMetrics {
    registry: Registry,
    scrapes: IntCounterVec,
    scrape_duration: Histogram,
    scrape_samples: IntGauge,
    exporters: ExporterVecs,
    shutdown_flushes: IntCounterVec,
    limits_exceeded: IntCounterVec,
    scrape_samples_dropped: IntCounterVec,
    memory_limit: IntGauge,
}

/// One exporter's handles, resolved once.
#[derive(Clone, Debug)]
pub struct ExporterMetrics {
    /// Requests that reached the backend.
    pub success: IntCounter,
    /// Requests given up on after retries (or at shutdown).
    pub failed: IntCounter,
    /// Requests the backend rejected with a non-retryable 4xx.
    pub dropped: IntCounter,
    /// Retried attempts.
    pub retries: IntCounter,
    /// Bytes waiting in the queue.
    pub queue_bytes: IntGauge,
    /// The queue's cap.
    pub queue_max_bytes: IntGauge,
    /// Samples dropped because the queue was full (oldest first).
    pub dropped_queue_full: IntCounter,
    /// Samples dropped unsent because their request waited longer than the queue's age limit.
    pub dropped_too_old: IntCounter,
    /// Samples in requests the backend rejected.
    pub dropped_rejected: IntCounter,
    /// Samples in requests given up on after retries.
    pub dropped_retries_exhausted: IntCounter,
    /// Samples still queued when the shutdown budget ran out.
    pub dropped_shutdown: IntCounter,
    /// Unix time of the last success.
    pub last_success: prometheus::Gauge,
    /// Failed attempts, by [`FailureReason`] (in the order of [`FailureReason::ALL`]).
    pub errors: [IntCounter; FailureReason::ALL.len()],
}

impl ExporterMetrics {
    /// The failed-attempts counter of `reason`.
    pub fn errors(&self, reason: FailureReason) -> &IntCounter {
        let at = FailureReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(FailureReason::ALL.len() - 1);
        &self.errors[at]
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("registered once");
    collector
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    register(registry, vec)
}

/// A counter by outcome, every outcome created at zero.
fn outcomes(registry: &Registry, name: &str, help: &str, outcomes: &[&str]) -> IntCounterVec {
    let vec = counter_vec(registry, name, help, &["outcome"]);
    for outcome in outcomes {
        vec.with_label_values(&[outcome]);
    }
    vec
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    register(registry, vec)
}

fn scrape_duration(registry: &Registry) -> Histogram {
    let opts = HistogramOpts::new(
        "wxcloudrun_sidecar_scrape_duration_seconds",
        "Time per scrape, request to parsed page.",
    )
    .buckets(vec![
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]);
    register(
        registry,
        Histogram::with_opts(opts).expect("valid metric definition"),
    )
}

fn last_export_success(registry: &Registry) -> prometheus::GaugeVec {
    let opts = Opts::new(
        "wxcloudrun_sidecar_last_export_success_timestamp_seconds",
        "Unix time of the exporter's last successful request.",
    );
    let vec = prometheus::GaugeVec::new(opts, &["exporter"]).expect("valid metric definition");
    register(registry, vec)
}

/// The sidecar's own process metrics (Linux), prefixed so that they do not collide with the
/// app's `process_*` under one instance.
fn register_process_collector(registry: &Registry) {
    #[cfg(target_os = "linux")]
    {
        let process = prometheus::process_collector::ProcessCollector::new(
            std::process::id() as i32,
            "wxcloudrun_sidecar",
        );
        registry
            .register(Box::new(process))
            .expect("registered once");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
}

/// The per-exporter vectors, labelled by `exporter` (and outcome or reason); [`ExporterMetrics`]
/// holds one exporter's handles into them.
#[derive(Clone, Debug)]
struct ExporterVecs {
    requests: IntCounterVec,
    retries: IntCounterVec,
    queue_bytes: IntGaugeVec,
    queue_max_bytes: IntGaugeVec,
    dropped_samples: IntCounterVec,
    errors: IntCounterVec,
    last_success: prometheus::GaugeVec,
}

impl ExporterVecs {
    fn register(registry: &Registry) -> Self {
        ExporterVecs {
            requests: counter_vec(
                registry,
                "wxcloudrun_sidecar_export_requests_total",
                "Export requests by exporter and final outcome.",
                &["exporter", "outcome"],
            ),
            retries: counter_vec(
                registry,
                "wxcloudrun_sidecar_export_retries_total",
                "Retried export attempts (5xx, 429, network errors).",
                &["exporter"],
            ),
            queue_bytes: gauge_vec(
                registry,
                "wxcloudrun_sidecar_queue_bytes",
                "Bytes waiting in the exporter's queue.",
                &["exporter"],
            ),
            queue_max_bytes: gauge_vec(
                registry,
                "wxcloudrun_sidecar_queue_max_bytes",
                "The exporter's queue cap in bytes.",
                &["exporter"],
            ),
            dropped_samples: counter_vec(
                registry,
                "wxcloudrun_sidecar_dropped_samples_total",
                "Samples that will never reach the backend, by exporter and reason.",
                &["exporter", "reason"],
            ),
            errors: counter_vec(
                registry,
                "wxcloudrun_sidecar_export_errors_total",
                "Failed export attempts by exporter and reason (tls, auth, connect, timeout, http_4xx, http_5xx, other).",
                &["exporter", "reason"],
            ),
            last_success: last_export_success(registry),
        }
    }
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SelfMetrics {
    /// Registers every self-metric in a new registry, with every outcome at zero.
    pub fn new() -> Self {
        let registry = Registry::new();
        let scrapes = outcomes(
            &registry,
            "wxcloudrun_sidecar_scrapes_total",
            "Scrapes of the app's metrics endpoint, by outcome.",
            &SCRAPE_OUTCOMES,
        );
        let scrape_duration = scrape_duration(&registry);
        let scrape_samples = register(
            &registry,
            IntGauge::new(
                "wxcloudrun_sidecar_scrape_samples",
                "Samples in the last successful scrape.",
            )
            .expect("valid metric definition"),
        );
        let shutdown_flushes = outcomes(
            &registry,
            "wxcloudrun_sidecar_shutdown_flushes_total",
            "Final flushes at shutdown, by outcome.",
            &SHUTDOWN_OUTCOMES,
        );
        register_process_collector(&registry);
        let by_reason = |name, help, reasons: &[&str]| {
            let vec = counter_vec(&registry, name, help, &["reason"]);
            for reason in reasons {
                vec.with_label_values(&[reason]);
            }
            vec
        };
        let limits_exceeded = by_reason(
            "wxcloudrun_sidecar_scrapes_exceeded_limit_total",
            "Scrapes refused by the memory budget (too_large) or a Prometheus per-scrape limit, by reason.",
            &LIMIT_REASONS,
        );
        let scrape_samples_dropped = by_reason(
            "wxcloudrun_sidecar_scrape_samples_dropped_total",
            "Scraped samples no point can hold (a histogram or summary sample whose le or quantile is no number), by reason.",
            &SCRAPE_DROP_REASONS,
        );
        let memory_limit = register(
            &registry,
            IntGauge::new(
                "wxcloudrun_sidecar_memory_limit_bytes",
                "The memory budget the sidecar keeps its scrapes and queues under.",
            )
            .expect("valid metric definition"),
        );
        SelfMetrics {
            limits_exceeded,
            scrape_samples_dropped,
            memory_limit,
            scrapes,
            scrape_duration,
            scrape_samples,
            exporters: ExporterVecs::register(&registry),
            shutdown_flushes,
            registry,
        }
    }

    /// The registry holding the self-metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records a scrape's outcome and duration.
    pub fn scrape(&self, outcome: &str, seconds: f64, samples: Option<usize>) {
        self.scrapes.with_label_values(&[outcome]).inc();
        self.scrape_duration.observe(seconds);
        if let Some(samples) = samples {
            self.scrape_samples.set(samples as i64);
        }
    }

    /// Counts a scrape refused by the budget or a limit (`reason`: one of [`LIMIT_REASONS`]).
    pub fn limit_exceeded(&self, reason: &str) {
        self.limits_exceeded.with_label_values(&[reason]).inc();
    }

    /// Counts scraped samples that are not exported (`reason`: one of
    /// [`SCRAPE_DROP_REASONS`]).
    pub fn scrape_samples_dropped(&self, reason: &str, samples: usize) {
        if samples > 0 {
            self.scrape_samples_dropped
                .with_label_values(&[reason])
                .inc_by(samples as u64);
        }
    }

    /// Publishes the memory budget.
    pub fn set_memory_limit(&self, bytes: u64) {
        self.memory_limit
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Records the final flush's outcome.
    pub fn shutdown_flush(&self, outcome: &str) {
        self.shutdown_flushes.with_label_values(&[outcome]).inc();
    }

    /// Resolves (and creates at zero) one exporter's series.
    pub fn exporter(&self, exporter: &str, queue_max_bytes: u64) -> ExporterMetrics {
        let request = |outcome| {
            self.exporters
                .requests
                .with_label_values(&[exporter, outcome])
        };
        let dropped = |reason| {
            self.exporters
                .dropped_samples
                .with_label_values(&[exporter, reason])
        };
        let metrics = ExporterMetrics {
            success: request("success"),
            failed: request("failed"),
            dropped: request("dropped"),
            retries: self.exporters.retries.with_label_values(&[exporter]),
            queue_bytes: self.exporters.queue_bytes.with_label_values(&[exporter]),
            queue_max_bytes: self
                .exporters
                .queue_max_bytes
                .with_label_values(&[exporter]),
            dropped_queue_full: dropped("queue_full"),
            dropped_too_old: dropped("too_old"),
            dropped_rejected: dropped("rejected"),
            dropped_retries_exhausted: dropped("retries_exhausted"),
            dropped_shutdown: dropped("shutdown"),
            last_success: self.exporters.last_success.with_label_values(&[exporter]),
            errors: FailureReason::ALL.map(|reason| {
                self.exporters
                    .errors
                    .with_label_values(&[exporter, reason.label()])
            }),
        };
        metrics
            .queue_max_bytes
            .set(i64::try_from(queue_max_bytes).unwrap_or(i64::MAX));
        metrics
    }
}
