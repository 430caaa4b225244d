//! The process's file descriptor limit (RLIMIT_NOFILE) and the connection
//! cap derived from it. Every connection is one descriptor, and a download
//! opens one more, so a cap below half of what is left after the engine's
//! own share means accept() never meets EMFILE.

/// Descriptors kept for everything but connections: worker pipes and
/// zygotes, the store, logs, the listener itself.
pub const RESERVED_FDS: u64 = 256;

/// Soft limits this high are treated as "plenty" (an unlimited hard limit
/// is not a value setrlimit accepts as the soft limit on every system).
const SOFT_CEILING: u64 = 1 << 20;

/// RLIMIT_NOFILE before and after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimits {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    pub hard: u64,
}

fn get() -> std::io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(lim)
}

/// Raises the soft descriptor limit to the hard one (capped at 2^20) and
/// says what it was and is.
pub fn raise_fd_limit() -> std::io::Result<FdLimits> {
    let lim = get()?;
    let before = lim.rlim_cur;
    let hard = lim.rlim_max;
    let target = hard.min(SOFT_CEILING).max(before);
    if target > before {
        let new = libc::rlimit {
            rlim_cur: target as libc::rlim_t,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let soft = get()?.rlim_cur;
    Ok(FdLimits { before, soft, hard })
}

/// The soft descriptor limit now (None if it cannot be read).
pub fn soft_fd_limit() -> Option<u64> {
    get().ok().map(|l| l.rlim_cur)
}

/// The default `--max-connections` for a soft limit of `soft` descriptors:
/// half of what [`RESERVED_FDS`] leaves, at least 16.
pub fn default_max_connections(soft: u64) -> usize {
    let per_conn = soft.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(per_conn).unwrap_or(usize::MAX).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cap_leaves_headroom() {
        assert_eq!(default_max_connections(1024), 384);
        assert_eq!(default_max_connections(20_000), 9_872);
        assert_eq!(default_max_connections(100), 16);
    }

    #[test]
    fn raising_is_idempotent_and_reaches_the_hard_limit() {
        let first = raise_fd_limit().unwrap();
        assert!(first.soft >= first.before);
        assert_eq!(first.soft, first.hard.min(SOFT_CEILING).max(first.before));
        let second = raise_fd_limit().unwrap();
        assert_eq!(second.before, first.soft);
        assert_eq!(second.soft, first.soft);
        assert_eq!(soft_fd_limit(), Some(first.soft));
    }
}
