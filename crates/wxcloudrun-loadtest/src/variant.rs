//! The configurations of the server the load test compares.

/// One configuration of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// axum alone.
    Bare,
    /// Our layer, metrics only.
    WxMetrics,
    /// Our layer, every span sampled out.
    WxSampledOut,
    /// Our layer, always-on spans batched to an exporter that drops them.
    WxTracesDropped,
    /// Our layer, metrics and always-on traces exported over OTLP.
    WxTraces,
    /// Our layer, always on, the server spans the SDK's, encoded as they end by our span
    /// processor: what `wx_traces` did before its server span was its own.
    WxTracesSdkSpans,
    /// Our layer and exporter, always on, the SDK's spans batched by the SDK's batch processor:
    /// what `wx_traces` did before it encoded each span as it ended.
    WxTracesSdkBatch,
    /// Our layer, always-on traces exported by opentelemetry-otlp's HTTP exporter: what
    /// `wx_traces` did before it wrote the protobuf itself.
    WxTracesOtlpCrate,
    /// axum-prometheus.
    AxumPrometheus,
    /// tower-http `TraceLayer` + tracing-opentelemetry, always on, exported over OTLP.
    TraceOtel,
}

impl Variant {
    /// Every variant, in the default order.
    pub const ALL: [Variant; 10] = [
        Variant::Bare,
        Variant::WxMetrics,
        Variant::WxSampledOut,
        Variant::WxTracesDropped,
        Variant::WxTraces,
        Variant::WxTracesSdkSpans,
        Variant::WxTracesSdkBatch,
        Variant::WxTracesOtlpCrate,
        Variant::AxumPrometheus,
        Variant::TraceOtel,
    ];

    /// The name used on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare",
            Variant::WxMetrics => "wx_metrics",
            Variant::WxSampledOut => "wx_sampled_out",
            Variant::WxTracesDropped => "wx_traces_dropped",
            Variant::WxTraces => "wx_traces",
            Variant::WxTracesSdkSpans => "wx_traces_sdk_spans",
            Variant::WxTracesSdkBatch => "wx_traces_sdk_batch",
            Variant::WxTracesOtlpCrate => "wx_traces_otlp_crate",
            Variant::AxumPrometheus => "axum_prometheus",
            Variant::TraceOtel => "trace_otel",
        }
    }

    /// Parses a name from [`Variant::name`].
    pub fn parse(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name.trim())
    }

    /// Whether the variant exports spans (and so should deliver one per request to the sink).
    pub fn exports_spans(self) -> bool {
        matches!(
            self,
            Variant::WxTraces
                | Variant::WxTracesSdkSpans
                | Variant::WxTracesSdkBatch
                | Variant::WxTracesOtlpCrate
                | Variant::TraceOtel
        )
    }
}
