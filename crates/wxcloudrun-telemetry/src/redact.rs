//! What is never recorded: credential headers, and how personal values print.

use http::HeaderName;

/// What `Debug` output shows in place of a personal value (an OpenID, a UnionID).
pub(crate) const REDACTED: &str = "<redacted>";

/// Whether a header carries a credential that must never be recorded: `authorization`, cookies,
/// `x-cloudbase-*`, and any `*-access-token` (the gateway's `X-WX-CLOUDBASE-ACCESS-TOKEN` and
/// `X-WX-FROM-CLOUDBASE-ACCESS-TOKEN`).
///
/// The layer records no header it does not name, so this is for code that logs headers itself,
/// e.g. with tower-http's `SetSensitiveRequestHeadersLayer` (see [`SENSITIVE_HEADERS`]).
pub fn is_sensitive_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || name.starts_with("x-cloudbase-")
        || name.ends_with("-access-token")
}

/// The fixed-name credential headers of WeChat Cloud Run and CloudBase, for tower-http's
/// `SetSensitiveRequestHeadersLayer`. Prefer [`is_sensitive_header`], which also covers the
/// `x-cloudbase-*` and `*-access-token` families.
pub const SENSITIVE_HEADERS: [HeaderName; 9] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::header::COOKIE,
    http::header::SET_COOKIE,
    HeaderName::from_static("x-wx-cloudbase-access-token"),
    HeaderName::from_static("x-wx-from-cloudbase-access-token"),
    HeaderName::from_static("x-cloudbase-context"),
    HeaderName::from_static("x-cloudbase-credentials"),
    HeaderName::from_static("x-cloudbase-authorization"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_headers_are_recognised() {
        for name in [
            "authorization",
            "cookie",
            "x-wx-cloudbase-access-token",
            "x-wx-from-cloudbase-access-token",
            "x-cloudbase-context",
            "x-cloudbase-sessiontoken",
        ] {
            assert!(
                is_sensitive_header(&HeaderName::from_static(name)),
                "{name}"
            );
        }
        assert!(!is_sensitive_header(&HeaderName::from_static("x-wx-appid")));
        assert!(SENSITIVE_HEADERS.iter().all(is_sensitive_header));
    }
}
