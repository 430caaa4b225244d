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
