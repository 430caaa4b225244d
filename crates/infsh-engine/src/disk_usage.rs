//! Disk used by stored files and by the store, for `/metrics` (issue 15:
//! with retention off, these only grow; they say when to turn it on).

use crate::Engine;

/// Bytes on disk now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Every file under the files folder (uploads and outputs).
    pub files_bytes: u64,
    /// The store (SQLite file with its WAL, or the PostgreSQL database);
    /// `None` where it cannot say (or the query failed: logged).
    pub store_bytes: Option<u64>,
}

impl Engine {
    pub async fn disk_usage(&self) -> DiskUsage {
        let files_bytes = self.shared().files.bytes_on_disk().await;
        let store_bytes = match self.shared().store.store_bytes().await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store's size");
                None
            }
        };
        DiskUsage {
            files_bytes,
            store_bytes,
        }
    }
}
