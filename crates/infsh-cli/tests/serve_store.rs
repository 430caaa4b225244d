//! `infsh serve --store URL` / `INFSH_STORE`: a URL that does not lead to a
//! database ends the start before the port is taken, exit code 2, with one
//! line naming the URL (password redacted) and why. And a store given as
//! `sqlite:///PATH` is used instead of the data folder's.

mod common;

use std::net::TcpListener;

use common::server::*;
use common::*;
use infsh_testkit::PgTestDb;

/// `infsh serve` on a port that is taken: had it bound before opening the
/// store, it would fail with "cannot listen" (exit 1) instead.
fn serve_with(
    dir: &std::path::Path,
    flag: Option<&str>,
    env: Option<&str>,
) -> std::process::Output {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut cmd = assert_cmd::Command::cargo_bin("infsh").unwrap();
    cmd.current_dir(dir)
        .args([
            "serve",
            "--apps",
            "apps",
            "--data-dir",
            "data",
            "--port",
            &port,
        ])
        .env_remove("INFSH_STORE")
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(60));
    if let Some(flag) = flag {
        cmd.args(["--store", flag]);
    }
    if let Some(env) = env {
        cmd.env("INFSH_STORE", env);
    }
    let out = cmd.output().unwrap();
    drop(taken);
    out
}

fn refused(dir: &std::path::Path, url: &str) -> String {
    let by_flag = serve_with(dir, Some(url), None);
    assert_code(&by_flag, 2);
    let by_env = serve_with(dir, None, Some(url));
    assert_code(&by_env, 2);
    assert_eq!(stderr(&by_flag), stderr(&by_env));
    let message = stderr(&by_flag);
    assert_eq!(message.lines().count(), 1, "one line: {message}");
    message
}

#[test]
fn store_urls_that_lead_nowhere_exit_2_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("apps")).unwrap();
    let db = PgTestDb::create();

    assert_eq!(
        refused(dir.path(), "postgres://u:pw@h:notaport/x"),
        "error: --store postgres://u:***@h:notaport/x: invalid connection string: invalid value for option `port`\n"
    );
    assert_eq!(
        refused(dir.path(), "mysql://u:pw@h/d"),
        "error: --store mysql://u:***@h/d: unknown store scheme \"mysql\": use sqlite:///PATH or postgres://USER@HOST/DB\n"
    );
    assert_eq!(
        refused(dir.path(), "/var/lib/infsh.db"),
        "error: --store /var/lib/infsh.db: not a store URL: use sqlite:///PATH or postgres://USER@HOST/DB\n"
    );
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    assert_eq!(
        refused(
            dir.path(),
            &format!("postgres://postgres:s3cret@127.0.0.1:{port}/x")
        ),
        format!(
            "error: --store postgres://postgres:***@127.0.0.1:{port}/x: cannot connect: \
             error connecting to server: Connection refused (os error 111)\n"
        )
    );
    let missing = db.url_for("infsh_no_such_database");
    assert_eq!(
        refused(dir.path(), &missing),
        format!(
            "error: --store {missing}: cannot connect: database \"infsh_no_such_database\" does not exist\n"
        )
    );
    assert!(
        !dir.path().join("data/infsh.db").exists(),
        "no SQLite database was made instead"
    );
}

#[test]
fn a_sqlite_store_url_puts_the_tasks_there() {
    let sb = ServeSandbox::new(&["slow"]);
    let db = sb.path().join("elsewhere/tasks.db");
    let url = format!("sqlite://{}", db.display());
    let server = sb.start(&["--store", &url]);
    let id = sb.submit(
        &server,
        "tests/slow",
        &["--input", r#"{"seconds": 0.01, "label": "x"}"#],
    );
    server.wait_task(&id, std::time::Duration::from_secs(60), |t| {
        t["status"] == 10
    });
    assert!(db.exists(), "{}", db.display());
    assert!(!sb.data_dir().join("infsh.db").exists());
}
