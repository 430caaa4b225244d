//! The "environment" phase the `app` commands show while an app's
//! environment is built, the same for a Python app (uv/pip, local_app.rs)
//! and a JavaScript one (npm, node_env.rs): the installer's latest line as
//! the phase's detail, a line when a build starts or waits for another
//! infsh, and Ctrl-C as exit code `Interrupted`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use infsh_env::{EnvError, EnvProgress};

use crate::exit::{ExitCode, Failure};
use crate::ui::Phase;
use crate::ui::Ui;

/// The installer's latest output line, shown as the phase's detail.
pub type Detail = Arc<Mutex<String>>;

/// A progress callback for `infsh_env::prepare`/`prepare_node`, and the
/// detail it keeps for [`drive`]. `building` says how the build is made
/// ("building the app's environment with npm").
pub fn progress(
    ui: &Arc<Ui>,
    building: &'static str,
) -> (impl Fn(EnvProgress) + Send + Sync + 'static, Detail) {
    let ui = ui.clone();
    let detail = Detail::default();
    let latest = detail.clone();
    let callback = move |event| match event {
        EnvProgress::Installing { line } => *latest.lock().expect("detail") = line,
        EnvProgress::Creating { dir, .. } => ui.info(&format!("{building} in {}", dir.display())),
        EnvProgress::Waiting { dir } => ui.info(&format!(
            "waiting for another infsh that is building {}",
            dir.display()
        )),
        _ => {}
    };
    (callback, detail)
}

/// Runs `prepare` while drawing `detail` on `phase` ten times a second;
/// Ctrl-C gives up with exit code `Interrupted`. The build's own outcome
/// is the inner result, for the caller to finish or fail the phase with.
pub async fn drive<T>(
    phase: &Phase,
    detail: &Detail,
    prepare: impl Future<Output = Result<T, EnvError>>,
) -> Result<Result<T, EnvError>> {
    tokio::pin!(prepare);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            result = &mut prepare => return Ok(result),
            _ = tick.tick() => phase.set_detail(&detail.lock().expect("detail")),
            _ = &mut ctrl_c => {
                return Err(Failure::new(
                    ExitCode::Interrupted,
                    "interrupted while building the environment",
                )
                .into())
            }
        }
    }
}
