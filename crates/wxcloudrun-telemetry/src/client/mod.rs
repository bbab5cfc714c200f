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
//! - **The beacon** ([`service`], [`beacon`]): reads a report ([`report`]) from a call through the gateway,
//!   within each user's budget ([`limiter`]), and records its calls in the client families.
//!
//! Memory is bounded whatever arrives: both tables are allocated once at their capacity, a
//! report body is read up to [`MAX_CLIENT_REPORT_BYTES`], and every label value is the server's
//! own (capped) or from a closed set.

mod beacon;
mod limiter;
mod recent;
mod report;
mod ring;
mod service;

use std::fmt::Write as _;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

pub(crate) use self::beacon::ClientReports;
pub use self::limiter::{CLIENT_REPORT_BURST, CLIENT_REPORT_REFILL, REPORTING_USERS_CAPACITY};
pub use self::recent::RECENT_REQUESTS_CAPACITY;
pub use self::report::{
    MAX_CLIENT_CALL_DURATION, MAX_CLIENT_REPORT_BYTES, MAX_CLIENT_REPORT_CALLS,
};
pub use self::service::{ClientReportFuture, ClientReportService};
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
}
