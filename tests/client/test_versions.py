"""App versions through the official `inferencesh` client (docs/deploy.md,
"Versions"): a folder deployed twice with `infsh app deploy`, then runs
naming `ns/name` (the current version), `ns/name@HASH` (pinned, an
8-digit prefix) and `ns/name@latest`, with the client's `run`."""

import json
import subprocess

import pytest
from inferencesh import Inference

from conftest import _binary, serve
from support import API_KEY

APP = "tests/versioned"

SOURCE = '''import asyncio
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput

LABEL = {label!r}

class RunInput(BaseAppInput):
    sleep: float = 0

class RunOutput(BaseAppOutput):
    label: str

class App(BaseApp):
    async def setup(self):
        pass

    async def run(self, input_data: RunInput) -> RunOutput:
        await asyncio.sleep(input_data.sleep)
        return RunOutput(label=LABEL)
'''


@pytest.fixture(scope="module")
def versions_server(tmp_path_factory, store_flags):
    yield from serve(tmp_path_factory, store_flags, ["counter"], [])


def deploy(server, folder, label):
    """Writes the app with this label and deploys it: the version document."""
    folder.mkdir(exist_ok=True)
    (folder / "inf.yml").write_text("namespace: tests\nname: versioned\ndefault_function: run\n")
    (folder / "inference.py").write_text(SOURCE.format(label=label))
    out = subprocess.run(
        [str(_binary()), "--json", "app", "deploy", str(folder),
         "--api-url", server.url, "--api-key", API_KEY],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def label(client, app):
    result = client.run({"app": app, "input": {}})
    assert result["status"] == 10, result
    return result["output"]["label"]


def test_runs_name_the_current_a_pinned_or_the_latest_version(versions_server, tmp_path):
    client = Inference(api_key=API_KEY, base_url=versions_server.url)
    v1 = deploy(versions_server, tmp_path / "src", "v1")
    assert v1["current"] is True and v1["status"] == "ready"
    assert label(client, APP) == "v1"
    v2 = deploy(versions_server, tmp_path / "src", "v2")
    assert v2["id"] != v1["id"]
    assert label(client, APP) == "v2"
    assert label(client, f"{APP}@{v1['id'][:8]}") == "v1"
    assert label(client, f"{APP}@latest") == "v2"
