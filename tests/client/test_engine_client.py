"""The official `inferencesh` client against an app hosted on an engine.

An API node (`infsh serve --engine-key`, hosting no app of its own) and one
`infsh engine run` linked to it, hosting copies of fixture apps. The client
only talks to the API node: each run is queued there, claimed by the engine,
run on its worker and reported back, and the client sees it as it would a
local one (wait, stream, no-wait + get_task, a raising function, an input
file uploaded to the node and fetched by the engine, output files uploaded
by the engine to the node and downloaded from there). Teardown
stops both and fails if a process of the engine's apps is left behind.

SQLite, or PostgreSQL with INFSH_TEST_STORE=postgres (conftest's
`store_flags`).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import requests
from inferencesh import Inference

from support import API_KEY, FIXTURES, REPO, app_processes

ENGINE_KEY = "engine-key-client-test"
HOSTED = ["multi-fn", "functions-variety", "fn-raises", "files-app"]


def _binary():
    path = os.environ.get("INFSH_BIN") or str(REPO / "target" / "debug" / "infsh")
    if not os.path.isfile(path):
        pytest.fail(f"no infsh binary at {path}: run `cargo build -p infsh-cli` (or set INFSH_BIN)")
    return path


def meta(output):
    return {"output_meta": None, **output}


def _get(url, path):
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.status, json.loads(resp.read())["data"]


def _env(root):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INFSH_API", "INFSH_SECRET_", "INFSH_ENGINE")) and k != "INFSH_STORE"}
    env.update({"INFSH_CACHE_DIR": str(root / "cache"), "INFSH_LOG": "info", "NO_COLOR": "1"})
    return env


def _start_node(root, store_flags):
    """`infsh serve` hosting nothing, taking engines; returns (proc, url, log)."""
    empty = root / "node-apps"
    empty.mkdir()
    log = root / "node.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [str(_binary()), "--json", "serve", "--apps", str(empty), "--host", "127.0.0.1",
             "--port", "0", "--data-dir", str(root / "node-data"), "--python", sys.executable,
             "--api-key", API_KEY, "--engine-key", ENGINE_KEY, "--lease-seconds", "5",
             "--shutdown-grace", "2", *store_flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file, env=_env(root),
        )
    first = {}

    def read_first_line():
        first["line"] = proc.stdout.readline().decode()
        for _ in proc.stdout:
            pass

    threading.Thread(target=read_first_line, daemon=True).start()
    deadline = time.monotonic() + 90
    while "line" not in first:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"infsh serve printed no address line; log:\n{log.read_text()}")
        time.sleep(0.02)
    return proc, json.loads(first["line"])["url"], log


def _stop(proc, limit=30):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, store_flags):
    root = tmp_path_factory.mktemp("infsh-fleet")
    apps = root / "engine-apps"
    for name in HOSTED:
        shutil.copytree(FIXTURES / name, apps / name, ignore=shutil.ignore_patterns("__pycache__"))
    apps = apps.resolve()
    node, url, node_log = _start_node(root, store_flags)
    engine_log = root / "engine.log"
    env = _env(root)
    env["INFSH_ENGINE_KEY"] = ENGINE_KEY
    with open(engine_log, "wb") as log_file:
        engine = subprocess.Popen(
            [str(_binary()), "engine", "run", "--server", url, "--name", "e1", "--apps", str(apps),
             "--data-dir", str(root / "engine-data"), "--python", sys.executable,
             "--shutdown-grace", "2", "--cancel-grace", "1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file, env=env,
        )
    logs = lambda: f"node:\n{node_log.read_text()}\nengine:\n{engine_log.read_text()}"  # noqa: E731
    try:
        deadline = time.monotonic() + 120
        online = False
        while not online and engine.poll() is None and time.monotonic() < deadline:
            try:
                _, engines = _get(url, "/engines")
                online = any(isinstance(e.get("remote"), dict) and e["name"] == "e1"
                             and e["remote"]["state"] == "online"
                             and len(e["remote"]["apps"]) == len(HOSTED) for e in engines)
            except (urllib.error.URLError, ConnectionError):
                pass
            if not online:
                time.sleep(0.1)
        if not online:
            pytest.fail(f"engine e1 never online with its apps; {logs()}")
        yield url
    finally:
        engine_code = _stop(engine)
        node_code = _stop(node)
        deadline = time.monotonic() + 15
        left = app_processes(apps)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = app_processes(apps)
        for pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert engine_code == 0, f"infsh engine run exited with {engine_code} on SIGTERM; {logs()}"
        assert node_code == 0, f"infsh serve exited with {node_code} on SIGTERM; {logs()}"
        assert not left, f"processes of the engine's apps outlived it: {left}"


@pytest.fixture()
def client(fleet):
    return Inference(api_key=API_KEY, base_url=fleet)


def test_run_waits_for_the_engine_and_returns_the_completed_task(client):
    result = client.run({"app": "tests/multi-fn", "function": "upscale", "input": {"value": 1.5, "factor": 4}})
    assert result["status"] == 10
    assert result["output"]["value"] == 6.0
    assert result["input"] == {"value": 1.5, "factor": 4}
    result = client.run({"app": "tests/multi-fn", "input": {"text": "hello"}})
    assert result["output"]["echo"] == "hello" and result["output"]["length"] == 5


def test_stream_of_a_remote_task_yields_each_status_then_the_result(client):
    stream = client.run(
        {"app": "tests/functions-variety", "function": "stream_fn", "input": {"delay": 0.3}}, stream=True
    )
    updates = list(stream)
    statuses = [u["status"] for u in updates]
    assert statuses[-1] == 10, statuses
    assert statuses == sorted(statuses), statuses
    assert updates[-1]["output"] == meta({"text": "abc"})
    partial = [u["output"]["text"] for u in updates[:-1] if u["output"]]
    assert all(p in ("a", "ab", "abc") for p in partial), partial


def test_no_wait_then_get_task_shows_the_engines_attempt(client):
    task = client.run({"app": "tests/multi-fn", "function": "generate", "input": {"prompt": "q", "n": 2}},
                      wait=False)
    assert task["status"] in (1, 2)
    done = client.wait_for_completion(task["id"])
    assert done["output"]["items"] == ["q-0", "q-1"]
    got = client.get_task(task["id"]).data
    assert got["status"] == 10
    assert got["attempts"][0]["engine"] == "e1", got
    assert got["attempts"][0]["outcome"] == "completed", got


def test_a_raising_function_on_the_engine_fails_the_run_naming_the_error(client):
    with pytest.raises(RuntimeError) as err:
        client.run({"app": "tests/fn-raises", "input": {"value": 3}})
    assert "ZeroDivisionError" in str(err.value)


def test_output_files_made_on_the_engine_download_from_the_api_node(client, fleet):
    result = client.run({"app": "tests/files-app", "function": "make_files", "input": {"label": "x"}})
    assert result["status"] == 10
    output = result["output"]
    got = {}
    for f in [*output["files"], output["nested"]["file"]]:
        assert f["uri"].startswith(fleet + "/files/"), f
        resp = requests.get(f["uri"], timeout=10)
        assert resp.status_code == 200
        got[f["filename"]] = resp.content
    assert got == {"one.txt": b"one\n", "two.txt": b"two\n", "nested.txt": b"nested\n"}


def test_a_local_input_file_is_uploaded_to_the_node_and_fetched_by_the_engine(client, fleet, tmp_path):
    note = tmp_path / "note.txt"
    note.write_bytes(b"hello infsh engine")
    result = client.run({"app": "tests/files-app", "function": "describe", "input": {"file": str(note)}})
    assert result["status"] == 10, result
    out = result["output"]
    assert out["size"] == 18
    assert out["first_bytes_hex"] == b"hello in".hex()
    assert out["filename"] == "note.txt"
    # The input the engine got is the node's file URL (the node keeps it).
    assert result["input"]["file"].startswith(fleet + "/files/")
