"""Calling functions: sync, async, streaming, metadata, validation, errors,
outputs and their File pointers."""

from __future__ import annotations

import pytest

CALLS_APP = '''
import asyncio
import logging
import threading
from typing import AsyncGenerator, AsyncIterator, Dict, List, Optional

from pydantic import BaseModel
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, File, Metadata

log = logging.getLogger("calls-app")


class In(BaseAppInput):
    text: str = ""
    n: int = 3


class Out(BaseAppOutput):
    text: str


class Item(BaseModel):
    name: str
    weight: float


class Order(BaseModel):
    items: List[Item]
    note: Optional[str] = None


class Total(BaseModel):
    total: float


class Sub(BaseModel):
    file: File
    label: str = "x"


class Files(BaseAppOutput):
    image: File
    gallery: List[File]
    by_name: Dict[str, File]
    nested: Sub
    maybe: Optional[File] = None
    pairs: List[Sub] = []


class App(BaseApp):
    async def setup(self):
        self.signal = asyncio.Event()

    async def upper(self, input: In) -> Out:
        print(f"upper got {input.text}")
        log.info("logged %s", input.text)
        return Out(text=input.text.upper())

    def where(self, input: In) -> Out:
        return Out(text=threading.current_thread().name)

    async def weigh(self, order: Order) -> Total:
        return Total(total=sum(i.weight for i in order.items))

    async def gen(self, input: In) -> AsyncGenerator[Out, None]:
        text = ""
        for i in range(input.n):
            text += str(i)
            print(f"before snapshot {text}")
            yield Out(text=text)

    async def iter(self, input: In) -> AsyncIterator[Out]:
        for i in range(input.n):
            yield Out(text=f"step {i}")

    async def paced(self, input: In) -> AsyncIterator[Out]:
        # Yields further apart than the worker's snapshot interval (10 ms).
        for i in range(input.n):
            if i:
                await asyncio.sleep(0.05)
            yield Out(text=f"step {i}")

    async def reyield(self, input: In) -> AsyncIterator[Out]:
        # One object, changed and yielded again; changed once more after a
        # yield that the worker holds (within its 10 ms interval).
        out = Out(text="a")
        yield out
        out.text = "ab"
        yield out
        out.text = "ab, changed after its yield"
        await asyncio.sleep(0.3)
        out.text = "abc"
        yield out

    async def burst_then_pause(self, input: In) -> AsyncIterator[Out]:
        text = ""
        for c in "abc":
            text += c
            yield Out(text=text)
        await asyncio.sleep(0.3)
        yield Out(text=text + "d")

    async def empty_stream(self, input: In) -> AsyncIterator[Out]:
        if False:
            yield Out(text="never")

    async def whoami(self, input: In, metadata: Metadata) -> Out:
        return Out(text=f"{type(metadata).__name__} {metadata.task_id} {metadata.gpu_ids} {metadata.extra_key}")

    async def boom(self, input: In) -> Out:
        raise ValueError("bad thing happened")

    def sync_boom(self, input: In) -> Out:
        raise KeyError("missing")

    async def scratch(self, input: In) -> Out:
        import tempfile
        with tempfile.NamedTemporaryFile(delete=False, suffix=".txt") as f:
            f.write(b"x")
        return Out(text=f.name)

    def sync_scratch(self, input: In) -> Out:
        import tempfile
        return Out(text=tempfile.mkdtemp(prefix="out-"))

    async def as_dict(self, input: In) -> Out:
        return {"text": input.text}

    async def wrong_type(self, input: In) -> Out:
        return 42

    async def bad_dict(self, input: In) -> Out:
        return {"nope": 1}

    async def wait_signal(self, input: In) -> Out:
        await self.signal.wait()
        return Out(text="released")

    async def send_signal(self, input: In) -> Out:
        self.signal.set()
        return Out(text="sent")

    async def huge_output(self, input: In) -> Out:
        return Out(text="x" * (65 * 1024 * 1024))

    async def huge_error(self, input: In) -> Out:
        raise ValueError("y" * (65 * 1024 * 1024))

    async def nan(self, input: In) -> Total:
        return Total(total=float("nan"))

    async def files(self, input: In) -> Files:
        def make(name, body):
            with open(name, "w") as f:
                f.write(body)
            return File(path=name)

        return Files(
            image=make("image.png", "png!"),
            gallery=[make("g0.txt", "0"), make("g1.txt", "11")],
            by_name={"a/b~c": make("k.txt", "kk")},
            nested=Sub(file=make("n.txt", "nnn")),
            pairs=[Sub(file=make("p.txt", "p"), label="y")],
        )
'''


@pytest.fixture
def worker(app, start):
    w = start(app(CALLS_APP))
    w.ready()
    assert w.setup()["type"] == "setup_done"
    yield w


def test_async_function_and_its_logs(worker):
    done = worker.call("upper", {"text": "hi"})
    assert done["type"] == "done" and done["id"] == "c1"
    assert done["output"] == {"output_meta": None, "text": "HI"}
    assert done["files"] == [] and isinstance(done["seconds"], float)
    # flushed before `done`: the call's logs are complete when it is seen
    assert "upper got hi" in worker.stdout()
    assert "INFO:calls-app:logged hi" in worker.stderr()


def test_sync_function_runs_off_the_event_loop(worker):
    done = worker.call("where", {})
    assert done["output"]["text"].startswith("infsh-call")


def test_plain_basemodel_input(worker):
    done = worker.call("weigh", {"items": [{"name": "a", "weight": 1.5}, {"name": "b", "weight": 2}]})
    assert done["output"] == {"total": 3.5}


def test_validation_error_has_dotted_locations(worker):
    failed = worker.call("weigh", {"items": [{"name": "a", "weight": 1}, {"name": "b", "weight": "heavy"}, {}]})
    assert failed["type"] == "failed" and failed["kind"] == "input"
    locs = [e["loc"] for e in failed["errors"]]
    assert locs == ["items.1.weight", "items.2.name", "items.2.weight"]
    assert all(e["msg"] for e in failed["errors"])
    assert "items.1.weight" in failed["error"] and "\n" not in failed["error"]


def assert_paced(frames, yields):
    """The snapshot frames of a stream whose yields were ``yields``: the
    first yield at once, then some of the others in order (each sent or
    replaced by a later one within the worker's 10 ms interval, so which
    ones depends on timing), and ``done`` with the last."""
    texts = [f["output"]["text"] for f in frames]
    assert [f["type"] for f in frames] == ["snapshot"] * (len(frames) - 1) + ["done"], frames
    assert texts[0] == yields[0] and texts[-1] == yields[-1], texts
    positions = [yields.index(t) for t in texts[:-1]]
    assert positions == sorted(set(positions)), f"snapshots out of order or repeated: {texts}"
    return texts[:-1]


def test_async_generator_streams_snapshots_then_done(worker):
    worker.send({"type": "call", "id": "s", "function": "gen", "input": {"n": 3}, "metadata": {}})
    first = worker.expect("snapshot")
    assert first["output"]["text"] == "0", "the first yield is sent at once"
    # printed before the yield, flushed before its snapshot
    assert "before snapshot 0" in worker.stdout()
    assert_paced([first] + worker.collect("s"), ["0", "01", "012"])


def test_async_iterator_streams(worker):
    worker.send({"type": "call", "id": "i", "function": "iter", "input": {"n": 2}, "metadata": {}})
    assert_paced(worker.collect("i"), ["step 0", "step 1"])


def test_a_fast_generator_sends_far_fewer_snapshots_than_yields(worker):
    # 2,000 yields without a pause take a few ms here; for half of them to
    # be sent, one would have to come every 10 ms: 20 s of yielding.
    yields = [f"step {i}" for i in range(2000)]
    worker.send({"type": "call", "id": "f", "function": "iter", "input": {"n": 2000}, "metadata": {}})
    snapshots = assert_paced(worker.collect("f"), yields)
    assert len(snapshots) < len(yields) // 2, len(snapshots)


def test_yields_further_apart_than_the_interval_are_each_a_snapshot(worker):
    worker.send({"type": "call", "id": "p", "function": "paced", "input": {"n": 3}, "metadata": {}})
    frames = worker.collect("p")
    assert [(f["type"], f["output"]["text"]) for f in frames] == [
        ("snapshot", "step 0"),
        ("snapshot", "step 1"),
        ("snapshot", "step 2"),
        ("done", "step 2"),
    ]


def test_an_object_yielded_again_is_sent_as_it_was_when_yielded(worker):
    # Yields are serialized when sent; an app that yields one object again
    # and again gets each yield serialized when it is made, so the held
    # "ab" is not sent as the text it had later.
    worker.send({"type": "call", "id": "r", "function": "reyield", "input": {}, "metadata": {}})
    snapshots = assert_paced(worker.collect("r"), ["a", "ab", "abc"])
    assert snapshots == ["a", "ab", "abc"], snapshots


def test_a_burst_is_sent_as_its_newest_yield_when_the_interval_is_up(worker):
    # "ab" and "abc" follow "a" at once; then the generator pauses for
    # 0.3 s. "abc" goes out during the pause, when the interval is up (it is
    # not held until the next yield, which would have replaced it).
    worker.send({"type": "call", "id": "b", "function": "burst_then_pause", "input": {}, "metadata": {}})
    snapshots = assert_paced(worker.collect("b"), ["a", "ab", "abc", "abcd"])
    assert snapshots[-2:] == ["abc", "abcd"], snapshots


def test_streams_that_never_await_take_turns(worker):
    # `iter` yields without awaiting anything: without a loop turn per
    # yield, the first call would run to its end before the second started.
    for id in ("a", "b"):
        worker.send({"type": "call", "id": id, "function": "iter", "input": {"n": 300}, "metadata": {}})
    order = []
    while order.count("done") < 2:
        frame = worker.recv()
        if frame["type"] in ("snapshot", "done"):
            order.append(frame["id"] if frame["type"] == "snapshot" else "done")
    first_done = order.index("done")
    assert "b" in order[:first_done], "b streamed nothing before a ended"


def test_stream_that_yields_nothing_fails(worker):
    failed = worker.call("empty_stream", {})
    assert failed["kind"] == "app"
    assert "without yielding any output" in failed["error"]


def test_tempfile_in_a_call_is_that_calls_scratch_folder(worker):
    """tempfile's default folder is spill/scratch/<call id>/ during a call
    (the host removes it after copying the outputs), also for a plain def
    run in a thread; outside a call it is the usual one."""
    import os
    import tempfile

    scratch = worker.spill_dir / "scratch"
    path = worker.call("scratch", {}, id="task-1")["output"]["text"]
    assert os.path.dirname(path) == str(scratch / "task-1") and os.path.isfile(path)
    folder = worker.call("sync_scratch", {}, id="odd id/2")["output"]["text"]
    assert os.path.dirname(folder) == str(scratch / "odd_id_2") and os.path.isdir(folder)
    # The worker's own process: only the calls' folders exist.
    assert sorted(os.listdir(scratch)) == ["odd_id_2", "task-1"]
    assert not tempfile.gettempdir().startswith(str(scratch))


def test_metadata_parameter(worker):
    done = worker.call("whoami", {}, metadata={"task_id": "t-1", "gpu_ids": ["0"], "extra_key": "k"})
    assert done["output"]["text"] == "Metadata t-1 ['0'] k"


def test_app_exception(worker):
    failed = worker.call("boom", {})
    assert failed["kind"] == "app"
    assert failed["error"] == "ValueError: bad thing happened"
    assert failed["traceback"].startswith("Traceback (most recent call last)")
    assert 'raise ValueError("bad thing happened")' in failed["traceback"]
    sync_failed = worker.call("sync_boom", {})
    assert sync_failed["error"] == "KeyError: 'missing'"
    # The app's frame comes first: infsh's runtime frames, and the standard
    # library's between them and a plain def run in a thread, are trimmed.
    for tb in (failed["traceback"], sync_failed["traceback"]):
        frames = [line for line in tb.splitlines() if line.startswith("  File ")]
        assert frames and all("inference.py" in line for line in frames), tb
    # The traceback is in the answer, not also in the app's logs: hosts show it once.
    assert "Traceback" not in worker.stderr()
    # the worker keeps serving
    assert worker.call("upper", {"text": "x"})["type"] == "done"


def test_unknown_function(worker):
    failed = worker.call("nope", {})
    assert failed["kind"] == "unknown_function"
    assert "upper" in failed["error"]


def test_outputs_dict_wrong_type_and_invalid_dict(worker):
    assert worker.call("as_dict", {"text": "d"})["output"] == {"output_meta": None, "text": "d"}
    wrong = worker.call("wrong_type", {})
    assert wrong["kind"] == "app" and "returned int, expected Out" in wrong["error"]
    bad = worker.call("bad_dict", {})
    assert bad["kind"] == "app" and "not a valid Out" in bad["error"]


def test_an_output_over_the_message_limit_fails_its_call_and_the_worker_serves_on(worker):
    failed = worker.call("huge_output", {}, id="big")
    assert failed["type"] == "failed" and failed["kind"] == "app"
    assert failed["error"].startswith("OutputError: the output is too large to return: a message of ")
    assert "over the limit of 67108864 bytes (MAX_MESSAGE_BYTES)" in failed["error"]
    assert worker.call("upper", {"text": "x"})["type"] == "done"


def test_an_error_over_the_message_limit_is_cut_and_still_ends_its_call(worker):
    failed = worker.call("huge_error", {}, id="err")
    assert failed["type"] == "failed" and failed["kind"] == "app"
    assert failed["error"].startswith("ValueError: yyy")
    assert failed["error"].endswith("characters cut: over the message limit]")
    assert len(failed["error"]) < 70 * 1024
    assert worker.call("upper", {"text": "x"})["type"] == "done"


def test_non_finite_numbers_become_null(worker):
    assert worker.call("nan", {})["output"] == {"total": None}


def test_calls_run_concurrently(worker):
    worker.send({"type": "call", "id": "waiter", "function": "wait_signal", "input": {}, "metadata": {}})
    worker.send({"type": "call", "id": "signaller", "function": "send_signal", "input": {}, "metadata": {}})
    first = worker.expect("done")
    second = worker.expect("done")
    assert (first["id"], second["id"]) == ("signaller", "waiter")


def test_file_outputs_are_listed_with_json_pointers(worker):
    done = worker.call("files", {})
    output = done["output"]
    by_pointer = {f["pointer"]: f for f in done["files"]}
    assert sorted(by_pointer) == sorted(
        ["/image", "/gallery/0", "/gallery/1", "/by_name/a~1b~0c", "/nested/file", "/pairs/0/file"]
    )
    app_dir = worker.app_dir
    for pointer, entry in by_pointer.items():
        # the pointer resolves in `output` to the SDK's serialized File
        node = output
        for token in pointer.split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            node = node[int(token)] if isinstance(node, list) else node[token]
        assert node["path"] == entry["path"]
        assert entry["path"].startswith(str(app_dir))
        assert set(entry) == {"pointer", "path", "uri", "filename", "content_type", "size"}
    assert by_pointer["/gallery/1"]["size"] == 2 and by_pointer["/gallery/1"]["filename"] == "g1.txt"
    assert by_pointer["/image"]["content_type"] == "image/png"
    assert output["maybe"] is None
