//! The actor's handling of what the worker says: answers routed by call id,
//! the startup handshake, and failures to send.

use infsh_protocol::{FrameError, LoadFailed, WorkerMessage, PROTOCOL_VERSION};

use super::Actor;
use crate::channel::Op;
use crate::scratch::{self, Scratch};
use crate::{CallEvent, CallOutcome, LogLine, LogStream, WorkerError};

impl Actor {
    pub(super) fn message(&mut self, msg: WorkerMessage) {
        if self.startup.is_some()
            && !matches!(msg, WorkerMessage::Ready(_) | WorkerMessage::LoadFailed(_))
        {
            return self.protocol_failure(format!("expected `ready`, got {}", kind_of(&msg)));
        }
        match msg {
            WorkerMessage::Ready(ready) => {
                let Some(startup) = self.startup.take() else {
                    return self.protocol_failure("a second `ready`".into());
                };
                if ready.protocol != PROTOCOL_VERSION {
                    self.startup = Some(startup);
                    return self.protocol_failure(format!(
                        "the worker speaks protocol version {}, this host version {PROTOCOL_VERSION}",
                        ready.protocol
                    ));
                }
                let _ = startup.send(Ok(ready));
            }
            WorkerMessage::LoadFailed(failed) => self.load_failed(failed),
            WorkerMessage::SetupDone { seconds } => self.setup_finished(Ok(seconds)),
            WorkerMessage::SetupFailed(failed) => {
                self.setup_finished(Err(WorkerError::SetupFailed(failed)))
            }
            WorkerMessage::Snapshot { id, output, files } => match self.calls.get(&id) {
                Some(call) => {
                    // Parsed: snapshots are compared and merged into deltas.
                    let output = output.into_value();
                    let _ = call.events.send(CallEvent::Snapshot { output, files });
                }
                None => tracing::warn!(%id, "snapshot for a call that is not in flight"),
            },
            WorkerMessage::Done {
                id,
                output,
                files,
                seconds,
            } => match self.calls.remove(&id) {
                Some(call) => {
                    let scratch = Scratch::new(scratch::call_folder(&self.spill_dir, &id));
                    let _ = call.reply.send(Ok(CallOutcome {
                        output,
                        files,
                        seconds,
                        scratch: Some(scratch),
                    }));
                }
                None => tracing::warn!(%id, "`done` for a call that is not in flight"),
            },
            WorkerMessage::Failed(failed) => match self.calls.remove(&failed.id) {
                Some(call) => {
                    // No output files to keep from a failed or cancelled call.
                    scratch::remove(&scratch::call_folder(&self.spill_dir, &failed.id));
                    let _ = call.reply.send(Err(WorkerError::CallFailed(failed)));
                }
                None => {
                    tracing::warn!(id = %failed.id, "`failed` for a call that is not in flight")
                }
            },
            WorkerMessage::Bye { unload_error } => {
                if let Some(error) = unload_error {
                    tracing::warn!(%error, "the app's unload failed");
                    let line = format!("unload failed: {error}");
                    let _ = self.idle_logs.send(LogLine {
                        stream: LogStream::Stderr,
                        line,
                    });
                }
            }
            WorkerMessage::Spilled { path, .. } => {
                self.protocol_failure(format!("unresolved spilled message {path}"))
            }
        }
    }

    pub(super) fn load_failed(&mut self, failed: LoadFailed) {
        // Handled before `message` would let it through otherwise.
        if let Some(startup) = self.startup.take() {
            let _ = startup.send(Err(WorkerError::LoadFailed(failed)));
        } else {
            self.protocol_failure("`load_failed` after `ready`".into());
        }
    }

    pub(super) fn setup_finished(&mut self, result: Result<f64, WorkerError>) {
        match self.setups.front() {
            Some(op) if op.msg.is_none() => {
                let op = self.setups.pop_front().expect("front exists");
                let _ = op.reply.send(result);
                self.send_next_setup();
            }
            _ => tracing::warn!("setup answer without a setup in flight"),
        }
    }

    pub(super) fn write_failed(&mut self, op: Op, error: FrameError) {
        if let FrameError::Io(e) = &error {
            // Usually the worker died (EPIPE): its exit, with a better
            // report, is on the way. If it did not, it gets killed.
            tracing::debug!(error = %e, "writing to the worker failed");
            return self.channel_broken();
        }
        let err = || WorkerError::Protocol(format!("could not send to the worker: {error}"));
        match op {
            Op::Call(id) => {
                if let Some(call) = self.calls.remove(&id) {
                    let _ = call.reply.send(Err(err()));
                }
            }
            Op::CallBatch(ids) => {
                for id in ids {
                    if let Some(call) = self.calls.remove(&id) {
                        let _ = call.reply.send(Err(err()));
                    }
                }
            }
            Op::Setup => {
                if let Some(op) = self.setups.pop_front() {
                    let _ = op.reply.send(Err(err()));
                }
                self.send_next_setup();
            }
            Op::Cancel | Op::Shutdown => self.protocol_failure(err().to_string()),
        }
    }
}

fn kind_of(msg: &WorkerMessage) -> &'static str {
    match msg {
        WorkerMessage::Ready(_) => "ready",
        WorkerMessage::LoadFailed(_) => "load_failed",
        WorkerMessage::SetupDone { .. } => "setup_done",
        WorkerMessage::SetupFailed(_) => "setup_failed",
        WorkerMessage::Snapshot { .. } => "snapshot",
        WorkerMessage::Done { .. } => "done",
        WorkerMessage::Failed(_) => "failed",
        WorkerMessage::Bye { .. } => "bye",
        WorkerMessage::Spilled { .. } => "spilled",
    }
}
