//! The connection pool: one URL, a handful of connections shared by every
//! request of this API node. A failure to connect names the URL (password
//! redacted) and says why in the server's or the socket's words.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::NoTls;

use crate::error::describe_postgres;
use crate::store_url::redact;
use crate::StoreError;

/// Connections per API node. Each request holds one only for its statement
/// (or its short transaction); PostgreSQL's default `max_connections` is
/// 100, so a few nodes fit.
pub(crate) const POOL_SIZE: usize = 16;
/// How long opening one connection may take (a host that drops packets
/// would otherwise hang the start).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool for `url` and the parsed configuration; connects lazily (see
/// [`first_connection`]).
pub(crate) fn pool(url: &str) -> Result<(Pool, tokio_postgres::Config), StoreError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|e| StoreError::BadUrl {
        url: redact(url),
        message: describe_postgres(&e),
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("infsh");
    }
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            // A broken connection shows on its next statement, which fails
            // and drops it: no round trip per checkout.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(1)))
        .build()
        .map(|pool| (pool, config))
        .map_err(|e| StoreError::Pool(e.to_string()))
}

/// The first connection of a new store: its failure is the store's
/// ([`StoreError::Connect`], naming the URL).
pub(crate) async fn first_connection(pool: &Pool, url: &str) -> Result<Object, StoreError> {
    pool.get().await.map_err(|e| StoreError::Connect {
        url: redact(url),
        message: pool_message(&e),
    })
}

/// A connection for one request.
pub(crate) async fn connection(pool: &Pool) -> Result<Object, StoreError> {
    pool.get()
        .await
        .map_err(|e| StoreError::Pool(pool_message(&e)))
}

fn pool_message(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => describe_postgres(e),
        PoolError::Timeout(_) => "timed out connecting".to_string(),
        other => other.to_string(),
    }
}
