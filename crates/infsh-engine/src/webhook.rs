//! Webhooks: when a task that named a `webhook` ends, its final state is
//! POSTed there as JSON, from a task of its own (never the scheduler's), with
//! retries and exponential backoff. Delivery is best effort: after the last
//! attempt the failure is logged and dropped.
//!
//! The body is the platform's task shape, reduced to what a receiver needs:
//! `{"id","status","app","function","output","error","created_at","updated_at"}`,
//! `status` as the API's number, timestamps as ISO 8601 UTC.

use std::time::Duration;

use infsh_core::ErrorChain;
use infsh_store::{format_timestamp, TaskRecord};
use serde_json::{json, Value};

/// Attempts per webhook, and the pause before the second (doubling after).
pub const ATTEMPTS: u32 = 5;
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Limit on one attempt (connect + response).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(crate) struct Webhooks {
    client: reqwest::Client,
}

/// The JSON a webhook receives.
pub fn payload(task: &TaskRecord) -> Value {
    json!({
        "id": task.id,
        "status": u8::from(task.status),
        "app": task.app,
        "function": task.function,
        "output": task.output,
        "error": task.error,
        "created_at": format_timestamp(task.created_at_ms),
        "updated_at": format_timestamp(task.updated_at_ms),
    })
}

/// The HTTP client that delivers webhooks could not be built (its TLS
/// backend did not initialise).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct WebhookClientError(#[source] reqwest::Error);

impl Webhooks {
    pub fn new() -> Result<Webhooks, WebhookClientError> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("infsh/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WebhookClientError)?;
        Ok(Webhooks { client })
    }

    /// Delivers the task's final state to its webhook, if it has one, in
    /// the background.
    pub fn deliver(&self, task: &TaskRecord) {
        let Some(url) = task.webhook.clone().filter(|u| !u.trim().is_empty()) else {
            return;
        };
        let body = payload(task);
        let client = self.client.clone();
        let id = task.id.clone();
        tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            for attempt in 1..=ATTEMPTS {
                let error = match client.post(&url).json(&body).send().await {
                    Ok(resp) if resp.status().is_success() => {
                        tracing::debug!(task = %id, %url, attempt, "webhook delivered");
                        return;
                    }
                    Ok(resp) => format!("HTTP {}", resp.status()),
                    // reqwest's own message hides the cause (refused, TLS...).
                    Err(e) => ErrorChain(&e).to_string(),
                };
                if attempt == ATTEMPTS {
                    tracing::warn!(task = %id, %url, %error, "webhook not delivered; giving up after {ATTEMPTS} attempts");
                    return;
                }
                tracing::debug!(task = %id, %url, %error, attempt, "webhook attempt failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        });
    }
}
