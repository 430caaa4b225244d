//! Phase display. On a terminal each phase (environment, start, setup, run)
//! is a live spinner with its elapsed time, replaced by a `✓ phase  1.2s`
//! line when it ends; off a terminal the same ends are printed as plain
//! lines; with `--json` or `--quiet` phases print nothing.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use console::style;
use indicatif::{ProgressBar, ProgressStyle};
use infsh_worker::{LogLine, LogStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// stderr is a terminal: spinners.
    Interactive,
    /// stderr is a file or pipe: one line per finished phase.
    Plain,
    /// `--json`: no phase lines; app logs still go to stderr.
    Json,
    /// `--quiet`: nothing but errors.
    Quiet,
}

pub struct Ui {
    mode: Mode,
    /// The spinner now on screen, so log lines can be printed above it.
    active: Mutex<Option<ProgressBar>>,
}

impl Ui {
    pub fn new(json: bool, quiet: bool) -> Arc<Ui> {
        let mode = if quiet {
            Mode::Quiet
        } else if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Interactive
        } else {
            Mode::Plain
        };
        Arc::new(Ui {
            mode,
            active: Mutex::new(None),
        })
    }

    /// Starts a phase; dropping it without `finish` counts as failed.
    pub fn phase(self: &Arc<Self>, name: &str) -> Phase {
        let bar = if self.mode == Mode::Interactive {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} {prefix:.bold} {elapsed_precise:.dim} {wide_msg:.dim}",
                )
                .expect("static template"),
            );
            bar.set_prefix(format!("{name:<12}"));
            bar.enable_steady_tick(Duration::from_millis(80));
            *self.active.lock().expect("ui lock") = Some(bar.clone());
            Some(bar)
        } else {
            None
        };
        Phase {
            ui: self.clone(),
            name: name.to_string(),
            started: Instant::now(),
            bar,
            ended: false,
        }
    }

    /// One line of the app's own output.
    pub fn app_log(&self, line: &LogLine) {
        if self.mode == Mode::Quiet {
            return;
        }
        let gutter = match log_level(line) {
            LogLevel::Plain => style("│").dim(),
            LogLevel::Warning => style("│").yellow(),
            LogLevel::Error => style("│").red(),
        };
        self.print_line(&format!("{gutter} {}", line.line));
    }

    /// A warning or hint for the user (shown even with --json, on stderr).
    pub fn warn(&self, message: &str) {
        if self.mode == Mode::Quiet {
            return;
        }
        self.print_line(&format!(
            "{} {}",
            style("warning:").yellow().bold(),
            message
        ));
    }

    /// Informational line (not shown with --json or --quiet).
    pub fn info(&self, message: &str) {
        if matches!(self.mode, Mode::Quiet | Mode::Json) {
            return;
        }
        self.print_line(message);
    }

    fn print_line(&self, text: &str) {
        let active = self.active.lock().expect("ui lock").clone();
        match active {
            Some(bar) if !bar.is_finished() => bar.suspend(|| eprintln!("{text}")),
            _ => eprintln!("{text}"),
        }
    }
}

/// How loud an app's log line is, for the colour of its gutter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogLevel {
    Plain,
    Warning,
    Error,
}

/// Python's `logging` writes every level to stderr (`INFO:name:...`), so the
/// stream alone does not say a line is an error: a stderr line is red only
/// when it reads like one (a logging ERROR/CRITICAL, a traceback's lines),
/// yellow for a WARNING, and otherwise drawn like a print.
fn log_level(line: &LogLine) -> LogLevel {
    if line.stream == LogStream::Stdout {
        return LogLevel::Plain;
    }
    let text = line.line.trim_start();
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| text.starts_with(p));
    if starts(&["ERROR", "CRITICAL", "FATAL", "Traceback ", "File \""]) {
        LogLevel::Error
    } else if starts(&["WARNING", "WARN"]) || text.contains("Warning: ") {
        LogLevel::Warning
    } else {
        LogLevel::Plain
    }
}

/// A running phase; see [`Ui::phase`].
pub struct Phase {
    ui: Arc<Ui>,
    name: String,
    started: Instant,
    bar: Option<ProgressBar>,
    ended: bool,
}

impl Phase {
    /// Short live detail next to the spinner (e.g. the installer's last line).
    pub fn set_detail(&self, detail: &str) {
        if let Some(bar) = &self.bar {
            let one_line: String = detail
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(120)
                .collect();
            bar.set_message(one_line);
        }
    }

    /// Ends the phase successfully; returns how long it took.
    pub fn finish(mut self, detail: &str) -> Duration {
        self.end(true, detail)
    }

    /// Ends the phase as failed.
    pub fn fail(mut self, detail: &str) -> Duration {
        self.end(false, detail)
    }

    fn end(&mut self, ok: bool, detail: &str) -> Duration {
        self.ended = true;
        let elapsed = self.started.elapsed();
        let mark = if ok {
            style("✓").green()
        } else {
            style("✗").red()
        };
        let line = format!(
            "{mark} {:<12} {:>7}  {}",
            style(&self.name).bold(),
            format_duration(elapsed),
            style(detail).dim()
        );
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            *self.ui.active.lock().expect("ui lock") = None;
        }
        if matches!(self.ui.mode, Mode::Interactive | Mode::Plain) {
            eprintln!("{}", line.trim_end());
        }
        elapsed
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        if !self.ended {
            self.end(false, "");
        }
    }
}

/// The live detail of a streaming call: the snapshot count and the end of
/// the latest snapshot's text (its first string field, e.g. `text`), so a
/// terminal shows the stream as it grows.
pub fn snapshot_detail(count: usize, output: &serde_json::Value) -> String {
    let plural = if count == 1 { "" } else { "s" };
    let text = match output {
        serde_json::Value::String(s) => Some(s.as_str()),
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(key, _)| key.as_str() != "output_meta")
            .find_map(|(_, value)| value.as_str()),
        _ => None,
    };
    let Some(text) = text.map(|t| t.trim_end()).filter(|t| !t.is_empty()) else {
        return format!("{count} snapshot{plural}");
    };
    let last_line = text.lines().last().unwrap_or("");
    let chars: Vec<char> = last_line.chars().collect();
    const SHOWN: usize = 80;
    let tail: String = if chars.len() > SHOWN {
        std::iter::once('…')
            .chain(chars[chars.len() - SHOWN..].iter().copied())
            .collect()
    } else {
        last_line.to_string()
    };
    format!("{count} snapshot{plural} · {tail}")
}

pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{:.0}ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.2}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stderr(text: &str) -> LogLine {
        LogLine {
            stream: LogStream::Stderr,
            line: text.to_string(),
        }
    }

    #[test]
    fn snapshot_detail_shows_the_end_of_the_latest_text() {
        use serde_json::json;
        assert_eq!(
            snapshot_detail(1, &json!({"output_meta": null, "text": "once upon"})),
            "1 snapshot · once upon"
        );
        assert_eq!(
            snapshot_detail(2, &json!({"text": "line one\nline two\n"})),
            "2 snapshots · line two"
        );
        let long = "x".repeat(100) + "END";
        let detail = snapshot_detail(3, &json!({"text": long}));
        assert!(detail.starts_with("3 snapshots · …x"), "{detail}");
        assert!(
            detail.ends_with("END") && detail.chars().count() == 14 + 81,
            "{detail}"
        );
        assert_eq!(snapshot_detail(4, &json!({"n": 1})), "4 snapshots");
    }

    #[test]
    fn only_stderr_lines_that_read_as_errors_are_red() {
        assert_eq!(
            log_level(&stderr("INFO:root:loading weights")),
            LogLevel::Plain
        );
        assert_eq!(log_level(&stderr("setting up...")), LogLevel::Plain);
        assert_eq!(
            log_level(&stderr("WARNING:root:no GPU, using the CPU")),
            LogLevel::Warning
        );
        assert_eq!(
            log_level(&stderr("/x.py:3: UserWarning: deprecated")),
            LogLevel::Warning
        );
        assert_eq!(log_level(&stderr("ERROR:root:bad")), LogLevel::Error);
        assert_eq!(
            log_level(&stderr("Traceback (most recent call last):")),
            LogLevel::Error
        );
        let stdout = LogLine {
            stream: LogStream::Stdout,
            line: "ERROR in my print".to_string(),
        };
        assert_eq!(log_level(&stdout), LogLevel::Plain);
    }
}
