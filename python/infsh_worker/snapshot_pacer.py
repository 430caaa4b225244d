"""How often a streaming call's yields go to the host as ``snapshot`` frames
(docs/protocol.md, "Streaming").

Each yield is the whole output so far, and a generator can yield far faster
than anyone can use that: an LLM-shaped app yielding 1,000 tokens as fast as
it can sent 1,000 snapshots of ~3 KB on average, one frame, one ``write``
and one parse on the host each, so at 64 streams the worker and the host
spent their time on snapshots nobody would see (clients merging deltas get
one line per 40 ms anyway: docs/performance.md, "Token streams").

So the first snapshot of a call goes at once (time to first token is
untouched), and after it at most one per ``SNAPSHOT_INTERVAL``: a yield
within the interval is held, a later one replaces it, and a timer sends the
newest when the interval is up, so no yield waits longer than that even
when the generator then pauses. ``done`` carries the last yield whatever was
held. Yields further apart than the interval are each sent as they come.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

# Short next to what a person notices, or the 40 ms of the host's delta
# lines; long next to a fast generator's tens of microseconds per yield.
SNAPSHOT_INTERVAL = 0.010

# Whatever ``send`` takes: the pacer only holds and hands it on (the Python
# worker passes an ``(output, files)`` pair, or the model to serialize when sent).
Snapshot = Any


class SnapshotPacer:
    """Sends a call's snapshots through ``send``, at most one per interval.

    ``send`` may raise; when it does from the timer, the exception is kept
    and raised by the next ``offer`` or by ``finish``, in the call's task.
    """

    def __init__(self, send: Callable[[Snapshot], None], interval: float = SNAPSHOT_INTERVAL) -> None:
        self._send = send
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._held: Optional[Snapshot] = None
        self._next_at = 0.0  # when the next snapshot may go; 0: at once
        self._timer: Optional[asyncio.TimerHandle] = None
        self._error: Optional[BaseException] = None

    def offer(self, snapshot: Snapshot) -> None:
        """A new yield: sent now if the interval since the last one is up,
        else held (replacing any held one) until it is."""
        self._raise_kept()
        now = self._loop.time()
        if now >= self._next_at:
            self.close()  # a held one is older than this: dropped
            self._emit(snapshot, now)
            return
        self._held = snapshot
        if self._timer is None:
            self._timer = self._loop.call_at(self._next_at, self._on_timer)

    def finish(self) -> None:
        """The generator ended: nothing held is sent (``done`` carries the
        last yield); a send that failed on the timer is raised."""
        self.close()
        self._raise_kept()

    def close(self) -> None:
        """Drops what is held and stops the timer (a failed or cancelled call)."""
        self._held = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        held, self._held = self._held, None
        if held is None:
            return
        try:
            self._emit(held, self._loop.time())
        except BaseException as e:  # raised in the call's task by offer/finish
            self._error = e

    def _emit(self, snapshot: Snapshot, now: float) -> None:
        self._next_at = now + self._interval
        self._send(snapshot)

    def _raise_kept(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
