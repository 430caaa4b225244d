//! The SQLite store's group commit. One writer thread takes every write
//! queued since the last commit, applies them in ONE transaction (each in a
//! savepoint, so one failing write fails alone), commits once and then
//! answers each caller.
//!
//! Every write goes through this thread, also under [`Durability::Relaxed`]
//! where a commit takes microseconds: committing on the caller's (async)
//! thread instead saved 0.02 ms of a sequential call on the development VM,
//! but a write to the log can stall for milliseconds while the kernel
//! writes it out, and with one async thread that stalled every request (the
//! p99 of 32 concurrent clients went to 27-31 ms).
//!
//! Checkpoints, and under `Relaxed` the flushes of the log to the disk, are
//! the [`WalKeeper`]'s, a thread beside the writer, so that neither holds
//! up the commits queued behind them.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::durability::Durability;
use crate::wal_keeper::WalKeeper;
use crate::StoreError;

/// Longest a deferred write waits for a durable one to share its commit.
pub const DEFERRED_LINGER: Duration = Duration::from_millis(50);
/// Most writes applied in one transaction.
const MAX_BATCH: usize = 1024;
/// Under [`Durability::Relaxed`], the shortest time between the end of one
/// commit and the start of the next. A commit that need not wait for the
/// disk takes microseconds, so under load every durable write became a
/// commit of its own, each rewriting the same few pages into the log: at 32
/// concurrent clients the log grew by ~40 MB/s and its flushes stalled the
/// writer for up to 25 ms. Waiting this long after a commit gathers the
/// writes of a burst into one; a lone write (a sequential client) comes
/// more than this after the last commit and does not wait. Under `Full`
/// the commit's own `fsync` does the gathering.
const RELAXED_COMMIT_GAP: Duration = Duration::from_micros(250);

/// Called once the batch holding a write committed (`None`) or failed.
pub(crate) type Done = Box<dyn FnOnce(Option<&str>) + Send>;
/// One write. Given the writer connection inside the batch's transaction
/// (or why there is none), it runs and says whether it succeeded (a failed
/// write's changes are rolled back alone) and what to do after the commit.
pub(crate) type Op = Box<dyn FnOnce(Result<&Connection, &str>) -> (bool, Done) + Send>;

pub(crate) struct Msg {
    pub op: Op,
    /// Someone waits for the commit: do not linger.
    pub durable: bool,
    /// Under [`Durability::Relaxed`], flush the log to the disk before
    /// answering (under `Full` every commit is flushed anyway).
    pub fsync: bool,
}

/// The writer's queue. Unlike a channel it does not wake the writer for
/// every write: only for a durable one (someone waits for it) and for the
/// first deferred one into an empty queue (which starts the linger). A
/// request's three deferred writes and its durable end then cost the
/// writer thread two wake-ups instead of four.
#[derive(Default)]
pub(crate) struct WriteQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

#[derive(Default)]
struct QueueState {
    msgs: VecDeque<Msg>,
    /// A durable write is queued: commit now.
    durable: bool,
    /// No more writes come (the store is being dropped).
    closed: bool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WriteQueue {
    pub fn push(&self, msg: Msg) -> Result<(), StoreError> {
        let mut q = lock(&self.state);
        if q.closed {
            return Err(StoreError::Task("the store is closed".into()));
        }
        let wake = msg.durable || q.msgs.is_empty();
        q.durable |= msg.durable;
        q.msgs.push_back(msg);
        drop(q);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_one();
    }

    /// The next batch, in queue order: at once when a durable write is
    /// queued (or MAX_BATCH are), but not before `not_before`, else once
    /// the first deferred write has lingered DEFERRED_LINGER. None once
    /// closed and empty.
    fn next_batch(&self, not_before: Option<Instant>) -> Option<Vec<Msg>> {
        let mut q = lock(&self.state);
        while q.msgs.is_empty() {
            if q.closed {
                return None;
            }
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        let linger_until = Instant::now() + DEFERRED_LINGER;
        loop {
            let until = if q.closed || q.msgs.len() >= MAX_BATCH {
                break;
            } else if q.durable {
                match not_before {
                    Some(t) => t,
                    None => break,
                }
            } else {
                linger_until
            };
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            q = self
                .wake
                .wait_timeout(q, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let n = q.msgs.len().min(MAX_BATCH);
        let batch: Vec<Msg> = q.msgs.drain(..n).collect();
        q.durable = q.msgs.iter().any(|m| m.durable);
        Some(batch)
    }
}

/// Counters the store exposes for tests and diagnostics.
#[derive(Default)]
pub(crate) struct WriterStats {
    /// Write transactions committed.
    pub commits: AtomicU64,
    /// WAL flushes the keeper did (only under `Relaxed`).
    pub log_flushes: AtomicU64,
    /// Checkpoints the keeper did.
    pub checkpoints: AtomicU64,
}

/// The writer thread's state: the write connection and the keeper of its
/// log.
pub(crate) struct Writer {
    conn: Connection,
    stats: Arc<WriterStats>,
    keeper: WalKeeper,
    durability: Durability,
}

impl Writer {
    pub fn new(
        conn: Connection,
        stats: Arc<WriterStats>,
        durability: Durability,
        wal: PathBuf,
        keeper_conn: Connection,
    ) -> Writer {
        let keeper = WalKeeper::start(keeper_conn, wal, durability, stats.clone());
        Writer {
            conn,
            stats,
            keeper,
            durability,
        }
    }

    /// Group commit until the queue is closed and empty; then the keeper
    /// checkpoints (and flushes) what is left.
    pub fn run(self, queue: Arc<WriteQueue>) {
        let gap = (self.durability == Durability::Relaxed).then_some(RELAXED_COMMIT_GAP);
        let mut last_commit: Option<Instant> = None;
        while let Some(batch) = queue.next_batch(last_commit.zip(gap).map(|(t, g)| t + g)) {
            self.commit(batch);
            last_commit = Some(Instant::now());
        }
    }

    /// Applies and commits `batch`, tells the keeper, answers every write
    /// (the ones that asked for it once the commit is on the disk).
    fn commit(&self, batch: Vec<Msg>) {
        let wants_fsync = batch.iter().any(|m| m.fsync);
        let (dones, message) = apply(&self.conn, batch, &self.stats.commits);
        if message.is_some() {
            return answer(dones, message.as_deref());
        }
        let commit = self.stats.commits.load(Ordering::Relaxed);
        if wants_fsync {
            self.keeper.answer_when_flushed(commit, dones);
        } else {
            self.keeper.committed(commit);
            answer(dones, None);
        }
    }
}

pub(crate) fn answer(dones: Vec<Done>, message: Option<&str>) {
    for done in dones {
        done(message);
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Applies a batch in one transaction, each write in a savepoint, and
/// commits once. Returns what answers each write and the batch's error.
fn apply(conn: &Connection, batch: Vec<Msg>, commits: &AtomicU64) -> (Vec<Done>, Option<String>) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let message = format!("cannot begin a write transaction: {e}");
        let dones = batch.into_iter().map(|m| (m.op)(Err(&message)).1).collect();
        return (dones, Some(message));
    }
    let mut dones = Vec::with_capacity(batch.len());
    for m in batch {
        if let Err(e) = exec(conn, "SAVEPOINT op") {
            let message = format!("cannot start a write: {e}");
            let (_, done) = (m.op)(Err(&message));
            dones.push(done);
            continue;
        }
        let (ok, done) = match catch_unwind(AssertUnwindSafe(|| (m.op)(Ok(conn)))) {
            Ok(r) => r,
            // The waiter's oneshot was dropped while unwinding: it sees an error.
            Err(_) => (false, Box::new(|_: Option<&str>| {}) as Done),
        };
        if !ok {
            let _ = exec(conn, "ROLLBACK TO op");
        }
        let _ = exec(conn, "RELEASE op");
        dones.push(done);
    }
    let message = match exec(conn, "COMMIT") {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Some(format!("commit failed: {e}"))
        }
    };
    (dones, message)
}
