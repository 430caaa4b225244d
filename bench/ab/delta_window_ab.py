"""The delta window side by side (docs/performance.md, "Token streams"):
one release build started in turn with each `--stream-delta-window-ms`
value (interleaved, ROUNDS times), serving the tokens benchmark's app
(bench/apps/tokens/infsh); per start one warm-up wave, then WAVES waves of
STREAMS concurrent streams of 1,000 tokens as the official client reads them
(bench/tokens.py's client, deltas). Prints one JSON line per wave: tokens/s
and where the bytes per token went (delta lines: text and envelope;
snapshots, by status; chunk framing, headers and the POST). Stdlib only;
loopback only.

    python3 bench/ab/delta_window_ab.py ROUNDS WAVES STREAMS BIN 10 40

$INFSH_BENCH_PYTHON: the workers' interpreter (with the inferencesh SDK).
"""
import asyncio, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import tokens as T  # noqa: E402 - bench/tokens.py: its client and app

PY = os.environ.get("INFSH_BENCH_PYTHON", sys.executable)
N = 1000


async def wave(port, streams):
    stream = T.infsh_stream(True)
    t0 = time.perf_counter()
    replies = await asyncio.gather(*[stream(port, N) for _ in range(streams)])
    wall = time.perf_counter() - t0
    a = dict(wire=0, body=0, delta_lines=0, delta_bytes=0, delta_text=0, snapshot_bytes=0)
    statuses = {}
    for _, r in replies:
        if not T.complete(r, N):
            raise RuntimeError(f"incomplete stream: {bytes(r.body[-300:])!r}")
        a["wire"] += r.wire
        a["body"] += len(r.body)
        for line in bytes(r.body).split(b"\n"):
            if not line:
                continue
            d = json.loads(line)
            if d.get("event") == "delta":
                a["delta_lines"] += 1
                a["delta_bytes"] += len(line) + 1
                a["delta_text"] += len(d["data"]["delta"].get("response", ""))
            elif "status" in d:
                a["snapshot_bytes"] += len(line) + 1
                statuses[d["status"]] = statuses.get(d["status"], 0) + 1
    tok = streams * N
    per = lambda k: round(a[k] / tok, 2)
    return dict(tokens_per_s=round(tok / wall), bytes_per_token=per("wire"),
                delta_lines_per_token=per("delta_bytes"), delta_text_per_token=per("delta_text"),
                snapshots_per_token=per("snapshot_bytes"),
                framing_headers_post_per_token=round((a["wire"] - a["body"]) / tok, 2),
                tokens_per_delta_line=round(a["delta_text"] / len(T.token(0)) / max(a["delta_lines"], 1), 1),
                snapshots_per_stream={k: round(v / streams, 2) for k, v in sorted(statuses.items())})


def serve(binary, window, tmp):
    apps = os.path.join(tmp, "apps")
    shutil.copytree(os.path.join(T.APPS, "infsh"), apps)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "serve", "--apps", apps, "--host", "127.0.0.1", "--port", str(port), "--python", PY,
         "--data-dir", os.path.join(tmp, "data"), "--concurrency", "64", "--stream-delta-window-ms", window],
        env={**os.environ, "INFSH_CACHE_DIR": os.path.join(tmp, "cache")},
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "serve.log"), "w"))
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"infsh serve did not start: {open(os.path.join(tmp, 'serve.log')).read()[-500:]}")
            time.sleep(0.1)


def main():
    rounds, waves, streams, binary, *windows = sys.argv[1:]
    for rnd in range(1, int(rounds) + 1):
        for w in windows:
            with tempfile.TemporaryDirectory() as tmp:
                proc, port = serve(binary, w, tmp)
                try:
                    asyncio.run(wave(port, int(streams)))  # warm-up
                    for _ in range(int(waves)):
                        print(json.dumps(dict(window_ms=int(w), round=rnd, **asyncio.run(wave(port, int(streams))))),
                              flush=True)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)


if __name__ == "__main__":
    main()
