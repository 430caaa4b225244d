"""Frames on the protocol channel (docs/protocol.md, "Frames").

Owns the byte level of the contract with the Rust host
(crates/infsh-protocol): a 4-byte big-endian length, then that many bytes of
UTF-8 JSON holding one object with a string ``"type"``. Messages larger than
``SPILL_THRESHOLD_BYTES`` travel as a file in the spill folder, announced by a
``{"type": "spilled", "path", "bytes"}`` frame; that works in both directions.

The channel is a raw fd (one end of the host's socketpair, normally fd 3).
It is read and written with ``os.readv``/``os.read``/``os.write`` rather than
a ``socket`` object so that partial reads and writes are handled in one place
and any stream fd works. Reads happen in one place at a time: the ``Reader``
thread while the app imports, then the runtime's event loop (``FrameDecoder``
fed from ``loop.add_reader``: one wake-up per burst of frames, no thread
hand-off per call). Writes may come from any thread and are serialized by a
lock so frames never interleave.
"""

from __future__ import annotations

import json
import math
import os
import select
import threading
from typing import Any, Callable, Dict, List, Optional

MAX_FRAME_BYTES = 64 * 1024 * 1024  # inline frames; the host also caps spilled messages at 64 MiB
SPILL_THRESHOLD_BYTES = 1024 * 1024
_HEADER_BYTES = 4


class ProtocolError(Exception):
    """The peer broke the framing contract; the connection cannot continue."""


class MessageTooLarge(Exception):
    """A message over the host's limit (MAX_FRAME_BYTES, inline or
    spilled): it is not sent, so the call can fail with a clear error and
    the worker serve on, instead of the host refusing it and replacing
    the worker."""

    def __init__(self, size: int) -> None:
        super().__init__(f"a message of {size} bytes is over the limit of {MAX_FRAME_BYTES} bytes (MAX_MESSAGE_BYTES)")
        self.size = size


class HostGone(Exception):
    """The channel reached EOF or broke: the host is gone."""


def exit_protocol_error(reason: str) -> None:
    """The peer broke the framing contract: say so and exit 2 (docs/protocol.md)."""
    import sys

    print(f"infsh worker: protocol error, exiting: {reason}", file=sys.stderr, flush=True)
    try:
        sys.stdout.flush()
    except Exception:
        pass
    os._exit(2)


try:
    from pydantic_core import to_json as _to_json
except ImportError:  # pragma: no cover - pydantic 2 always has it
    _to_json = None


def _finite(value: Any) -> Any:
    """A copy of ``value`` with NaN and infinities replaced by ``None``.

    JSON has no spelling for them (the Rust side's serde_json rejects
    ``NaN``), and ``None`` is what pydantic's own ``model_dump_json`` writes
    for them by default, so an output that pydantic could serialize to JSON
    reaches the host the same way.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class RawJSON(bytes):
    """JSON text already encoded (an output serialized straight from its
    model, ``files.serialize``): ``encode`` puts it into the message as it
    is, and the host keeps it as it is too (docs/protocol.md, "Messages")."""


def encode(msg: Dict[str, Any]) -> bytes:
    """The JSON bytes of one message (compact, UTF-8, finite numbers only).
    An ``output`` that is ``RawJSON`` goes in as written, last."""
    output = msg.get("output")
    if type(output) is RawJSON:
        rest = _encode({k: v for k, v in msg.items() if k != "output"})
        return rest[:-1] + (b',"output":' if len(rest) > 2 else b'"output":') + output + b"}"
    return _encode(msg)


def _encode(msg: Dict[str, Any]) -> bytes:
    """``encode`` for a message without raw parts.

    pydantic-core's serializer (Rust) when it takes the message: some 50
    times faster than ``json.dumps`` on an output of 32,768 floats
    (docs/performance.md, "embed"), with NaN and infinities written as
    ``null`` as below. ``json.dumps`` for anything it refuses."""
    if _to_json is not None:
        try:
            return _to_json(msg, inf_nan_mode="null")
        except Exception:
            pass
    try:
        text = json.dumps(msg, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        # Only non-finite floats make allow_nan=False fail; this path is rare,
        # so the common case pays for no extra walk over the message.
        text = json.dumps(_finite(msg), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


def decode(data: bytes) -> Dict[str, Any]:
    """One message from its JSON bytes; checks the object-with-type shape."""
    try:
        msg = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"frame is not UTF-8 JSON: {e}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("frame is not a JSON object with a string 'type'")
    return msg


def _frame_length(header: bytes) -> int:
    length = int.from_bytes(header, "big")
    if length > MAX_FRAME_BYTES:
        # Never allocate what a broken peer claims.
        raise ProtocolError(f"frame of {length} bytes exceeds MAX_FRAME_BYTES ({MAX_FRAME_BYTES})")
    return length


class FrameDecoder:
    """Incremental frame parser for a reader that gets bytes as they come
    (the event loop's): ``feed`` what one ``read`` returned, get every
    message completed by it, in order; a partial frame waits for more."""

    def __init__(self, channel: "Channel") -> None:
        self._channel = channel
        self._buf = bytearray()

    def feed(self, data: bytes) -> List[Dict[str, Any]]:
        buf = self._buf
        buf += data
        out: List[Dict[str, Any]] = []
        pos = 0
        while len(buf) - pos >= _HEADER_BYTES:
            length = _frame_length(buf[pos : pos + _HEADER_BYTES])
            end = pos + _HEADER_BYTES + length
            if len(buf) < end:
                break
            out.append(self._channel.message(bytes(buf[pos + _HEADER_BYTES : end])))
            pos = end
        if pos:
            del buf[:pos]
        return out


class Channel:
    """Framed, spill-aware message transport over one fd."""

    def __init__(self, fd: int, spill_dir: Optional[str]) -> None:
        self.fd = fd
        if not spill_dir:
            # Without a spill folder (only when run by hand) big messages
            # still work: the temp folder is as good a place as any.
            import tempfile

            spill_dir = tempfile.gettempdir()
        self.spill_dir = spill_dir
        self._write_lock = threading.Lock()

    # -- reading (one thread only) -------------------------------------------

    def _read_exact(self, n: int, *, at_boundary: bool) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        pos = 0
        while pos < n:
            try:
                got = os.readv(self.fd, [view[pos:]])
            except (ConnectionResetError, BrokenPipeError):
                got = 0
            if got == 0:
                if at_boundary and pos == 0:
                    raise HostGone("protocol channel closed")
                raise HostGone(f"protocol channel closed inside a frame ({pos} of {n} bytes)")
            pos += got
        return buf

    def read(self) -> Dict[str, Any]:
        """Blocks for the next message; a spilled one is loaded and its file deleted."""
        header = self._read_exact(_HEADER_BYTES, at_boundary=True)
        length = _frame_length(header)
        return self.message(bytes(self._read_exact(length, at_boundary=False)))

    def message(self, body: bytes) -> Dict[str, Any]:
        """The message of one frame's body (a spilled one loaded and deleted)."""
        msg = decode(body)
        if msg["type"] == "spilled":
            msg = self._load_spilled(msg)
        return msg

    def _load_spilled(self, stub: Dict[str, Any]) -> Dict[str, Any]:
        path, size = stub.get("path"), stub.get("bytes")
        if not isinstance(path, str) or not isinstance(size, int):
            raise ProtocolError("spilled frame needs a string 'path' and an integer 'bytes'")
        # Only a file directly inside our own spill folder: a broken or
        # hostile peer must not make the worker read (and delete) anything else.
        real = os.path.realpath(path)
        if os.path.dirname(real) != os.path.realpath(self.spill_dir):
            raise ProtocolError(f"spilled file {path} is not directly inside the spill folder {self.spill_dir}")
        try:
            with open(real, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ProtocolError(f"cannot read spilled frame {path}: {e}") from None
        if len(data) != size:
            raise ProtocolError(f"spilled file {path} has {len(data)} bytes, the frame said {size}")
        try:
            os.unlink(real)
        except OSError:
            pass  # the host cleans its spill folder; a leftover is harmless
        msg = decode(data)
        if msg["type"] == "spilled":
            raise ProtocolError("a spilled file may not itself be 'spilled'")
        return msg

    # -- writing (any thread) ------------------------------------------------

    def write(self, msg: Dict[str, Any]) -> None:
        """Sends one message, spilling it to a file when it is large."""
        data = encode(msg)
        if len(data) > MAX_FRAME_BYTES:
            raise MessageTooLarge(len(data))
        if len(data) > SPILL_THRESHOLD_BYTES:
            data = encode({"type": "spilled", "path": self._spill(data), "bytes": len(data)})
        frame = len(data).to_bytes(_HEADER_BYTES, "big") + data
        with self._write_lock:
            view = memoryview(frame)
            while view:
                try:
                    sent = os.write(self.fd, view)
                except (BrokenPipeError, ConnectionResetError) as e:
                    raise HostGone(f"protocol channel broke: {e}") from None
                view = view[sent:]

    def _spill(self, data: bytes) -> str:
        # Written completely and closed before the stub is sent, so the host
        # never sees a partial file. (tempfile is deferred: rarely needed.)
        import tempfile

        fd, path = tempfile.mkstemp(prefix=f"worker-{os.getpid()}-", suffix=".json", dir=self.spill_dir)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return os.path.abspath(path)


class Reader(threading.Thread):
    """Reads frames on its own thread while the app is imported.

    Started before the app is imported, so that a host that goes away while
    a slow import (torch, ...) runs is noticed at once: ``on_gone`` is called
    on EOF (it exits the process). Messages that arrive before the runtime
    takes over are kept in order; ``handover`` stops the thread between two
    frames and returns them, and from then on the runtime's event loop reads
    the channel itself.
    """

    def __init__(self, channel: Channel, on_gone: Callable[[str], None], on_error: Callable[[str], None]) -> None:
        super().__init__(name="infsh-protocol-reader", daemon=True)
        self._channel = channel
        self._on_gone = on_gone
        self._on_error = on_error
        self._pending: List[Dict[str, Any]] = []
        # Written once by handover: wakes the poll below, which then stops.
        self._stop_r, self._stop_w = os.pipe()

    def handover(self) -> List[Dict[str, Any]]:
        """Stops the thread (after the frame it may be reading) and returns
        the messages read so far, oldest first."""
        os.write(self._stop_w, b"x")
        self.join()
        os.close(self._stop_r)
        os.close(self._stop_w)
        pending, self._pending = self._pending, []
        return pending

    def run(self) -> None:
        poller = select.poll()
        poller.register(self._channel.fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._channel.fd not in ready:
                return  # handover: the runtime reads from here on
            try:
                self._pending.append(self._channel.read())
            except HostGone as e:
                self._on_gone(str(e))
                return
            except Exception as e:  # ProtocolError, or a bug: the stream is unusable
                self._on_error(f"{type(e).__name__}: {e}")
                return
