//! `infsh serve`'s flags and environment turned into the engine's and the
//! HTTP layer's configuration. The conversion starts nothing and reads no
//! process environment (the caller passes [`ServeEnv`]), so its defaults and
//! its answers to bad values are unit-tested here without a server; only the
//! files the flags name (API keys, secrets, the engine config) are read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infsh_engine::{EngineConfig, FleetOptions};
use infsh_server::{ServerConfig, ServerError};
use infsh_store::Durability;

use crate::cli::{DurabilityArg, ServeArgs};
use crate::exit::{ExitCode, Failure};

/// How long a signed upload URL stays valid.
const UPLOAD_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// `INFSH_SECRET_<KEY>=value` provides secret KEY.
const SECRET_ENV_PREFIX: &str = "INFSH_SECRET_";

/// What `infsh serve` reads from its environment besides clap's `env =`
/// flags: `INFSH_API_KEYS` and the `INFSH_SECRET_<KEY>` variables.
#[derive(Debug, Default, Clone)]
pub struct ServeEnv {
    pub api_keys: Option<String>,
    pub secrets: Vec<(String, String)>,
}

impl ServeEnv {
    pub fn from_process() -> ServeEnv {
        ServeEnv {
            api_keys: std::env::var("INFSH_API_KEYS").ok(),
            secrets: std::env::vars()
                .filter_map(|(k, v)| {
                    k.strip_prefix(SECRET_ENV_PREFIX)
                        .filter(|key| !key.is_empty())
                        .map(|key| (key.to_string(), v))
                })
                .collect(),
        }
    }
}

/// What the lifecycle settled on this machine before the conversion: the
/// folders (checked or created), the bound address and the signing key.
pub struct Places {
    pub apps_dir: PathBuf,
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub bound: SocketAddr,
    pub signing_key: Vec<u8>,
    /// The data folder's webhook secret, when no `--webhook-secret`.
    pub webhook_secret: Option<infsh_engine::WebhookSecret>,
}

/// Everything `infsh serve` runs with.
pub struct ServeConfig {
    pub engine: EngineConfig,
    pub server: ServerConfig,
    /// On SIGINT/SIGTERM: how long running tasks get.
    pub shutdown_grace: Duration,
    /// `http://IP:PORT` a client on this machine can reach (printed).
    pub url: String,
    /// Said on stderr, each after `warning: `.
    pub warnings: Vec<String>,
    /// Take remote engines (`--engine-key` given).
    pub fleet: Option<FleetOptions>,
}

/// The values of the flags and environment, checked before the port is
/// taken, so a typo fails without binding anything.
pub struct Checked {
    api_keys: Vec<String>,
    secrets: BTreeMap<String, String>,
    task_timeout: Option<Duration>,
    setup_timeout: Option<Duration>,
    cancel_grace: Duration,
    shutdown_grace: Duration,
    placement: infsh_placement::EngineConfig,
    engine_keys: Vec<String>,
    fleet: Option<FleetOptions>,
    webhook_secret: Option<infsh_engine::WebhookSecret>,
}

impl Checked {
    /// No `--webhook-secret`: the lifecycle reads (or makes) the data
    /// folder's and passes it in [`Places`].
    pub fn needs_webhook_secret_file(&self) -> bool {
        self.webhook_secret.is_none()
    }
}

/// Reads the key, secret and engine config files and checks every value; a
/// bad one is a usage error naming its flag (an engine config's errors name
/// the file, the line and the key instead).
pub fn check(args: &ServeArgs, env: &ServeEnv) -> Result<Checked, Failure> {
    Ok(Checked {
        api_keys: collect_api_keys(
            &args.api_keys,
            env.api_keys.as_deref(),
            args.api_keys_file.as_deref(),
        )?,
        secrets: collect_secrets(
            &env.secrets,
            args.worker.secrets_file.as_deref(),
            &args.worker.secrets,
        )?,
        task_timeout: args
            .worker
            .task_timeout
            .map(|s| seconds("--task-timeout", s))
            .transpose()?,
        setup_timeout: args
            .worker
            .setup_timeout
            .map(|s| seconds("--setup-timeout", s))
            .transpose()?,
        cancel_grace: seconds("--cancel-grace", args.worker.cancel_grace)?,
        shutdown_grace: seconds("--shutdown-grace", args.worker.shutdown_grace)?,
        placement: load_engine_config(args.worker.engine_config.as_deref())?,
        engine_keys: collect_api_keys(&args.engine_keys, None, None)?,
        fleet: fleet_options(args)?,
        webhook_secret: args
            .webhook_secret
            .as_deref()
            .map(super::webhook_secret::parse_flag)
            .transpose()?,
    })
}

/// `--lease-seconds` and `--max-attempts`, when engine keys are given.
fn fleet_options(args: &ServeArgs) -> Result<Option<FleetOptions>, Failure> {
    if args.engine_keys.iter().all(|k| k.trim().is_empty()) {
        if args.versions_on_engines {
            return Err(Failure::new(
                ExitCode::Usage,
                "--versions-on-engines needs --engine-key: no engine could run them",
            ));
        }
        return Ok(None);
    }
    let lease = seconds("--lease-seconds", args.lease_seconds)?;
    if lease < Duration::from_millis(100) {
        return Err(Failure::new(
            ExitCode::Usage,
            format!(
                "--lease-seconds {}: expected at least 0.1",
                args.lease_seconds
            ),
        ));
    }
    let mut options = FleetOptions::new(lease, args.max_attempts);
    options.versions_on_engines = args.versions_on_engines;
    Ok(Some(options))
}

/// Checked flags + places → the configuration, or the usage error a public
/// bind without keys is.
pub fn build(args: &ServeArgs, checked: Checked, places: Places) -> Result<ServeConfig, Failure> {
    let Checked {
        api_keys,
        secrets,
        task_timeout,
        setup_timeout,
        cancel_grace,
        shutdown_grace,
        placement,
        engine_keys,
        fleet,
        webhook_secret,
    } = checked;
    if engine_keys.iter().any(|k| api_keys.contains(k)) {
        return Err(Failure::new(
            ExitCode::Usage,
            "a key is given both as an API key and as an engine key: engine keys must differ from client keys",
        ));
    }
    let bound = places.bound;
    if api_keys.is_empty() && !bound.ip().is_loopback() && !args.insecure {
        return Err(Failure::new(
            ExitCode::Usage,
            ServerError::KeysRequired(bound).to_string(),
        ));
    }
    let url = connectable_url(bound);
    let mut warnings = Vec::new();
    let public_url = match &args.public_url {
        Some(u) => u.trim().trim_end_matches('/').to_string(),
        None => {
            if bound.ip().is_unspecified() {
                warnings.push(format!(
                    "listening on {bound}; file URLs will use {url}, which other machines cannot reach: pass --public-url"
                ));
            }
            url.clone()
        }
    };
    let engine = EngineConfig {
        apps_dir: places.apps_dir,
        data_dir: places.data_dir,
        cache_dir: places.cache_dir,
        python: args.worker.python.clone(),
        node: args.worker.node.clone(),
        preload: args.worker.preload,
        replicas: args.worker.replicas as usize,
        concurrency_per_replica: args.worker.concurrency as usize,
        queue_capacity: args.worker.queue_capacity as usize,
        task_timeout,
        setup_timeout,
        cancel_grace,
        public_url,
        secrets,
        fork_workers: !args.worker.no_fork,
        durability: durability(args.worker.durability),
        placement,
        webhook_secret: webhook_secret.or(places.webhook_secret),
        // Opened (a bucket is reached) in `files::open`, before the port.
        files: None,
        versions_on_engines: args.versions_on_engines,
    };
    let server = ServerConfig {
        api_keys,
        insecure: args.insecure,
        max_body_bytes: args
            .max_body_mib
            .map_or(usize::MAX, |m| (m as usize).saturating_mul(1024 * 1024)),
        upload_token_ttl: UPLOAD_TOKEN_TTL,
        file_url_ttl: args.file_url_ttl,
        signing_key: places.signing_key,
        server_timing: args.server_timing,
        engine_keys,
        limits: args.limits.limits(),
        cors_origins: args.cors_origins.clone(),
        stream_delta_window: Duration::from_millis(args.stream_delta_window_ms),
    };
    Ok(ServeConfig {
        engine,
        server,
        shutdown_grace,
        url,
        warnings,
        fleet,
    })
}

/// `--durability` as the store's setting.
pub fn durability(arg: DurabilityArg) -> Durability {
    match arg {
        DurabilityArg::Full => Durability::Full,
        DurabilityArg::Relaxed => Durability::Relaxed,
    }
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

pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("infsh")
}

pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("infsh")
}

/// `--engine-config FILE` parsed and checked; no flag is the default
/// layout. Its errors already say `engine.yml:4:7: workers.gpu[1]: ...`.
///
/// With a declared inventory the slots are built here too, so a
/// `workers.gpu` entry naming an undeclared GPU fails before the port is
/// taken; a detected inventory is the engine's to read (NVML), and the
/// engine refuses such a layout at start ([`layout_failure`]).
fn load_engine_config(path: Option<&Path>) -> Result<infsh_placement::EngineConfig, Failure> {
    let Some(path) = path else {
        return Ok(infsh_placement::EngineConfig::default());
    };
    let config = infsh_placement::EngineConfig::load(path)
        .map_err(|e| Failure::new(ExitCode::Usage, e.to_string()))?;
    if let Some(declared) = &config.inventory {
        let inventory = infsh_placement::Inventory::declared(declared);
        infsh_placement::Layout::build(&config, inventory)
            .map_err(|e| layout_failure(Some(path), &e))?;
    }
    Ok(config)
}

/// A layout naming GPUs the machine lacks: a usage error worded like the
/// config file's own (`engine.yml: workers.gpu[0].gpus: GPU 7 is not on
/// this machine (it has GPUs 0, 1)`).
pub fn layout_failure(path: Option<&Path>, error: &infsh_placement::LayoutError) -> Failure {
    let message = match path {
        Some(path) => format!("{}: {error}", path.display()),
        None => format!("engine config: {error}"),
    };
    Failure::new(ExitCode::Usage, message)
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
fn collect_api_keys(
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
fn collect_secrets(
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(flags: &[&str]) -> ServeArgs {
        let argv = ["infsh", "serve", "--apps", "/apps"].iter().chain(flags);
        match Cli::try_parse_from(argv).expect("flags parse").command {
            Command::Serve(args) => *args,
            other => panic!("not serve: {other:?}"),
        }
    }

    fn places(bound: &str) -> Places {
        Places {
            apps_dir: "/apps".into(),
            data_dir: "/data".into(),
            cache_dir: "/cache".into(),
            bound: bound.parse().unwrap(),
            signing_key: vec![7; 32],
            webhook_secret: None,
        }
    }

    fn build_with(flags: &[&str], env: &ServeEnv, bound: &str) -> Result<ServeConfig, Failure> {
        let args = args(flags);
        let checked = check(&args, env)?;
        build(&args, checked, places(bound))
    }

    #[test]
    fn the_defaults() {
        let config = build_with(&[], &ServeEnv::default(), "127.0.0.1:8080").unwrap();
        let engine = &config.engine;
        assert_eq!(
            (&engine.apps_dir, &engine.data_dir, &engine.cache_dir),
            (&"/apps".into(), &"/data".into(), &"/cache".into())
        );
        assert!(!engine.preload);
        assert!(engine.fork_workers);
        assert_eq!(
            (
                engine.replicas,
                engine.concurrency_per_replica,
                engine.queue_capacity
            ),
            (1, 1, 100)
        );
        assert_eq!((engine.task_timeout, engine.setup_timeout), (None, None));
        assert_eq!(engine.cancel_grace, Duration::from_secs(5));
        assert_eq!(engine.durability, Durability::Full);
        assert_eq!(engine.public_url, "http://127.0.0.1:8080");
        assert!(engine.secrets.is_empty());
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
        assert_eq!(config.url, "http://127.0.0.1:8080");
        assert!(config.warnings.is_empty());
        let server = &config.server;
        assert!(server.api_keys.is_empty());
        assert!(!server.insecure && !server.server_timing);
        assert_eq!(server.stream_delta_window, Duration::from_millis(40));
        // No catch-all cap: --max-json-mib (32) and --max-upload-gib (10) decide.
        assert_eq!(server.max_body_bytes, usize::MAX);
        assert_eq!(server.limits.max_json_bytes, 32 << 20);
        assert_eq!(server.limits.max_upload_bytes, 10 << 30);
        assert!(server.cors_origins.is_empty());
        assert_eq!(server.upload_token_ttl, Duration::from_secs(3600));
        assert_eq!(server.file_url_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(server.signing_key, vec![7; 32]);
        assert_eq!(engine.placement, infsh_placement::EngineConfig::default());
    }

    #[test]
    fn engine_keys_enable_the_fleet_and_must_differ_from_api_keys() {
        let none = build_with(&[], &ServeEnv::default(), "127.0.0.1:0").unwrap();
        assert_eq!(none.fleet, None);
        assert!(none.server.engine_keys.is_empty());
        let config = build_with(
            &[
                "--engine-key=e1",
                "--engine-key=e2",
                "--lease-seconds=5",
                "--max-attempts=3",
            ],
            &ServeEnv::default(),
            "127.0.0.1:0",
        )
        .unwrap();
        assert_eq!(config.server.engine_keys, vec!["e1", "e2"]);
        assert_eq!(
            config.fleet,
            Some(FleetOptions::new(Duration::from_secs(5), 3))
        );
        // Remote engines' queue and leases live in the store given (on
        // PostgreSQL, shared by API nodes): the pair is taken.
        let shared = build_with(
            &[
                "--engine-key=e1",
                "--store=postgres://postgres@127.0.0.1/infsh",
            ],
            &ServeEnv::default(),
            "127.0.0.1:0",
        )
        .unwrap();
        assert_eq!(shared.fleet, Some(FleetOptions::default()));
        let defaults =
            build_with(&["--engine-key=e1"], &ServeEnv::default(), "127.0.0.1:0").unwrap();
        assert_eq!(defaults.fleet, Some(FleetOptions::default()));
        let Err(e) = build_with(
            &["--engine-key=same", "--api-key=same"],
            &ServeEnv::default(),
            "127.0.0.1:0",
        ) else {
            panic!("a key in both sets is refused");
        };
        assert_eq!(e.code, ExitCode::Usage);
        assert_eq!(
            e.message,
            "a key is given both as an API key and as an engine key: engine keys must differ from client keys"
        );
        let Err(e) = build_with(
            &["--engine-key=e1", "--lease-seconds=0.01"],
            &ServeEnv::default(),
            "127.0.0.1:0",
        ) else {
            panic!("a lease under 0.1 s is refused");
        };
        assert_eq!(e.message, "--lease-seconds 0.01: expected at least 0.1");
        let on_engines = build_with(
            &["--engine-key=e1", "--versions-on-engines"],
            &ServeEnv::default(),
            "127.0.0.1:0",
        )
        .unwrap();
        assert!(on_engines.fleet.unwrap().versions_on_engines);
        let Err(e) = build_with(
            &["--versions-on-engines"],
            &ServeEnv::default(),
            "127.0.0.1:0",
        ) else {
            panic!("--versions-on-engines without engine keys is refused");
        };
        assert_eq!(e.code, ExitCode::Usage);
        assert_eq!(
            e.message,
            "--versions-on-engines needs --engine-key: no engine could run them"
        );
    }

    #[test]
    fn flags_reach_the_engine_and_the_server() {
        let config = build_with(
            &[
                "--preload",
                "--no-fork",
                "--replicas=3",
                "--concurrency=2",
                "--queue-capacity=7",
                "--task-timeout=1.5",
                "--setup-timeout=60",
                "--cancel-grace=0",
                "--shutdown-grace=2",
                "--max-body-mib=2",
                "--cors-origin=https://a.example",
                "--cors-origin=http://localhost:3000",
                "--durability=relaxed",
                "--server-timing",
                "--stream-delta-window-ms=10",
                "--public-url= http://example.test/ ",
                "--api-key=k1",
                "--secret=A=flag",
            ],
            &ServeEnv {
                api_keys: Some("k2".into()),
                secrets: vec![("A".into(), "env".into()), ("B".into(), "env".into())],
            },
            "127.0.0.1:0",
        )
        .unwrap();
        let engine = &config.engine;
        assert!(engine.preload && !engine.fork_workers);
        assert_eq!(
            (
                engine.replicas,
                engine.concurrency_per_replica,
                engine.queue_capacity
            ),
            (3, 2, 7)
        );
        assert_eq!(engine.task_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(engine.setup_timeout, Some(Duration::from_secs(60)));
        assert_eq!(engine.cancel_grace, Duration::ZERO);
        assert_eq!(engine.durability, Durability::Relaxed);
        assert_eq!(engine.public_url, "http://example.test");
        assert_eq!(engine.secrets["A"], "flag");
        assert_eq!(engine.secrets["B"], "env");
        assert_eq!(config.shutdown_grace, Duration::from_secs(2));
        assert_eq!(config.server.api_keys, vec!["k1", "k2"]);
        assert_eq!(config.server.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(
            config.server.cors_origins,
            vec!["https://a.example", "http://localhost:3000"]
        );
        assert!(config.server.server_timing);
        assert_eq!(config.server.stream_delta_window, Duration::from_millis(10));
    }

    #[test]
    fn bad_seconds_are_usage_errors() {
        for (flag, expected) in [
            (
                "--cancel-grace=-1",
                "--cancel-grace -1: expected a number of seconds, 0 or more",
            ),
            (
                "--shutdown-grace=NaN",
                "--shutdown-grace NaN: expected a number of seconds, 0 or more",
            ),
            (
                "--cancel-grace=inf",
                "--cancel-grace inf: expected a number of seconds, 0 or more",
            ),
        ] {
            let Err(err) = build_with(&[flag], &ServeEnv::default(), "127.0.0.1:8080") else {
                panic!("{flag} is refused");
            };
            assert_eq!(
                (err.code, err.message.as_str()),
                (ExitCode::Usage, expected)
            );
        }
    }

    #[test]
    fn a_public_bind_needs_keys_or_insecure() {
        let env = ServeEnv::default();
        let Err(err) = build_with(&[], &env, "0.0.0.0:8080") else {
            panic!("no keys on a public bind is refused");
        };
        assert_eq!(err.code, ExitCode::Usage);
        assert_eq!(
            err.message,
            ServerError::KeysRequired("0.0.0.0:8080".parse().unwrap()).to_string()
        );
        let insecure = build_with(&["--insecure"], &env, "0.0.0.0:8080").unwrap();
        assert_eq!(insecure.url, "http://127.0.0.1:8080");
        assert_eq!(
            insecure.warnings,
            vec!["listening on 0.0.0.0:8080; file URLs will use http://127.0.0.1:8080, which other machines cannot reach: pass --public-url"]
        );
        let keyed = ServeEnv {
            api_keys: Some("k".into()),
            ..ServeEnv::default()
        };
        let with_key = build_with(&["--public-url=http://h:1"], &keyed, "0.0.0.0:8080").unwrap();
        assert!(with_key.warnings.is_empty());
        assert_eq!(with_key.engine.public_url, "http://h:1");
    }

    #[test]
    fn a_bad_secret_or_missing_file_is_a_usage_error() {
        let env = ServeEnv::default();
        let Err(err) = build_with(&["--secret=novalue"], &env, "127.0.0.1:1") else {
            panic!("a secret without = is refused");
        };
        assert_eq!(err.code, ExitCode::Usage);
        assert_eq!(err.message, "--secret: expected KEY=VALUE, got \"novalue\"");
        let Err(err) = build_with(&["--api-keys-file=/nonexistent/keys"], &env, "127.0.0.1:1")
        else {
            panic!("a missing keys file is refused");
        };
        assert_eq!(err.code, ExitCode::Usage);
        assert!(
            err.message
                .starts_with("--api-keys-file: cannot read /nonexistent/keys: "),
            "{}",
            err.message
        );
    }

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
    fn the_engine_config_reaches_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("engine.yml");
        std::fs::write(
            &file,
            "name: box\nworkers:\n  cpu: {count: 2}\n  gpu:\n    - gpus: [0]\n    - gpus: [1, 2]\n",
        )
        .unwrap();
        let flag = format!("--engine-config={}", file.display());
        let config = build_with(&[&flag], &ServeEnv::default(), "127.0.0.1:1").unwrap();
        assert_eq!(
            config.engine.placement,
            infsh_placement::EngineConfig::load(&file).unwrap()
        );
        assert_eq!(config.engine.placement.name.as_deref(), Some("box"));
        assert_eq!(config.engine.placement.workers.gpu.len(), 2);
    }

    #[test]
    fn a_bad_engine_config_is_a_usage_error_naming_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("engine.yml");
        std::fs::write(&file, "workers:\n  gpu:\n    - gpus: [0]\n    - gpu: [1]\n").unwrap();
        let flag = format!("--engine-config={}", file.display());
        let Err(err) = build_with(&[&flag], &ServeEnv::default(), "127.0.0.1:1") else {
            panic!("a typo in engine.yml is refused");
        };
        assert_eq!(err.code, ExitCode::Usage);
        assert_eq!(
            err.message,
            format!(
                "{}:4:7: workers.gpu[1]: unknown field `gpu`, expected `gpus`",
                file.display()
            )
        );
        let Err(err) = build_with(
            &["--engine-config=/nonexistent/engine.yml"],
            &ServeEnv::default(),
            "127.0.0.1:1",
        ) else {
            panic!("a missing engine.yml is refused");
        };
        assert_eq!(err.code, ExitCode::Usage);
        assert!(
            err.message
                .starts_with("cannot read engine config /nonexistent/engine.yml: "),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_declared_layout_naming_a_missing_gpu_is_refused_before_binding() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("engine.yml");
        std::fs::write(
            &file,
            "workers:\n  gpu:\n    - gpus: [0]\n    - gpus: [7]\ninventory:\n  gpus:\n    - {index: 0}\n    - {index: 1}\n",
        )
        .unwrap();
        let flag = format!("--engine-config={}", file.display());
        let Err(err) = build_with(&[&flag], &ServeEnv::default(), "127.0.0.1:1") else {
            panic!("a slot over an undeclared GPU is refused");
        };
        assert_eq!(err.code, ExitCode::Usage);
        assert_eq!(
            err.message,
            format!(
                "{}: workers.gpu[1].gpus: GPU 7 is not on this machine (it has GPUs 0, 1)",
                file.display()
            )
        );
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
