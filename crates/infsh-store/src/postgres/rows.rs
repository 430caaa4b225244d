//! PostgreSQL rows into the store's records, through the same [`RawTask`]
//! decoding as SQLite's (`crate::rows`). Small enums and booleans are
//! INTEGER (`i32` here), JSON is TEXT.

use tokio_postgres::Row;

use crate::rows::RawTask;
use crate::{FileRecord, StoreError};

pub(crate) fn raw_task(row: &Row) -> Result<RawTask, StoreError> {
    Ok(RawTask {
        seq: row.try_get(0)?,
        id: row.try_get(1)?,
        app: row.try_get(2)?,
        function: row.try_get(3)?,
        input: row.try_get(4)?,
        setup: row.try_get(5)?,
        status: i64::from(row.try_get::<_, i32>(6)?),
        output: row.try_get(7)?,
        error: row.try_get(8)?,
        webhook: row.try_get(9)?,
        session_id: row.try_get(10)?,
        metadata: row.try_get(11)?,
        timeout_secs: row.try_get(12)?,
        created_at_ms: row.try_get(13)?,
        updated_at_ms: row.try_get(14)?,
        team: row.try_get(15)?,
        run_at_ms: row.try_get(16)?,
    })
}

/// The columns [`file`] reads, in its order.
pub(crate) const FILE_COLUMNS: &str = "id, filename, content_type, size, uploaded, created_at_ms";

pub(crate) fn file(row: &Row) -> Result<FileRecord, StoreError> {
    let size: Option<i64> = row.try_get(3)?;
    let uploaded: i32 = row.try_get(4)?;
    Ok(FileRecord {
        id: row.try_get(0)?,
        filename: row.try_get(1)?,
        content_type: row.try_get(2)?,
        size: size.map(|s| s.max(0) as u64),
        uploaded: uploaded != 0,
        created_at_ms: row.try_get(5)?,
    })
}
