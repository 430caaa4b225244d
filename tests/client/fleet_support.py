"""Real `infsh serve` API nodes and `infsh engine run` engines for the
client tests of engine-hosted apps (test_engine_client.py: one node, one
engine; test_fleet_client.py: two nodes on one PostgreSQL, three engines).

Every process is started with its stderr in a log file under the test's
folder; `Fleet.close()` stops them all with SIGTERM, kills any app process
they left behind, and fails if a process exited badly or left one."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support import API_KEY, FIXTURES, REPO, reap_app_processes, stop_process


def binary() -> str:
    path = os.environ.get("INFSH_BIN") or str(REPO / "target" / "debug" / "infsh")
    if not os.path.isfile(path):
        pytest.fail(f"no infsh binary at {path}: run `cargo build -p infsh-cli` (or set INFSH_BIN)")
    return path


def api_get(url: str, path: str):
    """(status, data) of a GET with the test's client key."""
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.status, json.loads(resp.read())["data"]


def copy_apps(names, folder: Path) -> Path:
    """Copies of these fixture apps in `folder` (its resolved path)."""
    for name in names:
        shutil.copytree(FIXTURES / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    return folder.resolve()


class Fleet:
    """The processes of one test module's fleet, stopped by `close()`."""

    def __init__(self, root: Path, engine_key: str):
        self.root = root
        self.engine_key = engine_key
        self.procs = []  # (kind, name, proc, log)
        self.app_dirs = []

    def env(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INFSH_API", "INFSH_SECRET_", "INFSH_ENGINE")) and k != "INFSH_STORE"}
        env.update({"INFSH_CACHE_DIR": str(self.root / "cache"), "INFSH_LOG": "info", "NO_COLOR": "1"})
        return env

    def logs(self) -> str:
        return "\n".join(f"{kind} {name}:\n{log.read_text(errors='replace')}"
                         for kind, name, _, log in self.procs)

    def start_node(self, name: str, flags) -> str:
        """`infsh serve` hosting nothing, taking engines; returns its URL."""
        empty = self.root / f"{name}-apps"
        empty.mkdir()
        log = self.root / f"{name}.log"
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                [binary(), "--json", "serve", "--apps", str(empty), "--host", "127.0.0.1",
                 "--port", "0", "--data-dir", str(self.root / f"{name}-data"), "--python", sys.executable,
                 "--api-key", API_KEY, "--engine-key", self.engine_key, "--lease-seconds", "5",
                 "--shutdown-grace", "2", *flags],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file, env=self.env(),
            )
        self.procs.append(("node", name, proc, log))
        first = {}

        def read_first_line():
            first["line"] = proc.stdout.readline().decode()
            for _ in proc.stdout:
                pass

        threading.Thread(target=read_first_line, daemon=True).start()
        deadline = time.monotonic() + 90
        while "line" not in first:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"infsh serve {name} printed no address line; {self.logs()}")
            time.sleep(0.02)
        return json.loads(first["line"])["url"]

    def start_engine(self, name: str, server: str, apps: Path) -> None:
        self.app_dirs.append(apps)
        log = self.root / f"engine-{name}.log"
        env = self.env()
        env["INFSH_ENGINE_KEY"] = self.engine_key
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                [binary(), "engine", "run", "--server", server, "--name", name, "--apps", str(apps),
                 "--data-dir", str(self.root / f"engine-{name}-data"), "--python", sys.executable,
                 "--shutdown-grace", "2", "--cancel-grace", "1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file, env=env,
            )
        self.procs.append(("engine", name, proc, log))

    def wait_online(self, url: str, engines: dict) -> None:
        """Polls `url`'s GET /engines until every engine named in `engines`
        is online with that many apps."""
        deadline = time.monotonic() + 120
        while True:
            try:
                _, listed = api_get(url, "/engines")
                online = {e["name"] for e in listed
                          if isinstance(e.get("remote"), dict) and e["remote"]["state"] == "online"
                          and len(e["remote"]["apps"]) == engines.get(e["name"])}
                if online >= set(engines):
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            dead = [name for kind, name, proc, _ in self.procs if proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                pytest.fail(f"engines {sorted(engines)} never all online at {url} (exited: {dead}); "
                            f"{self.logs()}")
            time.sleep(0.1)

    def close(self) -> None:
        codes = []
        # Engines first, so no engine is left polling a stopped node.
        for kind, name, proc, _ in sorted(self.procs, key=lambda p: p[0] != "engine"):
            codes.append((f"{kind} {name}", stop_process(proc)))
        left = reap_app_processes(self.app_dirs)
        bad = [(who, code) for who, code in codes if code != 0]
        assert not bad, f"exits on SIGTERM other than 0: {bad}; {self.logs()}"
        assert not left, f"processes of the engines' apps outlived them: {left}"
