//! Client reports: what the Mini Program saw of its calls, joined with what the server knows.
//!
//! With [`client_reports(true)`](crate::WxTelemetryBuilder::client_reports), the layer does two
//! things on every request, and the beacon ([`ClientReportService`]) a third:
//!
//! - **`Server-Timing: app;dur=<ms>`** on every response: the service's own time, from the
//!   request reaching the layer to its response headers. The Mini Program package subtracts it
//!   from what the call took on the phone: the rest is the gateway, the network, a cold start's
//!   wait and the client itself.
//! - **The recent-requests table** ([`recent`]): for each request through the gateway with a
//!   trace id, its route, method and access node, by trace id, for the last
//!   [`RECENT_REQUESTS_CAPACITY`] requests. A report names calls only by trace id; the route is
//!   the one the server recorded, never a path the phone sends.
//! - **The beacon** ([`service`]): reads a report ([`report`]) from a call through the gateway,
//!   within each user's budget ([`limiter`]), and records its calls in the client families.
//!
//! Memory is bounded whatever arrives: both tables are allocated once at their capacity, a
//! report body is read up to [`MAX_CLIENT_REPORT_BYTES`], and every label value is the server's
//! own (capped) or from a closed set.

mod limiter;
mod recent;
mod report;
mod ring;
mod service;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use self::limiter::ReportLimiter;
pub use self::limiter::{CLIENT_REPORT_BURST, CLIENT_REPORT_REFILL, REPORTING_USERS_CAPACITY};
pub use self::recent::RECENT_REQUESTS_CAPACITY;
use self::recent::{Recent, RecentRequests};
pub use self::report::{
    MAX_CLIENT_CALL_DURATION, MAX_CLIENT_REPORT_BYTES, MAX_CLIENT_REPORT_CALLS,
};
use self::report::{Refusal, Report};
pub use self::service::{ClientReportFuture, ClientReportService};
use crate::context::{TrustMode, WxContext};
use crate::labels::{ReportResult, RequestLabels, Vocabulary};
use crate::metrics::{ClientCall, ClientMetrics};
use crate::stack_str::StackStr;

/// Where the Mini Program package sends its reports by default (its `beaconPath` option).
pub const DEFAULT_CLIENT_REPORT_PATH: &str = "/_wxtelemetry/v1/client";

/// `Server-Timing`, the response header that carries the service's own time.
pub(crate) static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// The `Server-Timing` value for a service that took `elapsed`: `app;dur=12.3` (milliseconds,
/// rounded to one decimal). Integer formatting on the stack: a float's costs several times more.
pub(crate) fn server_timing(elapsed: Duration) -> Option<HeaderValue> {
    // At most 1.8e14 tenths (Duration::MAX): a u64, whose formatting is cheaper than a u128.
    let tenths = ((elapsed.as_nanos() + 50_000) / 100_000) as u64;
    let mut text = StackStr::<48>::new();
    write!(text, "app;dur={}.{}", tenths / 10, tenths % 10).ok()?;
    HeaderValue::from_str(text.as_str()).ok()
}

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
    async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
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
fn not_enabled() -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(answer(
        StatusCode::NOT_FOUND,
        "client reports are off: build the layer with client_reports(true)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_has_one_decimal_of_milliseconds() {
        let value = |d: Duration| server_timing(d).unwrap().to_str().unwrap().to_owned();
        assert_eq!(value(Duration::from_micros(12_345)), "app;dur=12.3");
        assert_eq!(value(Duration::from_micros(12_350)), "app;dur=12.4");
        assert_eq!(value(Duration::from_nanos(49_999)), "app;dur=0.0");
        assert_eq!(value(Duration::from_micros(999_960)), "app;dur=1000.0");
        assert_eq!(value(Duration::ZERO), "app;dur=0.0");
        assert_eq!(value(Duration::from_secs(60)), "app;dur=60000.0");
        // Even absurd durations fit the stack buffer.
        assert!(server_timing(Duration::MAX).is_some());
    }

    #[test]
    fn refusals_name_the_limits_they_enforce() {
        assert!(TOO_LARGE_BODY.contains(&MAX_CLIENT_REPORT_BYTES.to_string()));
    }
}
