//! When a folder store's files reach the disk ([`FileStore::with_durability`],
//! docs/reliability.md "Durability"): under `full` every file is synced
//! before the write returns (nothing is ever left pending); under `relaxed`
//! uploads, copies and moved outputs are acknowledged at once, readable and
//! read-only, and synced by the background task within the window.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use infsh_store::{Durability, FileStore, SqliteStore, TaskStore, RELAXED_SYNC_WINDOW};

async fn store_in(dir: &Path, durability: Durability) -> FileStore {
    let store: Arc<dyn TaskStore> =
        Arc::new(SqliteStore::open_async(dir.join("infsh.db")).await.unwrap());
    FileStore::open(dir.join("files"), store)
        .unwrap()
        .with_durability(durability)
}

/// One file of each kind of write: `write`, a streamed upload, and an
/// adopted output; their ids.
async fn place_three(dir: &Path, files: &FileStore) -> Vec<String> {
    let written = files.create("a.txt", None, None).await.unwrap();
    files.write(&written.id, &b"written"[..]).await.unwrap();
    let streamed = files.create("b.txt", None, None).await.unwrap();
    let mut upload = files.begin_upload(&streamed.id).await.unwrap();
    upload.write(b"streamed").await.unwrap();
    upload.finish().await.unwrap();
    let out = dir.join("scratch-out.bin");
    std::fs::write(&out, b"adopted").unwrap();
    let (adopted, _) = files
        .adopt(&out, "c.bin", "application/octet-stream")
        .await
        .unwrap();
    vec![written.id, streamed.id, adopted.id]
}

fn check_placed(dir: &Path, ids: &[String]) {
    for (id, bytes) in ids.iter().zip([&b"written"[..], b"streamed", b"adopted"]) {
        let path = dir.join("files").join(id);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444, "{id}: {mode:o}");
    }
}

#[tokio::test]
async fn under_full_every_file_is_synced_before_it_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let files = store_in(dir.path(), Durability::Full).await;
    let ids = place_three(dir.path(), &files).await;
    check_placed(dir.path(), &ids);
    assert_eq!(files.unsynced_files(), 0);
}

#[tokio::test]
async fn under_relaxed_files_are_acknowledged_at_once_and_synced_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let files = store_in(dir.path(), Durability::Relaxed).await;
    let ids = place_three(dir.path(), &files).await;
    check_placed(dir.path(), &ids);
    // The first sync comes a window after the store opened: if the writes
    // took less, all three are still queued.
    let queued = files.unsynced_files();
    if started.elapsed() < RELAXED_SYNC_WINDOW {
        assert_eq!(queued, 3);
    }
    let deadline = Instant::now() + RELAXED_SYNC_WINDOW * 5;
    while files.unsynced_files() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} files never synced",
            files.unsynced_files()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check_placed(dir.path(), &ids);
}

#[tokio::test]
async fn without_a_runtime_relaxed_syncs_each_file_at_once() {
    // Without a tokio runtime there is no background task: `relaxed`
    // falls back to syncing each file (checked by building it outside one).
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn TaskStore> = Arc::new(
        SqliteStore::open_async(dir.path().join("infsh.db"))
            .await
            .unwrap(),
    );
    let root = dir.path().join("files");
    let files = std::thread::spawn(move || {
        FileStore::open(root, store)
            .unwrap()
            .with_durability(Durability::Relaxed)
    })
    .join()
    .unwrap();
    let ids = place_three(dir.path(), &files).await;
    check_placed(dir.path(), &ids);
    assert_eq!(files.unsynced_files(), 0);
}
