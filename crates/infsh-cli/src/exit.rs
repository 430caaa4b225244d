//! Exit codes: the one place that decides which failure maps to which status.
//! Scripts depend on these numbers; `docs/cli.md` documents them.

use std::fmt;

/// Process exit statuses of `infsh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    /// Anything not covered below (an infsh bug, an I/O error).
    Internal = 1,
    /// Bad command line. clap prints the usage and exits with it itself;
    /// infsh uses it for values clap cannot check (a malformed --api-url).
    Usage = 2,
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
    /// Remote mode: the server could not be reached, or answered with
    /// something that is not the API (a 5xx, a malformed body).
    Server = 10,
    /// Remote mode: the server refused the API key (401/403).
    Auth = 11,
    /// Remote mode: the server is busy (the app's queue is full, 429) or
    /// shutting down (503); retry later.
    Busy = 12,
    /// Interrupted by Ctrl-C / SIGINT.
    Interrupted = 130,
}

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0 success            4 bad input           8 timeout
  1 internal error     5 setup failed        9 environment build failed
  2 usage error        6 function failed    10 server unreachable or failed
  3 app failed to load 7 worker crashed     11 API key refused
                                            12 server busy (retry later)
                                           130 interrupted";

impl ExitCode {
    /// Stable machine name, used in `--json` error output.
    pub fn name(self) -> &'static str {
        match self {
            ExitCode::Ok => "ok",
            ExitCode::Internal => "internal",
            ExitCode::Usage => "usage",
            ExitCode::AppLoad => "app_load",
            ExitCode::Input => "input",
            ExitCode::Setup => "setup",
            ExitCode::Function => "function",
            ExitCode::WorkerCrashed => "worker_crashed",
            ExitCode::Timeout => "timeout",
            ExitCode::Environment => "environment",
            ExitCode::Server => "server",
            ExitCode::Auth => "auth",
            ExitCode::Busy => "busy",
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
