"""JavaScript app vs Python app on one `infsh serve` (issue 20; bench/README.md).

Short on purpose (the figures are relative: the same binary, machine and
load generator for both apps). Measures, for bench/apps/node/upper (Node
worker) beside bench/apps/infsh/upper (Python worker):

- cold start: a fresh `infsh serve`, then the first `POST /v1/run` of the
  app (worker start, import, setup, the call), best and median of N;
- c1 / c32: requests per second and p50/p99 latency of `run`, sequential
  and with 32 concurrent clients (keep-alive, one connection per client);
- memory: PSS of the app's processes (workers, the Python zygote) after
  the load;
- the Node worker's start-up phases, outside infsh: `node` itself, a
  cold worker (`node main.mjs` to `ready`), and a warm spare (a node that
  already loaded the runtime, told to import the app) — what keeping a
  spare process would save, since a Node process cannot be forked.

Usage: INFSH_BIN=target/debug/infsh python3 bench/node.py [--python PY] [--out bench/results/NAME]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APPS = {"python": REPO / "bench/apps/infsh/upper", "node": REPO / "bench/apps/node/upper"}
IDS = {"python": "bench/upper", "node": "bench/upper-js"}
TEXT = "hello benchmark"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, args, cache):
        self.tmp = Path(tempfile.mkdtemp(prefix="infsh-node-bench-"))
        apps = self.tmp / "apps"
        for name, src in APPS.items():
            shutil.copytree(src, apps / name)
        self.apps = apps
        self.port = free_port()
        env = dict(os.environ, INFSH_CACHE_DIR=str(cache), NO_COLOR="1")
        self.proc = subprocess.Popen(
            [args.infsh, "serve", "--apps", str(apps), "--host", "127.0.0.1", "--port", str(self.port),
             "--python", args.python, "--data-dir", str(self.tmp / "data"), "--durability", "relaxed"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.tmp / "log", "wb"),
            env=env, start_new_session=True)
        deadline = time.time() + 60
        while True:
            try:
                if get(self.port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"infsh serve did not start:\n{(self.tmp / 'log').read_text()[-3000:]}")
            time.sleep(0.005)

    def pss(self, which):
        """Total PSS (MiB) and count of the processes whose cwd is the app's folder."""
        folder = str((self.apps / which).resolve())
        total, n = 0.0, 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "cwd") != folder:
                    continue
                for line in (entry / "smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) / 1024
                        n += 1
            except OSError:
                pass
        return round(total, 1), n

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read()


def run_body(which, fn="run"):
    return json.dumps({"app": IDS[which], "function": fn, "input": {"text": TEXT}, "wait": True})


def call(conn, body):
    t = time.perf_counter()
    conn.request("POST", "/v1/run", body=body, headers={"content-type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    dt = time.perf_counter() - t
    doc = json.loads(data)
    out = doc.get("output") or doc.get("data", {}).get("output")
    assert r.status == 200 and out and out.get("text") == TEXT.upper(), (r.status, data[:300])
    return dt


def load(port, which, clients, per_client):
    lat = []
    lock = threading.Lock()
    body = run_body(which)

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = [call(conn, body) for _ in range(per_client)]
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    lat.sort()
    return {"rps": round(len(lat) / wall, 1), "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2), "requests": len(lat)}


def node_phases(runs):
    """Node worker start-up outside infsh (needs the node env built by infsh)."""
    worker = REPO / "node/infsh-worker/main.mjs"
    app = APPS["node"]
    envs = sorted(Path(os.environ["INFSH_NODE_BENCH_ENVS"]).glob("node-*/node_modules"))
    env = dict(os.environ, INFSH_APP_DIR=str(app), INFSH_NODE_MODULES=str(envs[-1]))
    boot, cold, spare = [], [], []
    spare_js = (
        "import { register } from 'node:module'; import { pathToFileURL } from 'node:url';"
        "import path from 'node:path';"
        f"const w = {json.dumps(str(worker.parent))};"
        "const fb = [pathToFileURL(path.join(process.env.INFSH_APP_DIR, 'package.json')).href,"
        " pathToFileURL(path.join(path.dirname(process.env.INFSH_NODE_MODULES), 'package.json')).href];"
        "register(pathToFileURL(w + '/resolve-hook.mjs').href, { data: { fallbacks: fb } });"
        "const d = await import(pathToFileURL(w + '/discovery.mjs').href);"
        "await import(pathToFileURL(w + '/runtime.mjs').href); await import(pathToFileURL(w + '/protocol.mjs').href);"
        "process.stdout.write('up\\n');"
        "process.stdin.once('data', async () => { const t = performance.now();"
        " const mod = await import(pathToFileURL(path.join(process.env.INFSH_APP_DIR, 'inference.js')).href);"
        " const fns = await d.discoverFunctions(mod, mod.App, async () => null); new mod.App();"
        " process.stdout.write(JSON.stringify({ms: performance.now() - t, n: fns.length}) + '\\n'); process.exit(0); });"
    )
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(["node", "-e", ""], check=True)
        boot.append((time.perf_counter() - t) * 1000)
        # Cold: a real worker to `ready` on fd 3 (the same harness shape as the host's).
        a, b = socket.socketpair()
        os.dup2(b.fileno(), 100, inheritable=True)
        t = time.perf_counter()
        p = subprocess.Popen(["bash", "-c", f"exec 3<&100 100<&-; exec node {worker}"], cwd=app,
                             env=dict(env, INFSH_PROTOCOL_FD="3", INFSH_SPILL_DIR=tempfile.gettempdir()),
                             pass_fds=(100,))
        os.close(100)
        b.close()
        header = a.recv(4)
        n = int.from_bytes(header, "big")
        body = b""
        while len(body) < n:
            body += a.recv(n - len(body))
        cold.append((time.perf_counter() - t) * 1000)
        assert json.loads(body)["type"] == "ready"
        a.close()
        p.wait()
        # Warm spare: runtime loaded, then the app imported on demand.
        p = subprocess.Popen(["node", "--input-type=module", "-e", spare_js], cwd=app, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert p.stdout.readline().strip() == b"up"
        p.stdin.write(b"go\n")
        p.stdin.flush()
        spare.append(json.loads(p.stdout.readline())["ms"])
        p.wait()
    med = lambda xs: round(statistics.median(xs), 1)  # noqa: E731
    return {"node_boot_ms": med(boot), "cold_worker_ready_ms": med(cold), "warm_spare_ready_ms": med(spare)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--infsh", default=os.environ.get("INFSH_BIN", str(REPO / "target/debug/infsh")))
    ap.add_argument("--python", default=os.environ.get("INFSH_TEST_PYTHON", sys.executable))
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument("--c1", type=int, default=200)
    ap.add_argument("--c32-per-client", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="infsh-node-bench-cache-"))
    os.environ["INFSH_NODE_BENCH_ENVS"] = str(cache / "envs")
    results = {"machine": {"loadavg_before": os.getloadavg(), "cpus": os.cpu_count(),
                           "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
                           "infsh": args.infsh}}
    # Build the Node environment once (npm ci), outside the timings.
    s = Server(args, cache)
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=300)
    call(c, run_body("node"))
    s.stop()

    cold = {"python": [], "node": []}
    for _ in range(args.cold_runs):
        for which in ("python", "node"):
            s = Server(args, cache)
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=300)
            cold[which].append(call(c, run_body(which)) * 1000)
            s.stop()
    results["cold_start_ms"] = {k: {"best": round(min(v), 1), "median": round(statistics.median(v), 1)}
                                for k, v in cold.items()}

    s = Server(args, cache)
    try:
        for which in ("python", "node"):
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
            for _ in range(20):
                call(c, run_body(which))
        for which in ("python", "node"):
            results.setdefault("c1", {})[which] = load(s.port, which, 1, args.c1)
            results.setdefault("c32", {})[which] = load(s.port, which, 32, args.c32_per_client)
            results.setdefault("pss_mib", {})[which] = s.pss(which)
    finally:
        s.stop()
    results["node_start_phases"] = node_phases(args.cold_runs)
    results["machine"]["loadavg_after"] = os.getloadavg()
    shutil.rmtree(cache, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out + ".json").write_text(text + "\n")


if __name__ == "__main__":
    main()
