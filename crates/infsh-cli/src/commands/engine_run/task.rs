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
use infsh_engine::{Engine, RunRequest};
use infsh_store::{TaskRecord, TaskStatus};

use super::link::{Link, LinkError, Report};
use super::output_files;
use super::sessions::{HeldSessions, LOCAL_TIMEOUT_SECS};

/// Runs the task to its end here and reports it; returns when done.
pub async fn run_claimed(engine: Engine, link: Link, task: TaskRecord, sessions: HeldSessions) {
    let id = task.id.clone();
    let request = match run_request(&task, &sessions) {
        Ok(request) => request,
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
    let mut uploaded = output_files::Uploaded::default();
    while let Some(view) = views.recv().await {
        let record = view.record;
        let terminal = record.status.is_terminal();
        let mut report = Report::default();
        // The API node already shows the task dispatched to us; a local
        // QUEUED would move it back.
        if record.status != sent_status && record.status.number() > TaskStatus::Queued.number() {
            report.status = Some(record.status);
        }
        if record.output.is_some() && record.output != sent_output {
            report.output = record.output.clone();
        }
        if terminal {
            report.error = record.error.clone();
        }
        report.logs = view.logs.get(sent_logs..).unwrap_or_default().to_vec();
        if report.status.is_none() && report.output.is_none() && report.logs.is_empty() {
            continue;
        }
        if let Some(output) = report.output.as_mut() {
            if let Err(error) =
                output_files::upload_outputs(&engine, &link, &mut uploaded, output).await
            {
                // Its output cannot reach a client: the task fails saying why.
                let _ = engine.cancel(&id).await;
                let _ = send(&link, &id, failed(error)).await;
                return;
            }
        }
        match send(&link, &id, report).await {
            Ok(()) => {
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

/// Sends one report, retrying while the API node is unreachable (its
/// lease decides, on the API node, whether a late report still counts).
async fn send(link: &Link, id: &str, report: Report) -> Result<(), LinkError> {
    let mut wait = Duration::from_millis(100);
    loop {
        match link.report(id, &report).await {
            Err(LinkError::Unreachable(e)) => {
                tracing::warn!(task = %id, error = %e, "report not delivered; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}
