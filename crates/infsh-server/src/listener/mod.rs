//! The accept loop and the connections, in place of `axum::serve`, so that
//! every connection is bounded (limits.rs, docs/operations.md):
//! - at most `max_connections` open at once: one beyond it is answered a
//!   503 problem at once and closed, so accept() never meets EMFILE and the
//!   loop never stalls (axum's loop sleeps a second per failed accept);
//! - each connection is watched by its [`Activity`]: no full request head
//!   within the header timeout, or no request for the idle timeout, and it
//!   is closed (a request in flight is never cut by these);
//! - request bodies are [`TimedBody`]s (the body timeout);
//! - on shutdown: stop accepting, signal `stop` (streams and waits end),
//!   ask every connection to finish its request and close, and wait.

mod activity;
mod body;
pub mod fd_limit;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use self::activity::{Activity, WatchedIo};
use self::body::{TimedBody, TrackedBody};
use crate::limit_metrics::LimitMetrics;
use crate::limits::Limits;
use crate::problem::Problem;

/// What every connection task shares.
struct Shared {
    app: Router,
    limits: Limits,
    metrics: Arc<LimitMetrics>,
    stop: watch::Receiver<bool>,
}

/// Serves `app` on `listener` until `shutdown` resolves, then sends `true`
/// on `stop_tx` and waits for the open connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<LimitMetrics>,
    shutdown: impl Future<Output = ()>,
    stop_tx: watch::Sender<bool>,
) {
    let cap = limits.max_connections.unwrap_or_else(|| {
        fd_limit::default_max_connections(fd_limit::soft_fd_limit().unwrap_or(1024))
    });
    tracing::info!(
        max_connections = cap,
        header_timeout_s = limits.header_timeout.as_secs_f64(),
        idle_timeout_s = limits.idle_timeout.as_secs_f64(),
        body_timeout_s = limits.body_timeout.as_secs_f64(),
        "connection limits"
    );
    let refusal = refusal_response(cap);
    let permits = Arc::new(Semaphore::new(cap.min(Semaphore::MAX_PERMITS)));
    let shared = Arc::new(Shared {
        app,
        limits,
        metrics,
        stop: stop_tx.subscribe(),
    });
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Not expected below the cap (EMFILE from descriptors
                    // held elsewhere): say so and back off a little.
                    tracing::error!(error = %e, "cannot accept a connection; retrying in 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shared.metrics.refused_by_connection_cap();
            // Best effort: the 503 fits the socket buffer of a fresh
            // connection; a client that already sent its request may see a
            // reset instead.
            let _ = stream.try_write(&refusal);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        tracker.spawn(connection(stream, peer, shared.clone(), permit));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    tracker.close();
    tracker.wait().await;
}

/// Errors of one connection that came and went before accept() returned.
fn is_per_connection(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
    )
}

/// The whole HTTP response a connection beyond the cap gets.
fn refusal_response(cap: usize) -> Vec<u8> {
    let problem = Problem::too_many_connections(cap);
    let body = serde_json::to_vec(&problem.body()).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Counts an open connection for as long as it lives.
struct Open(Arc<LimitMetrics>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.closed();
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
) {
    shared.metrics.opened();
    let activity = Activity::new();
    let io = TokioIo::new(WatchedIo::new(stream, activity.clone()));
    let service = {
        let shared = shared.clone();
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let guard = activity.begin_request();
            let shared = shared.clone();
            async move {
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(ConnectInfo(peer));
                let body = TimedBody::new(body, shared.limits.body_timeout, shared.metrics.clone());
                let req = axum::extract::Request::from_parts(parts, axum::body::Body::new(body));
                let resp = match shared.app.clone().oneshot(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(resp.map(|b| TrackedBody::new(b, guard)))
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    // Declared after `conn`, so dropped before it: the slot is free and the
    // gauge is down by the time the client sees the connection close.
    let _slot = (permit, Open(shared.metrics.clone()));
    let mut stop = shared.stop.clone();
    let mut stopping = false;
    let (header, idle) = (shared.limits.header_timeout, shared.limits.idle_timeout);
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            why = activity.expired(header, idle) => {
                shared.metrics.timed_out(why);
                tracing::debug!(%peer, reason = ?why, "closing connection");
                return;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
