//! `infsh gc [--retention D] [--file-retention F] [--dry-run]` (issue 15):
//! what `serve --retention` / `--file-retention` sweep, once, against a
//! data folder (or `--store`, `--files`) with no server running: ended tasks
//! older than D, with their logs and the stored files their input and output
//! name; then files older than F that no task left names. `--dry-run` only
//! counts.

use std::io::Write;
use std::sync::Arc;

use anyhow::Result;
use infsh_store::{Durability, FileStore, SqliteStore, TaskStore};
use serde_json::json;

use crate::cli::{GcArgs, GlobalArgs};
use crate::exit::{ExitCode, Failure};

pub async fn gc(args: GcArgs, global: &GlobalArgs) -> Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(crate::commands::serve::config::default_data_dir);
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        Failure::new(ExitCode::Internal, format!("{what}: {e}"))
    };
    let store: Arc<dyn TaskStore> = match crate::commands::serve::store::open(
        args.store.as_deref(),
        Durability::Full,
        false,
        "gc",
    )
    .await?
    {
        Some(opened) => opened.tasks,
        None => {
            let db = data_dir.join("infsh.db");
            if !db.is_file() {
                return Err(Failure::new(
                    ExitCode::Usage,
                    format!("--data-dir {}: no infsh.db in it", data_dir.display()),
                )
                .into());
            }
            Arc::new(
                SqliteStore::open_with_async(&db, Durability::Full)
                    .await
                    .map_err(|e| internal(&format!("cannot open {}", db.display()), &e))?,
            )
        }
    };
    let files = match crate::commands::serve::files::open(args.files.as_deref()).await? {
        Some(backend) => FileStore::on(backend, store.clone()),
        None => FileStore::open(data_dir.join("files"), store.clone()),
    }
    .map_err(|e| internal("cannot open the files folder", &e))?;
    let (mut n_tasks, mut n_files, mut bytes) = (0usize, 0u64, 0u64);
    if let Some(retention) = args.retention {
        let cutoff = infsh_store::now_ms()
            .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let ids = store
            .ended_tasks_before(cutoff, i64::MAX as usize)
            .await
            .map_err(|e| internal("cannot list ended tasks", &e))?;
        n_tasks = ids.len();
        for id in &ids {
            let Some(task) = store.get_task(id).await? else {
                continue;
            };
            let mut seen: Vec<String> = Vec::new();
            for (_, file_id) in infsh_engine::task_file_ids(&task) {
                if seen.contains(&file_id) {
                    continue;
                }
                if let Ok(Some((record, _))) = files.get(&file_id).await {
                    n_files += 1;
                    bytes += record.size.unwrap_or(0);
                    if !args.dry_run {
                        files.remove(&file_id).await?;
                    }
                }
                seen.push(file_id);
            }
            if !args.dry_run {
                store.delete_task(id).await?;
            }
        }
    }
    let unreferenced = match args.file_retention {
        Some(retention) => {
            let cutoff = infsh_store::now_ms()
                .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
            let old = infsh_engine::unreferenced_files_before(store.as_ref(), cutoff)
                .await
                .map_err(|e| internal("cannot list unreferenced files", &e))?;
            let old_bytes: u64 = old.iter().map(|f| f.size.unwrap_or(0)).sum();
            if !args.dry_run {
                for f in &old {
                    files.remove(&f.id).await?;
                }
            }
            Some((old.len(), old_bytes))
        }
        None => None,
    };
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut out = std::io::stdout().lock();
    if global.json {
        let mut doc =
            json!({"dry_run": args.dry_run, "tasks": n_tasks, "files": n_files, "bytes": bytes});
        if let Some((n, b)) = unreferenced {
            doc["unreferenced_files"] = json!(n);
            doc["unreferenced_bytes"] = json!(b);
        }
        writeln!(out, "{doc}")?;
    } else {
        if args.retention.is_some() {
            writeln!(
                out,
                "{verb} {n_tasks} task(s) and {n_files} file(s), {bytes} bytes"
            )?;
        }
        if let Some((n, b)) = unreferenced {
            writeln!(out, "{verb} {n} unreferenced file(s), {b} bytes")?;
        }
    }
    Ok(())
}
