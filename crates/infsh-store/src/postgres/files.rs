//! The `files` table on PostgreSQL: a stored file's record (the bytes are
//! the file store's).

use deadpool_postgres::Client;

use super::rows::{file, FILE_COLUMNS};
use super::tasks::not_found;
use crate::{FileAccess, FileRecord, StoreError};

pub(crate) async fn insert(client: &Client, f: &FileRecord) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO files (id, filename, content_type, size, uploaded, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &f.id,
                &f.filename,
                &f.content_type,
                &f.size.map(|s| s as i64),
                &i32::from(f.uploaded),
                &f.created_at_ms,
            ],
        )
        .await?;
    Ok(())
}

pub(crate) async fn get(client: &Client, id: &str) -> Result<Option<FileRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!("SELECT {FILE_COLUMNS} FROM files WHERE id = $1"))
        .await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .map(|row| file(&row))
        .transpose()
}

/// Marks the bytes stored and returns the record, in one statement.
pub(crate) async fn mark_uploaded(
    client: &Client,
    id: &str,
    size: u64,
) -> Result<FileRecord, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE files SET uploaded = 1, size = $2 WHERE id = $1 RETURNING {FILE_COLUMNS}"
        ))
        .await?;
    match client.query_opt(&stmt, &[&id, &(size as i64)]).await? {
        Some(row) => file(&row),
        None => Err(not_found("file", id)),
    }
}

/// File `id`'s team and public flag (None: no such file).
pub(crate) async fn access(client: &Client, id: &str) -> Result<Option<FileAccess>, StoreError> {
    let stmt = client
        .prepare_cached("SELECT team, public FROM files WHERE id = $1")
        .await?;
    Ok(match client.query_opt(&stmt, &[&id]).await? {
        Some(row) => Some(FileAccess {
            team: row.try_get(0)?,
            public: row.try_get::<_, i32>(1)? != 0,
        }),
        None => None,
    })
}

/// Sets file `id`'s team and public flag; `NotFound` for an unknown file.
pub(crate) async fn set_access(
    client: &Client,
    id: &str,
    access: &FileAccess,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached("UPDATE files SET team = $2, public = $3 WHERE id = $1")
        .await?;
    let n = client
        .execute(&stmt, &[&id, &access.team, &i32::from(access.public)])
        .await?;
    if n == 0 {
        return Err(not_found("file", id));
    }
    Ok(())
}
