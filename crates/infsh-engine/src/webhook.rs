//! Webhooks: when a task that named a `webhook` ends, its final state is
//! POSTed there as JSON. Deliveries are an outbox in the store
//! ([`infsh_store::WebhookDelivery`]): the end of a task enqueues one, and
//! the outbox loop (one per engine, [`Webhooks::start`]) claims due ones,
//! sends each from a task of its own (never the scheduler's) and records
//! the attempt, retrying with exponential backoff. A restart, or a kill -9,
//! mid-retry finds the row and carries on; API nodes sharing a PostgreSQL
//! store share the outbox (a claim is exclusive until it runs out).
//! Attempts and the last error show on the task (`GET /tasks/{id}`).
//!
//! Each delivery is signed per Standard Webhooks (`webhook_signing`) when
//! the engine has a secret (`infsh serve` always gives one).
//!
//! The body is the task record: `{"id","status","app","function","input",
//! "setup","output","error","session_id","metadata","timeout","created_at",
//! "updated_at"}`, `status` as the API's number, timestamps ISO 8601 UTC.

use std::sync::{Arc, Weak};
use std::time::Duration;

use infsh_core::ErrorChain;
use infsh_store::Payload;
use infsh_store::{
    format_timestamp, now_ms, DeliveryState, TaskRecord, TaskStore, WebhookAttempt, WebhookDelivery,
};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

use crate::webhook_signing::WebhookSecret;

/// Attempts per webhook, and the pause before the second (doubling after).
pub const ATTEMPTS: u32 = 5;
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Limit on one attempt (connect + response).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claim keeps a delivery from other claims: longer than an
/// attempt can take, so only a node that died mid-attempt lets it run out.
const CLAIM: Duration = Duration::from_secs(15);
/// How often the loop looks for due deliveries it was not woken for
/// (another node's enqueued ones, a dead node's expired claims).
const POLL: Duration = Duration::from_secs(5);
/// Deliveries claimed at once.
const BATCH: usize = 32;

#[derive(Clone)]
pub(crate) struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    secret: Option<WebhookSecret>,
    /// Weak: the loop must not keep a dropped engine's store open.
    store: Weak<dyn TaskStore>,
    wake: Notify,
}

/// The JSON a webhook receiver gets: the task record. A struct rather
/// than a `Value`, so that the output goes out as the worker wrote it.
#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    status: u8,
    app: &'a str,
    function: &'a str,
    input: &'a Value,
    setup: &'a Value,
    output: Option<&'a Payload>,
    error: Option<&'a str>,
    session_id: Option<&'a str>,
    metadata: &'a Value,
    timeout: Option<f64>,
    created_at: String,
    updated_at: String,
}

/// The body a webhook receiver gets (JSON text): the task record.
pub fn payload(task: &TaskRecord) -> String {
    let body = Body {
        id: &task.id,
        status: u8::from(task.status),
        app: &task.app,
        function: &task.function,
        input: &task.input,
        setup: &task.setup,
        output: task.output.as_ref(),
        error: task.error.as_deref(),
        session_id: task.session_id.as_deref(),
        metadata: &task.metadata,
        timeout: task.timeout_secs,
        created_at: format_timestamp(task.created_at_ms),
        updated_at: format_timestamp(task.updated_at_ms),
    };
    serde_json::to_string(&body).expect("a task record serializes")
}

/// The pause after failed attempt `attempts` (1-based).
fn backoff(attempts: u32) -> Duration {
    FIRST_BACKOFF * 2u32.saturating_pow(attempts.saturating_sub(1).min(16))
}

/// The HTTP client that delivers webhooks could not be built (its TLS
/// backend did not initialise).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct WebhookClientError(#[source] reqwest::Error);

impl Webhooks {
    pub fn new(
        store: &Arc<dyn TaskStore>,
        secret: Option<WebhookSecret>,
    ) -> Result<Webhooks, WebhookClientError> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("infsh/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WebhookClientError)?;
        Ok(Webhooks {
            inner: Arc::new(Inner {
                client,
                secret,
                store: Arc::downgrade(store),
                wake: Notify::new(),
            }),
        })
    }

    /// Starts the outbox loop: it delivers what a previous run left
    /// pending at once, then what is enqueued, until the store is dropped.
    pub fn start(&self) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            loop {
                let Some(store) = inner.store.upgrade() else {
                    return;
                };
                let now = now_ms();
                match store
                    .claim_due_webhooks(now, now + CLAIM.as_millis() as i64, BATCH)
                    .await
                {
                    Ok(due) => {
                        let full = due.len() == BATCH;
                        for delivery in due {
                            tokio::spawn(attempt(inner.clone(), store.clone(), delivery));
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %ErrorChain(&e), "cannot claim due webhooks")
                    }
                }
                drop(store);
                tokio::select! {
                    () = inner.wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        });
    }

    /// Puts the task's final state in the outbox, if it has a webhook, and
    /// wakes the loop. In the background: the caller (a task's end) never
    /// waits on the store for it.
    pub fn deliver(&self, task: &TaskRecord) {
        let Some(url) = task.webhook.clone().filter(|u| !u.trim().is_empty()) else {
            return;
        };
        let now = now_ms();
        let delivery = WebhookDelivery {
            task_id: task.id.clone(),
            message_id: format!("msg_{}", task.id),
            url,
            body: payload(task),
            state: DeliveryState::Pending,
            attempts: 0,
            last_error: None,
            next_attempt_at_ms: now,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let Some(store) = inner.store.upgrade() else {
                return;
            };
            match store.enqueue_webhook(&delivery).await {
                Ok(_) => inner.wake.notify_one(),
                Err(e) => tracing::error!(
                    task = %delivery.task_id, error = %ErrorChain(&e),
                    "cannot store the webhook delivery; it is not sent"
                ),
            }
        });
    }
}

/// One attempt at a claimed delivery, and its outcome stored.
async fn attempt(inner: Arc<Inner>, store: Arc<dyn TaskStore>, d: WebhookDelivery) {
    let attempts = d.attempts + 1;
    let timestamp = now_ms() / 1000;
    let mut request = inner
        .client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.message_id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = &inner.secret {
        request = request.header(
            "webhook-signature",
            secret.sign(&d.message_id, timestamp, &d.body),
        );
    }
    let error = match request.body(d.body.clone()).send().await {
        Ok(resp) if resp.status().is_success() => None,
        Ok(resp) => Some(format!("HTTP {}", resp.status())),
        // reqwest's own message hides the cause (refused, TLS...).
        Err(e) => Some(ErrorChain(&e).to_string()),
    };
    let at = now_ms();
    let (state, next) = match &error {
        None => {
            tracing::debug!(task = %d.task_id, url = %d.url, attempts, "webhook delivered");
            (DeliveryState::Delivered, at)
        }
        Some(error) if attempts >= ATTEMPTS => {
            tracing::warn!(task = %d.task_id, url = %d.url, %error, "webhook not delivered; giving up after {ATTEMPTS} attempts");
            (DeliveryState::Failed, at)
        }
        Some(error) => {
            tracing::debug!(task = %d.task_id, url = %d.url, %error, attempts, "webhook attempt failed; retrying");
            let pause = backoff(attempts);
            let waker = inner.clone();
            tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                waker.wake.notify_one();
            });
            (DeliveryState::Pending, at + pause.as_millis() as i64)
        }
    };
    let outcome = WebhookAttempt {
        attempts,
        state,
        error,
        next_attempt_at_ms: next,
        at_ms: at,
    };
    if let Err(e) = store.record_webhook_attempt(&d.task_id, &outcome).await {
        // The claim runs out and the attempt is made again: a receiver
        // may see the message twice (same `webhook-id`).
        tracing::error!(task = %d.task_id, error = %ErrorChain(&e), "cannot record a webhook attempt");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first() {
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(4), FIRST_BACKOFF * 8);
    }
}
