//! Embedded, versioned schema migrations (`crates/infsh-store/migrations/`),
//! applied in order at open and recorded in `schema_migrations`. The SQL is
//! portable (see the header of `0001_init.sql`) so a PostgreSQL store can
//! run the same files.

use rusqlite::{params, Connection};

use crate::ids::now_ms;
use crate::StoreError;

/// `(version, name, sql)`, ascending. Append only: never edit a released one.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "fleet", include_str!("../migrations/0002_fleet.sql")),
    (
        3,
        "lifecycle",
        include_str!("../migrations/0003_lifecycle.sql"),
    ),
    (4, "access", include_str!("../migrations/0004_access.sql")),
    (
        5,
        "task_node",
        include_str!("../migrations/0005_task_node.sql"),
    ),
    (6, "run_at", include_str!("../migrations/0006_run_at.sql")),
    (
        7,
        "file_public",
        include_str!("../migrations/0007_file_public.sql"),
    ),
    (
        8,
        "app_versions",
        include_str!("../migrations/0008_app_versions.sql"),
    ),
    (
        9,
        "fleet_sessions",
        include_str!("../migrations/0009_fleet_sessions.sql"),
    ),
    (
        10,
        "version_functions",
        include_str!("../migrations/0010_version_functions.sql"),
    ),
    (
        11,
        "attempt_worker",
        include_str!("../migrations/0011_attempt_worker.sql"),
    ),
    (
        12,
        "api_nodes",
        include_str!("../migrations/0012_api_nodes.sql"),
    ),
    (
        13,
        "engine_warm",
        include_str!("../migrations/0013_engine_warm.sql"),
    ),
];

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Applies every migration not yet applied, each in its own transaction.
/// Returns the versions applied now.
pub fn migrate(conn: &mut Connection) -> Result<Vec<i64>, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at_ms BIGINT NOT NULL
        )",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?;
    if current > latest_version() {
        return Err(StoreError::TooNew {
            found: current,
            known: latest_version(),
        });
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
            params![version, name, now_ms()],
        )?;
        tx.commit()?;
        tracing::debug!(version, name, "applied store migration");
        applied.push(version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(MIGRATIONS[0].0, 1);
    }

    #[test]
    fn migrate_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(
            migrate(&mut conn).unwrap(),
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
        );
        assert!(migrate(&mut conn).unwrap().is_empty());
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (999, 'future', 0)",
            [],
        )
        .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::TooNew { found: 999, .. })
        ));
    }
}
