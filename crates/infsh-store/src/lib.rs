//! Durable task and file records for `infsh serve`.
//!
//! - [`TaskStore`] (`store`): the async, object-safe interface the engine
//!   uses; every write but the `*_deferred` ones is committed when it
//!   returns.
//! - [`SqliteStore`] (`sqlite`): the default implementation, one SQLite file
//!   in WAL mode, writes group-committed by one writer thread (`writer`);
//!   checkpoints and (under `Relaxed`) flushes of the log by a thread
//!   beside it (`wal_keeper`). The writer starts and feeds the keeper;
//!   what both use (how a write is answered, their counters) is in
//!   `commit_outcome`, below both, and the poison-tolerant `lock` in `lock`.
//! - [`PostgresStore`] (`postgres/`): the store of API nodes sharing one
//!   PostgreSQL database; [`StoreUrl`] (`store_url`) parses `--store`.
//! - [`Durability`] (`durability`): whether a durable write is flushed to
//!   the disk before it returns (`Full`) or shortly after (`Relaxed`).
//! - `migrations`: versioned SQL under `migrations/`, portable to PostgreSQL.
//! - [`FileStore`] (`files`): file bytes under random ids, in a folder or
//!   an S3-compatible bucket ([`FileBackend`], `file_backend`: `--files`).
//! - [`fleet::FleetStore`] (`fleet`): remote engines, claims with leases,
//!   lease expiry; implemented for SQLite in `sqlite_fleet` and for
//!   PostgreSQL in `postgres/fleet` (woken across API nodes by
//!   [`PgWakeup`]'s `LISTEN/NOTIFY`).
//! - `keys`: API keys created at run time ([`ApiKeyRecord`], digests
//!   only) and their SQLite statements (PostgreSQL's in `postgres/keys.rs`).
//! - `webhooks`: the webhook outbox's records ([`WebhookDelivery`]) and
//!   its SQLite statements (PostgreSQL's in `postgres/webhooks.rs`).
//! - `versions`: deployed app versions ([`AppVersionRecord`]) and which
//!   one of each app is current, with their SQLite statements
//!   (PostgreSQL's in `postgres/versions.rs`).
//! - `model`: the records; `ids`: random ids and timestamps. A task's status
//!   is infsh-core's [`TaskStatus`], re-exported here.

mod commit_outcome;
mod durability;
mod error;
mod file_backend;
mod file_page;
mod file_sync;
mod files;
pub mod fleet;
mod fleet_sessions;
mod ids;
mod keys;
mod lock;
pub mod migrations;
mod model;
pub mod nodes;
mod postgres;
mod rows;
mod sqlite;
mod sqlite_fleet;
mod sqlite_fleet_sessions;
mod sqlite_lifecycle;
mod store;
mod store_url;
mod versions;
mod wal_keeper;
mod webhooks;
mod writer;

pub use durability::{Durability, RELAXED_SYNC_WINDOW};
pub use error::{describe_postgres, CommitError, StoreError};
pub use file_backend::{ByteStream, FileBackend, FilesUrl};
pub use file_page::{file_cursor, parse_file_cursor};
pub use files::{
    clean_filename, FileStore, PartialUpload, Placed, StoredBytes, DEFAULT_CONTENT_TYPE,
};
pub use ids::{format_timestamp, is_valid_id, new_id, now_ms, parse_timestamp, ID_LEN};
pub use infsh_core::Payload;
pub use infsh_core::TaskStatus;
pub use keys::ApiKeyRecord;
pub use model::*;
pub use postgres::{
    PgWakeup, PostgresStore, LISTENER_APPLICATION, MIGRATION_LOCK, QUEUE_CHANNEL, TASK_CHANNEL,
};
pub use sqlite::{SqliteStore, MAX_PAGE};
pub use store::{TaskFilter, TaskStore};
pub use store_url::{redact, StoreUrl};
pub use versions::{AppVersionRecord, VersionOutcome, VersionStatus};
pub use webhooks::{DeliveryState, WebhookAttempt, WebhookDelivery};
pub use writer::DEFERRED_LINGER;
