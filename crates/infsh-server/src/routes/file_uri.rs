//! How a stored file is named in URLs: its download URI with the file's
//! name (`/files/{id}/{filename}`, what `POST /files` hands out), shared by
//! the upload, record and task-file routes.

use crate::state::ServerState;

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A stored file's download URI, with its name.
pub fn named_uri(state: &ServerState, id: &str, filename: &str) -> String {
    format!("{}/{}", state.engine.file_uri(id), encode_segment(filename))
}
