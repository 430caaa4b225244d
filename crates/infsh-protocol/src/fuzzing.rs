//! Fuzz entry points (not an API): the bodies of the cargo-fuzz targets in
//! `fuzz/`, kept here so the stable property tests run exactly the same
//! code on every `cargo test` (`tests/frame_fuzz.rs`).
//!
//! Compiled only with the crate's `fuzzing` feature, which the fuzz crate
//! and this crate's own tests (through its dev-dependency on itself) turn
//! on: nothing else builds it.

use std::path::Path;
use std::sync::OnceLock;

use crate::{read_message, write_message, FrameError, HostMessage, SpillDir, WorkerMessage};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// The fuzz target's input format: the first byte picks the mode (bit 0:
/// resolve `spilled` notes in `spill_dir`), the rest is the byte stream.
pub fn frame_decode_input(data: &[u8], spill_dir: &Path) {
    let (mode, rest) = match data.split_first() {
        Some((m, rest)) => (*m, rest),
        None => (0, data),
    };
    frame_decode(rest, (mode & 1 == 1).then_some(spill_dir));
}

/// Most messages decoded from one input (an input is a stream of frames).
const MAX_MESSAGES: usize = 64;

/// Bytes → frames → messages, as the host reads what a worker sends, then
/// the same bytes as a worker would read the host's messages.
///
/// Checked: nothing panics; every error is a [`FrameError`]; a frame whose
/// length prefix is over the limit is refused; every decoded message
/// survives an encode/decode round trip unchanged (as JSON).
///
/// `spill`: a folder to resolve `spilled` notes in (only files directly in
/// it are ever read or deleted), or None.
pub fn frame_decode(data: &[u8], spill: Option<&Path>) {
    let spill = spill.map(SpillDir::new);
    runtime().block_on(async {
        decode_all::<WorkerMessage>(data, spill.as_ref()).await;
        decode_all::<HostMessage>(data, spill.as_ref()).await;
        decode_all::<serde_json::Value>(data, spill.as_ref()).await;
    });
}

async fn decode_all<T>(data: &[u8], spill: Option<&SpillDir>)
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let mut reader: &[u8] = data;
    for _ in 0..MAX_MESSAGES {
        let before = reader.len();
        match read_message::<_, T>(&mut reader, spill).await {
            Ok(None) => {
                assert!(reader.is_empty(), "clean EOF with bytes left");
                return;
            }
            Ok(Some(msg)) => {
                assert!(reader.len() < before, "a message from no bytes");
                round_trip(&msg).await;
            }
            Err(e) => {
                check_error(&e, &data[data.len() - before..]);
                return;
            }
        }
    }
}

fn check_error(e: &FrameError, at: &[u8]) {
    // Rendering the error must not panic either.
    let _ = e.to_string();
    if at.len() >= 4 {
        let len = u32::from_be_bytes([at[0], at[1], at[2], at[3]]) as usize;
        if len > crate::MAX_FRAME_BYTES {
            assert!(matches!(e, FrameError::TooLarge { .. }), "{e}");
        }
    }
    assert!(!matches!(e, FrameError::Encode(_)), "a read never encodes");
}

/// encode(msg) → decode → encode gives the same JSON.
async fn round_trip<T>(msg: &T)
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let first = serde_json::to_value(msg).expect("a decoded message encodes");
    let mut wire = Vec::new();
    write_message(&mut wire, msg, None)
        .await
        .expect("a decoded message is written back");
    let mut reader: &[u8] = &wire;
    let back: T = read_message(&mut reader, None)
        .await
        .expect("re-reading what was written")
        .expect("one message");
    let second = serde_json::to_value(&back).expect("encodes again");
    assert!(
        same_json(&first, &second),
        "round trip changed the message: {first} → {second}"
    );
    assert!(reader.is_empty());
}

/// Equal JSON, floats within a relative 1e-12 (serde_json's default float
/// parsing is best-effort: a re-read may move the last bit).
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x == y {
                return true;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
