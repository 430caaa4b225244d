//! Frame codec tests: round trips, spilling, and every way a peer can send
//! something broken.

use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, DuplexStream};

use super::*;
use crate::{CallId, HostMessage, WorkerMessage};

fn pipe() -> (DuplexStream, DuplexStream) {
    // Bigger than any inline test frame, so writers never wait for readers.
    tokio::io::duplex(8 * 1024 * 1024)
}

fn big_call(bytes: usize) -> HostMessage {
    HostMessage::Call {
        id: CallId::new("big"),
        function: "echo".into(),
        input: json!({ "text": "x".repeat(bytes) }),
        metadata: json!({}),
    }
}

/// Raw frames, as bytes: header + body.
fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

async fn read_raw(bytes: Vec<u8>, spill: Option<&SpillDir>) -> Result<Option<Value>, FrameError> {
    let mut reader: &[u8] = &bytes;
    read_message(&mut reader, spill).await
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[tokio::test]
async fn round_trip_several_messages_then_clean_eof() {
    let (mut a, mut b) = pipe();
    let sent = vec![
        HostMessage::Setup {
            config: json!({}),
            metadata: json!({"k": "v"}),
        },
        big_call(10),
        HostMessage::Cancel { id: "big".into() },
        HostMessage::Shutdown,
    ];
    for msg in &sent {
        write_message(&mut a, msg, None).await.unwrap();
    }
    drop(a);
    let mut got = Vec::new();
    while let Some(msg) = read_message::<_, HostMessage>(&mut b, None).await.unwrap() {
        got.push(msg);
    }
    assert_eq!(got, sent);
}

#[tokio::test]
async fn header_is_big_endian_length_of_json() {
    let mut out = Vec::new();
    write_message(&mut out, &HostMessage::Shutdown, None)
        .await
        .unwrap();
    let body = br#"{"type":"shutdown"}"#;
    assert_eq!(out, raw_frame(body));
}

#[tokio::test]
async fn big_message_spills_and_is_resolved_transparently() {
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillDir::new(dir.path());
    let msg = big_call(2 * SPILL_THRESHOLD_BYTES);

    let mut wire = Vec::new();
    write_message(&mut wire, &msg, Some(&spill)).await.unwrap();
    // What went on the wire is a small `spilled` note pointing into the dir.
    assert!(wire.len() < 1024, "{} bytes inline", wire.len());
    let note: Value = serde_json::from_slice(&wire[4..]).unwrap();
    assert_eq!(note["type"], "spilled");
    let path = PathBuf::from(note["path"].as_str().unwrap());
    assert!(path.is_absolute());
    assert_eq!(files_in(dir.path()), vec![path.clone()]);
    assert_eq!(
        note["bytes"].as_u64().unwrap(),
        std::fs::metadata(&path).unwrap().len()
    );

    let mut reader: &[u8] = &wire;
    let back: HostMessage = read_message(&mut reader, Some(&spill))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, msg);
    assert!(files_in(dir.path()).is_empty(), "spill file not deleted");
}

#[tokio::test]
async fn spilled_worker_message_resolves_from_a_file_the_peer_wrote() {
    // As the Python side does it: it writes the file and sends the note.
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillDir::new(dir.path());
    let content = serde_json::to_vec(&json!({"type": "done", "id": "c", "output": {"t": "y".repeat(100)}, "files": [], "seconds": 1.0})).unwrap();
    let path = dir.path().join("worker-1.json");
    std::fs::write(&path, &content).unwrap();
    let note = json!({"type": "spilled", "path": path, "bytes": content.len()});
    let mut reader: &[u8] = &raw_frame(note.to_string().as_bytes());
    let msg: WorkerMessage = read_message(&mut reader, Some(&spill))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(msg, WorkerMessage::Done { ref id, .. } if id.as_str() == "c"));
    assert!(!path.exists());
}

#[tokio::test]
async fn small_threshold_and_unique_names() {
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillDir::new(dir.path()).with_threshold(15);
    let mut wire = Vec::new();
    for _ in 0..3 {
        write_message(&mut wire, &big_call(20), Some(&spill))
            .await
            .unwrap();
    }
    // Messages at or under the threshold stay inline.
    write_message(&mut wire, &json!({"type": "x"}), Some(&spill))
        .await
        .unwrap();
    assert_eq!(files_in(dir.path()).len(), 3, "names must not collide");
    let mut reader: &[u8] = &wire;
    for _ in 0..3 {
        let msg: HostMessage = read_message(&mut reader, Some(&spill))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg, big_call(20));
    }
    let last: Value = read_message(&mut reader, Some(&spill))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last, json!({"type": "x"}));
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test]
async fn without_spill_dir_big_messages_go_inline_up_to_the_limit() {
    let (mut a, mut b) = pipe();
    let msg = big_call(2 * SPILL_THRESHOLD_BYTES);
    let expected = msg.clone();
    let writer = tokio::spawn(async move { write_message(&mut a, &msg, None).await });
    let back: HostMessage = read_message(&mut b, None).await.unwrap().unwrap();
    writer.await.unwrap().unwrap();
    assert_eq!(back, expected);
}

#[tokio::test]
async fn writer_refuses_messages_over_the_limit() {
    let mut out = Vec::new();
    let err = write_message(&mut out, &big_call(MAX_FRAME_BYTES), None)
        .await
        .unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
    assert!(out.is_empty(), "nothing may be written");
}

#[tokio::test]
async fn oversize_length_is_refused_before_reading_the_body() {
    for len in [MAX_FRAME_BYTES as u32 + 1, u32::MAX] {
        // Only the header: if the reader tried to read (or allocate) the
        // body it would report truncation instead.
        let err = read_raw(len.to_be_bytes().to_vec(), None)
            .await
            .unwrap_err();
        match err {
            FrameError::TooLarge { len: got, max } => {
                assert_eq!(got, len as u64);
                assert_eq!(max, MAX_FRAME_BYTES);
            }
            other => panic!("expected TooLarge, got {other}"),
        }
    }
}

#[tokio::test]
async fn truncated_header_and_body() {
    let err = read_raw(vec![0, 0], None).await.unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Truncated {
                expected: 4,
                got: 2
            }
        ),
        "{err}"
    );

    let mut bytes = raw_frame(br#"{"type":"shutdown"}"#);
    bytes.truncate(10);
    let err = read_raw(bytes, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Truncated {
                expected: 19,
                got: 6
            }
        ),
        "{err}"
    );

    // A writer that stalls then closes mid-frame is the same error.
    let (mut a, mut b) = pipe();
    a.write_all(&[0, 0, 0, 100, b'{']).await.unwrap();
    drop(a);
    let err = read_message::<_, Value>(&mut b, None).await.unwrap_err();
    assert!(matches!(err, FrameError::Truncated { .. }), "{err}");
}

#[tokio::test]
async fn empty_channel_is_clean_eof() {
    assert!(read_raw(Vec::new(), None).await.unwrap().is_none());
}

#[tokio::test]
async fn garbage_is_a_decode_error_with_a_snippet() {
    for body in [
        &b"not json at all"[..],
        b"\xff\xfe\x00garbage",
        b"",
        b"[1,2,3]",
        br#"{"type":"progress"}"#,
        br#"{"no_type":true}"#,
    ] {
        let mut reader: &[u8] = &raw_frame(body);
        let err = read_message::<_, WorkerMessage>(&mut reader, None)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Decode { .. }), "{err}");
    }
    let mut reader: &[u8] = &raw_frame(b"oops");
    let err = read_message::<_, WorkerMessage>(&mut reader, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`oops`"), "{err}");
}

#[tokio::test]
async fn spilled_without_spill_dir_is_refused() {
    let note = json!({"type": "spilled", "path": "/tmp/x.json", "bytes": 3});
    let err = read_raw(raw_frame(note.to_string().as_bytes()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, FrameError::SpillNotAllowed { .. }), "{err}");
}

#[tokio::test]
async fn spill_outside_the_dir_is_refused_and_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let spill = SpillDir::new(dir.path());
    let victim = elsewhere.path().join("precious.json");
    std::fs::write(&victim, br#"{"type":"shutdown"}"#).unwrap();
    for path in [
        victim.clone(),
        dir.path()
            .join("..")
            .join(elsewhere.path().file_name().unwrap())
            .join("precious.json"),
        PathBuf::from("relative.json"),
    ] {
        let note = json!({"type": "spilled", "path": path, "bytes": 19});
        let err = read_raw(raw_frame(note.to_string().as_bytes()), Some(&spill))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::SpillOutsideDir { .. } | FrameError::SpillIo { .. }
            ),
            "{err}"
        );
        assert!(victim.exists());
    }
}

#[tokio::test]
async fn nested_spill_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillDir::new(dir.path());
    let inner = dir.path().join("inner.json");
    let inner_note = json!({"type": "spilled", "path": dir.path().join("other.json"), "bytes": 1});
    std::fs::write(&inner, inner_note.to_string()).unwrap();
    let note = json!({"type": "spilled", "path": inner, "bytes": inner_note.to_string().len()});
    let err = read_raw(raw_frame(note.to_string().as_bytes()), Some(&spill))
        .await
        .unwrap_err();
    assert!(matches!(err, FrameError::NestedSpill { .. }), "{err}");
    assert!(!inner.exists());
}

#[tokio::test]
async fn spill_size_mismatch_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillDir::new(dir.path());
    let file = dir.path().join("short.json");
    std::fs::write(&file, br#"{"type":"shutdown"}"#).unwrap();
    let note = json!({"type": "spilled", "path": file, "bytes": 1000});
    let err = read_raw(raw_frame(note.to_string().as_bytes()), Some(&spill))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::SpillSizeMismatch {
                claimed: 1000,
                actual: 19,
                ..
            }
        ),
        "{err}"
    );

    let note = json!({"type": "spilled", "path": dir.path().join("missing.json"), "bytes": 3});
    let err = read_raw(raw_frame(note.to_string().as_bytes()), Some(&spill))
        .await
        .unwrap_err();
    assert!(matches!(err, FrameError::SpillIo { .. }), "{err}");
}

#[tokio::test]
async fn spilled_messages_over_the_limit_are_refused_unread_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillDir::new(dir.path());
    let limit = crate::MAX_MESSAGE_BYTES as u64;

    // The note claims too much: refused without reading; the file goes.
    let file = dir.path().join("claims.json");
    std::fs::write(&file, br#"{"type":"shutdown"}"#).unwrap();
    let note = json!({"type": "spilled", "path": file, "bytes": limit + 1});
    let err = read_raw(raw_frame(note.to_string().as_bytes()), Some(&spill))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FrameError::SpillTooLarge { bytes, max, .. } if bytes == limit + 1 && max as u64 == limit),
        "{err}"
    );
    assert!(err.to_string().contains("over the limit"), "{err}");
    assert!(!file.exists());

    // The note lies small but the file is huge (sparse: nothing is written
    // to disk): refused from its size, never loaded.
    let file = dir.path().join("huge.json");
    let f = std::fs::File::create(&file).unwrap();
    f.set_len(limit + 10).unwrap();
    drop(f);
    let note = json!({"type": "spilled", "path": file, "bytes": 19});
    let err = read_raw(raw_frame(note.to_string().as_bytes()), Some(&spill))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FrameError::SpillTooLarge { bytes, .. } if bytes == limit + 10),
        "{err}"
    );
    assert!(!file.exists());
}

#[tokio::test]
async fn a_peer_that_died_with_our_frames_unread_is_eof_not_an_error() {
    // Linux resets a Unix stream whose peer closed with data unread (a
    // worker killed while its loop was blocked never read our `shutdown`).
    let (mut ours, theirs) = tokio::net::UnixStream::pair().unwrap();
    write_message(&mut ours, &json!({"type": "shutdown"}), None)
        .await
        .unwrap();
    drop(theirs);
    let got: Result<Option<Value>, FrameError> = read_message(&mut ours, None).await;
    assert!(matches!(got, Ok(None)), "{got:?}");
}

#[test]
fn the_type_is_read_from_the_prefix_only_when_it_is_plain() {
    for (body, ty) in [
        (
            &br#"{"type":"done","id":"c1","output":[1,2]}"#[..],
            Some("done"),
        ),
        (br#"{"type":"setup_done"}"#, Some("setup_done")),
        // Anything else is left to the parser.
        (br#"{"type": "done","id":"c1"}"#, None),
        (br#"{ "type":"done"}"#, None),
        (br#"{"id":"c1","type":"done"}"#, None),
        (br#"{"type":"do\"ne","id":"c1"}"#, None),
        (br#"{"type":"Done","id":"c1"}"#, None),
        (br#"{"type":"","id":"c1"}"#, None),
        (br#"{"type":"done"x"#, None),
        (br#"{"type":"done"#, None),
    ] {
        assert_eq!(leading_type(body), ty, "{}", String::from_utf8_lossy(body));
    }
}

#[tokio::test]
async fn a_plain_type_prefix_does_not_spare_the_rest_of_the_message_its_checks() {
    for body in [
        // Broken after the prefix: still a decode error.
        &br#"{"type":"done","id":"c1","output":[1,2"#[..],
        br#"{"type":"done","id":"c1","output":nope,"seconds":1}"#,
        // A second `type` (the parser's probe refused it too).
        br#"{"type":"done","type":"spilled","id":"c1","output":1,"seconds":1}"#,
        // Not a message the prefix names.
        br#"{"type":"progress"}"#,
    ] {
        let err = read_raw_worker(body).await.unwrap_err();
        assert!(
            matches!(err, FrameError::Decode { .. }),
            "{}: {err}",
            String::from_utf8_lossy(body)
        );
    }
    let done = read_raw_worker(br#"{"type":"done","id":"c1","output":[1,2],"seconds":0.5}"#)
        .await
        .unwrap();
    assert!(
        matches!(&done, WorkerMessage::Done { id, seconds, .. } if id.as_str() == "c1" && *seconds == 0.5),
        "{done:?}"
    );
}

#[tokio::test]
async fn a_spilled_note_written_type_first_is_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillDir::new(dir.path());
    let path = dir.path().join("msg.json");
    let content = br#"{"type":"done","id":"c1","output":{"v":1},"seconds":0.25}"#;
    std::fs::write(&path, content).unwrap();
    let note = format!(
        r#"{{"type":"spilled","path":{},"bytes":{}}}"#,
        serde_json::to_string(&path).unwrap(),
        content.len()
    );
    assert_eq!(leading_type(note.as_bytes()), Some("spilled"));
    let mut reader: &[u8] = &raw_frame(note.as_bytes());
    let msg: WorkerMessage = read_message(&mut reader, Some(&spill))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(msg, WorkerMessage::Done { .. }), "{msg:?}");
    assert!(!path.exists(), "the spill file is removed once read");
}

async fn read_raw_worker(body: &[u8]) -> Result<WorkerMessage, FrameError> {
    let mut reader: &[u8] = &raw_frame(body);
    read_message::<_, WorkerMessage>(&mut reader, None)
        .await
        .map(|m| m.expect("one message"))
}
