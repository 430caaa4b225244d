//! infsh-core: apps on disk and the rules around calling their functions.
//!
//! - [`manifest`]: `inf.yml`, tolerant of unknown fields;
//! - [`app`]: an app folder ([`AppDir`]), its files and example inputs;
//! - [`app_ref`]: how a client names an app and function
//!   (`namespace/name[@version][:function]`, [`AppRef`]);
//! - [`functions`]: the functions a worker reported, the default one, and name
//!   resolution ([`FunctionSet`]);
//! - [`validate`]: input validation against a function's schema before dispatch
//!   ([`InputValidator`]), with readable per-field errors;
//! - [`validators`]: one compiled validator per function of an app, and the
//!   one rule for a schema that does not compile ([`FunctionValidators`]);
//! - [`files`]: `File` inputs: finding them, resolving local paths;
//! - [`task_status`]: the task statuses of the API ([`TaskStatus`]): numbers,
//!   names and the aliases clients send;
//! - [`package`]: an app folder as one stream (what `infsh app deploy`
//!   uploads), its content hash, ignore rules, safe unpacking;
//! - [`schema`], [`pointer`]: helpers for pydantic schemas and JSON pointers;
//! - [`error_chain`]: an error with its causes on one line, for logs
//!   ([`ErrorChain`]).
//!
//! The function list comes from the worker's `ready` message
//! ([`infsh_protocol::FunctionInfo`]); see `docs/protocol.md`.

pub mod app;
pub mod app_ref;
pub mod error_chain;
pub mod files;
pub mod functions;
pub mod manifest;
pub mod media;
pub mod package;
pub mod pointer;
pub mod schema;
pub mod task_status;
pub mod validate;
pub mod validators;
pub mod yaml;

pub use app::{AppDir, AppError, AppRuntime, Example};
pub use app_ref::{split_function, AppRef, AppRefError};
pub use error_chain::ErrorChain;
pub use files::{file_fields, resolve_local_paths, FileField, FileInputError};
pub use functions::{FunctionSet, ResolveError};
pub use infsh_protocol::{FunctionInfo, Payload};
pub use manifest::{Manifest, ManifestError, Quantity, Requirement};
pub use task_status::{ParseStatusError, TaskStatus, UnknownStatusNumber};
pub use validate::{describe_errors, FieldError, InputValidator, SchemaError};
pub use validators::{FunctionValidators, InvalidSchema, SchemaKind};
