//! The actor's handling of [`Command`]s from [`crate::Worker`] handles:
//! turning them into messages for the worker, or answering at once when the
//! worker is gone.

use std::time::Duration;

use infsh_protocol::{BatchItem, HostMessage};
use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::{Actor, CallOp, Command, SetupOp};
use crate::channel::{Op, Outgoing};
use crate::{BatchCall, ExitDescription, WorkerError};

impl Actor {
    pub(super) fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Setup {
                config,
                metadata,
                logs,
                reply,
            } => {
                if let Some(err) = self.gone_error("setup") {
                    let _ = reply.send(Err(err));
                    return;
                }
                self.setups.push_back(SetupOp {
                    msg: Some(HostMessage::Setup { config, metadata }),
                    logs,
                    reply,
                });
                self.send_next_setup();
            }
            Command::Call { req, events, reply } => {
                if let Some(err) = self.gone_error(&format!("call {}", req.function)) {
                    let _ = reply.send(Err(err));
                    return;
                }
                if self.calls.contains_key(&req.id) {
                    let _ = reply.send(Err(WorkerError::DuplicateCallId(req.id)));
                    return;
                }
                let op = CallOp {
                    function: req.function.clone(),
                    events,
                    reply,
                };
                self.calls.insert(req.id.clone(), op);
                let msg = HostMessage::Call {
                    id: req.id.clone(),
                    function: req.function,
                    input: req.input,
                    metadata: req.metadata,
                };
                self.send(msg, Op::Call(req.id));
            }
            Command::CallBatch { function, calls } => self.call_batch(function, calls),
            Command::Cancel { id, reply } => {
                if let Some(err) = self.gone_error("cancel") {
                    let _ = reply.send(Err(err));
                    return;
                }
                // Finished or unknown: nothing to cancel (the worker would
                // ignore it too).
                if self.calls.contains_key(&id) {
                    self.send(HostMessage::Cancel { id }, Op::Cancel);
                }
                let _ = reply.send(Ok(()));
            }
            Command::Shutdown { grace, reply } => {
                if self.dead {
                    let _ = reply.send(Ok(self.exit.unwrap_or_else(ExitDescription::unknown)));
                    return;
                }
                self.shutdown_waiters.push(reply);
                if !self.shutdown_sent && self.exit.is_none() && self.protocol_error.is_none() {
                    self.shutdown_sent = true;
                    self.send(HostMessage::Shutdown, Op::Shutdown);
                }
                self.kill_after(grace);
            }
            Command::Kill { grace, reply } => {
                if self.dead {
                    let _ = reply.send(());
                    return;
                }
                self.kill_waiters.push(reply);
                if self.exit.is_none() {
                    self.group.signal(Signal::SIGTERM);
                    self.kill_after(grace);
                }
            }
        }
    }

    /// Registers every call of the batch, then sends them as one message.
    /// A call refused here (a duplicate id, a worker gone) is answered
    /// alone; the others still go.
    fn call_batch(&mut self, function: String, calls: Vec<BatchCall>) {
        let mut items = Vec::with_capacity(calls.len());
        for call in calls {
            if let Some(err) = self.gone_error(&format!("call {function}")) {
                let _ = call.reply.send(Err(err));
                continue;
            }
            let id = call.req.id;
            if self.calls.contains_key(&id) || items.iter().any(|i: &BatchItem| i.id == id) {
                let _ = call.reply.send(Err(WorkerError::DuplicateCallId(id)));
                continue;
            }
            self.calls.insert(
                id.clone(),
                CallOp {
                    function: function.clone(),
                    events: call.events,
                    reply: call.reply,
                },
            );
            items.push(BatchItem {
                id,
                input: call.req.input,
                metadata: call.req.metadata,
            });
        }
        if items.is_empty() {
            return;
        }
        let ids = items.iter().map(|i| i.id.clone()).collect();
        self.send(
            HostMessage::CallBatch {
                function,
                calls: items,
            },
            Op::CallBatch(ids),
        );
    }

    pub(super) fn send_next_setup(&mut self) {
        if let Some(msg) = self.setups.front_mut().and_then(|op| op.msg.take()) {
            self.send(msg, Op::Setup);
        }
    }

    /// The error for a new operation on a worker that is gone or going.
    pub(super) fn gone_error(&self, during: &str) -> Option<WorkerError> {
        if let Some(msg) = &self.protocol_error {
            return Some(WorkerError::Protocol(msg.clone()));
        }
        self.exit.map(|status| WorkerError::Exited {
            status,
            during: during.to_owned(),
            stderr_tail: self.tail.lines(),
        })
    }

    pub(super) fn send(&mut self, msg: HostMessage, op: Op) {
        // Fails only when the writer stopped after a broken channel; the
        // child's death then fails the operation.
        let _ = self.outgoing.send(Outgoing { msg, op });
    }

    pub(super) fn kill_after(&mut self, grace: Duration) {
        let at = Instant::now() + grace;
        self.kill_at = Some(self.kill_at.map_or(at, |t| t.min(at)));
    }
}
