//! `infsh engine list`: every engine of a server, one row each: its own
//! (`local`) and the remote ones connected with `infsh engine run`
//! (`remote`), with state, version, last heartbeat, hosted apps (with a
//! short content hash; `!` marks a hash conflict) and running tasks. With
//! `--json`, `GET /engines` as the API gives it.

use anyhow::Result;
use serde_json::Value;

use super::engine::{dash_if_empty, layout_error, row, table, text};
use crate::cli::{EngineStatusArgs, GlobalArgs};
use crate::output;
use crate::remote;

pub async fn list(args: EngineStatusArgs, global: &GlobalArgs) -> Result<()> {
    let remote = remote::connect_server(args.server)?;
    let engines = remote
        .engines()
        .await
        .map_err(|e| layout_error(remote.base(), e))?;
    output::print_json_or(&engines, global.json, || {
        for line in render(&engines) {
            println!("{line}");
        }
    });
    Ok(())
}

fn render(engines: &Value) -> Vec<String> {
    let mut rows = vec![row(&[
        "NAME",
        "KIND",
        "STATE",
        "VERSION",
        "LAST HEARTBEAT",
        "APPS",
        "RUNNING",
    ])];
    for engine in engines.as_array().map(Vec::as_slice).unwrap_or_default() {
        let draining = engine.get("draining").and_then(Value::as_bool) == Some(true);
        let cells = match engine.get("remote").filter(|r| r.is_object()) {
            Some(remote) => vec![
                text(engine.get("name")),
                "remote".to_string(),
                text(remote.get("state")),
                text(remote.get("version")),
                text(remote.get("last_heartbeat")),
                dash_if_empty(apps(remote.get("apps"))),
                count(remote.get("running")),
            ],
            None => {
                let running: u64 = engine
                    .get("slots")
                    .and_then(Value::as_array)
                    .map(|slots| {
                        slots
                            .iter()
                            .filter_map(|s| s.get("running_tasks").and_then(Value::as_u64))
                            .sum()
                    })
                    .unwrap_or(0);
                vec![
                    text(engine.get("name")),
                    "local".to_string(),
                    if draining { "draining" } else { "online" }.to_string(),
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                    running.to_string(),
                ]
            }
        };
        rows.push(cells);
    }
    table(&rows)
}

/// `acme/flux@1a2b3c4d, acme/sd@5e6f7a8b!` (`!`: a hash conflict).
fn apps(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map(|apps| {
            apps.iter()
                .map(|a| {
                    let hash = text(a.get("hash"));
                    let short: String = hash.chars().take(8).collect();
                    let conflict = a.get("conflict").and_then(Value::as_bool) == Some(true);
                    format!(
                        "{}@{short}{}",
                        text(a.get("app")),
                        if conflict { "!" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn count(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map_or_else(|| "-".to_string(), |a| a.len().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn local_and_remote_engines_are_one_row_each() {
        let engines = json!([
            {"name": "api-1", "draining": false, "slots": [{"running_tasks": 2}]},
            {"name": "gpu-1", "draining": true, "slots": [], "remote": {
                "version": "0.1.0", "state": "draining", "last_heartbeat": "2026-12-07T00:00:00.000Z",
                "slots": [], "running": ["t1"],
                "apps": [{"app": "acme/flux", "hash": "0123456789abcdef", "conflict": true}]}}
        ]);
        assert_eq!(
            render(&engines),
            [
                "NAME   KIND    STATE     VERSION  LAST HEARTBEAT            APPS                 RUNNING",
                "api-1  local   online    -        -                         -                    2",
                "gpu-1  remote  draining  0.1.0    2026-12-07T00:00:00.000Z  acme/flux@01234567!  1",
            ]
        );
    }
}
