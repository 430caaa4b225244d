//! The two bodies a connection wraps around the router:
//! - [`TimedBody`], the request body, which fails with [`BodyTimedOut`] once
//!   no bytes arrived for the body timeout (progress, not total time; the
//!   clock runs only while a handler waits for bytes). problem.rs turns that
//!   error into a 408, and hyper then closes the connection, whose body was
//!   never finished;
//! - [`TrackedBody`], the response body, which holds the request's
//!   [`RequestGuard`] until it is sent or dropped, so a connection counts as
//!   idle only between responses.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::activity::RequestGuard;
use crate::limit_metrics::{LimitMetrics, Timeout};
use crate::limits::BodyTimedOut;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct TimedBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Bytes came since the sleep was last armed.
    progressed: bool,
    metrics: Arc<LimitMetrics>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, timeout: Duration, metrics: Arc<LimitMetrics>) -> TimedBody<B> {
        TimedBody {
            inner,
            timeout,
            sleep: None,
            progressed: false,
            metrics,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.progressed = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = tokio::time::Instant::now() + this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if std::mem::take(&mut this.progressed) {
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    this.metrics.timed_out(Timeout::Body);
                    return Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response body, ending its request when done.
pub struct TrackedBody {
    inner: axum::body::Body,
    guard: Option<RequestGuard>,
}

impl TrackedBody {
    pub fn new(inner: axum::body::Body, guard: RequestGuard) -> TrackedBody {
        TrackedBody {
            inner,
            guard: Some(guard),
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.guard = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that sends `chunks` with `gap` between them, then stalls.
    fn trickle(chunks: usize, gap: Duration) -> axum::body::Body {
        let s = futures_util::stream::unfold(0, move |i| async move {
            if i >= chunks {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(gap).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), i + 1))
        });
        axum::body::Body::from_stream(s)
    }

    #[tokio::test(start_paused = true)]
    async fn slow_progress_is_fine_a_stall_is_cut() {
        let metrics = Arc::new(LimitMetrics::default());
        // 5 chunks 2 s apart under a 3 s timeout: 10 s in all, never 3 s silent.
        let mut body = TimedBody::new(
            trickle(5, Duration::from_secs(2)),
            Duration::from_secs(3),
            metrics.clone(),
        );
        for _ in 0..5 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"x"));
        }
        let t0 = tokio::time::Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(t0.elapsed(), Duration::from_secs(3));
        assert!(err.downcast_ref::<BodyTimedOut>().is_some());
        assert_eq!(err.to_string(), "no request body bytes arrived for 3s");
        assert!(metrics
            .render()
            .contains("infsh_http_connections_closed_total{reason=\"body_timeout\"} 1"));
    }
}
