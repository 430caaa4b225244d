//! What can go wrong in the store. One enum for the task store and the file
//! store; the engine maps it to its own `EngineError::Store` (or to "unknown
//! task/file" for [`StoreError::NotFound`]).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stored value that does not decode (bad JSON, unknown status).
    #[error("corrupt record {id}: {message}")]
    Corrupt { id: String, message: String },
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
    /// The blocking worker thread or the writer thread failed (panicked,
    /// stopped), or a write's batch did not commit.
    #[error("store task failed: {0}")]
    Task(String),
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
