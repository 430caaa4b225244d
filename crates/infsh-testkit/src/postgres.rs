//! [`PgTestDb`]: a PostgreSQL database of its own for one test, created on
//! the server named by `INFSH_TEST_DATABASE_URL` (default
//! [`DEFAULT_ADMIN_URL`]) under a unique name and dropped (`WITH (FORCE)`,
//! so a connection the test left open does not keep it) when the value is
//! dropped. Tests therefore run in parallel and leave nothing behind.
//!
//! No PostgreSQL is not a reason to pass: with the variable unset and
//! nothing answering at the default, creating one panics with how to run
//! the tests (`scripts/test.sh` starts a throwaway server when none runs;
//! `scripts/test-postgres.sh` prints its URL).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the tests look for PostgreSQL when `INFSH_TEST_DATABASE_URL` is unset.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The variable naming the server (any database on it: the tests connect
/// to it to create and drop their own).
pub const DATABASE_URL_ENV: &str = "INFSH_TEST_DATABASE_URL";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database that exists for as long as this value.
#[derive(Debug)]
pub struct PgTestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgTestDb {
    /// Creates a fresh, empty database. Blocks (on a thread of its own, so
    /// it may be called from sync or async tests).
    pub fn create() -> PgTestDb {
        let (admin_url, from_env) = match std::env::var(DATABASE_URL_ENV) {
            Ok(url) if !url.is_empty() => (url, true),
            _ => (DEFAULT_ADMIN_URL.to_string(), false),
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "infsh_test_{}_{}_{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let sql = format!("CREATE DATABASE {name}");
        if let Err(e) = run_admin(&admin_url, &sql) {
            if from_env {
                panic!("cannot create a test database on {DATABASE_URL_ENV}={admin_url}: {e}");
            }
            panic!(
                "the PostgreSQL tests need a server, and none answers at {admin_url} ({e}): \
                 run them through scripts/test.sh (which starts one), or set \
                 {DATABASE_URL_ENV}=$(scripts/test-postgres.sh)"
            );
        }
        let url = with_database(&admin_url, &name);
        PgTestDb {
            admin_url,
            name,
            url,
        }
    }

    /// `postgres://…/infsh_test_…`: the test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's URL with another database name (one that may not
    /// exist: for tests of a missing database).
    pub fn url_for(&self, database: &str) -> String {
        with_database(&self.admin_url, database)
    }

    /// Runs SQL on the test's database (a batch, no results).
    pub fn execute(&self, sql: &str) -> Result<(), String> {
        run_admin(&self.url, sql)
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = run_admin(&self.admin_url, &sql) {
            eprintln!("warning: cannot drop test database {}: {e}", self.name);
        }
    }
}

/// `url` with its path (the database name) replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or("");
    match query {
        Some(q) => format!("{scheme}://{authority}/{database}?{q}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

/// Connects to `url` and runs `sql` on a thread with its own runtime (so a
/// `Drop` inside an async test can wait for it).
fn run_admin(url: &str, sql: &str) -> Result<(), String> {
    let url = url.to_string();
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| describe(&e))?;
            let conn = tokio::spawn(connection);
            let result = client.batch_execute(&sql).await.map_err(|e| describe(&e));
            drop(client);
            let _ = conn.await;
            result
        })
    })
    .join()
    .map_err(|_| "the admin thread panicked".to_string())?
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut out = e.to_string();
            if let Some(cause) = std::error::Error::source(e) {
                out = format!("{out}: {cause}");
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/d?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
