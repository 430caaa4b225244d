//! A scripted fake worker behind the worker seam (`worker_seam.rs`), for the
//! scheduler's unit tests: no process, no Python, and on tokio's paused
//! clock a backoff or a timeout takes no real time.
//!
//! What a worker does is scripted by what it is given, as a test app would
//! be by its input:
//! - a call's input and a setup's config: `sleep` (seconds before the
//!   answer), `fail` (the app raises: `CallFailed`/`SetupFailed` with that
//!   error), `crash` (the worker dies after the sleep, `exit status 1`),
//!   `ignore_cancel` (the call does not stop on cancel), `die_idle_after`
//!   (a call's: the worker is killed, SIGKILL, that many seconds after it
//!   answered, as by a user's `kill -9`); a setup config of
//!   `{}` (a preload's) follows [`Fake::script_default_setup`] instead;
//! - a start: the next entry of [`Fake::script_starts`] (a failed load, a
//!   slow or stuck start), else an immediate `ready` with one function,
//!   `run`.
//!
//! Like the real worker, a worker that dies (crash, kill, shutdown) fails
//! every pending and later operation with [`WorkerError::Exited`].
//! Everything the scheduler asks of the fakes is recorded, in order and
//! with the paused clock's time, in [`Fake::records`].

use std::collections::{HashMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use infsh_protocol::{
    CallFailed, CallId, FailureKind, FunctionInfo, Ready, SetupFailed, SetupFailureKind,
};
use infsh_worker::{
    BatchCall, CallEvent, CallOutcome, CallRequest, ExitDescription, LogLine, LogStream,
    WorkerError,
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::registry::AppEntry;
use crate::shared::Shared;
use crate::worker_seam::{AppLauncher, AppWorker, Launched, SlotEnv, StartFailure, WorkerLauncher};

/// The stderr line a crashing fake leaves (the crash's traceback).
pub(crate) const CRASH_LINE: &str = "Fatal Python error: the fake crashed";

/// What the scheduler asked of the fakes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    /// A start began.
    Launch,
    /// A start gave a worker.
    Started {
        pid: u32,
    },
    /// A start failed (scripted).
    LaunchFailed,
    Setup {
        pid: u32,
        config: Value,
    },
    /// A setup ended, however.
    SetupEnded {
        pid: u32,
    },
    /// `task` is the call id, which is the task's id.
    Call {
        pid: u32,
        task: String,
    },
    /// A `call_batch` of these tasks, in the order given.
    CallBatch {
        pid: u32,
        tasks: Vec<String>,
    },
    /// A call ended, however.
    CallEnded {
        pid: u32,
        task: String,
    },
    Cancel {
        pid: u32,
        task: String,
    },
    Kill {
        pid: u32,
    },
    Shutdown {
        pid: u32,
    },
    /// The launcher was told to let go of what it keeps between starts
    /// (a real one: the app's zygote).
    Release,
}

/// One [`Op`] and when it happened, after the fake was made.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub at: Duration,
    pub op: Op,
}

/// How the next start goes, instead of an immediate `ready`.
#[derive(Debug, Clone)]
pub(crate) enum StartScript {
    /// The app does not load: this message (and a traceback).
    Fail(String),
    /// `ready` after this long.
    Delay(Duration),
}

/// The test's side of the fakes: the script of the next starts and the
/// record of what was done. Also the [`WorkerLauncher`] given to the
/// engine.
pub(crate) struct Fake {
    epoch: Instant,
    records: Mutex<Vec<Record>>,
    starts: Mutex<VecDeque<StartScript>>,
    /// The script of a setup whose config is `{}`.
    default_setup: Mutex<Value>,
    next_pid: AtomicU32,
    /// Which app each started worker is of, and its slot.
    launches: Mutex<Vec<FakeLaunch>>,
    /// How long `shutdown` (the app's unload) takes.
    unload_time: Mutex<Duration>,
}

/// A worker the fake launcher started: its app, pid and slot environment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FakeLaunch {
    pub app: String,
    pub pid: u32,
    pub slot: SlotEnv,
}

impl Fake {
    pub fn new() -> Arc<Fake> {
        Arc::new(Fake {
            epoch: Instant::now(),
            records: Mutex::default(),
            starts: Mutex::new(VecDeque::new()),
            default_setup: Mutex::new(json!({})),
            next_pid: AtomicU32::new(1000),
            launches: Mutex::default(),
            unload_time: Mutex::new(Duration::ZERO),
        })
    }

    /// How long every `shutdown` (unload) takes from now on.
    pub fn script_unload_time(&self, time: Duration) {
        *self.unload_time.lock().unwrap_or_else(|p| p.into_inner()) = time;
    }

    /// Every worker started so far, in order.
    pub fn launches(&self) -> Vec<FakeLaunch> {
        self.launches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The workers started as replicas (not as probes), in order.
    pub fn replica_launches(&self) -> Vec<FakeLaunch> {
        self.launches()
            .into_iter()
            .filter(|l| l.slot != SlotEnv::probe())
            .collect()
    }

    /// The next starts go so, in order; then they succeed at once.
    pub fn script_starts(&self, scripts: impl IntoIterator<Item = StartScript>) {
        self.starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(scripts);
    }

    /// How setups with the config `{}` go from now on (a preload's config).
    pub fn script_default_setup(&self, script: Value) {
        *self.default_setup.lock().unwrap_or_else(|p| p.into_inner()) = script;
    }

    fn record(&self, op: Op) {
        let at = self.epoch.elapsed();
        self.lock_records().push(Record { at, op });
    }

    /// When the fake was made: the zero of [`Record::at`].
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    fn lock_records(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything done so far.
    pub fn records(&self) -> Vec<Record> {
        self.lock_records().clone()
    }

    /// The ops done so far, without their times.
    pub fn ops(&self) -> Vec<Op> {
        self.lock_records().iter().map(|r| r.op.clone()).collect()
    }

    /// How many ops so far match.
    pub fn count(&self, matches: impl Fn(&Op) -> bool) -> usize {
        self.lock_records()
            .iter()
            .filter(|r| matches(&r.op))
            .count()
    }

    /// When the ops that match happened, in order.
    pub fn times(&self, matches: impl Fn(&Op) -> bool) -> Vec<Duration> {
        self.lock_records()
            .iter()
            .filter(|r| matches(&r.op))
            .map(|r| r.at)
            .collect()
    }

    /// When the `n`th (from 0) op that matches happened.
    pub fn time_of(&self, n: usize, matches: impl Fn(&Op) -> bool) -> Duration {
        let records = self.records();
        match records.iter().filter(|r| matches(&r.op)).nth(n) {
            Some(record) => record.at,
            None => panic!("no op #{n} of that kind in {records:#?}"),
        }
    }

    /// `run`, plus each function the app declares batched (taking a list).
    fn ready(pid: u32, batched: &[String]) -> Ready {
        let mut ready = Fake::ready_run(pid);
        let run = ready.functions[0].clone();
        ready
            .functions
            .extend(batched.iter().map(|name| FunctionInfo {
                name: name.clone(),
                batched: true,
                ..run.clone()
            }));
        ready
    }

    fn ready_run(pid: u32) -> Ready {
        Ready {
            protocol: infsh_protocol::PROTOCOL_VERSION,
            pid,
            python: "3.12.0 (fake)".into(),
            sdk_version: None,
            app_class: "App".into(),
            functions: vec![FunctionInfo {
                name: "run".into(),
                streaming: false,
                is_async: true,
                accepts_metadata: false,
                batched: false,
                entry: json!({"input_schema": {"type": "object"}}),
            }],
            setup_schema: json!({"type": "object"}),
            has_on_cancel: true,
        }
    }
}

impl WorkerLauncher for Arc<Fake> {
    fn for_app(&self, _shared: Arc<Shared>, entry: Arc<AppEntry>) -> Arc<dyn AppLauncher> {
        let batched = entry.batching.keys().cloned().collect();
        Arc::new(FakeAppLauncher(self.clone(), entry.id.clone(), batched))
    }
}

/// The fake, the app id and its batched functions.
struct FakeAppLauncher(Arc<Fake>, String, Vec<String>);

#[async_trait]
impl AppLauncher for FakeAppLauncher {
    async fn launch(&self, slot: &SlotEnv) -> Result<Launched, StartFailure> {
        let fake = &self.0;
        fake.record(Op::Launch);
        let script = fake
            .starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        match script {
            Some(StartScript::Fail(message)) => {
                fake.record(Op::LaunchFailed);
                return Err(StartFailure::load(
                    message.clone(),
                    Some(format!("Traceback (fake):\n{message}")),
                ));
            }
            Some(StartScript::Delay(delay)) => tokio::time::sleep(delay).await,
            None => {}
        }
        let pid = fake.next_pid.fetch_add(1, Ordering::SeqCst);
        fake.launches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(FakeLaunch {
                app: self.1.clone(),
                pid,
                slot: slot.clone(),
            });
        fake.record(Op::Started { pid });
        Ok(Launched {
            worker: Arc::new(FakeWorker {
                fake: fake.clone(),
                pid,
                exit: Arc::new(watch::channel(None).0),
                exit_status: Arc::new(watch::channel(None).0),
                calls: Arc::default(),
            }),
            ready: Fake::ready(pid, &self.2),
            logs: Vec::new(),
        })
    }

    fn release(&self) {
        self.0.record(Op::Release);
    }
}

/// What an input or a setup config asks of the fake.
struct Script {
    sleep: Duration,
    fail: Option<String>,
    crash: bool,
    ignore_cancel: bool,
}

impl Script {
    fn of(value: &Value) -> Script {
        Script {
            sleep: Duration::from_secs_f64(value["sleep"].as_f64().unwrap_or(0.0)),
            fail: value["fail"].as_str().map(str::to_string),
            crash: value["crash"].as_bool().unwrap_or(false),
            ignore_cancel: value["ignore_cancel"].as_bool().unwrap_or(false),
        }
    }
}

/// How a fake worker ended, and its last stderr lines.
type Exit = (ExitDescription, Vec<String>);

#[derive(Clone)]
struct FakeWorker {
    fake: Arc<Fake>,
    pid: u32,
    /// Set once the worker is gone: how it ended, and its last stderr lines.
    exit: Arc<watch::Sender<Option<Exit>>>,
    /// The same for the worker seam's `exit_watch`.
    exit_status: Arc<watch::Sender<Option<ExitDescription>>>,
    /// Calls in flight, by id: notified on cancel.
    calls: Arc<Mutex<HashMap<CallId, Arc<Notify>>>>,
}

/// Ends a worker (once) through its exit channels.
fn die(
    exit: &watch::Sender<Option<Exit>>,
    exit_status: &watch::Sender<Option<ExitDescription>>,
    status: ExitDescription,
    stderr_tail: Vec<String>,
) {
    let first = exit.send_if_modified(|exit| {
        if exit.is_some() {
            return false;
        }
        *exit = Some((status, stderr_tail));
        true
    });
    if first {
        exit_status.send_replace(Some(status));
    }
}

fn exit_status(raw: i32) -> ExitDescription {
    ExitDescription::from_status(ExitStatus::from_raw(raw))
}

impl FakeWorker {
    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<CallId, Arc<Notify>>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the worker (once): every pending operation fails.
    fn die(&self, status: ExitDescription, stderr_tail: Vec<String>) {
        die(&self.exit, &self.exit_status, status, stderr_tail);
    }

    fn exited(&self, during: &str) -> Option<WorkerError> {
        let exit = self.exit.borrow();
        let (status, stderr_tail) = exit.as_ref()?;
        Some(WorkerError::Exited {
            status: *status,
            during: during.to_string(),
            stderr_tail: stderr_tail.clone(),
        })
    }

    /// Runs a scripted operation: sleeps, then fails, crashes or succeeds;
    /// ends early with the worker (`Exited`) or when `stop` is notified.
    async fn perform(
        &self,
        script: &Script,
        during: &str,
        stop: Option<&Notify>,
    ) -> Result<(), Performed> {
        if let Some(e) = self.exited(during) {
            return Err(Performed::Error(e));
        }
        let mut exit = self.exit.subscribe();
        let stopped = async {
            match stop {
                Some(stop) => stop.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(script.sleep) => {}
            _ = exit.wait_for(Option::is_some) => {
                return Err(Performed::Error(self.exited(during).expect("it exited")));
            }
            () = stopped => return Err(Performed::Stopped),
        }
        if script.crash {
            self.die(exit_status(1 << 8), vec![CRASH_LINE.to_string()]);
            return Err(Performed::Error(self.exited(during).expect("it exited")));
        }
        match &script.fail {
            Some(error) => Err(Performed::Failed(error.clone())),
            None => Ok(()),
        }
    }
}

/// How a scripted operation did not succeed.
enum Performed {
    /// The app raised this.
    Failed(String),
    /// Cancelled.
    Stopped,
    Error(WorkerError),
}

#[async_trait]
impl AppWorker for FakeWorker {
    fn pid(&self) -> u32 {
        self.pid
    }

    async fn setup(
        &self,
        config: Value,
        _metadata: Value,
        logs: mpsc::UnboundedSender<LogLine>,
    ) -> Result<f64, WorkerError> {
        let pid = self.pid;
        self.fake.record(Op::Setup {
            pid,
            config: config.clone(),
        });
        let _ = logs.send(LogLine {
            stream: LogStream::Stdout,
            line: format!("setting up with {config}"),
        });
        let script = if config == json!({}) {
            let default = self.fake.default_setup.lock();
            Script::of(&default.unwrap_or_else(|p| p.into_inner()))
        } else {
            Script::of(&config)
        };
        let result = self.perform(&script, "setup", None).await;
        self.fake.record(Op::SetupEnded { pid });
        match result {
            Ok(()) => Ok(script.sleep.as_secs_f64()),
            Err(Performed::Failed(error)) => Err(WorkerError::SetupFailed(SetupFailed {
                kind: SetupFailureKind::App,
                error: error.clone(),
                traceback: format!("Traceback (fake setup):\n{error}"),
            })),
            Err(Performed::Error(e)) => Err(e),
            Err(Performed::Stopped) => unreachable!("setup is not cancelled"),
        }
    }

    async fn call(
        &self,
        request: CallRequest,
        events: mpsc::UnboundedSender<CallEvent>,
    ) -> Result<CallOutcome, WorkerError> {
        let (pid, task) = (self.pid, request.id.as_str().to_string());
        self.fake.record(Op::Call {
            pid,
            task: task.clone(),
        });
        let _ = events.send(CallEvent::Log(LogLine {
            stream: LogStream::Stdout,
            line: format!("running {task}"),
        }));
        let script = Script::of(&request.input);
        let stop = Arc::new(Notify::new());
        self.calls().insert(request.id.clone(), stop.clone());
        let during = format!("call {}", request.function);
        let stop = (!script.ignore_cancel).then_some(&*stop);
        let result = self.perform(&script, &during, stop).await;
        self.calls().remove(&request.id);
        self.fake.record(Op::CallEnded { pid, task });
        let failed = |kind, error: String| {
            WorkerError::CallFailed(CallFailed {
                id: request.id.clone(),
                kind,
                traceback: format!("Traceback (fake call):\n{error}"),
                error,
                errors: Vec::new(),
            })
        };
        if let (Ok(()), Some(after)) = (&result, request.input["die_idle_after"].as_f64()) {
            // Killed from outside once idle (SIGKILL), `after` seconds
            // after this call answered.
            let (exit, status) = (self.exit.clone(), self.exit_status.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs_f64(after)).await;
                die(&exit, &status, exit_status(9), Vec::new());
            });
        }
        match result {
            Ok(()) => Ok(CallOutcome {
                output: json!({"pid": pid, "input": request.input}).into(),
                files: Vec::new(),
                seconds: script.sleep.as_secs_f64(),
                scratch: None,
            }),
            Err(Performed::Failed(error)) => Err(failed(FailureKind::App, error)),
            Err(Performed::Stopped) => Err(failed(
                FailureKind::Cancelled,
                "CancelledError: cancelled".into(),
            )),
            Err(Performed::Error(e)) => Err(e),
        }
    }

    /// Each call of the batch runs as a call of its own would (its own
    /// script, cancel and answer), all at once.
    fn call_batch(&self, _function: String, calls: Vec<BatchCall>) {
        self.fake.record(Op::CallBatch {
            pid: self.pid,
            tasks: calls
                .iter()
                .map(|c| c.req.id.as_str().to_string())
                .collect(),
        });
        for call in calls {
            let worker = self.clone();
            tokio::spawn(async move {
                let answer = worker.call(call.req, call.events).await;
                let _ = call.reply.send(answer);
            });
        }
    }

    async fn cancel(&self, id: &CallId) -> Result<(), WorkerError> {
        self.fake.record(Op::Cancel {
            pid: self.pid,
            task: id.as_str().to_string(),
        });
        if let Some(e) = self.exited("cancel") {
            return Err(e);
        }
        if let Some(stop) = self.calls().get(id) {
            stop.notify_one();
        }
        Ok(())
    }

    async fn kill(&self, _grace: Duration) {
        self.fake.record(Op::Kill { pid: self.pid });
        self.die(exit_status(9), Vec::new());
    }

    fn exit_watch(&self) -> Option<watch::Receiver<Option<ExitDescription>>> {
        Some(self.exit_status.subscribe())
    }

    async fn shutdown(&self, _grace: Duration) -> Result<ExitDescription, WorkerError> {
        self.fake.record(Op::Shutdown { pid: self.pid });
        let unload = *self
            .fake
            .unload_time
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        tokio::time::sleep(unload).await;
        self.die(exit_status(0), Vec::new());
        Ok(exit_status(0))
    }
}
