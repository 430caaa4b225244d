//! `infsh app functions` and `infsh app schema`: what the app exposes, read
//! from a worker that imported it (no setup runs, so no model loads).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use console::style;
use serde_json::{json, Value};

use crate::cli::{GlobalArgs, InspectArgs};
use crate::local_app::{input_schema, output_schema, LocalApp};
use crate::output;
use crate::paths::Paths;
use crate::ui::Ui;

pub async fn functions(args: InspectArgs, global: &GlobalArgs, ui: Arc<Ui>) -> Result<()> {
    let paths = Paths::new(global.cache_dir.clone());
    let local = LocalApp::open(&args.app, &args.env, &paths, &ui).await?;
    let schema = local.functions.functions_schema();
    let default = local.functions.default_name();
    let rows: Vec<(String, String, String)> = local
        .ready
        .functions
        .iter()
        .map(|f| {
            let mut kind = if f.streaming {
                "stream"
            } else if f.is_async {
                "async"
            } else {
                "sync"
            }
            .to_string();
            if default == Some(f.name.as_str()) {
                kind.push_str(", default");
            }
            let description = f.description().lines().next().unwrap_or("").to_string();
            (f.name.clone(), kind, description)
        })
        .collect();
    local.close().await;
    output::print_json_or(&schema, global.json, || {
        let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        for (name, kind, description) in &rows {
            println!(
                "{:<width$}  {:<16} {}",
                style(name).bold(),
                style(format!("({kind})")).dim(),
                description
            );
        }
    });
    Ok(())
}

pub async fn schema(args: InspectArgs, global: &GlobalArgs, ui: Arc<Ui>) -> Result<()> {
    let paths = Paths::new(global.cache_dir.clone());
    let local = LocalApp::open(&args.app, &args.env, &paths, &ui).await?;
    let root = local.app.root.clone();
    let functions_schema = local.functions.functions_schema();
    let default = local.functions.default_name().and_then(|name| {
        local
            .ready
            .functions
            .iter()
            .find(|f| f.name == name)
            .map(|f| (input_schema(f).clone(), output_schema(f).clone()))
    });
    let setup_schema = local.ready.setup_schema.clone();
    local.close().await;

    let mut written = vec![write_schema(
        &root,
        "functions_schema.json",
        &functions_schema,
    )?];
    if let Some((input, output_schema)) = default {
        written.push(write_schema(&root, "input_schema.json", &input)?);
        written.push(write_schema(&root, "output_schema.json", &output_schema)?);
    } else {
        ui.warn("no default function (set default_function in inf.yml or define `run`): input_schema.json and output_schema.json not written");
    }
    written.push(write_schema(&root, "setup_schema.json", &setup_schema)?);
    let report = json!({"written": written});
    output::print_json_or(&report, global.json, || {
        for path in &written {
            println!("wrote {path}");
        }
    });
    Ok(())
}

/// Two-space indented JSON with a final newline, as the platform's tooling writes it.
fn write_schema(root: &Path, name: &str, value: &Value) -> Result<String> {
    let path = root.join(name);
    let text = serde_json::to_string_pretty(value)? + "\n";
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}
