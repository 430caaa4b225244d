//! Frames: a 4-byte big-endian length, then that many bytes of JSON
//! (`docs/protocol.md`, "Frames"). The Python side of this codec is
//! `python/infsh_worker`'s protocol module.
//!
//! Big messages do not travel through the socket: the writer puts the JSON in
//! a new file in the spill folder and sends `{"type":"spilled","path","bytes"}`;
//! the reader reads that file, deletes it and hands back its content as if it
//! had arrived inline. Callers of [`read_message`] never see `spilled`.

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, SPILL_THRESHOLD_BYTES};

/// What can go wrong reading or writing a frame. Every variant except
/// [`FrameError::Encode`] means the channel can no longer be trusted: the
/// host drops the worker.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("i/o error on the protocol channel: {0}")]
    Io(#[from] io::Error),
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    #[error("the channel closed in the middle of a frame (got {got} of {expected} bytes)")]
    Truncated { expected: usize, got: usize },
    #[error("invalid message `{snippet}`: {source}")]
    Decode {
        /// The start of the offending JSON, for the error report.
        snippet: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("could not encode the message: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("spill file {path}: {source}")]
    SpillIo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("received a spilled message ({path}) but no spill folder is configured")]
    SpillNotAllowed { path: PathBuf },
    #[error("spilled message {path} is not in the spill folder {dir}")]
    SpillOutsideDir { path: PathBuf, dir: PathBuf },
    #[error("spill file {path} holds another spilled message")]
    NestedSpill { path: PathBuf },
    /// The message (an output, usually) is too large to load. The display
    /// leaves the path out: it ends up in the task's error.
    #[error("a message of {bytes} bytes is over the limit of {max} bytes (MAX_MESSAGE_BYTES)")]
    SpillTooLarge {
        path: PathBuf,
        bytes: u64,
        max: usize,
    },
    #[error("spill file {path} has {actual} bytes but the message said {claimed}")]
    SpillSizeMismatch {
        path: PathBuf,
        claimed: u64,
        actual: u64,
    },
}

/// Where this side writes big messages, and which folder it accepts spilled
/// messages from. The host passes the same folder to the worker as
/// `INFSH_SPILL_DIR`; it must exist.
#[derive(Debug, Clone)]
pub struct SpillDir {
    dir: PathBuf,
    threshold: usize,
}

impl SpillDir {
    /// Spill messages over [`SPILL_THRESHOLD_BYTES`] into `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpillDir {
            dir: dir.into(),
            threshold: SPILL_THRESHOLD_BYTES,
        }
    }

    /// Spill messages over `threshold` bytes instead (tests use a small one).
    pub fn with_threshold(mut self, threshold: usize) -> Self {
        self.threshold = threshold;
        self
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }
}

/// The `spilled` message. Also a variant of `WorkerMessage`, but the codec
/// works for any message type (the host may spill a big `call` too).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename = "spilled")]
struct SpillNote {
    path: PathBuf,
    bytes: u64,
}

/// Just the `"type"` of a message; unknown fields are skipped without being
/// parsed into values, so probing a big message is a cheap scan.
#[derive(Deserialize)]
struct TypeProbe<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<Cow<'a, str>>,
}

const SPILLED: &str = "spilled";

/// Reads one message. `Ok(None)` when the channel ends cleanly between
/// frames; a channel that ends inside a frame is [`FrameError::Truncated`].
///
/// A `spilled` message is resolved from `spill`'s folder (and only from
/// there: the worker is not trusted to name files for us to delete).
///
/// Not cancel safe: dropping the future mid-frame loses the frame. Read from
/// a task of its own rather than in a `select!`.
pub async fn read_message<R, T>(
    reader: &mut R,
    spill: Option<&SpillDir>,
) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin + ?Sized,
    T: DeserializeOwned,
{
    let Some(body) = read_frame(reader).await? else {
        return Ok(None);
    };
    if probe_type(&body)?.as_deref() == Some(SPILLED) {
        let note: SpillNote = decode(&body)?;
        let content = read_spill_file(&note, spill).await?;
        if probe_type(&content)?.as_deref() == Some(SPILLED) {
            return Err(FrameError::NestedSpill { path: note.path });
        }
        return decode(&content).map(Some);
    }
    decode(&body).map(Some)
}

/// Writes one message and flushes. With `spill`, a message whose JSON is
/// over the threshold goes to a new file in the spill folder and a `spilled`
/// message is sent instead; without it, messages up to [`MAX_FRAME_BYTES`]
/// are sent inline and bigger ones are refused.
pub async fn write_message<W, T>(
    writer: &mut W,
    msg: &T,
    spill: Option<&SpillDir>,
) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin + ?Sized,
    T: Serialize + ?Sized,
{
    let mut frame = encode_frame(msg)?;
    let mut spilled_to = None;
    let body_len = frame.len() - 4;
    match spill {
        Some(spill) if body_len > spill.threshold => {
            let path = write_spill_file(&spill.dir, &frame[4..]).await?;
            let note = SpillNote {
                path: path.clone(),
                bytes: body_len as u64,
            };
            frame = encode_frame(&note)?;
            spilled_to = Some(path);
        }
        _ if body_len > MAX_FRAME_BYTES => {
            return Err(FrameError::TooLarge {
                len: body_len as u64,
                max: MAX_FRAME_BYTES,
            })
        }
        _ => {}
    }
    let result = async {
        writer.write_all(&frame).await?;
        writer.flush().await
    }
    .await;
    if let (Err(_), Some(path)) = (&result, spilled_to) {
        // Nobody will read it: do not leave it behind.
        let _ = tokio::fs::remove_file(path).await;
    }
    Ok(result?)
}

/// The 4-byte header (filled in here) followed by the JSON, in one buffer so
/// the frame goes out in one write (or one message on a transport that keeps
/// message boundaries, as the zygote's channel does). No size check: that is
/// [`write_message`]'s.
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0u8; 4];
    serde_json::to_writer(&mut frame, msg).map_err(FrameError::Encode)?;
    let len = frame.len() - 4;
    // Lengths that do not fit the header are refused later (TooLarge) or
    // spilled; the header is only ever sent for bodies within the limit.
    let header = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    frame[..4].copy_from_slice(&header);
    Ok(frame)
}

async fn read_frame<R>(reader: &mut R) -> Result<Option<Vec<u8>>, FrameError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        let n = match reader.read(&mut header[got..]).await {
            Ok(n) => n,
            // A peer that died with frames of ours unread resets the
            // connection; between two frames that is the same as EOF.
            Err(e) if got == 0 && e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated { expected: 4, got });
        }
        got += n;
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: len as u64,
            max: MAX_FRAME_BYTES,
        });
    }
    // Grow with the data actually received instead of trusting the header
    // with a big allocation up front.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() < len {
        return Err(FrameError::Truncated {
            expected: len,
            got: body.len(),
        });
    }
    Ok(Some(body))
}

/// The message's `type`, to tell a `spilled` note from the message itself.
/// Both sides write it first (`{"type":"done",...`), and then it is read
/// from that prefix alone: parsing the body for it would scan the whole
/// message once more before [`decode`] does, and a `done` message is the
/// whole output (~1 ms for a 700 KB answer: docs/performance.md, "embed").
/// Whatever the prefix, [`decode`] still parses and checks all of it.
fn probe_type(body: &[u8]) -> Result<Option<Cow<'_, str>>, FrameError> {
    if let Some(ty) = leading_type(body) {
        return Ok(Some(Cow::Borrowed(ty)));
    }
    let probe: TypeProbe<'_> = serde_json::from_slice(body).map_err(|e| decode_error(body, e))?;
    Ok(probe.ty)
}

/// `t` when `body` starts exactly with `{"type":"t",` or `{"type":"t"}`
/// and `t` is a plain lower-case name; None otherwise (spaces, escapes,
/// another first key: the parser decides).
fn leading_type(body: &[u8]) -> Option<&str> {
    let rest = body.strip_prefix(br#"{"type":""#)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let (name, after) = (&rest[..end], &rest[end + 1..]);
    let plain = !name.is_empty() && name.iter().all(|&b| b.is_ascii_lowercase() || b == b'_');
    match after.first() {
        Some(b',' | b'}') if plain => std::str::from_utf8(name).ok(),
        _ => None,
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| decode_error(body, e))
}

fn decode_error(body: &[u8], source: serde_json::Error) -> FrameError {
    const SNIPPET: usize = 200;
    let mut snippet = String::from_utf8_lossy(&body[..body.len().min(SNIPPET)]).into_owned();
    if body.len() > SNIPPET {
        snippet.push_str("...");
    }
    FrameError::Decode { snippet, source }
}

async fn read_spill_file(
    note: &SpillNote,
    spill: Option<&SpillDir>,
) -> Result<Vec<u8>, FrameError> {
    let path = &note.path;
    let Some(spill) = spill else {
        return Err(FrameError::SpillNotAllowed { path: path.clone() });
    };
    let spill_io = |source| FrameError::SpillIo {
        path: path.clone(),
        source,
    };
    let outside = || FrameError::SpillOutsideDir {
        path: path.clone(),
        dir: spill.dir.clone(),
    };
    // The file must sit directly in the spill folder: compare the folders
    // after resolving symlinks and `..`.
    let (Some(parent), Some(_)) = (path.parent(), path.file_name()) else {
        return Err(outside());
    };
    if !path.is_absolute() {
        return Err(outside());
    }
    let dir = tokio::fs::canonicalize(&spill.dir)
        .await
        .map_err(|source| FrameError::SpillIo {
            path: spill.dir.clone(),
            source,
        })?;
    let parent = tokio::fs::canonicalize(parent).await.map_err(spill_io)?;
    if parent != dir {
        return Err(outside());
    }
    let too_large = |bytes: u64| FrameError::SpillTooLarge {
        path: path.clone(),
        bytes,
        max: MAX_MESSAGE_BYTES,
    };
    // Size checks before reading: neither the note nor the file may make us
    // load more than MAX_MESSAGE_BYTES.
    let content = if note.bytes > MAX_MESSAGE_BYTES as u64 {
        Err(too_large(note.bytes))
    } else {
        match read_capped(path, MAX_MESSAGE_BYTES as u64).await {
            Ok(Ok(content)) => Ok(content),
            Ok(Err(seen)) => Err(too_large(seen)),
            Err(e) => Err(spill_io(e)),
        }
    };
    // Delete it whatever it holds: the file was handed over to us.
    let _ = tokio::fs::remove_file(path).await;
    let content = content?;
    if content.len() as u64 != note.bytes {
        return Err(FrameError::SpillSizeMismatch {
            path: path.clone(),
            claimed: note.bytes,
            actual: content.len() as u64,
        });
    }
    Ok(content)
}

/// The file's content, or `Err(bytes seen)` when it holds more than `max`
/// bytes (read through a limit too: the file may still be growing).
async fn read_capped(path: &Path, max: u64) -> io::Result<Result<Vec<u8>, u64>> {
    let file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    if size > max {
        return Ok(Err(size));
    }
    let mut content = Vec::with_capacity(size as usize);
    file.take(max + 1).read_to_end(&mut content).await?;
    if content.len() as u64 > max {
        return Ok(Err(content.len() as u64));
    }
    Ok(Ok(content))
}

/// Names are unique per process (pid, counter) and across restarts (time);
/// `create_new` makes a collision an error rather than an overwrite.
async fn write_spill_file(dir: &Path, content: &[u8]) -> Result<PathBuf, FrameError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::path::absolute(dir).map_err(|source| FrameError::SpillIo {
        path: dir.to_path_buf(),
        source,
    })?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!(
        "host-{}-{}-{nanos}.json",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(name);
    let spill_io = |source| FrameError::SpillIo {
        path: path.clone(),
        source,
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .await
        .map_err(spill_io)?;
    let written = async {
        file.write_all(content).await?;
        file.flush().await
    }
    .await;
    if let Err(source) = written {
        // Ours (create_new), half written: remove it.
        let _ = tokio::fs::remove_file(&path).await;
        return Err(spill_io(source));
    }
    Ok(path)
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
