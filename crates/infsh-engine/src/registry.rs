//! The hosted apps: finding app folders under `apps_dir`, naming them
//! (`namespace/name`), and parsing the `app` string of a run request.
//!
//! An app folder is one holding `inference.py`, at most three levels below
//! `apps_dir` (or `apps_dir` itself). App folders are not searched further
//! (apps do not nest), and neither are hidden folders, `__pycache__`,
//! `node_modules` or virtual environments (a folder with `pyvenv.cfg`).
//! Folders are visited in name order, so which of two apps claiming the same
//! id wins (the first) does not depend on the file system.

use std::path::{Path, PathBuf};

use infsh_core::app::AppDir;

/// How deep below `apps_dir` app folders are looked for.
pub const MAX_DEPTH: usize = 3;
/// The namespace of an app whose `inf.yml` names none.
pub const DEFAULT_NAMESPACE: &str = "local";

/// One hosted app.
#[derive(Debug, Clone)]
pub(crate) struct AppEntry {
    /// `namespace/name`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub dir: AppDir,
}

impl AppEntry {
    fn new(dir: AppDir) -> AppEntry {
        let m = &dir.manifest;
        let clean = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let namespace = clean(&m.namespace).unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let name = clean(&m.name).unwrap_or_else(|| dir.folder_name());
        AppEntry {
            id: format!("{namespace}/{name}"),
            namespace,
            name,
            dir,
        }
    }
}

/// Every app under `apps_dir`, in discovery order, duplicates dropped (with
/// a warning). Folders that fail to open (a broken `inf.yml`) are skipped
/// with a warning.
pub(crate) fn scan(apps_dir: &Path) -> Result<Vec<AppEntry>, String> {
    if !apps_dir.is_dir() {
        return Err(format!("apps folder not found: {}", apps_dir.display()));
    }
    let mut folders = Vec::new();
    find_app_folders(apps_dir, 0, &mut folders);
    let mut apps: Vec<AppEntry> = Vec::new();
    for folder in folders {
        let dir = match AppDir::open(&folder) {
            Ok(dir) => dir,
            Err(e) => {
                tracing::warn!(folder = %folder.display(), error = %e, "skipping app folder");
                continue;
            }
        };
        for warning in &dir.warnings {
            tracing::info!(folder = %folder.display(), "{warning}");
        }
        let entry = AppEntry::new(dir);
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

fn skipped_folder(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with('.')
        || name == "__pycache__"
        || name == "node_modules"
        || name == "site-packages"
        || path.join("pyvenv.cfg").exists()
}

fn find_app_folders(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if dir.join(infsh_core::app::INFERENCE_PY).is_file() {
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

/// A request's `app`: `ns/name`, `ns/name@version` (the version is ignored:
/// one version of each app is hosted), `ns/name:function`, or a bare `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppRef {
    /// `ns/name`, or a bare name.
    pub id: String,
    pub function: Option<String>,
}

pub(crate) fn parse_app_ref(s: &str) -> AppRef {
    let s = s.trim();
    let (rest, function) = match s.rsplit_once(':') {
        Some((rest, f)) if !f.trim().is_empty() => (rest, Some(f.trim().to_string())),
        Some((rest, _)) => (rest, None),
        None => (s, None),
    };
    let id = rest.split_once('@').map_or(rest, |(id, _)| id).trim();
    AppRef {
        id: id.to_string(),
        function,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_refs() {
        let r = |id: &str, f: Option<&str>| AppRef {
            id: id.into(),
            function: f.map(Into::into),
        };
        assert_eq!(parse_app_ref("tests/multi-fn"), r("tests/multi-fn", None));
        assert_eq!(
            parse_app_ref(" tests/multi-fn@1.2.3 "),
            r("tests/multi-fn", None)
        );
        assert_eq!(
            parse_app_ref("tests/multi-fn:generate"),
            r("tests/multi-fn", Some("generate"))
        );
        assert_eq!(
            parse_app_ref("tests/multi-fn@abc:generate"),
            r("tests/multi-fn", Some("generate"))
        );
        assert_eq!(parse_app_ref("tests/multi-fn:"), r("tests/multi-fn", None));
        assert_eq!(parse_app_ref("multi-fn"), r("multi-fn", None));
    }

    fn app(root: &Path, rel: &str, yml: Option<&str>) {
        let dir = root.join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("inference.py"), "").unwrap();
        if let Some(yml) = yml {
            std::fs::write(dir.join("inf.yml"), yml).unwrap();
        }
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

        let apps = scan(r).unwrap();
        let ids: Vec<_> = apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, vec!["ns/alpha", "local/b", "local/gamma", "deep/z"]);
        assert!(
            apps[0].dir.root.ends_with("a"),
            "the first of two duplicates wins"
        );
        assert!(scan(&r.join("missing")).is_err());
    }
}
