//! `infsh serve --retention` (docs/operations.md "Retention"), flattened
//! into `ServeArgs`: off unless given, so nothing is deleted by default.

use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct RetentionArgs {
    /// Delete tasks that ended more than DURATION ago (30d, 12h, 45m, 90s),
    /// with their logs and files, in a background sweep of small batches.
    /// Default: off (tasks are kept until deleted).
    #[arg(long, value_name = "DURATION", value_parser = parse_retention)]
    pub retention: Option<Duration>,
    /// Delete stored files that no kept task names (uploads never used,
    /// files of deleted tasks) once they are older than DURATION, in a
    /// background sweep at most once a minute. Default: off.
    #[arg(long, value_name = "DURATION", value_parser = parse_retention)]
    pub file_retention: Option<Duration>,
}

impl RetentionArgs {
    /// How often the sweep runs: a tenth of the retention, between 1 s and
    /// a minute (a task outlives its retention by at most that).
    pub fn sweep_every(retention: Duration) -> Duration {
        (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// `30d`, `12h`, `45m`, `90s`, `2w` or plain seconds; positive.
pub fn parse_retention(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let factor: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && factor > 0 => Ok(Duration::from_secs(n.saturating_mul(factor))),
        _ => Err("expected a positive duration such as 30d, 12h, 45m or 90s".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_durations() {
        assert_eq!(parse_retention("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_retention("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_retention("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["0d", "", "d", "3y", "-1h"] {
            assert!(parse_retention(bad).is_err(), "{bad}");
        }
        let every = RetentionArgs::sweep_every;
        assert_eq!(every(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(every(Duration::from_secs(300)), Duration::from_secs(30));
        assert_eq!(
            every(Duration::from_secs(30 * 86_400)),
            Duration::from_secs(60)
        );
    }
}
