//! `infsh app run` in remote mode (`--api-url` / `INFSH_API_URL`): look the
//! app up on the server, validate the input against the function's schema
//! here (same messages as a local run), upload local `File` paths, submit
//! the task, follow its stream, and print the result exactly as a local run
//! does (`--output-dir` downloads output files from their URIs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use infsh_core::app::AppDir;
use infsh_core::functions::FunctionSet;
use infsh_core::validators::input_schema;
use infsh_core::FunctionValidators;
use infsh_core::{AppRef, AppRefError, TaskStatus};
use infsh_protocol::FunctionInfo;
use serde_json::{json, Map, Value};

use super::client::Remote;
use super::errors::RemoteError;
use super::follow::{follow, Followed};
use super::task;
use crate::cli::{GlobalArgs, RunArgs};
use crate::errors::{file_input_error, invalid_input, invalid_schema, resolve_error};
use crate::exit::{ExitCode, Failure};
use crate::input::{parse_input_and_setup, JsonArg};
use crate::output;
use crate::ui::Ui;

/// Which app (and maybe function) APP names on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteTarget {
    /// `ns/name[@version][:function]`, parsed by infsh-core's rules.
    pub app: AppRef,
    /// A local app folder APP pointed at (for its examples).
    pub local: Option<PathBuf>,
}

impl RemoteTarget {
    /// `ns/name`: the app's id on the server.
    pub fn id(&self) -> String {
        self.app.id()
    }

    /// What `app` in the run request says: `ns/name[@version]`.
    pub fn request_app(&self) -> String {
        self.app.without_function().to_string()
    }
}

/// `ns/name`, `ns/name@version`, `ns/name:function`, `ns/name@version:function`
/// ([`AppRef`]), or a local app folder (optionally `folder:function`) whose
/// inf.yml names the app. A server is asked for `GET /apps/{ns}/{name}`,
/// so the namespace is needed.
pub fn parse_target(raw: &str) -> Result<RemoteTarget, Failure> {
    let (path, function) = crate::app_arg::split_app_function(raw);
    if path.join("inference.py").is_file() || path.join("inf.yml").is_file() {
        let app = AppDir::open(&path).map_err(crate::errors::app_error)?;
        let id = app.display_name();
        let named: AppRef = id.parse().map_err(|e| {
            Failure::new(
                ExitCode::Input,
                format!(
                    "{} names its app {id:?}, which a server cannot host: {e}",
                    app.root.display()
                ),
            )
        })?;
        if named.namespace().is_none() {
            return Err(Failure::new(
                ExitCode::Input,
                format!(
                    "{} has no namespace in inf.yml, so it has no id on a server; run it as NAMESPACE/{id}",
                    app.root.display()
                ),
            ));
        }
        return Ok(RemoteTarget {
            app: named.with_function(function),
            local: Some(app.root),
        });
    }
    let not_an_id = |why: String| {
        Failure::new(
            ExitCode::Input,
            format!(
                "{why}; with --api-url, APP is the app's id on the server (NAMESPACE/NAME, optionally @VERSION and :FUNCTION) or a local app folder"
            ),
        )
    };
    let app: AppRef = raw
        .parse()
        .map_err(|e: AppRefError| not_an_id(e.to_string()))?;
    if app.namespace().is_none() {
        return Err(not_an_id(format!(
            "\"{raw}\" is neither NAMESPACE/NAME nor an app folder"
        )));
    }
    Ok(RemoteTarget { app, local: None })
}

/// An app as the server describes it: its functions and default, and the
/// validators of their input (as the server compiles them).
pub struct RemoteApp {
    pub functions: FunctionSet,
    pub validators: FunctionValidators,
}

/// `GET /v1/apps/{ns}/{name}` → the app's functions (from `functions`, the
/// content of functions_schema.json, at the top level or under `detail`).
pub async fn describe_app(remote: &Remote, id: &str) -> Result<RemoteApp, Failure> {
    let detail = remote.app(id).await.map_err(|e| match e {
        RemoteError::Api {
            status: 404,
            detail,
            ..
        } => Failure::new(ExitCode::Input, detail),
        other => other.into_failure(),
    })?;
    let summary = detail.get("summary").unwrap_or(&detail);
    let functions_value = detail
        .get("functions")
        .filter(|f| f.is_object())
        .or_else(|| detail.get("functions_schema").filter(|f| f.is_object()));
    let Some(Value::Object(map)) = functions_value else {
        return Err(Failure::new(
            ExitCode::Server,
            format!(
                "the server described app {id} without its functions: {}",
                super::snippet::snippet(&detail.to_string())
            ),
        ));
    };
    let infos: Vec<FunctionInfo> = map
        .iter()
        .map(|(name, entry)| FunctionInfo {
            name: name.clone(),
            streaming: entry
                .get("streaming")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            is_async: true,
            accepts_metadata: false,
            entry: entry.clone(),
        })
        .collect();
    let default = summary
        .get("default_function")
        .or_else(|| detail.get("default_function"))
        .and_then(Value::as_str);
    let setup_schema = detail
        .get("setup_schema")
        .filter(|s| !s.is_null())
        .cloned()
        .unwrap_or_else(|| json!({}));
    Ok(RemoteApp {
        functions: FunctionSet::new(infos, default),
        validators: FunctionValidators::new(setup_schema),
    })
}

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
            phase.finish(&format!("{} · {}", target.id(), remote.base()));
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
        None => default_input(&target, &function.name, app.functions.default_name())?,
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
        upload_local_files(&remote, &ui, &mut input_value, &local_files).await?;
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
    let submitted = remote.run(&body).await?;
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
    output::print_json_or(&report, global.json, || output::print_run_human(&report));
    Ok(())
}

/// The local app folder's example for the function, else `{}`.
fn default_input(
    target: &RemoteTarget,
    function: &str,
    default_function: Option<&str>,
) -> Result<JsonArg, Failure> {
    if let Some(folder) = &target.local {
        let app = AppDir::open(folder).map_err(crate::errors::app_error)?;
        return crate::example_input::default_input(&app, function, default_function);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    Ok(JsonArg {
        value: json!({}),
        base_dir: cwd,
        origin: "empty input".into(),
    })
}

/// Uploads every local-path `File` value and puts its `uri` in its place.
async fn upload_local_files(
    remote: &Remote,
    ui: &Arc<Ui>,
    input: &mut Value,
    pointers: &[String],
) -> Result<(), Failure> {
    let phase = ui.phase("upload");
    let mut count = 0usize;
    for pointer in pointers {
        let Some(value) = input.pointer_mut(pointer) else {
            continue;
        };
        let result = match value {
            Value::String(path) => match remote.upload(Path::new(path.as_str())).await {
                Ok(uri) => {
                    *value = Value::String(uri);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Value::Object(map) => upload_in_object(remote, map).await,
            _ => Ok(()),
        };
        if let Err(err) = result {
            phase.fail("");
            return Err(err.into_failure());
        }
        count += 1;
    }
    phase.finish(&format!(
        "{count} file{}",
        if count == 1 { "" } else { "s" }
    ));
    Ok(())
}

/// `{"path": "/local"}` or `{"uri": "/local"}` → `{"uri": "<uploaded>"}`, other keys kept.
async fn upload_in_object(
    remote: &Remote,
    map: &mut Map<String, Value>,
) -> Result<(), RemoteError> {
    let local = ["path", "uri"].iter().find_map(|k| {
        map.get(*k)
            .and_then(Value::as_str)
            .filter(|s| !infsh_core::files::is_remote(s) && Path::new(s).is_file())
            .map(str::to_string)
    });
    if let Some(path) = local {
        let uri = remote.upload(Path::new(&path)).await?;
        map.remove("path");
        map.insert("uri".into(), Value::String(uri));
    }
    Ok(())
}

/// The `app run` report of a finished task: the same keys as a local run
/// (`files` entries carry `uri` instead of a local `path`), or the failure.
pub async fn completed_report(
    remote: &Remote,
    followed: &Followed,
    app: &str,
    function: &str,
    output_schema: Option<&Value>,
    output_dir: Option<&Path>,
) -> Result<Value, Failure> {
    let terminal = &followed.task;
    if task::status(terminal) != Some(TaskStatus::Completed) {
        let failure = task::failure(terminal);
        return Err(match &followed.traceback {
            Some(traceback) => failure.with_traceback(traceback.clone()),
            None => failure,
        });
    }
    let output = terminal.get("output").cloned().unwrap_or(Value::Null);
    let files = output_files(output_schema, &output);
    let copied = match output_dir {
        Some(dir) => download_files(remote, &files, dir).await?,
        None => vec![None; files.len()],
    };
    let files_report: Vec<Value> = files
        .iter()
        .zip(&copied)
        .map(|(file, copied)| {
            let mut entry = json!({
                "pointer": file.pointer,
                "path": copied,
                "uri": file.uri,
                "filename": file.filename,
                "content_type": file.content_type,
                "size": file.size,
            });
            if let Some(target) = copied {
                entry["copied_to"] = json!(target);
            }
            entry
        })
        .collect();
    Ok(json!({
        "status": "completed",
        "app": app,
        "function": function,
        "task_id": task::id(terminal),
        "output": output,
        "files": files_report,
        "snapshots": followed.snapshots,
        "timings": {
            "queued_seconds": followed.queued_seconds,
            "run_seconds": followed.run_seconds,
            "total_seconds": followed.total_seconds,
        },
    }))
}

/// A `File` of a remote output.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteFile {
    pub pointer: String,
    pub uri: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub size: Option<u64>,
}

/// The output's files: found by the output schema when there is one, else
/// every object that looks like a stored file (`uri` plus `filename`,
/// `content_type` or `size`).
pub fn output_files(schema: Option<&Value>, output: &Value) -> Vec<RemoteFile> {
    let fields: Vec<(String, Value)> = match schema {
        Some(schema) => infsh_core::files::file_fields(schema, output)
            .into_iter()
            .map(|f| (f.pointer, f.value))
            .collect(),
        None => {
            let mut found = Vec::new();
            find_file_like(output, String::new(), &mut found);
            found
        }
    };
    fields
        .into_iter()
        .filter_map(|(pointer, value)| {
            let (uri, filename, content_type, size) = match &value {
                Value::String(s) => (s.clone(), None, None, None),
                Value::Object(map) => (
                    map.get("uri").and_then(Value::as_str)?.to_string(),
                    map.get("filename")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    map.get("content_type")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    map.get("size").and_then(Value::as_u64),
                ),
                _ => return None,
            };
            if uri.is_empty() {
                return None;
            }
            Some(RemoteFile {
                pointer,
                uri,
                filename,
                content_type,
                size,
            })
        })
        .collect()
}

fn find_file_like(value: &Value, pointer: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            let looks_like_file = map.get("uri").is_some_and(Value::is_string)
                && ["filename", "content_type", "size"]
                    .iter()
                    .any(|k| map.contains_key(*k));
            if looks_like_file {
                out.push((pointer, value.clone()));
                return;
            }
            for (key, child) in map {
                find_file_like(child, infsh_core::pointer::push(&pointer, key), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                find_file_like(
                    child,
                    infsh_core::pointer::push(&pointer, &i.to_string()),
                    out,
                );
            }
        }
        _ => {}
    }
}

async fn download_files(
    remote: &Remote,
    files: &[RemoteFile],
    dir: &Path,
) -> Result<Vec<Option<PathBuf>>, Failure> {
    crate::output_dir::create(dir)?;
    let mut copied = Vec::new();
    for file in files {
        let name = file
            .filename
            .clone()
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .or_else(|| {
                file.uri
                    .split(['?', '#'])
                    .next()
                    .and_then(|u| u.rsplit('/').next())
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "output".into());
        let target = crate::output_dir::unique_target(dir, &name);
        remote
            .download(&file.uri, &target)
            .await
            .map_err(|e| e.into_failure())?;
        copied.push(Some(target));
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_are_parsed() {
        let r = parse_target("tests/multi-fn").unwrap();
        assert_eq!(
            (r.id().as_str(), r.app.version(), r.app.function()),
            ("tests/multi-fn", None, None)
        );
        let r = parse_target("tests/multi-fn@1.2:upscale").unwrap();
        assert_eq!(r.id(), "tests/multi-fn");
        assert_eq!(r.app.version(), Some("1.2"));
        assert_eq!(r.app.function(), Some("upscale"));
        assert_eq!(r.request_app(), "tests/multi-fn@1.2");
        let r = parse_target("ns/app:run").unwrap();
        assert_eq!((r.id().as_str(), r.app.function()), ("ns/app", Some("run")));
        let err = parse_target("just-a-name").unwrap_err();
        assert_eq!(err.code, ExitCode::Input);
        assert_eq!(
            err.message,
            "\"just-a-name\" is neither NAMESPACE/NAME nor an app folder; with --api-url, APP is the app's id on the server (NAMESPACE/NAME, optionally @VERSION and :FUNCTION) or a local app folder"
        );
        let err = parse_target("a/b/c").unwrap_err();
        assert_eq!(err.code, ExitCode::Input);
        // The message is infsh-core's, with the CLI's alternative.
        assert_eq!(
            err.message,
            format!(
                "{}; with --api-url, APP is the app's id on the server (NAMESPACE/NAME, optionally @VERSION and :FUNCTION) or a local app folder",
                "a/b/c".parse::<AppRef>().unwrap_err()
            )
        );
    }

    #[test]
    fn a_local_app_folder_names_its_app() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inference.py"), "").unwrap();
        std::fs::write(dir.path().join("inf.yml"), "namespace: me\nname: thing\n").unwrap();
        let r = parse_target(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(r.id(), "me/thing");
        assert!(r.local.is_some());
        let r = parse_target(&format!("{}:go", dir.path().display())).unwrap();
        assert_eq!(
            (r.id().as_str(), r.app.function()),
            ("me/thing", Some("go"))
        );
        assert_eq!(r.request_app(), "me/thing");
        std::fs::write(dir.path().join("inf.yml"), "name: thing\n").unwrap();
        let err = parse_target(dir.path().to_str().unwrap()).unwrap_err();
        assert_eq!(err.code, ExitCode::Input);
        assert!(
            err.message.contains(
                " has no namespace in inf.yml, so it has no id on a server; run it as NAMESPACE/"
            ),
            "{}",
            err.message
        );
    }

    #[test]
    fn output_files_by_schema_and_by_shape() {
        let output = json!({
            "image": {"uri": "http://h/files/f1/a.png", "filename": "a.png", "content_type": "image/png", "size": 3},
            "files": [{"uri": "http://h/files/f2/one.txt", "filename": "one.txt"}],
            "label": "x",
        });
        let found = output_files(None, &output);
        let pointers: Vec<&str> = found.iter().map(|f| f.pointer.as_str()).collect();
        assert_eq!(pointers, vec!["/image", "/files/0"]);
        assert_eq!(found[0].size, Some(3));
        let schema = json!({
            "type": "object",
            "properties": {"image": {"type": "string", "format": "file"}},
        });
        let found = output_files(Some(&schema), &json!({"image": "http://h/files/f1/a.png"}));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].uri, "http://h/files/f1/a.png");
    }
}
