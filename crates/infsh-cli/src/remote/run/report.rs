//! The `app run` report of a finished remote task: the same keys as a local
//! run's report, or the task's failure with its traceback.

use std::path::Path;

use infsh_core::TaskStatus;
use serde_json::{json, Value};

use super::download::download_files;
use super::output_files::output_files;
use crate::exit::Failure;
use crate::remote::client::Remote;
use crate::remote::follow::Followed;
use crate::remote::task;

/// The `app run` report of a finished task: the same keys as a local run
/// (`files` entries carry `uri` instead of a local `path`), or the failure.
pub async fn completed_report(
    remote: &Remote,
    followed: &Followed,
    app: &str,
    function: &str,
    output_schema: Option<&Value>,
    output_dir: Option<&Path>,
) -> Result<Value, Failure> {
    let terminal = &followed.task;
    if task::status(terminal) != Some(TaskStatus::Completed) {
        let failure = task::failure(terminal);
        return Err(match &followed.traceback {
            Some(traceback) => failure.with_traceback(traceback.clone()),
            None => failure,
        });
    }
    let output = terminal.get("output").cloned().unwrap_or(Value::Null);
    let files = output_files(output_schema, &output);
    let copied = match output_dir {
        Some(dir) => download_files(remote, &files, dir).await?,
        None => vec![None; files.len()],
    };
    let files_report: Vec<Value> = files
        .iter()
        .zip(&copied)
        .map(|(file, copied)| {
            let mut entry = json!({
                "pointer": file.pointer,
                "path": copied,
                "uri": file.uri,
                "filename": file.filename,
                "content_type": file.content_type,
                "size": file.size,
            });
            if let Some(target) = copied {
                entry["copied_to"] = json!(target);
            }
            entry
        })
        .collect();
    Ok(json!({
        "status": "completed",
        "app": app,
        "function": function,
        "task_id": task::id(terminal),
        "output": output,
        "files": files_report,
        "snapshots": followed.snapshots,
        "timings": {
            "queued_seconds": followed.queued_seconds,
            "run_seconds": followed.run_seconds,
            "total_seconds": followed.total_seconds,
        },
    }))
}
