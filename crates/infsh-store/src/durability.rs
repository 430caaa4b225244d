//! [`Durability`]: what a durable write promises when its future resolves.

use std::time::Duration;

/// How far a durable write ([`crate::TaskStore::insert_task`],
/// [`crate::TaskStore::finish_task`], ...) has gone when it returns.
///
/// Both settings keep the database consistent (SQLite's WAL guarantees it)
/// and neither loses an acknowledged write when infsh itself crashes or is
/// killed: a committed write is in the operating system's hands either way.
/// They differ on a power loss or a kernel crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is flushed to the disk (`fsync`) before the write
    /// returns (`synchronous=FULL`). Survives a power loss. Costs one
    /// `fsync` per commit on the request path (figures in
    /// docs/performance.md, "Figures behind the engine's code"; far more on
    /// a network disk).
    #[default]
    Full,
    /// A write returns once committed (`synchronous=NORMAL`); the store
    /// flushes the log to the disk at most [`RELAXED_SYNC_WINDOW`] after a
    /// commit, off the request path, and before it closes. A power loss or
    /// a kernel crash may lose the writes of that last window (like Redis's
    /// `appendfsync everysec` or PostgreSQL's `synchronous_commit = off`);
    /// a crash of infsh loses nothing.
    Relaxed,
}

/// Longest a commit waits for its `fsync` under [`Durability::Relaxed`]
/// (Redis's `everysec`). While the log is being flushed, the writer's next
/// writes to it can wait for the kernel (measured in docs/performance.md,
/// "Figures behind the engine's code"), so
/// fewer flushes mean fewer such stalls; a second bounds what a power loss
/// can take.
pub const RELAXED_SYNC_WINDOW: Duration = Duration::from_secs(1);

impl Durability {
    /// SQLite's `synchronous` pragma for the write connection.
    pub(crate) fn synchronous_pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Relaxed => "NORMAL",
        }
    }
}
