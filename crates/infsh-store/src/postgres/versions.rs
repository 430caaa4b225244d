//! The `app_versions` and `app_current_versions` tables on PostgreSQL (see
//! `crate::versions`).

use deadpool_postgres::Client;
use tokio_postgres::Row;

use crate::versions::{functions_text, not_found, RawVersion, SET_CURRENT_SQL, VERSION_COLUMNS};
use crate::{AppVersionRecord, StoreError, VersionOutcome};

fn version(row: &Row) -> Result<AppVersionRecord, StoreError> {
    RawVersion {
        app: row.try_get(0)?,
        hash: row.try_get(1)?,
        size_bytes: row.try_get(2)?,
        status: row.try_get(3)?,
        error: row.try_get(4)?,
        created_at_ms: row.try_get(5)?,
        updated_at_ms: row.try_get(6)?,
        functions: row.try_get(7)?,
    }
    .decode()
}

pub(crate) async fn insert(client: &Client, v: &AppVersionRecord) -> Result<bool, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO app_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (app, hash) DO NOTHING"
        ))
        .await?;
    let size = i64::try_from(v.size_bytes).unwrap_or(i64::MAX);
    let functions = functions_text(v.functions.as_ref());
    let n = client
        .execute(
            &stmt,
            &[
                &v.app,
                &v.hash,
                &size,
                &v.status.as_str(),
                &v.error,
                &v.created_at_ms,
                &v.updated_at_ms,
                &functions,
            ],
        )
        .await?;
    Ok(n == 1)
}

pub(crate) async fn set_status(
    client: &Client,
    app: &str,
    hash: &str,
    outcome: &VersionOutcome,
) -> Result<AppVersionRecord, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE app_versions SET status = $3, error = $4, updated_at_ms = $5, functions = $6 \
             WHERE app = $1 AND hash = $2 RETURNING {VERSION_COLUMNS}"
        ))
        .await?;
    let functions = functions_text(outcome.functions.as_ref());
    client
        .query_opt(
            &stmt,
            &[
                &app,
                &hash,
                &outcome.status.as_str(),
                &outcome.error,
                &outcome.at_ms,
                &functions,
            ],
        )
        .await?
        .map(|row| version(&row))
        .transpose()?
        .ok_or_else(|| not_found(app, hash))
}

pub(crate) async fn get(
    client: &Client,
    app: &str,
    hash: &str,
) -> Result<Option<AppVersionRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM app_versions WHERE app = $1 AND hash = $2"
        ))
        .await?;
    client
        .query_opt(&stmt, &[&app, &hash])
        .await?
        .map(|row| version(&row))
        .transpose()
}

pub(crate) async fn list(client: &Client, app: &str) -> Result<Vec<AppVersionRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM app_versions WHERE app = $1 \
             ORDER BY created_at_ms DESC, hash"
        ))
        .await?;
    client
        .query(&stmt, &[&app])
        .await?
        .iter()
        .map(version)
        .collect()
}

pub(crate) async fn set_current(
    client: &Client,
    app: &str,
    hash: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    let sql = SET_CURRENT_SQL
        .replace("{app}", "$1")
        .replace("{hash}", "$2")
        .replace("{at}", "$3::BIGINT");
    let stmt = client.prepare_cached(&sql).await?;
    if client.execute(&stmt, &[&app, &hash, &at_ms]).await? == 0 {
        return Err(not_found(app, hash));
    }
    Ok(())
}

pub(crate) async fn all_current(client: &Client) -> Result<Vec<(String, String)>, StoreError> {
    let stmt = client
        .prepare_cached("SELECT app, hash FROM app_current_versions ORDER BY app")
        .await?;
    client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

pub(crate) async fn current(client: &Client, app: &str) -> Result<Option<String>, StoreError> {
    let stmt = client
        .prepare_cached("SELECT hash FROM app_current_versions WHERE app = $1")
        .await?;
    Ok(client
        .query_opt(&stmt, &[&app])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}

pub(crate) async fn delete(client: &Client, app: &str, hash: &str) -> Result<bool, StoreError> {
    let stmt = client
        .prepare_cached(
            "DELETE FROM app_versions WHERE app = $1 AND hash = $2 AND NOT EXISTS \
             (SELECT 1 FROM app_current_versions c WHERE c.app = $1 AND c.hash = $2)",
        )
        .await?;
    Ok(client.execute(&stmt, &[&app, &hash]).await? == 1)
}
