//! `infsh serve`: host a folder of apps behind the inference.sh HTTP API.
//! This file is the lifecycle: settle the folders and the signing key, bind
//! the listener (port 0 picks one; the real address is printed), serve until
//! SIGINT/SIGTERM, then let running tasks finish and stop every worker. What
//! the flags and environment mean is `config.rs`.

// `app dev` (dev.rs) serves one app with the same flags and key handling.
mod app_watch;
pub(crate) mod config;
pub(crate) mod files;
pub mod limit_args;
mod node_id;
pub(crate) mod retention_args;
pub(crate) mod signing_key;
pub(crate) mod store;
pub(crate) mod webhook_secret;

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use infsh_engine::{Engine, EngineStartError};
use infsh_server::ServerError;
use serde_json::json;
use tokio::sync::watch;

use self::config::{Places, ServeConfig, ServeEnv};
use self::node_id::{load_or_create_node_id, NODE_ID_FILE};
use self::signing_key::{load_or_create_signing_key, SIGNING_KEY_FILE};
use self::webhook_secret::{load_or_create_webhook_secret, WEBHOOK_SECRET_FILE};
use crate::cli::{GlobalArgs, ServeArgs};
use crate::exit::{ExitCode, Failure};

pub async fn serve(args: ServeArgs, global: &GlobalArgs) -> Result<()> {
    let Some(apps) = &args.worker.apps else {
        return Err(Failure::new(
            ExitCode::Usage,
            "--apps DIR is required (a node that hosts no apps is given an empty folder)",
        )
        .into());
    };
    let apps_dir = std::fs::canonicalize(apps)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| {
            Failure::new(
                ExitCode::Usage,
                format!("--apps {}: no such folder", apps.display()),
            )
        })?;
    let data_dir = args
        .worker
        .data_dir
        .clone()
        .unwrap_or_else(config::default_data_dir);
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        Failure::new(
            ExitCode::Internal,
            format!("cannot create the data folder {}: {e}", data_dir.display()),
        )
    })?;
    let data_dir = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
    let cache_dir = global
        .cache_dir
        .clone()
        .unwrap_or_else(config::default_cache_dir);

    let checked = config::check(&args, &ServeEnv::from_process())?;
    let node_lease = node_lease(&args)?;
    // Connections are descriptors: take all the system allows (the
    // connection cap is derived from it, docs/operations.md).
    match infsh_server::raise_fd_limit() {
        Ok(l) => tracing::info!(
            soft_at_start = l.before,
            soft = l.soft,
            hard = l.hard,
            "file descriptor limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the file descriptor limit"),
    }
    let signing_key = match args.signing_secret.as_deref() {
        Some(secret) => signing_key::from_flag(secret)?,
        None => load_or_create_signing_key(&data_dir.join(SIGNING_KEY_FILE))?,
    };
    let node = load_or_create_node_id(&data_dir.join(NODE_ID_FILE))?;
    let webhook_secret = if checked.needs_webhook_secret_file() {
        Some(load_or_create_webhook_secret(
            &data_dir.join(WEBHOOK_SECRET_FILE),
        )?)
    } else {
        None
    };
    let store = store::open(
        args.store.as_deref(),
        config::durability(args.worker.durability),
        args.engine_keys.iter().any(|k| !k.trim().is_empty()),
        &node,
    )
    .await?;
    let files = files::open(args.files.as_deref()).await?;

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| {
            Failure::new(
                ExitCode::Internal,
                format!("cannot listen on {}:{}: {e}", args.host, args.port),
            )
        })?;
    let bound = listener.local_addr().map_err(|e| {
        Failure::new(
            ExitCode::Internal,
            format!("cannot read the bound address: {e}"),
        )
    })?;
    let ServeConfig {
        engine: config,
        server: server_config,
        shutdown_grace,
        url,
        warnings,
        fleet,
    } = config::build(
        &args,
        checked,
        Places {
            apps_dir,
            data_dir: data_dir.clone(),
            cache_dir,
            bound,
            signing_key,
            webhook_secret,
        },
    )?;
    let json_logs = args.log_format == crate::cli::LogFormat::Json;
    for warning in warnings {
        say(json_logs, true, &warning);
    }

    // Signals are watched from before the engine starts, so a SIGTERM during
    // a slow --preload still ends things cleanly.
    let signals = watch_signals()?;
    let mut config = config;
    config.files = files;
    let started = match store {
        Some(store::Opened {
            tasks,
            fleet: Some(backing),
        }) => Engine::start_on_fleet(config, tasks, backing).await,
        Some(store::Opened { tasks, fleet: None }) => Engine::start_on(config, tasks).await,
        None => Engine::start(config).await,
    };
    let engine = started.map_err(|e| match e {
        // The engine config does not fit this machine (a detected
        // inventory; declared ones were checked before binding).
        EngineStartError::Layout(layout) => {
            config::layout_failure(args.worker.engine_config.as_deref(), &layout)
        }
        e => Failure::new(ExitCode::Internal, format!("cannot start the server: {e}")),
    })?;
    if let Some(options) = fleet {
        engine.enable_fleet(options).await.map_err(|e| {
            Failure::new(
                ExitCode::Internal,
                format!("cannot take remote engines: {e}"),
            )
        })?;
    }
    // On a store several API nodes share: beat, and take over the tasks a
    // lost node left of the apps this one hosts (docs/deploy.md, "API
    // node lost"). Nothing on SQLite.
    engine.spawn_node_watch(node_lease, args.max_attempts.max(1));
    if let Some(retention) = args.retention.file_retention {
        engine.spawn_file_retention(
            retention,
            retention_args::RetentionArgs::sweep_every(retention),
        );
    }
    if let Some(retention) = args.retention.retention {
        engine.spawn_retention(
            retention,
            retention_args::RetentionArgs::sweep_every(retention),
        );
    }
    // Kept until the server stops: dropping it ends the watch.
    let _watcher = if args.watch {
        Some(app_watch::start(engine.clone(), &data_dir, json_logs)?)
    } else {
        None
    };
    let apps: Vec<String> = engine.apps().into_iter().map(|a| a.id).collect();
    if global.json {
        let line = json!({"url": url, "apps": apps, "data_dir": data_dir});
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
    if !global.quiet {
        let message = format!(
            "infsh serving {} app{} on {url}",
            apps.len(),
            if apps.len() == 1 { "" } else { "s" }
        );
        say(json_logs, false, &message);
    }

    // The HTTP API keeps answering through the shutdown grace: new runs get
    // 503 `shutting_down` (the engine refuses them), running tasks and their
    // streams go on, and it stops once the engine has stopped.
    let stop_engine = {
        let engine = engine.clone();
        let quiet = global.quiet;
        async move {
            wait_for_signals(signals.clone(), 1).await;
            if !quiet {
                let message = format!(
                    "infsh: shutting down (running tasks get {}s; a second Ctrl-C stops them now)",
                    shutdown_grace.as_secs_f64()
                );
                say(json_logs, false, &message);
            }
            tokio::select! {
                _ = engine.shutdown(shutdown_grace) => {}
                _ = wait_for_signals(signals, 2) => {
                    say(json_logs, false, "infsh: stopping every worker now");
                    let _ = tokio::time::timeout(Duration::from_secs(10), engine.shutdown(Duration::ZERO)).await;
                }
            }
        }
    };
    let served = infsh_server::serve(engine.clone(), server_config, listener, stop_engine).await;
    if served.is_err() {
        // The server failed before any signal: stop the workers all the same.
        let _ =
            tokio::time::timeout(Duration::from_secs(10), engine.shutdown(Duration::ZERO)).await;
    }
    match served {
        Ok(()) => Ok(()),
        Err(err @ ServerError::KeysRequired(_)) => {
            Err(Failure::new(ExitCode::Usage, err.to_string()).into())
        }
        Err(err) => Err(Failure::new(ExitCode::Internal, err.to_string()).into()),
    }
}

/// Counts SIGINT and SIGTERM deliveries.
pub(crate) fn watch_signals() -> Result<watch::Receiver<u32>, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let fail = |e: std::io::Error| {
        Failure::new(
            ExitCode::Internal,
            format!("cannot install signal handlers: {e}"),
        )
    };
    let mut interrupt = signal(SignalKind::interrupt()).map_err(fail)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(fail)?;
    let (tx, rx) = watch::channel(0u32);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = interrupt.recv() => {}
                Some(()) = terminate.recv() => {}
                else => break,
            }
            tx.send_modify(|n| *n += 1);
        }
    });
    Ok(rx)
}

/// Resolves once `count` signals have arrived.
pub(crate) async fn wait_for_signals(mut rx: watch::Receiver<u32>, count: u32) {
    let _ = rx.wait_for(|n| *n >= count).await;
}

/// One of serve's own messages on stderr: a plain line, or with
/// `--log-format json` an event of target `infsh::serve`, so that every
/// line a log shipper reads is JSON.
fn say(json_logs: bool, warning: bool, message: &str) {
    match (json_logs, warning) {
        (true, true) => tracing::warn!(target: "infsh::serve", "{message}"),
        (true, false) => tracing::info!(target: "infsh::serve", "{message}"),
        (false, true) => eprintln!("warning: {message}"),
        (false, false) => eprintln!("{message}"),
    }
}

/// `--lease-seconds`: also how long an API node may be silent before
/// another takes over its own workers' tasks.
fn node_lease(args: &ServeArgs) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(args.lease_seconds)
        .ok()
        .filter(|lease| *lease >= Duration::from_millis(100))
        .ok_or_else(|| {
            Failure::new(
                ExitCode::Usage,
                format!(
                    "--lease-seconds {}: expected at least 0.1",
                    args.lease_seconds
                ),
            )
        })
}
