"""Frames and spilling: the byte-level contract of docs/protocol.md.

In-process tests drive ``infsh_worker.protocol.Channel`` over a socketpair;
end-to-end ones check spilling in both directions and the channel's EOF and
error handling against a real worker.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import PYTHON_ROOT, SPILL_THRESHOLD

sys.path.insert(0, str(PYTHON_ROOT))

from infsh_worker.protocol import MAX_FRAME_BYTES, Channel, HostGone, MessageTooLarge, ProtocolError  # noqa: E402


def frame(obj) -> bytes:
    data = json.dumps(obj).encode()
    return len(data).to_bytes(4, "big") + data


def recv_exact(sock, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "peer closed"
        buf += chunk
    return buf


def recv_frame(sock):
    """(length, message) of the next frame; the socket has a timeout."""
    n = int.from_bytes(recv_exact(sock, 4), "big")
    return n, json.loads(recv_exact(sock, n))


def write_in_thread(ch, msg):
    """Writes without blocking the test: a frame bigger than the socket
    buffer only completes while the test reads it."""
    t = threading.Thread(target=ch.write, args=(msg,), daemon=True)
    t.start()
    return t


@pytest.fixture
def pair(tmp_path):
    a, b = socket.socketpair()
    a.settimeout(10)
    yield a, Channel(b.fileno(), str(tmp_path)), tmp_path
    a.close()
    b.close()


def test_frame_layout_is_big_endian_length_then_json(pair):
    a, ch, _ = pair
    ch.write({"type": "ready", "x": "é"})
    n = int.from_bytes(recv_exact(a, 4), "big")
    assert json.loads(recv_exact(a, n).decode("utf-8")) == {"type": "ready", "x": "é"}


def test_partial_reads_are_reassembled(pair):
    a, ch, _ = pair
    data = frame({"type": "call", "id": "x" * 5000})

    def trickle():
        for i in range(0, len(data), 7):
            a.sendall(data[i : i + 7])

    t = threading.Thread(target=trickle)
    t.start()
    assert ch.read() == {"type": "call", "id": "x" * 5000}
    t.join(10)


def test_oversized_frame_is_a_protocol_error_without_allocating(pair):
    a, ch, _ = pair
    a.sendall((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(ProtocolError):
        ch.read()


def test_eof_at_a_frame_boundary_means_host_gone(pair):
    a, ch, _ = pair
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(HostGone):
        ch.read()


def test_frame_must_be_an_object_with_a_type(pair):
    a, ch, _ = pair
    a.sendall(frame([1, 2]))
    with pytest.raises(ProtocolError):
        ch.read()


def test_large_message_is_spilled_to_a_file(pair):
    a, ch, tmp = pair
    big = {"type": "done", "id": "1", "output": {"s": "y" * (SPILL_THRESHOLD + 10)}}
    write_in_thread(ch, big)
    _, stub = recv_frame(a)
    assert stub["type"] == "spilled"
    path = Path(stub["path"])
    assert path.is_absolute() and path.parent == tmp
    assert path.stat().st_size == stub["bytes"]
    assert json.loads(path.read_bytes()) == big


def test_a_message_over_the_limit_is_refused_before_anything_is_written(pair):
    a, ch, tmp = pair
    with pytest.raises(MessageTooLarge) as e:
        ch.write({"type": "done", "id": "1", "output": {"s": "y" * MAX_FRAME_BYTES}})
    assert e.value.size > MAX_FRAME_BYTES
    assert f"over the limit of {MAX_FRAME_BYTES} bytes" in str(e.value)
    assert list(tmp.iterdir()) == []  # nothing spilled
    a.setblocking(False)
    with pytest.raises(BlockingIOError):
        a.recv(1)  # and nothing sent


def test_message_at_threshold_stays_inline(pair):
    a, ch, _ = pair
    msg = {"type": "x", "s": ""}
    overhead = len(json.dumps(msg, separators=(",", ":")).encode())
    msg["s"] = "z" * (SPILL_THRESHOLD - overhead)
    t = write_in_thread(ch, msg)
    n, got = recv_frame(a)
    assert n == SPILL_THRESHOLD and got == msg
    t.join(10)


def test_spilled_frame_from_host_is_read_and_deleted(pair):
    a, ch, tmp = pair
    path = tmp / "in.json"
    path.write_text(json.dumps({"type": "call", "id": "7"}))
    a.sendall(frame({"type": "spilled", "path": str(path), "bytes": path.stat().st_size}))
    assert ch.read() == {"type": "call", "id": "7"}
    assert not path.exists()


def test_spilled_file_may_not_be_spilled_again(pair):
    a, ch, tmp = pair
    path = tmp / "in.json"
    path.write_text(json.dumps({"type": "spilled", "path": "/nope", "bytes": 1}))
    a.sendall(frame({"type": "spilled", "path": str(path), "bytes": path.stat().st_size}))
    with pytest.raises(ProtocolError, match="may not itself"):
        ch.read()


def test_spilled_file_outside_the_spill_folder_is_refused_and_kept(pair, tmp_path_factory):
    a, ch, tmp = pair
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "x.json"
    elsewhere.write_text(json.dumps({"type": "call"}))
    a.sendall(frame({"type": "spilled", "path": str(elsewhere), "bytes": elsewhere.stat().st_size}))
    with pytest.raises(ProtocolError, match="spill folder"):
        ch.read()
    assert elsewhere.exists()


def test_spilled_file_in_a_subfolder_is_refused(pair):
    a, ch, tmp = pair
    (tmp / "sub").mkdir()
    nested = tmp / "sub" / "x.json"
    nested.write_text(json.dumps({"type": "call"}))
    a.sendall(frame({"type": "spilled", "path": str(tmp / "sub" / ".." / "sub" / "x.json"), "bytes": 15}))
    with pytest.raises(ProtocolError, match="spill folder"):
        ch.read()


def test_spilled_file_size_must_match(pair):
    a, ch, tmp = pair
    path = tmp / "in.json"
    path.write_text(json.dumps({"type": "call", "id": "7"}))
    a.sendall(frame({"type": "spilled", "path": str(path), "bytes": path.stat().st_size + 1}))
    with pytest.raises(ProtocolError, match="bytes"):
        ch.read()


def test_non_finite_floats_are_sent_as_null(pair):
    a, ch, _ = pair
    ch.write({"type": "done", "output": {"a": float("nan"), "b": [float("inf"), 1.5]}})
    assert recv_frame(a)[1] == {"type": "done", "output": {"a": None, "b": [None, 1.5]}}


# -- end to end -------------------------------------------------------------------

BIG_APP = """
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput

class AppInput(BaseAppInput):
    text: str
    repeat: int = 1

class AppOutput(BaseAppOutput):
    text: str
    length: int

class App(BaseApp):
    async def setup(self):
        pass

    async def run(self, input: AppInput) -> AppOutput:
        text = input.text * input.repeat
        return AppOutput(text=text, length=len(input.text))
"""


def test_big_output_is_spilled_by_the_worker(app, start):
    w = start(app(BIG_APP))
    w.ready()
    assert w.setup()["type"] == "setup_done"
    w.send({"type": "call", "id": "big", "function": "run", "input": {"text": "ab", "repeat": 600_000}, "metadata": {}})
    stub = w.recv_raw()
    assert stub["type"] == "spilled" and stub["bytes"] > SPILL_THRESHOLD
    path = Path(stub["path"])
    assert path.parent == w.spill_dir
    done = json.loads(path.read_bytes())
    path.unlink()
    assert done["type"] == "done" and done["id"] == "big"
    assert len(done["output"]["text"]) == 1_200_000


def test_big_input_spilled_by_the_host_is_read_and_deleted(app, start):
    w = start(app(BIG_APP))
    w.ready()
    w.setup()
    text = "q" * (SPILL_THRESHOLD + 100)
    path = w.send_spilled({"type": "call", "id": "in", "function": "run", "input": {"text": text}, "metadata": {}})
    done = w.expect("done")
    assert done["output"]["length"] == len(text)
    assert not path.exists()


def test_worker_exits_when_the_host_closes_the_channel(app, start):
    w = start(app(BIG_APP))
    w.ready()
    w.sock.close()
    assert w.wait(20) == 0


def test_worker_exits_on_a_protocol_error(app, start):
    w = start(app(BIG_APP))
    w.ready()
    w.sock.sendall((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
    assert w.wait(20) == 2
    assert "protocol error" in w.stderr()


def test_protocol_fd_from_env_when_not_3(app, start):
    w = start(app(BIG_APP), fd=None)
    ready = w.ready()
    assert ready["protocol"] == 1
    assert w.setup()["type"] == "setup_done"
    assert w.call("run", {"text": "x"})["output"]["text"] == "x"
    w.shutdown()


def test_nothing_but_app_output_on_stdout(app, start):
    w = start(app(BIG_APP.replace("pass", "print('hello from setup')")))
    w.ready()
    w.setup()
    w.call("run", {"text": "x"})
    w.shutdown()
    assert w.stdout() == "hello from setup\n"
    assert os.path.getsize(w.stdout_path) == len("hello from setup\n")


# -- the event loop's incremental decoder and the start-up reader's handover --

from infsh_worker.protocol import FrameDecoder, Reader  # noqa: E402


def test_decoder_returns_every_frame_a_read_completes_in_order(pair):
    _, ch, _ = pair
    dec = FrameDecoder(ch)
    data = frame({"type": "call", "id": 1}) + frame({"type": "call", "id": 2}) + frame({"type": "cancel", "id": 1})
    assert dec.feed(data[:3]) == []  # inside the first header
    assert dec.feed(data[3:10]) == []  # inside the first body
    rest = data[10:]
    split = len(frame({"type": "call", "id": 1})) - 10 + 5  # first done, second partial
    assert dec.feed(rest[:split]) == [{"type": "call", "id": 1}]
    assert dec.feed(rest[split:]) == [{"type": "call", "id": 2}, {"type": "cancel", "id": 1}]
    assert dec.feed(b"") == []


def test_decoder_refuses_an_oversized_frame_without_waiting_for_it(pair):
    _, ch, _ = pair
    with pytest.raises(ProtocolError, match="exceeds MAX_FRAME_BYTES"):
        FrameDecoder(ch).feed((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))


def test_decoder_loads_spilled_frames(pair):
    _, ch, tmp = pair
    body = json.dumps({"type": "call", "id": "big", "input": {"x": "y" * 100}}).encode()
    path = tmp / "host-1.json"
    path.write_bytes(body)
    stub = frame({"type": "spilled", "path": str(path), "bytes": len(body)})
    assert FrameDecoder(ch).feed(stub) == [json.loads(body)]
    assert not path.exists()


def test_reader_hands_over_what_it_read_and_stops_between_frames(pair):
    a, ch, _ = pair
    gone = []
    reader = Reader(ch, on_gone=gone.append, on_error=gone.append)
    reader.start()
    a.sendall(frame({"type": "setup", "n": 1}) + frame({"type": "call", "n": 2}))
    # Poll until the thread has read both, so the handover below finds them.
    deadline = time.monotonic() + 10
    while len(reader._pending) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert reader.handover() == [{"type": "setup", "n": 1}, {"type": "call", "n": 2}]
    assert not reader.is_alive()
    # Frames sent after the handover stay in the socket for the new reader.
    a.sendall(frame({"type": "call", "n": 3}))
    assert ch.read() == {"type": "call", "n": 3}
    assert gone == []
