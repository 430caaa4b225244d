//! What can go wrong with a worker, and how a worker process ended.

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;

use infsh_protocol::{CallFailed, CallId, LoadFailed, SetupFailed};
use thiserror::Error;

/// Every error of the [`crate::Worker`] API. `LoadFailed`, `SetupFailed` and
/// `CallFailed` are the app's own failures as the worker reported them; the
/// worker is still usable after the latter two. `Exited` and `Protocol` mean
/// the worker is gone.
#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("could not start the worker with {python}: {source}")]
    Spawn {
        python: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("app folder {path}: {source}")]
    AppDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The state folder (runtime files, spill folder) could not be prepared.
    #[error("could not prepare {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the app could not be loaded ({}): {}", .0.kind, .0.error)]
    LoadFailed(LoadFailed),
    #[error("setup failed ({}): {}", .0.kind, .0.error)]
    SetupFailed(SetupFailed),
    #[error("call {} failed ({}): {}", .0.id, .0.kind, .0.error)]
    CallFailed(CallFailed),
    /// The worker process ended while an operation was pending, or before
    /// one was sent.
    #[error("the worker exited ({status}) during {during}")]
    Exited {
        status: ExitDescription,
        /// `"startup"`, `"setup"`, `"call <function>"`, `"shutdown"`.
        during: String,
        /// The last lines the worker wrote to stderr, oldest first.
        stderr_tail: Vec<String>,
    },
    /// The worker broke the protocol (bad frame, unexpected message, wrong
    /// version); it has been killed.
    #[error("worker protocol error: {0}")]
    Protocol(String),
    #[error("call id {0} is already in flight on this worker")]
    DuplicateCallId(CallId),
}

/// How a worker process ended: an exit code or a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitDescription {
    code: Option<i32>,
    signal: Option<i32>,
    core_dumped: bool,
}

impl ExitDescription {
    pub fn from_status(status: ExitStatus) -> Self {
        ExitDescription {
            code: status.code(),
            signal: status.signal(),
            core_dumped: status.core_dumped(),
        }
    }

    /// Neither code nor signal is known (waiting for the process failed).
    pub fn unknown() -> Self {
        ExitDescription {
            code: None,
            signal: None,
            core_dumped: false,
        }
    }

    pub fn code(&self) -> Option<i32> {
        self.code
    }

    pub fn signal(&self) -> Option<i32> {
        self.signal
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitDescription {
    /// `exit status 3`, `signal 9 (SIGKILL)`, `signal 11 (SIGSEGV), core dumped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit status {code}"),
            (None, Some(sig)) => {
                write!(f, "signal {sig}")?;
                if let Ok(name) = nix::sys::signal::Signal::try_from(sig) {
                    write!(f, " ({})", name.as_str())?;
                }
                if self.core_dumped {
                    write!(f, ", core dumped")?;
                }
                Ok(())
            }
            (None, None) => f.write_str("unknown exit status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_descriptions() {
        let exited = ExitDescription::from_status(ExitStatus::from_raw(3 << 8));
        assert_eq!(exited.to_string(), "exit status 3");
        assert_eq!(exited.code(), Some(3));
        assert_eq!(exited.signal(), None);
        let killed = ExitDescription::from_status(ExitStatus::from_raw(9));
        assert_eq!(killed.to_string(), "signal 9 (SIGKILL)");
        assert_eq!(killed.signal(), Some(9));
        let segv = ExitDescription::from_status(ExitStatus::from_raw(11 | 0x80));
        assert_eq!(segv.to_string(), "signal 11 (SIGSEGV), core dumped");
        assert_eq!(
            ExitDescription::unknown().to_string(),
            "unknown exit status"
        );
    }
}
