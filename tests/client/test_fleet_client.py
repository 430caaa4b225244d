"""The official `inferencesh` client against a fleet: two API nodes on one
PostgreSQL database, sharing one files folder and one signing secret, with
three engines (e1 and e2 linked to node A, e3 to node B), each hosting its
own copies of the fixture apps. Clients talk to either node: runs, waits,
streams, cancels and files in and out work whichever node took the task and
whichever engine ran it (issue 13's first fleet test).

Needs a shared store, so it runs in the PostgreSQL pass of scripts/test.sh
(INFSH_TEST_STORE=postgres) and is skipped in the SQLite one. Teardown
stops every process and fails if one exits badly or leaves an app process.
"""

import threading
import time

import pytest
import requests
from inferencesh import Inference

from fleet_support import Fleet, api_get, copy_apps
from support import API_KEY

ENGINE_KEY = "engine-key-fleet-client-test"
HOSTED = ["multi-fn", "functions-variety", "hangs", "files-app"]
ENGINES = {"e1": "a", "e2": "a", "e3": "b"}
SIGNING_SECRET = "one-signing-secret-for-the-whole-fleet"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, store_flags):
    if not store_flags:
        pytest.skip("two API nodes need a shared store: runs with INFSH_TEST_STORE=postgres")
    fleet = Fleet(tmp_path_factory.mktemp("infsh-fleet2"), ENGINE_KEY)
    shared = ["--files", f"file://{fleet.root / 'files'}", "--signing-secret", SIGNING_SECRET]
    try:
        urls = {name: fleet.start_node(f"node-{name}", [*store_flags, *shared]) for name in ("a", "b")}
        for engine, node in ENGINES.items():
            fleet.start_engine(engine, urls[node], copy_apps(HOSTED, fleet.root / f"apps-{engine}"))
        # Every node lists every engine of the fleet (the registry is in the store).
        for url in urls.values():
            fleet.wait_online(url, {engine: len(HOSTED) for engine in ENGINES})
        yield urls
    finally:
        fleet.close()


@pytest.fixture()
def clients(nodes):
    return {name: Inference(api_key=API_KEY, base_url=url) for name, url in nodes.items()}


def status_of(client, task_id):
    return client.get_task(task_id).data["status"]


def wait_for_status(client, task_id, wanted, limit=60):
    deadline = time.monotonic() + limit
    while (status := status_of(client, task_id)) not in wanted:
        assert time.monotonic() < deadline, f"task {task_id} stayed in status {status}, wanted {wanted}"
        time.sleep(0.05)
    return status


def test_runs_through_either_node_complete_on_the_fleets_engines(clients):
    engines = set()
    for i in range(6):
        node = "ab"[i % 2]
        result = clients[node].run(
            {"app": "tests/multi-fn", "function": "upscale", "input": {"value": float(i), "factor": 2}}
        )
        assert result["status"] == 10, result
        assert result["output"]["value"] == 2.0 * i
        task = clients["ab"[(i + 1) % 2]].get_task(result["id"]).data
        assert task["status"] == 10 and task["output"]["value"] == 2.0 * i, task
        assert [a["outcome"] for a in task["attempts"]] == ["completed"], task
        engines.add(task["attempts"][0]["engine"])
    assert engines <= set(ENGINES), engines


def test_a_task_submitted_to_one_node_is_streamed_and_waited_on_from_the_other(clients):
    task = clients["a"].run(
        {"app": "tests/functions-variety", "function": "stream_fn", "input": {"delay": 0.3}}, wait=False
    )
    waited = {}
    waiter = threading.Thread(target=lambda: waited.update(clients["a"].wait_for_completion(task["id"])))
    waiter.start()
    updates = list(clients["b"].stream_task(task["id"]))
    waiter.join(timeout=60)
    assert updates[-1]["status"] == 10, updates
    assert updates[-1]["output"]["text"] == "abc", updates[-1]
    statuses = [u["status"] for u in updates]
    assert statuses == sorted(statuses), statuses
    partial = [u["output"]["text"] for u in updates if u.get("output")]
    assert all(p in ("a", "ab", "abc") for p in partial), partial
    assert waited.get("output", {}).get("text") == "abc", waited


def test_a_running_task_cancelled_through_the_other_node_ends_cancelled_everywhere(clients, nodes):
    task = clients["a"].run({"app": "tests/hangs", "function": "async_hang", "input": {}}, wait=False)
    wait_for_status(clients["b"], task["id"], {7})
    assert clients["b"].cancel(task["id"]) is None
    assert wait_for_status(clients["a"], task["id"], {10, 11, 12, 13}) == 12
    assert status_of(clients["b"], task["id"]) == 12
    # The engine that ran it stopped the call (its slot serves again).
    _, listed = api_get(nodes["a"], f"/tasks/{task['id']}")
    assert listed["attempts"][-1]["engine"] in ENGINES, listed
    done = clients["b"].run({"app": "tests/hangs", "function": "ok", "input": {}})
    assert done["output"]["ok"] is True


def test_an_input_file_uploaded_to_one_node_reaches_any_engine(clients, nodes, tmp_path):
    note = tmp_path / "note.txt"
    note.write_bytes(b"hello infsh fleet")
    for node in ("a", "b"):
        result = clients[node].run({"app": "tests/files-app", "function": "describe", "input": {"file": str(note)}})
        assert result["status"] == 10, result
        assert result["output"]["size"] == 17
        assert result["output"]["first_bytes_hex"] == b"hello in".hex()
        assert result["input"]["file"].startswith(nodes[node] + "/files/"), result["input"]


def test_output_files_download_from_either_node(clients, nodes):
    result = clients["b"].run({"app": "tests/files-app", "function": "make_files", "input": {"label": "x"}})
    assert result["status"] == 10, result
    output = result["output"]
    files = [*output["files"], output["nested"]["file"]]
    want = {"one.txt": b"one\n", "two.txt": b"two\n", "nested.txt": b"nested\n"}
    for node, url in nodes.items():
        got = {}
        for f in files:
            # The node the running engine is linked to stored the file and
            # names it; whichever that was, every node serves it (one files
            # folder). A URL is signed only by the node the client asked
            # (docs/deploy.md, "which node signs what"), so read with the key.
            owner = next(u for u in nodes.values() if f["uri"].startswith(u + "/files/"))
            uri = url + f["uri"][len(owner):]
            resp = requests.get(uri, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
            assert resp.status_code == 200, (node, uri, resp.text)
            got[f["filename"]] = resp.content
        assert got == want, node
