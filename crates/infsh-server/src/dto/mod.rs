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

//!
//! One file per role: the envelope (envelope.rs), run bodies (run_body.rs),
//! tasks, files, apps, the worker layout (engines.rs), ops answers and
//! sessions, and the timestamp format (time.rs).

mod apikeys;
mod apps;
mod engines;
mod envelope;
mod file_records;
mod files;
mod ops;
mod run_body;
mod sessions;
mod tasks;
mod time;
mod versions;

pub use apikeys::{ApiKeyDto, CreateKeyBody};
pub use apps::{AppDetailDto, AppDto};
pub use engines::{AppDrainDto, EngineDto, WorkerDto};
pub use envelope::{
    ApiKeyEnvelope, ApiKeyListEnvelope, AppDetailEnvelope, AppDrainEnvelope, AppListEnvelope,
    EngineEnvelope, EngineListEnvelope, Envelope, FileEnvelope, FileListEnvelope, HealthEnvelope,
    ReadyEnvelope, SessionEnvelope, SessionListEnvelope, TaskEnvelope, TaskPageEnvelope,
    VersionEnvelope, VersionListEnvelope, WorkerListEnvelope,
};
pub use file_records::{
    DeletedFilesDto, DeletedFilesEnvelope, DeletedTaskDto, DeletedTaskEnvelope, FilePageDto,
    FilePageEnvelope, TaskFileDto, TaskFileListEnvelope,
};
pub use files::{CreateFilesBody, FileDto};
pub use ops::{AppReadinessDto, HealthDto, ReadyDto};
pub use run_body::{FunctionRunBody, RunBody, RunOptions};
pub use sessions::AppSessionDto;
pub use tasks::{AttemptDto, TaskDto, TaskPageDto, WebhookDeliveryDto};
pub use time::iso8601;
pub use versions::AppVersionDto;
