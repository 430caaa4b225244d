//! Per-app Node environments: the app's `package.json` (and
//! `package-lock.json`) installed with `npm ci` (`npm install` without a
//! lock file) into `<cache_dir>/node-<first 16 hex of its key>/node_modules`,
//! reused while `package.json`, the lock file and the Node version are
//! unchanged. Same cache rules as the Python environments (lib.rs): a build
//! holds `<cache_dir>/node-<short key>.lock`, counts as finished only once
//! its marker exists (written last, atomically), and leftovers of a failed
//! build are removed before the next one.
//!
//! The environment is kept outside the app folder (which is never written
//! to); the Node worker finds it through `INFSH_NODE_MODULES`
//! (node/infsh-worker/resolve-hook.mjs). An app folder with a
//! `node_modules` of its own still uses that first, as Node always does.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::install::run_streamed;
use crate::{lock_exclusive, remove_leftovers, EnvError, EnvProgress, Installer, MARKER_FILE};

/// Bumped when the layout of a Node environment changes.
const NODE_ENV_FORMAT: &str = "node-1";

/// What Node environment to prepare.
#[derive(Debug, Clone)]
pub struct NodeEnvSpec {
    /// The app folder; its `package.json` defines the environment.
    pub app_dir: PathBuf,
    /// The `node` to run the worker with (`--node PATH`, else `node` on PATH).
    pub node: PathBuf,
    /// Where environments live (shared with the Python ones).
    pub cache_dir: PathBuf,
}

/// A ready Node environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedNodeEnv {
    pub node: PathBuf,
    /// `v22.1.0` as `node --version` says it.
    pub version: String,
    /// The environment folder (None: the app has no `package.json`).
    pub dir: Option<PathBuf>,
    /// `<dir>/node_modules`, for `INFSH_NODE_MODULES`.
    pub node_modules: Option<PathBuf>,
    pub reused: bool,
}

impl PreparedNodeEnv {
    /// The worker's variables for this environment: `INFSH_NODE_MODULES`
    /// for its ES module imports (node/infsh-worker/resolve-hook.mjs),
    /// `NODE_PATH` for `require`.
    pub fn worker_env(&self) -> Vec<(String, String)> {
        match &self.node_modules {
            Some(dir) => {
                let dir = dir.display().to_string();
                vec![
                    ("INFSH_NODE_MODULES".to_string(), dir.clone()),
                    ("NODE_PATH".to_string(), dir),
                ]
            }
            None => Vec::new(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct NodeMarker {
    key: String,
    format: String,
    node: PathBuf,
    node_version: String,
    command: String,
    built_seconds: f64,
}

/// `node` on PATH.
pub fn default_node() -> Result<PathBuf, EnvError> {
    which::which("node").map_err(|_| EnvError::NoNode)
}

/// Runs `node --version`: `v20.20.2`.
pub async fn node_version(node: &Path) -> Result<String, EnvError> {
    let bad = |reason: String| EnvError::BadNode {
        node: node.to_path_buf(),
        reason,
    };
    let out = tokio::process::Command::new(node)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| bad(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !text.starts_with('v') {
        return Err(bad(format!(
            "`--version` answered {text:?} ({})",
            out.status
        )));
    }
    Ok(text)
}

/// The Node major version an `inf.yml` kernel asks for: `node-22` -> 22.
pub fn kernel_node_major(kernel: &str) -> Option<u32> {
    kernel
        .strip_prefix("node-")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// The major version of `v20.20.2`.
pub fn version_major(version: &str) -> Option<u32> {
    version
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// The warning to show when the Node found is older than the kernel wants
/// (the app is run anyway: a newer kernel mostly means newer APIs).
pub fn version_warning(kernel: Option<&str>, node: &Path, version: &str) -> Option<String> {
    let wanted = kernel.and_then(kernel_node_major)?;
    let found = version_major(version)?;
    (found < wanted).then(|| {
        format!(
            "inf.yml asks for kernel node-{wanted} but {} is Node {version}: running it anyway (pass --node PATH for a Node {wanted} or newer)",
            node.display()
        )
    })
}

/// The `npm` that goes with `node`: the one beside it, else `npm` on PATH.
fn npm_for(node: &Path) -> Result<PathBuf, EnvError> {
    if let Some(dir) = node.parent() {
        let beside = dir.join("npm");
        if beside.is_file() {
            return Ok(beside);
        }
    }
    which::which("npm").map_err(|_| EnvError::NoNpm)
}

/// The environment's key: format, package.json, lock file, Node version.
pub fn node_env_key(package_json: &[u8], lock: Option<&[u8]>, version: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [
        NODE_ENV_FORMAT.as_bytes(),
        package_json,
        lock.unwrap_or(b"<no lock>"),
        version.as_bytes(),
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// Returns the app's Node environment, building it first when no finished
/// one with the same key exists.
pub async fn prepare_node(
    spec: &NodeEnvSpec,
    progress: impl Fn(EnvProgress) + Send + Sync,
) -> Result<PreparedNodeEnv, EnvError> {
    let started = Instant::now();
    let version = node_version(&spec.node).await?;
    let package_path = spec.app_dir.join("package.json");
    let package = match std::fs::read(&package_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(PreparedNodeEnv {
                node: spec.node.clone(),
                version,
                dir: None,
                node_modules: None,
                reused: true,
            })
        }
        Err(e) => return Err(EnvError::io("cannot read", &package_path, e)),
    };
    let lock_file = spec.app_dir.join("package-lock.json");
    let lock = match std::fs::read(&lock_file) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(EnvError::io("cannot read", &lock_file, e)),
    };
    let key = node_env_key(&package, lock.as_deref(), &version);
    let short = &key[..16];
    let dir = spec.cache_dir.join(format!("node-{short}"));
    let ready = |reused: bool| PreparedNodeEnv {
        node: spec.node.clone(),
        version: version.clone(),
        node_modules: Some(dir.join("node_modules")),
        dir: Some(dir.clone()),
        reused,
    };
    if is_finished(&dir, &key) {
        progress(EnvProgress::Reused { dir: dir.clone() });
        return Ok(ready(true));
    }
    std::fs::create_dir_all(&spec.cache_dir)
        .map_err(|e| EnvError::io("cannot create", &spec.cache_dir, e))?;
    let lock_path = spec.cache_dir.join(format!("node-{short}.lock"));
    let _lock = lock_exclusive(&lock_path, || {
        progress(EnvProgress::Waiting { dir: dir.clone() })
    })
    .await?;
    if is_finished(&dir, &key) {
        progress(EnvProgress::Reused { dir: dir.clone() });
        return Ok(ready(true));
    }
    remove_leftovers(&dir)?;
    std::fs::create_dir_all(&dir).map_err(|e| EnvError::io("cannot create", &dir, e))?;
    let copy = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| EnvError::io("cannot write", path, e))
    };
    copy("package.json", &package)?;
    let subcommand = match &lock {
        Some(lock) => {
            copy("package-lock.json", lock)?;
            "ci"
        }
        None => "install",
    };
    progress(EnvProgress::Creating {
        installer: Installer::Npm,
        dir: dir.clone(),
    });
    tracing::info!(dir = %dir.display(), subcommand, "building app node environment");
    let npm = npm_for(&spec.node)?;
    let mut cmd = tokio::process::Command::new(&npm);
    cmd.arg(subcommand)
        .args([
            "--no-audit",
            "--no-fund",
            "--no-progress",
            "--loglevel=error",
        ])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .env("npm_config_update_notifier", "false");
    // npm runs scripts with the node found on PATH: make it ours.
    if let Some(node_dir) = spec.node.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut path = std::ffi::OsString::from(node_dir);
        if let Some(rest) = std::env::var_os("PATH") {
            path.push(":");
            path.push(rest);
        }
        cmd.env("PATH", path);
    }
    let mut tail = std::collections::VecDeque::new();
    if let Err(e) = run_streamed(Installer::Npm, cmd, &progress, &mut tail).await {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    let seconds = started.elapsed().as_secs_f64();
    write_marker(
        &dir,
        &NodeMarker {
            key: key.clone(),
            format: NODE_ENV_FORMAT.into(),
            node: spec.node.clone(),
            node_version: version.clone(),
            command: format!("npm {subcommand}"),
            built_seconds: seconds,
        },
    )?;
    progress(EnvProgress::Done { seconds });
    Ok(ready(false))
}

fn is_finished(dir: &Path, key: &str) -> bool {
    let Ok(text) = std::fs::read(dir.join(MARKER_FILE)) else {
        return false;
    };
    match serde_json::from_slice::<NodeMarker>(&text) {
        Ok(m) => m.key == key && dir.join("node_modules").is_dir(),
        Err(_) => false,
    }
}

fn write_marker(dir: &Path, marker: &NodeMarker) -> Result<(), EnvError> {
    let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(marker).expect("marker serializes");
    std::fs::write(&tmp, json).map_err(|e| EnvError::io("cannot write", &tmp, e))?;
    let path = dir.join(MARKER_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| EnvError::io("cannot write", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_and_version_majors() {
        assert_eq!(kernel_node_major("node-22"), Some(22));
        assert_eq!(kernel_node_major("node-22.4"), Some(22));
        assert_eq!(kernel_node_major("python-3.11"), None);
        assert_eq!(version_major("v20.20.2"), Some(20));
    }

    #[test]
    fn an_older_node_is_warned_about_and_a_newer_one_is_not() {
        let node = Path::new("/usr/bin/node");
        let warning = version_warning(Some("node-22"), node, "v20.20.2").unwrap();
        assert_eq!(
            warning,
            "inf.yml asks for kernel node-22 but /usr/bin/node is Node v20.20.2: running it anyway (pass --node PATH for a Node 22 or newer)"
        );
        assert_eq!(version_warning(Some("node-22"), node, "v22.0.0"), None);
        assert_eq!(version_warning(Some("node-22"), node, "v24.1.0"), None);
        assert_eq!(version_warning(None, node, "v18.0.0"), None);
    }

    #[test]
    fn the_key_follows_package_lock_and_node_version() {
        let base = node_env_key(b"{}", None, "v20.1.0");
        assert_ne!(base, node_env_key(b"{ }", None, "v20.1.0"));
        assert_ne!(base, node_env_key(b"{}", Some(b""), "v20.1.0"));
        assert_ne!(base, node_env_key(b"{}", None, "v22.1.0"));
        assert_eq!(base, node_env_key(b"{}", None, "v20.1.0"));
    }

    #[tokio::test]
    async fn a_failing_npm_install_reports_npm_s_error_and_leaves_nothing() {
        let node = default_node().expect("these tests need `node` on PATH");
        let app = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        // Not valid JSON: npm fails at once, without the network.
        std::fs::write(app.path().join("package.json"), "{ not json").unwrap();
        let spec = NodeEnvSpec {
            app_dir: app.path().into(),
            node,
            cache_dir: cache.path().into(),
        };
        let err = prepare_node(&spec, |_| {}).await.unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("npm failed (exit status: "), "{text}");
        assert!(text.contains("JSON"), "{text}");
        let left: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn no_package_json_needs_no_environment() {
        let node = default_node().expect("these tests need `node` on PATH");
        let app = tempfile::tempdir().unwrap();
        let spec = NodeEnvSpec {
            app_dir: app.path().into(),
            node,
            cache_dir: app.path().join("cache"),
        };
        let env = prepare_node(&spec, |_| {}).await.unwrap();
        assert!(env.node_modules.is_none() && env.version.starts_with('v'));
        assert!(!app.path().join("cache").exists());
    }
}
