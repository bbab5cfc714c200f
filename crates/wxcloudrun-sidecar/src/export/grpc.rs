//! OTLP/gRPC `MetricsService/Export`: the channel (TLS through wxcloudrun-connect), metadata
//! from the headers and credentials, and the OTLP status rules (protocols.md §4).
//!
//! Beside [`http`](super::http) rather than under `otlp/`: like the HTTP side, it is reached by
//! every worker through [`Transport`](super::transport::Transport), and it takes its settings as
//! values, so neither the transports nor `otlp/` import each other in a loop.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::Channel;
use wxcloudrun_connect::otlp_env::Compression;

use wxcloudrun_connect::tls::TlsConfig;

use super::attempt::{Attempt, AttemptFailure};
use super::auth::Auth;
use super::error::ExportError;
use super::http::{CONNECT_TIMEOUT, USER_AGENT, header_pair};
use crate::metrics::FailureReason;

/// A gRPC client for one backend.
#[derive(Debug)]
pub(crate) struct GrpcTransport {
    client: MetricsServiceClient<Channel>,
    metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    auth: Auth,
}

impl GrpcTransport {
    /// A channel to `endpoint` (the base URL) sending `headers` as metadata, `auth` as
    /// `authorization`, gzip-compressed requests when `compression` says so.
    pub(crate) fn new(
        endpoint: &str,
        tls: &TlsConfig,
        compression: Compression,
        headers: &[(String, String)],
        auth: &Auth,
    ) -> Result<Self, ExportError> {
        let channel = wxcloudrun_connect::grpc::channel(endpoint, tls, CONNECT_TIMEOUT, USER_AGENT)
            .map_err(|err| ExportError::new("otlp.endpoint", err.to_string()))?;
        let mut client = MetricsServiceClient::new(channel);
        if compression == Compression::Gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let mut metadata = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            header_pair(name, value).map_err(|reason| ExportError::new("otlp.headers", reason))?;
            let key = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes());
            let value = AsciiMetadataValue::try_from(value.as_str());
            match (key, value) {
                (Ok(key), Ok(value)) => metadata.push((key, value)),
                _ => {
                    return Err(ExportError::new(
                        "otlp.headers",
                        format!("{name:?} cannot be sent as gRPC metadata"),
                    ));
                }
            }
        }
        Ok(GrpcTransport {
            client,
            metadata,
            auth: auth.clone(),
        })
    }

    pub(crate) async fn send(
        &self,
        message: &Arc<ExportMetricsServiceRequest>,
        timeout: Duration,
    ) -> Attempt {
        let mut request = tonic::Request::new(ExportMetricsServiceRequest::clone(message));
        for (key, value) in &self.metadata {
            request.metadata_mut().append(key.clone(), value.clone());
        }
        if let Some(value) = self
            .auth
            .header_value()
            .and_then(|v| AsciiMetadataValue::try_from(v.as_bytes()).ok())
        {
            request.metadata_mut().insert("authorization", value);
        }
        request.set_timeout(timeout);
        match self.client.clone().export(request).await {
            Ok(response) => Attempt::Delivered {
                rejected: response
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| u64::try_from(p.rejected_data_points).unwrap_or(0)),
            },
            Err(status) => attempt_of(&status),
        }
    }
}

/// The OTLP/gRPC retry rules.
pub(crate) fn attempt_of(status: &tonic::Status) -> Attempt {
    use tonic::Code;
    use tonic_types::StatusExt;
    let hint = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    let reason = match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => FailureReason::Auth,
        Code::DeadlineExceeded => FailureReason::Timeout,
        // A transport failure: TLS, refused, reset — the cause chain says which.
        Code::Unavailable | Code::Unknown => FailureReason::of_error(status),
        _ => FailureReason::Other,
    };
    let failure = AttemptFailure {
        reason,
        status: 0,
        detail: format!("gRPC {:?}: {}", status.code(), status.message()),
    };
    match status.code() {
        Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => Attempt::Retry {
            after: hint,
            failure,
        },
        // Only a server that says when to come back is worth retrying when it is out of quota.
        Code::ResourceExhausted if hint.is_some() => Attempt::Retry {
            after: hint,
            failure,
        },
        _ => Attempt::Rejected { failure },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_follow_the_otlp_rules() {
        use tonic::Code;
        use tonic_types::{ErrorDetails, StatusExt};
        let retried = |status: tonic::Status| matches!(attempt_of(&status), Attempt::Retry { .. });
        for code in [
            Code::Unavailable,
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert!(retried(tonic::Status::new(code, "x")), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Internal,
            Code::ResourceExhausted,
        ] {
            assert!(!retried(tonic::Status::new(code, "x")), "{code:?}");
        }
        let Attempt::Rejected { failure } =
            attempt_of(&tonic::Status::new(Code::Unauthenticated, "bad token"))
        else {
            panic!("UNAUTHENTICATED is final");
        };
        assert_eq!(failure.reason, FailureReason::Auth);
        let with_hint = tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(2))),
        );
        let Attempt::Retry { after, failure } = attempt_of(&with_hint) else {
            panic!("RESOURCE_EXHAUSTED with RetryInfo is retried");
        };
        assert_eq!(after, Some(Duration::from_secs(2)));
        assert_eq!(failure.detail, "gRPC ResourceExhausted: slow down");
    }
}
