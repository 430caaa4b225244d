//! Turning `--input` / `--setup` arguments into JSON values: a file, inline
//! JSON, or `-` for stdin. Relative file paths inside the input are later
//! resolved against `base_dir` (the input file's folder, else the cwd).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::exit::{ExitCode, Failure};

/// A parsed JSON argument and where relative paths in it are anchored.
#[derive(Debug, Clone)]
pub struct JsonArg {
    pub value: Value,
    pub base_dir: PathBuf,
    /// Where it came from, for messages: a path, `inline JSON` or `stdin`.
    pub origin: String,
}

/// Parses an argument that is a path to a JSON file, inline JSON, or `-`.
/// `what` names the flag in messages ("--input", "--setup").
pub fn parse_json_arg(raw: &str, what: &str) -> Result<JsonArg, Failure> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if raw == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            Failure::new(ExitCode::Input, format!("{what}: cannot read stdin: {e}"))
        })?;
        return parse_text(&text, what, "stdin".into(), cwd);
    }
    let trimmed = raw.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return parse_text(raw, what, "inline JSON".into(), cwd);
    }
    let path = Path::new(raw);
    if !path.exists() {
        return Err(Failure::new(
            ExitCode::Input,
            format!("{what}: no such file: {raw} (give a JSON file, inline JSON like '{{\"prompt\": \"a cat\"}}', or - for stdin)"),
        ));
    }
    read_json_file(path, what)
}

/// `--input` and `--setup`, parsed before anything starts so a typo fails
/// in milliseconds.
pub fn parse_input_and_setup(
    input: Option<&str>,
    setup: Option<&str>,
) -> Result<(Option<JsonArg>, Option<JsonArg>), Failure> {
    let input = input
        .map(|raw| parse_json_arg(raw, "--input"))
        .transpose()?;
    let setup = setup
        .map(|raw| parse_json_arg(raw, "--setup"))
        .transpose()?;
    Ok((input, setup))
}

/// Reads and parses a JSON file (an example input, a setup config).
pub fn read_json_file(path: &Path, what: &str) -> Result<JsonArg, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            ExitCode::Input,
            format!("{what}: cannot read {}: {e}", path.display()),
        )
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    parse_text(&text, what, path.display().to_string(), base)
}

fn parse_text(
    text: &str,
    what: &str,
    origin: String,
    base_dir: PathBuf,
) -> Result<JsonArg, Failure> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Failure::new(
            ExitCode::Input,
            format!(
                "{what}: malformed JSON in {origin} at line {}, column {}: {}",
                e.line(),
                e.column(),
                json_reason(&e)
            ),
        )
    })?;
    if !value.is_object() {
        return Err(Failure::new(
            ExitCode::Input,
            format!(
                "{what}: expected a JSON object in {origin}, got {}",
                json_type_name(&value)
            ),
        ));
    }
    Ok(JsonArg {
        value,
        base_dir,
        origin,
    })
}

pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json's message without the ` at line L column C` it ends with
/// (the position is already in ours).
fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&position).unwrap_or(&text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_json_is_parsed_against_the_cwd() {
        let arg = parse_json_arg(r#"{"prompt": "a cat"}"#, "--input").unwrap();
        assert_eq!(arg.value["prompt"], "a cat");
        assert_eq!(arg.origin, "inline JSON");
    }

    #[test]
    fn malformed_inline_json_names_line_and_column() {
        let err = parse_json_arg("{\"prompt\": }", "--input").unwrap_err();
        assert_eq!(err.code, ExitCode::Input);
        // The position once: serde_json's own " at line 1 column 12" is cut.
        assert_eq!(
            err.message,
            "--input: malformed JSON in inline JSON at line 1, column 12: expected value"
        );
    }

    #[test]
    fn non_object_json_is_refused() {
        let err = parse_json_arg("[1, 2]", "--input").unwrap_err();
        assert_eq!(
            err.message,
            "--input: expected a JSON object in inline JSON, got an array"
        );
    }

    #[test]
    fn a_missing_file_says_what_is_accepted() {
        let err = parse_json_arg("does/not/exist.json", "--setup").unwrap_err();
        assert!(
            err.message
                .starts_with("--setup: no such file: does/not/exist.json"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_file_anchors_relative_paths_at_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.json");
        std::fs::write(&path, r#"{"image": "cat.png"}"#).unwrap();
        let arg = parse_json_arg(path.to_str().unwrap(), "--input").unwrap();
        assert_eq!(arg.base_dir, std::fs::canonicalize(dir.path()).unwrap());
    }
}
