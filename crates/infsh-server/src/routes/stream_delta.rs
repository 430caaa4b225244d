//! Delta lines on `GET /tasks/{id}/stream`: instead of repeating the whole
//! output on every yield, a client that merges deltas gets
//! `{"event":"delta","data":{"delta":{"response":"…"},"seq":N}}` with only
//! the text that was appended.
//!
//! The format is the official client's (`inferencesh/delta.py`): the `data`
//! of a delta line is a `DeltaEvent`, its `delta` an `LLMDelta` whose
//! `response` and `reasoning` are concatenated onto an accumulator. That
//! accumulator starts empty on every connection and is **not** seeded from
//! snapshots; at the end the client writes it over the terminal snapshot's
//! `output`. So the deltas of one connection must add up to the whole text
//! by themselves: [`DeltaTracker`] remembers what this connection's deltas
//! carried (not what its snapshots showed), and the first delta after a
//! (re)connect carries the text so far.
//!
//! Only an LLM-shaped change becomes a delta: the output has a string
//! `response`, the step only appended to `response` and/or `reasoning`, and
//! nothing else of the task (status, logs, error, the output's other keys)
//! changed. Anything else, and every terminal state, is a full snapshot —
//! preceded, once this connection sent deltas, by a delta with any text the
//! snapshot appended ([`DeltaTracker::catch_up`]), so the accumulator the
//! client writes over the final output is whole.

use axum::http::{header, HeaderMap};
use infsh_engine::TaskView;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::IntoParams;

/// The output fields that travel as appended text (`LLMDelta`'s `concat`
/// fields).
const TEXT_FIELDS: [&str; 2] = ["response", "reasoning"];

/// The first official client whose stream reader merges delta lines (the
/// version docs/client-wire-notes.md was written against). Older ones would
/// show a delta line as an empty task update.
const FIRST_DELTA_CLIENT: (u32, u32) = (0, 36);

/// Query of `GET /tasks/{id}/stream`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// `true`: send delta lines for appended `response`/`reasoning` text;
    /// `false`: full snapshots only. Default: deltas for the official
    /// Python client (`User-Agent: inference-sdk-py/0.36` or newer), full
    /// snapshots for everyone else.
    pub deltas: Option<bool>,
}

/// Whether this request gets delta lines: as asked, else by the client.
pub fn wants_deltas(query: &StreamQuery, headers: &HeaderMap) -> bool {
    if let Some(asked) = query.deltas {
        return asked;
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.strip_prefix("inference-sdk-py/"))
        .and_then(major_minor)
        .is_some_and(|v| v >= FIRST_DELTA_CLIENT)
}

fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// What to send for a change from the view the client last saw.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing the client shows changed (a yield that repeated its output).
    Nothing,
    /// This delta line's JSON.
    Delta(Vec<u8>),
    /// Only a full snapshot can say it.
    Snapshot,
}

/// One connection's delta state.
#[derive(Debug, Default)]
pub struct DeltaTracker {
    /// Per [`TEXT_FIELDS`]: what this connection's deltas carried so far —
    /// the client's accumulator.
    sent: [String; 2],
    seq: u64,
}

impl DeltaTracker {
    /// How to take a client that saw `last` to `next`.
    pub fn step(&mut self, last: &TaskView, next: &TaskView) -> Step {
        if next.record.status.is_terminal() || !same_besides_output(last, next) {
            return Step::Snapshot;
        }
        // Snapshots are parsed (`Payload::Value`): borrowed, not parsed here.
        let next_output = next.record.output.as_ref().map(|o| o.to_value());
        let Some(Value::Object(out)) = next_output.as_deref() else {
            return Step::Snapshot;
        };
        if !matches!(out.get("response"), Some(Value::String(_))) {
            return Step::Snapshot;
        }
        let empty = Map::new();
        let last_output = last.record.output.as_ref().map(|o| o.to_value());
        let before = match last_output.as_deref() {
            Some(Value::Object(m)) => m,
            None | Some(Value::Null) => &empty,
            Some(_) => return Step::Snapshot,
        };
        if !others_equal(before, out) {
            return Step::Snapshot;
        }
        let mut pieces: [Option<&str>; 2] = [None, None];
        for (i, field) in TEXT_FIELDS.iter().enumerate() {
            let now = match out.get(*field) {
                Some(Value::String(s)) => s.as_str(),
                // Absent or null on both sides: nothing to say.
                None | Some(Value::Null) if !has_text(before.get(*field)) => continue,
                _ => return Step::Snapshot,
            };
            // Not an append to what the client accumulated: a concat delta
            // cannot say it.
            let Some(appended) = now.strip_prefix(self.sent[i].as_str()) else {
                return Step::Snapshot;
            };
            if !appended.is_empty() {
                pieces[i] = Some(appended);
            }
        }
        match self.emit(pieces) {
            Some(line) => Step::Delta(line),
            None => Step::Nothing,
        }
    }

    /// The delta line to send before a full snapshot of `next`, if this
    /// connection sent deltas and `next` appended text to them: the client
    /// does not read text out of snapshots but writes its accumulator over
    /// the terminal output, so the accumulator must not fall behind.
    pub fn catch_up(&mut self, next: &TaskView) -> Option<Vec<u8>> {
        if self.seq == 0 {
            return None;
        }
        // A final output may be raw: parsed for its text fields.
        let output = next.record.output.as_ref().map(|o| o.to_value());
        let Some(Value::Object(out)) = output.as_deref() else {
            return None;
        };
        let mut pieces: [Option<&str>; 2] = [None, None];
        for (i, field) in TEXT_FIELDS.iter().enumerate() {
            if let Some(Value::String(now)) = out.get(*field) {
                // A rewrite cannot be caught up with a concat delta.
                pieces[i] = now
                    .strip_prefix(self.sent[i].as_str())
                    .filter(|p| !p.is_empty());
            }
        }
        self.emit(pieces)
    }

    /// One delta line for the non-empty pieces, added to what was sent.
    fn emit(&mut self, pieces: [Option<&str>; 2]) -> Option<Vec<u8>> {
        if pieces.iter().all(Option::is_none) {
            return None;
        }
        let mut delta = Map::new();
        for (i, piece) in pieces.iter().enumerate() {
            if let Some(p) = piece {
                delta.insert(TEXT_FIELDS[i].to_string(), Value::String((*p).to_string()));
                self.sent[i].push_str(p);
            }
        }
        self.seq += 1;
        let line = json!({"event": "delta", "data": {"delta": delta, "seq": self.seq}});
        Some(serde_json::to_vec(&line).unwrap_or_default())
    }
}

fn has_text(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::String(_)))
}

/// Everything a snapshot shows, except `output` and `updated_at`, is equal.
fn same_besides_output(a: &TaskView, b: &TaskView) -> bool {
    let (x, y) = (&a.record, &b.record);
    x.id == y.id
        && x.status == y.status
        && x.error == y.error
        && x.session_id == y.session_id
        && x.metadata == y.metadata
        && a.logs.len() == b.logs.len()
        && a.logs == b.logs
}

/// The outputs' keys other than the text fields are the same.
fn others_equal(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let other = |k: &String| !TEXT_FIELDS.contains(&k.as_str());
    a.keys().filter(|k| other(k)).count() == b.keys().filter(|k| other(k)).count()
        && b.iter()
            .filter(|(k, _)| other(k))
            .all(|(k, v)| a.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use infsh_store::{LogEntry, LogType, TaskRecord, TaskStatus};

    fn view(status: TaskStatus, output: Option<Value>) -> TaskView {
        TaskView {
            record: TaskRecord {
                id: "t1".into(),
                app: "a/b".into(),
                function: "run".into(),
                input: json!({}),
                setup: json!({}),
                status,
                output: output.map(Into::into),
                error: None,
                webhook: None,
                session_id: None,
                metadata: json!({}),
                timeout_secs: None,
                created_at_ms: 1,
                updated_at_ms: 1,
                team: None,
                run_at_ms: None,
            },
            logs: Vec::new(),
            slot: None,
        }
    }

    fn running(output: Value) -> TaskView {
        view(TaskStatus::Running, Some(output))
    }

    fn delta_of(step: Step) -> Value {
        match step {
            Step::Delta(b) => serde_json::from_slice(&b).unwrap(),
            other => panic!("expected a delta, got {other:?}"),
        }
    }

    #[test]
    fn appended_text_becomes_a_numbered_delta() {
        let mut t = DeltaTracker::default();
        let a = running(json!({"response": "Hel"}));
        let mut b = running(json!({"response": "Hello"}));
        b.record.updated_at_ms = 2;
        // The connection's first delta carries everything so far: the
        // client's accumulator starts empty.
        assert_eq!(
            delta_of(t.step(&a, &b)),
            json!({"event": "delta", "data": {"delta": {"response": "Hello"}, "seq": 1}})
        );
        let c = running(json!({"response": "Hello wor", "reasoning": "hm"}));
        assert_eq!(
            delta_of(t.step(&b, &c)),
            json!({"event": "delta", "data": {"delta": {"response": " wor", "reasoning": "hm"}, "seq": 2}})
        );
        assert_eq!(t.step(&c, &c), Step::Nothing);
    }

    #[test]
    fn first_yield_after_an_empty_output_is_a_delta() {
        let mut t = DeltaTracker::default();
        let start = view(TaskStatus::Running, None);
        let first = running(json!({"response": "a", "reasoning": null}));
        assert_eq!(
            delta_of(t.step(&start, &first))["data"]["delta"],
            json!({"response": "a"})
        );
    }

    #[test]
    fn anything_but_appended_text_is_a_snapshot() {
        let a = running(json!({"response": "abc", "n": 1}));
        let cases = [
            // Another output key changed.
            running(json!({"response": "abcd", "n": 2})),
            // A key appeared.
            running(json!({"response": "abcd", "n": 1, "m": 0})),
            // Not an LLM-shaped output.
            running(json!({"text": "abcd", "n": 1})),
            // response is not text.
            running(json!({"response": 5, "n": 1})),
            // Terminal: always the full output.
            view(
                TaskStatus::Completed,
                Some(json!({"response": "abcd", "n": 1})),
            ),
        ];
        for next in cases {
            let mut t = DeltaTracker::default();
            assert_eq!(
                t.step(&a, &next),
                Step::Snapshot,
                "{:?}",
                next.record.output
            );
        }
        let mut t = DeltaTracker::default();
        let mut logged = running(json!({"response": "abcd", "n": 1}));
        logged.logs.push(LogEntry {
            log_type: LogType::Task,
            content: "x\n".into(),
            at_ms: 1,
        });
        assert_eq!(t.step(&a, &logged), Step::Snapshot);
    }

    #[test]
    fn a_rewrite_of_sent_text_is_a_snapshot_and_later_appends_follow_the_sent_text() {
        let mut t = DeltaTracker::default();
        let a = running(json!({"response": ""}));
        let b = running(json!({"response": "ab"}));
        assert!(matches!(t.step(&a, &b), Step::Delta(_)));
        let rewritten = running(json!({"response": "xy"}));
        assert_eq!(t.step(&b, &rewritten), Step::Snapshot);
        // A snapshot in between (logs) leaves the client's accumulator as
        // the deltas left it: the next delta continues from "ab".
        let c = running(json!({"response": "abcd"}));
        assert_eq!(
            delta_of(t.step(&b, &c))["data"]["delta"],
            json!({"response": "cd"})
        );
    }

    #[test]
    fn a_snapshot_after_deltas_is_preceded_by_the_text_it_appended() {
        let mut t = DeltaTracker::default();
        let a = running(json!({"response": "ab", "tokens": 0}));
        let done = view(
            TaskStatus::Completed,
            Some(json!({"response": "abcd", "tokens": 2})),
        );
        // No delta sent yet: the client's accumulator is empty and unused.
        assert_eq!(t.catch_up(&done), None);
        let b = running(json!({"response": "abc", "tokens": 0}));
        assert!(matches!(t.step(&a, &b), Step::Delta(_)));
        assert_eq!(t.step(&b, &done), Step::Snapshot);
        let line: Value = serde_json::from_slice(&t.catch_up(&done).unwrap()).unwrap();
        assert_eq!(line["data"], json!({"delta": {"response": "d"}, "seq": 2}));
        // Nothing more to catch up; a rewrite cannot be.
        assert_eq!(t.catch_up(&done), None);
        let rewritten = view(TaskStatus::Completed, Some(json!({"response": "xyz"})));
        assert_eq!(t.catch_up(&rewritten), None);
    }

    #[test]
    fn deltas_as_asked_else_for_the_official_client() {
        let ua = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::USER_AGENT, HeaderValue::from_str(v).unwrap());
            h
        };
        let default = StreamQuery::default();
        assert!(wants_deltas(&default, &ua("inference-sdk-py/0.36.0")));
        assert!(wants_deltas(&default, &ua("inference-sdk-py/1.2.3")));
        assert!(!wants_deltas(&default, &ua("inference-sdk-py/0.35.9")));
        assert!(!wants_deltas(&default, &ua("python-requests/2.32")));
        assert!(!wants_deltas(&default, &HeaderMap::new()));
        let on = StreamQuery { deltas: Some(true) };
        let off = StreamQuery {
            deltas: Some(false),
        };
        assert!(wants_deltas(&on, &HeaderMap::new()));
        assert!(!wants_deltas(&off, &ua("inference-sdk-py/0.36.0")));
    }
}
