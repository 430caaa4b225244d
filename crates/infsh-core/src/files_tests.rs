//! Unit tests of `File` input discovery and local path resolution.

use super::*;
use serde_json::json;

fn schemas() -> Value {
    serde_json::from_str(include_str!("../tests/data/functions_schema.json")).unwrap()
}

fn input_schema(function: &str) -> Value {
    schemas()[function]["input_schema"].clone()
}

#[test]
fn finds_file_values_everywhere_the_schema_puts_them() {
    let schema = input_schema("generate");
    let input = json!({
        "prompt": "not a file",
        "image": "a.png",
        "images": [{"url": "b.png", "weight": 1}, {"url": {"uri": "https://x/c.png"}}],
        "masks": {"m1": "m.png", "m/2": {"path": "n.png"}},
        "regions": [{"x": 1, "y": 2, "label": "also not a file"}]
    });
    let found = file_fields(&schema, &input);
    let pointers: Vec<&str> = found.iter().map(|f| f.pointer.as_str()).collect();
    assert_eq!(
        pointers,
        [
            "/image",
            "/images/0/url",
            "/images/1/url",
            "/masks/m1",
            "/masks/m~12"
        ]
    );
    assert_eq!(found[2].value, json!({"uri": "https://x/c.png"}));
}

#[test]
fn follows_unions_and_skips_nulls_and_non_files() {
    let schema = input_schema("caption");
    let input = json!({"image": "i.png", "extra": ["a.png", "b.png"], "hint": "h.png"});
    assert_eq!(
        file_pointers(&schema, &input),
        ["/image", "/extra/0", "/extra/1"]
    );
    let input = json!({"image": "i.png", "extra": "a.png"});
    assert_eq!(file_pointers(&schema, &input), ["/image", "/extra"]);
    let input = json!({"image": {"content_type": "image/png"}, "extra": null});
    assert!(
        file_pointers(&schema, &input).is_empty(),
        "an object without uri/path is not a file value"
    );
}

#[test]
fn prefix_items_and_tuples() {
    let schema = json!({
        "type": "object",
        "properties": {
            "pair": {"type": "array", "prefixItems": [{"type": "string", "format": "file"}, {"type": "integer"}]},
            "old": {"type": "array", "items": [{"type": "integer"}, {"type": "string", "format": "file"}]}
        }
    });
    let input = json!({"pair": ["a.png", 3], "old": [1, "b.png"]});
    assert_eq!(file_pointers(&schema, &input), ["/pair/0", "/old/1"]);
}

#[test]
fn resolves_relative_paths_against_the_base() {
    let base = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join("a.png"), b"x").unwrap();
    std::fs::create_dir(base.path().join("sub")).unwrap();
    std::fs::write(base.path().join("sub/b.png"), b"x").unwrap();
    let abs = base.path().join("sub/b.png");
    let schema = input_schema("generate");
    let mut input = json!({
        "prompt": "p",
        "image": "./a.png",
        "images": [
            {"url": "sub/b.png"},
            {"url": {"path": "a.png", "content_type": "image/png"}},
            {"url": "https://example.com/c.png"},
            {"url": {"uri": "http://example.com/d.png"}}
        ],
        "masks": {"abs": abs.to_str().unwrap(), "data": "data:image/png;base64,AAAA", "url": format!("file://{}", abs.display())}
    });
    let local = resolve_local_paths(&schema, &mut input, base.path()).unwrap();
    assert_eq!(
        local,
        [
            "/image",
            "/images/0/url",
            "/images/1/url",
            "/masks/abs",
            "/masks/url"
        ]
    );
    let b = base.path();
    assert_eq!(input["image"], b.join("a.png").to_str().unwrap());
    assert_eq!(
        input["images"][0]["url"],
        b.join("sub/b.png").to_str().unwrap()
    );
    assert_eq!(
        input["images"][1]["url"],
        json!({"path": b.join("a.png").to_str().unwrap(), "content_type": "image/png"})
    );
    assert_eq!(input["images"][2]["url"], "https://example.com/c.png");
    assert_eq!(
        input["images"][3]["url"],
        json!({"uri": "http://example.com/d.png"})
    );
    assert_eq!(input["masks"]["abs"], abs.to_str().unwrap());
    assert_eq!(input["masks"]["data"], "data:image/png;base64,AAAA");
    assert_eq!(input["masks"]["url"], abs.to_str().unwrap());
    assert_eq!(input["prompt"], "p");
}

#[test]
fn missing_files_name_the_field() {
    let base = tempfile::tempdir().unwrap();
    let schema = input_schema("generate");
    let mut input = json!({"prompt": "p", "images": [{"url": "nope.png"}]});
    let err = resolve_local_paths(&schema, &mut input, base.path()).unwrap_err();
    assert_eq!(
        err,
        FileInputError::NotFound {
            field: "images[0].url".into(),
            path: base.path().join("nope.png")
        }
    );
    assert!(err.to_string().contains("\"images[0].url\""), "{err}");
    let mut input = json!({"prompt": "p", "image": "."});
    let err = resolve_local_paths(&schema, &mut input, base.path()).unwrap_err();
    assert!(
        matches!(err, FileInputError::NotAFile { ref field, .. } if field == "image"),
        "{err}"
    );
}

#[test]
fn home_relative_paths() {
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    assert_eq!(
        absolute("~/x.png", Path::new("/base")),
        Path::new(&home).join("x.png")
    );
    assert_eq!(
        absolute("x/./y.png", Path::new("/base")),
        Path::new("/base/x/y.png")
    );
    assert_eq!(
        absolute("../y.png", Path::new("/base")),
        Path::new("/base/../y.png")
    );
}

#[test]
fn remote_values() {
    for remote in [
        "https://x/y",
        "HTTP://x",
        "data:,hi",
        "s3://bucket/k",
        "gs://b/o",
    ] {
        assert!(is_remote(remote), "{remote}");
    }
    for local in [
        "a.png",
        "/abs/a.png",
        "file:///abs/a.png",
        "c:/x",
        "weird:name.png",
        "./http://x",
    ] {
        assert!(!is_remote(local), "{local}");
    }
}

#[test]
fn schema_without_files_touches_nothing() {
    let schema = json!({"type": "object", "properties": {"p": {"type": "string"}}});
    let mut input = json!({"p": "missing.png"});
    assert_eq!(
        resolve_local_paths(&schema, &mut input, Path::new("/")).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(input, json!({"p": "missing.png"}));
}
