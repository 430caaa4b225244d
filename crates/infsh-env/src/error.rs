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
