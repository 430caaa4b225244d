//! [`StageClock`]: where one task's time went inside the server, from the
//! submit to the durable end, stage by stage. The submit starts it, the
//! runner and the tracker mark it (a few clock reads and relaxed atomic
//! stores per task, cheap enough to be always on), and whoever waited for
//! the task reads it: the HTTP layer sends it as a `Server-Timing` header
//! (`infsh serve --server-timing`) and logs it at debug level
//! (`INFSH_LOG=infsh::timing=debug`); the benchmark's overhead breakdown is
//! made of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A point on a task's way through the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Validated, stored (or its insert queued) and queued for a worker.
    Queued = 0,
    /// Its runner started (the scheduler picked a worker for it).
    Dispatched = 1,
    /// The call was handed to the worker.
    Sent = 2,
    /// The worker's answer arrived.
    Answered = 3,
    /// The end was stored (durable) and is about to be published.
    Stored = 4,
}

const MARKS: usize = 5;
/// A mark not reached (yet).
const UNSET: u64 = u64::MAX;

/// Stage timestamps of one task, written by the engine's tasks as it
/// moves on and read by the caller that waits for its end.
#[derive(Debug)]
pub struct StageClock {
    start: Instant,
    /// Nanoseconds after `start`, per [`Mark`].
    marks: [AtomicU64; MARKS],
    /// The worker's own measure of the call, in nanoseconds.
    worker_ns: AtomicU64,
}

impl Default for StageClock {
    fn default() -> Self {
        StageClock::new()
    }
}

/// The stages of one task, as durations. A stage not reached is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Submit: app and function lookup, input validation, the insert (or
    /// queueing it) and the queue.
    pub accept: Option<Duration>,
    /// Waiting in the queue until the scheduler dispatched it to a worker.
    pub queue: Option<Duration>,
    /// From dispatch to the call's hand-off: setup when the worker needed
    /// it, status writes.
    pub dispatch: Option<Duration>,
    /// The worker's round trip less the worker's own time: framing, the
    /// socket in both directions, process wake-ups.
    pub ipc: Option<Duration>,
    /// The worker's own time for the call (Python: input validation, the
    /// function, output serialization), as the worker measured it.
    pub python: Option<Duration>,
    /// Output files and the durable end (the store's commit).
    pub store: Option<Duration>,
    /// From the published end to the waiting caller reading it.
    pub wake: Option<Duration>,
    /// The whole: submit to the caller reading the end.
    pub total: Duration,
}

impl StageClock {
    pub fn new() -> StageClock {
        StageClock {
            start: Instant::now(),
            marks: std::array::from_fn(|_| AtomicU64::new(UNSET)),
            worker_ns: AtomicU64::new(UNSET),
        }
    }

    pub(crate) fn mark(&self, mark: Mark) {
        let ns = self.start.elapsed().as_nanos().min(u128::from(UNSET - 1)) as u64;
        self.marks[mark as usize].store(ns, Ordering::Relaxed);
    }

    /// The worker's own measure of the call.
    pub(crate) fn worker_seconds(&self, seconds: f64) {
        if let Ok(d) = Duration::try_from_secs_f64(seconds) {
            let ns = d.as_nanos().min(u128::from(UNSET - 1)) as u64;
            self.worker_ns.store(ns, Ordering::Relaxed);
        }
    }

    fn at(&self, mark: Mark) -> Option<u64> {
        Some(self.marks[mark as usize].load(Ordering::Relaxed)).filter(|&ns| ns != UNSET)
    }

    /// The stages so far, read now (the end of `wake` and `total`).
    pub fn times(&self) -> StageTimes {
        let now = self.start.elapsed().as_nanos().min(u128::from(UNSET - 1)) as u64;
        let between = |from: Option<u64>, to: Option<u64>| match (from, to) {
            (Some(a), Some(b)) => Some(Duration::from_nanos(b.saturating_sub(a))),
            _ => None,
        };
        let queued = self.at(Mark::Queued);
        let dispatched = self.at(Mark::Dispatched);
        let sent = self.at(Mark::Sent);
        let answered = self.at(Mark::Answered);
        let stored = self.at(Mark::Stored);
        let round_trip = between(sent, answered);
        let python = Some(self.worker_ns.load(Ordering::Relaxed))
            .filter(|&ns| ns != UNSET)
            .map(Duration::from_nanos)
            .filter(|_| round_trip.is_some());
        StageTimes {
            accept: queued.map(Duration::from_nanos),
            queue: between(queued, dispatched),
            dispatch: between(dispatched, sent),
            ipc: round_trip.map(|rt| rt.saturating_sub(python.unwrap_or_default())),
            python,
            store: between(answered, stored),
            wake: between(stored, Some(now)),
            total: Duration::from_nanos(now),
        }
    }
}

impl StageTimes {
    /// `Server-Timing` header value (durations in milliseconds), stages in
    /// order, those not reached left out.
    pub fn server_timing(&self) -> String {
        let stages = [
            ("accept", self.accept),
            ("queue", self.queue),
            ("dispatch", self.dispatch),
            ("ipc", self.ipc),
            ("python", self.python),
            ("store", self.store),
            ("wake", self.wake),
            ("total", Some(self.total)),
        ];
        stages
            .iter()
            .filter_map(|(name, d)| d.map(|d| format!("{name};dur={:.3}", d.as_secs_f64() * 1e3)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_the_gaps_between_marks_and_python_comes_out_of_ipc() {
        // Started 20 ms ago, so every mark below is in the past.
        let mut clock = StageClock::new();
        clock.start -= Duration::from_millis(20);
        let at = |ms: u64| clock.start + Duration::from_millis(ms);
        // Marks set by hand at known offsets.
        for (mark, ms) in [
            (Mark::Queued, 1),
            (Mark::Dispatched, 3),
            (Mark::Sent, 4),
            (Mark::Answered, 14),
            (Mark::Stored, 15),
        ] {
            let ns = (at(ms) - clock.start).as_nanos() as u64;
            clock.marks[mark as usize].store(ns, Ordering::Relaxed);
        }
        clock.worker_seconds(0.008);
        let t = clock.times();
        assert_eq!(t.accept, Some(Duration::from_millis(1)));
        assert_eq!(t.queue, Some(Duration::from_millis(2)));
        assert_eq!(t.dispatch, Some(Duration::from_millis(1)));
        assert_eq!(t.python, Some(Duration::from_millis(8)));
        assert_eq!(t.ipc, Some(Duration::from_millis(2)));
        assert_eq!(t.store, Some(Duration::from_millis(1)));
        assert!(t.wake.unwrap() >= Duration::from_millis(5), "{t:?}");
        assert!(t.total >= Duration::from_millis(20), "{t:?}");
        let header = t.server_timing();
        assert!(
            header.starts_with(
                "accept;dur=1.000, queue;dur=2.000, dispatch;dur=1.000, ipc;dur=2.000, \
                 python;dur=8.000, store;dur=1.000, wake;dur="
            ),
            "{header}"
        );
        assert!(header.contains(", total;dur="), "{header}");
    }

    #[test]
    fn stages_not_reached_are_left_out() {
        let clock = StageClock::new();
        clock.mark(Mark::Queued);
        // A worker time without a round trip (cannot happen) is not shown.
        clock.worker_seconds(0.5);
        let t = clock.times();
        assert!(t.accept.is_some());
        assert_eq!(
            (t.queue, t.dispatch, t.ipc, t.python, t.store, t.wake),
            (None, None, None, None, None, None)
        );
        let header = t.server_timing();
        assert!(header.starts_with("accept;dur="), "{header}");
        assert!(!header.contains("python"), "{header}");
    }
}
