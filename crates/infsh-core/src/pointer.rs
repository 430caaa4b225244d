//! JSON pointers (RFC 6901) into inputs, and their human-readable form
//! (`images[0].url`) used in every error message a user sees.

use serde_json::Value;

/// Escapes one reference token (`~` → `~0`, `/` → `~1`).
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Unescapes one reference token.
pub fn unescape_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// The tokens of a pointer (`""` → none; `/a/0` → `a`, `0`).
pub fn tokens(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer.split('/').skip(1).map(unescape_token).collect()
}

/// Appends one token to a pointer.
pub fn push(pointer: &str, token: &str) -> String {
    format!("{pointer}/{}", escape_token(token))
}

/// The human-readable form of `pointer` into `root`: object keys joined with
/// `.` (or `["key"]` when not identifier-like), array indexes as `[i]`. A token
/// is an index only when the value it indexes is an array (an object key `"0"`
/// reads `["0"]`). The root is `""` (shown as `(root)` by [`display_path`]).
pub fn human_path(root: &Value, pointer: &str) -> String {
    let mut out = String::new();
    let mut current = Some(root);
    for token in tokens(pointer) {
        match current {
            Some(Value::Array(items)) if token.parse::<usize>().is_ok() => {
                let i: usize = token.parse().expect("checked");
                out.push_str(&format!("[{i}]"));
                current = items.get(i);
            }
            other => {
                push_key(&mut out, &token);
                current = other.and_then(|v| v.get(&token));
            }
        }
    }
    out
}

/// Appends an object key to a human path.
pub fn push_key(out: &mut String, key: &str) {
    let identifier = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if identifier {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    } else {
        out.push('[');
        out.push_str(&serde_json::to_string(key).expect("a string serializes"));
        out.push(']');
    }
}

/// A human path for display: the root (`""`) reads `(root)`.
pub fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "(root)"
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_round_trip() {
        assert!(tokens("").is_empty());
        assert_eq!(tokens("/a~1b/c~0d/0"), vec!["a/b", "c~d", "0"]);
        assert_eq!(push(&push("", "a/b"), "~"), "/a~1b/~0");
    }

    #[test]
    fn human_paths() {
        let v = json!({"images": [{"url": "x"}], "masks": {"0": "m", "a b": 1}, "x-y": {"z_1": 2}});
        assert_eq!(human_path(&v, ""), "");
        assert_eq!(human_path(&v, "/images/0/url"), "images[0].url");
        assert_eq!(human_path(&v, "/masks/0"), "masks[\"0\"]");
        assert_eq!(human_path(&v, "/masks/a b"), "masks[\"a b\"]");
        assert_eq!(human_path(&v, "/x-y/z_1"), "x-y.z_1");
        // Past what the value holds: tokens read as keys.
        assert_eq!(human_path(&v, "/missing/3"), "missing[\"3\"]");
        assert_eq!(display_path(""), "(root)");
        assert_eq!(display_path("a"), "a");
    }
}
