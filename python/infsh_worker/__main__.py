"""Entry point: ``python -u -m infsh_worker`` (docs/protocol.md, "Launching").

Reads the environment the host sets, starts the protocol reader, imports the
app, discovers its functions, sends ``ready`` (or ``load_failed`` and exits
1) and hands over to the runtime's serve loop until ``shutdown``.

Import order matters for start-up time: only the stdlib and this package's
loader are imported before the app. pydantic and the SDK are imported after
it (usually for free, since the app imported them already).

Exit statuses (docs/protocol.md): 0 after ``bye`` (and when the host closes
the channel: nobody is left to tell), 1 after ``load_failed``, 2 on a
protocol error (a bad frame, no protocol fd), 3 on an internal error.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from infsh_worker.loader import LoadFailed, load
from infsh_worker.protocol import Channel, HostGone, Reader, exit_protocol_error


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _host_gone(reason: str) -> None:
    # Called on the start-up reader thread or the loop. Nobody is left to answer to; os._exit
    # because app threads (and the call pool) must not keep the process up.
    _flush()
    os._exit(0)


def _default_logging() -> None:
    """INFO and above to stderr, unless the app configured logging itself.

    Python's fallback handler shows only warnings, so an app's
    ``logging.info`` would vanish. Done after the app's import so a module
    level ``basicConfig`` or handler of the app wins. (An app that calls
    ``basicConfig`` later, in setup, finds handlers installed and gets this
    default; a known trade-off.)
    """
    import logging

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO)


def main() -> None:
    fd = int(os.environ.get("INFSH_PROTOCOL_FD", "3"))
    app_dir = os.environ.get("INFSH_APP_DIR") or os.getcwd()
    spill_dir = os.environ.get("INFSH_SPILL_DIR")
    try:
        # Not inherited by processes the app starts: they must never hold
        # the host's channel open (or write to it).
        os.set_inheritable(fd, False)
    except OSError as e:
        print(f"infsh worker: protocol fd {fd} is not open: {e}", file=sys.stderr, flush=True)
        os._exit(2)

    channel = Channel(fd, spill_dir)
    zygote = os.environ.get("INFSH_ZYGOTE") == "1"
    reader: Optional[Reader] = None
    if not zygote:
        # A zygote must stay single-threaded to fork; PR_SET_PDEATHSIG ends
        # it with the host.
        reader = Reader(channel, on_gone=_host_gone, on_error=exit_protocol_error)
        reader.start()

    try:
        loaded = load(app_dir)
        # Imported after the app: costs nothing if the app imported pydantic
        # and the SDK already. A schema that cannot be built is reported as an
        # import_error, the closest kind the protocol has.
        from infsh_worker.discovery import DiscoveryError, discover_functions, discover_setup

        try:
            functions = discover_functions(loaded.app_class)
            setup = discover_setup(loaded.app_class, loaded.module)
            _ = setup.schema
        except DiscoveryError as e:
            raise LoadFailed("import_error", str(e), "") from None
        except Exception as e:
            from infsh_worker.loader import error_line, format_tb

            raise LoadFailed("import_error", f"cannot inspect App: {error_line(e)}", format_tb(e)) from None
    except LoadFailed as e:
        _flush()
        try:
            channel.write({"type": "load_failed", "kind": e.kind, "error": e.error, "traceback": e.traceback})
        except HostGone:
            pass
        # The traceback travels in load_failed only (the host shows it once);
        # stderr gets the one-line reason, for a host that reads only logs.
        print(f"infsh worker: {e.error}", file=sys.stderr)
        _flush()
        os._exit(1)

    _default_logging()
    if zygote:
        # What every worker needs, imported once here instead of per child.
        import asyncio  # noqa: F401

        import infsh_worker.runtime  # noqa: F401
        from infsh_worker import zygote as zygote_mod

        zygote_mod.serve(channel, lambda child: _serve(child, loaded, functions, setup, lambda: []))
    assert reader is not None
    _serve(channel, loaded, functions, setup, reader.handover)


def _serve(channel: Channel, loaded, functions, setup, handover) -> None:
    """Runs the worker's serve loop until ``bye``, then exits the process."""
    import asyncio

    from infsh_worker.runtime import Runtime, flush_stdio

    from infsh_worker.sdk import VERSION

    runtime = Runtime(channel, loaded, functions, setup, VERSION)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(runtime.serve(handover, _host_gone))
    except BaseException:
        import traceback

        print("infsh worker: internal error", file=sys.stderr)
        traceback.print_exc()
        flush_stdio()
        os._exit(3)
    # bye was sent. os._exit, not sys.exit: interpreter shutdown would join
    # pool threads of calls still running, and the host waits for the exit.
    flush_stdio()
    os._exit(0)

if __name__ == "__main__":
    main()
