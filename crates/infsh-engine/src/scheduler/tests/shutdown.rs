//! Shutdown: running tasks finish within the grace, then every worker gets
//! `shutdown` (its `unload`) through the seam.

use infsh_store::TaskStatus;
use serde_json::json;

use super::*;
use crate::api::EngineError;
use crate::testing::fake_worker::Op;
use crate::testing::{request, Harness};

#[tokio::test(start_paused = true)]
async fn shutdown_lets_running_tasks_finish_then_unloads_every_worker() {
    let h = Harness::start(|c| {
        c.replicas = 2;
        c.preload = true;
    })
    .await;
    h.status_until("two workers up", |s| s.replicas == 2).await;
    let running = h.submit(json!({"sleep": 3})).await;
    h.at(1.0).await;
    h.engine.shutdown(secs(10.0)).await;
    let record = h.ended(&running).await;
    assert_eq!(record.status, TaskStatus::Completed);
    assert!(matches!(
        h.try_submit(request(json!({}))).await,
        Err(EngineError::ShuttingDown)
    ));
    let shut: Vec<_> = h
        .fake
        .records()
        .into_iter()
        .filter_map(|r| match r.op {
            Op::Shutdown { pid } => Some((r.at, pid)),
            _ => None,
        })
        .collect();
    assert_eq!(shut.len(), 2, "{shut:?}");
    let mut pids: Vec<_> = shut.iter().map(|(_, pid)| *pid).collect();
    pids.sort();
    assert_eq!(pids, vec![1000, 1001]);
    let finished = h.fake.time_of(0, call_end_of(&running));
    assert_eq!(finished, secs(3.0));
    assert!(shut.iter().all(|(at, _)| *at >= finished), "{shut:?}");
}
