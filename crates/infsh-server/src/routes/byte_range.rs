//! `Range: bytes=…` on file downloads (RFC 9110 §14), so video and audio
//! outputs are seekable: one range is answered 206 with `Content-Range`;
//! a range past the end is 416 with `Content-Range: bytes */LEN`; several
//! ranges, other units or a malformed header are ignored (the whole file,
//! 200), which the RFC allows.

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No (usable) range: the whole file.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A well-formed range that selects nothing of this file.
    Unsatisfiable,
}

pub fn parse(header: Option<&str>, len: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (first.is_empty(), last.is_empty()) {
        // `bytes=-N`: the last N bytes.
        (true, false) => match num(last) {
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if len == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => RangeAsk::Whole,
        },
        // `bytes=A-` and `bytes=A-B`.
        (false, _) => {
            let Some(start) = num(first) else {
                return RangeAsk::Whole;
            };
            let end = if last.is_empty() {
                None
            } else {
                match num(last) {
                    Some(e) if e >= start => Some(e),
                    _ => return RangeAsk::Whole,
                }
            };
            if start >= len {
                return RangeAsk::Unsatisfiable;
            }
            RangeAsk::Part {
                start,
                end: end.map_or(len - 1, |e| e.min(len - 1)),
            }
        }
        (true, true) => RangeAsk::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        let p = |h: &str| parse(Some(h), 100);
        assert_eq!(p("bytes=0-9"), RangeAsk::Part { start: 0, end: 9 });
        assert_eq!(p("bytes=90-"), RangeAsk::Part { start: 90, end: 99 });
        assert_eq!(p("bytes=90-500"), RangeAsk::Part { start: 90, end: 99 });
        assert_eq!(p("bytes=-10"), RangeAsk::Part { start: 90, end: 99 });
        assert_eq!(p("bytes=-500"), RangeAsk::Part { start: 0, end: 99 });
        assert_eq!(p("bytes=99-99"), RangeAsk::Part { start: 99, end: 99 });
    }

    #[test]
    fn past_the_end_is_unsatisfiable() {
        assert_eq!(parse(Some("bytes=100-"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse(Some("bytes=200-300"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), RangeAsk::Unsatisfiable);
    }

    #[test]
    fn anything_else_is_the_whole_file() {
        for h in [
            "items=0-9",
            "bytes=0-9,20-29",
            "bytes=a-b",
            "bytes=9-0",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(parse(Some(h), 100), RangeAsk::Whole, "{h}");
        }
        assert_eq!(parse(None, 100), RangeAsk::Whole);
    }
}
