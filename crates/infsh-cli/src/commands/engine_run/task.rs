//! One claimed task on this engine: submitted to the local `Engine` under
//! the API node's id, then each snapshot of its live view forwarded as a
//! report (status changes, new log lines, the output as streamed, the end).
//! A report the API node refuses with `not_leased` means the task is no
//! longer ours (its lease ran out and it went elsewhere, or it ended
//! there): the local copy is cancelled and nothing more is sent. Output
//! files are uploaded to the API node before the output naming them is
//! reported (output_files.rs).

use std::time::Duration;

use infsh_core::AppRef;
use infsh_engine::{Engine, RunRequest, TaskView};
use infsh_store::{TaskRecord, TaskStatus};
use tokio::sync::mpsc;

use super::link::{Link, LinkError, Report};
use super::output_files;
use super::sessions::{HeldSessions, LOCAL_TIMEOUT_SECS};
use super::versions::{ensure, Fetches};

/// How long a report of a change that does not end the task waits for the
/// changes after it: as long as a local task's logs and snapshots wait to
/// be written to the store (`FLUSH_EVERY` of the engine's runner), so a
/// stream of a remote task is as fresh as one of a local task. Shorter (50
/// ms was tried) and a task a little longer than the hold sends a status
/// report that its end then waits behind, on a loaded machine as slow as
/// the report it saved.
const REPORT_HOLD: Duration = Duration::from_millis(250);

/// The hold once a task streams outputs: a token stream through a fleet
/// must stay live (a report at most every 25 ms, each a whole snapshot),
/// not arrive four times a second.
const STREAM_HOLD: Duration = Duration::from_millis(25);

/// Runs the task to its end here and reports it; returns when done.
pub async fn run_claimed(
    engine: Engine,
    link: Link,
    task: TaskRecord,
    slots: Option<Vec<usize>>,
    sessions: HeldSessions,
    fetches: Fetches,
) {
    let id = task.id.clone();
    // A deployed version it has not cached yet: fetched and built first.
    if let Err(error) = ensure(&engine, &link, &fetches, &task.app).await {
        tracing::warn!(task = %id, "{error}");
        let _ = send(&link, &id, failed(error)).await;
        return;
    }
    let request = match run_request(&task, &sessions) {
        Ok(mut request) => {
            // Pinned to slots: the local placement runs it on one of them.
            request.slots = slots;
            request
        }
        Err(error) => {
            let _ = send(&link, &id, failed(error)).await;
            return;
        }
    };
    let fleet_session = task.session_id.as_deref();
    match engine.submit_with_id(request, id.clone()).await {
        Ok(view) => {
            // Its first call here opened the local session that runs it.
            if let (Some(fleet_id), Some(local)) = (fleet_session, view.record.session_id) {
                if sessions.local(fleet_id).is_none() {
                    sessions.insert(fleet_id, local);
                }
            }
        }
        Err(e) => {
            let error = fleet_session
                .and_then(|f| super::sessions::refusal_text(f, &e))
                .unwrap_or_else(|| e.to_string());
            let _ = send(&link, &id, failed(error)).await;
            return;
        }
    }
    let mut views = match engine.subscribe(&id).await {
        Ok(views) => views,
        Err(e) => {
            let _ = send(&link, &id, failed(e.to_string())).await;
            return;
        }
    };
    let mut sent_status = TaskStatus::Queued;
    let mut sent_output = None;
    let mut sent_logs = 0;
    let mut sent_worker = false;
    let mut uploaded = output_files::Uploaded::default();
    while let Some(mut view) = views.recv().await {
        view = coalesce(&mut views, view).await;
        let record = view.record;
        let terminal = record.status.is_terminal();
        let mut report = Report::default();
        // The API node already shows the task dispatched to us; a local
        // QUEUED would move it back.
        if record.status != sent_status && record.status.number() > TaskStatus::Queued.number() {
            report.status = Some(record.status);
        }
        if record.output.is_some() && record.output != sent_output {
            // The API node's report body holds a parsed value.
            report.output = record.output.as_ref().map(|o| o.to_value().into_owned());
        }
        if terminal {
            report.error = record.error.clone();
        }
        report.logs = view.logs.get(sent_logs..).unwrap_or_default().to_vec();
        // The slot that runs it, once: recorded on the attempt.
        if !sent_worker {
            report.worker = view.slot.as_ref().map(|s| format!("{}-{s}", link.engine));
        }
        if report.status.is_none()
            && report.output.is_none()
            && report.logs.is_empty()
            && report.worker.is_none()
        {
            continue;
        }
        if let Some(output) = report.output.as_mut() {
            if let Err(error) =
                output_files::upload_outputs(&engine, &link, &mut uploaded, output, &id).await
            {
                // Its output cannot reach a client: the task fails saying why.
                let _ = engine.cancel(&id).await;
                let _ = send(&link, &id, failed(error)).await;
                return;
            }
        }
        let names_worker = report.worker.is_some();
        match send(&link, &id, report).await {
            Ok(()) => {
                sent_worker |= names_worker;
                sent_status = record.status;
                sent_output = record.output;
                sent_logs = view.logs.len();
            }
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "the API node refused a report; cancelling the local copy");
                let _ = engine.cancel(&id).await;
                return;
            }
        }
        if terminal {
            return;
        }
    }
}

/// The newest of the views that arrive within [`REPORT_HOLD`] of `view`
/// (at once if one ends the task). A view is a whole snapshot, so the
/// newest says all the ones before it did: a short task is one report,
/// one commit on the API node's store, instead of one per status (each of
/// them a PostgreSQL commit the client's `wait` sat behind). A task's first
/// output goes at once, and a streaming task's later ones within
/// [`STREAM_HOLD`], so time to first token does not pay the hold.
async fn coalesce(views: &mut mpsc::Receiver<TaskView>, mut view: TaskView) -> TaskView {
    let streaming = view.record.output.is_some();
    let hold = tokio::time::sleep(if streaming { STREAM_HOLD } else { REPORT_HOLD });
    tokio::pin!(hold);
    while !view.record.status.is_terminal() {
        tokio::select! {
            next = views.recv() => match next {
                Some(next) => {
                    let first_output = !streaming && next.record.output.is_some();
                    view = next;
                    if first_output {
                        break;
                    }
                }
                None => break,
            },
            () = &mut hold => break,
        }
    }
    // Any sent while the hold ran out.
    while !view.record.status.is_terminal() {
        match views.try_recv() {
            Ok(next) => view = next,
            Err(_) => break,
        }
    }
    view
}

/// The claimed task as a local run. Its webhook stays with the API node,
/// which calls it when our report ends the task. A session's first call
/// here opens a local session (leasing it a replica), its later calls
/// continue it (sessions.rs).
fn run_request(task: &TaskRecord, sessions: &HeldSessions) -> Result<RunRequest, String> {
    let app: AppRef = task
        .app
        .parse()
        .map_err(|e| format!("app \"{}\": {e}", task.app))?;
    let mut request = RunRequest::new(app);
    request.function = Some(task.function.clone());
    request.input = task.input.clone();
    request.setup = Some(task.setup.clone());
    request.metadata = Some(task.metadata.clone());
    request.timeout_secs = task.timeout_secs;
    if let Some(fleet_id) = &task.session_id {
        match sessions.local(fleet_id) {
            Some(local) => request.session = Some(local),
            None => {
                request.session = Some("new".into());
                request.session_timeout = Some(LOCAL_TIMEOUT_SECS);
            }
        }
    }
    Ok(request)
}

fn failed(error: String) -> Report {
    Report {
        status: Some(TaskStatus::Failed),
        error: Some(error),
        ..Report::default()
    }
}

/// Sends one report, retrying while the API node is unreachable or fails
/// on its side (a 5xx: its database restarting, say): its lease decides,
/// on the API node, whether a late report still counts, and once it ran
/// out the answer is a refusal, not a retry.
async fn send(link: &Link, id: &str, report: Report) -> Result<(), LinkError> {
    let mut wait = Duration::from_millis(100);
    loop {
        match link.report(id, &report).await {
            Err(e @ (LinkError::Unreachable(_) | LinkError::Other { status: 500.., .. })) => {
                tracing::warn!(task = %id, error = %e, "report not delivered; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}
