//! Every accepted form of an app reference, and every refused one with its
//! message. The spellings the engine, the server and both CLI paths
//! accepted before they shared [`AppRef`] are all here.

use super::*;

/// (namespace, name, version, function) of a parsed reference.
fn parts(raw: &str) -> (Option<String>, String, Option<String>, Option<String>) {
    let r: AppRef = raw
        .parse()
        .unwrap_or_else(|e| panic!("{raw:?} is refused: {e}"));
    (
        r.namespace().map(str::to_string),
        r.name().to_string(),
        r.version().map(str::to_string),
        r.function().map(str::to_string),
    )
}

fn want(
    ns: Option<&str>,
    name: &str,
    version: Option<&str>,
    function: Option<&str>,
) -> (Option<String>, String, Option<String>, Option<String>) {
    (
        ns.map(Into::into),
        name.into(),
        version.map(Into::into),
        function.map(Into::into),
    )
}

#[test]
fn accepted_forms() {
    let ns = Some("tests");
    for (raw, expected) in [
        ("tests/multi-fn", want(ns, "multi-fn", None, None)),
        (
            " tests/multi-fn@1.2.3 ",
            want(ns, "multi-fn", Some("1.2.3"), None),
        ),
        (
            "tests/multi-fn:generate",
            want(ns, "multi-fn", None, Some("generate")),
        ),
        (
            "tests/multi-fn@abc:generate",
            want(ns, "multi-fn", Some("abc"), Some("generate")),
        ),
        (
            "tests/multi-fn@1.2:upscale",
            want(ns, "multi-fn", Some("1.2"), Some("upscale")),
        ),
        ("ns/app:run", want(Some("ns"), "app", None, Some("run"))),
        // An empty function or version means none.
        ("tests/multi-fn:", want(ns, "multi-fn", None, None)),
        ("tests/multi-fn@", want(ns, "multi-fn", None, None)),
        (
            "tests/multi-fn@:run",
            want(ns, "multi-fn", None, Some("run")),
        ),
        // Whitespace around the separators is ignored.
        (
            "tests/multi-fn @ 2 : run ",
            want(ns, "multi-fn", Some("2"), Some("run")),
        ),
        // A bare name (the engine resolves it to the one app of that name).
        ("multi-fn", want(None, "multi-fn", None, None)),
        ("just-a-name", want(None, "just-a-name", None, None)),
        (
            "multi-fn@1:run",
            want(None, "multi-fn", Some("1"), Some("run")),
        ),
        // Names as an inf.yml or a folder may spell them.
        ("local/My App", want(Some("local"), "My App", None, None)),
        (
            "ns/flux.1-dev_v2",
            want(Some("ns"), "flux.1-dev_v2", None, None),
        ),
        // The version is kept as given.
        (
            "ns/app@sha256-abc/def",
            want(Some("ns"), "app", Some("sha256-abc/def"), None),
        ),
    ] {
        assert_eq!(parts(raw), expected, "{raw:?}");
    }
}

#[test]
fn display_is_canonical_and_parses_back() {
    for (raw, shown, id) in [
        ("tests/multi-fn", "tests/multi-fn", "tests/multi-fn"),
        (
            " tests/multi-fn @ 1 : run",
            "tests/multi-fn@1:run",
            "tests/multi-fn",
        ),
        ("tests/multi-fn:", "tests/multi-fn", "tests/multi-fn"),
        ("multi-fn:run", "multi-fn:run", "multi-fn"),
    ] {
        let r: AppRef = raw.parse().unwrap();
        assert_eq!(r.to_string(), shown);
        assert_eq!(r.id(), id);
        assert_eq!(shown.parse::<AppRef>().unwrap(), r);
    }
    let r: AppRef = "tests/multi-fn@1.2:upscale".parse().unwrap();
    assert_eq!(r.without_function().to_string(), "tests/multi-fn@1.2");
    assert_eq!(
        r.without_function()
            .with_function(Some("run".into()))
            .to_string(),
        "tests/multi-fn@1.2:run"
    );
    assert_eq!(
        AppRef::try_from("a/b").unwrap(),
        AppRef::new("a", "b").unwrap()
    );
}

#[test]
fn refused_forms_and_their_messages() {
    const E: &str = "expected NAMESPACE/NAME[@VERSION][:FUNCTION]";
    for (raw, message) in [
        ("", format!("the app reference is empty; {E}")),
        ("   ", format!("the app reference is empty; {E}")),
        (
            "a/b/c",
            format!("invalid app reference \"a/b/c\": more than one \"/\"; {E}"),
        ),
        (
            "ns/app@1@2",
            format!("invalid app reference \"ns/app@1@2\": more than one \"@\"; {E}"),
        ),
        (
            "/app",
            format!("invalid app reference \"/app\": the namespace is empty; {E}"),
        ),
        (
            "ns/",
            format!("invalid app reference \"ns/\": the name is empty; {E}"),
        ),
        (
            "ns/@1",
            format!("invalid app reference \"ns/@1\": the name is empty; {E}"),
        ),
        (
            ":run",
            format!("invalid app reference \":run\": the name is empty; {E}"),
        ),
        (
            "./app",
            format!("invalid app reference \"./app\": the namespace may not be \".\" or \"..\"; {E}"),
        ),
        (
            "ns/..",
            format!("invalid app reference \"ns/..\": the name may not be \".\" or \"..\"; {E}"),
        ),
        (
            "ns/a\u{7}b",
            format!("invalid app reference \"ns/a\\u{{7}}b\": the name contains a control character; {E}"),
        ),
        (
            "ns/app@1\u{0}",
            format!("invalid app reference \"ns/app@1\\0\": the version contains a control character; {E}"),
        ),
        (
            "ns/app:r\tun",
            format!("invalid app reference \"ns/app:r\\tun\": the function contains a control character; {E}"),
        ),
        (
            "ns/app:fn@1",
            format!("invalid app reference \"ns/app:fn@1\": the function may not contain '@'; {E}"),
        ),
        (
            "./my-app:sub/dir",
            format!("invalid app reference \"./my-app:sub/dir\": the function may not contain '/'; {E}"),
        ),
    ] {
        let err = raw.parse::<AppRef>().unwrap_err();
        assert_eq!(err.to_string(), message, "{raw:?}");
    }
}

#[test]
fn new_checks_each_part() {
    let r = AppRef::new("tests", "multi-fn").unwrap();
    assert_eq!(r, "tests/multi-fn".parse().unwrap());
    const E: &str = "expected NAMESPACE/NAME[@VERSION][:FUNCTION]";
    for ((ns, name), message) in [
        (
            ("", "x"),
            format!("invalid app reference \"/x\": the namespace is empty; {E}"),
        ),
        (
            ("ns", ".."),
            format!("invalid app reference \"ns/..\": the name may not be \".\" or \"..\"; {E}"),
        ),
        (
            ("ns", "a:b"),
            format!("invalid app reference \"ns/a:b\": the name may not contain ':'; {E}"),
        ),
        (
            ("n@s", "a"),
            format!("invalid app reference \"n@s/a\": the namespace may not contain '@'; {E}"),
        ),
        (
            ("ns", "a/b"),
            format!("invalid app reference \"ns/a/b\": the name may not contain '/'; {E}"),
        ),
    ] {
        assert_eq!(
            AppRef::new(ns, name).unwrap_err().to_string(),
            message,
            "{ns:?} {name:?}"
        );
    }
}

#[test]
fn split_function_keeps_paths_whole_where_it_must() {
    assert_eq!(
        split_function("./nope:upscale").unwrap(),
        ("./nope", Some("upscale"))
    );
    assert_eq!(split_function(".").unwrap(), (".", None));
    assert_eq!(split_function("./app:").unwrap(), ("./app", None));
    assert_eq!(split_function("a:b/c:run").unwrap(), ("a:b/c", Some("run")));
    assert!(matches!(
        split_function("./a:b/c"),
        Err(AppRefError::Reserved {
            part: Part::Function,
            found: '/',
            ..
        })
    ));
}
