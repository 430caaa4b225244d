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
        // stderr lines get a red gutter so tracebacks stand out among prints.
        let gutter = match line.stream {
            LogStream::Stdout => style("│").dim(),
            LogStream::Stderr => style("│").red(),
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
