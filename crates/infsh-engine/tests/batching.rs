//! Batching end to end, with real Python workers (fixture `batched`):
//! concurrent calls of a batched function run as one call of the app's
//! function, each task with its own output, error and logs; the errors of
//! one item, of the whole batch and of a list of the wrong length; cancel
//! of one task of a running batch; and the discovery error of an app whose
//! inf.yml and functions disagree.

mod common;

use common::*;
use infsh_engine::{Engine, EngineError};
use infsh_store::TaskStatus;
use serde_json::json;

const APP: &str = "tests/batched";

/// Submits one embed per text, all before the first batch goes (the
/// fixture waits 200 ms for company), and waits for their ends.
async fn embed_all(engine: &Engine, texts: &[&str]) -> Vec<infsh_engine::TaskView> {
    let mut ids = Vec::new();
    for text in texts {
        let task = submit(engine, run(APP, Some("embed"), json!({"text": text}))).await;
        ids.push(task.record.id);
    }
    let mut ended = Vec::new();
    for id in &ids {
        ended.push(finished(engine, id).await);
    }
    ended
}

/// A worker started and set up, so that batches only wait for each other.
async fn warm(engine: &Engine) {
    completed(engine, run(APP, Some("run"), json!({"text": "warm"}))).await;
}

#[tokio::test]
async fn concurrent_calls_run_as_one_batch_and_each_task_gets_its_own_output() {
    let fx = Fixture::new(&["batched"]);
    let engine = fx.engine().await;
    warm(&engine).await;
    // The schema stays that of one item.
    let detail = engine.app(&APP.parse().unwrap()).await.unwrap();
    assert_eq!(
        detail.functions["embed"]["input_schema"]["title"],
        "EmbedInput"
    );
    assert_eq!(
        detail.functions["embed"]["output_schema"]["title"],
        "EmbedOutput"
    );

    let texts = ["a", "bb", "ccc", "dddd"];
    let ended = embed_all(&engine, &texts).await;
    for (view, text) in ended.iter().zip(texts) {
        assert_eq!(
            view.record.status,
            TaskStatus::Completed,
            "{:?}",
            view.record.error
        );
        let output = view.record.output.as_ref().unwrap().to_value();
        assert_eq!(output["text"], text);
        assert_eq!(output["vector"][0], text.len() as f64);
        assert_eq!(output["batch_size"], 4, "one call for the four: {output}");
        // The batch's output is in each of its tasks' logs.
        assert!(
            log_text(view).contains("embedding a batch of 4"),
            "{}",
            log_text(view)
        );
    }
    // Alone, a call is a batch of one.
    let solo = completed(&engine, run(APP, Some("embed"), json!({"text": "solo"}))).await;
    assert_eq!(solo.record.output.unwrap().into_value()["batch_size"], 1);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn one_items_error_fails_that_task_and_the_batchs_error_fails_all_saying_so() {
    let fx = Fixture::new(&["batched"]);
    let engine = fx.engine().await;
    warm(&engine).await;

    let ended = embed_all(&engine, &["fine", "fail"]).await;
    assert_eq!(ended[0].record.status, TaskStatus::Completed);
    assert_eq!(
        (ended[1].record.status, ended[1].record.error.as_deref()),
        (TaskStatus::Failed, Some("ValueError: cannot embed 'fail'"))
    );

    let ended = embed_all(&engine, &["fine", "boom"]).await;
    for view in &ended {
        assert_eq!(
            (view.record.status, view.record.error.as_deref()),
            (
                TaskStatus::Failed,
                Some("RuntimeError: the model ran out of memory (raised by embed for the whole batch of 2 calls)")
            )
        );
        assert!(log_text(view).contains("Traceback"), "{}", log_text(view));
    }

    let ended = embed_all(&engine, &["fine", "short"]).await;
    for view in &ended {
        assert_eq!(
            view.record.error.as_deref(),
            Some("OutputError: embed returned 1 outputs for 2 inputs; a batched function returns one output per input, in order")
        );
    }
    // The worker served on through all of it.
    assert_eq!(engine.metrics().workers_started, 1);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn cancelling_one_task_of_a_running_batch_leaves_the_other_running() {
    let fx = Fixture::new(&["batched"]);
    let engine = fx.engine().await;
    warm(&engine).await;
    let a = submit(&engine, run(APP, Some("embed"), json!({"text": "slow"}))).await;
    let b = submit(&engine, run(APP, Some("embed"), json!({"text": "b"}))).await;
    let (a, b) = (a.record.id, b.record.id);
    reach(&engine, &a, TaskStatus::Running).await;
    reach(&engine, &b, TaskStatus::Running).await;

    engine.cancel(&a).await.unwrap();
    assert_eq!(
        finished(&engine, &a).await.record.status,
        TaskStatus::Cancelled
    );
    let b_now = engine.get(&b).await.unwrap().record.status;
    assert_eq!(b_now, TaskStatus::Running, "the batch runs on for b");

    // Cancelling the last one stops the run; the worker serves on.
    engine.cancel(&b).await.unwrap();
    assert_eq!(
        finished(&engine, &b).await.record.status,
        TaskStatus::Cancelled
    );
    completed(&engine, run(APP, Some("run"), json!({"text": "after"}))).await;
    assert_eq!(engine.metrics().workers_started, 1);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn declared_batching_for_a_function_that_takes_one_input_is_a_clear_load_error() {
    let fx = Fixture::new(&[]);
    fx.write_app(
        "wrong",
        "namespace: tests\nname: wrong\ninfsh:\n  functions:\n    run: {max_batch_size: 4}\n",
        "from inferencesh import BaseApp, BaseAppInput, BaseAppOutput\n\n\
         class In(BaseAppInput):\n    text: str\n\n\
         class Out(BaseAppOutput):\n    text: str\n\n\
         class App(BaseApp):\n    async def setup(self):\n        pass\n\n\
         \x20   async def run(self, input: In) -> Out:\n        return Out(text=input.text)\n",
    );
    let engine = fx.engine().await;
    // The run's discovery starts a worker, which the check refuses.
    let err = engine
        .submit(run("tests/wrong", None, json!({"text": "x"})))
        .await
        .unwrap_err();
    let EngineError::AppUnavailable { app, message, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(app, "tests/wrong");
    assert_eq!(
        message,
        "inf.yml declares batching for function \"run\" (max_batch_size 4), but App.run does not \
         take a list: write `def run(self, inputs: list[Input]) -> list[Output]`"
    );
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}
