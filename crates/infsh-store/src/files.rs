//! [`FileStore`]: stored files (uploads, and outputs moved out of workers).
//! Bytes live in `<root>/<id>` (the engine uses `<data_dir>/files`), records
//! in the [`TaskStore`]'s `files` table.
//!
//! An id is the only thing that ever becomes a path, and only after
//! [`is_valid_id`] accepted it (32 lowercase hex characters), so no request
//! can name a file outside `root`. Writes go to a temporary file in `root`
//! first and are renamed into place, so a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ids::{is_valid_id, new_id, now_ms};
use crate::{FileRecord, StoreError, TaskStore};

/// The content type of a file nobody described.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

#[derive(Clone)]
pub struct FileStore {
    root: PathBuf,
    store: Arc<dyn TaskStore>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("root", &self.root)
            .finish()
    }
}

/// The last component of a client-supplied name (never a path); `file` when
/// nothing is left.
pub fn clean_filename(name: &str) -> String {
    let base = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches(char::is_control);
    if base.is_empty() || base == "." || base == ".." {
        "file".to_string()
    } else {
        base.chars().filter(|c| !c.is_control()).collect()
    }
}

impl FileStore {
    /// Creates `root` if needed.
    pub fn open(root: impl Into<PathBuf>, store: Arc<dyn TaskStore>) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io("cannot create", &root, e))?;
        Ok(FileStore { root, store })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the bytes of file `id` are (or will be). Refuses any id that is
    /// not exactly 32 lowercase hex characters.
    pub fn path_of(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !is_valid_id(id) {
            return Err(StoreError::InvalidId);
        }
        Ok(self.root.join(id))
    }

    /// Registers a file whose bytes will come later ([`FileStore::write`]).
    pub async fn create(
        &self,
        filename: &str,
        content_type: Option<&str>,
        size: Option<u64>,
    ) -> Result<FileRecord, StoreError> {
        let record = FileRecord {
            id: new_id(),
            filename: clean_filename(filename),
            content_type: content_type
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .unwrap_or(DEFAULT_CONTENT_TYPE)
                .to_string(),
            size,
            uploaded: false,
            created_at_ms: now_ms(),
        };
        self.store.insert_file(&record).await?;
        Ok(record)
    }

    /// Stores the bytes of a registered file (replacing earlier ones).
    pub async fn write<B>(&self, id: &str, body: B) -> Result<FileRecord, StoreError>
    where
        B: AsRef<[u8]> + Send + 'static,
    {
        let path = self.path_of(id)?;
        if self.store.get_file(id).await?.is_none() {
            return Err(StoreError::NotFound {
                kind: "file",
                id: id.to_string(),
            });
        }
        let root = self.root.clone();
        let size = tokio::task::spawn_blocking(move || {
            write_atomically(&root, &path, |f| f.write_all(body.as_ref()))?;
            Ok::<_, StoreError>(body.as_ref().len() as u64)
        })
        .await
        .map_err(StoreError::Join)??;
        self.store.mark_file_uploaded(id, size).await
    }

    /// Starts a streamed upload of a registered file: bytes go to a
    /// temporary file in `root` ([`PartialUpload::write`]) and replace the
    /// file's bytes only at [`PartialUpload::finish`]. Dropping the upload
    /// unfinished (the client went away, a limit tripped) removes the
    /// temporary file, so a half upload never leaves bytes behind.
    pub async fn begin_upload(&self, id: &str) -> Result<PartialUpload, StoreError> {
        let path = self.path_of(id)?;
        let Some(record) = self.store.get_file(id).await? else {
            return Err(StoreError::NotFound {
                kind: "file",
                id: id.to_string(),
            });
        };
        let tmp = self.root.join(format!(".tmp-{}", new_id()));
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| StoreError::io("cannot create", &tmp, e))?;
        Ok(PartialUpload {
            record,
            dest: path,
            tmp: Some(tmp),
            file: Some(file),
            written: 0,
            store: self.store.clone(),
        })
    }

    /// Copies a local file (an app's output) into the store as a new,
    /// uploaded file.
    pub async fn import(
        &self,
        source: &Path,
        filename: &str,
        content_type: &str,
    ) -> Result<FileRecord, StoreError> {
        let id = new_id();
        let path = self.path_of(&id)?;
        let root = self.root.clone();
        let src = source.to_path_buf();
        let size = tokio::task::spawn_blocking(move || {
            let mut input =
                std::fs::File::open(&src).map_err(|e| StoreError::io("cannot open", &src, e))?;
            write_atomically(&root, &path, |f| std::io::copy(&mut input, f).map(|_| ()))?;
            std::fs::metadata(&path)
                .map(|m| m.len())
                .map_err(|e| StoreError::io("cannot stat", &path, e))
        })
        .await
        .map_err(StoreError::Join)??;
        let record = FileRecord {
            id,
            filename: clean_filename(filename),
            content_type: content_type.to_string(),
            size: Some(size),
            uploaded: true,
            created_at_ms: now_ms(),
        };
        self.store.insert_file(&record).await?;
        Ok(record)
    }

    /// Deletes a file: its bytes (if any), then its record. False when no
    /// such file is stored.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let Ok(path) = self.path_of(id) else {
            return Ok(false);
        };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("cannot delete", &path, e)),
        }
        self.store.delete_file(id).await
    }

    /// Bytes of every file under the files folder (for `/metrics`),
    /// counted off the async threads; unreadable entries count 0.
    pub async fn bytes_on_disk(&self) -> u64 {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || dir_bytes(&root))
            .await
            .unwrap_or(0)
    }

    /// A file's record and where its bytes are. `None` for an unknown (or
    /// malformed) id.
    pub async fn get(&self, id: &str) -> Result<Option<(FileRecord, PathBuf)>, StoreError> {
        let Ok(path) = self.path_of(id) else {
            return Ok(None);
        };
        Ok(self.store.get_file(id).await?.map(|r| (r, path)))
    }
}

/// A streamed upload in progress ([`FileStore::begin_upload`]).
pub struct PartialUpload {
    record: FileRecord,
    dest: PathBuf,
    /// The temporary file; None once renamed into place.
    tmp: Option<PathBuf>,
    file: Option<tokio::fs::File>,
    written: u64,
    store: Arc<dyn TaskStore>,
}

impl PartialUpload {
    /// The file's record as registered (its `size` is what the client
    /// announced, if anything).
    pub fn record(&self) -> &FileRecord {
        &self.record
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `data` (written through at once: nothing is buffered here
    /// beyond the one chunk).
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        use tokio::io::AsyncWriteExt;
        let (Some(file), Some(tmp)) = (self.file.as_mut(), self.tmp.as_ref()) else {
            return Err(StoreError::io(
                "cannot write",
                &self.dest,
                std::io::Error::other("upload already finished"),
            ));
        };
        file.write_all(data)
            .await
            .map_err(|e| StoreError::io("cannot write", tmp, e))?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Syncs the bytes, renames them into place and marks the file
    /// uploaded with the size written.
    pub async fn finish(mut self) -> Result<FileRecord, StoreError> {
        use tokio::io::AsyncWriteExt;
        let (Some(mut file), Some(tmp)) = (self.file.take(), self.tmp.clone()) else {
            return Err(StoreError::io(
                "cannot write",
                &self.dest,
                std::io::Error::other("upload already finished"),
            ));
        };
        let synced = async {
            file.flush().await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&tmp, &self.dest).await
        }
        .await;
        synced.map_err(|e| StoreError::io("cannot write", &self.dest, e))?;
        // Renamed: nothing left for Drop to remove.
        self.tmp = None;
        self.store
            .mark_file_uploaded(&self.record.id, self.written)
            .await
    }
}

impl Drop for PartialUpload {
    fn drop(&mut self) {
        // Close before unlinking; a blocking unlink of one directory entry
        // is cheap enough to do here.
        self.file = None;
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// Writes a temporary file in `root`, syncs it, renames it to `path`.
fn write_atomically(
    root: &Path,
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let tmp = root.join(format!(".tmp-{}", new_id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::io("cannot write", path, e));
    }
    Ok(())
}

/// Sum of the sizes of the plain files under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::clean_filename;

    #[test]
    fn filenames_lose_their_folders() {
        assert_eq!(clean_filename("a.png"), "a.png");
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\x\\y.txt"), "y.txt");
        assert_eq!(clean_filename("dir/"), "file");
        assert_eq!(clean_filename(".."), "file");
        assert_eq!(clean_filename(""), "file");
    }
}
