//! The hosted apps: finding app folders under `apps_dir` and naming them
//! (`namespace/name`). A request names an app with an
//! [`infsh_core::AppRef`]; an app whose name no reference can spell is
//! skipped (with a warning).
//!
//! An app folder is one holding `inference.py`, at most three levels below
//! `apps_dir` (or `apps_dir` itself). App folders are not searched further
//! (apps do not nest), and neither are hidden folders, `__pycache__`,
//! `node_modules` or virtual environments (a folder with `pyvenv.cfg`).
//! Folders are visited in name order, so which of two apps claiming the same
//! id wins (the first) does not depend on the file system.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infsh_core::app::AppDir;
use infsh_core::{AppRef, ErrorChain};
use infsh_placement::engine_config::manifest_bound_problems;
use infsh_placement::{AppNeeds, AppOverrides, NeedsError};
use serde_json::Value;

use crate::batch_policy::{read_batching, BatchPolicy};

/// How deep below `apps_dir` app folders are looked for.
pub const MAX_DEPTH: usize = 3;
/// The namespace of an app whose `inf.yml` names none.
pub const DEFAULT_NAMESPACE: &str = "local";

/// One hosted app.
#[derive(Debug, Clone)]
pub(crate) struct AppEntry {
    /// `namespace/name`; a deployed version's is `namespace/name@HASH`.
    pub id: String,
    /// A deployed version's content hash (None: a folder of `--apps`).
    pub version: Option<String>,
    pub namespace: String,
    pub name: String,
    pub dir: AppDir,
    /// The app's own limit per task (`inf.yml`), over the server's default.
    pub task_timeout: Option<Duration>,
    /// The app's own limit on `setup` (`inf.yml`), over the server's default.
    pub setup_timeout: Option<Duration>,
    /// What it asks of a slot (`resources:`); an error refuses its runs.
    pub needs: Result<AppNeeds, NeedsError>,
    /// Replica bounds: inf.yml's `infsh:` block, with the engine config's
    /// `apps:` entry over it once the engine applied it.
    pub bounds: AppOverrides,
    /// Its batched functions (`infsh.functions`, `batch_policy.rs`).
    pub batching: BTreeMap<String, BatchPolicy>,
}

impl AppEntry {
    /// A deployed version of an app: its unpacked folder and content hash.
    pub(crate) fn for_version(dir: AppDir, hash: &str) -> AppEntry {
        let mut entry = AppEntry::new(dir);
        entry.id = format!("{}@{hash}", entry.id);
        entry.version = Some(hash.to_string());
        entry
    }

    /// `namespace/name`, without a version.
    pub(crate) fn app_id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub(crate) fn new(dir: AppDir) -> AppEntry {
        let m = &dir.manifest;
        let clean = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let namespace = clean(&m.namespace).unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let name = clean(&m.name).unwrap_or_else(|| dir.folder_name());
        let limits = AppLimits::from_extra(&m.extra);
        for problem in &limits.problems {
            tracing::warn!(folder = %dir.root.display(), "inf.yml: {problem}; ignored");
        }
        let needs = AppNeeds::from_manifest(m);
        if let Err(e) = &needs {
            tracing::warn!(folder = %dir.root.display(), "inf.yml: {e}; runs of this app are refused");
        }
        AppEntry {
            id: format!("{namespace}/{name}"),
            version: None,
            namespace,
            name,
            task_timeout: limits.task_timeout,
            setup_timeout: limits.setup_timeout,
            needs,
            bounds: limits.bounds,
            batching: limits.batching,
            dir,
        }
    }
}

/// An app's own time limits, from fields of `inf.yml` that infsh-core keeps
/// in `Manifest::extra`:
///
/// ```yaml
/// timeout: 30            # seconds per task
/// infsh:
///   task_timeout: 30     # the same (wins over `timeout`)
///   setup_timeout: 120   # seconds for `setup`
/// ```
///
/// A value is a positive number of seconds, or a string such as `"90"`,
/// `"500ms"`, `"30s"`, `"2m"`, `"1h"`. Anything else is reported and ignored.
///
/// The same block bounds the app's replicas (the engine config's `apps:`
/// wins over them; docs/gpus.md):
///
/// ```yaml
/// infsh:
///   min_replicas: 1      # started at boot, never evicted
///   max_replicas: 2      # default: `infsh serve --replicas`
///   concurrency: 4       # tasks per replica; default: the server's
///   keep_warm: true      # never evicted
///   functions:           # batching, opt in (batch_policy.rs)
///     embed: {max_batch_size: 32, max_batch_wait_ms: 5}
/// ```
#[derive(Debug, Default, PartialEq)]
pub(crate) struct AppLimits {
    pub task_timeout: Option<Duration>,
    pub setup_timeout: Option<Duration>,
    pub bounds: AppOverrides,
    pub batching: BTreeMap<String, BatchPolicy>,
    pub problems: Vec<String>,
}

impl AppLimits {
    pub fn from_extra(extra: &std::collections::BTreeMap<String, Value>) -> AppLimits {
        let mut limits = AppLimits::default();
        let mut read = |name: &str, value: Option<&Value>| -> Option<Duration> {
            let value = value.filter(|v| !v.is_null())?;
            match parse_duration(value) {
                Some(d) => Some(d),
                None => {
                    limits.problems.push(format!(
                        "{name}: {value} is not a positive number of seconds"
                    ));
                    None
                }
            }
        };
        let top = read("timeout", extra.get("timeout"));
        let (task, setup) = match extra.get("infsh") {
            None | Some(Value::Null) => (None, None),
            Some(Value::Object(block)) => {
                let times = (
                    read("infsh.task_timeout", block.get("task_timeout")),
                    read("infsh.setup_timeout", block.get("setup_timeout")),
                );
                limits.bounds = read_bounds(block, &mut limits.problems);
                limits.batching = read_batching(block, &mut limits.problems);
                times
            }
            Some(other) => {
                limits
                    .problems
                    .push(format!("infsh: expected a mapping, got {other}"));
                (None, None)
            }
        };
        limits.task_timeout = task.or(top);
        limits.setup_timeout = setup;
        limits
    }
}

/// The replica bounds of inf.yml's `infsh:` block; a value of the wrong
/// kind, or bounds that contradict each other, are reported and ignored.
fn read_bounds(block: &serde_json::Map<String, Value>, problems: &mut Vec<String>) -> AppOverrides {
    let mut count = |key: &str| -> Option<usize> {
        let value = block.get(key).filter(|v| !v.is_null())?;
        let n = value.as_u64().and_then(|n| usize::try_from(n).ok());
        if n.is_none() {
            problems.push(format!("infsh.{key}: {value} is not a whole number"));
        }
        n
    };
    let mut bounds = AppOverrides {
        min_replicas: count("min_replicas"),
        max_replicas: count("max_replicas"),
        concurrency: count("concurrency"),
        keep_warm: None,
    };
    match block.get("keep_warm").filter(|v| !v.is_null()) {
        None => {}
        Some(Value::Bool(b)) => bounds.keep_warm = Some(*b),
        Some(other) => problems.push(format!("infsh.keep_warm: {other} is not true or false")),
    }
    let contradictions = manifest_bound_problems(&bounds);
    if !contradictions.is_empty() {
        problems.extend(contradictions);
        bounds = AppOverrides {
            keep_warm: bounds.keep_warm,
            ..AppOverrides::default()
        };
    }
    bounds
}

/// Seconds as a number, or a string with an optional `ms`/`s`/`m`/`h` unit.
fn parse_duration(value: &Value) -> Option<Duration> {
    let seconds = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => {
            let s = s.trim();
            let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
                (n, 0.001)
            } else if let Some(n) = s.strip_suffix('s') {
                (n, 1.0)
            } else if let Some(n) = s.strip_suffix('m') {
                (n, 60.0)
            } else if let Some(n) = s.strip_suffix('h') {
                (n, 3600.0)
            } else {
                (s, 1.0)
            };
            number.trim().parse::<f64>().ok()? * scale
        }
        _ => return None,
    };
    (seconds.is_finite() && seconds > 0.0)
        .then(|| Duration::try_from_secs_f64(seconds).ok())
        .flatten()
}

/// Why the apps folder could not be scanned. A folder inside it that does
/// not open is skipped with a warning, not an error.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("apps folder not found: {}", path.display())]
    AppsDirNotFound { path: PathBuf },
}

/// Every app under `apps_dir`, in discovery order, duplicates dropped (with
/// a warning). Folders that fail to open (a broken `inf.yml`) are skipped
/// with a warning.
pub(crate) fn scan(apps_dir: &Path) -> Result<Vec<AppEntry>, ScanError> {
    if !apps_dir.is_dir() {
        return Err(ScanError::AppsDirNotFound {
            path: apps_dir.to_path_buf(),
        });
    }
    let mut folders = Vec::new();
    find_app_folders(apps_dir, 0, &mut folders);
    let mut apps: Vec<AppEntry> = Vec::new();
    for folder in folders {
        let dir = match AppDir::open(&folder) {
            Ok(dir) => dir,
            Err(e) => {
                tracing::warn!(folder = %folder.display(), error = %ErrorChain(&e), "skipping app folder");
                continue;
            }
        };
        for warning in &dir.warnings {
            tracing::info!(folder = %folder.display(), "{warning}");
        }
        let entry = AppEntry::new(dir);
        if let Err(e) = AppRef::new(&entry.namespace, &entry.name) {
            tracing::warn!(folder = %folder.display(), error = %ErrorChain(&e), "skipping app folder: no request could name this app");
            continue;
        }
        if let Some(first) = apps.iter().find(|a| a.id == entry.id) {
            tracing::warn!(
                app = %entry.id,
                skipped = %entry.dir.root.display(),
                kept = %first.dir.root.display(),
                "two app folders have the same namespace/name; the later one is skipped"
            );
            continue;
        }
        apps.push(entry);
    }
    Ok(apps)
}

/// The app folders at or below `dir`, which lies `depth` levels below an
/// apps folder: found as a start finds them (`infsh serve --watch` looks
/// for app folders created after the start with it).
pub fn app_folders_below(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    find_app_folders(dir, depth, &mut out);
    out
}

/// The id (`ns/name`) a start would give the app folder `folder`, or why
/// it would skip it.
pub fn app_folder_id(folder: &Path) -> Result<String, String> {
    let dir = AppDir::open(folder).map_err(|e| ErrorChain(&e).to_string())?;
    let entry = AppEntry::new(dir);
    AppRef::new(&entry.namespace, &entry.name)
        .map_err(|e| format!("no request could name this app: {}", ErrorChain(&e)))?;
    Ok(entry.id)
}

/// Whether a start skips `path`'s folder when looking for apps (hidden,
/// caches, environments).
pub fn is_skipped_folder(path: &Path) -> bool {
    skipped_folder(path)
}

fn skipped_folder(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with('.')
        || name == "__pycache__"
        || name == "node_modules"
        || name == "site-packages"
        || path.join("pyvenv.cfg").exists()
}

fn find_app_folders(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let is_app = dir.join(infsh_core::app::INFERENCE_PY).is_file()
        || infsh_core::app::INFERENCE_JS
            .iter()
            .any(|entry| dir.join(entry).is_file());
    if is_app {
        out.push(dir.to_path_buf());
        return;
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let mut children: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !skipped_folder(p))
        .collect();
    children.sort();
    for child in children {
        find_app_folders(&child, depth + 1, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(root: &Path, rel: &str, yml: Option<&str>) {
        let dir = root.join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("inference.py"), "").unwrap();
        if let Some(yml) = yml {
            std::fs::write(dir.join("inf.yml"), yml).unwrap();
        }
    }

    #[test]
    fn scan_finds_javascript_apps_by_their_entry_file() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for (rel, entry) in [("js", "inference.js"), ("js-src", "src/inference.js")] {
            let file = r.join(rel).join(entry);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, "export class App {}\n").unwrap();
            std::fs::write(r.join(rel).join("inf.yml"), "kernel: node-22\n").unwrap();
        }
        // An inference.js inside node_modules is a package, not an app.
        let dep = r.join("js/node_modules/dep");
        std::fs::create_dir_all(&dep).unwrap();
        std::fs::write(dep.join("inference.js"), "").unwrap();
        let apps = scan(r).unwrap();
        let ids: Vec<_> = apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, vec!["local/js", "local/js-src"]);
        assert!(apps
            .iter()
            .all(|a| a.dir.runtime == infsh_core::AppRuntime::Node));
    }

    #[test]
    fn scan_finds_names_and_skips() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        app(r, "a", Some("namespace: ns\nname: alpha\n"));
        app(r, "b", None);
        app(r, "group/c", Some("name: gamma\n"));
        app(r, "x/y/z", Some("namespace: deep\nname: z\n"));
        app(r, "x/y/z2/too-deep", Some("namespace: deep\nname: too\n"));
        app(r, "z-dup", Some("namespace: ns\nname: alpha\n"));
        app(r, ".hidden", Some("namespace: ns\nname: hidden\n"));
        app(r, "__pycache__/p", None);
        app(r, "a/nested", Some("namespace: ns\nname: nested\n"));
        std::fs::create_dir_all(r.join("venv/lib")).unwrap();
        std::fs::write(r.join("venv/pyvenv.cfg"), "").unwrap();
        app(r, "venv/lib/app", None);
        // Names no app reference can spell.
        app(r, "colon", Some("namespace: ns\nname: \"a:b\"\n"));
        app(r, "has@at", None);

        let apps = scan(r).unwrap();
        let ids: Vec<_> = apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, vec!["ns/alpha", "local/b", "local/gamma", "deep/z"]);
        assert!(
            apps[0].dir.root.ends_with("a"),
            "the first of two duplicates wins"
        );
        assert!(scan(&r.join("missing")).is_err());
    }

    fn limits(yml: &str) -> AppLimits {
        let m = infsh_core::manifest::Manifest::parse(yml, Path::new("inf.yml")).unwrap();
        AppLimits::from_extra(&m.extra)
    }

    #[test]
    fn time_limits_from_inf_yml() {
        let secs = |s: f64| Some(Duration::from_secs_f64(s));
        assert_eq!(limits("name: a\n"), AppLimits::default());
        let l = limits("timeout: 30\n");
        assert_eq!((l.task_timeout, l.setup_timeout), (secs(30.0), None));
        let l = limits("timeout: 30\ninfsh:\n  task_timeout: 1.5\n  setup_timeout: 2m\n");
        assert_eq!((l.task_timeout, l.setup_timeout), (secs(1.5), secs(120.0)));
        assert!(l.problems.is_empty());
        let l = limits("infsh:\n  setup_timeout: \"500ms\"\n  task_timeout: \"1h\"\n");
        assert_eq!((l.task_timeout, l.setup_timeout), (secs(3600.0), secs(0.5)));
        let l = limits("timeout: -1\ninfsh:\n  task_timeout: soon\n  setup_timeout: 0\n");
        assert_eq!((l.task_timeout, l.setup_timeout), (None, None));
        assert_eq!(l.problems.len(), 3, "{:?}", l.problems);
        let l = limits("infsh: 5\n");
        assert_eq!(l.problems.len(), 1);
    }

    #[test]
    fn replica_bounds_from_inf_yml() {
        let l = limits("infsh:\n  min_replicas: 1\n  max_replicas: 3\n  concurrency: 2\n  keep_warm: true\n  task_timeout: 5\n");
        assert_eq!(
            l.bounds,
            AppOverrides {
                min_replicas: Some(1),
                max_replicas: Some(3),
                concurrency: Some(2),
                keep_warm: Some(true),
            }
        );
        assert_eq!(l.task_timeout, Some(Duration::from_secs(5)));
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let l = limits("infsh:\n  max_replicas: two\n  keep_warm: 1\n");
        assert_eq!(l.bounds, AppOverrides::default());
        assert_eq!(
            l.problems,
            [
                "infsh.max_replicas: \"two\" is not a whole number",
                "infsh.keep_warm: 1 is not true or false"
            ]
        );
        let l = limits("infsh:\n  min_replicas: 3\n  max_replicas: 2\n  keep_warm: true\n");
        assert_eq!(
            l.problems,
            ["infsh: min_replicas (3) is more than max_replicas (2)"]
        );
        assert_eq!(
            l.bounds,
            AppOverrides {
                keep_warm: Some(true),
                ..AppOverrides::default()
            }
        );
    }

    #[test]
    fn scan_reads_needs_and_keeps_an_unreadable_one_as_an_error() {
        let root = tempfile::tempdir().unwrap();
        app(
            root.path(),
            "a",
            Some("name: a\nresources:\n  gpu: {count: 2, vram: 24GB}\n"),
        );
        app(
            root.path(),
            "b",
            Some("name: b\nresources:\n  gpu: {count: two}\n"),
        );
        let apps = scan(root.path()).unwrap();
        assert_eq!(apps[0].needs.as_ref().unwrap().gpus, 2);
        assert_eq!(
            apps[1].needs.as_ref().unwrap_err().to_string(),
            "resources.gpu.count: \"two\" is not a whole number of GPUs"
        );
    }

    #[test]
    fn scan_reads_time_limits() {
        let root = tempfile::tempdir().unwrap();
        app(
            root.path(),
            "a",
            Some("name: a\ninfsh:\n  task_timeout: 3\n  setup_timeout: 4\n"),
        );
        let apps = scan(root.path()).unwrap();
        assert_eq!(apps[0].task_timeout, Some(Duration::from_secs(3)));
        assert_eq!(apps[0].setup_timeout, Some(Duration::from_secs(4)));
    }
}
