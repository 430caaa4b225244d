//! Spawning and supervising one Python worker process: the host side of
//! `docs/protocol.md` (the worker side is `python/infsh_worker`).
//!
//! A [`Worker`] is a cheap, cloneable handle to an actor task that owns the
//! child process, its protocol socket and its stdout/stderr pipes. Calls may
//! run concurrently; their answers are routed back by call id. The app's
//! output is split into lines and attributed to the operation in progress.
//!
//! ```text
//!  Worker (handles) ──commands──> actor ──frames──> writer task ──> fd 3 ─┐
//!                                   ^  <──frames── reader task <── fd 3 <─┤ python -m infsh_worker
//!                                   └──── stdout/stderr pipes (read by the actor itself) <──┘
//! ```
//!
//! Modules: `spawn` starts the process, `actor` supervises it, `channel`
//! moves frames over the socket, `logs` splits the app's output into lines,
//! `runtime_files` extracts the embedded Python runtime, `error` says what
//! went wrong, `worker` is the public handle, `zygote` keeps an imported app
//! to fork workers from (a worker in milliseconds instead of an interpreter
//! start).
//!
//! One caveat inherited from Linux: `PR_SET_PDEATHSIG` fires when the
//! *thread* that spawned the child exits. Call [`Worker::start`] from a
//! long-lived runtime thread (any tokio worker thread or a `#[tokio::main]`
//! / `#[tokio::test]` thread), not from a `spawn_blocking` closure.

mod actor;
mod channel;
mod error;
mod logs;
mod runtime_files;
mod scratch;
mod spawn;
mod worker;
mod zygote;

use std::path::PathBuf;

pub use infsh_protocol::Payload;
use infsh_protocol::{CallId, OutputFile};
use serde_json::Value;

pub use error::{ExitDescription, WorkerError};
pub use infsh_protocol::{self as protocol, Ready};
pub use logs::{MAX_LINE_BYTES, STDERR_TAIL_LINES};
pub use scratch::Scratch;
pub use worker::Worker;
pub use zygote::{Zygote, ZygoteStart};

/// The Node worker's folder and entry module inside the extracted runtime.
pub use runtime_files::{NODE_MAIN, NODE_PACKAGE};

/// Which worker runtime runs an app: `python -m infsh_worker`, or
/// `node <runtime>/infsh_worker_node/main.mjs` (node/infsh-worker) for a
/// JavaScript app. Both speak the same protocol on the same channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WorkerRuntime {
    #[default]
    Python,
    Node,
}

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The interpreter of the app's environment: a Python that has pydantic
    /// and the `inferencesh` SDK, or `node` for [`WorkerRuntime::Node`].
    pub python: PathBuf,
    /// Which runtime `python` is.
    pub runtime: WorkerRuntime,
    /// The app folder, holding `inference.py`; the worker's cwd.
    pub app_dir: PathBuf,
    /// Host-owned scratch space, shared by all workers of a host:
    /// `runtime/<hash>/infsh_worker/` (the extracted Python runtime),
    /// `spill/<worker>/` (big frames; removed when the worker is gone) and
    /// `file-cache/` (the default `FILE_CACHE_DIR`).
    pub state_dir: PathBuf,
    /// Extra environment variables, on top of the host's own. They may set
    /// `FILE_CACHE_DIR` and extend `PYTHONPATH` (the runtime stays first);
    /// the protocol's own variables cannot be overridden.
    pub env: Vec<(String, String)>,
}

/// Which pipe a line of app output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line of the app's output, without its line ending. Lines longer than
/// [`MAX_LINE_BYTES`] arrive in pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    pub line: String,
}

/// What a call reports while it runs, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// A line the app wrote while this call was in flight. With several
    /// calls in flight every one of them gets the line: output cannot be
    /// told apart by call.
    Log(LogLine),
    /// A streaming function yielded: the full output so far.
    Snapshot {
        output: Value,
        files: Vec<OutputFile>,
    },
}

/// One function call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRequest {
    /// Unique among the calls in flight on this worker.
    pub id: CallId,
    pub function: String,
    pub input: Value,
    pub metadata: Value,
}

/// One call of a batch ([`Worker::call_batch`]): the request, where its
/// events go, and where its answer goes.
#[derive(Debug)]
pub struct BatchCall {
    pub req: CallRequest,
    pub events: tokio::sync::mpsc::UnboundedSender<CallEvent>,
    pub reply: tokio::sync::oneshot::Sender<Result<CallOutcome, WorkerError>>,
}

/// A call's result (`done`).
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    /// As the worker wrote it ([`Payload::Raw`]): parsed only by whoever
    /// must look inside.
    pub output: Payload,
    pub files: Vec<OutputFile>,
    /// As measured by the worker.
    pub seconds: f64,
    /// The call's scratch folder, where its output files usually are:
    /// removed when the outcome is dropped (None from fakes).
    pub scratch: Option<Scratch>,
}
