//! `infsh app test`: every function's example, against one worker that ran
//! `setup` once, each output checked against the function's output schema.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use console::style;
use infsh_core::validate::InputValidator;
use infsh_protocol::FunctionInfo;
use serde_json::{json, Value};

use crate::cli::{GlobalArgs, TestArgs};
use crate::example_input::{default_input, example_path};
use crate::examples::synthesize;
use crate::exit::{ExitCode, Failure};
use crate::input::{parse_input_and_setup, JsonArg};
use crate::local_app::{input_schema, output_schema, LocalApp};
use crate::output;
use crate::paths::Paths;
use crate::ui::Ui;

/// One function's verdict.
struct Outcome {
    function: String,
    status: &'static str,
    seconds: f64,
    input_source: String,
    detail: Option<String>,
    output: Option<Value>,
}

pub async fn test(args: TestArgs, global: &GlobalArgs, ui: Arc<Ui>) -> Result<()> {
    let (explicit_input, setup) =
        parse_input_and_setup(args.input.as_deref(), args.setup.as_deref())?;
    let paths = Paths::new(global.cache_dir.clone());
    let local = LocalApp::open(&args.app, &args.env, &paths, &ui).await?;
    let result = test_all(&local, &args, explicit_input, setup.as_ref(), &ui).await;
    let (outcomes, setup_seconds, crashed) = match result {
        Ok(done) => done,
        Err(err) => {
            local.kill().await;
            return Err(err);
        }
    };
    let app_name = local.app.display_name();
    if crashed {
        local.kill().await;
    } else {
        local.close().await;
    }

    let failed = outcomes.iter().filter(|o| o.status == "failed").count();
    let passed = outcomes.iter().filter(|o| o.status == "passed").count();
    let skipped = outcomes.iter().filter(|o| o.status == "skipped").count();
    let report = json!({
        "status": if failed == 0 { "passed" } else { "failed" },
        "app": app_name,
        "setup_seconds": setup_seconds,
        "passed": passed, "failed": failed, "skipped": skipped,
        "results": outcomes.iter().map(|o| json!({
            "function": o.function, "status": o.status, "seconds": o.seconds,
            "input": o.input_source, "detail": o.detail, "output": o.output,
        })).collect::<Vec<_>>(),
    });
    output::print_json_or(&report, global.json, || {
        for o in &outcomes {
            let mark = match o.status {
                "passed" => style("✓").green(),
                "failed" => style("✗").red(),
                _ => style("-").dim(),
            };
            let detail = o
                .detail
                .as_deref()
                .map(|d| format!("  {d}"))
                .unwrap_or_default();
            println!(
                "{mark} {:<20} {:>8.3}s  {}{detail}",
                o.function,
                o.seconds,
                style(&o.input_source).dim()
            );
        }
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    });
    if failed > 0 {
        let mut failure = Failure::new(
            ExitCode::Function,
            format!("{failed} of {} functions failed", outcomes.len()),
        );
        failure.report_printed = true;
        return Err(failure.into());
    }
    Ok(())
}

async fn test_all(
    local: &LocalApp,
    args: &TestArgs,
    explicit_input: Option<JsonArg>,
    setup: Option<&JsonArg>,
    ui: &Arc<Ui>,
) -> Result<(Vec<Outcome>, f64, bool)> {
    let targets: Vec<&FunctionInfo> = match &args.function {
        Some(name) => vec![local.function(Some(name))?],
        None => local.ready.functions.iter().collect(),
    };
    let default_name = local.functions.default_name().map(str::to_string);
    let explicit_target = args.function.clone().or(default_name.clone());
    let setup_seconds = local.setup(setup, None).await?.as_secs_f64();

    let mut outcomes = Vec::new();
    let mut crashed = false;
    for function in targets {
        let name = function.name.clone();
        if crashed {
            outcomes.push(skipped(&name, "not run: the worker died earlier".into()));
            continue;
        }
        // Input: --input for its target, else the example file, else one made from the schema.
        let (input, source, generated) = match (&explicit_input, explicit_target.as_deref()) {
            (Some(input), Some(target)) if target == name => {
                (input.clone(), input.origin.clone(), true)
            }
            _ => match example_path(&local.app, &name, default_name.as_deref()) {
                Some(path) => {
                    let input = default_input(&local.app, &name, default_name.as_deref())?;
                    let shown = path
                        .strip_prefix(&local.app.root)
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    (input, shown, false)
                }
                None => match synthesize(input_schema(function)) {
                    Ok(value) => (
                        JsonArg {
                            value,
                            base_dir: local.app.root.clone(),
                            origin: "generated".into(),
                        },
                        "generated from schema".into(),
                        true,
                    ),
                    Err(reason) => {
                        outcomes.push(skipped(
                            &name,
                            format!("no example: {}; add input_{name}.json", reason.0),
                        ));
                        continue;
                    }
                },
            },
        };
        if args.save_example && generated {
            let path = local.app.root.join(format!("input_{name}.json"));
            let text = serde_json::to_string_pretty(&input.value)? + "\n";
            std::fs::write(&path, text)?;
            ui.info(&format!("saved example {}", path.display()));
        }
        let started = Instant::now();
        let verdict = run_one(local, function, &input, args.timeout).await;
        let seconds = started.elapsed().as_secs_f64();
        outcomes.push(match verdict {
            Ok(output) => Outcome {
                function: name,
                status: "passed",
                seconds,
                input_source: source,
                detail: None,
                output: Some(output),
            },
            Err(failure) => {
                if matches!(failure.code, ExitCode::WorkerCrashed | ExitCode::Timeout) {
                    crashed = true;
                }
                if failure.code == ExitCode::Interrupted {
                    return Err(failure.into());
                }
                if let Some(tb) = &failure.traceback {
                    eprintln!("{}", tb.trim_end());
                }
                Outcome {
                    function: name,
                    status: "failed",
                    seconds,
                    input_source: source,
                    detail: Some(failure.message),
                    output: None,
                }
            }
        });
    }
    Ok((outcomes, setup_seconds, crashed))
}

async fn run_one(
    local: &LocalApp,
    function: &FunctionInfo,
    input: &JsonArg,
    timeout: Option<f64>,
) -> Result<Value, Failure> {
    let value = local.prepare_input(function, input).map_err(into_failure)?;
    let outcome = local
        .call(function, value, timeout, |_| {})
        .await
        .map_err(into_failure)?;
    let validator = InputValidator::compile(output_schema(function)).map_err(|e| {
        Failure::new(
            ExitCode::Internal,
            format!("output schema does not compile: {e}"),
        )
    })?;
    let output = outcome.output.into_value();
    if let Err(errors) = validator.validate(&output) {
        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(Failure::new(
            ExitCode::Function,
            format!(
                "output does not match the output schema: {}",
                list.join("; ")
            ),
        ));
    }
    Ok(output)
}

fn into_failure(err: anyhow::Error) -> Failure {
    match err.downcast::<Failure>() {
        Ok(f) => f,
        Err(other) => Failure::new(ExitCode::Internal, format!("{other:#}")),
    }
}

fn skipped(function: &str, reason: String) -> Outcome {
    Outcome {
        function: function.to_string(),
        status: "skipped",
        seconds: 0.0,
        input_source: String::new(),
        detail: Some(reason),
        output: None,
    }
}
