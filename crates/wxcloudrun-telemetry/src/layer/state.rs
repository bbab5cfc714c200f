//! [`LayerState`]: what every request of a layer shares, built once from the builder.

use std::sync::Arc;

use prometheus::Registry;

use crate::client::ClientReports;
use crate::config::{ConfigError, WxTelemetryBuilder};
use crate::context::TrustMode;
use crate::labels::{HistogramLabels, Vocabulary};
use crate::metrics::Metrics;
use crate::trace::Tracing;

/// What every request of a layer shares: the label tables, the metrics, the span settings and,
/// when on, the client reports.
pub(super) struct LayerState {
    pub(super) labels: Arc<Vocabulary>,
    pub(super) metrics: Metrics,
    pub(super) registry: Registry,
    pub(super) trust: TrustMode,
    pub(super) catch_panic: bool,
    pub(super) tracing: Option<Tracing>,
    pub(super) client: Option<Arc<ClientReports>>,
}

impl LayerState {
    /// Validates `builder`, registers the metrics and sets up the label tables and spans.
    pub(super) fn new(builder: WxTelemetryBuilder) -> Result<Self, ConfigError> {
        builder.validate()?;
        let service: Arc<str> = builder.resolved_service_name()?;
        let access_nodes = builder.access_node_table()?;
        let registry = builder.registry.clone().unwrap_or_default();
        let histogram = HistogramLabels::new(&builder.histogram_labels);
        let metrics = Metrics::register(&registry, &builder, histogram, &service)?;
        let labels = Arc::new(Vocabulary::new(
            service.clone(),
            histogram,
            &builder.caps,
            access_nodes,
            |label| metrics.overflow(label),
        ));
        let client = match builder.client_reports {
            true => {
                let client_metrics = metrics.register_client(&registry, &builder, service)?;
                let reports = ClientReports::new(labels.clone(), builder.trust, client_metrics);
                Some(Arc::new(reports))
            }
            false => None,
        };
        let tracing = builder.tracer.clone().map(|tracer| {
            Tracing::new(
                (tracer, builder.sample_first.clone()),
                builder.identity,
                builder.resolved_identity_key(),
                builder.trace_id_header.clone(),
                builder.response_traceparent,
            )
        });
        Ok(LayerState {
            labels,
            metrics,
            registry,
            trust: builder.trust,
            catch_panic: builder.catch_panic,
            tracing,
            client,
        })
    }
}
