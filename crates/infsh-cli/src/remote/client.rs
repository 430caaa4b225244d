//! A small HTTP client for the inference.sh API as `infsh serve` speaks it
//! (docs/http-api.md): JSON requests with `Authorization: Bearer KEY`,
//! `{"data": ..., "messages": []}` envelopes, RFC 9457 problem JSON on
//! errors, the NDJSON task stream, and file uploads through signed URLs.
//!
//! Everything here returns [`RemoteError`]; `errors.rs` turns those into the
//! CLI's exit codes.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::errors::RemoteError;
use super::snippet::snippet;

/// Routes, in one place (the `/v1` aliases of the server's routes).
mod routes {
    pub const RUN: &str = "/v1/run";
    pub const FILES: &str = "/v1/files";
    pub const TASKS: &str = "/v1/tasks";
    pub const ENGINES: &str = "/v1/engines";
    pub const WORKERS: &str = "/v1/workers";
    pub const SESSIONS: &str = "/v1/sessions";

    pub fn app(id: &str) -> String {
        format!("/v1/apps/{id}")
    }
    pub fn task(id: &str) -> String {
        format!("/v1/tasks/{}", super::encode_segment(id))
    }
    pub fn stream(id: &str) -> String {
        format!("/v1/tasks/{}/stream", super::encode_segment(id))
    }
    pub fn cancel(id: &str) -> String {
        format!("/v1/tasks/{}/cancel", super::encode_segment(id))
    }
    pub fn session(id: &str) -> String {
        format!("/v1/sessions/{}", super::encode_segment(id))
    }
    pub fn keepalive(id: &str) -> String {
        format!("/v1/sessions/{}/keepalive", super::encode_segment(id))
    }
}

/// How long a plain API call may take (the server answers runs at once).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one server.
#[derive(Clone)]
pub struct Remote {
    http: reqwest::Client,
    /// `scheme://host[:port][/prefix]`, without a trailing slash or `/v1`.
    base: String,
    api_key: Option<String>,
}

impl Remote {
    /// `url` is what the user gave: `http://host:8080`, with or without a
    /// trailing `/` or `/v1`.
    pub fn new(url: &str, api_key: Option<String>) -> Result<Remote, RemoteError> {
        let base = normalize_base(url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("infsh/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| RemoteError::Client {
                url: base.clone(),
                source,
            })?;
        Ok(Remote {
            http,
            base,
            api_key: api_key.filter(|k| !k.is_empty()),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn authed(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    /// One API call; returns the `data` of the envelope (or the bare body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, RemoteError> {
        let url = self.url(path);
        let mut builder = self
            .authed(self.http.request(method, &url))
            .timeout(CALL_TIMEOUT)
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            builder = builder.query(query);
        }
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| RemoteError::unreachable(&url, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| RemoteError::unreachable(&url, e))?;
        if !status.is_success() {
            return Err(RemoteError::from_response(status, &text));
        }
        if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
            return Ok(Value::Null);
        }
        let payload: Value =
            serde_json::from_str(&text).map_err(|source| RemoteError::NotJson {
                url: url.clone(),
                body: snippet(&text),
                source,
            })?;
        Ok(unwrap_envelope(payload))
    }

    /// Posts raw bytes (an app package) and waits up to `limit` for the
    /// answer (a deploy answers once the server built the version).
    pub async fn post_bytes(
        &self,
        path: &str,
        query: &[(&str, String)],
        bytes: Vec<u8>,
        limit: Duration,
    ) -> Result<Value, RemoteError> {
        let url = self.url(path);
        let response = self
            .authed(self.http.post(&url))
            .timeout(limit)
            .query(query)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| RemoteError::unreachable(&url, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| RemoteError::unreachable(&url, e))?;
        if !status.is_success() {
            return Err(RemoteError::from_response(status, &text));
        }
        let payload: Value =
            serde_json::from_str(&text).map_err(|source| RemoteError::NotJson {
                url: url.clone(),
                body: snippet(&text),
                source,
            })?;
        Ok(unwrap_envelope(payload))
    }

    pub async fn get(&self, path: &str) -> Result<Value, RemoteError> {
        self.call(Method::GET, path, &[], None).await
    }

    /// `GET /v1/apps/{ns}/{name}`: the app with its functions' schemas.
    pub async fn app(&self, id: &str) -> Result<Value, RemoteError> {
        self.get(&routes::app(id)).await
    }

    /// `POST /v1/run`: the task, created and queued.
    pub async fn run(&self, body: &Value) -> Result<Value, RemoteError> {
        self.call(Method::POST, routes::RUN, &[], Some(body)).await
    }

    pub async fn task(&self, id: &str) -> Result<Value, RemoteError> {
        self.get(&routes::task(id)).await
    }

    pub async fn cancel(&self, id: &str) -> Result<Value, RemoteError> {
        self.call(Method::POST, &routes::cancel(id), &[], None)
            .await
    }

    /// One page of tasks, newest first: `(items, next_cursor)`.
    pub async fn list(
        &self,
        query: &[(&str, String)],
    ) -> Result<(Vec<Value>, Option<String>), RemoteError> {
        let url = self.url(routes::TASKS);
        let data = self.call(Method::GET, routes::TASKS, query, None).await?;
        parse_page(data).ok_or_else(|| RemoteError::Protocol {
            url,
            message: "the task list is neither a list nor {items, next_cursor}".into(),
        })
    }

    /// `GET /v1/sessions`: the active sessions.
    pub async fn sessions(&self) -> Result<Value, RemoteError> {
        self.get(routes::SESSIONS).await
    }

    pub async fn session(&self, id: &str) -> Result<Value, RemoteError> {
        self.get(&routes::session(id)).await
    }

    pub async fn keepalive_session(&self, id: &str) -> Result<Value, RemoteError> {
        self.call(Method::POST, &routes::keepalive(id), &[], None)
            .await
    }

    /// `DELETE /v1/sessions/{id}` (204).
    pub async fn end_session(&self, id: &str) -> Result<(), RemoteError> {
        self.call(Method::DELETE, &routes::session(id), &[], None)
            .await
            .map(drop)
    }

    /// `GET /v1/engines`: this server's engine with its slots.
    pub async fn engines(&self) -> Result<Value, RemoteError> {
        self.get(routes::ENGINES).await
    }

    /// `GET /v1/workers`: one row per replica.
    pub async fn workers(&self) -> Result<Value, RemoteError> {
        self.get(routes::WORKERS).await
    }

    /// Opens the task's NDJSON stream.
    pub async fn stream(&self, id: &str) -> Result<reqwest::Response, RemoteError> {
        let url = self.url(&routes::stream(id));
        let response = self
            .authed(self.http.get(&url))
            .header(reqwest::header::ACCEPT, "application/x-ndjson")
            .header(reqwest::header::CACHE_CONTROL, "no-cache")
            .send()
            .await
            .map_err(|e| RemoteError::unreachable(&url, e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(RemoteError::from_response(status, &text));
        }
        Ok(response)
    }

    /// Uploads a local file: `POST /v1/files`, then a PUT of its bytes to the
    /// returned signed `upload_url` (no API key: the URL carries its token).
    /// Returns the file's `uri`.
    pub async fn upload(&self, path: &Path) -> Result<String, RemoteError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| RemoteError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let filename = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "upload".into());
        let content_type = infsh_core::media::content_type_for(&filename);
        let request = json!({"files": [{
            "uri": "",
            "filename": filename,
            "content_type": content_type,
            "size": bytes.len(),
            "path": null,
            "public": null,
        }]});
        let url = self.url(routes::FILES);
        let created = self
            .call(Method::POST, routes::FILES, &[], Some(&request))
            .await?;
        let file = match &created {
            Value::Array(items) => items.first().cloned(),
            Value::Object(_) => Some(created.clone()),
            _ => None,
        }
        .unwrap_or(Value::Null);
        let (Some(upload_url), Some(uri)) = (
            file.get("upload_url").and_then(Value::as_str),
            file.get("uri").and_then(Value::as_str),
        ) else {
            return Err(RemoteError::Protocol {
                url,
                message: format!(
                    "POST /files answered without upload_url and uri: {}",
                    snippet(&created.to_string())
                ),
            });
        };
        let upload_url = self.absolute(upload_url);
        let response = self
            .http
            .put(&upload_url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .map_err(|e| RemoteError::unreachable(&upload_url, e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(RemoteError::from_response(status, &text));
        }
        Ok(uri.to_string())
    }

    /// Downloads `uri` into `target` (the API key goes only to this server).
    pub async fn download(&self, uri: &str, target: &Path) -> Result<u64, RemoteError> {
        let url = self.absolute(uri);
        let mut builder = self.http.get(&url);
        if same_origin(&url, &self.base) {
            builder = self.authed(builder);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| RemoteError::unreachable(&url, e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(RemoteError::from_response(status, &text));
        }
        let local = |source: std::io::Error| RemoteError::Write {
            path: target.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::create(target).await.map_err(local)?;
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| RemoteError::unreachable(&url, e))?
        {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(local)?;
            written += chunk.len() as u64;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(local)?;
        Ok(written)
    }

    /// A server-relative URL (`/files/x`) made absolute against the base.
    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", origin(&self.base))
        } else {
            url.to_string()
        }
    }
}

/// `{"data": X, ...}` → X; anything else as is.
pub fn unwrap_envelope(payload: Value) -> Value {
    match payload {
        Value::Object(mut map) if map.contains_key("data") => {
            map.remove("data").unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// A page of tasks: a bare list, `{items|tasks|data, next_cursor|cursor}`.
fn parse_page(data: Value) -> Option<(Vec<Value>, Option<String>)> {
    match data {
        Value::Array(items) => Some((items, None)),
        Value::Object(map) => {
            let items = ["items", "tasks", "data"]
                .iter()
                .find_map(|k| map.get(*k).and_then(Value::as_array).cloned())?;
            let next = ["next_cursor", "cursor", "next"]
                .iter()
                .find_map(|k| map.get(*k).and_then(Value::as_str))
                .filter(|c| !c.is_empty())
                .map(str::to_string);
            Some((items, next))
        }
        _ => None,
    }
}

fn normalize_base(url: &str) -> Result<String, RemoteError> {
    let trimmed = url.trim();
    let parsed = reqwest::Url::parse(trimmed).map_err(|source| RemoteError::BadUrl {
        url: trimmed.to_string(),
        source,
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(RemoteError::NotHttp {
            url: trimmed.to_string(),
        });
    }
    let mut base = trimmed.trim_end_matches('/').to_string();
    if let Some(stripped) = base.strip_suffix("/v1") {
        base = stripped.to_string();
    }
    Ok(base)
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => parsed.origin().ascii_serialization(),
        Err(_) => url.to_string(),
    }
}

fn same_origin(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// Percent-encodes one path segment (task ids are plain, but be safe).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalized() {
        assert_eq!(
            normalize_base("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(normalize_base("http://h:1/v1/").unwrap(), "http://h:1");
        assert_eq!(normalize_base("https://h/api").unwrap(), "https://h/api");
        assert!(normalize_base("127.0.0.1:8080").is_err());
        assert!(normalize_base("ftp://h").is_err());
    }

    #[test]
    fn envelopes_are_unwrapped() {
        assert_eq!(
            unwrap_envelope(json!({"data": {"id": "t"}, "messages": []})),
            json!({"id": "t"})
        );
        assert_eq!(unwrap_envelope(json!({"id": "t"})), json!({"id": "t"}));
    }

    #[test]
    fn pages_come_in_several_shapes() {
        let (items, next) = parse_page(json!({"items": [{"id": 1}], "next_cursor": "c2"})).unwrap();
        assert_eq!((items.len(), next.as_deref()), (1, Some("c2")));
        let (items, next) = parse_page(json!([{"id": 1}, {"id": 2}])).unwrap();
        assert_eq!((items.len(), next), (2, None));
        let (_, next) = parse_page(json!({"items": [], "next_cursor": null})).unwrap();
        assert_eq!(next, None);
        assert!(parse_page(json!("x")).is_none());
    }

    #[test]
    fn relative_urls_resolve_against_the_origin() {
        let remote = Remote::new("http://127.0.0.1:9/prefix", None).unwrap();
        assert_eq!(
            remote.absolute("/files/a/b.png"),
            "http://127.0.0.1:9/files/a/b.png"
        );
        assert_eq!(remote.absolute("http://x/y"), "http://x/y");
        assert!(same_origin("http://127.0.0.1:9/files/x", remote.base()));
        assert!(!same_origin("http://127.0.0.1:10/files/x", remote.base()));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("tsk_AZ-09.~"), "tsk_AZ-09.~");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
