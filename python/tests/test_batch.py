"""Batched functions (batch.py): discovery, ``call_batch``, per-item answers,
errors of one item vs. of the whole batch, and cancellation of one call."""

from __future__ import annotations

import time
from pathlib import Path

BATCH_APP = '''
import asyncio
import os
import time
from typing import List

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, Metadata


class In(BaseAppInput):
    text: str


class Out(BaseAppOutput):
    upper: str
    batch_size: int


def mark(name):
    with open(name, "w") as f:
        f.write(str(os.getpid()))


class App(BaseApp):
    async def setup(self):
        pass

    def embed(self, inputs: list[In]) -> list[Out]:
        print(f"embedding {len(inputs)}")
        out = []
        for i in inputs:
            if i.text == "bad":
                out.append(ValueError(f"cannot embed {i.text!r}"))
            else:
                out.append(Out(upper=i.text.upper(), batch_size=len(inputs)))
        return out

    async def aembed(self, inputs: List[In], metadata: List[Metadata]) -> List[Out]:
        return [Out(upper=m.task_id or "", batch_size=len(inputs)) for m in metadata]

    def boom(self, inputs: list[In]) -> list[Out]:
        raise RuntimeError("model exploded")

    def short(self, inputs: list[In]) -> list[Out]:
        return [Out(upper="x", batch_size=len(inputs))]

    async def slow(self, inputs: list[In]) -> list[Out]:
        mark("started-" + "-".join(i.text for i in inputs))
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            mark("cancelled")
            raise
        return [Out(upper=i.text, batch_size=len(inputs)) for i in inputs]

    async def gated(self, inputs: list[In]) -> list[Out]:
        mark("started-gated")
        while not os.path.exists("go"):
            await asyncio.sleep(0.01)
        return [Out(upper=i.text, batch_size=len(inputs)) for i in inputs]

    async def half(self, inputs: list[In]) -> Out:
        return Out(upper="", batch_size=0)
'''


def wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def start_ready(app, start):
    app_dir = app(BATCH_APP)
    w = start(app_dir)
    ready = w.ready()
    assert w.setup()["type"] == "setup_done"
    return w, app_dir, ready


def batch(w, function, texts, ids=None, metadata=None):
    ids = ids or [f"c{i}" for i in range(len(texts))]
    w.send(
        {
            "type": "call_batch",
            "function": function,
            "calls": [
                {"id": cid, "input": {"text": t}, "metadata": (metadata or {}).get(cid, {})}
                for cid, t in zip(ids, texts)
            ],
        }
    )
    return ids


def answers(w, n):
    got = {}
    while len(got) < n:
        msg = w.expect("done", "failed")
        got[msg["id"]] = msg
    return got


def test_discovery_reports_a_batched_function_with_the_schemas_of_one_item(app, start):
    _, _, ready = start_ready(app, start)
    by_name = {f["name"]: f for f in ready["functions"]}
    embed = by_name["embed"]
    assert embed["batched"] is True and embed["streaming"] is False
    assert embed["entry"]["input_schema"]["title"] == "In"
    assert embed["entry"]["output_schema"]["title"] == "Out"
    assert by_name["aembed"]["accepts_metadata"] is True and by_name["aembed"]["is_async"] is True
    # A list in, one model out: not a batched function, not exposed.
    assert "half" not in by_name


def test_call_batch_answers_each_call_with_its_own_output_in_order(app, start):
    w, _, _ = start_ready(app, start)
    ids = batch(w, "embed", ["a", "b", "c"])
    got = answers(w, 3)
    assert [{k: v for k, v in got[i]["output"].items() if k != "output_meta"} for i in ids] == [
        {"upper": "A", "batch_size": 3},
        {"upper": "B", "batch_size": 3},
        {"upper": "C", "batch_size": 3},
    ]
    assert w.stdout().count("embedding 3") == 1  # one run for the three


def test_a_plain_call_of_a_batched_function_is_a_batch_of_one(app, start):
    w, _, _ = start_ready(app, start)
    done = w.call("embed", {"text": "solo"})
    assert done["type"] == "done"
    assert (done["output"]["upper"], done["output"]["batch_size"]) == ("SOLO", 1)


def test_an_exception_in_place_of_an_output_fails_that_call_only(app, start):
    w, _, _ = start_ready(app, start)
    batch(w, "embed", ["a", "bad", "c"])
    got = answers(w, 3)
    assert got["c0"]["type"] == "done" and got["c2"]["type"] == "done"
    assert got["c1"]["type"] == "failed" and got["c1"]["kind"] == "app"
    assert got["c1"]["error"] == "ValueError: cannot embed 'bad'"


def test_an_invalid_input_fails_its_call_and_the_others_run_without_it(app, start):
    w, _, _ = start_ready(app, start)
    w.send(
        {
            "type": "call_batch",
            "function": "embed",
            "calls": [{"id": "ok", "input": {"text": "a"}}, {"id": "bad", "input": {"text": 3}}],
        }
    )
    got = answers(w, 2)
    assert got["bad"]["kind"] == "input" and got["bad"]["errors"][0]["loc"] == "text"
    assert (got["ok"]["output"]["upper"], got["ok"]["output"]["batch_size"]) == ("A", 1)


def test_an_exception_raised_by_the_function_fails_every_call_saying_so(app, start):
    w, _, _ = start_ready(app, start)
    batch(w, "boom", ["a", "b"])
    got = answers(w, 2)
    for msg in got.values():
        assert msg["type"] == "failed" and msg["kind"] == "app"
        assert msg["error"] == "RuntimeError: model exploded (raised by boom for the whole batch of 2 calls)"
        assert "model exploded" in msg["traceback"]


def test_a_list_of_the_wrong_length_fails_every_call_naming_both_counts(app, start):
    w, _, _ = start_ready(app, start)
    batch(w, "short", ["a", "b", "c"])
    got = answers(w, 3)
    for msg in got.values():
        assert msg["type"] == "failed"
        assert msg["error"] == (
            "OutputError: short returned 1 outputs for 3 inputs; "
            "a batched function returns one output per input, in order"
        )


def test_metadata_goes_along_as_a_list_one_per_input(app, start):
    w, _, _ = start_ready(app, start)
    batch(w, "aembed", ["a", "b"], ids=["x", "y"], metadata={"x": {"task_id": "tx"}, "y": {"task_id": "ty"}})
    got = answers(w, 2)
    assert got["x"]["output"]["upper"] == "tx" and got["y"]["output"]["upper"] == "ty"


def test_cancelling_one_call_answers_it_at_once_and_the_batch_runs_on(app, start):
    w, app_dir, _ = start_ready(app, start)
    batch(w, "gated", ["a", "b"])
    wait_for(app_dir / "started-gated")
    w.send({"type": "cancel", "id": "c0"})
    failed = w.expect("failed")
    assert failed["id"] == "c0" and failed["kind"] == "cancelled"
    (app_dir / "go").write_text("")
    done = w.expect("done")
    assert done["id"] == "c1" and done["output"]["batch_size"] == 2
    assert w.call("embed", {"text": "after"}, id="after")["type"] == "done"


def test_cancelling_every_call_stops_the_run(app, start):
    w, app_dir, _ = start_ready(app, start)
    batch(w, "slow", ["a", "b"])
    wait_for(app_dir / "started-a-b")
    w.send({"type": "cancel", "id": "c0"})
    assert w.expect("failed")["id"] == "c0"
    assert not (app_dir / "cancelled").exists()
    w.send({"type": "cancel", "id": "c1"})
    assert w.expect("failed")["kind"] == "cancelled"
    wait_for(app_dir / "cancelled")  # the task really got CancelledError
    assert w.call("embed", {"text": "after"}, id="after")["type"] == "done"


def test_call_batch_of_an_unbatched_or_unknown_function_answers_each_call(app, start):
    w, _, _ = start_ready(app, start)
    batch(w, "nope", ["a", "b"])
    got = answers(w, 2)
    assert {m["kind"] for m in got.values()} == {"unknown_function"}
