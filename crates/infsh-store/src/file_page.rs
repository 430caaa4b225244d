//! Paging of stored files (`GET /files`): newest first by
//! `(created_at_ms, id)`, the cursor being the last item's pair as
//! `<created_at_ms>.<id>`. Shared by every [`crate::TaskStore`].

use crate::ids::is_valid_id;
use crate::{FileRecord, StoreError};

/// The cursor that continues after `f`.
pub fn file_cursor(f: &FileRecord) -> String {
    format!("{}.{}", f.created_at_ms, f.id)
}

/// A cursor from [`file_cursor`]; anything else is
/// [`StoreError::InvalidCursor`].
pub fn parse_file_cursor(c: &str) -> Result<(i64, String), StoreError> {
    c.split_once('.')
        .and_then(|(ms, id)| {
            let ms = ms.parse::<i64>().ok().filter(|n| *n >= 0)?;
            is_valid_id(id).then(|| (ms, id.to_string()))
        })
        .ok_or_else(|| StoreError::InvalidCursor(c.to_string()))
}

/// `cursor` of `list_files`, parsed before any read.
pub(crate) fn files_after(cursor: Option<&str>) -> Result<Option<(i64, String)>, StoreError> {
    cursor
        .filter(|c| !c.is_empty())
        .map(parse_file_cursor)
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let f = FileRecord {
            id: "0123456789abcdef0123456789abcdef".into(),
            filename: "a".into(),
            content_type: "text/plain".into(),
            size: None,
            uploaded: false,
            created_at_ms: 42,
        };
        let c = file_cursor(&f);
        assert_eq!(c, "42.0123456789abcdef0123456789abcdef");
        assert_eq!(parse_file_cursor(&c).unwrap(), (42, f.id.clone()));
        for bad in [
            "",
            "42",
            "x.0123456789abcdef0123456789abcdef",
            "-1.0123456789abcdef0123456789abcdef",
            "42.nope",
            "42.'; DROP TABLE files",
        ] {
            assert!(
                matches!(parse_file_cursor(bad), Err(StoreError::InvalidCursor(_))),
                "{bad}"
            );
        }
    }
}
