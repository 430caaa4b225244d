//! The Python worker runtime, embedded in the binary by `build.rs` and
//! extracted on demand to `<state_dir>/runtime/<content hash>/infsh_worker/`,
//! the folder put first on the worker's `PYTHONPATH`.
//!
//! The folder name is a hash of the contents, so a new build never runs an
//! old runtime and several hosts (or several starts at once) can share one
//! state folder: each extracts into a private temporary folder and renames it
//! into place; whoever renames first wins, the others find it there.
//!
//! Freshly extracted, the files have no bytecode: the first worker would
//! compile about 1,800 lines on its cold start (~11 ms on the development
//! VM), and every worker would when `PYTHONDONTWRITEBYTECODE` is set, as it
//! is in many containers. So when a worker or zygote is spawned,
//! [`compile_bytecode_in_background`] compiles them with the same
//! interpreter in a process of its own, as pip does for the packages it
//! installs. It runs while the app is being imported (hundreds of ms), so
//! the runtime modules imported after the app already find their bytecode.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

include!(concat!(env!("OUT_DIR"), "/runtime_files.rs"));

/// Name of the Python package, i.e. of the folder holding the files.
pub const PACKAGE: &str = "infsh_worker";
/// The folder holding the Node worker (node/infsh-worker), beside it.
pub const NODE_PACKAGE: &str = "infsh_worker_node";
/// The Node worker's entry module.
pub const NODE_MAIN: &str = "main.mjs";

/// A short hex digest of every file's name and contents.
pub fn content_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut hasher = Sha256::new();
        for (name, contents) in RUNTIME_FILES.iter().chain(NODE_RUNTIME_FILES) {
            // Lengths first, so ("ab", "c") and ("a", "bc") differ.
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update((contents.len() as u64).to_le_bytes());
            hasher.update(contents.as_bytes());
        }
        hex::encode(&hasher.finalize()[..8])
    })
}

/// Makes sure the runtime is extracted under `state_dir` and returns the
/// folder to put on `PYTHONPATH` (the one that contains `infsh_worker/`).
/// Blocking file I/O: call it from `spawn_blocking`.
pub fn extract(state_dir: &Path) -> io::Result<PathBuf> {
    let runtime_root = state_dir.join("runtime");
    let target = runtime_root.join(content_hash());
    if target.join(PACKAGE).is_dir() && target.join(NODE_PACKAGE).is_dir() {
        return Ok(target);
    }
    std::fs::create_dir_all(&runtime_root)?;

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = runtime_root.join(format!(
        ".tmp-{}-{}-{}",
        content_hash(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_tree(&tmp).and_then(|()| std::fs::rename(&tmp, &target));
    match result {
        Ok(()) => Ok(target),
        // Someone else renamed theirs into place first (ENOTEMPTY/EEXIST):
        // same contents by construction, so use theirs.
        Err(_) if target.join(PACKAGE).is_dir() && target.join(NODE_PACKAGE).is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(target)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Compiles the package's modules to bytecode (`compileall` writes it
/// whatever `PYTHONDONTWRITEBYTECODE` says, as pip does).
const COMPILE: &str = "import compileall, sys\n\
sys.exit(0 if compileall.compile_dir(sys.argv[1], quiet=2) else 1)\n";

/// The file saying `python` compiled the runtime in `runtime_dir`: one per
/// interpreter, since each writes bytecode of its own version.
fn bytecode_marker(python: &Path, runtime_dir: &Path) -> PathBuf {
    let digest = Sha256::digest(python.as_os_str().as_encoded_bytes());
    runtime_dir.join(format!(".bytecode-{}", hex::encode(&digest[..8])))
}

/// Compiles the runtime extracted in `runtime_dir` (as [`extract`] returns
/// it) to bytecode with `python`, unless that was done before. Returns
/// whether it compiled.
pub async fn compile_bytecode(python: &Path, runtime_dir: &Path) -> io::Result<bool> {
    let marker = bytecode_marker(python, runtime_dir);
    if marker.exists() {
        return Ok(false);
    }
    let status = tokio::process::Command::new(python)
        .arg("-I")
        .arg("-c")
        .arg(COMPILE)
        .arg(runtime_dir.join(PACKAGE))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Killed with the task that waits for it (at the host's shutdown).
        .kill_on_drop(true)
        .status()
        .await?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "{} could not compile the runtime: {status}",
            python.display()
        )));
    }
    tokio::fs::write(&marker, b"").await?;
    Ok(true)
}

/// [`compile_bytecode`] on a task of its own, once per interpreter and
/// folder in this process; a failure only costs the workers their
/// bytecode (they compile what they import, as before), so it is logged at
/// debug level. Call it from within a tokio runtime.
pub fn compile_bytecode_in_background(python: &Path, runtime_dir: &Path) {
    static STARTED: Mutex<BTreeSet<(PathBuf, PathBuf)>> = Mutex::new(BTreeSet::new());
    let key = (python.to_path_buf(), runtime_dir.to_path_buf());
    let first = STARTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.clone());
    if !first {
        return;
    }
    tokio::spawn(async move {
        let (python, runtime_dir) = key;
        if let Err(e) = compile_bytecode(&python, &runtime_dir).await {
            tracing::debug!(error = %e, "the worker runtime was not compiled ahead");
        }
    });
}

fn write_tree(tmp: &Path) -> io::Result<()> {
    let package = tmp.join(PACKAGE);
    std::fs::create_dir_all(&package)?;
    for (name, contents) in RUNTIME_FILES {
        std::fs::write(package.join(name), contents)?;
    }
    let node = tmp.join(NODE_PACKAGE);
    std::fs::create_dir_all(&node)?;
    for (name, contents) in NODE_RUNTIME_FILES {
        std::fs::write(node.join(name), contents)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use infsh_testkit::python;

    #[test]
    fn extracts_once_and_concurrently() {
        let state = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| extract(state.path()))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        assert!(dirs.iter().all(|d| d == &dirs[0]));
        let package = dirs[0].join(PACKAGE);
        for (name, contents) in RUNTIME_FILES {
            assert_eq!(
                &std::fs::read_to_string(package.join(name)).unwrap(),
                contents
            );
        }
        for (name, contents) in NODE_RUNTIME_FILES {
            assert_eq!(
                &std::fs::read_to_string(dirs[0].join(NODE_PACKAGE).join(name)).unwrap(),
                contents
            );
        }
        // No temporary folders left behind.
        let leftovers: Vec<_> = std::fs::read_dir(state.path().join("runtime"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // Present: a second call does nothing and returns the same folder.
        assert_eq!(extract(state.path()).unwrap(), dirs[0]);
    }

    /// The runtime's modules that have bytecode in `__pycache__`.
    fn compiled_modules(runtime_dir: &Path) -> Vec<String> {
        let cache = runtime_dir.join(PACKAGE).join("__pycache__");
        let mut stems: Vec<String> = std::fs::read_dir(cache)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".pyc"))
                    .map(|n| n.split('.').next().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        stems.sort();
        stems
    }

    #[tokio::test]
    async fn bytecode_is_compiled_once_per_interpreter() {
        let state = tempfile::tempdir().unwrap();
        let runtime_dir = extract(state.path()).unwrap();
        assert!(compiled_modules(&runtime_dir).is_empty());
        assert!(compile_bytecode(&python(), &runtime_dir).await.unwrap());
        let expected: Vec<String> = RUNTIME_FILES
            .iter()
            .map(|(name, _)| name.trim_end_matches(".py").to_string())
            .collect();
        assert_eq!(compiled_modules(&runtime_dir), expected);
        // Done: the second call only finds the marker.
        assert!(!compile_bytecode(&python(), &runtime_dir).await.unwrap());

        let missing = Path::new("/nonexistent/python3");
        let err = compile_bytecode(missing, &runtime_dir).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let not_python = Path::new("/bin/false");
        let err = compile_bytecode(not_python, &runtime_dir)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/bin/false could not compile the runtime: exit status: 1"),
            "{err}"
        );
        assert!(!bytecode_marker(not_python, &runtime_dir).exists());
    }

    #[test]
    fn table_is_sorted_python_files() {
        let names: Vec<_> = RUNTIME_FILES.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(names.iter().all(|n| n.ends_with(".py")));
        let node: Vec<_> = NODE_RUNTIME_FILES.iter().map(|(n, _)| *n).collect();
        assert!(node.contains(&NODE_MAIN), "{node:?}");
        assert!(node.iter().all(|n| n.ends_with(".mjs")));
        assert_eq!(content_hash().len(), 16);
    }
}
