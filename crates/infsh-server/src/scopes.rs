//! Scopes, as the platform names them, and the one table of which route
//! needs which (docs/security.md repeats it). A key created at run time
//! (`infsh keys create`, `POST /apikeys`) carries some of them; an admin
//! key (from `--api-key`, `INFSH_API_KEYS`, `--api-keys-file`) has all.
//! A route missing from the table needs an admin key: a new route is
//! closed until it is mapped.

use axum::http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    AppsRead,
    AppsExecute,
    FilesRead,
    FilesWrite,
    TasksRead,
    TasksWrite,
    EnginesRead,
    EnginesWrite,
    ApikeysWrite,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::AppsRead,
        Scope::AppsExecute,
        Scope::FilesRead,
        Scope::FilesWrite,
        Scope::TasksRead,
        Scope::TasksWrite,
        Scope::EnginesRead,
        Scope::EnginesWrite,
        Scope::ApikeysWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::AppsRead => "apps:read",
            Scope::AppsExecute => "apps:execute",
            Scope::FilesRead => "files:read",
            Scope::FilesWrite => "files:write",
            Scope::TasksRead => "tasks:read",
            Scope::TasksWrite => "tasks:write",
            Scope::EnginesRead => "engines:read",
            Scope::EnginesWrite => "engines:write",
            Scope::ApikeysWrite => "apikeys:write",
        }
    }

    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// What a route asks of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Scope(Scope),
    /// Not in the table: admin keys only.
    Admin,
}

/// The scope route `path` (axum's matched pattern, `/tasks/{id}`, after
/// the `/v1` prefix is stripped) needs for `method`.
pub fn needs(method: &Method, path: &str) -> Needs {
    use Scope::*;
    let m = method.as_str();
    let scope = match (m, path) {
        ("POST", "/apps/run" | "/run" | "/apps/{namespace}/{name}/functions/{function}/run") => {
            AppsExecute
        }
        // A session is a worker held for one caller's runs: seeing, keeping
        // and ending it go with running the app.
        ("GET" | "HEAD", "/sessions" | "/sessions/{id}")
        | ("POST", "/sessions/{id}/keepalive")
        | ("DELETE", "/sessions/{id}") => AppsExecute,
        (
            "GET" | "HEAD",
            "/apps"
            | "/apps/{namespace}/{name}"
            | "/apps/{namespace}/{name}/versions"
            | "/openapi.json",
        ) => AppsRead,
        // Deploying, switching and removing versions change what every
        // caller runs: an operator's scope, like draining an app.
        ("POST", "/apps/{namespace}/{name}/versions")
        | ("PUT", "/apps/{namespace}/{name}/versions/{id}/current")
        | ("DELETE", "/apps/{namespace}/{name}/versions/{id}") => EnginesWrite,
        (
            "GET" | "HEAD",
            "/tasks" | "/tasks/{id}" | "/tasks/{id}/stream" | "/tasks/{id}/status"
            | "/tasks/{id}/files",
        ) => TasksRead,
        ("POST", "/tasks/{id}/cancel") | ("DELETE", "/tasks/{id}" | "/tasks/{id}/files") => {
            TasksWrite
        }
        ("POST", "/files") => FilesWrite,
        // GET and DELETE /files/{id} sit on the public download route and
        // check their scope themselves (routes/file_records.rs).
        ("GET" | "HEAD", "/files") => FilesRead,
        ("GET" | "HEAD", "/engines" | "/workers" | "/ready" | "/metrics") => EnginesRead,
        (
            "POST",
            "/engines/{name}/drain"
            | "/engines/{name}/undrain"
            | "/apps/{namespace}/{name}/drain"
            | "/apps/{namespace}/{name}/undrain",
        ) => EnginesWrite,
        ("POST", "/apikeys" | "/apikeys/list") | ("DELETE", "/apikeys/{id}") => ApikeysWrite,
        _ => return Needs::Admin,
    };
    Needs::Scope(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(Scope::parse("apps:write"), None);
    }

    #[test]
    fn routes_map_to_scopes_and_unknown_ones_to_admin() {
        assert_eq!(
            needs(&Method::POST, "/apps/run"),
            Needs::Scope(Scope::AppsExecute)
        );
        assert_eq!(
            needs(&Method::GET, "/tasks/{id}"),
            Needs::Scope(Scope::TasksRead)
        );
        assert_eq!(
            needs(&Method::DELETE, "/apikeys/{id}"),
            Needs::Scope(Scope::ApikeysWrite)
        );
        assert_eq!(
            needs(&Method::DELETE, "/tasks/{id}"),
            Needs::Scope(Scope::TasksWrite)
        );
        assert_eq!(needs(&Method::PUT, "/tasks/{id}"), Needs::Admin);
        assert_eq!(needs(&Method::GET, "/apps/run"), Needs::Admin);
    }
}
