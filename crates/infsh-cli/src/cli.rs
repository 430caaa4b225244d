//! The command-line grammar: every command, flag and environment fallback.
//! Kept apart from the code that runs commands so `--help` reads as one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// infsh: run multi-function inference apps (inference.sh style) locally.
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
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Scaffold a working multi-function app in a new folder NAME.
    Init(InitArgs),
    /// List the app's functions (--json: the functions_schema.json content).
    Functions(InspectArgs),
    /// Write functions_schema.json, input/output_schema.json and setup_schema.json into the app folder.
    Schema(InspectArgs),
    /// Run one function of an app.
    Run(RunArgs),
    /// Run the app's examples (input.json, input_<fn>.json) for every function, with one setup.
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder to create; its last component becomes the app name.
    pub name: PathBuf,
    /// Namespace written into inf.yml.
    #[arg(long, default_value = "local")]
    pub namespace: String,
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
    /// The app folder.
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
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Give up on setup after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub setup_timeout: Option<f64>,
    #[command(flatten)]
    pub env: EnvArgs,
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
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    #[command(flatten)]
    pub env: EnvArgs,
}
