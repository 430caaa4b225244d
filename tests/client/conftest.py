"""The real `infsh serve`, driven by the official `inferencesh` client.

The session fixture builds nothing: it runs the `infsh` binary from
`target/debug/infsh` (or `$INFSH_BIN`) as `infsh serve --port 0` over copies
of fixture apps, with `--api-key test-key`, and this interpreter (which has
`inferencesh` and Pillow) as every app's Python. Teardown stops the server
and fails if any process of the served apps (a worker, a child of one) is
left behind.

With `INFSH_TEST_STORE=postgres` the server keeps its tasks in PostgreSQL
(`--store`): a database of its own, created with `psql` on the server of
`INFSH_TEST_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres,
as the Rust tests; scripts/test-postgres.sh prints one) and dropped after.
"""

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

from support import API_KEY, FIXTURES, REPO, app_processes, reap_app_processes, stop_process

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"

SERVED = [
    "multi-fn", "files-app", "hangs", "fn-raises", "validation-app", "functions-variety", "batched",
    "tokens",
    # JavaScript apps beside the Python ones (test_node_side_by_side.py);
    # their environments are built with npm on first use.
    "node-functions", "public/markdown-to-html",
]


def _binary() -> Path:
    path = Path(os.environ.get("INFSH_BIN") or REPO / "target" / "debug" / "infsh")
    if not path.is_file():
        pytest.fail(f"no infsh binary at {path}: run `cargo build -p infsh-cli` (or set INFSH_BIN)")
    return path


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path, apps: Path, listed):
        self.url = url
        self.proc = proc
        self.log_path = log
        self.apps_dir = apps
        self.apps = listed

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cancel_count(self) -> int:
        """How many times the hangs app's on_cancel ran (INFSH_TEST_CANCEL_LOG)."""
        try:
            return self.cancel_log.read_text().count("on_cancel")
        except FileNotFoundError:
            return 0


def _with_database(url: str, name: str) -> str:
    scheme, rest = url.split("://", 1)
    authority = rest.split("?", 1)[0].split("/", 1)[0]
    query = "?" + rest.split("?", 1)[1] if "?" in rest else ""
    return f"{scheme}://{authority}/{name}{query}"


def _psql(url: str, sql: str) -> None:
    subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def _store_flags(label: str):
    """`--store URL` and its database when INFSH_TEST_STORE=postgres, else
    nothing (a generator: the database is dropped when it is closed)."""
    kind = os.environ.get("INFSH_TEST_STORE", "sqlite")
    if kind == "sqlite":
        yield []
        return
    if kind != "postgres":
        pytest.fail(f"INFSH_TEST_STORE={kind}: use sqlite or postgres")
    admin = os.environ.get("INFSH_TEST_DATABASE_URL") or DEFAULT_DATABASE_URL
    name = f"infsh_{label}_{os.getpid()}_{time.monotonic_ns()}"
    try:
        _psql(admin, f"CREATE DATABASE {name}")
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.fail(f"cannot create a database on {admin} ({e}): set INFSH_TEST_DATABASE_URL="
                    "$(scripts/test-postgres.sh | head -n1)")
    try:
        yield ["--store", _with_database(admin, name)]
    finally:
        _psql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def store_flags():
    """The store flags shared by the session's servers."""
    yield from _store_flags("client_test")


@pytest.fixture(scope="module")
def own_store_flags():
    """Store flags of a database of the module's own, for tests that count
    everything in the store (a shared PostgreSQL database holds every other
    server's records too)."""
    yield from _store_flags("client_own")


@pytest.fixture(scope="session")
def server(tmp_path_factory, store_flags):
    yield from serve(tmp_path_factory, store_flags, SERVED, [])


def serve(tmp_path_factory, store_flags, served, extra_flags):
    """`infsh serve` of these fixture apps with these extra flags, until
    the generator is closed (then stopped and checked)."""
    binary = _binary()
    root = tmp_path_factory.mktemp("infsh-serve")
    apps = root / "apps"
    for name in served:
        shutil.copytree(FIXTURES / name, apps / Path(name).name,
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    apps = apps.resolve()
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INFSH_API", "INFSH_SECRET_")) and k != "INFSH_STORE"}
    # The workers inherit the server's environment: the hangs app's on_cancel
    # appends to INFSH_TEST_CANCEL_LOG.
    env.update(
        {
            "INFSH_CACHE_DIR": str(root / "cache"),
            "INFSH_LOG": "info",
            "NO_COLOR": "1",
            "INFSH_TEST_CANCEL_LOG": str(root / "cancel.log"),
        }
    )
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [
                str(binary), "--json", "serve",
                "--apps", str(apps), "--host", "127.0.0.1", "--port", "0",
                "--data-dir", str(root / "data"), "--python", sys.executable,
                "--api-key", API_KEY, "--shutdown-grace", "2", "--cancel-grace", "2",
                *extra_flags, *store_flags,
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file, env=env,
        )
    first_line = {}

    def read_first_line():
        first_line["line"] = proc.stdout.readline().decode()
        for _ in proc.stdout:  # keep draining
            pass

    threading.Thread(target=read_first_line, daemon=True).start()
    deadline = time.monotonic() + 90
    while "line" not in first_line:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"infsh serve printed no address line; log:\n{log.read_text()}")
        time.sleep(0.02)
    doc = json.loads(first_line["line"])
    srv = Server(doc["url"], proc, log, apps, doc["apps"])
    srv.cancel_log = root / "cancel.log"
    while True:
        try:
            with urllib.request.urlopen(srv.url + "/health", timeout=5) as resp:
                if resp.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"GET /health never answered; log:\n{srv.log()}")
        time.sleep(0.05)
    try:
        yield srv
    finally:
        code = stop_process(proc)
        left = reap_app_processes([apps])
        assert code == 0, f"infsh serve exited with {code} on SIGTERM; log:\n{srv.log()}"
        assert not left, f"processes of the served apps outlived the server: {left}"
        if store_flags:
            assert not (root / "data" / "infsh.db").exists(), "the tasks went to SQLite"


@pytest.fixture()
def client(server):
    from inferencesh import Inference

    return Inference(api_key=API_KEY, base_url=server.url)
