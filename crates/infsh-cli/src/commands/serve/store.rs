//! `infsh serve --store URL` (or `INFSH_STORE`): opens the named store
//! before the port is taken, so a wrong URL, a server that does not answer,
//! a refused login or a missing database ends the start with one line naming
//! the URL (password redacted) and exit code 2, like any bad flag value.
//! Without the flag the engine opens SQLite in the data folder as before.

use std::sync::Arc;

use infsh_store::{Durability, PostgresStore, SqliteStore, StoreError, StoreUrl, TaskStore};

use crate::exit::{ExitCode, Failure};

/// The store `--store` names, opened and migrated; None without the flag.
pub async fn open(
    url: Option<&str>,
    durability: Durability,
) -> Result<Option<Arc<dyn TaskStore>>, Failure> {
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let store: Arc<dyn TaskStore> = match StoreUrl::parse(url.trim()).map_err(failure)? {
        StoreUrl::Sqlite(path) => Arc::new(
            SqliteStore::open_with_async(&path, durability)
                .await
                .map_err(|e| {
                    Failure::new(
                        ExitCode::Usage,
                        format!("--store sqlite://{}: cannot open: {e}", path.display()),
                    )
                })?,
        ),
        StoreUrl::Postgres(url) => Arc::new(PostgresStore::open(&url).await.map_err(failure)?),
    };
    Ok(Some(store))
}

fn failure(e: StoreError) -> Failure {
    Failure::new(ExitCode::Usage, format!("--store {e}"))
}
