//! `GET /tasks/{id}/stream`: live task snapshots, exactly as the official
//! client parses them (docs/client-wire-notes.md §3):
//!
//! - NDJSON (`application/x-ndjson`), one bare task DTO per line — never the
//!   `{"data":…}` envelope, which the client would not unwrap;
//! - chunked, each line its own chunk (hyper flushes while the stream waits
//!   for the next event), no compression;
//! - the first line is the current snapshot (even when already terminal);
//! - `{"type":"heartbeat"}` every `StreamTiming::heartbeat` (5 s), and the
//!   last snapshot repeated when none went out for `StreamTiming::snapshot`
//!   (15 s), because the client leaves after 30 s without a snapshot;
//! - the response ends right after the terminal snapshot, which carries
//!   `output` or `error`.
//!
//! With `Accept: text/event-stream` (and no `application/x-ndjson`) the same
//! objects are framed as SSE: `data: <json>\n\n`.
//!
//! A client that merges deltas (the official one, or `?deltas=true`) gets
//! appended `response`/`reasoning` text as delta lines instead of repeated
//! snapshots; the first line and the terminal line stay full snapshots
//! (see stream_delta.rs). Such a client's `UPLOADING` line waits up to one
//! delta window for the terminal state that usually follows within
//! milliseconds, and is not sent when that comes first: the terminal
//! snapshot already repeats the whole output, and the `UPLOADING` one would
//! be one more copy of it (docs/performance.md, "Token streams").
//!
//! An unknown task is a 404 problem. An existing task never gets an error
//! body here (the client does not check the status of this response).
//! The client hanging up after the terminal line just drops the body.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use infsh_engine::TaskView;
use infsh_store::TaskStatus;
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::stream_delta::{wants_deltas, DeltaTracker, Step, StreamQuery};
use crate::client_id::ClientId;
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::Problem;
use crate::state::ServerState;
use crate::stream_slots::StreamSlot;
use crate::teams::{check_task, Caller};

/// Line framing of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Ndjson,
    Sse,
}

impl Framing {
    /// NDJSON unless the client asks for SSE and not for NDJSON.
    pub fn from_accept(headers: &HeaderMap) -> Framing {
        let accept = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",")
            .to_ascii_lowercase();
        if accept.contains("text/event-stream") && !accept.contains("application/x-ndjson") {
            Framing::Sse
        } else {
            Framing::Ndjson
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Framing::Ndjson => "application/x-ndjson",
            Framing::Sse => "text/event-stream",
        }
    }

    /// One JSON object as one frame.
    pub fn frame(self, json: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(json.len() + 8);
        match self {
            Framing::Ndjson => {
                out.extend_from_slice(json);
                out.push(b'\n');
            }
            Framing::Sse => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(json);
                out.extend_from_slice(b"\n\n");
            }
        }
        Bytes::from(out)
    }
}

/// The view put back by coalescing, else the next one from the engine.
async fn next_view(
    peeked: &mut Option<TaskView>,
    rx: &mut mpsc::Receiver<TaskView>,
) -> Option<TaskView> {
    match peeked.take() {
        Some(view) => Some(view),
        None => rx.recv().await,
    }
}

pub const HEARTBEAT: &[u8] = br#"{"type":"heartbeat"}"#;

fn snapshot_json(state: &ServerState, view: &TaskView) -> Vec<u8> {
    serde_json::to_vec(&state.task_dto(view)).unwrap_or_default()
}

/// Everything the body stream owns between two frames.
struct StreamState {
    state: ServerState,
    id: String,
    rx: mpsc::Receiver<TaskView>,
    framing: Framing,
    ticks: Interval,
    /// Held while the body lives (the stream caps).
    _slot: StreamSlot,
    last: Option<TaskView>,
    last_snapshot_at: Instant,
    done: bool,
    /// Some when this client gets delta lines.
    deltas: Option<DeltaTracker>,
    /// A view taken off `rx` while coalescing, to be sent next.
    peeked: Option<TaskView>,
    /// The newest change held back by the delta window, and when the window
    /// ends (StreamTiming::delta_window).
    held: Option<TaskView>,
    next_delta_at: Instant,
}

impl StreamState {
    /// The next frame, or None when the response should end.
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            if let Some(frame) = self.next_event().await {
                return frame;
            }
        }
    }

    /// The next event: Some(frame or end), or None for a change that showed
    /// the client nothing new (a yield repeating its output).
    async fn next_event(&mut self) -> Option<Option<Bytes>> {
        let frame = tokio::select! {
            biased;
            _ = tokio::time::sleep_until(self.next_delta_at), if self.held.is_some() => {
                let view = self.held.take()?;
                return self.change(view).map(Some);
            }
            msg = next_view(&mut self.peeked, &mut self.rx) => match msg {
                Some(view) if self.hold(&view) => {
                    let uploading_held = self
                        .held
                        .as_ref()
                        .is_some_and(|h| h.record.status == TaskStatus::Uploading);
                    // Counted from the first UPLOADING view: later ones
                    // (logs of a long upload) do not push it back.
                    if self.starts_uploading(&view) && !uploading_held {
                        let window_end = Instant::now() + self.state.timing.delta_window;
                        self.next_delta_at = self.next_delta_at.max(window_end);
                    }
                    self.held = Some(view);
                    return None;
                }
                Some(view) => {
                    // A newer view carries everything a held one had.
                    self.held = None;
                    return self.change(view).map(Some);
                }
                None => {
                    // The engine closed the feed without a terminal snapshot
                    // (engine stopping): show the final state if it is one,
                    // else end and let the client reconcile with GET.
                    self.done = true;
                    match self.state.engine.get(&self.id).await {
                        Ok(view) if view.record.status.is_terminal()
                            && self.last.as_ref() != Some(&view) => Some(self.snapshot(view)),
                        _ => None,
                    }
                }
            },
            _ = self.ticks.tick() => {
                if self.last_snapshot_at.elapsed() >= self.state.timing.snapshot {
                    if let Some(view) = self.last.take() {
                        return Some(Some(self.snapshot(view)));
                    }
                }
                Some(self.framing.frame(HEARTBEAT))
            }
            _ = self.state.shutting_down() => {
                self.done = true;
                None
            }
        };
        Some(frame)
    }

    /// A delta line when this client takes them and one can say the change,
    /// else a full snapshot; None when the change shows nothing new.
    fn change(&mut self, mut view: TaskView) -> Option<Bytes> {
        if self.deltas.is_some() {
            view = self.latest_of_same_status(view);
        }
        let step = match (&mut self.deltas, &self.last) {
            (Some(tracker), Some(last)) => tracker.step(last, &view),
            _ => Step::Snapshot,
        };
        match step {
            Step::Snapshot => {
                let catch_up = self.deltas.as_mut().and_then(|t| t.catch_up(&view));
                let snapshot = self.snapshot(view);
                Some(match catch_up {
                    // Both lines in one chunk: the delta must not be left
                    // behind the snapshot that ends the stream.
                    Some(line) => [self.framing.frame(&line), snapshot].concat().into(),
                    None => snapshot,
                })
            }
            Step::Nothing => {
                self.last = Some(view);
                None
            }
            Step::Delta(line) => {
                // A delta counts as news for the client's idle timer too.
                self.last_snapshot_at = Instant::now();
                self.next_delta_at = self.last_snapshot_at + self.state.timing.delta_window;
                self.last = Some(view);
                Some(self.framing.frame(&line))
            }
        }
    }

    /// Whether `view` waits for the delta window: only a delta client's
    /// change within the window that keeps the status it last saw (so a
    /// status change or the end is never late), or its change to
    /// `UPLOADING`, which waits up to a window for the end to replace it.
    fn hold(&self, view: &TaskView) -> bool {
        self.deltas.is_some()
            && (self.starts_uploading(view)
                || Instant::now() < self.next_delta_at
                    && self
                        .last
                        .as_ref()
                        .is_some_and(|last| last.record.status == view.record.status))
    }

    /// A delta client's first view in `UPLOADING` (the output is final; the
    /// end, with the same output, usually follows at once).
    fn starts_uploading(&self, view: &TaskView) -> bool {
        self.deltas.is_some()
            && view.record.status == TaskStatus::Uploading
            && self
                .last
                .as_ref()
                .is_some_and(|last| last.record.status != TaskStatus::Uploading)
    }

    /// The newest of the views already queued behind `view` with its status:
    /// a delta client behind its producer gets one delta with all the text
    /// that piled up instead of one line per yield. A status change is never
    /// skipped.
    fn latest_of_same_status(&mut self, mut view: TaskView) -> TaskView {
        while let Some(next) = self.peeked.take().or_else(|| self.rx.try_recv().ok()) {
            if next.record.status != view.record.status {
                self.peeked = Some(next);
                break;
            }
            view = next;
        }
        view
    }

    fn snapshot(&mut self, view: TaskView) -> Bytes {
        self.done = self.done || view.record.status.is_terminal();
        self.last_snapshot_at = Instant::now();
        let frame = self.framing.frame(&snapshot_json(&self.state, &view));
        self.last = Some(view);
        frame
    }
}

/// Stream a task's snapshots (NDJSON, or SSE on request) until it ends.
#[utoipa::path(
    get, path = "/tasks/{id}/stream", tag = "tasks",
    params(("id" = String, Path, description = "Task id"), StreamQuery),
    responses(
        (status = 200, description = "One bare task DTO per line (no envelope), `{\"type\":\"heartbeat\"}` lines in between; ends after the terminal snapshot. With `Accept: text/event-stream`, the same objects as SSE `data:` frames. With deltas (see `deltas`), appended `response`/`reasoning` text comes as `{\"event\":\"delta\",\"data\":{\"delta\":{\"response\":\"…\"},\"seq\":N}}` lines; the first and the terminal lines stay full snapshots.",
         content(
            (String = "application/x-ndjson"),
            (String = "text/event-stream"),
         )),
        crate::openapi::responses::StreamErrors,
    ),
    security(("bearer" = []))
)]
pub async fn stream_task(
    State(state): State<ServerState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<StreamQuery>,
    client: Option<Extension<ClientId>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    check_task(&state, &caller, &id).await?;
    let rx = state.engine.subscribe(&id).await?;
    let client = client.map(|Extension(c)| c).unwrap_or(ClientId::Unknown);
    let slot = state.stream_slots.acquire(&id, client)?;
    let framing = Framing::from_accept(&headers);
    let deltas = wants_deltas(&query, &headers).then(DeltaTracker::default);
    let heartbeat = state.timing.heartbeat;
    let mut ticks = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let st = StreamState {
        state,
        id,
        rx,
        framing,
        ticks,
        _slot: slot,
        last: None,
        last_snapshot_at: Instant::now(),
        done: false,
        deltas,
        peeked: None,
        held: None,
        next_delta_at: Instant::now(),
    };
    let frames = futures_util::stream::unfold(st, |mut st| async move {
        let frame = st.next_frame().await?;
        Some((Ok::<Bytes, Infallible>(frame), st))
    });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(framing.content_type()),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(frames),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn picks_framing_from_accept() {
        assert_eq!(Framing::from_accept(&HeaderMap::new()), Framing::Ndjson);
        assert_eq!(
            Framing::from_accept(&accept("application/x-ndjson")),
            Framing::Ndjson
        );
        assert_eq!(Framing::from_accept(&accept("*/*")), Framing::Ndjson);
        assert_eq!(
            Framing::from_accept(&accept("text/event-stream")),
            Framing::Sse
        );
        assert_eq!(
            Framing::from_accept(&accept("text/event-stream, application/x-ndjson")),
            Framing::Ndjson
        );
    }

    #[test]
    fn frames() {
        assert_eq!(
            &Framing::Ndjson.frame(HEARTBEAT)[..],
            b"{\"type\":\"heartbeat\"}\n"
        );
        assert_eq!(&Framing::Sse.frame(b"{}")[..], b"data: {}\n\n");
    }
}
