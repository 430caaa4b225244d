"""The direct baseline of the image benchmark (bench/image.py): the app's
own work, bench/apps/image/flip.py's `flip_png` (Pillow decode, flip, PNG
encode), on the input's bytes in one Python process, bytes in and bytes
out: no server, no file, no copy. What no system can go below. Prints
{"p50_ms", "p99_ms", "mean_ms", "bytes"}.

    python image_direct.py N WARMUP < input.png
"""
import io
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "apps", "image"))
from flip import flip_png  # noqa: E402


def main():
    n, warmup = int(sys.argv[1]), int(sys.argv[2])
    png = sys.stdin.buffer.read()
    times = []
    out = b""
    for i in range(n + warmup):
        t = time.perf_counter()
        dst = io.BytesIO()
        flip_png(io.BytesIO(png), dst)
        out = dst.getvalue()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(json.dumps({"p50_ms": round(statistics.median(times), 3),
                      "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
                      "mean_ms": round(statistics.fmean(times), 3), "bytes": len(out)}))


main()
