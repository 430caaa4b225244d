//! What surrounds a run: secrets reaching the worker (and missing ones
//! refused), output files moved into the file store, uploads, webhooks.

mod common;

use std::time::Duration;

use common::*;
use infsh_engine::{Engine, EngineError, RunRequest};
use infsh_store::{DeliveryState, TaskStatus, WebhookDelivery};
use serde_json::{json, Value};

const ENV_ECHO_YML: &str = "namespace: tests\nname: env-echo\nsecrets:\n  - key: TEST_SECRET\n    description: a secret for tests\n  - key: OPTIONAL_SECRET\n    optional: true\nintegrations:\n  - key: TEST_INTEGRATION\nenv:\n  FROM_YML: yml-value\n";

const ENV_ECHO_PY: &str = r#"
import os
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class RunInput(BaseAppInput):
    key: str


class RunOutput(BaseAppOutput):
    value: str
    length: int


class App(BaseApp):
    async def run(self, input_data: RunInput) -> RunOutput:
        value = os.environ.get(input_data.key)
        if value is None:
            return RunOutput(value="<unset>", length=-1)
        return RunOutput(value=value, length=len(value))
"#;

#[tokio::test]
async fn missing_secrets_are_refused_before_a_worker_starts() {
    let fx = Fixture::new(&[]);
    fx.write_app("env-echo", ENV_ECHO_YML, ENV_ECHO_PY);
    let engine = fx.engine().await;
    match engine
        .submit(run("tests/env-echo", None, json!({"key": "X"})))
        .await
    {
        Err(EngineError::MissingSecrets { missing }) => {
            let keys: Vec<_> = missing
                .iter()
                .map(|m| (m.kind.as_str(), m.key.as_str()))
                .collect();
            assert_eq!(
                keys,
                vec![
                    ("secret", "TEST_SECRET"),
                    ("integration", "TEST_INTEGRATION")
                ]
            );
            assert!(missing[0].message.contains("a secret for tests"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(engine.metrics().workers_started, 0);
    shutdown(&engine).await;

    let mut config = fx.config();
    config.secrets.insert("TEST_SECRET".into(), "s3cret".into());
    config
        .secrets
        .insert("TEST_INTEGRATION".into(), "integrated".into());
    config.secrets.insert("UNDECLARED".into(), "leak".into());
    let engine = infsh_engine::Engine::start(config).await.unwrap();
    // Secret values reach the worker, and never come back out of it: an
    // output holding one is stored redacted.
    for (key, want, length) in [
        ("TEST_SECRET", "[redacted]", 6),
        ("TEST_INTEGRATION", "[redacted]", 10),
        ("FROM_YML", "yml-value", 9),
        ("UNDECLARED", "<unset>", -1),
    ] {
        let task = submit(&engine, run("tests/env-echo", None, json!({"key": key}))).await;
        let done = finished(&engine, &task.record.id).await;
        let output = done.record.output.unwrap().into_value();
        assert_eq!(
            (&output["value"], &output["length"]),
            (&json!(want), &json!(length)),
            "{key}"
        );
    }
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn output_files_are_stored_and_uploads_work() {
    let fx = Fixture::new(&["files-app"]);
    let engine = fx.engine().await;
    let task = submit(
        &engine,
        run("tests/files-app", Some("make_files"), json!({"label": "L"})),
    )
    .await;
    let done = finished(&engine, &task.record.id).await;
    assert_eq!(
        done.record.status,
        TaskStatus::Completed,
        "{:?}",
        done.record.error
    );
    let output = done.record.output.unwrap().into_value();
    let text = output.to_string();
    assert!(!text.contains("\"path\""), "no local paths in {text}");
    let check = |file: &Value, name: &str, bytes: &[u8]| {
        let uri = file["uri"].as_str().unwrap();
        let id = uri.strip_prefix("http://127.0.0.1:9/files/").expect(uri);
        assert_eq!(engine.file_uri(id), uri);
        assert_eq!(file["filename"], name);
        assert_eq!(file["content_type"], "text/plain");
        assert_eq!(file["size"], bytes.len());
        assert_eq!(file.as_object().unwrap().len(), 4, "{file}");
        id.to_string()
    };
    let ids = [
        check(&output["files"][0], "one.txt", b"one\n"),
        check(&output["files"][1], "two.txt", b"two\n"),
        check(&output["nested"]["file"], "nested.txt", b"nested\n"),
    ];
    assert_eq!(output["nested"]["label"], "L");
    for (id, want) in ids.iter().zip([&b"one\n"[..], b"two\n", b"nested\n"]) {
        let (record, bytes) = engine.file(id).await.unwrap();
        assert!(record.uploaded);
        assert_eq!(std::fs::read(bytes.local_path().unwrap()).unwrap(), want);
    }

    // The upload flow of POST /files + PUT.
    let created = engine
        .create_file("in.bin", Some("application/x-test"), Some(3))
        .await
        .unwrap();
    assert!(!created.uploaded);
    let written = engine
        .write_file(&created.id, bytes::Bytes::from_static(b"xyz"))
        .await
        .unwrap();
    assert!(written.uploaded);
    assert_eq!(written.size, Some(3));
    let (_, bytes) = engine.file(&created.id).await.unwrap();
    assert_eq!(bytes.to_vec().await.unwrap(), b"xyz");
    for bad in ["../infsh.db", "0123", ""] {
        assert!(matches!(
            engine.file(bad).await,
            Err(EngineError::UnknownFile(_))
        ));
        assert!(matches!(
            engine
                .write_file(bad, bytes::Bytes::from_static(b"x"))
                .await,
            Err(EngineError::UnknownFile(_))
        ));
    }
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

/// An output file the app wrote in its call's scratch folder is renamed into
/// the file store (the stored file is the inode the app wrote); the same
/// file named again, and a file outside the scratch folder, are copied, and
/// the latter stays where the app put it.
#[tokio::test]
async fn scratch_output_files_are_moved_and_others_copied() {
    use std::os::unix::fs::MetadataExt;
    let fx = Fixture::new(&["files-app"]);
    let engine = fx.engine().await;
    let outside = tempfile::tempdir().unwrap();
    let task = submit(
        &engine,
        run(
            "tests/files-app",
            Some("place"),
            json!({"outside": outside.path()}),
        ),
    )
    .await;
    let done = finished(&engine, &task.record.id).await;
    assert_eq!(
        done.record.status,
        TaskStatus::Completed,
        "{:?}",
        done.record.error
    );
    let output = done.record.output.unwrap().into_value();
    let stored = |pointer: &str| {
        let uri = output[pointer]["uri"].as_str().expect(pointer);
        uri.rsplit('/').next().unwrap().to_string()
    };
    let inode_of = |id: String| {
        let engine = &engine;
        async move {
            let (record, bytes) = engine.file(&id).await.unwrap();
            let path = bytes.local_path().unwrap();
            (
                record,
                std::fs::read(&path).unwrap(),
                std::fs::metadata(&path).unwrap().ino(),
            )
        }
    };
    let moved_bytes = b"moved\n".repeat(1000);
    let (moved, bytes, inode) = inode_of(stored("moved")).await;
    assert_eq!(bytes, moved_bytes);
    assert_eq!(moved.size, Some(6000));
    assert_eq!(
        inode,
        output["moved_inode"].as_u64().unwrap(),
        "renamed, not copied"
    );

    let (again, bytes, inode) = inode_of(stored("again")).await;
    assert_ne!(again.id, moved.id);
    assert_eq!(bytes, moved_bytes);
    assert_ne!(inode, output["moved_inode"].as_u64().unwrap());

    let (_, bytes, inode) = inode_of(stored("kept")).await;
    assert_eq!(bytes, b"kept\n");
    assert_ne!(inode, output["kept_inode"].as_u64().unwrap(), "copied");
    assert_eq!(
        std::fs::read(outside.path().join("kept.bin")).unwrap(),
        b"kept\n",
        "a file outside the scratch folder stays"
    );
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

/// A loopback HTTP server answering `statuses` in turn; returns the bodies.
async fn webhook_listener(
    statuses: Vec<u16>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for status in statuses {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let body = loop {
                let mut chunk = [0u8; 4096];
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed early");
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        assert!(head.starts_with("POST /hook "), "{head}");
                        break body[..len].to_string();
                    }
                }
            };
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            sock.write_all(reply.as_bytes()).await.unwrap();
            let _ = tx.send(serde_json::from_str(&body).unwrap());
        }
    });
    (url, rx)
}

#[tokio::test]
async fn webhook_is_retried_until_delivered() {
    let fx = Fixture::new(&["multi-fn"]);
    let engine = fx.engine().await;
    let (url, mut bodies) = webhook_listener(vec![500, 200]).await;
    let req = RunRequest {
        webhook: Some(url),
        ..run("tests/multi-fn", None, json!({"text": "hook"}))
    };
    let task = submit(&engine, req).await;
    finished(&engine, &task.record.id).await;
    let first = within(Duration::from_secs(20), bodies.recv())
        .await
        .unwrap();
    let second = within(Duration::from_secs(20), bodies.recv())
        .await
        .unwrap();
    assert_eq!(first, second, "the same body again after a failure");
    assert_eq!(second["id"], task.record.id.as_str());
    assert_eq!(second["status"], 10);
    assert_eq!(second["app"], "tests/multi-fn");
    assert_eq!(second["function"], "run");
    assert_eq!(second["output"]["echo"], "hook");
    assert_eq!(second["error"], Value::Null);
    let created = second["created_at"].as_str().unwrap();
    assert!(
        created.len() == 24 && created.ends_with('Z') && created.contains('T'),
        "{created}"
    );
    // The full record: input, metadata and session too.
    assert_eq!(second["input"], json!({"text": "hook"}));
    assert_eq!(second["metadata"], json!({}));
    assert_eq!(second["session_id"], Value::Null);
    // The outbox row says how it went.
    let delivery = delivery_reaching(&engine, &task.record.id, DeliveryState::Delivered).await;
    assert_eq!(delivery.attempts, 2);
    assert_eq!(delivery.last_error, None, "cleared by the success");
    assert_eq!(delivery.message_id, format!("msg_{}", task.record.id));
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

/// Polls the task's webhook delivery until it is in `state`.
async fn delivery_reaching(engine: &Engine, id: &str, state: DeliveryState) -> WebhookDelivery {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let delivery = engine.webhook_delivery(id).await.unwrap();
        if let Some(d) = delivery.as_ref().filter(|d| d.state == state) {
            return d.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delivery never reached {state:?}: {delivery:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_webhook_that_always_fails_gives_up_after_the_last_attempt() {
    let fx = Fixture::new(&["multi-fn"]);
    let engine = fx.engine().await;
    let attempts = infsh_engine::WEBHOOK_ATTEMPTS as usize;
    let (url, mut bodies) = webhook_listener(vec![503; attempts]).await;
    let req = RunRequest {
        webhook: Some(url),
        ..run("tests/multi-fn", None, json!({"text": "hook"}))
    };
    let task = submit(&engine, req).await;
    finished(&engine, &task.record.id).await;
    for _ in 0..attempts {
        within(Duration::from_secs(30), bodies.recv())
            .await
            .unwrap();
    }
    let delivery = delivery_reaching(&engine, &task.record.id, DeliveryState::Failed).await;
    assert_eq!(delivery.attempts, infsh_engine::WEBHOOK_ATTEMPTS);
    assert_eq!(
        delivery.last_error.as_deref(),
        Some("HTTP 503 Service Unavailable")
    );
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}
