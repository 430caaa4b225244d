//! What one connection is doing, as far as its timeouts care: bytes read
//! while no request is in flight (a request head on its way), requests in
//! flight (head parsed, response not yet fully sent) and since when it has
//! been idle. [`Activity::expired`] resolves once the connection has been
//! silent or half-way through a head for too long; a request in flight,
//! however long (an NDJSON stream with heartbeats), is never cut by it.
//!
//! hyper's own `header_read_timeout` is not used: it starts whenever hyper
//! waits for a head, idle keep-alive time included, so it cannot give a
//! short header timeout and a longer idle one.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::limit_metrics::Timeout;

/// 0 in `head_started`: no head under way.
const NONE: u64 = 0;

#[derive(Debug)]
pub struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Whether any request head arrived yet (the first one is timed from
    /// the accept, later ones from their first byte).
    served: AtomicBool,
    /// Milliseconds since `born`, plus 1, of the first byte read while idle.
    head_started: AtomicU64,
    /// Milliseconds since `born` at which the last request finished.
    idle_since: AtomicU64,
    changed: Notify,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            head_started: AtomicU64::new(NONE),
            idle_since: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.born + Duration::from_millis(ms)
    }

    /// Bytes came in.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == NONE
        {
            self.head_started
                .store(self.now_ms() + 1, Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// A request head was parsed; the guard ends the request when the
    /// response body is done or dropped.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Relaxed);
        self.changed.notify_one();
        RequestGuard(self.clone())
    }

    /// When the connection is due to be closed, and why; None while a
    /// request is in flight.
    fn deadline(&self, header: Duration, idle: Duration) -> Option<(Instant, Timeout)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        if !self.served.load(Ordering::Relaxed) {
            return Some((self.born + header, Timeout::Header));
        }
        match self.head_started.load(Ordering::Relaxed) {
            NONE => Some((
                self.at(self.idle_since.load(Ordering::Relaxed)) + idle,
                Timeout::Idle,
            )),
            started => Some((self.at(started - 1) + header, Timeout::Header)),
        }
    }

    /// Resolves when the connection should be closed, with the reason.
    pub async fn expired(&self, header: Duration, idle: Duration) -> Timeout {
        loop {
            let changed = self.changed.notified();
            match self.deadline(header, idle) {
                None => changed.await,
                Some((at, why)) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {
                            // Only if nothing moved the deadline meanwhile.
                            if self.deadline(header, idle).map(|(a, _)| a) == Some(at) {
                                return why;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One request in flight.
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.now_ms(), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
        a.changed.notify_one();
    }
}

/// The connection's socket, reporting reads to its [`Activity`].
pub struct WatchedIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> WatchedIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> WatchedIo<T> {
        WatchedIo { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.on_read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_gets_the_header_timeout() {
        let a = Activity::new();
        let t0 = Instant::now();
        assert_eq!(a.expired(HEADER, IDLE).await, Timeout::Header);
        assert_eq!(t0.elapsed(), HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_requests_are_never_cut_then_idle_time_counts() {
        let a = Activity::new();
        let guard = a.begin_request();
        let t0 = Instant::now();
        let waiting = tokio::time::timeout(Duration::from_secs(3600), a.expired(HEADER, IDLE));
        assert!(waiting.await.is_err(), "cut while a request was in flight");
        drop(guard);
        let t1 = Instant::now();
        assert_eq!(a.expired(HEADER, IDLE).await, Timeout::Idle);
        assert_eq!(t1.elapsed(), IDLE);
        assert!(t0.elapsed() > IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_of_a_next_head_start_the_header_timeout() {
        let a = Activity::new();
        drop(a.begin_request());
        tokio::time::sleep(Duration::from_secs(30)).await;
        a.on_read();
        let t1 = Instant::now();
        assert_eq!(a.expired(HEADER, IDLE).await, Timeout::Header);
        assert_eq!(t1.elapsed(), HEADER);
    }
}
