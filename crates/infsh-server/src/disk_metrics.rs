//! `/metrics` lines for disk use: `infsh_files_bytes`, `infsh_store_bytes`
//! (docs/operations.md, "Disk").

use std::fmt::Write;

use infsh_engine::DiskUsage;

pub fn render_disk(d: &DiskUsage) -> String {
    let mut out = format!(
        "# HELP infsh_files_bytes Bytes of stored files (uploads and outputs) on disk.\n\
         # TYPE infsh_files_bytes gauge\n\
         infsh_files_bytes {}\n",
        d.files_bytes
    );
    if let Some(bytes) = d.store_bytes {
        let _ = write!(
            out,
            "# HELP infsh_store_bytes Bytes the task store takes (SQLite file and WAL, or the PostgreSQL database).\n\
             # TYPE infsh_store_bytes gauge\n\
             infsh_store_bytes {bytes}\n"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_gauges_or_files_only() {
        let both = render_disk(&DiskUsage {
            files_bytes: 12,
            store_bytes: Some(4096),
        });
        assert!(both.contains("\ninfsh_files_bytes 12\n"), "{both}");
        assert!(both.contains("\ninfsh_store_bytes 4096\n"), "{both}");
        let files_only = render_disk(&DiskUsage {
            files_bytes: 0,
            store_bytes: None,
        });
        assert!(files_only.contains("infsh_files_bytes 0\n"));
        assert!(!files_only.contains("infsh_store_bytes"));
    }
}
