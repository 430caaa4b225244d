"""The official `inferencesh` client (PyPI) against `infsh serve`.

Every call goes through the real client: `Inference.run` (wait, stream,
no-wait), `get_task`, `cancel`, uploads of local paths found in `input`,
downloads of `File` outputs, and the errors it raises. `AsyncInference` too
when its extra (aiohttp, aiofiles) is installed.
"""

import asyncio
import importlib.util
import io
import threading
import time

import pytest
import requests
from inferencesh import APIError, Inference
from PIL import Image, ImageOps

from support import API_KEY, FIXTURES

STRIPPED_KEYS = {"id", "created_at", "updated_at", "input", "output", "logs", "status"}
DOT_PNG = FIXTURES / "files-app" / "samples" / "dot.png"


def meta(output):
    """An app's output as the SDK serializes it: `output_meta` comes along (null)."""
    return {"output_meta": None, **output}


def wait_status(client, task_id, wanted, limit=60.0):
    """Polls GET /tasks/{id} until its status is in `wanted`; returns the task."""
    deadline = time.monotonic() + limit
    while True:
        task = client.get_task(task_id).data
        if task["status"] in wanted:
            return task
        assert time.monotonic() < deadline, f"task {task_id} stuck in {task['status']}"
        time.sleep(0.05)


# --------------------------------------------------------------------- run


def test_run_waits_and_returns_the_stripped_completed_task(client, server):
    assert server.apps == sorted(server.apps)
    assert "tests/multi-fn" in server.apps
    result = client.run({"app": "tests/multi-fn", "function": "upscale", "input": {"value": 1.5, "factor": 4}})
    assert set(result) == STRIPPED_KEYS
    assert result["status"] == 10
    assert result["output"] == meta({"value": 6.0, "setup_count": 1})
    assert result["input"] == {"value": 1.5, "factor": 4}
    assert isinstance(result["id"], str) and result["id"]


def test_the_default_function_and_app_colon_function(client):
    result = client.run({"app": "tests/multi-fn", "input": {"text": "hello"}})
    assert result["output"] == meta({"echo": "hello", "length": 5, "setup_count": 1})
    result = client.run({"app": "tests/multi-fn:summarize", "input": {"text": "a b c d", "max_words": 2}})
    assert result["output"] == meta({"summary": "a b", "word_count": 4, "setup_count": 1})


def test_every_function_shares_one_setup(client):
    outputs = [
        client.run({"app": "tests/multi-fn", "function": fn, "input": inp})["output"]
        for fn, inp in [
            ("run", {"text": "x"}),
            ("generate", {"prompt": "p", "n": 2}),
            ("upscale", {"value": 2.0}),
            ("summarize", {"text": "one two"}),
        ]
    ]
    assert [o["setup_count"] for o in outputs] == [1, 1, 1, 1]
    assert outputs[1]["items"] == ["p-0", "p-1"]
    assert outputs[2]["value"] == 4.0


def test_base_urls_with_a_trailing_slash_or_v1_work(server):
    for base in (server.url + "/", server.url + "/v1"):
        c = Inference(api_key=API_KEY, base_url=base)
        assert c.run({"app": "tests/multi-fn", "input": {"text": "s"}})["output"]["echo"] == "s"


def test_stream_yields_each_status_then_the_result(client):
    stream = client.run(
        {"app": "tests/functions-variety", "function": "stream_fn", "input": {"delay": 0.3}}, stream=True
    )
    updates = list(stream)
    statuses = [u["status"] for u in updates]
    assert all(isinstance(s, int) for s in statuses), statuses
    assert statuses[-1] == 10, statuses
    assert 7 in statuses, statuses
    assert statuses == sorted(statuses), statuses
    assert all(set(u) == STRIPPED_KEYS for u in updates)
    assert updates[-1]["output"] == meta({"text": "abc"})
    assert stream.result["output"] == meta({"text": "abc"})
    # Partial outputs of the streaming function, if shown, are its snapshots.
    partial = [u["output"]["text"] for u in updates[:-1] if u["output"]]
    assert all(p in ("a", "ab", "abc") for p in partial), partial


def test_no_wait_returns_the_queued_task_and_get_task_follows_it(client):
    task = client.run({"app": "tests/multi-fn", "function": "generate", "input": {"prompt": "q", "n": 1}}, wait=False)
    assert set(task) == STRIPPED_KEYS
    assert task["status"] in (1, 2)
    assert task["output"] is None
    done = wait_status(client, task["id"], {10, 11, 12, 13})
    assert done["status"] == 10
    assert done["output"] == meta({"items": ["q-0"], "setup_count": 1})
    assert done["app"] == "tests/multi-fn"
    assert done["function"] == "generate"
    assert done["error"] is None
    assert client.wait_for_completion(task["id"])["output"] == meta({"items": ["q-0"], "setup_count": 1})
    assert client.tasks.get(task["id"]).data["status"] == 10


def test_cancel_of_a_long_task(client, server, tmp_path):
    pid_file = tmp_path / "child.pid"
    cancels_before = server.cancel_count()
    task = client.run(
        {"app": "tests/hangs", "function": "async_hang", "input": {"pid_file": str(pid_file)}}, wait=False
    )
    wait_status(client, task["id"], {7})
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the hanging function never started"
        time.sleep(0.05)

    waiter_error = {}

    def waiter():
        try:
            client.wait_for_completion(task["id"])
        except Exception as e:  # noqa: BLE001 - the client raises RuntimeError
            waiter_error["error"] = e

    # The waiter sees the cancel on its stream, or (if it connects after)
    # in the first snapshot: either way it raises.
    thread = threading.Thread(target=waiter)
    thread.start()
    assert client.cancel(task["id"]) is None
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert isinstance(waiter_error.get("error"), RuntimeError), waiter_error
    assert str(waiter_error["error"]) in ("task cancelled", "Task cancelled")
    ended = client.get_task(task["id"]).data
    assert ended["status"] == 12
    assert ended["output"] is None
    # The app's on_cancel ran once for it.
    assert server.cancel_count() == cancels_before + 1
    # The same app serves the next call.
    assert client.run({"app": "tests/hangs", "function": "ok", "input": {}})["output"] == meta({"ok": True})


def test_a_queued_task_cancels_at_once(client):
    blocker = client.run({"app": "tests/hangs", "function": "sync_hang", "input": {}}, wait=False)
    wait_status(client, blocker["id"], {7})
    queued = client.run({"app": "tests/hangs", "function": "ok", "input": {}}, wait=False)
    assert client.get_task(queued["id"]).data["status"] in (1, 2)
    client.cancel(queued["id"])
    assert client.get_task(queued["id"]).data["status"] == 12
    client.cancel(blocker["id"])
    assert wait_status(client, blocker["id"], {10, 11, 12, 13})["status"] == 12
    # The app still serves afterwards.
    assert client.run({"app": "tests/hangs", "function": "ok", "input": {}})["output"] == meta({"ok": True})


# ------------------------------------------------------------------- files


def test_a_local_path_in_input_is_uploaded_and_read_by_the_app(client, tmp_path):
    note = tmp_path / "note.txt"
    note.write_bytes(b"hello infsh upload")
    result = client.run({"app": "tests/files-app", "function": "describe", "input": {"file": str(note)}})
    out = result["output"]
    assert out["size"] == 18
    assert out["first_bytes_hex"] == b"hello in".hex()
    assert out["content_type"] == "text/plain"
    assert out["filename"] == "note.txt"
    # What the task kept as input is the uploaded file's URL, not the local path.
    assert result["input"]["file"].startswith("http://127.0.0.1:")


def test_a_file_output_is_downloadable_from_its_uri(client, server):
    result = client.run({"app": "tests/files-app", "function": "invert", "input": {"image": str(DOT_PNG)}})
    image = result["output"]["image"]
    assert image["uri"].startswith(server.url + "/")
    assert image["content_type"] == "image/png"
    assert "path" not in image
    resp = requests.get(image["uri"], timeout=30)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("image/png")
    assert image["size"] == len(resp.content)
    got = Image.open(io.BytesIO(resp.content))
    original = Image.open(DOT_PNG)
    if original.mode == "RGBA":
        r, g, b, a = original.split()
        expected = Image.merge("RGBA", (*ImageOps.invert(Image.merge("RGB", (r, g, b))).split(), a))
    else:
        expected = ImageOps.invert(original.convert("RGB"))
    assert got.size == original.size
    assert got.mode == expected.mode
    assert got.tobytes() == expected.tobytes()


def test_nested_and_listed_file_outputs(client):
    out = client.run({"app": "tests/files-app", "function": "make_files", "input": {"label": "L"}})["output"]
    assert out["nested"]["label"] == "L"
    bodies = [requests.get(f["uri"], timeout=30).content for f in out["files"]]
    assert bodies == [b"one\n", b"two\n"]
    assert requests.get(out["nested"]["file"]["uri"], timeout=30).content == b"nested\n"
    assert [f["filename"] for f in out["files"]] == ["one.txt", "two.txt"]


def test_files_upload_and_a_uri_input(client):
    uploaded = client.files.upload(b"raw bytes here!!")
    assert uploaded["uri"].startswith("http://127.0.0.1:")
    out = client.run({"app": "tests/files-app", "function": "describe", "input": {"file": uploaded["uri"]}})["output"]
    assert out["size"] == 16
    assert out["first_bytes_hex"] == b"raw byte".hex()


# ------------------------------------------------------------------ errors


def test_a_bad_api_key_is_refused(server):
    bad = Inference(api_key="wrong-key", base_url=server.url)
    with pytest.raises(APIError) as err:
        bad.run({"app": "tests/multi-fn", "input": {"text": "x"}})
    assert err.value.status_code == 401
    assert err.value.code == "unauthorized"
    with pytest.raises(APIError) as err:
        bad.get_task("anything")
    assert err.value.status_code == 401


def test_an_unknown_app_is_a_404(client):
    with pytest.raises(APIError) as err:
        client.run({"app": "tests/nope", "input": {}})
    assert err.value.status_code == 404
    assert err.value.code == "not_found"
    assert 'unknown app "tests/nope"' in str(err.value)
    assert "tests/multi-fn" in str(err.value)


def test_an_unknown_function_is_a_404_listing_the_functions(client):
    with pytest.raises(APIError) as err:
        client.run({"app": "tests/multi-fn", "function": "nope", "input": {}})
    assert err.value.status_code == 404
    assert err.value.code == "not_found"
    assert 'unknown function "nope"' in str(err.value)
    assert "generate, run, summarize, upscale" in str(err.value)


def test_invalid_input_is_a_422(client):
    with pytest.raises(APIError) as err:
        client.run({"app": "tests/validation-app", "input": {"prompt": "x", "steps": 99}})
    assert err.value.status_code == 422
    assert err.value.code == "validation_error"
    assert "steps" in str(err.value)


def test_a_raising_function_fails_the_task(client):
    with pytest.raises(RuntimeError) as err:
        client.run({"app": "tests/fn-raises", "input": {"value": 3}})
    assert "ZeroDivisionError" in str(err.value)
    assert "division by zero" in str(err.value)


def test_an_unknown_task_is_a_404(client):
    with pytest.raises(APIError) as err:
        client.get_task("no-such-task")
    assert err.value.status_code == 404
    with pytest.raises(APIError) as err:
        client.cancel("no-such-task")
    assert err.value.status_code == 404


# ------------------------------------------------------------------- async

needs_async = pytest.mark.skipif(
    importlib.util.find_spec("aiohttp") is None or importlib.util.find_spec("aiofiles") is None,
    reason="AsyncInference needs inferencesh[async] (aiohttp, aiofiles): scripts/dev-python.sh installs them",
)


def _async_client(server):
    from inferencesh import AsyncInference

    return AsyncInference(api_key=API_KEY, base_url=server.url)


@needs_async
def test_async_run_wait_stream_and_upload(server, tmp_path):
    note = tmp_path / "async.txt"
    note.write_bytes(b"async upload!")

    async def main():
        c = _async_client(server)
        done = await c.run({"app": "tests/multi-fn", "function": "upscale", "input": {"value": 3.0}})
        stream = await c.run(
            {"app": "tests/functions-variety", "function": "stream_fn", "input": {"delay": 0.3}}, stream=True
        )
        statuses = [u["status"] async for u in stream]
        described = await c.run({"app": "tests/files-app", "function": "describe", "input": {"file": str(note)}})
        queued = await c.run({"app": "tests/multi-fn", "input": {"text": "nw"}}, wait=False)
        waited = await c.wait_for_completion(queued["id"])
        return done, statuses, stream.result, described, waited

    done, statuses, streamed, described, waited = asyncio.run(main())
    assert done["status"] == 10
    assert done["output"] == meta({"value": 6.0, "setup_count": 1})
    assert statuses[-1] == 10 and 7 in statuses, statuses
    assert streamed["output"] == meta({"text": "abc"})
    assert described["output"]["size"] == 13
    assert described["output"]["first_bytes_hex"] == b"async up".hex()
    assert waited["output"]["echo"] == "nw"


@needs_async
def test_async_errors(server):
    from inferencesh import AsyncInference

    async def main():
        bad = AsyncInference(api_key="nope", base_url=server.url)
        with pytest.raises(APIError) as auth:
            await bad.run({"app": "tests/multi-fn", "input": {}})
        c = _async_client(server)
        with pytest.raises(APIError) as missing:
            await c.run({"app": "tests/multi-fn", "function": "nope", "input": {}})
        with pytest.raises(RuntimeError) as failed:
            await c.run({"app": "tests/fn-raises", "input": {}})
        return auth.value, missing.value, failed.value

    auth, missing, failed = asyncio.run(main())
    assert auth.status_code == 401
    assert missing.status_code == 404 and missing.code == "not_found"
    assert "ZeroDivisionError" in str(failed)
