//! `infsh serve`'s connection-limit flags (docs/operations.md), flattened
//! into `ServeArgs`, and the server's [`Limits`] they make.

use std::num::NonZeroU32;
use std::time::Duration;

use clap::Args;
use infsh_server::Limits;

#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Close a connection that has not sent a full request head this many
    /// seconds after connecting (or after the first byte of its next request).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = timeout_seconds)]
    pub header_timeout: Duration,
    /// Close a keep-alive connection idle this many seconds between requests.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = timeout_seconds)]
    pub idle_timeout: Duration,
    /// Cut off (408) a request body that sends no bytes for this many
    /// seconds (progress, not total time: slow steady uploads go on).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = timeout_seconds)]
    pub body_timeout: Duration,
    /// Most open connections; beyond it new ones get 503 and are closed.
    /// Default: from the file descriptor limit, (soft limit - 256) / 2.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Run submissions per minute per API key (per client address without
    /// keys); beyond it 429 with Retry-After. Default: unlimited.
    #[arg(long, value_name = "RUNS/MIN")]
    pub rate_limit: Option<NonZeroU32>,
    /// Most open task streams (GET /tasks/{id}/stream) per task; beyond it 429.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_task: u32,
    /// Most open task streams per API key (per client address without keys); beyond it 429.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_key: u32,
    /// Largest JSON request body (runs, file registrations), in MiB; past
    /// it 413 at once, without reading the rest.
    #[arg(long, value_name = "MIB", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_json_mib: u32,
    /// Largest file upload (PUT to a signed URL, streamed to disk), in GiB; past it 413.
    #[arg(long, value_name = "GIB", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_upload_gib: u32,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
            max_connections: self.max_connections.map(|n| n as usize),
            runs_per_minute: self.rate_limit,
            streams_per_task: self.max_streams_per_task as usize,
            streams_per_client: self.max_streams_per_key as usize,
            max_json_bytes: u64::from(self.max_json_mib) << 20,
            max_upload_bytes: u64::from(self.max_upload_gib) << 30,
        }
    }
}

/// Seconds above zero (fractions allowed), at most a day.
fn timeout_seconds(raw: &str) -> Result<Duration, String> {
    let secs: f64 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a number of seconds"))?;
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!(
            "{raw:?}: expected a number of seconds above zero, at most 86400"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        limits: LimitArgs,
    }

    fn parse(args: &[&str]) -> Result<Limits, clap::Error> {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(args);
        Cmd::try_parse_from(argv).map(|c| c.limits.limits())
    }

    #[test]
    fn defaults_are_the_servers() {
        assert_eq!(parse(&[]).unwrap(), Limits::default());
    }

    #[test]
    fn flags_set_each_limit() {
        let l = parse(&[
            "--header-timeout",
            "0.5",
            "--idle-timeout",
            "5",
            "--body-timeout",
            "2",
            "--max-connections",
            "100",
            "--rate-limit",
            "60",
            "--max-streams-per-task",
            "3",
            "--max-streams-per-key",
            "4",
            "--max-json-mib",
            "5",
            "--max-upload-gib",
            "2",
        ])
        .unwrap();
        assert_eq!(l.header_timeout, Duration::from_millis(500));
        assert_eq!(l.idle_timeout, Duration::from_secs(5));
        assert_eq!(l.body_timeout, Duration::from_secs(2));
        assert_eq!(l.max_connections, Some(100));
        assert_eq!(l.runs_per_minute, NonZeroU32::new(60));
        assert_eq!((l.streams_per_task, l.streams_per_client), (3, 4));
        assert_eq!(l.max_json_bytes, 5 << 20);
        assert_eq!(l.max_upload_bytes, 2 << 30);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (flag, value) in [
            ("--header-timeout", "0"),
            ("--body-timeout", "-1"),
            ("--idle-timeout", "nope"),
            ("--rate-limit", "0"),
            ("--max-connections", "0"),
            ("--max-streams-per-task", "0"),
            ("--max-json-mib", "0"),
            ("--max-upload-gib", "0"),
        ] {
            let e = parse(&[&format!("{flag}={value}")])
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(flag), "{flag} {value}: {e}");
        }
    }
}
