"""Turning a function's return value into the ``output`` and ``files`` of a
``snapshot``/``done`` frame (docs/protocol.md, "files").

``output`` is ``model_dump(mode="json")`` of the output model. ``files``
lists every SDK ``File`` in it with an RFC 6901 pointer into ``output``, so
the host can store local files and rewrite those places with URLs (docs/writing-apps.md, "Files").

Pointers are found by walking the model instance and its dump side by side:
a key is followed only where the dump has it, so excluded fields, extras,
computed fields and renamed keys all end up with pointers that really
resolve in ``output``; a ``File`` is reported only where the dump holds the
SDK's serialized dict for it.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from typing import Any, Dict, List, Tuple

from pydantic import BaseModel, RootModel

from . import sdk
from .protocol import RawJSON

_SEQUENCES = (list, tuple, set, frozenset, deque)
# Values that hold no File: skipped before any isinstance check or pointer
# is made (a 32 x 1024 vector output has 32,768 of them; walking each one
# cost more than the rest of the call: docs/performance.md, "embed").
_LEAVES = frozenset({float, int, str, bool, type(None), bytes})
_MISSING = object()


class OutputError(Exception):
    """The function returned something that is not its output model."""


def escape(token: str) -> str:
    """One RFC 6901 reference token."""
    return token.replace("~", "~0").replace("/", "~1")


def as_output_model(result: Any, output_model: type, function: str) -> BaseModel:
    """The returned value as a model instance: any pydantic model is taken as
    is; a dict is validated into the declared output model."""
    if isinstance(result, BaseModel):
        return result
    if isinstance(result, dict):
        try:
            return output_model.model_validate(result)
        except Exception as e:
            raise OutputError(
                f"function {function!r} returned a dict that is not a valid {output_model.__name__}: {e}"
            ) from e
    raise OutputError(
        f"function {function!r} returned {type(result).__name__}, expected {output_model.__name__}"
    )


def _file_entry(f: Any, pointer: str) -> Dict[str, Any]:
    path = getattr(f, "path", None)
    size = getattr(f, "size", None)
    if isinstance(path, str):
        # The size on disk now: `File(path=...)` records it when built, and
        # apps sometimes build it before they finish writing the file.
        try:
            size = os.path.getsize(path)
        except OSError:
            pass
    return {
        "pointer": pointer,
        "path": path,
        "uri": getattr(f, "uri", None),
        "filename": getattr(f, "filename", None),
        "content_type": getattr(f, "content_type", None),
        "size": size,
    }


def _walk(obj: Any, dumped: Any, pointer: str, out: List[Dict[str, Any]], depth: int) -> None:
    if type(obj) in _LEAVES or depth > 200:  # self-referencing structures cannot be dumped anyway
        return
    if sdk.File is not None and isinstance(obj, sdk.File):
        if isinstance(dumped, dict):
            out.append(_file_entry(obj, pointer))
        return
    if isinstance(obj, RootModel):
        _walk(obj.root, dumped, pointer, out, depth + 1)
        return
    if isinstance(obj, BaseModel) or (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        if isinstance(dumped, dict):
            for key, sub in dumped.items():
                value = getattr(obj, key, _MISSING) if isinstance(key, str) else _MISSING
                if value is not _MISSING:
                    _walk(value, sub, f"{pointer}/{escape(key)}", out, depth + 1)
        return
    if isinstance(obj, dict):
        # pydantic keeps a dict's order and stringifies its keys; pair them up
        # by position so enum or int keys still map to the dumped key.
        if isinstance(dumped, dict) and len(dumped) == len(obj):
            for (_, value), (key, sub) in zip(obj.items(), dumped.items()):
                _walk(value, sub, f"{pointer}/{escape(str(key))}", out, depth + 1)
        return
    if isinstance(obj, _SEQUENCES):
        if _LEAVES.issuperset(map(type, obj)):
            return  # a list of numbers or strings: looked at in C, not one by one
        if isinstance(dumped, list) and len(dumped) == len(obj):
            for i, (value, sub) in enumerate(zip(obj, dumped)):
                if type(value) not in _LEAVES:
                    _walk(value, sub, f"{pointer}/{i}", out, depth + 1)


def _may_hold_file(obj: Any, depth: int) -> bool:
    """Whether a ``File`` may be somewhere in ``obj``: False only when every
    value in it is plain data (looked at without dumping it)."""
    if type(obj) in _LEAVES:
        return False
    if depth > 200 or (sdk.File is not None and isinstance(obj, sdk.File)):
        return True
    if isinstance(obj, BaseModel):
        # Computed fields are not in the instance's dict: not looked into.
        if type(obj).model_computed_fields:
            return True
        extra = getattr(obj, "__pydantic_extra__", None) or {}
        return any(_may_hold_file(v, depth + 1) for v in (*obj.__dict__.values(), *extra.values()))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return any(_may_hold_file(getattr(obj, f.name, None), depth + 1) for f in dataclasses.fields(obj))
    if isinstance(obj, dict):
        return any(_may_hold_file(v, depth + 1) for v in obj.values())
    if isinstance(obj, _SEQUENCES):
        if _LEAVES.issuperset(map(type, obj)):
            return False
        return any(_may_hold_file(v, depth + 1) for v in obj)
    return True  # a type of the app's own, with a serializer of its own


def serialize(model: BaseModel) -> Tuple[Any, List[Dict[str, Any]]]:
    """``(output, files)`` for one output model instance.

    An output that holds no ``File`` (the usual case) is serialized straight
    to JSON by its model (``RawJSON``, spliced into the frame as is): about
    half the cost of dumping it to Python objects and encoding those, 2 ms
    of a 32 x 1024 vector output (docs/performance.md, "embed"). With
    ``File``s, the dump is walked for their pointers. A model configured to
    write NaN as something other than ``null`` takes the dump's way, which
    writes ``null`` as the protocol wants."""
    if type(model).model_config.get("ser_json_inf_nan", "null") == "null" and not _may_hold_file(model, 0):
        return RawJSON(model.__pydantic_serializer__.to_json(model)), []
    dumped = model.model_dump(mode="json")
    files: List[Dict[str, Any]] = []
    _walk(model, dumped, "", files, 0)
    return dumped, files

