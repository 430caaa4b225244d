"""The few SDK (``inferencesh``) names the worker needs, found defensively.

The worker runs in the app's own environment, with whatever SDK version the
app pinned, or none at all (an ``App`` may be a plain class using pydantic
only). Each name is looked up on its own, so one missing from an old SDK does
not take the others down:

- ``BaseApp``: its own ``run`` is not a function (docs/writing-apps.md, "Functions");
- ``Metadata``: passed to ``setup``/functions (a permissive stand-in without
  the SDK);
- ``File``: collected from outputs (none without the SDK);
- ``VERSION``: ``ready.sdk_version``.

Imported after the app, so the SDK import is normally already paid for.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict

try:
    import inferencesh as _sdk
except Exception:  # not installed, or broken: run without it
    _sdk = None


def _find(name: str, *modules: str) -> Optional[Any]:
    if _sdk is None:
        return None
    found = getattr(_sdk, name, None)
    if found is not None:
        return found
    import importlib

    for module in modules:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except Exception:
            found = None
        if found is not None:
            return found
    return None


class _StandInMetadata(BaseModel):
    """Runtime metadata when the SDK has no ``Metadata``: any keys, as attributes."""

    model_config = ConfigDict(extra="allow")


BaseApp: Optional[type] = _find("BaseApp", "inferencesh.models.base")
File: Optional[type] = _find("File", "inferencesh.models.file", "inferencesh.models")
Metadata: type = _find("Metadata", "inferencesh.models.base") or _StandInMetadata
VERSION: Optional[str] = None
if _sdk is not None:
    VERSION = getattr(_sdk, "__version__", None)
    if not isinstance(VERSION, str):
        try:
            from importlib.metadata import version

            VERSION = version("inferencesh")
        except Exception:
            VERSION = None
