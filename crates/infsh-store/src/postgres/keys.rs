//! The `api_keys` table on PostgreSQL (see `crate::keys`).

use deadpool_postgres::Client;
use tokio_postgres::Row;

use crate::keys::{scopes_json, RawKey, KEY_COLUMNS};
use crate::{ApiKeyRecord, StoreError};

fn key(row: &Row) -> Result<ApiKeyRecord, StoreError> {
    RawKey {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        key_hash: row.try_get(2)?,
        scopes: row.try_get(3)?,
        team: row.try_get(4)?,
        created_at_ms: row.try_get(5)?,
        expires_at_ms: row.try_get(6)?,
        revoked_at_ms: row.try_get(7)?,
    }
    .decode()
}

pub(crate) async fn insert(client: &Client, k: &ApiKeyRecord) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .await?;
    client
        .execute(
            &stmt,
            &[
                &k.id,
                &k.name,
                &k.key_hash,
                &scopes_json(k),
                &k.team,
                &k.created_at_ms,
                &k.expires_at_ms,
                &k.revoked_at_ms,
            ],
        )
        .await?;
    Ok(())
}

pub(crate) async fn by_hash(
    client: &Client,
    hash: &str,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
        ))
        .await?;
    client
        .query_opt(&stmt, &[&hash])
        .await?
        .map(|row| key(&row))
        .transpose()
}

pub(crate) async fn list(client: &Client) -> Result<Vec<ApiKeyRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at_ms, id"
        ))
        .await?;
    client.query(&stmt, &[]).await?.iter().map(key).collect()
}

pub(crate) async fn revoke(
    client: &Client,
    id: &str,
    at_ms: i64,
) -> Result<ApiKeyRecord, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $2) WHERE id = $1 \
             RETURNING {KEY_COLUMNS}"
        ))
        .await?;
    match client.query_opt(&stmt, &[&id, &at_ms]).await? {
        Some(row) => key(&row),
        None => Err(StoreError::NotFound {
            kind: "API key",
            id: id.to_string(),
        }),
    }
}
