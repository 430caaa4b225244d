//! The engine with real Python workers and a real SQLite store: runs that
//! complete, several functions on one worker, streaming, logs, refusals,
//! setup configs, preload and shutdown.

mod common;

use common::*;
use infsh_engine::{AppState, EngineError, RunRequest};
use infsh_store::{LogType, TaskStatus};
use serde_json::{json, Value};

#[tokio::test]
async fn submit_then_wait_completes() {
    let fx = Fixture::new(&["multi-fn"]);
    let engine = fx.engine().await;
    assert_eq!(engine.apps().len(), 1);
    assert_eq!(engine.apps()[0].id, "tests/multi-fn");
    assert_eq!(engine.apps()[0].state, AppState::Idle);
    assert_eq!(engine.apps()[0].functions, None);

    let task = submit(
        &engine,
        run("tests/multi-fn", None, json!({"text": "hello"})),
    )
    .await;
    assert_eq!(task.record.status, TaskStatus::Queued);
    assert_eq!(task.record.function, "run");
    let done = finished(&engine, &task.record.id).await;
    assert_eq!(
        done.record.status,
        TaskStatus::Completed,
        "{:?}",
        done.record.error
    );
    let output = done.record.output.clone().unwrap().into_value();
    assert_eq!(output["echo"], "hello");
    assert_eq!(output["length"], 5);
    assert_eq!(output["setup_count"], 1);
    assert_eq!(engine.get(&task.record.id).await.unwrap(), done);

    let page = engine
        .list(Some(&"tests/multi-fn".parse().unwrap()), None, 10, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].status, TaskStatus::Completed);
    let summary = &engine.apps()[0];
    assert_eq!(summary.state, AppState::Ready);
    assert_eq!(
        summary.functions.as_deref(),
        Some(
            &[
                "generate".to_string(),
                "run".into(),
                "summarize".into(),
                "upscale".into()
            ][..]
        )
    );
    let detail = engine
        .app(&"tests/multi-fn".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(detail.functions.as_object().unwrap().len(), 4);
    assert!(detail.functions["generate"]["input_schema"].is_object());
    let metrics = engine.metrics();
    assert_eq!((metrics.tasks_submitted, metrics.tasks_completed), (1, 1));
    assert_eq!(metrics.workers_started, 1);
    assert_eq!(metrics.task_seconds.len(), 1);

    shutdown(&engine).await;
    assert!(matches!(
        engine
            .submit(run("tests/multi-fn", None, json!({"text": "x"})))
            .await,
        Err(EngineError::ShuttingDown)
    ));
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn four_functions_share_one_worker_and_one_setup() {
    let fx = Fixture::new(&["multi-fn"]);
    let setup_log = fx.path().join("setup.log");
    fx.add_env("multi-fn", &[("INFSH_TEST_SETUP_LOG", &setup_log)]);
    let engine = fx.engine().await;
    let requests = [
        run("tests/multi-fn", None, json!({"text": "a b c d"})),
        run(
            "tests/multi-fn:generate",
            None,
            json!({"prompt": "p", "n": 2}),
        ),
        run(
            "tests/multi-fn@1.0.0",
            Some("upscale"),
            json!({"value": 1.5}),
        ),
        run(
            "tests/multi-fn",
            Some("summarize"),
            json!({"text": "one two three four"}),
        ),
    ];
    let mut ids = Vec::new();
    for req in requests {
        ids.push(submit(&engine, req).await.record.id);
    }
    let mut outputs = Vec::new();
    for id in &ids {
        let done = finished(&engine, id).await;
        assert_eq!(
            done.record.status,
            TaskStatus::Completed,
            "{:?}",
            done.record.error
        );
        outputs.push(done.record.output.unwrap().into_value());
    }
    assert_eq!(outputs[1]["items"], json!(["p-0", "p-1"]));
    assert_eq!(outputs[2]["value"], 3.0);
    assert_eq!(outputs[3]["summary"], "one two three");
    assert!(outputs.iter().all(|o| o["setup_count"] == 1), "{outputs:?}");
    let log = std::fs::read_to_string(&setup_log).unwrap();
    let lines: Vec<_> = log.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("setup ")).count(),
        1,
        "{log}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("call "))
            .copied()
            .collect::<Vec<_>>(),
        vec![
            "call run",
            "call generate",
            "call upscale",
            "call summarize"
        ]
    );
    assert_eq!(engine.metrics().workers_started, 1);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn streaming_snapshots_reach_subscribers() {
    let fx = Fixture::new(&["functions-variety"]);
    let engine = fx.engine().await;
    // One worker, one call at a time: this first task keeps the worker busy
    // (three snapshots 0.4 s apart), so the task under test is still QUEUED
    // when it is subscribed to. Without it, a warm (forked) worker could
    // take the task before the subscription and the first snapshot would
    // already say SETTING_UP.
    let stream_run = || {
        run(
            "tests/functions-variety",
            Some("stream_fn"),
            json!({"delay": 0.4}),
        )
    };
    let busy = submit(&engine, stream_run()).await;
    let task = submit(&engine, stream_run()).await;
    let mut rx = engine.subscribe(&task.record.id).await.unwrap();
    let mut outputs: Vec<Value> = Vec::new();
    let mut statuses = Vec::new();
    let last = within(LIMIT, async {
        let mut last = None;
        while let Some(view) = rx.recv().await {
            statuses.push(view.record.status);
            if let Some(out) = view
                .record
                .output
                .as_ref()
                .map(|o| o.to_value().into_owned())
            {
                if outputs.last() != Some(&out) {
                    outputs.push(out);
                }
            }
            last = Some(view);
        }
        last.unwrap()
    })
    .await;
    assert_eq!(
        statuses[0],
        TaskStatus::Queued,
        "the current snapshot comes first"
    );
    assert!(statuses.contains(&TaskStatus::Running), "{statuses:?}");
    assert_eq!(last.record.status, TaskStatus::Completed);
    assert_eq!(
        last.record.output.as_ref().unwrap().to_value()["text"],
        "abc"
    );
    let texts: Vec<_> = outputs
        .iter()
        .map(|o| o["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, vec!["a", "ab", "abc"], "every snapshot, in order");
    // A subscription to an ended task yields its final snapshot and closes.
    let mut again = engine.subscribe(&task.record.id).await.unwrap();
    assert_eq!(
        again.recv().await.unwrap().record.status,
        TaskStatus::Completed
    );
    assert!(again.recv().await.is_none());
    assert_eq!(
        finished(&engine, &busy.record.id).await.record.status,
        TaskStatus::Completed
    );
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn logs_are_stored_with_the_task() {
    let fx = Fixture::new(&["logs-app"]);
    let engine = fx.engine().await;
    let task = submit(&engine, run("tests/logs-app", None, json!({}))).await;
    let done = finished(&engine, &task.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Completed);
    shutdown(&engine).await;

    // Read back by a new engine: from the database alone.
    let engine = fx.engine().await;
    let stored = engine.get(&task.record.id).await.unwrap();
    let task_lines: Vec<&str> = stored
        .logs
        .iter()
        .filter(|l| l.log_type == LogType::Task)
        .map(|l| l.content.as_str())
        .collect();
    for want in [
        "stdout line 1",
        "stdout line 3",
        "warning from logging",
        "native stderr line",
    ] {
        assert!(
            task_lines.iter().any(|l| l.contains(want)),
            "missing {want:?}"
        );
    }
    let numbered: Vec<_> = task_lines
        .iter()
        .filter(|l| l.starts_with("numbered line "))
        .collect();
    assert_eq!(numbered.len(), 500);
    assert_eq!(*numbered[0], "numbered line 1");
    assert_eq!(*numbered[499], "numbered line 500");
    assert!(stored
        .logs
        .iter()
        .any(|l| l.log_type == LogType::Run && l.content.starts_with("setup done")));
    assert_eq!(
        stored.logs, done.logs,
        "the store holds what subscribers saw"
    );
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn bad_requests_are_refused_and_nothing_is_stored() {
    let fx = Fixture::new(&[
        "validation-app",
        "hangs",
        "files-app",
        "import-error",
        "setup-config",
    ]);
    let engine = fx.engine().await;
    let err = engine
        .submit(run("tests/nope", None, json!({})))
        .await
        .unwrap_err();
    match err {
        EngineError::UnknownApp { available, .. } => {
            assert!(
                available.contains(&"tests/validation-app".to_string()),
                "{available:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    match engine
        .submit(run("tests/validation-app", Some("nope"), json!({})))
        .await
    {
        Err(EngineError::UnknownFunction {
            function,
            available,
            ..
        }) => {
            assert_eq!(function, "nope");
            assert_eq!(available, vec!["run"]);
        }
        other => panic!("{other:?}"),
    }
    match engine.submit(run("tests/hangs", None, json!({}))).await {
        Err(EngineError::NoDefaultFunction { available, .. }) => {
            assert_eq!(available, vec!["async_hang", "ok", "sync_hang"])
        }
        other => panic!("{other:?}"),
    }
    let bad = json!({"steps": 100, "mode": "medium", "options": {"seed": "x"}});
    match engine.submit(run("tests/validation-app", None, bad)).await {
        Err(EngineError::InvalidInput { errors, .. }) => {
            let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
            for want in ["prompt", "steps", "mode", "options.seed"] {
                assert!(paths.contains(&want), "{want} not in {paths:?}");
            }
        }
        other => panic!("{other:?}"),
    }
    let bad_setup = RunRequest {
        setup: Some(json!({"scale": "big"})),
        ..run("tests/setup-config", None, json!({}))
    };
    match engine.submit(bad_setup).await {
        Err(EngineError::InvalidInput { what, errors }) => {
            assert_eq!(what, "setup config");
            assert_eq!(errors[0].path, "scale");
        }
        other => panic!("{other:?}"),
    }
    for file in [
        json!("/etc/passwd"),
        json!({"path": "/etc/passwd"}),
        json!("file:///etc/passwd"),
    ] {
        match engine
            .submit(run(
                "tests/files-app",
                Some("describe"),
                json!({"file": file}),
            ))
            .await
        {
            Err(EngineError::InvalidFile { field, .. }) => assert_eq!(field, "file"),
            other => panic!("{other:?}"),
        }
    }
    match engine
        .submit(run("tests/import-error", None, json!({})))
        .await
    {
        Err(EngineError::AppUnavailable {
            message, traceback, ..
        }) => {
            assert!(message.contains("boom at import"), "{message}");
            assert!(traceback.unwrap_or_default().contains("_explode"));
        }
        other => panic!("{other:?}"),
    }
    let ready = engine.readiness();
    let broken = ready.iter().find(|r| r.id == "tests/import-error").unwrap();
    assert_eq!(broken.state, AppState::Unhealthy);
    assert!(broken
        .last_error
        .as_deref()
        .unwrap()
        .contains("boom at import"));
    match engine.app(&"tests/import-error".parse().unwrap()).await {
        Err(EngineError::AppUnavailable { .. }) => {}
        other => panic!("{other:?}"),
    }

    let page = engine.list(None, None, 100, None).await.unwrap();
    assert!(
        page.items.is_empty(),
        "refused runs are not stored: {:?}",
        page.items
    );
    assert_eq!(engine.metrics().tasks_submitted, 0);
    assert!(matches!(
        engine.get("nope").await,
        Err(EngineError::UnknownTask(_))
    ));
    assert!(matches!(
        engine.cancel("nope").await,
        Err(EngineError::UnknownTask(_))
    ));
    assert!(matches!(
        engine.list(None, None, 10, Some("garbage")).await,
        Err(EngineError::InvalidInput { .. })
    ));
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn a_new_setup_config_reruns_setup() {
    let fx = Fixture::new(&["setup-config"]);
    let engine = fx.engine().await;
    let with = |setup: Option<Value>| RunRequest {
        setup,
        ..run("tests/setup-config", None, json!({}))
    };
    let mut views = Vec::new();
    for setup in [
        Some(json!({"model": "big", "scale": 2})),
        Some(json!({"model": "big", "scale": 2})),
        None,
    ] {
        let task = submit(&engine, with(setup)).await;
        views.push(finished(&engine, &task.record.id).await);
    }
    let config = |i: usize| views[i].record.output.as_ref().unwrap().to_value()["config"].clone();
    assert_eq!(config(0), json!({"model": "big", "scale": 2}));
    assert_eq!(config(1), json!({"model": "big", "scale": 2}));
    assert_eq!(config(2), json!({"model": "small", "scale": 1}));
    let ran_setup = |i: usize| log_text(&views[i]).contains("setup done");
    assert!(ran_setup(0));
    assert!(!ran_setup(1), "same config: no second setup");
    assert!(ran_setup(2), "new config: setup again");
    assert_eq!(views[2].record.setup, json!({}));
    assert_eq!(
        engine.metrics().workers_started,
        1,
        "setup re-runs on the same worker"
    );
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn preload_starts_and_sets_up_workers_at_boot() {
    let fx = Fixture::new(&["multi-fn"]);
    let setup_log = fx.path().join("setup.log");
    fx.add_env("multi-fn", &[("INFSH_TEST_SETUP_LOG", &setup_log)]);
    let mut config = fx.config();
    config.preload = true;
    config.replicas = 2;
    let engine = infsh_engine::Engine::start(config).await.unwrap();
    until(LIMIT, "two replicas", || {
        (engine.readiness()[0].replicas >= 2).then_some(())
    })
    .await;
    assert_eq!(engine.readiness()[0].state, AppState::Ready);
    assert!(engine.apps()[0].functions.is_some());
    let task = submit(&engine, run("tests/multi-fn", None, json!({"text": "x"}))).await;
    let done = finished(&engine, &task.record.id).await;
    assert_eq!(
        done.record.output.as_ref().unwrap().to_value()["setup_count"],
        1
    );
    assert!(
        !log_text(&done).contains("setup done"),
        "no setup at the first call"
    );
    let log = std::fs::read_to_string(&setup_log).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.starts_with("setup ")).count(),
        2,
        "{log}"
    );
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_a_worker_and_more_replicas_start_on_demand() {
    let fx = Fixture::new(&["hangs"]);
    let mut config = fx.config();
    config.concurrency_per_replica = 2;
    config.replicas = 2;
    let engine = infsh_engine::Engine::start(config).await.unwrap();
    let mut hangs = Vec::new();
    for _ in 0..2 {
        let task = submit(&engine, run("tests/hangs", Some("async_hang"), json!({}))).await;
        reach(&engine, &task.record.id, TaskStatus::Running).await;
        hangs.push(task.record.id);
    }
    assert_eq!(
        engine.metrics().workers_started,
        1,
        "two calls at once on one worker"
    );
    assert_eq!(engine.readiness()[0].busy, 2);

    // The first worker is full: a third task gets the second replica.
    completed(&engine, run("tests/hangs", Some("ok"), json!({}))).await;
    assert_eq!(engine.metrics().workers_started, 2);
    assert_eq!(engine.readiness()[0].replicas, 2);

    for id in &hangs {
        engine.cancel(id).await.unwrap();
        assert_eq!(
            finished(&engine, id).await.record.status,
            TaskStatus::Cancelled
        );
    }
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}
