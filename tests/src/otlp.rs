//! An OTLP/HTTP trace receiver on loopback (`POST /v1/traces`, protobuf), built from
//! `opentelemetry-proto`: it keeps the ids of every span it is sent.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

/// The ids of the spans received, as lowercase hex: `(trace_id, span_id)`.
#[derive(Clone, Debug, Default)]
pub struct ReceivedSpans(Arc<Mutex<HashSet<(String, String)>>>);

impl ReceivedSpans {
    /// Every `(trace_id, span_id)` received so far.
    pub fn ids(&self) -> HashSet<(String, String)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `Ok` once every id in `wanted` (exemplars' `(trace_id, span_id)`) has been received;
    /// otherwise which ones name no span yet.
    pub fn all_received(&self, wanted: &HashSet<(String, String)>) -> Result<(), String> {
        let ids = self.ids();
        let missing: Vec<_> = wanted.difference(&ids).collect();
        match missing.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "{} of {} exemplars name no span received: {missing:?}",
                missing.len(),
                wanted.len()
            )),
        }
    }

    fn keep(&self, request: &ExportTraceServiceRequest) {
        let spans = request
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| &scope.spans);
        let mut ids = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for span in spans {
            ids.insert((hex(&span.trace_id), hex(&span.span_id)));
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts a receiver on a free loopback port, in a task on the current runtime; returns its
/// `/v1/traces` URL and what it receives.
pub async fn http_trace_receiver() -> std::io::Result<(String, ReceivedSpans)> {
    let received = ReceivedSpans::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(request) => {
                        sink.keep(&request);
                        let response = ExportTraceServiceResponse::default().encode_to_vec();
                        let headers = [("content-type", "application/x-protobuf")];
                        (StatusCode::OK, headers, response)
                    }
                    Err(_) => {
                        let headers = [("content-type", "text/plain")];
                        (StatusCode::BAD_REQUEST, headers, b"bad protobuf".to_vec())
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("OTLP receiver stopped: {err}");
        }
    });
    Ok((format!("http://{addr}/v1/traces"), received))
}

/// A layer with every span sampled and exported over OTLP/HTTP to `endpoint` (a receiver from
/// [`http_trace_receiver`]), as the quickstart's service name; keep the [`Telemetry`](wxcloudrun_telemetry::Telemetry) to flush it.
pub fn always_on_layer(
    endpoint: &str,
) -> (
    wxcloudrun_telemetry::Telemetry,
    wxcloudrun_telemetry::WxTelemetryLayer,
) {
    let endpoint = endpoint.to_owned();
    let config = wxcloudrun_telemetry::TelemetryConfig::from_lookup(|key| match key {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Some(endpoint.clone()),
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("http/protobuf".to_owned()),
        "OTEL_TRACES_SAMPLER" => Some("always_on".to_owned()),
        "OTEL_SERVICE_NAME" => Some("quickstart".to_owned()),
        _ => None,
    });
    let telemetry = wxcloudrun_telemetry::Telemetry::new(config).expect("trace pipeline");
    assert!(telemetry.exports_traces());
    let layer = telemetry.layer().build().expect("layer");
    (telemetry, layer)
}
