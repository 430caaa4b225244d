//! [`Redactor`]: keeps the values of configured secrets out of everything
//! the engine stores or prints. Any occurrence of a secret value in a log
//! line, a task's error, its output (and streamed snapshots), an app's
//! last error or traceback, or a line the engine logs on the server's
//! stderr is replaced by [`REDACTED`].
//!
//! Every value of `EngineConfig::secrets` is redacted, whether or not the
//! app declares it. Values shorter than [`MIN_SECRET_LEN`] characters are
//! not: they cannot be told apart from ordinary text, and replacing them
//! would mangle every line. A task's `input`, `setup` and `metadata` are the
//! client's own and are stored as sent.

use std::borrow::Cow;
use std::collections::BTreeMap;

use infsh_protocol::Payload;
use serde_json::Value;

/// What a secret value is replaced with.
pub const REDACTED: &str = "[redacted]";
/// Shorter secret values are not redacted.
pub const MIN_SECRET_LEN: usize = 4;

#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole.
    needles: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: &BTreeMap<String, String>) -> Redactor {
        let mut needles: Vec<String> = secrets
            .values()
            .filter(|v| v.chars().count() >= MIN_SECRET_LEN)
            .cloned()
            .collect();
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Redactor { needles }
    }

    /// `text` with every secret value replaced.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = Cow::Owned(out.replace(needle.as_str(), REDACTED));
            }
        }
        out
    }

    pub fn string(&self, text: String) -> String {
        match self.text(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(redacted) => redacted,
        }
    }

    pub fn option(&self, text: Option<String>) -> Option<String> {
        text.map(|t| self.string(t))
    }

    /// A task's output: a raw one ([`Payload::Raw`]) is parsed, and then
    /// kept parsed, only when its text may hold a secret.
    pub fn payload(&self, payload: &mut Payload) {
        if self.needles.iter().any(|n| payload.may_contain(n)) {
            self.json(payload.value_mut());
        }
    }

    /// Every string in `value` (object keys too), in place.
    pub fn json(&self, value: &mut Value) {
        if self.needles.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(redacted) = self.text(s) {
                    *s = redacted;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => {
                let leaky: Vec<String> = map
                    .keys()
                    .filter(|k| matches!(self.text(k), Cow::Owned(_)))
                    .cloned()
                    .collect();
                for key in leaky {
                    if let Some(v) = map.remove(&key) {
                        map.insert(self.string(key), v);
                    }
                }
                map.values_mut().for_each(|v| self.json(v));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redactor(values: &[&str]) -> Redactor {
        let secrets = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("K{i}"), v.to_string()))
            .collect();
        Redactor::new(&secrets)
    }

    #[test]
    fn replaces_every_occurrence_longest_first() {
        let r = redactor(&["hunter2-secret", "hunter2-secret-longer", "abc", ""]);
        assert_eq!(
            r.text("a hunter2-secret-longer and hunter2-secret, hunter2-secret"),
            "a [redacted] and [redacted], [redacted]"
        );
        assert!(matches!(r.text("nothing here"), Cow::Borrowed(_)));
        assert_eq!(r.text("abc is too short"), "abc is too short");
        assert_eq!(
            r.option(Some("x hunter2-secret".into())).as_deref(),
            Some("x [redacted]")
        );
    }

    #[test]
    fn redacts_json_strings_and_keys() {
        let r = redactor(&["s3cr3t-value"]);
        let mut v = json!({
            "a": "s3cr3t-value",
            "list": ["x s3cr3t-value y", 1, null, {"s3cr3t-value": "k"}],
            "n": 3,
        });
        r.json(&mut v);
        assert_eq!(
            v,
            json!({
                "a": "[redacted]",
                "list": ["x [redacted] y", 1, null, {"[redacted]": "k"}],
                "n": 3,
            })
        );
    }

    #[test]
    fn a_raw_output_is_parsed_only_when_it_may_hold_a_secret() {
        let r = redactor(&["hunter2-secret"]);
        let mut clean = Payload::from_json_text(r#"{"v":[1e-05]}"#.into()).unwrap();
        r.payload(&mut clean);
        assert!(clean.is_raw(), "left as the worker wrote it");
        let mut leaky =
            Payload::from_json_text(r#"{"v":"x hunter2-secret","w":"\u0068unter2-secret"}"#.into())
                .unwrap();
        r.payload(&mut leaky);
        assert_eq!(leaky, json!({"v": "x [redacted]", "w": "[redacted]"}));
    }
}
