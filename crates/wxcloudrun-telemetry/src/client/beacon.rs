//! The beacon's work, shared with the layer: the recent-requests table the layer fills, and the
//! reading, checking and recording of a report that [`ClientReportService`](super::ClientReportService)
//! hands over.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use super::limiter::{
    CLIENT_REPORT_BURST, CLIENT_REPORT_REFILL, REPORTING_USERS_CAPACITY, ReportLimiter,
};
use super::recent::{RECENT_REQUESTS_CAPACITY, Recent, RecentRequests};
use super::report::{self, MAX_CLIENT_REPORT_BYTES, Refusal, Report};
use crate::context::{TrustMode, WxContext};
use crate::labels::{ReportResult, RequestLabels, Vocabulary};
use crate::metrics::{ClientCall, ClientMetrics};

/// What the layer and the beacon share when client reports are on.
pub(crate) struct ClientReports {
    labels: Arc<Vocabulary>,
    trust: TrustMode,
    recent: RecentRequests,
    limiter: ReportLimiter,
    metrics: ClientMetrics,
}

impl ClientReports {
    pub(crate) fn new(labels: Arc<Vocabulary>, trust: TrustMode, metrics: ClientMetrics) -> Self {
        ClientReports {
            labels,
            trust,
            recent: RecentRequests::new(RECENT_REQUESTS_CAPACITY),
            limiter: ReportLimiter::new(
                REPORTING_USERS_CAPACITY,
                CLIENT_REPORT_BURST,
                CLIENT_REPORT_REFILL,
            ),
            metrics,
        }
    }

    /// Remembers a request through the gateway by its trace id, for the reports to come.
    pub(crate) fn remember(&self, trace_id: u128, labels: &RequestLabels) {
        self.recent.remember(trace_id, Recent::of(labels));
    }

    /// Answers one beacon call: `204` for a report recorded, else a `4xx` with a short reason.
    pub(super) async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (result, response) = match self.read(req).await {
            Ok(()) => (ReportResult::Accepted, answer(StatusCode::NO_CONTENT, "")),
            Err((refusal, extra)) => {
                let status =
                    StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
                let mut response = answer(status, &refusal.reason);
                if let Some((name, value)) = extra {
                    response.headers_mut().insert(name, value);
                }
                (refusal.result, response)
            }
        };
        self.metrics.report(result);
        response
    }

    /// Checks, reads and records a report; the refusal (and a header to add) otherwise.
    async fn read<B>(&self, req: Request<B>) -> Result<(), (Refusal, Option<Extra>)>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if req.method() != http::Method::POST {
            let allow = (header::ALLOW, HeaderValue::from_static("POST"));
            let refusal = Refusal {
                status: 405,
                ..Refusal::malformed("method not allowed: POST a report")
            };
            return Err((refusal, Some(allow)));
        }
        // Behind the layer the context is there; mounted beside it, read the headers under the
        // same trust mode.
        let ctx = match req.extensions().get::<WxContext>() {
            Some(ctx) => ctx.clone(),
            None => WxContext::from_headers(req.headers(), self.trust, None),
        };
        if !ctx.via_wechat() {
            let refusal = Refusal {
                result: ReportResult::Untrusted,
                status: 403,
                reason: "untrusted: reports are accepted only through the WeChat gateway".into(),
            };
            return Err((refusal, None));
        }
        if let Err(wait) = self.limiter.allow(ctx.user_openid()) {
            let refusal = Refusal {
                result: ReportResult::RateLimited,
                status: 429,
                reason: "rate limited: too many reports from this user".into(),
            };
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let retry = (header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            return Err((refusal, Some(retry)));
        }
        let too_large = || Refusal::too_large(TOO_LARGE_BODY);
        let body = req.into_body();
        // An announced length over the limit is refused before a byte is read.
        if body.size_hint().lower() > MAX_CLIENT_REPORT_BYTES as u64 {
            return Err((too_large(), None));
        }
        let bytes = match Limited::new(body, MAX_CLIENT_REPORT_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.is::<LengthLimitError>() => return Err((too_large(), None)),
            Err(_) => {
                let refusal = Refusal::malformed("malformed report: the body could not be read");
                return Err((refusal, None));
            }
        };
        let report = report::parse(&bytes).map_err(|refusal| (refusal, None))?;
        self.record(&ctx, &report);
        Ok(())
    }

    /// Records every call of an accepted report.
    fn record(&self, ctx: &WxContext, report: &Report) {
        let labels = &*self.labels;
        let appid = labels.client_appid(ctx.appid());
        for call in &report.calls {
            // The route only as the server knows it: a remembered request with this trace id and
            // the same method.
            let known = call
                .trace_id
                .and_then(|id| self.recent.get(id))
                .filter(|recent| call.method.is_none_or(|method| method == recent.method));
            let resolved = ClientCall {
                route: known.map(|recent| recent.route),
                access_node: known.map(|recent| recent.access_node),
                outcome: call.outcome,
                err_code: call.err_code,
                duration: call.duration,
                server: call.server,
            };
            self.metrics.record(labels, appid, &resolved);
        }
        self.metrics.dropped(report.dropped);
    }
}

/// The reason of a body over [`MAX_CLIENT_REPORT_BYTES`].
const TOO_LARGE_BODY: &str = "report too large: at most 16384 bytes";

/// A response header to add to a refusal (`Allow`, `Retry-After`).
type Extra = (HeaderName, HeaderValue);

/// A response with a short plain-text reason (none for `204`).
fn answer(status: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    let body = if reason.is_empty() {
        Bytes::new()
    } else {
        Bytes::from(format!("{reason}\n"))
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if !reason.is_empty() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

/// The answer of a beacon on a layer built without client reports.
pub(super) fn not_enabled() -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(answer(
        StatusCode::NOT_FOUND,
        "client reports are off: build the layer with client_reports(true)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_limits_they_enforce() {
        assert!(TOO_LARGE_BODY.contains(&MAX_CLIENT_REPORT_BYTES.to_string()));
    }
}
