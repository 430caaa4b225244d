//! Tasks that have not ended yet, as watch channels of their full
//! [`TaskView`]: the in-memory truth that `get`, `wait` and `subscribe` read
//! while a task is alive (its logs may be newer than the database's, which
//! are written in batches). A task leaves the map right after its terminal
//! snapshot was published, and from then on the store is the truth.
//!
//! The map's std mutex is only held to look an entry up, never across an
//! `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::api::TaskView;

pub(crate) type LiveTask = Arc<watch::Sender<TaskView>>;

#[derive(Default)]
pub(crate) struct LiveTasks {
    map: Mutex<HashMap<String, LiveTask>>,
}

impl LiveTasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveTask>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes a task that is waiting or running.
    pub fn insert(&self, view: TaskView) -> LiveTask {
        let id = view.record.id.clone();
        let (tx, _) = watch::channel(view);
        let tx = Arc::new(tx);
        self.lock().insert(id, tx.clone());
        tx
    }

    /// The live task `id`, publishing `view` first if there is none (two
    /// nodes' followers of one task never replace each other's channel).
    pub fn get_or_insert(&self, view: TaskView) -> LiveTask {
        let mut map = self.lock();
        map.entry(view.record.id.clone())
            .or_insert_with(|| Arc::new(watch::channel(view).0))
            .clone()
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn get(&self, id: &str) -> Option<LiveTask> {
        self.lock().get(id).cloned()
    }

    /// The current view of a live task.
    pub fn view(&self, id: &str) -> Option<TaskView> {
        self.get(id).map(|tx| tx.borrow().clone())
    }
}
