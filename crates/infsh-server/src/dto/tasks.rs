//! Tasks as the client reads them: one task (with its logs, capped head and
//! tail), a page of a listing, one log entry.

use infsh_engine::TaskView;
use infsh_store::{LogEntry, Payload, TaskRecord};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::time::iso8601;

/// A task, as `GET /tasks/{id}` returns it and as every stream line shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TaskDto {
    pub id: String,
    /// 0 UNKNOWN, 1 RECEIVED, 2 QUEUED, 3 DISPATCHED, 4 PREPARING, 5 SERVING,
    /// 6 SETTING_UP, 7 RUNNING, 8 CANCELLING, 9 UPLOADING, 10 COMPLETED,
    /// 11 FAILED, 12 CANCELLED, 13 REJECTED. Terminal: 10-13.
    #[schema(minimum = 0, maximum = 13)]
    pub status: u8,
    /// `namespace/name`.
    pub app: String,
    pub function: String,
    pub input: Value,
    /// The function's output; set on COMPLETED (and while a streaming
    /// function yields). Output files are http URLs. Written as the worker
    /// wrote it, unless it had to be changed (files, secrets, signing).
    #[schema(value_type = Option<Value>)]
    pub output: Option<Payload>,
    /// Why the task FAILED or was REJECTED; a plain string.
    pub error: Option<String>,
    /// The task's logs; omitted in `GET /tasks` listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<Vec<LogDto>>,
    pub session_id: Option<String>,
    pub setup: Value,
    pub metadata: Value,
    pub webhook: Option<String>,
    /// Per-task timeout in seconds, if the run set one.
    pub timeout: Option<f64>,
    /// ISO-8601 UTC.
    pub created_at: String,
    /// ISO-8601 UTC.
    pub updated_at: String,
    /// ISO-8601 UTC: when the run asked to start (its `run_at`); until
    /// then it stays QUEUED. Only for a run that set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// Its runs on remote engines (`infsh engine run`), first first; only
    /// in `GET /tasks/{id}`, and only for a task an engine claimed (or one
    /// another API node took over from a lost one). More than one: an
    /// engine (or node) was lost mid-run and the task ran again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptDto>>,
    /// How sending its `webhook` went; only in `GET /tasks/{id}`, and only
    /// once a task with a webhook ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_delivery: Option<WebhookDeliveryDto>,
}

/// The delivery of a task's webhook (an outbox row: it survives restarts).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WebhookDeliveryDto {
    /// `pending` (retried when due), `delivered` (a 2xx came back) or
    /// `failed` (every attempt failed).
    pub state: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why the last attempt failed (`HTTP 500 Internal Server Error`,
    /// connection refused...); null once delivered.
    pub last_error: Option<String>,
    /// The `webhook-id` header: the same on every attempt.
    pub message_id: String,
    /// ISO-8601 UTC: the last change.
    pub updated_at: String,
}

impl WebhookDeliveryDto {
    pub fn from_record(d: &infsh_store::WebhookDelivery) -> WebhookDeliveryDto {
        WebhookDeliveryDto {
            state: d.state.as_str().to_string(),
            attempts: d.attempts,
            last_error: d.last_error.clone(),
            message_id: d.message_id.clone(),
            updated_at: iso8601(d.updated_at_ms),
        }
    }
}

/// One run of a task on a remote engine.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AttemptDto {
    /// 1 for the first run.
    pub attempt: u32,
    /// The engine's name; `node:<id>` for a run on an API node's own
    /// workers, recorded once a node was lost under it and another took
    /// the task over (docs/deploy.md, "API node lost").
    pub engine: String,
    /// ISO-8601 UTC.
    pub claimed_at: String,
    /// ISO-8601 UTC; null while it runs.
    pub ended_at: Option<String>,
    /// `completed`, `failed`, `cancelled` or `lost`; null while it runs.
    pub outcome: Option<String>,
    /// The engine's worker that ran it: the engine's name, `-`, a slot's
    /// kind and id (`gpu-box-1-gpu-1`), as a run's `workers` names it;
    /// null until the engine dispatched it to a slot (and for an engine
    /// without slots: its CPU apps run unbounded).
    pub worker: Option<String>,
}

impl AttemptDto {
    pub fn from_record(a: &infsh_store::fleet::AttemptRecord) -> AttemptDto {
        AttemptDto {
            attempt: a.attempt,
            engine: a.engine.clone(),
            claimed_at: iso8601(a.claimed_at_ms),
            ended_at: a.ended_at_ms.map(iso8601),
            outcome: a.outcome.clone(),
            worker: a.worker.clone(),
        }
    }
}

/// One log entry of a task (the official `TaskLog` names the type `log_type`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LogDto {
    /// 0 BUILD, 1 RUN, 2 SERVE, 3 SETUP, 4 TASK.
    #[schema(minimum = 0, maximum = 4)]
    pub log_type: u8,
    pub content: String,
    /// ISO-8601 UTC.
    pub created_at: String,
}

/// A page of `GET /tasks`, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskPageDto {
    pub items: Vec<TaskDto>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl TaskDto {
    /// A task without its logs (listings).
    pub fn from_record(r: &TaskRecord) -> TaskDto {
        TaskDto {
            id: r.id.clone(),
            status: r.status as u8,
            app: r.app.clone(),
            function: r.function.clone(),
            input: r.input.clone(),
            output: r.output.clone(),
            error: r.error.clone(),
            logs: None,
            session_id: r.session_id.clone(),
            setup: r.setup.clone(),
            metadata: r.metadata.clone(),
            webhook: r.webhook.clone(),
            timeout: r.timeout_secs,
            created_at: iso8601(r.created_at_ms),
            updated_at: iso8601(r.updated_at_ms),
            run_at: r.run_at_ms.map(iso8601),
            attempts: None,
            webhook_delivery: None,
        }
    }

    /// A task with its logs (get, run, cancel, stream), at most
    /// [`LOG_HEAD`] + 1 + [`LOG_TAIL`] entries (see [`capped_logs`]).
    pub fn from_view(v: &TaskView) -> TaskDto {
        let mut dto = TaskDto::from_record(&v.record);
        dto.logs = Some(capped_logs(&v.logs));
        dto
    }
}

/// Log entries a task answer shows from the start of its logs...
pub const LOG_HEAD: usize = 1000;
/// ...and from the end; the ones between are one marker entry.
pub const LOG_TAIL: usize = 1000;

/// The first [`LOG_HEAD`] and last [`LOG_TAIL`] entries, with one entry
/// `[... K lines dropped ...]` (log type 1, RUN, dated like the first
/// dropped line) standing for the K in between. An app that floods its
/// stdout cannot make every task answer (and every stream snapshot)
/// carry millions of lines.
///
/// The engine already bounds a task's logs the same way (its own marker at
/// index [`LOG_HEAD`]); lines that marker stands for are added to the count.
pub fn capped_logs(logs: &[LogEntry]) -> Vec<LogDto> {
    if logs.len() <= LOG_HEAD + 1 + LOG_TAIL {
        return logs.iter().map(LogDto::from_entry).collect();
    }
    let dropped_before = logs
        .get(LOG_HEAD)
        .and_then(|entry| parse_dropped_marker(&entry.content))
        .unwrap_or(0);
    let dropped = logs.len() - LOG_HEAD - LOG_TAIL + dropped_before.saturating_sub(1);
    let mut out = Vec::with_capacity(LOG_HEAD + 1 + LOG_TAIL);
    out.extend(logs[..LOG_HEAD].iter().map(LogDto::from_entry));
    out.push(LogDto {
        log_type: infsh_store::LogType::Run as u8,
        content: dropped_marker(dropped),
        created_at: iso8601(logs[LOG_HEAD].at_ms),
    });
    out.extend(logs[logs.len() - LOG_TAIL..].iter().map(LogDto::from_entry));
    out
}

/// `[... K lines dropped ...]`.
pub fn dropped_marker(dropped: usize) -> String {
    format!("[... {dropped} lines dropped ...]")
}

/// K of a `[... K lines dropped ...]` marker.
fn parse_dropped_marker(content: &str) -> Option<usize> {
    content
        .strip_prefix("[... ")?
        .strip_suffix(" lines dropped ...]")?
        .parse()
        .ok()
}

impl LogDto {
    pub fn from_entry(e: &LogEntry) -> LogDto {
        LogDto {
            log_type: e.log_type as u8,
            content: e.content.clone(),
            created_at: iso8601(e.at_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infsh_store::{LogType, TaskStatus};
    use serde_json::json;

    fn record() -> TaskRecord {
        TaskRecord {
            id: "t1".into(),
            app: "ns/app".into(),
            function: "run".into(),
            input: json!({"text": "hi"}),
            setup: json!({}),
            status: TaskStatus::Completed,
            output: Some(json!({"echo": "hi"}).into()),
            error: None,
            webhook: None,
            session_id: Some("s1".into()),
            metadata: json!({}),
            timeout_secs: None,
            created_at_ms: 0,
            updated_at_ms: 1000,
            team: None,
            run_at_ms: None,
        }
    }

    #[test]
    fn task_dto_has_the_fields_the_client_reads() {
        let view = TaskView {
            record: record(),
            logs: vec![LogEntry {
                log_type: LogType::Task,
                content: "working".into(),
                at_ms: 500,
            }],
            slot: None,
        };
        let v = serde_json::to_value(TaskDto::from_view(&view)).unwrap();
        assert_eq!(v["status"], json!(10));
        assert!(v["status"].is_u64());
        assert_eq!(v["id"], "t1");
        assert_eq!(v["app"], "ns/app");
        assert_eq!(v["function"], "run");
        assert_eq!(v["output"], json!({"echo": "hi"}));
        assert_eq!(v["error"], Value::Null);
        assert_eq!(v["session_id"], "s1");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["updated_at"], "1970-01-01T00:00:01.000Z");
        assert_eq!(
            v["logs"],
            json!([{"log_type": 4, "content": "working", "created_at": "1970-01-01T00:00:00.500Z"}])
        );
        // Listings leave logs out.
        let listed = serde_json::to_value(TaskDto::from_record(&record())).unwrap();
        assert!(listed.get("logs").is_none());
    }

    #[test]
    fn logs_are_capped_head_and_tail_with_a_marker() {
        let entry = |i: usize| LogEntry {
            log_type: LogType::Task,
            content: format!("line {i}"),
            at_ms: i as i64,
        };
        let few: Vec<LogEntry> = (0..LOG_HEAD + 1 + LOG_TAIL).map(entry).collect();
        assert_eq!(capped_logs(&few).len(), LOG_HEAD + 1 + LOG_TAIL);
        let n = LOG_HEAD + LOG_TAIL + 12_345;
        let many: Vec<LogEntry> = (0..n).map(entry).collect();
        let capped = capped_logs(&many);
        assert_eq!(capped.len(), LOG_HEAD + 1 + LOG_TAIL);
        assert_eq!(capped[0].content, "line 0");
        assert_eq!(
            capped[LOG_HEAD - 1].content,
            format!("line {}", LOG_HEAD - 1)
        );
        assert_eq!(capped[LOG_HEAD].content, "[... 12345 lines dropped ...]");
        assert_eq!(capped[LOG_HEAD].log_type, 1);
        assert_eq!(
            capped[LOG_HEAD + 1].content,
            format!("line {}", n - LOG_TAIL)
        );
        assert_eq!(capped.last().unwrap().content, format!("line {}", n - 1));

        // A live view the engine already capped: its marker's count is kept.
        let mut live: Vec<LogEntry> = (0..LOG_HEAD).map(entry).collect();
        live.push(LogEntry {
            log_type: LogType::Run,
            content: dropped_marker(500),
            at_ms: 0,
        });
        live.extend((0..LOG_TAIL + 10).map(|i| entry(10_000 + i)));
        let capped = capped_logs(&live);
        assert_eq!(capped.len(), LOG_HEAD + 1 + LOG_TAIL);
        assert_eq!(capped[LOG_HEAD].content, "[... 510 lines dropped ...]");
        assert_eq!(capped[LOG_HEAD + 1].content, "line 10010");
    }
}
