//! Wire types and framing shared by the infsh host (`infsh-worker`) and the
//! Python worker runtime (`python/infsh_worker`).
//!
//! `docs/protocol.md` is the contract; this crate is its Rust half. The
//! Python half lives in `python/infsh_worker` and must change together with
//! this one: bump [`PROTOCOL_VERSION`] when a change is not backwards
//! compatible.
//!
//! - [`messages`]: the JSON messages, as `#[serde(tag = "type")]` enums.
//! - [`frame`]: length-prefixed frames, with spilling of big messages to files.
//! - `fuzzing` (feature `fuzzing` only): the bodies of the cargo-fuzz targets
//!   in `fuzz/`, not an API.

pub mod frame;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod messages;
pub mod payload;
mod worker_message_de;

pub use frame::{read_message, write_message, FrameError, SpillDir};
pub use messages::{
    BatchItem, CallFailed, CallId, FailureKind, FunctionInfo, HostMessage, InputErrorItem,
    LoadFailed, LoadFailureKind, OutputFile, Payload, Ready, SetupFailed, SetupFailureKind,
    WorkerMessage,
};

/// Version of the worker protocol; the worker reports its own in `ready`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame body either side accepts (64 MiB). A larger length prefix is
/// a protocol error and is refused before anything is allocated.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Largest message the host reads, inline or spilled (64 MiB of JSON): a
/// `spilled` note announcing more (or whose file holds more) is refused
/// before the file is read, so a worker cannot make the host load an
/// arbitrarily large output. This is the largest output (or snapshot) a
/// function can return.
pub const MAX_MESSAGE_BYTES: usize = MAX_FRAME_BYTES;

/// Encoded messages larger than this (1 MiB) are written to a file in the
/// spill folder and sent as a `spilled` message instead.
pub const SPILL_THRESHOLD_BYTES: usize = 1024 * 1024;
