//! `infsh serve --store URL` (or `INFSH_STORE`): opens the named store
//! before the port is taken, so a wrong URL, a server that does not answer,
//! a refused login or a missing database ends the start with one line naming
//! the URL (password redacted) and exit code 2, like any bad flag value.
//! Without the flag the engine opens SQLite in the data folder as before.
//!
//! With `--engine-key` too, the same store holds remote engines' queue and
//! leases: on PostgreSQL, shared by every API node on the database and
//! woken across them by `LISTEN/NOTIFY` (a connection of its own).

use std::sync::Arc;

use infsh_engine::FleetBacking;
use infsh_store::fleet::LocalWakeup;
use infsh_store::{Durability, PostgresStore, SqliteStore, StoreError, StoreUrl, TaskStore};

use crate::exit::{ExitCode, Failure};

/// A store `--store` named, and its fleet side when remote engines are taken.
pub struct Opened {
    pub tasks: Arc<dyn TaskStore>,
    pub fleet: Option<FleetBacking>,
}

/// The store `--store` names, opened and migrated; None without the flag.
/// `fleet`: remote engines are taken (`--engine-key`). `node`: this API
/// node's id, which a PostgreSQL store marks its tasks with (recovery at
/// start then touches only those).
pub async fn open(
    url: Option<&str>,
    durability: Durability,
    fleet: bool,
    node: &str,
) -> Result<Option<Opened>, Failure> {
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let opened = match StoreUrl::parse(url.trim()).map_err(failure)? {
        StoreUrl::Sqlite(path) => {
            let store = SqliteStore::open_with_async(&path, durability)
                .await
                .map_err(|e| {
                    Failure::new(
                        ExitCode::Usage,
                        format!("--store sqlite://{}: cannot open: {e}", path.display()),
                    )
                })?;
            Opened {
                tasks: Arc::new(store.clone()),
                fleet: fleet.then(|| FleetBacking {
                    store: Arc::new(store),
                    wake: Arc::new(LocalWakeup::default()),
                }),
            }
        }
        StoreUrl::Postgres(url) => {
            let store = PostgresStore::open(&url)
                .await
                .map_err(failure)?
                .for_node(node);
            Opened {
                tasks: Arc::new(store.clone()),
                fleet: fleet.then(|| FleetBacking {
                    wake: Arc::new(store.wakeup()),
                    store: Arc::new(store),
                }),
            }
        }
    };
    Ok(Some(opened))
}

fn failure(e: StoreError) -> Failure {
    Failure::new(ExitCode::Usage, format!("--store {e}"))
}
