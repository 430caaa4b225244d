//! Where stored files' bytes live (`infsh serve --files URL`): a folder
//! (the default `<data_dir>/files`, or `file:///srv/infsh-files`, which may
//! be a shared mount) or an S3-compatible bucket (`s3://bucket/prefix`,
//! through the `object_store` crate). Either way a file's bytes are one
//! object named by its id (`<folder>/<id>`, `<prefix>/<id>`); the records
//! stay in the [`crate::TaskStore`].
//!
//! The bucket's endpoint, region and credentials come from the usual AWS
//! environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`);
//! plain `http://` is allowed for a loopback endpoint (a local S3-compatible
//! server) or with `AWS_ALLOW_HTTP=true`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, GetOptions, GetRange, ObjectStore, PutPayload, RetryConfig};

use crate::StoreError;

/// Bytes of a stored file as they are read: chunks, or the error that
/// ended the read.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// A multipart upload's part size: S3's smallest (but the last). Memory of
/// one streamed upload stays near `PART_BYTES * (UPLOAD_PARTS_IN_FLIGHT + 1)`
/// whatever the file's size.
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts of one upload sent at once.
const UPLOAD_PARTS_IN_FLIGHT: usize = 2;

/// A `--files` URL, parsed (nothing opened yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilesUrl {
    /// `file:///ABSOLUTE/PATH`
    Folder(PathBuf),
    /// `s3://BUCKET[/PREFIX]` (the prefix without leading or trailing `/`).
    Bucket { bucket: String, prefix: String },
}

impl FilesUrl {
    pub fn parse(url: &str) -> Result<FilesUrl, StoreError> {
        let bad = |message: &str| StoreError::BadUrl {
            url: url.to_string(),
            message: message.to_string(),
        };
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad(
                    "a file:// URL names an absolute folder: file:///srv/infsh-files",
                ));
            }
            return Ok(FilesUrl::Folder(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("an s3:// URL names a bucket: s3://BUCKET[/PREFIX]"));
            }
            let prefix = prefix.trim_matches('/');
            ObjectPath::parse(prefix).map_err(|e| bad(&format!("bad prefix: {e}")))?;
            return Ok(FilesUrl::Bucket {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        Err(bad(&match url.split_once("://") {
            Some((scheme, _)) => {
                format!("unknown scheme \"{scheme}\": use file:///PATH or s3://BUCKET[/PREFIX]")
            }
            None => "not a URL: use file:///PATH or s3://BUCKET[/PREFIX]".to_string(),
        }))
    }
}

/// Where the bytes go: opened, and (for a bucket) checked reachable.
#[derive(Clone)]
pub enum FileBackend {
    Folder(PathBuf),
    Bucket(Bucket),
}

impl std::fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileBackend::Folder(root) => f.debug_tuple("Folder").field(root).finish(),
            FileBackend::Bucket(b) => f.debug_tuple("Bucket").field(&b.url).finish(),
        }
    }
}

impl FileBackend {
    /// Opens what `url` names: creates the folder, or lists the bucket once
    /// (so a wrong bucket, endpoint or key fails the start, not the first
    /// upload). Errors are [`StoreError::BadUrl`] (the bucket's client
    /// cannot be built from the environment) or [`StoreError::Connect`].
    pub async fn open(url: &FilesUrl) -> Result<FileBackend, StoreError> {
        match url {
            FilesUrl::Folder(root) => {
                std::fs::create_dir_all(root).map_err(|e| StoreError::Connect {
                    url: format!("file://{}", root.display()),
                    message: format!("cannot create the folder: {e}"),
                })?;
                Ok(FileBackend::Folder(root.clone()))
            }
            FilesUrl::Bucket { bucket, prefix } => {
                Bucket::open(bucket, prefix).await.map(FileBackend::Bucket)
            }
        }
    }

    /// The URL this backend was opened from (for logs).
    pub fn describe(&self) -> String {
        match self {
            FileBackend::Folder(root) => format!("file://{}", root.display()),
            FileBackend::Bucket(b) => b.url.clone(),
        }
    }
}

/// Objects of the server's own beside the stored files, named by a
/// `/`-separated key of plain names (`versions/NS/NAME/HASH.pkg`: a
/// deployed version's package, which every API node sharing this storage
/// serves to engines). Small enough to be read whole.
impl FileBackend {
    pub async fn put_object(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        check_key(key)?;
        match self {
            FileBackend::Folder(root) => {
                let path = root.join(key);
                let tmp = path.with_extension(format!("tmp-{}", crate::new_id()));
                let result = async {
                    if let Some(parent) = path.parent() {
                        tokio::fs::create_dir_all(parent).await?;
                    }
                    tokio::fs::write(&tmp, &bytes).await?;
                    tokio::fs::rename(&tmp, &path).await
                }
                .await;
                if let Err(e) = result {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(StoreError::io("cannot write", &path, e));
                }
                Ok(())
            }
            FileBackend::Bucket(bucket) => bucket.put_key(key, bytes).await,
        }
    }

    /// The object's bytes; None when there is none.
    pub async fn get_object(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        check_key(key)?;
        match self {
            FileBackend::Folder(root) => {
                let path = root.join(key);
                match tokio::fs::read(&path).await {
                    Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(StoreError::io("cannot read", &path, e)),
                }
            }
            FileBackend::Bucket(bucket) => bucket.get_key(key).await,
        }
    }

    /// Deletes the object; one that is not there is no error.
    pub async fn delete_object(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        match self {
            FileBackend::Folder(root) => {
                let path = root.join(key);
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(StoreError::io("cannot delete", &path, e)),
                }
            }
            FileBackend::Bucket(bucket) => bucket.delete_key(key).await,
        }
    }
}

/// A key of plain names: nothing that leaves the folder or the prefix.
fn check_key(key: &str) -> Result<(), StoreError> {
    let plain =
        |part: &str| !part.is_empty() && part != "." && part != ".." && !part.contains('\\');
    if key.split('/').all(plain) {
        Ok(())
    } else {
        Err(StoreError::BadUrl {
            url: key.to_string(),
            message: "not an object key of plain names".into(),
        })
    }
}

/// An S3-compatible bucket and the prefix files live under.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// `s3://bucket/prefix`, for messages.
    url: String,
}

impl Bucket {
    async fn open(bucket: &str, prefix: &str) -> Result<Bucket, StoreError> {
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            // A start against a dead endpoint fails in seconds, and a
            // request in service gets a few tries before it is an error.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
            });
        if endpoint_is_loopback_http() {
            builder = builder.with_allow_http(true);
        }
        let store = builder.build().map_err(|e| StoreError::BadUrl {
            url: url.clone(),
            message: e.to_string(),
        })?;
        let bucket = Bucket {
            store: Arc::new(store),
            prefix: ObjectPath::parse(prefix).map_err(|e| StoreError::BadUrl {
                url: url.clone(),
                message: format!("bad prefix: {e}"),
            })?,
            url,
        };
        bucket.probe().await?;
        Ok(bucket)
    }

    /// Lists one object under the prefix: the bucket exists and the key
    /// may read it.
    async fn probe(&self) -> Result<(), StoreError> {
        let mut listing = self.store.list(Some(&self.prefix));
        match listing.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(StoreError::Connect {
                url: self.url.clone(),
                message: one_line(&e),
            }),
        }
    }

    fn key(&self, id: &str) -> ObjectPath {
        self.prefix.child(id)
    }

    fn error(&self, what: &'static str, id: &str, e: object_store::Error) -> StoreError {
        StoreError::Object {
            what,
            key: format!("{}/{id}", self.url),
            message: one_line(&e),
        }
    }

    /// `key`'s parts each a child of the prefix (a `/` in one child would
    /// be escaped, not a separator).
    fn key_path(&self, key: &str) -> ObjectPath {
        key.split('/')
            .fold(self.prefix.clone(), |path, part| path.child(part))
    }

    async fn put_key(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.store
            .put(&self.key_path(key), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error("cannot write", key, e))
    }

    async fn delete_key(&self, key: &str) -> Result<(), StoreError> {
        match self.store.delete(&self.key_path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("cannot delete", key, e)),
        }
    }

    async fn get_key(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.store.get(&self.key_path(key)).await {
            Ok(got) => got
                .bytes()
                .await
                .map(Some)
                .map_err(|e| self.error("cannot read", key, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("cannot read", key, e)),
        }
    }

    pub(crate) async fn put(&self, id: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.store
            .put(&self.key(id), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error("cannot write", id, e))
    }

    /// A writer that buffers one part and sends the file as a multipart
    /// upload once it outgrows it (a single PUT below that).
    pub(crate) fn writer(&self, id: &str) -> BufWriter {
        BufWriter::with_capacity(self.store.clone(), self.key(id), PART_BYTES)
            .with_max_concurrency(UPLOAD_PARTS_IN_FLIGHT)
    }

    pub(crate) fn write_error(&self, id: &str, e: std::io::Error) -> StoreError {
        StoreError::Object {
            what: "cannot write",
            key: format!("{}/{id}", self.url),
            message: e.to_string(),
        }
    }

    pub(crate) async fn len(&self, id: &str) -> Result<u64, StoreError> {
        self.store
            .head(&self.key(id))
            .await
            .map(|meta| meta.size)
            .map_err(|e| self.error("cannot read", id, e))
    }

    /// `count` bytes from `start`, as one ranged GET, streamed.
    pub(crate) async fn read(
        &self,
        id: &str,
        start: u64,
        count: u64,
    ) -> Result<ByteStream, StoreError> {
        if count == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..start + count)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&self.key(id), options)
            .await
            .map_err(|e| self.error("cannot read", id, e))?;
        Ok(got
            .into_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other))
            .boxed())
    }

    /// Deletes the object; one that is not there is no error.
    pub(crate) async fn delete(&self, id: &str) -> Result<(), StoreError> {
        match self.store.delete(&self.key(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("cannot delete", id, e)),
        }
    }
}

/// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`) is `http://` on a loopback host.
fn endpoint_is_loopback_http() -> bool {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .unwrap_or_default();
    is_loopback_http(&endpoint)
}

fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An object_store error and its causes as one line (the transport's
/// "connection refused" is a cause, not the top message).
fn one_line(e: &object_store::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Reads a local file's `count` bytes from `start`, a buffer at a time.
pub(crate) async fn read_local(
    path: &Path,
    start: u64,
    count: u64,
) -> Result<ByteStream, StoreError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| StoreError::io("cannot open", path, e))?;
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| StoreError::io("cannot read", path, e))?;
    }
    Ok(tokio_util::io::ReaderStream::new(file.take(count)).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn folder_objects_are_written_read_and_deleted_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let backend = FileBackend::Folder(dir.path().to_path_buf());
        let key = "versions/ns/app/abc.pkg";
        assert_eq!(backend.get_object(key).await.unwrap(), None);
        backend
            .put_object(key, Bytes::from_static(b"pkg"))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("versions/ns/app/abc.pkg")).unwrap(),
            b"pkg"
        );
        assert_eq!(
            backend.get_object(key).await.unwrap(),
            Some(Bytes::from_static(b"pkg"))
        );
        backend.delete_object(key).await.unwrap();
        backend.delete_object(key).await.unwrap();
        assert_eq!(backend.get_object(key).await.unwrap(), None);
        for bad in ["../x", "versions//x", "a/./b", ""] {
            assert!(
                matches!(
                    backend.get_object(bad).await,
                    Err(StoreError::BadUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_folders_and_buckets() {
        assert_eq!(
            FilesUrl::parse("file:///srv/infsh-files").unwrap(),
            FilesUrl::Folder(PathBuf::from("/srv/infsh-files"))
        );
        assert_eq!(
            FilesUrl::parse("s3://media/infsh/files/").unwrap(),
            FilesUrl::Bucket {
                bucket: "media".into(),
                prefix: "infsh/files".into()
            }
        );
        assert_eq!(
            FilesUrl::parse("s3://media").unwrap(),
            FilesUrl::Bucket {
                bucket: "media".into(),
                prefix: String::new()
            }
        );
    }

    #[test]
    fn refuses_other_urls_naming_the_forms() {
        let msg = |url: &str| FilesUrl::parse(url).unwrap_err().to_string();
        assert_eq!(
            msg("gs://bucket/x"),
            "gs://bucket/x: unknown scheme \"gs\": use file:///PATH or s3://BUCKET[/PREFIX]"
        );
        assert_eq!(
            msg("/srv/files"),
            "/srv/files: not a URL: use file:///PATH or s3://BUCKET[/PREFIX]"
        );
        assert_eq!(
            msg("file://relative/dir"),
            "file://relative/dir: a file:// URL names an absolute folder: file:///srv/infsh-files"
        );
        assert_eq!(
            msg("s3:///prefix"),
            "s3:///prefix: an s3:// URL names a bucket: s3://BUCKET[/PREFIX]"
        );
    }

    #[test]
    fn only_loopback_endpoints_may_be_plain_http() {
        assert!(is_loopback_http("http://127.0.0.1:9000"));
        assert!(is_loopback_http("http://localhost:9000/"));
        assert!(is_loopback_http("http://[::1]:9000"));
        assert!(!is_loopback_http("https://127.0.0.1:9000"));
        assert!(!is_loopback_http("http://s3.example.com"));
        assert!(!is_loopback_http("http://10.0.0.5:9000"));
        assert!(!is_loopback_http(""));
    }
}
