//! `Deserialize` for [`WorkerMessage`], by hand so that a `done` or
//! `snapshot` output stays the raw JSON text the worker wrote
//! ([`Payload::Raw`]): serde's derived internally tagged enum first buffers
//! the whole message into a tree of its own, output included, and cannot
//! hand a `RawValue` through it.
//!
//! The message's fields are first taken as raw JSON (one copy of each, no
//! parsing into values). The output is set aside and the rest, a few dozen
//! bytes, is decoded by the derived enum [`Wire`] (the same shape as
//! `WorkerMessage`), so every other message and every error reads exactly
//! as the derived decoder would have it. Needs serde_json's deserializer,
//! the only one the protocol uses.

use std::fmt;

use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::messages::{CallFailed, CallId, LoadFailed, OutputFile, Ready, SetupFailed};
use crate::{Payload, WorkerMessage};

/// `WorkerMessage`'s wire shape, outputs parsed (always `null` here: the
/// real output is put back from its raw text).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire {
    Ready(Ready),
    LoadFailed(LoadFailed),
    SetupDone {
        seconds: f64,
    },
    SetupFailed(SetupFailed),
    Snapshot {
        id: CallId,
        #[allow(dead_code)]
        output: Value,
        #[serde(default)]
        files: Vec<OutputFile>,
    },
    Done {
        id: CallId,
        #[allow(dead_code)]
        output: Value,
        #[serde(default)]
        files: Vec<OutputFile>,
        seconds: f64,
    },
    Failed(CallFailed),
    Bye {
        #[serde(default)]
        unload_error: Option<String>,
    },
    Spilled {
        path: String,
        bytes: u64,
    },
}

/// The message's fields, each as raw JSON, in order.
struct RawFields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawFields, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFields, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(6));
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<Box<RawValue>>()?;
                    fields.push((key, value));
                }
                Ok(RawFields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for WorkerMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<WorkerMessage, D::Error> {
        let RawFields(fields) = RawFields::deserialize(d)?;
        // The message without its output's text (`null` stands in for it,
        // so a missing output is still "missing field `output`").
        let mut output = None;
        let mut rest = String::from("{");
        for (key, value) in fields {
            if rest.len() > 1 {
                rest.push(',');
            }
            rest.push_str(&serde_json::to_string(&key).map_err(D::Error::custom)?);
            rest.push(':');
            if key == "output" {
                rest.push_str("null");
                output = Some(value);
            } else {
                rest.push_str(value.get());
            }
        }
        rest.push('}');
        let wire: Wire =
            serde_json::from_str(&rest).map_err(|e| D::Error::custom(without_position(&e)))?;
        let output = || -> Payload {
            Payload::from_raw(output.expect("the wire decoder required an output"))
        };
        Ok(match wire {
            Wire::Ready(r) => WorkerMessage::Ready(r),
            Wire::LoadFailed(f) => WorkerMessage::LoadFailed(f),
            Wire::SetupDone { seconds } => WorkerMessage::SetupDone { seconds },
            Wire::SetupFailed(f) => WorkerMessage::SetupFailed(f),
            Wire::Snapshot { id, files, .. } => WorkerMessage::Snapshot {
                id,
                output: output(),
                files,
            },
            Wire::Done {
                id, files, seconds, ..
            } => WorkerMessage::Done {
                id,
                output: output(),
                files,
                seconds,
            },
            Wire::Failed(f) => WorkerMessage::Failed(f),
            Wire::Bye { unload_error } => WorkerMessage::Bye { unload_error },
            Wire::Spilled { path, bytes } => WorkerMessage::Spilled { path, bytes },
        })
    }
}

/// The error's message without serde_json's " at line L column C": that
/// position is in the message rebuilt here, not in what the worker sent.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_string(),
        None => text,
    }
}
