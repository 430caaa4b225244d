//! An app's package: the files of an app folder in one stream, what
//! `infsh app deploy` uploads and the server keeps (one file per version).
//!
//! The format is the stream the content hash is taken over, after a magic
//! line, so the server hashes an upload while it writes it to the disk
//! without unpacking it, and the version of a folder is the same hash an
//! engine registers for it (`engine_run/app_hash.rs`):
//!
//! ```text
//! INFSHPKG1\n
//! then, for each file in path order:
//!   relative path (UTF-8, `/`-separated)  0x00  size (u64, little endian)  bytes
//! ```
//!
//! Packing skips environments and caches (`.git`, `.venv`, `venv`,
//! `__pycache__`, `node_modules`, `.pytest_cache`, `*.pyc`) and what the
//! folder's `.infshignore` and `.gitignore` name (see [`IgnoreRules`]).
//! Unpacking refuses a path that would leave the folder.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// The first bytes of every package.
pub const MAGIC: &[u8] = b"INFSHPKG1\n";
/// Longest path a package may name (bytes).
pub const MAX_PATH: usize = 4096;

/// Folder names never packed.
pub const SKIPPED_DIRS: [&str; 6] = [
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "node_modules",
    ".pytest_cache",
];

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not an app package (it does not start with INFSHPKG1)")]
    NotAPackage,
    #[error("the package ends inside an entry")]
    Truncated,
    #[error("the package names an invalid path {0:?}")]
    BadPath(String),
    #[error("the package has no inference.py (or inference.js) at its top")]
    NoEntryFile,
}

/// Ignore patterns of a folder's `.infshignore` and `.gitignore`, a subset
/// of git's: one glob per line (`*`, `?`, `**`), `#` comments, a trailing
/// `/` for folders only, a leading or inner `/` anchors the pattern to the
/// folder (otherwise it matches a name at any depth). Negation (`!`) is not
/// supported: such a line is ignored.
#[derive(Debug, Default, Clone)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    glob: String,
    anchored: bool,
    dir_only: bool,
}

impl IgnoreRules {
    /// The rules of `root`'s `.infshignore` and `.gitignore` (either may be
    /// missing).
    pub fn for_folder(root: &Path) -> IgnoreRules {
        let mut rules = IgnoreRules::default();
        for name in [".infshignore", ".gitignore"] {
            if let Ok(text) = std::fs::read_to_string(root.join(name)) {
                rules.add(&text);
            }
        }
        rules
    }

    /// Adds the lines of one ignore file.
    pub fn add(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let dir_only = line.ends_with('/');
            let line = line.trim_end_matches('/');
            let anchored = line.contains('/');
            let glob = line.trim_start_matches('/').to_string();
            if !glob.is_empty() {
                self.rules.push(Rule {
                    glob,
                    anchored,
                    dir_only,
                });
            }
        }
    }

    /// Whether `relative` (`/`-separated, from the folder) is ignored.
    pub fn ignores(&self, relative: &str, is_dir: bool) -> bool {
        let name = relative.rsplit('/').next().unwrap_or(relative);
        self.rules.iter().any(|r| {
            (!r.dir_only || is_dir)
                && if r.anchored {
                    glob_match(&r.glob, relative)
                } else {
                    glob_match(&r.glob, name)
                }
        })
    }
}

/// `*` and `?` within one path segment, `**` across segments.
fn glob_match(glob: &str, text: &str) -> bool {
    fn go(g: &[u8], t: &[u8]) -> bool {
        match g.first() {
            None => t.is_empty(),
            Some(b'*') if g.get(1) == Some(&b'*') => {
                let rest = g[2..].strip_prefix(b"/").unwrap_or(&g[2..]);
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            Some(b'*') => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != b'/')
                .any(|i| go(&g[1..], &t[i..])),
            Some(b'?') => !t.is_empty() && t[0] != b'/' && go(&g[1..], &t[1..]),
            Some(&c) => t.first() == Some(&c) && go(&g[1..], &t[1..]),
        }
    }
    go(glob.as_bytes(), text.as_bytes())
}

/// The files a package of `root` holds: relative paths, in path order.
pub fn package_files(root: &Path) -> Result<Vec<String>, PackageError> {
    let rules = IgnoreRules::for_folder(root);
    let mut files = Vec::new();
    collect(root, root, &rules, &mut files)?;
    files.sort();
    Ok(files)
}

fn collect(
    root: &Path,
    dir: &Path,
    rules: &IgnoreRules,
    out: &mut Vec<String>,
) -> Result<(), PackageError> {
    let io = |source| PackageError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let kind = entry.file_type().map_err(io)?;
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        if kind.is_dir() {
            let skipped = SKIPPED_DIRS.iter().any(|s| name == *s)
                || path.join("pyvenv.cfg").exists()
                || rules.ignores(&relative, true);
            if !skipped {
                collect(root, &path, rules, out)?;
            }
        } else if kind.is_file()
            && !name.to_string_lossy().ends_with(".pyc")
            && !rules.ignores(&relative, false)
        {
            out.push(relative);
        }
    }
    Ok(())
}

/// Writes the package of `root` to `out`; returns its content hash (hex
/// SHA-256 of everything after the magic line) and the files packed.
pub fn pack(root: &Path, out: &mut impl Write) -> Result<(String, Vec<String>), PackageError> {
    use sha2::{Digest, Sha256};
    let files = package_files(root)?;
    let write_err = |source| PackageError::Io {
        path: PathBuf::from("(package)"),
        source,
    };
    out.write_all(MAGIC).map_err(write_err)?;
    let mut hasher = Sha256::new();
    for relative in &files {
        let path = root.join(relative);
        let bytes = std::fs::read(&path).map_err(|source| PackageError::Io { path, source })?;
        let mut head = Vec::with_capacity(relative.len() + 9);
        head.extend_from_slice(relative.as_bytes());
        head.push(0);
        head.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&head);
        hasher.update(&bytes);
        out.write_all(&head).map_err(write_err)?;
        out.write_all(&bytes).map_err(write_err)?;
    }
    Ok((hex::encode(hasher.finalize()), files))
}

/// Hashes a package while reading it (what the server does with an
/// upload, before unpacking): the hex SHA-256 after the magic line.
pub struct PackageHasher {
    seen: usize,
    inner: sha2::Sha256,
}

impl Default for PackageHasher {
    fn default() -> Self {
        use sha2::Digest;
        PackageHasher {
            seen: 0,
            inner: sha2::Sha256::new(),
        }
    }
}

impl PackageHasher {
    pub fn update(&mut self, mut chunk: &[u8]) {
        use sha2::Digest;
        if self.seen < MAGIC.len() {
            let skip = (MAGIC.len() - self.seen).min(chunk.len());
            self.seen += skip;
            chunk = &chunk[skip..];
        }
        self.inner.update(chunk);
    }

    pub fn finish(self) -> String {
        use sha2::Digest;
        hex::encode(self.inner.finalize())
    }
}

/// A package path checked to stay inside the folder it is unpacked into.
fn safe_path(relative: &str) -> Result<PathBuf, PackageError> {
    let bad = || PackageError::BadPath(relative.to_string());
    if relative.is_empty() || relative.contains('\\') || relative.starts_with('/') {
        return Err(bad());
    }
    let path = PathBuf::from(relative);
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(bad());
    }
    Ok(path)
}

/// Unpacks a package into `dest` (created); returns the files written.
/// Refuses a package that is not one, is cut short, names a path leaving
/// `dest`, or has no entry file at its top.
pub fn unpack(mut input: impl Read, dest: &Path) -> Result<Vec<String>, PackageError> {
    let read_err = |source| PackageError::Io {
        path: PathBuf::from("(package)"),
        source,
    };
    let mut magic = [0u8; 10];
    read_full(&mut input, &mut magic).map_err(read_err)?;
    if magic != MAGIC {
        return Err(PackageError::NotAPackage);
    }
    let mut files = Vec::new();
    loop {
        let mut path = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            let n = input.read(&mut byte).map_err(read_err)?;
            if n == 0 {
                if path.is_empty() {
                    return finish(files);
                }
                return Err(PackageError::Truncated);
            }
            if byte[0] == 0 {
                break;
            }
            path.push(byte[0]);
            if path.len() > MAX_PATH {
                return Err(PackageError::BadPath(
                    String::from_utf8_lossy(&path).into_owned(),
                ));
            }
        }
        let relative = String::from_utf8(path)
            .map_err(|e| PackageError::BadPath(String::from_utf8_lossy(e.as_bytes()).into()))?;
        let target = dest.join(safe_path(&relative)?);
        let mut size = [0u8; 8];
        if read_full(&mut input, &mut size).map_err(read_err)? < 8 {
            return Err(PackageError::Truncated);
        }
        let size = u64::from_le_bytes(size);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|source| PackageError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let mut file = std::fs::File::create(&target).map_err(|source| PackageError::Io {
            path: target.clone(),
            source,
        })?;
        let copied = std::io::copy(&mut (&mut input).take(size), &mut file).map_err(|source| {
            PackageError::Io {
                path: target.clone(),
                source,
            }
        })?;
        if copied < size {
            return Err(PackageError::Truncated);
        }
        files.push(relative);
    }
}

fn finish(files: Vec<String>) -> Result<Vec<String>, PackageError> {
    if files
        .iter()
        .any(|f| f == "inference.py" || f == "inference.js")
    {
        Ok(files)
    } else {
        Err(PackageError::NoEntryFile)
    }
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[path = "package_tests.rs"]
mod tests;
