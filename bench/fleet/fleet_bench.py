"""The fleet benchmark, part one: one API node on SQLite vs one on PostgreSQL
(stdlib only; bench/fleet.sh runs it).

For each store: `infsh serve` over bench/apps/infsh (the trivial `upper`
app, `run`, --concurrency 64), a warm-up, then
  c1: N sequential POST /v1/run wait=true (submit -> done, one round trip),
      p50/p99 in ms;
  c8: 8 client threads, each on its own keep-alive connection, for
      SECONDS: finished tasks per second.
The PostgreSQL node gets a database of its own (created and dropped with
psql on BENCH_DATABASE_URL). Writes a Markdown and a JSON file.
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Only the trivial app: the embed app beside it needs a model folder
# (bench/embed.py makes one), and an engine that cannot load every app it
# is given does not start.
APPS = os.path.join(ROOT, "bench", "apps", "infsh")
TRIVIAL_APP = "upper"


def copy_trivial_app(dest):
    """Makes `dest` an apps folder holding only the trivial app."""
    shutil.copytree(os.path.join(APPS, TRIVIAL_APP), os.path.join(dest, TRIVIAL_APP))
BODY = json.dumps({"app": "bench/upper", "function": "run", "input": {"text": "hello world"},
                   "wait": True})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, q):
    xs = sorted(xs)
    k = max(1, min(len(xs), -(-q * len(xs) // 100)))
    return xs[k - 1]


def with_database(url, name):
    scheme, rest = url.split("://", 1)
    authority = rest.split("?", 1)[0].split("/", 1)[0]
    return f"{scheme}://{authority}/{name}"


def psql(url, sql):
    subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


class Node:
    """`infsh serve` on a free port, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, binary, python, store_flags):
        self.tmp = tempfile.mkdtemp(prefix="infsh-fleet-")
        apps = os.path.join(self.tmp, "apps")
        copy_trivial_app(apps)
        self.port = free_port()
        self.log = open(os.path.join(self.tmp, "server.log"), "wb")
        env = dict(os.environ, INFSH_CACHE_DIR=os.path.join(self.tmp, "cache"), NO_COLOR="1")
        env.pop("INFSH_STORE", None)
        self.proc = subprocess.Popen(
            [binary, "serve", "--apps", apps, "--host", "127.0.0.1", "--port", str(self.port),
             "--python", python, "--data-dir", os.path.join(self.tmp, "data"),
             "--concurrency", "64", *store_flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log, env=env,
            start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"infsh serve exited: {self.tail()}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"infsh serve never healthy: {self.tail()}")

    def tail(self):
        with open(os.path.join(self.tmp, "server.log"), errors="replace") as f:
            return f.read()[-3000:]

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_once(conn):
    t0 = time.perf_counter()
    conn.request("POST", "/v1/run", body=BODY, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    dt = time.perf_counter() - t0
    if resp.status != 200 or b"HELLO WORLD" not in body:
        raise RuntimeError(f"bad answer {resp.status}: {body[:300]!r}")
    return dt


def measure(node, n_c1, seconds):
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=60)
    for _ in range(30):
        run_once(conn)
    lat = [run_once(conn) for _ in range(n_c1)]
    done = [0] * 8
    stop = time.perf_counter() + seconds
    errors = []

    def worker(i):
        c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=60)
        try:
            while time.perf_counter() < stop:
                run_once(c)
                done[i] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"c8 errors: {errors[:3]}")
    return {
        "c1_n": n_c1,
        "c1_p50_ms": round(pct(lat, 50) * 1000, 2),
        "c1_p99_ms": round(pct(lat, 99) * 1000, 2),
        "c1_mean_ms": round(sum(lat) / len(lat) * 1000, 2),
        "c8_tasks_per_s": round(sum(done) / elapsed, 1),
        "c8_tasks": sum(done),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", required=True)
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    results = []
    for rnd in range(1, a.rounds + 1):
        for store in ("sqlite", "postgres"):
            db = None
            flags = []
            if store == "postgres":
                db = f"infsh_bench_{os.getpid()}_{rnd}"
                psql(a.database_url, f"CREATE DATABASE {db}")
                flags = ["--store", with_database(a.database_url, db)]
            node = Node(a.bin, a.python, flags)
            try:
                r = measure(node, a.n, a.seconds)
            finally:
                node.stop()
                if db:
                    psql(a.database_url, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            r.update(store=store, round=rnd)
            print(json.dumps(r), flush=True)
            results.append(r)

    def best(store, key, fn):
        return fn(r[key] for r in results if r["store"] == store)

    pg_version = subprocess.run(["psql", a.database_url, "-Atc", "SHOW server_version"],
                                capture_output=True, text=True).stdout.strip()
    sc = subprocess.run(["psql", a.database_url, "-Atc", "SHOW synchronous_commit"],
                        capture_output=True, text=True).stdout.strip()
    fsync = subprocess.run(["psql", a.database_url, "-Atc", "SHOW fsync"],
                           capture_output=True, text=True).stdout.strip()
    today = datetime.date.today().isoformat()
    lines = [
        f"# Fleet benchmark, part 1: one API node, SQLite vs PostgreSQL ({today})",
        "",
        "bench/fleet.sh. The trivial app (bench/apps/infsh, `run`, `--concurrency 64`), "
        "POST /v1/run with wait=true from a stdlib Python client on loopback.",
        f"c1: {a.n} sequential runs after 30 warm-up ones; c8: 8 client threads for {a.seconds:g} s. "
        f"{a.rounds} rounds, stores alternating; each line below is one round.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other work), "
        f"{platform.system()} {platform.release()}. infsh binary: `{a.bin}`. "
        f"PostgreSQL {pg_version} on loopback (fsync={fsync}, synchronous_commit={sc}). "
        "SQLite with the default `--durability full`.",
    ]
    if a.note:
        lines += ["", a.note]
    lines += ["", "| round | store | c1 p50 ms | c1 p99 ms | c1 mean ms | c8 tasks/s |",
              "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['round']} | {r['store']} | {r['c1_p50_ms']} | {r['c1_p99_ms']} | "
                     f"{r['c1_mean_ms']} | {r['c8_tasks_per_s']} |")
    s50 = best("sqlite", "c1_p50_ms", min)
    p50 = best("postgres", "c1_p50_ms", min)
    ratio = p50 / s50
    lines += ["", f"Best c1 p50: SQLite {s50} ms, PostgreSQL {p50} ms: PostgreSQL / SQLite = "
              f"{ratio:.2f} (target: at most 1.5). Best c8: SQLite "
              f"{best('sqlite', 'c8_tasks_per_s', max)} tasks/s, PostgreSQL "
              f"{best('postgres', 'c8_tasks_per_s', max)} tasks/s.", ""]
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines))
    with open(a.out + ".json", "w") as f:
        json.dump({"date": today, "bin": a.bin, "postgres": pg_version, "fsync": fsync,
                   "synchronous_commit": sc, "results": results, "c1_p50_ratio": round(ratio, 3)},
                  f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
