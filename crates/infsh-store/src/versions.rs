//! App versions (`infsh app deploy`): their records and SQLite statements
//! (PostgreSQL's are in `postgres/versions.rs`). A version is named by the
//! content hash of its package; which version of an app is current is a
//! row of its own, so switching is one statement.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::StoreError;

/// What became of a deployed version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionStatus {
    /// Its environment is being built, its functions discovered.
    Building,
    /// Built and imported: it may become current.
    Ready,
    /// The build or the import failed: it never becomes current.
    Failed,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Building => "building",
            VersionStatus::Ready => "ready",
            VersionStatus::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<VersionStatus> {
        match s {
            "building" => Some(VersionStatus::Building),
            "ready" => Some(VersionStatus::Ready),
            "failed" => Some(VersionStatus::Failed),
            _ => None,
        }
    }
}

/// One stored version of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppVersionRecord {
    /// `namespace/name`.
    pub app: String,
    /// Lowercase hex SHA-256 of the package's content.
    pub hash: String,
    pub size_bytes: u64,
    pub status: VersionStatus,
    /// Why the build or the import failed (with the traceback).
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// What the build discovered (a JSON object: the worker's `ready`
    /// message, inf.yml's default function and listing fields), so that
    /// every node on the store can validate runs of it; None while
    /// building, after a failure, or for a version stored before
    /// migration 0010.
    pub functions: Option<Value>,
}

pub(crate) const VERSION_COLUMNS: &str =
    "app, hash, size_bytes, status, error, created_at_ms, updated_at_ms, functions";

/// A row of [`VERSION_COLUMNS`], whichever database it came from.
pub(crate) struct RawVersion {
    pub app: String,
    pub hash: String,
    pub size_bytes: i64,
    pub status: String,
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub functions: Option<String>,
}

impl RawVersion {
    pub(crate) fn decode(self) -> Result<AppVersionRecord, StoreError> {
        let status = VersionStatus::parse(&self.status).ok_or_else(|| StoreError::Corrupt {
            id: format!("{}@{}", self.app, self.hash),
            message: format!("unknown version status \"{}\"", self.status),
        })?;
        let functions = self
            .functions
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                id: format!("{}@{}", self.app, self.hash),
                message: format!("unreadable version functions: {e}"),
            })?;
        Ok(AppVersionRecord {
            app: self.app,
            hash: self.hash,
            size_bytes: u64::try_from(self.size_bytes).unwrap_or(0),
            status,
            error: self.error,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            functions,
        })
    }
}

/// The `functions` column's text.
pub(crate) fn functions_text(functions: Option<&Value>) -> Option<String> {
    functions.map(Value::to_string)
}

pub(crate) fn not_found(app: &str, hash: &str) -> StoreError {
    StoreError::NotFound {
        kind: "app version",
        id: format!("{app}@{hash}"),
    }
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawVersion> {
    Ok(RawVersion {
        app: row.get(0)?,
        hash: row.get(1)?,
        size_bytes: row.get(2)?,
        status: row.get(3)?,
        error: row.get(4)?,
        created_at_ms: row.get(5)?,
        updated_at_ms: row.get(6)?,
        functions: row.get(7)?,
    })
}

/// Stores a new version; false (and nothing changed) when the app has
/// that hash already.
pub(crate) fn insert(conn: &Connection, v: &AppVersionRecord) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(&format!(
            "INSERT INTO app_versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (app, hash) DO NOTHING"
        ))?
        .execute(params![
            v.app,
            v.hash,
            i64::try_from(v.size_bytes).unwrap_or(i64::MAX),
            v.status.as_str(),
            v.error,
            v.created_at_ms,
            v.updated_at_ms,
            functions_text(v.functions.as_ref())
        ])?;
    Ok(n == 1)
}

/// What a build's step changes in its version: the status, the error,
/// what it discovered (None clears it: a build again, a failure).
#[derive(Debug, Clone, PartialEq)]
pub struct VersionOutcome {
    pub status: VersionStatus,
    pub error: Option<String>,
    pub functions: Option<Value>,
    pub at_ms: i64,
}

impl VersionOutcome {
    /// A status without an error or functions (building again).
    pub fn status(status: VersionStatus, at_ms: i64) -> VersionOutcome {
        VersionOutcome {
            status,
            error: None,
            functions: None,
            at_ms,
        }
    }
}

pub(crate) fn set_status(
    conn: &Connection,
    app: &str,
    hash: &str,
    outcome: &VersionOutcome,
) -> Result<AppVersionRecord, StoreError> {
    conn.prepare_cached(
        "UPDATE app_versions SET status = ?3, error = ?4, updated_at_ms = ?5, functions = ?6 \
         WHERE app = ?1 AND hash = ?2",
    )?
    .execute(params![
        app,
        hash,
        outcome.status.as_str(),
        outcome.error,
        outcome.at_ms,
        functions_text(outcome.functions.as_ref())
    ])?;
    get(conn, app, hash)?.ok_or_else(|| not_found(app, hash))
}

pub(crate) fn get(
    conn: &Connection,
    app: &str,
    hash: &str,
) -> Result<Option<AppVersionRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM app_versions WHERE app = ?1 AND hash = ?2"
    ))?
    .query_row([app, hash], from_row)
    .optional()?
    .map(RawVersion::decode)
    .transpose()
}

pub(crate) fn list(conn: &Connection, app: &str) -> Result<Vec<AppVersionRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM app_versions WHERE app = ?1 \
         ORDER BY created_at_ms DESC, hash"
    ))?
    .query_map([app], from_row)?
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .map(RawVersion::decode)
    .collect()
}

/// Makes `hash` the app's current version, in one statement (it takes
/// the row only if the version exists). `NotFound` when the app has no such
/// version (the caller checks it is ready).
pub(crate) const SET_CURRENT_SQL: &str =
    "INSERT INTO app_current_versions (app, hash, updated_at_ms) \
     SELECT app, hash, {at} FROM app_versions WHERE app = {app} AND hash = {hash} \
     ON CONFLICT (app) DO UPDATE SET hash = excluded.hash, updated_at_ms = excluded.updated_at_ms";

pub(crate) fn set_current(
    conn: &Connection,
    app: &str,
    hash: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    let sql = SET_CURRENT_SQL
        .replace("{app}", "?1")
        .replace("{hash}", "?2")
        .replace("{at}", "?3");
    let n = conn
        .prepare_cached(&sql)?
        .execute(params![app, hash, at_ms])?;
    if n == 0 {
        return Err(not_found(app, hash));
    }
    Ok(())
}

/// Every app's current version: `(app, hash)`, by app.
pub(crate) fn all_current(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT app, hash FROM app_current_versions ORDER BY app")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?)
}

pub(crate) fn current(conn: &Connection, app: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT hash FROM app_current_versions WHERE app = ?1")?
        .query_row([app], |row| row.get(0))
        .optional()?)
}

/// Deletes a version's record; false when there was none or it is the
/// current one (the caller refuses that first with a clear answer; this
/// only closes the race with a switch).
pub(crate) fn delete(conn: &Connection, app: &str, hash: &str) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "DELETE FROM app_versions WHERE app = ?1 AND hash = ?2 AND NOT EXISTS \
             (SELECT 1 FROM app_current_versions c WHERE c.app = ?1 AND c.hash = ?2)",
        )?
        .execute([app, hash])?;
    Ok(n == 1)
}
