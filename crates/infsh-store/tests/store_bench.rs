//! A rough timing of the store's per-task write pattern (insert, DISPATCHED,
//! RUNNING, finish), sequential and with concurrent tasks. Ignored: run with
//! `cargo test -p infsh-store --release --test store_bench -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use infsh_store::{new_id, SqliteStore, TaskRecord, TaskStatus, TaskStore};
use serde_json::json;

fn task() -> TaskRecord {
    TaskRecord {
        id: new_id(),
        app: "bench/upper".into(),
        function: "run".into(),
        input: json!({"text": "hello world"}),
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

async fn one(store: &SqliteStore) {
    let t = task();
    store.insert_task(&t).await.unwrap();
    store
        .update_status(&t.id, TaskStatus::Dispatched, 2)
        .await
        .unwrap();
    // The engine's pattern: RUNNING is deferred (durable before the change).
    store
        .update_status_deferred(&t.id, TaskStatus::Running, 3)
        .await
        .unwrap();
    store
        .finish_task(
            &t.id,
            TaskStatus::Completed,
            Some(&json!({"text": "HELLO WORLD"}).into()),
            None,
            4,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn store_write_pattern_timing() {
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let store = Arc::new(
        SqliteStore::open_async(dir.path().join("infsh.db"))
            .await
            .unwrap(),
    );
    let n = 300;
    let start = Instant::now();
    for _ in 0..n {
        one(&store).await;
    }
    let el = start.elapsed();
    println!("commits so far: {}", store.commit_count());
    println!(
        "sequential: {n} tasks in {:?} ({:.0} us/task)",
        el,
        el.as_micros() as f64 / n as f64
    );
    let c = 32;
    let start = Instant::now();
    let mut joins = Vec::new();
    for _ in 0..c {
        let s = store.clone();
        joins.push(tokio::spawn(async move {
            for _ in 0..(n / c * 4) {
                one(&s).await;
            }
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    let el = start.elapsed();
    println!("commits so far: {}", store.commit_count());
    let total = c * (n / c * 4);
    println!(
        "c{c}: {total} tasks in {:?} ({:.0} tasks/s)",
        el,
        total as f64 / el.as_secs_f64()
    );
}
