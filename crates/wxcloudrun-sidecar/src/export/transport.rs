//! How one backend is reached: an HTTP `POST` or an OTLP/gRPC call, whichever its protocol
//! chose when the exporters started.

use std::time::Duration;

use super::attempt::{Attempt, AttemptFailure};
use super::grpc::GrpcTransport;
use super::http::HttpTransport;
use super::queue::Body;
use crate::metrics::FailureReason;

/// How one backend is reached.
#[derive(Debug)]
pub(crate) enum Transport {
    /// A `POST` of the body (remote write, OTLP/HTTP).
    Http {
        display_url: String,
        http: HttpTransport,
    },
    /// OTLP/gRPC `MetricsService/Export`.
    Grpc {
        display_url: String,
        grpc: GrpcTransport,
    },
}

impl Transport {
    pub(crate) async fn send(&self, body: &Body, timeout: Duration) -> Attempt {
        match (self, body) {
            (Transport::Http { http, .. }, Body::Http(bytes)) => http.send(bytes, timeout).await,
            (Transport::Grpc { grpc, .. }, Body::Grpc(message)) => {
                grpc.send(message, timeout).await
            }
            // Bodies are encoded for their transport in `Exporters::submit`.
            _ => Attempt::Rejected {
                failure: AttemptFailure {
                    reason: FailureReason::Other,
                    status: 0,
                    detail: "request encoded for another transport".to_owned(),
                },
            },
        }
    }

    /// The URL without userinfo, for logs.
    pub(crate) fn url(&self) -> &str {
        match self {
            Transport::Http { display_url, .. } | Transport::Grpc { display_url, .. } => {
                display_url
            }
        }
    }
}
