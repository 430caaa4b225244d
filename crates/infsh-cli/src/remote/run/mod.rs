//! `infsh app run` in remote mode (`--api-url` / `INFSH_API_URL`): look the
//! app up on the server, validate the input against the function's schema
//! here (same messages as a local run), upload local `File` paths, submit
//! the task, follow its stream, and print the result exactly as a local run
//! does (`--output-dir` downloads output files from their URIs).

mod describe;
mod download;
mod output_files;
mod report;
mod target;
mod upload;

use std::sync::Arc;

use anyhow::Result;
use infsh_core::validators::input_schema;
use serde_json::json;

pub use describe::describe_app;
pub use report::completed_report;
use target::parse_target;

use super::client::Remote;
use super::errors::RemoteError;
use super::follow::follow;
use super::interrupt::Interrupt;
use super::task;
use crate::cli::{GlobalArgs, RunArgs};
use crate::errors::{file_input_error, invalid_input, invalid_schema, resolve_error};
use crate::exit::{ExitCode, Failure};
use crate::input::parse_input_and_setup;
use crate::output;
use crate::ui::Ui;

/// How long a Ctrl-C during the submission waits for the task's id, to
/// cancel the task.
const SUBMIT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn run(args: RunArgs, global: &GlobalArgs, ui: Arc<Ui>, remote: Remote) -> Result<()> {
    let target = parse_target(&args.app)?;
    let function_name = args
        .function
        .clone()
        .or(target.app.function().map(str::to_string));
    // Parse what the user typed before touching the network.
    let (explicit_input, setup) =
        parse_input_and_setup(args.input.as_deref(), args.setup.as_deref())?;
    if args.setup_timeout.is_some() {
        ui.warn("--setup-timeout is ignored with --api-url: the server's --setup-timeout applies");
    }

    let phase = ui.phase("connect");
    let app = match describe_app(&remote, &target.id()).await {
        Ok(app) => {
            // What the phase timed: asking the server to describe the app
            // (the first time, the server may start the app to learn it).
            let n = app.functions.len();
            phase.finish(&format!(
                "{}: {n} function{} described by {}",
                target.id(),
                if n == 1 { "" } else { "s" },
                remote.base()
            ));
            app
        }
        Err(err) => {
            phase.fail("");
            return Err(err.into());
        }
    };
    let function = app
        .functions
        .resolve(function_name.as_deref())
        .map_err(resolve_error)?
        .clone();
    let input = match explicit_input {
        Some(input) => input,
        None => target::default_input(&target, &function.name, app.functions.default_name())?,
    };
    // The same validators and rules as a local run and the server: a
    // function whose schema does not compile is refused here (exit 3).
    let validator = app.validators.function(&function).map_err(invalid_schema)?;
    let mut input_value = input.value.clone();
    let local_files = infsh_core::files::resolve_local_paths(
        input_schema(&function),
        &mut input_value,
        &input.base_dir,
    )
    .map_err(file_input_error)?;
    validator.validate(&input_value).map_err(|errors| {
        invalid_input(
            &format!("input for function \"{}\"", function.name),
            &errors,
        )
    })?;
    if !local_files.is_empty() {
        upload::upload_local_files(&remote, &ui, &mut input_value, &local_files).await?;
    }

    let mut body = json!({
        "app": target.request_app(),
        "function": function.name,
        "input": input_value,
    });
    if let Some(setup) = &setup {
        body["setup"] = setup.value.clone();
    }
    if let Some(timeout) = args.timeout {
        body["timeout"] = json!(timeout);
    }
    if let Some(session) = &args.session {
        body["session"] = json!(session);
    }
    if let Some(timeout) = args.session_timeout {
        body["session_timeout"] = json!(timeout);
    }
    if let Some(run_at) = &args.run_at {
        body["run_at"] = json!(run_at);
    }
    // From here on a task may exist on the server: Ctrl-C cancels it, even
    // one that comes before the server has answered with its id.
    let mut interrupt = Interrupt::listen()?;
    let submit = remote.run(&body);
    tokio::pin!(submit);
    let submitted = tokio::select! {
        answer = &mut submit => answer,
        _ = interrupt.recv() => match tokio::time::timeout(SUBMIT_GRACE, &mut submit).await {
            Ok(answer) => {
                interrupt.replay();
                answer
            }
            Err(_) => {
                return Err(Failure::new(
                    ExitCode::Interrupted,
                    format!(
                        "interrupted while submitting the run of function {}; the server did not \
                         answer within {}s, so a task it may have started was not cancelled \
                         (see `infsh task list`)",
                        function.name,
                        SUBMIT_GRACE.as_secs()
                    ),
                )
                .into())
            }
        },
    }
    .map_err(RemoteError::into_failure)?;
    let id = task::id(&submitted).to_string();
    if id == "?" {
        return Err(Failure::new(
            ExitCode::Server,
            format!(
                "the server accepted the run but returned no task id: {}",
                super::snippet::snippet(&submitted.to_string())
            ),
        )
        .into());
    }
    let session = submitted
        .get("session_id")
        .and_then(|s| s.as_str())
        .map(str::to_string);
    if let Some(session) = session
        .as_deref()
        .filter(|_| args.session.as_deref() == Some("new"))
    {
        // On stderr (stdout stays the result), even with --quiet: the id
        // is what the user needs next. With --json it is in the report.
        if !global.json {
            eprintln!(
                "session {session}: continue it with --session {session}, end it with `infsh session end {session}`"
            );
        }
    }
    if args.detach {
        output::print_json_or(&submitted, global.json, || {
            println!("{id}");
            ui.info(&format!(
                "task {id} is {}; follow it with: infsh task get {id} --wait",
                task::status_name(task::status(&submitted))
            ));
        });
        return Ok(());
    }
    ui.info(&format!("task {id}"));
    // A little slack over the server-side limit, so the server's own
    // timeout (and its message) normally wins.
    let followed = follow(
        &remote,
        &id,
        &ui,
        &function.name,
        args.timeout.map(|t| t + 5.0),
        &mut interrupt,
    )
    .await?;
    let report = completed_report(
        &remote,
        &followed,
        &target.id(),
        &function.name,
        function.output_schema(),
        args.output_dir.as_deref(),
    )
    .await?;
    let mut report = report;
    if let (Some(session), Some(fields)) = (session, report.as_object_mut()) {
        fields.insert("session_id".into(), json!(session));
    }
    output::print_json_or(&report, global.json, || output::print_run_human(&report));
    Ok(())
}
