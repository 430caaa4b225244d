//! What only the PostgreSQL fleet store has: several API nodes (stores
//! opened on one database) claiming and sweeping at once, and the
//! `LISTEN/NOTIFY` wake-up between them, including after its listening
//! connection is killed. Each test has a database of its own ([`PgTestDb`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use infsh_store::fleet::{
    ClaimRequest, EngineApp, EngineRegistration, FleetStore, TaskChange, Wakeup,
};
use infsh_store::{
    new_id, PostgresStore, TaskRecord, TaskStatus, TaskStore, LISTENER_APPLICATION, QUEUE_CHANNEL,
};
use infsh_testkit::PgTestDb;
use serde_json::json;
use tokio_postgres::NoTls;

const LEASE: i64 = 30_000;

fn task() -> TaskRecord {
    TaskRecord {
        id: new_id(),
        app: "ns/a".into(),
        function: "run".into(),
        input: json!({}),
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

fn registration(name: &str) -> EngineRegistration {
    EngineRegistration {
        name: name.into(),
        version: "1".into(),
        slots: json!([]),
        apps: vec![EngineApp {
            app: "ns/a".into(),
            hash: "h".into(),
            functions: json!({}),
        }],
    }
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Two API nodes (two stores on one database), each with engines that claim
/// in a loop until the queue is empty: every task is leased exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_claiming_at_once_lease_every_task_once() {
    let db = PgTestDb::create();
    let a = Arc::new(PostgresStore::open(db.url()).await.unwrap());
    let b = Arc::new(PostgresStore::open(db.url()).await.unwrap());
    const TASKS: usize = 300;
    for _ in 0..TASKS {
        a.enqueue_remote(&task(), None).await.unwrap();
    }
    let mut claimers = Vec::new();
    for (i, node) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let engine = format!("e{i}");
        node.register_engine(&registration(&engine), 1000)
            .await
            .unwrap();
        claimers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let request = ClaimRequest {
                    engine: engine.clone(),
                    slots: vec![],
                    warm: vec![],
                    max: 3,
                    versions: false,
                };
                let claimed = node.claim(&request, 2000, LEASE).await.unwrap();
                if claimed.is_empty() {
                    return got;
                }
                got.extend(claimed.into_iter().map(|c| (c.task.id, engine.clone())));
            }
        }));
    }
    let mut by_task: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut engines_used = 0;
    for claimer in claimers {
        let got = claimer.await.unwrap();
        engines_used += usize::from(!got.is_empty());
        for (id, engine) in got {
            by_task.entry(id).or_default().push(engine);
        }
    }
    assert_eq!(by_task.len(), TASKS, "every task claimed");
    assert!(
        by_task.values().all(|engines| engines.len() == 1),
        "no task claimed twice"
    );
    assert!(engines_used >= 2, "the claims ran side by side");
    // The store agrees: one attempt each, held by the engine that got it.
    for (id, engines) in by_task.iter().take(20) {
        let attempts = b.attempts(id).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].engine, engines[0]);
    }
}

/// Two nodes sweeping the same expired leases at once end each lease once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_sweeping_at_once_end_each_lease_once() {
    let db = PgTestDb::create();
    let a = Arc::new(PostgresStore::open(db.url()).await.unwrap());
    let b = Arc::new(PostgresStore::open(db.url()).await.unwrap());
    a.register_engine(&registration("e1"), 0).await.unwrap();
    const TASKS: usize = 100;
    for _ in 0..TASKS {
        a.enqueue_remote(&task(), None).await.unwrap();
    }
    let request = ClaimRequest {
        engine: "e1".into(),
        slots: vec![],
        warm: vec![],
        max: TASKS,
        versions: false,
    };
    assert_eq!(a.claim(&request, 0, LEASE).await.unwrap().len(), TASKS);
    let sweeps: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .map(|node| tokio::spawn(async move { node.expire_leases(LEASE + 1, 2).await.unwrap() }))
        .collect();
    let mut ended = Vec::new();
    for sweep in sweeps {
        ended.extend(sweep.await.unwrap());
    }
    // A sweep skips rows another holds: what it skipped the next one ends.
    ended.extend(a.expire_leases(LEASE + 1, 2).await.unwrap());
    assert_eq!(ended.len(), TASKS, "{ended:?}");
    let mut ids: Vec<_> = ended.iter().map(|e| e.task_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), TASKS, "no lease ended twice");
    assert!(ended.iter().all(|e| e.status == TaskStatus::Queued));
    let queued = b.tasks_with_status(&[TaskStatus::Queued]).await.unwrap();
    assert_eq!(queued.len(), TASKS);
    let attempts = b.attempts(&ids[0]).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome.as_deref(), Some("lost"));
}

async fn woken(rx: &mut tokio::sync::watch::Receiver<u64>, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .unwrap_or_else(|_| panic!("not woken: {what}"))
        .unwrap();
}

async fn heard(rx: &mut tokio::sync::broadcast::Receiver<TaskChange>) -> TaskChange {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a task change is heard")
        .unwrap()
}

async fn reaches(rx: &mut tokio::sync::watch::Receiver<u64>, n: u64, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| *v >= n))
        .await
        .unwrap_or_else(|_| panic!("not woken: {what}"))
        .unwrap();
}

/// The pids of this database's listening sessions.
async fn listeners(admin: &tokio_postgres::Client, db: &PgTestDb) -> Vec<i32> {
    admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 \
             ORDER BY pid",
            &[&db.name(), &LISTENER_APPLICATION],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Polls until `check` holds (the listener reconnects on its own time).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_on_one_node_wakes_claims_on_another_even_after_its_listener_is_killed() {
    let db = PgTestDb::create();
    let a = PostgresStore::open(db.url()).await.unwrap();
    let b = PostgresStore::open(db.url()).await.unwrap();
    let admin = client(db.url()).await;
    let wake_a = a.wakeup();
    let wake_b = b.wakeup();
    let mut on_b = wake_b.subscribe();
    // Each (re)connection wakes the waiters once, after its LISTEN.
    reaches(&mut on_b, 1, "node B's listener connected").await;
    on_b.borrow_and_update();
    wake_a.notify();
    woken(&mut on_b, "node B by node A's notify").await;
    // A task change announced by A reaches B with its id.
    let mut changes_b = wake_b
        .task_changes()
        .expect("PostgreSQL carries task changes");
    wake_a.task_changed("task-1");
    assert_eq!(
        heard(&mut changes_b).await,
        TaskChange::Task("task-1".into())
    );

    // Kill B's listening session: B reconnects and hears again.
    until("both nodes listen", || async {
        listeners(&admin, &db).await.len() == 2
    })
    .await;
    let before = listeners(&admin, &db).await;
    let seen = *on_b.borrow_and_update();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = $2",
            &[&db.name(), &LISTENER_APPLICATION],
        )
        .await
        .unwrap();
    reaches(&mut on_b, seen + 1, "node B's listener reconnected").await;
    assert_eq!(
        heard(&mut changes_b).await,
        TaskChange::Resync,
        "what was announced meanwhile may be lost: followers re-read"
    );
    let after = listeners(&admin, &db).await;
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "{before:?} -> {after:?}"
    );
    // A notify from any session on the database (not a node's) wakes B.
    on_b.borrow_and_update();
    admin
        .execute("SELECT pg_notify($1, '')", &[&QUEUE_CHANNEL])
        .await
        .unwrap();
    woken(&mut on_b, "node B after its listener reconnected").await;
    drop(wake_a);
    drop(wake_b);
    until("listeners stop with their wake-ups", || async {
        listeners(&admin, &db).await.is_empty()
    })
    .await;
}

/// A lost API node's own-worker tasks: two live nodes taking over at once
/// split them (each task moves once); a waiting one is queued, a running
/// one ends its attempt `lost` and gets the next; with no attempt left it
/// fails `node lost: <id>`. The lost node's late writes are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_nodes_take_over_a_lost_nodes_tasks_once() {
    let db = PgTestDb::create();
    let url = db.url().to_string();
    let open = |node: &'static str| {
        let url = url.clone();
        async move { Arc::new(PostgresStore::open(&url).await.unwrap().for_node(node)) }
    };
    let (lost, b, c) = (open("lost").await, open("b").await, open("c").await);
    lost.node_heartbeat(0).await.unwrap();
    const TASKS: usize = 40;
    let mut running = Vec::new();
    for i in 0..TASKS {
        let t = task();
        lost.insert_task(&t).await.unwrap();
        if i % 2 == 0 {
            lost.update_status(&t.id, TaskStatus::Running, 2)
                .await
                .unwrap();
            running.push(t.id.clone());
        }
    }
    let apps = vec!["ns/a".to_string()];
    // Within the lease nothing moves.
    assert!(b
        .take_over_lost_nodes(&apps, 500, 1000, 2)
        .await
        .unwrap()
        .is_empty());
    let (tb, tc) = tokio::join!(
        b.take_over_lost_nodes(&apps, 5000, 1000, 2),
        c.take_over_lost_nodes(&apps, 5000, 1000, 2)
    );
    let (tb, tc) = (tb.unwrap(), tc.unwrap());
    let mut ids: Vec<&str> = tb.iter().chain(&tc).map(|t| t.task.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), TASKS, "each task taken over once");
    assert_eq!(tb.len() + tc.len(), TASKS);
    for taken in tb.iter().chain(&tc) {
        assert_eq!(taken.from_node, "lost");
        assert_eq!(taken.task.status, TaskStatus::Queued);
        let was_running = running.contains(&taken.task.id);
        assert_eq!(taken.lost_attempt, was_running.then_some(1));
        let attempts = b.task_attempts(&taken.task.id).await.unwrap();
        if was_running {
            assert_eq!(attempts.len(), 2);
            assert_eq!(
                (attempts[0].engine.as_str(), attempts[0].outcome.as_deref()),
                ("node:lost", Some("lost"))
            );
            assert_eq!(attempts[1].attempt, 2);
            assert_eq!(attempts[1].outcome, None);
        } else {
            assert!(attempts.is_empty());
        }
        // The lost node's late writes change nothing.
        let late = lost
            .finish_task(&taken.task.id, TaskStatus::Completed, None, None, 9000)
            .await
            .unwrap_err();
        assert!(late.is_not_found(), "{late}");
    }
    // The node that took running ones (SKIP LOCKED may give one node all).
    let (taker, other, mine, name) = if tb.iter().any(|t| t.lost_attempt.is_some()) {
        (&b, &c, &tb, "b")
    } else {
        (&c, &b, &tc, "c")
    };
    let mut reruns = mine.iter().filter(|t| t.lost_attempt.is_some());
    let (first, second) = (reruns.next().unwrap(), reruns.next().unwrap());
    // The taker's end closes the open attempt.
    taker
        .finish_task(
            &first.task.id,
            TaskStatus::Completed,
            Some(&json!({}).into()),
            None,
            6000,
        )
        .await
        .unwrap();
    let attempts = taker.task_attempts(&first.task.id).await.unwrap();
    assert_eq!(attempts[1].outcome.as_deref(), Some("completed"));

    // The taker is lost in turn while running another one's second run:
    // with max attempts 2 it fails `node lost: <taker>`; the taker's
    // waiting ones are queued on the other node.
    taker
        .update_status(&second.task.id, TaskStatus::Running, 7000)
        .await
        .unwrap();
    taker.node_heartbeat(7000).await.unwrap();
    other.node_heartbeat(20_000).await.unwrap();
    let again = other
        .take_over_lost_nodes(&apps, 20_000, 1000, 2)
        .await
        .unwrap();
    assert_eq!(again.len(), mine.len() - 1, "all but the ended one");
    let failed = again.iter().find(|t| t.task.id == second.task.id).unwrap();
    assert_eq!(failed.task.status, TaskStatus::Failed);
    assert_eq!(failed.lost_attempt, Some(2));
    let stored = other.get_task(&second.task.id).await.unwrap().unwrap();
    assert_eq!(stored.error, Some(format!("node lost: {name}")));
    let attempts = other.task_attempts(&second.task.id).await.unwrap();
    let outcomes: Vec<(&str, Option<&str>)> = attempts
        .iter()
        .map(|a| (a.engine.as_str(), a.outcome.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("node:lost", Some("lost")),
            (format!("node:{name}").as_str(), Some("lost"))
        ]
    );
    assert!(again
        .iter()
        .filter(|t| t.task.id != second.task.id)
        .all(|t| t.task.status == TaskStatus::Queued));
}
