"""Fixtures: ``start(app_dir)`` launches a worker that is killed after the test."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Worker, write_app  # noqa: E402

TEST_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def watchdog():
    """Fails (instead of hanging) a test that blocks somewhere without a
    timeout of its own, e.g. a blocking read in an in-process test."""

    def expired(signum, frame):
        raise TimeoutError(f"test exceeded {TEST_TIMEOUT_S}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def start(tmp_path):
    workers = []

    def _start(app_dir, **kwargs) -> Worker:
        w = Worker(app_dir, tmp_path, **kwargs)
        workers.append(w)
        return w

    yield _start
    for w in workers:
        w.close()


@pytest.fixture
def app(tmp_path):
    """``app(source, name="app", files=None)`` writes an app folder."""

    def _app(source, name="app", files=None) -> Path:
        return write_app(tmp_path / "apps", name, source, files)

    return _app
