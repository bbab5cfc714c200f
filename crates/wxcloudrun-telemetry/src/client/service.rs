//! [`ClientReportService`]: the beacon route, as a tower service to mount on any router.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use super::beacon::{ClientReports, not_enabled};

/// The beacon the Mini Program package sends its reports to: mount it at
/// [`DEFAULT_CLIENT_REPORT_PATH`](crate::DEFAULT_CLIENT_REPORT_PATH). Get one from
/// [`WxTelemetryLayer::client_reports`](crate::WxTelemetryLayer::client_reports).
///
/// It answers `204` to a report it recorded, and otherwise a `4xx` with a one-line reason,
/// counted in `wxcloudrun_client_reports_total{result}`:
///
/// | status | `result` | when |
/// |---|---|---|
/// | `204` | `accepted` | the report was recorded |
/// | `403` | `untrusted` | the call did not come through the WeChat gateway (no `X-WX-SOURCE`, or [`TrustMode::Strip`](crate::TrustMode::Strip)) |
/// | `429` | `rate_limited` | this OpenID's budget is spent ([`CLIENT_REPORT_BURST`](crate::CLIENT_REPORT_BURST) at once, one more per [`CLIENT_REPORT_REFILL`](crate::CLIENT_REPORT_REFILL)); `Retry-After` says when to try again |
/// | `413` | `too_large` | a body over [`MAX_CLIENT_REPORT_BYTES`](crate::MAX_CLIENT_REPORT_BYTES) (refused without reading it all) or more than [`MAX_CLIENT_REPORT_CALLS`](crate::MAX_CLIENT_REPORT_CALLS) calls |
/// | `400`, `405` | `malformed` | not a POST, not JSON, not the protocol, `v` other than 1 |
///
/// On a layer built without [`client_reports(true)`](crate::WxTelemetryBuilder::client_reports)
/// every call gets a `404` (the package then stops reporting to this service), counted nowhere.
///
/// Mount it outside the layer, like `/metrics`, so that the beacon's own calls are counted only
/// in `wxcloudrun_client_reports_total`, not as requests of the service; behind the layer it
/// works too (and then appears in the request metrics under its route).
#[derive(Clone)]
pub struct ClientReportService {
    reports: Option<Arc<ClientReports>>,
}

impl std::fmt::Debug for ClientReportService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientReportService")
            .field("enabled", &self.reports.is_some())
            .finish()
    }
}

impl ClientReportService {
    pub(crate) fn new(reports: Option<Arc<ClientReports>>) -> Self {
        ClientReportService { reports }
    }
}

/// What the beacon answers.
type Answer = Result<Response<Full<Bytes>>, Infallible>;

/// The response future of [`ClientReportService`].
pub struct ClientReportFuture {
    inner: Pin<Box<dyn Future<Output = Answer> + Send>>,
}

impl std::fmt::Debug for ClientReportFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientReportFuture").finish_non_exhaustive()
    }
}

impl Future for ClientReportFuture {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B> Service<Request<B>> for ClientReportService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ClientReportFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let reports = self.reports.clone();
        ClientReportFuture {
            inner: Box::pin(async move {
                match reports {
                    Some(reports) => Ok(reports.handle(req).await),
                    None => not_enabled(),
                }
            }),
        }
    }
}
