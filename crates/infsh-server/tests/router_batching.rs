//! Router tier, batching (docs/writing-apps.md, "Batching"): concurrent
//! runs of a batched function, through the real router over a real engine
//! and the fixture app `batched` in Python, each get their own task and
//! output, with the API and schema per item; an app whose inf.yml and code
//! disagree answers every run with a 503 naming the problem.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn concurrent_runs_are_one_batch_and_the_api_stays_per_item() {
    bounded(async {
        let s = start(Setup::new(&["batched"])).await;
        let (st, _, b) = s
            .post(
                "/v1/run",
                json!({"app": "tests/batched", "function": "run", "input": {"text": "warm"}, "wait": true}),
            )
            .await;
        assert_eq!((st.as_u16(), &b["data"]["status"]), (200, &json!(10)), "{b}");

        // The schema is one item's.
        let (st, _, app) = s.get("/apps/tests/batched").await;
        assert_eq!(st, 200, "{app}");
        let embed = &app["data"]["functions"]["embed"];
        assert_eq!(embed["input_schema"]["title"], "EmbedInput", "{app}");
        assert_eq!(embed["output_schema"]["title"], "EmbedOutput", "{app}");
        // So is the validation at the edge: a list is not an input.
        let (st, h, b) = s
            .post(
                "/v1/run",
                json!({"app": "tests/batched", "function": "embed", "input": [{"text": "a"}]}),
            )
            .await;
        assert_problem(st, &h, &b, 422, "validation_error");
        assert_eq!(b["errors"][0]["message"], "expected object, got array", "{b}");

        let texts = ["one", "two", "three"];
        let run = |text: &str| {
            json!({"app": "tests/batched", "function": "embed", "input": {"text": text}, "wait": true})
        };
        let answers = {
            let (a, b, c) = (
                s.post("/v1/run", run(texts[0])),
                s.post("/v1/run", run(texts[1])),
                s.post("/v1/run", run(texts[2])),
            );
            let (a, b, c) = tokio::join!(a, b, c);
            [a, b, c]
        };
        let mut ids = std::collections::BTreeSet::new();
        for ((st, _, body), text) in answers.into_iter().zip(texts) {
            assert_eq!(st, 200, "{body}");
            let task = &body["data"];
            assert_eq!(task["status"], 10, "{task}");
            assert_eq!(task["function"], "embed");
            assert_eq!(task["input"], json!({"text": text}));
            assert_eq!(task["output"]["text"], text);
            assert_eq!(task["output"]["batch_size"], 3, "{task}");
            ids.insert(task["id"].as_str().unwrap().to_string());
        }
        assert_eq!(ids.len(), 3, "three tasks");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_undeclared_batched_function_refuses_runs_with_the_reason() {
    bounded(async {
        let mut setup = Setup::new(&["batched"]);
        setup.tweak = Box::new(|config, _| {
            // The same code without the inf.yml declaration.
            let yml = config.apps_dir.join("batched").join("inf.yml");
            let text = std::fs::read_to_string(&yml).unwrap();
            let cut = text.find("infsh:").unwrap();
            std::fs::write(&yml, &text[..cut]).unwrap();
        });
        let s = start(setup).await;
        let (st, h, b) = s
            .post(
                "/v1/run",
                json!({"app": "tests/batched", "function": "run", "input": {"text": "x"}}),
            )
            .await;
        assert_problem(st, &h, &b, 503, "app_unavailable");
        let message = b["message"].as_str().unwrap();
        assert!(
            message.starts_with(
                "App.embed takes a list of inputs, but inf.yml declares no batching for it: add \
                 `infsh: {functions: {embed: {max_batch_size: 32}}}`, or take one input"
            ),
            "{b}"
        );
        s.stop().await;
    })
    .await;
}
