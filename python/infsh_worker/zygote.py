"""The zygote: the app imported once, then forked into workers
(docs/protocol.md, "Zygote").

Started like a worker, with ``INFSH_ZYGOTE=1``. It imports the app and
discovers its functions exactly as a worker does, but never runs ``setup``:
it tells the host whether it can fork (``zygote_ready``) and then forks a
worker per ``fork`` request. A forked worker starts with the app already
imported, so a second replica or a replacement after a crash is ready in
milliseconds instead of an interpreter start plus the app's imports.

The channel is a ``SOCK_SEQPACKET`` socket (one message = one frame, as in
docs/protocol.md), because each ``fork`` carries three file descriptors
(``SCM_RIGHTS``): the new worker's protocol socket and its stdout and stderr
pipes. Answers: ``forked`` with the pid, and ``exited`` with the raw wait
status whenever a forked worker ends (the zygote is their parent and reaps
them; the host learns their exit status from it).

Forking is refused (``forkable: false`` with the reason) when it would not
be safe: the app's import started threads (only the forking thread survives
a fork; locks other threads held stay locked forever), or CUDA was
initialized (a forked child cannot use it). The host then starts workers the
ordinary way.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
from typing import Any, Callable, Dict, List, Optional

from .protocol import Channel, decode

_MAX_MESSAGE = 64 * 1024
_PR_SET_PDEATHSIG = 1


def unsafe_to_fork() -> Optional[str]:
    """Why forking this process would be unsafe, or None."""
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        threads = threading.active_count()
    if threads > 1:
        return f"the app's import started {threads - 1} thread(s)"
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    try:
        if cuda is not None and cuda.is_initialized():
            return "CUDA was initialized while importing the app"
    except Exception:
        pass
    return None


def _reap(channel: Channel) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        channel.write({"type": "exited", "pid": pid, "status": status})


def serve(channel: Channel, become_worker: Callable[[Channel], None]) -> None:
    """Answers ``fork`` requests until the host closes the channel; never
    returns. In each forked child ``become_worker`` runs the worker (and
    never returns either). Frames go out with ``channel.write``: on a
    SEQPACKET socket each frame is one message."""
    sock = socket.socket(fileno=channel.fd)
    reason = unsafe_to_fork()
    if reason is not None:
        channel.write({"type": "zygote_ready", "pid": os.getpid(), "forkable": False, "reason": reason})
        # The host starts ordinary workers; nothing is left to do here.
        sock.recv(1)
        os._exit(0)
    # Loaded once here rather than in every child (importing ctypes alone
    # takes 10-20 ms); the runtime's flush_stdio uses it too.
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    # Objects that exist now are never collected: the GC does not touch (and
    # so copy) their pages in every child. (No gc.collect() first: it costs
    # 15-20 ms of cold start for the little garbage an import leaves.)
    gc.freeze()
    channel.write({"type": "zygote_ready", "pid": os.getpid(), "forkable": True, "reason": None})
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    zygote_pid = os.getpid()
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for ready_fd, _ in events:
            if ready_fd == wake_r:
                os.read(wake_r, 4096)
                _reap(channel)
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MESSAGE, 3)
            except InterruptedError:
                continue
            except OSError:
                data, fds = b"", []
            if not data:
                os._exit(0)  # the host is gone; so are we (workers follow: PDEATHSIG)
            try:
                msg = decode(data[4:])
            except Exception as e:
                print(f"infsh zygote: bad frame: {e}", file=sys.stderr, flush=True)
                os._exit(2)
            if msg.get("type") != "fork" or len(fds) != 3:
                print(f"infsh zygote: unexpected message {msg.get('type')!r} with {len(fds)} fd(s)", file=sys.stderr, flush=True)
                os._exit(2)
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()  # or the child would write it again
                except Exception:
                    pass
            try:
                pid = os.fork()
            except OSError as e:
                # Out of memory or processes: the host sees the zygote go,
                # fails this start and tries a new zygote (backed off).
                print(f"infsh zygote: fork failed: {e}", file=sys.stderr, flush=True)
                os._exit(1)
            if pid > 0:
                try:
                    # Also here, so the group exists whichever runs first.
                    os.setpgid(pid, pid)
                except OSError:
                    pass  # the child did it, or already exec'd/died
            if pid == 0:
                _child(fds, msg, zygote_pid, [sock.fileno(), wake_r, wake_w], libc, become_worker)
            for child_fd in fds:
                os.close(child_fd)
            channel.write({"type": "forked", "pid": pid})


def _child(
    fds: List[int],
    msg: Dict[str, Any],
    zygote_pid: int,
    zygote_fds: List[int],
    libc: Any,
    become_worker: Callable[[Channel], None],
) -> None:
    """In the forked child: become an ordinary worker on the given fds."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in zygote_fds:
            os.close(fd)
        # Its own process group: the host signals the whole group.
        os.setpgid(0, 0)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != zygote_pid:
            os._exit(1)  # the zygote died before prctl: nobody would kill us
        proto, out, err = fds
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        os.set_inheritable(proto, False)
        spill = msg.get("spill_dir")
        if isinstance(spill, str):
            os.environ["INFSH_SPILL_DIR"] = spill
        os.environ["INFSH_PROTOCOL_FD"] = str(proto)
        os.environ.pop("INFSH_ZYGOTE", None)
        # The imported app's objects stay frozen: collecting them would copy
        # every page they live on out of the zygote's.
        become_worker(Channel(proto, spill if isinstance(spill, str) else None))
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(3)
