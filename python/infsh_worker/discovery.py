"""Which methods of ``App`` are functions, and how setup is called (docs/writing-apps.md, "setup" and "Functions").

Reads the app class only (never calls app code) and produces:

- one ``FunctionInfo`` per exposed function, including its entry of
  ``functions_schema.json`` exactly as docs/cli.md ("infsh app schema") describes it: the cleaned
  docstring, the input and output models' own ``model_json_schema()`` (the
  SDK's ``OrderedSchemaModel`` reorders properties itself; nothing here
  touches a schema), then any keys the SDK's ``@function`` decorator set;
- one ``SetupInfo``: which of the four ``setup`` signatures the app uses, the
  config model, and the ``setup_schema`` of docs/protocol.md.

Annotations are resolved with ``typing.get_type_hints`` so string annotations
and ``from __future__ import annotations`` work like real classes.
"""

from __future__ import annotations

import collections.abc
import inspect
import sys
import typing
from typing import Any, Dict, List, Optional, Tuple

from pydantic import BaseModel

# Hooks of the app lifecycle, never functions even when annotated like one.
_LIFECYCLE = frozenset({"setup", "unload", "on_cancel"})
_STREAMING_ORIGINS = (collections.abc.AsyncGenerator, collections.abc.AsyncIterator)
# Written by inferencesh.decorators.function (FUNCTION_META_ATTR there).
_FUNCTION_META_ATTR = "__inferencesh_function__"
EMPTY_SETUP_SCHEMA: Dict[str, Any] = {"properties": {}, "title": "AppSetup", "type": "object"}

from . import sdk


class DiscoveryError(Exception):
    """A function matched the rules but its schema could not be generated."""


class FunctionInfo:
    def __init__(
        self,
        name: str,
        input_model: type,
        output_model: type,
        streaming: bool,
        is_async: bool,
        accepts_metadata: bool,
        entry: Dict[str, Any],
        batched: bool = False,
    ) -> None:
        self.name = name
        # Validated on the event loop (microseconds) unless validation may
        # block: SDK ``File`` inputs download URLs, and app validators may
        # do anything. Those go to a thread.
        self.validate_inline = is_plain_data(input_model)
        self.input_model = input_model
        self.output_model = output_model
        self.streaming = streaming
        self.is_async = is_async
        self.accepts_metadata = accepts_metadata
        self.entry = entry
        # Takes list[Input] and returns list[Output] (batching, opt in
        # through inf.yml): the models above are those of one item.
        self.batched = batched

    def ready_entry(self) -> Dict[str, Any]:
        """This function's item of ``ready.functions``."""
        entry = {
            "name": self.name,
            "streaming": self.streaming,
            "is_async": self.is_async,
            "accepts_metadata": self.accepts_metadata,
            "entry": self.entry,
        }
        if self.batched:
            entry["batched"] = True
        return entry


class SetupInfo:
    def __init__(self, takes_config: bool, takes_metadata: bool, config_model: Optional[type], is_async: bool) -> None:
        self.takes_config = takes_config
        self.takes_metadata = takes_metadata
        self.config_model = config_model  # None: the config is passed as a SetupConfig dict
        self.is_async = is_async

    @property
    def schema(self) -> Dict[str, Any]:
        if self.config_model is None:
            return dict(EMPTY_SETUP_SCHEMA)
        return self.config_model.model_json_schema()


def is_model_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _has_validators(model: type) -> bool:
    decorators = getattr(model, "__pydantic_decorators__", None)
    if decorators is None:
        return False
    return any(
        getattr(decorators, kind, None)
        for kind in ("validators", "field_validators", "root_validators", "model_validators")
    )


def is_plain_data(model: type, _seen: Optional[set] = None) -> bool:
    """True when validating ``model`` runs no code that could block: no SDK
    ``File`` (validation downloads URLs), no validator written by the app,
    no custom ``__get_pydantic_core_schema__`` type, anywhere in its fields.
    Unknown shapes answer False (validated off the loop, as before)."""
    seen = set() if _seen is None else _seen
    if model in seen:
        return True
    seen.add(model)
    if _has_validators(model):
        return False
    fields = getattr(model, "model_fields", None)
    if not isinstance(fields, dict):
        return False
    for field in fields.values():
        if getattr(field, "metadata", None) and any(
            callable(getattr(m, "func", None)) for m in field.metadata
        ):
            return False  # Annotated[..., AfterValidator(f)] and friends
        if not _plain_annotation(field.annotation, seen, 0):
            return False
    return True


_PLAIN_LEAVES = (str, int, float, bool, bytes, type(None))


def _plain_annotation(tp: Any, seen: set, depth: int) -> bool:
    if depth > 20:
        return False
    if tp is Any or tp in _PLAIN_LEAVES:
        return True
    if sdk.File is not None and isinstance(tp, type) and issubclass(tp, sdk.File):
        return False
    if is_model_class(tp):
        return is_plain_data(tp, seen)
    if isinstance(tp, type):
        import enum

        if issubclass(tp, enum.Enum):
            return True
        if hasattr(tp, "__get_pydantic_core_schema__"):
            return False
        # datetime, Decimal, UUID, Path, ...: pydantic's own, no I/O.
        return tp.__module__ in ("datetime", "decimal", "uuid", "pathlib", "ipaddress")
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        args = typing.get_args(tp)
        if any(callable(getattr(m, "func", None)) for m in args[1:]):
            return False
        return _plain_annotation(args[0], seen, depth + 1)
    if origin is typing.Literal:
        return True
    if origin is None:
        return False
    return all(_plain_annotation(a, seen, depth + 1) for a in typing.get_args(tp) if a is not Ellipsis)


def _is_async(fn: Any) -> bool:
    """Coroutine or async generator function, looking through decorators
    that keep ``__wrapped__`` (a wrapper that returns the coroutine is fine
    to call on the event loop)."""
    candidates = [fn]
    try:
        candidates.append(inspect.unwrap(fn))
    except ValueError:
        pass
    return any(inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) for f in candidates)


def _is_async_gen(fn: Any) -> bool:
    try:
        fn = inspect.unwrap(fn)
    except ValueError:
        pass
    return inspect.isasyncgenfunction(fn)


def _owner(cls: type, name: str) -> Optional[type]:
    """The class in the MRO whose body defines ``name``."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def _hints(fn: Any, owner: Optional[type]) -> Dict[str, Any]:
    """Resolved annotations; names defined in the class body (a nested
    ``class Input(BaseModel)``) are tried when module globals are not enough."""
    try:
        return typing.get_type_hints(fn)
    except Exception:
        if owner is None:
            raise
        return typing.get_type_hints(fn, localns=dict(vars(owner)))


def _positional(fn: Any) -> List[inspect.Parameter]:
    """The positional parameters after ``self``."""
    params = list(inspect.signature(fn).parameters.values())
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p for p in params[1:] if p.kind in kinds]


_LIST_ORIGINS = (list, List, collections.abc.Sequence)


def _list_item_model(tp: Any) -> Optional[type]:
    """``M`` for ``list[M]`` / ``List[M]`` / ``Sequence[M]`` of a pydantic model, else None."""
    if typing.get_origin(tp) not in _LIST_ORIGINS:
        return None
    args = typing.get_args(tp)
    return args[0] if len(args) == 1 and is_model_class(args[0]) else None


def _return_model(ret: Any) -> Tuple[Optional[type], bool]:
    """(output model, streaming) from a return annotation, or (None, False)."""
    if is_model_class(ret):
        return ret, False
    if typing.get_origin(ret) in _STREAMING_ORIGINS:
        args = typing.get_args(ret)
        if args and is_model_class(args[0]):
            return args[0], True
    return None, False


def description(fn: Any) -> str:
    """The function's own docstring, cleaned like ``inspect.getdoc`` (common
    indentation removed, leading/trailing blank lines dropped), or "".

    Unlike ``inspect.getdoc`` it does not fall back to a docstring inherited
    from a base class method: an undocumented override is undocumented.
    """
    doc = getattr(fn, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _warn(msg: str) -> None:
    print(f"infsh worker: {msg}", file=sys.stderr, flush=True)


def discover_functions(app_class: type) -> List[FunctionInfo]:
    """Every exposed function of ``app_class`` (docs/writing-apps.md, "Functions"), sorted by name."""
    found: List[FunctionInfo] = []
    # Functions often share models (one input model for several functions);
    # each model's schema is generated once: it is most of discovery's time.
    schemas: Dict[type, Dict[str, Any]] = {}

    def schema_of(model: type) -> Dict[str, Any]:
        if model not in schemas:
            schemas[model] = model.model_json_schema()
        return schemas[model]

    for name in sorted(dir(app_class)):
        if name.startswith("_") or name in _LIFECYCLE or hasattr(BaseModel, name):
            continue
        owner = _owner(app_class, name)
        if owner is None:
            continue
        if sdk.BaseApp is not None and owner is sdk.BaseApp:
            continue  # BaseApp's own run(), inherited and not overridden
        static = vars(owner)[name]
        if isinstance(static, (staticmethod, classmethod, property, type)):
            continue
        try:
            fn = getattr(app_class, name)
        except AttributeError:
            continue
        if not callable(fn) or isinstance(fn, type):
            continue

        try:
            params = _positional(fn)
        except (TypeError, ValueError):
            continue  # no inspectable signature: not a function of ours
        if not params:
            continue
        try:
            hints = _hints(fn, owner)
        except Exception as e:
            # Skipped, not fatal: the platform would not list it either, but
            # an author wondering where a function went deserves a hint.
            _warn(f"App.{name} is not exposed: its annotations do not resolve ({type(e).__name__}: {e})")
            continue
        input_model = hints.get(params[0].name)
        batched = False
        if not is_model_class(input_model):
            # A batched function (docs/writing-apps.md, "Batching"):
            # list[Input] -> list[Output]; its schemas are one item's.
            input_model = _list_item_model(input_model)
            output_model = _list_item_model(hints.get("return"))
            if input_model is None:
                continue
            if output_model is None or _is_async_gen(fn):
                _warn(
                    f"App.{name} is not exposed: it takes a list of {input_model.__name__}, "
                    f"so it must return a list of output models (one per input), not stream"
                )
                continue
            batched, streaming = True, False
        else:
            output_model, streaming = _return_model(hints.get("return"))
            if output_model is None:
                continue
            # An `async def ... yield` annotated with a plain model still streams.
            streaming = streaming or _is_async_gen(fn)

        try:
            entry: Dict[str, Any] = {
                "description": description(fn),
                "input_schema": schema_of(input_model),
                "output_schema": schema_of(output_model),
            }
        except Exception as e:
            raise DiscoveryError(f"cannot build the schema of function {name!r}: {type(e).__name__}: {e}") from e
        meta = getattr(fn, _FUNCTION_META_ATTR, None)
        if isinstance(meta, dict):
            for key, value in meta.items():
                entry.setdefault(key, value)

        found.append(
            FunctionInfo(
                name=name,
                input_model=input_model,
                output_model=output_model,
                streaming=streaming,
                is_async=_is_async(fn),
                accepts_metadata=len(params) >= 2,
                entry=entry,
                batched=batched,
            )
        )
    return found


def _module_app_setup(*modules: Any) -> Optional[type]:
    for module in modules:
        candidate = getattr(module, "AppSetup", None)
        if is_model_class(candidate):
            return candidate
    return None


def discover_setup(app_class: type, module: Any) -> SetupInfo:
    """How to call ``setup`` (docs/writing-apps.md, "setup") and with which config model.

    Signatures: ``setup(self)``, ``setup(self, metadata)``,
    ``setup(self, config)``, ``setup(self, config, metadata)``. With one
    parameter it is the metadata when named ``metadata`` (or annotated with
    the SDK's ``Metadata``), else the config.

    The config model is the config parameter's annotation when that is a
    pydantic model, else ``AppSetup`` from inference.py (or from the module
    that defines ``App``, if different), else none. It is reported as
    ``setup_schema`` even when setup takes no config.
    """
    fn = getattr(app_class, "setup", None)
    defining_module = sys.modules.get(getattr(app_class, "__module__", ""), None)
    fallback_model = _module_app_setup(module, defining_module)
    if fn is None or not callable(fn):
        return SetupInfo(False, False, fallback_model, False)

    try:
        params = _positional(fn)
    except (TypeError, ValueError):
        params = []
    try:
        hints = _hints(fn, _owner(app_class, "setup"))
    except Exception:
        hints = {}

    config_param: Optional[inspect.Parameter] = None
    takes_metadata = False
    if len(params) == 1:
        only = params[0]
        annotated = hints.get(only.name)
        is_metadata = only.name == "metadata" or (
            isinstance(annotated, type) and issubclass(annotated, sdk.Metadata)
        )
        if is_metadata:
            takes_metadata = True
        else:
            config_param = only
    elif len(params) >= 2:
        config_param, takes_metadata = params[0], True

    config_model = fallback_model
    if config_param is not None and is_model_class(hints.get(config_param.name)):
        config_model = hints[config_param.name]
    return SetupInfo(config_param is not None, takes_metadata, config_model, _is_async(fn))
