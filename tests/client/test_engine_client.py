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

import pytest
import requests
from inferencesh import Inference

from fleet_support import Fleet, copy_apps
from support import API_KEY

ENGINE_KEY = "engine-key-client-test"
HOSTED = ["multi-fn", "functions-variety", "fn-raises", "files-app"]


def meta(output):
    return {"output_meta": None, **output}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, store_flags):
    processes = Fleet(tmp_path_factory.mktemp("infsh-fleet"), ENGINE_KEY)
    try:
        url = processes.start_node("node", store_flags)
        processes.start_engine("e1", url, copy_apps(HOSTED, processes.root / "engine-apps"))
        processes.wait_online(url, {"e1": len(HOSTED)})
        yield url
    finally:
        processes.close()


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
