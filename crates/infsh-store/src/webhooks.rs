//! The webhook outbox's records and its SQLite statements (PostgreSQL's are
//! in `postgres/webhooks.rs`). A task that ends with a `webhook` gets one
//! [`WebhookDelivery`]; the engine's outbox loop claims due ones
//! ([`crate::TaskStore::claim_due_webhooks`]), sends them and records each
//! attempt, so retries survive a restart and every API node of a fleet
//! shares them.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not delivered yet; retried when due.
    Pending,
    /// A 2xx answer came back.
    Delivered,
    /// Every attempt failed; no more will be made.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<DeliveryState, StoreError> {
        Ok(match s {
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed,
            other => {
                return Err(StoreError::Corrupt {
                    id: "webhook_deliveries".to_string(),
                    message: format!("unknown delivery state \"{other}\""),
                })
            }
        })
    }
}

/// One task's webhook: what is sent, and how sending went so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub task_id: String,
    /// The `webhook-id` header, the same on every attempt.
    pub message_id: String,
    pub url: String,
    /// The JSON body, exactly as signed and sent.
    pub body: String,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why the last attempt failed (`HTTP 500`, connection refused...).
    pub last_error: Option<String>,
    /// When the next attempt is due (Unix ms); while one is in flight, the
    /// end of its claim.
    pub next_attempt_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// The outcome of one attempt, as [`crate::TaskStore::record_webhook_attempt`] stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAttempt {
    /// Attempts made, this one included.
    pub attempts: u32,
    pub state: DeliveryState,
    pub error: Option<String>,
    /// When to retry (pending only; otherwise ignored but stored).
    pub next_attempt_at_ms: i64,
    pub at_ms: i64,
}

pub(crate) const DELIVERY_COLUMNS: &str = "task_id, message_id, url, body, state, attempts, \
     last_error, next_attempt_at_ms, created_at_ms, updated_at_ms";

/// PostgreSQL's placeholders; SQLite runs the same text with `?N` ([`sqlite_sql`]).
pub(crate) const INSERT: &str = "INSERT INTO webhook_deliveries (task_id, message_id, url, body, \
     state, attempts, last_error, next_attempt_at_ms, created_at_ms, updated_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (task_id) DO NOTHING";

pub(crate) const RECORD: &str = "UPDATE webhook_deliveries SET attempts = $2, state = $3, \
     last_error = $4, next_attempt_at_ms = $5, updated_at_ms = $6 WHERE task_id = $1";

/// `$N` placeholders as SQLite's `?N` (SQLite numbers `$N` by first
/// appearance, not by N).
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

/// A row of [`DELIVERY_COLUMNS`], whichever database it came from.
pub(crate) struct RawDelivery {
    pub task_id: String,
    pub message_id: String,
    pub url: String,
    pub body: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl RawDelivery {
    pub(crate) fn decode(self) -> Result<WebhookDelivery, StoreError> {
        Ok(WebhookDelivery {
            state: DeliveryState::parse(&self.state)?,
            attempts: self.attempts.clamp(0, i64::from(u32::MAX)) as u32,
            task_id: self.task_id,
            message_id: self.message_id,
            url: self.url,
            body: self.body,
            last_error: self.last_error,
            next_attempt_at_ms: self.next_attempt_at_ms,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawDelivery> {
    Ok(RawDelivery {
        task_id: row.get(0)?,
        message_id: row.get(1)?,
        url: row.get(2)?,
        body: row.get(3)?,
        state: row.get(4)?,
        attempts: row.get(5)?,
        last_error: row.get(6)?,
        next_attempt_at_ms: row.get(7)?,
        created_at_ms: row.get(8)?,
        updated_at_ms: row.get(9)?,
    })
}

/// Stores a delivery unless its task has one; true when stored.
pub(crate) fn insert(conn: &Connection, d: &WebhookDelivery) -> Result<bool, StoreError> {
    let n = conn.prepare_cached(&sqlite_sql(INSERT))?.execute(params![
        d.task_id,
        d.message_id,
        d.url,
        d.body,
        d.state.as_str(),
        i64::from(d.attempts),
        d.last_error,
        d.next_attempt_at_ms,
        d.created_at_ms,
        d.updated_at_ms
    ])?;
    Ok(n == 1)
}

/// Pending deliveries due at `now_ms`, soonest first, at most `limit`;
/// each one's due time moves to `claim_until_ms` in the same statement, so
/// no other claim takes it meanwhile. (One writer thread: no row locks.)
pub(crate) fn claim_due(
    conn: &Connection,
    now_ms: i64,
    claim_until_ms: i64,
    limit: usize,
) -> Result<Vec<WebhookDelivery>, StoreError> {
    let sql = format!(
        "UPDATE webhook_deliveries SET next_attempt_at_ms = ?2 WHERE task_id IN (\
           SELECT task_id FROM webhook_deliveries \
           WHERE state = 'pending' AND next_attempt_at_ms <= ?1 \
           ORDER BY next_attempt_at_ms LIMIT ?3) \
         RETURNING {DELIVERY_COLUMNS}"
    );
    let raws = conn
        .prepare_cached(&sql)?
        .query_map(params![now_ms, claim_until_ms, limit as i64], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = raws
        .into_iter()
        .map(RawDelivery::decode)
        .collect::<Result<Vec<_>, _>>()?;
    // RETURNING has no order (and the old due times are gone): oldest first.
    out.sort_by_key(|d| d.created_at_ms);
    Ok(out)
}

pub(crate) fn record(
    conn: &Connection,
    task_id: &str,
    a: &WebhookAttempt,
) -> Result<(), StoreError> {
    let n = conn.prepare_cached(&sqlite_sql(RECORD))?.execute(params![
        task_id,
        i64::from(a.attempts),
        a.state.as_str(),
        a.error,
        a.next_attempt_at_ms,
        a.at_ms
    ])?;
    if n == 0 {
        return Err(StoreError::NotFound {
            kind: "webhook delivery",
            id: task_id.to_string(),
        });
    }
    Ok(())
}

pub(crate) fn get(conn: &Connection, task_id: &str) -> Result<Option<WebhookDelivery>, StoreError> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE task_id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([task_id], from_row)
        .optional()?
        .map(RawDelivery::decode)
        .transpose()
}
