//! The SQLite store's group commit. One writer thread takes every write
//! queued since the last commit, applies them in ONE transaction (each in a
//! savepoint, so one failing write fails alone), commits once and then
//! answers each caller.
//!
//! Every write goes through this thread, also under [`Durability::Relaxed`]
//! where a commit is cheap: committing on the caller's (async) thread
//! instead saved little of a sequential call, but a write to the log can
//! stall while the kernel writes it out, and with one async thread that
//! stalled every request (the p99 under many concurrent clients rose
//! several-fold; measured in docs/performance.md, "Figures behind the
//! engine's code").
//!
//! Checkpoints, and under `Relaxed` the flushes of the log to the disk, are
//! the [`WalKeeper`]'s, a thread beside the writer, so that neither holds
//! up the commits queued behind them. The writer starts and feeds the
//! keeper; what both use to answer writes and count their work is in
//! `commit_outcome`, so the keeper does not import the writer.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::commit_outcome::{answer, Done, WriterStats};
use crate::durability::Durability;
use crate::error::CommitError;
use crate::lock::lock;
use crate::wal_keeper::WalKeeper;
use crate::StoreError;

/// Longest a deferred write waits for a durable one to share its commit.
pub const DEFERRED_LINGER: Duration = Duration::from_millis(50);
/// Most writes applied in one transaction.
const MAX_BATCH: usize = 1024;
/// Under [`Durability::Relaxed`], the shortest time between the end of one
/// commit and the start of the next. A commit that need not wait for the
/// disk is quick, so under load every durable write became a commit of its
/// own, each rewriting the same few pages into the log, which grew fast and
/// whose flushes stalled the writer (figures in docs/performance.md,
/// "Figures behind the engine's code"). Waiting this long after a commit
/// gathers the writes of a burst into one; a lone write (a sequential
/// client) comes more than this after the last commit and does not wait.
/// Under `Full` the commit's own `fsync` does the gathering.
const RELAXED_COMMIT_GAP: Duration = Duration::from_micros(250);

/// One write. Given the writer connection inside the batch's transaction
/// (or why there is none), it runs and says whether it succeeded (a failed
/// write's changes are rolled back alone) and what to do after the commit.
pub(crate) type Op = Box<dyn FnOnce(Result<&Connection, &CommitError>) -> (bool, Done) + Send>;

pub(crate) struct Msg {
    pub op: Op,
    /// Someone waits for the commit: do not linger.
    pub durable: bool,
    /// Under [`Durability::Relaxed`], flush the log to the disk before
    /// answering (under `Full` every commit is flushed anyway).
    pub fsync: bool,
}

/// The writer's queue. Unlike a channel it does not wake the writer for
/// every write: a durable one (someone waits for it) always wakes it, a
/// deferred one only when the writer is parked. While writes keep coming
/// the writer never parks: between them it sleeps at most DEFERRED_LINGER,
/// and each wake-up looks at the queue, so a deferred write is still
/// committed DEFERRED_LINGER after it was queued. A request's deferred
/// insert and its durable end then cost one wake-up of the writer thread,
/// not two: a cross-thread wake-up is a measurable share of a sequential
/// call (docs/performance.md, "Figures behind the engine's code").
pub(crate) struct WriteQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
    /// How long a deferred write waits for a durable one: DEFERRED_LINGER.
    linger: Duration,
    /// How long the writer sleeps with nothing queued before it parks. At
    /// most `linger`, or a deferred write queued meanwhile would wait
    /// longer than that.
    idle_tick: Duration,
}

impl Default for WriteQueue {
    fn default() -> Self {
        WriteQueue {
            state: Mutex::default(),
            wake: Condvar::new(),
            linger: DEFERRED_LINGER,
            idle_tick: DEFERRED_LINGER,
        }
    }
}

#[derive(Default)]
struct QueueState {
    msgs: VecDeque<Msg>,
    /// When the oldest queued write was queued (its linger starts then).
    oldest_at: Option<Instant>,
    /// A durable write is queued: commit now.
    durable: bool,
    /// No more writes come (the store is being dropped).
    closed: bool,
    /// The writer sleeps without a deadline (nothing was written for
    /// DEFERRED_LINGER): the next write must wake it.
    parked: bool,
    /// How many times a push woke the writer (for tests).
    wakes: u64,
}

impl WriteQueue {
    pub fn push(&self, msg: Msg) -> Result<(), StoreError> {
        let mut q = lock(&self.state);
        if q.closed {
            return Err(StoreError::Closed);
        }
        if q.msgs.is_empty() {
            q.oldest_at = Some(Instant::now());
        }
        let wake = msg.durable || q.parked;
        if wake {
            // Unparked now: further writes before the writer runs need not wake it again.
            q.parked = false;
            q.wakes += 1;
        }
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

    /// How many pushes woke the writer so far.
    #[cfg(test)]
    fn wakes(&self) -> u64 {
        lock(&self.state).wakes
    }

    /// The next batch, in queue order: at once when a durable write is
    /// queued (or MAX_BATCH are), but not before `not_before`, else once
    /// the oldest deferred write has lingered DEFERRED_LINGER. None once
    /// closed and empty.
    fn next_batch(&self, not_before: Option<Instant>) -> Option<Vec<Msg>> {
        let mut q = lock(&self.state);
        // Nothing queued: sleep one idle tick (deferred writes queued
        // meanwhile do not wake us), then park until a push wakes us.
        let mut idled = false;
        while q.msgs.is_empty() {
            if q.closed {
                return None;
            }
            if idled {
                q.parked = true;
                q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                q.parked = false;
            } else {
                let (guard, waited) = self
                    .wake
                    .wait_timeout(q, self.idle_tick)
                    .unwrap_or_else(|p| p.into_inner());
                q = guard;
                idled = waited.timed_out();
            }
        }
        let linger_until = q.oldest_at.unwrap_or_else(Instant::now) + self.linger;
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
        if q.msgs.is_empty() {
            // (What is left, past MAX_BATCH, keeps the earlier time: it is
            // committed sooner, never later.)
            q.oldest_at = None;
        }
        Some(batch)
    }
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
        let (dones, failed) = apply(&self.conn, batch, &self.stats.commits);
        if failed.is_some() {
            return answer(dones, failed.as_ref());
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

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Applies a batch in one transaction, each write in a savepoint, and
/// commits once. Returns what answers each write and the batch's error.
fn apply(
    conn: &Connection,
    batch: Vec<Msg>,
    commits: &AtomicU64,
) -> (Vec<Done>, Option<CommitError>) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let error = CommitError::Begin(Arc::new(e));
        let dones = batch.into_iter().map(|m| (m.op)(Err(&error)).1).collect();
        return (dones, Some(error));
    }
    let mut dones = Vec::with_capacity(batch.len());
    for m in batch {
        if let Err(e) = exec(conn, "SAVEPOINT op") {
            let error = CommitError::Savepoint(Arc::new(e));
            let (_, done) = (m.op)(Err(&error));
            dones.push(done);
            continue;
        }
        let (ok, done) = match catch_unwind(AssertUnwindSafe(|| (m.op)(Ok(conn)))) {
            Ok(r) => r,
            // The waiter's oneshot was dropped while unwinding: it sees an error.
            Err(_) => (false, Box::new(|_: Option<&CommitError>| {}) as Done),
        };
        if !ok {
            let _ = exec(conn, "ROLLBACK TO op");
        }
        let _ = exec(conn, "RELEASE op");
        dones.push(done);
    }
    let failed = match exec(conn, "COMMIT") {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Some(CommitError::Commit(Arc::new(e)))
        }
    };
    (dones, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(durable: bool) -> Msg {
        Msg {
            op: Box::new(|_| (true, Box::new(|_: Option<&CommitError>| {}) as Done)),
            durable,
            fsync: false,
        }
    }

    /// Takes batches on a thread of its own, as the writer does: each
    /// batch's size and when it was taken.
    fn take_batches(queue: &Arc<WriteQueue>) -> std::sync::mpsc::Receiver<(usize, Instant)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let queue = queue.clone();
        std::thread::spawn(move || {
            while let Some(batch) = queue.next_batch(None) {
                let _ = tx.send((batch.len(), Instant::now()));
            }
        });
        rx
    }

    const PATIENCE: Duration = Duration::from_secs(10);

    #[test]
    fn a_parked_writer_is_woken_by_a_deferred_write_which_still_lingers() {
        let queue = Arc::new(WriteQueue::default());
        let batches = take_batches(&queue);
        let deadline = Instant::now() + PATIENCE;
        while !lock(&queue.state).parked {
            assert!(Instant::now() < deadline, "the idle writer never parked");
            std::thread::yield_now();
        }
        let queued = Instant::now();
        queue.push(msg(false)).unwrap();
        assert_eq!(queue.wakes(), 1);
        let (n, taken) = batches.recv_timeout(PATIENCE).unwrap();
        assert_eq!(n, 1);
        assert!(
            taken - queued >= DEFERRED_LINGER,
            "taken after {:?}",
            taken - queued
        );
        queue.close();
    }

    #[test]
    fn deferred_writes_do_not_wake_a_writer_that_is_not_parked() {
        // A linger and an idle tick far longer than the test: the writer
        // can neither park nor take the deferred writes on its own.
        let queue = Arc::new(WriteQueue {
            linger: Duration::from_secs(600),
            idle_tick: Duration::from_secs(600),
            ..WriteQueue::default()
        });
        let batches = take_batches(&queue);
        queue.push(msg(true)).unwrap();
        assert_eq!(batches.recv_timeout(PATIENCE).unwrap().0, 1);
        for _ in 0..10 {
            queue.push(msg(false)).unwrap();
        }
        assert_eq!(queue.wakes(), 1, "only the durable write woke the writer");
        // The next durable write wakes it and takes the deferred ones along.
        queue.push(msg(true)).unwrap();
        assert_eq!(queue.wakes(), 2);
        assert_eq!(batches.recv_timeout(PATIENCE).unwrap().0, 11);
        queue.close();
    }

    #[test]
    fn a_closed_queue_ends_the_writer_after_its_last_batch() {
        let queue = Arc::new(WriteQueue::default());
        queue.push(msg(false)).unwrap();
        queue.close();
        assert!(matches!(queue.push(msg(true)), Err(StoreError::Closed)));
        assert_eq!(queue.next_batch(None).map(|b| b.len()), Some(1));
        assert!(queue.next_batch(None).is_none());
    }
}
