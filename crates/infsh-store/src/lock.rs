//! A mutex lock that survives poisoning.
//!
//! The store's threads (the writer, the WAL keeper, the async callers) share
//! a few mutexes; a write that panics is caught on the writer thread
//! (`writer::apply`), and the store must go on serving the others, so no
//! lock here treats a poisoned mutex as fatal. It is its own module because
//! `sqlite`, `writer` and `wal_keeper` all use it: kept below them, it makes
//! none of them import another for it.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the guard of a poisoned mutex as it is.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
