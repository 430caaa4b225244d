//! `infsh app dev [DIR]`: the app author's inner loop. Serves one app folder
//! like `infsh serve --apps DIR` (the API and the web playground at `/`) and,
//! when a file of the app changes, reloads it: the engine is shut down (its
//! workers stop) and started again on the same data folder, so the next call
//! imports the edited code. The listener stays open across reloads; requests
//! go to whichever engine is current.
//!
//! The flags and defaults are `infsh serve`'s (its `config.rs` reads them);
//! this file only adds the watcher and the swap.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Result;
use axum::extract::Request;
use axum::Router;
use clap::Parser;
use infsh_engine::Engine;
use notify::{RecursiveMode, Watcher};
use serde_json::json;
use tokio::sync::mpsc;
use tower::ServiceExt;

use super::serve::config::{self, Places, ServeConfig, ServeEnv};
use super::serve::signing_key::{load_or_create_signing_key, SIGNING_KEY_FILE};
use super::serve::webhook_secret::{load_or_create_webhook_secret, WEBHOOK_SECRET_FILE};
use crate::cli::{DevArgs, GlobalArgs, ServeArgs};
use crate::exit::{ExitCode, Failure};

/// Quiet time after the last change before reloading: an editor's save is
/// several events (write, rename, chmod), and a `git checkout` many.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// How long running tasks get when a reload stops the engine.
const RELOAD_GRACE: Duration = Duration::from_secs(1);

/// `infsh serve`'s own arguments for `DIR`, so dev keeps serve's defaults
/// (and any flag serve gains) without listing them twice.
#[derive(Parser)]
struct AsServe {
    #[command(flatten)]
    serve: ServeArgs,
}

pub async fn dev(args: DevArgs, global: &GlobalArgs) -> Result<()> {
    let app_dir = std::fs::canonicalize(&args.app)
        .ok()
        .filter(|p| {
            p.join(infsh_core::app::INFERENCE_PY).is_file()
                || infsh_core::app::INFERENCE_JS
                    .iter()
                    .any(|entry| p.join(entry).is_file())
        })
        .ok_or_else(|| {
            Failure::new(
                ExitCode::Usage,
                format!(
                    "{}: not an app folder (no inference.py nor inference.js)",
                    args.app.display()
                ),
            )
        })?;
    let mut argv: Vec<String> = vec!["infsh-app-dev".into(), "--apps".into()];
    argv.push(app_dir.display().to_string());
    argv.extend(["--host".into(), args.host.clone()]);
    argv.extend(["--port".into(), args.port.to_string()]);
    if let Some(python) = &args.python {
        argv.extend(["--python".into(), python.display().to_string()]);
    }
    if let Some(node) = &args.node {
        argv.extend(["--node".into(), node.display().to_string()]);
    }
    for key in &args.api_keys {
        argv.extend(["--api-key".into(), key.clone()]);
    }
    let serve_args = AsServe::try_parse_from(&argv)
        .map_err(|e| Failure::new(ExitCode::Usage, e.to_string()))?
        .serve;

    // Tasks of a dev session live in their own folder (history survives
    // reloads); a temporary one unless --data-dir names one.
    let (data_dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("infsh-dev-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        Failure::new(
            ExitCode::Internal,
            format!("cannot create the data folder {}: {e}", data_dir.display()),
        )
    })?;
    let data_dir = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
    let result = serve_and_watch(serve_args, global, app_dir, data_dir.clone()).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

async fn serve_and_watch(
    args: ServeArgs,
    global: &GlobalArgs,
    app_dir: PathBuf,
    data_dir: PathBuf,
) -> Result<()> {
    let cache_dir = global
        .cache_dir
        .clone()
        .unwrap_or_else(config::default_cache_dir);
    let checked = config::check(&args, &ServeEnv::from_process())?;
    let signing_key = load_or_create_signing_key(&data_dir.join(SIGNING_KEY_FILE))?;
    let webhook_secret = if checked.needs_webhook_secret_file() {
        Some(load_or_create_webhook_secret(
            &data_dir.join(WEBHOOK_SECRET_FILE),
        )?)
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| {
            Failure::new(
                ExitCode::Internal,
                format!("cannot listen on {}:{}: {e}", args.host, args.port),
            )
        })?;
    let bound = listener.local_addr()?;
    let ServeConfig {
        engine: engine_config,
        server: server_config,
        url,
        warnings,
        ..
    } = config::build(
        &args,
        checked,
        Places {
            apps_dir: app_dir.clone(),
            data_dir: data_dir.clone(),
            cache_dir,
            bound,
            signing_key,
            webhook_secret,
        },
    )?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }

    // Watch before the first start, so a save during it is not missed.
    let (changes_tx, mut changes) = mpsc::unbounded_channel::<PathBuf>();
    let ignored_data = data_dir.clone();
    let watched = app_dir.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        for path in event.paths {
            // Judged below the app folder: the folder itself may sit under a
            // hidden one (~/.projects/app).
            let inside = path.strip_prefix(&watched).unwrap_or(&path);
            if is_app_source(inside) && !path.starts_with(&ignored_data) {
                let _ = changes_tx.send(path);
            }
        }
    })
    .map_err(|e| {
        Failure::new(
            ExitCode::Internal,
            format!("cannot watch the app folder: {e}"),
        )
    })?;
    watcher
        .watch(&app_dir, RecursiveMode::Recursive)
        .map_err(|e| {
            Failure::new(
                ExitCode::Internal,
                format!("cannot watch {}: {e}", app_dir.display()),
            )
        })?;

    let engine = start_engine(&engine_config).await?;
    let current = Arc::new(RwLock::new(infsh_server::router(
        engine.clone(),
        server_config.clone(),
    )));
    let mut engine = engine;
    let apps: Vec<String> = engine.apps().into_iter().map(|a| a.id).collect();
    if global.json {
        println!(
            "{}",
            json!({"url": url, "apps": apps, "data_dir": data_dir})
        );
    }
    if !global.quiet {
        eprintln!(
            "infsh app dev: {} on {url}/ (playground); reloading on changes in {}",
            apps.join(", "),
            app_dir.display()
        );
    }

    // Every request goes to the router of the engine current when it arrives.
    let routed = current.clone();
    let front = Router::new().fallback_service(tower::service_fn(move |req: Request| {
        let router = routed.read().unwrap_or_else(|p| p.into_inner()).clone();
        async move { router.oneshot(req).await }
    }));
    let server = tokio::spawn(async move { axum::serve(listener, front).await });

    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let changed = tokio::select! {
            _ = &mut stop => break,
            changed = changes.recv() => match changed {
                Some(path) => path,
                None => break,
            },
        };
        // Debounce: wait for the folder to be quiet.
        while let Ok(Some(_)) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {}
        if !global.quiet {
            eprintln!(
                "infsh app dev: {} changed; reloading",
                changed.strip_prefix(&app_dir).unwrap_or(&changed).display()
            );
        }
        engine.shutdown(RELOAD_GRACE).await;
        match start_engine(&engine_config).await {
            Ok(fresh) => {
                *current.write().unwrap_or_else(|p| p.into_inner()) =
                    infsh_server::router(fresh.clone(), server_config.clone());
                engine = fresh;
                if !global.quiet {
                    eprintln!("infsh app dev: reloaded");
                }
            }
            // The old engine answers 503 `shutting_down` until a later
            // save starts one that works.
            Err(e) => eprintln!("infsh app dev: cannot reload: {e:#}; fix the app and save again"),
        }
    }
    drop(watcher);
    server.abort();
    let _ = tokio::time::timeout(Duration::from_secs(10), engine.shutdown(Duration::ZERO)).await;
    Ok(())
}

async fn start_engine(config: &infsh_engine::EngineConfig) -> Result<Engine, Failure> {
    Engine::start(config.clone())
        .await
        .map_err(|e| Failure::new(ExitCode::Internal, format!("cannot start the app: {e}")))
}

/// A change (its path relative to the app folder) that should reload the
/// app: not caches, virtual environments, version control or editor swap
/// files.
fn is_app_source(path: &Path) -> bool {
    let hidden_or_cache = path.components().any(|c| {
        let name = c.as_os_str().to_string_lossy();
        name.starts_with('.') || name == "__pycache__" || name == "node_modules"
    });
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let scratch = name.ends_with('~') || name.ends_with(".pyc") || name.ends_with(".swp");
    !hidden_or_cache && !scratch
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_apps_own_files_reload_it() {
        assert!(is_app_source(Path::new("inference.py")));
        assert!(is_app_source(Path::new("inf.yml")));
        assert!(is_app_source(Path::new("lib/model.py")));
        assert!(!is_app_source(Path::new(
            "__pycache__/inference.cpython-311.pyc"
        )));
        assert!(!is_app_source(Path::new(".git/index")));
        assert!(!is_app_source(Path::new(".venv/bin/python")));
        assert!(!is_app_source(Path::new("inference.py~")));
        assert!(!is_app_source(Path::new(".inference.py.swp")));
    }
}
