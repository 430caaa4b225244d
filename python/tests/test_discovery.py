"""Which methods are functions (docs/writing-apps.md, "Functions") and what
``ready`` says about them (docs/protocol.md, "Messages")."""

from __future__ import annotations

import importlib.util
import sys
import uuid

from harness import write_app

KITCHEN_SINK = '''
import collections.abc
from typing import AsyncGenerator, AsyncIterator, Optional

from pydantic import BaseModel
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, function


class In(BaseAppInput):
    text: str


class Out(BaseAppOutput):
    text: str


class PlainIn(BaseModel):
    n: int


class PlainOut(BaseModel):
    n: int


class App(BaseApp):
    async def setup(self):
        pass

    async def upscale(self, input: In) -> Out:
        """Upscale an image.

        Longer explanation,
            indented.
        """
        return Out(text=input.text)

    def sync_fn(self, input: PlainIn) -> PlainOut:
        return PlainOut(n=input.n)

    async def stream_gen(self, input: In) -> AsyncGenerator[Out, None]:
        yield Out(text="a")

    async def stream_iter(self, input: In) -> AsyncIterator[Out]:
        yield Out(text="a")

    async def stream_abc(self, input: In) -> collections.abc.AsyncIterator[Out]:
        yield Out(text="a")

    async def with_meta(self, input: In, metadata) -> Out:
        return Out(text=input.text)

    @function(annotations={"readOnlyHint": True}, credentials=["slack"])
    async def decorated(self, input: In) -> Out:
        return Out(text=input.text)

    # --- none of these is a function ---
    async def _private(self, input: In) -> Out:
        return Out(text="")

    async def helper(self, x: int) -> Out:
        return Out(text="")

    async def no_return(self, input: In):
        return None

    async def untyped(self, input):
        return None

    def returns_dict(self, input: In) -> dict:
        return {}

    def returns_optional(self, input: In) -> Optional[Out]:
        return None

    def no_params(self) -> Out:
        return Out(text="")

    def copy(self, input: In) -> Out:  # a pydantic BaseModel method name
        return Out(text="")

    @staticmethod
    def static(input: In) -> Out:
        return Out(text="")

    @classmethod
    def klass(cls, input: In) -> Out:
        return Out(text="")

    @property
    def prop(self) -> Out:
        return Out(text="")

    async def on_cancel(self):
        pass

    async def unload(self):
        pass
'''


def functions(ready):
    return {f["name"]: f for f in ready["functions"]}


def import_app_module(app_dir):
    """The app's inference module imported in this test process, to compute
    the schemas the worker should report."""
    name = f"app_under_test_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, app_dir / "inference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect.getsource (OrderedSchemaModel) needs it
    spec.loader.exec_module(module)
    return module


def test_exposed_functions_follow_the_rules(app, start):
    w = start(app(KITCHEN_SINK))
    ready = w.ready()
    names = [f["name"] for f in ready["functions"]]
    assert names == ["decorated", "stream_abc", "stream_gen", "stream_iter", "sync_fn", "upscale", "with_meta"]
    fns = functions(ready)
    assert fns["upscale"]["streaming"] is False and fns["upscale"]["is_async"] is True
    assert fns["sync_fn"]["is_async"] is False and fns["sync_fn"]["streaming"] is False
    for name in ("stream_gen", "stream_iter", "stream_abc"):
        assert fns[name]["streaming"] is True and fns[name]["is_async"] is True
    assert fns["with_meta"]["accepts_metadata"] is True
    assert fns["upscale"]["accepts_metadata"] is False
    assert ready["has_on_cancel"] is True
    assert ready["app_class"] == "App"
    assert ready["sdk_version"] == "0.36.0"
    assert isinstance(ready["pid"], int) and ready["python"].count(".") == 2


def test_entries_are_model_schemas_docstrings_and_decorator_keys(app, start, tmp_path):
    app_dir = app(KITCHEN_SINK)
    w = start(app_dir)
    fns = functions(w.ready())
    mod = import_app_module(app_dir)

    up = fns["upscale"]["entry"]
    assert list(up) == ["description", "input_schema", "output_schema"]
    assert up["description"] == "Upscale an image.\n\nLonger explanation,\n    indented."
    assert up["input_schema"] == mod.In.model_json_schema()
    assert up["output_schema"] == mod.Out.model_json_schema()
    assert fns["sync_fn"]["entry"]["input_schema"] == mod.PlainIn.model_json_schema()
    assert fns["sync_fn"]["entry"]["description"] == ""
    assert fns["stream_gen"]["entry"]["output_schema"] == mod.Out.model_json_schema()

    dec = fns["decorated"]["entry"]
    assert list(dec) == ["description", "input_schema", "output_schema", "credentials", "annotations"]
    assert dec["credentials"] == [{"slug": "slack"}]
    assert dec["annotations"] == {"readOnlyHint": True}


def test_schema_keeps_the_sdk_property_order(app, start):
    src = '''
from typing import Optional
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, File
from pydantic import Field


class CommonInput(BaseAppInput):
    prompt: str = Field(description="what to draw")
    seed: int = 0


class UpscaleInput(CommonInput):
    scale: int = Field(default=2, ge=1, le=8)
    image: File = Field(description="the image", json_schema_extra={"contentMediaType": "image/*"})
    seed: int = 42  # an override keeps its inherited position


class UpscaleOutput(BaseAppOutput):
    image: File
    note: Optional[str] = None


class App(BaseApp):
    async def upscale(self, input: UpscaleInput) -> UpscaleOutput:
        raise NotImplementedError
'''
    app_dir = app(src)
    w = start(app_dir)
    entry = functions(w.ready())["upscale"]["entry"]
    mod = import_app_module(app_dir)
    expected_in = mod.UpscaleInput.model_json_schema()
    assert entry["input_schema"] == expected_in
    # dict equality ignores order; the order is the point of OrderedSchemaModel
    assert list(entry["input_schema"]["properties"]) == list(expected_in["properties"])
    assert list(entry["input_schema"]["properties"]) == ["scale", "image", "prompt", "seed"]
    assert entry["input_schema"]["properties"]["image"]["format"] == "file"
    expected_out = mod.UpscaleOutput.model_json_schema()
    assert entry["output_schema"] == expected_out
    assert list(entry["output_schema"]["properties"]) == ["image", "note", "output_meta"]
    assert list(entry["output_schema"]["$defs"]) == list(expected_out["$defs"])


def test_inherited_base_run_is_not_a_function(app, start):
    src = '''
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput

class In(BaseAppInput):
    x: int

class Out(BaseAppOutput):
    x: int

class App(BaseApp):
    async def setup(self):
        pass

    async def double(self, input: In) -> Out:
        return Out(x=input.x * 2)
'''
    w = start(app(src))
    ready = w.ready()
    assert [f["name"] for f in ready["functions"]] == ["double"]
    assert ready["has_on_cancel"] is False


def test_overridden_run_is_a_function(app, start):
    src = '''
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput

class AppInput(BaseAppInput):
    x: int

class AppOutput(BaseAppOutput):
    x: int

class App(BaseApp):
    async def run(self, input_data: AppInput) -> AppOutput:
        return AppOutput(x=input_data.x)
'''
    w = start(app(src))
    assert [f["name"] for f in w.ready()["functions"]] == ["run"]


def test_methods_inherited_from_an_app_base_class_are_functions(app, start):
    src = '''
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput

class In(BaseAppInput):
    x: int

class Out(BaseAppOutput):
    x: int

class Shared(BaseApp):
    async def health(self, input: In) -> Out:
        return Out(x=input.x)

class App(Shared):
    async def run(self, input: In) -> Out:
        return Out(x=input.x)
'''
    w = start(app(src))
    assert [f["name"] for f in w.ready()["functions"]] == ["health", "run"]


def test_future_annotations_and_models_defined_after_the_app(app, start):
    src = '''
from __future__ import annotations

from typing import AsyncGenerator

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class App(BaseApp):
    async def setup(self, config: Config):
        self.factor = config.factor

    async def scale(self, input: In) -> Out:
        return Out(x=input.x * self.factor)

    async def count(self, input: In) -> AsyncGenerator[Out, None]:
        for i in range(input.x):
            yield Out(x=i)

    async def broken(self, input: DoesNotExist) -> Out:
        raise NotImplementedError


class In(BaseAppInput):
    x: int


class Out(BaseAppOutput):
    x: int


class Config(BaseAppInput):
    factor: int = 3
'''
    w = start(app(src))
    ready = w.ready()
    fns = functions(ready)
    assert sorted(fns) == ["count", "scale"]
    assert fns["count"]["streaming"] is True
    assert ready["setup_schema"]["title"] == "Config"
    assert "App.broken is not exposed" in w.stderr()
    assert w.setup({"factor": 5})["type"] == "setup_done"
    assert w.call("scale", {"x": 2})["output"]["x"] == 10


def test_setup_schema_defaults(app, start, tmp_path):
    with_model = '''
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, BaseAppSetup

class AppSetup(BaseAppSetup):
    model_id: str = "small"
    device: str = "cpu"

class In(BaseAppInput):
    x: int

class Out(BaseAppOutput):
    x: int

class App(BaseApp):
    async def setup(self):
        pass

    async def run(self, input: In) -> Out:
        return Out(x=input.x)
'''
    app_dir = app(with_model, name="with-model")
    w = start(app_dir)
    mod = import_app_module(app_dir)
    assert w.ready()["setup_schema"] == mod.AppSetup.model_json_schema()

    without = with_model.replace("class AppSetup(BaseAppSetup):", "class Other(BaseAppSetup):")
    w2 = start(app(without, name="without-model"))
    assert w2.ready()["setup_schema"] == {"properties": {}, "title": "AppSetup", "type": "object"}


def test_a_schema_that_cannot_be_built_fails_the_load(app, start):
    src = '''
from pydantic import BaseModel, ConfigDict
from inferencesh import BaseApp


class Opaque:
    pass


class In(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: Opaque


class Out(BaseModel):
    x: int


class App(BaseApp):
    async def run(self, input: In) -> Out:
        return Out(x=1)
'''
    w = start(app(src))
    msg = w.expect("load_failed")
    assert msg["kind"] == "import_error"
    assert "'run'" in msg["error"]
    assert w.wait(20) == 1


def test_write_app_helper_roundtrip(tmp_path):
    d = write_app(tmp_path, "x", "A = 1\n", {"sub/b.py": "B = 2\n"})
    assert (d / "inference.py").read_text() == "A = 1\n"
    assert (d / "sub" / "b.py").read_text() == "B = 2\n"


def test_plain_data_inputs_are_validated_on_the_loop_others_in_a_thread():
    """``validate_inline``: only models whose validation cannot block (no
    SDK File, which downloads URLs; no app validators) skip the thread."""
    from typing import Annotated, Dict, List, Literal, Optional

    import inferencesh
    from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

    from infsh_worker.discovery import is_plain_data

    class Plain(BaseModel):
        text: str
        xs: List[Optional[int]] = []
        d: Dict[str, float] = {}
        mode: Literal["a", "b"] = "a"
        n: Annotated[int, Field(ge=0)] = 0

    class Nested(BaseModel):
        inner: Plain
        more: Optional[List[Plain]] = None

    class WithFile(BaseModel):
        image: inferencesh.File

    class NestedFile(BaseModel):
        items: List[WithFile]

    class FieldValidated(BaseModel):
        x: int

        @field_validator("x")
        @classmethod
        def check(cls, v):
            return v

    class ModelValidated(BaseModel):
        x: int

        @model_validator(mode="after")
        def check(self):
            return self

    class AnnotatedValidator(BaseModel):
        x: Annotated[int, AfterValidator(lambda v: v)]

    assert is_plain_data(Plain) and is_plain_data(Nested)
    for model in (WithFile, NestedFile, FieldValidated, ModelValidated, AnnotatedValidator):
        assert not is_plain_data(model), model.__name__
