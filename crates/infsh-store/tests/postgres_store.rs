//! What only the PostgreSQL store has: migrations under the advisory lock
//! (several nodes starting on one fresh database), two nodes writing at
//! once, a schema equal to SQLite's, and the errors of a URL that does not
//! lead to a database. Each test has a database of its own ([`PgTestDb`]).

use std::collections::BTreeSet;

use infsh_store::{
    migrations::{latest_version, MIGRATIONS},
    new_id, PostgresStore, SqliteStore, StoreError, TaskFilter, TaskRecord, TaskStatus, TaskStore,
};
use infsh_testkit::PgTestDb;
use serde_json::json;
use tokio_postgres::NoTls;

fn task() -> TaskRecord {
    TaskRecord {
        id: new_id(),
        app: "tests/a".into(),
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

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_together_migrate_once() {
    let db = PgTestDb::create();
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url().to_string();
            tokio::spawn(async move { PostgresStore::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().expect("every node opens"));
    }
    let c = client(db.url()).await;
    let rows = c
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    // Every migration this build has, once each (numbers may have gaps:
    // versions are handed out to branches before they land).
    let known: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(versions, known);
    assert_eq!(versions.last(), Some(&latest_version()));
    // Each node writes; every node sees every write.
    let mut ids = Vec::new();
    for store in &stores {
        let t = task();
        store.insert_task(&t).await.unwrap();
        ids.push(t.id);
    }
    for store in &stores {
        let page = store
            .list_tasks(&TaskFilter::default(), 100, None)
            .await
            .unwrap();
        assert_eq!(page.items.len(), stores.len());
    }
    // Reopening changes nothing.
    drop(stores);
    PostgresStore::open(db.url()).await.unwrap();
    let n: i64 = c
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, MIGRATIONS.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_inserting_at_once_get_distinct_increasing_seqs() {
    let db = PgTestDb::create();
    let a = PostgresStore::open(db.url()).await.unwrap();
    let b = PostgresStore::open(db.url()).await.unwrap();
    let joins: Vec<_> = (0..100)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.insert_task(&task()).await })
        })
        .collect();
    for j in joins {
        j.await.unwrap().unwrap();
    }
    let c = client(db.url()).await;
    let row = c
        .query_one(
            "SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM tasks",
            &[],
        )
        .await
        .unwrap();
    let (n, distinct, min, max): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!((n, distinct, min, max), (100, 100, 1, 100));
}

#[tokio::test]
async fn a_database_from_a_newer_infsh_is_refused() {
    let db = PgTestDb::create();
    drop(PostgresStore::open(db.url()).await.unwrap());
    db.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
        .unwrap();
    let e = PostgresStore::open(db.url()).await.unwrap_err();
    assert!(matches!(e, StoreError::TooNew { found: 999, .. }), "{e:?}");
}

/// `(table, column, type, not null)` with PostgreSQL's type names written
/// as in the migrations (SQLite keeps the declared ones).
type Columns = BTreeSet<(String, String, String, bool)>;

fn normalise(t: &str) -> String {
    match t.to_ascii_uppercase().as_str() {
        "CHARACTER VARYING" | "TEXT" => "TEXT".into(),
        "INT8" | "BIGINT" => "BIGINT".into(),
        "INT4" | "INTEGER" => "INTEGER".into(),
        "FLOAT8" | "DOUBLE PRECISION" => "DOUBLE PRECISION".into(),
        other => other.into(),
    }
}

#[tokio::test]
async fn the_schema_is_the_same_as_sqlites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("infsh.db");
    drop(SqliteStore::open_async(&path).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut sqlite = Columns::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in &tables {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT name, type, \"notnull\", pk FROM pragma_table_info('{table}')"
            ))
            .unwrap();
        let cols = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? != 0 || r.get::<_, i64>(3)? != 0,
                ))
            })
            .unwrap();
        for col in cols {
            let (name, ty, not_null) = col.unwrap();
            sqlite.insert((table.clone(), name, normalise(&ty), not_null));
        }
    }

    let db = PgTestDb::create();
    drop(PostgresStore::open(db.url()).await.unwrap());
    let c = client(db.url()).await;
    let rows = c
        .query(
            "SELECT table_name::TEXT, column_name::TEXT, data_type::TEXT, is_nullable = 'NO' \
             FROM information_schema.columns WHERE table_schema = current_schema()",
            &[],
        )
        .await
        .unwrap();
    let postgres: Columns = rows
        .iter()
        .map(|r| {
            let ty: String = r.get(2);
            (r.get(0), r.get(1), normalise(&ty), r.get(3))
        })
        .collect();
    assert!(sqlite.iter().any(|c| c.0 == "tasks"), "{sqlite:?}");
    assert_eq!(sqlite, postgres);
}

/// The message for a URL that leads nowhere names it, password redacted.
async fn open_error(url: &str) -> String {
    let e = PostgresStore::open(url).await.unwrap_err();
    assert!(
        matches!(e, StoreError::Connect { .. } | StoreError::BadUrl { .. }),
        "{e:?}"
    );
    e.to_string()
}

#[tokio::test]
async fn urls_that_lead_nowhere_say_why() {
    let db = PgTestDb::create();
    let missing = db.url_for("infsh_no_such_database");
    assert_eq!(
        open_error(&missing).await,
        format!("{missing}: cannot connect: database \"infsh_no_such_database\" does not exist")
    );
    let nobody = missing
        .replacen("postgres://", "postgres://infsh_nobody:pw@", 1)
        .replacen("@postgres@", "@", 1);
    let message = open_error(&nobody).await;
    assert!(
        message.ends_with("cannot connect: role \"infsh_nobody\" does not exist"),
        "{message}"
    );
    assert!(message.contains("infsh_nobody:***@"), "{message}");
    assert!(!message.contains(":pw@"), "{message}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nowhere = format!("postgres://postgres:secret@127.0.0.1:{port}/x");
    assert_eq!(
        open_error(&nowhere).await,
        format!(
            "postgres://postgres:***@127.0.0.1:{port}/x: cannot connect: \
             error connecting to server: Connection refused (os error 111)"
        )
    );
    let e = open_error("postgres://h:notaport/x").await;
    assert!(e.starts_with("postgres://h:notaport/x: "), "{e}");
}

/// Each API node's start-up recovery asks for the tasks in some statuses:
/// it gets its own and those of no node, never another node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sees_only_its_own_and_unowned_tasks_when_recovering() {
    let db = PgTestDb::create();
    let a = PostgresStore::open(db.url())
        .await
        .unwrap()
        .for_node("node-a");
    let b = PostgresStore::open(db.url())
        .await
        .unwrap()
        .for_node("node-b");
    let none = PostgresStore::open(db.url()).await.unwrap();
    assert_eq!((a.node(), none.node()), (Some("node-a"), None));
    let mut running = task();
    running.status = TaskStatus::Running;
    a.insert_task(&running).await.unwrap();
    let queued = task();
    b.insert_task_deferred(&queued).await.unwrap();
    b.sync().await.unwrap();
    let unowned = task();
    none.insert_task(&unowned).await.unwrap();
    let statuses = [TaskStatus::Running, TaskStatus::Queued];
    let ids = |tasks: Vec<TaskRecord>| tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(a.tasks_with_status(&statuses).await.unwrap()),
        vec![running.id.clone(), unowned.id.clone()]
    );
    assert_eq!(
        ids(b.tasks_with_status(&statuses).await.unwrap()),
        vec![queued.id.clone(), unowned.id.clone()]
    );
    assert_eq!(
        ids(none.tasks_with_status(&statuses).await.unwrap()),
        vec![running.id.clone(), queued.id, unowned.id]
    );
    // Every node still reads every task.
    assert_eq!(
        b.get_task(&running.id).await.unwrap().unwrap().status,
        TaskStatus::Running
    );
}
