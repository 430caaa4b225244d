//! The HTTP side of `infsh engine run`: the engine-link calls of an
//! API node (docs/http-api.md, "Engine link"), authenticated by the engine
//! key. Errors are split the way the loop acts on them: unreachable (retry
//! with backoff), refused key (exit), unknown engine (register again), a
//! task no longer leased (drop it), anything else.

use std::time::Duration;

use infsh_engine::RemoteRegistration;
use infsh_store::fleet::EngineSession;
use infsh_store::{LogEntry, TaskRecord, TaskStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One API node, as an engine talks to it.
#[derive(Clone)]
pub struct Link {
    http: reqwest::Client,
    base: String,
    key: String,
    pub engine: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot reach the API node: {0}")]
    Unreachable(String),
    /// 401/403: the engine key is wrong; retrying will not help.
    #[error("the API node refused the engine key ({status}): {detail}")]
    Refused { status: u16, detail: String },
    /// The API node forgot this engine (its store was reset): register again.
    #[error("the API node does not know this engine: {0}")]
    UnknownEngine(String),
    /// 409 `not_leased` (or 404 task): the task is no longer this engine's.
    #[error("task no longer leased to this engine: {0}")]
    NotLeased(String),
    #[error("the API node answered {status}: {detail}")]
    Other { status: u16, detail: String },
}

/// A claim's or heartbeat's answer (see `routes/engine_link.rs`).
#[derive(Debug, Deserialize)]
pub struct ClaimAnswer {
    #[serde(default)]
    pub tasks: Vec<Claimed>,
    #[serde(default)]
    pub cancel: Vec<String>,
    #[serde(default)]
    pub lost: Vec<String>,
    /// Sessions over on the API node: end them here.
    #[serde(default)]
    pub end_sessions: Vec<String>,
    /// The current version of each app this engine has versions of: the
    /// others retire here (their idle replicas stop).
    #[serde(default)]
    pub current_versions: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Claimed {
    pub task: TaskRecord,
    pub attempt: u32,
    /// The run's `workers`: the names (this engine's, or its slots') it is
    /// pinned to.
    #[serde(default)]
    pub pinned_workers: Option<Vec<String>>,
}

/// What one report says: every field optional but the engine.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub logs: Vec<LogEntry>,
    /// The worker that runs it here (`NAME-KIND-ID`), sent once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

impl Link {
    pub fn new(base: &str, key: &str, engine: &str) -> Link {
        Link {
            // No overall timeout: a claim long-polls for half a lease.
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            engine: engine.to_string(),
        }
    }

    pub async fn register(&self, registration: &RemoteRegistration) -> Result<(), LinkError> {
        self.post("/v1/engine/register", registration)
            .await
            .map(drop)
    }

    /// A heartbeat, then up to `max` tasks (answers within half a lease).
    pub async fn claim(
        &self,
        max: usize,
        holding: &[String],
        workers: &[String],
        sessions: &[EngineSession],
        warm: &[String],
    ) -> Result<ClaimAnswer, LinkError> {
        // Every engine fetches deployed versions. `warm` names the apps
        // with a replica here and the versions it has cached
        // (`register::warm`): their tasks first, here and fleet-wide.
        let body = serde_json::json!({
            "engine": self.engine, "max": max, "holding": holding, "slots": workers,
            "sessions": sessions, "versions": true, "warm": warm,
        });
        let value = self.post("/v1/engine/claim", &body).await?;
        serde_json::from_value(value).map_err(|e| LinkError::Other {
            status: 200,
            detail: format!("malformed claim answer: {e}"),
        })
    }

    pub async fn report(&self, task: &str, report: &Report) -> Result<(), LinkError> {
        let mut body = serde_json::to_value(report).unwrap_or_default();
        body["engine"] = Value::String(self.engine.clone());
        self.post(&format!("/v1/engine/tasks/{task}/report"), &body)
            .await
            .map(drop)
    }

    /// Uploads an output file's bytes; the URL clients fetch it from.
    pub async fn upload_file(
        &self,
        bytes: Vec<u8>,
        filename: &str,
        content_type: &str,
        task: &str,
    ) -> Result<String, LinkError> {
        let request = self
            .http
            .post(format!("{}/v1/engine/files", self.base))
            .query(&[
                ("filename", filename),
                ("content_type", content_type),
                ("task", task),
            ])
            .body(bytes);
        let value = self.send(request).await?;
        value
            .get("uri")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| LinkError::Other {
                status: 200,
                detail: format!("malformed file upload answer: {value}"),
            })
    }

    /// A deployed version's package (`GET /engine/versions/...`), whole.
    pub async fn version_package(&self, app: &str, hash: &str) -> Result<Vec<u8>, LinkError> {
        let response = self
            .http
            .get(format!(
                "{}/v1/engine/versions/{app}/{hash}/package",
                self.base
            ))
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| LinkError::Unreachable(e.without_url().to_string()))?;
        if response.status().is_success() {
            return response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| LinkError::Unreachable(e.without_url().to_string()));
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let detail = value
            .get("detail")
            .and_then(Value::as_str)
            .map_or(text, str::to_string);
        Err(match status {
            401 | 403 => LinkError::Refused { status, detail },
            502..=504 => LinkError::Unreachable(format!("{status}: {detail}")),
            _ => LinkError::Other { status, detail },
        })
    }

    async fn post(&self, path: &str, body: &impl Serialize) -> Result<Value, LinkError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, LinkError> {
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| LinkError::Unreachable(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| LinkError::Unreachable(e.without_url().to_string()))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let detail = value
            .get("detail")
            .and_then(Value::as_str)
            .map_or_else(|| text.clone(), str::to_string);
        let resource = value.get("resource").and_then(Value::as_str);
        // The problem's code: the last segment of its type URL.
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .and_then(|t| t.rsplit('/').next())
            .unwrap_or("");
        Err(match status {
            401 | 403 => LinkError::Refused { status, detail },
            409 => LinkError::NotLeased(detail),
            404 if resource == Some("engine") => LinkError::UnknownEngine(detail),
            404 if resource == Some("task") => LinkError::NotLeased(detail),
            // A gateway between us and a restarting API node.
            502..=504 => LinkError::Unreachable(format!("{status}: {detail}")),
            _ => LinkError::Other {
                status,
                detail: if kind.is_empty() {
                    detail
                } else {
                    format!("{kind}: {detail}")
                },
            },
        })
    }
}
