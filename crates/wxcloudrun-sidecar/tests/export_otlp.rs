//! OTLP over HTTP (against the programmable backend) and gRPC (against a tonic
//! `MetricsServiceServer`), both on loopback: the mapping of every family kind, start times,
//! resource, headers, partial success, and the gRPC retry rules.

mod support_export;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, metric, number_data_point,
};
use prost::Message;
use support_export::*;
use tokio::time::Instant;
use wxcloudrun_sidecar::export::{ExportConfig, FlushOutcome, OtlpProtocol};
use wxcloudrun_sidecar::metrics::SelfMetrics;
use wxcloudrun_sidecar::model::{Batch, Family, Histogram, Kind, Point, Summary, Value, stale_nan};

const NOW_MS: i64 = 1_700_000_000_000;
const START_MS: i64 = NOW_MS - 60_000;

fn config(endpoint: String, protocol: OtlpProtocol) -> ExportConfig {
    let mut config = with_headers(
        otlp_config(&endpoint, protocol, Duration::from_secs(5)),
        &[("Authorization", "Bearer t0ken"), ("X-Tenant", "wx-shop")],
    );
    if let Some(otlp) = &mut config.otlp {
        otlp.resource = vec![
            ("service.name".to_owned(), "shop".to_owned()),
            ("service.instance.id".to_owned(), "host-1".to_owned()),
        ];
    }
    config
}

fn point(value: Value, start_ms: Option<i64>, pairs: &[(&str, &str)]) -> Point {
    Point {
        labels: labels(pairs).into(),
        start_ms,
        value,
    }
}

fn family(name: &str, kind: Kind, points: Vec<Point>) -> Family {
    Family {
        name: name.into(),
        help: format!("About {name}.").into(),
        unit: "".into(),
        kind,
        points,
    }
}

/// One family of each kind; the gauge has a second, stale, point.
fn mixed_batch() -> Arc<Batch> {
    let number = |name: &str, value| Value::Number {
        name: name.into(),
        value,
        exemplar: None,
    };
    Arc::new(Batch {
        timestamp_ms: NOW_MS,
        families: vec![
            family(
                "http_requests_total",
                Kind::Counter,
                vec![point(
                    number("http_requests_total", 7.0),
                    Some(START_MS),
                    &[("instance", "host-1"), ("route", "/pay")],
                )],
            ),
            family(
                "http_latency_seconds",
                Kind::Histogram,
                vec![point(
                    Value::Histogram(Box::new(Histogram {
                        count: 10.0,
                        sum: Some(2.5),
                        buckets: vec![(0.1, 3.0), (0.5, 7.0), (f64::INFINITY, 10.0)],
                        stale: false,
                        exemplars: Default::default(),
                    })),
                    Some(START_MS),
                    &[("instance", "host-1")],
                )],
            ),
            family(
                "rpc_seconds",
                Kind::Summary,
                vec![point(
                    Value::Summary(Box::new(Summary {
                        count: 20.0,
                        sum: Some(5.0),
                        quantiles: vec![(0.5, 0.2), (0.99, 0.9)],
                        stale: false,
                    })),
                    Some(START_MS),
                    &[("instance", "host-1")],
                )],
            ),
            family(
                "queue_depth",
                Kind::Gauge,
                vec![
                    point(number("queue_depth", 4.0), None, &[("queue", "a")]),
                    point(number("queue_depth", stale_nan()), None, &[("queue", "b")]),
                ],
            ),
        ],
    })
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// Checks that `requests` carry exactly [`mixed_batch`], mapped per protocols.md §5.
fn assert_mixed_batch(requests: &[ExportMetricsServiceRequest]) {
    assert_eq!(requests.len(), 1);
    let resource_metrics = &requests[0].resource_metrics;
    assert_eq!(resource_metrics.len(), 1);
    let resource = resource_metrics[0].resource.as_ref().expect("a resource");
    assert_eq!(
        resource.attributes,
        [
            kv("service.name", "shop"),
            kv("service.instance.id", "host-1")
        ]
    );
    let scope = &resource_metrics[0].scope_metrics[0];
    assert_eq!(scope.scope.as_ref().unwrap().name, "wxcloudrun-sidecar");
    let metrics: Vec<&Metric> = scope.metrics.iter().collect();
    let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "http_requests_total",
            "http_latency_seconds",
            "rpc_seconds",
            "queue_depth"
        ]
    );
    assert_eq!(metrics[0].description, "About http_requests_total.");
    let start = START_MS as u64 * 1_000_000;
    let time = NOW_MS as u64 * 1_000_000;
    let cumulative = AggregationTemporality::Cumulative as i32;

    let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
        panic!("counter is not a Sum: {:?}", metrics[0]);
    };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, cumulative);
    let data = &sum.data_points[0];
    assert_eq!(
        (data.start_time_unix_nano, data.time_unix_nano),
        (start, time)
    );
    assert_eq!(data.value, Some(number_data_point::Value::AsDouble(7.0)));
    assert_eq!(
        data.attributes,
        [kv("instance", "host-1"), kv("route", "/pay")]
    );
    assert_eq!(data.flags, 0);

    let Some(metric::Data::Histogram(histogram)) = &metrics[1].data else {
        panic!("histogram is not a Histogram: {:?}", metrics[1]);
    };
    assert_eq!(histogram.aggregation_temporality, cumulative);
    let data = &histogram.data_points[0];
    assert_eq!(data.explicit_bounds, [0.1, 0.5]);
    assert_eq!(data.bucket_counts, [3, 4, 3]);
    assert_eq!((data.count, data.sum), (10, Some(2.5)));
    assert_eq!(
        (data.start_time_unix_nano, data.time_unix_nano),
        (start, time)
    );

    let Some(metric::Data::Summary(summary)) = &metrics[2].data else {
        panic!("summary is not a Summary: {:?}", metrics[2]);
    };
    let data = &summary.data_points[0];
    assert_eq!((data.count, data.sum), (20, 5.0));
    let quantiles: Vec<(f64, f64)> = data
        .quantile_values
        .iter()
        .map(|q| (q.quantile, q.value))
        .collect();
    assert_eq!(quantiles, [(0.5, 0.2), (0.99, 0.9)]);
    assert_eq!(data.start_time_unix_nano, start);

    let Some(metric::Data::Gauge(gauge)) = &metrics[3].data else {
        panic!("gauge is not a Gauge: {:?}", metrics[3]);
    };
    let [live, stale] = gauge.data_points.as_slice() else {
        panic!("two gauge points expected: {gauge:?}");
    };
    assert_eq!(live.value, Some(number_data_point::Value::AsDouble(4.0)));
    assert_eq!((live.flags, live.start_time_unix_nano), (0, 0));
    assert_eq!(stale.flags, 1, "stale marker → NO_RECORDED_VALUE");
    assert_eq!(stale.attributes, [kv("queue", "b")]);
}

#[tokio::test]
async fn otlp_http_delivers_every_kind_with_resource_and_headers() {
    let backend = Backend::new([]);
    let (addr, _) = backend.serve().await;
    let metrics = SelfMetrics::new();
    let exporters = start(
        &config(
            format!("http://{addr}/v1/metrics"),
            OtlpProtocol::HttpProtobuf,
        ),
        &metrics,
    );
    exporters.submit(mixed_batch());
    let deadline = Instant::now() + Duration::from_secs(10);
    assert_eq!(exporters.flush(deadline).await, FlushOutcome::Success);

    let received = backend.received();
    let requests: Vec<_> = received
        .iter()
        .map(|r| ExportMetricsServiceRequest::decode(r.body.clone()).expect("protobuf"))
        .collect();
    assert_mixed_batch(&requests);
    let headers = &received[0].headers;
    assert_eq!(received[0].path, "/v1/metrics");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["authorization"], "Bearer t0ken");
    assert_eq!(headers["x-tenant"], "wx-shop");
    assert!(
        headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("wxcloudrun-sidecar/")
    );
    let stats = stats(&metrics, "otlp_http", QUEUE);
    assert_eq!((stats.success, stats.retries), (1, 0));
}

#[tokio::test]
async fn otlp_http_partial_success_is_counted_not_resent() {
    let answer = ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess {
            rejected_data_points: 2,
            error_message: "two points too old".to_owned(),
        }),
    };
    let backend = Backend::new([Reply::Body(answer.encode_to_vec())]);
    let (addr, _) = backend.serve().await;
    let metrics = SelfMetrics::new();
    let exporters = start(
        &config(
            format!("http://{addr}/v1/metrics"),
            OtlpProtocol::HttpProtobuf,
        ),
        &metrics,
    );
    exporters.submit(mixed_batch());
    let deadline = Instant::now() + Duration::from_secs(10);
    assert_eq!(exporters.flush(deadline).await, FlushOutcome::Success);

    assert_eq!(backend.received().len(), 1);
    let stats = stats(&metrics, "otlp_http", QUEUE);
    assert_eq!((stats.success, stats.retries, stats.dropped), (1, 0, 0));
    assert_eq!(stats.dropped_rejected, 2);
}

/// How the gRPC receiver answers one call.
#[derive(Clone, Debug)]
enum Answer {
    Ok(ExportMetricsServiceResponse),
    Fail(tonic::Status),
    Hang,
}

#[derive(Debug)]
struct Call {
    at: Instant,
    metadata: tonic::metadata::MetadataMap,
    request: ExportMetricsServiceRequest,
}

#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<VecDeque<Answer>>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.calls.lock().unwrap().push(Call {
            at: Instant::now(),
            metadata: request.metadata().clone(),
            request: request.into_inner(),
        });
        let answer = self.script.lock().unwrap().pop_front();
        match answer.unwrap_or(Answer::Ok(ExportMetricsServiceResponse::default())) {
            Answer::Ok(response) => Ok(tonic::Response::new(response)),
            Answer::Fail(status) => Err(status),
            Answer::Hang => std::future::pending().await,
        }
    }
}

impl Receiver {
    async fn serve(script: impl IntoIterator<Item = Answer>) -> (String, Receiver) {
        let receiver = Receiver {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            ..Receiver::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let service = MetricsServiceServer::new(receiver.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        (format!("http://{addr}"), receiver)
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

#[tokio::test]
async fn otlp_grpc_delivers_every_kind_with_resource_and_metadata() {
    let (endpoint, receiver) = Receiver::serve([]).await;
    let metrics = SelfMetrics::new();
    let exporters = start(&config(endpoint, OtlpProtocol::Grpc), &metrics);
    assert_eq!(exporters.names(), ["otlp_grpc"]);
    exporters.submit(mixed_batch());
    let deadline = Instant::now() + Duration::from_secs(10);
    assert_eq!(exporters.flush(deadline).await, FlushOutcome::Success);

    let calls = receiver.calls.lock().unwrap();
    let requests: Vec<_> = calls.iter().map(|c| c.request.clone()).collect();
    assert_mixed_batch(&requests);
    let metadata = &calls[0].metadata;
    assert_eq!(metadata.get("authorization").unwrap(), "Bearer t0ken");
    assert_eq!(metadata.get("x-tenant").unwrap(), "wx-shop");
    let stats = stats(&metrics, "otlp_grpc", QUEUE);
    assert_eq!((stats.success, stats.retries), (1, 0));
}

#[tokio::test]
async fn otlp_grpc_follows_the_retry_rules() {
    use tonic::Code;
    use tonic_types::{ErrorDetails, StatusExt};
    let partial = ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess {
            rejected_data_points: 3,
            error_message: "some points refused".to_owned(),
        }),
    };
    let (endpoint, receiver) = Receiver::serve([
        // Request 1: retried after UNAVAILABLE.
        Answer::Fail(tonic::Status::unavailable("restarting")),
        Answer::Ok(ExportMetricsServiceResponse::default()),
        // Request 2: RESOURCE_EXHAUSTED without RetryInfo is final.
        Answer::Fail(tonic::Status::resource_exhausted("quota")),
        // Request 3: with RetryInfo it is retried, after the delay asked for.
        Answer::Fail(tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "quota, come back later",
            ErrorDetails::with_retry_info(Some(Duration::from_millis(300))),
        )),
        Answer::Ok(partial),
    ])
    .await;
    let metrics = SelfMetrics::new();
    let exporters = start(&config(endpoint, OtlpProtocol::Grpc), &metrics);
    for n in 1..=3 {
        exporters.submit(numbered(n));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    // Request 2 failed for good during the flush.
    assert_eq!(exporters.flush(deadline).await, FlushOutcome::Error);

    let calls = receiver.calls.lock().unwrap();
    assert_eq!(calls.len(), 5);
    assert!(calls[4].at - calls[3].at >= Duration::from_millis(300));
    let stats = stats(&metrics, "otlp_grpc", QUEUE);
    assert_eq!((stats.success, stats.retries, stats.dropped), (2, 2, 1));
    // Request 2's one sample, and the three points refused in request 3's answer.
    assert_eq!(stats.dropped_rejected, 1 + 3);
}

#[tokio::test]
async fn a_hung_grpc_backend_cannot_hold_the_flush_past_its_deadline() {
    let (endpoint, receiver) = Receiver::serve([Answer::Hang]).await;
    let metrics = SelfMetrics::new();
    let config = with_timeout(
        config(endpoint, OtlpProtocol::Grpc),
        Duration::from_secs(60),
    );
    let exporters = start(&config, &metrics);
    exporters.submit(numbered(1));
    assert!(eventually(Duration::from_secs(10), || receiver.count() == 1).await);

    let deadline = Instant::now() + Duration::from_millis(500);
    assert_eq!(exporters.flush(deadline).await, FlushOutcome::Timeout);
    assert!(Instant::now() <= deadline + Duration::from_secs(1));
    assert_eq!(stats(&metrics, "otlp_grpc", QUEUE).dropped_shutdown, 1);
}
