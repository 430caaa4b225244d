//! `infsh app run`: one call of one function, locally.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use infsh_protocol::OutputFile;
use serde_json::{json, Value};

use crate::app_arg::split_app_function;
use crate::cli::{GlobalArgs, RunArgs};
use crate::example_input::default_input;
use crate::exit::{ExitCode, Failure};
use crate::input::{parse_input_and_setup, JsonArg};
use crate::local_app::LocalApp;
use crate::paths::Paths;
use crate::ui::Ui;
use crate::{output, output_dir};

pub async fn run(args: RunArgs, global: &GlobalArgs, ui: Arc<Ui>) -> Result<()> {
    // --api-url / INFSH_API_URL: run on a server instead (src/remote/run/).
    if let Some(remote) = crate::remote::connect(&args.remote)? {
        return crate::remote::run::run(args, global, ui, remote).await;
    }
    if args.detach {
        return Err(Failure::new(
            ExitCode::Usage,
            "--detach needs a server: pass --api-url URL or set INFSH_API_URL",
        )
        .into());
    }
    if args.run_at.is_some() {
        return Err(Failure::new(
            ExitCode::Usage,
            "--run-at needs a server (it keeps the task until then): \
             pass --api-url URL or set INFSH_API_URL, e.g. against `infsh serve`",
        )
        .into());
    }
    if args.session.is_some() {
        // A local run's worker ends with the command: there is nothing to
        // keep between two runs.
        return Err(Failure::new(
            ExitCode::Usage,
            "--session needs a server (a local run's worker ends with the command): \
             pass --api-url URL or set INFSH_API_URL, e.g. against `infsh serve`",
        )
        .into());
    }
    let (app_path, function_in_app) = split_app_function(&args.app);
    let function_name = args.function.clone().or(function_in_app);
    // Parse what the user typed before starting Python: a typo fails in milliseconds.
    let (explicit_input, setup) =
        parse_input_and_setup(args.input.as_deref(), args.setup.as_deref())?;
    let paths = Paths::new(global.cache_dir.clone());

    let local = LocalApp::open(&app_path, &args.env, &paths, &ui).await?;
    let result = call_once(
        &local,
        &args,
        &paths,
        function_name.as_deref(),
        explicit_input,
        setup.as_ref(),
    )
    .await;
    match result {
        Ok(report) => {
            local.close().await;
            output::print_json_or(&report, global.json, || output::print_run_human(&report));
            Ok(())
        }
        Err(err) => {
            local.kill().await;
            Err(err)
        }
    }
}

async fn call_once(
    local: &LocalApp,
    args: &RunArgs,
    paths: &Paths,
    function_name: Option<&str>,
    explicit_input: Option<JsonArg>,
    setup: Option<&JsonArg>,
) -> Result<Value> {
    let function = local.function(function_name)?;
    let input = match explicit_input {
        Some(input) => input,
        None => default_input(&local.app, &function.name, local.functions.default_name())?,
    };
    let input_value = local.prepare_input(function, &input)?;
    let setup_time = local.setup(setup, args.setup_timeout).await?;
    let mut snapshots = 0usize;
    let mut outcome = local
        .call(function, input_value, args.timeout, |_snapshot| {
            snapshots += 1;
        })
        .await?;
    // The files are in the call's scratch folder, removed with `outcome`:
    // copied out first, to --output-dir or a folder of their own.
    let copied = if outcome.files.iter().any(|f| f.path.is_some()) {
        let dir = match &args.output_dir {
            Some(dir) => dir.clone(),
            None => paths.new_outputs_dir(),
        };
        copy_output_files(&outcome.files, &dir)?
    } else {
        Vec::new()
    };
    point_output_at_copies(outcome.output.value_mut(), &outcome.files, &copied);
    Ok(json!({
        "status": "completed",
        "app": local.app.display_name(),
        "function": function.name,
        "output": outcome.output,
        "files": files_report(&outcome.files, &copied),
        "snapshots": snapshots,
        "timings": {"setup_seconds": setup_time.as_secs_f64(), "run_seconds": outcome.seconds},
    }))
}

fn copy_output_files(files: &[OutputFile], dir: &Path) -> Result<Vec<Option<PathBuf>>, Failure> {
    output_dir::create(dir)?;
    let mut copied = Vec::new();
    for file in files {
        let Some(path) = file.path.as_deref() else {
            copied.push(None);
            continue;
        };
        let source = Path::new(path);
        let name = file
            .filename
            .clone()
            .or_else(|| source.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "output".into());
        let target = output_dir::unique_target(dir, &name);
        std::fs::copy(source, &target).map_err(|e| {
            Failure::new(
                ExitCode::Internal,
                format!(
                    "cannot copy output file {path} to {}: {e}",
                    target.display()
                ),
            )
        })?;
        copied.push(Some(target));
    }
    Ok(copied)
}

/// The output's File objects name the copies: the files the app wrote are
/// gone with its scratch folder once the run ends.
fn point_output_at_copies(output: &mut Value, files: &[OutputFile], copied: &[Option<PathBuf>]) {
    for (file, target) in files.iter().zip(copied) {
        if let (Some(target), Some(Value::Object(object))) =
            (target, output.pointer_mut(&file.pointer))
        {
            object.insert("path".into(), json!(target));
        }
    }
}

fn files_report(files: &[OutputFile], copied: &[Option<PathBuf>]) -> Value {
    Value::Array(
        files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                // `path`: where the app wrote it (removed after the run).
                let mut entry = json!({
                    "pointer": f.pointer,
                    "path": f.path,
                    "filename": f.filename,
                    "content_type": f.content_type,
                    "size": f.size,
                });
                if let Some(Some(target)) = copied.get(i) {
                    entry["copied_to"] = json!(target);
                }
                entry
            })
            .collect(),
    )
}
