//! [`ErrorChain`]: an error and its causes on one line, for logs.
//!
//! The crates keep an error's cause as its `source()` (thiserror's
//! `#[source]`/`#[from]`) so that callers can match on it, but `Display`
//! shows one level only, and a log line written with `%error` would lose
//! the cause. `ErrorChain(&e)` writes `outer: cause: cause ...`.
//!
//! Some errors (ours kept for byte-identical messages, and some of other
//! crates) already print their cause in their own message; a cause whose
//! text the line already ends with is not written again.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources: `outer: cause: cause`.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !text.is_empty() && !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = e.source();
        }
        f.write_str(&line)
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}")]
    struct Middle {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    /// Prints its cause itself, as some errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("storage error: {0}")]
    struct Echoing(#[source] std::io::Error);

    fn denied() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied")
    }

    #[test]
    fn writes_every_cause_after_the_error() {
        let e = Outer(Middle {
            path: "/data/infsh.db",
            source: denied(),
        });
        assert_eq!(
            ErrorChain(&e).to_string(),
            "cannot open the store: cannot read /data/infsh.db: permission denied"
        );
    }

    #[test]
    fn an_error_without_a_cause_is_its_message() {
        assert_eq!(ErrorChain(&denied()).to_string(), "permission denied");
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = Echoing(denied());
        assert_eq!(
            ErrorChain(&e).to_string(),
            "storage error: permission denied"
        );
    }
}
