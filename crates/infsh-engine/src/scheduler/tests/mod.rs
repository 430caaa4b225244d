//! In-process unit tests of the scheduler's rules (module docs of
//! `scheduler.rs`): dispatch, backoff, cancellation and timeouts, on an
//! engine whose workers are scripted fakes and whose store is in memory
//! (`crate::testing`), on tokio's paused clock. The same rules are tested
//! end to end with real Python workers in `crates/infsh-engine/tests/`.

mod backoff;
mod batching;
mod cancel;
mod dispatch;
mod placement;
mod retire;
mod sessions;
mod shutdown;
mod timeout;

use std::time::Duration;

use crate::testing::fake_worker::Op;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn is_launch(op: &Op) -> bool {
    matches!(op, Op::Launch)
}

/// The pids of the workers killed, each once, in order.
fn killed(ops: &[Op]) -> Vec<u32> {
    let mut pids = Vec::new();
    for op in ops {
        if let Op::Kill { pid } = op {
            if !pids.contains(pid) {
                pids.push(*pid);
            }
        }
    }
    pids
}

fn is_setup(op: &Op) -> bool {
    matches!(op, Op::Setup { .. })
}

/// The call of task `id`.
fn call_of(id: &str) -> impl Fn(&Op) -> bool + '_ {
    move |op| matches!(op, Op::Call { task, .. } if task == id)
}

/// The end of the call of task `id`.
fn call_end_of(id: &str) -> impl Fn(&Op) -> bool + '_ {
    move |op| matches!(op, Op::CallEnded { task, .. } if task == id)
}

/// The pid of the worker that ran task `id`.
fn pid_of(ops: &[Op], id: &str) -> u32 {
    ops.iter()
        .find_map(|op| match op {
            Op::Call { pid, task } if task == id => Some(*pid),
            _ => None,
        })
        .unwrap_or_else(|| panic!("task {id} was never called: {ops:#?}"))
}

/// The ids of the called tasks, in call order.
fn call_order(ops: &[Op]) -> Vec<String> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Call { task, .. } => Some(task.clone()),
            _ => None,
        })
        .collect()
}
