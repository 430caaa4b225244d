//! [`MemoryStore`]: a [`TaskStore`] in a mutex, for the scheduler's unit
//! tests. The SQLite store answers from its own writer thread, and while a
//! test waits on that thread tokio's paused clock may jump to the next timer
//! (a backoff, a timeout) before the answer comes; this one answers at once
//! on the test's own thread, so the paused clock only moves when every task
//! waits on a timer.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use infsh_store::{
    ApiKeyRecord, AppVersionRecord, DeliveryState, FileAccess, FileRecord, LogEntry, Page,
    StoreError, TaskFilter, TaskRecord, TaskStatus, TaskStore, VersionOutcome, WebhookAttempt,
    WebhookDelivery,
};

#[derive(Default)]
pub(crate) struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// In insertion order: the position + 1 is the task's sequence number.
    tasks: Vec<TaskRecord>,
    logs: HashMap<String, Vec<LogEntry>>,
    files: HashMap<String, FileRecord>,
    file_access: HashMap<String, FileAccess>,
    webhooks: HashMap<String, WebhookDelivery>,
    keys: Vec<ApiKeyRecord>,
    versions: Vec<AppVersionRecord>,
    current_versions: HashMap<String, String>,
}

fn not_found(kind: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_string(),
    }
}

impl Inner {
    fn task(&mut self, id: &str) -> Result<&mut TaskRecord, StoreError> {
        self.tasks
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| not_found("task", id))
    }
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn insert_task(&self, task: &TaskRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.tasks.iter().any(|t| t.id == task.id) {
            // (SQLite refuses it as a constraint violation; the fake has no
            // database error to give, and ids are random, so no test gets here.)
            return Err(StoreError::Corrupt {
                id: task.id.clone(),
                message: "the task exists".into(),
            });
        }
        inner.tasks.push(task.clone());
        Ok(())
    }

    async fn update_status(
        &self,
        id: &str,
        status: TaskStatus,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let task = inner.task(id)?;
        task.status = status;
        task.updated_at_ms = at_ms;
        Ok(())
    }

    async fn update_output(
        &self,
        id: &str,
        output: &infsh_store::Payload,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let task = inner.task(id)?;
        task.output = Some(output.clone());
        task.updated_at_ms = at_ms;
        Ok(())
    }

    async fn finish_task(
        &self,
        id: &str,
        status: TaskStatus,
        output: Option<&infsh_store::Payload>,
        error: Option<&str>,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let task = inner.task(id)?;
        task.status = status;
        task.output = output.cloned();
        task.error = error.map(str::to_string);
        task.updated_at_ms = at_ms;
        Ok(())
    }

    async fn append_logs(&self, id: &str, logs: &[LogEntry]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.task(id)?;
        inner
            .logs
            .entry(id.to_string())
            .or_default()
            .extend_from_slice(logs);
        Ok(())
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.lock().tasks.iter().find(|t| t.id == id).cloned())
    }

    async fn get_logs(&self, id: &str) -> Result<Vec<LogEntry>, StoreError> {
        Ok(self.lock().logs.get(id).cloned().unwrap_or_default())
    }

    async fn list_tasks(
        &self,
        filter: &TaskFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<TaskRecord>, StoreError> {
        let before = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => c
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| StoreError::InvalidCursor(c.to_string()))?,
            None => usize::MAX,
        };
        let limit = limit.max(1);
        let inner = self.lock();
        let mut matching = inner
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (i + 1, t))
            .rev()
            .filter(|(seq, t)| {
                *seq < before
                    && !t.id.is_empty()
                    && filter.app.as_ref().is_none_or(|a| *a == t.app)
                    && filter.status.is_none_or(|s| s == t.status)
                    && filter
                        .team
                        .as_deref()
                        .is_none_or(|team| team == t.team.as_deref().unwrap_or("default"))
            });
        let items: Vec<(usize, &TaskRecord)> = matching.by_ref().take(limit).collect();
        let next_cursor = match (matching.next(), items.last()) {
            (Some(_), Some((seq, _))) => Some(seq.to_string()),
            _ => None,
        };
        Ok(Page {
            items: items.into_iter().map(|(_, t)| t.clone()).collect(),
            next_cursor,
        })
    }

    async fn tasks_with_status(
        &self,
        statuses: &[TaskStatus],
    ) -> Result<Vec<TaskRecord>, StoreError> {
        Ok(self
            .lock()
            .tasks
            .iter()
            .filter(|t| !t.id.is_empty() && statuses.contains(&t.status))
            .cloned()
            .collect())
    }

    async fn insert_file(&self, file: &FileRecord) -> Result<(), StoreError> {
        self.lock().files.insert(file.id.clone(), file.clone());
        Ok(())
    }

    async fn get_file(&self, id: &str) -> Result<Option<FileRecord>, StoreError> {
        Ok(self.lock().files.get(id).cloned())
    }

    async fn file_access(&self, id: &str) -> Result<Option<FileAccess>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .files
            .contains_key(id)
            .then(|| inner.file_access.get(id).cloned().unwrap_or_default()))
    }

    async fn set_file_access(&self, id: &str, access: &FileAccess) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if !inner.files.contains_key(id) {
            return Err(not_found("file", id));
        }
        inner.file_access.insert(id.to_string(), access.clone());
        Ok(())
    }

    async fn mark_file_uploaded(&self, id: &str, size: u64) -> Result<FileRecord, StoreError> {
        let mut inner = self.lock();
        let file = inner
            .files
            .get_mut(id)
            .ok_or_else(|| not_found("file", id))?;
        file.size = Some(size);
        file.uploaded = true;
        Ok(file.clone())
    }

    async fn enqueue_webhook(&self, delivery: &WebhookDelivery) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.webhooks.contains_key(&delivery.task_id) {
            return Ok(false);
        }
        inner
            .webhooks
            .insert(delivery.task_id.clone(), delivery.clone());
        Ok(true)
    }

    async fn claim_due_webhooks(
        &self,
        now_ms: i64,
        claim_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let mut inner = self.lock();
        let mut due: Vec<&mut WebhookDelivery> = inner
            .webhooks
            .values_mut()
            .filter(|d| d.state == DeliveryState::Pending && d.next_attempt_at_ms <= now_ms)
            .collect();
        due.sort_by_key(|d| d.created_at_ms);
        Ok(due
            .into_iter()
            .take(limit)
            .map(|d| {
                d.next_attempt_at_ms = claim_until_ms;
                d.clone()
            })
            .collect())
    }

    async fn record_webhook_attempt(
        &self,
        task_id: &str,
        a: &WebhookAttempt,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let d = inner
            .webhooks
            .get_mut(task_id)
            .ok_or_else(|| not_found("webhook delivery", task_id))?;
        d.attempts = a.attempts;
        d.state = a.state;
        d.last_error = a.error.clone();
        d.next_attempt_at_ms = a.next_attempt_at_ms;
        d.updated_at_ms = a.at_ms;
        Ok(())
    }

    async fn get_webhook_delivery(
        &self,
        task_id: &str,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        Ok(self.lock().webhooks.get(task_id).cloned())
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.lock().keys.push(key.clone());
        Ok(())
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self
            .lock()
            .keys
            .iter()
            .find(|k| k.key_hash == key_hash)
            .cloned())
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        Ok(self.lock().keys.clone())
    }

    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> Result<ApiKeyRecord, StoreError> {
        let mut inner = self.lock();
        let key = inner
            .keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or_else(|| not_found("API key", id))?;
        key.revoked_at_ms.get_or_insert(at_ms);
        Ok(key.clone())
    }

    async fn insert_app_version(&self, version: &AppVersionRecord) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner
            .versions
            .iter()
            .any(|v| v.app == version.app && v.hash == version.hash)
        {
            return Ok(false);
        }
        inner.versions.push(version.clone());
        Ok(true)
    }

    async fn set_app_version_status(
        &self,
        app: &str,
        hash: &str,
        outcome: VersionOutcome,
    ) -> Result<AppVersionRecord, StoreError> {
        let mut inner = self.lock();
        let v = inner
            .versions
            .iter_mut()
            .find(|v| v.app == app && v.hash == hash)
            .ok_or_else(|| not_found("app version", &format!("{app}@{hash}")))?;
        v.status = outcome.status;
        v.error = outcome.error;
        v.functions = outcome.functions;
        v.updated_at_ms = outcome.at_ms;
        Ok(v.clone())
    }

    async fn get_app_version(
        &self,
        app: &str,
        hash: &str,
    ) -> Result<Option<AppVersionRecord>, StoreError> {
        Ok(self
            .lock()
            .versions
            .iter()
            .find(|v| v.app == app && v.hash == hash)
            .cloned())
    }

    async fn list_app_versions(&self, app: &str) -> Result<Vec<AppVersionRecord>, StoreError> {
        let mut list: Vec<AppVersionRecord> = self
            .lock()
            .versions
            .iter()
            .filter(|v| v.app == app)
            .cloned()
            .collect();
        list.sort_by(|a, b| (b.created_at_ms, &a.hash).cmp(&(a.created_at_ms, &b.hash)));
        Ok(list)
    }

    async fn set_current_app_version(
        &self,
        app: &str,
        hash: &str,
        _at_ms: i64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if !inner
            .versions
            .iter()
            .any(|v| v.app == app && v.hash == hash)
        {
            return Err(not_found("app version", &format!("{app}@{hash}")));
        }
        inner
            .current_versions
            .insert(app.to_string(), hash.to_string());
        Ok(())
    }

    async fn current_app_version(&self, app: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().current_versions.get(app).cloned())
    }

    async fn current_app_versions(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut all: Vec<(String, String)> = self
            .lock()
            .current_versions
            .iter()
            .map(|(a, h)| (a.clone(), h.clone()))
            .collect();
        all.sort();
        Ok(all)
    }

    async fn delete_app_version(&self, app: &str, hash: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.current_versions.get(app).map(String::as_str) == Some(hash) {
            return Ok(false);
        }
        let before = inner.versions.len();
        inner.versions.retain(|v| !(v.app == app && v.hash == hash));
        Ok(inner.versions.len() < before)
    }

    async fn delete_task(&self, id: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        // A tombstone, not a removal: positions are sequence numbers.
        let Some(t) = inner
            .tasks
            .iter_mut()
            .find(|t| t.id == id && !t.id.is_empty())
        else {
            return Ok(false);
        };
        t.id = String::new();
        inner.logs.remove(id);
        Ok(true)
    }

    async fn delete_file(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().files.remove(id).is_some())
    }

    async fn list_files(
        &self,
        limit: usize,
        cursor: Option<&str>,
        team: Option<&str>,
    ) -> Result<Page<FileRecord>, StoreError> {
        let after = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => Some(infsh_store::parse_file_cursor(c)?),
            None => None,
        };
        let inner = self.lock();
        let mut files: Vec<FileRecord> = inner
            .files
            .values()
            .filter(|f| {
                team.is_none_or(|team| {
                    let of = inner.file_access.get(&f.id).and_then(|a| a.team.as_deref());
                    of.unwrap_or("default") == team
                })
            })
            .cloned()
            .collect();
        drop(inner);
        files.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
        let mut rest = files.into_iter().filter(|f| {
            after
                .as_ref()
                .is_none_or(|(ms, id)| (f.created_at_ms, &f.id) < (*ms, id))
        });
        let items: Vec<FileRecord> = rest.by_ref().take(limit.max(1)).collect();
        let next_cursor = match (rest.next(), items.last()) {
            (Some(_), Some(last)) => Some(infsh_store::file_cursor(last)),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }
}
