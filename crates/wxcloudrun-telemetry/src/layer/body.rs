//! The bodies of [`WxTelemetry`](super::WxTelemetry): the response body ends the request, the
//! request body counts its own size.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::inflight::Inflight;
use crate::labels::ErrorKind;
use crate::metrics::Histogram;

/// The bytes a frame carries (none for trailers).
fn data_len<D: Buf>(frame: &Frame<D>) -> u64 {
    frame.data_ref().map_or(0, |data| data.remaining() as u64)
}

pin_project! {
    /// The response body of [`WxTelemetry`](super::WxTelemetry): counts the bytes and records
    /// the request when the last frame has been handed over, the body fails, or it is dropped
    /// early.
    pub struct ResponseBody<B> {
        // `None` for the empty body of a caught panic.
        #[pin]
        inner: Option<B>,
        inflight: Option<Inflight>,
    }
}

impl<B> ResponseBody<B> {
    pub(super) fn new(inner: B, inflight: Option<Inflight>) -> Self {
        ResponseBody {
            inner: Some(inner),
            inflight,
        }
    }

    pub(super) fn empty() -> Self {
        ResponseBody {
            inner: None,
            inflight: None,
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(mut body) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let frame = {
            let _entered = this.inflight.as_ref().and_then(Inflight::enter);
            ready!(body.as_mut().poll_frame(cx))
        };
        if let Some(inflight) = this.inflight.as_mut() {
            match &frame {
                Some(Ok(frame)) => {
                    inflight.sent(data_len(frame));
                    // Servers stop polling once the body says it has ended.
                    if body.is_end_stream() {
                        inflight.finish(ErrorKind::None);
                    }
                }
                Some(Err(_)) => inflight.finish(ErrorKind::BodyError),
                None => inflight.finish(ErrorKind::None),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

pin_project! {
    /// The request body as the wrapped service sees it: the original body, with its bytes counted
    /// into `http_server_request_body_size_bytes` when it ends or is dropped.
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        size: RequestSize,
    }
}

impl<B: Body> RequestBody<B> {
    pub(super) fn new(inner: B, histogram: Histogram) -> Self {
        let declared = inner.size_hint().exact().unwrap_or(0);
        RequestBody {
            inner,
            size: RequestSize {
                histogram: Some(histogram),
                read: 0,
                declared,
            },
        }
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody").finish_non_exhaustive()
    }
}

/// Records the request body's size once: at its end, or when the service drops it.
struct RequestSize {
    histogram: Option<Histogram>,
    read: u64,
    /// The exact length the body announced (`Content-Length`), for bodies the service never read.
    declared: u64,
}

impl RequestSize {
    fn record(&mut self) {
        if let Some(histogram) = self.histogram.take() {
            histogram.observe(self.read.max(self.declared));
        }
    }
}

impl Drop for RequestSize {
    fn drop(&mut self) {
        self.record();
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => this.size.read += data_len(frame),
            Some(Err(_)) => {}
            None => this.size.record(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
