"""Importing the app folder and building its ``App`` (docs/writing-apps.md, "Layout" and "inf.yml").

The folder is imported AS A PACKAGE under a fixed synthetic name
(``APP_PACKAGE``) and then ``<package>.inference`` is imported, so that:

- relative imports work (``from .helpers import x``), as on the platform;
- the folder name does not matter: ``my-app`` or ``1st app`` are not Python
  identifiers, and a folder named like an installed package (``whisper``,
  ``flux``) must not shadow that package;
- an ``__init__.py`` in the folder runs first, as it would for a package
  (many apps have ``from .inference import App`` there).

The folder itself is also put first on ``sys.path``: many real apps import
their sibling modules absolutely (``import helpers``), which works on the
platform because the app runs from its folder. The folder's *parent* is
deliberately not added: that would make every sibling folder importable and
could shadow real packages.

Every failure is mapped to one ``load_failed`` kind of docs/protocol.md.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any, Optional

# Unlikely to collide with anything an app imports; visible in tracebacks
# as e.g. ``infsh_app.inference``.
APP_PACKAGE = "infsh_app"


class LoadFailed(Exception):
    """The app could not be loaded; ``kind`` is a load_failed kind."""

    def __init__(self, kind: str, error: str, tb: str = "") -> None:
        super().__init__(error)
        self.kind = kind
        self.error = error
        self.traceback = tb


class LoadedApp:
    """What the loader hands to discovery and the runtime."""

    def __init__(self, module: ModuleType, app_class: type, app: Any) -> None:
        self.module = module  # <package>.inference
        self.app_class = app_class
        self.app = app


def error_line(exc: BaseException) -> str:
    """``"ExcType: message"`` on one line (the protocol's ``error`` field)."""
    text = str(exc)
    name = type(exc).__name__
    line = f"{name}: {text}" if text else name
    return " ".join(line.split("\n")).strip()


# infsh's own files: frames in them are the runtime calling the app, not the app.
_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _is_plumbing(filename: str) -> bool:
    """A frame of infsh's runtime or of the standard library (importlib's
    frozen modules, asyncio, concurrent.futures): what the runtime goes
    through before it reaches the app's code."""
    if filename.startswith("<frozen ") or filename.startswith(_RUNTIME_DIR):
        return True
    import sysconfig  # deferred like traceback

    stdlib = sysconfig.get_paths().get("stdlib") or ""
    return (
        bool(stdlib)
        and filename.startswith(stdlib + os.sep)
        and "site-packages" not in filename
        and "dist-packages" not in filename
    )


def format_tb(exc: BaseException) -> str:
    """The exception's traceback as Python prints it, less the leading frames
    of infsh's runtime and the standard library, so the app's own frame
    comes first. A traceback with no app frame at all (infsh itself raised)
    is kept whole."""
    import traceback  # deferred: only errors pay for it (and for linecache/tokenize)

    tb = exc.__traceback__
    while tb is not None and _is_plumbing(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    if tb is None:
        tb = exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _package(app_dir: str) -> ModuleType:
    """Registers (and runs, if any) the app folder's package module."""
    init = os.path.join(app_dir, "__init__.py")
    if os.path.isfile(init):
        spec = importlib.util.spec_from_file_location(APP_PACKAGE, init, submodule_search_locations=[app_dir])
    else:
        # A namespace-like package: no code, just a __path__ for submodules.
        spec = importlib.machinery.ModuleSpec(APP_PACKAGE, None, is_package=True)
        spec.submodule_search_locations = [app_dir]
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before its code runs: `from .inference import App` inside
    # __init__.py resolves the package through sys.modules.
    sys.modules[APP_PACKAGE] = module
    if spec.loader is not None:
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(APP_PACKAGE, None)
            raise
    return module


def load(app_dir: str) -> LoadedApp:
    """Imports the app in ``app_dir`` and builds ``App()``; raises LoadFailed."""
    app_dir = os.path.abspath(app_dir)
    if not os.path.isfile(os.path.join(app_dir, "inference.py")):
        raise LoadFailed("no_inference_py", f"FileNotFoundError: no inference.py in {app_dir}")

    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)

    try:
        _package(app_dir)
        module = importlib.import_module(f"{APP_PACKAGE}.inference")
    except BaseException as e:  # SyntaxError, SystemExit at import, ... all count
        raise LoadFailed("import_error", error_line(e), format_tb(e)) from None

    app_class: Optional[Any] = getattr(module, "App", None)
    if not isinstance(app_class, type):
        what = "no class named App" if app_class is None else f"App is a {type(app_class).__name__}, not a class"
        raise LoadFailed("no_app_class", f"AttributeError: inference.py has {what}")

    try:
        app = app_class()
    except BaseException as e:
        raise LoadFailed("app_init_error", error_line(e), format_tb(e)) from None
    return LoadedApp(module, app_class, app)
