//! API keys created at run time (`infsh keys create`, `POST /apikeys`):
//! their records and SQLite statements (PostgreSQL's are in
//! `postgres/keys.rs`). The store keeps a key's SHA-256 digest, never the
//! key: a copy of the database lets nobody in.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// A stored key. `key_hash` is the hex SHA-256 of the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub key_hash: String,
    /// Scope names, as the platform writes them (`apps:execute`).
    pub scopes: Vec<String>,
    pub team: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

pub(crate) const KEY_COLUMNS: &str =
    "id, name, key_hash, scopes, team, created_at_ms, expires_at_ms, revoked_at_ms";

/// A row of [`KEY_COLUMNS`], whichever database it came from.
pub(crate) struct RawKey {
    pub id: String,
    pub name: String,
    pub key_hash: String,
    pub scopes: String,
    pub team: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

impl RawKey {
    pub(crate) fn decode(self) -> Result<ApiKeyRecord, StoreError> {
        let scopes =
            serde_json::from_str(&self.scopes).map_err(|source| StoreError::CorruptJson {
                id: self.id.clone(),
                field: "scopes",
                source,
            })?;
        Ok(ApiKeyRecord {
            id: self.id,
            name: self.name,
            key_hash: self.key_hash,
            scopes,
            team: self.team,
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            revoked_at_ms: self.revoked_at_ms,
        })
    }
}

pub(crate) fn scopes_json(k: &ApiKeyRecord) -> String {
    serde_json::to_string(&k.scopes).expect("strings serialize")
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawKey> {
    Ok(RawKey {
        id: row.get(0)?,
        name: row.get(1)?,
        key_hash: row.get(2)?,
        scopes: row.get(3)?,
        team: row.get(4)?,
        created_at_ms: row.get(5)?,
        expires_at_ms: row.get(6)?,
        revoked_at_ms: row.get(7)?,
    })
}

pub(crate) fn insert(conn: &Connection, k: &ApiKeyRecord) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        k.id,
        k.name,
        k.key_hash,
        scopes_json(k),
        k.team,
        k.created_at_ms,
        k.expires_at_ms,
        k.revoked_at_ms
    ])?;
    Ok(())
}

pub(crate) fn by_hash(conn: &Connection, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"
    ))?
    .query_row([hash], from_row)
    .optional()?
    .map(RawKey::decode)
    .transpose()
}

pub(crate) fn list(conn: &Connection) -> Result<Vec<ApiKeyRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at_ms, id"
    ))?
    .query_map([], from_row)?
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .map(RawKey::decode)
    .collect()
}

/// Revokes key `id` (a second revoke keeps the first time); the record.
pub(crate) fn revoke(conn: &Connection, id: &str, at_ms: i64) -> Result<ApiKeyRecord, StoreError> {
    conn.prepare_cached(
        "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, ?2) WHERE id = ?1",
    )?
    .execute(params![id, at_ms])?;
    conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            kind: "API key",
            id: id.to_string(),
        })?
        .decode()
}
