//! The command-line grammar: every command, flag and environment fallback.
//! Kept apart from the code that runs commands so `--help` reads as one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::serve::limit_args::LimitArgs;
use crate::commands::serve::retention_args::{parse_retention, RetentionArgs};

/// infsh: run multi-function inference apps (inference.sh style) locally,
/// serve them over HTTP, and run them on a server.
///
/// An app is a folder with `inference.py` (class App), `inf.yml` and
/// `requirements.txt`. Its `setup` loads the model once; every function
/// shares it.
#[derive(Debug, Parser)]
#[command(name = "infsh", version, propagate_version = true, after_help = crate::exit::EXIT_CODES_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Print machine-readable JSON on stdout and no progress display.
    #[arg(long, global = true)]
    pub json: bool,
    /// Only print results and errors (no progress, no app logs).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Where infsh keeps app environments and runtime files.
    #[arg(long, global = true, env = "INFSH_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect, run and test apps.
    #[command(subcommand)]
    App(AppCommand),
    /// Serve a folder of apps over HTTP: the inference.sh API, so the official
    /// `inferencesh` Python client and `infsh app run --api-url` work against it.
    // Boxed: by far the largest variant (clippy::large_enum_variant).
    Serve(Box<ServeArgs>),
    /// Show, list and cancel tasks on a server (needs --api-url / INFSH_API_URL).
    #[command(subcommand)]
    Task(TaskCommand),
    /// List, show, keep alive and end sessions on a server (needs --api-url / INFSH_API_URL).
    #[command(subcommand)]
    Session(SessionCommand),
    /// See a server's worker layout: its slots, GPUs and replicas (needs --api-url / INFSH_API_URL).
    #[command(subcommand)]
    Engine(EngineCommand),
    /// Create, list and revoke API keys with scopes (needs --api-url and an
    /// admin key, or a key with apikeys:write; docs/security.md).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Delete (or with --dry-run, count) tasks that ended more than
    /// --retention ago, with their files, in a data folder or --store.
    Gc(GcArgs),
    /// Print a shell completion script: `infsh completion bash > ~/.local/share/bash-completion/completions/infsh`,
    /// `infsh completion zsh > "${fpath[1]}/_infsh"`, `infsh completion fish > ~/.config/fish/completions/infsh.fish`.
    Completion(CompletionArgs),
}

/// `infsh gc` (docs/cli.md, docs/operations.md "Retention").
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["retention", "file_retention"])))]
pub struct GcArgs {
    /// Delete tasks that ended more than DURATION ago (30d, 12h, 45m, 90s), with their files.
    #[arg(long, value_name = "DURATION", value_parser = parse_retention)]
    pub retention: Option<std::time::Duration>,
    /// Delete stored files older than DURATION that no (kept) task names.
    #[arg(long, value_name = "DURATION", value_parser = parse_retention)]
    pub file_retention: Option<std::time::Duration>,
    /// Only count what would go (tasks, files, bytes); delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The data folder `infsh serve` used (default: the user's data folder).
    #[arg(long, env = "INFSH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The store `infsh serve --store` used (default: SQLite in the data folder).
    #[arg(long, env = "INFSH_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// The files `infsh serve --files` used (default: the data folder's `files`).
    #[arg(long, env = "INFSH_FILES", value_name = "URL")]
    pub files: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Scaffold a working multi-function app in a new folder NAME.
    Init(InitArgs),
    /// List the app's functions (--json: the functions_schema.json content).
    Functions(InspectArgs),
    /// Write functions_schema.json, input/output_schema.json and setup_schema.json into the app folder.
    Schema(InspectArgs),
    /// Run one function of an app, locally or (with --api-url) on a server.
    Run(RunArgs),
    /// Run the app's examples (input.json, input_<fn>.json) for every function, with one setup.
    Test(TestArgs),
    /// Serve one app folder with the web playground at `/`, reloading the app whenever its files change.
    #[command(after_help = DEV_AFTER_HELP)]
    Dev(DevArgs),
    /// Pack an app folder and deploy it to a server as a new version: the
    /// server builds it and discovers its functions before it becomes current.
    Deploy(DeployArgs),
    /// List an app's versions on a server (newest first; `*` marks the current one).
    Versions(VersionsArgs),
    /// Make a version of an app current on a server (a rollback names an older one).
    Activate(VersionArgs),
    /// Remove a version of an app from a server (not the current one).
    Remove(VersionArgs),
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The app folder.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Pack and check the folder without uploading it.
    #[arg(long)]
    pub dry_run: bool,
    /// Upload and build the version without making it current.
    #[arg(long)]
    pub no_activate: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// The app, `namespace/name`.
    pub app: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// The app, `namespace/name`.
    pub app: String,
    /// The version: its hash, or a prefix of at least 4 digits.
    #[arg(value_name = "VERSION")]
    pub hash: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// The app folder.
    #[arg(default_value = ".")]
    pub app: PathBuf,
    /// Address to listen on. Anything but a loopback address needs an API key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one (the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Keep tasks and files here (default: a temporary folder removed on exit).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use this Python interpreter as is (skip building the app's virtual environment).
    #[arg(long, env = "INFSH_PYTHON", value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Run a JavaScript app (kernel: node-*) with this `node` (default: `node` on PATH).
    #[arg(long, env = "INFSH_NODE", value_name = "PATH")]
    pub node: Option<PathBuf>,
    /// Accept this API key (repeatable); without one there is no authentication.
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_keys: Vec<String>,
}

const DEV_AFTER_HELP: &str = "\
Open the printed URL in a browser: the playground lists the app's functions
with a form for each. On a change to the app's files (not __pycache__,
hidden folders or editor scratch files), after 300 ms of quiet, the app's
workers are stopped and the app is started again; the next call runs the
new code. With --json: one line {\"url\": ..., \"apps\": [...]} on stdout.
Ctrl-C stops it.";

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder to create; its last component becomes the app name.
    pub name: PathBuf,
    /// Namespace written into inf.yml.
    #[arg(long, default_value = "local")]
    pub namespace: String,
    /// The app's language: `python` (inference.py) or `node` (inference.js, kernel: node-22).
    #[arg(long, value_enum, default_value_t = InitLang::Python)]
    pub lang: InitLang,
}

/// `infsh app init --lang`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InitLang {
    Python,
    Node,
}

/// How the app's Python interpreter is chosen; shared by every command that starts a worker.
#[derive(Debug, Args, Clone)]
pub struct EnvArgs {
    /// Use this Python interpreter as is (skip building the app's virtual environment).
    #[arg(long, env = "INFSH_PYTHON", value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Interpreter to build the app's virtual environment from (default: python3 on PATH).
    #[arg(long, value_name = "PATH")]
    pub base_python: Option<PathBuf>,
    /// Run a JavaScript app (kernel: node-*) with this `node` (default: `node` on PATH).
    #[arg(long, env = "INFSH_NODE", value_name = "PATH")]
    pub node: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The app folder.
    #[arg(default_value = ".")]
    pub app: PathBuf,
    #[command(flatten)]
    pub env: EnvArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The app folder. With --api-url: the app's id on the server,
    /// `namespace/name` (`@version` and `:function` may follow), or a local
    /// app folder whose inf.yml names it.
    #[arg(default_value = ".")]
    pub app: String,
    /// Function to call (default: inf.yml's default_function, else `run`).
    /// `app:function` in APP works too.
    #[arg(long, short)]
    pub function: Option<String>,
    /// Input: a JSON file, inline JSON (`{"prompt": "a cat"}`), or `-` for stdin.
    /// Default: the app's input_<fn>.json or input.json example.
    #[arg(long, short, value_name = "FILE|JSON")]
    pub input: Option<String>,
    /// Setup config for the app's `setup`: a JSON file or inline JSON.
    #[arg(long, value_name = "FILE|JSON")]
    pub setup: Option<String>,
    /// Copy File outputs into this folder.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Give up on the call after this many seconds (the worker is stopped).
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    pub timeout: Option<f64>,
    /// Give up on setup after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    pub setup_timeout: Option<f64>,
    /// With --api-url: submit the task, print its id and exit (follow it
    /// later with `infsh task get ID --wait`). `--no-wait` is the same.
    #[arg(long, short = 'd', visible_alias = "no-wait")]
    pub detach: bool,
    /// With --api-url: `new` opens a session (one worker of the app kept
    /// for your calls, its memory included) and prints its id; an id
    /// (`sess_…`) runs the call in that session (docs/sessions.md).
    #[arg(long, value_name = "new|ID")]
    pub session: Option<String>,
    /// With `--session new`: end the session after this many seconds
    /// without a call (1 to 3600; default 60).
    #[arg(long, value_name = "SECS", requires = "session",
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub session_timeout: Option<u32>,
    /// With --api-url: the task waits on the server until TIME, an RFC 3339
    /// time (`2026-01-02T03:04:05Z`) or `+DURATION` from now (`+10m`,
    /// `+2h`); it survives a server restart. Usually with --detach.
    #[arg(long, value_name = "TIME", value_parser = parse_run_at)]
    pub run_at: Option<String>,
    #[command(flatten)]
    pub env: EnvArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Where a command runs: locally, or on a server when a URL is given.
#[derive(Debug, Args, Clone)]
pub struct RemoteArgs {
    /// Run on this server (`infsh serve`, or any inference.sh-compatible API)
    /// instead of locally. Local file paths in the input are uploaded first.
    #[arg(long, env = "INFSH_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// API key for the server, sent as `Authorization: Bearer KEY`
    /// (INFERENCE_API_KEY, the platform SDKs' variable, when neither this
    /// nor INFSH_API_KEY is set).
    #[arg(
        long,
        env = "INFSH_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
}

/// The server a `task` command talks to (required).
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// The server's URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "INFSH_API_URL", value_name = "URL", required = true)]
    pub api_url: Option<String>,
    /// API key for the server, sent as `Authorization: Bearer KEY`
    /// (INFERENCE_API_KEY when neither this nor INFSH_API_KEY is set).
    #[arg(
        long,
        env = "INFSH_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
}

impl From<ServerArgs> for RemoteArgs {
    fn from(args: ServerArgs) -> RemoteArgs {
        RemoteArgs {
            api_url: args.api_url,
            api_key: args.api_key,
        }
    }
}

/// `infsh serve`.
#[derive(Debug, Args)]
#[command(after_help = SERVE_AFTER_HELP)]
pub struct ServeArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Address to listen on. Anything but a loopback address needs API keys (or --insecure).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one (the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Development: when a file of an app folder under --apps changes,
    /// deploy the folder as a new version (current once it built; a
    /// failing build is logged and the last good version keeps serving).
    #[arg(long, requires = "apps")]
    pub watch: bool,
    /// Accept this API key (repeatable). Also read from INFSH_API_KEYS (comma separated) and --api-keys-file.
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_keys: Vec<String>,
    /// File of accepted API keys, one per line (blank lines and lines starting with # are skipped).
    #[arg(long, value_name = "FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Allow serving without API keys on a non-loopback address.
    #[arg(long)]
    pub insecure: bool,
    /// The URL clients reach this server at (used in file URIs). Default: http://HOST:PORT as bound.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Largest accepted request body of any kind, in MiB: a cap over
    /// --max-json-mib and --max-upload-gib. Default: none (those two decide).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_body_mib: Option<u32>,
    /// Let browser apps served from ORIGIN (e.g. https://app.example.com)
    /// call the API: CORS headers and preflight answers for it (repeatable).
    /// Default: none (browsers refuse cross-origin calls).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// How long the signed file URLs the API hands out (`?sig=`) stay
    /// valid (7d, 12h, 45m, 90s). With API keys, a private file's bytes
    /// need such a URL or a key.
    #[arg(long, value_name = "DURATION", value_parser = parse_retention, default_value = "7d")]
    pub file_url_ttl: std::time::Duration,
    /// Secret that upload URLs and file URLs are signed with (at least 24
    /// bytes). API nodes that share a store need the same one, so a URL one
    /// of them hands out works on all. Default: one generated into the data
    /// folder (`signing.key`).
    #[arg(
        long,
        env = "INFSH_SIGNING_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub signing_secret: Option<String>,
    /// Answer `wait` runs with a Server-Timing header: the task's time inside
    /// the server by stage (accept, queue, dispatch, ipc, python, store, wake).
    #[arg(long)]
    pub server_timing: bool,
    /// Send a streaming task's appended text to clients that merge deltas
    /// (the official client) at most once per this many milliseconds, so a
    /// line carries several tokens; the first delta goes at once.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = infsh_server::DEFAULT_DELTA_WINDOW.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(1..=60_000)
    )]
    pub stream_delta_window_ms: u64,
    // --- Remote engines (`infsh engine run --server`; docs/deploy.md, "Engines").
    /// Accept this key from remote engines on /v1/engine/... (repeatable; also
    /// INFSH_ENGINE_KEYS, comma separated). Engine keys are refused on client
    /// routes and client keys on engine routes. Without one, no engine connects.
    #[arg(
        long = "engine-key",
        value_name = "KEY",
        env = "INFSH_ENGINE_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub engine_keys: Vec<String>,
    /// How long a task claimed by a remote engine stays leased without a
    /// heartbeat before it is run again elsewhere (or failed).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub lease_seconds: f64,
    /// Runs of one task in all when its engines are lost; then it fails
    /// with `engine lost: NAME`.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Runs of deployed versions (`infsh app deploy`) go to remote engines,
    /// which fetch each version's package from an API node by hash, instead
    /// of to this node's workers (the deploy still builds it here once).
    /// Needs --engine-key.
    #[arg(long, env = "INFSH_VERSIONS_ON_ENGINES")]
    pub versions_on_engines: bool,
    /// Sign webhook deliveries with this Standard Webhooks secret
    /// (`whsec_` + base64 of at least 24 bytes). Default: one generated
    /// into the data folder (`webhook.secret`). API nodes sharing a store
    /// need the same one.
    #[arg(
        long,
        env = "INFSH_WEBHOOK_SECRET",
        value_name = "whsec_...",
        hide_env_values = true
    )]
    pub webhook_secret: Option<String>,
    // --- the store (pgstore) ---
    /// Where tasks, logs and file records live: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
    /// (API nodes sharing one database) or `sqlite:///PATH`. Default: SQLite in the data folder.
    #[arg(long, env = "INFSH_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Where stored files' bytes live: `file:///PATH` (a local or shared folder)
    /// or `s3://BUCKET[/PREFIX]` (S3-compatible; endpoint, region and keys from
    /// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    /// Default: the `files` folder in the data folder. API nodes sharing a
    /// store need the same one.
    #[arg(long, env = "INFSH_FILES", value_name = "URL")]
    pub files: Option<String>,
    /// Connection timeouts and caps, run rate and stream caps.
    #[command(flatten)]
    pub limits: LimitArgs,
    // -- logging (issue 18) --
    /// How infsh's own log lines on stderr are written: `text` for people,
    /// `json` (one object per line) for log shippers.
    #[arg(long, value_enum, env = "INFSH_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The app, environment and worker flags `infsh serve` and `infsh engine
/// run` share: which apps, where their state lives, how their workers run.
#[derive(Debug, Args, Clone)]
pub struct WorkerArgs {
    /// Folder of apps to serve: every sub-folder (up to 3 levels deep) holding an inference.py.
    /// Required by `infsh serve`; an engine without it hosts only the
    /// deployed versions it fetches.
    #[arg(long, value_name = "DIR")]
    pub apps: Option<PathBuf>,
    /// Where tasks, stored files and the signing key live (default: the user's data folder, e.g. ~/.local/share/infsh).
    #[arg(long, env = "INFSH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Start every app's workers (and run their setup) at boot instead of at the first call.
    #[arg(long)]
    pub preload: bool,
    /// Start every worker as a new interpreter instead of forking it from the
    /// app's zygote (an interpreter that imported the app once; apps whose
    /// import starts threads or CUDA are never forked).
    #[arg(long)]
    pub no_fork: bool,
    /// This machine's worker layout (engine.yml): GPU slots, CPU slots, a
    /// declared GPU inventory and per-app bounds. Default: one slot per GPU
    /// NVML finds, CPU apps without a limit.
    #[arg(long, env = "INFSH_ENGINE_CONFIG", value_name = "FILE")]
    pub engine_config: Option<PathBuf>,
    /// Most worker processes per app, unless its inf.yml (`infsh: {max_replicas}`)
    /// or --engine-config (`apps:`) sets its own; each runs setup once and serves every function.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256), value_name = "N")]
    pub replicas: u32,
    /// Calls one worker runs at once (async apps can take more than one).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub concurrency: u32,
    /// Tasks waiting per app; beyond this, runs are refused with 429.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub queue_capacity: u32,
    /// Default limit on one task, in seconds (a run's own timeout wins). Default: none.
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    pub task_timeout: Option<f64>,
    /// Limit on an app's setup, in seconds. Default: none.
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    pub setup_timeout: Option<f64>,
    /// How long a cancelled task gets (its on_cancel runs) before its worker is stopped and replaced.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub cancel_grace: f64,
    /// On SIGINT/SIGTERM: how long running tasks get to finish before workers are stopped.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub shutdown_grace: f64,
    /// Use this Python interpreter for every app as is (skip building app environments).
    #[arg(long, env = "INFSH_PYTHON", value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Run JavaScript apps (kernel: node-*) with this `node` (default: `node` on PATH).
    #[arg(long, env = "INFSH_NODE", value_name = "PATH")]
    pub node: Option<PathBuf>,
    /// A secret for apps that declare it in inf.yml (repeatable). Also INFSH_SECRET_<KEY> variables and --secrets-file.
    #[arg(long = "secret", value_name = "KEY=VALUE")]
    pub secrets: Vec<String>,
    /// File of secrets, KEY=VALUE per line (blank lines and lines starting with # are skipped).
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
    /// When a task's stored state and stored files are on the disk: `full`
    /// flushes every commit and file before going on (survives a power
    /// loss); `relaxed` goes on once committed and flushes within a second
    /// (survives a crash or kill of infsh, not a power loss; about 0.5 ms
    /// less per call on a typical disk, and an fsync less per stored file).
    #[arg(long, value_enum, env = "INFSH_DURABILITY", default_value_t = DurabilityArg::Full)]
    pub durability: DurabilityArg,
    /// Threads for HTTP and task handling (the Python workers are processes
    /// of their own). Default: a quarter of the CPUs, 1 to 4.
    #[arg(long, env = "INFSH_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
}

/// `infsh serve --log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `infsh serve --durability` (see `infsh_store::Durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityArg {
    Full,
    Relaxed,
}

const SERVE_AFTER_HELP: &str = "\
Prints `infsh serving N apps on http://HOST:PORT` on stderr once it listens
(with --json: one line {\"url\": ..., \"apps\": [...]} on stdout). SIGINT or
SIGTERM stops taking requests, lets running tasks finish (--shutdown-grace),
stops the workers and exits 0; tasks still queued are kept and run after the
next start on the same --data-dir.

Logging: one line per finished task (task id, app:function, status,
duration, and the error), and a failed task's Python traceback with its task
id. INFSH_LOG sets what is logged, as a tracing filter: `warn` for warnings
and errors only, `debug` for everything infsh does, `infsh::task=off` to
drop the task lines (default `warn,infsh::task=info,infsh::serve=info`).

Precedence: --api-key, INFSH_API_KEYS and --api-keys-file are all accepted
together. Secrets: --secret wins over --secrets-file, which wins over
INFSH_SECRET_<KEY>.";

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints it once (only its digest is stored).
    Create(KeysCreateArgs),
    /// List keys (never the keys themselves).
    List(KeysListArgs),
    /// Revoke a key: from now on it gets 401.
    Revoke(KeysRevokeArgs),
}

#[derive(Debug, Args)]
pub struct KeysCreateArgs {
    /// A label for the key.
    #[arg(long)]
    pub name: String,
    /// A scope it gets (repeatable): apps:read, apps:execute, files:read,
    /// files:write, tasks:read, tasks:write, engines:read, engines:write,
    /// apikeys:write.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Expire after this long: 30d, 12h, 45m, 90s (default: never).
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// Its team (admin keys only; default: the caller's, `default` for admins).
    #[arg(long)]
    pub team: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct KeysListArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct KeysRevokeArgs {
    /// The key's id (from `keys list`).
    pub id: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Show a task: its status and output or error (--wait: follow it until it ends).
    Get(TaskGetArgs),
    /// Cancel a task: a queued one at once; a running one gets its app's on_cancel, then its worker is stopped.
    Cancel(TaskCancelArgs),
    /// List tasks, newest first, one page at a time (--all: every page).
    List(TaskListArgs),
}

#[derive(Debug, Args)]
pub struct TaskGetArgs {
    /// The task id.
    pub id: String,
    /// Follow the task until it ends, showing its progress and logs; exits like `app run`.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: download File outputs into this folder.
    #[arg(long, value_name = "DIR", requires = "wait")]
    pub output_dir: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct TaskCancelArgs {
    /// The task id.
    pub id: String,
    /// Wait until the task has really stopped (cancelled, or ended first).
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct TaskListArgs {
    /// Only tasks of this app (`namespace/name`).
    #[arg(long)]
    pub app: Option<String>,
    /// Only tasks in this status: a name (queued, running, completed, failed, cancelled...) or its number.
    #[arg(long)]
    pub status: Option<String>,
    /// Tasks per page.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    /// Start at this page (printed at the end of the previous one).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Fetch every page.
    #[arg(long, conflicts_with = "cursor")]
    pub all: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// The active sessions: id, app, worker, calls, expiry.
    List(SessionListArgs),
    /// Show one session (active, ended or expired, and why).
    Get(SessionIdArgs),
    /// Reset a session's idle timeout.
    Keepalive(SessionIdArgs),
    /// End a session, releasing its worker.
    End(SessionIdArgs),
}

#[derive(Debug, Args)]
pub struct SessionListArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct SessionIdArgs {
    /// The session id (`sess_…`).
    pub id: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// The server's slots (GPUs, VRAM, replicas, running tasks) and workers
    /// (--json: `{"engines": ..., "workers": ...}` as the API returns them).
    Status(EngineStatusArgs),
    /// Every engine of a server: its own and the remote ones (`infsh engine
    /// run`), with state, version, last heartbeat, apps and running tasks
    /// (--json: `GET /engines` as the API returns it).
    List(EngineStatusArgs),
    /// Run this machine as a remote engine of an API node: host --apps,
    /// connect out to --server, take its tasks and report them back
    /// (docs/deploy.md, "Engines").
    Run(Box<EngineRunArgs>),
}

/// `infsh engine run`.
#[derive(Debug, Args)]
pub struct EngineRunArgs {
    /// The API node's URL, e.g. https://api.example.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// An engine key the API node accepts (`infsh serve --engine-key`).
    #[arg(
        long,
        env = "INFSH_ENGINE_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub engine_key: String,
    /// This engine's name, unique in the fleet (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

#[derive(Debug, Args)]
pub struct EngineStatusArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The app folder.
    #[arg(default_value = ".")]
    pub app: PathBuf,
    /// Test only this function.
    #[arg(long, short)]
    pub function: Option<String>,
    /// Input for the tested function (with --function) or the default function, instead of its example file.
    #[arg(long, short, value_name = "FILE|JSON")]
    pub input: Option<String>,
    /// Setup config: a JSON file or inline JSON.
    #[arg(long, value_name = "FILE|JSON")]
    pub setup: Option<String>,
    /// Save each input used (given with --input, or generated from the schema) as the function's example file.
    #[arg(long)]
    pub save_example: bool,
    /// Give up on each call after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    pub timeout: Option<f64>,
    #[command(flatten)]
    pub env: EnvArgs,
}

/// A duration in seconds: a finite number above zero.
fn positive_seconds(raw: &str) -> Result<f64, String> {
    let secs: f64 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a number of seconds"))?;
    if secs.is_finite() && secs > 0.0 {
        Ok(secs)
    } else {
        Err(format!("{raw:?}: expected a number of seconds above zero"))
    }
}

/// `--run-at`: an RFC 3339 time, or `+DURATION` from now; answered as the
/// RFC 3339 UTC time the run body carries.
pub fn parse_run_at(text: &str) -> Result<String, String> {
    let t = text.trim();
    let ms = match t.strip_prefix('+') {
        Some(rest) => {
            let ahead = parse_retention(rest)?;
            infsh_store::now_ms().saturating_add(ahead.as_millis() as i64)
        }
        None => infsh_store::parse_timestamp(t).ok_or_else(|| {
            "expected an RFC 3339 time (2026-01-02T03:04:05Z) or +DURATION (+10m, +2h)".to_string()
        })?,
    };
    Ok(infsh_store::format_timestamp(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_must_be_finite_and_above_zero() {
        assert_eq!(positive_seconds("2.5"), Ok(2.5));
        for bad in ["0", "-1", "inf", "NaN", "abc"] {
            assert!(positive_seconds(bad).is_err(), "{bad}");
        }
        // Huge but finite is accepted; the deadline then simply never fires.
        assert_eq!(positive_seconds("1e300"), Ok(1e300));
    }

    #[test]
    fn run_at_is_an_rfc3339_time_or_a_duration_ahead() {
        assert_eq!(
            parse_run_at("2026-01-02T03:04:05+01:00").as_deref(),
            Ok("2026-01-02T02:04:05.000Z")
        );
        let ahead = parse_run_at("+10m").unwrap();
        let ms = infsh_store::parse_timestamp(&ahead).unwrap();
        let want = infsh_store::now_ms() + 600_000;
        assert!((want - 5_000..=want).contains(&ms), "{ahead}");
        for bad in ["tomorrow", "+0s", "+", "2026-13-01T00:00:00Z"] {
            assert!(parse_run_at(bad).is_err(), "{bad}");
        }
    }
}
