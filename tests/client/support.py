"""Shared by conftest.py and the tests: paths, the test key, process checks."""

import os
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

