"""Cancellation: async tasks, plain ``def`` threads, streams, and on_cancel."""

from __future__ import annotations

import time
from pathlib import Path

CANCEL_APP = '''
import asyncio
import os
import time
from typing import AsyncIterator

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class In(BaseAppInput):
    tag: str = ""


class Out(BaseAppOutput):
    text: str


def mark(name):
    with open(name, "w") as f:
        f.write(str(os.getpid()))


class App(BaseApp):
    async def setup(self):
        pass

    async def on_cancel(self):
        mark("on_cancel_called")

    async def hang(self, input: In) -> Out:
        mark(f"started-{input.tag}")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            mark(f"cancelled-{input.tag}")
            raise
        return Out(text="never")

    def spin(self, input: In) -> Out:
        mark(f"started-{input.tag}")
        try:
            while True:
                try:
                    time.sleep(0.005)
                except Exception:  # an app's broad except must not swallow Cancelled
                    pass
        except BaseException as e:
            mark(f"raised-{type(e).__module__}.{type(e).__name__}")
            raise

    async def ticks(self, input: In) -> AsyncIterator[Out]:
        i = 0
        while True:
            yield Out(text=f"tick {i}")
            i += 1
            await asyncio.sleep(0.01)

    async def quick(self, input: In) -> Out:
        return Out(text="quick")

    async def inner_cancelled(self, input: In) -> Out:
        task = asyncio.ensure_future(asyncio.sleep(10))
        task.cancel()
        await task  # CancelledError escapes, but nobody cancelled this call
        return Out(text="never")
'''

SYNC_ON_CANCEL = CANCEL_APP.replace(
    "    async def on_cancel(self):\n        mark(\"on_cancel_called\")\n",
    "    def on_cancel(self):\n        mark(\"on_cancel_called\")\n",
)


def wait_for(path: Path, timeout: float = 20.0) -> None:
    """Polls for a marker file the app writes (bounded)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def start_ready(app, start, src=CANCEL_APP):
    app_dir = app(src)
    w = start(app_dir)
    w.ready()
    assert w.setup()["type"] == "setup_done"
    return w, app_dir


def test_cancel_async_function(app, start):
    w, app_dir = start_ready(app, start)
    w.send({"type": "call", "id": "a", "function": "hang", "input": {"tag": "a"}, "metadata": {}})
    wait_for(app_dir / "started-a")
    w.send({"type": "cancel", "id": "a"})
    failed = w.expect("failed")
    assert failed["id"] == "a" and failed["kind"] == "cancelled"
    assert (app_dir / "on_cancel_called").exists()  # awaited before cancelling
    assert (app_dir / "cancelled-a").exists()  # the task really got CancelledError
    assert w.call("quick", {}, id="after")["output"]["text"] == "quick"


def test_cancel_sync_function_injects_cancelled(app, start):
    w, app_dir = start_ready(app, start, SYNC_ON_CANCEL)
    w.send({"type": "call", "id": "s", "function": "spin", "input": {"tag": "s"}, "metadata": {}})
    wait_for(app_dir / "started-s")
    w.send({"type": "cancel", "id": "s"})
    failed = w.expect("failed")
    assert failed["id"] == "s" and failed["kind"] == "cancelled"
    assert (app_dir / "on_cancel_called").exists()
    assert (app_dir / "raised-infsh_worker.Cancelled").exists()
    # the pool thread survived and serves the next plain-def call
    w.send({"type": "call", "id": "s2", "function": "spin", "input": {"tag": "s2"}, "metadata": {}})
    wait_for(app_dir / "started-s2")
    w.send({"type": "cancel", "id": "s2"})
    assert w.expect("failed")["id"] == "s2"
    assert w.call("quick", {}, id="after")["type"] == "done"
    w.shutdown()


def test_cancel_stream_after_snapshots(app, start):
    w, _ = start_ready(app, start)
    w.send({"type": "call", "id": "t", "function": "ticks", "input": {}, "metadata": {}})
    assert w.expect("snapshot")["output"]["text"] == "tick 0"
    w.send({"type": "cancel", "id": "t"})
    while True:
        msg = w.recv()
        assert msg["id"] == "t"
        if msg["type"] != "snapshot":
            break
    assert msg["type"] == "failed" and msg["kind"] == "cancelled"


def test_cancel_of_unknown_or_finished_call_is_ignored(app, start):
    w, _ = start_ready(app, start)
    w.send({"type": "cancel", "id": "nobody"})
    assert w.call("quick", {}, id="q")["type"] == "done"
    w.send({"type": "cancel", "id": "q"})
    # the next frame belongs to the next call: nothing was sent for either cancel
    done = w.call("quick", {}, id="q2")
    assert done["id"] == "q2" and done["type"] == "done"


def test_several_calls_cancel_only_the_one_named(app, start):
    w, app_dir = start_ready(app, start)
    for tag in ("x", "y"):
        w.send({"type": "call", "id": tag, "function": "hang", "input": {"tag": tag}, "metadata": {}})
    wait_for(app_dir / "started-x")
    wait_for(app_dir / "started-y")
    w.send({"type": "cancel", "id": "x"})
    failed = w.expect("failed")
    assert failed["id"] == "x"
    assert not (app_dir / "cancelled-y").exists()
    w.send({"type": "cancel", "id": "y"})
    assert w.expect("failed")["id"] == "y"


def test_a_cancelled_error_the_host_did_not_ask_for_is_an_app_failure(app, start):
    w, _ = start_ready(app, start)
    failed = w.call("inner_cancelled", {})
    assert failed["kind"] == "app" and failed["error"].startswith("CancelledError")
    assert w.call("quick", {}, id="after")["type"] == "done"
