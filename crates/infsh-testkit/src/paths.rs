//! Where the tests' apps are: the fixture apps in `tests/fixtures/apps/`
//! (small apps covering every signature and failure) and the runnable
//! `examples/`, and how a test copies them into a folder of its own (tests
//! never run an app in the repository, so `__pycache__` and whatever a run
//! writes stay out of it).

use std::path::{Path, PathBuf};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// `tests/fixtures/apps/<name>`; panics when there is no such fixture.
pub fn fixture(name: &str) -> PathBuf {
    let path = repo_root().join("tests/fixtures/apps").join(name);
    assert!(path.is_dir(), "missing fixture app {}", path.display());
    path
}

/// `examples/<name>`.
pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// Copies the folder `from` to `to` (created), leaving out `__pycache__`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap_or_else(|e| {
                panic!(
                    "cannot copy {} to {}: {e}",
                    entry.path().display(),
                    target.display()
                )
            });
        }
    }
}

/// Copies these fixture apps into `apps_dir` (created), each under its own
/// name: an apps folder as `infsh serve --apps` reads it.
pub fn copy_fixtures(apps_dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(apps_dir).unwrap();
    for name in names {
        copy_dir(&fixture(name), &apps_dir.join(name));
    }
}

/// Copies the fixture app `fixture` into `apps_dir/folder` with `inf_yml`
/// as its `inf.yml`: the same code served under another name or with other
/// settings (secrets, env, timeouts). Returns the app's folder.
pub fn copy_fixture_as(apps_dir: &Path, fixture: &str, folder: &str, inf_yml: &str) -> PathBuf {
    let dir = apps_dir.join(folder);
    copy_dir(&self::fixture(fixture), &dir);
    std::fs::write(dir.join("inf.yml"), inf_yml).unwrap();
    dir
}

/// Appends an `env:` block with these variables to the inf.yml of the app
/// in `app_dir` (which has none): how a test hands an app the paths of the
/// files it records into.
pub fn add_env(app_dir: &Path, vars: &[(&str, &Path)]) {
    let path = app_dir.join("inf.yml");
    let mut yml = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    yml.push_str("\nenv:\n");
    for (key, value) in vars {
        yml.push_str(&format!("  {key}: \"{}\"\n", value.display()));
    }
    std::fs::write(path, yml).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_found_and_copied_without_bytecode() {
        let from = tempfile::tempdir().unwrap();
        let from = from.path();
        std::fs::create_dir_all(from.join("__pycache__")).unwrap();
        std::fs::write(from.join("__pycache__/x.pyc"), "").unwrap();
        std::fs::create_dir_all(from.join("pkg")).unwrap();
        std::fs::write(from.join("pkg/a.py"), "a").unwrap();
        std::fs::write(from.join("inference.py"), "i").unwrap();
        let to = tempfile::tempdir().unwrap();
        let copy = to.path().join("copy");
        copy_dir(from, &copy);
        assert_eq!(std::fs::read_to_string(copy.join("pkg/a.py")).unwrap(), "a");
        assert_eq!(
            std::fs::read_to_string(copy.join("inference.py")).unwrap(),
            "i"
        );
        assert!(!copy.join("__pycache__").exists());

        let apps = to.path().join("apps");
        copy_fixtures(&apps, &["multi-fn"]);
        assert!(apps.join("multi-fn/inference.py").is_file());
        let yml = "namespace: tests\nname: renamed\n";
        let dir = copy_fixture_as(&apps, "multi-fn", "renamed", yml);
        assert_eq!(dir, apps.join("renamed"));
        assert_eq!(std::fs::read_to_string(dir.join("inf.yml")).unwrap(), yml);
        assert!(dir.join("inference.py").is_file());

        add_env(&dir, &[("A", Path::new("/x y")), ("B", Path::new("/z"))]);
        assert_eq!(
            std::fs::read_to_string(dir.join("inf.yml")).unwrap(),
            format!("{yml}\nenv:\n  A: \"/x y\"\n  B: \"/z\"\n")
        );
    }

    #[test]
    #[should_panic(expected = "missing fixture app")]
    fn a_missing_fixture_is_named() {
        fixture("no-such-fixture");
    }
}
