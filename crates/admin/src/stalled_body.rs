//! A request body that fails once no data has arrived for the idle timeout, so a client
//! that sends its headers and then stalls mid-body does not hold its connection (and its
//! slot under the connection cap) for ever.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::refusal::Refusal;

/// The error a stalled body ends with; the publish routes answer it with 408.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled for {0:?}")]
pub(crate) struct BodyStalled(pub(crate) Duration);

/// `inner`, failing with [`BodyStalled`] when a frame takes longer than `idle`.
pub(crate) struct StallGuardedBody {
    inner: Body,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl StallGuardedBody {
    pub(crate) fn new(inner: Body, idle: Duration) -> Self {
        StallGuardedBody {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl http_body::Body for StallGuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.deadline.as_mut().reset(Instant::now() + this.idle);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    Refusal::Timeout.count();
                    Poll::Ready(Some(Err(axum::Error::new(BodyStalled(this.idle)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
