//! [`WxTelemetry`]: the service the layer wraps around another, and what `call` does, step by
//! step.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::{RequestBody, ResponseBody};
use super::future::{ResponseFuture, log_panic};
use super::inflight::Inflight;
use super::state::LayerState;
use crate::context::{TrustMode, WxContext};

/// A route template (`/api/users/{id}`) for services that don't use axum: insert it into the
/// request's extensions before [`WxTelemetryLayer`](crate::WxTelemetryLayer) sees the request,
/// and it becomes `http_route`.
///
/// With axum, `MatchedPath` is used and nothing needs to be done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute(pub Cow<'static, str>);

/// The service [`WxTelemetryLayer`](crate::WxTelemetryLayer) wraps around another.
#[derive(Clone)]
pub struct WxTelemetry<S> {
    inner: S,
    state: Arc<LayerState>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for WxTelemetry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxTelemetry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> WxTelemetry<S> {
    pub(super) fn new(inner: S, state: Arc<LayerState>) -> Self {
        WxTelemetry { inner, state }
    }
}

/// The route template of a request: an explicit [`HttpRoute`], axum's `MatchedPath`, or the path
/// of a gRPC call (which names the method). Never the raw path of anything else.
fn route_of<B>(req: &Request<B>) -> Option<&str> {
    if let Some(HttpRoute(route)) = req.extensions().get::<HttpRoute>() {
        return Some(route);
    }
    #[cfg(feature = "axum")]
    if let Some(path) = req.extensions().get::<axum::extract::MatchedPath>() {
        return Some(path.as_str());
    }
    let is_grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"));
    is_grpc.then(|| req.uri().path())
}

/// The TCP peer of a request, when the server put it into the extensions (axum's `ConnectInfo`).
fn peer_of<B>(_req: &Request<B>) -> Option<std::net::IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = _req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    None
}

/// Reads the gateway headers of `req` under the layer's trust mode (removing them under
/// [`TrustMode::Strip`]).
fn read_context<B>(state: &LayerState, req: &mut Request<B>) -> WxContext {
    let ctx = WxContext::from_headers(req.headers(), state.trust, peer_of(req))
        .with_service(state.labels.service().clone());
    if state.trust == TrustMode::Strip {
        WxContext::strip_identity_headers(req.headers_mut());
    }
    ctx
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for WxTelemetry<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let state = &self.state;
        let ctx = read_context(state, &mut req);
        let route = route_of(&req);
        let series = state
            .metrics
            .resolve(&state.labels, req.method(), route, &ctx);
        let request_size = series.sizes.request.clone();
        let inflight = Inflight::start(state.clone(), series, &req, &ctx, route);
        req.extensions_mut().insert(ctx);
        let req = req.map(|body| RequestBody::new(body, request_size));
        let inner = self.call_inner(req, &inflight);
        ResponseFuture::new(inner, inflight, self.state.catch_panic)
    }
}

impl<S> WxTelemetry<S> {
    /// Calls the wrapped service inside the request's spans; `None` when it panicked (and the
    /// layer catches panics).
    fn call_inner<R>(&mut self, req: R, inflight: &Inflight) -> Option<S::Future>
    where
        S: Service<R>,
    {
        let _entered = inflight.enter();
        if !self.state.catch_panic {
            return Some(self.inner.call(req));
        }
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => Some(future),
            Err(payload) => {
                log_panic(payload.as_ref());
                None
            }
        }
    }
}
