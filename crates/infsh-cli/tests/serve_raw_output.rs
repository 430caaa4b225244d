//! End to end: a large vector output reaches the client exactly as the
//! worker wrote it, byte for byte, through the run's answer, `GET
//! /tasks/{id}` (read back from the store) and the stream's final snapshot.
//! Besides the vectors it holds an integer beyond 64 bits, which a host
//! that parsed the output into a `serde_json::Value` and printed it again
//! would turn into a float (`1.1805916207174113e+21`).

mod common;

use common::server::*;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

const VECTORS_APP: &str = r#"from pydantic_core import to_json

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class EmbedInput(BaseAppInput):
    rows: int
    cols: int
    # Where to write the output's JSON as the worker encodes it
    # (model_dump(mode="json"), then pydantic-core's to_json).
    dump: str


class EmbedOutput(BaseAppOutput):
    vectors: list[list[float]]
    big: int


# Spellings of note (pydantic writes 0.00001, 1e+16, ...).
ODD = [1e-05, 1e16, -0.0, 5e-324, 0.1, 3.4028234663852886e38, 1e21, 123456789.123]


class App(BaseApp):
    async def setup(self):
        pass

    async def run(self, input_data: EmbedInput) -> EmbedOutput:
        vectors = [
            [ODD[(r + c) % len(ODD)] if c % 97 == 0 else ((r * 31 + c * 17) % 1000) / 977.0 - 0.5
             for c in range(input_data.cols)]
            for r in range(input_data.rows)
        ]
        out = EmbedOutput(vectors=vectors, big=2**70)
        with open(input_data.dump, "wb") as f:
            f.write(to_json(out.model_dump(mode="json")))
        return out
"#;

#[derive(Deserialize)]
struct Task<'a> {
    #[serde(borrow)]
    output: &'a RawValue,
    status: u8,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: Task<'a>,
}

/// The body of a chunked HTTP/1.1 answer, joined.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

#[test]
fn a_large_vector_output_reaches_the_client_as_the_worker_wrote_it() {
    let sb = ServeSandbox::new(&[]);
    sb.add_app(
        "vectors",
        &[
            ("inf.yml", "namespace: tests\nname: vectors\n"),
            ("requirements.txt", "inferencesh\n"),
            ("inference.py", VECTORS_APP),
        ],
    );
    let server = sb.start(&[]);
    let dump = sb.path().join("worker-output.json");
    let input = json!({"rows": 32, "cols": 1024, "dump": dump.to_str().unwrap()});

    let (status, answer) = server
        .request(
            "POST",
            "/apps/run",
            Some(json!({"app": "tests/vectors", "input": input, "wait": true})),
        )
        .expect("an answer");
    assert_eq!(status, 200, "{answer}");
    let written = std::fs::read_to_string(&dump).expect("the app wrote its output");
    assert!(
        written.len() > 500_000,
        "a large output: {} bytes",
        written.len()
    );
    for spelling in [
        "0.00001",
        "1e+16",
        "-0.0",
        "5e-324",
        "3.4028234663852886e+38",
        "\"big\":1180591620717411303424",
    ] {
        assert!(written.contains(spelling), "the worker wrote {spelling}");
    }
    let run: Envelope = serde_json::from_str(&answer).unwrap();
    assert_eq!(run.data.status, 10, "COMPLETED");
    assert!(
        run.data.output.get() == written,
        "the run's answer holds the worker's bytes"
    );
    let id = serde_json::from_str::<Value>(&answer).unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // GET: the ended task comes from the store.
    let (status, got) = server
        .request("GET", &format!("/tasks/{id}"), None)
        .unwrap();
    assert_eq!(status, 200, "{got}");
    let got: Envelope = serde_json::from_str(&got).unwrap();
    assert!(
        got.data.output.get() == written,
        "GET /tasks/{{id}} holds the worker's bytes"
    );

    // The stream of an ended task: one line, the final snapshot.
    let (status, body) = server
        .request("GET", &format!("/tasks/{id}/stream"), None)
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let body = dechunk(&body);
    let last = body.lines().last().expect("a final snapshot");
    let last: Task = serde_json::from_str(last).unwrap();
    assert_eq!(last.status, 10);
    assert!(
        last.output.get() == written,
        "the stream's final snapshot holds the worker's bytes"
    );
}
