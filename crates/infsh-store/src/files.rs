//! [`FileStore`]: stored files (uploads, and outputs moved out of workers).
//! Bytes live in the [`FileBackend`]: `<root>/<id>` in a folder (the engine
//! defaults to `<data_dir>/files`) or `<prefix>/<id>` in a bucket; records
//! in the [`TaskStore`]'s `files` table.
//!
//! An id is the only thing that ever becomes a path or a key, and only
//! after [`is_valid_id`] accepted it (32 lowercase hex characters), so no
//! request can name a file outside the folder or prefix. In a folder,
//! writes go to a temporary file first and are renamed into place; in a
//! bucket, an object appears only when its PUT (or multipart upload)
//! completes. Either way a reader never sees half a file. A stored file in
//! a folder is read-only (0444): workers on this machine read inputs in
//! place (the engine's `input_files.rs`), and an app that writes to its
//! input by mistake then fails instead of changing every later reader's
//! bytes. Replacing or deleting a file needs only the folder's permission.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::buffered::BufWriter;

use crate::file_backend::{read_local, Bucket, ByteStream, FileBackend};
use crate::file_sync::FileSync;
use crate::ids::{is_valid_id, new_id, now_ms};
use crate::{Durability, FileRecord, StoreError, TaskStore};

/// The content type of a file nobody described.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Records listed per query when the bytes of a bucket's files are summed.
const SIZE_PAGE: usize = 500;

#[derive(Clone)]
pub struct FileStore {
    backend: FileBackend,
    store: Arc<dyn TaskStore>,
    /// When a folder's new files reach the disk (`file_sync.rs`).
    sync: FileSync,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("backend", &self.backend)
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
    /// Files in the folder `root`, created if needed.
    pub fn open(root: impl Into<PathBuf>, store: Arc<dyn TaskStore>) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io("cannot create", &root, e))?;
        Ok(FileStore {
            backend: FileBackend::Folder(root),
            store,
            sync: FileSync::Now,
        })
    }

    /// Files in an opened backend ([`FileBackend::open`]).
    pub fn on(backend: FileBackend, store: Arc<dyn TaskStore>) -> Result<Self, StoreError> {
        match backend {
            FileBackend::Folder(root) => FileStore::open(root, store),
            bucket => Ok(FileStore {
                backend: bucket,
                store,
                sync: FileSync::Now,
            }),
        }
    }

    /// Files placed in a folder reach the disk as the task store's
    /// `durability` says (`file_sync.rs`): before they are acknowledged
    /// (`Full`, as without this), or within [`crate::RELAXED_SYNC_WINDOW`]
    /// (`Relaxed`). Call on a tokio runtime. A bucket is unaffected (an
    /// object exists once its PUT completed).
    pub fn with_durability(mut self, durability: Durability) -> Self {
        if let FileBackend::Folder(root) = &self.backend {
            self.sync = FileSync::for_durability(durability, root);
        }
        self
    }

    /// Files placed whose bytes are not yet synced to the disk (only under
    /// `Relaxed`, until the next sync).
    pub fn unsynced_files(&self) -> usize {
        self.sync.pending()
    }

    pub fn backend(&self) -> &FileBackend {
        &self.backend
    }

    /// Where the bytes of file `id` are (or will be), in a folder; None in
    /// a bucket. Refuses any id that is not exactly 32 lowercase hex
    /// characters.
    pub fn path_of(&self, id: &str) -> Result<Option<PathBuf>, StoreError> {
        if !is_valid_id(id) {
            return Err(StoreError::InvalidId);
        }
        Ok(match &self.backend {
            FileBackend::Folder(root) => Some(root.join(id)),
            FileBackend::Bucket(_) => None,
        })
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
    pub async fn write(&self, id: &str, body: impl Into<Bytes>) -> Result<FileRecord, StoreError> {
        let path = self.path_of(id)?;
        if self.store.get_file(id).await?.is_none() {
            return Err(StoreError::NotFound {
                kind: "file",
                id: id.to_string(),
            });
        }
        let body: Bytes = body.into();
        let size = body.len() as u64;
        match (&self.backend, path) {
            (FileBackend::Folder(root), Some(path)) => {
                let (root, sync) = (root.clone(), self.sync.clone());
                tokio::task::spawn_blocking(move || {
                    write_atomically(&root, &path, &sync, |f| f.write_all(&body))
                })
                .await
                .map_err(StoreError::Join)??;
            }
            (FileBackend::Bucket(bucket), _) => bucket.put(id, body).await?,
            (FileBackend::Folder(_), None) => unreachable!("a folder has paths"),
        }
        self.store.mark_file_uploaded(id, size).await
    }

    /// Starts a streamed upload of a registered file: bytes go to a
    /// temporary file (or a multipart upload) ([`PartialUpload::write`])
    /// and replace the file's bytes only at [`PartialUpload::finish`].
    /// Dropping the upload unfinished (the client went away, a limit
    /// tripped) removes the temporary file (aborts the multipart upload),
    /// so a half upload never leaves bytes behind.
    pub async fn begin_upload(&self, id: &str) -> Result<PartialUpload, StoreError> {
        let path = self.path_of(id)?;
        let Some(record) = self.store.get_file(id).await? else {
            return Err(StoreError::NotFound {
                kind: "file",
                id: id.to_string(),
            });
        };
        let sink = match (&self.backend, path) {
            (FileBackend::Folder(root), Some(dest)) => {
                let tmp = root.join(format!(".tmp-{}", new_id()));
                let file = tokio::fs::File::create(&tmp)
                    .await
                    .map_err(|e| StoreError::io("cannot create", &tmp, e))?;
                Sink::Folder {
                    dest,
                    tmp: Some(tmp),
                    file: Some(file),
                }
            }
            (FileBackend::Bucket(bucket), _) => Sink::Bucket {
                writer: Some(bucket.writer(id)),
                bucket: bucket.clone(),
            },
            (FileBackend::Folder(_), None) => unreachable!("a folder has paths"),
        };
        Ok(PartialUpload {
            record,
            sink,
            written: 0,
            store: self.store.clone(),
            sync: self.sync.clone(),
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
        let size = self.copy_in(&id, source).await?;
        self.record_imported(id, filename, content_type, size).await
    }

    /// Copies `source` to the bytes of `id`; the size copied.
    async fn copy_in(&self, id: &str, source: &Path) -> Result<u64, StoreError> {
        match (&self.backend, self.path_of(id)?) {
            (FileBackend::Folder(root), Some(path)) => {
                let (root, sync) = (root.clone(), self.sync.clone());
                let src = source.to_path_buf();
                tokio::task::spawn_blocking(move || {
                    let mut input = std::fs::File::open(&src)
                        .map_err(|e| StoreError::io("cannot open", &src, e))?;
                    write_atomically(&root, &path, &sync, |f| {
                        std::io::copy(&mut input, f).map(|_| ())
                    })?;
                    std::fs::metadata(&path)
                        .map(|m| m.len())
                        .map_err(|e| StoreError::io("cannot stat", &path, e))
                })
                .await
                .map_err(StoreError::Join)?
            }
            (FileBackend::Bucket(bucket), _) => import_to_bucket(bucket, id, source).await,
            (FileBackend::Folder(_), None) => unreachable!("a folder has paths"),
        }
    }

    /// The record of a file whose bytes were just stored.
    async fn record_imported(
        &self,
        id: String,
        filename: &str,
        content_type: &str,
        size: u64,
    ) -> Result<FileRecord, StoreError> {
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

    /// Stores a local file the caller owns and will not read again (an
    /// output file in a call's scratch folder) as a new, uploaded file.
    /// In a folder it is moved (renamed) into place when it can be: a plain
    /// file (not a link, and no other hard link to it, so nothing outside
    /// the store can change the stored bytes later) on the store's
    /// filesystem. Otherwise, and in a bucket, it is copied as by
    /// [`FileStore::import`] and the source is left where it is.
    pub async fn adopt(
        &self,
        source: &Path,
        filename: &str,
        content_type: &str,
    ) -> Result<(FileRecord, Placed), StoreError> {
        let id = new_id();
        let moved = match (&self.backend, self.path_of(&id)?) {
            (FileBackend::Folder(_), Some(dest)) => {
                let (src, sync) = (source.to_path_buf(), self.sync.clone());
                tokio::task::spawn_blocking(move || move_into(&src, &dest, &sync))
                    .await
                    .map_err(StoreError::Join)?
            }
            _ => None,
        };
        let (size, placed) = match moved {
            Some(size) => (size, Placed::Moved),
            None => (self.copy_in(&id, source).await?, Placed::Copied),
        };
        let record = self
            .record_imported(id, filename, content_type, size)
            .await?;
        Ok((record, placed))
    }

    /// Deletes a file: its bytes (if any), then its record. False when no
    /// such file is stored.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let Ok(path) = self.path_of(id) else {
            return Ok(false);
        };
        match (&self.backend, path) {
            (FileBackend::Folder(_), Some(path)) => match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("cannot delete", &path, e)),
            },
            (FileBackend::Bucket(bucket), _) => bucket.delete(id).await?,
            (FileBackend::Folder(_), None) => unreachable!("a folder has paths"),
        }
        self.store.delete_file(id).await
    }

    /// Bytes of the stored files (for `/metrics`): in a folder, every file
    /// under it, counted off the async threads (unreadable entries count
    /// 0); in a bucket, the sizes the records hold (listing a bucket costs
    /// a request per thousand objects, and its prefix may hold others').
    pub async fn bytes_on_disk(&self) -> u64 {
        match &self.backend {
            FileBackend::Folder(root) => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || dir_bytes(&root))
                    .await
                    .unwrap_or(0)
            }
            FileBackend::Bucket(_) => match self.recorded_bytes().await {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot sum the stored files' sizes");
                    0
                }
            },
        }
    }

    /// The sizes of every uploaded file's record, added up.
    async fn recorded_bytes(&self) -> Result<u64, StoreError> {
        let mut total = 0u64;
        let mut cursor: Option<String> = None;
        loop {
            // Every team's files: the bucket holds them all.
            let page = self
                .store
                .list_files(SIZE_PAGE, cursor.as_deref(), None)
                .await?;
            total += page
                .items
                .iter()
                .filter(|f| f.uploaded)
                .filter_map(|f| f.size)
                .sum::<u64>();
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(total),
            }
        }
    }

    /// A file's record and a handle on its bytes. `None` for an unknown (or
    /// malformed) id.
    pub async fn get(&self, id: &str) -> Result<Option<(FileRecord, StoredBytes)>, StoreError> {
        if !is_valid_id(id) {
            return Ok(None);
        }
        let bytes = StoredBytes {
            id: id.to_string(),
            backend: self.backend.clone(),
        };
        Ok(self.store.get_file(id).await?.map(|r| (r, bytes)))
    }
}

/// Streams a local file into a new object (multipart past one part).
async fn import_to_bucket(bucket: &Bucket, id: &str, source: &Path) -> Result<u64, StoreError> {
    use tokio::io::AsyncWriteExt;
    let file = tokio::fs::File::open(source)
        .await
        .map_err(|e| StoreError::io("cannot open", source, e))?;
    let mut chunks = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    let mut writer = bucket.writer(id);
    let mut size = 0u64;
    let copied: Result<(), StoreError> = async {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| StoreError::io("cannot read", source, e))?;
            size += chunk.len() as u64;
            writer
                .put(chunk)
                .await
                .map_err(|e| bucket.write_error(id, std::io::Error::other(e)))?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = copied {
        // Parts already sent are dropped with the upload.
        let _ = writer.abort().await;
        return Err(e);
    }
    // A failed completion aborts the upload itself.
    writer
        .shutdown()
        .await
        .map_err(|e| bucket.write_error(id, e))?;
    Ok(size)
}

/// Where a stored file's bytes are ([`FileStore::get`]): read them with
/// [`StoredBytes::size`] and [`StoredBytes::read`], whatever the backend.
#[derive(Debug, Clone)]
pub struct StoredBytes {
    id: String,
    backend: FileBackend,
}

impl StoredBytes {
    /// The file on this machine's disk, when the backend is a folder (it
    /// may not exist yet: a registered file whose bytes have not come).
    pub fn local_path(&self) -> Option<PathBuf> {
        match &self.backend {
            FileBackend::Folder(root) => Some(root.join(&self.id)),
            FileBackend::Bucket(_) => None,
        }
    }

    /// The stored length in bytes.
    pub async fn size(&self) -> Result<u64, StoreError> {
        match &self.backend {
            FileBackend::Folder(root) => {
                let path = root.join(&self.id);
                tokio::fs::metadata(&path)
                    .await
                    .map(|m| m.len())
                    .map_err(|e| StoreError::io("cannot stat", &path, e))
            }
            FileBackend::Bucket(bucket) => bucket.len(&self.id).await,
        }
    }

    /// `count` bytes from `start`, streamed (a ranged GET in a bucket):
    /// never read whole.
    pub async fn read(&self, start: u64, count: u64) -> Result<ByteStream, StoreError> {
        match &self.backend {
            FileBackend::Folder(root) => read_local(&root.join(&self.id), start, count).await,
            FileBackend::Bucket(bucket) => bucket.read(&self.id, start, count).await,
        }
    }

    /// All the bytes, in memory (for small files only).
    pub async fn to_vec(&self) -> Result<Vec<u8>, StoreError> {
        let len = self.size().await?;
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut chunks = self.read(0, len).await?;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| StoreError::Object {
                what: "cannot read",
                key: self.id.clone(),
                message: e.to_string(),
            })?;
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// A streamed upload in progress ([`FileStore::begin_upload`]).
pub struct PartialUpload {
    record: FileRecord,
    sink: Sink,
    written: u64,
    store: Arc<dyn TaskStore>,
    sync: FileSync,
}

/// Where a streamed upload's bytes go until it finishes.
enum Sink {
    Folder {
        dest: PathBuf,
        /// The temporary file; None once renamed into place.
        tmp: Option<PathBuf>,
        file: Option<tokio::fs::File>,
    },
    Bucket {
        bucket: Bucket,
        /// None once the upload completed (or was aborted).
        writer: Option<BufWriter>,
    },
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

    fn finished(&self) -> StoreError {
        StoreError::io(
            "cannot write",
            &self.record.id,
            std::io::Error::other("upload already finished"),
        )
    }

    /// Appends `data`: written through at once to a folder; in a bucket,
    /// buffered up to one part, then sent as a part of a multipart upload
    /// (waiting while too many parts are in flight).
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        use tokio::io::AsyncWriteExt;
        match &mut self.sink {
            Sink::Folder {
                file: Some(file),
                tmp: Some(tmp),
                ..
            } => file
                .write_all(data)
                .await
                .map_err(|e| StoreError::io("cannot write", &*tmp, e))?,
            Sink::Bucket {
                bucket,
                writer: Some(writer),
            } => writer
                .put(Bytes::copy_from_slice(data))
                .await
                .map_err(|e| bucket.write_error(&self.record.id, std::io::Error::other(e)))?,
            _ => return Err(self.finished()),
        }
        self.written += data.len() as u64;
        Ok(())
    }

    /// Puts the bytes in place (syncs and renames the temporary file;
    /// completes the PUT or multipart upload) and marks the file uploaded
    /// with the size written.
    pub async fn finish(mut self) -> Result<FileRecord, StoreError> {
        use tokio::io::AsyncWriteExt;
        match &mut self.sink {
            Sink::Folder { dest, tmp, file } => {
                let (Some(mut f), Some(t)) = (file.take(), tmp.clone()) else {
                    return Err(self.finished());
                };
                let synced = async {
                    f.flush().await?;
                    f.set_permissions(read_only()).await?;
                    self.sync.sync_now_async(&f).await?;
                    drop(f);
                    tokio::fs::rename(&t, &*dest).await
                }
                .await;
                synced.map_err(|e| StoreError::io("cannot write", &*dest, e))?;
                // Renamed: nothing left for Drop to remove.
                *tmp = None;
                if let Err(e) = self.sync.placed_async(dest).await {
                    // In place but maybe not durable: no record may name it.
                    let _ = tokio::fs::remove_file(&*dest).await;
                    return Err(StoreError::io("cannot write", &*dest, e));
                }
            }
            Sink::Bucket { bucket, writer } => {
                let Some(w) = writer.as_mut() else {
                    return Err(self.finished());
                };
                let done = w.shutdown().await;
                // Shut down (a failed completion aborts the upload itself):
                // nothing left for Drop to abort.
                *writer = None;
                done.map_err(|e| bucket.write_error(&self.record.id, e))?;
            }
        }
        self.store
            .mark_file_uploaded(&self.record.id, self.written)
            .await
    }
}

impl Drop for PartialUpload {
    fn drop(&mut self) {
        match &mut self.sink {
            Sink::Folder { tmp, file, .. } => {
                // Close before unlinking; a blocking unlink of one
                // directory entry is cheap enough to do here.
                *file = None;
                if let Some(tmp) = tmp.take() {
                    let _ = std::fs::remove_file(&tmp);
                }
            }
            Sink::Bucket { writer, .. } => {
                // An unfinished multipart upload keeps its parts (billed)
                // until aborted; aborting is a request, so it runs on the
                // runtime after the drop.
                if let Some(mut w) = writer.take() {
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        rt.spawn(async move {
                            if let Err(e) = w.abort().await {
                                tracing::warn!(error = %e, "cannot abort an unfinished upload");
                            }
                        });
                    }
                }
            }
        }
    }
}

/// Writes a temporary file in `root`, syncs it (as `sync` says), renames
/// it to `path`.
fn write_atomically(
    root: &Path,
    path: &Path,
    sync: &FileSync,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let tmp = root.join(format!(".tmp-{}", new_id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        fill(&mut f)?;
        f.set_permissions(read_only())?;
        sync.sync_now(&f)?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::io("cannot write", path, e));
    }
    if let Err(e) = sync.placed(path) {
        // In place but maybe not durable: no record may name it.
        let _ = std::fs::remove_file(path);
        return Err(StoreError::io("cannot write", path, e));
    }
    Ok(())
}

/// The mode of a stored file (see the module's comment).
fn read_only() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o444)
}

/// How [`FileStore::adopt`] stored a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Renamed into the store: no byte copied, the source is gone.
    Moved,
    /// Copied: the source is still there.
    Copied,
}

/// Renames `src` to `dest` when that is safe and possible; its size then,
/// None when it must be copied instead (a link, a file with other hard
/// links, another filesystem, any other rename error). The bytes are
/// flushed to disk before the record that names them is written, as a
/// copy's are.
fn move_into(src: &Path, dest: &Path, sync: &FileSync) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(src).ok()?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return None;
    }
    if let Err(e) = std::fs::rename(src, dest) {
        // EXDEV (the scratch folder on another filesystem) is the usual
        // case; whatever it was, the copy says what is really wrong.
        tracing::debug!(source = %src.display(), error = %e, "output file not moved; copying it");
        return None;
    }
    let synced = std::fs::File::open(dest).and_then(|f| {
        f.set_permissions(read_only())?;
        sync.sync_now(&f)?;
        let meta = f.metadata()?;
        sync.placed(dest)?;
        Ok(meta)
    });
    match synced {
        Ok(m) => Some(m.len()),
        Err(e) => {
            // Put it back so the copy (and its error) can take over.
            tracing::warn!(file = %dest.display(), error = %e, "moved output file cannot be synced; copying it");
            if std::fs::rename(dest, src).is_err() {
                let _ = std::fs::remove_file(dest);
            }
            None
        }
    }
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
