"""A scratch folder per call, behind the standard ``tempfile`` functions.

Apps write their output files where Python's docs say temporary files go:
``tempfile.mkdtemp()``, ``NamedTemporaryFile``, ``TemporaryDirectory``,
``tempfile.gettempdir()``. Inside a call those now land in that call's own
folder, ``<spill folder>/scratch/<call id>/``, which the host removes once it
has copied the call's output files (or at once when the call fails), so a
long-running server does not fill ``/tmp`` with one folder per call. The same
code run on the platform, or outside a call (``setup``), gets the normal
temporary folder. See docs/writing-apps.md, "Output files and scratch space".

The folder is made on first use, so a call that writes no file costs nothing.
The call is known through a context variable: asyncio tasks inherit it, and
the runtime copies it into the thread of a plain ``def`` function.
"""

from __future__ import annotations

import contextvars
import os
import tempfile
from typing import Optional

# The folder of the call running in this context (None outside a call).
_current: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("infsh_scratch", default=None)
_root: Optional[str] = None
_system_gettempdir = tempfile.gettempdir
_system_gettempdirb = tempfile.gettempdirb


def folder_name(call_id: object) -> str:
    """The call's folder name: the id's letters, digits, ``-``, ``_`` and
    ``.``, anything else as ``_``. The host (infsh-worker's ``scratch.rs``)
    applies the same rule to find the folder it removes."""
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in str(call_id))
    if not name or name.startswith("."):
        name = "c" + name
    return name


def install(spill_dir: Optional[str]) -> None:
    """Points ``tempfile``'s default folder at the current call's scratch
    folder. Without a host spill folder (a worker started by hand) nothing
    changes."""
    global _root
    if not spill_dir:
        return
    _root = os.path.join(spill_dir, "scratch")
    # tempfile's mkdtemp/mkstemp/NamedTemporaryFile call these module
    # functions for their default folder, so replacing them is enough.
    tempfile.gettempdir = _gettempdir  # type: ignore[assignment]
    tempfile.gettempdirb = _gettempdirb  # type: ignore[assignment]


def enter(call_id: object) -> None:
    """Makes ``call_id``'s folder the default of this context (the call's task)."""
    if _root is not None:
        _current.set(os.path.join(_root, folder_name(call_id)))


def _gettempdir() -> str:
    folder = _current.get()
    if folder is None:
        return _system_gettempdir()
    os.makedirs(folder, exist_ok=True)
    return folder


def _gettempdirb() -> bytes:
    if _current.get() is None:
        return _system_gettempdirb()
    return os.fsencode(_gettempdir())
