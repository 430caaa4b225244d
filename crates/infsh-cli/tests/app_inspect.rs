//! End to end: `infsh app functions` and `infsh app schema` report exactly
//! what pydantic generates for the app's models, keyed and sorted as the
//! platform's `functions_schema.json`.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// What pydantic itself says, computed straight from the app's classes
/// (an oracle independent of infsh's discovery code).
fn pydantic_schemas(app: &std::path::Path, functions: &[&str]) -> Value {
    let script = r#"
import importlib, json, sys, typing, inspect, types
pkg = types.ModuleType("oracle_app"); pkg.__path__ = [sys.argv[1]]; sys.modules["oracle_app"] = pkg
mod = importlib.import_module("oracle_app.inference")
out = {}
for name in sorted(sys.argv[2:]):
    fn = getattr(mod.App, name)
    hints = typing.get_type_hints(fn)
    params = [p for p in inspect.signature(fn).parameters if p != "self"]
    ret = hints["return"]
    if typing.get_origin(ret) is not None:
        ret = typing.get_args(ret)[0]
    out[name] = {"description": inspect.getdoc(fn) or "", "input_schema": hints[params[0]].model_json_schema(), "output_schema": ret.model_json_schema()}
print(json.dumps(out))
"#;
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(app)
        .args(functions)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn functions_json_is_byte_for_byte_what_pydantic_generates() {
    let sb = Sandbox::new();
    for (app, functions) in [
        (
            fixture("multi-fn"),
            vec!["generate", "run", "summarize", "upscale"],
        ),
        (fixture("validation-app"), vec!["run"]),
        (
            example("image-app"),
            vec!["generate", "inpaint", "run", "upscale"],
        ),
    ] {
        let out = sb
            .infsh()
            .args(["--json", "app", "functions"])
            .arg(&app)
            .output()
            .unwrap();
        assert_code(&out, 0);
        let ours = json_stdout(&out);
        let oracle = pydantic_schemas(&app, &functions);
        // Same keys in the same order, same values: compare serialized text.
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            serde_json::to_string(&oracle).unwrap(),
            "{}",
            app.display()
        );
    }
}

#[test]
fn functions_lists_one_line_per_function_with_its_kind() {
    let sb = Sandbox::new();
    let out = sb
        .infsh()
        .args(["app", "functions"])
        .arg(fixture("functions-variety"))
        .output()
        .unwrap();
    assert_code(&out, 0);
    let text = stdout(&out);
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "async_fn",
            "iter_fn",
            "plain_model",
            "stream_fn",
            "sync_fn",
            "with_meta"
        ],
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("sync_fn") && l.contains("(sync)")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("stream_fn") && l.contains("(stream)")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("async_fn") && l.contains("(async, default)")),
        "{text}"
    );
}

#[test]
fn schema_writes_the_platform_files() {
    let sb = Sandbox::new();
    let app = sb.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    for file in ["inference.py", "inf.yml", "requirements.txt"] {
        std::fs::copy(fixture("setup-config").join(file), app.join(file)).unwrap();
    }
    let out = sb
        .infsh()
        .args(["app", "schema"])
        .arg(&app)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(app.join(name)).unwrap()).unwrap()
    };
    let functions = read("functions_schema.json");
    assert!(functions["run"]["input_schema"].is_object());
    assert_eq!(read("input_schema.json"), functions["run"]["input_schema"]);
    assert_eq!(
        read("output_schema.json"),
        functions["run"]["output_schema"]
    );
    let setup = read("setup_schema.json");
    assert_eq!(setup["title"], "AppSetup");
    assert!(setup["properties"]["model"].is_object());
    assert!(std::fs::read_to_string(app.join("functions_schema.json"))
        .unwrap()
        .ends_with("}\n"));
}
