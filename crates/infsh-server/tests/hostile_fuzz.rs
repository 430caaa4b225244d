//! The server's fuzz targets (`fuzz/fuzz_targets/run_request.rs`,
//! `http_request.rs`) on stable, as deterministic property tests: seed
//! inputs, seeded mutations of them, and every input under
//! `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/` (inputs the
//! fuzzer once failed on). A few
//! seconds on every `cargo test`; `INFSH_FUZZ_ITERATIONS` runs more.

use infsh_server::fuzzing::{http_request, http_scratch_dir, run_request};
use infsh_testkit::fuzz::{drive, Rng};

const INTERESTING: &[&[u8]] = &[
    b"%2F",
    b"%2e%2e",
    b"%252F",
    b"..",
    b"//",
    b"/v1",
    b"%FF",
    b"%00",
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"1e999",
    b"-1",
    b"0",
    b"1e300",
    b"\xff",
    b"\xc3",
    b"\"app\"",
    b"\"input\"",
    b"\"timeout\"",
    b"\"wait\"",
    b"\"files\"",
    b"?token=",
    b"?wait=true",
    b"?cursor=",
    b"?limit=",
    b"&",
    b"=",
    b"\n",
    b"\\ud800",
    b"0123456789abcdef0123456789abcdef",
];

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            2 if !data.is_empty() => {
                let at = rng.below(data.len());
                data.truncate(at);
            }
            3 | 4 => {
                let at = rng.below(data.len() + 1);
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            5 if !data.is_empty() => {
                let a = rng.below(data.len());
                let b = (a + rng.below(16)).min(data.len());
                data.drain(a..b);
            }
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let at = rng.below(data.len() + 1);
                data.splice(at..at, other[from..].iter().copied());
            }
        }
    }
}

fn run_seeds() -> Vec<Vec<u8>> {
    [
        &br#"{"app": "tests/multi-fn", "function": "generate", "input": {"prompt": "cat", "n": 2}}"#[..],
        br#"{"app": "ns/a@1:fn", "input": null, "setup": {}, "webhook": "http://127.0.0.1:9/h", "session": "new", "metadata": {"a": 1}, "wait": true, "timeout": 60}"#,
        br#"{"app": "", "timeout": 0}"#,
        br#"{"app": "x", "timeout": 1e300}"#,
        br#"{"app": "../../etc", "function": "../x"}"#,
        br#"{"input": {}}"#,
        br#"[1, 2]"#,
        b"//v1//apps/run/",
        b"/v1",
        b"/files/..%2F..%2Fetc%2Fpasswd",
        b"",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

#[test]
fn run_body_parsing_and_path_normalisation_survive_mutations() {
    drive(
        "run_request",
        &run_seeds(),
        0x0DDB_1A5E_5BAD_5EED,
        50_000,
        mutate,
        run_request,
    );
}

/// `[method][flags][path]\n[body]` (see `infsh_server::fuzzing::http_request`).
fn req(method: u8, flags: u8, path: &str, body: &str) -> Vec<u8> {
    let mut v = vec![method, flags];
    v.extend_from_slice(path.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(body.as_bytes());
    v
}

fn http_seeds() -> Vec<Vec<u8>> {
    // Methods: 0 GET 1 POST 2 PUT 3 DELETE 4 PATCH 5 HEAD 6 OPTIONS.
    // Flags: content type in bits 0-2 (1 = application/json), key in 3-4 (8 = the key).
    let id = "0123456789abcdef0123456789abcdef";
    vec![
        req(1, 9, "/apps/run", r#"{"app": "tests/x", "input": {}}"#),
        req(
            1,
            9,
            "/v1/run?wait=true",
            r#"{"app": "a/b:c", "timeout": 5}"#,
        ),
        req(
            1,
            9,
            "/apps/a/b/functions/c/run",
            r#"{"input": null, "wait": true}"#,
        ),
        req(
            1,
            9,
            "/files",
            r#"{"files": [{"filename": "../a.png", "content_type": "image/png", "size": 3}]}"#,
        ),
        req(2, 7, &format!("/files/{id}?token=1.00"), "bytes"),
        req(0, 0, &format!("/files/{id}/x.png"), ""),
        req(0, 8, "/tasks?limit=5&status=completed&cursor=3", ""),
        req(0, 8, "/tasks/abc/stream", ""),
        req(1, 9, "/tasks/abc/cancel", ""),
        req(0, 8, "/apps/ns/name", ""),
        req(0, 8, "/apps", ""),
        req(3, 8, "/sessions/s1", ""),
        req(0, 8, "/openapi.json", ""),
        req(0, 8, "/ready", ""),
        req(0, 8, "/metrics", ""),
        req(0, 0, "/health", ""),
        req(5, 0, "/health", ""),
        req(6, 0, "/apps/run", ""),
        req(4, 16, "//v1//apps//run//", "{}"),
        req(0, 24, "/apps/..%2F..%2Fetc/passwd", ""),
        req(1, 11, "/apps/run", "{\"app\": 1}"),
    ]
}

#[test]
fn every_route_answers_hostile_requests_without_5xx() {
    drive(
        "http_request",
        &http_seeds(),
        0xC0FF_EE00_1234_5678,
        20_000,
        mutate,
        http_request,
    );
    let _ = std::fs::remove_dir_all(http_scratch_dir());
}
