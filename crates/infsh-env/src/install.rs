//! Running the installers (`uv`, or `python -m venv` + pip) with their output
//! streamed line by line to the caller's progress callback, and the last lines
//! kept for the error report when a step fails.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::{EnvError, EnvProgress, Installer};

/// How many output lines an [`EnvError::InstallFailed`] carries.
pub const LOG_TAIL_LINES: usize = 30;

/// The tool that builds an environment, with what it needs to run.
#[derive(Debug, Clone)]
pub(crate) enum Tool {
    Uv { uv: PathBuf },
    Pip,
}

impl Tool {
    pub(crate) fn installer(&self) -> Installer {
        match self {
            Tool::Uv { .. } => Installer::Uv,
            Tool::Pip => Installer::Pip,
        }
    }
}

/// What one build needs: the folder to create, the interpreter to make it from,
/// the app folder (the installers' cwd, so relative paths in requirements work),
/// and the requirements.
pub(crate) struct Build<'a> {
    pub tool: Tool,
    pub base_python: &'a Path,
    pub dir: &'a Path,
    pub app_dir: &'a Path,
    /// `Some` when `requirements.txt` exists.
    pub requirements: Option<&'a Path>,
    /// Packages to install next to the requirements (the SDK when not named there).
    pub extra: &'a [String],
}

/// The interpreter inside a venv folder.
pub fn venv_python(dir: &Path) -> PathBuf {
    dir.join("bin").join("python")
}

impl Build<'_> {
    /// The commands of the build, in order.
    pub(crate) fn commands(&self) -> Vec<Command> {
        let python = venv_python(self.dir);
        let mut install_args: Vec<std::ffi::OsString> = Vec::new();
        if let Some(req) = self.requirements {
            install_args.push("-r".into());
            install_args.push(req.into());
        }
        install_args.extend(self.extra.iter().map(Into::into));

        match &self.tool {
            Tool::Uv { uv } => {
                let mut venv = self.command(uv);
                // --seed: pip inside the env, as a pip-built one has (apps that
                // `python -m pip install` at runtime exist).
                venv.args(["venv", "--seed", "--python"])
                    .arg(self.base_python)
                    .arg(self.dir);
                let mut install = self.command(uv);
                install
                    .args(["pip", "install", "--python"])
                    .arg(&python)
                    .args(&install_args);
                vec![venv, install]
            }
            Tool::Pip => {
                let mut venv = self.command(self.base_python);
                venv.args(["-m", "venv"]).arg(self.dir);
                let mut install = self.command(&python);
                install
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--no-input",
                        "--progress-bar",
                        "off",
                    ])
                    .args(["--disable-pip-version-check"])
                    .args(&install_args);
                vec![venv, install]
            }
        }
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.current_dir(self.app_dir)
            .env("NO_COLOR", "1")
            .env("UV_NO_PROGRESS", "1")
            .env("PYTHONUNBUFFERED", "1")
            // An activated venv of the caller must not leak into the build.
            .env_remove("VIRTUAL_ENV")
            .env_remove("PYTHONHOME");
        c
    }

    /// Runs every command, streaming output lines to `progress`.
    pub(crate) async fn run(
        &self,
        progress: &(dyn Fn(EnvProgress) + Send + Sync),
    ) -> Result<(), EnvError> {
        let installer = self.tool.installer();
        let mut tail = VecDeque::with_capacity(LOG_TAIL_LINES);
        for cmd in self.commands() {
            run_streamed(installer, cmd, progress, &mut tail).await?;
        }
        Ok(())
    }
}

pub(crate) async fn run_streamed(
    installer: Installer,
    mut cmd: Command,
    progress: &(dyn Fn(EnvProgress) + Send + Sync),
    tail: &mut VecDeque<String>,
) -> Result<(), EnvError> {
    let program = cmd.as_std().get_program().to_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropping the prepare future (Ctrl-C) must not leave an installer running.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| EnvError::io("cannot run", PathBuf::from(&program), e))?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let readers = [
        tokio::spawn(forward_lines(
            child.stdout.take().expect("piped"),
            tx.clone(),
        )),
        tokio::spawn(forward_lines(child.stderr.take().expect("piped"), tx)),
    ];
    while let Some(line) = rx.recv().await {
        if tail.len() == LOG_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        progress(EnvProgress::Installing { line });
    }
    for r in readers {
        let _ = r.await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| EnvError::io("waiting for", PathBuf::from(&program), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(EnvError::InstallFailed {
            installer,
            status: status.to_string(),
            log_tail: tail.iter().cloned().collect(),
        })
    }
}

/// Sends each line (split on `\n` and `\r`, so redrawn progress lines arrive
/// one by one), lossily decoded and without trailing whitespace, skipping blanks.
async fn forward_lines(stream: impl AsyncRead + Unpin, tx: mpsc::UnboundedSender<String>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                for part in buf.split(|&b| b == b'\r' || b == b'\n') {
                    let line = String::from_utf8_lossy(part).trim_end().to_string();
                    if !line.is_empty() && tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn args(c: &Command) -> Vec<String> {
        std::iter::once(c.as_std().get_program())
            .chain(c.as_std().get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn build(tool: Tool, req: Option<&Path>, extra: &[String]) -> Vec<Vec<String>> {
        let b = Build {
            tool,
            base_python: Path::new("/usr/bin/python3"),
            dir: Path::new("/c/env"),
            app_dir: Path::new("/app"),
            requirements: req,
            extra,
        };
        b.commands().iter().map(args).collect()
    }

    #[test]
    fn uv_commands() {
        let cmds = build(
            Tool::Uv {
                uv: "/bin/uv".into(),
            },
            Some(Path::new("/app/requirements.txt")),
            &["inferencesh".into()],
        );
        assert_eq!(
            cmds[0],
            [
                "/bin/uv",
                "venv",
                "--seed",
                "--python",
                "/usr/bin/python3",
                "/c/env"
            ]
        );
        assert_eq!(
            cmds[1],
            [
                "/bin/uv",
                "pip",
                "install",
                "--python",
                "/c/env/bin/python",
                "-r",
                "/app/requirements.txt",
                "inferencesh"
            ]
        );
    }

    #[test]
    fn pip_commands_without_requirements_file() {
        let cmds = build(Tool::Pip, None, &["inferencesh".into()]);
        assert_eq!(cmds[0], ["/usr/bin/python3", "-m", "venv", "/c/env"]);
        assert_eq!(cmds[1][..3], ["/c/env/bin/python", "-m", "pip"]);
        assert_eq!(cmds[1].last().unwrap(), "inferencesh");
        assert!(!cmds[1].contains(&"-r".to_string()));
    }

    #[tokio::test]
    async fn streams_lines_and_keeps_the_tail_on_failure() {
        let lines = Mutex::new(Vec::new());
        let progress = |p: EnvProgress| {
            if let EnvProgress::Installing { line } = p {
                lines.lock().unwrap().push(line);
            }
        };
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "for i in $(seq 1 40); do echo out$i; done; printf 'a\\rb\\n'; echo err >&2; exit 3",
        ]);
        let mut tail = VecDeque::new();
        let err = run_streamed(Installer::Pip, cmd, &progress, &mut tail)
            .await
            .unwrap_err();
        let lines = lines.into_inner().unwrap();
        assert_eq!(lines.len(), 43);
        assert!(lines.contains(&"err".to_string()) && lines.contains(&"b".to_string()));
        match err {
            EnvError::InstallFailed {
                installer,
                status,
                log_tail,
            } => {
                assert_eq!(installer, Installer::Pip);
                assert!(status.contains('3'), "{status}");
                assert_eq!(log_tail.len(), LOG_TAIL_LINES);
                assert!(log_tail.contains(&"err".to_string()));
                assert!(!log_tail.contains(&"out1".to_string()));
            }
            other => panic!("{other}"),
        }
    }
}
