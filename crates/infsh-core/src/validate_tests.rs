//! Unit tests of input validation: messages and paths, on the real pydantic
//! schemas in `tests/data/functions_schema.json` and on small inline schemas.

use super::*;
use serde_json::json;

fn schemas() -> Value {
    serde_json::from_str(include_str!("../tests/data/functions_schema.json")).unwrap()
}

fn validator(function: &str) -> InputValidator {
    InputValidator::compile(&schemas()[function]["input_schema"]).unwrap()
}

/// The errors as `path: message` lines.
fn errors(v: &InputValidator, input: Value) -> Vec<String> {
    v.validate(&input)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn valid_inputs_pass() {
    let v = validator("generate");
    for input in [
        json!({"prompt": "a cat"}),
        json!({"prompt": "a", "guidance": 3, "seed": null, "style": "anime", "tags": ["x"]}),
        json!({"prompt": "a", "image": "https://example.com/a.png", "masks": {"m": {"uri": "data:,x"}}}),
        json!({"prompt": "a", "images": [{"url": {"path": "/tmp/x.png", "content_type": "image/png"}, "weight": 2}]}),
    ] {
        assert_eq!(v.validate(&input), Ok(()), "{input}");
        assert!(v.is_valid(&input));
    }
}

#[test]
fn missing_required_field_names_the_field() {
    let v = validator("generate");
    assert_eq!(
        v.validate(&json!({})).unwrap_err(),
        vec![FieldError {
            path: "prompt".into(),
            message: "is required".into()
        }]
    );
    assert_eq!(
        errors(
            &validator("generate"),
            json!({"prompt": "a", "regions": [{"x": 1}]})
        ),
        ["regions[0].y: is required"]
    );
}

#[test]
fn type_errors() {
    let v = validator("generate");
    assert_eq!(
        errors(&v, json!({"prompt": "a", "steps": "abc"})),
        [r#"steps: expected integer, got string "abc""#]
    );
    assert_eq!(
        errors(&v, json!({"prompt": "a", "steps": "5"})),
        [r#"steps: expected integer, got string "5""#]
    );
    assert_eq!(
        errors(&v, json!({"prompt": "a", "steps": 5.5})),
        ["steps: expected integer, got number 5.5"]
    );
    assert_eq!(
        errors(&v, json!({"prompt": "a", "tags": "a"})),
        [r#"tags: expected array, got string "a""#]
    );
    assert_eq!(
        errors(&v, json!({"prompt": true})),
        ["prompt: expected string, got boolean true"]
    );
    assert_eq!(
        errors(&v, json!([1])),
        ["(root): expected object, got array"]
    );
}

#[test]
fn all_errors_are_reported() {
    let v = validator("generate");
    assert_eq!(
        errors(&v, json!({"prompt": 5, "steps": "x", "seed": -3})),
        [
            "prompt: expected string, got integer 5",
            r#"steps: expected integer, got string "x""#,
            "seed: must be at least 0 (got -3)",
        ]
    );
}

#[test]
fn constraint_messages() {
    let v = validator("generate");
    let one = |input: Value| errors(&v, input).join("\n");
    assert_eq!(
        one(json!({"prompt": ""})),
        "prompt: must be at least 1 character long (got 0)"
    );
    assert_eq!(
        one(json!({"prompt": "x".repeat(201)})),
        "prompt: must be at most 200 characters long (got 201)"
    );
    assert_eq!(
        one(json!({"prompt": "a", "steps": 0})),
        "steps: must be at least 1 (got 0)"
    );
    assert_eq!(
        one(json!({"prompt": "a", "steps": 101})),
        "steps: must be at most 100 (got 101)"
    );
    assert_eq!(
        one(json!({"prompt": "a", "style": "oil"})),
        r#"style: must be one of: "photo", "anime" (got "oil")"#
    );
    assert_eq!(
        one(json!({"prompt": "a", "size": "1x1"})),
        r#"size: must be one of: "512x512", "1024x1024" (got "1x1")"#
    );
    assert_eq!(
        one(json!({"prompt": "a", "tags": vec!["a"; 6]})),
        "tags: must have at most 5 items (got 6)"
    );
    assert_eq!(
        one(json!({"prompt": "a", "code": "AB"})),
        r#"code: must match the pattern ^[a-z]+$ (got "AB")"#
    );
    assert_eq!(
        one(json!({"prompt": "a", "images": [{"url": "/a.png", "weight": 0}]})),
        "images[0].weight: must be greater than 0 (got 0)"
    );
    assert_eq!(
        errors(&validator("upscale"), json!({"image": "/a", "scale": 3})),
        ["scale: must be one of: 2, 4 (got 3)"]
    );
    assert_eq!(
        errors(
            &validator("caption"),
            json!({"image": "/a", "mode": "slow"})
        ),
        [r#"mode: must be "fast" (got "slow")"#]
    );
}

#[test]
fn optional_fields_explain_the_non_null_branch() {
    let v = validator("generate");
    assert_eq!(
        errors(&v, json!({"prompt": "a", "seed": -1})),
        ["seed: must be at least 0 (got -1)"]
    );
    assert_eq!(
        errors(&v, json!({"prompt": "a", "seed": "x"})),
        [r#"seed: expected integer or null, got string "x""#]
    );
    let c = validator("caption");
    assert_eq!(
        errors(&c, json!({"image": "/a", "region": {"x": 0, "y": "no"}})),
        [r#"region.y: expected integer, got string "no""#]
    );
    assert_eq!(
        errors(&c, json!({"image": "/a", "strict": {"a": 1, "b": 2}})),
        ["strict.b: unknown field"]
    );
    assert_eq!(
        errors(&c, json!({"image": "/a", "hint": [3]})),
        ["hint: expected integer or string or null, got array"]
    );
}

#[test]
fn tagged_unions_use_the_tag() {
    let c = validator("caption");
    assert_eq!(
        errors(&c, json!({"image": "/a", "shape": {"kind": "square"}})),
        ["shape.side: is required"]
    );
    assert_eq!(
        errors(&c, json!({"image": "/a", "shape": {"kind": "triangle"}})),
        [r#"shape.kind: must be one of: "circle", "square" (got "triangle")"#]
    );
    assert_eq!(
        errors(&c, json!({"image": "/a", "shape": {"r": 1}})),
        ["shape.kind: is required"]
    );
    assert_eq!(
        errors(&c, json!({"image": "/a", "shape": 3})),
        ["shape: expected object, got integer 3"]
    );
}

#[test]
fn file_fields_accept_strings_and_objects_only() {
    let c = validator("caption");
    for ok in [
        json!("/tmp/x.png"),
        json!({"uri": "https://x/y.png"}),
        json!({"path": "/p"}),
        json!("data:image/png;base64,AA=="),
    ] {
        assert_eq!(c.validate(&json!({"image": ok})), Ok(()), "{ok}");
    }
    assert_eq!(
        errors(&c, json!({"image": 5})),
        ["image: expected a file (URL, data URI, path, or an object with `uri` or `path`), got integer 5"]
    );
    assert_eq!(
        c.validate(&json!({"image": "/a", "extra": ["/b", {"path": "/c"}]})),
        Ok(())
    );
    assert_eq!(
        errors(&c, json!({"image": "/a", "extra": ["/b", 7]})),
        ["extra[1]: expected a file (URL, data URI, path, or an object with `uri` or `path`), got integer 7"]
    );
    assert_eq!(
        errors(&c, json!({"image": "/a", "extra": 7})),
        ["extra: expected file or array or null, got integer 7"]
    );
}

#[test]
fn unknown_formats_never_fail_and_known_formats_are_annotations() {
    let v = InputValidator::compile(&json!({
        "type": "object",
        "properties": {
            "a": {"type": "string", "format": "no-such-format"},
            "b": {"type": "string", "format": "date-time"},
            "c": {"type": "string", "format": "uri"}
        }
    }))
    .unwrap();
    assert_eq!(
        v.validate(&json!({"a": "x", "b": "2024-01-01T10:00:00", "c": "not a uri"})),
        Ok(())
    );
}

#[test]
fn numbers_accept_integers() {
    let v = InputValidator::compile(
        &json!({"type": "object", "properties": {"x": {"type": "number", "maximum": 2}}}),
    )
    .unwrap();
    assert_eq!(v.validate(&json!({"x": 1})), Ok(()));
    assert_eq!(
        errors(&v, json!({"x": 3})),
        ["x: must be at most 2 (got 3)"]
    );
    assert_eq!(
        errors(&v, json!({"x": "1"})),
        [r#"x: expected number, got string "1""#]
    );
}

#[test]
fn paths_for_odd_keys_and_dict_values() {
    let v = InputValidator::compile(&json!({
        "type": "object",
        "additionalProperties": {"type": "integer"}
    }))
    .unwrap();
    assert_eq!(
        errors(&v, json!({"a b": "x", "0": "y", "ok": 1})),
        [
            r#"["a b"]: expected integer, got string "x""#,
            r#"["0"]: expected integer, got string "y""#
        ]
    );
    let m = validator("generate");
    assert_eq!(
        errors(&m, json!({"prompt": "a", "masks": {"m1": 3}})),
        ["masks.m1: expected a file (URL, data URI, path, or an object with `uri` or `path`), got integer 3"]
    );
}

#[test]
fn several_fitting_branches_report_the_closest() {
    let v = InputValidator::compile(&json!({
        "$defs": {
            "A": {"type": "object", "properties": {"a": {"type": "integer"}, "n": {"type": "string"}}, "required": ["a", "n"]},
            "B": {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]}
        },
        "type": "object",
        "properties": {"u": {"anyOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]}}
    }))
    .unwrap();
    assert_eq!(
        errors(&v, json!({"u": {"b": "x"}})),
        [r#"u.b: expected integer, got string "x""#]
    );
    assert_eq!(errors(&v, json!({"u": {"a": 1}})), ["u.n: is required"]);
}

#[test]
fn recursive_models() {
    let v = InputValidator::compile(&json!({
        "$defs": {"Node": {"type": "object", "properties": {
            "v": {"type": "integer"},
            "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}
        }, "required": ["v"]}},
        "$ref": "#/$defs/Node"
    }))
    .unwrap();
    assert_eq!(
        v.validate(&json!({"v": 1, "next": {"v": 2, "next": null}})),
        Ok(())
    );
    assert_eq!(
        errors(
            &v,
            json!({"v": 1, "next": {"v": 2, "next": {"v": "three"}}})
        ),
        [r#"next.next.v: expected integer, got string "three""#]
    );
}

#[test]
fn long_strings_are_cut_in_messages() {
    let v = validator("generate");
    let long = "y".repeat(500);
    let msg = errors(&v, json!({"prompt": "a", "steps": long})).join("");
    assert!(msg.len() < 120, "{msg}");
    assert!(msg.contains("…"), "{msg}");
}

#[test]
fn display_and_describe() {
    let e = vec![
        FieldError {
            path: String::new(),
            message: "expected object, got null".into(),
        },
        FieldError {
            path: "a.b".into(),
            message: "is required".into(),
        },
    ];
    assert_eq!(
        describe_errors(&e),
        "(root): expected object, got null\na.b: is required"
    );
}

#[test]
fn bad_schemas_fail_to_compile() {
    let err = InputValidator::compile(&json!({"type": 5})).unwrap_err();
    assert!(err.to_string().starts_with("invalid input schema"), "{err}");
    // The message says where in the schema the problem is.
    let err = InputValidator::compile(&json!({"properties": {"n": {"minimum": "x"}}})).unwrap_err();
    assert!(
        err.message.starts_with("at /properties/n/minimum: "),
        "{err}"
    );
    assert!(err.message.contains("\"x\""), "{err}");
    assert!(InputValidator::compile(&json!({"$ref": "https://example.com/s.json"})).is_err());
}

#[test]
fn validator_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<InputValidator>();
}
