//! Whether processes are gone. Every test that starts workers ends by
//! checking that none outlived it (docs/reliability.md): workers run with
//! their app's folder as working directory, and so do their children, so
//! "nothing left" is "no live process whose cwd is under the test's folder".
//!
//! Two meanings of gone, both needed:
//! - [`process_gone`]: the process has exited, zombie or not (read from
//!   `/proc`); for processes the test does not parent (an app's child);
//! - [`pid_gone`] / [`group_gone`]: not even a zombie is left
//!   (`kill(pid, 0)`), for a worker the code under test must also reap.

use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// True once `pid` has exited: no such process, or a zombie nobody reaped yet.
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name, which is in parentheses and
        // may itself hold any character.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
    }
}

/// Whether `pid` is a running process (not a zombie).
pub fn alive(pid: u32) -> bool {
    !process_gone(pid)
}

/// Whether no process at all has this pid, zombies included.
pub fn pid_gone(pid: u32) -> bool {
    signal_0(pid as i32)
}

/// Whether no process at all is left in the process group `pgid`.
pub fn group_gone(pgid: u32) -> bool {
    signal_0(-(pgid as i32))
}

fn signal_0(target: i32) -> bool {
    match kill(Pid::from_raw(target), None) {
        Err(Errno::ESRCH) => true,
        Ok(()) => false,
        Err(e) => panic!("kill({target}, 0): {e}"),
    }
}

/// Polls until `pid` has exited; panics after 15 s (a SIGKILLed process
/// takes a moment to be reaped, a busy machine stretches it).
pub async fn wait_dead(pid: u32) {
    let limit = Duration::from_secs(15);
    assert!(
        crate::eventually(limit, || process_gone(pid)).await,
        "process {pid} still runs after {limit:?}"
    );
}

/// Every live (not zombie) process whose working folder is `dir` or under
/// it, as `(pid, command line)`.
pub fn processes_in(dir: &Path) -> Vec<(u32, String)> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if !cwd.starts_with(&dir) || process_gone(pid) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        found.push((pid, cmdline.trim().to_string()));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kills the child if the test fails before it does.
    struct Reap(std::process::Child);

    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test]
    async fn a_child_is_alive_then_a_zombie_then_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Reap(
            std::process::Command::new("sleep")
                .arg("30")
                .current_dir(dir.path())
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        assert!(alive(pid) && !process_gone(pid) && !pid_gone(pid));
        // The command line shows once the child has exec'd.
        let want = vec![(pid, "sleep 30".to_string())];
        let seen = crate::eventually(Duration::from_secs(10), || processes_in(dir.path()) == want);
        assert!(seen.await, "{:?}", processes_in(dir.path()));
        child.0.kill().unwrap();
        // Exited but not reaped: gone for /proc, not for kill(pid, 0).
        wait_dead(pid).await;
        assert!(!pid_gone(pid));
        assert!(processes_in(dir.path()).is_empty());
        child.0.wait().unwrap();
        assert!(pid_gone(pid));
        assert!(group_gone(pid), "sleep had no group of its own");
    }

    #[test]
    fn our_own_process_and_group_are_there() {
        assert!(alive(std::process::id()));
        assert!(!group_gone(nix::unistd::getpgrp().as_raw() as u32));
        assert!(processes_in(Path::new("/nonexistent/folder")).is_empty());
    }
}
