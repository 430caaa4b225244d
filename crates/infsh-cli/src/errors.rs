//! Maps every library error to what the user sees: one message, an exit
//! code and, where Python raised, its traceback. The only place that knows
//! both the libraries' error enums and the CLI's exit codes.

use infsh_core::app::{AppDir, AppError, AppRuntime};
use infsh_core::files::FileInputError;
use infsh_core::functions::ResolveError;
use infsh_core::validate::FieldError;
use infsh_core::InvalidSchema;
use infsh_env::EnvError;
use infsh_protocol::{FailureKind, LoadFailureKind, SetupFailureKind};
use infsh_worker::WorkerError;

use crate::exit::{ExitCode, Failure};

pub fn app_error(err: AppError) -> Failure {
    Failure::new(ExitCode::AppLoad, err.to_string())
}

/// A function whose schema does not compile cannot be called: the app is
/// broken, as when it fails to load (exit 3), locally and remotely.
pub fn invalid_schema(err: InvalidSchema) -> Failure {
    Failure::new(ExitCode::AppLoad, err.to_string())
}

pub fn resolve_error(err: ResolveError) -> Failure {
    Failure::new(ExitCode::Input, err.to_string())
}

pub fn file_input_error(err: FileInputError) -> Failure {
    Failure::new(ExitCode::Input, err.to_string())
}

pub fn env_error(err: EnvError) -> Failure {
    Failure::new(
        ExitCode::Environment,
        format!("could not build the app's environment: {err}"),
    )
}

/// `what` is e.g. `input for function "upscale"`.
pub fn invalid_input(what: &str, errors: &[FieldError]) -> Failure {
    let mut message = format!("{what} is invalid:");
    for error in errors {
        message.push_str(&format!("\n  - {error}"));
    }
    Failure::new(ExitCode::Input, message)
}

pub fn worker_error(err: WorkerError, app: &AppDir) -> Failure {
    match err {
        WorkerError::Spawn { python, source } => Failure::new(
            ExitCode::Environment,
            format!(
                "cannot start the {} {}: {source}",
                match app.runtime {
                    AppRuntime::Python => "Python interpreter",
                    AppRuntime::Node => "Node.js runtime",
                },
                python.display()
            ),
        ),
        WorkerError::LoadFailed(load) if app.runtime == AppRuntime::Node => {
            let message = match load.kind {
                LoadFailureKind::NoInferencePy => {
                    format!("no inference.js in {}", app.root.display())
                }
                LoadFailureKind::ImportError => {
                    format!("the app's inference.js failed to load: {}", load.error)
                }
                LoadFailureKind::NoAppClass => load.error.clone(),
                LoadFailureKind::AppInitError => format!("new App() threw: {}", load.error),
            };
            Failure::new(ExitCode::AppLoad, message).with_traceback(load.traceback)
        }
        WorkerError::LoadFailed(load) => {
            let message = match load.kind {
                LoadFailureKind::NoInferencePy => {
                    format!("no inference.py in {}", app.root.display())
                }
                LoadFailureKind::ImportError => {
                    format!("inference.py raised while being imported: {}", load.error)
                }
                LoadFailureKind::NoAppClass => {
                    format!("inference.py defines no `App` class ({})", load.error)
                }
                LoadFailureKind::AppInitError => format!("App() raised: {}", load.error),
            };
            Failure::new(ExitCode::AppLoad, message).with_traceback(load.traceback)
        }
        WorkerError::SetupFailed(setup) => match setup.kind {
            SetupFailureKind::Config => Failure::new(
                ExitCode::Input,
                format!("setup config rejected by the app: {}", setup.error),
            )
            .with_traceback(setup.traceback),
            SetupFailureKind::App => {
                Failure::new(ExitCode::Setup, format!("setup failed: {}", setup.error))
                    .with_traceback(setup.traceback)
            }
        },
        WorkerError::CallFailed(call) => match call.kind {
            FailureKind::Input => {
                let mut message = format!("input rejected by the app: {}", call.error);
                for item in &call.errors {
                    message.push_str(&format!("\n  - {}: {}", item.loc, item.msg));
                }
                Failure::new(ExitCode::Input, message)
            }
            FailureKind::App => Failure::new(
                ExitCode::Function,
                format!("the function raised {}", call.error),
            )
            .with_traceback(call.traceback),
            FailureKind::Cancelled => Failure::new(ExitCode::Interrupted, "the call was cancelled"),
            FailureKind::UnknownFunction => Failure::new(ExitCode::Input, call.error),
            FailureKind::NotSetUp => Failure::new(
                ExitCode::Internal,
                format!("worker was not set up: {}", call.error),
            ),
        },
        WorkerError::Exited {
            status,
            during,
            stderr_tail,
        } => {
            let mut message = format!("the worker process died during {during} ({status})");
            let tail: Vec<&String> = stderr_tail
                .iter()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if !tail.is_empty() {
                message.push_str("; its last output:");
                for line in tail {
                    message.push_str(&format!("\n  {line}"));
                }
            }
            Failure::new(ExitCode::WorkerCrashed, message)
        }
        other => Failure::new(ExitCode::Internal, format!("worker error: {other}")),
    }
}
