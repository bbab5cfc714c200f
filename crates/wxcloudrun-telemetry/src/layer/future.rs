//! [`ResponseFuture`]: the response of [`WxTelemetry`](super::WxTelemetry), with its status and
//! trace id noted, and a panic turned into a `500`.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::inflight::Inflight;
use crate::labels::ErrorKind;

pin_project! {
    /// The response future of [`WxTelemetry`](super::WxTelemetry).
    pub struct ResponseFuture<F> {
        // `None` when the service panicked in `call`.
        #[pin]
        inner: Option<F>,
        inflight: Option<Inflight>,
        catch_panic: bool,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: Option<F>, inflight: Inflight, catch_panic: bool) -> Self {
        ResponseFuture {
            inner,
            inflight: Some(inflight),
            catch_panic,
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// Logs what the service panicked with.
pub(super) fn log_panic(payload: &(dyn Any + Send)) {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)");
    tracing::error!(panic = message, "the service panicked; answering 500");
}

/// The `500` that stands in for the response of a service that panicked.
fn panic_response<B>(
    payload: Option<Box<dyn Any + Send>>,
    inflight: Option<&mut Inflight>,
) -> Response<ResponseBody<B>> {
    if let Some(payload) = payload {
        log_panic(payload.as_ref());
    }
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    if let Some(inflight) = inflight {
        inflight.responded(&mut response);
        inflight.finish(ErrorKind::Panic);
    }
    response
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = {
            let _entered = this.inflight.as_ref().and_then(Inflight::enter);
            match this.inner.as_mut().as_pin_mut() {
                None => Err(None),
                Some(future) if *this.catch_panic => {
                    catch_unwind(AssertUnwindSafe(|| future.poll(cx))).map_err(Some)
                }
                Some(future) => Ok(future.poll(cx)),
            }
        };
        let mut inflight = this.inflight.take();
        let result = match polled {
            Ok(Poll::Pending) => {
                *this.inflight = inflight;
                return Poll::Pending;
            }
            Ok(Poll::Ready(result)) => result,
            Err(payload) => {
                // A panicked future must not be polled again.
                this.inner.set(None);
                return Poll::Ready(Ok(panic_response(payload, inflight.as_mut())));
            }
        };
        Poll::Ready(match result {
            Ok(mut response) => {
                if let Some(inflight) = inflight.as_mut() {
                    inflight.responded(&mut response);
                    if response.body().is_end_stream() {
                        inflight.finish(ErrorKind::None);
                    }
                }
                Ok(response.map(|body| ResponseBody::new(body, inflight)))
            }
            Err(err) => {
                if let Some(inflight) = inflight.as_mut() {
                    inflight.finish(ErrorKind::ServiceError);
                }
                Err(err)
            }
        })
    }
}
