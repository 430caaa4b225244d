//! [`ThrowawayPg`]: a PostgreSQL cluster of one test's own, made with
//! Debian's `initdb`/`pg_ctl` in a temporary folder on a free loopback port
//! (as scripts/test-postgres.sh makes one), so the test may restart it:
//! the machine's shared server must not be. Stopped and removed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct ThrowawayPg {
    dir: tempfile::TempDir,
    pg_ctl: PathBuf,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
}

/// `name` from PATH, else from Debian's versioned folders (newest).
fn find_bin(name: &str) -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    in_path.or_else(|| {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|v| v.path().join("bin").join(name))
            .filter(|p| p.is_file())
            .collect();
        found.sort_by_key(|p| {
            let version = p
                .iter()
                .rev()
                .nth(2)
                .and_then(|v| v.to_str()?.parse::<u32>().ok());
            version.unwrap_or(0)
        });
        found.pop()
    })
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs a server program as an unprivileged user (initdb and postgres
/// refuse root): `postgres` when this is root.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl ThrowawayPg {
    /// Starts a cluster; None when `initdb` is not installed (the caller
    /// skips, saying so).
    pub fn start() -> Option<ThrowawayPg> {
        let (initdb, pg_ctl) = (find_bin("initdb")?, find_bin("pg_ctl")?);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres").arg(&path);
            run(chown, "chown postgres");
        }
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut init = as_owner(&initdb);
        init.arg("-D").arg(path.join("data")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        run(init, "initdb");
        let mut start = as_owner(&pg_ctl);
        start
            .arg("-D")
            .arg(path.join("data"))
            .arg("-l")
            .arg(path.join("log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
                path.display()
            ))
            .arg("start");
        run(start, "pg_ctl start");
        Some(ThrowawayPg {
            dir,
            pg_ctl,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        })
    }

    /// `pg_ctl restart -m fast`: every session is ended, the server stops
    /// and starts again on the same port; returns once it accepts
    /// connections.
    pub fn restart(&self) {
        let mut restart = as_owner(&self.pg_ctl);
        restart
            .arg("-D")
            .arg(self.dir.path().join("data"))
            // Its output to the log, not to our pipe (which the server
            // would hold open).
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-m", "fast", "restart"]);
        run(restart, "pg_ctl restart");
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for ThrowawayPg {
    fn drop(&mut self) {
        let _ = as_owner(&self.pg_ctl)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}
