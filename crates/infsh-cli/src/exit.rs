//! Exit codes: the one place that decides which failure maps to which status.
//! Scripts depend on these numbers; `docs/cli.md` documents them.

use std::fmt;

/// Process exit statuses of `infsh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    /// Anything not covered below (an infsh bug, an I/O error).
    Internal = 1,
    // 2: bad command line. clap prints the usage and exits with it itself.
    /// The app could not be loaded: missing folder, no inference.py, no App class,
    /// an import error, a broken inf.yml.
    AppLoad = 3,
    /// Bad input: malformed JSON, input or setup config failing the schema,
    /// unknown function, missing input file.
    Input = 4,
    /// The app's `setup` raised.
    Setup = 5,
    /// The function raised (or, for `app test`, at least one example failed).
    Function = 6,
    /// The worker process died (crash, signal, os._exit).
    WorkerCrashed = 7,
    /// `--timeout` or `--setup-timeout` expired.
    Timeout = 8,
    /// The app's virtual environment could not be built.
    Environment = 9,
    /// Interrupted by Ctrl-C / SIGINT.
    Interrupted = 130,
}

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0 success            4 bad input           7 worker crashed
  1 internal error     5 setup failed        8 timeout
  2 usage error        6 function failed     9 environment build failed
  3 app failed to load                       130 interrupted";

impl ExitCode {
    /// Stable machine name, used in `--json` error output.
    pub fn name(self) -> &'static str {
        match self {
            ExitCode::Ok => "ok",
            ExitCode::Internal => "internal",
            ExitCode::AppLoad => "app_load",
            ExitCode::Input => "input",
            ExitCode::Setup => "setup",
            ExitCode::Function => "function",
            ExitCode::WorkerCrashed => "worker_crashed",
            ExitCode::Timeout => "timeout",
            ExitCode::Environment => "environment",
            ExitCode::Interrupted => "interrupted",
        }
    }
}

/// A failure the user should see, with its exit code and, when the app
/// raised, the Python traceback.
#[derive(Debug)]
pub struct Failure {
    pub code: ExitCode,
    pub message: String,
    pub traceback: Option<String>,
    /// The command already printed its own `--json` report (e.g. `app test`
    /// with failures); `main` then prints only the error line on stderr.
    pub report_printed: bool,
}

impl Failure {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            traceback: None,
            report_printed: false,
        }
    }

    pub fn with_traceback(mut self, traceback: impl Into<String>) -> Self {
        let tb = traceback.into();
        if !tb.trim().is_empty() {
            self.traceback = Some(tb);
        }
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}
