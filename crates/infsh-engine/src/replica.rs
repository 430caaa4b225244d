//! One replica of an app: a slot for one worker process that serves every
//! function of the app. The scheduler (`scheduler.rs`) owns the slots and
//! their states; this file says what a slot holds. Workers are started by
//! the app's launcher (`worker_seam.rs`, `scheduler/start.rs`).

use std::sync::{Arc, Mutex};

use infsh_store::LogEntry;
use serde_json::Value;
use tokio::task::AbortHandle;

use crate::placement_broker::Lease;
use crate::worker_seam::AppWorker;

pub(crate) enum ReplicaState {
    /// No worker. `failed`: the last start failed, so it is not started
    /// again while another replica serves.
    Absent {
        failed: bool,
    },
    Starting {
        abort: AbortHandle,
    },
    Up(Up),
}

pub(crate) struct Replica {
    /// Bumped at every start, so events about a replaced worker are ignored.
    pub generation: u64,
    pub state: ReplicaState,
    /// Its hold on a slot of the machine while it is starting or up;
    /// whoever stops its worker takes the lease and drops it once the
    /// process is gone, which frees the slot (`placement_broker.rs`).
    pub lease: Option<Lease>,
    /// The session this replica is leased to (`sessions.rs`): only its
    /// calls run here while it is active.
    pub session: Option<String>,
    /// Its version stopped being current while it was up or starting: it
    /// stops once idle (`scheduler/retire.rs`). A start clears it.
    pub retiring: bool,
}

/// A running worker.
pub(crate) struct Up {
    pub worker: Arc<dyn AppWorker>,
    pub worker_id: String,
    /// The config of the last successful (or in progress) setup; `None`:
    /// never set up.
    pub setup: Option<Value>,
    /// A setup is running: no other task goes here until it is done.
    pub setting_up: bool,
    /// Tasks dispatched here and not ended.
    pub busy: usize,
    /// Unix ms when it became ready.
    pub warm_since_ms: i64,
    /// Unix ms of its last task's start or end.
    pub last_used_ms: Option<i64>,
    /// Output of the environment build and preload setup, handed to the
    /// first task that runs here.
    pub pending_logs: Vec<LogEntry>,
    /// Set by the runner that stops this worker on purpose (a timeout, a
    /// cancel past its grace), so the other tasks running on it are not
    /// taken for victims of a crash.
    pub stop_reason: StopReason,
}

/// Why a worker was stopped on purpose; shared by the tasks running on it.
pub(crate) type StopReason = Arc<Mutex<Option<String>>>;

impl Replica {
    pub fn absent() -> Replica {
        Replica {
            generation: 0,
            state: ReplicaState::Absent { failed: false },
            lease: None,
            session: None,
            retiring: false,
        }
    }

    /// The name of the slot it holds (`gpus [0]`); None without one.
    pub fn slot_name(&self) -> Option<String> {
        self.lease
            .as_ref()
            .and_then(|l| l.slot())
            .map(ToString::to_string)
    }

    pub fn up(&self) -> Option<&Up> {
        match &self.state {
            ReplicaState::Up(up) => Some(up),
            _ => None,
        }
    }

    pub fn is_starting(&self) -> bool {
        matches!(self.state, ReplicaState::Starting { .. })
    }
}
