//! The supervisor of one worker process: a single task that owns the child's
//! process group, its protocol channel and its output pipes, and all state
//! about pending operations. [`crate::Worker`] handles talk to it with
//! commands and oneshot replies, so no lock is ever shared (let alone held
//! across an `.await`).
//!
//! Its job, besides routing answers by call id:
//! - logs: every line goes to the operations in flight (else `idle_logs`);
//!   before a frame is handled the pipes are drained, so an operation's
//!   output is complete when its answer is delivered;
//! - death: when the child exits, its group is SIGKILLed (grandchildren),
//!   the channel gets a moment to deliver frames already written, then every
//!   pending operation fails with the exit status and the stderr tail.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use infsh_protocol::{CallId, HostMessage, Ready, SpillDir};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::channel::{self, Inbound, Outgoing};
use crate::logs::{LogPipe, StderrTail};
use crate::spawn::{ExitSource, ProcessGroup, Spawned};
use crate::{
    CallEvent, CallOutcome, CallRequest, ExitDescription, LogLine, LogStream, WorkerError,
};

mod answers;
mod commands;

/// After the child exited, how long frames it wrote may take to arrive
/// (bounded: an escaped grandchild could hold the socket open forever).
const EXIT_DRAIN_GRACE: Duration = Duration::from_secs(1);

/// After the worker closed the channel without exiting, how long it gets to
/// exit on its own before it is SIGKILLed.
const CHANNEL_CLOSED_GRACE: Duration = Duration::from_secs(2);

type Reply<T> = oneshot::Sender<Result<T, WorkerError>>;

pub enum Command {
    Setup {
        config: Value,
        metadata: Value,
        logs: mpsc::UnboundedSender<LogLine>,
        reply: Reply<f64>,
    },
    Call {
        req: CallRequest,
        events: mpsc::UnboundedSender<CallEvent>,
        reply: Reply<CallOutcome>,
    },
    /// Several calls of one batched function, sent as one `call_batch`.
    CallBatch {
        function: String,
        calls: Vec<crate::BatchCall>,
    },
    Cancel {
        id: CallId,
        reply: Reply<()>,
    },
    Shutdown {
        grace: Duration,
        reply: Reply<ExitDescription>,
    },
    Kill {
        grace: Duration,
        reply: oneshot::Sender<()>,
    },
}

struct SetupOp {
    /// The `setup` message, until it is sent (setups go one at a time).
    msg: Option<HostMessage>,
    logs: mpsc::UnboundedSender<LogLine>,
    reply: Reply<f64>,
}

struct CallOp {
    function: String,
    events: mpsc::UnboundedSender<CallEvent>,
    reply: Reply<CallOutcome>,
}

enum Event {
    Command(Command),
    Inbound(Option<Inbound>),
    Output(LogStream),
    Exited(ExitDescription),
    KillTimer,
    DrainTimer,
}

/// Starts the actor (and the channel and reaper tasks) for a spawned child.
pub fn start(
    spawned: Spawned,
    spill_dir: PathBuf,
    idle_logs: mpsc::UnboundedSender<LogLine>,
    startup: Reply<Ready>,
) -> (
    mpsc::UnboundedSender<Command>,
    watch::Receiver<Option<ExitDescription>>,
) {
    let Spawned {
        exit,
        pid,
        socket,
        stdout,
        stderr,
    } = spawned;
    let (outgoing, inbound, tasks) = channel::start(socket, SpillDir::new(&spill_dir));
    // The reaper owns the Child and is never aborted: the child must be
    // waited for even after the actor is gone.
    let (exit_tx, exit_rx) = oneshot::channel();
    // For whoever watches the worker while it is idle (`Worker::exit_watch`).
    let (exit_watch_tx, exit_watch) = watch::channel(None);
    tokio::spawn(async move {
        let status = match exit {
            ExitSource::Child(mut child) => child
                .wait()
                .await
                .map_or_else(|_| ExitDescription::unknown(), ExitDescription::from_status),
            ExitSource::Reported { status, guard } => {
                let status = status.await.unwrap_or_else(|_| ExitDescription::unknown());
                drop(guard);
                status
            }
        };
        exit_watch_tx.send_replace(Some(status));
        let _ = exit_tx.send(status);
    });
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let actor = Actor {
        commands,
        inbound,
        reader_done: false,
        outgoing,
        exit_rx,
        stdout: LogPipe::new(LogStream::Stdout, stdout),
        stderr: LogPipe::new(LogStream::Stderr, stderr),
        group: ProcessGroup::new(pid),
        spill_dir,
        tasks,
        idle_logs,
        tail: StderrTail::default(),
        startup: Some(startup),
        setups: VecDeque::new(),
        calls: HashMap::new(),
        shutdown_sent: false,
        shutdown_waiters: Vec::new(),
        kill_waiters: Vec::new(),
        exit: None,
        protocol_error: None,
        dead: false,
        kill_at: None,
        drain_until: None,
    };
    tokio::spawn(actor.run());
    (commands_tx, exit_watch)
}

struct Actor {
    commands: mpsc::UnboundedReceiver<Command>,
    inbound: mpsc::Receiver<Inbound>,
    /// The reader task stopped (EOF or a broken frame).
    reader_done: bool,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    exit_rx: oneshot::Receiver<ExitDescription>,
    stdout: LogPipe,
    stderr: LogPipe,
    group: ProcessGroup,
    spill_dir: PathBuf,
    tasks: [JoinHandle<()>; 2],
    idle_logs: mpsc::UnboundedSender<LogLine>,
    tail: StderrTail,
    startup: Option<Reply<Ready>>,
    /// The front one is in flight, the others wait for it.
    setups: VecDeque<SetupOp>,
    calls: HashMap<CallId, CallOp>,
    shutdown_sent: bool,
    shutdown_waiters: Vec<Reply<ExitDescription>>,
    kill_waiters: Vec<oneshot::Sender<()>>,
    /// The child exited (and was reaped) with this.
    exit: Option<ExitDescription>,
    /// The worker broke the protocol and was killed.
    protocol_error: Option<String>,
    /// Pending operations have been failed; only commands are served now.
    dead: bool,
    /// When to SIGKILL the group (end of a kill/shutdown grace period).
    kill_at: Option<Instant>,
    /// When to stop waiting for the frames of a child that exited.
    drain_until: Option<Instant>,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    async fn run(mut self) {
        loop {
            // Every branch is cancel safe: channel receives, pipe
            // readiness, timers. The work happens in `handle`, outside.
            let event = tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => Event::Command(cmd),
                    None => break,
                },
                msg = self.inbound.recv(), if !self.reader_done => Event::Inbound(msg),
                () = self.stdout.readable() => Event::Output(LogStream::Stdout),
                () = self.stderr.readable() => Event::Output(LogStream::Stderr),
                status = &mut self.exit_rx, if self.exit.is_none() => {
                    Event::Exited(status.unwrap_or_else(|_| ExitDescription::unknown()))
                }
                () = sleep_until(self.kill_at) => Event::KillTimer,
                () = sleep_until(self.drain_until) => Event::DrainTimer,
            };
            self.handle(event);
            if self.exit.is_some() && self.reader_done && !self.dead {
                self.finish();
            }
        }
        // Every handle is gone: nobody can use the worker any more. The
        // group is SIGKILLed when `self.group` drops, right after this.
        for task in &self.tasks {
            task.abort();
        }
        let spill_dir = self.spill_dir.clone();
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(spill_dir));
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Command(cmd) => self.command(cmd),
            Event::Inbound(Some(Inbound::Frame(msg))) => {
                self.drain_output();
                self.message(msg);
            }
            Event::Inbound(Some(Inbound::ReadError(e))) => {
                self.reader_done = true;
                self.protocol_failure(format!("reading from the worker: {e}"));
            }
            Event::Inbound(Some(Inbound::Eof) | None) => {
                self.reader_done = true;
                self.channel_broken();
            }
            Event::Inbound(Some(Inbound::WriteFailed(op, e))) => self.write_failed(op, e),
            Event::Output(stream) => {
                let mut lines = Vec::new();
                match stream {
                    LogStream::Stdout => self.stdout.read_some(&mut lines),
                    LogStream::Stderr => self.stderr.read_some(&mut lines),
                }
                self.dispatch(lines);
            }
            Event::Exited(status) => {
                tracing::debug!(pid = self.group_pid(), %status, "worker exited");
                self.exit = Some(status);
                // Whatever the app started dies with it.
                self.group.release();
                self.kill_at = None;
                if !self.reader_done {
                    self.drain_until = Some(Instant::now() + EXIT_DRAIN_GRACE);
                }
            }
            Event::KillTimer => {
                self.kill_at = None;
                self.group.signal(Signal::SIGKILL);
            }
            Event::DrainTimer => {
                self.drain_until = None;
                if !self.dead {
                    self.finish();
                }
            }
        }
    }

    /// The channel is closed or broken while the child may still run: it
    /// cannot be talked to any more. Give it a moment to exit by itself.
    fn channel_broken(&mut self) {
        if self.exit.is_none() {
            self.kill_after(CHANNEL_CLOSED_GRACE);
        }
    }

    fn protocol_failure(&mut self, msg: String) {
        if self.protocol_error.is_some() {
            return;
        }
        tracing::warn!(pid = self.group_pid(), error = %msg, "worker protocol error; killing it");
        self.group.signal(Signal::SIGKILL);
        self.drain_output();
        self.fail_pending(|_| WorkerError::Protocol(msg.clone()));
        self.protocol_error = Some(msg);
    }

    /// The child is gone and the channel drained (or given up on): fail
    /// whatever is still pending and answer shutdown/kill waiters.
    fn finish(&mut self) {
        self.dead = true;
        self.drain_until = None;
        self.drain_output();
        let status = self.exit.unwrap_or_else(ExitDescription::unknown);
        let tail = self.tail.lines();
        let protocol_error = self.protocol_error.clone();
        self.fail_pending(|during| match &protocol_error {
            Some(msg) => WorkerError::Protocol(msg.clone()),
            None => WorkerError::Exited {
                status,
                during: during.to_owned(),
                stderr_tail: tail.clone(),
            },
        });
        for waiter in self.shutdown_waiters.drain(..) {
            let _ = waiter.send(Ok(status));
        }
        for waiter in self.kill_waiters.drain(..) {
            let _ = waiter.send(());
        }
        let spill_dir = self.spill_dir.clone();
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(spill_dir));
    }

    fn fail_pending(&mut self, err: impl Fn(&str) -> WorkerError) {
        if let Some(startup) = self.startup.take() {
            let _ = startup.send(Err(err("startup")));
        }
        for op in self.setups.drain(..) {
            let _ = op.reply.send(Err(err("setup")));
        }
        for (_, call) in self.calls.drain() {
            let _ = call
                .reply
                .send(Err(err(&format!("call {}", call.function))));
        }
    }

    /// Reads everything the pipes hold now and attributes it (see module
    /// docs). Non-blocking: stops at the first would-block.
    fn drain_output(&mut self) {
        let mut lines = Vec::new();
        self.stdout.drain(&mut lines);
        self.stderr.drain(&mut lines);
        self.dispatch(lines);
    }

    fn dispatch(&mut self, lines: Vec<LogLine>) {
        for line in lines {
            if line.stream == LogStream::Stderr {
                self.tail.push(&line.line);
            }
            let mut delivered = false;
            if let Some(setup) = self.setups.front().filter(|op| op.msg.is_none()) {
                let _ = setup.logs.send(line.clone());
                delivered = true;
            }
            for call in self.calls.values() {
                let _ = call.events.send(CallEvent::Log(line.clone()));
                delivered = true;
            }
            if !delivered {
                let _ = self.idle_logs.send(line);
            }
        }
    }

    fn group_pid(&self) -> u32 {
        self.group.pgid()
    }
}
