//! Remote mode: the CLI as a client of an `infsh serve` server (or any
//! inference.sh-compatible API). `app run --api-url` and the `task`
//! commands come through here.

pub mod client;
pub mod errors;
pub mod follow;
pub mod run;
pub mod snippet;
pub mod task;

use crate::cli::RemoteArgs;
use crate::exit::Failure;

pub use client::Remote;

/// The server to use, if `--api-url` / `INFSH_API_URL` names one.
pub fn connect(args: &RemoteArgs) -> Result<Option<Remote>, Failure> {
    match args.api_url.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(url) => Remote::new(url, args.api_key.clone())
            .map(Some)
            .map_err(|e| e.into_failure()),
    }
}
