//! What a start does with the tasks the last run left behind (the store is
//! the only memory that survives a stop):
//! - tasks that were running (DISPATCHED through UPLOADING) are FAILED with
//!   [`INTERRUPTED`]: they may have had effects, so they are not re-run;
//! - tasks that were waiting (RECEIVED, QUEUED) are queued again, oldest
//!   first, on their app (FAILED if the app is no longer hosted);
//! - tasks queued for remote engines are left to the fleet (`fleet_hub`).

use std::sync::Arc;

use infsh_store::fleet::{FleetError, FleetStore};
use infsh_store::{now_ms, StoreError, TaskStatus};

use crate::hosted::HostedApps;
use crate::shared::{Shared, INTERRUPTED};

/// What recovery did, for the start-up log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub requeued: usize,
    pub interrupted: usize,
    pub orphaned: usize,
}

/// `fleet`: the store's fleet side, whose remote tasks (run by engines,
/// requeued by lease expiry) recovery leaves alone.
pub(crate) async fn recover(
    shared: &Arc<Shared>,
    apps: &HostedApps,
    fleet: Option<&dyn FleetStore>,
) -> Result<Recovered, StoreError> {
    use TaskStatus::*;
    let store = &shared.store;
    let mut report = Recovered::default();

    let running = [
        Dispatched, Preparing, Serving, SettingUp, Running, Cancelling, Uploading,
    ];
    let is_remote = |id: String| async move {
        match fleet {
            Some(fleet) => fleet.is_remote(&id).await.map_err(|e| match e {
                FleetError::Store(e) => e,
                other => StoreError::Corrupt {
                    id,
                    message: other.to_string(),
                },
            }),
            None => Ok(false),
        }
    };
    for mut task in store.tasks_with_status(&running).await? {
        if is_remote(task.id.clone()).await? {
            continue;
        }
        let at = now_ms();
        store
            .finish_task(
                &task.id,
                Failed,
                task.output.as_ref(),
                Some(INTERRUPTED),
                at,
            )
            .await?;
        task.status = Failed;
        task.error = Some(INTERRUPTED.to_string());
        task.updated_at_ms = at;
        shared.webhooks.deliver(&task);
        report.interrupted += 1;
    }

    for mut task in store.tasks_with_status(&[Received, Queued]).await? {
        if is_remote(task.id.clone()).await? {
            continue;
        }
        let Ok(app) = apps.by_id(&task.app) else {
            let at = now_ms();
            let error = format!("app \"{}\" is no longer hosted", task.app);
            store
                .finish_task(&task.id, Failed, None, Some(&error), at)
                .await?;
            task.status = Failed;
            task.error = Some(error);
            task.updated_at_ms = at;
            shared.webhooks.deliver(&task);
            report.orphaned += 1;
            continue;
        };
        if task.status == Received {
            task.status = Queued;
            task.updated_at_ms = now_ms();
            store
                .update_status(&task.id, Queued, task.updated_at_ms)
                .await?;
        }
        let logs = store.get_logs(&task.id).await?;
        app.enqueue_recovered(&shared.live, task, logs);
        report.requeued += 1;
    }
    Ok(report)
}
