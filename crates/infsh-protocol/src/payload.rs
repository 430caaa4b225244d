//! [`Payload`]: a task's output as JSON, either parsed or kept as the text
//! the worker wrote.
//!
//! An output goes from the worker's frame to the store, the HTTP answer and
//! the stream without anyone looking inside it, unless it holds files to
//! rewrite, secrets to redact or file URLs to sign. Parsing a big output
//! (32 x 1024 floats: ~700 KB) into a `Value` and printing it again at each
//! of those steps cost milliseconds, and a parse changes what it cannot
//! hold (an integer beyond 64 bits becomes a float) or spells a number
//! differently than the worker did (`1e-05` comes back as `0.00001`). So the
//! worker's `done` output stays [`Payload::Raw`], copied but never parsed
//! or re-printed; the few steps that must change it turn it into
//! [`Payload::Value`] first ([`Payload::value_mut`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

#[derive(Clone)]
pub enum Payload {
    /// Parsed: built or changed by the host, or a snapshot.
    Value(Value),
    /// Valid JSON text, exactly as received (shared, so cloning a task view
    /// does not copy it).
    Raw(Arc<RawValue>),
}

impl Payload {
    /// Keeps `raw` as it is.
    pub fn from_raw(raw: Box<RawValue>) -> Payload {
        Payload::Raw(Arc::from(raw))
    }

    /// Takes `text` as the payload when it is valid JSON (checked, not
    /// parsed into a tree); the stored form of an output.
    pub fn from_json_text(text: String) -> Result<Payload, serde_json::Error> {
        RawValue::from_string(text).map(Payload::from_raw)
    }

    /// The JSON text: borrowed when raw, printed when parsed.
    pub fn json_text(&self) -> Cow<'_, str> {
        match self {
            Payload::Raw(raw) => Cow::Borrowed(raw.get()),
            Payload::Value(v) => Cow::Owned(v.to_string()),
        }
    }

    /// The parsed value (parsed here when raw). Raw text that JSON allows
    /// but `Value` cannot hold (a number beyond f64's range) reads as null.
    pub fn to_value(&self) -> Cow<'_, Value> {
        match self {
            Payload::Value(v) => Cow::Borrowed(v),
            Payload::Raw(raw) => Cow::Owned(parse(raw)),
        }
    }

    pub fn into_value(self) -> Value {
        match self {
            Payload::Value(v) => v,
            Payload::Raw(raw) => parse(&raw),
        }
    }

    /// The value to change in place: a raw payload is parsed first (and
    /// stays parsed).
    pub fn value_mut(&mut self) -> &mut Value {
        if let Payload::Raw(raw) = self {
            *self = Payload::Value(parse(raw));
        }
        match self {
            Payload::Value(v) => v,
            Payload::Raw(_) => unreachable!("parsed above"),
        }
    }

    /// Whether the JSON text may hold `needle` inside a string: a cheap
    /// look before parsing a raw payload to change it. True whenever the
    /// text has an escape (`\`), which could spell any character.
    pub fn may_contain(&self, needle: &str) -> bool {
        match self {
            Payload::Value(_) => true,
            Payload::Raw(raw) => {
                let text = raw.get();
                text.contains('\\') || text.contains(needle)
            }
        }
    }

    pub fn is_raw(&self) -> bool {
        matches!(self, Payload::Raw(_))
    }
}

fn parse(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

impl From<Value> for Payload {
    fn from(v: Value) -> Payload {
        Payload::Value(v)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Value(v) => fmt::Debug::fmt(v, f),
            Payload::Raw(raw) => write!(f, "Raw({})", raw.get()),
        }
    }
}

/// Equal when the values are (two raw texts: when the texts are, or their
/// values).
impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        if let (Payload::Raw(a), Payload::Raw(b)) = (self, other) {
            if a.get() == b.get() {
                return true;
            }
        }
        *self.to_value() == *other.to_value()
    }
}

impl PartialEq<Value> for Payload {
    fn eq(&self, other: &Value) -> bool {
        *self.to_value() == *other
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::Value(v) => v.serialize(s),
            // serde_json writes it verbatim.
            Payload::Raw(raw) => raw.serialize(s),
        }
    }
}

/// Parsed: a payload read from a request or a report can sit anywhere in a
/// message (RawValue needs serde_json's own deserializer, which a
/// flattened or tagged container does not give).
impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Payload, D::Error> {
        Value::deserialize(d).map(Payload::Value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(text: &str) -> Payload {
        Payload::from_json_text(text.to_string()).unwrap()
    }

    #[test]
    fn raw_text_is_written_as_received() {
        let text = r#"{"n":1180591620717411303424,"v":[1e-05,1.0]}"#;
        let p = raw(text);
        let through_value = serde_json::to_string(&json!({"output": p})).unwrap();
        assert!(
            through_value.starts_with(r#"{"output":{"n":1.18059162071741"#),
            "through a Value an integer beyond 64 bits becomes a float: {through_value}"
        );
        assert!(!through_value.contains("1e-05"), "{through_value}");
        #[derive(Serialize)]
        struct Reply<'a> {
            output: &'a Payload,
        }
        assert_eq!(
            serde_json::to_string(&Reply { output: &p }).unwrap(),
            format!(r#"{{"output":{text}}}"#)
        );
        assert_eq!(p.json_text(), text);
    }

    #[test]
    fn invalid_text_is_refused() {
        let e = Payload::from_json_text("{\"a\":".into()).unwrap_err();
        assert!(e.is_eof(), "{e}");
    }

    #[test]
    fn value_mut_parses_once_and_keeps_the_change() {
        let mut p = raw(r#"{"a":{"path":"/x"}}"#);
        assert!(p.is_raw());
        p.value_mut()["a"].as_object_mut().unwrap().remove("path");
        assert!(!p.is_raw());
        assert_eq!(p, json!({"a": {}}));
        assert_eq!(p.json_text(), r#"{"a":{}}"#);
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(raw("[1, 2]"), raw("[1,2]"));
        assert_eq!(raw("[1,2]"), Payload::from(json!([1, 2])));
        assert_ne!(raw("[1,2]"), raw("[2,1]"));
    }

    #[test]
    fn may_contain_looks_at_the_text_and_its_escapes() {
        assert!(raw(r#"["xsecretx"]"#).may_contain("secret"));
        assert!(!raw(r#"["public"]"#).may_contain("secret"));
        assert!(raw(r#"["\u0073ecret"]"#).may_contain("secret"));
        assert!(Payload::from(json!("public")).may_contain("secret"));
    }

    #[test]
    fn a_number_beyond_f64_reads_as_null() {
        assert_eq!(raw("1e999").into_value(), Value::Null);
    }
}
