use super::*;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "inference.py", "x = 1\n");
    write(root, "inf.yml", "name: demo\n");
    write(root, "lib/util.py", "y = 2\n");
    write(root, "__pycache__/x.pyc", "junk");
    write(root, ".venv/bin/python", "junk");
    write(root, "node_modules/a/index.js", "junk");
    write(root, "data/big.bin", "junk");
    write(root, "notes.log", "junk");
    write(root, "lib/deep/trace.log", "junk");
    write(root, "build/out.txt", "junk");
    write(root, "keep/build", "a file named build is kept");
    write(
        root,
        ".infshignore",
        "# comment\n/data/\n*.log\n!important.log\n",
    );
    write(root, ".gitignore", "build/\n");
    dir
}

#[test]
fn packing_skips_environments_caches_and_ignored_paths() {
    let dir = app();
    assert_eq!(
        package_files(dir.path()).unwrap(),
        [
            ".gitignore",
            ".infshignore",
            "inf.yml",
            "inference.py",
            "keep/build",
            "lib/util.py"
        ]
    );
}

#[test]
fn a_package_unpacks_to_the_same_files_and_its_hash_is_the_streams() {
    let dir = app();
    let mut bytes = Vec::new();
    let (hash, files) = pack(dir.path(), &mut bytes).unwrap();
    assert_eq!(hash.len(), 64);
    // The hash of the bytes as they stream past, in odd chunks.
    let mut hasher = PackageHasher::default();
    for chunk in bytes.chunks(3) {
        hasher.update(chunk);
    }
    assert_eq!(hasher.finish(), hash);
    let out = tempfile::tempdir().unwrap();
    assert_eq!(unpack(&bytes[..], out.path()).unwrap(), files);
    assert_eq!(
        std::fs::read_to_string(out.path().join("lib/util.py")).unwrap(),
        "y = 2\n"
    );
    // Same content, same hash; one byte changed, another.
    let mut again = Vec::new();
    assert_eq!(pack(out.path(), &mut again).unwrap().0, hash);
    write(out.path(), "lib/util.py", "y = 3\n");
    assert_ne!(pack(out.path(), &mut Vec::new()).unwrap().0, hash);
}

fn entry(path: &str, body: &[u8]) -> Vec<u8> {
    let mut v = path.as_bytes().to_vec();
    v.push(0);
    v.extend_from_slice(&(body.len() as u64).to_le_bytes());
    v.extend_from_slice(body);
    v
}

#[test]
fn unpacking_refuses_bad_packages_with_a_reason() {
    let out = tempfile::tempdir().unwrap();
    let err = |bytes: Vec<u8>| unpack(&bytes[..], out.path()).unwrap_err().to_string();
    assert_eq!(
        err(b"PK\x03\x04zip".to_vec()),
        "not an app package (it does not start with INFSHPKG1)"
    );
    for path in ["../escape.py", "/etc/passwd", "a/../../b", "a\\b", "./x"] {
        let bytes = [MAGIC.to_vec(), entry(path, b"x")].concat();
        assert_eq!(
            err(bytes),
            format!("the package names an invalid path {path:?}")
        );
    }
    assert!(!out.path().parent().unwrap().join("escape.py").exists());
    let mut cut = [MAGIC.to_vec(), entry("inference.py", b"x = 1\n")].concat();
    cut.truncate(cut.len() - 2);
    assert_eq!(err(cut), "the package ends inside an entry");
    let no_entry = [MAGIC.to_vec(), entry("util.py", b"x")].concat();
    assert_eq!(
        err(no_entry),
        "the package has no inference.py (or inference.js) at its top"
    );
}

#[test]
fn globs_match_within_and_across_segments() {
    assert!(glob_match("*.log", "a.log"));
    assert!(!glob_match("*.log", "a/b.log"));
    assert!(glob_match("**/b.log", "a/c/b.log"));
    assert!(glob_match("a/**", "a/c/b.log"));
    assert!(glob_match("?.py", "x.py"));
    assert!(!glob_match("?.py", "xy.py"));
}
