//! The frame-decoder fuzz target (`fuzz/fuzz_targets/frame_decode.rs`) on
//! stable, as a deterministic property test: seed frames (every message
//! kind, spilled notes, broken headers), thousands of seeded mutations of
//! them, and every input under `fuzz/seeds/frame_decode/` and
//! `fuzz/regressions/frame_decode/` (inputs the fuzzer once failed on). Runs in a few seconds on every `cargo test`.

use std::path::Path;

use infsh_protocol::fuzzing::{frame_decode, frame_decode_input};
use infsh_testkit::fuzz::{fuzz_inputs, iterations, Rng};
use serde_json::json;

const INTERESTING: &[&[u8]] = &[
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x04\x00\x00\x01",
    b"\"type\"",
    b"\"spilled\"",
    b"{}",
    b"[",
    b"{\"type\":",
    b"\xc3\x28",
    b"1e999",
    b"-0",
    b"\\u0000",
    b"\\ud800",
    b"null",
];

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..=rng.below(4) {
        match rng.below(8) {
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
            3 => {
                let at = rng.below(data.len() + 1);
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            4 if !data.is_empty() => {
                let a = rng.below(data.len());
                let b = (a + rng.below(16)).min(data.len());
                data.drain(a..b);
            }
            5 => {
                // Splice in part of another seed (frames back to back).
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(other.len() + 1);
                data.extend_from_slice(&other[..cut]);
            }
            6 if data.len() >= 4 => {
                // Rewrite the length prefix.
                let len = match rng.below(3) {
                    0 => rng.next() as u32,
                    1 => (data.len() - 4) as u32 + rng.below(3) as u32,
                    _ => (data.len() as u32).saturating_sub(rng.below(8) as u32 + 4),
                };
                data[..4].copy_from_slice(&len.to_be_bytes());
            }
            _ => {
                let at = rng.below(data.len() + 1);
                data.insert(at, rng.next() as u8);
            }
        }
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn seeds(spill: &Path) -> Vec<Vec<u8>> {
    let messages = [
        json!({"type": "ready", "protocol": 1, "pid": 7, "python": "3.11.7", "sdk_version": null,
               "app_class": "App", "functions": [{"name": "run", "streaming": false, "is_async": true,
               "accepts_metadata": false, "entry": {"description": "d", "input_schema": {}, "output_schema": {}}}],
               "setup_schema": {}, "has_on_cancel": false}),
        json!({"type": "load_failed", "kind": "import_error", "error": "E: x", "traceback": ""}),
        json!({"type": "setup_done", "seconds": 0.5}),
        json!({"type": "setup_failed", "error": "e", "traceback": "t", "kind": "app"}),
        json!({"type": "snapshot", "id": "c1", "output": {"a": [1, 2.5, "x"]}, "files": []}),
        json!({"type": "done", "id": "c1", "output": {"image": {"uri": "u"}}, "seconds": 1e-3,
               "files": [{"pointer": "/image", "path": "/tmp/a.png", "uri": null, "filename": "a.png",
                          "content_type": "image/png", "size": 3}]}),
        json!({"type": "failed", "id": "c1", "kind": "input", "error": "bad", "traceback": "",
               "errors": [{"loc": "a.0", "msg": "m"}]}),
        json!({"type": "bye", "unload_error": null}),
        json!({"type": "setup", "config": {}, "metadata": {"k": "v"}}),
        json!({"type": "call", "id": "c1", "function": "run", "input": {"x": [[[]]]}, "metadata": {}}),
        json!({"type": "cancel", "id": "c1"}),
        json!({"type": "shutdown"}),
        json!({"type": "spilled", "path": spill.join("s.json"), "bytes": 19}),
        json!({"type": "spilled", "path": "/etc/passwd", "bytes": 3}),
        json!({"type": "spilled", "path": spill.join("../x.json"), "bytes": 18446744073709551615u64}),
        json!({"type": "unknown"}),
    ];
    let mut out: Vec<Vec<u8>> = messages
        .iter()
        .map(|m| frame(m.to_string().as_bytes()))
        .collect();
    // Several frames back to back, and broken headers.
    out.push(out.iter().take(4).flatten().copied().collect());
    out.push(vec![]);
    out.push(vec![0, 0]);
    out.push(vec![0xff, 0xff, 0xff, 0xff, b'{']);
    out.push(vec![0x04, 0x00, 0x00, 0x01]);
    out.push(frame(b"{\"type\":\"done\",\"id\":\"x\",\"output\":1}\xff"));
    out.push(frame(&vec![b'['; 4096]));
    out
}

#[test]
fn frame_decoder_survives_seeded_mutations() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path();
    let seeds = seeds(spill);
    for s in &seeds {
        // A spill file for the notes that point at s.json.
        std::fs::write(spill.join("s.json"), br#"{"type":"shutdown"}"#).unwrap();
        frame_decode(s, Some(spill));
        frame_decode(s, None);
    }
    let inputs = fuzz_inputs("frame_decode");
    assert!(!inputs.is_empty(), "fuzz/seeds/frame_decode is missing");
    for path in inputs {
        frame_decode_input(&std::fs::read(&path).unwrap(), spill);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..iterations(50_000) {
        let mut data = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut data, &seeds);
        if i % 64 == 0 {
            std::fs::write(spill.join("s.json"), br#"{"type":"shutdown"}"#).unwrap();
        }
        let with_spill = rng.below(2) == 0;
        frame_decode(&data, with_spill.then_some(spill));
    }
    // Nothing outside the spill folder was touched, and /etc/passwd lives.
    assert!(Path::new("/etc/passwd").exists());
}
