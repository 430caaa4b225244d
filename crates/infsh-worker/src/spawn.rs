//! Starting the worker process (`docs/protocol.md`, "Launching a worker")
//! and signalling its process group.
//!
//! The child gets one end of a socketpair as fd 3 (the protocol channel),
//! `/dev/null` as stdin, pipes as stdout/stderr, a process group of its own
//! (so one `killpg` reaches everything the app started) and
//! `PR_SET_PDEATHSIG=SIGKILL` (so it dies with the host even if the host is
//! SIGKILLed and never gets to clean up).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use crate::{ExitDescription, WorkerConfig, WorkerError};

/// The child's fd for the protocol channel (`INFSH_PROTOCOL_FD`).
pub const PROTOCOL_FD: i32 = 3;

/// Where things live for one worker; see [`WorkerConfig::state_dir`].
pub struct Paths {
    /// Absolute app folder: the child's cwd and `INFSH_APP_DIR`.
    pub app_dir: PathBuf,
    /// Holds `infsh_worker/`; first on `PYTHONPATH`.
    pub runtime_dir: PathBuf,
    /// This worker's own spill folder (`INFSH_SPILL_DIR`).
    pub spill_dir: PathBuf,
    /// Default `FILE_CACHE_DIR`.
    pub file_cache_dir: PathBuf,
}

/// How the host learns that a worker process ended, and how.
pub enum ExitSource {
    /// Our own child: waited for directly.
    Child(Child),
    /// Forked by a zygote, which reaps it and reports its wait status. The
    /// guard keeps the zygote alive as long as the worker may run (its
    /// workers die with it).
    Reported {
        status: tokio::sync::oneshot::Receiver<ExitDescription>,
        guard: Box<dyn std::any::Any + Send>,
    },
}

pub struct Spawned {
    pub exit: ExitSource,
    pub pid: u32,
    pub socket: UnixStream,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
}

/// A started interpreter, before its channel is wrapped.
pub struct Process {
    pub child: Child,
    pub pid: u32,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
}

pub fn spawn(cfg: &WorkerConfig, paths: &Paths) -> Result<Spawned, WorkerError> {
    let spawn_err = |source| WorkerError::Spawn {
        python: cfg.python.clone(),
        source,
    };
    let (parent_end, child_end) = StdUnixStream::pair().map_err(spawn_err)?;
    let process = start_process(cfg, paths, child_end.into(), &[])?;
    let socket = parent_end
        .set_nonblocking(true)
        .and_then(|()| UnixStream::from_std(parent_end));
    match socket {
        Ok(socket) => Ok(Spawned {
            pid: process.pid,
            exit: ExitSource::Child(process.child),
            socket,
            stdout: process.stdout,
            stderr: process.stderr,
        }),
        Err(e) => {
            signal_group(process.pid, Signal::SIGKILL);
            Err(WorkerError::Protocol(format!(
                "setting up the worker's channels: {e}"
            )))
        }
    }
}

/// Starts `python -u -m infsh_worker` with `child_end` as its protocol fd,
/// `extra_env` on top of the usual environment.
pub fn start_process(
    cfg: &WorkerConfig,
    paths: &Paths,
    child_end: OwnedFd,
    extra_env: &[(&str, &str)],
) -> Result<Process, WorkerError> {
    let spawn_err = |source| WorkerError::Spawn {
        python: cfg.python.clone(),
        source,
    };
    // Both ends are CLOEXEC, so no other child inherits them. The child end
    // must not be 0-2: the stdio set-up in the forked child would overwrite
    // it before `pre_exec` moves it to fd 3. `try_clone` dups to fd >= 3.
    let mut child_end = child_end;
    if child_end.as_raw_fd() < PROTOCOL_FD {
        child_end = child_end.try_clone().map_err(spawn_err)?;
    }
    let child_fd = child_end.as_raw_fd();
    let host_pid = std::process::id() as libc::pid_t;

    let mut cmd = Command::new(&cfg.python);
    match cfg.runtime {
        crate::WorkerRuntime::Python => cmd.args(["-u", "-m", "infsh_worker"]),
        crate::WorkerRuntime::Node => cmd.arg(
            paths
                .runtime_dir
                .join(crate::runtime_files::NODE_PACKAGE)
                .join(crate::runtime_files::NODE_MAIN),
        ),
    };
    cmd.current_dir(&paths.app_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // The actor kills the whole group; this would only kill the leader.
        .kill_on_drop(false);
    for (key, value) in environment(cfg, paths) {
        cmd.env(key, value);
    }
    for (key, value) in extra_env {
        cmd.env(key, value);
    }
    // SAFETY: runs in the forked child before exec. Only async-signal-safe
    // calls (prctl, getppid, fcntl, dup2), no allocation, no locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            // The host may have died between fork and prctl: then no signal
            // would ever come.
            if libc::getppid() != host_pid {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            if child_fd == PROTOCOL_FD {
                // Already in place; dup2 would be a no-op and keep CLOEXEC.
                if libc::fcntl(PROTOCOL_FD, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(child_fd, PROTOCOL_FD) == -1 {
                // dup2's new fd does not have CLOEXEC: it survives exec.
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(spawn_err)?;
    // The child has its copy; ours must go, or the host would never see EOF
    // on the channel when the child dies.
    drop(child_end);
    let pid = child.id().expect("a just-spawned child has a pid");

    let to_pipe = |fd: io::Result<OwnedFd>| fd.and_then(pipe::Receiver::from_owned_fd);
    let stdout = to_pipe(child.stdout.take().expect("piped").into_owned_fd());
    let stderr = to_pipe(child.stderr.take().expect("piped").into_owned_fd());
    match (stdout, stderr) {
        (Ok(stdout), Ok(stderr)) => Ok(Process {
            child,
            pid,
            stdout,
            stderr,
        }),
        (Err(e), _) | (_, Err(e)) => {
            signal_group(pid, Signal::SIGKILL);
            Err(WorkerError::Protocol(format!(
                "setting up the worker's channels: {e}"
            )))
        }
    }
}

/// The host's environment, then `cfg.env`, then the protocol's variables.
/// Those the protocol depends on cannot be overridden; `FILE_CACHE_DIR` can.
fn environment(cfg: &WorkerConfig, paths: &Paths) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut inherited_pythonpath = std::env::var_os("PYTHONPATH");
    let mut file_cache = Some(paths.file_cache_dir.clone().into_os_string());
    for (key, value) in &cfg.env {
        match key.as_str() {
            "PYTHONPATH" => inherited_pythonpath = Some(value.into()),
            "FILE_CACHE_DIR" => file_cache = None,
            _ => {}
        }
        env.push((key.into(), value.into()));
    }
    let mut pythonpath = paths.runtime_dir.clone().into_os_string();
    if let Some(rest) = inherited_pythonpath.filter(|p| !p.is_empty()) {
        pythonpath.push(":");
        pythonpath.push(rest);
    }
    env.push(("PYTHONPATH".into(), pythonpath));
    if let Some(dir) = file_cache {
        env.push(("FILE_CACHE_DIR".into(), dir));
    }
    env.push(("INFSH_PROTOCOL_FD".into(), PROTOCOL_FD.to_string().into()));
    env.push(("INFSH_APP_DIR".into(), paths.app_dir.clone().into()));
    env.push(("INFSH_SPILL_DIR".into(), paths.spill_dir.clone().into()));
    env.push(("PYTHONUNBUFFERED".into(), "1".into()));
    env
}

/// Sends `signal` to the process group led by `pgid`; a group that is
/// already gone is not an error.
pub fn signal_group(pgid: u32, signal: Signal) {
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid, %signal, error = %e, "could not signal the worker's process group")
        }
    }
}

/// The worker's process group, killed (SIGKILL) when this is dropped unless
/// that already happened after the leader exited. Owned by the actor, so
/// dropping the last [`crate::Worker`] handle, or the runtime shutting down
/// with the actor task in it, leaves no process behind.
pub struct ProcessGroup {
    pgid: u32,
    /// Set once the final SIGKILL was sent after the leader was reaped:
    /// from then on the pgid may be reused by an unrelated process, so it
    /// must not be signalled again.
    released: bool,
}

impl ProcessGroup {
    pub fn new(pgid: u32) -> Self {
        ProcessGroup {
            pgid,
            released: false,
        }
    }

    pub fn pgid(&self) -> u32 {
        self.pgid
    }

    /// Signals the group, unless it was released.
    pub fn signal(&self, signal: Signal) {
        if !self.released {
            signal_group(self.pgid, signal);
        }
    }

    /// The leader exited: kill what it left behind (grandchildren) once,
    /// and never signal this pgid again.
    pub fn release(&mut self) {
        self.signal(Signal::SIGKILL);
        self.released = true;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.release();
    }
}

/// [`prepare_paths`] on a blocking thread, then the runtime it extracted
/// compiled to bytecode in the background (once per interpreter and folder:
/// [`crate::runtime_files::compile_bytecode_in_background`]).
pub async fn prepare_paths_async(cfg: &WorkerConfig) -> Result<Paths, WorkerError> {
    let owned = cfg.clone();
    let paths = match tokio::task::spawn_blocking(move || prepare_paths(&owned)).await {
        Ok(paths) => paths?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    if cfg.runtime == crate::WorkerRuntime::Python {
        crate::runtime_files::compile_bytecode_in_background(&cfg.python, &paths.runtime_dir);
    }
    Ok(paths)
}

/// Makes the per-worker folders and returns them. Blocking: run it from
/// `spawn_blocking`.
pub fn prepare_paths(cfg: &WorkerConfig) -> Result<Paths, WorkerError> {
    let app_dir = std::fs::canonicalize(&cfg.app_dir).map_err(|source| WorkerError::AppDir {
        path: cfg.app_dir.clone(),
        source,
    })?;
    let state_dir =
        std::path::absolute(&cfg.state_dir).map_err(|source| state_err(&cfg.state_dir, source))?;
    let runtime_dir = crate::runtime_files::extract(&state_dir)
        .map_err(|source| state_err(&state_dir.join("runtime"), source))?;
    let spill_root = state_dir.join("spill");
    std::fs::create_dir_all(&spill_root).map_err(|source| state_err(&spill_root, source))?;
    // One folder per worker, so leftovers of a dead worker can be removed
    // without touching its neighbours' files.
    let spill_dir = unique_dir(&spill_root).map_err(|source| state_err(&spill_root, source))?;
    let file_cache_dir = state_dir.join("file-cache");
    std::fs::create_dir_all(&file_cache_dir)
        .map_err(|source| state_err(&file_cache_dir, source))?;
    Ok(Paths {
        app_dir,
        runtime_dir,
        spill_dir,
        file_cache_dir,
    })
}

fn state_err(path: &Path, source: io::Error) -> WorkerError {
    WorkerError::StateDir {
        path: path.to_path_buf(),
        source,
    }
}

/// A new, empty, uniquely named folder under `root`.
fn unique_dir(root: &Path) -> io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = root.join(format!(
            "w-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            other => return other.map(|()| dir),
        }
    }
}
