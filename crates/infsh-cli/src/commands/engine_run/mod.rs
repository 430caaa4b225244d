//! `infsh engine run`: this machine as a remote engine of an API node
//! (docs/deploy.md, "Engines"). It hosts `--apps` (optional) in a local
//! `Engine` (the worker flags are `infsh serve`'s, `WorkerArgs`), registers
//! them with the API node, then loops on `claim` (HTTP long-poll, which is
//! also its heartbeat), runs each claimed task locally under the API node's
//! id and reports it back (task.rs). A task of a deployed version it does
//! not host yet has the version fetched, checked and built first
//! (versions.rs). Unreachable API node: retry with backoff,
//! register again when it forgot us. Wrong engine key: exit 11; a
//! registration refused (an app whose schema does not compile): exit 3. SIGINT or
//! SIGTERM: take no more tasks, let the running ones finish and be
//! reported (--shutdown-grace), exit 0; a second signal stops them now.

mod app_hash;
mod link;
mod output_files;
mod register;
mod sessions;
mod task;
mod versions;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use infsh_engine::{Engine, EngineStartError};
use tokio::sync::watch;

use self::link::{Link, LinkError};
use super::serve::config::{self, Places, ServeEnv};
use super::serve::{wait_for_signals, watch_signals};
use crate::cli::{EngineRunArgs, GlobalArgs, ServeArgs};
use crate::exit::{ExitCode, Failure};

/// The empty apps folder of an engine started without `--apps`.
const NO_APPS_DIR: &str = "no-apps";

/// `infsh serve`'s defaults, to build the local engine's configuration
/// with serve's own code (its flags are not on this command line).
#[derive(Parser)]
struct AsServe {
    #[command(flatten)]
    serve: ServeArgs,
}

pub async fn run(args: Box<EngineRunArgs>, global: &GlobalArgs) -> Result<()> {
    url::Url::parse(&args.server)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            Failure::new(
                ExitCode::Usage,
                format!("--server {}: expected an http(s) URL", args.server),
            )
        })?;
    if args.engine_key.trim().is_empty() {
        return Err(Failure::new(ExitCode::Usage, "--engine-key: empty key").into());
    }
    let name = args.name.clone().unwrap_or_else(host_name);
    let signals = watch_signals()?;
    let (engine, grace, temporary) = start_engine(&args, global).await?;
    let link = Link::new(&args.server, args.engine_key.trim(), &name);
    let result = async {
        let registration = register::registration(&engine, &name).await?;
        if !global.quiet {
            eprintln!(
                "infsh engine {name}: hosting {} app{} and fetching deployed versions for {}",
                registration.apps.len(),
                if registration.apps.len() == 1 {
                    ""
                } else {
                    "s"
                },
                args.server
            );
        }
        claim_loop(&engine, &link, &registration, signals.clone(), grace).await
    }
    .await;
    tokio::select! {
        _ = engine.shutdown(grace) => {}
        _ = wait_for_signals(signals, 2) => {
            let _ = tokio::time::timeout(Duration::from_secs(10), engine.shutdown(Duration::ZERO)).await;
        }
    }
    if let Some(dir) = temporary {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// The local engine over `--apps`, configured by serve's code. Without
/// --data-dir its store is a fresh temporary folder: the API node holds
/// the tasks; what an engine keeps is only the copy it runs.
async fn start_engine(
    args: &EngineRunArgs,
    global: &GlobalArgs,
) -> Result<(Engine, Duration, Option<std::path::PathBuf>), Failure> {
    let (data_dir, temporary) = match &args.worker.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = std::env::temp_dir().join(format!("infsh-engine-{}", std::process::id()));
            (dir.clone(), Some(dir))
        }
    };
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        Failure::new(
            ExitCode::Internal,
            format!("cannot create the data folder {}: {e}", data_dir.display()),
        )
    })?;
    // Without --apps it hosts only the versions it fetches: an empty folder.
    let apps = match &args.worker.apps {
        Some(apps) => apps.clone(),
        None => {
            let empty = data_dir.join(NO_APPS_DIR);
            std::fs::create_dir_all(&empty).map_err(|e| {
                Failure::new(
                    ExitCode::Internal,
                    format!("cannot create {}: {e}", empty.display()),
                )
            })?;
            empty
        }
    };
    let apps_dir = std::fs::canonicalize(&apps)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| {
            Failure::new(
                ExitCode::Usage,
                format!("--apps {}: no such folder", apps.display()),
            )
        })?;
    let mut serve = AsServe::try_parse_from(["serve", "--apps", "."])
        .map_err(|e| Failure::new(ExitCode::Internal, e.to_string()))?
        .serve;
    serve.worker = args.worker.clone();
    // No HTTP server here: the engine's own API keys and engine keys do
    // not apply (they may be in the environment for a colocated serve).
    serve.api_keys.clear();
    serve.engine_keys.clear();
    // Webhooks are sent by the API node that took the run.
    serve.webhook_secret = None;
    let mut env = ServeEnv::from_process();
    env.api_keys = None;
    let checked = config::check(&serve, &env)?;
    let built = config::build(
        &serve,
        checked,
        Places {
            apps_dir,
            data_dir,
            cache_dir: global
                .cache_dir
                .clone()
                .unwrap_or_else(config::default_cache_dir),
            bound: SocketAddr::from(([127, 0, 0, 1], 0)),
            signing_key: vec![0; 32],
            webhook_secret: None,
        },
    )?;
    let engine = Engine::start(built.engine).await.map_err(|e| match e {
        EngineStartError::Layout(layout) => {
            config::layout_failure(args.worker.engine_config.as_deref(), &layout)
        }
        e => Failure::new(ExitCode::Internal, format!("cannot start the engine: {e}")),
    })?;
    Ok((engine, built.shutdown_grace, temporary))
}

/// Claims and runs tasks until the first signal, then until the running
/// ones ended (or the grace passed, or a second signal).
async fn claim_loop(
    engine: &Engine,
    link: &Link,
    registration: &infsh_engine::RemoteRegistration,
    signals: watch::Receiver<u32>,
    grace: Duration,
) -> Result<()> {
    let held: Arc<Mutex<HashSet<String>>> = Arc::default();
    let sessions = sessions::HeldSessions::default();
    let fetches = versions::Fetches::default();
    let (changed_tx, mut changed) = watch::channel(());
    let capacity = register::capacity(engine);
    let workers = register::worker_names(engine, &link.engine);
    let mut registered = false;
    let mut backoff = Backoff::default();
    let mut drain_until = None;
    loop {
        let draining = *signals.borrow() >= 1;
        if *signals.borrow() >= 2 {
            return Ok(());
        }
        if draining && drain_until.is_none() {
            drain_until = Some(tokio::time::Instant::now() + grace);
            eprintln!(
                "infsh engine: draining (running tasks get {}s)",
                grace.as_secs_f64()
            );
        }
        let holding: Vec<String> = held.lock().unwrap().iter().cloned().collect();
        if draining
            && (holding.is_empty() || drain_until.is_some_and(|d| d <= tokio::time::Instant::now()))
        {
            return Ok(());
        }
        if !registered {
            match link.register(registration).await {
                Ok(()) => {
                    registered = true;
                    backoff = Backoff::default();
                }
                Err(e) => {
                    fatal(&e, link)?;
                    registration_refused(&e, link)?;
                    backoff.wait(&e, &signals).await;
                    continue;
                }
            }
        }
        let max = if draining {
            0
        } else {
            capacity.saturating_sub(holding.len())
        };
        changed.borrow_and_update();
        let mut stop = signals.clone();
        let held_sessions = sessions.reports(engine).await;
        let warm = register::warm(engine).await;
        let answer = tokio::select! {
            answer = link.claim(max, &holding, &workers, &held_sessions, &warm) => answer,
            // A signal, or (draining, or every slot busy) a task that
            // ended: look again now. Only a claim for no task is dropped
            // mid-flight: one that may lease tasks is always read to its
            // end (else they would be leased here and never run). Without
            // this a full engine heard of a free slot only when its
            // heartbeat-claim came back, half a lease later.
            _ = stop.changed() => continue,
            _ = changed.changed(), if draining || max == 0 => continue,
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(LinkError::UnknownEngine(_)) => {
                registered = false;
                continue;
            }
            Err(e) => {
                fatal(&e, link)?;
                backoff.wait(&e, &signals).await;
                continue;
            }
        };
        backoff = Backoff::default();
        sessions.end(engine, &answer.end_sessions).await;
        engine.follow_current_versions(&answer.current_versions);
        for id in answer.cancel.into_iter().chain(answer.lost) {
            let engine = engine.clone();
            tokio::spawn(async move { engine.cancel(&id).await });
        }
        for claimed in answer.tasks {
            let id = claimed.task.id.clone();
            tracing::info!(task = %id, attempt = claimed.attempt, "claimed");
            held.lock().unwrap().insert(id.clone());
            let (engine, link, held, changed_tx, sessions, fetches) = (
                engine.clone(),
                link.clone(),
                held.clone(),
                changed_tx.clone(),
                sessions.clone(),
                fetches.clone(),
            );
            let slots =
                register::pinned_slots(&engine, &link.engine, claimed.pinned_workers.as_deref());
            tokio::spawn(async move {
                task::run_claimed(engine, link, claimed.task, slots, sessions, fetches).await;
                held.lock().unwrap().remove(&id);
                let _ = changed_tx.send(());
            });
        }
    }
}

/// A refused key ends the engine: retrying cannot help.
fn fatal(e: &LinkError, link: &Link) -> Result<(), Failure> {
    match e {
        LinkError::Refused { .. } => Err(Failure::new(
            ExitCode::Auth,
            format!("engine {}: {e}", link.engine),
        )),
        _ => Ok(()),
    }
}

/// A registration the API node refuses as such (400: an app whose schema
/// does not compile, a bad engine name) ends the engine: sending it again
/// gets the same answer. Exit 3, as for an app that cannot be loaded.
fn registration_refused(e: &LinkError, link: &Link) -> Result<(), Failure> {
    match e {
        LinkError::Other {
            status: 400,
            detail,
        } => Err(Failure::new(
            ExitCode::AppLoad,
            format!(
                "engine {}: the API node refused the registration (400): {detail}",
                link.engine
            ),
        )),
        _ => Ok(()),
    }
}

/// 100 ms doubling to 5 s between tries while the API node is unreachable.
#[derive(Default)]
struct Backoff {
    tries: u32,
}

impl Backoff {
    async fn wait(&mut self, e: &LinkError, signals: &watch::Receiver<u32>) {
        let wait = Duration::from_millis(100 << self.tries.min(6)).min(Duration::from_secs(5));
        if self.tries == 0 {
            eprintln!("infsh engine: {e}; retrying");
        }
        self.tries += 1;
        let mut stop = signals.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "engine".to_string())
}
