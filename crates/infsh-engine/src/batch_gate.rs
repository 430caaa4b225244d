//! Where the runners of one batch meet: the scheduler gives each task of a
//! batch a [`BatchTicket`], each runner hands its call to its ticket when it
//! gets there (after its own status writes), and the last one to arrive
//! sends them all as one `call_batch` to the worker. A runner that ends
//! before its call (cancelled while it started) drops its ticket, which
//! counts as arriving with nothing, so the others never wait for it.

use std::sync::{Arc, Mutex};

use infsh_worker::{BatchCall, CallEvent, CallOutcome, CallRequest, WorkerError};
use tokio::sync::{mpsc, oneshot};

use crate::worker_seam::AppWorker;

/// The calls of one batch, gathered until every ticket arrived.
pub(crate) struct BatchGate {
    worker: Arc<dyn AppWorker>,
    function: String,
    gathered: Mutex<Gathered>,
}

struct Gathered {
    /// Tickets that have not arrived yet.
    waiting: usize,
    calls: Vec<BatchCall>,
}

/// One task's place in a batch.
pub(crate) struct BatchTicket {
    gate: Arc<BatchGate>,
    used: bool,
}

impl BatchGate {
    /// `n` tickets for one batch of `function` on `worker`.
    pub fn tickets(worker: Arc<dyn AppWorker>, function: String, n: usize) -> Vec<BatchTicket> {
        let gate = Arc::new(BatchGate {
            worker,
            function,
            gathered: Mutex::new(Gathered {
                waiting: n,
                calls: Vec::with_capacity(n),
            }),
        });
        (0..n)
            .map(|_| BatchTicket {
                gate: gate.clone(),
                used: false,
            })
            .collect()
    }

    fn arrive(&self, call: Option<BatchCall>) {
        let complete = {
            let mut gathered = self.gathered.lock().unwrap_or_else(|p| p.into_inner());
            gathered.calls.extend(call);
            gathered.waiting = gathered.waiting.saturating_sub(1);
            (gathered.waiting == 0).then(|| std::mem::take(&mut gathered.calls))
        };
        if let Some(calls) = complete.filter(|c| !c.is_empty()) {
            self.worker.call_batch(self.function.clone(), calls);
        }
    }
}

impl BatchTicket {
    /// Hands this task's call to the batch; its answer comes once the
    /// batch was sent and the worker answered this call.
    pub async fn call(
        mut self,
        req: CallRequest,
        events: mpsc::UnboundedSender<CallEvent>,
    ) -> Result<CallOutcome, WorkerError> {
        let (reply, answer) = oneshot::channel();
        self.used = true;
        self.gate.arrive(Some(BatchCall { req, events, reply }));
        answer.await.unwrap_or_else(|_| {
            Err(WorkerError::Protocol(
                "the worker dropped a call of a batch without answering it".into(),
            ))
        })
    }
}

impl Drop for BatchTicket {
    fn drop(&mut self) {
        if !self.used {
            self.gate.arrive(None);
        }
    }
}
