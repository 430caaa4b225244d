//! The WAL keeper: a thread beside the writer that looks after the
//! write-ahead log, so that neither of its two slow jobs holds up the
//! commits queued behind it.
//!
//! - **Checkpoints** (both durabilities). SQLite's automatic checkpoint runs
//!   inside a commit, on the writer thread: it copies the log into the
//!   database and `fsync`s both, which is slow (docs/performance.md,
//!   "Figures behind the engine's code"), and every write queued meanwhile
//!   waits (that was the p99 under many concurrent clients). The keeper
//!   checkpoints on a connection of its own instead, `PASSIVE` (it never
//!   blocks the writer), at most [`KEEP_EVERY`] after
//!   the first commit since the last one. The writer's own automatic
//!   checkpoint stays as a safety net, at a size the keeper never lets the
//!   log reach ([`WRITER_AUTOCHECKPOINT_PAGES`]).
//! - **Flushes** ([`Durability::Relaxed`] only, where a commit is not
//!   flushed by itself): the log is `fsync`ed at most
//!   [`RELAXED_SYNC_WINDOW`] after the oldest commit not yet on the disk,
//!   at once for the writes that wait for it (`TaskStore::sync`), and a last
//!   time when the store closes. `fsync` flushes whatever of the file is
//!   dirty when it is called, so the commits counted before the call are on
//!   the disk when it returns, whatever the writer does meanwhile.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::commit_outcome::{answer, Done, WriterStats};
use crate::durability::{Durability, RELAXED_SYNC_WINDOW};
use crate::error::CommitError;
use crate::lock::lock;
use infsh_core::ErrorChain;

/// Longest the keeper lets commits pile up in the log before it
/// checkpoints (and, under `Relaxed`, flushes) them.
pub(crate) const KEEP_EVERY: Duration = RELAXED_SYNC_WINDOW;
/// The writer's own automatic checkpoint, in log pages (SQLite's default is
/// 1,000): only reached if the keeper falls far behind.
pub(crate) const WRITER_AUTOCHECKPOINT_PAGES: u32 = 20_000;

pub(crate) struct WalKeeper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    wal: PathBuf,
    durability: Durability,
    stats: Arc<WriterStats>,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// The writer's last commit (its number in `WriterStats::commits`).
    committed: u64,
    /// The last commit the keeper has taken care of.
    kept: u64,
    /// When the oldest commit after `kept` was made.
    oldest_unkept: Option<Instant>,
    /// Writes to answer after the next flush.
    waiting: Vec<Done>,
    closed: bool,
}

impl WalKeeper {
    /// Starts the keeper with `conn`, a connection of its own to the
    /// database (for checkpoints).
    pub fn start(
        conn: Connection,
        wal: PathBuf,
        durability: Durability,
        stats: Arc<WriterStats>,
    ) -> WalKeeper {
        let shared = Arc::new(Shared {
            wal,
            durability,
            stats,
            state: Mutex::default(),
            wake: Condvar::new(),
        });
        let runner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("infsh-store-wal".into())
            .spawn(move || runner.run(conn))
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start the store's WAL keeper: the log is checkpointed only by the writer (every 20,000 pages) and, under relaxed durability, flushed only for `sync` and at close")
            })
            .ok();
        WalKeeper { shared, thread }
    }

    /// Commit number `commit` was made.
    pub fn committed(&self, commit: u64) {
        let mut s = lock(&self.shared.state);
        s.committed = s.committed.max(commit);
        if s.oldest_unkept.is_none() {
            s.oldest_unkept = Some(Instant::now());
            drop(s);
            self.shared.wake.notify_one();
        }
    }

    /// Commit number `commit` was made; `dones` are answered once it is on
    /// the disk (at once under `Full`, where the commit flushed itself).
    pub fn answer_when_flushed(&self, commit: u64, dones: Vec<Done>) {
        if self.shared.durability == Durability::Full {
            self.committed(commit);
            return answer(dones, None);
        }
        if self.thread.is_none() {
            let result = self.shared.flush_log();
            return answer(dones, result.err().as_ref());
        }
        let mut s = lock(&self.shared.state);
        s.committed = s.committed.max(commit);
        s.oldest_unkept.get_or_insert_with(Instant::now);
        s.waiting.extend(dones);
        drop(s);
        self.shared.wake.notify_one();
    }
}

impl Drop for WalKeeper {
    /// Flushes what is not on the disk yet and stops the thread.
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.wake.notify_one();
        match self.thread.take() {
            Some(thread) => {
                let _ = thread.join();
            }
            None if self.shared.durability == Durability::Relaxed => {
                // A failure is logged; nobody is left to tell.
                let _ = self.shared.flush_log();
            }
            None => {}
        }
    }
}

/// What the keeper does next.
struct Job {
    /// The commit up to which it keeps the log.
    upto: u64,
    /// Writes waiting for a flush.
    waiting: Vec<Done>,
    /// The window passed (or the store closes): checkpoint too.
    checkpoint: bool,
}

impl Shared {
    fn run(&self, conn: Connection) {
        while let Some(job) = self.next_job() {
            let flushed = match self.durability {
                Durability::Relaxed => self.flush_log(),
                Durability::Full => Ok(()),
            };
            answer(job.waiting, flushed.as_ref().err());
            if job.checkpoint {
                self.checkpoint(&conn);
            }
            lock(&self.state).kept = job.upto;
        }
    }

    /// Waits for work: writes waiting for a flush, or commits older than
    /// the window. None once closed with nothing left.
    fn next_job(&self) -> Option<Job> {
        let mut s = lock(&self.state);
        loop {
            let pending = s.committed > s.kept;
            let due = s.oldest_unkept.map(|t| t + KEEP_EVERY);
            let window_over = pending && (s.closed || due.is_some_and(|d| d <= Instant::now()));
            if !s.waiting.is_empty() || window_over {
                // A flush for waiting writes alone does not reset the window
                // of the checkpoint.
                if window_over {
                    s.oldest_unkept = None;
                }
                return Some(Job {
                    upto: if window_over { s.committed } else { s.kept },
                    waiting: std::mem::take(&mut s.waiting),
                    checkpoint: window_over,
                });
            }
            if s.closed {
                return None;
            }
            s = match due {
                Some(due) if pending => {
                    let left = due.saturating_duration_since(Instant::now());
                    self.wake
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                _ => self.wake.wait(s).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }

    /// Copies the log into the database as far as readers allow, without
    /// blocking the writer; SQLite `fsync`s the log before and the database
    /// after. Its failure is logged (the writer's safety net remains).
    fn checkpoint(&self, conn: &Connection) {
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => {
                self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %ErrorChain(&e), "store checkpoint failed"),
        }
    }

    /// `fsync`s the WAL file: every commit made before the call is on the
    /// disk once it returns.
    fn flush_log(&self) -> Result<(), CommitError> {
        let result = match std::fs::File::open(&self.wal) {
            Ok(file) => file.sync_data(),
            // No log yet: nothing was ever committed through it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        self.stats.log_flushes.fetch_add(1, Ordering::Relaxed);
        result.map_err(|e| {
            let error = CommitError::Flush {
                path: self.wal.clone(),
                source: Arc::new(e),
            };
            tracing::error!(error = %ErrorChain(&error), "store log flush failed");
            error
        })
    }
}
