"""The direct baseline of the embed benchmark (bench/embed.py): the same
function in one Python process, with what any server must do around it:
validate the input dict into the app's model, call the model, build the
output model and serialize it to JSON bytes. Prints
{"p50_ms", "p99_ms", "mean_ms", "first", "bytes"}.

    python embed_direct.py N WARMUP        (EMBED_MODEL_DIR set; the texts on stdin as JSON)
"""
import json
import os
import statistics
import sys
import time

from pydantic import BaseModel

sys.path.insert(0, os.environ["EMBED_MODEL_DIR"])
from embed_model import TableModel  # noqa: E402


class TextsInput(BaseModel):
    texts: list[str]


class VectorsOutput(BaseModel):
    vectors: list[list[float]]


def main():
    n, warmup = int(sys.argv[1]), int(sys.argv[2])
    raw = {"texts": json.load(sys.stdin)}
    model = TableModel()
    times = []
    body = b""
    for i in range(n + warmup):
        t = time.perf_counter()
        texts = TextsInput.model_validate(raw).texts
        body = VectorsOutput(vectors=model.encode(texts).tolist()).model_dump_json().encode()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    first = json.loads(body)["vectors"][0][0]
    print(json.dumps({"p50_ms": round(statistics.median(times), 3),
                      "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
                      "mean_ms": round(statistics.fmean(times), 3), "first": first, "bytes": len(body)}))


main()
