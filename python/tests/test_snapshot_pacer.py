"""``SnapshotPacer``: when a streaming call's yields become ``snapshot``
frames (the first at once, then at most one per interval, the newest).

In-process, on a real event loop with a short interval; the end-to-end
behaviour through a real worker is in test_calls.py.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from harness import PYTHON_ROOT

sys.path.insert(0, str(PYTHON_ROOT))

from infsh_worker.snapshot_pacer import SNAPSHOT_INTERVAL, SnapshotPacer  # noqa: E402

INTERVAL = 0.05


def run(scenario):
    return asyncio.run(scenario())


def test_the_interval_is_short_next_to_the_hosts_delta_window():
    assert 0 < SNAPSHOT_INTERVAL <= 0.040


def test_the_first_goes_at_once_and_a_burst_goes_as_its_newest_when_the_interval_is_up():
    async def scenario():
        sent = []
        pacer = SnapshotPacer(sent.append, INTERVAL)
        pacer.offer("a")
        assert sent == ["a"], "the first yield is not held"
        pacer.offer("ab")
        pacer.offer("abc")
        assert sent == ["a"], "yields within the interval are held"
        await asyncio.sleep(INTERVAL * 3)
        assert sent == ["a", "abc"], "the newest held one goes when the interval is up"
        await asyncio.sleep(INTERVAL * 2)
        pacer.offer("abcd")
        assert sent == ["a", "abc", "abcd"], "after a pause longer than the interval, at once"
        pacer.finish()
        await asyncio.sleep(INTERVAL * 2)
        assert sent == ["a", "abc", "abcd"]

    run(scenario)


@pytest.mark.parametrize("end", ["finish", "close"])
def test_what_is_held_at_the_end_is_not_sent(end):
    # finish: the generator ended (`done` carries the last yield); close:
    # the call failed or was cancelled.
    async def scenario():
        sent = []
        pacer = SnapshotPacer(sent.append, INTERVAL)
        pacer.offer(1)
        pacer.offer(2)
        getattr(pacer, end)()
        await asyncio.sleep(INTERVAL * 2)
        assert sent == [1]

    run(scenario)


def test_a_send_that_fails_on_the_timer_is_raised_by_the_next_offer():
    async def scenario():
        sent = []

        def send(snapshot):
            if snapshot == "too big":
                raise ValueError("a snapshot is too large to send")
            sent.append(snapshot)

        pacer = SnapshotPacer(send, INTERVAL)
        pacer.offer("ok")
        pacer.offer("too big")
        await asyncio.sleep(INTERVAL * 2)
        with pytest.raises(ValueError, match="too large"):
            pacer.offer("next")
        assert sent == ["ok"]

    run(scenario)


def test_a_send_that_fails_on_the_timer_is_raised_by_finish():
    async def scenario():
        def send(snapshot):
            if snapshot == 2:
                raise ValueError("broken")

        pacer = SnapshotPacer(send, INTERVAL)
        pacer.offer(1)
        pacer.offer(2)
        await asyncio.sleep(INTERVAL * 2)
        with pytest.raises(ValueError, match="broken"):
            pacer.finish()

    run(scenario)
