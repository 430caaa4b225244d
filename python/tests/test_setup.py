"""Setup signatures and config (docs/writing-apps.md, "setup"), re-setup, and shutdown/unload."""

from __future__ import annotations

import pytest

HEADER = '''
from pydantic import BaseModel
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, BaseAppSetup, Metadata


class In(BaseAppInput):
    pass


class Out(BaseAppOutput):
    text: str

'''

REPORT = '''
    async def report(self, input: In) -> Out:
        return Out(text=self.got)
'''

APP_SETUP = '''
class AppSetup(BaseAppSetup):
    size: int = 1
'''

VARIANTS = {
    "none": (
        "",
        "    async def setup(self):\n        self.got = 'none'\n",
        "none",
    ),
    "metadata": (
        "",
        "    async def setup(self, metadata):\n"
        "        self.got = f'{type(metadata).__name__}:{metadata.app_id}:{metadata.custom}'\n",
        "Metadata:app-1:yes",
    ),
    "metadata-annotated": (
        "",
        "    async def setup(self, meta: Metadata):\n        self.got = f'{type(meta).__name__}:{meta.app_id}'\n",
        "Metadata:app-1",
    ),
    "config-annotated": (
        "class Cfg(BaseModel):\n    size: int = 1\n",
        "    async def setup(self, config: Cfg):\n        self.got = f'{type(config).__name__}:{config.size}'\n",
        "Cfg:7",
    ),
    "config-from-module-AppSetup": (
        APP_SETUP,
        "    async def setup(self, config):\n        self.got = f'{type(config).__name__}:{config.size}'\n",
        "AppSetup:7",
    ),
    "config-and-metadata": (
        APP_SETUP,
        "    async def setup(self, config: AppSetup, metadata: Metadata):\n"
        "        self.got = f'{config.size}:{metadata.worker_id}'\n",
        "7:w-9",
    ),
    "config-other-name-sync": (
        APP_SETUP,
        "    def setup(self, cfg):\n        self.got = f'{type(cfg).__name__}:{cfg.size}'\n",
        "AppSetup:7",
    ),
    "config-without-model": (
        "",
        "    def setup(self, config):\n"
        "        self.got = f'{config.size}:{config[\"size\"]}:{config.get(\"missing\", \"-\")}:{config.model_dump()}'\n",
        "7:7:-:{'size': 7}",
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_setup_signatures(app, start, variant):
    module_extra, setup_src, expected = VARIANTS[variant]
    src = HEADER + module_extra + "\n\nclass App(BaseApp):\n" + setup_src + REPORT
    w = start(app(src))
    w.ready()
    done = w.setup({"size": 7}, {"app_id": "app-1", "worker_id": "w-9", "custom": "yes"})
    assert done["type"] == "setup_done", done
    assert isinstance(done["seconds"], float)
    assert w.call("report", {})["output"]["text"] == expected
    w.shutdown()


def test_invalid_config_is_a_config_failure(app, start):
    src = HEADER + APP_SETUP + "\n\nclass App(BaseApp):\n" + VARIANTS["config-from-module-AppSetup"][1] + REPORT
    w = start(app(src))
    w.ready()
    failed = w.setup({"size": "not a number"})
    assert failed["type"] == "setup_failed" and failed["kind"] == "config"
    assert "size" in failed["error"]
    assert w.call("report", {})["kind"] == "not_set_up"


def test_setup_raising_is_an_app_failure_and_calls_are_refused(app, start):
    src = HEADER + '''
class App(BaseApp):
    async def setup(self):
        print("loading weights")
        raise RuntimeError("weights missing")
''' + REPORT
    w = start(app(src))
    w.ready()
    failed = w.setup()
    assert failed == {**failed, "type": "setup_failed", "kind": "app", "error": "RuntimeError: weights missing"}
    assert 'raise RuntimeError("weights missing")' in failed["traceback"]
    frames = [line for line in failed["traceback"].splitlines() if line.startswith("  File ")]
    assert frames and all("inference.py" in line for line in frames), failed["traceback"]
    assert "Traceback" not in w.stderr()
    # flushed before the result frame: the log is complete when it arrives
    assert "loading weights" in w.stdout()
    refused = w.call("report", {})
    assert refused["kind"] == "not_set_up" and refused["id"] == "c1"


def test_call_before_setup_is_refused(app, start):
    src = HEADER + "\n\nclass App(BaseApp):\n" + VARIANTS["none"][1] + REPORT
    w = start(app(src))
    w.ready()
    assert w.call("report", {})["kind"] == "not_set_up"
    assert w.setup()["type"] == "setup_done"
    assert w.call("report", {})["type"] == "done"


def test_re_setup_with_a_new_config(app, start):
    src = HEADER + APP_SETUP + '''

class App(BaseApp):
    async def setup(self, config: AppSetup):
        self.calls = getattr(self, "calls", 0) + 1
        self.got = f"size={config.size} setups={self.calls}"
''' + REPORT
    w = start(app(src))
    w.ready()
    w.setup({"size": 1})
    assert w.call("report", {})["output"]["text"] == "size=1 setups=1"
    w.setup({"size": 2})
    assert w.call("report", {})["output"]["text"] == "size=2 setups=2"
    # a failed re-setup leaves the worker not set up
    assert w.setup({"size": "x"})["type"] == "setup_failed"
    assert w.call("report", {})["kind"] == "not_set_up"


UNLOAD_APP = HEADER + '''
class App(BaseApp):
    async def setup(self):
        self.got = "ok"

    async def unload(self):
        with open("unloaded.txt", "w") as f:
            f.write("yes")
''' + REPORT


def test_shutdown_calls_unload_after_setup(app, start):
    app_dir = app(UNLOAD_APP)
    w = start(app_dir)
    w.ready()
    w.setup()
    bye = w.shutdown()
    assert bye == {"type": "bye", "unload_error": None}
    assert (app_dir / "unloaded.txt").read_text() == "yes"


def test_shutdown_without_setup_does_not_unload(app, start):
    app_dir = app(UNLOAD_APP)
    w = start(app_dir)
    w.ready()
    assert w.shutdown() == {"type": "bye", "unload_error": None}
    assert not (app_dir / "unloaded.txt").exists()


def test_unload_error_is_reported(app, start):
    src = HEADER + '''
class App(BaseApp):
    async def setup(self):
        self.got = "ok"

    def unload(self):
        raise ValueError("gpu is gone")
''' + REPORT
    w = start(app(src))
    w.ready()
    w.setup()
    assert w.shutdown()["unload_error"] == "ValueError: gpu is gone"


def test_a_call_during_setup_waits_for_it(app, start):
    src = HEADER + '''
import asyncio

class App(BaseApp):
    async def setup(self):
        await asyncio.sleep(0.3)  # a slow model load
        self.got = "loaded"
''' + REPORT
    w = start(app(src))
    w.ready()
    w.send({"type": "setup", "config": {}, "metadata": {}})
    w.send({"type": "call", "id": "early", "function": "report", "input": {}, "metadata": {}})
    assert w.expect("setup_done", "setup_failed")["type"] == "setup_done"
    done = w.expect("done", "failed")
    assert done["type"] == "done" and done["output"]["text"] == "loaded"


def test_unknown_message_types_are_ignored_with_a_warning(app, start):
    src = HEADER + "\n\nclass App(BaseApp):\n" + VARIANTS["none"][1] + REPORT
    w = start(app(src))
    w.ready()
    w.send({"type": "from_the_future", "x": 1})
    assert w.setup()["type"] == "setup_done"
    assert "ignoring a message of unknown type 'from_the_future'" in w.stderr()


def test_shutdown_with_a_call_in_flight(app, start):
    src = HEADER + '''
import asyncio

class App(BaseApp):
    async def setup(self):
        self.got = "ok"

    async def hang(self, input: In) -> Out:
        await asyncio.Event().wait()
''' + REPORT
    w = start(app(src))
    w.ready()
    w.setup()
    w.send({"type": "call", "id": "stuck", "function": "hang", "input": {}, "metadata": {}})
    assert w.shutdown() == {"type": "bye", "unload_error": None}
