//! The engine's lifecycle: one phase, read by the engine handle, every
//! app's scheduler and the task runners, instead of a flag per layer.
//!
//! `Running` → `Draining` (shutdown began: runs are refused with
//! `EngineError::ShuttingDown`, nothing more is dispatched, queued tasks stay
//! QUEUED in the store for the next start) → `Stopping` (the grace ended and
//! the workers are being unloaded: a worker that exits now interrupted its
//! tasks, it did not crash). Phases only move forward.

use std::sync::atomic::{AtomicU8, Ordering};

/// Where the engine is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Taking and running tasks.
    Running = 0,
    /// Shutting down: finishing what runs, taking and dispatching nothing.
    Draining = 1,
    /// Stopping the workers.
    Stopping = 2,
}

impl Phase {
    fn from_u8(n: u8) -> Phase {
        match n {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Stopping,
        }
    }
}

/// The engine's current [`Phase`], shared by all its parts.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle(AtomicU8);

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.0.load(Ordering::SeqCst))
    }

    /// Moves on to `to`; a phase already past it stays.
    pub fn advance(&self, to: Phase) {
        self.0.fetch_max(to as u8, Ordering::SeqCst);
    }

    /// Still taking and dispatching tasks.
    pub fn is_running(&self) -> bool {
        self.phase() == Phase::Running
    }

    /// The workers are being stopped (see [`Phase::Stopping`]).
    pub fn is_stopping(&self) -> bool {
        self.phase() == Phase::Stopping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_running_and_moves_only_forward() {
        let life = Lifecycle::default();
        assert_eq!(life.phase(), Phase::Running);
        assert!(life.is_running() && !life.is_stopping());
        life.advance(Phase::Draining);
        assert_eq!(life.phase(), Phase::Draining);
        assert!(!life.is_running() && !life.is_stopping());
        life.advance(Phase::Stopping);
        assert!(life.is_stopping());
        life.advance(Phase::Draining);
        assert_eq!(life.phase(), Phase::Stopping, "a phase never goes back");
    }
}
