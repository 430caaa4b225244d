//! Starting and stopping the real `infsh serve`, and measuring its memory
//! (and its workers') from /proc.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Config;

/// The app the soak drives, as `inf.yml` names it.
pub const APP_ID: &str = "tests/soak-app";
/// The Bearer key the soak's server accepts.
pub const API_KEY: &str = "soak-key";

pub struct Server {
    child: Option<Child>,
    pub pid: i32,
    pub url: String,
    pub log_path: PathBuf,
}

/// A folder for one soak: `apps/soak-app` (a copy of the fixture),
/// `data/`, `cache/`, `calls.log`, `server.log`.
pub struct Sandbox {
    pub dir: PathBuf,
}

impl Sandbox {
    pub fn new(cfg: &Config) -> Result<Sandbox> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("infsh-soak-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(dir.join("apps"))?;
        copy_dir(&cfg.app_dir, &dir.join("apps").join("soak-app"))
            .with_context(|| format!("copying {}", cfg.app_dir.display()))?;
        std::fs::write(dir.join("calls.log"), b"")?;
        Ok(Sandbox { dir })
    }

    pub fn call_log(&self) -> PathBuf {
        self.dir.join("calls.log")
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name() == "__pycache__" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

impl Server {
    /// `infsh --json serve` on 127.0.0.1:0 with `--preload`; returns once the
    /// app's workers are ready.
    pub async fn start(cfg: &Config, sb: &Sandbox, http: &reqwest::Client) -> Result<Server> {
        let log_path = sb.dir.join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(&cfg.infsh);
        cmd.args(["--json", "serve", "--host", "127.0.0.1", "--port", "0"])
            .arg("--apps")
            .arg(sb.dir.join("apps"))
            .arg("--data-dir")
            .arg(sb.dir.join("data"))
            .arg("--python")
            .arg(&cfg.python)
            .args(["--api-key", API_KEY, "--preload"])
            .args(["--replicas", &cfg.replicas.to_string()])
            .args(["--concurrency", &cfg.worker_concurrency.to_string()])
            .args(["--queue-capacity", &cfg.queue_capacity.to_string()])
            .args(["--cancel-grace", "5", "--shutdown-grace", "10"])
            .env("SOAK_CALL_LOG", sb.call_log())
            .env("INFSH_CACHE_DIR", sb.dir.join("cache"))
            .env("INFSH_LOG", "warn")
            .env("NO_COLOR", "1")
            .env_remove("INFSH_API_KEYS")
            .env_remove("INFSH_PYTHON")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", cfg.infsh.display()))?;
        let pid = child.id().context("no pid")? as i32;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .context("infsh serve printed no address line within 120 s")??
            .context("infsh serve exited before printing its address")?;
        // Keep draining stdout so the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let doc: Value = serde_json::from_str(&first)
            .with_context(|| format!("the first stdout line is not JSON: {first}"))?;
        let url = doc["url"].as_str().context("no url")?.to_string();
        let server = Server {
            child: Some(child),
            pid,
            url,
            log_path,
        };
        server.wait_ready(http).await?;
        Ok(server)
    }

    /// Waits until `GET /ready` shows the app `ready` with all its replicas.
    async fn wait_ready(&self, http: &reqwest::Client) -> Result<()> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < Duration::from_secs(120) {
            if let Ok(resp) = http
                .get(format!("{}/ready", self.url))
                .bearer_auth(API_KEY)
                .send()
                .await
            {
                last = resp.text().await.unwrap_or_default();
                if let Ok(doc) = serde_json::from_str::<Value>(&last) {
                    let apps = doc["data"]["apps"].as_array().cloned().unwrap_or_default();
                    if apps
                        .iter()
                        .any(|a| a["id"] == APP_ID && a["state"] == "ready")
                    {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "the app never became ready; last /ready: {last}\nserver log:\n{}",
            self.log()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit: `(exit code, seconds)`; None if it
    /// had to be killed after `limit`.
    pub async fn terminate(&mut self, limit: Duration) -> (Option<i32>, f64) {
        let Some(mut child) = self.child.take() else {
            return (None, 0.0);
        };
        let start = Instant::now();
        // SAFETY: kill(2) on the pid of our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) => (status.code(), start.elapsed().as_secs_f64()),
            _ => {
                let _ = child.kill().await;
                (None, start.elapsed().as_secs_f64())
            }
        }
    }
}

/// Every process below `root` (children, grandchildren...).
pub fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(c) {
                out.push(c);
                stack.push(c);
            }
        }
    }
    out.sort_unstable();
    out
}

/// The parent pid from /proc/PID/stat (the field after the parenthesized name).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether the process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].chars().next())
            .is_some_and(|state| state != 'Z'),
        Err(_) => false,
    }
}

/// A `kB` field of a /proc file (`VmRSS:` of status, `Pss:` of smaps_rollup).
fn kib_field(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn rss_kib(pid: i32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

pub fn pss_kib(pid: i32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// One memory sample of the server and its process tree.
#[derive(Clone, Debug)]
pub struct MemSample {
    pub label: String,
    pub tasks_done: usize,
    pub elapsed_s: f64,
    pub server_rss_kib: u64,
    pub server_pss_kib: u64,
    /// The anonymous part of the server's RSS (heap; not file pages).
    pub server_anon_kib: u64,
    pub tree_rss_kib: u64,
    pub tree_pss_kib: u64,
    pub processes: usize,
}

impl MemSample {
    pub fn take(server_pid: i32, label: &str, tasks_done: usize, elapsed_s: f64) -> MemSample {
        let tree: Vec<i32> = std::iter::once(server_pid)
            .chain(descendants(server_pid))
            .collect();
        let mut s = MemSample {
            label: label.to_string(),
            tasks_done,
            elapsed_s,
            server_rss_kib: rss_kib(server_pid).unwrap_or(0),
            server_pss_kib: pss_kib(server_pid).unwrap_or(0),
            server_anon_kib: kib_field(&format!("/proc/{server_pid}/status"), "RssAnon:")
                .unwrap_or(0),
            tree_rss_kib: 0,
            tree_pss_kib: 0,
            processes: 0,
        };
        for pid in tree {
            if let (Some(rss), Some(pss)) = (rss_kib(pid), pss_kib(pid)) {
                s.tree_rss_kib += rss;
                s.tree_pss_kib += pss;
                s.processes += 1;
            }
        }
        s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "tasks_done": self.tasks_done,
            "elapsed_s": round(self.elapsed_s, 2),
            "server_rss_kib": self.server_rss_kib,
            "server_pss_kib": self.server_pss_kib,
            "server_rss_anon_kib": self.server_anon_kib,
            "tree_rss_kib": self.tree_rss_kib,
            "tree_pss_kib": self.tree_pss_kib,
            "processes": self.processes,
        })
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}
