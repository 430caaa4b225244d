//! One snapshot per message type: the exact JSON that goes on the wire, so a
//! change to the wire format shows up in review. Each test also parses the
//! JSON back and checks it round-trips.

use serde::de::DeserializeOwned;
use serde_json::json;

use super::*;

/// Serializes, checks the round trip, returns the wire JSON.
fn wire<T: Serialize + DeserializeOwned + PartialEq + fmt::Debug>(msg: &T) -> String {
    let text = serde_json::to_string(msg).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, msg, "round trip of {text}");
    text
}

fn upscale() -> FunctionInfo {
    FunctionInfo {
        name: "upscale".into(),
        streaming: false,
        is_async: true,
        accepts_metadata: false,
        batched: false,
        entry: json!({
            "description": "Upscale an image.",
            "input_schema": {"properties": {"scale": {"type": "integer"}}, "type": "object"},
            "output_schema": {"properties": {"image": {"type": "string", "format": "file"}}, "type": "object"},
            "credentials": ["hf"]
        }),
    }
}

#[test]
fn host_setup() {
    let msg = HostMessage::Setup {
        config: json!({"model": "small"}),
        metadata: json!({"app_id": "a1", "worker_id": "w1"}),
    };
    insta::assert_snapshot!(wire(&msg));
}

#[test]
fn host_call() {
    let msg = HostMessage::Call {
        id: CallId::new("c-1"),
        function: "upscale".into(),
        input: json!({"image": "/tmp/in.png", "scale": 2}),
        metadata: json!({"task_id": "t1"}),
    };
    insta::assert_snapshot!(wire(&msg));
}

#[test]
fn host_call_batch() {
    let msg = HostMessage::CallBatch {
        function: "embed".into(),
        calls: vec![
            BatchItem {
                id: CallId::new("c-1"),
                input: json!({"text": "a"}),
                metadata: json!({"task_id": "t1"}),
            },
            BatchItem {
                id: CallId::new("c-2"),
                input: json!({"text": "b"}),
                metadata: json!({"task_id": "t2"}),
            },
        ],
    };
    assert_eq!(
        wire(&msg),
        r#"{"type":"call_batch","function":"embed","calls":[{"id":"c-1","input":{"text":"a"},"metadata":{"task_id":"t1"}},{"id":"c-2","input":{"text":"b"},"metadata":{"task_id":"t2"}}]}"#
    );
    let back: HostMessage = serde_json::from_str(&wire(&msg)).unwrap();
    assert_eq!(back, msg);
}

#[test]
fn a_batched_function_says_so_and_an_unbatched_one_stays_as_it_was() {
    let mut f = upscale();
    assert!(!serde_json::to_string(&f).unwrap().contains("batched"));
    f.batched = true;
    let text = serde_json::to_string(&f).unwrap();
    assert!(text.contains(r#""batched":true"#), "{text}");
    let back: FunctionInfo = serde_json::from_str(&text).unwrap();
    assert!(back.batched);
}

#[test]
fn host_cancel() {
    insta::assert_snapshot!(wire(&HostMessage::Cancel { id: "c-1".into() }));
}

#[test]
fn host_shutdown() {
    insta::assert_snapshot!(wire(&HostMessage::Shutdown));
}

#[test]
fn worker_ready() {
    let msg = WorkerMessage::Ready(Ready {
        protocol: 1,
        pid: 4242,
        python: "3.11.7".into(),
        sdk_version: Some("0.36.2".into()),
        app_class: "App".into(),
        functions: vec![upscale()],
        setup_schema: json!({"properties": {}, "title": "AppSetup", "type": "object"}),
        has_on_cancel: true,
    });
    insta::assert_snapshot!(wire(&msg));
}

#[test]
fn worker_load_failed() {
    let msg = WorkerMessage::LoadFailed(LoadFailed {
        kind: LoadFailureKind::ImportError,
        error: "ModuleNotFoundError: No module named 'torch'".into(),
        traceback: "Traceback (most recent call last):\n...".into(),
    });
    insta::assert_snapshot!(wire(&msg));
}

#[test]
fn worker_setup_done() {
    insta::assert_snapshot!(wire(&WorkerMessage::SetupDone { seconds: 1.25 }));
}

#[test]
fn worker_setup_failed() {
    let msg = WorkerMessage::SetupFailed(SetupFailed {
        kind: SetupFailureKind::Config,
        error: "ValidationError: 1 validation error for AppSetup".into(),
        traceback: String::new(),
    });
    insta::assert_snapshot!(wire(&msg));
}

fn image_file() -> OutputFile {
    OutputFile {
        pointer: "/images/0".into(),
        path: Some("/tmp/out.png".into()),
        uri: None,
        filename: Some("out.png".into()),
        content_type: Some("image/png".into()),
        size: Some(1234),
    }
}

#[test]
fn worker_snapshot() {
    let msg = WorkerMessage::Snapshot {
        id: "c-1".into(),
        output: json!({"text": "Hel", "images": []}).into(),
        files: vec![],
    };
    insta::assert_snapshot!(wire(&msg));
}

#[test]
fn worker_done() {
    let msg = WorkerMessage::Done {
        id: "c-1".into(),
        output: json!({"images": [{"path": "/tmp/out.png", "uri": null}]}).into(),
        files: vec![image_file()],
        seconds: 0.5,
    };
    insta::assert_snapshot!(wire(&msg));
}

#[test]
fn worker_failed_input() {
    let msg = WorkerMessage::Failed(CallFailed {
        id: "c-1".into(),
        kind: FailureKind::Input,
        error: "ValidationError: 1 validation error for UpscaleInput".into(),
        traceback: String::new(),
        errors: vec![InputErrorItem {
            loc: "scale".into(),
            msg: "Input should be a valid integer".into(),
        }],
    });
    insta::assert_snapshot!(wire(&msg));
}

#[test]
fn worker_failed_app() {
    let msg = WorkerMessage::Failed(CallFailed {
        id: "c-2".into(),
        kind: FailureKind::App,
        error: "ZeroDivisionError: division by zero".into(),
        traceback: "Traceback (most recent call last):\n...".into(),
        errors: vec![],
    });
    insta::assert_snapshot!(wire(&msg));
}

#[test]
fn worker_bye() {
    insta::assert_snapshot!(wire(&WorkerMessage::Bye { unload_error: None }));
}

#[test]
fn worker_spilled() {
    let msg = WorkerMessage::Spilled {
        path: "/state/spill/w-1/frame-7.json".into(),
        bytes: 2_000_000,
    };
    insta::assert_snapshot!(wire(&msg));
}

#[test]
fn kinds_have_wire_names() {
    for kind in [
        FailureKind::Input,
        FailureKind::App,
        FailureKind::Cancelled,
        FailureKind::UnknownFunction,
        FailureKind::NotSetUp,
    ] {
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.to_string()));
    }
    for kind in [
        LoadFailureKind::NoInferencePy,
        LoadFailureKind::ImportError,
        LoadFailureKind::NoAppClass,
        LoadFailureKind::AppInitError,
    ] {
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.to_string()));
    }
    for kind in [SetupFailureKind::Config, SetupFailureKind::App] {
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.to_string()));
    }
}

#[test]
fn unknown_fields_are_ignored_and_optional_fields_default() {
    // What a newer worker might send: extra fields everywhere, optional ones
    // left out, an integer where a float is expected.
    let text = r#"{"type":"ready","protocol":1,"pid":7,"python":"3.12.1",
        "app_class":"App","setup_schema":{},"future_field":[1,2],
        "functions":[{"name":"run","streaming":true,"is_async":true,
                      "accepts_metadata":true,"entry":{},"extra":1}]}"#;
    let WorkerMessage::Ready(ready) = serde_json::from_str(text).unwrap() else {
        panic!("not ready")
    };
    assert_eq!(ready.sdk_version, None);
    assert!(!ready.has_on_cancel);
    let run = ready.function("run").unwrap();
    assert_eq!(run.description(), "");
    assert_eq!(run.input_schema(), None);

    let done: WorkerMessage =
        serde_json::from_str(r#"{"type":"done","id":"x","output":{},"seconds":2,"new":true}"#)
            .unwrap();
    assert_eq!(
        done,
        WorkerMessage::Done {
            id: "x".into(),
            output: json!({}).into(),
            files: vec![],
            seconds: 2.0
        }
    );

    let failed: WorkerMessage = serde_json::from_str(
        r#"{"type":"failed","id":"x","kind":"cancelled","error":"Cancelled"}"#,
    )
    .unwrap();
    let WorkerMessage::Failed(failed) = failed else {
        panic!("not failed")
    };
    assert_eq!(failed.traceback, "");
    assert!(failed.errors.is_empty());

    let file: OutputFile = serde_json::from_str(r#"{"pointer":"/f","uri":"https://x/y"}"#).unwrap();
    assert_eq!(file.path, None);
    assert_eq!(file.size, None);

    let setup: HostMessage = serde_json::from_str(r#"{"type":"setup"}"#).unwrap();
    assert_eq!(
        setup,
        HostMessage::Setup {
            config: json!({}),
            metadata: json!({})
        }
    );
}

#[test]
fn function_helpers_read_the_entry() {
    let f = upscale();
    assert_eq!(f.description(), "Upscale an image.");
    assert_eq!(f.input_schema().unwrap()["type"], "object");
    assert_eq!(
        f.output_schema().unwrap()["properties"]["image"]["format"],
        "file"
    );
}

#[test]
fn unknown_types_and_kinds_are_errors() {
    assert!(serde_json::from_str::<WorkerMessage>(r#"{"type":"progress","id":"x"}"#).is_err());
    assert!(serde_json::from_str::<WorkerMessage>(
        r#"{"type":"failed","id":"x","kind":"weird","error":"e"}"#
    )
    .is_err());
    assert!(serde_json::from_str::<HostMessage>(r#"{"id":"x"}"#).is_err());
}

#[test]
fn an_output_is_kept_as_the_worker_wrote_it() {
    let text =
        r#"{"id":"x","output":{"v":[0.00001,1e+16,-0.0]},"type":"done","seconds":1,"files":[]}"#;
    let WorkerMessage::Done {
        id,
        output,
        seconds,
        files,
    } = serde_json::from_str(text).unwrap()
    else {
        panic!("not done");
    };
    assert_eq!((id.as_str(), seconds, files.len()), ("x", 1.0, 0));
    assert!(output.is_raw());
    assert_eq!(output.json_text(), r#"{"v":[0.00001,1e+16,-0.0]}"#);
    let snap = r#"{"type":"snapshot","id":"y","output":"part"}"#;
    let WorkerMessage::Snapshot { output, .. } = serde_json::from_str(snap).unwrap() else {
        panic!("not a snapshot");
    };
    assert_eq!(output.json_text(), r#""part""#);
}

#[test]
fn a_hand_decoded_message_fails_as_the_derived_decoder_did() {
    let err = |text: &str| {
        serde_json::from_str::<WorkerMessage>(text)
            .unwrap_err()
            .to_string()
    };
    // Without a position: one in the message rebuilt without its output
    // would point at the wrong place.
    assert_eq!(
        err(r#"{"type":"done","id":"x","seconds":1}"#),
        "missing field `output`"
    );
    assert_eq!(
        err(r#"{"type":"done","id":7,"output":{},"seconds":1}"#),
        "invalid type: integer `7`, expected a string"
    );
    let unknown = err(r#"{"type":"nope"}"#);
    assert!(
        unknown.starts_with("unknown variant `nope`, expected one of `ready`"),
        "{unknown}"
    );
    assert_eq!(err(r#"{"id":"x"}"#), "missing field `type`");
    assert_eq!(
        err("[1]"),
        "invalid type: sequence, expected a message object at line 1 column 0"
    );
    assert!(err(r#"{"type":"done","output":{"#).contains("EOF"));
}
