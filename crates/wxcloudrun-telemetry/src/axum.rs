//! axum extractors for [`WxContext`].

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::context::WxContext;

/// The rejection of the [`WxContext`] extractor: the layer is not installed on this route.
#[derive(Debug, Clone, Copy)]
pub struct MissingWxContext;

impl IntoResponse for MissingWxContext {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "WxContext is missing: add WxTelemetryLayer to the router (Router::layer)",
        )
            .into_response()
    }
}

impl std::fmt::Display for MissingWxContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WxContext is missing: WxTelemetryLayer is not installed on this route")
    }
}

impl std::error::Error for MissingWxContext {}

/// Always succeeds behind [`WxTelemetryLayer`](crate::WxTelemetryLayer); the context's fields
/// say what the gateway sent.
impl<S: Send + Sync> FromRequestParts<S> for WxContext {
    type Rejection = MissingWxContext;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<WxContext>()
            .cloned()
            .ok_or(MissingWxContext)
    }
}

/// `None` only when the layer is not installed.
impl<S: Send + Sync> OptionalFromRequestParts<S> for WxContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<WxContext>().cloned())
    }
}
