//! Bounded waits. A test that waits for something polls for it, every
//! [`INTERVAL`], up to a limit it names: never a bare sleep that hopes the
//! thing has happened, and never an unbounded loop that hangs the suite when
//! it does not.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often the waits below look again.
pub const INTERVAL: Duration = Duration::from_millis(20);

/// Polls `condition` until it holds or `limit` passes (then asks once
/// more); whether it held. Blocks the thread: for sync tests.
pub fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(INTERVAL);
    }
    condition()
}

/// Polls `check` until it gives a value or `limit` passes (then asks once
/// more). Sleeps on the tokio timer, so the runtime keeps working meanwhile.
pub async fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Some(value) = check() {
            return Some(value);
        }
        tokio::time::sleep(INTERVAL).await;
    }
    check()
}

/// [`wait_for`] for async tests: whether `condition` held within `limit`.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    poll(limit, || condition().then_some(())).await.is_some()
}

/// [`poll`], or a panic naming `what` was awaited and for how long.
pub async fn until<T>(limit: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    match poll(limit, check).await {
        Some(value) => value,
        None => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// `fut`'s output, or a panic naming the limit it overran.
pub async fn within<F: Future>(limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(200);

    #[test]
    fn wait_for_sees_a_condition_come_true_and_gives_up_at_the_limit() {
        let mut calls = 0;
        assert!(wait_for(SHORT, || {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3);
        let start = Instant::now();
        assert!(!wait_for(SHORT, || false));
        assert!(start.elapsed() >= SHORT);
    }

    #[tokio::test]
    async fn poll_returns_the_value_or_none_at_the_limit() {
        let mut n = 0;
        assert_eq!(
            poll(SHORT, || {
                n += 1;
                (n == 2).then_some("two")
            })
            .await,
            Some("two")
        );
        assert_eq!(poll(SHORT, || None::<u8>).await, None);
        assert!(eventually(SHORT, || true).await);
        assert!(!eventually(SHORT, || false).await);
        assert_eq!(until(SHORT, "a value", || Some(7)).await, 7);
        assert_eq!(within(SHORT, async { 5 }).await, 5);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 200ms waiting for the impossible")]
    async fn until_names_what_it_waited_for() {
        until(SHORT, "the impossible", || None::<()>).await;
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 200ms")]
    async fn within_names_the_limit() {
        within(SHORT, std::future::pending::<()>()).await;
    }
}
