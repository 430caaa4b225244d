//! `infsh serve --files URL` (or `INFSH_FILES`): where stored files' bytes
//! live. Opened before the port is taken, like `--store`: an unknown
//! scheme, a bucket that does not exist or cannot be reached, or keys it
//! refuses end the start with one line naming the URL and exit code 2.
//! Without the flag the engine keeps its `files` folder in the data folder.

use infsh_store::{FileBackend, FilesUrl};

use crate::exit::{ExitCode, Failure};

/// The backend `--files` names, opened; None without the flag.
pub async fn open(url: Option<&str>) -> Result<Option<FileBackend>, Failure> {
    let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let failure =
        |e: infsh_store::StoreError| Failure::new(ExitCode::Usage, format!("--files {e}"));
    let parsed = FilesUrl::parse(url).map_err(failure)?;
    let backend = FileBackend::open(&parsed).await.map_err(failure)?;
    tracing::info!(files = %backend.describe(), "stored files");
    Ok(Some(backend))
}
