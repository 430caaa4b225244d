//! `infsh app run`: one call of one function, locally.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use infsh_core::app::AppDir;
use infsh_protocol::OutputFile;
use serde_json::{json, Value};

use crate::cli::{GlobalArgs, RunArgs};
use crate::exit::{ExitCode, Failure};
use crate::input::{parse_input_and_setup, read_json_file, JsonArg};
use crate::output;
use crate::paths::Paths;
use crate::session::AppSession;
use crate::ui::Ui;

pub async fn run(args: RunArgs, global: &GlobalArgs, ui: Arc<Ui>) -> Result<()> {
    // --api-url / INFSH_API_URL: run on a server instead (src/remote/run.rs).
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
    let (app_path, function_in_app) = split_app_function(&args.app);
    let function_name = args.function.clone().or(function_in_app);
    // Parse what the user typed before starting Python: a typo fails in milliseconds.
    let (explicit_input, setup) =
        parse_input_and_setup(args.input.as_deref(), args.setup.as_deref())?;
    let paths = Paths::new(global.cache_dir.clone());

    let session = AppSession::open(&app_path, &args.env, &paths, &ui).await?;
    let result = call_once(
        &session,
        &args,
        function_name.as_deref(),
        explicit_input,
        setup.as_ref(),
    )
    .await;
    match result {
        Ok(report) => {
            session.close().await;
            output::print_json_or(&report, global.json, || output::print_run_human(&report));
            Ok(())
        }
        Err(err) => {
            session.kill().await;
            Err(err)
        }
    }
}

async fn call_once(
    session: &AppSession,
    args: &RunArgs,
    function_name: Option<&str>,
    explicit_input: Option<JsonArg>,
    setup: Option<&JsonArg>,
) -> Result<Value> {
    let function = session.function(function_name)?;
    let input = match explicit_input {
        Some(input) => input,
        None => default_input(
            &session.app,
            &function.name,
            session.functions.default_name(),
        )?,
    };
    let input_value = session.prepare_input(function, &input)?;
    let setup_time = session.setup(setup, args.setup_timeout).await?;
    let mut snapshots = 0usize;
    let outcome = session
        .call(function, input_value, args.timeout, |_snapshot| {
            snapshots += 1;
        })
        .await?;
    let copied = match &args.output_dir {
        Some(dir) => copy_output_files(&outcome.files, dir)?,
        None => Vec::new(),
    };
    Ok(json!({
        "status": "completed",
        "app": session.app.display_name(),
        "function": function.name,
        "output": outcome.output,
        "files": files_report(&outcome.files, &copied),
        "snapshots": snapshots,
        "timings": {"setup_seconds": setup_time.as_secs_f64(), "run_seconds": outcome.seconds},
    }))
}

/// `./app:upscale` names a function (split by infsh-core's rule for
/// `:function`, [`infsh_core::split_function`]); a path that exists as
/// written is never split, nor is one whose `:` could not start a function.
pub(crate) fn split_app_function(raw: &str) -> (PathBuf, Option<String>) {
    if Path::new(raw).exists() {
        return (PathBuf::from(raw), None);
    }
    match infsh_core::split_function(raw) {
        Ok((app, Some(function))) => (PathBuf::from(app), Some(function.to_string())),
        _ => (PathBuf::from(raw), None),
    }
}

/// The app's own example for the function, else an empty object.
pub fn default_input(
    app: &AppDir,
    function: &str,
    default_function: Option<&str>,
) -> Result<JsonArg, Failure> {
    if let Some(path) = example_path(app, function, default_function) {
        return read_json_file(&path, "example input");
    }
    Ok(JsonArg {
        value: json!({}),
        base_dir: app.root.clone(),
        origin: "empty input".into(),
    })
}

/// `input_<fn>.json`, or `input.json` for the default function.
pub fn example_path(
    app: &AppDir,
    function: &str,
    default_function: Option<&str>,
) -> Option<PathBuf> {
    let examples = app.examples();
    examples
        .iter()
        .find(|e| e.function.as_deref() == Some(function))
        .or_else(|| {
            if default_function == Some(function) {
                examples.iter().find(|e| e.function.is_none())
            } else {
                None
            }
        })
        .map(|e| e.path.clone())
}

fn copy_output_files(files: &[OutputFile], dir: &Path) -> Result<Vec<Option<PathBuf>>, Failure> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Failure::new(
            ExitCode::Internal,
            format!("--output-dir: cannot create {}: {e}", dir.display()),
        )
    })?;
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
        let target = unique_target(dir, &name);
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

/// `out.png`, then `out-1.png`, `out-2.png`... so two outputs never overwrite each other.
pub(crate) fn unique_target(dir: &Path, name: &str) -> PathBuf {
    let candidate = dir.join(name);
    if !candidate.exists() {
        return candidate;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_string(), format!(".{ext}")),
        _ => (name.to_string(), String::new()),
    };
    (1..)
        .map(|n| dir.join(format!("{stem}-{n}{ext}")))
        .find(|p| !p.exists())
        .expect("an unused name exists")
}

fn files_report(files: &[OutputFile], copied: &[Option<PathBuf>]) -> Value {
    Value::Array(
        files
            .iter()
            .enumerate()
            .map(|(i, f)| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_function_suffix_is_split_only_when_the_path_does_not_exist() {
        assert_eq!(
            split_app_function("./nope:upscale"),
            (PathBuf::from("./nope"), Some("upscale".into()))
        );
        assert_eq!(split_app_function("."), (PathBuf::from("."), None));
        assert_eq!(
            split_app_function("./nope:sub/dir"),
            (PathBuf::from("./nope:sub/dir"), None)
        );
    }

    #[test]
    fn unique_target_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"x").unwrap();
        std::fs::write(dir.path().join("a-1.png"), b"x").unwrap();
        assert_eq!(
            unique_target(dir.path(), "a.png"),
            dir.path().join("a-2.png")
        );
        assert_eq!(unique_target(dir.path(), "b"), dir.path().join("b"));
    }
}
