//! Reading `requirements.txt` just enough to know whether it already names the
//! `inferencesh` SDK (which every app needs, since the worker imports it).
//!
//! Everything else in the file (options such as `--extra-index-url`, `-e` paths,
//! `git+` URLs, markers) is passed to the installer untouched: the installer, not
//! this module, is the authority on the file's meaning.

/// The package every environment must contain.
pub const SDK_PACKAGE: &str = "inferencesh";

/// PEP 503 normalisation: lowercase, runs of `-`, `_`, `.` collapsed to one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.extend(c.to_lowercase());
            in_sep = false;
        }
    }
    out
}

/// The logical lines of a requirements file: `\`-continuations joined, comments
/// (a `#` at the start or after whitespace, as pip reads them) removed, blank
/// lines dropped.
pub fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = strip_comment(raw);
        if let Some(stripped) = line.strip_suffix('\\') {
            current.push_str(stripped);
            continue;
        }
        current.push_str(line);
        let trimmed = current.trim();
        if !trimmed.is_empty() {
            out.push(trimmed.to_string());
        }
        current.clear();
    }
    let trimmed = current.trim();
    if !trimmed.is_empty() {
        out.push(trimmed.to_string());
    }
    out
}

fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// The distribution name a requirement line names, PEP 503-normalised, when it
/// can be told without running an installer:
/// - `name`, `name[extra]>=1 ; marker`, `name @ url` give `name`;
/// - a URL or path (also after `-e`) gives the `#egg=name` fragment if it has one;
/// - other option lines (`-r`, `--extra-index-url`, ...) name nothing.
pub fn requirement_name(line: &str) -> Option<String> {
    let line = line.trim();
    if let Some(rest) = line
        .strip_prefix("--editable")
        .or_else(|| line.strip_prefix("-e"))
    {
        let rest = rest.trim_start_matches(['=', ' ', '\t']);
        return egg_name(rest);
    }
    if line.starts_with('-') {
        return None;
    }
    // PEP 508 direct reference: `name[extras] @ url`.
    if let Some((before, _)) = line.split_once('@') {
        let name = before.split('[').next().unwrap_or(before).trim();
        if is_name(name) {
            return Some(normalize_name(name));
        }
    }
    if looks_like_url_or_path(line) {
        return egg_name(line);
    }
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(line.len());
    let name = &line[..end];
    if name.is_empty() {
        return None;
    }
    Some(normalize_name(name))
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

fn looks_like_url_or_path(line: &str) -> bool {
    line.contains("://")
        || line.starts_with('.')
        || line.starts_with('/')
        || line.starts_with('~')
        || line.starts_with("file:")
        || line.ends_with(".whl")
        || line.ends_with(".tar.gz")
        || line.ends_with(".zip")
}

fn egg_name(url: &str) -> Option<String> {
    let fragment = url.split_once('#')?.1;
    fragment.split('&').find_map(|kv| {
        let name = kv.strip_prefix("egg=")?;
        let name = name.split(['[', ' ']).next().unwrap_or(name);
        (!name.is_empty()).then(|| normalize_name(name))
    })
}

/// Whether the requirements text names `package` (compared PEP 503-normalised).
pub fn mentions(requirements: &str, package: &str) -> bool {
    let wanted = normalize_name(package);
    logical_lines(requirements)
        .iter()
        .filter_map(|l| requirement_name(l))
        .any(|n| n == wanted)
}

/// Extra packages to install next to `-r requirements.txt`: the SDK when the file
/// does not name it.
pub fn extra_packages(requirements: &str) -> Vec<String> {
    if mentions(requirements, SDK_PACKAGE) {
        Vec::new()
    } else {
        vec![SDK_PACKAGE.to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_pep_503() {
        assert_eq!(normalize_name("InferenceSH"), "inferencesh");
        assert_eq!(normalize_name("Foo__Bar.-baz"), "foo-bar-baz");
        assert_eq!(normalize_name("a.b_c-d"), "a-b-c-d");
    }

    #[test]
    fn names_of_plain_requirements() {
        for (line, name) in [
            ("inferencesh", "inferencesh"),
            ("inferencesh>=0.3", "inferencesh"),
            ("inferencesh==0.36.0", "inferencesh"),
            (
                "InferenceSH[extra] ~= 0.3 ; python_version >= '3.10'",
                "inferencesh",
            ),
            (
                "inferencesh @ git+https://github.com/x/y.git",
                "inferencesh",
            ),
            ("torch; sys_platform == 'linux'", "torch"),
            ("Pillow<11", "pillow"),
            ("zope.interface", "zope-interface"),
        ] {
            assert_eq!(requirement_name(line).as_deref(), Some(name), "{line}");
        }
    }

    #[test]
    fn option_and_url_lines() {
        assert_eq!(requirement_name("--extra-index-url https://x/simple"), None);
        assert_eq!(requirement_name("-r other.txt"), None);
        assert_eq!(requirement_name("-e ."), None);
        assert_eq!(requirement_name("git+https://github.com/a/b.git"), None);
        assert_eq!(
            requirement_name("git+https://github.com/a/b.git#egg=Inference_SH").as_deref(),
            Some("inference-sh")
        );
        assert_eq!(
            requirement_name("-e git+https://github.com/a/sdk#egg=inferencesh").as_deref(),
            Some("inferencesh")
        );
        assert_eq!(
            requirement_name("--editable=./sdk#egg=inferencesh").as_deref(),
            Some("inferencesh")
        );
        assert_eq!(requirement_name("./wheels/foo-1.0-py3-none-any.whl"), None);
    }

    #[test]
    fn comments_continuations_and_blanks() {
        let text = "# a comment\n\ntorch  # pinned elsewhere\nnumpy \\\n  >=1.0\n  \nurl#frag\n";
        assert_eq!(
            logical_lines(text),
            vec!["torch", "numpy   >=1.0", "url#frag"]
        );
    }

    #[test]
    fn sdk_is_added_only_when_missing() {
        assert_eq!(extra_packages(""), vec!["inferencesh"]);
        assert_eq!(extra_packages("torch\n"), vec!["inferencesh"]);
        assert_eq!(
            extra_packages("# inferencesh\ntorch\n"),
            vec!["inferencesh"]
        );
        assert_eq!(extra_packages("inferencesh-extras\n"), vec!["inferencesh"]);
        assert!(extra_packages("torch\nInferenceSH>=0.30\n").is_empty());
        assert!(extra_packages("--extra-index-url https://x\ninferencesh\n").is_empty());
    }
}
