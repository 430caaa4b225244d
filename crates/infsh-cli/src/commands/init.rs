//! `infsh app init NAME`: a new app folder that runs as it is.
//! The files come from `crates/infsh-cli/templates/app/` (Python) or
//! `crates/infsh-cli/templates/app-node/` (`--lang node`: JavaScript, with a
//! package-lock.json so its environment is built with `npm ci`).

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use crate::cli::{GlobalArgs, InitArgs, InitLang};
use crate::exit::{ExitCode, Failure};
use crate::output;

/// (file name, contents); `{{name}}` and `{{namespace}}` are filled in.
const TEMPLATE: &[(&str, &str)] = &[
    (
        "inference.py",
        include_str!("../../templates/app/inference.py"),
    ),
    ("inf.yml", include_str!("../../templates/app/inf.yml")),
    (
        "requirements.txt",
        include_str!("../../templates/app/requirements.txt"),
    ),
    (
        "__init__.py",
        include_str!("../../templates/app/__init__.py"),
    ),
    ("input.json", include_str!("../../templates/app/input.json")),
    (
        "input_reverse.json",
        include_str!("../../templates/app/input_reverse.json"),
    ),
    (
        "input_stream.json",
        include_str!("../../templates/app/input_stream.json"),
    ),
];

/// The JavaScript app of `--lang node`.
const NODE_TEMPLATE: &[(&str, &str)] = &[
    (
        "inference.js",
        include_str!("../../templates/app-node/inference.js"),
    ),
    ("inf.yml", include_str!("../../templates/app-node/inf.yml")),
    (
        "package.json",
        include_str!("../../templates/app-node/package.json"),
    ),
    (
        "package-lock.json",
        include_str!("../../templates/app-node/package-lock.json"),
    ),
    (
        "input.json",
        include_str!("../../templates/app-node/input.json"),
    ),
    (
        "input_reverse.json",
        include_str!("../../templates/app-node/input_reverse.json"),
    ),
    (
        "input_stream.json",
        include_str!("../../templates/app-node/input_stream.json"),
    ),
];

pub fn init(args: InitArgs, global: &GlobalArgs) -> Result<()> {
    let dir = &args.name;
    let name = app_name(dir)?;
    // A usage error (2), like any other wrong argument: nothing was run.
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(Failure::new(
            ExitCode::Usage,
            format!(
                "{} already exists and is not empty; give a new folder name",
                dir.display()
            ),
        )
        .into());
    }
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let template = match args.lang {
        InitLang::Python => TEMPLATE,
        InitLang::Node => NODE_TEMPLATE,
    };
    for (file, contents) in template {
        let text = contents
            .replace("{{name}}", &name)
            .replace("{{namespace}}", &args.namespace);
        std::fs::write(dir.join(file), text)?;
        written.push(*file);
    }
    let report = json!({"app": dir, "name": name, "namespace": args.namespace, "files": written});
    output::print_json_or(&report, global.json, || {
        println!(
            "created {} ({}/{name}) with functions run, reverse, stream",
            dir.display(),
            args.namespace
        );
        println!(
            "next:\n  cd {}\n  infsh app functions\n  infsh app test",
            dir.display()
        );
    });
    Ok(())
}

/// The folder's last component, which must make a valid app name.
fn app_name(dir: &Path) -> Result<String, Failure> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            Failure::new(
                ExitCode::Input,
                format!("{} has no folder name", dir.display()),
            )
        })?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !valid {
        return Err(Failure::new(
            ExitCode::Input,
            format!("invalid app name {name:?}: use letters, digits, '-' and '_', starting with a letter or digit"),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(app_name(Path::new("my-app")).is_ok());
        assert!(app_name(Path::new("x/my_app2")).is_ok());
        assert_eq!(
            app_name(Path::new("bad name")).unwrap_err().message,
            "invalid app name \"bad name\": use letters, digits, '-' and '_', starting with a letter or digit"
        );
    }
}
