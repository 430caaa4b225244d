//! One set of tests of the [`TaskStore`] contract, run against both stores:
//! SQLite on a file in a temporary folder, PostgreSQL in a database of its
//! own ([`PgTestDb`], dropped after the test). Every trait method, paging,
//! not-found answers, ordering and concurrent writers.

use std::any::Any;
use std::sync::Arc;

use infsh_store::{
    new_id, ApiKeyRecord, AppVersionRecord, DeliveryState, FileAccess, FileRecord, LogEntry,
    LogType, PostgresStore, SqliteStore, StoreError, TaskFilter, TaskRecord, TaskStatus, TaskStore,
    VersionOutcome, VersionStatus, WebhookAttempt, WebhookDelivery,
};
use infsh_testkit::PgTestDb;
use serde_json::json;

/// A store and what must outlive it (its folder or database).
struct Fixture {
    store: Arc<dyn TaskStore>,
    _keep: Box<dyn Any>,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_async(dir.path().join("infsh.db"))
        .await
        .unwrap();
    Fixture {
        store: Arc::new(store),
        _keep: Box::new(dir),
    }
}

async fn postgres() -> Fixture {
    let db = PgTestDb::create();
    let store = PostgresStore::open(db.url()).await.unwrap();
    Fixture {
        store: Arc::new(store),
        _keep: Box::new(db),
    }
}

/// Each contract test, once per store.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let f = super::sqlite().await;
                super::$name(f.store.clone()).await;
            })*
        }
        mod postgres_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let f = super::postgres().await;
                super::$name(f.store.clone()).await;
            })*
        }
    };
}

contract!(
    tasks_round_trip_and_update,
    unknown_ids_are_not_found,
    logs_append_in_order,
    listing_pages_newest_first_with_filters,
    bad_cursors_are_refused,
    recovery_lists_oldest_first,
    files_round_trip,
    deferred_writes_are_stored,
    a_deferred_insert_takes_its_status_logs_and_end,
    a_deferred_insert_is_stored_on_its_own_after_the_linger,
    concurrent_inserts_all_land_in_order,
    concurrent_log_appends_to_one_task_keep_every_entry,
    the_webhook_outbox_claims_records_and_gives_up,
    concurrent_webhook_claims_never_share_a_delivery,
    api_keys_are_found_by_digest_listed_and_revoked,
    deleting_a_task_takes_its_logs_and_only_it,
    deleting_a_file_takes_only_its_record,
    files_page_newest_first,
    file_access_team_and_public,
    tasks_keep_their_team_and_list_by_it,
    ended_tasks_before_finds_the_retention_batch,
    store_reports_its_size,
    a_task_keeps_its_run_at,
    app_versions_build_switch_and_delete,
    app_versions_keep_what_their_build_discovered,
    many_tasks_are_read_back_with_their_log_counts,
);

fn version(app: &str, hash: &str, created: i64) -> AppVersionRecord {
    AppVersionRecord {
        app: app.into(),
        hash: hash.into(),
        size_bytes: 1234,
        status: VersionStatus::Building,
        error: None,
        created_at_ms: created,
        updated_at_ms: created,
        functions: None,
    }
}

/// Versions of an app: stored once per hash, listed newest first and only
/// the app's, a build's outcome recorded, one current version switched in
/// one statement, and the current one never deleted.
async fn app_versions_build_switch_and_delete(store: Arc<dyn TaskStore>) {
    let (v1, v2) = ("a".repeat(64), "b".repeat(64));
    assert!(store
        .insert_app_version(&version("ns/app", &v1, 10))
        .await
        .unwrap());
    assert!(store
        .insert_app_version(&version("ns/app", &v2, 20))
        .await
        .unwrap());
    assert!(store
        .insert_app_version(&version("ns/other", &v1, 30))
        .await
        .unwrap());
    // The same content again: nothing changes.
    let mut again = version("ns/app", &v1, 99);
    again.status = VersionStatus::Failed;
    assert!(!store.insert_app_version(&again).await.unwrap());
    let listed = store.list_app_versions("ns/app").await.unwrap();
    let hashes: Vec<&str> = listed.iter().map(|v| v.hash.as_str()).collect();
    assert_eq!(hashes, [v2.as_str(), v1.as_str()]);
    assert_eq!(listed[1], version("ns/app", &v1, 10));

    let ready = store
        .set_app_version_status(
            "ns/app",
            &v1,
            VersionOutcome::status(VersionStatus::Ready, 40),
        )
        .await
        .unwrap();
    assert_eq!(
        (ready.status, ready.updated_at_ms),
        (VersionStatus::Ready, 40)
    );
    let failed = store
        .set_app_version_status(
            "ns/app",
            &v2,
            VersionOutcome {
                status: VersionStatus::Failed,
                error: Some("Traceback: boom".into()),
                functions: None,
                at_ms: 50,
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.error.as_deref(), Some("Traceback: boom"));
    assert_eq!(
        store.get_app_version("ns/app", &v2).await.unwrap(),
        Some(failed)
    );
    assert_eq!(store.get_app_version("ns/app", "c").await.unwrap(), None);
    assert!(matches!(
        store
            .set_app_version_status(
                "ns/app",
                "c",
                VersionOutcome::status(VersionStatus::Ready, 1)
            )
            .await,
        Err(StoreError::NotFound {
            kind: "app version",
            ..
        })
    ));

    assert_eq!(store.current_app_version("ns/app").await.unwrap(), None);
    store
        .set_current_app_version("ns/app", &v1, 60)
        .await
        .unwrap();
    assert_eq!(
        store.current_app_version("ns/app").await.unwrap(),
        Some(v1.clone())
    );
    store
        .set_current_app_version("ns/app", &v2, 70)
        .await
        .unwrap();
    assert_eq!(
        store.current_app_version("ns/app").await.unwrap(),
        Some(v2.clone())
    );
    assert_eq!(store.current_app_version("ns/other").await.unwrap(), None);
    let err = store
        .set_current_app_version("ns/app", "c", 80)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no such app version \"ns/app@c\"");
    assert_eq!(
        store.current_app_version("ns/app").await.unwrap(),
        Some(v2.clone())
    );

    // The current version stays; another goes, once.
    assert!(!store.delete_app_version("ns/app", &v2).await.unwrap());
    assert!(store.delete_app_version("ns/app", &v1).await.unwrap());
    assert!(!store.delete_app_version("ns/app", &v1).await.unwrap());
    let left: Vec<String> = store
        .list_app_versions("ns/app")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.hash)
        .collect();
    assert_eq!(left, [v2]);
    assert_eq!(store.list_app_versions("ns/other").await.unwrap().len(), 1);
}

/// What a version's build discovered (migration 0010's `functions`) is
/// kept with it as given, read back by `get` and `list`, cleared by a
/// build again; every app's current version is listed by app.
async fn app_versions_keep_what_their_build_discovered(store: Arc<dyn TaskStore>) {
    let (v1, v2) = ("a".repeat(64), "b".repeat(64));
    let found = json!({
        "ready": {"functions": {"run": {"input_schema": {"type": "object"}}}},
        "default_function": "run",
        "description": "ünïcode \"quoted\"",
    });
    let mut inserted = version("ns/app", &v1, 10);
    inserted.functions = Some(json!({"seeded": true}));
    assert!(store.insert_app_version(&inserted).await.unwrap());
    assert_eq!(
        store.get_app_version("ns/app", &v1).await.unwrap(),
        Some(inserted)
    );
    let ready = store
        .set_app_version_status(
            "ns/app",
            &v1,
            VersionOutcome {
                status: VersionStatus::Ready,
                error: None,
                functions: Some(found.clone()),
                at_ms: 20,
            },
        )
        .await
        .unwrap();
    assert_eq!(ready.functions.as_ref(), Some(&found));
    let listed = store.list_app_versions("ns/app").await.unwrap();
    assert_eq!(listed, [ready]);
    // Built again: what the last build found is gone until it is ready.
    let building = store
        .set_app_version_status(
            "ns/app",
            &v1,
            VersionOutcome::status(VersionStatus::Building, 30),
        )
        .await
        .unwrap();
    assert_eq!(building.functions, None);

    assert!(store.current_app_versions().await.unwrap().is_empty());
    for (app, hash) in [("ns/zeta", &v2), ("ns/app", &v1)] {
        store
            .insert_app_version(&version(app, hash, 40))
            .await
            .unwrap();
        store.set_current_app_version(app, hash, 50).await.unwrap();
    }
    assert_eq!(
        store.current_app_versions().await.unwrap(),
        [
            ("ns/app".to_string(), v1.clone()),
            ("ns/zeta".to_string(), v2.clone())
        ]
    );
}

/// A run's `run_at` is stored with its task, through the durable and the
/// deferred insert, and comes back from recovery's listing: a held task
/// still waits after a restart.
async fn a_task_keeps_its_run_at(store: Arc<dyn TaskStore>) {
    let mut held = task("tests/run-at", 1);
    held.run_at_ms = Some(1_900_000_000_123);
    store.insert_task(&held).await.unwrap();
    let mut deferred = task("tests/run-at", 2);
    deferred.run_at_ms = Some(1_900_000_000_456);
    store.insert_task_deferred(&deferred).await.unwrap();
    let now = task("tests/run-at", 3);
    store.insert_task(&now).await.unwrap();
    store.sync().await.unwrap();

    for t in [&held, &deferred, &now] {
        let got = store.get_task(&t.id).await.unwrap().unwrap();
        assert_eq!(got.run_at_ms, t.run_at_ms, "{}", t.id);
    }
    let queued = store
        .tasks_with_status(&[TaskStatus::Queued])
        .await
        .unwrap();
    // (A deferred insert takes its place in the order when it is written.)
    assert_eq!(queued.len(), 3);
    for t in [&held, &deferred, &now] {
        let got = queued.iter().find(|q| q.id == t.id).unwrap();
        assert_eq!(got.run_at_ms, t.run_at_ms, "{}", t.id);
    }
}

/// A task keeps the team it was stored with, through the durable and the
/// deferred insert; a team filter lists only that team's, a task without a
/// team (stored before teams) counting as `default`'s.
async fn tasks_keep_their_team_and_list_by_it(store: Arc<dyn TaskStore>) {
    let mut legacy = task("tests/teams", 1);
    legacy.team = None;
    store.insert_task(&legacy).await.unwrap();
    let mut default = task("tests/teams", 2);
    default.team = Some("default".into());
    store.insert_task(&default).await.unwrap();
    let mut blue = task("tests/teams", 3);
    blue.team = Some("blue".into());
    store.insert_task_deferred(&blue).await.unwrap();
    store.sync().await.unwrap();

    let got = store.get_task(&blue.id).await.unwrap().unwrap();
    assert_eq!(got.team.as_deref(), Some("blue"));
    assert_eq!(
        store.get_task(&legacy.id).await.unwrap().unwrap().team,
        None
    );

    let of = |team: &str| TaskFilter {
        team: Some(team.into()),
        ..TaskFilter::default()
    };
    let page = store.list_tasks(&of("blue"), 10, None).await.unwrap();
    assert_eq!(ids(&page.items), [blue.id.clone()]);
    let page = store.list_tasks(&of("default"), 10, None).await.unwrap();
    assert_eq!(ids(&page.items), [default.id.clone(), legacy.id.clone()]);
    assert!(store
        .list_tasks(&of("red"), 10, None)
        .await
        .unwrap()
        .items
        .is_empty());
    let all = store
        .list_tasks(&TaskFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3, "no team filter: every team's");
}

fn task(app: &str, created: i64) -> TaskRecord {
    TaskRecord {
        id: new_id(),
        app: app.to_string(),
        function: "run".into(),
        input: json!({"text": "hé ✓", "n": [1, 2], "nested": {"x": null}}),
        setup: json!({"model": "m"}),
        status: TaskStatus::Queued,
        output: None,
        error: None,
        webhook: Some("http://127.0.0.1:1/hook".into()),
        session_id: Some("s1".into()),
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

fn ids(page: &[TaskRecord]) -> Vec<String> {
    page.iter().map(|t| t.id.clone()).collect()
}

async fn tasks_round_trip_and_update(store: Arc<dyn TaskStore>) {
    let t = task("tests/a", 1000);
    store.insert_task(&t).await.unwrap();
    assert_eq!(store.get_task(&t.id).await.unwrap().as_ref(), Some(&t));
    assert!(store.insert_task(&t).await.is_err(), "duplicate id");

    let mut bare = task("tests/a", 7);
    bare.webhook = None;
    bare.session_id = None;
    bare.timeout_secs = None;
    store.insert_task(&bare).await.unwrap();
    assert_eq!(store.get_task(&bare.id).await.unwrap(), Some(bare));

    store
        .update_status(&t.id, TaskStatus::Running, 1001)
        .await
        .unwrap();
    store
        .update_output(&t.id, &json!({"partial": [1, "two"]}).into(), 1002)
        .await
        .unwrap();
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Running);
    assert_eq!(
        got.output.as_ref().map(|o| o.to_value().into_owned()),
        Some(json!({"partial": [1, "two"]}))
    );
    assert_eq!(got.updated_at_ms, 1002);

    store
        .finish_task(&t.id, TaskStatus::Failed, None, Some("ValueError: x"), 1003)
        .await
        .unwrap();
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.status,
            got.output,
            got.error.as_deref(),
            got.updated_at_ms
        ),
        (TaskStatus::Failed, None, Some("ValueError: x"), 1003)
    );
    store
        .finish_task(
            &t.id,
            TaskStatus::Completed,
            Some(&json!({"ok": true}).into()),
            None,
            1004,
        )
        .await
        .unwrap();
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(
        got.output.as_ref().map(|o| o.to_value().into_owned()),
        Some(json!({"ok": true}))
    );
    assert_eq!(got.error, None);
}

async fn unknown_ids_are_not_found(store: Arc<dyn TaskStore>) {
    let expect = |r: Result<(), StoreError>, kind: &str| {
        let e = r.unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
        assert_eq!(e.to_string(), format!("no such {kind} \"nope\""));
    };
    expect(
        store.update_status("nope", TaskStatus::Running, 1).await,
        "task",
    );
    expect(
        store.update_output("nope", &json!(1).into(), 1).await,
        "task",
    );
    expect(
        store
            .finish_task("nope", TaskStatus::Completed, None, None, 1)
            .await,
        "task",
    );
    expect(
        store.mark_file_uploaded("nope", 1).await.map(|_| ()),
        "file",
    );
    assert!(store.get_task("nope").await.unwrap().is_none());
    assert!(store.get_file("nope").await.unwrap().is_none());
    assert!(store.get_logs("nope").await.unwrap().is_empty());
    assert!(store
        .append_logs("nope", &[log(LogType::Run, "x", 1)])
        .await
        .is_err());
}

async fn many_tasks_are_read_back_with_their_log_counts(store: Arc<dyn TaskStore>) {
    let (quiet, chatty) = (task("tests/a", 1), task("tests/a", 2));
    for t in [&quiet, &chatty] {
        store.insert_task(t).await.unwrap();
    }
    store
        .append_logs(
            &chatty.id,
            &[log(LogType::Task, "one", 3), log(LogType::Task, "two", 4)],
        )
        .await
        .unwrap();
    store
        .update_status(&chatty.id, TaskStatus::Running, 5)
        .await
        .unwrap();
    let asked = [
        quiet.id.clone(),
        "no-such-task".to_string(),
        chatty.id.clone(),
    ];
    let mut read = store.tasks_with_log_counts(&asked).await.unwrap();
    read.sort_by_key(|(t, _)| t.created_at_ms);
    let seen: Vec<_> = read
        .iter()
        .map(|(t, n)| (t.id.as_str(), t.status, t.updated_at_ms, *n))
        .collect();
    assert_eq!(
        seen,
        [
            (quiet.id.as_str(), TaskStatus::Queued, 1, 0),
            (chatty.id.as_str(), TaskStatus::Running, 5, 2),
        ]
    );
    assert_eq!(read[1].0, {
        let mut expected = chatty.clone();
        expected.status = TaskStatus::Running;
        expected.updated_at_ms = 5;
        expected
    });
    assert!(store.tasks_with_log_counts(&[]).await.unwrap().is_empty());
}

async fn logs_append_in_order(store: Arc<dyn TaskStore>) {
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
    store
        .append_logs_deferred(&t.id, &[log(LogType::Serve, "last", 4)])
        .await
        .unwrap();
    store.sync().await.unwrap();
    let logs = store.get_logs(&t.id).await.unwrap();
    assert_eq!(logs.len(), 303);
    assert_eq!(logs[0], log(LogType::Build, "b1", 1));
    assert_eq!(logs[1], log(LogType::Setup, "s1", 2));
    assert_eq!(logs[2].content, "line 0");
    assert_eq!(logs[301].content, "line 299");
    assert_eq!(logs[302], log(LogType::Serve, "last", 4));
}

async fn listing_pages_newest_first_with_filters(store: Arc<dyn TaskStore>) {
    let mut inserted = Vec::new();
    for i in 0..7 {
        // The same timestamps on purpose: the order is the insertion's.
        let mut t = task(
            if i % 2 == 0 {
                "tests/even"
            } else {
                "tests/odd"
            },
            5,
        );
        if i == 3 {
            t.status = TaskStatus::Completed;
        }
        store.insert_task(&t).await.unwrap();
        inserted.push(t.id);
    }
    let newest_first: Vec<String> = inserted.iter().rev().cloned().collect();

    let all = TaskFilter::default();
    let p1 = store.list_tasks(&all, 3, None).await.unwrap();
    assert_eq!(ids(&p1.items), newest_first[0..3]);
    let p2 = store
        .list_tasks(&all, 3, p1.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&p2.items), newest_first[3..6]);
    let p3 = store
        .list_tasks(&all, 3, p2.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&p3.items), newest_first[6..7]);
    assert_eq!(p3.next_cursor, None, "the last page says so");
    let exact = store.list_tasks(&all, 7, None).await.unwrap();
    assert_eq!(exact.items.len(), 7);
    assert_eq!(exact.next_cursor, None, "no empty page after an exact fit");
    let empty_cursor = store.list_tasks(&all, 2, Some("")).await.unwrap();
    assert_eq!(ids(&empty_cursor.items), newest_first[0..2]);
    let zero = store.list_tasks(&all, 0, None).await.unwrap();
    assert_eq!(zero.items.len(), 1, "a limit of 0 is taken as 1");

    let even = TaskFilter {
        app: Some("tests/even".into()),
        status: None,
        team: None,
    };
    let page = store.list_tasks(&even, 100, None).await.unwrap();
    assert_eq!(
        ids(&page.items),
        [&inserted[6], &inserted[4], &inserted[2], &inserted[0]].map(|s| s.clone())
    );
    let done = TaskFilter {
        app: None,
        status: Some(TaskStatus::Completed),
        team: None,
    };
    assert_eq!(
        ids(&store.list_tasks(&done, 100, None).await.unwrap().items),
        [inserted[3].clone()]
    );
    let both = TaskFilter {
        app: Some("tests/even".into()),
        status: Some(TaskStatus::Completed),
        team: None,
    };
    assert!(store
        .list_tasks(&both, 100, None)
        .await
        .unwrap()
        .items
        .is_empty());
    let odd_p1 = store
        .list_tasks(
            &TaskFilter {
                app: Some("tests/odd".into()),
                status: Some(TaskStatus::Queued),
                team: None,
            },
            1,
            None,
        )
        .await
        .unwrap();
    assert_eq!(ids(&odd_p1.items), [inserted[5].clone()]);
    let odd_p2 = store
        .list_tasks(
            &TaskFilter {
                app: Some("tests/odd".into()),
                status: Some(TaskStatus::Queued),
                team: None,
            },
            1,
            odd_p1.next_cursor.as_deref(),
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&odd_p2.items),
        [inserted[1].clone()],
        "skips the completed one"
    );
}

async fn bad_cursors_are_refused(store: Arc<dyn TaskStore>) {
    for bad in ["abc", "0", "-3", "1.5"] {
        let e = store
            .list_tasks(&TaskFilter::default(), 10, Some(bad))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidCursor(_)), "{e:?}");
        assert_eq!(e.to_string(), format!("invalid cursor \"{bad}\""));
    }
}

async fn recovery_lists_oldest_first(store: Arc<dyn TaskStore>) {
    let mut want = Vec::new();
    for (i, status) in [
        TaskStatus::Queued,
        TaskStatus::Completed,
        TaskStatus::Running,
        TaskStatus::Queued,
        TaskStatus::Failed,
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = task("tests/a", 100 - i as i64);
        t.status = status;
        store.insert_task(&t).await.unwrap();
        if matches!(status, TaskStatus::Queued | TaskStatus::Running) {
            want.push(t.id);
        }
    }
    let got = store
        .tasks_with_status(&[TaskStatus::Running, TaskStatus::Queued])
        .await
        .unwrap();
    assert_eq!(ids(&got), want);
    assert!(store.tasks_with_status(&[]).await.unwrap().is_empty());
}

async fn files_round_trip(store: Arc<dyn TaskStore>) {
    let f = FileRecord {
        id: new_id(),
        filename: "a b.png".into(),
        content_type: "image/png".into(),
        size: None,
        uploaded: false,
        created_at_ms: 42,
    };
    store.insert_file(&f).await.unwrap();
    assert_eq!(store.get_file(&f.id).await.unwrap().as_ref(), Some(&f));
    assert!(store.insert_file(&f).await.is_err(), "duplicate id");
    let up = store.mark_file_uploaded(&f.id, 1234).await.unwrap();
    assert_eq!(
        up,
        FileRecord {
            size: Some(1234),
            uploaded: true,
            ..f.clone()
        }
    );
    assert_eq!(store.get_file(&f.id).await.unwrap(), Some(up));
}

async fn deferred_writes_are_stored(store: Arc<dyn TaskStore>) {
    let t = task("tests/a", 1);
    store.insert_task_deferred(&t).await.unwrap();
    store
        .update_status_deferred(&t.id, TaskStatus::Running, 2)
        .await
        .unwrap();
    store
        .update_output_deferred(&t.id, &json!({"step": 1}).into(), 3)
        .await
        .unwrap();
    store.sync().await.unwrap();
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.status,
            got.output.as_ref().map(|o| o.to_value().into_owned()),
            got.updated_at_ms
        ),
        (TaskStatus::Running, Some(json!({"step": 1})), 3)
    );
    // A durable write after deferred ones is stored after them.
    store
        .update_status_deferred(&t.id, TaskStatus::Running, 4)
        .await
        .unwrap();
    store
        .finish_task(
            &t.id,
            TaskStatus::Completed,
            Some(&json!(1).into()),
            None,
            5,
        )
        .await
        .unwrap();
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.updated_at_ms), (TaskStatus::Completed, 5));
}

async fn concurrent_inserts_all_land_in_order(store: Arc<dyn TaskStore>) {
    const N: usize = 64;
    let joins: Vec<_> = (0..N)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let t = task("tests/many", 1);
                store.insert_task(&t).await.unwrap();
                t.id
            })
        })
        .collect();
    let mut want = Vec::new();
    for j in joins {
        want.push(j.await.unwrap());
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_tasks(&TaskFilter::default(), 10, cursor.as_deref())
            .await
            .unwrap();
        seen.extend(ids(&page.items));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), N, "every task once, across pages");
    let oldest_first = store
        .tasks_with_status(&[TaskStatus::Queued])
        .await
        .unwrap();
    let mut reversed = seen.clone();
    reversed.reverse();
    assert_eq!(ids(&oldest_first), reversed, "one order for both listings");
    seen.sort();
    want.sort();
    assert_eq!(seen, want);
}

async fn concurrent_log_appends_to_one_task_keep_every_entry(store: Arc<dyn TaskStore>) {
    let t = task("tests/a", 1);
    store.insert_task(&t).await.unwrap();
    let joins: Vec<_> = (0..16)
        .map(|w| {
            let store = store.clone();
            let id = t.id.clone();
            tokio::spawn(async move {
                for b in 0..5 {
                    let batch = [
                        log(LogType::Run, &format!("{w}.{b}.0"), 1),
                        log(LogType::Run, &format!("{w}.{b}.1"), 1),
                    ];
                    store.append_logs(&id, &batch).await.unwrap();
                }
            })
        })
        .collect();
    for j in joins {
        j.await.unwrap();
    }
    let logs = store.get_logs(&t.id).await.unwrap();
    assert_eq!(logs.len(), 16 * 5 * 2);
    // A batch stays together and each writer's batches keep their order.
    for pair in logs.chunks(2) {
        let a = pair[0]
            .content
            .strip_suffix(".0")
            .expect("first of a batch");
        assert_eq!(pair[1].content, format!("{a}.1"));
    }
    for w in 0..16 {
        let mine: Vec<&str> = logs
            .iter()
            .map(|l| l.content.as_str())
            .filter(|c| c.starts_with(&format!("{w}.")))
            .collect();
        let want: Vec<String> = (0..5)
            .flat_map(|b| [format!("{w}.{b}.0"), format!("{w}.{b}.1")])
            .collect();
        assert_eq!(mine, want);
    }
}

async fn a_deferred_insert_takes_its_status_logs_and_end(store: Arc<dyn TaskStore>) {
    let t = task("tests/a", 1);
    store.insert_task_deferred(&t).await.unwrap();
    // Amended if still queued; written otherwise: the same end either way.
    if !store.amend_pending_insert(&t.id, TaskStatus::Dispatched, 2) {
        store
            .update_status(&t.id, TaskStatus::Dispatched, 2)
            .await
            .unwrap();
    }
    store
        .append_logs_deferred(
            &t.id,
            &[log(LogType::Run, "one", 3), log(LogType::Run, "two", 3)],
        )
        .await
        .unwrap();
    store
        .update_status_deferred(&t.id, TaskStatus::Running, 4)
        .await
        .unwrap();
    store
        .update_output_deferred(&t.id, &json!({"partial": 1}).into(), 5)
        .await
        .unwrap();
    store
        .append_logs_deferred(&t.id, &[log(LogType::Task, "three", 6)])
        .await
        .unwrap();
    store
        .finish_task(
            &t.id,
            TaskStatus::Completed,
            Some(&json!({"done": 1}).into()),
            None,
            7,
        )
        .await
        .unwrap();
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.status,
            got.output.as_ref().map(|o| o.to_value().into_owned()),
            got.updated_at_ms,
            got.created_at_ms
        ),
        (TaskStatus::Completed, Some(json!({"done": 1})), 7, 1)
    );
    let logs: Vec<String> = store
        .get_logs(&t.id)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.content)
        .collect();
    assert_eq!(logs, ["one", "two", "three"]);
    // Written once: more logs append after those.
    store
        .append_logs(&t.id, &[log(LogType::Run, "four", 8)])
        .await
        .unwrap();
    assert_eq!(store.get_logs(&t.id).await.unwrap().len(), 4);
}

async fn a_deferred_insert_is_stored_on_its_own_after_the_linger(store: Arc<dyn TaskStore>) {
    let t = task("tests/a", 1);
    store.insert_task_deferred(&t).await.unwrap();
    store
        .append_logs_deferred(&t.id, &[log(LogType::Run, "queued", 2)])
        .await
        .unwrap();
    // Polled (the testkit's waits take sync conditions): 5 s at most.
    let mut stored = false;
    for _ in 0..250 {
        if store.get_task(&t.id).await.unwrap().is_some() {
            stored = true;
            break;
        }
        tokio::time::sleep(infsh_testkit::poll::INTERVAL).await;
    }
    assert!(
        stored,
        "no sync, no end: written within the linger all the same"
    );
    assert_eq!(store.get_logs(&t.id).await.unwrap().len(), 1);
    assert!(!store.amend_pending_insert(&t.id, TaskStatus::Running, 3));
}

fn delivery(task_id: &str, created: i64) -> WebhookDelivery {
    WebhookDelivery {
        task_id: task_id.to_string(),
        message_id: format!("msg_{task_id}"),
        url: "http://127.0.0.1:1/hook".into(),
        body: format!("{{\"id\":\"{task_id}\"}}"),
        state: DeliveryState::Pending,
        attempts: 0,
        last_error: None,
        next_attempt_at_ms: created,
        created_at_ms: created,
        updated_at_ms: created,
    }
}

async fn the_webhook_outbox_claims_records_and_gives_up(store: Arc<dyn TaskStore>) {
    let d = delivery("t1", 1_000);
    assert!(store.enqueue_webhook(&d).await.unwrap());
    // A second end reported for the task keeps the first delivery.
    let mut other = delivery("t1", 1_000);
    other.body = "{}".into();
    assert!(!store.enqueue_webhook(&other).await.unwrap());
    assert_eq!(
        store.get_webhook_delivery("t1").await.unwrap(),
        Some(d.clone())
    );
    assert!(store.get_webhook_delivery("nope").await.unwrap().is_none());

    // Not due yet: nothing to claim.
    assert!(store
        .claim_due_webhooks(999, 5_000, 10)
        .await
        .unwrap()
        .is_empty());
    let claimed = store.claim_due_webhooks(1_000, 5_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].body, d.body);
    assert_eq!(claimed[0].next_attempt_at_ms, 5_000);
    // Claimed: no second claim takes it until the claim runs out.
    assert!(store
        .claim_due_webhooks(4_999, 6_000, 10)
        .await
        .unwrap()
        .is_empty());

    let failed = WebhookAttempt {
        attempts: 1,
        state: DeliveryState::Pending,
        error: Some("HTTP 500 Internal Server Error".into()),
        next_attempt_at_ms: 2_000,
        at_ms: 1_500,
    };
    store.record_webhook_attempt("t1", &failed).await.unwrap();
    let got = store.get_webhook_delivery("t1").await.unwrap().unwrap();
    assert_eq!(
        (
            got.attempts,
            got.state,
            got.last_error.as_deref(),
            got.next_attempt_at_ms,
            got.updated_at_ms
        ),
        (
            1,
            DeliveryState::Pending,
            Some("HTTP 500 Internal Server Error"),
            2_000,
            1_500
        )
    );
    assert_eq!(
        store
            .claim_due_webhooks(2_000, 9_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // Given up: never claimed again, whatever the time.
    let gave_up = WebhookAttempt {
        attempts: 2,
        state: DeliveryState::Failed,
        error: Some("connection refused".into()),
        next_attempt_at_ms: 9_000,
        at_ms: 2_500,
    };
    store.record_webhook_attempt("t1", &gave_up).await.unwrap();
    assert!(store
        .claim_due_webhooks(i64::MAX, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .get_webhook_delivery("t1")
            .await
            .unwrap()
            .unwrap()
            .state,
        DeliveryState::Failed
    );

    // Oldest first, at most `limit`.
    for (id, at) in [("b", 30), ("a", 10), ("c", 20)] {
        store.enqueue_webhook(&delivery(id, at)).await.unwrap();
    }
    let two = store.claim_due_webhooks(100, 200, 2).await.unwrap();
    assert_eq!(
        two.iter().map(|d| d.task_id.as_str()).collect::<Vec<_>>(),
        vec!["a", "c"]
    );

    let e = store
        .record_webhook_attempt("nope", &failed)
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert_eq!(e.to_string(), "no such webhook delivery \"nope\"");
}

/// Nodes claiming at once (here: eight claims on one store) each get
/// different deliveries, and together all of them.
async fn concurrent_webhook_claims_never_share_a_delivery(store: Arc<dyn TaskStore>) {
    for i in 0..40 {
        store
            .enqueue_webhook(&delivery(&format!("t{i:02}"), i))
            .await
            .unwrap();
    }
    let claims = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_due_webhooks(100, 10_000, 5).await.unwrap() })
    });
    let mut seen: Vec<String> = Vec::new();
    for claim in claims {
        seen.extend(claim.await.unwrap().into_iter().map(|d| d.task_id));
    }
    seen.sort();
    let all: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
    assert_eq!(seen, all);
}

async fn api_keys_are_found_by_digest_listed_and_revoked(store: Arc<dyn TaskStore>) {
    let key = |id: &str, hash: &str, created: i64| ApiKeyRecord {
        id: id.to_string(),
        name: format!("key {id}"),
        key_hash: hash.to_string(),
        scopes: vec!["apps:execute".into(), "files:write".into()],
        team: "default".into(),
        created_at_ms: created,
        expires_at_ms: Some(created + 1000),
        revoked_at_ms: None,
    };
    let ci = key("k1", "aa11", 20);
    let other = ApiKeyRecord {
        team: "blue".into(),
        scopes: vec![],
        expires_at_ms: None,
        ..key("k2", "bb22", 10)
    };
    store.insert_api_key(&ci).await.unwrap();
    store.insert_api_key(&other).await.unwrap();
    assert_eq!(
        store.api_key_by_hash("aa11").await.unwrap(),
        Some(ci.clone())
    );
    assert!(store.api_key_by_hash("cc33").await.unwrap().is_none());
    assert_eq!(
        store.list_api_keys().await.unwrap(),
        vec![other.clone(), ci.clone()]
    );
    // A second key with the same digest is refused (the digest is unique).
    assert!(store.insert_api_key(&key("k3", "aa11", 30)).await.is_err());

    let revoked = store.revoke_api_key("k1", 500).await.unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(500));
    // Revoking again keeps the first time.
    assert_eq!(
        store.revoke_api_key("k1", 900).await.unwrap().revoked_at_ms,
        Some(500)
    );
    assert_eq!(
        store
            .api_key_by_hash("aa11")
            .await
            .unwrap()
            .unwrap()
            .revoked_at_ms,
        Some(500)
    );
    let e = store.revoke_api_key("nope", 1).await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert_eq!(e.to_string(), "no such API key \"nope\"");
}

async fn deleting_a_task_takes_its_logs_and_only_it(store: Arc<dyn TaskStore>) {
    let gone = task("ns/a", 1);
    let kept = task("ns/a", 2);
    store.insert_task(&gone).await.unwrap();
    store.insert_task(&kept).await.unwrap();
    for t in [&gone, &kept] {
        store
            .append_logs(&t.id, &[log(LogType::Run, "hello", 3)])
            .await
            .unwrap();
    }
    assert!(store.delete_task(&gone.id).await.unwrap());
    assert_eq!(store.get_task(&gone.id).await.unwrap(), None);
    assert!(store.get_logs(&gone.id).await.unwrap().is_empty());
    assert!(!store.delete_task(&gone.id).await.unwrap(), "already gone");
    assert!(!store.delete_task("nope").await.unwrap());
    assert_eq!(
        store.get_task(&kept.id).await.unwrap().as_ref(),
        Some(&kept)
    );
    assert_eq!(store.get_logs(&kept.id).await.unwrap().len(), 1);
    let page = store
        .list_tasks(&TaskFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(ids(&page.items), vec![kept.id.clone()]);
    // A new task after a deletion still lists first.
    let newer = task("ns/a", 3);
    store.insert_task(&newer).await.unwrap();
    let page = store
        .list_tasks(&TaskFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(ids(&page.items), vec![newer.id.clone(), kept.id.clone()]);
}

fn file_at(created: i64) -> FileRecord {
    FileRecord {
        id: new_id(),
        filename: "f.bin".into(),
        content_type: "application/octet-stream".into(),
        size: None,
        uploaded: false,
        created_at_ms: created,
    }
}

async fn deleting_a_file_takes_only_its_record(store: Arc<dyn TaskStore>) {
    let a = file_at(1);
    let b = file_at(2);
    store.insert_file(&a).await.unwrap();
    store.insert_file(&b).await.unwrap();
    assert!(store.delete_file(&a.id).await.unwrap());
    assert_eq!(store.get_file(&a.id).await.unwrap(), None);
    assert!(!store.delete_file(&a.id).await.unwrap());
    assert_eq!(store.get_file(&b.id).await.unwrap().as_ref(), Some(&b));
    assert!(matches!(
        store.mark_file_uploaded(&a.id, 1).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn files_page_newest_first(store: Arc<dyn TaskStore>) {
    assert!(store
        .list_files(10, None, None)
        .await
        .unwrap()
        .items
        .is_empty());
    // Two share a creation time: the id breaks the tie, and paging never
    // skips or repeats one.
    let mut files: Vec<FileRecord> = [5, 1, 3, 3, 4].into_iter().map(file_at).collect();
    for f in &files {
        store.insert_file(f).await.unwrap();
    }
    files.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
    let want: Vec<String> = files.iter().map(|f| f.id.clone()).collect();
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.list_files(2, cursor.as_deref(), None).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        got.extend(page.items.iter().map(|f| f.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(got, want);
    assert_eq!(pages, 3);
    let all = store.list_files(10, None, None).await.unwrap();
    assert_eq!(all.items, files);
    assert_eq!(all.next_cursor, None);
    for bad in ["x", "12", "1.nothex"] {
        assert!(
            matches!(
                store.list_files(10, Some(bad), None).await,
                Err(StoreError::InvalidCursor(_))
            ),
            "{bad}"
        );
    }
}

/// Issue 15: a file's team and public flag; listings filtered by team (a
/// file without a team is `default`'s).
async fn file_access_team_and_public(store: Arc<dyn TaskStore>) {
    let (old, mine, theirs) = (file_at(1), file_at(2), file_at(3));
    for f in [&old, &mine, &theirs] {
        store.insert_file(f).await.unwrap();
    }
    // Before any is set: private, no team.
    assert_eq!(
        store.file_access(&old.id).await.unwrap(),
        Some(FileAccess::default())
    );
    assert_eq!(store.file_access(&new_id()).await.unwrap(), None);
    let a = FileAccess {
        team: Some("a".into()),
        public: true,
    };
    store.set_file_access(&mine.id, &a).await.unwrap();
    let b = FileAccess {
        team: Some("b".into()),
        public: false,
    };
    store.set_file_access(&theirs.id, &b).await.unwrap();
    assert_eq!(store.file_access(&mine.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.file_access(&theirs.id).await.unwrap(), Some(b));
    assert!(matches!(
        store.set_file_access(&new_id(), &a).await,
        Err(StoreError::NotFound { .. })
    ));
    let listed = |team: Option<&'static str>| {
        let store = store.clone();
        async move {
            let page = store.list_files(10, None, team).await.unwrap();
            page.items.into_iter().map(|f| f.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(Some("a")).await, vec![mine.id.clone()]);
    assert_eq!(listed(Some("b")).await, vec![theirs.id.clone()]);
    assert_eq!(listed(Some("default")).await, vec![old.id.clone()]);
    assert!(listed(Some("c")).await.is_empty());
    assert_eq!(listed(None).await, vec![theirs.id, mine.id, old.id]);
}

async fn ended_tasks_before_finds_the_retention_batch(store: Arc<dyn TaskStore>) {
    // Ended at 100, 200, 300 (three terminal statuses), one still running
    // since 50, one ended after the cutoff.
    let mut ended = Vec::new();
    for (at, status) in [
        (300, TaskStatus::Cancelled),
        (100, TaskStatus::Completed),
        (200, TaskStatus::Failed),
    ] {
        let t = task("ns/a", 10);
        store.insert_task(&t).await.unwrap();
        store.update_status(&t.id, status, at).await.unwrap();
        ended.push((at, t.id));
    }
    let running = task("ns/a", 10);
    store.insert_task(&running).await.unwrap();
    store
        .update_status(&running.id, TaskStatus::Running, 50)
        .await
        .unwrap();
    let late = task("ns/a", 10);
    store.insert_task(&late).await.unwrap();
    store
        .update_status(&late.id, TaskStatus::Completed, 400)
        .await
        .unwrap();
    store.sync().await.unwrap();
    ended.sort();
    let oldest: Vec<String> = ended.iter().map(|(_, id)| id.clone()).collect();

    assert_eq!(store.ended_tasks_before(400, 10).await.unwrap(), oldest);
    assert_eq!(
        store.ended_tasks_before(400, 2).await.unwrap(),
        oldest[..2].to_vec(),
        "a batch is the oldest first"
    );
    assert_eq!(
        store.ended_tasks_before(200, 10).await.unwrap(),
        oldest[..1].to_vec(),
        "strictly before the cutoff"
    );
    assert!(store.ended_tasks_before(100, 10).await.unwrap().is_empty());
    // Deleted ones are not found again: the sweep makes progress.
    store.delete_task(&oldest[0]).await.unwrap();
    assert_eq!(
        store.ended_tasks_before(400, 10).await.unwrap(),
        oldest[1..].to_vec()
    );
}

async fn store_reports_its_size(store: Arc<dyn TaskStore>) {
    store.insert_task(&task("ns/a", 1)).await.unwrap();
    store.sync().await.unwrap();
    let bytes = store.store_bytes().await.unwrap().expect("a size");
    // A real database with the schema in it: more than a few pages.
    assert!(bytes > 4096, "{bytes}");
}
