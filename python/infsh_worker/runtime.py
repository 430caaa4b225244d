"""The serve loop: setup, calls, cancellation, shutdown (docs/protocol.md).

One asyncio event loop on the main thread owns all state and reads the
protocol channel itself once the app is loaded (``serve``); answers are
written on the loop thread, so frames of one call keep their order.

- ``setup``: the config is validated, then ``App.setup`` runs as a task (a
  plain ``def`` setup off the loop). Setups are serialized; a call that
  arrives while one runs waits for it.
- ``call``: each call is a task. Its input is validated on the loop when
  the model is plain data, else off it (the SDK's ``File`` downloads URLs
  while validating; app validators may block). ``async`` functions run on
  the loop, plain ``def`` ones in a thread pool, async generators send
  ``snapshot``s of their yields (the first at once, then at most one per
  10 ms, the newest: snapshot_pacer.py) and then ``done`` with the last one.
- ``cancel``: ``on_cancel()`` is awaited first, then the task is cancelled,
  or, for a plain ``def`` running in a thread, ``infsh_worker.Cancelled`` is
  injected into that thread. Once a cancel is accepted the call always ends
  with ``failed``/``cancelled``, even if the function returned meanwhile.
- ``shutdown``: ``unload()`` (only if a setup ever succeeded), then ``bye``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple

from pydantic import ValidationError

from . import Cancelled, PROTOCOL_VERSION, batch, scratch
from .discovery import FunctionInfo, SetupInfo, _is_async
from .files import OutputError, as_output_model, serialize
from .snapshot_pacer import SnapshotPacer
from .loader import LoadedApp, error_line, format_tb
from .protocol import Channel, FrameDecoder, HostGone, MessageTooLarge, exit_protocol_error
from .sdk import Metadata


class SetupConfig(dict):
    """The setup config when the app declares no model for it (no annotated
    config parameter and no ``AppSetup`` in inference.py).

    A dict, so ``config["k"]``, ``config.get("k")`` and ``**config`` work,
    that also answers ``config.k`` and ``config.model_dump()`` like a
    permissive pydantic model: code written against either style runs.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def model_dump(self, **_: Any) -> Dict[str, Any]:
        return dict(self)


# -- helpers ---------------------------------------------------------------

# One read takes whatever the host sent, up to this; a bigger frame is
# reassembled over several reads.
_READ_CHUNK = 256 * 1024

_fflush: Optional[Callable[[Any], Any]] = None


def flush_stdio() -> None:
    """Pushes the app's pending output into the log pipes.

    The host drains those pipes when it sees a result frame, so everything
    printed before the result must have left this process: Python's own
    streams (also the originals, in case the app replaced sys.stdout) and C
    stdio buffers of native libraries (``fflush(NULL)``).
    """
    global _fflush
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    try:
        if _fflush is None:
            import ctypes  # deferred: only paid once a result is sent

            _fflush = ctypes.CDLL(None).fflush
        _fflush(None)
    except Exception:
        _fflush = lambda _arg: None  # noqa: E731 - no libc fflush here; stop trying


def warn(msg: str) -> None:
    print(f"infsh worker: {msg}", file=sys.stderr, flush=True)


def one_line(text: str) -> str:
    return " ".join(text.split())


def validation_errors(e: ValidationError, prefix: str = "") -> List[Dict[str, str]]:
    """pydantic's errors as the protocol's ``[{"loc": "a.b.0", "msg"}]``."""
    out = []
    for err in e.errors():
        loc = ".".join(str(part) for part in (prefix,) + tuple(err.get("loc", ())) if part != "")
        out.append({"loc": loc, "msg": one_line(str(err.get("msg", "")))})
    return out


def summarize(errors: List[Dict[str, str]]) -> str:
    return "; ".join(f"{e['loc']}: {e['msg']}" if e["loc"] else e["msg"] for e in errors)


def inject_cancelled(thread_id: int) -> None:
    """Raises ``Cancelled`` in the thread ``thread_id`` at its next bytecode."""
    import ctypes

    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    hit = set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(Cancelled))
    if hit > 1:  # cannot happen for a live id; undo as the C API asks
        set_async_exc(ctypes.c_ulong(thread_id), None)


class _InputError(Exception):
    def __init__(self, error: str, errors: List[Dict[str, str]], tb: str = "") -> None:
        super().__init__(error)
        self.error = error
        self.errors = errors
        self.traceback = tb



# Longest string kept in a message cut to fit under the limit.
_CUT_CHARS = 64 * 1024


def _cut_to_fit(msg: Dict[str, Any]) -> Dict[str, Any]:
    """``msg`` with every long string cut to 64 KiB and other large fields
    (lists, mappings such as per-field errors) left out: small enough to send."""
    cut: Dict[str, Any] = {}
    for key, value in msg.items():
        if isinstance(value, str):
            if len(value) > _CUT_CHARS:
                value = value[:_CUT_CHARS] + f" [... {len(value) - _CUT_CHARS} characters cut: over the message limit]"
            cut[key] = value
        elif not isinstance(value, (list, dict)):
            cut[key] = value
    return cut

class _Call:
    """One call in flight."""

    def __init__(self, call_id: Any, info: FunctionInfo, started: float) -> None:
        self.id = call_id
        self.info = info
        self.started = started
        self.task: Optional[asyncio.Task] = None
        # Guards thread_id/cancel_requested between the loop (cancel) and the
        # pool thread (start/end of a plain def), so Cancelled is injected
        # only while the app function itself runs on that thread.
        self.lock = threading.Lock()
        self.thread_id: Optional[int] = None
        self.cancel_requested = False
        # The run it belongs to, for a batched function (batch.py).
        self.batch: Optional[Any] = None


# -- the runtime -------------------------------------------------------------


def _serialized(held: Any) -> Tuple[Any, List[Dict[str, Any]]]:
    """``(output, files)`` of a stream's yield as ``Runtime._stream`` keeps
    it: serialized at the yield already, or the model, serialized now."""
    return held if isinstance(held, tuple) else serialize(held)


class Runtime:
    def __init__(
        self,
        channel: Channel,
        loaded: LoadedApp,
        functions: List[FunctionInfo],
        setup: SetupInfo,
        sdk_version: Optional[str],
    ) -> None:
        self.channel = channel
        scratch.install(os.environ.get("INFSH_SPILL_DIR"))
        self.app = loaded.app
        self.app_class = loaded.app_class
        self.functions: Dict[str, FunctionInfo] = {f.name: f for f in functions}
        self.setup_info = setup
        self.sdk_version = sdk_version
        self.calls: Dict[Any, _Call] = {}
        self.setup_ok = False  # the latest setup succeeded
        self.ever_set_up = False  # some setup succeeded: unload is due at shutdown
        self._setup_task: Optional[asyncio.Task] = None
        on_cancel = getattr(self.app, "on_cancel", None)
        self.on_cancel = on_cancel if callable(on_cancel) else None
        # Plain `def` app functions only; setup, unload, on_cancel and input
        # validation use the loop's default executor, so they never queue
        # behind long calls.
        self.executor = ThreadPoolExecutor(
            max_workers=max(32, (os.cpu_count() or 1) + 4), thread_name_prefix="infsh-call"
        )
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._finished: "asyncio.Future[None]"
        self._shutdown_task: Optional[asyncio.Task] = None

    # -- frames ------------------------------------------------------------

    def send(self, msg: Dict[str, Any]) -> None:
        """Sends one message. An output over the message limit raises
        MessageTooLarge (its call then fails); any other message is cut to
        fit (an exception with a huge text must still end its call)."""
        try:
            try:
                self.channel.write(msg)
            except MessageTooLarge:
                if msg.get("type") in ("done", "snapshot"):
                    raise
                self.channel.write(_cut_to_fit(msg))
        except HostGone:
            flush_stdio()
            os._exit(0)

    def send_result(self, msg: Dict[str, Any]) -> None:
        """Sends a frame the host attributes logs by (results, snapshots):
        the app's pending output is pushed into the pipes first."""
        flush_stdio()
        self.send(msg)

    def ready_message(self) -> Dict[str, Any]:
        return {
            "type": "ready",
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "python": "%d.%d.%d" % sys.version_info[:3],
            "sdk_version": self.sdk_version,
            "app_class": self.app_class.__name__,
            "functions": [self.functions[name].ready_entry() for name in sorted(self.functions)],
            "setup_schema": self.setup_info.schema,
            "has_on_cancel": self.on_cancel is not None,
        }

    # -- main loop ---------------------------------------------------------

    async def serve(self, handover: Callable[[], List[Dict[str, Any]]], on_gone: Callable[[str], None]) -> None:
        """Runs until ``shutdown`` was answered with ``bye``.

        Takes the channel over from the start-up ``Reader`` thread and reads
        it on the loop: each readable event is one ``os.read`` of whatever
        arrived (never blocks), and every frame completed by it is handled
        right there, without a queue or a thread hand-off.
        """
        self.loop = loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        self.send(self.ready_message())
        decoder = FrameDecoder(self.channel)
        fd = self.channel.fd

        def readable() -> None:
            try:
                data = os.read(fd, _READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                data = b""
                reason = f"protocol channel broke: {e}"
            else:
                reason = "protocol channel closed"
            if not data:
                loop.remove_reader(fd)
                on_gone(reason)
                return
            try:
                messages = decoder.feed(data)
            except Exception as e:  # ProtocolError (or a spill file problem)
                loop.remove_reader(fd)
                exit_protocol_error(f"{type(e).__name__}: {e}")
                return
            for msg in messages:
                self._dispatch(msg)

        for msg in handover():
            self._dispatch(msg)
        loop.add_reader(fd, readable)
        try:
            await self._finished
        finally:
            loop.remove_reader(fd)

    def _dispatch(self, msg: Dict[str, Any]) -> None:
        if self._shutdown_task is not None:
            return  # shutting down: nothing else is started
        kind = msg.get("type")
        if kind == "setup":
            self._start_setup(msg)
        elif kind == "call":
            self._start_call(msg)
        elif kind == "call_batch":
            self._start_batch(msg)
        elif kind == "cancel":
            self._start_cancel(msg)
        elif kind == "shutdown":
            assert self.loop is not None
            self._shutdown_task = self.loop.create_task(self._shutdown())
        else:
            warn(f"ignoring a message of unknown type {kind!r}")

    async def _invoke(self, fn: Callable[..., Any], args: List[Any]) -> Any:
        """Calls a lifecycle hook: async ones on the loop, plain ones off it."""
        if _is_async(fn):
            result = fn(*args)
        else:
            assert self.loop is not None
            result = await self.loop.run_in_executor(None, lambda: fn(*args))
        if inspect.isawaitable(result):
            result = await result
        return result

    # -- setup ---------------------------------------------------------------

    def _start_setup(self, msg: Dict[str, Any]) -> None:
        assert self.loop is not None
        previous = self._setup_task
        self._setup_task = self.loop.create_task(self._run_setup(msg, previous))

    def _config(self, raw: Any) -> Any:
        raw = {} if raw is None else raw
        model = self.setup_info.config_model
        if model is not None:
            return model.model_validate(raw)
        if not isinstance(raw, dict):
            raise TypeError(f"setup config must be an object, got {type(raw).__name__}")
        return SetupConfig(raw)

    async def _run_setup(self, msg: Dict[str, Any], previous: Optional[asyncio.Task]) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        # A failed re-setup leaves the app in an unknown state: no calls.
        self.setup_ok = False
        started = time.monotonic()
        try:
            what = "setup config"
            config = self._config(msg.get("config"))
            what = "setup metadata"
            metadata = Metadata.model_validate(msg.get("metadata") or {})
        except Exception as e:
            if isinstance(e, ValidationError):
                error = f"invalid {what}: {summarize(validation_errors(e))}"
            else:
                error = f"invalid {what}: {error_line(e)}"
            self.send_result({"type": "setup_failed", "kind": "config", "error": error, "traceback": ""})
            return

        fn = getattr(self.app, "setup", None)
        args: List[Any] = []
        if self.setup_info.takes_config:
            args.append(config)
        if self.setup_info.takes_metadata:
            args.append(metadata)
        try:
            if callable(fn):
                await self._invoke(fn, args)
        except BaseException as e:  # SystemExit from setup must not end the worker
            # The traceback travels in the answer only: the host shows it
            # once (the CLI after the logs, serve with the app's health).
            self.send_result({"type": "setup_failed", "kind": "app", "error": error_line(e), "traceback": format_tb(e)})
            return
        self.setup_ok = True
        self.ever_set_up = True
        self.send_result({"type": "setup_done", "seconds": time.monotonic() - started})

    # -- calls ---------------------------------------------------------------

    def _start_call(self, msg: Dict[str, Any]) -> None:
        assert self.loop is not None
        started = time.monotonic()
        call_id = msg.get("id")
        if call_id in self.calls:
            # Answering would end the call already running under this id.
            warn(f"ignoring a second call with id {call_id!r} while the first is in flight")
            return
        name = msg.get("function")
        info = self.functions.get(name) if isinstance(name, str) else None
        if info is None:
            known = ", ".join(sorted(self.functions)) or "none"
            self.send_result(
                {
                    "type": "failed",
                    "id": call_id,
                    "kind": "unknown_function",
                    "error": f"unknown function {name!r}; this app's functions: {known}",
                    "traceback": "",
                }
            )
            return
        if info.batched:
            batch.start(self, info, [(call_id, msg)])  # a batch of one
            return
        call = _Call(call_id, info, started)
        self.calls[call_id] = call
        call.task = self.loop.create_task(self._run_call(call, msg))
        call.task.add_done_callback(lambda task: self._task_finished(call, task))

    def _start_batch(self, msg: Dict[str, Any]) -> None:
        name = msg.get("function")
        items = [i for i in (msg.get("calls") or []) if isinstance(i, dict)]
        info = self.functions.get(name) if isinstance(name, str) else None
        if info is None or not info.batched:
            # Not a batched function (or none): each call on its own, which
            # answers an unknown function as a single call would.
            for item in items:
                self._start_call({"type": "call", "function": name, **item})
            return
        batch.start(self, info, [(item.get("id"), item) for item in items])

    def _task_finished(self, call: _Call, task: "asyncio.Task[None]") -> None:
        """Safety net: every call gets exactly one answer. A task cancelled
        before its first step never ran ``_run_call``'s handlers at all."""
        if self.calls.get(call.id) is not call:
            return  # answered
        if task.cancelled() or call.cancel_requested:
            self._cancelled(call)
        else:
            exc = task.exception()
            error = error_line(exc) if exc is not None else "the call ended without a result"
            self._failed(call, "app", error, format_tb(exc) if exc is not None else "")

    def _failed(self, call: _Call, kind: str, error: str, tb: str = "", **extra: Any) -> None:
        self.calls.pop(call.id, None)
        self.send_result({"type": "failed", "id": call.id, "kind": kind, "error": error, "traceback": tb, **extra})

    def _done(self, call: _Call, output: Any, files: List[Dict[str, Any]]) -> None:
        if call.cancel_requested:
            self._cancelled(call)
            return
        try:
            self.send_result(
                {"type": "done", "id": call.id, "output": output, "files": files, "seconds": time.monotonic() - call.started}
            )
        except MessageTooLarge as e:
            raise OutputError(f"the output is too large to return: {e}; return large data as a File") from None
        self.calls.pop(call.id, None)

    def _cancelled(self, call: _Call) -> None:
        self._failed(call, "cancelled", f"call {call.id} was cancelled")

    def _validate(self, info: FunctionInfo, msg: Dict[str, Any]) -> List[Any]:
        """The positional arguments after self (on the loop for plain-data
        inputs, else in the default executor: see ``validate_inline``)."""
        raw = msg.get("input")
        try:
            value = info.input_model.model_validate({} if raw is None else raw)
        except ValidationError as e:
            errors = validation_errors(e)
            raise _InputError(f"invalid input for {info.name} ({info.input_model.__name__}): {summarize(errors)}", errors)
        except Exception as e:  # e.g. a File input whose URL cannot be downloaded
            raise _InputError(f"invalid input for {info.name}: {error_line(e)}", [], format_tb(e))
        args: List[Any] = [value]
        if info.accepts_metadata:
            try:
                args.append(Metadata.model_validate(msg.get("metadata") or {}))
            except ValidationError as e:
                errors = validation_errors(e, prefix="metadata")
                raise _InputError(f"invalid metadata: {summarize(errors)}", errors)
        return args

    async def _run_call(self, call: _Call, msg: Dict[str, Any]) -> None:
        info = call.info
        assert self.loop is not None
        scratch.enter(call.id)  # this task's tempfile folder (scratch.py)
        try:
            if self._setup_task is not None and not self._setup_task.done():
                await asyncio.wait([self._setup_task])
            if not self.setup_ok:
                self._failed(call, "not_set_up", "the app is not set up: send a successful setup first")
                return
            try:
                if info.validate_inline:
                    args = self._validate(info, msg)
                else:
                    args = await self.loop.run_in_executor(None, self._validate, info, msg)
            except _InputError as e:
                self._failed(call, "input", e.error, e.traceback, errors=e.errors)
                return
            if info.streaming:
                output, files = await self._stream(call, args)
            else:
                result = await self._call_function(call, args)
                output, files = serialize(as_output_model(result, info.output_model, info.name))
            self._done(call, output, files)
        except BaseException as e:
            if call.cancel_requested:
                # CancelledError / Cancelled as asked, or whatever the app
                # raised while being cancelled: the call was cancelled.
                self._cancelled(call)
                return
            # Includes a CancelledError the app let escape from some inner
            # task of its own: the host did not cancel, so it is a failure.
            # The traceback travels in the answer only, not also on stderr:
            # the host shows it once (the CLI after the logs, serve in the
            # task's logs and its own log line).
            self._failed(call, "app", error_line(e), format_tb(e))

    async def _call_function(self, call: _Call, args: List[Any]) -> Any:
        fn = getattr(self.app, call.info.name)
        if call.info.is_async:
            result = fn(*args)
        else:
            result = await self._in_thread(call, fn, args)
        # A wrapper that hides a coroutine function (e.g. a decorator without
        # functools.wraps) still hands back something to await.
        if inspect.isawaitable(result):
            result = await result
        return result

    def _in_thread(self, call: _Call, fn: Callable[..., Any], args: List[Any]) -> "asyncio.Future[Any]":
        def runner() -> Any:
            with call.lock:
                if call.cancel_requested:
                    raise Cancelled()
                call.thread_id = threading.get_ident()
            try:
                return fn(*args)
            finally:
                # Under the lock: after this no Cancelled can be injected, so
                # it can never hit the pool thread's next job. One injected
                # just before is raised here, still inside this call.
                with call.lock:
                    call.thread_id = None

        assert self.loop is not None
        # The call's context (its scratch folder) goes along to the thread.
        return self.loop.run_in_executor(self.executor, contextvars.copy_context().run, runner)

    async def _stream(self, call: _Call, args: List[Any]):
        info = call.info
        iterator = getattr(self.app, info.name)(*args)
        if inspect.isawaitable(iterator):  # `async def f() -> AsyncIterator[M]: return gen()`
            iterator = await iterator
        if not hasattr(iterator, "__aiter__"):
            raise OutputError(f"streaming function {info.name!r} returned {type(iterator).__name__}, not an async iterator")
        agen = iterator.__aiter__()
        last = None

        def send(snapshot) -> None:
            if call.cancel_requested:
                return
            output, files = _serialized(snapshot)
            # Flushed too: what was printed before a yield reaches the host
            # before the snapshot that follows it.
            try:
                self.send_result({"type": "snapshot", "id": call.id, "output": output, "files": files})
            except MessageTooLarge as e:
                raise OutputError(f"a snapshot is too large to send: {e}; return large data as a File") from None

        # The first yield at once, then at most one snapshot per interval,
        # the newest (snapshot_pacer.py). A yield is serialized when it is
        # sent, not when it is yielded: most yields of a fast generator are
        # replaced before they are sent, and serializing each one (the
        # whole output so far, every time) was most of the worker's time in
        # the tokens benchmark (docs/performance.md, "Token streams"). An
        # app that yields a new object each time has no reason to change it
        # afterwards; one that changes one object and yields it again is
        # serialized at each yield from its second on, so that each
        # snapshot and the result are that object as it was when yielded.
        pacer = SnapshotPacer(send)
        yielded = None
        eager = False
        try:
            async for item in agen:
                model = as_output_model(item, info.output_model, info.name)
                eager = eager or model is yielded
                yielded = model
                last = serialize(model) if eager else model
                pacer.offer(last)
                # A generator that never awaits (CPU-bound, or yielding what
                # it already has) would otherwise hold the event loop to its
                # last item: the other calls' streams, new calls and cancels
                # would wait for it. One loop turn per yield lets them in.
                await asyncio.sleep(0)
            pacer.finish()
        finally:
            pacer.close()
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    pass
        if last is None:
            raise OutputError(f"streaming function {info.name!r} finished without yielding any output")
        return _serialized(last)

    # -- cancel ----------------------------------------------------------------

    def _start_cancel(self, msg: Dict[str, Any]) -> None:
        call = self.calls.get(msg.get("id"))
        if call is None or call.cancel_requested:
            return  # unknown, finished, or already being cancelled
        with call.lock:
            call.cancel_requested = True
        assert self.loop is not None
        if call.batch is not None:
            self.loop.create_task(batch.cancel(self, call))
            return
        self.loop.create_task(self._cancel(call))

    async def _cancel(self, call: _Call) -> None:
        if self.on_cancel is not None:
            try:
                await self._invoke(self.on_cancel, [])
            except BaseException as e:
                warn(f"on_cancel() raised {error_line(e)}")
                traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
        task = call.task
        if task is None or task.done():
            return
        with call.lock:
            if call.thread_id is not None:
                inject_cancelled(call.thread_id)
                return
        task.cancel()

    # -- shutdown ----------------------------------------------------------------

    async def _shutdown(self) -> None:
        unload_error: Optional[str] = None
        unload = getattr(self.app, "unload", None)
        if self.ever_set_up and callable(unload):
            try:
                await self._invoke(unload, [])
            except BaseException as e:
                traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
                unload_error = error_line(e)
        self.send_result({"type": "bye", "unload_error": unload_error})
        if not self._finished.done():
            self._finished.set_result(None)
