//! Embeds the Python worker runtime (`python/infsh_worker/*.py`) in the
//! binary: generates `$OUT_DIR/runtime_files.rs`, a static table of
//! `(file name, contents)` that `runtime_files.rs` extracts at start.
//!
//! Works with zero files (the folder may not exist yet in a fresh checkout of
//! a half-built tree); the worker then fails at start with "No module named
//! infsh_worker" in its stderr.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let runtime_dir = manifest_dir.join("../../python/infsh_worker");
    // The folder itself: its mtime changes when files are added or removed.
    println!("cargo:rerun-if-changed={}", runtime_dir.display());

    let mut files: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(entries) = fs::read_dir(&runtime_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if path.extension().is_some_and(|e| e == "py") && path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
                let abs = fs::canonicalize(&path).unwrap_or(path.clone());
                files.push((name.to_owned(), abs));
            }
        }
    }
    // Sorted, so the table (and the content hash) does not depend on the
    // order the file system lists the folder in.
    files.sort();

    let mut out = String::from(
        "/// `(file name, contents)` of every `python/infsh_worker/*.py`, sorted by name.\n\
         pub static RUNTIME_FILES: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &files {
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    // The Node worker (node/infsh-worker/*.mjs), extracted beside it.
    let node_dir = manifest_dir.join("../../node/infsh-worker");
    println!("cargo:rerun-if-changed={}", node_dir.display());
    let mut node_files: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(entries) = fs::read_dir(&node_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if path.extension().is_some_and(|e| e == "mjs") && path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
                let abs = fs::canonicalize(&path).unwrap_or(path.clone());
                node_files.push((name.to_owned(), abs));
            }
        }
    }
    node_files.sort();
    out.push_str(
        "/// `(file name, contents)` of every `node/infsh-worker/*.mjs`, sorted by name.\n\
         pub static NODE_RUNTIME_FILES: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &node_files {
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("runtime_files.rs");
    fs::write(dest, out).unwrap();
}
