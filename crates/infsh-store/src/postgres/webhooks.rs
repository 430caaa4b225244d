//! The `webhook_deliveries` table on PostgreSQL (the outbox; see
//! `crate::webhooks`). A claim locks the rows it picks with `SKIP LOCKED`,
//! so API nodes claiming at once each get different deliveries.

use deadpool_postgres::Client;
use tokio_postgres::Row;

use crate::webhooks::{RawDelivery, DELIVERY_COLUMNS, INSERT, RECORD};
use crate::{StoreError, WebhookAttempt, WebhookDelivery};

fn delivery(row: &Row) -> Result<WebhookDelivery, StoreError> {
    RawDelivery {
        task_id: row.try_get(0)?,
        message_id: row.try_get(1)?,
        url: row.try_get(2)?,
        body: row.try_get(3)?,
        state: row.try_get(4)?,
        attempts: i64::from(row.try_get::<_, i32>(5)?),
        last_error: row.try_get(6)?,
        next_attempt_at_ms: row.try_get(7)?,
        created_at_ms: row.try_get(8)?,
        updated_at_ms: row.try_get(9)?,
    }
    .decode()
}

pub(crate) async fn insert(client: &Client, d: &WebhookDelivery) -> Result<bool, StoreError> {
    let stmt = client.prepare_cached(INSERT).await?;
    let attempts = i32::try_from(d.attempts).unwrap_or(i32::MAX);
    let n = client
        .execute(
            &stmt,
            &[
                &d.task_id,
                &d.message_id,
                &d.url,
                &d.body,
                &d.state.as_str(),
                &attempts,
                &d.last_error,
                &d.next_attempt_at_ms,
                &d.created_at_ms,
                &d.updated_at_ms,
            ],
        )
        .await?;
    Ok(n == 1)
}

pub(crate) async fn claim_due(
    client: &Client,
    now_ms: i64,
    claim_until_ms: i64,
    limit: usize,
) -> Result<Vec<WebhookDelivery>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE webhook_deliveries SET next_attempt_at_ms = $2 WHERE task_id IN (\
               SELECT task_id FROM webhook_deliveries \
               WHERE state = 'pending' AND next_attempt_at_ms <= $1 \
               ORDER BY next_attempt_at_ms LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .await?;
    let mut out: Vec<WebhookDelivery> = client
        .query(&stmt, &[&now_ms, &claim_until_ms, &(limit as i64)])
        .await?
        .iter()
        .map(delivery)
        .collect::<Result<_, _>>()?;
    // RETURNING has no order; the rows' old due times are gone, so keep
    // the outbox's other order: oldest first.
    out.sort_by_key(|d| d.created_at_ms);
    Ok(out)
}

pub(crate) async fn record(
    client: &Client,
    task_id: &str,
    a: &WebhookAttempt,
) -> Result<(), StoreError> {
    let stmt = client.prepare_cached(RECORD).await?;
    let attempts = i32::try_from(a.attempts).unwrap_or(i32::MAX);
    let n = client
        .execute(
            &stmt,
            &[
                &task_id,
                &attempts,
                &a.state.as_str(),
                &a.error,
                &a.next_attempt_at_ms,
                &a.at_ms,
            ],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotFound {
            kind: "webhook delivery",
            id: task_id.to_string(),
        });
    }
    Ok(())
}

pub(crate) async fn get(
    client: &Client,
    task_id: &str,
) -> Result<Option<WebhookDelivery>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE task_id = $1"
        ))
        .await?;
    client
        .query_opt(&stmt, &[&task_id])
        .await?
        .map(|row| delivery(&row))
        .transpose()
}
