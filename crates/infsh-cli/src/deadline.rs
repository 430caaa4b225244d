//! Optional deadlines for `--timeout`: a local call and a followed remote
//! task both race their work against "no deadline, or this instant".

use std::time::Duration;

use tokio::time::Instant;

/// `secs` from now; None (no deadline) when it does not fit an Instant
/// (clap already refuses zero, negative and non-finite values).
pub fn deadline_after(secs: Option<f64>) -> Option<Instant> {
    let limit = Duration::try_from_secs_f64(secs?).ok()?;
    Instant::now().checked_add(limit)
}

/// Sleeps until `deadline`; never resolves without one.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_deadline_without_seconds_or_when_too_far() {
        assert!(deadline_after(None).is_none());
        assert!(deadline_after(Some(f64::INFINITY)).is_none());
        assert!(deadline_after(Some(-1.0)).is_none());
        let at = deadline_after(Some(1.5)).unwrap();
        assert!(at > Instant::now());
    }

    #[tokio::test]
    async fn sleep_until_waits_for_the_deadline_only() {
        let start = Instant::now();
        sleep_until(deadline_after(Some(0.05))).await;
        assert!(start.elapsed() >= Duration::from_millis(50));
        let never = tokio::time::timeout(Duration::from_millis(50), sleep_until(None)).await;
        assert!(never.is_err(), "no deadline never fires");
    }
}
