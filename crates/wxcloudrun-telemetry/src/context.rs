//! The caller's identity as the WeChat Cloud Run gateway hands it over in `X-WX-*` headers.
//!
//! Parsing never fails: a header that is missing, empty, not UTF-8, longer than
//! [`MAX_HEADER_BYTES`] or repeated is simply `None`. Values are kept as the request's own
//! [`HeaderValue`]s (a reference-counted slice of the read buffer), so building a context does not
//! copy or allocate.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::redact::REDACTED;

/// Longest header value the context accepts; a longer identity value is treated as absent.
///
/// OpenIDs and AppIDs are under 40 bytes; anything this long is not from the gateway.
pub const MAX_HEADER_BYTES: usize = 256;

/// Longest `X-Forwarded-For` list the context reads (a list of hops may legitimately be long).
const MAX_FORWARDED_BYTES: usize = 1024;

pub(crate) mod names {
    use http::HeaderName;

    pub(crate) static OPENID: HeaderName = HeaderName::from_static("x-wx-openid");
    pub(crate) static APPID: HeaderName = HeaderName::from_static("x-wx-appid");
    pub(crate) static UNIONID: HeaderName = HeaderName::from_static("x-wx-unionid");
    pub(crate) static FROM_OPENID: HeaderName = HeaderName::from_static("x-wx-from-openid");
    pub(crate) static FROM_APPID: HeaderName = HeaderName::from_static("x-wx-from-appid");
    pub(crate) static FROM_UNIONID: HeaderName = HeaderName::from_static("x-wx-from-unionid");
    pub(crate) static ENV: HeaderName = HeaderName::from_static("x-wx-env");
    pub(crate) static SOURCE: HeaderName = HeaderName::from_static("x-wx-source");
    pub(crate) static CALL_ID: HeaderName = HeaderName::from_static("x-wx-call-id");
    pub(crate) static LOCAL_DEBUG: HeaderName = HeaderName::from_static("x-wx-local-debug");
}

/// The `X-WX-*` headers that carry identity: stripped from the request in [`TrustMode::Strip`].
const IDENTITY_HEADERS: [&HeaderName; 10] = [
    &names::OPENID,
    &names::APPID,
    &names::UNIONID,
    &names::FROM_OPENID,
    &names::FROM_APPID,
    &names::FROM_UNIONID,
    &names::ENV,
    &names::SOURCE,
    &names::CALL_ID,
    &names::LOCAL_DEBUG,
];

/// When the identity headers (`X-WX-OPENID`, `X-WX-APPID`, …) are believed.
///
/// The platform sets them on the callContainer path, where WeChat has verified the user, but does
/// not document whether it strips client-supplied copies on the public domain. Its own advice is to
/// check for `X-WX-SOURCE`, which is what [`TrustMode::WhenSourcePresent`] does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrustMode {
    /// Identity headers count only when `X-WX-SOURCE` is present (the call came through WeChat).
    #[default]
    WhenSourcePresent,
    /// Identity headers always count (the public domain is off, or a trusted proxy cleans them).
    All,
    /// No `X-WX-*` header counts, and the layer removes them from the request before the service
    /// sees it: for a service that sits behind something other than the WeChat gateway.
    Strip,
}

/// A header value known to be non-empty UTF-8 of at most [`MAX_HEADER_BYTES`] bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
struct WxHeader(HeaderValue);

impl WxHeader {
    fn as_str(&self) -> &str {
        // Checked when the value was accepted; the fallback is unreachable.
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }
}

/// A single-valued header as the one pass over the request's headers finds it.
#[derive(Default)]
enum HeaderSlot<'a> {
    #[default]
    Absent,
    Once(&'a HeaderValue),
    /// Two copies: one of them was not set by the gateway, and we cannot tell which.
    Repeated,
}

impl<'a> HeaderSlot<'a> {
    fn see(&mut self, value: &'a HeaderValue) {
        *self = match self {
            HeaderSlot::Absent => HeaderSlot::Once(value),
            _ => HeaderSlot::Repeated,
        };
    }

    /// The value if it was sent once and is non-empty UTF-8 of at most `max_len` bytes.
    fn accept(&self, max_len: usize) -> Option<WxHeader> {
        let HeaderSlot::Once(value) = self else {
            return None;
        };
        let bytes = value.as_bytes();
        if bytes.is_empty() || bytes.len() > max_len || std::str::from_utf8(bytes).is_err() {
            return None;
        }
        Some(WxHeader((*value).clone()))
    }
}

/// The gateway's headers of one request, found in a single pass over the header map (a dozen
/// separate lookups would hash a dozen names per request).
#[derive(Default)]
struct Found<'a> {
    openid: HeaderSlot<'a>,
    appid: HeaderSlot<'a>,
    unionid: HeaderSlot<'a>,
    from_openid: HeaderSlot<'a>,
    from_appid: HeaderSlot<'a>,
    from_unionid: HeaderSlot<'a>,
    env: HeaderSlot<'a>,
    source: HeaderSlot<'a>,
    call_id: HeaderSlot<'a>,
    local_debug: HeaderSlot<'a>,
    original_forwarded_for: HeaderSlot<'a>,
    forwarded_for_first: Option<&'a HeaderValue>,
    forwarded_for_last: Option<&'a HeaderValue>,
}

impl<'a> Found<'a> {
    fn scan(headers: &'a HeaderMap) -> Self {
        let mut found = Found::default();
        for (name, value) in headers {
            let name = name.as_str();
            if let Some(wx) = name.strip_prefix("x-wx-") {
                let slot = match wx {
                    "openid" => &mut found.openid,
                    "appid" => &mut found.appid,
                    "unionid" => &mut found.unionid,
                    "from-openid" => &mut found.from_openid,
                    "from-appid" => &mut found.from_appid,
                    "from-unionid" => &mut found.from_unionid,
                    "env" => &mut found.env,
                    "source" => &mut found.source,
                    "call-id" => &mut found.call_id,
                    "local-debug" => &mut found.local_debug,
                    _ => continue,
                };
                slot.see(value);
            } else if name == "x-forwarded-for" {
                // A list header: repeated lines are one list, in order.
                found.forwarded_for_first.get_or_insert(value);
                found.forwarded_for_last = Some(value);
            } else if name == "x-original-forwarded-for" {
                found.original_forwarded_for.see(value);
            }
        }
        found
    }
}

/// A forwarded-for line the context keeps: non-empty ASCII of at most [`MAX_FORWARDED_BYTES`].
fn forwarded(value: Option<&HeaderValue>) -> Option<WxHeader> {
    let value = value?;
    let bytes = value.as_bytes();
    (!bytes.is_empty() && bytes.len() <= MAX_FORWARDED_BYTES && bytes.is_ascii())
        .then(|| WxHeader(value.clone()))
}

/// The first element of a comma-separated header list, trimmed. A byte search: the iterator
/// machinery of `split` costs more than these short lists.
fn first_in_list(list: &str) -> &str {
    let end = list.bytes().position(|b| b == b',').unwrap_or(list.len());
    list.get(..end).unwrap_or(list).trim()
}

/// The last element of a comma-separated header list, trimmed.
fn last_in_list(list: &str) -> &str {
    let start = list
        .bytes()
        .rposition(|b| b == b',')
        .map_or(0, |comma| comma + 1);
    list.get(start..).unwrap_or(list).trim()
}

/// Parses one element of a forwarded-for list: `1.2.3.4`, `::1`, `1.2.3.4:5678` or `[::1]:80`.
pub(crate) fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })
}

/// The caller as the WeChat Cloud Run gateway describes it, parsed once per request by
/// [`WxTelemetryLayer`](crate::WxTelemetryLayer) and stored in the request's extensions.
///
/// Every field is optional: calls from the public domain, from cloud debugging or from a service
/// that asked the gateway to exclude credentials carry some or none of them. Under the default
/// [`TrustMode`], identity is only read from calls that came through WeChat.
///
/// `Debug` output redacts the OpenIDs and UnionIDs: they are personal data.
///
/// With the `axum` feature, `WxContext` is an extractor:
///
/// ```
/// use wxcloudrun_telemetry::WxContext;
///
/// async fn whoami(ctx: WxContext) -> String {
///     match ctx.openid() {
///         Some(_) => format!("a WeChat user of {}", ctx.appid().unwrap_or("an unknown app")),
///         None => "anonymous".to_owned(),
///     }
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(whoami));
/// ```
#[derive(Clone, Default)]
pub struct WxContext {
    openid: Option<WxHeader>,
    appid: Option<WxHeader>,
    unionid: Option<WxHeader>,
    from_openid: Option<WxHeader>,
    from_appid: Option<WxHeader>,
    from_unionid: Option<WxHeader>,
    env: Option<WxHeader>,
    source: Option<WxHeader>,
    call_id: Option<WxHeader>,
    local_debug: bool,
    original_forwarded_for: Option<WxHeader>,
    forwarded_for_first: Option<WxHeader>,
    forwarded_for_last: Option<WxHeader>,
    peer: Option<IpAddr>,
    service: Option<Arc<str>>,
}

impl WxContext {
    /// Parses the gateway headers under `trust`. `peer` is the TCP peer, when the server knows it.
    pub fn from_headers(headers: &HeaderMap, trust: TrustMode, peer: Option<IpAddr>) -> Self {
        let found = Found::scan(headers);
        let gateway = |slot: &HeaderSlot<'_>| match trust {
            TrustMode::Strip => None,
            _ => slot.accept(MAX_HEADER_BYTES),
        };
        let source = gateway(&found.source);
        let identity_trusted = match trust {
            TrustMode::All => true,
            TrustMode::WhenSourcePresent => source.is_some(),
            TrustMode::Strip => false,
        };
        let identity = |slot: &HeaderSlot<'_>| {
            identity_trusted
                .then(|| slot.accept(MAX_HEADER_BYTES))
                .flatten()
        };
        // One struct literal: assigning fields of a default value one by one would drop each
        // default first, a branch and a store per field, a third of the cost of this function.
        WxContext {
            openid: identity(&found.openid),
            appid: identity(&found.appid),
            unionid: identity(&found.unionid),
            from_openid: identity(&found.from_openid),
            from_appid: identity(&found.from_appid),
            from_unionid: identity(&found.from_unionid),
            env: identity(&found.env),
            call_id: gateway(&found.call_id),
            local_debug: identity(&found.local_debug).is_some_and(|v| v.as_str() == "1"),
            source,
            original_forwarded_for: found.original_forwarded_for.accept(MAX_FORWARDED_BYTES),
            forwarded_for_first: forwarded(found.forwarded_for_first),
            forwarded_for_last: forwarded(found.forwarded_for_last),
            peer,
            service: None,
        }
    }

    /// Removes every `X-WX-*` identity header from `headers` (used by [`TrustMode::Strip`]).
    pub fn strip_identity_headers(headers: &mut HeaderMap) {
        for name in IDENTITY_HEADERS {
            headers.remove(name);
        }
    }

    pub(crate) fn with_service(mut self, service: Arc<str>) -> Self {
        self.service = Some(service);
        self
    }

    /// `X-WX-OPENID`: the user's OpenID in this Mini Program. Absent under resource reuse.
    pub fn openid(&self) -> Option<&str> {
        self.openid.as_ref().map(WxHeader::as_str)
    }

    /// `X-WX-APPID`: the Mini Program's AppID.
    pub fn appid(&self) -> Option<&str> {
        self.appid.as_ref().map(WxHeader::as_str)
    }

    /// `X-WX-UNIONID`, present only when WeChat's UnionID conditions are met.
    pub fn unionid(&self) -> Option<&str> {
        self.unionid.as_ref().map(WxHeader::as_str)
    }

    /// `X-WX-FROM-OPENID`: under resource reuse (资源复用), the user's OpenID in the calling app.
    pub fn from_openid(&self) -> Option<&str> {
        self.from_openid.as_ref().map(WxHeader::as_str)
    }

    /// `X-WX-FROM-APPID`: under resource reuse, the calling app's AppID.
    pub fn from_appid(&self) -> Option<&str> {
        self.from_appid.as_ref().map(WxHeader::as_str)
    }

    /// `X-WX-FROM-UNIONID`: under resource reuse, the user's UnionID, when available.
    pub fn from_unionid(&self) -> Option<&str> {
        self.from_unionid.as_ref().map(WxHeader::as_str)
    }

    /// `X-WX-ENV`: the cloud environment ID.
    pub fn env(&self) -> Option<&str> {
        self.env.as_ref().map(WxHeader::as_str)
    }

    /// `X-WX-SOURCE` as sent: an opaque, possibly comma-separated list such as `wx_client,scf`.
    pub fn source(&self) -> Option<&str> {
        self.source.as_ref().map(WxHeader::as_str)
    }

    /// The first element of [`source`](Self::source): what triggered the call (`wx_client`, …).
    pub fn primary_source(&self) -> Option<&str> {
        let first = first_in_list(self.source()?);
        (!first.is_empty()).then_some(first)
    }

    /// `X-WX-CALL-ID`, WeChat's correlation id for the call, when the client sent one.
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.as_ref().map(WxHeader::as_str)
    }

    /// Whether the call came through WeChat: the platform's own test is `X-WX-SOURCE` being present.
    pub fn via_wechat(&self) -> bool {
        self.source.is_some()
    }

    /// Whether the call came from the official local-debug proxy (`X-WX-LOCAL-DEBUG: 1`).
    pub fn is_local_debug(&self) -> bool {
        self.local_debug
    }

    /// Whether the call is a resource-reuse call: no own OpenID, but a calling app or user.
    pub fn is_resource_reuse(&self) -> bool {
        self.openid.is_none() && (self.from_openid.is_some() || self.from_appid.is_some())
    }

    /// The user behind the call: [`openid`](Self::openid), else [`from_openid`](Self::from_openid).
    pub fn user_openid(&self) -> Option<&str> {
        self.openid().or_else(|| self.from_openid())
    }

    /// The end user's address: `X-Original-Forwarded-For`, else the first `X-Forwarded-For` hop.
    pub fn client_addr(&self) -> Option<IpAddr> {
        let from_list = |value: &WxHeader| parse_hop(first_in_list(value.as_str()));
        self.original_forwarded_for
            .as_ref()
            .and_then(from_list)
            .or_else(|| self.forwarded_for_first.as_ref().and_then(from_list))
    }

    /// The hop that delivered the request to the container: the last `X-Forwarded-For` hop, else
    /// the TCP peer. The platform names no access node; this address is the closest signal.
    pub fn access_hop(&self) -> Option<IpAddr> {
        self.forwarded_for_last
            .as_ref()
            .and_then(|value| parse_hop(last_in_list(value.as_str())))
            .or(self.peer)
    }

    /// The address of the connection's other end, when the server provided it.
    pub(crate) fn peer(&self) -> Option<IpAddr> {
        self.peer
    }

    /// The last `X-Forwarded-For` hop as sent, trimmed (not validated).
    pub(crate) fn access_hop_text(&self) -> Option<&str> {
        let hop = last_in_list(self.forwarded_for_last.as_ref()?.as_str());
        (!hop.is_empty()).then_some(hop)
    }

    /// The service name the layer was configured with.
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }
}

impl fmt::Debug for WxContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |value: &Option<WxHeader>| value.as_ref().map(|_| REDACTED);
        f.debug_struct("WxContext")
            .field("openid", &redacted(&self.openid))
            .field("appid", &self.appid())
            .field("unionid", &redacted(&self.unionid))
            .field("from_openid", &redacted(&self.from_openid))
            .field("from_appid", &self.from_appid())
            .field("from_unionid", &redacted(&self.from_unionid))
            .field("env", &self.env())
            .field("source", &self.source())
            .field("call_id", &self.call_id())
            .field("local_debug", &self.local_debug)
            .field("client_addr", &self.client_addr())
            .field("access_hop", &self.access_hop())
            .field("service", &self.service())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    const GATEWAY: &[(&str, &[u8])] = &[
        ("X-WX-SOURCE", b"wx_client,scf"),
        ("X-WX-OPENID", b"oUser123"),
        ("X-WX-APPID", b"wx0123456789abcdef"),
        ("X-WX-UNIONID", b"uUnion456"),
        ("X-WX-ENV", b"prod-1abc"),
        ("X-WX-CALL-ID", b"f1d2_1700000000000"),
        ("X-Original-Forwarded-For", b"203.0.113.7"),
        ("X-Forwarded-For", b"198.51.100.1, 10.1.2.3"),
    ];

    #[test]
    fn reads_every_gateway_header() {
        let ctx = WxContext::from_headers(&headers(GATEWAY), TrustMode::default(), None);
        assert_eq!(ctx.openid(), Some("oUser123"));
        assert_eq!(ctx.appid(), Some("wx0123456789abcdef"));
        assert_eq!(ctx.unionid(), Some("uUnion456"));
        assert_eq!(ctx.env(), Some("prod-1abc"));
        assert_eq!(ctx.source(), Some("wx_client,scf"));
        assert_eq!(ctx.primary_source(), Some("wx_client"));
        assert_eq!(ctx.call_id(), Some("f1d2_1700000000000"));
        assert_eq!(ctx.client_addr(), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(ctx.access_hop(), Some("10.1.2.3".parse().unwrap()));
        assert!(ctx.via_wechat());
        assert!(!ctx.is_resource_reuse());
        assert_eq!(ctx.user_openid(), Some("oUser123"));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let ctx = WxContext::from_headers(
            &headers(&[("x-wx-source", b"wx_devtools"), ("x-Wx-OpenId", b"o1")]),
            TrustMode::default(),
            None,
        );
        assert_eq!(ctx.openid(), Some("o1"));
        assert_eq!(ctx.primary_source(), Some("wx_devtools"));
    }

    #[test]
    fn resource_reuse_uses_from_headers() {
        let ctx = WxContext::from_headers(
            &headers(&[
                ("x-wx-source", b"wx_client"),
                ("x-wx-appid", b"wxOwner"),
                ("x-wx-from-openid", b"oCaller"),
                ("x-wx-from-appid", b"wxCaller"),
                ("x-wx-from-unionid", b"uCaller"),
            ]),
            TrustMode::default(),
            None,
        );
        assert!(ctx.is_resource_reuse());
        assert_eq!(ctx.openid(), None);
        assert_eq!(ctx.from_openid(), Some("oCaller"));
        assert_eq!(ctx.from_appid(), Some("wxCaller"));
        assert_eq!(ctx.from_unionid(), Some("uCaller"));
        assert_eq!(ctx.user_openid(), Some("oCaller"));
    }

    #[test]
    fn forged_identity_without_source_is_ignored_by_default() {
        let forged = headers(&[("x-wx-openid", b"oForged"), ("x-wx-appid", b"wxForged")]);
        let ctx = WxContext::from_headers(&forged, TrustMode::WhenSourcePresent, None);
        assert_eq!(ctx.openid(), None);
        assert_eq!(ctx.appid(), None);
        assert!(!ctx.via_wechat());

        let trusting = WxContext::from_headers(&forged, TrustMode::All, None);
        assert_eq!(trusting.openid(), Some("oForged"));
        assert_eq!(trusting.appid(), Some("wxForged"));
    }

    #[test]
    fn strip_mode_reads_nothing_and_removes_the_headers() {
        let mut map = headers(GATEWAY);
        let ctx = WxContext::from_headers(&map, TrustMode::Strip, None);
        assert_eq!(ctx.openid(), None);
        assert_eq!(ctx.source(), None);
        assert_eq!(ctx.call_id(), None);
        // Addresses are still useful behind another proxy.
        assert_eq!(ctx.client_addr(), Some("203.0.113.7".parse().unwrap()));

        WxContext::strip_identity_headers(&mut map);
        assert!(map.keys().all(|name| !name.as_str().starts_with("x-wx-")));
        assert!(map.contains_key("x-forwarded-for"));
    }

    #[test]
    fn missing_headers_are_none() {
        let ctx = WxContext::from_headers(&HeaderMap::new(), TrustMode::All, None);
        assert_eq!(ctx.openid(), None);
        assert_eq!(ctx.primary_source(), None);
        assert_eq!(ctx.client_addr(), None);
        assert_eq!(ctx.access_hop(), None);
        assert!(!ctx.is_resource_reuse());
    }

    #[test]
    fn malformed_values_are_none() {
        let long = vec![b'o'; MAX_HEADER_BYTES + 1];
        let exact = vec![b'a'; MAX_HEADER_BYTES];
        let ctx = WxContext::from_headers(
            &headers(&[
                ("x-wx-source", b"wx_client"),
                ("x-wx-openid", &long),
                ("x-wx-appid", &exact),
                ("x-wx-unionid", b"\xff\xfe"),
                ("x-wx-env", b""),
                ("x-forwarded-for", b"not-an-ip, also bad"),
            ]),
            TrustMode::default(),
            None,
        );
        assert_eq!(ctx.openid(), None, "oversized");
        assert_eq!(
            ctx.appid().map(str::len),
            Some(MAX_HEADER_BYTES),
            "at the cap"
        );
        assert_eq!(ctx.unionid(), None, "not UTF-8");
        assert_eq!(ctx.env(), None, "empty");
        assert_eq!(ctx.client_addr(), None);
        assert_eq!(ctx.access_hop(), None);
    }

    #[test]
    fn non_ascii_utf8_is_kept() {
        let ctx = WxContext::from_headers(
            &headers(&[("x-wx-source", "来源".as_bytes())]),
            TrustMode::default(),
            None,
        );
        assert_eq!(ctx.source(), Some("来源"));
    }

    #[test]
    fn duplicated_identity_headers_are_none() {
        let ctx = WxContext::from_headers(
            &headers(&[
                ("x-wx-source", b"wx_client"),
                ("x-wx-openid", b"oReal"),
                ("x-wx-openid", b"oForged"),
            ]),
            TrustMode::default(),
            None,
        );
        assert_eq!(ctx.openid(), None);
        assert!(ctx.via_wechat());
    }

    #[test]
    fn repeated_forwarded_for_takes_first_and_last_hop() {
        let ctx = WxContext::from_headers(
            &headers(&[
                ("x-forwarded-for", b"198.51.100.9:4431, 10.0.0.1"),
                ("x-forwarded-for", b"[2001:db8::1]:443, 10.9.9.9"),
            ]),
            TrustMode::default(),
            Some("127.0.0.1".parse().unwrap()),
        );
        assert_eq!(ctx.client_addr(), Some("198.51.100.9".parse().unwrap()));
        assert_eq!(ctx.access_hop(), Some("10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn access_hop_falls_back_to_peer() {
        let peer = "10.20.30.40".parse().unwrap();
        let ctx = WxContext::from_headers(&HeaderMap::new(), TrustMode::default(), Some(peer));
        assert_eq!(ctx.access_hop(), Some(peer));
    }

    #[test]
    fn debug_output_redacts_personal_ids() {
        let ctx = WxContext::from_headers(&headers(GATEWAY), TrustMode::default(), None);
        let debug = format!("{ctx:?}");
        assert!(!debug.contains("oUser123"), "{debug}");
        assert!(!debug.contains("uUnion456"), "{debug}");
        assert!(debug.contains("wx0123456789abcdef"), "{debug}");
    }
}
