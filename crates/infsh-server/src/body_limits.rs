//! The two request body limits (issue 15, docs/operations.md "Limits"):
//! JSON bodies (`--max-json-mib`) and file uploads (`--max-upload-gib`),
//! each capped by the older catch-all `--max-body-mib` when that is given.
//! A limit carries the flag that sets it, so every 413 names what to change.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};

use crate::limits::Limits;
use crate::problem::Problem;

/// One limit and the flag that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit {
    pub bytes: u64,
    pub flag: &'static str,
}

/// Both limits, as the router enforces them (also a request extension, so
/// the JSON extractor finds its limit without the handler's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    pub json: BodyLimit,
    pub upload: BodyLimit,
}

impl BodyLimits {
    /// `max_body_bytes` (`--max-body-mib`) caps both when it is smaller.
    pub fn new(limits: &Limits, max_body_bytes: usize) -> BodyLimits {
        let cap = BodyLimit {
            bytes: max_body_bytes as u64,
            flag: "--max-body-mib",
        };
        let pick = |bytes: u64, flag: &'static str| {
            if cap.bytes < bytes {
                cap
            } else {
                BodyLimit { bytes, flag }
            }
        };
        BodyLimits {
            json: pick(limits.max_json_bytes, "--max-json-mib"),
            upload: pick(limits.max_upload_bytes, "--max-upload-gib"),
        }
    }
}

/// `Content-Length`, when the request declared a valid one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A size for people: `32 MiB`, `10 GiB`, `2048 bytes`.
pub fn human(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = KIB * 1024;
    const GIB: u64 = MIB * 1024;
    match bytes {
        b if b >= GIB && b % GIB == 0 => format!("{} GiB", b / GIB),
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

/// 413 for a body past `limit`; `what` is `JSON body` or `upload`. The
/// connection closes after it: the rest of the body is never read.
pub fn too_large(what: &str, limit: BodyLimit) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the {what} is larger than {} ({})",
            human(limit.bytes),
            limit.flag
        ),
    )
    .with("limit", limit.bytes)
    .with("limited_by", limit.flag)
    .header(header::CONNECTION, HeaderValue::from_static("close"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_limit_wins_and_is_named() {
        let l = BodyLimits::new(&Limits::default(), usize::MAX);
        assert_eq!(l.json.bytes, 32 << 20);
        assert_eq!(l.json.flag, "--max-json-mib");
        assert_eq!(l.upload.bytes, 10 << 30);
        assert_eq!(l.upload.flag, "--max-upload-gib");
        let l = BodyLimits::new(&Limits::default(), 2048);
        assert_eq!((l.json.bytes, l.json.flag), (2048, "--max-body-mib"));
        assert_eq!((l.upload.bytes, l.upload.flag), (2048, "--max-body-mib"));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(32 << 20), "32 MiB");
        assert_eq!(human(10 << 30), "10 GiB");
        assert_eq!(human(2048), "2 KiB");
        assert_eq!(human(1000), "1000 bytes");
    }

    #[test]
    fn the_413_names_its_limit() {
        let p = too_large(
            "JSON body",
            BodyLimit {
                bytes: 32 << 20,
                flag: "--max-json-mib",
            },
        );
        let b = p.body();
        assert_eq!(b["status"], 413);
        assert_eq!(b["type"], "https://infsh.dev/errors/payload_too_large");
        assert_eq!(
            b["detail"],
            "the JSON body is larger than 32 MiB (--max-json-mib)"
        );
        assert_eq!(b["limit"], 32u64 << 20);
        assert_eq!(b["limited_by"], "--max-json-mib");
    }
}
