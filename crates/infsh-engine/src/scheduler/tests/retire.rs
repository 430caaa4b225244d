//! Retiring (`scheduler/retire.rs`): once another version is current, an
//! idle replica stops at once (its `unload` runs), a busy one when its task
//! ends, a preload starts none, and a later run starts one as for a cold
//! app, which then stays. Made current again, the preload starts them.
//! With its last replica gone, a retired app's launcher lets go of its
//! zygote.

use serde_json::json;

use super::*;
use crate::testing::fake_worker::Op;
use crate::testing::{Harness, APP};

fn retire(h: &Harness, retired: bool) {
    h.engine
        .inner
        .apps
        .by_id(APP)
        .expect("the app is hosted")
        .retire(retired);
}

/// When each worker got `shutdown` (its unload), by pid.
fn shutdowns(h: &Harness) -> Vec<(u32, std::time::Duration)> {
    h.fake
        .records()
        .into_iter()
        .filter_map(|r| match r.op {
            Op::Shutdown { pid } => Some((pid, r.at)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_retired_apps_idle_replica_stops_now_and_a_busy_one_after_its_task() {
    let h = Harness::start(|c| {
        c.replicas = 2;
        c.preload = true;
    })
    .await;
    h.status_until("two workers up", |s| s.replicas == 2).await;
    let running = h.submit(json!({"sleep": 3})).await;
    h.at(1.0).await;
    let busy = pid_of(&h.fake.ops(), &running);
    retire(&h, true);
    h.status_until("one worker left", |s| s.replicas == 1).await;
    let stopped = shutdowns(&h);
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert_ne!(stopped[0].0, busy, "the idle one stops: {stopped:?}");
    assert_eq!(stopped[0].1, secs(1.0));

    h.ended(&running).await;
    h.status_until("no worker", |s| s.replicas == 0).await;
    let stopped = shutdowns(&h);
    assert_eq!(stopped.len(), 2, "{stopped:?}");
    assert_eq!(stopped[1], (busy, secs(3.0)), "after its task: {stopped:?}");
    // The zygote goes with the last replica, not while the busy one ran.
    let releases: Vec<std::time::Duration> = h
        .fake
        .records()
        .into_iter()
        .filter(|r| r.op == Op::Release)
        .map(|r| r.at)
        .collect();
    assert!(!releases.is_empty(), "no release");
    assert!(releases.iter().all(|at| *at >= secs(3.0)), "{releases:?}");
    // Retired, the preload starts nothing again.
    h.at(10.0).await;
    assert_eq!(h.status().replicas, 0);
    assert_eq!(h.fake.count(is_launch), 2);

    // A run (a pinned one, in the engine) starts a replica as for a cold
    // app; it is not retiring, so it stays once idle.
    let pinned = h.submit(json!({})).await;
    h.ended(&pinned).await;
    h.at(20.0).await;
    assert_eq!(h.status().replicas, 1);
    assert_eq!(h.fake.count(is_launch), 3);
    assert_eq!(shutdowns(&h).len(), 2);

    // Current again: the preload fills the replicas.
    retire(&h, false);
    h.status_until("two workers up again", |s| s.replicas == 2)
        .await;
}
