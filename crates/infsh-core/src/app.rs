//! An app folder on disk: where it is, its manifest, and its files
//! (`inference.py`, `requirements.txt`, example inputs).
//!
//! Opening checks only what the host can check without Python: the folder
//! exists and has `inference.py` (a Python app) or, for a JavaScript app,
//! `inference.js` / `src/inference.js` ([`AppRuntime`]). Whether that file really defines `App` is
//! the worker's verdict (`load_failed` in the protocol).

use std::path::{Path, PathBuf};

use crate::manifest::{Manifest, ManifestError, MANIFEST_FILE};

/// The app's entry module.
pub const INFERENCE_PY: &str = "inference.py";
/// A JavaScript app's entry modules, in the order they are looked for
/// (node/infsh-worker/main.mjs looks the same way).
pub const INFERENCE_JS: &[&str] = &["inference.js", "src/inference.js"];
/// The app's pip requirements.
pub const REQUIREMENTS_FILE: &str = "requirements.txt";
/// The default function's example input.
pub const DEFAULT_EXAMPLE: &str = "input.json";
/// Files tooling writes into the app folder; never examples even when their
/// names look like `input_<fn>.json`.
const GENERATED_FILES: &[&str] = &[
    "input_schema.json",
    "output_schema.json",
    "setup_schema.json",
    "functions_schema.json",
];

/// Why an app folder could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("app folder not found: {path}")]
    NotFound { path: PathBuf },
    #[error("not a directory: {path} (an app is a folder holding inference.py)")]
    NotADirectory { path: PathBuf },
    #[error(
        "no inference.py in {dir}: an app folder needs inference.py defining `class App(BaseApp)` (or, for a JavaScript app, inference.js exporting `class App`)"
    )]
    NoInferencePy { dir: PathBuf },
    #[error("inf.yml says kernel: {kernel} but {dir} has no inference.js nor src/inference.js")]
    NoInferenceJs { dir: PathBuf, kernel: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An example input file: `input.json` for the default function,
/// `input_<fn>.json` for function `<fn>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Example {
    /// `None`: `input.json`, for the default function.
    pub function: Option<String>,
    pub path: PathBuf,
}

/// Which worker runtime runs an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppRuntime {
    /// `inference.py`, run by `python -m infsh_worker`.
    Python,
    /// `inference.js` or `src/inference.js` (an ES module exporting `class
    /// App` and Zod schemas), run by the Node worker (node/infsh-worker).
    Node,
}

impl AppRuntime {
    /// `kernel:` of inf.yml first (`node-*` is Node, anything else Python),
    /// then the entry file that exists: `inference.py` wins over
    /// `inference.js`.
    fn detect(root: &Path, kernel: Option<&str>) -> Result<AppRuntime, AppError> {
        let has_js = INFERENCE_JS.iter().any(|e| root.join(e).is_file());
        match kernel {
            Some(k) if k.starts_with("node") => {
                if has_js {
                    Ok(AppRuntime::Node)
                } else {
                    Err(AppError::NoInferenceJs {
                        dir: root.to_path_buf(),
                        kernel: k.to_string(),
                    })
                }
            }
            _ if root.join(INFERENCE_PY).is_file() => Ok(AppRuntime::Python),
            None if has_js => Ok(AppRuntime::Node),
            _ => Err(AppError::NoInferencePy {
                dir: root.to_path_buf(),
            }),
        }
    }

    /// `python` or `node`, as the CLI names the runtime.
    pub fn name(self) -> &'static str {
        match self {
            AppRuntime::Python => "python",
            AppRuntime::Node => "node",
        }
    }
}

/// An opened app folder.
#[derive(Debug, Clone)]
pub struct AppDir {
    /// The canonical folder path (absolute, links resolved).
    pub root: PathBuf,
    /// Python or JavaScript.
    pub runtime: AppRuntime,
    /// `inf.yml`, or [`Manifest::default`] when the app has none.
    pub manifest: Manifest,
    /// Problems found while opening that do not stop the app from running
    /// (no `inf.yml`, no `requirements.txt`).
    pub warnings: Vec<String>,
}

impl AppDir {
    /// Opens the app folder at `path` (made canonical: absolute, links resolved).
    pub fn open(path: impl AsRef<Path>) -> Result<AppDir, AppError> {
        let path = path.as_ref();
        let root = std::fs::canonicalize(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => AppError::NotFound {
                path: path.to_path_buf(),
            },
            _ => AppError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        if !root.is_dir() {
            return Err(AppError::NotADirectory { path: root });
        }
        if !root.join(INFERENCE_PY).is_file()
            && !INFERENCE_JS.iter().any(|e| root.join(e).is_file())
        {
            return Err(AppError::NoInferencePy { dir: root });
        }
        let mut warnings = Vec::new();
        let manifest_path = root.join(MANIFEST_FILE);
        let manifest = if manifest_path.is_file() {
            Manifest::load(&manifest_path)?
        } else {
            warnings.push(format!(
                "no {MANIFEST_FILE} in {}: using defaults",
                root.display()
            ));
            Manifest::default()
        };
        let runtime = AppRuntime::detect(&root, manifest.kernel.as_deref())?;
        if runtime == AppRuntime::Python && !root.join(REQUIREMENTS_FILE).is_file() {
            warnings.push(format!(
                "no {REQUIREMENTS_FILE} in {}: the environment will hold only the inferencesh SDK",
                root.display()
            ));
        }
        Ok(AppDir {
            root,
            runtime,
            manifest,
            warnings,
        })
    }

    /// The folder's own name (may contain `-`; the worker imports it as a package anyway).
    pub fn folder_name(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.root.display().to_string())
    }

    /// `namespace/name` from `inf.yml` when both are set, else the folder name.
    pub fn display_name(&self) -> String {
        self.manifest
            .qualified_name()
            .unwrap_or_else(|| self.folder_name())
    }

    pub fn inference_py(&self) -> PathBuf {
        self.root.join(INFERENCE_PY)
    }

    /// Where `inf.yml` is (or would be).
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join(MANIFEST_FILE)
    }

    /// Where `requirements.txt` is (or would be).
    pub fn requirements_path(&self) -> PathBuf {
        self.root.join(REQUIREMENTS_FILE)
    }

    /// The example input files, `input.json` first, then `input_<fn>.json` by
    /// function name. Tooling's generated `*_schema.json` files are not examples.
    pub fn examples(&self) -> Vec<Example> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<Example> = entries
            .flatten()
            .filter(|e| {
                e.file_type()
                    .map(|t| t.is_file() || t.is_symlink())
                    .unwrap_or(false)
            })
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let function = example_function(&name)?;
                Some(Example {
                    function,
                    path: e.path(),
                })
            })
            .collect();
        out.sort();
        out
    }

    /// Where the example for `function` lives (`None`: the default function's
    /// `input.json`); the file need not exist (for `--save-example`).
    pub fn example_path(&self, function: Option<&str>) -> PathBuf {
        match function {
            None => self.root.join(DEFAULT_EXAMPLE),
            Some(f) => self.root.join(format!("input_{f}.json")),
        }
    }

    /// The example to use for `function`: its `input_<fn>.json`, else
    /// `input.json` when `function` is the app's default.
    pub fn example_for(&self, function: &str, default_function: Option<&str>) -> Option<Example> {
        let examples = self.examples();
        let own = examples
            .iter()
            .find(|e| e.function.as_deref() == Some(function));
        own.or_else(|| {
            (default_function == Some(function))
                .then(|| examples.iter().find(|e| e.function.is_none()))
                .flatten()
        })
        .cloned()
    }
}

/// `input.json` → `Some(None)`; `input_<fn>.json` → `Some(Some(fn))`; else `None`.
fn example_function(file_name: &str) -> Option<Option<String>> {
    if file_name == DEFAULT_EXAMPLE {
        return Some(None);
    }
    if GENERATED_FILES.contains(&file_name) {
        return None;
    }
    let function = file_name.strip_prefix("input_")?.strip_suffix(".json")?;
    (!function.is_empty()).then(|| Some(function.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("my-app-")
            .tempdir()
            .unwrap();
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    #[test]
    fn opens_a_complete_app() {
        let dir = app(&[
            ("inference.py", "class App: pass\n"),
            (
                "inf.yml",
                "namespace: acme\nname: upscaler\ndefault_function: upscale\n",
            ),
            ("requirements.txt", "inferencesh\n"),
        ]);
        let a = AppDir::open(dir.path()).unwrap();
        assert_eq!(a.root, std::fs::canonicalize(dir.path()).unwrap());
        assert_eq!(a.display_name(), "acme/upscaler");
        assert_eq!(a.manifest.default_function.as_deref(), Some("upscale"));
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        assert_eq!(a.requirements_path(), a.root.join("requirements.txt"));
        assert_eq!(a.inference_py(), a.root.join("inference.py"));
    }

    #[test]
    fn missing_manifest_is_a_warning() {
        let dir = app(&[("inference.py", "")]);
        let a = AppDir::open(dir.path()).unwrap();
        assert_eq!(&a.manifest, &Manifest::default());
        assert_eq!(a.display_name(), a.folder_name());
        assert!(a.folder_name().starts_with("my-app-"));
        assert_eq!(a.warnings.len(), 2, "{:?}", a.warnings);
        assert!(a.warnings[0].contains("inf.yml"));
        assert!(a.warnings[1].contains("requirements.txt"));
    }

    #[test]
    fn the_runtime_comes_from_the_kernel_then_from_the_entry_file() {
        let js = app(&[("inference.js", ""), ("inf.yml", "kernel: node-22\n")]);
        let a = AppDir::open(js.path()).unwrap();
        assert_eq!(a.runtime, AppRuntime::Node);
        // A JavaScript app has no requirements.txt to miss.
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);

        let nested = app(&[("src/inference.js", "")]);
        assert_eq!(
            AppDir::open(nested.path()).unwrap().runtime,
            AppRuntime::Node
        );
        let both = app(&[("inference.py", ""), ("inference.js", "")]);
        assert_eq!(
            AppDir::open(both.path()).unwrap().runtime,
            AppRuntime::Python
        );
        let both_node = app(&[
            ("inference.py", ""),
            ("inference.js", ""),
            ("inf.yml", "kernel: node-22\n"),
        ]);
        assert_eq!(
            AppDir::open(both_node.path()).unwrap().runtime,
            AppRuntime::Node
        );
        let py = app(&[("inference.py", ""), ("inf.yml", "kernel: python-3.11\n")]);
        assert_eq!(AppDir::open(py.path()).unwrap().runtime, AppRuntime::Python);

        let node_without_js = app(&[("inference.py", ""), ("inf.yml", "kernel: node-22\n")]);
        let err = AppDir::open(node_without_js.path()).unwrap_err();
        assert!(matches!(err, AppError::NoInferenceJs { .. }));
        let text = err.to_string();
        assert!(
            text.starts_with("inf.yml says kernel: node-22 but /")
                && text.ends_with(" has no inference.js nor src/inference.js"),
            "{text}"
        );
    }

    #[test]
    fn name_without_namespace_uses_folder() {
        let dir = app(&[("inference.py", ""), ("inf.yml", "name: solo\n")]);
        let a = AppDir::open(dir.path()).unwrap();
        assert_eq!(a.display_name(), a.folder_name());
    }

    #[test]
    fn open_errors() {
        let dir = app(&[("inf.yml", "name: x\n")]);
        assert!(matches!(
            AppDir::open(dir.path()),
            Err(AppError::NoInferencePy { .. })
        ));
        let missing = dir.path().join("nope");
        assert!(
            matches!(AppDir::open(&missing), Err(AppError::NotFound { path }) if path == missing)
        );
        let file = dir.path().join("inf.yml");
        assert!(matches!(
            AppDir::open(&file),
            Err(AppError::NotADirectory { .. })
        ));
        let err = AppDir::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("inference.py"), "{err}");
    }

    #[test]
    fn bad_manifest_is_an_error() {
        let dir = app(&[("inference.py", ""), ("inf.yml", "name: [unclosed\n")]);
        let err = AppDir::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, AppError::Manifest(ManifestError::Parse { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("inf.yml:"), "{err}");
    }

    #[test]
    fn lists_examples_sorted() {
        let dir = app(&[
            ("inference.py", ""),
            ("input_upscale.json", "{}"),
            ("input.json", "{}"),
            ("input_caption.json", "{}"),
            ("input_schema.json", "{}"),
            ("functions_schema.json", "{}"),
            ("input_.json", "{}"),
            ("input_x.txt", ""),
            ("output.json", "{}"),
        ]);
        std::fs::create_dir(dir.path().join("input_dir.json")).unwrap();
        let a = AppDir::open(dir.path()).unwrap();
        let ex = a.examples();
        let fns: Vec<_> = ex.iter().map(|e| e.function.as_deref()).collect();
        assert_eq!(fns, [None, Some("caption"), Some("upscale")]);
        assert_eq!(ex[0].path, a.root.join("input.json"));
        assert_eq!(ex[2].path, a.root.join("input_upscale.json"));

        assert_eq!(
            a.example_for("caption", Some("run"))
                .unwrap()
                .function
                .as_deref(),
            Some("caption")
        );
        assert_eq!(a.example_for("run", Some("run")).unwrap().function, None);
        assert_eq!(a.example_for("other", Some("run")), None);
        assert_eq!(a.example_path(None), a.root.join("input.json"));
        assert_eq!(
            a.example_path(Some("upscale")),
            a.root.join("input_upscale.json")
        );
    }
}
