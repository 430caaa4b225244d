//! The messages of the worker protocol (`docs/protocol.md`, "Messages").
//!
//! Each message is one JSON object whose `"type"` field names it, hence the
//! `#[serde(tag = "type", rename_all = "snake_case")]` enums. Unknown extra
//! fields are ignored on purpose (serde's default), so a worker that adds a
//! field does not break an older host. Unknown message types and unknown
//! `kind` values are errors: those change the meaning of the conversation.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::payload::Payload;

/// Identifies one call on one worker. Chosen by the host, unique per worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(pub String);

impl CallId {
    pub fn new(id: impl Into<String>) -> Self {
        CallId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for CallId {
    fn from(s: String) -> Self {
        CallId(s)
    }
}

impl From<&str> for CallId {
    fn from(s: &str) -> Self {
        CallId(s.to_owned())
    }
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Host → worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// Run the app's `setup`; answered by `setup_done` or `setup_failed`.
    Setup {
        #[serde(default = "empty_object")]
        config: Value,
        #[serde(default = "empty_object")]
        metadata: Value,
    },
    /// Run one function; answered by `snapshot`* then `done` or `failed`.
    Call {
        id: CallId,
        function: String,
        #[serde(default = "empty_object")]
        input: Value,
        #[serde(default = "empty_object")]
        metadata: Value,
    },
    /// Run a batched function once for several calls; each call is
    /// answered on its own (`done` or `failed` per id).
    CallBatch {
        function: String,
        calls: Vec<BatchItem>,
    },
    /// Cancel a call; it then ends with `failed` (`kind: cancelled`).
    Cancel { id: CallId },
    /// Run `unload` and exit; answered by `bye`.
    Shutdown,
}

/// One call of a `call_batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub id: CallId,
    #[serde(default = "empty_object")]
    pub input: Value,
    #[serde(default = "empty_object")]
    pub metadata: Value,
}

/// Worker → host.
///
/// Deserialized by hand (`worker_message_de.rs`): an output is kept as the
/// raw JSON text the worker wrote ([`Payload::Raw`]), which serde's derived
/// internally tagged enums cannot do.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    Ready(Ready),
    LoadFailed(LoadFailed),
    SetupDone {
        seconds: f64,
    },
    SetupFailed(SetupFailed),
    Snapshot {
        id: CallId,
        output: Payload,
        #[serde(default)]
        files: Vec<OutputFile>,
    },
    Done {
        id: CallId,
        output: Payload,
        #[serde(default)]
        files: Vec<OutputFile>,
        seconds: f64,
    },
    Failed(CallFailed),
    Bye {
        #[serde(default)]
        unload_error: Option<String>,
    },
    /// Stands for a message written to a file; [`crate::read_message`]
    /// resolves it, so callers of the reader never see this variant.
    Spilled {
        path: String,
        bytes: u64,
    },
}

/// The worker's handshake: sent once, after the app was imported and its
/// functions discovered, before any setup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    pub protocol: u32,
    pub pid: u32,
    /// Interpreter version, e.g. `"3.11.7"`.
    pub python: String,
    /// Version of the installed `inferencesh` SDK, when it can be found.
    #[serde(default)]
    pub sdk_version: Option<String>,
    pub app_class: String,
    /// Sorted by name.
    pub functions: Vec<FunctionInfo>,
    pub setup_schema: Value,
    #[serde(default)]
    pub has_on_cancel: bool,
}

impl Ready {
    /// The function called `name`, if the app has one.
    pub fn function(&self, name: &str) -> Option<&FunctionInfo> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// One exposed function of the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionInfo {
    pub name: String,
    /// An async generator: yields snapshots before its final output.
    pub streaming: bool,
    /// A coroutine or async generator (false: plain `def`, run off the loop).
    pub is_async: bool,
    /// Takes `(self, input, metadata)`.
    pub accepts_metadata: bool,
    /// Takes a list of inputs and returns a list of outputs, one per input
    /// (batching, opt in through inf.yml): the host sends `call_batch`, and
    /// `entry`'s schemas are those of one item.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batched: bool,
    /// Exactly this function's value in `functions_schema.json`:
    /// `description`, `input_schema`, `output_schema`, then whatever the
    /// SDK's `@function` decorator added. Kept as raw JSON so keys we do not
    /// know survive a round trip.
    pub entry: Value,
}

impl FunctionInfo {
    pub fn input_schema(&self) -> Option<&Value> {
        self.entry.get("input_schema")
    }

    pub fn output_schema(&self) -> Option<&Value> {
        self.entry.get("output_schema")
    }

    /// The docstring, or `""`.
    pub fn description(&self) -> &str {
        self.entry
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// A `File` found in a call's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// RFC 6901 JSON pointer into the output, e.g. `/images/0`.
    pub pointer: String,
    /// Absolute local path, when the file is on this machine.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
}

/// Why a call ended without output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The input did not validate; see [`CallFailed::errors`].
    Input,
    /// The function raised.
    App,
    Cancelled,
    UnknownFunction,
    /// A call arrived before a successful setup.
    NotSetUp,
}

/// A call ended without output (`failed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallFailed {
    pub id: CallId,
    pub kind: FailureKind,
    /// One line, `"ExcType: message"`.
    pub error: String,
    #[serde(default)]
    pub traceback: String,
    /// Only for [`FailureKind::Input`]: pydantic's validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<InputErrorItem>,
}

/// One pydantic validation error: where (`"a.b.0"`) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputErrorItem {
    pub loc: String,
    pub msg: String,
}

/// Why the app could not be loaded (`load_failed`, instead of `ready`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadFailureKind {
    NoInferencePy,
    ImportError,
    NoAppClass,
    AppInitError,
}

/// The app could not be loaded; the worker exits 1 after sending this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadFailed {
    pub kind: LoadFailureKind,
    pub error: String,
    #[serde(default)]
    pub traceback: String,
}

/// Why setup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupFailureKind {
    /// The setup config did not validate.
    Config,
    /// `setup` raised.
    App,
}

/// A setup raised or its config did not validate (`setup_failed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupFailed {
    pub kind: SetupFailureKind,
    pub error: String,
    #[serde(default)]
    pub traceback: String,
}

/// `Display` for the `kind` enums: their wire name.
macro_rules! wire_name_display {
    ($($ty:ty { $($variant:ident => $name:literal),* $(,)? })*) => {$(
        impl $ty {
            /// The name used on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

wire_name_display! {
    FailureKind {
        Input => "input",
        App => "app",
        Cancelled => "cancelled",
        UnknownFunction => "unknown_function",
        NotSetUp => "not_set_up",
    }
    LoadFailureKind {
        NoInferencePy => "no_inference_py",
        ImportError => "import_error",
        NoAppClass => "no_app_class",
        AppInitError => "app_init_error",
    }
    SetupFailureKind {
        Config => "config",
        App => "app",
    }
}

#[cfg(test)]
#[path = "messages_tests.rs"]
mod tests;
