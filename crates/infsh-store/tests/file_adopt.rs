//! [`FileStore::adopt`] on a real folder: a plain file is renamed into the
//! store (same inode, source gone, no byte copied); anything that could
//! still change the stored bytes from outside (a symlink, a second hard
//! link) or cannot be renamed (another filesystem) is copied, leaving the
//! source; a missing source is the same error as a copy's.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use infsh_store::{FileStore, Placed, SqliteStore, TaskStore};

async fn store_in(dir: &Path) -> FileStore {
    let store: Arc<dyn TaskStore> =
        Arc::new(SqliteStore::open_async(dir.join("infsh.db")).await.unwrap());
    FileStore::open(dir.join("files"), store).unwrap()
}

fn stored_path(dir: &Path, id: &str) -> std::path::PathBuf {
    dir.join("files").join(id)
}

#[tokio::test]
async fn a_plain_file_is_moved_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let files = store_in(dir.path()).await;
    let src = dir.path().join("scratch").join("out.png");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    std::fs::write(&src, b"png bytes").unwrap();
    let inode = std::fs::metadata(&src).unwrap().ino();

    let (record, placed) = files.adopt(&src, "out.png", "image/png").await.unwrap();
    assert_eq!(placed, Placed::Moved);
    assert!(!src.exists(), "the source is gone");
    let dest = stored_path(dir.path(), &record.id);
    assert_eq!(std::fs::metadata(&dest).unwrap().ino(), inode, "same inode");
    assert_eq!(std::fs::read(&dest).unwrap(), b"png bytes");
    assert_eq!(record.size, Some(9));
    assert!(record.uploaded);
    assert_eq!(record.filename, "out.png");
    assert_eq!(record.content_type, "image/png");
    let (got, bytes) = files.get(&record.id).await.unwrap().unwrap();
    assert_eq!(got, record);
    assert_eq!(bytes.to_vec().await.unwrap(), b"png bytes");
    // No temporary file left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(&record.id)]);
}

#[tokio::test]
async fn a_hard_linked_file_is_copied_and_both_links_stay() {
    let dir = tempfile::tempdir().unwrap();
    let files = store_in(dir.path()).await;
    let outside = dir.path().join("app-asset.bin");
    std::fs::write(&outside, b"asset").unwrap();
    let src = dir.path().join("linked.bin");
    std::fs::hard_link(&outside, &src).unwrap();

    let (record, placed) = files.adopt(&src, "linked.bin", "x/y").await.unwrap();
    assert_eq!(placed, Placed::Copied);
    assert!(src.exists() && outside.exists());
    let dest = stored_path(dir.path(), &record.id);
    assert_ne!(
        std::fs::metadata(&dest).unwrap().ino(),
        std::fs::metadata(&outside).unwrap().ino()
    );
    // Writing the other link later does not change what was stored.
    std::fs::write(&outside, b"changed").unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"asset");
}

#[tokio::test]
async fn a_symlink_is_copied_as_the_bytes_it_points_to() {
    let dir = tempfile::tempdir().unwrap();
    let files = store_in(dir.path()).await;
    let target = dir.path().join("target.txt");
    std::fs::write(&target, b"target").unwrap();
    let link = dir.path().join("link.txt");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    let (record, placed) = files.adopt(&link, "link.txt", "text/plain").await.unwrap();
    assert_eq!(placed, Placed::Copied);
    let dest = stored_path(dir.path(), &record.id);
    assert!(std::fs::symlink_metadata(&dest)
        .unwrap()
        .file_type()
        .is_file());
    assert_eq!(std::fs::read(&dest).unwrap(), b"target");
    assert!(std::fs::symlink_metadata(&link).is_ok(), "the link stays");
    assert_eq!(std::fs::read(&target).unwrap(), b"target");
}

#[tokio::test]
async fn a_file_on_another_filesystem_is_copied() {
    // /dev/shm is a tmpfs on Linux: another filesystem than the temporary
    // folder's whenever that is on disk. Where both are the same there is
    // nothing to test here.
    let shm = Path::new("/dev/shm");
    let dir = tempfile::tempdir().unwrap();
    let other = match tempfile::tempdir_in(shm) {
        Ok(other) => other,
        Err(_) => return eprintln!("skipped: no /dev/shm"),
    };
    let dev = |p: &Path| std::fs::metadata(p).unwrap().dev();
    if dev(other.path()) == dev(dir.path()) {
        return eprintln!("skipped: /dev/shm is on the same filesystem as the store");
    }
    let files = store_in(dir.path()).await;
    let src = other.path().join("out.bin");
    std::fs::write(&src, b"elsewhere").unwrap();

    let (record, placed) = files.adopt(&src, "out.bin", "x/y").await.unwrap();
    assert_eq!(placed, Placed::Copied);
    assert_eq!(
        std::fs::read(stored_path(dir.path(), &record.id)).unwrap(),
        b"elsewhere"
    );
    assert!(src.exists(), "a copy leaves the source");
}

#[tokio::test]
async fn a_missing_source_is_the_copy_error_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let files = store_in(dir.path()).await;
    let src = dir.path().join("never-written.png");

    let err = files.adopt(&src, "x.png", "image/png").await.unwrap_err();
    let message = err.to_string();
    let prefix = format!("cannot open {}: ", src.display());
    assert!(message.starts_with(&prefix), "{message}");
    assert!(message.contains("No such file or directory"), "{message}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("files")).unwrap().count(),
        0
    );
}
