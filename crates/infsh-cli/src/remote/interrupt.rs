//! Ctrl-C while a remote task exists. The listener is installed just
//! before the run is submitted (not when following starts): a Ctrl-C that
//! comes while the server is still answering the submission, with the task
//! already running there, must not kill the CLI and leave the task behind.
//! A Ctrl-C before that point (while connecting or uploading) still ends the
//! CLI at once, as nothing was started.

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::exit::{ExitCode, Failure};

/// SIGINT, buffered from [`Interrupt::listen`] on: one that came while no
/// one was waiting is reported by the next [`Interrupt::recv`].
pub struct Interrupt {
    signal: Signal,
    /// A Ctrl-C already seen, to be reported again ([`Interrupt::replay`]).
    pending: bool,
}

impl Interrupt {
    /// Starts listening: from here on SIGINT no longer ends the process.
    pub fn listen() -> Result<Interrupt, Failure> {
        let signal = signal(SignalKind::interrupt()).map_err(|e| {
            Failure::new(ExitCode::Internal, format!("cannot listen for Ctrl-C: {e}"))
        })?;
        Ok(Interrupt {
            signal,
            pending: false,
        })
    }

    /// Waits for a SIGINT (returns at once for one already received).
    pub async fn recv(&mut self) {
        if std::mem::take(&mut self.pending) {
            return;
        }
        self.signal.recv().await;
    }

    /// Reports the Ctrl-C just received once more, to the next `recv`: the
    /// submission saw it, the following that cancels the task acts on it.
    pub fn replay(&mut self) {
        self.pending = true;
    }
}
