//! Server bodies quoted in messages are cut short: an HTML error page or a
//! huge JSON answer should not flood the terminal. Errors and the client
//! both quote bodies, so the rule has its own module.

/// The first 300 characters of a body, for messages.
pub fn snippet(text: &str) -> String {
    let text = text.trim();
    let mut out: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bodies_are_cut_at_300_characters() {
        assert_eq!(snippet("  short \n"), "short");
        let long = "é".repeat(301);
        let cut = snippet(&long);
        assert_eq!(cut.chars().count(), 301);
        assert!(cut.ends_with("é…"));
        assert_eq!(snippet(&"x".repeat(300)), "x".repeat(300));
    }
}
