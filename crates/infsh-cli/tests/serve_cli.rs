//! The new commands' command line, without a working server: help texts,
//! usage errors, an unreachable server, refusing an unsafe bind.

mod common;

use std::net::TcpListener;

use common::*;

fn infsh() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("infsh").unwrap();
    cmd.env_remove("INFSH_API_URL")
        .env_remove("INFSH_API_KEY")
        .env_remove("INFSH_API_KEYS")
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn every_new_command_has_help() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["serve", "--help"],
            &[
                "--apps",
                "--port",
                "--data-dir",
                "--replicas",
                "--engine-config",
                "INFSH_ENGINE_CONFIG",
                "--queue-capacity",
                "--api-key",
                "--api-keys-file",
                "--insecure",
                "--public-url",
                "--secret",
                "--secrets-file",
                "INFSH_SECRET_",
                "infsh serving N apps on",
                "INFSH_LOG",
                "--log-format",
            ],
        ),
        (&["task", "--help"], &["get", "cancel", "list"]),
        (
            &["task", "get", "--help"],
            &["--wait", "--api-url", "INFSH_API_URL"],
        ),
        (&["task", "cancel", "--help"], &["--wait", "--api-key"]),
        (
            &["task", "list", "--help"],
            &["--status", "--limit", "--cursor", "--all"],
        ),
        (&["engine", "--help"], &["status"]),
        (
            &["engine", "status", "--help"],
            &["--api-url", "INFSH_API_URL", "--api-key", "--json"],
        ),
        (
            &["app", "run", "--help"],
            &["--api-url", "INFSH_API_URL", "--api-key", "--detach"],
        ),
    ];
    for (args, expected) in cases {
        let out = infsh().args(*args).output().unwrap();
        assert_code(&out, 0);
        let text = stdout(&out);
        for word in *expected {
            assert!(
                text.contains(word),
                "`infsh {}` lacks {word}:\n{text}",
                args.join(" ")
            );
        }
    }
    let out = infsh().arg("--help").output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("serve") && text.contains("task"), "{text}");
    assert!(text.contains("10 server unreachable"), "{text}");
}

#[test]
fn task_commands_need_a_server() {
    let out = infsh().args(["task", "get", "abc"]).output().unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--api-url"), "{}", stderr(&out));
}

#[test]
fn engine_status_needs_a_server() {
    let out = infsh().args(["engine", "status"]).output().unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--api-url"), "{}", stderr(&out));
}

#[test]
fn detach_needs_a_server() {
    let out = infsh()
        .args(["app", "run"])
        .arg(fixture("multi-fn"))
        .arg("--detach")
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("--detach needs a server"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_malformed_api_url_is_a_usage_error() {
    let out = infsh()
        .args([
            "app",
            "run",
            "tests/multi-fn",
            "--api-url",
            "localhost:8080",
        ])
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--api-url"), "{}", stderr(&out));
}

#[test]
fn an_unreachable_server_exits_10() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let out = infsh()
        .args(["--json", "app", "run", "tests/multi-fn", "--api-url", &url])
        .output()
        .unwrap();
    assert_code(&out, 10);
    let doc = json_stdout(&out);
    assert_eq!(doc["error"]["code"], "server");
    assert_eq!(doc["error"]["exit_code"], 10);
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cannot reach the server at {url}")),
        "{doc}"
    );
    let out = infsh()
        .args(["task", "list", "--api-url", &url])
        .output()
        .unwrap();
    assert_code(&out, 10);
}

/// `infsh serve FLAGS --apps DIR/apps --data-dir DIR/data` in a fresh
/// folder, `apps/` made only when `with_apps`: its output.
fn serve_in_a_fresh_folder(flags: &[&str], with_apps: bool) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps");
    if with_apps {
        std::fs::create_dir_all(&apps).unwrap();
    }
    infsh()
        .arg("serve")
        .args(flags)
        .arg("--apps")
        .arg(apps)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap()
}

#[test]
fn serve_refuses_a_missing_apps_folder() {
    let out = serve_in_a_fresh_folder(&["--port", "0"], false);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("no such folder"), "{}", stderr(&out));
}

#[test]
fn serve_refuses_a_public_bind_without_keys() {
    let out = serve_in_a_fresh_folder(&["--host", "0.0.0.0", "--port", "0"], true);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("refusing to serve without API keys"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_rejects_a_malformed_secret() {
    let out = serve_in_a_fresh_folder(&["--port", "0", "--secret", "NOVALUE"], true);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("expected KEY=VALUE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_refuses_a_bad_engine_config_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("apps")).unwrap();
    std::fs::write(
        dir.path().join("engine.yml"),
        "name: box\nworkers:\n  gpu:\n    - gpus: [0]\n    - gpu: [1]\n",
    )
    .unwrap();
    // The port is taken: had serve bound before reading the file, it would
    // fail with "cannot listen" (exit 1) instead.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let expected = "engine.yml:5:7: workers.gpu[1]: unknown field `gpu`, expected `gpus`";
    let serve = |flag: Option<&str>, env: Option<&str>| {
        let mut cmd = infsh();
        cmd.current_dir(dir.path())
            .args([
                "serve",
                "--apps",
                "apps",
                "--data-dir",
                "data",
                "--port",
                &port,
            ])
            .env_remove("INFSH_ENGINE_CONFIG");
        if let Some(flag) = flag {
            cmd.args(["--engine-config", flag]);
        }
        if let Some(env) = env {
            cmd.env("INFSH_ENGINE_CONFIG", env);
        }
        cmd.output().unwrap()
    };
    for out in [
        serve(Some("engine.yml"), None),
        serve(None, Some("engine.yml")),
    ] {
        assert_code(&out, 2);
        assert_eq!(stderr(&out), format!("error: {expected}\n"));
    }
    // A slot over a GPU the declared inventory lacks: refused before binding too.
    std::fs::write(
        dir.path().join("engine.yml"),
        "workers:\n  gpu:\n    - gpus: [7]\ninventory:\n  gpus:\n    - {index: 0}\n",
    )
    .unwrap();
    let out = serve(Some("engine.yml"), None);
    assert_code(&out, 2);
    assert_eq!(
        stderr(&out),
        "error: engine.yml: workers.gpu[0].gpus: GPU 7 is not on this machine (it has GPUs 0)\n"
    );
    let out = serve(Some("missing.yml"), None);
    assert_code(&out, 2);
    assert!(
        stderr(&out).starts_with("error: cannot read engine config missing.yml: "),
        "{}",
        stderr(&out)
    );
    drop(taken);
}

#[test]
fn completion_scripts_are_generated_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _infsh"),
        ("zsh", "#compdef infsh"),
        ("fish", "complete -c infsh"),
    ] {
        let out = infsh().args(["completion", shell]).output().unwrap();
        assert_code(&out, 0);
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("serve"),
            "{shell}: subcommands are completed"
        );
    }
    let out = infsh().args(["completion", "tcsh"]).output().unwrap();
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("invalid value 'tcsh'"),
        "{}",
        stderr(&out)
    );
}

/// `--lease-seconds` also times API nodes' heartbeats (docs/deploy.md, "API
/// node lost"), so it is checked without `--engine-key` too, before binding.
#[test]
fn serve_refuses_a_lease_under_a_tenth_of_a_second_without_engine_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("apps")).unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = infsh()
        .current_dir(dir.path())
        .args([
            "serve",
            "--apps",
            "apps",
            "--data-dir",
            "data",
            "--port",
            &port,
        ])
        .args(["--lease-seconds", "0.01"])
        .env_remove("INFSH_ENGINE_KEYS")
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert_eq!(
        stderr(&out),
        "error: --lease-seconds 0.01: expected at least 0.1\n"
    );
}
