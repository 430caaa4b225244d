"""Importing the app folder as a package, and every ``load_failed`` kind."""

from __future__ import annotations

MINIMAL = """
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput

class AppInput(BaseAppInput):
    text: str

class AppOutput(BaseAppOutput):
    text: str

class App(BaseApp):
    async def run(self, input: AppInput) -> AppOutput:
        return AppOutput(text=input.text)
"""


def load_failed(w):
    msg = w.expect("load_failed", "ready")
    assert msg["type"] == "load_failed", msg
    assert w.wait(20) == 1
    return msg


def test_no_inference_py(app, start):
    w = start(app(None, files={"helpers.py": "x = 1\n"}))
    msg = load_failed(w)
    assert msg["kind"] == "no_inference_py"
    assert "inference.py" in msg["error"]


def test_import_error_carries_the_traceback(app, start):
    w = start(app("import numpy_but_not_really_xyz\n"))
    msg = load_failed(w)
    assert msg["kind"] == "import_error"
    assert msg["error"] == "ModuleNotFoundError: No module named 'numpy_but_not_really_xyz'"
    assert "Traceback (most recent call last)" in msg["traceback"]
    # importlib's and the loader's frames are trimmed: the app's import line comes first.
    first_frame = next(line for line in msg["traceback"].splitlines() if line.startswith("  File "))
    assert "inference.py" in first_frame, msg["traceback"]


def test_syntax_error_is_an_import_error(app, start):
    w = start(app("def broken(:\n    pass\n"))
    msg = load_failed(w)
    assert msg["kind"] == "import_error"
    assert msg["error"].startswith("SyntaxError")


def test_error_in_package_init_is_an_import_error(app, start):
    w = start(app(MINIMAL, files={"__init__.py": "raise RuntimeError('init broke')\n"}))
    msg = load_failed(w)
    assert msg["kind"] == "import_error"
    assert msg["error"] == "RuntimeError: init broke"


def test_no_app_class(app, start):
    w = start(app("class NotTheApp:\n    pass\n"))
    msg = load_failed(w)
    assert msg["kind"] == "no_app_class"


def test_app_that_is_not_a_class(app, start):
    w = start(app("App = 42\n"))
    assert load_failed(w)["kind"] == "no_app_class"


def test_app_init_error(app, start):
    src = MINIMAL + """
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        raise RuntimeError("cannot build")
"""
    w = start(app(src))
    msg = load_failed(w)
    assert msg["kind"] == "app_init_error"
    assert msg["error"] == "RuntimeError: cannot build"
    assert "cannot build" in msg["traceback"]


def test_relative_imports_in_a_folder_named_with_dashes(app, start):
    src = """
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput
from .helpers import shout
from .utils.text import exclaim

class AppInput(BaseAppInput):
    text: str

class AppOutput(BaseAppOutput):
    text: str

class App(BaseApp):
    async def setup(self):
        # apps open files relative to their folder (cwd is the app folder)
        with open("suffix.txt") as f:
            self.suffix = f.read().strip()

    async def run(self, input: AppInput) -> AppOutput:
        return AppOutput(text=exclaim(shout(input.text)) + self.suffix)
"""
    files = {
        "helpers.py": "def shout(s):\n    return s.upper()\n",
        "utils/__init__.py": "",
        "utils/text.py": "from ..helpers import shout\n\ndef exclaim(s):\n    return shout(s) + '!'\n",
        "suffix.txt": "?\n",
    }
    w = start(app(src, name="my-cool app.v2", files=files))
    w.ready()
    assert w.setup()["type"] == "setup_done"
    assert w.call("run", {"text": "hi"})["output"]["text"] == "HI!?"
    w.shutdown()


def test_absolute_imports_of_sibling_modules(app, start):
    src = """
import siblinghelper
from siblingpkg.inner import value
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput

class AppInput(BaseAppInput):
    text: str

class AppOutput(BaseAppOutput):
    text: str

class App(BaseApp):
    async def run(self, input: AppInput) -> AppOutput:
        return AppOutput(text=siblinghelper.twice(input.text) + value)
"""
    files = {
        "siblinghelper.py": "def twice(s):\n    return s * 2\n",
        "siblingpkg/__init__.py": "",
        "siblingpkg/inner.py": "value = '#'\n",
    }
    w = start(app(src, name="abs-imports", files=files))
    w.ready()
    w.setup()
    assert w.call("run", {"text": "ab"})["output"]["text"] == "abab#"


def test_package_init_importing_app_runs_once(app, start):
    src = MINIMAL.replace("class App(BaseApp):", "print('inference imported')\n\nclass App(BaseApp):")
    files = {"__init__.py": "from .inference import App\nprint('package imported')\n"}
    w = start(app(src, files=files))
    ready = w.ready()
    assert ready["app_class"] == "App"
    w.shutdown()
    assert w.stdout().splitlines() == ["inference imported", "package imported"]


def test_app_without_the_sdk(app, start, tmp_path):
    """A plain class App with pydantic models runs where the SDK cannot be
    imported: no sdk_version, a stand-in Metadata, no File collection."""
    blocker = tmp_path / "no-sdk"
    (blocker / "inferencesh").mkdir(parents=True)
    (blocker / "inferencesh" / "__init__.py").write_text("raise ImportError('no SDK in this environment')\n")
    src = """
from pydantic import BaseModel

class In(BaseModel):
    text: str

class Out(BaseModel):
    text: str

class App:
    def setup(self, metadata):
        self.worker = metadata.worker_id

    async def run(self, input: In) -> Out:
        return Out(text=f"{input.text} on {self.worker}")

    def helper(self):
        return 1
"""
    from harness import PYTHON_ROOT

    w = start(app(src), env={"PYTHONPATH": f"{PYTHON_ROOT}:{blocker}"})
    ready = w.ready()
    assert ready["sdk_version"] is None
    assert [f["name"] for f in ready["functions"]] == ["run"]
    assert ready["setup_schema"] == {"properties": {}, "title": "AppSetup", "type": "object"}
    assert w.setup(metadata={"worker_id": "w1"})["type"] == "setup_done"
    assert w.call("run", {"text": "hi"})["output"] == {"text": "hi on w1"}
    assert w.shutdown()["unload_error"] is None
