//! Errors of environment preparation: one enum for the whole crate, each variant
//! carrying what a user needs to fix the problem (the CLI prints them as is).

use std::path::PathBuf;

use crate::Installer;

/// Why an app's environment could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// No base interpreter was given and neither `python3` nor `python` is on PATH.
    #[error("no Python interpreter found: neither `python3` nor `python` is on PATH (pass --python PATH)")]
    NoPython,

    /// The base interpreter could not be run, or did not answer as a Python would.
    #[error("cannot use Python interpreter {python}: {reason}")]
    BadPython { python: PathBuf, reason: String },

    /// inf.yml `kernel: python-...` that is not `python-3.X`.
    #[error(
        "inf.yml kernel: {kernel} is not a Python version: write python-3.X, e.g. python-3.11"
    )]
    BadKernel { kernel: String },

    /// uv has no interpreter for the kernel and could not install one.
    #[error("inf.yml asks for kernel {kernel} but uv has no Python {version} and could not install it ({reason}); install it with `uv python install {version}` or change kernel: in inf.yml")]
    KernelUnavailable {
        kernel: String,
        version: String,
        /// uv's own error line.
        reason: String,
    },

    /// No uv, and the base interpreter is another version than the kernel's.
    #[error("inf.yml asks for kernel {kernel} but {python} is Python {found} and uv is not on PATH to provide Python {version}; install uv, pass --python with a Python {version}, or change kernel: in inf.yml")]
    KernelMismatch {
        kernel: String,
        version: String,
        python: PathBuf,
        found: String,
    },

    /// A Node app, no `--node` given, and no `node` on PATH.
    #[error("no Node.js found: `node` is not on PATH (pass --node PATH)")]
    NoNode,

    /// `node --version` did not answer as Node would.
    #[error("cannot use Node.js {node}: {reason}")]
    BadNode { node: PathBuf, reason: String },

    /// No `npm` beside `node` nor on PATH.
    #[error(
        "no npm found beside node nor on PATH: it is needed to install the app's package.json"
    )]
    NoNpm,

    /// The installer (or venv creation) exited unsuccessfully.
    #[error("{installer} failed ({status}) while building the environment; last lines of its output:\n{}", .log_tail.join("\n"))]
    InstallFailed {
        installer: Installer,
        /// The exit status as text (`exit status: 1`, `signal: 9`, ...).
        status: String,
        /// The last ~30 lines of the installer's stdout and stderr.
        log_tail: Vec<String>,
    },

    /// Reading or writing something in the cache or the app folder failed.
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl EnvError {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        EnvError::Io {
            context,
            path: path.into(),
            source,
        }
    }
}
