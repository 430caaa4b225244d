//! [`AppRef`]: what a client may send to name an app (and maybe one of its
//! functions): `namespace/name[@version][:function]`, or a bare `name`.
//! One set of rules and error messages for the engine, the server (a run's
//! `app`, `GET /tasks?app=`) and both CLI paths (docs/http-api.md,
//! docs/cli.md).
//!
//! The rules, in order:
//! - surrounding whitespace is ignored; nothing left is refused;
//! - the function is what follows the LAST `:` (trimmed); an empty one
//!   (`ns/name:`) means none; it may not contain `/` or `@`;
//! - the version is what follows the `@` before that (trimmed); an empty
//!   one (`ns/name@`) means none; at most one `@`;
//! - the rest is `namespace/name` or a bare `name`: at most one `/`, and
//!   neither part empty, `.` or `..`;
//! - no part holds a control character.
//!
//! Names are otherwise kept as written: an app is named by its `inf.yml`
//! (or its folder), and whatever it is called must stay reachable.
//!
//! A bare `name` has no namespace ([`AppRef::namespace`] is None): the
//! engine resolves it to the one hosted app of that name. The CLI's "local
//! app folder" form (`./my-app:run`) is the CLI's own, layered on
//! [`split_function`].

use std::fmt;
use std::str::FromStr;

/// The form every message quotes.
const EXPECTED: &str = "expected NAMESPACE/NAME[@VERSION][:FUNCTION]";

/// A parsed app reference (see the module docs for the rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppRef {
    namespace: Option<String>,
    name: String,
    version: Option<String>,
    function: Option<String>,
}

/// The part of an app reference a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Namespace,
    Name,
    Version,
    Function,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Namespace => "namespace",
            Part::Name => "name",
            Part::Version => "version",
            Part::Function => "function",
        })
    }
}

/// Why a text is not an app reference. Every message names the text as
/// given and the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppRefError {
    #[error("the app reference is empty; {EXPECTED}")]
    Empty,
    #[error("invalid app reference {given:?}: more than one \"/\"; {EXPECTED}")]
    TooManySlashes { given: String },
    #[error("invalid app reference {given:?}: more than one \"@\"; {EXPECTED}")]
    TooManyAts { given: String },
    #[error("invalid app reference {given:?}: the {part} is empty; {EXPECTED}")]
    EmptyPart { given: String, part: Part },
    #[error("invalid app reference {given:?}: the {part} may not be \".\" or \"..\"; {EXPECTED}")]
    DotPart { given: String, part: Part },
    #[error(
        "invalid app reference {given:?}: the {part} contains a control character; {EXPECTED}"
    )]
    ControlCharacter { given: String, part: Part },
    #[error("invalid app reference {given:?}: the {part} may not contain {found:?}; {EXPECTED}")]
    Reserved {
        given: String,
        part: Part,
        found: char,
    },
}

/// Splits `:function` off the end of `raw`: the text before the LAST `:`
/// and the function after it (trimmed; None when there is no `:` or nothing
/// after it). Refused: a function containing `/` or `@` (that `:` is not a
/// function separator: a version comes before the function), or a control
/// character.
pub fn split_function(raw: &str) -> Result<(&str, Option<&str>), AppRefError> {
    let Some((rest, function)) = raw.rsplit_once(':') else {
        return Ok((raw, None));
    };
    let function = function.trim();
    if function.is_empty() {
        return Ok((rest, None));
    }
    if let Some(found) = function.chars().find(|c| matches!(c, '/' | '@')) {
        return Err(AppRefError::Reserved {
            given: raw.trim().to_string(),
            part: Part::Function,
            found,
        });
    }
    check_controls(raw, function, Part::Function)?;
    Ok((rest, Some(function)))
}

fn check_controls(given: &str, text: &str, part: Part) -> Result<(), AppRefError> {
    if text.chars().any(char::is_control) {
        return Err(AppRefError::ControlCharacter {
            given: given.trim().to_string(),
            part,
        });
    }
    Ok(())
}

/// A namespace or name: not empty, not `.`/`..`, no control characters.
fn check_segment(given: &str, text: &str, part: Part) -> Result<(), AppRefError> {
    let given_owned = || given.trim().to_string();
    if text.is_empty() {
        return Err(AppRefError::EmptyPart {
            given: given_owned(),
            part,
        });
    }
    if text == "." || text == ".." {
        return Err(AppRefError::DotPart {
            given: given_owned(),
            part,
        });
    }
    check_controls(given, text, part)
}

impl AppRef {
    /// `namespace/name` from its two parts (a path's `{namespace}/{name}`),
    /// each checked by the rules of the module docs; `/`, `@` and `:` are
    /// refused in them (the text would not read back as the same app).
    pub fn new(namespace: &str, name: &str) -> Result<AppRef, AppRefError> {
        let given = format!("{namespace}/{name}");
        for (text, part) in [(namespace, Part::Namespace), (name, Part::Name)] {
            check_segment(&given, text, part)?;
            if let Some(found) = text.chars().find(|c| matches!(c, '/' | '@' | ':')) {
                return Err(AppRefError::Reserved { given, part, found });
            }
        }
        Ok(AppRef {
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
            version: None,
            function: None,
        })
    }

    /// None for a bare `name`.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `@version` as given (one version of each app is hosted, so the
    /// engine ignores it).
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// `:function` as given.
    pub fn function(&self) -> Option<&str> {
        self.function.as_deref()
    }

    /// `namespace/name`, or the bare name: the app without version or function.
    pub fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The same app (and version), without a function.
    pub fn without_function(&self) -> AppRef {
        AppRef {
            function: None,
            ..self.clone()
        }
    }

    /// The same app naming `function` (None: no function).
    pub fn with_function(self, function: Option<String>) -> AppRef {
        AppRef { function, ..self }
    }
}

impl FromStr for AppRef {
    type Err = AppRefError;

    fn from_str(raw: &str) -> Result<AppRef, AppRefError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(AppRefError::Empty);
        }
        let (rest, function) = split_function(trimmed)?;
        let (path, version) = match rest.split_once('@') {
            Some((_, v)) if v.contains('@') => {
                return Err(AppRefError::TooManyAts {
                    given: trimmed.to_string(),
                })
            }
            Some((path, v)) => (path.trim(), Some(v.trim()).filter(|v| !v.is_empty())),
            None => (rest.trim(), None),
        };
        if let Some(v) = version {
            check_controls(trimmed, v, Part::Version)?;
        }
        let (namespace, name) = match path.split_once('/') {
            Some((_, name)) if name.contains('/') => {
                return Err(AppRefError::TooManySlashes {
                    given: trimmed.to_string(),
                })
            }
            Some((ns, name)) => {
                check_segment(trimmed, ns, Part::Namespace)?;
                (Some(ns), name)
            }
            None => (None, path),
        };
        check_segment(trimmed, name, Part::Name)?;
        Ok(AppRef {
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            version: version.map(str::to_string),
            function: function.map(str::to_string),
        })
    }
}

impl TryFrom<&str> for AppRef {
    type Error = AppRefError;
    fn try_from(raw: &str) -> Result<AppRef, AppRefError> {
        raw.parse()
    }
}

/// The canonical text: `namespace/name[@version][:function]` (it parses
/// back to the same reference).
impl fmt::Display for AppRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())?;
        if let Some(v) = &self.version {
            write!(f, "@{v}")?;
        }
        if let Some(func) = &self.function {
            write!(f, ":{func}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "app_ref_tests.rs"]
mod tests;
