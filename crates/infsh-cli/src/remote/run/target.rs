//! What APP names in a remote run: an app id on the server
//! (`ns/name[@version][:function]`, infsh-core's [`AppRef`] rules) or a local
//! app folder whose inf.yml names the app (its examples then give the
//! default input).

use std::path::PathBuf;

use infsh_core::app::AppDir;
use infsh_core::{AppRef, AppRefError};
use serde_json::json;

use crate::exit::{ExitCode, Failure};
use crate::input::JsonArg;

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

/// The local app folder's example for the function, else `{}`.
pub fn default_input(
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
}
