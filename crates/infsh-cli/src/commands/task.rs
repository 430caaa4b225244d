//! `infsh task get|cancel|list`: tasks on a server (remote only).

use std::sync::Arc;

use anyhow::Result;
use infsh_core::TaskStatus;
use serde_json::{json, Value};

use crate::cli::{GlobalArgs, TaskCancelArgs, TaskGetArgs, TaskListArgs};
use crate::exit::{ExitCode, Failure};
use crate::output;
use crate::remote::errors::RemoteError;
use crate::remote::follow::follow;
use crate::remote::interrupt::Interrupt;
use crate::remote::run::{completed_report, describe_app};
use crate::remote::{self, task};
use crate::ui::Ui;

/// Most pages `task list --all` fetches (a guard against a server that never ends).
const MAX_PAGES: usize = 10_000;

/// 404 on a task id is the user's mistake (exit 4), said plainly.
fn task_error(id: &str, err: RemoteError) -> Failure {
    if err.is_not_found() {
        return Failure::new(ExitCode::Input, format!("unknown task \"{id}\""));
    }
    err.into_failure()
}

pub async fn get(args: TaskGetArgs, global: &GlobalArgs, ui: Arc<Ui>) -> Result<()> {
    let remote = remote::connect_server(args.server)?;
    let current = remote
        .task(&args.id)
        .await
        .map_err(|e| task_error(&args.id, e))?;
    if !args.wait {
        output::print_json_or(&current, global.json, || print_task_human(&current));
        return Ok(());
    }
    let function = task::function(&current).unwrap_or("run").to_string();
    let app = task::app(&current).unwrap_or_default();
    let mut interrupt = Interrupt::listen()?;
    let followed = follow(&remote, &args.id, &ui, &function, None, &mut interrupt).await?;
    // The output schema finds File outputs exactly; without it they are found by shape.
    let output_schema = match describe_app(&remote, &app).await {
        Ok(described) => described
            .functions
            .get(&function)
            .and_then(|f| f.output_schema().cloned()),
        Err(_) => None,
    };
    let report = completed_report(
        &remote,
        &followed,
        &app,
        &function,
        output_schema.as_ref(),
        args.output_dir.as_deref(),
    )
    .await?;
    output::print_json_or(&report, global.json, || output::print_run_human(&report));
    Ok(())
}

pub async fn cancel(args: TaskCancelArgs, global: &GlobalArgs, ui: Arc<Ui>) -> Result<()> {
    let remote = remote::connect_server(args.server)?;
    let id = args.id.clone();
    let mut after = match remote.cancel(&id).await {
        Ok(task) => task,
        // 409: the task already ended; the server says how.
        Err(err) if err.status() == Some(409) => {
            return Err(Failure::new(ExitCode::Input, err.detail().unwrap_or_default()).into())
        }
        Err(err) => return Err(task_error(&id, err).into()),
    };
    // Some servers answer 204: fetch the task to report its status.
    if !after.is_object() {
        after = remote.task(&id).await.map_err(|e| task_error(&id, e))?;
    }
    if args.wait && !task::is_terminal(task::status(&after)) {
        let function = task::function(&after).unwrap_or("run").to_string();
        let mut interrupt = Interrupt::listen()?;
        after = follow(&remote, &id, &ui, &function, None, &mut interrupt)
            .await?
            .task;
    }
    output::print_json_or(&after, global.json, || {
        println!("task {id}: {}", task::status_name(task::status(&after)));
    });
    Ok(())
}

pub async fn list(args: TaskListArgs, global: &GlobalArgs) -> Result<()> {
    let status = match args.status.as_deref() {
        Some(raw) => Some(
            raw.parse::<TaskStatus>()
                .map_err(|e| Failure::new(ExitCode::Usage, format!("--status: {e}")))?,
        ),
        None => None,
    };
    let remote = remote::connect_server(args.server)?;
    let mut items = Vec::new();
    let mut cursor = args.cursor.clone();
    let mut pages = 0usize;
    let next = loop {
        let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
        if let Some(app) = &args.app {
            query.push(("app", app.clone()));
        }
        if let Some(status) = status {
            query.push(("status", status.number().to_string()));
        }
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let (page, next) = remote
            .list(&query)
            .await
            .map_err(RemoteError::into_failure)?;
        items.extend(page);
        pages += 1;
        match next {
            Some(next) if args.all && pages < MAX_PAGES => cursor = Some(next),
            other => break other,
        }
    };
    let doc = json!({"items": items, "next_cursor": next});
    output::print_json_or(&doc, global.json, || {
        print_list_human(&items, next.as_deref())
    });
    Ok(())
}

fn print_task_human(task: &Value) {
    let field = |name: &str, value: String| println!("{name:<9} {value}");
    field("task", task::id(task).to_string());
    if let Some(app) = task::app(task) {
        field("app", app);
    }
    if let Some(function) = task::function(task) {
        field("function", function.to_string());
    }
    field("status", task::status_name(task::status(task)).to_string());
    if let Some(created) = task::timestamp(task, "created_at") {
        field("created", created);
    }
    if let Some(updated) = task::timestamp(task, "updated_at") {
        field("updated", updated);
    }
    if let Some(error) = task::error(task) {
        field("error", error);
    }
    let logs = task::log_texts(task);
    if !logs.is_empty() {
        field("logs", format!("{} entries", logs.len()));
    }
    match task.get("output") {
        Some(output) if !output.is_null() => println!(
            "output\n{}",
            serde_json::to_string_pretty(output).expect("JSON values serialize")
        ),
        _ => {}
    }
}

fn print_list_human(items: &[Value], next: Option<&str>) {
    if items.is_empty() {
        eprintln!("no tasks");
    }
    for line in list_lines(items) {
        println!("{line}");
    }
    if let Some(next) = next {
        eprintln!("more: infsh task list --cursor {next}");
    }
}

/// One line per task, in columns as wide as their widest entry (ids,
/// statuses and app names vary in length).
fn list_lines(items: &[Value]) -> Vec<String> {
    let rows: Vec<[String; 4]> = items
        .iter()
        .map(|item| {
            let app = task::app(item).unwrap_or_else(|| "?".into());
            let target = match task::function(item) {
                Some(f) => format!("{app}:{f}"),
                None => app,
            };
            [
                task::id(item).to_string(),
                task::status_name(task::status(item)).to_string(),
                target,
                task::timestamp(item, "created_at").unwrap_or_default(),
            ]
        })
        .collect();
    let width = |column: usize| {
        rows.iter()
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (id_w, status_w, target_w) = (width(0), width(1), width(2));
    rows.iter()
        .map(|[id, status, target, created]| {
            format!("{id:<id_w$}  {status:<status_w$}  {target:<target_w$}  {created}")
                .trim_end()
                .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_columns_line_up() {
        let items = [
            json!({"id": "t1", "status": 10, "app": "tests/multi-fn", "function": "upscale", "created_at": "2026-01-01T00:00:01Z"}),
            json!({"id": "t22", "status": 11, "app": "a/b", "function": "run", "created_at": "2026-01-01T00:00:00Z"}),
        ];
        assert_eq!(
            list_lines(&items),
            [
                "t1   completed  tests/multi-fn:upscale  2026-01-01T00:00:01Z",
                "t22  failed     a/b:run                 2026-01-01T00:00:00Z",
            ]
        );
    }
}
