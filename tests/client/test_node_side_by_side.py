"""A JavaScript app (kernel: node-22) and Python apps served by one `infsh
serve`, all called through the official `inferencesh` client: the same
runs, streams, files, errors and cancel as for Python (test_client.py).
The JavaScript apps' environments are built by infsh with `npm ci` from
their lock files on their first call (the npm registry must be reachable).
"""

import threading
import time

import requests

from support import FIXTURES

MARKDOWN_INPUT = (FIXTURES / "public" / "markdown-to-html" / "input.json").read_text()


def wait_status(client, task_id, wanted, limit=120.0):
    deadline = time.monotonic() + limit
    while True:
        task = client.get_task(task_id).data
        if task["status"] in wanted:
            return task
        assert time.monotonic() < deadline, f"task {task_id} stuck in {task['status']}"
        time.sleep(0.05)


def test_both_runtimes_are_listed_and_called_side_by_side(client, server):
    assert "tests/node-functions" in server.apps, server.apps
    assert "tests/multi-fn" in server.apps
    results = {}

    def call(name, request):
        results[name] = client.run(request)

    threads = [
        threading.Thread(target=call, args=("js", {"app": "tests/node-functions", "input": {"text": "js"}})),
        threading.Thread(target=call, args=("py", {"app": "tests/multi-fn", "input": {"text": "py"}})),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert results["js"]["status"] == 10
    assert results["js"]["output"] == {"text": "hello js"}
    assert results["py"]["output"]["echo"] == "py"


def test_the_public_markdown_app_returns_a_served_html_file(client, server):
    import json

    [app] = [a for a in server.apps if a.endswith("markdown-to-html")]
    result = client.run({"app": app, "input": json.loads(MARKDOWN_INPUT)})
    assert result["status"] == 10
    html = result["output"]["html"]
    assert '<h1 id="hello-world">Hello World</h1>' in html
    file = result["output"]["file"]
    assert file["uri"].startswith(server.url + "/")
    assert "path" not in file
    resp = requests.get(file["uri"], timeout=30)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.content.decode() == html


def test_a_javascript_stream_yields_its_snapshots(client):
    stream = client.run(
        {"app": "tests/node-functions", "function": "count", "input": {"n": 5}}, stream=True
    )
    updates = list(stream)
    assert updates[-1]["status"] == 10
    assert stream.result["output"] == {"count": 5, "done": True}
    partial = [u["output"]["count"] for u in updates[:-1] if u["output"]]
    assert partial == sorted(partial) and all(1 <= p <= 5 for p in partial), partial


def test_a_javascript_function_that_throws_fails_the_task(client):
    import pytest

    with pytest.raises(RuntimeError) as raised:
        client.run({"app": "tests/node-functions", "function": "fail", "input": {}})
    assert "RangeError: boom from fail" in str(raised.value)


def node_cancels(server):
    """How many times node-functions' onCancel ran (INFSH_TEST_CANCEL_LOG)."""
    try:
        return server.cancel_log.read_text().count("onCancel node")
    except FileNotFoundError:
        return 0


def test_cancel_of_a_hanging_javascript_call_runs_on_cancel(client, server):
    before = node_cancels(server)
    task = client.run({"app": "tests/node-functions", "function": "hang", "input": {}}, wait=False)
    wait_status(client, task["id"], {7})
    assert client.cancel(task["id"]) is None
    ended = wait_status(client, task["id"], {10, 11, 12})
    assert ended["status"] == 12
    deadline = time.monotonic() + 30
    while node_cancels(server) == before:
        assert time.monotonic() < deadline, "onCancel never ran"
        time.sleep(0.05)
    # The same worker serves the next call.
    assert client.run({"app": "tests/node-functions", "function": "add", "input": {"a": 1, "b": 2}})[
        "output"
    ] == {"sum": 3}


def test_a_crashing_javascript_worker_fails_its_task_and_is_replaced(client):
    import pytest

    with pytest.raises(RuntimeError) as raised:
        client.run({"app": "tests/node-functions", "function": "crash", "input": {}})
    assert "exit status 3" in str(raised.value) or "exited" in str(raised.value), str(raised.value)
    assert client.run({"app": "tests/node-functions", "input": {"text": "again"}})["output"] == {
        "text": "hello again"
    }


def test_a_local_path_in_input_is_uploaded_and_read_by_the_javascript_app(client, tmp_path):
    source = tmp_path / "note.txt"
    source.write_text("read by node")
    result = client.run({"app": "tests/node-functions", "function": "read", "input": {"file": str(source)}})
    assert result["status"] == 10
    assert result["output"] == {"content": "read by node", "size": 12}
