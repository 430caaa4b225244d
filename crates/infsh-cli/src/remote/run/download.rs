//! `--output-dir` in remote mode: each output file is downloaded from its
//! URI into the folder, under a name that overwrites nothing.

use std::path::{Path, PathBuf};

use super::output_files::RemoteFile;
use crate::exit::Failure;
use crate::remote::client::Remote;

pub async fn download_files(
    remote: &Remote,
    files: &[RemoteFile],
    dir: &Path,
) -> Result<Vec<Option<PathBuf>>, Failure> {
    crate::output_dir::create(dir)?;
    let mut copied = Vec::new();
    for file in files {
        let name = file
            .filename
            .clone()
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .or_else(|| {
                file.uri
                    .split(['?', '#'])
                    .next()
                    .and_then(|u| u.rsplit('/').next())
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "output".into());
        let target = crate::output_dir::unique_target(dir, &name);
        remote
            .download(&file.uri, &target)
            .await
            .map_err(|e| e.into_failure())?;
        copied.push(Some(target));
    }
    Ok(copied)
}
