//! [`PgWakeup`]: the [`Wakeup`] of API nodes sharing one database. A node
//! that queues (or requeues, or cancels) remote work sends `NOTIFY
//! infsh_queue`; every node `LISTEN`s on a dedicated connection (not one of
//! the pool's: a listening session must stay open) and wakes its waiting
//! claims. So a claim long-polling on node B returns as soon as node A
//! queues a task, with no polling loop. A node that applies a change to a
//! remote task sends `NOTIFY infsh_task, '<id>'` ([`TASK_CHANNEL`]): the
//! notification carries the id only, and a node streaming that task reads
//! the rows from PostgreSQL.
//!
//! The listening connection is reopened when it is lost (PostgreSQL
//! restarted, the session terminated); notifications sent meanwhile are
//! lost with it, so every (re)connection wakes the waiters once, and they
//! look at the queue themselves, and announces [`TaskChange::Resync`]. Retries back off from
//! [`RECONNECT_MIN`] to [`RECONNECT_MAX`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::error::describe_postgres;
use crate::fleet::{TaskChange, Wakeup};

/// The channel remote work is announced on.
pub const QUEUE_CHANNEL: &str = "infsh_queue";
/// The channel changes of remote tasks are announced on (payload: the id).
pub const TASK_CHANNEL: &str = "infsh_task";
/// How many task changes a slow follower may fall behind before it is told
/// to resync.
const CHANGES_BUFFER: usize = 1024;
/// The `application_name` of the listening session (so an operator, or a
/// test, can find it in `pg_stat_activity`).
pub const LISTENER_APPLICATION: &str = "infsh-listen";
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Wakes claims on every API node of one database. Its tasks stop when it
/// is dropped.
pub struct PgWakeup {
    tx: watch::Sender<u64>,
    outbox: Arc<Notify>,
    changed: mpsc::UnboundedSender<String>,
    changes: broadcast::Sender<TaskChange>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for PgWakeup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWakeup").finish_non_exhaustive()
    }
}

fn bump(tx: &watch::Sender<u64>) {
    tx.send_modify(|n| *n = n.wrapping_add(1));
}

impl PgWakeup {
    /// Starts the listener on its own connection to `config`'s database and
    /// the sender that issues `NOTIFY` through `pool`.
    pub(crate) fn start(config: tokio_postgres::Config, pool: Pool) -> PgWakeup {
        let tx = watch::channel(0).0;
        let outbox = Arc::new(Notify::new());
        let changes = broadcast::channel(CHANGES_BUFFER).0;
        let (changed, changed_rx) = mpsc::unbounded_channel();
        let listener = tokio::spawn(listen(config, tx.clone(), changes.clone()));
        let sender = tokio::spawn(send(pool, outbox.clone(), changed_rx));
        PgWakeup {
            tx,
            outbox,
            changed,
            changes,
            tasks: vec![listener, sender],
        }
    }
}

impl Drop for PgWakeup {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Wakeup for PgWakeup {
    fn notify(&self) {
        // This node's waiters at once; the others through PostgreSQL.
        bump(&self.tx);
        self.outbox.notify_one();
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    fn task_changed(&self, id: &str) {
        let _ = self.changed.send(id.to_string());
    }

    fn task_changes(&self) -> Option<broadcast::Receiver<TaskChange>> {
        Some(self.changes.subscribe())
    }
}

/// Sends the `NOTIFY`s: one per queue wake-up asked for, bursts coalesced
/// (`Notify` keeps one permit, so notifies during a send make one more
/// send), and one per changed task (in order, each id once per burst, a
/// burst in one statement).
async fn send(pool: Pool, outbox: Arc<Notify>, mut changed: mpsc::UnboundedReceiver<String>) {
    loop {
        let (channel, payloads) = tokio::select! {
            () = outbox.notified() => (QUEUE_CHANNEL, vec![String::new()]),
            id = changed.recv() => {
                let Some(id) = id else { return };
                let mut ids = vec![id];
                let mut seen: HashSet<String> = ids.iter().cloned().collect();
                while let Ok(more) = changed.try_recv() {
                    if seen.insert(more.clone()) {
                        ids.push(more);
                    }
                }
                (TASK_CHANNEL, ids)
            }
        };
        // An announcement is retried until it goes out: a change other
        // nodes never hear of would leave their view of it stale (they
        // re-read only what is announced, or everything on a reconnect).
        let mut backoff = RECONNECT_MIN;
        loop {
            match notify_all(&pool, channel, &payloads).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, channel, retry_in_ms = backoff.as_millis() as u64, "cannot announce to other API nodes");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                }
            }
        }
    }
}

/// One statement for the whole burst (each payload is still a
/// notification of its own).
async fn notify_all(pool: &Pool, channel: &str, payloads: &[String]) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    client
        .execute(
            "SELECT pg_notify($1, p) FROM unnest($2::TEXT[]) AS p",
            &[&channel, &payloads],
        )
        .await
        .map_err(|e| describe_postgres(&e))?;
    Ok(())
}

/// Listens until the connection is lost, then reconnects; every
/// notification (and every new connection) bumps `tx`.
async fn listen(
    mut config: tokio_postgres::Config,
    tx: watch::Sender<u64>,
    changes: broadcast::Sender<TaskChange>,
) {
    config.application_name(LISTENER_APPLICATION);
    let mut backoff = RECONNECT_MIN;
    loop {
        match listen_once(&config, &tx, &changes).await {
            Ok(()) => backoff = RECONNECT_MIN,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "the PostgreSQL listener lost its connection");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// One listening session: `Ok` when it ended after having listened (a
/// reconnect right away), `Err` when it could not start.
async fn listen_once(
    config: &tokio_postgres::Config,
    tx: &watch::Sender<u64>,
    changes: &broadcast::Sender<TaskChange>,
) -> Result<(), String> {
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| describe_postgres(&e))?;
    // The connection is driven here (its messages are what we want); the
    // LISTEN goes through the client meanwhile.
    let (ended_tx, ended) = tokio::sync::oneshot::channel::<String>();
    let wake = tx.clone();
    let heard = changes.clone();
    let driver = tokio::spawn(async move {
        let why = loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == TASK_CHANNEL => {
                    // No receiver is fine: nothing is being followed.
                    let _ = heard.send(TaskChange::Task(n.payload().to_string()));
                }
                Some(Ok(AsyncMessage::Notification(_))) => bump(&wake),
                Some(Ok(_)) => {}
                Some(Err(e)) => break describe_postgres(&e),
                None => break "the server closed the connection".to_string(),
            };
        };
        let _ = ended_tx.send(why);
    });
    let listening = client
        .batch_execute(&format!("LISTEN {QUEUE_CHANNEL}; LISTEN {TASK_CHANNEL}"))
        .await;
    if let Err(e) = listening {
        driver.abort();
        return Err(describe_postgres(&e));
    }
    // Whatever was announced while we were not listening.
    bump(tx);
    let _ = changes.send(TaskChange::Resync);
    tracing::debug!("listening for queued work on PostgreSQL");
    let why = ended
        .await
        .unwrap_or_else(|_| "the listener stopped".to_string());
    drop(client);
    tracing::warn!(reason = %why, "the PostgreSQL listener's connection ended; reconnecting");
    // A pause before reconnecting so a server that accepts and drops at
    // once is not hammered.
    tokio::time::sleep(RECONNECT_MIN).await;
    Ok(())
}
