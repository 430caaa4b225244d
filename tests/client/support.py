"""Shared by conftest.py and the tests: paths, the test key, process checks."""

import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "apps"
API_KEY = "test-key"


def app_processes(folder: Path):
    """(pid, cmdline) of every live process whose cwd is inside `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            continue
        if cwd == str(folder) or cwd.startswith(str(folder) + os.sep):
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmd = "?"
            found.append((int(entry.name), cmd.strip()))
    return found



def stop_process(proc: subprocess.Popen, limit: float = 30):
    """SIGTERM, then its exit code; killed (and None) past `limit` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def reap_app_processes(folders, limit: float = 15):
    """Waits up to `limit` seconds for every process of these app folders to
    end, kills those left, and returns them (pid, cmdline): the test fails
    on any."""
    deadline = time.monotonic() + limit
    left = [p for folder in folders for p in app_processes(folder)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for folder in folders for p in app_processes(folder)]
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left
