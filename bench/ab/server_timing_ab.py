"""Two (or more) infsh builds side by side on the embed-shaped call, for a
before/after of a change (docs/performance.md, "The output as the worker
wrote it"): each build is started in turn (interleaved, ROUNDS times, under
each durability in $DURS, default full,relaxed) with `--server-timing`,
serves N sequential `wait` runs after WARMUP, and prints one JSON line of
the medians of its Server-Timing stages and of the client's latency.
The app (apps/embedpy) needs no numpy: 32 texts in, 32 x 1024 float32
values out (~700 KB of JSON). Stdlib only; loopback only.

    python3 bench/ab/server_timing_ab.py ROUNDS N WARMUP before=/path/infsh after=target/release/infsh

$INFSH_BENCH_PYTHON: the workers' interpreter (with the inferencesh SDK).
"""
import http.client, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi "
         "rho sigma tau upsilon phi chi psi omega").split()
TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) for i in range(32)]
PY = os.environ.get("INFSH_BENCH_PYTHON", sys.executable)
HERE = os.path.dirname(os.path.abspath(__file__))

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def run(binary, durability, n, warmup):
    tmp = tempfile.mkdtemp(prefix="rawout-m-")
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--apps", os.path.join(HERE, "apps"), "--host", "127.0.0.1",
                             "--port", str(port), "--python", PY, "--data-dir", os.path.join(tmp, "data"),
                             "--durability", durability, "--server-timing"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "log"), "w"),
                            env={**os.environ, "INFSH_CACHE_DIR": os.path.join(tmp, "cache")})
    try:
        body = json.dumps({"app": "bench/embedpy", "function": "embed", "input": {"texts": TEXTS}, "wait": True})
        deadline = time.time() + 120
        conn = None
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("POST", "/v1/run", body, {"Content-Type": "application/json"})
                r = conn.getresponse(); data = r.read()
                if r.status == 200 and b'"vectors":[[' in data:
                    break
                raise RuntimeError(f"{r.status} {data[:300]}")
            except (ConnectionRefusedError, OSError):
                if time.time() > deadline: raise
                time.sleep(0.2)
        stages = {}; clients = []; size = len(data)
        for i in range(n + warmup):
            t = time.perf_counter()
            conn.request("POST", "/v1/run", body, {"Content-Type": "application/json"})
            r = conn.getresponse(); data = r.read()
            dt = (time.perf_counter() - t) * 1000
            assert r.status == 200 and b'"vectors":[[' in data, data[:300]
            if i < warmup: continue
            clients.append(dt)
            for part in (r.getheader("Server-Timing") or "").split(","):
                name, _, dur = part.strip().partition(";dur=")
                if dur: stages.setdefault(name, []).append(float(dur))
        out = {k: round(statistics.median(v), 2) for k, v in stages.items()}
        out["client"] = round(statistics.median(clients), 2)
        out["bytes"] = size
        return out
    finally:
        proc.terminate()
        try: proc.wait(15)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)

def main():
    rounds, n, warmup = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    bins = [a.split("=", 1) for a in sys.argv[4:]]
    durs = os.environ.get("DURS", "full,relaxed").split(",")
    for rnd in range(rounds):
        for d in durs:
            for label, b in bins:
                res = run(b, d, n, warmup)
                print(json.dumps({"round": rnd + 1, "durability": d, "build": label, **res}), flush=True)

main()
