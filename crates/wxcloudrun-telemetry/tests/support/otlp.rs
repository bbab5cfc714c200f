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
pub(crate) struct Received {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Received {
    fn push(&self, request: ExportTraceServiceRequest) {
        self.raw.lock().unwrap().extend(request.encode_to_vec());
        self.requests.lock().unwrap().push(request);
    }

    /// Every span received, flattened.
    pub(crate) fn spans(&self) -> Vec<Span> {
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
    pub(crate) fn resource(&self) -> Vec<KeyValue> {
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
    pub(crate) fn raw(&self) -> Vec<u8> {
        self.raw.lock().unwrap().clone()
    }
}

/// The string form of an attribute value, for comparisons.
pub(crate) fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
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
pub(crate) async fn http_receiver() -> (String, Received) {
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
pub(crate) async fn grpc_receiver() -> (String, Received) {
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

/// The request headers a TLS receiver saw, one map per export request.
pub(crate) type SeenHeaders = Arc<Mutex<Vec<http::HeaderMap>>>;

/// Starts an OTLP/HTTP receiver over HTTPS with `tls` (which may require client
/// certificates). It answers 401 unless `Authorization` is `authorization`, gunzips bodies sent
/// with `Content-Encoding: gzip`, and keeps every request's headers. Returns the base URL
/// (`https://127.0.0.1:<port>`, the receiver serves `/v1/traces`).
pub(crate) async fn https_receiver(
    tls: Arc<rustls::ServerConfig>,
    authorization: &'static str,
) -> (String, Received, SeenHeaders) {
    use http_body_util::BodyExt;

    let received = Received::default();
    let seen = SeenHeaders::default();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sink, heads) = (received.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, sink, heads) = (acceptor.clone(), sink.clone(), heads.clone());
            tokio::spawn(async move {
                // A client without a valid certificate ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let (sink, heads) = (sink.clone(), heads.clone());
                        async move {
                            let (parts, body) = request.into_parts();
                            heads.lock().unwrap().push(parts.headers.clone());
                            let body = body.collect().await.unwrap().to_bytes();
                            let status = if parts.uri.path() != "/v1/traces" {
                                http::StatusCode::NOT_FOUND
                            } else if parts.headers.get("authorization").map(|v| v.as_bytes())
                                != Some(authorization.as_bytes())
                            {
                                http::StatusCode::UNAUTHORIZED
                            } else {
                                let body = match parts.headers.get("content-encoding") {
                                    Some(encoding) if encoding == "gzip" => {
                                        let mut plain = Vec::new();
                                        std::io::Read::read_to_end(
                                            &mut flate2::read::GzDecoder::new(&body[..]),
                                            &mut plain,
                                        )
                                        .unwrap();
                                        plain
                                    }
                                    _ => body.to_vec(),
                                };
                                match ExportTraceServiceRequest::decode(&body[..]) {
                                    Ok(request) => {
                                        sink.push(request);
                                        http::StatusCode::OK
                                    }
                                    Err(_) => http::StatusCode::BAD_REQUEST,
                                }
                            };
                            let response = http::Response::builder()
                                .status(status)
                                .header("content-type", "application/x-protobuf")
                                .body(http_body_util::Full::new(Bytes::from(
                                    ExportTraceServiceResponse::default().encode_to_vec(),
                                )))
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://{addr}"), received, seen)
}

/// A server-side TLS stream as tonic's server wants its connections.
struct TlsIo(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tokio::io::AsyncRead for TlsIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// A gRPC sink that also keeps each request's metadata.
struct GrpcHeadSink(Received, SeenHeaders);

#[tonic::async_trait]
impl TraceService for GrpcHeadSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.1
            .lock()
            .unwrap()
            .push(request.metadata().clone().into_headers());
        self.0.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts a gRPC receiver over TLS with `tls` (which should offer ALPN `h2` and may require
/// client certificates), accepting gzip; keeps every request's metadata. Returns its
/// `https://` endpoint.
pub(crate) async fn grpc_tls_receiver(
    tls: Arc<rustls::ServerConfig>,
) -> (String, Received, SeenHeaders) {
    let received = Received::default();
    let seen = SeenHeaders::default();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    // Failed handshakes are skipped: the next connection is awaited.
    let incoming =
        futures_util::stream::unfold((listener, acceptor), |(listener, acceptor)| async move {
            loop {
                let (tcp, _) = listener.accept().await.ok()?;
                if let Ok(tls) = acceptor.accept(tcp).await {
                    return Some((Ok::<_, std::io::Error>(TlsIo(tls)), (listener, acceptor)));
                }
            }
        });
    let service = TraceServiceServer::new(GrpcHeadSink(received.clone(), seen.clone()))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .unwrap()
    });
    (format!("https://{addr}"), received, seen)
}
