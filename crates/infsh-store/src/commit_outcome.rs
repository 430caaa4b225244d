//! What the writer and the WAL keeper share: how a queued write is told the
//! outcome of its commit ([`Done`], [`answer`]) and the counters both threads
//! keep ([`WriterStats`]).
//!
//! The writer answers a write once its batch commits, or hands it to the
//! keeper to answer once the log is flushed (`Durability::Relaxed`); both
//! count what they did. These pieces live here, below both, so that the
//! dependency runs one way: `writer` starts and feeds `wal_keeper`, and the
//! keeper knows nothing of the writer.

use std::sync::atomic::AtomicU64;

use crate::error::CommitError;

/// Called once the batch holding a write committed (`None`) or failed (why).
pub(crate) type Done = Box<dyn FnOnce(Option<&CommitError>) + Send>;

/// Answers every write of a batch with the same outcome.
pub(crate) fn answer(dones: Vec<Done>, error: Option<&CommitError>) {
    for done in dones {
        done(error);
    }
}

/// Counters the store exposes for tests and diagnostics.
#[derive(Default)]
pub(crate) struct WriterStats {
    /// Write transactions committed (by the writer).
    pub commits: AtomicU64,
    /// WAL flushes the keeper did (only under `Relaxed`).
    pub log_flushes: AtomicU64,
    /// Checkpoints the keeper did.
    pub checkpoints: AtomicU64,
}
