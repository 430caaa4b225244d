//! What every handler shares: the engine handle, the key set, the upload
//! signer, stream timing, and the shutdown signal that ends long-lived
//! responses (streams, `wait=true` runs) so graceful shutdown can finish.
//! Everything here is immutable or a cheap clone; no locks.

use std::sync::Arc;
use std::time::Duration;

use infsh_engine::Engine;
use serde_json::Value;
use tokio::sync::watch;

use crate::auth::ApiKeys;
use crate::body_limits::BodyLimits;
use crate::file_urls::FileUrls;
use crate::limit_metrics::LimitMetrics;
use crate::stream_slots::StreamSlots;
use crate::tokens::UploadSigner;

/// [`StreamTiming::delta_window`] by default: 25 lines a second, still
/// smooth text for a reader, and enough tokens of a fast model per line that
/// the ~60-byte envelope is a small part of the bytes (at ~340 tokens/s,
/// ~14 tokens a line: the envelope ~4.5 bytes a token where a 10 ms window
/// left ~18; docs/performance.md, "Token streams"). The first delta of a
/// stream never waits for it, so time to first token does not change.
pub const DEFAULT_DELTA_WINDOW: Duration = Duration::from_millis(40);

/// How often the task stream sends heartbeats and repeats the snapshot
/// (docs/client-wire-notes.md §3.4: heartbeat every 5-15 s, a full snapshot
/// at least every ~20 s, or the client leaves after 30 s).
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    pub heartbeat: Duration,
    pub snapshot: Duration,
    /// A delta client gets at most one delta line per window: text appended
    /// within it goes out together (the first delta goes at once). A line
    /// costs the client's ~60-byte envelope, so a token per line is ~10
    /// times the token's size; status changes and the end never wait.
    pub delta_window: Duration,
}

impl StreamTiming {
    /// The default heartbeat and snapshot intervals with this delta window.
    pub fn with_delta_window(delta_window: Duration) -> Self {
        StreamTiming {
            delta_window,
            ..StreamTiming::default()
        }
    }
}

impl Default for StreamTiming {
    fn default() -> Self {
        StreamTiming {
            heartbeat: Duration::from_secs(5),
            snapshot: Duration::from_secs(15),
            delta_window: DEFAULT_DELTA_WINDOW,
        }
    }
}

/// The state every handler extracts (not to be confused with the engine's
/// `AppState`, an app's lifecycle stage).
#[derive(Clone)]
pub struct ServerState {
    pub engine: Engine,
    /// Also the auth middleware's whole state (auth.rs).
    pub keys: Arc<ApiKeys>,
    pub signer: Arc<UploadSigner>,
    /// Signs and checks file download URLs (file_urls.rs).
    pub file_urls: Arc<FileUrls>,
    pub timing: StreamTiming,
    pub shutdown: watch::Receiver<bool>,
    /// The fixed OpenAPI document that `GET /openapi.json` extends
    /// (`routes::fixed_document`).
    pub openapi: &'static Value,
    /// Send `Server-Timing` on `wait` runs (`ServerConfig::server_timing`).
    pub server_timing: bool,
    /// Open task streams per task and per client (stream_slots.rs).
    pub stream_slots: Arc<StreamSlots>,
    /// The connection limits' counters, for `GET /metrics`.
    pub limit_metrics: Arc<LimitMetrics>,
    /// JSON and upload body limits (body_limits.rs).
    pub body_limits: BodyLimits,
}

impl ServerState {
    /// Resolves once shutdown starts; never, if nobody can signal it
    /// (routers built by [`crate::router`] for tests).
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        loop {
            if *rx.borrow_and_update() {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// A task as answered: its output's file URLs signed afresh (the task
    /// itself keeps them unsigned; file_urls.rs).
    pub fn task_dto(&self, view: &infsh_engine::TaskView) -> crate::dto::TaskDto {
        let mut dto = crate::dto::TaskDto::from_view(view);
        self.sign_output(&mut dto);
        dto
    }

    /// Signs the file URLs in `dto`'s output.
    pub fn sign_output(&self, dto: &mut crate::dto::TaskDto) {
        if let Some(output) = dto.output.as_mut() {
            // A raw output is parsed only when it may name a file to sign.
            if self.file_urls.private() && output.may_contain(self.file_urls.prefix()) {
                self.file_urls
                    .sign_all(output.value_mut(), std::time::SystemTime::now());
            }
        }
    }
}
