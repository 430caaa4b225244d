//! The SQLite store on a real database file in a temporary folder: round
//! trips of every record, paging, recovery queries, durability across a
//! reopen, and the file store's id checks.

use std::sync::Arc;

use infsh_store::{
    new_id, Durability, FileStore, LogEntry, LogType, SqliteStore, StoreError, TaskFilter,
    TaskRecord, TaskStatus, TaskStore, RELAXED_SYNC_WINDOW,
};
use serde_json::json;

fn task(app: &str, created: i64) -> TaskRecord {
    TaskRecord {
        id: new_id(),
        app: app.to_string(),
        function: "run".into(),
        input: json!({"text": "hi", "n": [1, 2]}),
        setup: json!({}),
        status: TaskStatus::Queued,
        output: None,
        error: None,
        webhook: Some("http://127.0.0.1:1/hook".into()),
        session_id: None,
        metadata: json!({"user": "u"}),
        timeout_secs: Some(1.5),
        created_at_ms: created,
        updated_at_ms: created,
        team: None,
        run_at_ms: None,
    }
}

fn log(t: LogType, s: &str, at: i64) -> LogEntry {
    LogEntry {
        log_type: t,
        content: s.into(),
        at_ms: at,
    }
}

#[tokio::test]
async fn task_round_trip_and_updates() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_async(dir.path().join("db/infsh.db"))
        .await
        .unwrap();
    let t = task("tests/a", 1000);
    store.insert_task(&t).await.unwrap();
    assert_eq!(store.get_task(&t.id).await.unwrap().as_ref(), Some(&t));
    assert!(store.insert_task(&t).await.is_err(), "duplicate id");

    store
        .update_status(&t.id, TaskStatus::Running, 1001)
        .await
        .unwrap();
    store
        .update_output(&t.id, &json!({"partial": true}).into(), 1002)
        .await
        .unwrap();
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Running);
    assert_eq!(
        got.output.as_ref().map(|o| o.to_value().into_owned()),
        Some(json!({"partial": true}))
    );
    assert_eq!(got.updated_at_ms, 1002);

    store
        .finish_task(&t.id, TaskStatus::Failed, None, Some("ValueError: x"), 1003)
        .await
        .unwrap();
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Failed);
    assert_eq!(got.output.as_ref().map(|o| o.to_value().into_owned()), None);
    assert_eq!(got.error.as_deref(), Some("ValueError: x"));

    let missing = store.update_status("nope", TaskStatus::Running, 1).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    assert!(store.get_task("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn logs_append_in_order_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_async(dir.path().join("infsh.db"))
        .await
        .unwrap();
    let t = task("tests/a", 1);
    store.insert_task(&t).await.unwrap();
    store.append_logs(&t.id, &[]).await.unwrap();
    store
        .append_logs(
            &t.id,
            &[log(LogType::Build, "b1", 1), log(LogType::Setup, "s1", 2)],
        )
        .await
        .unwrap();
    let many: Vec<_> = (0..300)
        .map(|i| log(LogType::Task, &format!("line {i}"), 3))
        .collect();
    store.append_logs(&t.id, &many).await.unwrap();
    let logs = store.get_logs(&t.id).await.unwrap();
    assert_eq!(logs.len(), 302);
    assert_eq!(logs[0], log(LogType::Build, "b1", 1));
    assert_eq!(logs[1], log(LogType::Setup, "s1", 2));
    assert_eq!(logs[2].content, "line 0");
    assert_eq!(logs[301].content, "line 299");
    assert!(
        store.append_logs("unknown", &many[..1]).await.is_err(),
        "foreign key"
    );
}

#[tokio::test]
async fn list_is_newest_first_with_filters_and_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_async(dir.path().join("infsh.db"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..7 {
        // Same timestamps on purpose: order comes from insertion.
        let t = task(
            if i % 2 == 0 {
                "tests/even"
            } else {
                "tests/odd"
            },
            5,
        );
        store.insert_task(&t).await.unwrap();
        ids.push(t.id);
    }
    store
        .update_status(&ids[6], TaskStatus::Running, 6)
        .await
        .unwrap();

    let all = TaskFilter::default();
    let p1 = store.list_tasks(&all, 3, None).await.unwrap();
    let got: Vec<_> = p1.items.iter().map(|t| t.id.clone()).collect();
    assert_eq!(got, vec![ids[6].clone(), ids[5].clone(), ids[4].clone()]);
    let p2 = store
        .list_tasks(&all, 3, p1.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(p2.items[0].id, ids[3]);
    let p3 = store
        .list_tasks(&all, 3, p2.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(p3.items.len(), 1);
    assert_eq!(p3.items[0].id, ids[0]);
    assert_eq!(p3.next_cursor, None);

    // Exactly a page full: no further cursor.
    let exact = store.list_tasks(&all, 7, None).await.unwrap();
    assert_eq!(exact.items.len(), 7);
    assert_eq!(exact.next_cursor, None);

    let even = TaskFilter {
        app: Some("tests/even".into()),
        status: None,
        team: None,
    };
    let page = store.list_tasks(&even, 10, None).await.unwrap();
    assert_eq!(page.items.len(), 4);
    assert!(page.items.iter().all(|t| t.app == "tests/even"));

    let running = TaskFilter {
        app: Some("tests/even".into()),
        status: Some(TaskStatus::Running),
        team: None,
    };
    let page = store.list_tasks(&running, 10, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, ids[6]);

    for bad in ["abc", "-1", "0"] {
        assert!(matches!(
            store.list_tasks(&all, 3, Some(bad)).await,
            Err(StoreError::InvalidCursor(_))
        ));
    }
}

#[tokio::test]
async fn recovery_query_is_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_async(dir.path().join("infsh.db"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (i, status) in [
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Received,
        TaskStatus::Queued,
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = task("tests/a", 10 - i as i64);
        t.status = status;
        store.insert_task(&t).await.unwrap();
        ids.push(t.id);
    }
    let waiting = store
        .tasks_with_status(&[TaskStatus::Received, TaskStatus::Queued])
        .await
        .unwrap();
    let got: Vec<_> = waiting.into_iter().map(|t| t.id).collect();
    assert_eq!(got, vec![ids[0].clone(), ids[3].clone(), ids[4].clone()]);
    assert!(store.tasks_with_status(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("infsh.db");
    let t = task("tests/a", 42);
    let file_id;
    {
        let store = SqliteStore::open_async(&path).await.unwrap();
        store.insert_task(&t).await.unwrap();
        store
            .append_logs(&t.id, &[log(LogType::Run, "hello", 43)])
            .await
            .unwrap();
        let files = FileStore::open(dir.path().join("files"), Arc::new(store.clone())).unwrap();
        let f = files
            .create("a.txt", Some("text/plain"), Some(3))
            .await
            .unwrap();
        files.write(&f.id, b"abc".to_vec()).await.unwrap();
        file_id = f.id;
        // Dropped here without any explicit close: the commits must be on disk.
    }
    let store = SqliteStore::open_async(&path).await.unwrap();
    assert_eq!(store.get_task(&t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(
        store.get_logs(&t.id).await.unwrap(),
        vec![log(LogType::Run, "hello", 43)]
    );
    let files = FileStore::open(dir.path().join("files"), Arc::new(store)).unwrap();
    let (record, bytes_at) = files.get(&file_id).await.unwrap().unwrap();
    assert!(record.uploaded);
    assert_eq!(record.size, Some(3));
    assert_eq!(
        std::fs::read(bytes_at.local_path().unwrap()).unwrap(),
        b"abc"
    );
}

#[tokio::test]
async fn database_is_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("infsh.db");
    let store = SqliteStore::open_async(&path).await.unwrap();
    store.insert_task(&task("tests/a", 1)).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(version, infsh_store::migrations::latest_version());
}

#[tokio::test]
async fn file_store_records_and_refuses_bad_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn TaskStore> = Arc::new(
        SqliteStore::open_async(dir.path().join("infsh.db"))
            .await
            .unwrap(),
    );
    let files = FileStore::open(dir.path().join("files"), store.clone()).unwrap();
    let f = files.create("../evil/name.png", None, None).await.unwrap();
    assert_eq!(f.filename, "name.png");
    assert_eq!(f.content_type, "application/octet-stream");
    assert!(!f.uploaded);
    assert_eq!(f.size, None);
    assert!(infsh_store::is_valid_id(&f.id));

    let written = files.write(&f.id, vec![1u8, 2, 3, 4]).await.unwrap();
    assert!(written.uploaded);
    assert_eq!(written.size, Some(4));
    let (got, bytes) = files.get(&f.id).await.unwrap().unwrap();
    assert_eq!(got, written);
    assert_eq!(
        bytes.local_path(),
        Some(dir.path().join("files").join(&f.id))
    );
    assert_eq!(bytes.size().await.unwrap(), 4);

    // Imports copy a local file in.
    let src = dir.path().join("out.bin");
    std::fs::write(&src, b"hello").unwrap();
    let imported = files.import(&src, "out.bin", "text/plain").await.unwrap();
    assert_eq!(imported.size, Some(5));
    assert!(imported.uploaded);
    let (_, bytes) = files.get(&imported.id).await.unwrap().unwrap();
    assert_eq!(bytes.to_vec().await.unwrap(), b"hello");
    assert!(src.exists(), "the source stays");

    for bad in [
        "../infsh.db",
        "..",
        "",
        "ABCDEF0123456789ABCDEF0123456789",
        "x",
    ] {
        assert!(files.get(bad).await.unwrap().is_none(), "{bad}");
        assert!(matches!(
            files.write(bad, vec![1u8]).await,
            Err(StoreError::InvalidId)
        ));
    }
    let unknown = new_id();
    assert!(files.get(&unknown).await.unwrap().is_none());
    assert!(matches!(
        files.write(&unknown, vec![1u8]).await,
        Err(StoreError::NotFound { .. })
    ));
    // Nothing but the stored files in the folder (no temporary leftovers).
    let mut names: Vec<_> = std::fs::read_dir(dir.path().join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want = vec![f.id.clone(), imported.id.clone()];
    want.sort();
    assert_eq!(names, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_commits() {
    concurrent_writes_share_commits_with(Durability::Full).await;
}

/// Under `Relaxed` (commits do not wait for the disk) concurrent writes
/// still share commits: the writer leaves a short gap after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_commits_with_relaxed_durability() {
    concurrent_writes_share_commits_with(Durability::Relaxed).await;
}

async fn concurrent_writes_share_commits_with(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open_with_async(dir.path().join("infsh.db"), durability)
            .await
            .unwrap(),
    );
    let before = store.commit_count();
    let n = 64;
    let tasks: Vec<TaskRecord> = (0..n).map(|i| task("a/b", i)).collect();
    let joins: Vec<_> = tasks
        .iter()
        .cloned()
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move { store.insert_task(&t).await })
        })
        .collect();
    for j in joins {
        j.await.unwrap().unwrap();
    }
    let commits = store.commit_count() - before;
    assert!(commits >= 1);
    assert!(
        commits < n as u64,
        "{n} concurrent inserts took {commits} commits"
    );
    // Every insert is durable (visible to the reader) once it resolved.
    for t in &tasks {
        assert!(store.get_task(&t.id).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn a_failing_write_fails_alone_in_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_async(dir.path().join("infsh.db"))
        .await
        .unwrap();
    let t = task("a/b", 1);
    store.insert_task(&t).await.unwrap();
    let other = task("a/b", 2);
    let (dup, fresh, missing) = tokio::join!(
        store.insert_task(&t),
        store.insert_task(&other),
        store.update_status("nope", TaskStatus::Running, 3),
    );
    assert!(dup.is_err(), "a duplicate id is refused");
    fresh.unwrap();
    assert!(missing.unwrap_err().is_not_found());
    assert!(store.get_task(&other.id).await.unwrap().is_some());
}

#[tokio::test]
async fn deferred_writes_are_stored_with_the_next_durable_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_async(dir.path().join("infsh.db"))
        .await
        .unwrap();
    let t = task("a/b", 1);
    store.insert_task(&t).await.unwrap();
    let before = store.commit_count();
    store
        .update_status_deferred(&t.id, TaskStatus::Running, 2)
        .await
        .unwrap();
    store
        .append_logs_deferred(&t.id, &[log(LogType::Build, "one", 2)])
        .await
        .unwrap();
    store
        .update_output_deferred(&t.id, &json!({"partial": 1}).into(), 3)
        .await
        .unwrap();
    // A durable write of another task carries them in the same commit.
    let other = task("a/b", 2);
    store.insert_task(&other).await.unwrap();
    // Usually one commit for all four; two if the machine stalled past the
    // deferred writes' linger before the insert was queued.
    assert!(store.commit_count() - before <= 2);
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Running);
    assert_eq!(
        got.output.as_ref().map(|o| o.to_value().into_owned()),
        Some(json!({"partial": 1}))
    );
    assert_eq!(got.updated_at_ms, 3);
    assert_eq!(store.get_logs(&t.id).await.unwrap().len(), 1);

    // With no durable write after them they are committed shortly anyway.
    store
        .update_status_deferred(&t.id, TaskStatus::Uploading, 4)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = store.get_task(&t.id).await.unwrap().unwrap();
        if got.status == TaskStatus::Uploading {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never committed");
        tokio::time::sleep(infsh_store::DEFERRED_LINGER / 5).await;
    }

    // Dropping the store commits what is still queued.
    store
        .update_status_deferred(&t.id, TaskStatus::Cancelling, 5)
        .await
        .unwrap();
    let path = store.path().to_path_buf();
    drop(store);
    let store = SqliteStore::open_async(&path).await.unwrap();
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Cancelling);
}

#[tokio::test]
async fn a_deferred_insert_is_stored_with_its_amended_status_and_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_async(dir.path().join("infsh.db"))
        .await
        .unwrap();
    // Dispatched before the writer took the insert: the insert itself
    // carries the new status, so the task is never on disk as QUEUED. The
    // writer lingers DEFERRED_LINGER (50 ms) for a durable write before it
    // takes a lone deferred one, so amending right after queueing lands;
    // a machine that stalls longer than that gets another try.
    let mut t = task("a/b", 1);
    let mut tries = 0;
    loop {
        store.insert_task_deferred(&t).await.unwrap();
        if store.amend_pending_insert(&t.id, TaskStatus::Dispatched, 2) {
            break;
        }
        // Too late: it was stored as queued, and says so.
        store.sync().await.unwrap();
        let stored = store.get_task(&t.id).await.unwrap().unwrap();
        assert_eq!(stored.status, TaskStatus::Queued);
        tries += 1;
        assert!(tries < 20, "the writer never left a deferred insert queued");
        t = task("a/b", 1);
    }
    store
        .finish_task(
            &t.id,
            TaskStatus::Completed,
            Some(&json!({"ok": 1}).into()),
            None,
            3,
        )
        .await
        .unwrap();
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Completed);
    assert_eq!(
        got.output.as_ref().map(|o| o.to_value().into_owned()),
        Some(json!({"ok": 1}))
    );
    assert_eq!(got.created_at_ms, 1);
    // Taken and committed: nothing is left to amend.
    assert!(!store.amend_pending_insert(&t.id, TaskStatus::Running, 4));
    assert!(!store.amend_pending_insert("no-such-task", TaskStatus::Running, 4));
}

#[tokio::test]
async fn sync_makes_a_deferred_insert_durable_with_its_amendment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("infsh.db");
    let store = SqliteStore::open_async(&path).await.unwrap();
    let t = task("a/b", 1);
    store.insert_task_deferred(&t).await.unwrap();
    assert!(store.amend_pending_insert(&t.id, TaskStatus::Running, 5));
    store.sync().await.unwrap();
    // On disk: a second connection (another process would see the same).
    let other = SqliteStore::open_async(&path).await.unwrap();
    let got = other.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Running);
    assert_eq!(got.updated_at_ms, 5);
    // A deferred insert of an existing id fails in the writer (logged) and
    // does not touch the stored task.
    let mut dup = t.clone();
    dup.status = TaskStatus::Failed;
    store.insert_task_deferred(&dup).await.unwrap();
    store.sync().await.unwrap();
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Running);
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes.
async fn eventually(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    cond()
}

#[tokio::test]
async fn relaxed_durability_commits_each_write_and_flushes_the_log_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("infsh.db");
    let store = SqliteStore::open_with_async(&path, Durability::Relaxed)
        .await
        .unwrap();
    assert_eq!(store.durability(), Durability::Relaxed);
    let before = store.commit_count();
    let tasks: Vec<TaskRecord> = (0..50).map(|i| task("a/b", i)).collect();
    for t in &tasks {
        store.insert_task(t).await.unwrap();
    }
    // Each durable write is its own commit, visible at once to a second
    // connection (what survives a crash of the process)...
    assert_eq!(store.commit_count() - before, 50);
    let other = SqliteStore::open_async(&path).await.unwrap();
    for t in &tasks {
        assert!(other.get_task(&t.id).await.unwrap().is_some());
    }
    drop(other);
    // ...but the log is not flushed per commit: at most once per window
    // (50 writes would need 5 s to earn 50 flushes).
    let flushed = store.log_flush_count();
    assert!(flushed < 50, "{flushed} flushes for 50 commits");
    // With nothing more to do, the writer flushes within the window.
    store.insert_task(&task("a/b", 99)).await.unwrap();
    assert!(
        eventually(RELAXED_SYNC_WINDOW * 50, || store.log_flush_count()
            > flushed)
        .await,
        "the log was never flushed"
    );
    // `sync` flushes before it returns.
    let n = store.log_flush_count();
    store.insert_task_deferred(&task("a/b", 100)).await.unwrap();
    store.sync().await.unwrap();
    assert!(store.log_flush_count() > n);
}

#[tokio::test]
async fn full_durability_never_flushes_on_its_own_but_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_async(dir.path().join("infsh.db"))
        .await
        .unwrap();
    assert_eq!(store.durability(), Durability::Full);
    for i in 0..5 {
        store.insert_task(&task("a/b", i)).await.unwrap();
    }
    store.sync().await.unwrap();
    // Every commit was flushed by SQLite itself (synchronous=FULL).
    assert_eq!(store.log_flush_count(), 0);
    // The WAL keeper checkpoints the commits within its window, off the
    // writer thread.
    assert!(
        eventually(RELAXED_SYNC_WINDOW * 50, || store.checkpoint_count() > 0).await,
        "no checkpoint"
    );
    assert_eq!(store.log_flush_count(), 0);
}
