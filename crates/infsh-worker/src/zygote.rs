//! [`Zygote`]: one Python process per app that has imported the app (and
//! discovered its functions) but never runs `setup`; workers are forked from
//! it (`python/infsh_worker/zygote.py`, docs/protocol.md "Zygote"). A second
//! replica, or a replacement after a crash, then skips the interpreter start
//! and the app's imports: it is ready in milliseconds.
//!
//! ```text
//!  Zygote::fork ──fork + 3 fds (SCM_RIGHTS)──> zygote ──fork()──> worker
//!       ^            <──forked{pid} / exited{pid,status}──┘          │
//!       └──────── the worker's own socketpair and pipes ─────────────┘
//! ```
//!
//! The channel is a `SOCK_SEQPACKET` socketpair: one message is one frame.
//! A thread reads it (answers are rare, and the socket stays blocking so
//! `sendmsg` with fds is simple): `forked` answers the one fork in flight,
//! `exited` is the wait status of a forked worker (the zygote is its parent
//! and reaps it), which the worker's actor waits for instead of a `Child`.
//!
//! Lifetimes: the zygote dies with the host (PDEATHSIG) and forked workers
//! die with the zygote (PDEATHSIG again), so every forked worker holds a
//! guard that keeps the zygote's handle alive; the zygote is killed when the
//! last [`Zygote`] handle and the last such worker are gone.

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex, MutexGuard};

use infsh_protocol::frame::encode_frame;
use infsh_protocol::Ready;
use nix::sys::socket::{
    recv, sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::logs::LogPipe;
use crate::spawn::{self, ExitSource, ProcessGroup, Spawned};
use crate::worker::Worker;
use crate::{ExitDescription, LogLine, LogStream, WorkerConfig, WorkerError};

/// After the zygote exited during start-up, how long its last message may
/// take to be read.
const EXIT_READ_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// What starting a zygote gave.
pub enum ZygoteStart {
    Ready(Zygote),
    /// The app imported, but forking it would not be safe (the reason, e.g.
    /// its import started threads); start ordinary workers instead.
    NotForkable(String),
}

/// A handle to a running zygote. Clones share it.
#[derive(Clone)]
pub struct Zygote {
    inner: Arc<Inner>,
}

struct Inner {
    pid: u32,
    cfg: WorkerConfig,
    socket: OwnedFd,
    /// One fork at a time: its `forked` answer is the next one.
    fork_lock: tokio::sync::Mutex<()>,
    shared: Arc<Mutex<Shared>>,
    /// Killed (SIGKILL) when the last handle is dropped.
    _group: ProcessGroup,
}

#[derive(Default)]
struct Shared {
    /// The fork in flight waits here for its pid and exit watch.
    forked: Option<oneshot::Sender<Forked>>,
    /// Exit statuses of forked workers, by pid.
    exits: HashMap<u32, oneshot::Sender<ExitDescription>>,
    /// The zygote's channel closed: no more forks, no more exit reports.
    gone: bool,
}

struct Forked {
    pid: u32,
    exit: oneshot::Receiver<ExitDescription>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

fn protocol(message: impl Into<String>) -> WorkerError {
    WorkerError::Protocol(message.into())
}

impl Zygote {
    /// Starts the zygote for `cfg` (as [`Worker::start`] would start a
    /// worker, with `INFSH_ZYGOTE=1`) and waits until it has imported the
    /// app. Output of the import goes to `idle_logs`. Fails like
    /// [`Worker::start`] when the app cannot be loaded.
    pub async fn start(
        cfg: WorkerConfig,
        idle_logs: mpsc::UnboundedSender<LogLine>,
    ) -> Result<ZygoteStart, WorkerError> {
        if cfg.runtime == crate::WorkerRuntime::Node {
            // A running V8 cannot fork (its threads would not survive):
            // Node apps get ordinary workers (docs/performance.md measures
            // a warm spare instead).
            return Ok(ZygoteStart::NotForkable(
                "a Node.js process cannot be forked".to_string(),
            ));
        }
        let paths = spawn::prepare_paths_async(&cfg).await?;
        // The zygote itself never spills; its workers get folders of their own.
        let _ = std::fs::remove_dir(&paths.spill_dir);
        let (parent_end, child_end) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| WorkerError::Spawn {
            python: cfg.python.clone(),
            source: e.into(),
        })?;
        let process = spawn::start_process(&cfg, &paths, child_end, &[("INFSH_ZYGOTE", "1")])?;
        let group = ProcessGroup::new(process.pid);
        forward_output(process.stdout, process.stderr, idle_logs);
        let mut child = process.child;

        let shared = Arc::new(Mutex::new(Shared::default()));
        let (first_tx, first_rx) = oneshot::channel();
        let reader_fd = parent_end
            .try_clone()
            .map_err(|e| protocol(format!("zygote channel: {e}")))?;
        let reader_shared = shared.clone();
        std::thread::Builder::new()
            .name("infsh-zygote-reader".into())
            .spawn(move || read_loop(reader_fd, reader_shared, first_tx))
            .map_err(|e| protocol(format!("cannot start the zygote reader: {e}")))?;

        tokio::pin!(first_rx);
        let first = tokio::select! {
            first = &mut first_rx => first.ok(),
            status = child.wait() => {
                // What it wrote before exiting (its `load_failed`) is still
                // in the socket: the reader gets it, or EOF, promptly.
                match tokio::time::timeout(EXIT_READ_GRACE, &mut first_rx).await {
                    Ok(Ok(first)) => Some(first),
                    _ => {
                        let status = status.map_or_else(|_| ExitDescription::unknown(), ExitDescription::from_status);
                        return Err(WorkerError::Exited { status, during: "startup".into(), stderr_tail: Vec::new() });
                    }
                }
            }
        };
        // From here the zygote is reaped in the background; the group guard
        // kills it when the handle goes.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let Some(first) = first else {
            return Err(protocol(
                "the zygote closed its channel before saying it was ready",
            ));
        };
        match first.get("type").and_then(Value::as_str) {
            Some("zygote_ready") => {}
            Some("load_failed") => {
                let failed = serde_json::from_value(first.clone())
                    .map_err(|e| protocol(format!("bad load_failed from the zygote: {e}")))?;
                return Err(WorkerError::LoadFailed(failed));
            }
            other => {
                return Err(protocol(format!(
                    "unexpected first message from the zygote: {other:?}"
                )))
            }
        }
        if first.get("forkable").and_then(Value::as_bool) != Some(true) {
            let reason = first
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
                .to_string();
            return Ok(ZygoteStart::NotForkable(reason));
        }
        Ok(ZygoteStart::Ready(Zygote {
            inner: Arc::new(Inner {
                pid: process.pid,
                cfg,
                socket: parent_end,
                fork_lock: tokio::sync::Mutex::new(()),
                shared,
                _group: group,
            }),
        }))
    }

    /// The zygote's pid.
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// The zygote's channel closed (it died): it cannot fork any more.
    pub fn is_gone(&self) -> bool {
        lock(&self.inner.shared).gone
    }

    /// Forks a worker and waits for its `ready`, like [`Worker::start`].
    /// The worker behaves exactly like a started one (its own process
    /// group, pipes and protocol socket).
    pub async fn fork(
        &self,
        idle_logs: mpsc::UnboundedSender<LogLine>,
    ) -> Result<(Worker, Ready), WorkerError> {
        let inner = &self.inner;
        let paths = spawn::prepare_paths_async(&inner.cfg).await?;
        let io = |e: std::io::Error| protocol(format!("preparing a forked worker: {e}"));
        let (host_end, worker_end) = std::os::unix::net::UnixStream::pair().map_err(io)?;
        let (stdout_rx, stdout_tx) = pipe_pair().map_err(io)?;
        let (stderr_rx, stderr_tx) = pipe_pair().map_err(io)?;

        let forked = {
            let _one_at_a_time = inner.fork_lock.lock().await;
            let (tx, rx) = oneshot::channel();
            {
                let mut shared = lock(&inner.shared);
                if shared.gone {
                    return Err(protocol("the zygote is gone"));
                }
                shared.forked = Some(tx);
            }
            let request = json!({"type": "fork", "spill_dir": paths.spill_dir});
            let fds = [
                worker_end.as_raw_fd(),
                stdout_tx.as_raw_fd(),
                stderr_tx.as_raw_fd(),
            ];
            send_frame(inner.socket.as_raw_fd(), &request, &fds)
                .map_err(|e| protocol(format!("cannot ask the zygote to fork: {e}")))?;
            // The child has its copies now (or will never get them).
            drop((worker_end, stdout_tx, stderr_tx));
            rx.await
                .map_err(|_| protocol("the zygote died before it forked"))?
        };

        let to_pipe = |fd: OwnedFd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd);
        let stdout = to_pipe(stdout_rx).map_err(io)?;
        let stderr = to_pipe(stderr_rx).map_err(io)?;
        host_end.set_nonblocking(true).map_err(io)?;
        let socket = tokio::net::UnixStream::from_std(host_end).map_err(io)?;
        let spawned = Spawned {
            exit: ExitSource::Reported {
                status: forked.exit,
                guard: Box::new(self.clone()),
            },
            pid: forked.pid,
            socket,
            stdout,
            stderr,
        };
        Worker::attach(spawned, paths.spill_dir, idle_logs).await
    }
}

/// A pipe as (read end, write end), both close-on-exec.
fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((read, write))
}

/// One frame (4-byte length, JSON) as one SEQPACKET message, with `fds`.
fn send_frame(socket: RawFd, msg: &Value, fds: &[RawFd]) -> std::io::Result<()> {
    let frame = encode_frame(msg).map_err(std::io::Error::other)?;
    let iov = [IoSlice::new(&frame)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(socket, &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// The zygote's messages until its channel closes: the first one goes to
/// `first`, then `forked` and `exited` are routed.
fn read_loop(socket: OwnedFd, shared: Arc<Mutex<Shared>>, first: oneshot::Sender<Value>) {
    let mut first = Some(first);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => 0,
        };
        // One message is one whole frame: its header must say so.
        let whole = n > 4 && u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize == n - 4;
        let msg: Option<Value> = whole
            .then(|| serde_json::from_slice(&buf[4..n]).ok())
            .flatten();
        let Some(msg) = msg else {
            if n > 0 {
                tracing::warn!("the zygote sent a broken frame; stopping it");
            }
            break;
        };
        if let Some(first) = first.take() {
            let _ = first.send(msg);
            continue;
        }
        let pid = msg.get("pid").and_then(Value::as_u64).map(|p| p as u32);
        match (msg.get("type").and_then(Value::as_str), pid) {
            (Some("forked"), Some(pid)) => {
                let (tx, rx) = oneshot::channel();
                let mut shared = lock(&shared);
                shared.exits.insert(pid, tx);
                if let Some(waiter) = shared.forked.take() {
                    let _ = waiter.send(Forked { pid, exit: rx });
                }
            }
            (Some("exited"), Some(pid)) => {
                let raw = msg.get("status").and_then(Value::as_i64).unwrap_or(0) as i32;
                let status = ExitDescription::from_status(std::process::ExitStatus::from_raw(raw));
                if let Some(tx) = lock(&shared).exits.remove(&pid) {
                    let _ = tx.send(status);
                }
            }
            _ => tracing::debug!(?msg, "ignoring a message from the zygote"),
        }
    }
    // Gone: no fork will be answered; forked workers died with it (their
    // exit statuses are unknown, which is what dropping the senders says).
    let mut shared = lock(&shared);
    shared.gone = true;
    shared.forked = None;
    shared.exits.clear();
}

/// The zygote's own stdout/stderr (the app's import output) to `idle_logs`.
fn forward_output(
    stdout: tokio::net::unix::pipe::Receiver,
    stderr: tokio::net::unix::pipe::Receiver,
    idle_logs: mpsc::UnboundedSender<LogLine>,
) {
    let mut out = LogPipe::new(LogStream::Stdout, stdout);
    let mut err = LogPipe::new(LogStream::Stderr, stderr);
    tokio::spawn(async move {
        while !(out.is_closed() && err.is_closed()) {
            let mut lines = Vec::new();
            tokio::select! {
                () = out.readable() => out.read_some(&mut lines),
                () = err.readable() => err.read_some(&mut lines),
            }
            for line in lines {
                let _ = idle_logs.send(line);
            }
        }
    });
}
