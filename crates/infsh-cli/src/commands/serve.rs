//! `infsh serve`: host a folder of apps behind the inference.sh HTTP API.
//! Builds the engine's and the HTTP layer's configuration from flags,
//! environment and files, binds the listener (port 0 picks one; the real
//! address is printed), serves until SIGINT/SIGTERM, then lets running
//! tasks finish and stops every worker.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use infsh_engine::{Engine, EngineConfig};
use infsh_server::{ServerConfig, ServerError};
use serde_json::json;
use tokio::sync::watch;

use infsh_store::Durability;

use crate::cli::{DurabilityArg, GlobalArgs, ServeArgs};
use crate::exit::{ExitCode, Failure};

/// Name of the upload-URL signing key in the data dir.
pub const SIGNING_KEY_FILE: &str = "signing.key";
const SIGNING_KEY_BYTES: usize = 32;
/// How long a signed upload URL stays valid.
const UPLOAD_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// `INFSH_SECRET_<KEY>=value` provides secret KEY.
const SECRET_ENV_PREFIX: &str = "INFSH_SECRET_";

pub async fn serve(args: ServeArgs, global: &GlobalArgs) -> Result<()> {
    let apps_dir = std::fs::canonicalize(&args.apps)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| {
            Failure::new(
                ExitCode::Usage,
                format!("--apps {}: no such folder", args.apps.display()),
            )
        })?;
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        Failure::new(
            ExitCode::Internal,
            format!("cannot create the data folder {}: {e}", data_dir.display()),
        )
    })?;
    let data_dir = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
    let cache_dir = global.cache_dir.clone().unwrap_or_else(default_cache_dir);

    let api_keys = collect_api_keys(
        &args.api_keys,
        std::env::var("INFSH_API_KEYS").ok().as_deref(),
        args.api_keys_file.as_deref(),
    )?;
    let env_secrets: Vec<(String, String)> = std::env::vars()
        .filter_map(|(k, v)| {
            k.strip_prefix(SECRET_ENV_PREFIX)
                .filter(|key| !key.is_empty())
                .map(|key| (key.to_string(), v))
        })
        .collect();
    let secrets = collect_secrets(&env_secrets, args.secrets_file.as_deref(), &args.secrets)?;
    let signing_key = load_or_create_signing_key(&data_dir.join(SIGNING_KEY_FILE))?;

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
    if api_keys.is_empty() && !bound.ip().is_loopback() && !args.insecure {
        return Err(Failure::new(
            ExitCode::Usage,
            ServerError::KeysRequired(bound).to_string(),
        )
        .into());
    }
    let url = connectable_url(bound);
    let public_url = match &args.public_url {
        Some(u) => u.trim().trim_end_matches('/').to_string(),
        None => {
            if bound.ip().is_unspecified() {
                eprintln!(
                    "warning: listening on {bound}; file URLs will use {url}, which other machines cannot reach: pass --public-url"
                );
            }
            url.clone()
        }
    };

    let config = EngineConfig {
        apps_dir,
        data_dir: data_dir.clone(),
        cache_dir,
        python: args.python.clone(),
        preload: args.preload,
        replicas: args.replicas as usize,
        concurrency_per_replica: args.concurrency as usize,
        queue_capacity: args.queue_capacity as usize,
        task_timeout: args
            .task_timeout
            .map(|s| seconds("--task-timeout", s))
            .transpose()?,
        setup_timeout: args
            .setup_timeout
            .map(|s| seconds("--setup-timeout", s))
            .transpose()?,
        cancel_grace: seconds("--cancel-grace", args.cancel_grace)?,
        public_url,
        secrets,
        fork_workers: !args.no_fork,
        durability: match args.durability {
            DurabilityArg::Full => Durability::Full,
            DurabilityArg::Relaxed => Durability::Relaxed,
        },
    };
    let shutdown_grace = seconds("--shutdown-grace", args.shutdown_grace)?;
    let server_config = ServerConfig {
        api_keys,
        insecure: args.insecure,
        max_body_bytes: (args.max_body_mib as usize).saturating_mul(1024 * 1024),
        upload_token_ttl: UPLOAD_TOKEN_TTL,
        signing_key,
        server_timing: args.server_timing,
    };

    // Signals are watched from before the engine starts, so a SIGTERM during
    // a slow --preload still ends things cleanly.
    let signals = watch_signals()?;
    let engine = Engine::start(config)
        .await
        .map_err(|e| Failure::new(ExitCode::Internal, format!("cannot start the server: {e}")))?;
    let apps: Vec<String> = engine.apps().into_iter().map(|a| a.id).collect();
    if global.json {
        let line = json!({"url": url, "apps": apps, "data_dir": data_dir});
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
    if !global.quiet {
        eprintln!(
            "infsh serving {} app{} on {url}",
            apps.len(),
            if apps.len() == 1 { "" } else { "s" }
        );
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
                eprintln!(
                    "infsh: shutting down (running tasks get {}s; a second Ctrl-C stops them now)",
                    shutdown_grace.as_secs_f64()
                );
            }
            tokio::select! {
                _ = engine.shutdown(shutdown_grace) => {}
                _ = wait_for_signals(signals, 2) => {
                    eprintln!("infsh: stopping every worker now");
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
fn watch_signals() -> Result<watch::Receiver<u32>, Failure> {
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
async fn wait_for_signals(mut rx: watch::Receiver<u32>, count: u32) {
    let _ = rx.wait_for(|n| *n >= count).await;
}

/// `http://IP:PORT` a client on this machine can reach (an unspecified
/// bind address becomes loopback).
fn connectable_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        other => other,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("infsh")
}

fn default_cache_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("infsh")
}

fn seconds(flag: &str, value: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        Failure::new(
            ExitCode::Usage,
            format!("{flag} {value}: expected a number of seconds, 0 or more"),
        )
    })
}

/// Every accepted key: `--api-key` flags, `INFSH_API_KEYS` (comma
/// separated) and `--api-keys-file` (one per line), deduplicated.
pub fn collect_api_keys(
    flags: &[String],
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Vec<String>, Failure> {
    let mut keys: Vec<String> = Vec::new();
    let mut add = |key: &str| {
        let key = key.trim();
        if !key.is_empty() && !keys.iter().any(|k| k == key) {
            keys.push(key.to_string());
        }
    };
    for key in flags {
        add(key);
    }
    if let Some(env) = env {
        for key in env.split(',') {
            add(key);
        }
    }
    if let Some(path) = file {
        for line in read_config_lines(path, "--api-keys-file")? {
            add(&line);
        }
    }
    Ok(keys)
}

/// Secrets by key: `INFSH_SECRET_<KEY>` variables, overridden by
/// `--secrets-file` lines, overridden by `--secret` flags.
pub fn collect_secrets(
    env: &[(String, String)],
    file: Option<&Path>,
    flags: &[String],
) -> Result<BTreeMap<String, String>, Failure> {
    let mut secrets = BTreeMap::new();
    for (key, value) in env {
        secrets.insert(key.clone(), value.clone());
    }
    if let Some(path) = file {
        for line in read_config_lines(path, "--secrets-file")? {
            let (key, value) = split_secret(&line, &format!("--secrets-file {}", path.display()))?;
            secrets.insert(key, value);
        }
    }
    for flag in flags {
        let (key, value) = split_secret(flag, "--secret")?;
        secrets.insert(key, value);
    }
    Ok(secrets)
}

fn split_secret(raw: &str, origin: &str) -> Result<(String, String), Failure> {
    let raw = raw.strip_prefix("export ").unwrap_or(raw);
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            Ok((key.trim().to_string(), unquoted.to_string()))
        }
        _ => Err(Failure::new(
            ExitCode::Usage,
            format!(
                "{origin}: expected KEY=VALUE, got {:?}",
                raw.split('=').next().unwrap_or("")
            ),
        )),
    }
}

/// Non-blank lines that are not `#` comments, trimmed.
fn read_config_lines(path: &Path, flag: &str) -> Result<Vec<String>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            ExitCode::Usage,
            format!("{flag}: cannot read {}: {e}", path.display()),
        )
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// The key that signs upload URLs: read from `path`, or created there
/// (random, mode 0600) on first start, so URLs survive restarts.
pub fn load_or_create_signing_key(path: &Path) -> Result<Vec<u8>, Failure> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Failure::new(
            ExitCode::Internal,
            format!("{what} the signing key {}: {e}", path.display()),
        )
    };
    let mut key = vec![0u8; SIGNING_KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| fail("cannot generate", &e))?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .map_err(|e| fail("cannot write", &e))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let existing = std::fs::read(path).map_err(|e| fail("cannot read", &e))?;
            if existing.len() < 16 {
                return Err(fail(
                    "unusable",
                    &format!(
                        "{} bytes (at least 16 needed); delete it to make a new one",
                        existing.len()
                    ),
                ));
            }
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    eprintln!(
                        "warning: {} is readable by other users; chmod 600 it",
                        path.display()
                    );
                }
            }
            Ok(existing)
        }
        Err(e) => Err(fail("cannot create", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_come_from_flags_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, "# comment\nk3\n\n k1 \n").unwrap();
        let keys = collect_api_keys(&["k1".into()], Some("k2, ,k1"), Some(&file)).unwrap();
        assert_eq!(keys, vec!["k1", "k2", "k3"]);
        assert!(collect_api_keys(&[], None, None).unwrap().is_empty());
    }

    #[test]
    fn secrets_flags_win_over_file_over_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets");
        std::fs::write(&file, "A=file\nexport B=\"quoted=x\"\n# C=no\n").unwrap();
        let env = vec![("A".into(), "env".into()), ("D".into(), "env".into())];
        let secrets = collect_secrets(&env, Some(&file), &["A=flag".into()]).unwrap();
        assert_eq!(secrets["A"], "flag");
        assert_eq!(secrets["B"], "quoted=x");
        assert_eq!(secrets["D"], "env");
        assert!(!secrets.contains_key("C"));
        assert_eq!(
            collect_secrets(&[], None, &["novalue".into()])
                .unwrap_err()
                .code,
            ExitCode::Usage
        );
    }

    #[test]
    fn the_signing_key_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIGNING_KEY_FILE);
        let first = load_or_create_signing_key(&path).unwrap();
        assert_eq!(first.len(), SIGNING_KEY_BYTES);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_signing_key(&path).unwrap(), first);
        std::fs::write(&path, b"short").unwrap();
        assert!(load_or_create_signing_key(&path).is_err());
    }

    #[test]
    fn unspecified_binds_print_a_loopback_url() {
        assert_eq!(
            connectable_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(connectable_url("[::]:9".parse().unwrap()), "http://[::1]:9");
        assert_eq!(
            connectable_url("127.0.0.1:1".parse().unwrap()),
            "http://127.0.0.1:1"
        );
    }
}
