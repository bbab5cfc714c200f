//! An in-process OTLP/HTTP trace receiver on loopback: `POST /v1/traces` with a protobuf
//! `ExportTraceServiceRequest`, answered `200` with an empty `ExportTraceServiceResponse`. It
//! counts what it receives so each traced variant can be checked for dropped spans.
//!
//! It runs on a thread of its own (started by, and so pinned with, the load generator's thread):
//! on the load generator's own runtime, handling a large export would stall every connection for
//! its duration and leave the server idle, a cost the traced variants do not really have. Spans
//! are counted by walking the protobuf wire format, without decoding them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// What the sink has received so far.
#[derive(Debug, Default)]
pub struct SinkCounts {
    spans: AtomicU64,
    exports: AtomicU64,
    bytes: AtomicU64,
    rejected: AtomicU64,
}

impl SinkCounts {
    /// Spans received.
    pub fn spans(&self) -> u64 {
        self.spans.load(Ordering::Relaxed)
    }

    /// Export requests received.
    pub fn exports(&self) -> u64 {
        self.exports.load(Ordering::Relaxed)
    }

    /// Request body bytes received.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Requests whose body was not an `ExportTraceServiceRequest`.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// A running sink; [`Sink::stop`] shuts it down.
#[derive(Debug)]
pub struct Sink {
    /// The URL to give an OTLP/HTTP exporter (`http://127.0.0.1:PORT/v1/traces`).
    pub endpoint: String,
    /// What it has received.
    pub counts: Arc<SinkCounts>,
    /// The kernel id of the sink's thread (for its CPU time), when known.
    pub tid: Option<i32>,
    stop: oneshot::Sender<()>,
    finished: oneshot::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

type ExportResponse = (StatusCode, [(&'static str, &'static str); 1], Vec<u8>);

async fn export(counts: Arc<SinkCounts>, body: Bytes) -> ExportResponse {
    counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    match count_spans(&body) {
        Some(spans) => {
            counts.spans.fetch_add(spans, Ordering::Relaxed);
            counts.exports.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::OK,
                [("content-type", "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
        }
        None => {
            counts.rejected.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::BAD_REQUEST,
                [("content-type", "text/plain")],
                b"not an ExportTraceServiceRequest".to_vec(),
            )
        }
    }
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Calls `f` with the number and payload of every length-delimited field of the message in
/// `buf`, skipping the others. `None` when `buf` is not a well-formed message.
fn length_delimited_fields(buf: &[u8], mut f: impl FnMut(u64, &[u8]) -> Option<()>) -> Option<()> {
    let mut pos = 0;
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos)?;
        match key & 7 {
            0 => {
                read_varint(buf, &mut pos)?;
            }
            1 => pos = pos.checked_add(8).filter(|&end| end <= buf.len())?,
            2 => {
                let len = usize::try_from(read_varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|&end| end <= buf.len())?;
                f(key >> 3, &buf[pos..end])?;
                pos = end;
            }
            5 => pos = pos.checked_add(4).filter(|&end| end <= buf.len())?,
            _ => return None,
        }
    }
    Some(())
}

/// The spans in an encoded `ExportTraceServiceRequest`: `resource_spans` (1) → `scope_spans`
/// (2) → `spans` (2), counted without decoding them.
pub fn count_spans(body: &[u8]) -> Option<u64> {
    let mut spans = 0;
    length_delimited_fields(body, |field, resource_spans| {
        if field != 1 {
            return Some(());
        }
        length_delimited_fields(resource_spans, |field, scope_spans| {
            if field != 2 {
                return Some(());
            }
            length_delimited_fields(scope_spans, |field, _span| {
                spans += u64::from(field == 2);
                Some(())
            })
        })
    })?;
    Some(spans)
}

impl Sink {
    /// Starts the sink on a new thread (which inherits the caller's CPU affinity), listening on
    /// `127.0.0.1:0`.
    pub fn start() -> Result<Sink, String> {
        let counts = Arc::new(SinkCounts::default());
        let state = counts.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let (finished_tx, finished) = oneshot::channel::<()>();
        let (bound_tx, bound) =
            std::sync::mpsc::channel::<Result<(SocketAddr, Option<i32>), String>>();
        let thread = std::thread::Builder::new()
            .name("loadtest-otlp-sink".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = bound_tx.send(Err(format!("sink runtime: {err}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener =
                        match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await {
                            Ok(listener) => listener,
                            Err(err) => {
                                let _ = bound_tx.send(Err(format!("sink bind: {err}")));
                                return;
                            }
                        };
                    let _ = bound_tx.send(
                        listener
                            .local_addr()
                            .map(|addr| (addr, crate::sys::current_thread_id()))
                            .map_err(|e| e.to_string()),
                    );
                    let app = Router::new().route(
                        "/v1/traces",
                        post(move |body: Bytes| export(state.clone(), body)),
                    );
                    let (draining_tx, draining) = oneshot::channel::<()>();
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = stopped.await;
                        let _ = draining_tx.send(());
                    });
                    // Exporters may keep connections open: stop waiting for them after a while.
                    let limit = async move {
                        let _ = draining.await;
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    };
                    tokio::select! {
                        _ = serve => {}
                        () = limit => {}
                    }
                });
                drop(runtime);
                let _ = finished_tx.send(());
            })
            .map_err(|err| format!("cannot start the OTLP sink thread: {err}"))?;
        match bound.recv() {
            Ok(Ok((addr, tid))) => Ok(Sink {
                endpoint: format!("http://{addr}/v1/traces"),
                counts,
                tid,
                stop,
                finished,
                thread,
            }),
            Ok(Err(err)) => Err(err),
            Err(_) => Err("the OTLP sink thread died while starting".into()),
        }
    }

    /// Stops accepting and waits (at most about 3 s) for open connections to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(3), self.finished)
            .await
            .is_ok()
        {
            let _ = self.thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn span(name: &str) -> Span {
        Span {
            name: name.into(),
            trace_id: vec![7; 16],
            span_id: vec![9; 8],
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![KeyValue {
                key: "http.route".into(),
                key_strindex: 0,
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("/users/{id}".into())),
                }),
            }],
            ..Span::default()
        }
    }

    #[test]
    fn counts_spans_without_decoding() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource::default()),
                    scope_spans: vec![
                        ScopeSpans {
                            spans: vec![span("a"), span("b")],
                            ..ScopeSpans::default()
                        },
                        ScopeSpans {
                            spans: vec![span("c")],
                            ..ScopeSpans::default()
                        },
                    ],
                    schema_url: "https://example.com/schema".into(),
                },
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: (0..600).map(|i| span(&format!("s{i}"))).collect(),
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                },
            ],
        };
        let bytes = request.encode_to_vec();
        assert_eq!(count_spans(&bytes), Some(603));
        assert_eq!(count_spans(&[]), Some(0));
        assert_eq!(count_spans(&bytes[..bytes.len() - 1]), None);
        assert_eq!(count_spans(b"\x0a\xff\xff\xff\xff\x0f"), None);
    }
}
