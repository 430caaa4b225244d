//! Per-app Python virtual environments.
//!
//! Each app runs in its own venv built from its `requirements.txt` (plus the
//! `inferencesh` SDK when the file does not name it), created on first use and
//! reused while the requirements and the base interpreter are unchanged: the
//! environment lives in `<cache_dir>/<first 16 hex of its key>` (see [`key`]).
//!
//! Building uses `uv` when it is on PATH and falls back to `python -m venv` +
//! pip. Installer output streams to the caller as [`EnvProgress::Installing`]
//! lines so the CLI can show a progress indicator.
//!
//! Safety of the cache:
//! - A build holds an exclusive file lock (`<cache_dir>/<short key>.lock`), so
//!   two infsh processes preparing the same environment do not collide: the
//!   second waits ([`EnvProgress::Waiting`]) and then reuses the first's result.
//! - An environment counts as built only once its marker file
//!   (`.infsh-env.json`, holding the full key) exists; the marker is written last,
//!   atomically (written aside, then renamed). A failed or interrupted build
//!   leaves no marker, and the next build removes the leftovers first.
//! - The venv is built at its final path rather than in a temporary folder
//!   renamed into place: venvs are not relocatable (console-script shebangs,
//!   `bin/activate`, and pip's records embed the absolute path), so a moved venv
//!   would have broken `bin/pip` and entry points. The marker gives the same
//!   guarantee a rename would: nothing incomplete ever looks reusable.
//!
//! What is not here: environment-variable overrides and `--python` parsing
//! belong to the CLI ([`use_interpreter`] is what `--python PATH` calls);
//! `packages.txt` is only reported ([`apt_packages`]), never installed.

pub mod apt;
mod error;
mod install;
pub mod kernel;
pub mod key;
pub mod node;
pub mod requirements;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use apt::{apt_packages, AptPackages};
pub use error::EnvError;
pub use install::{venv_python, LOG_TAIL_LINES};
pub use key::ENV_FORMAT_VERSION;
pub use node::{prepare_node, NodeEnvSpec, PreparedNodeEnv};

use install::{Build, Tool};

/// The file whose presence (with the right key) marks a finished environment.
pub const MARKER_FILE: &str = ".infsh-env.json";

/// What environment to prepare.
#[derive(Debug, Clone)]
pub struct EnvSpec {
    /// The app folder; its `requirements.txt` (if any) defines the environment.
    pub app_dir: PathBuf,
    /// The interpreter the venv is made from; default: `python3` on PATH, else `python`.
    pub base_python: Option<PathBuf>,
    /// Where environments live, e.g. `~/.cache/infsh/envs`.
    pub cache_dir: PathBuf,
    /// Use `uv` when it is on PATH (default `true`); `false` forces `venv` + pip.
    pub prefer_uv: bool,
    /// inf.yml's `kernel:`. `python-3.X` makes uv provide that interpreter
    /// (installing it when needed); without uv it must match the base one.
    pub kernel: Option<String>,
}

impl Default for EnvSpec {
    /// Empty paths, the default interpreter, `uv` preferred; fill in
    /// `app_dir` and `cache_dir` (`EnvSpec { app_dir, cache_dir, ..Default::default() }`).
    fn default() -> Self {
        EnvSpec::new(PathBuf::new(), PathBuf::new())
    }
}

impl EnvSpec {
    /// A spec with the default interpreter and `uv` preferred.
    pub fn new(app_dir: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        EnvSpec {
            app_dir: app_dir.into(),
            base_python: None,
            cache_dir: cache_dir.into(),
            prefer_uv: true,
            kernel: None,
        }
    }
}

/// The tool that built an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Installer {
    Uv,
    Pip,
    /// `npm ci` / `npm install` (Node apps, `node.rs`).
    Npm,
}

impl fmt::Display for Installer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Installer::Uv => "uv",
            Installer::Pip => "pip",
            Installer::Npm => "npm",
        })
    }
}

/// Progress of [`prepare`], reported through its callback.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EnvProgress {
    /// A finished environment with the same key exists and is used as is.
    Reused { dir: PathBuf },
    /// Another process is building this environment; waiting for its lock.
    Waiting { dir: PathBuf },
    /// A new environment is being built in `dir`.
    Creating { installer: Installer, dir: PathBuf },
    /// One line of the installer's output (stdout and stderr, interleaved).
    Installing { line: String },
    /// The build finished successfully.
    Done { seconds: f64 },
}

/// A ready environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedEnv {
    /// The interpreter to run the worker with.
    pub python: PathBuf,
    /// The environment folder.
    pub dir: PathBuf,
    /// The full hex sha256 key (empty for [`use_interpreter`]).
    pub key: String,
    /// Whether an existing environment was used rather than built now.
    pub reused: bool,
    /// The tool that built it now; `None` when reused or external.
    pub installer: Option<Installer>,
}

/// Contents of [`MARKER_FILE`].
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    key: String,
    format: String,
    installer: Installer,
    base_python: PathBuf,
    python_identity: String,
    /// Packages installed besides `-r requirements.txt`.
    extra_packages: Vec<String>,
    built_seconds: f64,
}

/// Finds the default base interpreter: `python3`, else `python`, on PATH.
pub fn default_python() -> Result<PathBuf, EnvError> {
    which::which("python3")
        .or_else(|_| which::which("python"))
        .map_err(|_| EnvError::NoPython)
}

/// Uses an existing interpreter as is (`--python PATH`): checks that it runs and
/// builds nothing. `dir` is its `sys.prefix`, `key` is empty, `reused` is true.
pub async fn use_interpreter(python: &Path) -> Result<PreparedEnv, EnvError> {
    let interp = key::probe_interpreter(python).await?;
    Ok(PreparedEnv {
        python: python.to_path_buf(),
        dir: interp.prefix,
        key: String::new(),
        reused: true,
        installer: None,
    })
}

/// Returns the app's environment, building it first when no finished one with
/// the same key exists (see the module docs for the cache's rules).
pub async fn prepare(
    spec: &EnvSpec,
    progress: impl Fn(EnvProgress) + Send + Sync,
) -> Result<PreparedEnv, EnvError> {
    let started = Instant::now();
    if let Err(e) = std::fs::read_dir(&spec.app_dir) {
        return Err(EnvError::io("cannot open app folder", &spec.app_dir, e));
    }
    let kernel_version = kernel::python_kernel_version(spec.kernel.as_deref())?;
    let uv = spec.prefer_uv.then(|| which::which("uv").ok()).flatten();
    let base = match (&kernel_version, &uv) {
        (Some(version), Some(uv)) => {
            let kernel = spec.kernel.as_deref().unwrap_or_default();
            kernel::uv_python(uv, kernel, version).await?
        }
        _ => match &spec.base_python {
            Some(p) => p.clone(),
            None => default_python()?,
        },
    };
    let interp = key::probe_interpreter(&base).await?;
    if let Some(version) = &kernel_version {
        let found = kernel::identity_version(&interp.identity).unwrap_or_default();
        if &found != version {
            return Err(EnvError::KernelMismatch {
                kernel: spec.kernel.clone().unwrap_or_default(),
                version: version.clone(),
                python: base,
                found,
            });
        }
    }
    let kernel_in_key = if kernel_version.is_some() {
        spec.kernel.as_deref().unwrap_or_default()
    } else {
        ""
    };

    let req_path = spec.app_dir.join("requirements.txt");
    let (req_bytes, req_file) = match std::fs::read(&req_path) {
        Ok(b) => (b, Some(req_path.as_path())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
        Err(e) => return Err(EnvError::io("cannot read", &req_path, e)),
    };
    let key = key::env_key(&req_bytes, &interp, kernel_in_key);
    let dir = spec.cache_dir.join(key::short_key(&key));

    if is_finished(&dir, &key) {
        progress(EnvProgress::Reused { dir: dir.clone() });
        return Ok(reused(dir, key));
    }

    std::fs::create_dir_all(&spec.cache_dir)
        .map_err(|e| EnvError::io("cannot create", &spec.cache_dir, e))?;
    let lock_path = spec
        .cache_dir
        .join(format!("{}.lock", key::short_key(&key)));
    let _lock = lock_exclusive(&lock_path, || {
        progress(EnvProgress::Waiting { dir: dir.clone() })
    })
    .await?;

    // Whoever held the lock before us may have finished this very environment.
    if is_finished(&dir, &key) {
        progress(EnvProgress::Reused { dir: dir.clone() });
        return Ok(reused(dir, key));
    }
    remove_leftovers(&dir)?;

    let tool = match uv {
        Some(uv) => Tool::Uv { uv },
        None => Tool::Pip,
    };
    let installer = tool.installer();
    let extra = requirements::extra_packages(&String::from_utf8_lossy(&req_bytes));
    progress(EnvProgress::Creating {
        installer,
        dir: dir.clone(),
    });
    tracing::info!(dir = %dir.display(), %installer, ?extra, "building app environment");

    let build = Build {
        tool,
        base_python: &interp.executable,
        dir: &dir,
        app_dir: &spec.app_dir,
        requirements: req_file,
        extra: &extra,
    };
    if let Err(e) = build.run(&progress).await {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }

    let seconds = started.elapsed().as_secs_f64();
    write_marker(
        &dir,
        &Marker {
            key: key.clone(),
            format: ENV_FORMAT_VERSION.to_string(),
            installer,
            base_python: interp.executable.clone(),
            python_identity: interp.identity.clone(),
            extra_packages: extra,
            built_seconds: seconds,
        },
    )?;
    progress(EnvProgress::Done { seconds });
    Ok(PreparedEnv {
        python: venv_python(&dir),
        dir,
        key,
        reused: false,
        installer: Some(installer),
    })
}

fn reused(dir: PathBuf, key: String) -> PreparedEnv {
    PreparedEnv {
        python: venv_python(&dir),
        dir,
        key,
        reused: true,
        installer: None,
    }
}

/// A finished environment: its marker names this key and its interpreter exists.
fn is_finished(dir: &Path, key: &str) -> bool {
    let Ok(text) = std::fs::read(dir.join(MARKER_FILE)) else {
        return false;
    };
    match serde_json::from_slice::<Marker>(&text) {
        Ok(m) => m.key == key && venv_python(dir).exists(),
        Err(_) => false,
    }
}

pub(crate) fn remove_leftovers(dir: &Path) -> Result<(), EnvError> {
    match std::fs::symlink_metadata(dir) {
        Ok(_) => {
            tracing::info!(dir = %dir.display(), "removing an unfinished environment");
            std::fs::remove_dir_all(dir).map_err(|e| EnvError::io("cannot remove", dir, e))
        }
        Err(_) => Ok(()),
    }
}

fn write_marker(dir: &Path, marker: &Marker) -> Result<(), EnvError> {
    let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(marker).expect("marker serializes");
    std::fs::write(&tmp, json).map_err(|e| EnvError::io("cannot write", &tmp, e))?;
    let path = dir.join(MARKER_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| EnvError::io("cannot write", &path, e))
}

/// Takes an exclusive lock on `path` (created if needed), calling `on_wait`
/// first if another holder makes us wait. The lock is released when the
/// returned file is dropped (also when the process dies).
pub(crate) async fn lock_exclusive(
    path: &Path,
    on_wait: impl FnOnce(),
) -> Result<std::fs::File, EnvError> {
    use fs4::fs_std::FileExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| EnvError::io("cannot open lock file", path, e))?;
    if FileExt::try_lock_exclusive(&file).map_err(|e| EnvError::io("cannot lock", path, e))? {
        return Ok(file);
    }
    on_wait();
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || FileExt::lock_exclusive(&file).map(|()| file))
        .await
        .expect("lock task does not panic")
        .map_err(|e| EnvError::io("cannot lock", owned, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_decides_finished() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("env");
        std::fs::create_dir_all(env.join("bin")).unwrap();
        assert!(!is_finished(&env, "k"), "no marker yet");
        std::fs::write(env.join("bin/python"), "").unwrap();
        let marker = Marker {
            key: "k".into(),
            format: ENV_FORMAT_VERSION.into(),
            installer: Installer::Uv,
            base_python: "/usr/bin/python3".into(),
            python_identity: "CPython".into(),
            extra_packages: vec![],
            built_seconds: 1.0,
        };
        write_marker(&env, &marker).unwrap();
        assert!(is_finished(&env, "k"));
        assert!(!is_finished(&env, "other"));
        assert!(!env.join(format!("{MARKER_FILE}.tmp")).exists());
        std::fs::remove_file(env.join("bin/python")).unwrap();
        assert!(!is_finished(&env, "k"), "interpreter gone");
    }

    #[tokio::test]
    async fn second_locker_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = lock_exclusive(&path, || panic!("first must not wait"))
            .await
            .unwrap();
        let waited = std::sync::atomic::AtomicBool::new(false);
        let release = async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            drop(first);
        };
        let (_, second) = tokio::join!(
            release,
            lock_exclusive(&path, || waited
                .store(true, std::sync::atomic::Ordering::SeqCst))
        );
        second.unwrap();
        assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn default_spec_prefers_uv() {
        let spec = EnvSpec::default();
        assert!(spec.prefer_uv && spec.base_python.is_none());
    }

    #[test]
    fn installer_display() {
        assert_eq!(Installer::Uv.to_string(), "uv");
        assert_eq!(Installer::Pip.to_string(), "pip");
    }
}
