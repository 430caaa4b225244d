//! The input a run uses when none is given: the app folder's example for
//! the function (`input_<fn>.json`, or `input.json` for the default
//! function), else `{}`. `app run` (local and remote) and `app test` share it.

use std::path::PathBuf;

use infsh_core::app::AppDir;
use serde_json::json;

use crate::exit::Failure;
use crate::input::{read_json_file, JsonArg};

/// The app's own example for the function, else an empty object.
pub fn default_input(
    app: &AppDir,
    function: &str,
    default_function: Option<&str>,
) -> Result<JsonArg, Failure> {
    if let Some(path) = example_path(app, function, default_function) {
        return read_json_file(&path, "example input");
    }
    Ok(JsonArg {
        value: json!({}),
        base_dir: app.root.clone(),
        origin: "empty input".into(),
    })
}

/// `input_<fn>.json`, or `input.json` for the default function.
pub fn example_path(
    app: &AppDir,
    function: &str,
    default_function: Option<&str>,
) -> Option<PathBuf> {
    let examples = app.examples();
    examples
        .iter()
        .find(|e| e.function.as_deref() == Some(function))
        .or_else(|| {
            if default_function == Some(function) {
                examples.iter().find(|e| e.function.is_none())
            } else {
                None
            }
        })
        .map(|e| e.path.clone())
}
