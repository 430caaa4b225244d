//! [`PgWakeup`]: the [`Wakeup`] of API nodes sharing one database. A node
//! that queues (or requeues, or cancels) remote work sends `NOTIFY
//! infsh_queue`; every node `LISTEN`s on a dedicated connection (not one of
//! the pool's: a listening session must stay open) and wakes its waiting
//! claims. So a claim long-polling on node B returns as soon as node A
//! queues a task, with no polling loop.
//!
//! The listening connection is reopened when it is lost (PostgreSQL
//! restarted, the session terminated); notifications sent meanwhile are
//! lost with it, so every (re)connection wakes the waiters once, and they
//! look at the queue themselves. Retries back off from
//! [`RECONNECT_MIN`] to [`RECONNECT_MAX`].

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::error::describe_postgres;
use crate::fleet::Wakeup;

/// The channel remote work is announced on.
pub const QUEUE_CHANNEL: &str = "infsh_queue";
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
        let listener = tokio::spawn(listen(config, tx.clone()));
        let sender = tokio::spawn(send(pool, outbox.clone()));
        PgWakeup {
            tx,
            outbox,
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
}

/// Sends one `NOTIFY` per wake-up asked for, bursts coalesced: `Notify`
/// keeps one permit, so notifies during a send make one more send.
async fn send(pool: Pool, outbox: Arc<Notify>) {
    loop {
        outbox.notified().await;
        let sent = async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            client
                .execute("SELECT pg_notify($1, '')", &[&QUEUE_CHANNEL])
                .await
                .map_err(|e| describe_postgres(&e))
        }
        .await;
        if let Err(e) = sent {
            // The other nodes' claims still return by their long poll's
            // deadline and look at the queue then.
            tracing::warn!(error = %e, "cannot announce queued work to other API nodes");
        }
    }
}

/// Listens until the connection is lost, then reconnects; every
/// notification (and every new connection) bumps `tx`.
async fn listen(mut config: tokio_postgres::Config, tx: watch::Sender<u64>) {
    config.application_name(LISTENER_APPLICATION);
    let mut backoff = RECONNECT_MIN;
    loop {
        match listen_once(&config, &tx).await {
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
) -> Result<(), String> {
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| describe_postgres(&e))?;
    // The connection is driven here (its messages are what we want); the
    // LISTEN goes through the client meanwhile.
    let (ended_tx, ended) = tokio::sync::oneshot::channel::<String>();
    let wake = tx.clone();
    let driver = tokio::spawn(async move {
        let why = loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => bump(&wake),
                Some(Ok(_)) => {}
                Some(Err(e)) => break describe_postgres(&e),
                None => break "the server closed the connection".to_string(),
            };
        };
        let _ = ended_tx.send(why);
    });
    let listening = client
        .batch_execute(&format!("LISTEN {QUEUE_CHANNEL}"))
        .await;
    if let Err(e) = listening {
        driver.abort();
        return Err(describe_postgres(&e));
    }
    // Whatever was announced while we were not listening.
    bump(tx);
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
