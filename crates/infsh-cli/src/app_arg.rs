//! The APP argument of `app run`: a folder, optionally followed by
//! `:function`. Local and remote runs both read it, so the rule lives here
//! rather than in either command.

use std::path::{Path, PathBuf};

/// `./app:upscale` names a function (split by infsh-core's rule for
/// `:function`, [`infsh_core::split_function`]); a path that exists as
/// written is never split, nor is one whose `:` could not start a function.
pub fn split_app_function(raw: &str) -> (PathBuf, Option<String>) {
    if Path::new(raw).exists() {
        return (PathBuf::from(raw), None);
    }
    match infsh_core::split_function(raw) {
        Ok((app, Some(function))) => (PathBuf::from(app), Some(function.to_string())),
        _ => (PathBuf::from(raw), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_function_suffix_is_split_only_when_the_path_does_not_exist() {
        assert_eq!(
            split_app_function("./nope:upscale"),
            (PathBuf::from("./nope"), Some("upscale".into()))
        );
        assert_eq!(split_app_function("."), (PathBuf::from("."), None));
        assert_eq!(
            split_app_function("./nope:sub/dir"),
            (PathBuf::from("./nope:sub/dir"), None)
        );
    }
}
