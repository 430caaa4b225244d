//! The [`FleetStore`] contract (the rules in `fleet.rs`), run against both
//! stores: SQLite on a file in a temporary folder, PostgreSQL in a database
//! of its own ([`PgTestDb`]). Timestamps are explicit (a store takes `now`
//! from its caller), so lease expiry is tested without waiting. What only
//! PostgreSQL has (several nodes claiming at once, LISTEN/NOTIFY) is in
//! `postgres_fleet.rs`.

use std::any::Any;
use std::sync::Arc;

use infsh_store::fleet::{
    CancelOutcome, ClaimRequest, EngineApp, EngineRegistration, Expired, FleetError, FleetStore,
    Report,
};
use infsh_store::{
    new_id, LogEntry, LogType, PostgresStore, SqliteStore, TaskRecord, TaskStatus, TaskStore,
};
use infsh_testkit::PgTestDb;
use serde_json::json;

const LEASE: i64 = 30_000;

/// Both sides of a store: its tasks and its fleet.
trait Both: FleetStore + TaskStore {}
impl<T: FleetStore + TaskStore> Both for T {}

/// A store and what must outlive it (its folder or database).
struct Fixture {
    store: Arc<dyn Both>,
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
                super::$name(&*f.store).await;
            })*
        }
        mod postgres_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let f = super::postgres().await;
                super::$name(&*f.store).await;
            })*
        }
    };
}

contract!(
    queued_remote_counts_an_apps_unclaimed_remote_tasks,
    a_registered_engine_claims_queued_remote_tasks_once_oldest_first,
    unknown_draining_and_mismatched_engines_claim_nothing,
    pinned_runs_go_to_an_engine_with_the_slot_and_warm_apps_come_first,
    heartbeats_extend_leases_and_an_expired_lease_requeues_then_fails,
    a_task_whose_claim_answer_was_lost_is_not_kept_by_heartbeats_and_runs_again,
    with_one_attempt_a_lost_lease_fails_the_task_at_once,
    reports_write_logs_output_and_the_first_terminal_state_wins,
    cancel_ends_a_queued_task_and_asks_the_engine_of_a_leased_one,
    a_reregistration_keeps_draining_and_first_registration_time,
    a_task_is_not_claimed_before_its_run_at,
    version_tasks_go_to_engines_that_fetch_versions_cached_ones_first,
    a_cold_engine_leaves_a_task_to_a_warm_one_with_a_free_slot_for_the_grace,
);

fn ids(claimed: &[infsh_store::fleet::ClaimedTask]) -> Vec<String> {
    claimed.iter().map(|c| c.task.id.clone()).collect()
}

/// A task queued at `at_ms`.
async fn queued_at(store: &dyn Both, app: &str, at_ms: i64) -> TaskRecord {
    let mut t = task(app);
    (t.created_at_ms, t.updated_at_ms) = (at_ms, at_ms);
    store.enqueue_remote(&t, None).await.unwrap();
    t
}

/// Across engines: a cold engine's claim leaves a task, for
/// `WARM_GRACE_MS` after it was queued, to another online, non-draining
/// engine whose last claim said it is warm for the app and that has a
/// free slot (its claim's `max` above what it holds; a task's end frees
/// one). Busy, draining or offline, the warm engine is not waited for.
async fn a_cold_engine_leaves_a_task_to_a_warm_one_with_a_free_slot_for_the_grace(
    store: &dyn Both,
) {
    use infsh_store::fleet::WARM_GRACE_MS;
    for name in ["warm", "cold"] {
        store
            .register_engine(&registration(name, &[("ns/a", "h")]), 10_000)
            .await
            .unwrap();
    }
    let mut warm = claim_of("warm", 1);
    warm.warm = vec!["ns/a".into()];
    let cold = claim_of("cold", 1);
    // The warm engine's claim (nothing queued yet) records it warm, free.
    assert!(store.claim(&warm, 10_000, LEASE).await.unwrap().is_empty());

    let t1 = queued_at(store, "ns/a", 10_000).await;
    let got = store.claim(&cold, 10_500, LEASE).await.unwrap();
    assert!(got.is_empty(), "the cold engine took {:?}", ids(&got));
    let got = store.claim(&warm, 10_500, LEASE).await.unwrap();
    assert_eq!(ids(&got), vec![t1.id.clone()]);

    // Its one slot busy: the cold engine takes the next task at once.
    let t2 = queued_at(store, "ns/a", 10_600).await;
    let got = store.claim(&cold, 10_600, LEASE).await.unwrap();
    assert_eq!(
        ids(&got),
        vec![t2.id.clone()],
        "the busy warm engine is not waited for"
    );

    // Its task ended: its slot is free again, before its next claim.
    let done = Report {
        status: Some(TaskStatus::Completed),
        at_ms: 10_700,
        ..Report::default()
    };
    store.report("warm", &t1.id, &done).await.unwrap();
    let other = registration("other", &[("ns/a", "h")]);
    store.register_engine(&other, 10_700).await.unwrap();
    let t3 = queued_at(store, "ns/a", 11_000).await;
    let got = store
        .claim(&claim_of("other", 1), 11_000 + WARM_GRACE_MS, LEASE)
        .await
        .unwrap();
    assert!(
        got.is_empty(),
        "a cold engine took {:?} within the grace",
        ids(&got)
    );
    // After the grace (the warm engine stuck), anyone takes it.
    let got = store
        .claim(&claim_of("other", 1), 11_000 + WARM_GRACE_MS + 1, LEASE)
        .await
        .unwrap();
    assert_eq!(ids(&got), vec![t3.id.clone()], "after the grace");

    // A draining warm engine is not waited for.
    store.set_engine_draining("warm", true).await.unwrap();
    let t4 = queued_at(store, "ns/a", 20_000).await;
    let got = store.claim(&cold, 20_000, LEASE).await.unwrap();
    assert_eq!(ids(&got), vec![t4.id.clone()], "the warm engine drains");

    // Nor is an offline one (its last beat older than a lease).
    store.set_engine_draining("warm", false).await.unwrap();
    store
        .report(
            "cold",
            &t4.id,
            &Report {
                at_ms: 20_000,
                ..done.clone()
            },
        )
        .await
        .unwrap();
    let t5 = queued_at(store, "ns/a", 10_000 + LEASE + 1).await;
    let got = store.claim(&cold, 10_000 + LEASE + 1, LEASE).await.unwrap();
    assert_eq!(ids(&got), vec![t5.id.clone()], "the warm engine is offline");
}

/// A task of a deployed version (`ns/name@HASH`) is claimed only by an
/// engine that fetches versions, whatever apps it registered (none here);
/// the versions it has cached (`warm`) come first, then the oldest.
async fn version_tasks_go_to_engines_that_fetch_versions_cached_ones_first(store: &dyn Both) {
    store
        .register_engine(&registration("plain", &[("ns/a", "h")]), 1000)
        .await
        .unwrap();
    store
        .register_engine(&registration("fetcher", &[]), 1000)
        .await
        .unwrap();
    let v1 = task("ns/v@1111");
    let v2 = task("ns/v@2222");
    store.enqueue_remote(&v1, None).await.unwrap();
    store.enqueue_remote(&v2, None).await.unwrap();

    let got = store
        .claim(&claim_of("plain", 10), 2000, LEASE)
        .await
        .unwrap();
    assert!(
        got.is_empty(),
        "an engine that does not fetch versions took {got:?}"
    );
    let got = store
        .claim(&claim_of("fetcher", 10), 2000, LEASE)
        .await
        .unwrap();
    assert!(got.is_empty(), "a claim without `versions` took {got:?}");

    let mut fetching = claim_of("fetcher", 1);
    fetching.versions = true;
    fetching.warm = vec!["ns/v@2222".into()];
    let got = store.claim(&fetching, 2000, LEASE).await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.task.id.clone()).collect::<Vec<_>>(),
        vec![v2.id.clone()],
        "the cached version first"
    );
    let got = store.claim(&fetching, 2000, LEASE).await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.task.id.clone()).collect::<Vec<_>>(),
        vec![v1.id.clone()]
    );
}

/// A remote task with a `run_at` ahead is passed over by claims (and
/// does not block the ones behind it) until its time; then it is claimed.
async fn a_task_is_not_claimed_before_its_run_at(store: &dyn Both) {
    store
        .register_engine(&registration("e1", &[("ns/a", "h")]), 1000)
        .await
        .unwrap();
    let mut held = task("ns/a");
    held.run_at_ms = Some(5000);
    store.enqueue_remote(&held, None).await.unwrap();
    let now = queued(store, "ns/a").await;

    let got = store.claim(&claim_of("e1", 10), 2000, LEASE).await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.task.id.clone()).collect::<Vec<_>>(),
        vec![now.id]
    );
    let got = store.claim(&claim_of("e1", 10), 5000, LEASE).await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.task.id.clone()).collect::<Vec<_>>(),
        vec![held.id.clone()]
    );
    assert_eq!(got[0].task.run_at_ms, Some(5000));
}

fn task(app: &str) -> TaskRecord {
    TaskRecord {
        id: new_id(),
        app: app.into(),
        function: "run".into(),
        input: json!({"x": 1}),
        setup: json!({}),
        status: TaskStatus::Queued,
        output: None,
        error: None,
        webhook: None,
        session_id: None,
        metadata: json!({}),
        timeout_secs: None,
        created_at_ms: 1,
        updated_at_ms: 1,
        team: None,
        run_at_ms: None,
    }
}

fn registration(name: &str, apps: &[(&str, &str)]) -> EngineRegistration {
    EngineRegistration {
        name: name.into(),
        version: "1.2.3".into(),
        slots: json!([{"name": format!("{name}-cpu-0")}]),
        apps: apps
            .iter()
            .map(|(app, hash)| EngineApp {
                app: (*app).into(),
                hash: (*hash).into(),
                functions: json!({"run": {}}),
            })
            .collect(),
    }
}

fn claim_of(engine: &str, max: usize) -> ClaimRequest {
    ClaimRequest {
        engine: engine.into(),
        slots: vec![format!("{engine}-cpu-0")],
        warm: vec![],
        max,
        versions: false,
    }
}

async fn queued(store: &dyn Both, app: &str) -> TaskRecord {
    let t = task(app);
    store.enqueue_remote(&t, None).await.unwrap();
    t
}

async fn a_registered_engine_claims_queued_remote_tasks_once_oldest_first(store: &dyn Both) {
    store
        .register_engine(&registration("e1", &[("ns/a", "h")]), 1000)
        .await
        .unwrap();
    store
        .register_engine(&registration("e2", &[("ns/a", "h")]), 1000)
        .await
        .unwrap();
    let first = queued(store, "ns/a").await;
    let second = queued(store, "ns/a").await;
    // A local task of the same app is the API node's own: never claimed.
    store.insert_task(&task("ns/a")).await.unwrap();
    let _other_app = queued(store, "ns/b").await;

    let got = store.claim(&claim_of("e1", 1), 2000, LEASE).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task.id, first.id);
    assert_eq!(got[0].attempt, 1);
    assert_eq!(got[0].lease_until_ms, 2000 + LEASE);
    assert_eq!(got[0].task.status, TaskStatus::Dispatched);
    let got2 = store.claim(&claim_of("e2", 10), 2000, LEASE).await.unwrap();
    assert_eq!(
        got2.iter().map(|c| c.task.id.clone()).collect::<Vec<_>>(),
        vec![second.id.clone()]
    );
    assert!(store
        .claim(&claim_of("e1", 10), 2000, LEASE)
        .await
        .unwrap()
        .is_empty());
    let stored = store.get_task(&first.id).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Dispatched);
    let engines = store.list_engines().await.unwrap();
    assert_eq!(engines[0].running, vec![first.id.clone()]);
    assert_eq!(engines[1].running, vec![second.id]);
    assert!(store.is_remote(&first.id).await.unwrap());
}

async fn unknown_draining_and_mismatched_engines_claim_nothing(store: &dyn Both) {
    store
        .register_engine(&registration("e1", &[("ns/a", "h1")]), 1000)
        .await
        .unwrap();
    store
        .register_engine(&registration("e2", &[("ns/a", "h2")]), 1001)
        .await
        .unwrap();
    let t = queued(store, "ns/a").await;
    assert!(store
        .claim(&claim_of("ghost", 5), 1500, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert!(
        store
            .claim(&claim_of("e2", 5), 1500, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "e2 hosts ns/a with another hash than the first registration"
    );
    store.set_engine_draining("e1", true).await.unwrap();
    assert!(store
        .claim(&claim_of("e1", 5), 1500, LEASE)
        .await
        .unwrap()
        .is_empty());
    let e1 = store.set_engine_draining("e1", false).await.unwrap();
    assert!(!e1.draining);
    assert_eq!(
        store.claim(&claim_of("e1", 5), 1500, LEASE).await.unwrap()[0]
            .task
            .id,
        t.id
    );
    assert!(matches!(
        store.set_engine_draining("ghost", true).await,
        Err(FleetError::UnknownEngine(n)) if n == "ghost"
    ));
}

async fn pinned_runs_go_to_an_engine_with_the_slot_and_warm_apps_come_first(store: &dyn Both) {
    for e in ["e1", "e2"] {
        store
            .register_engine(&registration(e, &[("ns/a", "h"), ("ns/b", "h")]), 1000)
            .await
            .unwrap();
    }
    let pinned = task("ns/a");
    store
        .enqueue_remote(&pinned, Some(&["e2-cpu-0".to_string()]))
        .await
        .unwrap();
    let cold = queued(store, "ns/a").await;
    let warm = queued(store, "ns/b").await;
    let mut request = claim_of("e1", 1);
    request.warm = vec!["ns/b".into()];
    let got = store.claim(&request, 1500, LEASE).await.unwrap();
    assert_eq!(got[0].task.id, warm.id, "the warm app first");
    let got = store.claim(&claim_of("e1", 5), 1500, LEASE).await.unwrap();
    assert_eq!(got.len(), 1, "the pinned run is not e1's");
    assert_eq!(got[0].task.id, cold.id);
    let got = store.claim(&claim_of("e2", 5), 1500, LEASE).await.unwrap();
    assert_eq!(got[0].task.id, pinned.id);
    assert_eq!(got[0].pinned_workers, Some(vec!["e2-cpu-0".to_string()]));
}

async fn heartbeats_extend_leases_and_an_expired_lease_requeues_then_fails(store: &dyn Both) {
    for e in ["e1", "e2"] {
        store
            .register_engine(&registration(e, &[("ns/a", "h")]), 1000)
            .await
            .unwrap();
    }
    let t = queued(store, "ns/a").await;
    store.claim(&claim_of("e1", 1), 1000, LEASE).await.unwrap();
    let beat = store
        .heartbeat("e1", std::slice::from_ref(&t.id), 20_000, LEASE)
        .await
        .unwrap();
    assert_eq!(beat.lease_until_ms, 20_000 + LEASE);
    assert!(beat.lost.is_empty() && beat.cancel.is_empty());
    // Not expired at the old deadline, since the heartbeat moved it.
    assert!(store
        .expire_leases(1000 + LEASE + 1, 2)
        .await
        .unwrap()
        .is_empty());

    let expired = store.expire_leases(20_000 + LEASE + 1, 2).await.unwrap();
    assert_eq!(
        expired,
        vec![Expired {
            task_id: t.id.clone(),
            engine: "e1".into(),
            attempt: 1,
            status: TaskStatus::Queued,
        }]
    );
    // e1 comes back late: it no longer holds the task, its report is refused.
    let beat = store
        .heartbeat("e1", std::slice::from_ref(&t.id), 60_000, LEASE)
        .await
        .unwrap();
    assert_eq!(beat.lost, vec![t.id.clone()]);
    let again = store
        .claim(&claim_of("e2", 1), 60_000, LEASE)
        .await
        .unwrap();
    assert_eq!(again[0].attempt, 2);
    let late = Report {
        status: Some(TaskStatus::Completed),
        output: Some(json!({"from": "e1"})),
        at_ms: 60_001,
        ..Report::default()
    };
    let e = store.report("e1", &t.id, &late).await.unwrap_err();
    assert!(
        matches!(&e, FleetError::NotLeased { holder: Some(h), status: TaskStatus::Dispatched, .. } if h == "e2"),
        "{e:?}"
    );
    // e2 is lost too: attempt 2 of 2, the task fails naming it.
    let expired = store.expire_leases(60_000 + LEASE + 1, 2).await.unwrap();
    assert_eq!(expired[0].status, TaskStatus::Failed);
    let failed = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("engine lost: e2"));
    assert_eq!(
        failed.output.as_ref().map(|o| o.to_value().into_owned()),
        None,
        "the refused report changed nothing"
    );
    let attempts = store.attempts(&t.id).await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.engine.as_str(), a.outcome.as_deref()))
            .collect::<Vec<_>>(),
        vec![(1, "e1", Some("lost")), (2, "e2", Some("lost"))]
    );
    assert!(store
        .claim(&claim_of("e2", 1), 200_000, LEASE)
        .await
        .unwrap()
        .is_empty());
}

/// The claim committed but its answer never reached the engine (a proxy
/// timeout, a cut connection): the engine does not list the task, so its
/// heartbeats must not extend that lease; the task is requeued when the
/// lease runs out, while the one it lists stays leased.
async fn a_task_whose_claim_answer_was_lost_is_not_kept_by_heartbeats_and_runs_again(
    store: &dyn Both,
) {
    store
        .register_engine(&registration("e1", &[("ns/a", "h")]), 1000)
        .await
        .unwrap();
    let known = queued(store, "ns/a").await;
    let unseen = queued(store, "ns/a").await;
    let got = store.claim(&claim_of("e1", 2), 1000, LEASE).await.unwrap();
    assert_eq!(got.len(), 2);
    // The engine only learnt of `known`; it beats listing just that one.
    let beat = store
        .heartbeat("e1", std::slice::from_ref(&known.id), 20_000, LEASE)
        .await
        .unwrap();
    assert_eq!(beat.lease_until_ms, 20_000 + LEASE);
    assert!(beat.lost.is_empty() && beat.cancel.is_empty(), "{beat:?}");

    let expired = store.expire_leases(1000 + LEASE + 1, 3).await.unwrap();
    assert_eq!(
        expired,
        vec![Expired {
            task_id: unseen.id.clone(),
            engine: "e1".into(),
            attempt: 1,
            status: TaskStatus::Queued,
        }]
    );
    assert_eq!(
        store.get_task(&known.id).await.unwrap().unwrap().status,
        TaskStatus::Dispatched
    );
    assert_eq!(
        store.list_engines().await.unwrap()[0].running,
        vec![known.id.clone()]
    );
    let attempts = store.attempts(&unseen.id).await.unwrap();
    assert_eq!(attempts[0].outcome.as_deref(), Some("lost"));
    // Its next claim (which starts with a heartbeat) gets it back as attempt 2.
    let again = store
        .claim(&claim_of("e1", 1), 1000 + LEASE + 2, LEASE)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].task.id, unseen.id);
    assert_eq!(again[0].attempt, 2);
}

async fn with_one_attempt_a_lost_lease_fails_the_task_at_once(store: &dyn Both) {
    store
        .register_engine(&registration("gpu-1", &[("ns/a", "h")]), 0)
        .await
        .unwrap();
    let t = queued(store, "ns/a").await;
    store.claim(&claim_of("gpu-1", 1), 0, LEASE).await.unwrap();
    let expired = store.expire_leases(LEASE + 1, 1).await.unwrap();
    assert_eq!(expired[0].status, TaskStatus::Failed);
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(got.error.as_deref(), Some("engine lost: gpu-1"));
}

async fn reports_write_logs_output_and_the_first_terminal_state_wins(store: &dyn Both) {
    store
        .register_engine(&registration("e1", &[("ns/a", "h")]), 0)
        .await
        .unwrap();
    let t = queued(store, "ns/a").await;
    store.claim(&claim_of("e1", 1), 0, LEASE).await.unwrap();
    let running = Report {
        status: Some(TaskStatus::Running),
        output: Some(json!({"partial": 1})),
        logs: vec![LogEntry {
            log_type: LogType::Task,
            content: "hello\n".into(),
            at_ms: 5,
        }],
        at_ms: 5,
        worker: Some("e1-gpu-1".into()),
        ..Report::default()
    };
    store.report("e1", &t.id, &running).await.unwrap();
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Running);
    assert_eq!(
        got.output.as_ref().map(|o| o.to_value().into_owned()),
        Some(json!({"partial": 1}))
    );
    assert_eq!(store.get_logs(&t.id).await.unwrap()[0].content, "hello\n");

    let done = Report {
        status: Some(TaskStatus::Completed),
        output: Some(json!({"y": 2})),
        at_ms: 9,
        ..Report::default()
    };
    store.report("e1", &t.id, &done).await.unwrap();
    let again = Report {
        status: Some(TaskStatus::Failed),
        error: Some("late".into()),
        at_ms: 10,
        ..Report::default()
    };
    let e = store.report("e1", &t.id, &again).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "task \"{}\" is not leased by engine \"e1\" (it ended completed)",
            t.id
        )
    );
    let got = store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.output.map(|o| o.into_value())),
        (TaskStatus::Completed, Some(json!({"y": 2})))
    );
    // The worker named while it ran stays on the attempt after its end.
    let attempt = &store.attempts(&t.id).await.unwrap()[0];
    assert_eq!(
        (attempt.outcome.as_deref(), attempt.worker.as_deref()),
        (Some("completed"), Some("e1-gpu-1"))
    );
    assert!(store.list_engines().await.unwrap()[0].running.is_empty());
    assert!(matches!(
        store.report("e1", "nope", &done).await,
        Err(FleetError::UnknownTask(id)) if id == "nope"
    ));
    assert!(matches!(
        store.heartbeat("ghost", &[], 0, LEASE).await,
        Err(FleetError::UnknownEngine(_))
    ));
}

async fn cancel_ends_a_queued_task_and_asks_the_engine_of_a_leased_one(store: &dyn Both) {
    store
        .register_engine(&registration("e1", &[("ns/a", "h")]), 0)
        .await
        .unwrap();
    let waiting = queued(store, "ns/a").await;
    let leased = queued(store, "ns/a").await;
    let first = store.request_cancel(&waiting.id, 1).await.unwrap();
    assert_eq!(first, CancelOutcome::Cancelled);
    assert_eq!(
        store.get_task(&waiting.id).await.unwrap().unwrap().status,
        TaskStatus::Cancelled
    );
    store.claim(&claim_of("e1", 5), 2, LEASE).await.unwrap();
    assert_eq!(
        store.request_cancel(&leased.id, 3).await.unwrap(),
        CancelOutcome::Requested {
            engine: "e1".into()
        }
    );
    let beat = store
        .heartbeat("e1", std::slice::from_ref(&leased.id), 4, LEASE)
        .await
        .unwrap();
    assert_eq!(beat.cancel, vec![leased.id.clone()]);
    // The engine dies before it reports: the lease ends the task CANCELLED.
    let expired = store.expire_leases(4 + LEASE + 1, 5).await.unwrap();
    assert_eq!(expired[0].status, TaskStatus::Cancelled);
    assert_eq!(
        store.request_cancel(&leased.id, 99).await.unwrap(),
        CancelOutcome::Ended(TaskStatus::Cancelled)
    );
}

async fn a_reregistration_keeps_draining_and_first_registration_time(store: &dyn Both) {
    store
        .register_engine(&registration("e1", &[("ns/a", "h")]), 10)
        .await
        .unwrap();
    store.set_engine_draining("e1", true).await.unwrap();
    let again = store
        .register_engine(&registration("e1", &[("ns/a", "h9")]), 50)
        .await
        .unwrap();
    assert!(again.draining);
    assert_eq!(again.registered_at_ms, 10);
    assert_eq!(again.last_heartbeat_ms, 50);
    assert_eq!(again.apps[0].hash, "h9");
}

/// The queue limit of remote runs counts these: queued, unclaimed, of the app.
async fn queued_remote_counts_an_apps_unclaimed_remote_tasks(store: &dyn Both) {
    assert_eq!(store.queued_remote("tests/a").await.unwrap(), 0);
    queued(store, "tests/a").await;
    queued(store, "tests/a").await;
    queued(store, "tests/b").await;
    assert_eq!(store.queued_remote("tests/a").await.unwrap(), 2);
    assert_eq!(store.queued_remote("tests/b").await.unwrap(), 1);
    store
        .register_engine(&registration("e1", &[("tests/a", "h1")]), 1_000)
        .await
        .unwrap();
    let claimed = store.claim(&claim_of("e1", 1), 1_000, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        store.queued_remote("tests/a").await.unwrap(),
        1,
        "a claimed task no longer waits"
    );
    assert_eq!(store.queued_remote("tests/none").await.unwrap(), 0);
}
