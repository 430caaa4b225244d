//! The connection limits `serve` enforces (docs/operations.md lists each
//! with its flag, default and what a client sees). They exist because
//! anything that can open a TCP connection to the port could otherwise hold
//! the server's sockets and file descriptors without authenticating
//! (issue 19: slowloris, connection floods, run floods).

use std::num::NonZeroU32;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// Every limit; [`Limits::default`] is what `infsh serve` uses without flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A connection must send a full request head within this long of being
    /// accepted, or of the first byte of its next request.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in flight and nothing sent
    /// is closed after this long.
    pub idle_timeout: Duration,
    /// A request body that delivers no bytes for this long is cut off with
    /// 408 (progress, not total time: a slow but steady upload goes on).
    pub body_timeout: Duration,
    /// Most open connections; beyond it new ones get a 503 and are closed.
    /// None: derived from the file descriptor limit
    /// ([`crate::default_max_connections`]).
    pub max_connections: Option<usize>,
    /// Run submissions per minute per API key (per client address without
    /// keys); None: unlimited.
    pub runs_per_minute: Option<NonZeroU32>,
    /// Most open `GET /tasks/{id}/stream` responses for one task.
    pub streams_per_task: usize,
    /// Most open streams per API key (per client address without keys).
    pub streams_per_client: usize,
    /// Largest JSON request body (runs, file registrations): 413 as soon
    /// as a body passes it, without reading the rest.
    pub max_json_bytes: u64,
    /// Largest file upload (`PUT` to a signed URL), streamed to disk.
    pub max_upload_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: None,
            runs_per_minute: None,
            streams_per_task: 32,
            streams_per_client: 256,
            max_json_bytes: 32 * MIB,
            max_upload_bytes: 10 * 1024 * MIB,
        }
    }
}

/// A request body that stalled for longer than [`Limits::body_timeout`]
/// (the error a timed body fails with; problem.rs answers it 408).
#[derive(Debug, thiserror::Error)]
#[error("no request body bytes arrived for {}s", .0.as_secs_f64())]
pub struct BodyTimedOut(pub Duration);
