//! Sessions: a session's first call leases a replica; its later calls go
//! there alone and in order, other tasks never do; idle sessions expire
//! (a keepalive or a call resets the timeout); ending one releases its
//! replica; a leased worker's death ends it with the reason.

use infsh_store::TaskStatus;
use serde_json::{json, Value};

use super::*;
use crate::api::{EngineError, RunRequest};
use crate::sessions::SessionStatus;
use crate::testing::{request, Harness};

/// A run in `session` (`"new"` opens one).
fn in_session(input: Value, session: &str) -> RunRequest {
    RunRequest {
        session: Some(session.into()),
        ..request(input)
    }
}

/// Opens a session with this first call and idle timeout; (session, task).
async fn open(h: &Harness, input: Value, timeout: Option<i64>) -> (String, String) {
    let view = h
        .engine
        .submit(RunRequest {
            session_timeout: timeout,
            ..in_session(input, "new")
        })
        .await
        .expect("the session opens");
    let session = view.record.session_id.clone().expect("a session id");
    assert!(session.starts_with("sess_"), "{session}");
    (session, view.record.id)
}

async fn call(h: &Harness, session: &str, input: Value) -> String {
    h.try_submit(in_session(input, session))
        .await
        .expect("the call is taken")
}

#[tokio::test(start_paused = true)]
async fn a_sessions_calls_go_to_its_replica_and_other_tasks_to_another() {
    let h = Harness::start(|c| c.replicas = 2).await;
    let (session, first) = open(&h, json!({}), None).await;
    assert_eq!(h.ended(&first).await.status, TaskStatus::Completed);
    let leased = pid_of(&h.fake.ops(), &first);
    let view = h.engine.session(&session).await.unwrap();
    assert_eq!(view.worker.as_deref(), Some("local/fake#0"));
    assert_eq!((view.status, view.call_count), (SessionStatus::Active, 1));

    // The leased replica is idle, yet a task outside the session starts
    // the other one rather than use it.
    let other = h.submit(json!({})).await;
    let mut calls = Vec::new();
    for n in 0..5 {
        calls.push(call(&h, &session, json!({ "n": n })).await);
    }
    assert_eq!(h.ended(&other).await.status, TaskStatus::Completed);
    for id in &calls {
        assert_eq!(h.ended(id).await.status, TaskStatus::Completed);
    }
    let ops = h.fake.ops();
    assert_ne!(pid_of(&ops, &other), leased);
    for id in &calls {
        assert_eq!(pid_of(&ops, id), leased, "every call of the session");
    }
    let order: Vec<String> = call_order(&ops)
        .into_iter()
        .filter(|id| calls.contains(id))
        .collect();
    assert_eq!(order, calls, "in order");
    assert_eq!(h.engine.session(&session).await.unwrap().call_count, 6);
}

#[tokio::test(start_paused = true)]
async fn a_sessions_calls_run_one_at_a_time_even_where_a_worker_takes_several() {
    let h = Harness::start(|c| c.concurrency_per_replica = 4).await;
    let (session, first) = open(&h, json!({"sleep": 1}), None).await;
    let second = call(&h, &session, json!({"sleep": 1})).await;
    let third = call(&h, &session, json!({"sleep": 1})).await;
    for id in [&first, &second, &third] {
        assert_eq!(h.ended(id).await.status, TaskStatus::Completed);
    }
    assert!(h.fake.time_of(0, call_of(&second)) >= h.fake.time_of(0, call_end_of(&first)));
    assert!(h.fake.time_of(0, call_of(&third)) >= h.fake.time_of(0, call_end_of(&second)));
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_expires_and_a_keepalive_or_a_call_resets_its_timeout() {
    let h = Harness::start(|_| {}).await;
    let (session, first) = open(&h, json!({"sleep": 1}), Some(10)).await;
    h.ended(&first).await;
    // Idle from 1 s: due at 11 s; the keepalive at 8 s moves it to 18 s.
    h.at(8.0).await;
    h.engine.keepalive_session(&session).await.unwrap();
    h.at(17.0).await;
    let second = call(&h, &session, json!({})).await;
    h.ended(&second).await;
    h.at(26.0).await;
    assert_eq!(
        h.engine.session(&session).await.unwrap().status,
        SessionStatus::Active
    );
    h.at(27.5).await;
    let view = h.engine.session(&session).await.unwrap();
    assert_eq!(view.status, SessionStatus::Expired);
    assert!(
        h.engine.sessions().await.unwrap().is_empty(),
        "only active ones are listed"
    );
    let refused = h
        .try_submit(in_session(json!({}), &session))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, EngineError::SessionExpired { .. }),
        "{refused:?}"
    );
    assert_eq!(
        refused.to_string(),
        format!("session \"{session}\" expired: idle for more than its timeout of 10s")
    );
    assert!(matches!(
        h.engine.keepalive_session(&session).await,
        Err(EngineError::SessionExpired { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_long_call_does_not_expire_its_session() {
    let h = Harness::start(|_| {}).await;
    let (session, first) = open(&h, json!({"sleep": 30}), Some(5)).await;
    h.at(20.0).await;
    assert_eq!(
        h.engine.session(&session).await.unwrap().status,
        SessionStatus::Active
    );
    h.ended(&first).await;
    let second = call(&h, &session, json!({})).await;
    assert_eq!(h.ended(&second).await.status, TaskStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn ending_a_session_releases_its_replica_to_the_tasks_waiting_for_it() {
    let h = Harness::start(|_| {}).await;
    let (session, first) = open(&h, json!({}), Some(3600)).await;
    h.ended(&first).await;
    // One replica, leased: this task waits.
    let waiting = h.submit(json!({})).await;
    h.at(100.0).await;
    assert!(
        h.fake.count(call_of(&waiting)) == 0,
        "it waits for the lease"
    );
    let ended = h.engine.end_session(&session).await.unwrap();
    assert_eq!(ended.status, SessionStatus::Ended);
    assert_eq!(h.ended(&waiting).await.status, TaskStatus::Completed);
    assert_eq!(
        pid_of(&h.fake.ops(), &waiting),
        pid_of(&h.fake.ops(), &first)
    );
    let refused = h
        .try_submit(in_session(json!({}), &session))
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!("session \"{session}\" ended: ended by DELETE /sessions/{{id}}")
    );
    assert_eq!(
        h.engine.end_session(&session).await.unwrap().status,
        SessionStatus::Ended,
        "ending it again changes nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn the_death_of_its_worker_ends_a_session_and_fails_its_queued_calls() {
    let h = Harness::start(|_| {}).await;
    let (session, first) = open(&h, json!({"sleep": 1, "crash": true}), None).await;
    let queued = call(&h, &session, json!({})).await;
    assert_eq!(h.ended(&first).await.status, TaskStatus::Failed);
    let record = h.ended(&queued).await;
    let reason = "its worker died: the worker exited (exit status 1) while running the task";
    assert_eq!(record.status, TaskStatus::Failed);
    assert_eq!(
        record.error.as_deref(),
        Some(format!("session \"{session}\" ended: {reason}").as_str())
    );
    assert_eq!(h.fake.count(call_of(&queued)), 0);
    let view = h.engine.session(&session).await.unwrap();
    assert_eq!(view.status, SessionStatus::Ended);
    assert_eq!(view.reason.as_deref(), Some(reason));
    let refused = h
        .try_submit(in_session(json!({}), &session))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, EngineError::SessionEnded { .. }),
        "{refused:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_sessions_and_bad_timeouts_are_refused_before_anything_is_stored() {
    let h = Harness::start(|_| {}).await;
    let refused = h
        .try_submit(in_session(json!({}), "sess_nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, EngineError::SessionNotFound(_)),
        "{refused:?}"
    );
    let timeout_alone = RunRequest {
        session_timeout: Some(10),
        ..request(json!({}))
    };
    assert!(matches!(
        h.try_submit(timeout_alone).await,
        Err(EngineError::InvalidSession(_))
    ));
    let too_long = RunRequest {
        session_timeout: Some(3601),
        ..in_session(json!({}), "new")
    };
    assert!(matches!(
        h.try_submit(too_long).await,
        Err(EngineError::InvalidSession(_))
    ));
    assert!(h.fake.ops().is_empty(), "no worker started");
    assert!(h.engine.sessions().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_idle_leased_worker_killed_ends_its_session_at_once_with_the_reason() {
    let h = Harness::start(|_| {}).await;
    let (session, first) = open(&h, json!({"die_idle_after": 5}), Some(3600)).await;
    assert_eq!(h.ended(&first).await.status, TaskStatus::Completed);
    h.at(4.0).await;
    assert_eq!(
        h.engine.session(&session).await.unwrap().status,
        SessionStatus::Active
    );
    h.at(6.0).await;
    let view = h.engine.session(&session).await.unwrap();
    let reason = "its worker died: the worker exited (signal 9 (SIGKILL)) while idle";
    assert_eq!(view.status, SessionStatus::Ended);
    assert_eq!(view.reason.as_deref(), Some(reason));
    let refused = h
        .try_submit(in_session(json!({}), &session))
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!("session \"{session}\" ended: {reason}")
    );
    // The app starts another worker for the runs that come (after the
    // crash's backoff).
    let next = h.submit(json!({})).await;
    assert_eq!(h.ended(&next).await.status, TaskStatus::Completed);
    assert_ne!(pid_of(&h.fake.ops(), &next), pid_of(&h.fake.ops(), &first));
}

#[tokio::test(start_paused = true)]
async fn an_idle_worker_outside_sessions_that_dies_is_replaced_for_the_next_run() {
    let h = Harness::start(|_| {}).await;
    let first = h.submit(json!({"die_idle_after": 1})).await;
    h.ended(&first).await;
    h.at(2.0).await;
    assert_eq!(
        h.status().replicas,
        0,
        "the dead worker is no longer counted"
    );
    let next = h.submit(json!({})).await;
    assert_eq!(h.ended(&next).await.status, TaskStatus::Completed);
    assert_eq!(h.fake.count(is_launch), 2);
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_of_a_session_from_before_a_restart_fails_saying_why() {
    use crate::testing::memory_store::MemoryStore;
    use infsh_store::{new_id, now_ms, TaskRecord, TaskStore};
    let store = std::sync::Arc::new(MemoryStore::default());
    let id = new_id();
    store
        .insert_task(&TaskRecord {
            id: id.clone(),
            app: crate::testing::APP.into(),
            function: "run".into(),
            input: json!({}),
            setup: json!({}),
            status: TaskStatus::Queued,
            output: None,
            error: None,
            webhook: None,
            session_id: Some("sess_before".into()),
            metadata: json!({}),
            timeout_secs: None,
            created_at_ms: now_ms(),
            updated_at_ms: now_ms(),
            team: None,
            run_at_ms: None,
        })
        .await
        .unwrap();
    let h = Harness::start_on_store(store).await;
    let record = h.ended(&id).await;
    assert_eq!(record.status, TaskStatus::Failed);
    assert_eq!(
        record.error.as_deref(),
        Some("unknown session \"sess_before\" (sessions live in the server's memory: none survives a restart)")
    );
    assert_eq!(h.fake.count(call_of(&id)), 0, "it never ran");
}
