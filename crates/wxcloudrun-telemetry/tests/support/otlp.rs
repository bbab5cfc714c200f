//! An OTLP trace receiver on loopback, built from `opentelemetry-proto`: gRPC (`TraceService/Export`
//! over tonic) and HTTP (`POST /v1/traces`, protobuf). It keeps the decoded spans and every raw
//! request body, so tests can search the bytes that left the process.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

#[derive(Clone, Default)]
pub struct Received {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Received {
    fn push(&self, request: ExportTraceServiceRequest) {
        self.raw.lock().unwrap().extend(request.encode_to_vec());
        self.requests.lock().unwrap().push(request);
    }

    /// Every span received, flattened.
    pub fn spans(&self) -> Vec<Span> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.clone())
            .collect()
    }

    /// The resource attributes of the first batch.
    pub fn resource(&self) -> Vec<KeyValue> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .filter_map(|rs| rs.resource.clone())
            .flat_map(|r| r.attributes)
            .collect()
    }

    /// Every byte the receiver was sent.
    pub fn raw(&self) -> Vec<u8> {
        self.raw.lock().unwrap().clone()
    }
}

/// The string form of an attribute value, for comparisons.
pub fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.clone()?;
    Some(match value {
        AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        } => s,
        AnyValue {
            value: Some(any_value::Value::IntValue(i)),
        } => i.to_string(),
        AnyValue {
            value: Some(any_value::Value::BoolValue(b)),
        } => b.to_string(),
        other => format!("{other:?}"),
    })
}

/// Starts an HTTP/protobuf receiver; returns its `/v1/traces` URL.
pub async fn http_receiver() -> (String, Received) {
    let received = Received::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(request) => {
                        sink.push(request);
                        let response = ExportTraceServiceResponse::default().encode_to_vec();
                        (
                            http::StatusCode::OK,
                            [("content-type", "application/x-protobuf")],
                            response,
                        )
                    }
                    Err(_) => (
                        http::StatusCode::BAD_REQUEST,
                        [("content-type", "text/plain")],
                        b"bad protobuf".to_vec(),
                    ),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1/traces"), received)
}

struct GrpcSink(Received);

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts a gRPC receiver; returns its endpoint URL.
pub async fn grpc_receiver() -> (String, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(GrpcSink(received.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap()
    });
    (format!("http://{addr}"), received)
}
