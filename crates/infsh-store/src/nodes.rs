//! API nodes that share a store (PostgreSQL): their heartbeats, and the
//! takeover of a lost node's own-worker tasks by a live node hosting the
//! same apps ([`crate::TaskStore::take_over_lost_nodes`]).

use crate::TaskRecord;

/// A task taken over from a lost node: queued again on the taker (its
/// status QUEUED), or FAILED with [`node_lost_message`] when it was running
/// there and had had `--max-attempts` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TakenOver {
    pub task: TaskRecord,
    /// The lost node's id.
    pub from_node: String,
    /// It was running there: this attempt (1 for its first run) is
    /// recorded `lost`. None: it was waiting.
    pub lost_attempt: Option<u32>,
}

/// A running task's error when the last of its attempts died with its
/// API node.
pub fn node_lost_message(node: &str) -> String {
    format!("node lost: {node}")
}

/// The `engine` an attempt on an API node's own workers is recorded under.
pub fn node_attempt_name(node: &str) -> String {
    format!("node:{node}")
}
