"""In-process measurements of an infsh app, with the interpreter infsh uses.

    python pyapp.py coldbase APP_DIR
        Imports the app (as a package, as the infsh worker does), builds App()
        and runs setup; prints one JSON line {"import_s", "setup_s"} as soon
        as setup returns. The caller times launch -> that line: the floor of
        any cold start (interpreter start + app import + setup).

    python pyapp.py workerphases APP_DIR        (PYTHONPATH=<repo>/python)
        What the infsh worker does before it can answer `ready`, timed step
        by step in this process: import its loader, import the app, import
        and run discovery (every function's JSON schemas), import the runtime.

    python pyapp.py inproc APP_DIR FUNCTION N WARMUP
        After setup, calls FUNCTION N times in this process, each call being
        what the worker does around the app's own code: validate the input
        dict into the function's pydantic model, call (await it if async),
        model_dump() the output. Prints {"p50_ms", "p99_ms", "mean_ms"}.
"""
import asyncio
import importlib.util
import inspect
import json
import os
import sys
import time
import types
import typing

T0 = time.perf_counter()
PACKAGE = "bench_app"


def load(app_dir):
    app_dir = os.path.abspath(app_dir)
    sys.path.insert(0, app_dir)
    init = os.path.join(app_dir, "__init__.py")
    if os.path.exists(init):
        spec = importlib.util.spec_from_file_location(PACKAGE, init, submodule_search_locations=[app_dir])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = pkg
        spec.loader.exec_module(pkg)
    else:
        pkg = types.ModuleType(PACKAGE)
        pkg.__path__ = [app_dir]
        sys.modules[PACKAGE] = pkg
    return importlib.import_module(PACKAGE + ".inference")


async def maybe_await(x):
    return await x if inspect.isawaitable(x) else x


async def setup(app):
    fn = app.setup
    params = [p for p in inspect.signature(fn).parameters.values()]
    args = []
    if params:
        # setup(self, config) / (self, metadata) / (self, config, metadata):
        # the benchmark's apps take no config; pass empty objects.
        args = [None] * len(params)
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args))


def pct(xs, p):
    xs = sorted(xs)
    k = max(1, min(len(xs), int(-(-p * len(xs) // 100))))
    return xs[k - 1]


def workerphases(app_dir):
    t = [time.perf_counter()]
    from infsh_worker.loader import load as worker_load
    t.append(time.perf_counter())
    loaded = worker_load(os.path.abspath(app_dir))
    t.append(time.perf_counter())
    from infsh_worker.discovery import discover_functions, discover_setup
    t.append(time.perf_counter())
    discover_functions(loaded.app_class)
    _ = discover_setup(loaded.app_class, loaded.module).schema
    t.append(time.perf_counter())
    import infsh_worker.runtime  # noqa: F401
    t.append(time.perf_counter())
    names = ["worker_loader_import", "app_import", "discovery_import", "discovery", "runtime_import"]
    out = {n + "_ms": round((b - a) * 1000, 1) for n, a, b in zip(names, t, t[1:])}
    out["interpreter_to_ready_ms"] = round((t[-1] - T0) * 1000, 1)
    print(json.dumps(out))


async def main():
    mode, app_dir = sys.argv[1], sys.argv[2]
    if mode == "workerphases":
        return workerphases(app_dir)
    t = time.perf_counter()
    module = load(app_dir)
    app = module.App()
    import_s = time.perf_counter() - t
    t = time.perf_counter()
    await setup(app)
    setup_s = time.perf_counter() - t
    if mode == "coldbase":
        print(json.dumps({"import_s": import_s, "setup_s": setup_s, "since_interpreter_s": time.perf_counter() - T0}), flush=True)
        return
    fn_name, n, warmup = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    fn = getattr(app, fn_name)
    hints = typing.get_type_hints(fn)
    params = [p for p in inspect.signature(fn).parameters]
    model = hints[params[0]]
    is_async = inspect.iscoroutinefunction(fn)
    raw = {"text": "hello world"}
    lat = []
    for i in range(warmup + n):
        t = time.perf_counter_ns()
        inp = model.model_validate(raw)
        out = await fn(inp) if is_async else fn(inp)
        d = out.model_dump(mode="json")
        dt = time.perf_counter_ns() - t
        if i >= warmup:
            lat.append(dt / 1e6)
        assert d["text"] == "HELLO WORLD", d
    print(json.dumps({"function": fn_name, "n": n, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "mean_ms": sum(lat) / len(lat)}))


if __name__ == "__main__":
    asyncio.run(main())
