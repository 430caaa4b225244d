//! Retiring a version that is no longer current (a deploy, an activate, a
//! rollback, `infsh serve --watch`): new runs go to the current version, so
//! this one's replicas only finish what they run. Idle ones stop at once,
//! busy ones when their last task ends, and a replica leased to a live
//! session stays until the session ends (its state is the session's). A
//! later pinned run (`ns/name@HASH`) starts a replica as for any cold app;
//! that replica is not retiring and stays until evicted or retired again.
//! Once a retired version has no replica left, its launcher lets go of the
//! version's zygote (`python_launcher.rs`), which a pinned run restarts.

use super::Actor;

impl Actor {
    /// `retired`: another version became current (every replica up or
    /// starting is marked to stop once idle); `false`: this one is current
    /// again (the marks are cleared).
    pub(super) fn retire(&mut self, retired: bool) {
        if self.retired != retired {
            tracing::info!(
                app = %self.entry.id,
                retired,
                "{}",
                if retired {
                    "no longer the current version: its replicas stop once idle"
                } else {
                    "the current version again"
                }
            );
        }
        self.retired = retired;
        for replica in &mut self.replicas {
            replica.retiring = retired && (replica.is_starting() || replica.up().is_some());
        }
    }

    /// Stops every retiring replica that is idle, not leased to a session,
    /// while no task waits here (a queued pinned run takes it instead).
    pub(super) fn stop_retired_idle(&mut self) {
        if !self.queue.is_empty() {
            return;
        }
        for idx in 0..self.replicas.len() {
            let replica = &self.replicas[idx];
            let idle = replica
                .up()
                .is_some_and(|up| up.busy == 0 && !up.setting_up);
            if replica.retiring && idle && replica.session.is_none() {
                self.replicas[idx].retiring = false;
                self.stop_idle(
                    idx,
                    "retired (another version is current): stopping the idle replica",
                );
            }
        }
        // No replica left: the zygote (a whole imported interpreter) goes
        // too, rather than live until the engine stops; a pinned run
        // starts it again.
        let any_left = self
            .replicas
            .iter()
            .any(|r| r.is_starting() || r.up().is_some());
        if self.retired && !any_left {
            self.launcher.release();
        }
    }
}
