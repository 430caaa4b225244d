//! A JavaScript app's runtime for the `app` commands: `node` (`--node`, else
//! on PATH), a clear warning when it is older than the app's `kernel:
//! node-N` (the app runs anyway), and the app's npm environment
//! (infsh-env's `node.rs`), shown with the same "environment" phase and
//! errors as a Python environment.

use std::sync::Arc;

use anyhow::Result;
use infsh_core::app::AppDir;
use infsh_env::PreparedNodeEnv;

use crate::cli::EnvArgs;
use crate::env_phase;
use crate::errors::env_error;
use crate::paths::Paths;
use crate::ui::Ui;

/// Finds `node`, warns about its version, builds (or reuses) the app's environment.
pub async fn prepare(
    app: &AppDir,
    env: &EnvArgs,
    paths: &Paths,
    ui: &Arc<Ui>,
) -> Result<PreparedNodeEnv> {
    let node = match &env.node {
        Some(node) => node.clone(),
        None => infsh_env::node::default_node().map_err(env_error)?,
    };
    let phase = ui.phase("environment");
    let spec = infsh_env::NodeEnvSpec {
        app_dir: app.root.clone(),
        node,
        cache_dir: paths.envs_dir(),
    };
    let (progress, detail) = env_phase::progress(ui, "building the app's environment with npm");
    let result =
        env_phase::drive(&phase, &detail, infsh_env::prepare_node(&spec, progress)).await?;
    let prepared = match result {
        Ok(prepared) => prepared,
        Err(err) => {
            phase.fail("");
            return Err(env_error(err).into());
        }
    };
    match &prepared.dir {
        Some(dir) => {
            let how = if prepared.reused { "reused" } else { "built" };
            phase.finish(&format!(
                "{how} {} · node {}",
                dir.display(),
                prepared.version
            ));
        }
        None => {
            phase.finish(&format!("no package.json · node {}", prepared.version));
        }
    }
    if let Some(warning) = infsh_env::node::version_warning(
        app.manifest.kernel.as_deref(),
        &prepared.node,
        &prepared.version,
    ) {
        ui.warn(&warning);
    }
    Ok(prepared)
}
