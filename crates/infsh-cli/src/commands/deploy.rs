//! `infsh app deploy [DIR]`: packs an app folder (crates/infsh-core's
//! `package`: `.infshignore`/`.gitignore` honoured, environments and caches
//! skipped) and uploads it as a new version of its app; the server builds
//! it and discovers its functions before it becomes current, and answers
//! with the traceback when the build or the import fails.
//! `infsh app versions|activate|remove` list, switch and remove versions.
//! See docs/deploy.md, "Versions".

use std::time::Duration;

use anyhow::Result;
use infsh_core::app::AppDir;
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{DeployArgs, GlobalArgs, VersionArgs, VersionsArgs};
use crate::exit::{ExitCode, Failure};
use crate::output;
use crate::remote::{self, errors::RemoteError};

/// How long a deploy waits for the server to build the version (an
/// environment with large packages takes minutes).
const BUILD_WAIT: Duration = Duration::from_secs(30 * 60);
/// Digits of a hash shown.
const SHORT: usize = 12;
/// The namespace of an app whose inf.yml names none (the server's).
const DEFAULT_NAMESPACE: &str = "local";

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(SHORT)]
}

/// `ns/name` as the server names the app of `dir`.
fn app_id(dir: &AppDir) -> String {
    let m = &dir.manifest;
    let clean = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let ns = clean(&m.namespace).unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let name = clean(&m.name).unwrap_or_else(|| dir.folder_name());
    format!("{ns}/{name}")
}

fn app_path(app: &str) -> Result<String, Failure> {
    match app.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(format!("/apps/{ns}/{name}/versions"))
        }
        _ => Err(Failure::new(
            ExitCode::Usage,
            format!("\"{app}\" is not an app id: give namespace/name"),
        )),
    }
}

pub async fn deploy(args: DeployArgs, global: &GlobalArgs) -> Result<()> {
    let dir = AppDir::open(&args.dir)
        .map_err(|e| Failure::new(ExitCode::AppLoad, format!("{}: {e}", args.dir.display())))?;
    let app = app_id(&dir);
    let root = dir.root.clone();
    let (hash, files, bytes) = tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        infsh_core::package::pack(&root, &mut bytes).map(|(hash, files)| (hash, files, bytes))
    })
    .await?
    .map_err(|e| Failure::new(ExitCode::AppLoad, format!("packing the app: {e}")))?;
    let packed = json!({
        "app": app,
        "version": hash,
        "files": files,
        "size_bytes": bytes.len(),
    });
    if args.dry_run {
        output::print_json_or(&packed, global.json, || {
            println!(
                "{app}: {} files, {} bytes, version {} (dry run: nothing uploaded)",
                files.len(),
                bytes.len(),
                short(&hash)
            );
            for f in &files {
                println!("  {f}");
            }
        });
        return Ok(());
    }
    let remote = remote::connect(&args.remote)?.ok_or_else(|| {
        Failure::new(
            ExitCode::Usage,
            "no server: pass --api-url URL or set INFSH_API_URL (or --dry-run)",
        )
    })?;
    if !global.json {
        eprintln!(
            "packed {app}: {} files, {} bytes, version {}",
            files.len(),
            bytes.len(),
            short(&hash)
        );
        eprintln!(
            "uploading to {} and building (environment, import, functions)...",
            remote.base()
        );
    }
    let query = [("activate", (!args.no_activate).to_string())];
    let version = remote
        .post_bytes(&app_path(&app)?, &query, bytes, BUILD_WAIT)
        .await
        .map_err(deploy_error)?;
    output::print_json_or(&version, global.json, || {
        let current = if version["current"] == json!(true) {
            "current"
        } else {
            "not current (--no-activate)"
        };
        println!(
            "{app}@{}: {}, {current}",
            text(&version, "short_id"),
            text(&version, "status")
        );
    });
    Ok(())
}

/// A failed build says why, with the app's traceback.
fn deploy_error(err: RemoteError) -> Failure {
    let traceback = err
        .problem()
        .and_then(|p| p.get("traceback"))
        .and_then(Value::as_str)
        .map(str::to_string);
    match (err.status(), traceback) {
        (Some(422), tb) => {
            let mut message = err.detail().unwrap_or("the build failed").to_string();
            if let Some(tb) = tb {
                message = format!("{message}\n{tb}");
            }
            Failure::new(ExitCode::AppLoad, message)
        }
        (Some(400 | 404 | 409), _) => Failure::new(
            ExitCode::Input,
            err.detail().unwrap_or("refused").to_string(),
        ),
        _ => err.into_failure(),
    }
}

fn version_error(err: RemoteError) -> Failure {
    match err.status() {
        Some(400 | 404 | 409) => Failure::new(
            ExitCode::Input,
            err.detail().unwrap_or("refused").to_string(),
        ),
        _ => err.into_failure(),
    }
}

pub async fn versions(args: VersionsArgs, global: &GlobalArgs) -> Result<()> {
    let path = app_path(&args.app)?;
    let remote = remote::connect_server(args.server)?;
    let list = remote.get(&path).await.map_err(version_error)?;
    output::print_json_or(&list, global.json, || {
        for v in list.as_array().into_iter().flatten() {
            let mark = if v["current"] == json!(true) {
                "*"
            } else {
                " "
            };
            println!(
                "{mark} {}  {:<8}  {}",
                text(v, "short_id"),
                text(v, "status"),
                text(v, "created_at")
            );
        }
    });
    Ok(())
}

pub async fn activate(args: VersionArgs, global: &GlobalArgs) -> Result<()> {
    let path = format!("{}/{}/current", app_path(&args.app)?, args.hash);
    let remote = remote::connect_server(args.server)?;
    let version = remote
        .call(Method::PUT, &path, &[], None)
        .await
        .map_err(version_error)?;
    output::print_json_or(&version, global.json, || {
        println!("{}@{}: current", args.app, text(&version, "short_id"));
    });
    Ok(())
}

pub async fn remove(args: VersionArgs, global: &GlobalArgs) -> Result<()> {
    let path = format!("{}/{}", app_path(&args.app)?, args.hash);
    let remote = remote::connect_server(args.server)?;
    remote
        .call(Method::DELETE, &path, &[], None)
        .await
        .map_err(version_error)?;
    let doc = json!({"app": args.app, "version": args.hash, "removed": true});
    output::print_json_or(&doc, global.json, || {
        println!("{}@{}: removed", args.app, args.hash);
    });
    Ok(())
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}
