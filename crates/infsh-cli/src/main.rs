//! The `infsh` binary: parse the command line, run the command, turn the
//! result into an exit status. Commands live in `commands/`; the mapping of
//! failures to exit codes in `exit.rs` and `errors.rs`.

mod app_arg;
mod cli;
mod commands;
mod deadline;
mod env_phase;
mod errors;
mod example_input;
mod examples;
mod exit;
mod input;
mod local_app;
mod node_env;
mod output;
mod output_dir;
mod paths;
mod remote;
mod ui;

use clap::Parser;

use crate::cli::{
    AppCommand, Cli, Command, EngineCommand, KeysCommand, LogFormat, SessionCommand, TaskCommand,
};
use crate::exit::{ExitCode, Failure};
use crate::remote::errors::RemoteError;

fn main() {
    let cli = Cli::parse();
    init_tracing(&cli.command);
    let json_mode = cli.global.json;
    let threads = match &cli.command {
        Command::Serve(args) => args.worker.threads.map(usize::from),
        Command::Engine(EngineCommand::Run(args)) => args.worker.threads.map(usize::from),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.unwrap_or_else(default_threads))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(dispatch(cli));
    // Dropping the runtime ends every task (and with them any worker handle)
    // before the process exits, so no worker outlives us.
    drop(runtime);
    let code = match result {
        Ok(()) => ExitCode::Ok,
        Err(err) => {
            let failure = match err.downcast::<Failure>() {
                Ok(failure) => failure,
                // Commands map server errors themselves; one that slipped
                // through still gets its own exit code and words.
                Err(other) => match other.downcast::<RemoteError>() {
                    Ok(remote) => remote.into_failure(),
                    Err(other) => Failure::new(ExitCode::Internal, format!("{other:#}")),
                },
            };
            output::print_failure(&failure, json_mode);
            failure.code
        }
    };
    std::process::exit(code as i32);
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    let ui = ui::Ui::new(global.json, global.quiet);
    match cli.command {
        Command::App(command) => match command {
            AppCommand::Init(args) => commands::init::init(args, &global),
            AppCommand::Functions(args) => commands::inspect::functions(args, &global, ui).await,
            AppCommand::Schema(args) => commands::inspect::schema(args, &global, ui).await,
            AppCommand::Run(args) => commands::run::run(args, &global, ui).await,
            AppCommand::Test(args) => commands::test::test(args, &global, ui).await,
            AppCommand::Dev(args) => commands::dev::dev(args, &global).await,
            AppCommand::Deploy(args) => commands::deploy::deploy(args, &global).await,
            AppCommand::Versions(args) => commands::deploy::versions(args, &global).await,
            AppCommand::Activate(args) => commands::deploy::activate(args, &global).await,
            AppCommand::Remove(args) => commands::deploy::remove(args, &global).await,
        },
        Command::Serve(args) => commands::serve::serve(*args, &global).await,
        Command::Task(command) => match command {
            TaskCommand::Get(args) => commands::task::get(args, &global, ui).await,
            TaskCommand::Cancel(args) => commands::task::cancel(args, &global, ui).await,
            TaskCommand::List(args) => commands::task::list(args, &global).await,
        },
        Command::Session(command) => match command {
            SessionCommand::List(args) => commands::session::list(args, &global).await,
            SessionCommand::Get(args) => commands::session::get(args, &global).await,
            SessionCommand::Keepalive(args) => commands::session::keepalive(args, &global).await,
            SessionCommand::End(args) => commands::session::end(args, &global).await,
        },
        Command::Engine(command) => match command {
            EngineCommand::Status(args) => commands::engine::status(args, &global).await,
            EngineCommand::List(args) => commands::engine_list::list(args, &global).await,
            EngineCommand::Run(args) => commands::engine_run::run(args, &global).await,
        },
        Command::Keys(command) => match command {
            KeysCommand::Create(args) => commands::keys::create(args, &global).await,
            KeysCommand::List(args) => commands::keys::list(args, &global).await,
            KeysCommand::Revoke(args) => commands::keys::revoke(args, &global).await,
        },
        Command::Gc(args) => commands::gc::gc(args, &global).await,
        Command::Completion(args) => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(args.shell, &mut command, "infsh", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Async threads by default: a quarter of the CPUs, 1 to 4. The heavy work
/// is in the Python workers, each a process that wants a core of its own;
/// what is left here (HTTP, validation, dispatch) is light. Fewer threads
/// also mean fewer cross-thread wake-ups per call (measured in
/// docs/performance.md, "What the defaults of `infsh serve` are worth").
fn default_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / 4).clamp(1, 4)
}

/// `INFSH_LOG=debug` shows infsh's own tracing on stderr. Quiet by default,
/// except that `infsh serve` logs a line per finished task (target
/// `infsh::task`); `serve --log-format json` writes JSON lines.
fn init_tracing(command: &Command) {
    let (default, json) = match command {
        Command::Serve(args) => (
            "warn,infsh::task=info,infsh::serve=info",
            args.log_format == LogFormat::Json,
        ),
        _ => ("warn", false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("INFSH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
