//! Builds real environments (needs network access to PyPI, or a local index the
//! installers are configured with). Uses `uv` when it is on PATH
//! (`export PATH=/work/main/.venv/bin:$PATH`), pip otherwise.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use infsh_env::{prepare, EnvError, EnvProgress, EnvSpec, Installer, PreparedEnv};

fn app(dir: &Path, requirements: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("inference.py"), "").unwrap();
    if let Some(r) = requirements {
        std::fs::write(dir.join("requirements.txt"), r).unwrap();
    }
}

fn imports_sdk(env: &PreparedEnv) -> bool {
    std::process::Command::new(&env.python)
        .args(["-c", "import inferencesh, sys; print(sys.prefix)"])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).trim() == env.dir.to_str().unwrap()
        })
        .unwrap_or(false)
}

async fn prepare_logged(spec: &EnvSpec) -> (Result<PreparedEnv, EnvError>, Vec<EnvProgress>) {
    let events = Mutex::new(Vec::new());
    let r = prepare(spec, |p| events.lock().unwrap().push(p)).await;
    (r, events.into_inner().unwrap())
}

#[tokio::test]
async fn builds_reuses_and_rebuilds_with_uv_when_available() {
    let tmp = tempfile::tempdir().unwrap();
    let app_dir = tmp.path().join("my-app");
    app(&app_dir, Some("inferencesh\n"));
    let spec = EnvSpec::new(&app_dir, tmp.path().join("envs"));
    let expected = if which::which("uv").is_ok() {
        Installer::Uv
    } else {
        Installer::Pip
    };

    let (first, events) = prepare_logged(&spec).await;
    let first = first.unwrap();
    assert!(!first.reused);
    assert_eq!(first.installer, Some(expected));
    assert_eq!(first.dir, spec.cache_dir.join(&first.key[..16]));
    assert!(imports_sdk(&first), "the env's python imports inferencesh");
    assert!(
        matches!(events.first(), Some(EnvProgress::Creating { installer, .. }) if *installer == expected)
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, EnvProgress::Installing { .. })));
    assert!(matches!(events.last(), Some(EnvProgress::Done { .. })));

    // Same requirements: reused, quickly, without running an installer.
    let t = Instant::now();
    let (second, events) = prepare_logged(&spec).await;
    let second = second.unwrap();
    assert!(
        t.elapsed().as_secs_f64() < 5.0,
        "reuse took {:?}",
        t.elapsed()
    );
    assert!(second.reused);
    assert_eq!(second.installer, None);
    assert_eq!(
        (&second.dir, &second.key, &second.python),
        (&first.dir, &first.key, &first.python)
    );
    assert_eq!(
        events,
        vec![EnvProgress::Reused {
            dir: first.dir.clone()
        }]
    );

    // Changed requirements: a new environment; the old one stays for its key.
    std::fs::write(app_dir.join("requirements.txt"), "inferencesh\n# changed\n").unwrap();
    let third = prepare(&spec, |_| {}).await.unwrap();
    assert!(!third.reused);
    assert_ne!(third.key, first.key);
    assert_ne!(third.dir, first.dir);
    assert!(imports_sdk(&third));
    assert!(first.python.exists());

    // Two concurrent prepares of a new key: one builds, the other waits and reuses.
    std::fs::write(
        app_dir.join("requirements.txt"),
        "inferencesh\n# concurrent\n",
    )
    .unwrap();
    let (a, b) = tokio::join!(prepare(&spec, |_| {}), prepare(&spec, |_| {}));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.dir, b.dir);
    assert_eq!(
        [a.reused, b.reused].iter().filter(|r| **r).count(),
        1,
        "{a:?} {b:?}"
    );
    assert!(imports_sdk(&a));
}

#[tokio::test]
async fn pip_fallback_without_requirements_file() {
    let tmp = tempfile::tempdir().unwrap();
    let app_dir = tmp.path().join("no-reqs");
    app(&app_dir, None);
    let spec = EnvSpec {
        prefer_uv: false,
        ..EnvSpec::new(&app_dir, tmp.path().join("envs"))
    };
    let env = prepare(&spec, |_| {}).await.unwrap();
    assert_eq!(env.installer, Some(Installer::Pip));
    assert!(
        imports_sdk(&env),
        "the SDK is installed even with no requirements.txt"
    );
    // pip-built venvs have a working pip (scripts point at the final location).
    let pip = std::process::Command::new(env.dir.join("bin/pip"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(pip.status.success());
    assert!(prepare(&spec, |_| {}).await.unwrap().reused);
}

#[tokio::test]
async fn failed_install_reports_the_tail_and_leaves_nothing_reusable() {
    let tmp = tempfile::tempdir().unwrap();
    let app_dir = tmp.path().join("broken");
    app(
        &app_dir,
        Some("inferencesh\ninfsh-no-such-package-zzz-42==9.9.9\n"),
    );
    let spec = EnvSpec::new(&app_dir, tmp.path().join("envs"));
    let err = prepare(&spec, |_| {}).await.unwrap_err();
    match &err {
        EnvError::InstallFailed {
            log_tail, status, ..
        } => {
            assert!(!log_tail.is_empty());
            assert!(!status.is_empty());
            assert!(
                log_tail
                    .iter()
                    .any(|l| l.contains("infsh-no-such-package-zzz-42")),
                "{log_tail:#?}"
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(err.to_string().contains("failed"));
    // Only the lock file remains in the cache.
    let left: Vec<_> = std::fs::read_dir(&spec.cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(left.iter().all(|n| n.ends_with(".lock")), "{left:?}");
}

#[tokio::test]
async fn missing_app_folder_is_an_io_error() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = EnvSpec::new(tmp.path().join("nope"), tmp.path().join("envs"));
    let err = prepare(&spec, |_| {}).await.unwrap_err();
    assert!(matches!(err, EnvError::Io { .. }), "{err}");
    assert!(err.to_string().contains("cannot open app folder"), "{err}");
}

#[test]
fn prepare_future_is_send() {
    fn assert_send<T: Send>(_: T) {}
    let spec = EnvSpec::new("/nonexistent", "/nonexistent");
    assert_send(prepare(&spec, |_| {}));
}

#[tokio::test]
async fn use_interpreter_accepts_a_working_python() {
    let python = infsh_env::default_python().unwrap();
    let env = infsh_env::use_interpreter(&python).await.unwrap();
    assert!(env.reused && env.installer.is_none() && env.key.is_empty());
    assert!(env.dir.is_absolute());
}

#[tokio::test]
async fn without_uv_a_kernel_other_than_the_interpreter_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let app_dir = tmp.path().join("kernel");
    app(&app_dir, None);
    let python = infsh_env::default_python().unwrap();
    let spec = EnvSpec {
        prefer_uv: false,
        base_python: Some(python.clone()),
        kernel: Some("python-3.99".into()),
        ..EnvSpec::new(&app_dir, tmp.path().join("envs"))
    };
    let err = prepare(&spec, |_| {}).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, EnvError::KernelMismatch { .. }), "{text}");
    let prefix = format!(
        "inf.yml asks for kernel python-3.99 but {} is Python 3.",
        python.display()
    );
    assert!(text.starts_with(&prefix), "{text}");
    assert!(
        text.ends_with(
            " and uv is not on PATH to provide Python 3.99; install uv, pass --python with a Python 3.99, or change kernel: in inf.yml"
        ),
        "{text}"
    );
    assert!(
        !tmp.path().join("envs").exists(),
        "nothing is built for a kernel that cannot be honoured"
    );
}

#[tokio::test]
async fn a_malformed_kernel_is_refused_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    let app_dir = tmp.path().join("kernel");
    app(&app_dir, None);
    let spec = EnvSpec {
        kernel: Some("python-abc".into()),
        ..EnvSpec::new(&app_dir, tmp.path().join("envs"))
    };
    let err = prepare(&spec, |_| {}).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "inf.yml kernel: python-abc is not a Python version: write python-3.X, e.g. python-3.11"
    );
}
