//! End to end: without --python, infsh builds the app's virtual environment
//! from its requirements.txt (with uv when on PATH), then reuses it.

mod common;

use common::*;

#[test]
fn builds_the_environment_once_and_reuses_it() {
    let sb = Sandbox::new();
    let app = sb.path().join("app");
    let out = sb.infsh().args(["app", "init"]).arg(&app).output().unwrap();
    assert_code(&out, 0);

    // uv from the dev environment, as a user who installed it would have it on PATH.
    let dev_bin = python().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        dev_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let first = sb
        .infsh_without_python()
        .env("PATH", &path)
        .args(["app", "run"])
        .arg(&app)
        .args(["--input", r#"{"name": "env"}"#])
        .output()
        .unwrap();
    assert_code(&first, 0);
    assert!(
        stderr(&first).contains("environment") && stderr(&first).contains("built"),
        "{}",
        stderr(&first)
    );

    let second = sb
        .infsh_without_python()
        .env("PATH", &path)
        .args(["app", "run"])
        .arg(&app)
        .args(["--input", r#"{"name": "env"}"#])
        .output()
        .unwrap();
    assert_code(&second, 0);
    assert!(stderr(&second).contains("reused"), "{}", stderr(&second));

    // A changed requirements.txt is a new environment.
    std::fs::write(app.join("requirements.txt"), "inferencesh\n# changed\n").unwrap();
    let third = sb
        .infsh_without_python()
        .env("PATH", &path)
        .args(["app", "run"])
        .arg(&app)
        .args(["--input", r#"{"name": "env"}"#])
        .output()
        .unwrap();
    assert_code(&third, 0);
    assert!(stderr(&third).contains("built"), "{}", stderr(&third));
}

#[test]
fn a_requirement_that_cannot_install_fails_with_the_installer_output() {
    let sb = Sandbox::new();
    let app = sb.path().join("app");
    sb.infsh().args(["app", "init"]).arg(&app).output().unwrap();
    std::fs::write(
        app.join("requirements.txt"),
        "inferencesh\nthis-package-does-not-exist-infsh-test==0.0.1\n",
    )
    .unwrap();
    let dev_bin = python().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        dev_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = sb
        .infsh_without_python()
        .env("PATH", &path)
        .args(["app", "run"])
        .arg(&app)
        .args(["--input", "{}"])
        .output()
        .unwrap();
    assert_code(&out, 9);
    assert!(
        stderr(&out).contains("this-package-does-not-exist-infsh-test"),
        "{}",
        stderr(&out)
    );
}

/// `python3`'s `3.X` on this machine (the version uv finds without downloading).
fn machine_python_version() -> String {
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn run_with_kernel(sb: &Sandbox, kernel: &str) -> std::process::Output {
    let app = sb.path().join("app");
    let out = sb.infsh().args(["app", "init"]).arg(&app).output().unwrap();
    assert_code(&out, 0);
    let yml = std::fs::read_to_string(app.join("inf.yml")).unwrap();
    let yml: String = yml
        .lines()
        .filter(|l| !l.starts_with("kernel:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(app.join("inf.yml"), format!("{yml}kernel: {kernel}\n")).unwrap();
    let dev_bin = python().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        dev_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    sb.infsh_without_python()
        .env("PATH", &path)
        .args(["app", "run"])
        .arg(&app)
        .args(["--input", r#"{"name": "kernel"}"#])
        .output()
        .unwrap()
}

#[test]
fn a_kernel_of_the_machines_python_builds_with_that_interpreter() {
    let sb = Sandbox::new();
    let version = machine_python_version();
    let out = run_with_kernel(&sb, &format!("python-{version}"));
    assert_code(&out, 0);
    assert!(stderr(&out).contains("built"), "{}", stderr(&out));
}

#[test]
fn a_kernel_uv_cannot_provide_is_a_clear_environment_error() {
    let sb = Sandbox::new();
    let out = run_with_kernel(&sb, "python-3.99");
    assert_code(&out, 9);
    assert!(
        stderr(&out).contains(
            "could not build the app's environment: inf.yml asks for kernel python-3.99 \
             but uv has no Python 3.99 and could not install it (No download found for request: cpython-3.99"
        ),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out)
            .contains("); install it with `uv python install 3.99` or change kernel: in inf.yml"),
        "{}",
        stderr(&out)
    );
}
