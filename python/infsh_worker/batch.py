"""Batched functions: one run of ``App.<fn>(inputs: list[I]) -> list[O]`` for
several calls (docs/writing-apps.md, "Batching"; docs/protocol.md, ``call_batch``).

The host gathers the calls; here they are run together and answered one by
one, each under its own id:

- each input is validated alone: an invalid one fails its own call
  (``kind: input``) and the others run without it;
- the function gets the valid inputs (and, if it takes metadata, the list
  of their metadata) in the order of the message;
- it must return a list with one entry per input, in order. An entry that is
  an exception fails that call only (``kind: app``); a list of another length
  fails every call with a message naming both counts; an exception raised by
  the function fails every call, saying it was the whole batch's;
- cancelling one call answers it at once (``cancelled``) and drops its
  output when the batch returns; the run itself is only stopped (as a single
  call is: ``on_cancel``, then the task is cancelled or ``Cancelled`` is
  injected into its thread) once every call of the batch was cancelled.

A plain ``call`` of a batched function is a batch of one. The run has no
scratch folder of its own (its calls end at different times): files it
writes with ``tempfile`` go to the system's temporary folder.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from pydantic import ValidationError

from .discovery import FunctionInfo
from .files import as_output_model, serialize
from .loader import error_line, format_tb
from .sdk import Metadata

if TYPE_CHECKING:
    from .runtime import Runtime, _Call


class Batch:
    """One run of a batched function. Quacks like a ``_Call`` for
    ``Runtime._in_thread`` (``lock``, ``thread_id``, ``cancel_requested``)."""

    def __init__(self, info: FunctionInfo, calls: List["_Call"]) -> None:
        self.info = info
        self.calls = calls
        self.task: Optional[asyncio.Task] = None
        self.lock = threading.Lock()
        self.thread_id: Optional[int] = None
        self.cancel_requested = False

    def all_cancelled(self) -> bool:
        return all(c.cancel_requested for c in self.calls)


def _valid_inputs(rt: "Runtime", batch: Batch, items: List[Dict[str, Any]]) -> List[Tuple["_Call", Any, Any]]:
    """(call, input, metadata) of every call whose input validates; the
    others are failed here."""
    from .runtime import summarize, validation_errors

    info = batch.info
    valid = []
    for call, item in zip(batch.calls, items):
        raw = item.get("input")
        try:
            value = info.input_model.model_validate({} if raw is None else raw)
            metadata = Metadata.model_validate(item.get("metadata") or {}) if info.accepts_metadata else None
        except ValidationError as e:
            errors = validation_errors(e)
            error = f"invalid input for {info.name} ({info.input_model.__name__}): {summarize(errors)}"
            rt._failed(call, "input", error, "", errors=errors)
            continue
        except Exception as e:  # e.g. a File input whose URL cannot be downloaded
            rt._failed(call, "input", f"invalid input for {info.name}: {error_line(e)}", format_tb(e), errors=[])
            continue
        valid.append((call, value, metadata))
    return valid


async def run(rt: "Runtime", batch: Batch, items: List[Dict[str, Any]]) -> None:
    """Runs the batch and answers each of its calls."""
    info = batch.info
    assert rt.loop is not None
    if rt._setup_task is not None and not rt._setup_task.done():
        await asyncio.wait([rt._setup_task])
    if not rt.setup_ok:
        for call in batch.calls:
            rt._failed(call, "not_set_up", "the app is not set up: send a successful setup first")
        return
    if info.validate_inline:
        valid = _valid_inputs(rt, batch, items)
    else:
        valid = await rt.loop.run_in_executor(None, _valid_inputs, rt, batch, items)
    # Cancelled while it waited for setup or validation.
    valid = [v for v in valid if rt.calls.get(v[0].id) is v[0]]
    if not valid:
        return
    args: List[Any] = [[v[1] for v in valid]]
    if info.accepts_metadata:
        args.append([v[2] for v in valid])
    n = len(valid)
    try:
        fn = getattr(rt.app, info.name)
        if info.is_async:
            result = fn(*args)
        else:
            result = await rt._in_thread(batch, fn, args)  # type: ignore[arg-type]
        if inspect.isawaitable(result):
            result = await result
    except BaseException as e:
        if batch.cancel_requested:
            return  # every call was answered when it was cancelled
        error = f"{error_line(e)} (raised by {info.name} for the whole batch of {n} call{'s' if n != 1 else ''})"
        tb = format_tb(e)
        for call, _, _ in valid:
            if rt.calls.get(call.id) is call:
                rt._failed(call, "app", error, tb)
        return
    if isinstance(result, tuple):
        result = list(result)
    if not isinstance(result, list) or len(result) != n:
        got = f"{len(result)} outputs" if isinstance(result, list) else f"{type(result).__name__}, not a list,"
        error = (
            f"OutputError: {info.name} returned {got} for {n} input{'s' if n != 1 else ''}; "
            "a batched function returns one output per input, in order"
        )
        for call, _, _ in valid:
            if rt.calls.get(call.id) is call:
                rt._failed(call, "app", error)
        return
    for (call, _, _), item in zip(valid, result):
        if rt.calls.get(call.id) is not call:
            continue  # cancelled: answered already
        if isinstance(item, BaseException):
            rt._failed(call, "app", error_line(item), format_tb(item))
            continue
        try:
            output, files = serialize(as_output_model(item, info.output_model, info.name))
            rt._done(call, output, files)
        except Exception as e:
            rt._failed(call, "app", error_line(e), format_tb(e))


def start(rt: "Runtime", info: FunctionInfo, entries: List[Tuple[Any, Dict[str, Any]]]) -> None:
    """Registers the calls (``(id, {"input", "metadata"})``) and starts their run."""
    from .runtime import _Call, warn

    assert rt.loop is not None
    started = time.monotonic()
    calls: List[_Call] = []
    items: List[Dict[str, Any]] = []
    for call_id, item in entries:
        if call_id in rt.calls:
            warn(f"ignoring a second call with id {call_id!r} while the first is in flight")
            continue
        call = _Call(call_id, info, started)
        calls.append(call)
        items.append(item)
    if not calls:
        return
    batch = Batch(info, calls)
    for call in calls:
        call.batch = batch
        rt.calls[call.id] = call
    batch.task = rt.loop.create_task(run(rt, batch, items))
    for call in calls:
        call.task = batch.task

    def finished(task: "asyncio.Task[None]") -> None:
        # Safety net: every call gets exactly one answer.
        for call in calls:
            if rt.calls.get(call.id) is call:
                rt._task_finished(call, task)

    batch.task.add_done_callback(finished)


async def cancel(rt: "Runtime", call: "_Call") -> None:
    """Answers ``call`` as cancelled now; stops the run when it was the last
    call of its batch still wanted."""
    batch: Batch = call.batch
    rt._cancelled(call)
    if not batch.all_cancelled():
        return
    with batch.lock:
        batch.cancel_requested = True
    if rt.on_cancel is not None:
        try:
            await rt._invoke(rt.on_cancel, [])
        except BaseException as e:
            from .runtime import warn

            warn(f"on_cancel() raised {error_line(e)}")
    task = batch.task
    if task is None or task.done():
        return
    with batch.lock:
        if batch.thread_id is not None:
            from .runtime import inject_cancelled

            inject_cancelled(batch.thread_id)
            return
    task.cancel()
