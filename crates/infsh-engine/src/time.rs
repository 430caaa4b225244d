//! Timer helpers shared by the engine's actors (`scheduler.rs`) and task
//! runners (`runner.rs`), which wait on optional deadlines inside
//! `tokio::select!`.

use tokio::time::Instant;

/// Sleeps until `at`; with `None`, never returns (a deadline not set).
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
