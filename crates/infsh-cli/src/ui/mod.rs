//! Everything the CLI shows a person on stderr: phase spinners with their
//! durations, the app's own log lines, warnings. Results go to stdout
//! elsewhere (`output.rs`), so `--json` output is never mixed with this.

mod progress;

pub use progress::{snapshot_detail, Phase, Ui};
