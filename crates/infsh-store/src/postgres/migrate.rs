//! The embedded migrations (`crate::migrations::MIGRATIONS`, the same files
//! SQLite runs) applied to PostgreSQL in one transaction that first takes a
//! transaction-scoped advisory lock: two API nodes starting together on a
//! fresh database queue on the lock, and the second finds the work done.
//! PostgreSQL's DDL is transactional, so a failed migration leaves nothing
//! half-applied, and the lock goes with the transaction even if the node
//! dies mid-way.
//!
//! After the shared files, one PostgreSQL-only object: the sequence
//! `infsh_task_seq` that numbers tasks (`tasks.seq`). SQLite takes
//! `MAX(seq) + 1` under its single writer; two PostgreSQL nodes inserting at
//! once cannot, so they draw from the sequence (increasing, gaps possible
//! after a failed insert).

use tokio_postgres::Client;

use crate::migrations::{latest_version, MIGRATIONS};
use crate::{now_ms, StoreError};

/// The advisory lock's key ("infsh_mi" in ASCII): the same on every node.
pub const MIGRATION_LOCK: i64 = 0x696e_6673_685f_6d69;
/// The sequence behind `tasks.seq`.
pub(crate) const TASK_SEQ: &str = "infsh_task_seq";

/// Applies every migration not yet applied; returns the versions applied now.
pub(crate) async fn migrate(client: &mut Client) -> Result<Vec<i64>, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at_ms BIGINT NOT NULL
        )",
    )
    .await?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    if current > latest_version() {
        return Err(StoreError::TooNew {
            found: current,
            known: latest_version(),
        });
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
            &[&version, &name, &now_ms()],
        )
        .await?;
        tracing::debug!(version, name, "applied store migration (PostgreSQL)");
        applied.push(version);
    }
    let has_seq: bool = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&TASK_SEQ])
        .await?
        .get(0);
    if !has_seq {
        tx.batch_execute(&format!(
            "CREATE SEQUENCE {TASK_SEQ} AS BIGINT OWNED BY tasks.seq; \
             SELECT setval('{TASK_SEQ}', COALESCE(MAX(seq), 0) + 1, false) FROM tasks;"
        ))
        .await?;
    }
    tx.commit().await?;
    Ok(applied)
}
