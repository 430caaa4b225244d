//! Counters of the connection limits (limits.rs), shared by the accept loop,
//! the connections, the rate limiter and the stream caps, and rendered into
//! `GET /metrics` after the engine's own metrics. Plain atomics: they are
//! bumped on hot paths and only ever read for the exposition.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which timeout closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// No full request head in time.
    Header,
    /// Idle keep-alive connection.
    Idle,
    /// A request body stalled.
    Body,
}

#[derive(Debug, Default)]
pub struct LimitMetrics {
    open_connections: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    body_timeouts: AtomicU64,
    refused_connection_cap: AtomicU64,
    refused_rate_limit: AtomicU64,
    refused_stream_cap: AtomicU64,
}

impl LimitMetrics {
    pub fn opened(&self) {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed(&self) {
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn timed_out(&self, why: Timeout) {
        let counter = match why {
            Timeout::Header => &self.header_timeouts,
            Timeout::Idle => &self.idle_timeouts,
            Timeout::Body => &self.body_timeouts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused_by_connection_cap(&self) {
        self.refused_connection_cap.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused_by_rate_limit(&self) {
        self.refused_rate_limit.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused_by_stream_cap(&self) {
        self.refused_stream_cap.fetch_add(1, Ordering::Relaxed);
    }

    pub fn open_connections(&self) -> u64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// The Prometheus text of these counters (exposition format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP infsh_http_open_connections HTTP connections open now.\n\
             # TYPE infsh_http_open_connections gauge\n\
             infsh_http_open_connections {}",
            self.open_connections()
        );
        let _ = writeln!(
            out,
            "# HELP infsh_http_connections_closed_total Connections the server closed, by reason.\n\
             # TYPE infsh_http_connections_closed_total counter"
        );
        for (reason, c) in [
            ("header_timeout", &self.header_timeouts),
            ("idle_timeout", &self.idle_timeouts),
            ("body_timeout", &self.body_timeouts),
        ] {
            let _ = writeln!(
                out,
                "infsh_http_connections_closed_total{{reason=\"{reason}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP infsh_http_refused_total Requests or connections refused by a limit.\n\
             # TYPE infsh_http_refused_total counter"
        );
        for (limit, c) in [
            ("connection_cap", &self.refused_connection_cap),
            ("rate_limit", &self.refused_rate_limit),
            ("stream_cap", &self.refused_stream_cap),
        ] {
            let _ = writeln!(
                out,
                "infsh_http_refused_total{{limit=\"{limit}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter() {
        let m = LimitMetrics::default();
        m.opened();
        m.opened();
        m.closed();
        m.timed_out(Timeout::Header);
        m.timed_out(Timeout::Body);
        m.timed_out(Timeout::Body);
        m.refused_by_connection_cap();
        m.refused_by_rate_limit();
        m.refused_by_stream_cap();
        let text = m.render();
        for line in [
            "infsh_http_open_connections 1",
            "infsh_http_connections_closed_total{reason=\"header_timeout\"} 1",
            "infsh_http_connections_closed_total{reason=\"idle_timeout\"} 0",
            "infsh_http_connections_closed_total{reason=\"body_timeout\"} 2",
            "infsh_http_refused_total{limit=\"connection_cap\"} 1",
            "infsh_http_refused_total{limit=\"rate_limit\"} 1",
            "infsh_http_refused_total{limit=\"stream_cap\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
