//! The JSON shapes of the HTTP API: request bodies as the official
//! `inferencesh` client sends them, and the DTOs it reads back
//! (docs/client-wire-notes.md §2, §4, §5). Every type here derives
//! `ToSchema`, so docs/openapi.json is generated from exactly these.
//!
//! Conventions the client relies on:
//! - every 2xx JSON body is the envelope `{"data": <dto>, "messages": []}`
//!   ([`Envelope`]); stream lines are NOT wrapped (see routes/stream.rs);
//! - `status` is a JSON integer (a float would read as UNKNOWN forever);
//! - timestamps are ISO-8601 UTC strings with milliseconds;
//! - request bodies ignore unknown keys (the client forwards the user's dict).

use infsh_engine::{AppDetail, AppReadiness, AppState, AppSummary, StoredFile, TaskView};
use infsh_store::{LogEntry, TaskRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

mod run_body;

pub use run_body::{FunctionRunBody, RunBody, RunOptions};

/// The success envelope of every JSON response but `/stream` lines.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope<T> {
    pub data: T,
    /// Always empty; the client passes it to its optional `on_message` hook.
    pub messages: Vec<Value>,
}

impl<T> Envelope<T> {
    pub fn new(data: T) -> Self {
        Envelope {
            data,
            messages: Vec::new(),
        }
    }
}

/// Concrete envelope types for the OpenAPI document (utoipa names them).
macro_rules! envelope_doc {
    ($name:ident, $inner:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Serialize, ToSchema)]
        #[allow(dead_code)]
        pub struct $name {
            pub data: $inner,
            /// Always empty.
            pub messages: Vec<Value>,
        }
    };
}

envelope_doc!(
    TaskEnvelope,
    TaskDto,
    "`{\"data\": Task, \"messages\": []}`"
);
envelope_doc!(
    TaskPageEnvelope,
    TaskPageDto,
    "`{\"data\": TaskPage, \"messages\": []}`"
);
envelope_doc!(
    FileListEnvelope,
    Vec<FileDto>,
    "`{\"data\": [File], \"messages\": []}`"
);
envelope_doc!(
    FileEnvelope,
    FileDto,
    "`{\"data\": File, \"messages\": []}`"
);
envelope_doc!(
    AppListEnvelope,
    Vec<AppDto>,
    "`{\"data\": [App], \"messages\": []}`"
);
envelope_doc!(
    AppDetailEnvelope,
    AppDetailDto,
    "`{\"data\": AppDetail, \"messages\": []}`"
);
envelope_doc!(
    ReadyEnvelope,
    ReadyDto,
    "`{\"data\": Ready, \"messages\": []}`"
);
envelope_doc!(
    HealthEnvelope,
    HealthDto,
    "`{\"data\": Health, \"messages\": []}`"
);
envelope_doc!(
    SessionEnvelope,
    SessionDto,
    "`{\"data\": Session, \"messages\": []}`"
);

// ---------------------------------------------------------------- requests

/// Body of `POST /files`. The client always sends exactly one file.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateFilesBody {
    pub files: Vec<FileSpec>,
}

/// One file to register. `uri`, `path` and `public` are sent by the client
/// (`""`, `null`, `null`) and ignored.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct FileSpec {
    /// `null` for data URIs and base64 strings; the server makes a name up.
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    /// Byte length the client will upload.
    #[serde(default)]
    pub size: Option<u64>,
}

// ---------------------------------------------------------------- tasks

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
    /// function yields). Output files are http URLs.
    pub output: Option<Value>,
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

// ---------------------------------------------------------------- files

/// A registered file. `upload_url` is present only in `POST /files` answers.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FileDto {
    /// 32 lower-case hex characters; knowing it is what grants `GET /files/{id}`.
    pub id: String,
    /// Where the bytes can be fetched (no auth); pass it as a File input.
    pub uri: String,
    /// Signed URL to `PUT` the raw bytes to (no auth; expires).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    /// ISO-8601 UTC expiry of `upload_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_expires_at: Option<String>,
    pub filename: String,
    pub content_type: String,
    /// Byte size once uploaded (the declared size before).
    pub size: Option<u64>,
    pub uploaded: bool,
    /// ISO-8601 UTC.
    pub created_at: String,
}

impl FileDto {
    pub fn from_record(f: &StoredFile, uri: String) -> FileDto {
        FileDto {
            id: f.id.clone(),
            uri,
            upload_url: None,
            upload_expires_at: None,
            filename: f.filename.clone(),
            content_type: f.content_type.clone(),
            size: f.size,
            uploaded: f.uploaded,
            created_at: iso8601(f.created_at_ms),
        }
    }
}

// ---------------------------------------------------------------- apps

/// A hosted app, for `GET /apps`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AppDto {
    /// `namespace/name`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub description: Option<String>,
    pub default_function: Option<String>,
    /// Function names; `null` until the app's first worker reported them.
    pub functions: Option<Vec<String>>,
    #[schema(schema_with = app_state_schema)]
    pub state: AppState,
}

/// A hosted app with its functions' schemas, for `GET /apps/{namespace}/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AppDetailDto {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub description: Option<String>,
    pub default_function: Option<String>,
    #[schema(schema_with = app_state_schema)]
    pub state: AppState,
    /// `functions_schema.json`: `{fn: {description, input_schema, output_schema}}`.
    pub functions: Value,
    /// JSON Schema of the app's setup config.
    pub setup_schema: Value,
}

/// The engine's [`AppState`] is serialised as is; the document says
/// which strings it takes (derived from [`AppState::ALL`], so the two
/// cannot drift).
fn app_state_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(AppState::ALL.iter().map(|s| s.as_str())))
        .description(Some(
            "Worker state: `idle` (workers start at the first call), `starting`, `ready` or `unhealthy`.",
        ))
        .build()
}

impl AppDto {
    pub fn from_summary(s: &AppSummary) -> AppDto {
        AppDto {
            id: s.id.clone(),
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            default_function: s.default_function.clone(),
            functions: s.functions.clone(),
            state: s.state,
        }
    }
}

impl AppDetailDto {
    pub fn from_detail(d: &AppDetail) -> AppDetailDto {
        let s = &d.summary;
        AppDetailDto {
            id: s.id.clone(),
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            default_function: s.default_function.clone(),
            state: s.state,
            functions: d.functions.clone(),
            setup_schema: d.setup_schema.clone(),
        }
    }
}

// ---------------------------------------------------------------- ops

/// `GET /health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthDto {
    /// Always `ok` while the process serves.
    pub status: String,
}

/// `GET /ready`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadyDto {
    /// `ready`, or `degraded` when some app is `unhealthy`.
    pub status: String,
    pub apps: Vec<AppReadinessDto>,
}

/// Worker state of one app.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppReadinessDto {
    pub id: String,
    #[schema(schema_with = app_state_schema)]
    pub state: AppState,
    pub replicas: usize,
    pub busy: usize,
    pub queued: usize,
    pub last_error: Option<String>,
}

impl AppReadinessDto {
    pub fn from_readiness(r: &AppReadiness) -> AppReadinessDto {
        AppReadinessDto {
            id: r.id.clone(),
            state: r.state,
            replicas: r.replicas,
            busy: r.busy,
            queued: r.queued,
            last_error: r.last_error.clone(),
        }
    }
}

/// `DELETE /sessions/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionDto {
    pub session_id: String,
    /// Always `ended`.
    pub status: String,
}

// ---------------------------------------------------------------- time

/// Unix milliseconds → `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), the store's format.
pub fn iso8601(ms: i64) -> String {
    infsh_store::format_timestamp(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use infsh_store::{LogType, TaskStatus};
    use serde_json::json;

    #[test]
    fn iso8601_formats_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_767_225_599_999), "2025-12-31T23:59:59.999Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
    }

    fn record() -> TaskRecord {
        TaskRecord {
            id: "t1".into(),
            app: "ns/app".into(),
            function: "run".into(),
            input: json!({"text": "hi"}),
            setup: json!({}),
            status: TaskStatus::Completed,
            output: Some(json!({"echo": "hi"})),
            error: None,
            webhook: None,
            session_id: Some("s1".into()),
            metadata: json!({}),
            timeout_secs: None,
            created_at_ms: 0,
            updated_at_ms: 1000,
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

    #[test]
    fn app_state_is_the_engine_enum_by_name() {
        let summary = AppSummary {
            id: "ns/a".into(),
            namespace: "ns".into(),
            name: "a".into(),
            description: None,
            default_function: None,
            functions: None,
            state: AppState::Unhealthy,
        };
        let v = serde_json::to_value(AppDto::from_summary(&summary)).unwrap();
        assert_eq!(v["state"], "unhealthy");
        // The document lists exactly the enum's names for every DTO.
        let doc = crate::routes::fixed_document();
        for dto in ["AppDto", "AppDetailDto", "AppReadinessDto"] {
            assert_eq!(
                doc["components"]["schemas"][dto]["properties"]["state"]["enum"],
                json!(["idle", "starting", "ready", "unhealthy"]),
                "{dto}"
            );
        }
    }

    #[test]
    fn envelope_shape() {
        let v = serde_json::to_value(Envelope::new(json!({"id": "x"}))).unwrap();
        assert_eq!(v, json!({"data": {"id": "x"}, "messages": []}));
    }
}
