//! Where infsh keeps its files on this machine: `--cache-dir` /
//! `INFSH_CACHE_DIR`, else the user's cache folder (`~/.cache/infsh`).

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    pub fn new(cache_dir: Option<PathBuf>) -> Paths {
        let root = cache_dir.unwrap_or_else(|| {
            dirs::cache_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("infsh")
        });
        Paths { root }
    }

    /// Virtual environments, one per distinct requirements.txt.
    pub fn envs_dir(&self) -> PathBuf {
        self.root.join("envs")
    }

    /// A new folder name for the output files of one local run without
    /// `--output-dir`: `outputs/<unix millis>-<pid>` (made when copied into).
    pub fn new_outputs_dir(&self) -> PathBuf {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        self.root
            .join("outputs")
            .join(format!("{millis}-{}", std::process::id()))
    }

    /// The worker runtime, spill files and downloaded File inputs.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
}
