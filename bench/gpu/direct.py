"""The model called directly, in one Python process, no infsh: the floor of
what serving can add to a call. Used by bench/gpu/gpu_bench.py.

    python direct.py APP_DIR FUNCTION N WARMUP

Imports the app (as a package, as the infsh worker does), runs setup with
the default config, prints {"setup_done": ...} and waits for a line on stdin
(the parent samples GPU memory meanwhile), then calls FUNCTION N times after
WARMUP calls, each call being what the worker does around the app's code:
input dict -> pydantic model, the call, output -> model_dump(). Prints one
JSON line of timings.
"""
import asyncio
import inspect
import json
import os
import sys
import time
import typing

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from pyapp import load  # noqa: E402

INPUTS = {
    "embed": {"text": "the quick brown fox jumps over the lazy dog"},
    "classify": {"text": "what a lovely day", "labels": ["weather", "sports", "cooking"]},
    "score": {"text": "the quick brown fox jumps over the lazy dog"},
}


def pct(xs, p):
    xs = sorted(xs)
    k = max(1, min(len(xs), -(-p * len(xs) // 100)))
    return round(xs[int(k) - 1], 4)


async def main():
    app_dir, fn_name, n, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    t = time.perf_counter()
    module = load(app_dir)
    import_s = time.perf_counter() - t
    app = module.App()
    t = time.perf_counter()
    await app.setup(module.AppSetup())
    setup_s = time.perf_counter() - t
    model = getattr(app, "model", None)
    info = dict(model.describe(), build_s=round(model.build_seconds, 3)) if hasattr(model, "describe") else None
    print(json.dumps({"setup_done": True, "import_s": import_s, "setup_s": setup_s, "model": info}), flush=True)
    sys.stdin.readline()
    fn = getattr(app, fn_name)
    hints = typing.get_type_hints(fn)
    model = hints[list(inspect.signature(fn).parameters)[0]]
    raw = INPUTS[fn_name]
    lat = []
    for i in range(warmup + n):
        t = time.perf_counter()
        out = fn(model.model_validate(raw))
        if inspect.isawaitable(out):
            out = await out
        out.model_dump(mode="json")
        dt = (time.perf_counter() - t) * 1000
        if i >= warmup:
            lat.append(dt)
    print(json.dumps({"function": fn_name, "n": n, "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90),
                      "p99_ms": pct(lat, 99), "mean_ms": round(sum(lat) / len(lat), 4),
                      "import_s": round(import_s, 3), "setup_s": round(setup_s, 3)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
