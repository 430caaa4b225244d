//! What the YAML files infsh reads (`inf.yml` here, `engine.yml` in
//! infsh-placement) share: where a `serde_norway` error is, how a location
//! is written in messages, and `key:` with nothing after it read as the
//! default.

use std::path::Path;

use serde::{Deserialize, Deserializer};

/// A parse error's 1-based line and column (0 when the parser could not
/// tell) and its message without serde_norway's " at line L column C",
/// which the location reports once, in front.
pub fn error_at(e: &serde_norway::Error) -> (usize, usize, String) {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    (line, column, strip_location(&e.to_string()))
}

/// `path:line:column`, or the path alone when the line is unknown (0).
pub fn location(path: &Path, line: usize, column: usize) -> String {
    if line == 0 {
        path.display().to_string()
    } else {
        format!("{}:{line}:{column}", path.display())
    }
}

/// For `#[serde(deserialize_with)]`: `null` (a key with no value) is the
/// type's default, as if the key were absent.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn strip_location(message: &str) -> String {
    let Some(start) = message.find(" at line ") else {
        return message.to_string();
    };
    let rest = &message[start + " at line ".len()..];
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = digits(rest);
    let Some(after) = rest[n..].strip_prefix(" column ") else {
        return message.to_string();
    };
    let m = digits(after);
    format!("{}{}", &message[..start], &after[m..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_location_is_taken_out_of_the_message() {
        let e = serde_norway::from_str::<Vec<u32>>("[1, x]").unwrap_err();
        let (line, column, message) = error_at(&e);
        assert_eq!((line, column), (1, 5));
        assert!(!message.contains(" at line "), "{message}");
        assert_eq!(
            strip_location("a: bad at line 3 column 7, while parsing"),
            "a: bad, while parsing"
        );
        assert_eq!(strip_location("at line nothing"), "at line nothing");
        assert_eq!(location(Path::new("inf.yml"), 0, 0), "inf.yml");
        assert_eq!(location(Path::new("inf.yml"), 3, 7), "inf.yml:3:7");
    }
}
