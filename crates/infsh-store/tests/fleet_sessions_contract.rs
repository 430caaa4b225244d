//! The fleet sessions contract (the rules in `fleet_sessions.rs`), run
//! against both stores like `fleet_contract.rs`: SQLite in a temporary
//! folder, PostgreSQL in a database of its own. Times are explicit.

use std::any::Any;
use std::sync::Arc;

use infsh_store::fleet::{
    ClaimRequest, EngineApp, EngineRegistration, EngineSession, FleetError, FleetSession,
    FleetStore, Report, SessionChange, SessionRefusal, SessionState,
};
use infsh_store::{new_id, PostgresStore, SqliteStore, TaskRecord, TaskStatus, TaskStore};
use infsh_testkit::PgTestDb;
use serde_json::json;

const LEASE: i64 = 30_000;

trait Both: FleetStore + TaskStore {}
impl<T: FleetStore + TaskStore> Both for T {}

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
    a_sessions_calls_go_to_the_engine_that_claimed_its_first_one_at_a_time_in_order,
    calls_keepalives_and_ends_follow_the_rules,
    the_sweep_expires_idle_sessions_ends_those_of_lost_engines_and_fails_their_queued_calls,
    an_engine_names_its_replicas_reports_deaths_and_its_restart_ends_its_sessions,
    a_sessions_calls_of_a_version_go_to_an_engine_that_fetches_versions,
);

fn call(app: &str, session: &str) -> TaskRecord {
    TaskRecord {
        id: new_id(),
        app: app.into(),
        function: "run".into(),
        input: json!({}),
        setup: json!({}),
        status: TaskStatus::Queued,
        output: None,
        error: None,
        webhook: None,
        session_id: Some(session.into()),
        metadata: json!({}),
        timeout_secs: None,
        created_at_ms: 1,
        updated_at_ms: 1,
        team: None,
        run_at_ms: None,
    }
}

async fn engines(store: &dyn Both, names: &[&str], at: i64) {
    for name in names {
        store
            .register_engine(
                &EngineRegistration {
                    name: (*name).into(),
                    version: "1".into(),
                    slots: json!([]),
                    apps: vec![EngineApp {
                        app: "ns/a".into(),
                        hash: "h".into(),
                        functions: json!({}),
                    }],
                },
                at,
            )
            .await
            .unwrap();
    }
}

fn claim_of(engine: &str) -> ClaimRequest {
    ClaimRequest {
        engine: engine.into(),
        slots: vec![],
        warm: vec![],
        max: 10,
        versions: false,
    }
}

async fn claimed(store: &dyn Both, engine: &str, now: i64) -> Vec<String> {
    store
        .claim(&claim_of(engine), now, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.task.id)
        .collect()
}

/// A session opened with its first call queued.
async fn open(store: &dyn Both, id: &str, timeout_ms: i64, now: i64) -> TaskRecord {
    let first = call("ns/a", id);
    store
        .open_session(&FleetSession::open(
            id.into(),
            "ns/a",
            timeout_ms,
            &first.id,
            now,
        ))
        .await
        .unwrap();
    store.enqueue_remote(&first, None).await.unwrap();
    first
}

async fn done(store: &dyn Both, engine: &str, task: &str, at: i64) {
    let report = Report {
        status: Some(TaskStatus::Completed),
        at_ms: at,
        ..Report::default()
    };
    store.report(engine, task, &report).await.unwrap();
}

async fn a_sessions_calls_go_to_the_engine_that_claimed_its_first_one_at_a_time_in_order(
    store: &dyn Both,
) {
    engines(store, &["e1", "e2"], 1000).await;
    let first = open(store, "sess_1", 60_000, 1000).await;
    let second = call("ns/a", "sess_1");
    store.enqueue_remote(&second, None).await.unwrap();
    let third = call("ns/a", "sess_1");
    store.enqueue_remote(&third, None).await.unwrap();
    let plain = call("ns/a", "x");
    let plain = TaskRecord {
        session_id: None,
        ..plain
    };
    store.enqueue_remote(&plain, None).await.unwrap();

    // e2 takes the first call (and a plain task), not the second: one at a time.
    let mut got = claimed(store, "e2", 2000).await;
    got.sort();
    let mut want = vec![first.id.clone(), plain.id.clone()];
    want.sort();
    assert_eq!(got, want);
    let session = store.get_session("sess_1").await.unwrap().unwrap();
    assert_eq!(session.engine.as_deref(), Some("e2"));
    assert!(
        claimed(store, "e2", 2100).await.is_empty(),
        "its first call runs"
    );
    done(store, "e2", &first.id, 2200).await;
    assert!(
        claimed(store, "e1", 2300).await.is_empty(),
        "only the engine holding the session takes its calls"
    );
    assert_eq!(claimed(store, "e2", 2400).await, vec![second.id.clone()]);
    done(store, "e2", &second.id, 2500).await;
    assert_eq!(claimed(store, "e2", 2600).await, vec![third.id]);
}

async fn calls_keepalives_and_ends_follow_the_rules(store: &dyn Both) {
    engines(store, &["e1"], 1000).await;
    open(store, "sess_1", 10_000, 1000).await;
    let s = store
        .change_session("sess_1", &SessionChange::Call { app: "ns/a".into() }, 2000)
        .await
        .unwrap();
    assert_eq!((s.call_count, s.expires_at_ms), (2, 12_000));
    let s = store
        .change_session("sess_1", &SessionChange::Keepalive, 5000)
        .await
        .unwrap();
    assert_eq!(s.expires_at_ms, 15_000);
    let err = store
        .change_session("sess_1", &SessionChange::Call { app: "ns/b".into() }, 5000)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FleetError::Session(SessionRefusal::AppMismatch { .. })),
        "{err}"
    );
    let err = store
        .change_session("sess_nope", &SessionChange::Keepalive, 5000)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown session \"sess_nope\"");
    assert_eq!(store.active_sessions().await.unwrap().len(), 1);

    let end = SessionChange::End {
        reason: "ended by DELETE /sessions/{id}".into(),
    };
    let s = store.change_session("sess_1", &end, 6000).await.unwrap();
    assert_eq!((s.status, s.ended_at_ms), (SessionState::Ended, Some(6000)));
    let again = SessionChange::End {
        reason: "other".into(),
    };
    let s = store.change_session("sess_1", &again, 7000).await.unwrap();
    assert_eq!(
        s.reason.as_deref(),
        Some("ended by DELETE /sessions/{id}"),
        "the first end wins"
    );
    let err = store
        .change_session("sess_1", &SessionChange::Call { app: "ns/a".into() }, 8000)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "session \"sess_1\" ended: ended by DELETE /sessions/{id}"
    );
    assert!(store.active_sessions().await.unwrap().is_empty());
}

async fn the_sweep_expires_idle_sessions_ends_those_of_lost_engines_and_fails_their_queued_calls(
    store: &dyn Both,
) {
    engines(store, &["e1", "e2"], 1000).await;
    // Idle: expires at its timeout unless a call waits.
    let waiting = open(store, "sess_idle", 1000, 1000).await;
    assert!(store.sweep_sessions(2500, LEASE).await.unwrap().is_empty());
    assert_eq!(
        store
            .get_session("sess_idle")
            .await
            .unwrap()
            .unwrap()
            .status,
        SessionState::Active,
        "a session with a call queued is not idle"
    );
    assert_eq!(claimed(store, "e2", 3000).await, vec![waiting.id.clone()]);
    done(store, "e2", &waiting.id, 3100).await;
    // Held by e1, which then stops beating with a call queued.
    let first = open(store, "sess_held", 600_000, 1000).await;
    assert_eq!(claimed(store, "e1", 3000).await, vec![first.id.clone()]);
    done(store, "e1", &first.id, 3100).await;
    let queued = call("ns/a", "sess_held");
    store.enqueue_remote(&queued, None).await.unwrap();
    store
        .heartbeat("e2", &[], 3000 + LEASE, LEASE)
        .await
        .unwrap();

    let failed = store.sweep_sessions(3000 + LEASE + 1, LEASE).await.unwrap();
    let idle = store.get_session("sess_idle").await.unwrap().unwrap();
    assert_eq!(idle.status, SessionState::Expired);
    let held = store.get_session("sess_held").await.unwrap().unwrap();
    assert_eq!(held.status, SessionState::Ended);
    let why =
        "its engine \"e1\" was lost (no heartbeat within a lease): the state in its worker is gone";
    assert_eq!(held.reason.as_deref(), Some(why));
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].task_id, queued.id);
    assert_eq!(
        failed[0].error,
        format!("session \"sess_held\" ended: {why}")
    );
    let task = store.get_task(&queued.id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.error.as_deref(), Some(failed[0].error.as_str()));
}

async fn an_engine_names_its_replicas_reports_deaths_and_its_restart_ends_its_sessions(
    store: &dyn Both,
) {
    engines(store, &["e1", "e2"], 1000).await;
    for id in ["sess_a", "sess_b"] {
        let first = open(store, id, 600_000, 1000).await;
        assert_eq!(claimed(store, "e1", 2000).await, vec![first.id.clone()]);
        done(store, "e1", &first.id, 2100).await;
    }
    let held = |id: &str, worker: &str, ended: Option<&str>| EngineSession {
        id: id.into(),
        worker: Some(worker.into()),
        ended: ended.map(String::from),
    };
    let drop = store
        .sync_engine_sessions("e1", &[held("sess_a", "ns/a#0", None)], 3000)
        .await
        .unwrap();
    assert!(drop.is_empty());
    let a = store.get_session("sess_a").await.unwrap().unwrap();
    assert_eq!(a.worker.as_deref(), Some("ns/a#0"));
    assert_eq!(
        store
            .sync_engine_sessions("e2", &[held("sess_a", "ns/a#1", None)], 3000)
            .await
            .unwrap(),
        vec!["sess_a".to_string()],
        "another engine's session: let go of it"
    );
    let died = "its worker died: the worker exited (signal 9 (SIGKILL)) while idle";
    assert_eq!(
        store
            .sync_engine_sessions("e1", &[held("sess_a", "ns/a#0", Some(died))], 3100)
            .await
            .unwrap(),
        vec!["sess_a".to_string()]
    );
    let a = store.get_session("sess_a").await.unwrap().unwrap();
    assert_eq!(
        (a.status, a.reason.as_deref()),
        (SessionState::Ended, Some(died))
    );

    let ended = store
        .end_engine_sessions("e1", "restarted", 4000)
        .await
        .unwrap();
    assert_eq!(ended, vec!["sess_b".to_string()]);
    let b = store.get_session("sess_b").await.unwrap().unwrap();
    assert_eq!(
        (b.status, b.reason.as_deref()),
        (SessionState::Ended, Some("restarted"))
    );
}

/// A session opened on a deployed version (`ns/v@HASH`, which no engine
/// registers): its calls are claimed by an engine that fetches versions,
/// not by one that does not, and then only by the engine holding it.
async fn a_sessions_calls_of_a_version_go_to_an_engine_that_fetches_versions(store: &dyn Both) {
    engines(store, &["e1", "e2"], 1000).await;
    let first = call("ns/v@1111", "sess_v");
    store
        .open_session(&FleetSession::open(
            "sess_v".into(),
            "ns/v@1111",
            60_000,
            &first.id,
            1000,
        ))
        .await
        .unwrap();
    store.enqueue_remote(&first, None).await.unwrap();
    assert_eq!(claimed(store, "e1", 1100).await, Vec::<String>::new());
    let fetching = |engine: &str| ClaimRequest {
        versions: true,
        ..claim_of(engine)
    };
    let got: Vec<String> = store
        .claim(&fetching("e1"), 1200, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.task.id)
        .collect();
    assert_eq!(got, vec![first.id.clone()]);
    done(store, "e1", &first.id, 1300).await;
    let second = call("ns/v@1111", "sess_v");
    store.enqueue_remote(&second, None).await.unwrap();
    let other = store.claim(&fetching("e2"), 1400, LEASE).await.unwrap();
    assert!(
        other.is_empty(),
        "e2 took a call of e1's session: {other:?}"
    );
    let got: Vec<String> = store
        .claim(&fetching("e1"), 1500, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.task.id)
        .collect();
    assert_eq!(got, [second.id]);
}
