//! `--rate-limit RUNS/MIN`: run submissions per minute per client
//! (client_id.rs: per API key, per peer address without keys), a GCRA
//! limiter from the `governor` crate keyed by client. A client may burst up
//! to the whole minute's allowance, then gets one run per 60/RUNS seconds.
//! Beyond it: 429 `rate_limited` with `Retry-After`, the shape a full queue
//! answers with, which the official client already surfaces.
//!
//! Only the run routes sit behind this middleware (lib.rs), inside the
//! auth middleware, which attaches the [`ClientId`].

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::client_id::ClientId;
use crate::limit_metrics::LimitMetrics;
use crate::problem::Problem;

/// Every this many checks, keys whose budget is full again are dropped, so
/// the table does not grow with every address ever seen.
const PRUNE_EVERY: u64 = 4096;

pub struct RunLimiter {
    limiter: Option<(NonZeroU32, DefaultKeyedRateLimiter<ClientId>)>,
    clock: DefaultClock,
    checks: AtomicU64,
    metrics: Arc<LimitMetrics>,
}

impl RunLimiter {
    pub fn new(per_minute: Option<NonZeroU32>, metrics: Arc<LimitMetrics>) -> RunLimiter {
        RunLimiter {
            limiter: per_minute.map(|n| (n, RateLimiter::keyed(Quota::per_minute(n)))),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
            metrics,
        }
    }

    /// Takes one run from `client`'s budget, or the 429 to answer.
    pub fn check(&self, client: &ClientId) -> Result<(), Problem> {
        let Some((per_minute, limiter)) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter.check_key(client).map_err(|not_until| {
            self.metrics.refused_by_rate_limit();
            let wait = not_until.wait_time_from(self.clock.now());
            Problem::run_rate_limited(per_minute.get(), client.scope(), wait)
        })
    }
}

/// Middleware on the run routes.
pub async fn limit_runs(
    State(limiter): State<Arc<RunLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    let client = req
        .extensions()
        .get::<ClientId>()
        .cloned()
        .unwrap_or(ClientId::Unknown);
    match limiter.check(&client) {
        Ok(()) => next.run(req).await,
        Err(p) => p.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn each_client_has_its_own_budget() {
        let metrics = Arc::new(LimitMetrics::default());
        let l = RunLimiter::new(NonZeroU32::new(3), metrics.clone());
        let a = ClientId::Key([1; 32]);
        let b = ClientId::Addr(IpAddr::V4(Ipv4Addr::LOCALHOST));
        for _ in 0..3 {
            l.check(&a).unwrap();
        }
        let p = l.check(&a).unwrap_err();
        assert_eq!(p.status.as_u16(), 429);
        assert_eq!(p.code, "rate_limited");
        // One run per 20 s comes back: the wait is about 20 s.
        let retry = p.extra["retry_after"].as_u64().unwrap();
        assert!((19..=20).contains(&retry), "{retry}");
        assert!(
            p.detail
                .starts_with("too many runs: at most 3 per minute per API key"),
            "{}",
            p.detail
        );
        l.check(&b).unwrap();
        assert!(metrics
            .render()
            .contains("infsh_http_refused_total{limit=\"rate_limit\"} 1"));
    }

    #[test]
    fn no_limit_without_the_flag() {
        let l = RunLimiter::new(None, Arc::new(LimitMetrics::default()));
        for _ in 0..10_000 {
            l.check(&ClientId::Unknown).unwrap();
        }
    }
}
