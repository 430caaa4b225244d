//! `infsh keys create|list|revoke`: keys created at run time, over HTTP
//! with an admin key (or a key with `apikeys:write`): `POST /v1/apikeys`,
//! `POST /v1/apikeys/list`, `DELETE /v1/apikeys/{id}`. Over HTTP rather
//! than on the store directly: the server checks the caller's own scopes,
//! and one command works for a single node and for a fleet sharing
//! PostgreSQL alike (docs/security.md).

use anyhow::Result;
use reqwest::Method;
use serde_json::{json, Value};

use super::engine::{row, table, text};
use crate::cli::{GlobalArgs, KeysCreateArgs, KeysListArgs, KeysRevokeArgs};
use crate::exit::{ExitCode, Failure};
use crate::output;
use crate::remote;

pub async fn create(args: KeysCreateArgs, global: &GlobalArgs) -> Result<()> {
    let mut body = json!({"name": args.name, "scopes": args.scopes});
    if let Some(expires) = &args.expires {
        body["expires_in_seconds"] = json!(parse_duration(expires)?);
    }
    if let Some(team) = &args.team {
        body["team"] = json!(team);
    }
    let remote = remote::connect_server(args.server)?;
    let key = remote
        .call(Method::POST, "/v1/apikeys", &[], Some(&body))
        .await
        .map_err(Failure::from)?;
    output::print_json_or(&key, global.json, || {
        println!("{}", text(key.get("key")));
        eprintln!(
            "created key {} ({}), scopes: {}; it is shown this once",
            text(key.get("id")),
            text(key.get("name")),
            scopes(key.get("scopes"))
        );
    });
    Ok(())
}

pub async fn list(args: KeysListArgs, global: &GlobalArgs) -> Result<()> {
    let remote = remote::connect_server(args.server)?;
    let keys = remote
        .call(Method::POST, "/v1/apikeys/list", &[], None)
        .await
        .map_err(Failure::from)?;
    output::print_json_or(&keys, global.json, || {
        let mut rows = vec![row(&[
            "ID", "NAME", "TEAM", "SCOPES", "CREATED", "EXPIRES", "REVOKED",
        ])];
        for k in keys.as_array().map(Vec::as_slice).unwrap_or_default() {
            rows.push(vec![
                text(k.get("id")),
                text(k.get("name")),
                text(k.get("team")),
                scopes(k.get("scopes")),
                text(k.get("created_at")),
                text(k.get("expires_at")),
                text(k.get("revoked_at")),
            ]);
        }
        for line in table(&rows) {
            println!("{line}");
        }
    });
    Ok(())
}

pub async fn revoke(args: KeysRevokeArgs, global: &GlobalArgs) -> Result<()> {
    let remote = remote::connect_server(args.server)?;
    let key = remote
        .call(
            Method::DELETE,
            &format!("/v1/apikeys/{}", args.id),
            &[],
            None,
        )
        .await
        .map_err(Failure::from)?;
    output::print_json_or(&key, global.json, || {
        println!("revoked key {}", text(key.get("id")));
    });
    Ok(())
}

fn scopes(v: Option<&Value>) -> String {
    let names: Vec<&str> = v
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "-".to_string()
    } else {
        names.join(",")
    }
}

/// `30d`, `12h`, `45m`, `90s` or plain seconds, as seconds.
fn parse_duration(text: &str) -> Result<u64, Failure> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && factor > 0 => Ok(n.saturating_mul(factor)),
        _ => Err(Failure::new(
            ExitCode::Usage,
            format!("--expires {text}: expected a positive duration such as 30d, 12h, 45m or 90s"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_duration("12h").unwrap(), 12 * 3600);
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(
            parse_duration("0d").unwrap_err().message,
            "--expires 0d: expected a positive duration such as 30d, 12h, 45m or 90s"
        );
        assert!(parse_duration("3y").is_err());
        assert!(parse_duration("d").is_err());
    }
}
