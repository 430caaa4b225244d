//! What can go wrong in the store. One enum for the task store and the file
//! store; the engine maps it to its own `EngineError::Store` (or to "unknown
//! task/file" for [`StoreError::NotFound`]).

use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A PostgreSQL statement failed (the server's own message, when it
    /// sent one).
    #[error("database error: {}", describe_postgres(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection to PostgreSQL could be had from the pool (the server
    /// is down, or refused us).
    #[error("database error: {0}")]
    Pool(String),
    /// A `--store` URL that does not parse or names no store infsh has.
    #[error("{url}: {message}")]
    BadUrl { url: String, message: String },
    /// The store named by a URL could not be opened: nothing listens, the
    /// login is refused, the database does not exist. `url` has its
    /// password redacted.
    #[error("{url}: cannot connect: {message}")]
    Connect { url: String, message: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A request to the files bucket (`--files s3://`) failed; `key` is
    /// `s3://bucket/prefix/id`.
    #[error("{what} {key}: {message}")]
    Object {
        what: &'static str,
        key: String,
        message: String,
    },
    /// A stored value that does not decode (an unknown status or log type).
    #[error("corrupt record {id}: {message}")]
    Corrupt { id: String, message: String },
    /// A stored JSON column (input, setup, output, metadata) that does not
    /// parse.
    #[error("corrupt record {id}: {field}: {source}")]
    CorruptJson {
        id: String,
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The database was written by a newer infsh (it has migrations this
    /// build does not know).
    #[error(
        "the database is at schema version {found}, newer than this build's {known}; upgrade infsh"
    )]
    TooNew { found: i64, known: i64 },
    #[error("no such {kind} \"{id}\"")]
    NotFound { kind: &'static str, id: String },
    /// A paging cursor that no page handed out.
    #[error("invalid cursor \"{0}\"")]
    InvalidCursor(String),
    /// A file id that is not 32 lowercase hex characters.
    #[error("invalid file id")]
    InvalidId,
    /// A blocking task of the store (a read, a file copy, the open)
    /// panicked or was aborted.
    #[error("store task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The writer thread could not be started.
    #[error("store task failed: cannot start the store writer: {0}")]
    WriterStart(#[source] std::io::Error),
    /// The store is being dropped: it takes no more writes.
    #[error("store task failed: the store is closed")]
    Closed,
    /// The writer thread went away without answering a write (it panicked).
    #[error("store task failed: the store writer dropped a write")]
    WriteDropped,
    /// The batch holding the write did not commit, or (under
    /// `Durability::Relaxed`, for a write that asked for it) its log did
    /// not reach the disk.
    #[error("store task failed: {0}")]
    Commit(#[from] CommitError),
}

/// Why a batch of writes failed. Every write of the batch is told the same
/// error, so it is `Clone` and shares its cause.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("cannot begin a write transaction: {0}")]
    Begin(#[source] Arc<rusqlite::Error>),
    /// The savepoint of one write could not be made: that write fails alone.
    #[error("cannot start a write: {0}")]
    Savepoint(#[source] Arc<rusqlite::Error>),
    #[error("commit failed: {0}")]
    Commit(#[source] Arc<rusqlite::Error>),
    /// The `fsync` of the write-ahead log failed.
    #[error("cannot flush {} to the disk: {source}", path.display())]
    Flush {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
}

/// A PostgreSQL error as one line: the server's message (`database "x" does
/// not exist`) when it sent one, else the driver's words with their cause
/// (`error connecting to server: Connection refused (os error 111)`).
pub fn describe_postgres(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

impl StoreError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infsh_core::ErrorChain;
    use std::error::Error;

    #[test]
    fn a_failed_flush_keeps_its_io_error_and_reads_as_before() {
        let flush = CommitError::Flush {
            path: PathBuf::from("/data/infsh.db-wal"),
            source: Arc::new(std::io::Error::other("no space left on device")),
        };
        let e = StoreError::from(flush);
        assert!(matches!(e, StoreError::Commit(CommitError::Flush { .. })));
        let io = e
            .source()
            .and_then(|commit| commit.source())
            .and_then(|io| io.downcast_ref::<Arc<std::io::Error>>())
            .expect("the io error is the cause of the cause");
        assert_eq!(io.to_string(), "no space left on device");
        let message = "store task failed: cannot flush /data/infsh.db-wal to the disk: no space left on device";
        assert_eq!(e.to_string(), message);
        assert_eq!(
            ErrorChain(&e).to_string(),
            message,
            "the log line says it once"
        );
    }

    #[test]
    fn a_failed_commit_keeps_the_sqlite_error() {
        let sqlite = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let e = StoreError::Commit(CommitError::Commit(Arc::new(sqlite)));
        let cause = e.source().and_then(|c| c.source()).expect("a cause");
        assert!(
            cause.downcast_ref::<Arc<rusqlite::Error>>().is_some() || cause.is::<rusqlite::Error>()
        );
        assert_eq!(
            e.to_string(),
            "store task failed: commit failed: database or disk is full"
        );
        assert!(!e.is_not_found());
    }
}
