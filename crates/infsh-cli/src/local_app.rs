//! One app, loaded and ready to call locally: the app folder, its Python
//! environment, one worker process that ran `setup` once, and the
//! validators for its functions. (Named `LocalApp`, not a "session": API
//! sessions are a different thing, docs/http-api.md.) Every `app` command that touches Python goes
//! through here, so they all share the same phases, errors and exit codes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use infsh_core::app::{AppDir, AppRuntime};
use infsh_core::functions::FunctionSet;
use infsh_core::FunctionValidators;
use infsh_protocol::{CallId, FunctionInfo, Ready};
use infsh_worker::{
    CallEvent, CallOutcome, CallRequest, LogLine, Worker, WorkerConfig, WorkerRuntime,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::cli::EnvArgs;
use crate::deadline::{deadline_after, sleep_until};
use crate::env_phase;
use crate::errors::{
    app_error, env_error, file_input_error, invalid_input, invalid_schema, resolve_error,
    worker_error,
};
use crate::exit::{ExitCode, Failure};
use crate::input::JsonArg;
use crate::paths::Paths;
use crate::ui::Ui;

/// A function's input schema (infsh-core's rule: `{}` when it has none).
pub use infsh_core::validators::input_schema;

/// A function's output schema. The worker always sends one (see
/// docs/protocol.md); an entry without one validates nothing rather than
/// refusing every output.
pub fn output_schema(function: &FunctionInfo) -> &Value {
    function.output_schema().unwrap_or(&EMPTY_SCHEMA)
}

static EMPTY_SCHEMA: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!({}));

/// How long a cancelled call or a shutting-down worker gets before it is killed.
pub const GRACE: Duration = Duration::from_secs(3);

pub struct LocalApp {
    pub app: AppDir,
    pub ready: Ready,
    pub functions: FunctionSet,
    worker: Worker,
    ui: Arc<Ui>,
    /// infsh-core's validators, as the server holds them: a function whose
    /// schema does not compile is refused the same way.
    validators: FunctionValidators,
    next_call: AtomicU64,
}

/// Why a call did not produce an output, beyond the worker's own errors.
enum Interruption {
    Timeout(f64),
    CtrlC,
}

impl LocalApp {
    /// Opens the app folder, prepares its interpreter and starts its worker
    /// (which imports the app and reports its functions). Setup is separate.
    pub async fn open(
        app_path: &Path,
        env: &EnvArgs,
        paths: &Paths,
        ui: &Arc<Ui>,
    ) -> Result<LocalApp> {
        let app = AppDir::open(app_path).map_err(app_error)?;
        for warning in &app.warnings {
            ui.warn(warning);
        }
        report_apt_packages(&app, ui);

        let mut worker_env: Vec<(String, String)> = app
            .manifest
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let (python, runtime) = match app.runtime {
            AppRuntime::Python => match &env.python {
                Some(python) => (python.clone(), WorkerRuntime::Python),
                None => (
                    prepare_env(&app, env, paths, ui).await?,
                    WorkerRuntime::Python,
                ),
            },
            AppRuntime::Node => {
                let prepared = crate::node_env::prepare(&app, env, paths, ui).await?;
                worker_env.extend(prepared.worker_env());
                (prepared.node, WorkerRuntime::Node)
            }
        };

        let phase = ui.phase("start");
        let (idle_tx, mut idle_rx) = mpsc::unbounded_channel::<LogLine>();
        let log_ui = ui.clone();
        tokio::spawn(async move {
            while let Some(line) = idle_rx.recv().await {
                log_ui.app_log(&line);
            }
        });
        let config = WorkerConfig {
            python: python.clone(),
            runtime,
            app_dir: app.root.clone(),
            state_dir: paths.state_dir(),
            env: worker_env,
        };
        let started = tokio::select! {
            started = Worker::start(config, idle_tx) => started,
            _ = tokio::signal::ctrl_c() => return Err(Failure::new(ExitCode::Interrupted, "interrupted while starting the worker").into()),
        };
        let (worker, ready) = match started {
            Ok(ok) => ok,
            Err(err) => {
                phase.fail("");
                return Err(worker_error(err, &app).into());
            }
        };
        let functions = FunctionSet::new(
            ready.functions.clone(),
            app.manifest.default_function.as_deref(),
        );
        phase.finish(&format!(
            "{} function{} · {} {}",
            ready.functions.len(),
            if ready.functions.len() == 1 { "" } else { "s" },
            app.runtime.name(),
            ready.python
        ));
        for warning in functions.warnings() {
            ui.warn(warning);
        }
        Ok(LocalApp {
            validators: FunctionValidators::new(ready.setup_schema.clone()),
            app,
            ready,
            functions,
            worker,
            ui: ui.clone(),
            next_call: AtomicU64::new(1),
        })
    }

    /// Runs the app's `setup` with `config` (validated against the setup schema first).
    pub async fn setup(&self, config: Option<&JsonArg>, timeout: Option<f64>) -> Result<Duration> {
        let config_value = config.map(|c| c.value.clone()).unwrap_or_else(|| json!({}));
        let validator = self.validators.setup().map_err(invalid_schema)?;
        if let Err(errors) = validator.validate(&config_value) {
            return Err(invalid_input("setup config", &errors).into());
        }
        let phase = self.ui.phase("setup");
        let (log_tx, log_rx) = mpsc::unbounded_channel::<LogLine>();
        let forward = self.forward_logs(log_rx);
        let metadata = json!({"app_id": self.app.display_name(), "worker_id": format!("local-{}", self.worker.pid())});
        let result = self
            .guard(self.worker.setup(config_value, metadata, log_tx), timeout)
            .await;
        let _ = forward.await;
        match result {
            Ok(Ok(_seconds)) => Ok(phase.finish("")),
            Ok(Err(err)) => {
                phase.fail("");
                Err(worker_error(err, &self.app).into())
            }
            Err(interruption) => {
                phase.fail("");
                self.worker.kill(GRACE).await;
                Err(interruption_failure(interruption, "setup").into())
            }
        }
    }

    /// Resolves a function name (None: the default function).
    pub fn function(&self, name: Option<&str>) -> Result<&FunctionInfo> {
        self.functions
            .resolve(name)
            .map_err(|e| resolve_error(e).into())
    }

    /// Anchors relative file paths and validates the input against the
    /// function's schema, so bad input never reaches the worker. A function
    /// whose input schema or the setup schema does not compile is refused.
    pub fn prepare_input(&self, function: &FunctionInfo, input: &JsonArg) -> Result<Value> {
        let validator = self.validators.function(function).map_err(invalid_schema)?;
        let mut value = input.value.clone();
        infsh_core::files::resolve_local_paths(input_schema(function), &mut value, &input.base_dir)
            .map_err(file_input_error)?;
        if let Err(errors) = validator.validate(&value) {
            return Err(invalid_input(
                &format!("input for function \"{}\"", function.name),
                &errors,
            )
            .into());
        }
        Ok(value)
    }

    /// Calls a function; snapshots of streaming functions go to `on_snapshot`.
    /// Ctrl-C and `timeout` cancel the call and stop the worker.
    pub async fn call(
        &self,
        function: &FunctionInfo,
        input: Value,
        timeout: Option<f64>,
        mut on_snapshot: impl FnMut(&Value) + Send,
    ) -> Result<CallOutcome> {
        let phase = self.ui.phase(&format!("run {}", function.name));
        let id = CallId(format!(
            "call-{}-{}",
            std::process::id(),
            self.next_call.fetch_add(1, Ordering::Relaxed)
        ));
        let metadata = json!({
            "app_id": self.app.display_name(),
            "task_id": id.0,
            "worker_id": format!("local-{}", self.worker.pid()),
        });
        let request = CallRequest {
            id: id.clone(),
            function: function.name.clone(),
            input,
            metadata,
        };
        let (event_tx, mut event_rx) = mpsc::unbounded_channel::<CallEvent>();
        let call = self.worker.call(request, event_tx);
        tokio::pin!(call);
        let deadline = deadline_after(timeout);
        let mut snapshots = 0usize;
        let mut handle_event = |event: CallEvent| match event {
            CallEvent::Log(line) => self.ui.app_log(&line),
            CallEvent::Snapshot { output, .. } => {
                snapshots += 1;
                phase.set_detail(&crate::ui::snapshot_detail(snapshots, &output));
                on_snapshot(&output);
            }
        };
        // One Ctrl-C listener for the whole call, so a signal that lands
        // while an event is being handled is not missed.
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let outcome = loop {
            tokio::select! {
                biased;
                Some(event) = event_rx.recv() => handle_event(event),
                result = &mut call => break Ok(result),
                _ = sleep_until(deadline) => break Err(Interruption::Timeout(timeout.unwrap_or_default())),
                _ = &mut ctrl_c => break Err(Interruption::CtrlC),
            }
        };
        // Events sent just before the result may still be queued: handle them
        // first, so logs and the snapshot count are complete.
        while let Ok(event) = event_rx.try_recv() {
            handle_event(event);
        }
        match outcome {
            Ok(Ok(done)) => {
                phase.finish("");
                Ok(done)
            }
            Ok(Err(err)) => {
                phase.fail("");
                Err(worker_error(err, &self.app).into())
            }
            Err(interruption) => {
                phase.fail("");
                self.stop_call(&id, call).await;
                Err(
                    interruption_failure(interruption, &format!("function {}", function.name))
                        .into(),
                )
            }
        }
    }

    /// Cancels a call politely (the app's `on_cancel` runs), then stops the
    /// worker's whole process group: a cancelled local run never leaves a
    /// process behind.
    async fn stop_call(
        &self,
        id: &CallId,
        call: impl std::future::Future<Output = Result<CallOutcome, infsh_worker::WorkerError>>,
    ) {
        if self.worker.cancel(id).await.is_ok() {
            let _ = tokio::time::timeout(GRACE, call).await;
        }
        self.worker.kill(GRACE).await;
    }

    /// Ends the worker: `unload` runs, then the process exits (killed after the grace period).
    pub async fn close(self) {
        let _ = self.worker.shutdown(GRACE).await;
    }

    /// Stops the worker at once (error paths).
    pub async fn kill(self) {
        self.worker.kill(GRACE).await;
    }

    fn forward_logs(
        &self,
        mut rx: mpsc::UnboundedReceiver<LogLine>,
    ) -> tokio::task::JoinHandle<()> {
        let ui = self.ui.clone();
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                ui.app_log(&line);
            }
        })
    }

    /// Runs `fut` unless Ctrl-C or the timeout comes first.
    async fn guard<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
        timeout: Option<f64>,
    ) -> Result<T, Interruption> {
        let deadline = deadline_after(timeout);
        tokio::select! {
            out = fut => Ok(out),
            _ = sleep_until(deadline) => Err(Interruption::Timeout(timeout.unwrap_or_default())),
            _ = tokio::signal::ctrl_c() => Err(Interruption::CtrlC),
        }
    }
}

fn interruption_failure(interruption: Interruption, what: &str) -> Failure {
    match interruption {
        Interruption::Timeout(secs) => Failure::new(
            ExitCode::Timeout,
            format!("{what} timed out after {secs}s; the worker was stopped"),
        ),
        Interruption::CtrlC => Failure::new(
            ExitCode::Interrupted,
            format!("interrupted during {what}; the worker was stopped"),
        ),
    }
}

/// Builds (or reuses) the app's virtual environment; returns its interpreter.
pub(crate) async fn prepare_env(
    app: &AppDir,
    env: &EnvArgs,
    paths: &Paths,
    ui: &Arc<Ui>,
) -> Result<PathBuf> {
    let phase = ui.phase("environment");
    let spec = infsh_env::EnvSpec {
        app_dir: app.root.clone(),
        base_python: env.base_python.clone(),
        cache_dir: paths.envs_dir(),
        kernel: app.manifest.kernel.clone(),
        ..Default::default()
    };
    let (progress, detail) = env_phase::progress(ui, "building the app's environment");
    let result = env_phase::drive(&phase, &detail, infsh_env::prepare(&spec, progress)).await?;
    match result {
        Ok(prepared) => {
            let how = if prepared.reused { "reused" } else { "built" };
            phase.finish(&format!("{how} {}", prepared.dir.display()));
            Ok(prepared.python)
        }
        Err(err) => {
            phase.fail("");
            Err(env_error(err).into())
        }
    }
}

fn report_apt_packages(app: &AppDir, ui: &Ui) {
    let apt = infsh_env::apt_packages(&app.root);
    if apt.declared.is_empty() {
        return;
    }
    if apt.missing.is_empty() {
        ui.info(&format!(
            "packages.txt: {} (installed)",
            apt.declared.join(", ")
        ));
    } else {
        ui.warn(&format!(
            "packages.txt lists system packages that are not installed: {}. infsh does not install them; run: sudo apt-get install {}",
            apt.missing.join(", "),
            apt.missing.join(" ")
        ));
    }
}
