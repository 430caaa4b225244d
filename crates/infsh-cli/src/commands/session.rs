//! `infsh session list|get|keepalive|end`: sessions on a server (remote
//! only; a session is opened by `infsh app run --session new`). See
//! docs/sessions.md.

use anyhow::Result;
use serde_json::{json, Value};

use crate::cli::{GlobalArgs, SessionIdArgs, SessionListArgs};
use crate::exit::{ExitCode, Failure};
use crate::output;
use crate::remote::{self, errors::RemoteError};

/// 404 on a session id is the user's mistake (exit 4), in the server's
/// words (which say that sessions do not survive a restart); 410 (ended,
/// expired) too.
fn session_error(err: RemoteError) -> Failure {
    match err.status() {
        Some(404 | 410) => Failure::new(
            ExitCode::Input,
            err.detail().unwrap_or("unknown session").to_string(),
        ),
        _ => err.into_failure(),
    }
}

pub async fn list(args: SessionListArgs, global: &GlobalArgs) -> Result<()> {
    let remote = remote::connect_server(args.server)?;
    let sessions = remote.sessions().await.map_err(RemoteError::into_failure)?;
    let items = sessions.as_array().cloned().unwrap_or_default();
    output::print_json_or(&sessions, global.json, || {
        if items.is_empty() {
            eprintln!("no active sessions");
        }
        for line in list_lines(&items) {
            println!("{line}");
        }
    });
    Ok(())
}

pub async fn get(args: SessionIdArgs, global: &GlobalArgs) -> Result<()> {
    let remote = remote::connect_server(args.server)?;
    let session = remote.session(&args.id).await.map_err(session_error)?;
    output::print_json_or(&session, global.json, || print_session_human(&session));
    Ok(())
}

pub async fn keepalive(args: SessionIdArgs, global: &GlobalArgs) -> Result<()> {
    let remote = remote::connect_server(args.server)?;
    let session = remote
        .keepalive_session(&args.id)
        .await
        .map_err(session_error)?;
    output::print_json_or(&session, global.json, || {
        println!(
            "session {}: expires at {}",
            args.id,
            text(&session, "expires_at")
        );
    });
    Ok(())
}

pub async fn end(args: SessionIdArgs, global: &GlobalArgs) -> Result<()> {
    let remote = remote::connect_server(args.server)?;
    remote.end_session(&args.id).await.map_err(session_error)?;
    let doc = json!({"id": args.id, "status": "ended"});
    output::print_json_or(&doc, global.json, || {
        println!("session {}: ended", args.id);
    });
    Ok(())
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn print_session_human(session: &Value) {
    let field = |name: &str, key: &str| println!("{name:<12} {}", text(session, key));
    field("session", "id");
    field("app", "app_id");
    field("worker", "worker_id");
    field("status", "status");
    if session.get("reason").is_some_and(|r| !r.is_null()) {
        field("reason", "reason");
    }
    field("calls", "call_count");
    field("last call", "last_call_at");
    field("idle timeout", "idle_timeout");
    field("expires", "expires_at");
    field("task", "task_id");
}

/// One line per session, in columns as wide as their widest entry.
fn list_lines(items: &[Value]) -> Vec<String> {
    let rows: Vec<[String; 5]> = items
        .iter()
        .map(|s| {
            [
                text(s, "id"),
                text(s, "app_id"),
                text(s, "worker_id"),
                format!("{} calls", text(s, "call_count")),
                format!("expires {}", text(s, "expires_at")),
            ]
        })
        .collect();
    let width = |column: usize| {
        rows.iter()
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    rows.iter()
        .map(|[id, app, worker, calls, expires]| {
            format!("{id:<w0$}  {app:<w1$}  {worker:<w2$}  {calls:<w3$}  {expires}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_columns_line_up() {
        let items = [
            json!({"id": "sess_1", "app_id": "tests/counter", "worker_id": "tests/counter#0", "call_count": 12, "expires_at": "2026-01-01T00:01:00.000Z"}),
            json!({"id": "sess_22", "app_id": "a/b", "worker_id": null, "call_count": 1, "expires_at": "2026-01-01T00:02:00.000Z"}),
        ];
        assert_eq!(
            list_lines(&items),
            [
                "sess_1   tests/counter  tests/counter#0  12 calls  expires 2026-01-01T00:01:00.000Z",
                "sess_22  a/b            -                1 calls   expires 2026-01-01T00:02:00.000Z",
            ]
        );
    }
}
