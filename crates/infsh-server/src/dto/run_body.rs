//! The bodies that create tasks. Both run routes take the same options
//! ([`RunOptions`]); `POST /apps/run` adds `app` and `function`, which the
//! per-function route has in its path.
//!
//! [`RunBody`] deserializes by hand. A derived struct with
//! `#[serde(flatten)]` options would buffer the body first: its errors would
//! lose the field and the position (`wait: invalid type: string "yes",
//! expected a boolean at line 1 column 29` would become `invalid type: ...
//! at line 1 column 30`), and a positional (array) body would no longer be
//! read. So `app` and `function` are taken out of the map as it streams by,
//! and every other key goes to `RunOptions`' derived visitor: the errors are
//! exactly those of one derived struct of all nine fields (pinned by the
//! tests below).

use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

// The OpenAPI component keeps the name the per-function body had before
// both bodies shared this type.
/// The options of a run: the body of
/// `POST /apps/{namespace}/{name}/functions/{function}/run` (the app and
/// function are in the path), and all of `POST /apps/run`'s body but `app`
/// and `function`. Unknown keys are ignored.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(as = FunctionRunBody)]
pub struct RunOptions {
    /// The function's input; `null` or missing means `{}`.
    #[serde(default)]
    pub input: Option<Value>,
    /// Setup config for the app's `setup` (default `{}`).
    #[serde(default)]
    pub setup: Option<Value>,
    /// Absolute http(s) URL POSTed the terminal task (anything else is a 400).
    #[serde(default)]
    pub webhook: Option<String>,
    /// `"new"` opens a session (one replica of the app leased to it); a
    /// session id (`sess_…`) continues one (docs/sessions.md).
    #[serde(default)]
    pub session: Option<String>,
    /// Free-form metadata stored with the task.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Block until the task ends and return it with its output
    /// (same as `?wait=true`).
    #[serde(default)]
    pub wait: Option<bool>,
    /// Per-task timeout in seconds.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Pins the run to named workers of remote engines (`infsh engine
    /// run`): an engine's name, or one of its slots as `ENGINE-KIND-ID`
    /// (e.g. `gpu-box-1-gpu-0`); only an engine with one of them takes it.
    /// Refused (400) for an app this server hosts itself.
    #[serde(default)]
    pub workers: Option<Vec<String>>,
    /// Where the run may go: `private` (this deployment's own engines) is
    /// the only value infsh has; any other is a 400.
    #[serde(default)]
    pub infra: Option<String>,
    /// Idle timeout of a new session in seconds, 1 to 3600 (default 60);
    /// only with `"session": "new"` (else 400).
    #[serde(default)]
    pub session_timeout: Option<i64>,
    /// When the task may start, as an RFC 3339 time
    /// (`2026-01-02T03:04:05Z`): it stays QUEUED until then, across a
    /// restart. A time past runs at once; one that does not parse is a 400.
    #[serde(default)]
    pub run_at: Option<String>,
}

/// Body of `POST /apps/{namespace}/{name}/functions/{function}/run`: the
/// options alone (the app and function are in the path). A newtype so that
/// a body of the wrong kind still reads "expected struct FunctionRunBody"
/// (serde names the Rust type there).
#[derive(Debug, Clone, Default)]
pub struct FunctionRunBody(pub RunOptions);

/// Body of `POST /apps/run`, `POST /run` and `POST /v1/run`: the user's
/// params dict as the client forwards it. Unknown keys are ignored.
#[derive(Debug, Clone, Default, ToSchema)]
pub struct RunBody {
    /// `namespace/name`, `namespace/name@version`,
    /// `namespace/name:function` or `namespace/name@version:function`.
    #[schema(example = "tests/multi-fn")]
    pub app: String,
    /// Function to call; default: the app's default function (or the one
    /// named after `:` in `app`).
    #[serde(default)]
    pub function: Option<String>,
    #[serde(flatten)]
    pub options: RunOptions,
}

/// Every field, in the order a positional (array) body gives them.
const RUN_BODY_FIELDS: &[&str] = &[
    "app",
    "function",
    "input",
    "setup",
    "webhook",
    "session",
    "metadata",
    "wait",
    "timeout",
    "workers",
    "infra",
    "session_timeout",
    "run_at",
];

impl<'de> Deserialize<'de> for FunctionRunBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(
            "FunctionRunBody",
            &RUN_BODY_FIELDS[2..],
            FunctionRunBodyVisitor,
        )
    }
}

struct FunctionRunBodyVisitor;

impl<'de> Visitor<'de> for FunctionRunBodyVisitor {
    type Value = FunctionRunBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct FunctionRunBody")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<FunctionRunBody, A::Error> {
        RunOptions::deserialize(SeqAccessDeserializer::new(seq)).map(FunctionRunBody)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FunctionRunBody, A::Error> {
        RunOptions::deserialize(MapAccessDeserializer::new(map)).map(FunctionRunBody)
    }
}

impl<'de> Deserialize<'de> for RunBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("RunBody", RUN_BODY_FIELDS, RunBodyVisitor)
    }
}

struct RunBodyVisitor;

impl<'de> Visitor<'de> for RunBodyVisitor {
    type Value = RunBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct RunBody")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RunBody, A::Error> {
        let app = seq
            .next_element::<String>()?
            .ok_or_else(|| de::Error::invalid_length(0, &"struct RunBody with 11 elements"))?;
        let function = seq.next_element::<Option<String>>()?.flatten();
        let options = RunOptions::deserialize(SeqAccessDeserializer::new(&mut seq))?;
        Ok(RunBody {
            app,
            function,
            options,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RunBody, A::Error> {
        let mut keys = OptionKeys {
            map,
            app: None,
            function: None,
        };
        let options = RunOptions::deserialize(MapAccessDeserializer::new(&mut keys))?;
        let app = keys.app.ok_or_else(|| de::Error::missing_field("app"))?;
        Ok(RunBody {
            app,
            function: keys.function.flatten(),
            options,
        })
    }
}

/// A run body's map as `RunOptions` sees it: `app` and `function` are read
/// (and kept) on the way, every other key is passed on.
struct OptionKeys<A> {
    map: A,
    app: Option<String>,
    function: Option<Option<String>>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for OptionKeys<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<String>()? {
            match key.as_str() {
                "app" => {
                    if self.app.is_some() {
                        return Err(de::Error::duplicate_field("app"));
                    }
                    self.app = Some(self.map.next_value()?);
                }
                "function" => {
                    if self.function.is_some() {
                        return Err(de::Error::duplicate_field("function"));
                    }
                    self.function = Some(self.map.next_value()?);
                }
                _ => {
                    let key: de::value::StringDeserializer<A::Error> = key.into_deserializer();
                    return seed.deserialize(key).map(Some);
                }
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Problem;
    use serde_json::json;

    /// What `ApiJson` answers for `body`, as the problem's detail ("OK" if
    /// it deserializes).
    fn detail<T: serde::de::DeserializeOwned>(body: &str) -> String {
        match axum::Json::<T>::from_bytes(body.as_bytes()) {
            Ok(_) => "OK".into(),
            Err(e) => Problem::from(e).detail.clone(),
        }
    }

    /// The details as they were when both bodies were plain derived structs
    /// (one of nine fields, one of seven): `(body, RunBody, FunctionRunBody)`.
    #[test]
    fn errors_are_those_of_derived_structs() {
        let cases = [
            ("{\"input\": {}}",
             "invalid request body: Failed to deserialize the JSON body into the target type: missing field `app` at line 1 column 13",
             "OK"),
            ("[1, 2]",
             "invalid request body: Failed to deserialize the JSON body into the target type: [0]: invalid type: integer `1`, expected a string at line 1 column 2",
             "OK"),
            ("[\"ns/a\"]",
             "OK",
             "OK"),
            ("[]",
             "invalid request body: Failed to deserialize the JSON body into the target type: invalid length 0, expected struct RunBody with 11 elements at line 1 column 2",
             "OK"),
            ("[\"ns/a\", \"fn\", {\"x\": 1}, {}, \"http://h\", \"new\", {}, true, 5]",
             "OK",
             "invalid request body: Failed to deserialize the JSON body into the target type: [2]: invalid type: map, expected a string at line 1 column 15"),
            ("[\"ns/a\", \"fn\", {\"x\": 1}, {}, \"http://h\", \"new\", {}, true, 5, 6]",
             "invalid request body: Failed to deserialize the JSON body into the target type: [9]: invalid type: integer `6`, expected a sequence at line 1 column 62",
             "invalid request body: Failed to deserialize the JSON body into the target type: [2]: invalid type: map, expected a string at line 1 column 15"),
            ("[\"ns/a\", 3]",
             "invalid request body: Failed to deserialize the JSON body into the target type: [1]: invalid type: integer `3`, expected a string at line 1 column 10",
             "OK"),
            ("[\"ns/a\", null, null, null, null, null, null, \"no\"]",
             "invalid request body: Failed to deserialize the JSON body into the target type: [7]: invalid type: string \"no\", expected a boolean at line 1 column 49",
             "invalid request body: Failed to deserialize the JSON body into the target type: [7]: invalid type: string \"no\", expected a sequence at line 1 column 49"),
            ("{\"app\": \"ns/a\", \"wait\": \"yes\"}",
             "invalid request body: Failed to deserialize the JSON body into the target type: wait: invalid type: string \"yes\", expected a boolean at line 1 column 29",
             "invalid request body: Failed to deserialize the JSON body into the target type: wait: invalid type: string \"yes\", expected a boolean at line 1 column 29"),
            ("{\"app\": \"ns/a\", \"timeout\": \"10\"}",
             "invalid request body: Failed to deserialize the JSON body into the target type: timeout: invalid type: string \"10\", expected f64 at line 1 column 31",
             "invalid request body: Failed to deserialize the JSON body into the target type: timeout: invalid type: string \"10\", expected f64 at line 1 column 31"),
            ("{\"app\": 5}",
             "invalid request body: Failed to deserialize the JSON body into the target type: app: invalid type: integer `5`, expected a string at line 1 column 9",
             "OK"),
            ("{\"app\": \"ns/a\", \"input\": {}, \"input\": {}}",
             "invalid request body: Failed to deserialize the JSON body into the target type: duplicate field `input` at line 1 column 36",
             "invalid request body: Failed to deserialize the JSON body into the target type: duplicate field `input` at line 1 column 36"),
            ("{\"app\": \"ns/a\", \"app\": \"x/y\"}",
             "invalid request body: Failed to deserialize the JSON body into the target type: duplicate field `app` at line 1 column 21",
             "OK"),
            ("{\"function\": \"a\", \"function\": \"b\"}",
             "invalid request body: Failed to deserialize the JSON body into the target type: duplicate field `function` at line 1 column 28",
             "OK"),
            ("{\"app\": \"ns/a\", \"session\": 1}",
             "invalid request body: Failed to deserialize the JSON body into the target type: session: invalid type: integer `1`, expected a string at line 1 column 28",
             "invalid request body: Failed to deserialize the JSON body into the target type: session: invalid type: integer `1`, expected a string at line 1 column 28"),
            ("\"str\"",
             "invalid request body: Failed to deserialize the JSON body into the target type: invalid type: string \"str\", expected struct RunBody at line 1 column 5",
             "invalid request body: Failed to deserialize the JSON body into the target type: invalid type: string \"str\", expected struct FunctionRunBody at line 1 column 5"),
            ("null",
             "invalid request body: Failed to deserialize the JSON body into the target type: invalid type: null, expected struct RunBody at line 1 column 4",
             "invalid request body: Failed to deserialize the JSON body into the target type: invalid type: null, expected struct FunctionRunBody at line 1 column 4"),
            ("5",
             "invalid request body: Failed to deserialize the JSON body into the target type: invalid type: integer `5`, expected struct RunBody at line 1 column 1",
             "invalid request body: Failed to deserialize the JSON body into the target type: invalid type: integer `5`, expected struct FunctionRunBody at line 1 column 1"),
            ("{\"app\": null}",
             "invalid request body: Failed to deserialize the JSON body into the target type: app: invalid type: null, expected a string at line 1 column 12",
             "OK"),
            ("{\"app\": \"ns/a\", \"input\": {\"a\": 1}, \"function\": 3}",
             "invalid request body: Failed to deserialize the JSON body into the target type: function: invalid type: integer `3`, expected a string at line 1 column 48",
             "OK"),
            ("{\"wait\": true, \"webhook\": 1}",
             "invalid request body: Failed to deserialize the JSON body into the target type: webhook: invalid type: integer `1`, expected a string at line 1 column 27",
             "invalid request body: Failed to deserialize the JSON body into the target type: webhook: invalid type: integer `1`, expected a string at line 1 column 27"),
            ("{\"app\": \"ns/a\", \"x\": {\"deep\": [1, 2]}, \"metadata\": [1], \"setup\": \"s\"}",
             "OK",
             "OK"),
            ("{\"app\": \"ns/a\", \"timeout\": null, \"wait\": null, \"x\": 1}",
             "OK",
             "OK"),
            ("[{\"x\": 1}]",
             "invalid request body: Failed to deserialize the JSON body into the target type: [0]: invalid type: map, expected a string at line 1 column 1",
             "OK"),
            ("[null, \"no\"]",
             "invalid request body: Failed to deserialize the JSON body into the target type: [0]: invalid type: null, expected a string at line 1 column 5",
             "OK"),
            ("[{}, {}, \"h\", \"new\", {}, true, 5, 9]",
             "invalid request body: Failed to deserialize the JSON body into the target type: [0]: invalid type: map, expected a string at line 1 column 1",
             "invalid request body: Failed to deserialize the JSON body into the target type: [7]: invalid type: integer `9`, expected a sequence at line 1 column 35"),
        ];
        for (body, run, function_run) in cases {
            assert_eq!(detail::<RunBody>(body), run, "RunBody {body}");
            assert_eq!(
                detail::<FunctionRunBody>(body),
                function_run,
                "FunctionRunBody {body}"
            );
        }
    }

    #[test]
    fn run_body_ignores_unknown_keys_and_null_input() {
        let b: RunBody = serde_json::from_value(json!({
            "app": "ns/a@1:fn", "input": null, "surprise": 1, "session": "new"
        }))
        .unwrap();
        assert_eq!(b.app, "ns/a@1:fn");
        assert_eq!(b.options.input, None);
        assert_eq!(b.options.session.as_deref(), Some("new"));
    }

    #[test]
    fn every_field_lands_where_it_belongs() {
        let fields = json!({
            "app": "ns/a", "function": "fn", "input": {"x": 1}, "setup": {"s": 2},
            "webhook": "http://h", "session": "new", "metadata": {"m": 3},
            "wait": true, "timeout": 5, "workers": ["w1"], "infra": "private",
            "run_at": "2026-01-02T03:04:05Z"
        });
        let by_key: RunBody = serde_json::from_value(fields.clone()).unwrap();
        let positional: RunBody = serde_json::from_value(Value::Array(
            RUN_BODY_FIELDS.iter().map(|k| fields[*k].clone()).collect(),
        ))
        .unwrap();
        for b in [by_key, positional] {
            assert_eq!(b.app, "ns/a");
            assert_eq!(b.function.as_deref(), Some("fn"));
            let o = &b.options;
            assert_eq!(o.input, Some(json!({"x": 1})));
            assert_eq!(o.setup, Some(json!({"s": 2})));
            assert_eq!(o.webhook.as_deref(), Some("http://h"));
            assert_eq!(o.session.as_deref(), Some("new"));
            assert_eq!(o.metadata, Some(json!({"m": 3})));
            assert_eq!(o.wait, Some(true));
            assert_eq!(o.timeout, Some(5.0));
            assert_eq!(o.workers, Some(vec!["w1".to_string()]));
            assert_eq!(o.infra.as_deref(), Some("private"));
            assert_eq!(o.run_at.as_deref(), Some("2026-01-02T03:04:05Z"));
        }
        let FunctionRunBody(options) = serde_json::from_value(fields).unwrap();
        assert_eq!(options.wait, Some(true));
        assert_eq!(options.input, Some(json!({"x": 1})));
    }
}
