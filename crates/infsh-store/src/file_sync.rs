//! [`FileSync`]: when the bytes of a file placed in a folder store reach the
//! disk, following the task store's [`Durability`].
//!
//! - [`Durability::Full`]: each file is `fsync`ed before it is renamed into
//!   place, and its folder after, so a file the API acknowledged survives a
//!   power loss: the file's own `fsync` makes its bytes durable, not the
//!   folder's entry that the rename wrote (POSIX leaves that to an `fsync`
//!   of the folder; ext4 happens to commit it with the next journal commit,
//!   other filesystems need not).
//! - [`Durability::Relaxed`]: no `fsync` on the request path (~3-7 ms for
//!   1 MB on the development VM's disk, docs/performance.md "How the bytes
//!   move"); the file is queued and a background task `fsync`s everything
//!   queued (and the folder, for the renames) at most
//!   [`RELAXED_SYNC_WINDOW`] later, and whatever is left when the store is
//!   dropped. As with the task store under `relaxed`, a crash of infsh
//!   loses nothing (the bytes are in the operating system's hands once
//!   written); a power loss may lose the files of that last window, and
//!   their records and bytes reach the disk independently of each other.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::{Durability, RELAXED_SYNC_WINDOW};

#[derive(Clone, Default)]
pub(crate) enum FileSync {
    /// `fsync` each file before it is renamed into place, and its folder
    /// once it is there.
    #[default]
    Now,
    /// Queue it; the background task syncs it within the window.
    Deferred(Arc<PendingSyncs>),
}

impl FileSync {
    /// The policy for a folder store at `root` under `durability`. The
    /// deferred one starts its background task on the current tokio
    /// runtime (without one, it syncs at once, as `Now`).
    pub fn for_durability(durability: Durability, root: &Path) -> FileSync {
        if durability == Durability::Full || tokio::runtime::Handle::try_current().is_err() {
            return FileSync::Now;
        }
        let pending = Arc::new(PendingSyncs {
            root: root.to_path_buf(),
            paths: Mutex::new(Vec::new()),
        });
        tokio::spawn(sync_every_window(Arc::downgrade(&pending)));
        FileSync::Deferred(pending)
    }

    /// Called with the file's bytes written (before its rename, where it
    /// is renamed): `fsync`s it under `Now`, nothing under `Deferred`.
    pub fn sync_now(&self, file: &std::fs::File) -> std::io::Result<()> {
        match self {
            FileSync::Now => file.sync_all(),
            FileSync::Deferred(_) => Ok(()),
        }
    }

    /// [`FileSync::sync_now`] for a tokio file.
    pub async fn sync_now_async(&self, file: &tokio::fs::File) -> std::io::Result<()> {
        match self {
            FileSync::Now => file.sync_all().await,
            FileSync::Deferred(_) => Ok(()),
        }
    }

    /// Called once the file is in place at `path` (renamed or moved
    /// there): `fsync`s the folder holding it under `Now`, so that the
    /// rename is on the disk before the record naming the file is written;
    /// queues the file under `Deferred`.
    pub fn placed(&self, path: &Path) -> std::io::Result<()> {
        match self {
            FileSync::Now => std::fs::File::open(folder_of(path))?.sync_all(),
            FileSync::Deferred(pending) => {
                pending.push(path.to_path_buf());
                Ok(())
            }
        }
    }

    /// [`FileSync::placed`] on the runtime's blocking threads.
    pub async fn placed_async(&self, path: &Path) -> std::io::Result<()> {
        match self {
            FileSync::Now => {
                tokio::fs::File::open(folder_of(path))
                    .await?
                    .sync_all()
                    .await
            }
            FileSync::Deferred(_) => self.placed(path),
        }
    }

    /// Files placed and not yet synced (always 0 for `Now`).
    pub fn pending(&self) -> usize {
        match self {
            FileSync::Now => 0,
            FileSync::Deferred(pending) => pending.len(),
        }
    }
}

/// The folder whose entry names `path` (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Files renamed into a folder store whose bytes may not be on the disk.
pub(crate) struct PendingSyncs {
    root: PathBuf,
    paths: Mutex<Vec<PathBuf>>,
}

impl PendingSyncs {
    fn push(&self, path: PathBuf) {
        self.paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path);
    }

    fn len(&self) -> usize {
        self.paths.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// `fsync`s every queued file, then the folder (blocking). A file
    /// deleted since is skipped; any other failure is logged (the bytes
    /// are still in the page cache, where the kernel writes them back).
    fn sync_all(&self) {
        let paths = std::mem::take(&mut *self.paths.lock().unwrap_or_else(|e| e.into_inner()));
        if paths.is_empty() {
            return;
        }
        for path in &paths {
            match std::fs::File::open(path).and_then(|f| f.sync_all()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot sync a stored file")
                }
            }
        }
        if let Err(e) = std::fs::File::open(&self.root).and_then(|d| d.sync_all()) {
            tracing::warn!(folder = %self.root.display(), error = %e, "cannot sync the file store's folder");
        }
    }
}

impl Drop for PendingSyncs {
    fn drop(&mut self) {
        self.sync_all();
    }
}

/// Syncs the queue once per window while the store exists.
async fn sync_every_window(pending: Weak<PendingSyncs>) {
    loop {
        tokio::time::sleep(RELAXED_SYNC_WINDOW).await;
        let Some(pending) = pending.upgrade() else {
            return;
        };
        if pending.len() == 0 {
            continue;
        }
        if tokio::task::spawn_blocking(move || pending.sync_all())
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placing_a_file_under_now_syncs_the_folder_holding_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        FileSync::Now.placed(&path).unwrap();
        // The folder is what gets opened and synced: one that is not there
        // is an error (a sync of the file alone would not look at it).
        let gone = dir.path().join("no-such-folder").join("f");
        let err = FileSync::Now.placed(&gone).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(folder_of(Path::new("f")), Path::new("."));
        assert_eq!(folder_of(&path), dir.path());
    }

    #[tokio::test]
    async fn placing_under_now_on_the_runtime_syncs_the_folder_too() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("no-such-folder").join("f");
        let err = FileSync::Now.placed_async(&gone).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        FileSync::Now.placed_async(&path).await.unwrap();
    }

    #[tokio::test]
    async fn placing_under_deferred_only_queues_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let sync = FileSync::for_durability(Durability::Relaxed, dir.path());
        // Nothing is opened now, so a path that is not there is no error.
        let gone = dir.path().join("no-such-folder").join("f");
        sync.placed(&gone).unwrap();
        sync.placed_async(&gone).await.unwrap();
        assert_eq!(sync.pending(), 2);
    }
}
