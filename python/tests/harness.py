"""A minimal host for tests: starts ``python -u -m infsh_worker`` the way the
Rust host does (docs/protocol.md, "Launching") and speaks frames with it.

- the child end of a socketpair becomes the child's fd 3 (or, with
  ``fd=None``, stays at whatever number it has and INFSH_PROTOCOL_FD says so);
- stdin is /dev/null; stdout/stderr go to files, so a chatty worker can never
  block on a full pipe while a test waits for a frame;
- every receive has a timeout, and ``close`` kills the process group, so a
  broken worker fails a test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

PYTHON_ROOT = Path(__file__).resolve().parents[1]  # .../python, holds infsh_worker/
SPILL_THRESHOLD = 1024 * 1024
DEFAULT_TIMEOUT = 30.0


def write_app(root: Path, name: str, inference: Optional[str], files: Optional[Dict[str, str]] = None) -> Path:
    """Creates an app folder ``root/name`` with ``inference.py`` (unless
    None) and other files, keyed by relative path."""
    app = root / name
    app.mkdir(parents=True, exist_ok=True)
    if inference is not None:
        (app / "inference.py").write_text(textwrap.dedent(inference))
    for fname, text in (files or {}).items():
        path = app / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return app


class Worker:
    def __init__(self, app_dir: Path, tmp: Path, fd: Optional[int] = 3, env: Optional[Dict[str, str]] = None) -> None:
        self.app_dir = Path(app_dir)
        self.spill_dir = tmp / "spill"
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = tmp / f"stdout-{id(self)}.log"
        self.stderr_path = tmp / f"stderr-{id(self)}.log"
        parent, child = socket.socketpair()
        self.sock = parent
        child_fd = child.fileno()

        full_env = dict(os.environ)
        full_env.pop("PYTHONPATH", None)
        full_env.update(
            {
                "PYTHONPATH": str(PYTHON_ROOT),
                "PYTHONUNBUFFERED": "1",
                "INFSH_APP_DIR": str(self.app_dir),
                "INFSH_SPILL_DIR": str(self.spill_dir),
                "FILE_CACHE_DIR": str(tmp / "file-cache"),
                "INFSH_PROTOCOL_FD": str(3 if fd == 3 else child_fd),
            }
        )
        full_env.update(env or {})

        def to_fd3() -> None:  # runs in the child between fork and exec
            if child_fd == 3:
                os.set_inheritable(3, True)
            else:
                os.dup2(child_fd, 3)  # the copy is inheritable

        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", "-m", "infsh_worker"],
                cwd=str(self.app_dir),
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # own process group, like the host does
                # fd 3 case: close_fds=False keeps the dup2'ed fd 3; Python's
                # own fds are non-inheritable, so nothing else leaks.
                close_fds=fd != 3,
                pass_fds=() if fd == 3 else (child_fd,),
                preexec_fn=to_fd3 if fd == 3 else None,
            )
        child.close()

    # -- frames ----------------------------------------------------------------

    def _recv_exact(self, n: int, deadline: float) -> bytes:
        chunks = []
        while n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no frame from the worker in time; stderr:\n{self.stderr()}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(min(n, 1 << 20))
            except socket.timeout:
                continue
            if not chunk:
                raise EOFError(f"worker closed the channel; stderr:\n{self.stderr()}")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def recv_raw(self, timeout: float = DEFAULT_TIMEOUT) -> Dict[str, Any]:
        """The next frame as sent (a spilled stub stays a stub)."""
        deadline = time.monotonic() + timeout
        length = int.from_bytes(self._recv_exact(4, deadline), "big")
        assert length <= 64 * 1024 * 1024
        return json.loads(self._recv_exact(length, deadline))

    def recv(self, timeout: float = DEFAULT_TIMEOUT) -> Dict[str, Any]:
        """The next message, loading (and deleting) a spilled one."""
        msg = self.recv_raw(timeout)
        if msg["type"] == "spilled":
            path = Path(msg["path"])
            data = path.read_bytes()
            assert len(data) == msg["bytes"]
            path.unlink()
            msg = json.loads(data)
        return msg

    def expect(self, *types: str, timeout: float = DEFAULT_TIMEOUT) -> Dict[str, Any]:
        msg = self.recv(timeout)
        assert msg["type"] in types, f"expected {types}, got {msg}\nstderr:\n{self.stderr()}"
        return msg

    def send(self, msg: Dict[str, Any]) -> None:
        data = json.dumps(msg).encode()
        self.sock.sendall(len(data).to_bytes(4, "big") + data)

    def send_spilled(self, msg: Dict[str, Any]) -> Path:
        data = json.dumps(msg).encode()
        path = self.spill_dir / f"host-{time.monotonic_ns()}.json"
        path.write_bytes(data)
        self.send({"type": "spilled", "path": str(path), "bytes": len(data)})
        return path

    # -- conversations -------------------------------------------------------------

    def ready(self) -> Dict[str, Any]:
        return self.expect("ready")

    def setup(self, config: Optional[Dict[str, Any]] = None, metadata: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        self.send({"type": "setup", "config": config or {}, "metadata": metadata or {}})
        return self.expect("setup_done", "setup_failed")

    def call(self, function: str, input: Dict[str, Any], id: str = "c1", metadata: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        self.send({"type": "call", "id": id, "function": function, "input": input, "metadata": metadata or {}})
        return self.expect("done", "failed")

    def collect(self, id: str, timeout: float = DEFAULT_TIMEOUT) -> List[Dict[str, Any]]:
        """Frames for call ``id`` up to and including its done/failed."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.1, deadline - time.monotonic()))
            assert msg.get("id") == id, msg
            frames.append(msg)
            if msg["type"] in ("done", "failed"):
                return frames

    def shutdown(self, timeout: float = DEFAULT_TIMEOUT) -> Dict[str, Any]:
        self.send({"type": "shutdown"})
        bye = self.expect("bye", timeout=timeout)
        assert self.wait(timeout) == 0
        return bye

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        return self.proc.wait(timeout)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self.sock.close()
