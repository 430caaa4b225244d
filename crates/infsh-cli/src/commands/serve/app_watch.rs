//! `infsh serve --apps DIR --watch` (development): when a file of an app
//! folder under `--apps` changes, the folder is packed exactly as `infsh app
//! deploy` packs it (same content hash) and deployed through the engine as
//! a new version, current once it built: the path of `POST
//! /apps/{ns}/{name}/versions`, in-process. A failing build or import is
//! logged with its traceback and the last good version keeps serving; a
//! folder whose package hash did not change deploys nothing.
//!
//! An app folder created under `--apps` after the start (directly, or in a
//! folder of `--apps` that held no app) is found the way a start finds
//! apps and deployed the same way, as its app's first version, once it
//! holds `inference.py` and an `inf.yml` that opens; until then, or while
//! its import fails, it is logged and watched like any other.
//!
//! Changes come from the `notify` crate (inotify on Linux, FSEvents on
//! macOS), one recursive watch per app folder, and are debounced: an
//! editor's save is several events and a `git checkout` many. What is never
//! packed (environments, caches, version control, `.infshignore` and
//! `.gitignore` patterns) and editor scratch files do not count as changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use infsh_core::package::{IgnoreRules, SKIPPED_DIRS};
use infsh_engine::{Engine, EngineError};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::say;
use crate::exit::{ExitCode, Failure};

/// Quiet time after the last change before redeploying.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// Digits of a version's hash shown in the log.
const SHORT: usize = 8;
/// How many changed files a reload line names.
const NAMED_FILES: usize = 3;

/// One app folder watched: its id and root.
struct Folder {
    app: String,
    root: PathBuf,
}

/// The watch: it lasts as long as this lives.
pub(super) struct WatchGuard {
    _watcher: Arc<Mutex<notify::RecommendedWatcher>>,
}

/// Watches every `--apps` folder app of `engine` and redeploys it on
/// changes, and `--apps` itself for new app folders.
pub(super) fn start(
    engine: Engine,
    data_dir: &Path,
    json_logs: bool,
) -> Result<WatchGuard, Failure> {
    let folders: Vec<Folder> = engine
        .app_folders()
        .into_iter()
        .map(|(app, root)| Folder {
            app,
            root: std::fs::canonicalize(&root).unwrap_or(root),
        })
        .collect();
    let (changes_tx, changes) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        for path in event.paths {
            let _ = changes_tx.send(path);
        }
    })
    .map_err(|e| Failure::new(ExitCode::Internal, format!("--watch: cannot watch: {e}")))?;
    for folder in &folders {
        watcher
            .watch(&folder.root, RecursiveMode::Recursive)
            .map_err(|e| {
                Failure::new(
                    ExitCode::Internal,
                    format!("--watch: cannot watch {}: {e}", folder.root.display()),
                )
            })?;
    }
    let apps_dir = engine.config().apps_dir.clone();
    let apps_dir = std::fs::canonicalize(&apps_dir).unwrap_or(apps_dir);
    let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    // New folders appear as entries of --apps; a folder of it that holds
    // no app yet is watched whole, for one created inside it.
    watcher
        .watch(&apps_dir, RecursiveMode::NonRecursive)
        .map_err(|e| {
            Failure::new(
                ExitCode::Internal,
                format!("--watch: cannot watch {}: {e}", apps_dir.display()),
            )
        })?;
    let mut groups = BTreeSet::new();
    if let Ok(read) = std::fs::read_dir(&apps_dir) {
        for child in read.filter_map(Result::ok).map(|e| e.path()) {
            let holds_app = folders
                .iter()
                .any(|f| f.root.starts_with(&child) || child.starts_with(&f.root));
            if child.is_dir() && !holds_app && !is_server_folder(&child, &data_dir) {
                groups.insert(child);
            }
        }
    }
    groups.retain(
        |group| match watcher.watch(group, RecursiveMode::Recursive) {
            Ok(()) => true,
            Err(e) => {
                say(
                    json_logs,
                    true,
                    &format!("--watch: cannot watch {}: {e}", group.display()),
                );
                false
            }
        },
    );
    let names: Vec<&str> = folders.iter().map(|f| f.app.as_str()).collect();
    say(
        json_logs,
        false,
        &format!(
            "watching {} app folder{} for changes ({}): a change deploys a new version",
            folders.len(),
            if folders.len() == 1 { "" } else { "s" },
            names.join(", ")
        ),
    );
    let watcher = Arc::new(Mutex::new(watcher));
    let reloader = Reloader {
        uploads: infsh_engine::upload_dir(&engine.config().data_dir),
        data_dir,
        apps_dir,
        json_logs,
        served: initial_hashes(&folders),
        groups,
        unopened: HashMap::new(),
        watcher: watcher.clone(),
        engine,
    };
    tokio::spawn(reloader.run(folders, changes));
    Ok(WatchGuard { _watcher: watcher })
}

/// Whether `path` (an entry of --apps) is or holds the server's data
/// folder: never an app.
fn is_server_folder(path: &Path, data_dir: &Path) -> bool {
    data_dir.starts_with(path) || infsh_engine::is_skipped_folder(path)
}

struct Reloader {
    engine: Engine,
    /// Where packages are written before the engine takes them.
    uploads: PathBuf,
    /// Changes under it (a data folder inside --apps) are the server's own.
    data_dir: PathBuf,
    json_logs: bool,
    /// `--apps`, where new app folders appear.
    apps_dir: PathBuf,
    /// App id -> the hash of the version (or folder) it serves.
    served: HashMap<String, String>,
    /// Entries of `--apps` watched whole for new app folders.
    groups: BTreeSet<PathBuf>,
    /// A new app folder that does not open yet -> why (logged once per
    /// reason, not at every save).
    unopened: HashMap<PathBuf, String>,
    watcher: Arc<Mutex<notify::RecommendedWatcher>>,
}

impl Reloader {
    async fn run(
        mut self,
        mut folders: Vec<Folder>,
        mut changes: mpsc::UnboundedReceiver<PathBuf>,
    ) {
        loop {
            let Some(first) = changes.recv().await else {
                return;
            };
            let mut changed: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
            let mut outside = BTreeSet::new();
            self.note(&folders, &first, &mut changed, &mut outside);
            // Debounce: wait for the folders to be quiet.
            while let Ok(Some(path)) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {
                self.note(&folders, &path, &mut changed, &mut outside);
            }
            let known = folders.len();
            self.find_new_apps(&mut folders, outside);
            for (idx, files) in changed {
                self.reload(&folders[idx], &files, false).await;
            }
            for folder in &folders[known..] {
                self.reload(folder, &BTreeSet::new(), true).await;
            }
        }
    }

    /// Records `path` under the app folder it belongs to, if it is one of
    /// the app's own files.
    fn note(
        &self,
        folders: &[Folder],
        path: &Path,
        changed: &mut BTreeMap<usize, BTreeSet<String>>,
        outside: &mut BTreeSet<PathBuf>,
    ) {
        if path.starts_with(&self.data_dir) {
            return;
        }
        // The deepest folder holding it (app folders may nest).
        let Some((idx, folder)) = folders
            .iter()
            .enumerate()
            .filter(|(_, f)| path.starts_with(&f.root))
            .max_by_key(|(_, f)| f.root.components().count())
        else {
            // Not in an app folder: the entry of --apps it is in may hold
            // a new one.
            if let Some(Some(entry)) = path
                .strip_prefix(&self.apps_dir)
                .ok()
                .map(|r| r.components().next())
            {
                let entry = self.apps_dir.join(entry);
                if !is_server_folder(&entry, &self.data_dir) {
                    outside.insert(entry);
                }
            }
            return;
        };
        let Ok(relative) = path.strip_prefix(&folder.root) else {
            return;
        };
        let relative = relative.to_string_lossy().replace('\\', "/");
        if relative.is_empty() {
            return;
        }
        let rules = IgnoreRules::for_folder(&folder.root);
        if is_packed_change(&relative, path.is_dir(), &rules) {
            changed.entry(idx).or_default().insert(relative);
        }
    }

    /// Adds the app folders that appeared under the entries `outside` of
    /// --apps to `folders` (and to the watch), as a start would find them.
    fn find_new_apps(&mut self, folders: &mut Vec<Folder>, outside: BTreeSet<PathBuf>) {
        for entry in outside {
            if !entry.is_dir() {
                continue;
            }
            if !self.groups.contains(&entry) {
                // Watched before it is searched: nothing written into it
                // from now on is missed.
                if let Err(e) = self
                    .watcher
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .watch(&entry, RecursiveMode::Recursive)
                {
                    self.say(true, &format!("cannot watch {}: {e}", entry.display()));
                    continue;
                }
                self.groups.insert(entry.clone());
            }
            for root in infsh_engine::app_folders_below(&entry, 1) {
                let root = std::fs::canonicalize(&root).unwrap_or(root);
                if folders.iter().any(|f| f.root == root) {
                    continue;
                }
                let app = match infsh_engine::app_folder_id(&root) {
                    Ok(app) => app,
                    Err(why) => {
                        if self.unopened.get(&root) != Some(&why) {
                            self.say(
                                true,
                                &format!(
                                    "new app folder {} is not an app yet: {why}",
                                    root.display()
                                ),
                            );
                            self.unopened.insert(root, why);
                        }
                        continue;
                    }
                };
                self.unopened.remove(&root);
                if let Some(other) = folders.iter().find(|f| f.app == app) {
                    self.say(
                        true,
                        &format!(
                            "new app folder {} names app {app}, which {} serves; skipped",
                            root.display(),
                            other.root.display()
                        ),
                    );
                    continue;
                }
                folders.push(Folder { app, root });
            }
        }
    }

    /// Deploys `folder` again after `files` changed, or (`new`) for the
    /// first time.
    async fn reload(&mut self, folder: &Folder, files: &BTreeSet<String>, new: bool) {
        let started = Instant::now();
        let app = &folder.app;
        let mut named: Vec<&str> = files.iter().take(NAMED_FILES).map(String::as_str).collect();
        if files.len() > NAMED_FILES {
            named.push("...");
        }
        let (path, hash) = match self.pack(&folder.root).await {
            Ok(packed) => packed,
            Err(e) => {
                self.say(true, &format!("{app}: cannot pack the folder: {e}"));
                return;
            }
        };
        let previous = self.served.get(app).cloned();
        if previous.as_deref() == Some(hash.as_str()) {
            let _ = tokio::fs::remove_file(&path).await;
            return;
        }
        let what = if new {
            format!(
                "new app folder {}: deploying {app}; building version {}",
                folder.root.display(),
                short(&hash)
            )
        } else {
            format!(
                "reloading {app}: {} file{} changed ({}); building version {}",
                files.len(),
                if files.len() == 1 { "" } else { "s" },
                named.join(", "),
                short(&hash)
            )
        };
        self.say(false, &what);
        match self
            .engine
            .deploy_version(app, path, hash.clone(), true)
            .await
        {
            Ok(_) => {
                self.served.insert(app.clone(), hash.clone());
                self.say(
                    false,
                    &format!(
                        "{app} ready as version {} in {:.1} s",
                        short(&hash),
                        started.elapsed().as_secs_f64()
                    ),
                );
            }
            Err(e) => {
                let why = match e {
                    EngineError::VersionFailed {
                        message, traceback, ..
                    } => match traceback {
                        Some(tb) => format!("failed to build: {message}\n{}", tb.trim_end()),
                        None => format!("failed to build: {message}"),
                    },
                    other => format!("cannot be deployed: {other}"),
                };
                let keeps = match &previous {
                    Some(hash) => format!("the last good version ({}) keeps serving", short(hash)),
                    None if self.engine.app_folders().iter().any(|(id, _)| id == app) => {
                        "the last good version keeps serving".to_string()
                    }
                    None => "no version of it serves yet".to_string(),
                };
                self.say(
                    true,
                    &format!(
                        "{app}: version {} {why}\n{keeps}; fix the app and save again",
                        short(&hash)
                    ),
                );
            }
        }
    }

    /// Packs `root` into a new file under the uploads folder: its path
    /// and the package's hash.
    async fn pack(&self, root: &Path) -> Result<(PathBuf, String), String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = self.uploads.clone();
        let path = dir.join(format!(
            "watch-{}-{}.upload",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let root = root.to_path_buf();
        let target = path.clone();
        let packed = tokio::task::spawn_blocking(move || -> Result<String, String> {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let file =
                std::fs::File::create(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let (hash, _) =
                infsh_core::package::pack(&root, &mut out).map_err(|e| e.to_string())?;
            std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
            Ok(hash)
        })
        .await
        .map_err(|e| e.to_string())?;
        match packed {
            Ok(hash) => Ok((path, hash)),
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(e)
            }
        }
    }

    fn say(&self, warning: bool, message: &str) {
        say(self.json_logs, warning, &format!("--watch: {message}"));
    }
}

/// What each folder holds when the watch starts (its package hash, as
/// `infsh app deploy` computes it): a save that changes nothing deploys
/// nothing. Taken before the watch reports anything, so an edit made once
/// the server listens is always seen as one.
fn initial_hashes(folders: &[Folder]) -> HashMap<String, String> {
    folders
        .iter()
        .filter_map(|f| {
            let (hash, _) = infsh_core::package::pack(&f.root, &mut std::io::sink()).ok()?;
            Some((f.app.clone(), hash))
        })
        .collect()
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(SHORT)]
}

/// Whether a change at `relative` (`/`-separated, inside an app folder)
/// can change the app's package: not an environment, cache, version
/// control, ignored path or editor scratch file. A path that is gone
/// (deleted, renamed away) is judged by its name alone.
fn is_packed_change(relative: &str, is_dir: bool, rules: &IgnoreRules) -> bool {
    let parts: Vec<&str> = relative.split('/').collect();
    let (dirs, name) = parts.split_at(parts.len() - 1);
    let name = name[0];
    if dirs
        .iter()
        .any(|d| SKIPPED_DIRS.contains(d) || d.starts_with('.'))
    {
        return false;
    }
    // Packing skips an ignored folder whole (`build/`): so does a change
    // anywhere below it.
    let ignored_above = (1..=dirs.len()).any(|n| rules.ignores(&dirs[..n].join("/"), true));
    if ignored_above {
        return false;
    }
    // The ignore files themselves change what is packed.
    if relative == ".infshignore" || relative == ".gitignore" {
        return true;
    }
    let scratch = name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".swo")
        || name.ends_with(".pyc")
        || name.starts_with(".#")
        || name.starts_with('.')
        // vim's probe of whether the folder is writable
        || name == "4913";
    if scratch || SKIPPED_DIRS.contains(&name) {
        return false;
    }
    !rules.ignores(relative, is_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_that_can_change_the_package_count() {
        let mut rules = IgnoreRules::default();
        rules.add("*.log\nbuild/\n");
        for packed in ["inference.py", "inf.yml", "lib/model.py", ".infshignore"] {
            assert!(is_packed_change(packed, false, &rules), "{packed}");
        }
        for skipped in [
            "__pycache__/inference.cpython-311.pyc",
            "lib/__pycache__/x.pyc",
            ".venv/bin/python",
            ".git/index",
            "node_modules/x/index.js",
            "inference.py~",
            ".inference.py.swp",
            ".#inference.py",
            "4913",
            "run.log",
            "build/out.bin",
            "build/deep/out.bin",
        ] {
            assert!(!is_packed_change(skipped, false, &rules), "{skipped}");
        }
        assert!(!is_packed_change(".venv", true, &rules));
        assert!(!is_packed_change("build", true, &rules));
    }
}
