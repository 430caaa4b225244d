//! Remote mode: the CLI as a client of an `infsh serve` server (or any
//! inference.sh-compatible API). `app run --api-url` and the `task`
//! commands come through here.

pub mod client;
pub mod errors;
pub mod follow;
pub mod interrupt;
pub mod run;
pub mod snippet;
pub mod task;

use crate::cli::{RemoteArgs, ServerArgs};
use crate::exit::{ExitCode, Failure};

pub use client::Remote;

/// The server to use, if `--api-url` / `INFSH_API_URL` names one.
pub fn connect(args: &RemoteArgs) -> Result<Option<Remote>, Failure> {
    match args.api_url.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        // INFERENCE_API_KEY is what the platform's SDKs read: a key set for
        // them works here too (INFSH_API_KEY and --api-key win).
        Some(url) => Remote::new(
            url,
            args.api_key
                .clone()
                .or_else(|| std::env::var("INFERENCE_API_KEY").ok()),
        )
        .map(Some)
        .map_err(|e| e.into_failure()),
    }
}

/// The server of a command that only runs remotely (`task`, `engine`):
/// without `--api-url` / `INFSH_API_URL` it is a usage error.
pub fn connect_server(args: ServerArgs) -> Result<Remote, Failure> {
    connect(&args.into())?.ok_or_else(|| {
        Failure::new(
            ExitCode::Usage,
            "no server: pass --api-url URL or set INFSH_API_URL",
        )
    })
}
