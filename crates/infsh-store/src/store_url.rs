//! [`StoreUrl`]: which database a `--store` URL names, and the URL as it may
//! be shown (its password redacted), so every message about a store names
//! it without leaking a secret.

use std::path::PathBuf;
use std::str::FromStr;

use crate::StoreError;

/// A parsed `--store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite:///abs/path/infsh.db` (or `sqlite://relative/path`).
    Sqlite(PathBuf),
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?OPTIONS]` (also
    /// `postgresql://`), kept as given: the driver parses it.
    Postgres(String),
}

impl StoreUrl {
    /// Parses a `--store` value. A bad one is [`StoreError::BadUrl`], whose
    /// message names the (redacted) URL.
    pub fn parse(url: &str) -> Result<StoreUrl, StoreError> {
        let bad = |message: String| StoreError::BadUrl {
            url: redact(url),
            message,
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad(
                "not a store URL: use sqlite:///PATH or postgres://USER@HOST/DB".into(),
            ));
        };
        match scheme {
            "sqlite" => {
                if rest.is_empty() {
                    return Err(bad("no database file after sqlite://".into()));
                }
                Ok(StoreUrl::Sqlite(PathBuf::from(rest)))
            }
            "postgres" | "postgresql" => {
                tokio_postgres::Config::from_str(url)
                    .map_err(|e| bad(crate::error::describe_postgres(&e)))?;
                Ok(StoreUrl::Postgres(url.to_string()))
            }
            other => Err(bad(format!(
                "unknown store scheme \"{other}\": use sqlite:///PATH or postgres://USER@HOST/DB"
            ))),
        }
    }

    /// The URL as it may be printed or logged.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            StoreUrl::Postgres(url) => redact(url),
        }
    }
}

/// `url` with the password of its user info and any `password=` option
/// replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect::<Vec<_>>()
                .join("&");
            format!("{path}?{query}")
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:s3cret@db:5432/infsh"),
            "postgres://u:***@db:5432/infsh"
        );
        assert_eq!(
            redact("postgres://u@db/infsh?password=x&sslmode=disable"),
            "postgres://u@db/infsh?password=***&sslmode=disable"
        );
        assert_eq!(redact("postgres://db/infsh"), "postgres://db/infsh");
        assert_eq!(
            redact("postgres://u:p:q@[::1]:1/d"),
            "postgres://u:***@[::1]:1/d"
        );
    }

    #[test]
    fn schemes() {
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/infsh.db").unwrap(),
            StoreUrl::Sqlite("/var/lib/infsh.db".into())
        );
        assert_eq!(
            StoreUrl::parse("postgresql://u@h/d").unwrap(),
            StoreUrl::Postgres("postgresql://u@h/d".into())
        );
        let e = StoreUrl::parse("mysql://u:pw@h/d").unwrap_err();
        assert_eq!(
            e.to_string(),
            "mysql://u:***@h/d: unknown store scheme \"mysql\": use sqlite:///PATH or postgres://USER@HOST/DB"
        );
        let e = StoreUrl::parse("/var/lib/infsh.db").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/var/lib/infsh.db: not a store URL: use sqlite:///PATH or postgres://USER@HOST/DB"
        );
        assert_eq!(
            StoreUrl::parse("sqlite://").unwrap_err().to_string(),
            "sqlite://: no database file after sqlite://"
        );
        let e = StoreUrl::parse("postgres://u:pw@h:notaport/d").unwrap_err();
        assert!(
            e.to_string().starts_with("postgres://u:***@h:notaport/d: "),
            "{e}"
        );
        assert!(!e.to_string().contains("pw"), "{e}");
    }
}
