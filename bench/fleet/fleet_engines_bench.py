"""The fleet benchmark, part two: one PostgreSQL database, API nodes that
host nothing, and 1, 2, 4 `infsh engine run` processes hosting the bench app
(bench/apps/infsh, one replica, concurrency 1 each) (stdlib only;
bench/fleet.sh --engines runs it).

For each engine count, on a fresh database:
  c1:  N sequential POST /v1/run wait=true of the trivial `run` (submit ->
       claimed by an engine -> done), p50/p99 in ms: the fleet's overhead;
  nap: 16 client threads for SECONDS, each running `nap` (0.2 s of sleep
       holding the engine's one slot): finished tasks per second, which
       rises with the slots the engines bring while the queue and the
       store keep up.
With two API nodes (`--nodes 2`) the engines link to them in turn and the
clients alternate between them. Writes a Markdown and a JSON file.
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet_bench import copy_trivial_app, free_port, pct, psql, with_database  # noqa: E402

KEY = "bench-engine-key"
RUN = json.dumps({"app": "bench/upper", "function": "run", "input": {"text": "hello world"},
                  "wait": True})
NAP_SECONDS = 0.2
NAP = json.dumps({"app": "bench/upper", "function": "nap", "input": {"seconds": NAP_SECONDS},
                  "wait": True})


class Proc:
    """A child process in its own session, stopped (SIGTERM, then SIGKILL)."""

    def __init__(self, args, tmp, name):
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.log = open(self.log_path, "wb")
        env = dict(os.environ, INFSH_CACHE_DIR=os.path.join(tmp, "cache"), NO_COLOR="1",
                   INFSH_ENGINE_KEY=KEY)
        for var in ("INFSH_STORE", "INFSH_API_KEYS", "INFSH_ENGINE_KEYS"):
            env.pop(var, None)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.log, env=env, start_new_session=True)

    def tail(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-3000:]

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read()


def wait_until(what, check, limit=120):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out: {what}")


def post(conn, body):
    t0 = time.perf_counter()
    conn.request("POST", "/v1/run", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200 or b'"status":10' not in data.replace(b" ", b""):
        raise RuntimeError(f"bad answer {resp.status}: {data[:300]!r}")
    return time.perf_counter() - t0


def one_setup(a, url, engines, tmp, procs):
    """Starts the nodes and engines into the caller's `procs` (so that the
    caller stops them even when this fails part way) and returns the nodes'
    ports once every engine is online."""
    ports = []
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty, exist_ok=True)
    for i in range(a.nodes):
        port = free_port()
        procs.append(Proc([a.bin, "serve", "--apps", empty, "--host", "127.0.0.1", "--port",
                           str(port), "--data-dir", os.path.join(tmp, f"node{i}"),
                           "--store", url, "--engine-key", KEY], tmp, f"node{i}"))
        ports.append(port)
    for port in ports:
        wait_until("API node healthy", lambda: get(port, "/health")[0] == 200)
    for i in range(engines):
        apps = os.path.join(tmp, f"engine{i}-apps")
        copy_trivial_app(apps)
        server = f"http://127.0.0.1:{ports[i % len(ports)]}"
        procs.append(Proc([a.bin, "engine", "run", "--server", server, "--name", f"e{i}",
                           "--apps", apps, "--python", a.python,
                           "--data-dir", os.path.join(tmp, f"engine{i}-data"),
                           "--replicas", "1", "--concurrency", "1"], tmp, f"engine{i}"))

    def online():
        _, body = get(ports[0], "/engines")
        states = [(e.get("remote") or {}).get("state") for e in json.loads(body)["data"]]
        return states.count("online") == engines

    wait_until(f"{engines} engines online", online)
    return ports


def measure(a, ports):
    conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=120) for p in ports]
    for i in range(20):
        post(conns[i % len(conns)], RUN)
    lat = [post(conns[i % len(conns)], RUN) for i in range(a.n)]
    clients = 16
    done = [0] * clients
    errors = []
    stop = time.perf_counter() + a.seconds

    def worker(i):
        c = http.client.HTTPConnection("127.0.0.1", ports[i % len(ports)], timeout=120)
        try:
            while time.perf_counter() < stop:
                post(c, NAP)
                done[i] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"nap errors: {errors[:3]}")
    return {
        "c1_n": a.n,
        "c1_p50_ms": round(pct(lat, 50) * 1000, 2),
        "c1_p99_ms": round(pct(lat, 99) * 1000, 2),
        "nap_tasks_per_s": round(sum(done) / elapsed, 2),
        "nap_ideal_per_s": None,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--engines", default="1,2,4")
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--out", required=True)
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    results = []
    for engines in [int(e) for e in a.engines.split(",")]:
        db = f"infsh_fleet_bench_{os.getpid()}_{engines}"
        psql(a.database_url, f"CREATE DATABASE {db}")
        tmp = tempfile.mkdtemp(prefix="infsh-fleet-engines-")
        procs = []
        try:
            ports = one_setup(a, with_database(a.database_url, db), engines, tmp, procs)
            r = measure(a, ports)
        except Exception:
            for p in procs:
                print(f"--- {p.log_path}\n{p.tail()}", file=sys.stderr)
            raise
        finally:
            for p in reversed(procs):
                p.stop()
            shutil.rmtree(tmp, ignore_errors=True)
            psql(a.database_url, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        r.update(engines=engines, nodes=a.nodes, nap_ideal_per_s=round(engines / NAP_SECONDS, 1))
        print(json.dumps(r), flush=True)
        results.append(r)

    today = datetime.date.today().isoformat()
    lines = [
        f"# Fleet benchmark, part 2: engines on one PostgreSQL database ({today})",
        "",
        f"bench/fleet.sh --engines. {a.nodes} API node(s) hosting nothing "
        "(`--store postgres://...`, `--engine-key`), engines (`infsh engine run`, bench/apps/infsh, "
        "`--replicas 1 --concurrency 1`) linked to them in turn, clients on loopback alternating "
        "between nodes. c1: "
        f"{a.n} sequential `run` (trivial) with wait=true; nap: 16 client threads for "
        f"{a.seconds:g} s of `nap` ({NAP_SECONDS} s sleep holding the engine's one slot); "
        "ideal = engines / 0.2 s.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (load average before: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}), "
        f"{platform.system()} {platform.release()}. infsh binary: `{a.bin}`.",
    ]
    if a.note:
        lines += ["", a.note]
    lines += ["", "| engines | nodes | c1 p50 ms | c1 p99 ms | nap tasks/s | ideal |",
              "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['engines']} | {r['nodes']} | {r['c1_p50_ms']} | {r['c1_p99_ms']} | "
                     f"{r['nap_tasks_per_s']} | {r['nap_ideal_per_s']} |")
    lines.append("")
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines))
    with open(a.out + ".json", "w") as f:
        json.dump({"date": today, "bin": a.bin, "results": results}, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
