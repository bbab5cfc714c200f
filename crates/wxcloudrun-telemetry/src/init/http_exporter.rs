//! OTLP/HTTP protobuf span export: requests written straight from the finished spans
//! (`span_proto`), sent by our blocking reqwest client on the span processor's own thread.
//!
//! It replaces opentelemetry-otlp's HTTP exporter, whose conversion into `opentelemetry-proto`
//! messages was as costly as the request being traced (see `span_proto`). The queueing and
//! batching (`OTEL_BSP_*`) are the encoding span processor's (`encoding_processor`), which hands
//! over requests already encoded ([`HttpSpanExporter::export_encoded`]); as a `SpanExporter` it
//! encodes a batch of `SpanData` itself. What opentelemetry-otlp's exporter did beyond encoding is
//! kept: the content type, `gzip`, the timeout over all attempts, and the retries of
//! opentelemetry-otlp 0.33's recommended policy (up to 3 after the first attempt, 100 ms doubling
//! to 1.6 s plus up to 100 ms of jitter; retried are a failed connection and 429, 502, 503 and
//! 504, after the `Retry-After` that 429 or 503 may give, in seconds or as an HTTP date, up to
//! 30 s).

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use flate2::Compression as GzipLevel;
use flate2::write::GzEncoder;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderValue, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prost::Message;
use wxcloudrun_connect::http::retry_after_value;
use wxcloudrun_connect::secret::redact_url;

use super::span_proto::{EncodedResource, encode_request};

const USER_AGENT_VALUE: &str = concat!("wxcloudrun-telemetry/", env!("CARGO_PKG_VERSION"));
const MAX_RETRIES: u32 = 3;
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_millis(1600);
const MAX_JITTER_MS: u64 = 100;
/// The longest `Retry-After` honoured (opentelemetry-otlp's cap on a throttle); the timeout
/// still bounds the whole export.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// What a response body is read up to: a partial-success message is a few hundred bytes, and a
/// collector that answers with more is not trusted with the exporter's memory.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// The span exporter for `http/protobuf`.
#[derive(Debug)]
pub(crate) struct HttpSpanExporter {
    client: reqwest::blocking::Client,
    endpoint: String,
    /// The configured headers with the content type, encoding and (unless configured) user
    /// agent: the same for every request.
    headers: HeaderMap,
    gzip: bool,
    timeout: Duration,
    resource: EncodedResource,
    /// The last request's size: the next one's buffer starts there, so a steady load allocates
    /// one buffer a batch and never grows it.
    last_len: AtomicUsize,
    shut_down: AtomicBool,
}

/// Why one attempt failed, and whether another may follow.
struct Failure {
    message: String,
    retry: Retry,
}

enum Retry {
    No,
    Yes,
    /// After the collector's `Retry-After`.
    After(Duration),
}

impl HttpSpanExporter {
    pub(crate) fn new(
        client: reqwest::blocking::Client,
        endpoint: &str,
        mut headers: HeaderMap,
        gzip: bool,
        timeout: Duration,
    ) -> HttpSpanExporter {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        if gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        } else {
            headers.remove(CONTENT_ENCODING);
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        }
        HttpSpanExporter {
            client,
            endpoint: endpoint.to_owned(),
            headers,
            gzip,
            timeout,
            resource: EncodedResource::default(),
            last_len: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
        }
    }

    /// The request body of `batch`, compressed when configured.
    fn body(&self, batch: &[SpanData]) -> Result<Vec<u8>, OTelSdkError> {
        let mut body = Vec::with_capacity(self.last_len.load(Ordering::Relaxed));
        encode_request(batch, &self.resource, &mut body);
        self.last_len.store(body.len(), Ordering::Relaxed);
        self.compressed(body)
    }

    /// `body` gzipped, when configured.
    fn compressed(&self, body: Vec<u8>) -> Result<Vec<u8>, OTelSdkError> {
        if !self.gzip {
            return Ok(body);
        }
        let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), GzipLevel::default());
        std::io::Write::write_all(&mut encoder, &body)
            .and_then(|()| encoder.finish())
            .map_err(|err| OTelSdkError::InternalFailure(format!("gzip failed: {err}")))
    }

    /// Exports an `ExportTraceServiceRequest` already encoded (by the encoding span
    /// processor): compressed when configured, sent with the retries of [`SpanExporter::export`].
    pub(crate) fn export_encoded(&self, request: Vec<u8>) -> OTelSdkResult {
        if self.shut_down.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        self.send(self.compressed(request)?)
    }

    /// Sends `body`, retrying as the module says while the timeout allows.
    fn send(&self, body: Vec<u8>) -> OTelSdkResult {
        let started = Instant::now();
        let body = bytes::Bytes::from(body);
        let mut delay = FIRST_DELAY;
        let mut attempt = 0;
        loop {
            let left = self.timeout.saturating_sub(started.elapsed());
            let failure = match self.attempt(body.clone(), left) {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            let wait = match failure.retry {
                Retry::No => None,
                _ if attempt >= MAX_RETRIES => None,
                Retry::Yes => Some((delay + jitter()).min(MAX_DELAY)),
                Retry::After(after) => Some(after.max(delay) + jitter()),
            };
            let left = self.timeout.saturating_sub(started.elapsed());
            match wait {
                Some(wait) if wait < left => {
                    std::thread::sleep(wait);
                    delay = (delay * 2).min(MAX_DELAY);
                    attempt += 1;
                }
                _ => {
                    return Err(OTelSdkError::InternalFailure(format!(
                        "OTLP export to {} failed after {} attempt(s): {}",
                        redact_url(&self.endpoint),
                        attempt + 1,
                        failure.message
                    )));
                }
            }
        }
    }

    fn attempt(&self, body: bytes::Bytes, timeout: Duration) -> Result<(), Failure> {
        if timeout.is_zero() {
            return Err(Failure {
                message: "the export timeout ran out".to_owned(),
                retry: Retry::No,
            });
        }
        let response = self
            .client
            .post(&self.endpoint)
            .headers(self.headers.clone())
            .timeout(timeout)
            .body(body)
            .send()
            .map_err(|err| Failure {
                // Without the URL: reqwest's message would repeat it unredacted.
                message: format!("no response: {}", err.without_url()),
                retry: Retry::Yes,
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, SystemTime::now()));
        let mut reply = Vec::new();
        // A body that cannot be read changes nothing about the status.
        let _ = response.take(MAX_RESPONSE_BYTES).read_to_end(&mut reply);
        if status.is_success() {
            warn_of_partial_success(&reply);
            return Ok(());
        }
        let retry = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                retry_after.map_or(Retry::Yes, Retry::After)
            }
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => Retry::Yes,
            _ => Retry::No,
        };
        Err(Failure {
            message: format!("the collector answered {status}"),
            retry,
        })
    }
}

/// A `Retry-After` value (seconds, or an HTTP date after `now`) as a wait, capped.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    retry_after_value(value, now).map(|wait| wait.min(MAX_RETRY_AFTER))
}

/// A collector that kept only some spans says so in a 200 response.
fn warn_of_partial_success(reply: &[u8]) {
    let Ok(response) = ExportTraceServiceResponse::decode(reply) else {
        return;
    };
    if let Some(partial) = response.partial_success
        && (partial.rejected_spans > 0 || !partial.error_message.is_empty())
    {
        tracing::warn!(
            rejected_spans = partial.rejected_spans,
            error_message = partial.error_message.as_str(),
            "the OTLP collector rejected some spans"
        );
    }
}

/// Up to 100 ms, so that instances that failed together do not retry together.
fn jitter() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    Duration::from_millis(nanos % (MAX_JITTER_MS + 1))
}

impl SpanExporter for HttpSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.shut_down.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let body = self.body(&batch)?;
        // The spans go before the network wait: their memory is not held through retries.
        drop(batch);
        self.send(body)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        if self.shut_down.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = EncodedResource::new(resource);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::future::Future;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::pin::pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    use flate2::read::GzDecoder;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
    use opentelemetry::{InstrumentationScope, trace::TraceState};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    /// One request as the collector saw it.
    pub(crate) struct Seen {
        headers: Vec<(String, String)>,
        pub(crate) body: Vec<u8>,
    }

    impl Seen {
        pub(crate) fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A loopback collector answering each request with the next of `replies` (status line and
    /// extra headers), then 200; returns its URL and what it saw.
    pub(crate) fn collector(replies: Vec<&'static str>) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut replies = replies.into_iter();
            for stream in listener.incoming().take(16) {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = Vec::new();
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let Some((name, value)) = line.trim_end().split_once(':') else {
                        break;
                    };
                    headers.push((name.trim().to_owned(), value.trim().to_owned()));
                }
                let length = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                record.lock().unwrap().push(Seen { headers, body });
                let reply = replies.next().unwrap_or("200 OK");
                let _ = write!(
                    stream,
                    "HTTP/1.1 {reply}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        (url, seen)
    }

    pub(crate) fn exporter(url: &str, gzip: bool, timeout: Duration) -> HttpSpanExporter {
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", HeaderValue::from_static("acme"));
        wxcloudrun_connect::tls::install_default_provider();
        let mut exporter = HttpSpanExporter::new(
            reqwest::blocking::Client::new(),
            url,
            headers,
            gzip,
            timeout,
        );
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name("orders")
                .build(),
        );
        exporter
    }

    pub(crate) fn span(name: &'static str) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(7),
                SpanId::from(9),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: name.into(),
            start_time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            end_time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_001),
            attributes: vec![KeyValue::new("http.route", "/api/users/{id}")],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    /// The export future does its work when first polled (the blocking client), as the batch
    /// processor's `block_on` polls it.
    fn export(exporter: &HttpSpanExporter, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut future = pin!(exporter.export(batch));
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(result) => result,
            Poll::Pending => panic!("the export waited on something it never wakes"),
        }
    }

    pub(crate) fn decoded(seen: &Seen) -> ExportTraceServiceRequest {
        let body = if seen.header("content-encoding") == Some("gzip") {
            let mut plain = Vec::new();
            GzDecoder::new(&seen.body[..])
                .read_to_end(&mut plain)
                .unwrap();
            plain
        } else {
            seen.body.clone()
        };
        ExportTraceServiceRequest::decode(&body[..]).unwrap()
    }

    #[test]
    fn sends_the_spans_with_the_configured_headers() {
        for gzip in [false, true] {
            let (url, seen) = collector(vec![]);
            let exporter = exporter(&url, gzip, Duration::from_secs(5));
            export(&exporter, vec![span("GET /a"), span("GET /b")]).unwrap();
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 1);
            let request = &seen[0];
            assert_eq!(
                request.header("content-type"),
                Some("application/x-protobuf")
            );
            assert_eq!(request.header("x-tenant"), Some("acme"));
            assert_eq!(request.header("user-agent"), Some(USER_AGENT_VALUE));
            assert_eq!(
                request.header("content-encoding"),
                gzip.then_some("gzip"),
                "gzip {gzip}"
            );
            let body = decoded(request);
            let resource = body.resource_spans[0].resource.as_ref().unwrap();
            assert_eq!(resource.attributes[0].key, "service.name");
            let names: Vec<&str> = body.resource_spans[0].scope_spans[0]
                .spans
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            assert_eq!(names, ["GET /a", "GET /b"]);
        }
    }

    #[test]
    fn retries_what_otlp_says_is_retryable_and_sends_the_same_body() {
        let (url, seen) = collector(vec![
            "503 Service Unavailable",
            "429 Too Many Requests\r\nretry-after: 0",
            "502 Bad Gateway",
        ]);
        let exporter = exporter(&url, false, Duration::from_secs(10));
        export(&exporter, vec![span("GET /a")]).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4, "three retries, then the 200");
        assert!(seen.iter().all(|s| s.body == seen[0].body));
    }

    #[test]
    fn gives_up_after_three_retries() {
        let (url, seen) = collector(vec!["504 Gateway Timeout"; 6]);
        let exporter = exporter(&url, false, Duration::from_secs(10));
        let err = export(&exporter, vec![span("GET /a")]).unwrap_err();
        assert_eq!(seen.lock().unwrap().len(), 4);
        assert!(err.to_string().contains("after 4 attempt(s)"), "{err}");
        assert!(err.to_string().contains("504"), "{err}");
    }

    #[test]
    fn does_not_retry_a_rejection() {
        let (url, seen) = collector(vec!["400 Bad Request", "401 Unauthorized"]);
        let exporter = exporter(&url, false, Duration::from_secs(10));
        let err = export(&exporter, vec![span("GET /a")]).unwrap_err();
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert!(err.to_string().contains("400"), "{err}");
    }

    #[test]
    fn the_timeout_bounds_the_retries() {
        // The first retry waits at least 100 ms: a 50 ms budget allows none.
        let (url, seen) = collector(vec!["503 Service Unavailable"; 6]);
        let exporter = exporter(&url, false, Duration::from_millis(50));
        assert!(export(&exporter, vec![span("GET /a")]).is_err());
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn an_unreachable_collector_is_an_error_without_the_url_secrets() {
        // A port nothing listens on (bound, then closed).
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://user:hunter2@127.0.0.1:{port}/v1/traces");
        let exporter = exporter(&url, false, Duration::from_millis(500));
        let err = export(&exporter, vec![span("GET /a")]).unwrap_err();
        assert!(err.to_string().contains("no response"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("3600", now), Some(MAX_RETRY_AFTER));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(12));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(12)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(12));
        assert_eq!(retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-1", now), None);
    }

    /// What `warn_of_partial_success` logs for `reply`.
    fn logged_for(reply: &[u8]) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || warn_of_partial_success(reply));
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_partial_success_is_a_warning() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
        let reply = |rejected_spans, error_message: &str| {
            ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans,
                    error_message: error_message.to_owned(),
                }),
            }
            .encode_to_vec()
        };
        let logged = logged_for(&reply(3, "span too large"));
        assert!(logged.contains("WARN"), "{logged}");
        assert!(logged.contains("rejected_spans=3"), "{logged}");
        assert!(logged.contains("span too large"), "{logged}");
        // A full success, an empty body and a body that is not protobuf say nothing.
        assert_eq!(logged_for(&reply(0, "")), "");
        assert_eq!(logged_for(b""), "");
        assert_eq!(logged_for(b"\xff\xff not protobuf"), "");
    }

    #[test]
    fn after_shutdown_nothing_is_sent() {
        let (url, seen) = collector(vec![]);
        let exporter = exporter(&url, false, Duration::from_secs(5));
        exporter.shutdown().unwrap();
        assert!(matches!(
            export(&exporter, vec![span("GET /a")]),
            Err(OTelSdkError::AlreadyShutdown)
        ));
        assert!(matches!(
            exporter.shutdown(),
            Err(OTelSdkError::AlreadyShutdown)
        ));
        assert!(seen.lock().unwrap().is_empty());
    }
}
