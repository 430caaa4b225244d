#!/usr/bin/env python3
"""The benchmark driver (stdlib only). bench/run.sh installs what it needs and
calls it; see docs/performance.md for what each figure means.

    python3 bench/bench.py [--quick] [--rounds N] [--systems floor,infsh,cog,litserve,bentoml]
                           [--no-extras] [--out DIR]

For every system and config, in turn (all of them, then all again, --rounds
times): launch the server on a free loopback port, time launch -> first
correct reply (cold start), measure idle PSS of the whole process tree, run
the load generator at concurrency 1 (sequential) and 32 (fixed duration),
measure PSS again, stop the tree. Then the infsh-only figures (extras).
Writes <out>/<date>.json and <out>/<date>.md.

Every process started here is in its own session; all of them (and every
descendant seen) are stopped on exit, on error and on SIGINT/SIGTERM/SIGHUP.
Their process group ids are also listed in bench/.work/pids for run.sh's trap.
"""
import argparse
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
WORK = os.environ.get("BENCH_WORK", os.path.join(BENCH, ".work"))
TOOLS = os.path.join(WORK, "target", "release")
LOADGEN = os.path.join(TOOLS, "loadgen")
FLOOR = os.path.join(TOOLS, "floor")
IPC = os.path.join(TOOLS, "infsh-bench-ipc")
VENVS = os.path.join(WORK, "venvs")
PIDS = os.path.join(WORK, "pids")
APPS = os.path.join(BENCH, "apps")

TEXT = "hello world"
EXPECT = "HELLO WORLD"
INFSH_EXPECT = '"text":"HELLO WORLD"'


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


class Tree:
    """A server process started in its own session, stopped with every
    descendant it has (or had when last looked at)."""

    live = []

    def __init__(self, name, cmd, env=None, cwd=None, logfile=None):
        self.name = name
        self.logfile = logfile or os.path.join(WORK, "logs", f"{name}.log")
        os.makedirs(os.path.dirname(self.logfile), exist_ok=True)
        self.out = open(self.logfile, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, env=full_env, cwd=cwd, stdout=self.out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.pid = self.proc.pid
        self.seen = {self.pid}
        Tree.live.append(self)
        self._record()

    def _record(self):
        with open(PIDS, "a") as f:
            f.write(" ".join(str(p) for p in sorted(self.seen)) + "\n")

    def descendants(self):
        kids = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            if p != self.pid and p not in out:
                out.append(p)
            todo.extend(kids.get(p, []))
        self.seen.update(out)
        return out

    def pids(self):
        return [self.pid] + self.descendants()

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=25):
        try:
            with open(self.logfile, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self, grace=10.0):
        """SIGTERM to the tree (and its session), SIGKILL what is left after
        `grace` seconds. Returns the seconds it took."""
        t = time.perf_counter()
        self.descendants()
        self._record()
        targets = sorted(self.seen)
        for p in targets:
            _signal(p, signal.SIGTERM)
        _killpg(self.pid, signal.SIGTERM)
        deadline = time.time() + grace
        while time.time() < deadline:
            if self.proc.poll() is not None and not any(_exists(p) for p in targets if p != self.pid):
                break
            time.sleep(0.02)
        for p in sorted(self.seen | set(self.descendants())):
            _signal(p, signal.SIGKILL)
        _killpg(self.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.out.close()
        if self in Tree.live:
            Tree.live.remove(self)
        return time.perf_counter() - t


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exists(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return ") Z " not in f.read()
    except OSError:
        return False


def stop_all():
    for t in list(Tree.live):
        try:
            t.stop(grace=3)
        except Exception as e:  # noqa: BLE001 - best effort on the way out
            log(f"stopping {t.name}: {e}")


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pss_by_process(pids):
    """[(pid, comm, PSS MiB)] from /proc/<pid>/smaps_rollup."""
    out = []
    for p in pids:
        try:
            with open(f"/proc/{p}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        out.append((p, comm, round(int(line.split()[1]) / 1024, 1)))
                        break
        except OSError:
            pass
    return out


def pss_mib(pids):
    """(total PSS MiB, number of processes) over `pids`."""
    procs = pss_by_process(pids)
    return round(sum(x[2] for x in procs), 1), len(procs)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- HTTP


def call_once(port, method, path, body=None, timeout=120, headers=None):
    """One request on a fresh connection: (status, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def first_correct(tree, port, req, expect, timeout=180):
    """Polls until a correct reply; seconds since the process was launched."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if not tree.alive():
            raise RuntimeError(f"{tree.name} exited ({tree.proc.returncode}) before answering:\n{tree.tail()}")
        try:
            status, body = call_once(port, req["method"], req["path"], req.get("body"), timeout=timeout)
            if 200 <= status < 300 and expect.encode() in body:
                return time.perf_counter() - tree.t0
            last = f"HTTP {status}: {body[:200]!r}"
        except (OSError, http.client.HTTPException) as e:
            last = repr(e)
        time.sleep(0.005)
    raise RuntimeError(f"{tree.name}: no correct reply within {timeout}s (last: {last})\n{tree.tail()}")


def loadgen(port, req, expect, mode, p, extra=()):
    cmd = [LOADGEN, "--url", f"http://127.0.0.1:{port}{req['path']}", "--method", req["method"],
           "--expect", expect, "--mode", mode, "--threads", str(p.client_threads)]
    if req.get("body") is not None:
        cmd += ["--body", json.dumps(req["body"], separators=(",", ":"))]
    if mode == "seq":
        cmd += ["--n", str(p.n), "--warmup", str(p.warmup)]
    else:
        cmd += ["--concurrency", str(p.concurrency), "--duration", str(p.duration), "--warmup-secs", str(p.warmup_secs)]
    cmd += list(extra)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


# ---------------------------------------------------------------- systems


def venv_bin(name):
    return os.path.join(VENVS, name, "bin")


def run_direct(python, script, n, warmup, stdin, env=None):
    """A direct baseline (bench/lib/*_direct.py): the app's work in one
    Python process, `n` timed calls after `warmup`; its JSON report."""
    run = subprocess.run([python, os.path.join(BENCH, "lib", script), str(n), str(warmup)], input=stdin,
                         capture_output=True, timeout=600, env=env)
    if run.returncode != 0:
        raise RuntimeError(f"direct baseline {script} failed: {run.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(run.stdout)


def infsh_cmd(p, apps_dir, port, data_dir, *extra):
    return [p.infsh_bin, "serve", "--apps", apps_dir, "--host", "127.0.0.1", "--port", str(port),
            "--python", p.infsh_python, "--data-dir", data_dir, *extra]


def infsh_run_req(function, text=TEXT, wait=True, app="bench/upper"):
    return {"method": "POST", "path": "/v1/run",
            "body": {"app": app, "function": function, "input": {"text": text}, "wait": wait}}


def configs(p):
    """(system, config, launcher, request, expect, second-function request)."""
    out = []
    if "floor" in p.systems:
        out.append(dict(system="floor", config="axum, fixed body",
                        launch=lambda port, tmp: dict(cmd=[FLOOR, str(port)]),
                        req={"method": "POST", "path": "/", "body": {"text": TEXT}}, expect=EXPECT, second=None))
    if "infsh" in p.systems:
        for fn, label in (("run", "async def"), ("run_sync", "def")):
            for conc in (None, 64):
                flags = [] if conc is None else ["--concurrency", str(conc)]

                def launch(port, tmp, flags=flags):
                    apps = os.path.join(tmp, "apps")
                    shutil.copytree(os.path.join(APPS, "infsh"), apps)
                    return dict(cmd=infsh_cmd(p, apps, port, os.path.join(tmp, "data"), *flags),
                                env={"INFSH_CACHE_DIR": os.path.join(tmp, "cache")})
                out.append(dict(system="infsh", config=f"{label}, " + ("default (1 call per worker)" if conc is None else f"--concurrency {conc}"),
                                launch=launch, req=infsh_run_req(fn), expect=INFSH_EXPECT,
                                second=(infsh_run_req("lower", "HeLLo"), '"text":"hello"'),
                                perf=(fn == "run" and conc == 64)))
        # The store commits without waiting for the disk; flushed within a
        # second (a crash of infsh loses nothing, a power loss that second).
        for fn, label in (("run", "async def"), ("run_sync", "def")):
            def launch(port, tmp):
                apps = os.path.join(tmp, "apps")
                shutil.copytree(os.path.join(APPS, "infsh"), apps)
                return dict(cmd=infsh_cmd(p, apps, port, os.path.join(tmp, "data"), "--concurrency", "64",
                                          "--durability", "relaxed"),
                            env={"INFSH_CACHE_DIR": os.path.join(tmp, "cache")})
            out.append(dict(system="infsh", config=f"{label}, --concurrency 64, --durability relaxed",
                            launch=launch, req=infsh_run_req(fn), expect=INFSH_EXPECT,
                            second=(infsh_run_req("lower", "HeLLo"), '"text":"hello"')))
        if p.tmpfs:
            # Not a config anyone should run: the task store on tmpfs, where
            # fsync costs nothing. It shows what the store's commits cost.
            def launch(port, tmp):
                apps = os.path.join(tmp, "apps")
                shutil.copytree(os.path.join(APPS, "infsh"), apps)
                data = tempfile.mkdtemp(prefix="infsh-bench-", dir=p.tmpfs)
                return dict(cmd=infsh_cmd(p, apps, port, data, "--concurrency", "64"),
                            env={"INFSH_CACHE_DIR": os.path.join(tmp, "cache")}, cleanup=data)
            out.append(dict(system="infsh", config="async def, --concurrency 64, DIAGNOSTIC: --data-dir on tmpfs (fsync free)",
                            launch=launch, req=infsh_run_req("run"), expect=INFSH_EXPECT,
                            second=(infsh_run_req("lower", "HeLLo"), '"text":"hello"'), diagnostic=True, perf=True))
    if "cog" in p.systems:
        for cls, conc, label in (("Runner", None, "def run, default (1 slot)"),
                                 ("AsyncRunner", 64, "async def run, COG_MAX_CONCURRENCY=64")):
            def launch(port, tmp, cls=cls, conc=conc):
                env = {"PATH": venv_bin("cog") + os.pathsep + os.environ["PATH"], "PORT": str(port),
                       "COG_PREDICT_TYPE_STUB": f"predict.py:{cls}", "VIRTUAL_ENV": os.path.join(VENVS, "cog")}
                if conc:
                    env["COG_MAX_CONCURRENCY"] = str(conc)
                return dict(cmd=[os.path.join(venv_bin("cog"), "python"), "-m", "cog.server.http", "--host", "127.0.0.1"],
                            env=env, cwd=os.path.join(APPS, "cog"))
            out.append(dict(system="cog (coglet)", config=label, launch=launch,
                            req={"method": "POST", "path": "/predictions", "body": {"input": {"text": TEXT}}},
                            expect=EXPECT, second=None))
    if "litserve" in p.systems:
        out.append(dict(system="litserve", config="default (2 APIs)",
                        launch=lambda port, tmp: dict(cmd=[os.path.join(venv_bin("litserve"), "python"), "server.py"],
                                                      env={"PORT": str(port)}, cwd=os.path.join(APPS, "litserve")),
                        req={"method": "POST", "path": "/predict", "body": {"text": TEXT}}, expect=EXPECT,
                        second=({"method": "POST", "path": "/lower", "body": {"text": "HeLLo"}}, '"hello"')))
    if "bentoml" in p.systems:
        out.append(dict(system="bentoml", config="default (workers=1, 2 APIs)",
                        launch=lambda port, tmp: dict(
                            cmd=[os.path.join(venv_bin("bentoml"), "bentoml"), "serve", "service:Upper",
                                 "--host", "127.0.0.1", "--port", str(port)],
                            env={"BENTOML_HOME": os.path.join(WORK, "bentoml-home"), "BENTOML_DO_NOT_TRACK": "true",
                                 "PATH": venv_bin("bentoml") + os.pathsep + os.environ["PATH"]},
                            cwd=os.path.join(APPS, "bentoml")),
                        req={"method": "POST", "path": "/upper", "body": {"text": TEXT}}, expect=EXPECT,
                        second=({"method": "POST", "path": "/lower", "body": {"text": "HeLLo"}}, '"hello"')))
    return out


def run_system(c, p, rnd):
    name = f"{c['system']} | {c['config']}"
    res = dict(system=c["system"], config=c["config"], round=rnd, diagnostic=c.get("diagnostic", False))
    tmp = tempfile.mkdtemp(prefix="run-", dir=os.path.join(WORK, "tmp"))
    tree = None
    spec = {}
    try:
        port = free_port()
        spec = c["launch"](port, tmp)
        slug = "".join(ch if ch.isalnum() else "-" for ch in name)[:60]
        tree = Tree(slug, spec["cmd"], env=spec.get("env"), cwd=spec.get("cwd"),
                    logfile=os.path.join(WORK, "logs", f"r{rnd}-{slug}.log"))
        res["cold_start_ms"] = round(first_correct(tree, port, c["req"], c["expect"]) * 1000, 1)
        if c["second"]:
            req2, exp2 = c["second"]
            st, body = call_once(port, req2["method"], req2["path"], req2.get("body"))
            res["second_function_ok"] = 200 <= st < 300 and exp2.encode() in body
        time.sleep(p.settle)
        procs = pss_by_process(tree.pids())
        res["idle_pss_mib"], res["processes"] = round(sum(x[2] for x in procs), 1), len(procs)
        res["idle_pss_by_process"] = [f"{comm} {mib}" for _, comm, mib in procs]
        res["c1"] = loadgen(port, c["req"], c["expect"], "seq", p)
        res["c32"] = loadgen(port, c["req"], c["expect"], "conc", p)
        time.sleep(p.settle)
        res["pss_after_load_mib"], _ = pss_mib(tree.pids())
        if p.perf and c.get("perf") and rnd == 1:
            res["perf_report"] = perf_profile(tree, port, c, p, slug)
        res["ok"] = True
    except Exception as e:  # noqa: BLE001 - one system failing must not stop the others
        res["ok"] = False
        res["error"] = str(e)[-3000:]
        log(f"{name}: FAILED: {str(e)[:500]}")
    finally:
        if tree:
            res["stop_s"] = round(tree.stop(), 2)
        shutil.rmtree(tmp, ignore_errors=True)
        if spec.get("cleanup"):
            shutil.rmtree(spec["cleanup"], ignore_errors=True)
    if res.get("ok"):
        log(f"{name}: cold {res['cold_start_ms']} ms, c1 p50 {res['c1']['p50_ms']} ms "
            f"p99 {res['c1']['p99_ms']} ms, c32 {res['c32']['ok_per_s']:.0f}/s p99 {res['c32']['p99_ms']} ms "
            f"non-2xx {res['c32']['non_2xx']}, idle PSS {res['idle_pss_mib']} MiB ({res['processes']} procs)")
    return res


def perf_profile(tree, port, c, p, slug):
    """An extra c32 pass (not counted) under `perf record` of the server
    process (all its threads; not the Python worker). Writes the report to
    <out>/<stem>-perf-<slug>.txt and returns that path."""
    data = os.path.join(WORK, "tmp", f"perf-{slug}.data")
    secs = max(3.0, min(p.duration, 6.0))
    rec = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(tree.pid), "-o", data, "--", "sleep", str(secs + 0.5)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    q = argparse.Namespace(**vars(p))
    q.duration, q.warmup_secs = secs, 0.1
    run = loadgen(port, c["req"], c["expect"], "conc", q)
    rec.wait(timeout=60)
    path = f"{p.stem}-perf-{slug}.txt"
    with open(path, "w") as f:
        f.write(f"# perf profile of the {c['system']} server ({c['config']}) during {secs} s at c{p.concurrency}\n")
        f.write(f"# load during the profile: {json.dumps({k: run[k] for k in ('ok_per_s', 'p50_ms', 'p99_ms', 'non_2xx')})}\n")
        f.write("# samples of the server process only (the Python worker is not included)\n\n")
        for args in (["--no-children", "--sort", "comm,dso"], ["--no-children", "--sort", "sym"], ["--children", "--sort", "sym"]):
            r = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none", *args],
                               capture_output=True, text=True)
            lines = [ln for ln in r.stdout.splitlines() if "%" in ln and not ln.startswith("#")]
            f.write(f"## perf report {' '.join(args)}\n" + "\n".join(lines[:45]) + "\n\n")
    os.unlink(data)
    log(f"perf profile written to {path}")
    return os.path.relpath(path, ROOT)


# ---------------------------------------------------------------- infsh extras


def start_infsh(p, apps_dir, name, *flags):
    tmp = tempfile.mkdtemp(prefix="infsh-", dir=os.path.join(WORK, "tmp"))
    port = free_port()
    tree = Tree(name, infsh_cmd(p, apps_dir, port, os.path.join(tmp, "data"), *flags),
                env={"INFSH_CACHE_DIR": os.path.join(tmp, "cache")})
    tree.tmp = tmp
    return tree, port


def stop_infsh(tree):
    tree.stop()
    shutil.rmtree(tree.tmp, ignore_errors=True)


def wait_health(tree, port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if call_once(port, "GET", "/health")[0] == 200:
                return
        except OSError:
            pass
        if not tree.alive():
            raise RuntimeError(f"{tree.name} exited:\n{tree.tail()}")
        time.sleep(0.005)
    raise RuntimeError(f"{tree.name}: not healthy in {timeout}s")


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = max(1, min(len(xs), -(-q * len(xs) // 100)))
    return round(xs[int(k) - 1], 3)


def ttfs(port, n):
    """POST a run of `stream` (no wait), follow GET /v1/tasks/{id}/stream:
    time to the first line carrying output, and to the terminal line."""
    firsts, totals, snaps = [], [], []
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t = time.perf_counter()
        c.request("POST", "/v1/run", body=json.dumps(
            {"app": "bench/upper", "function": "stream", "input": {"text": "one two three"}}),
            headers={"Content-Type": "application/json"})
        r = c.getresponse()
        task = json.loads(r.read())["data"]
        c.request("GET", f"/v1/tasks/{task['id']}/stream", headers={"Accept": "application/x-ndjson"})
        r = c.getresponse()
        first = None
        seen = set()
        while True:
            line = r.readline()
            if not line:
                break
            obj = json.loads(line)
            if obj.get("type") == "heartbeat":
                continue
            out = obj.get("output")
            if out is not None:
                if first is None:
                    first = time.perf_counter() - t
                seen.add(out.get("text"))
            if obj.get("status", 0) >= 10:
                if obj["status"] != 10 or (out or {}).get("text") != "ONE TWO THREE":
                    raise RuntimeError(f"stream ended badly: {obj}")
                break
        totals.append((time.perf_counter() - t) * 1000)
        if first is not None:
            firsts.append(first * 1000)
        snaps.append(len(seen))
        c.close()
    return {"n": n, "first_snapshot_p50_ms": pct(firsts, 50), "first_snapshot_p99_ms": pct(firsts, 99),
            "total_p50_ms": pct(totals, 50), "distinct_snapshots_seen_p50": statistics.median(snaps),
            "note": "the app yields 3 snapshots, the first at once, then 10 ms apart"}


# Stages of infsh's Server-Timing header, in the order a task meets them;
# "outside" is added by loadgen: the client's latency less the server's total.
STAGES = (
    ("outside", "HTTP: request and reply parsing/writing, loopback, the client (client latency - server total)"),
    ("accept", "accept: app/function lookup, input validation, the insert queued, the task queued"),
    ("queue", "queue: until the scheduler dispatched it to the worker"),
    ("dispatch", "dispatch: status writes, the call handed to the worker"),
    ("ipc", "IPC: the worker round trip less the worker's own time (framing, socket, wake-ups)"),
    ("python", "Python: the worker's own time (validate input, call, dump output)"),
    ("store", "store: the durable end (commit)"),
    ("wake", "wake: the waiting request reads the end"),
    ("total", "server total (accept .. wake)"),
)


def breakdown(p):
    """Where a sequential `wait` run's time goes, from the server's own
    stage timestamps (`--server-timing`: a Server-Timing header on every
    reply, collected by loadgen), for the best c1 config with each
    durability; with the worker round trip alone and the Python call in
    process for reference."""
    out = {"stages": {}}
    for durability in ("relaxed", "full"):
        tree, port = start_infsh(p, os.path.join(APPS, "infsh"), f"infsh-breakdown-{durability}",
                                 "--concurrency", "64", "--durability", durability, "--server-timing")
        try:
            first_correct(tree, port, infsh_run_req("run"), INFSH_EXPECT)
            run = loadgen(port, infsh_run_req("run"), INFSH_EXPECT, "seq", p)
        finally:
            stop_infsh(tree)
        if not run.get("server_timing"):
            raise RuntimeError("no Server-Timing header in infsh's replies")
        out["stages"][durability] = {"client_p50_ms": run["p50_ms"], "client_p99_ms": run["p99_ms"],
                                     "stages": run["server_timing"]}
    ipc = subprocess.run([IPC, p.infsh_python, os.path.join(APPS, "infsh", "upper"), "run",
                          str(p.n), str(p.warmup), "32", str(min(p.duration, 5))],
                         capture_output=True, text=True, timeout=300)
    if ipc.returncode != 0:
        raise RuntimeError(f"ipc bench failed: {ipc.stderr[-2000:]}")
    out["ipc"] = json.loads(ipc.stdout)
    py = subprocess.run([p.infsh_python, os.path.join(BENCH, "lib", "pyapp.py"), "inproc",
                         os.path.join(APPS, "infsh", "upper"), "run", str(p.n), str(p.warmup)],
                        capture_output=True, text=True, timeout=300)
    if py.returncode != 0:
        raise RuntimeError(f"in-process bench failed: {py.stderr[-2000:]}")
    out["python_inproc"] = json.loads(py.stdout)
    return out


def write_app(dir_, functions, model_mib):
    """An infsh app whose setup builds a `model` of model_mib MiB (written,
    so it is resident) and hashes it (so setup takes measurable time)."""
    os.makedirs(dir_, exist_ok=True)
    name = os.path.basename(dir_)
    with open(os.path.join(dir_, "inf.yml"), "w") as f:
        f.write(f"namespace: bench\nname: {name}\ndescription: multi-function saving\n")
    with open(os.path.join(dir_, "requirements.txt"), "w") as f:
        f.write("inferencesh\n")
    fns = "".join(
        f"\n    async def {fn}(self, input_data: TextInput) -> TextOutput:\n"
        f"        return TextOutput(text=input_data.text.upper() + self.tag)\n" for fn in functions)
    with open(os.path.join(dir_, "inference.py"), "w") as f:
        f.write(f'''import hashlib

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class TextInput(BaseAppInput):
    text: str


class TextOutput(BaseAppOutput):
    text: str


class App(BaseApp):
    async def setup(self):
        self.model = bytes(range(256)) * ({model_mib} * 4096)
        self.tag = hashlib.sha256(self.model).hexdigest()[:0]
{fns}''')


def multi_function(p, runs=3):
    """One app with 4 functions vs 4 one-function apps (and one
    one-function app alone), each served with --preload: launch -> every
    function answered, and PSS of the tree. Each layout is measured `runs`
    times, interleaved, and its best run counts (as for the cold start: a
    Python start here swings by +-150 ms, against a 25% target)."""
    base = tempfile.mkdtemp(prefix="multi-", dir=os.path.join(WORK, "tmp"))
    fns = ["embed", "classify", "generate", "caption"]
    layouts = {
        "one app, 1 function": {"single": ["embed"]},
        "one app, 4 functions": {"multi4": fns},
        "4 apps, 1 function each": {f"split-{fn}": [fn] for fn in fns},
    }
    out = {"model_mib": p.model_mib, "runs": runs}

    def measure(label, apps):
        d = os.path.join(base, label.replace(" ", "_").replace(",", ""))
        if not os.path.isdir(d):
            for app, afns in apps.items():
                write_app(os.path.join(d, app), afns, p.model_mib)
        tree, port = start_infsh(p, d, "infsh-multi", "--preload")
        try:
            reqs = [(app, fn) for app, afns in apps.items() for fn in afns]
            errs = []

            def call(app, fn):
                try:
                    st, body = call_once(port, "POST", "/v1/run", {"app": f"bench/{app}", "function": fn,
                                                              "input": {"text": TEXT}, "wait": True})
                    if st != 200 or INFSH_EXPECT.encode() not in body:
                        errs.append(f"{app}:{fn}: {st} {body[:200]!r}")
                except OSError as e:
                    errs.append(f"{app}:{fn}: {e}")
            wait_health(tree, port)
            ths = [threading.Thread(target=call, args=r) for r in reqs]
            for t in ths:
                t.start()
            for t in ths:
                t.join()
            ready_s = time.perf_counter() - tree.t0
            if errs:
                raise RuntimeError("; ".join(errs))
            time.sleep(p.settle)
            pss, procs = pss_mib(tree.pids())
            log(f"multi-function: {label}: all answered {ready_s * 1000:.0f} ms, PSS {pss} MiB, {procs} procs")
            return {"apps": len(apps), "functions": len(reqs), "all_answered_ms": round(ready_s * 1000, 1),
                    "pss_mib": pss, "processes": procs}
        finally:
            stop_infsh(tree)

    try:
        seen = {label: [] for label in layouts}
        for _ in range(runs):
            for label, apps in layouts.items():
                seen[label].append(measure(label, apps))
        for label, results in seen.items():
            best = dict(min(results, key=lambda r: r["all_answered_ms"]))
            best["pss_mib"] = min(r["pss_mib"] for r in results)
            best["all_ms"] = [r["all_answered_ms"] for r in results]
            out[label] = best
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


def second_replica(p):
    """--replicas 2, warm: keep replica 1 busy (nap), then time a call that
    has to go to the (not yet started) second replica."""
    tree, port = start_infsh(p, os.path.join(APPS, "infsh"), "infsh-replicas", "--replicas", "2")
    try:
        first_correct(tree, port, infsh_run_req("run_sync"), INFSH_EXPECT)
        for _ in range(20):
            call_once(port, "POST", "/v1/run", infsh_run_req("run_sync")["body"])
        st, body = call_once(port, "POST", "/v1/run", {"app": "bench/upper", "function": "nap",
                                                  "input": {"seconds": 3.0}, "wait": False})
        assert st == 200, body
        time.sleep(0.2)
        t = time.perf_counter()
        st, body = call_once(port, "POST", "/v1/run", infsh_run_req("run_sync")["body"])
        ms = (time.perf_counter() - t) * 1000
        if st != 200 or INFSH_EXPECT.encode() not in body:
            raise RuntimeError(f"second replica call failed: {st} {body[:300]!r}")
        t = time.perf_counter()
        st, body = call_once(port, "POST", "/v1/run", infsh_run_req("run_sync")["body"])
        warm_ms = (time.perf_counter() - t) * 1000
        return {"first_call_on_second_replica_ms": round(ms, 1), "next_call_ms": round(warm_ms, 2),
                "note": "replica 1 busy with a 3 s nap; the call waits for replica 2 to start, set up and answer"}
    finally:
        stop_infsh(tree)


def coldbase(p, runs=8):
    """Launch -> setup done of `pyapp.py coldbase` (interpreter start +
    import of the app + setup), the floor of any cold start, in pairs with
    infsh cold starts of the same app (launch -> first correct reply of
    POST /v1/run wait=true): each pair runs back to back, so both of its
    starts see the same machine load. The app's import alone swings by
    100-200 ms from one start to the next on the development VM, so the
    overhead is judged on the pairs' median difference, not on one start."""
    walls, parts, infsh = [], [], []
    for _ in range(runs):
        tree, port = start_infsh(p, os.path.join(APPS, "infsh"), "infsh-cold")
        try:
            infsh.append(first_correct(tree, port, infsh_run_req("run"), INFSH_EXPECT) * 1000)
        finally:
            stop_infsh(tree)
        t = time.perf_counter()
        proc = subprocess.Popen([p.infsh_python, os.path.join(BENCH, "lib", "pyapp.py"), "coldbase",
                                 os.path.join(APPS, "infsh", "upper")], stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        walls.append((time.perf_counter() - t) * 1000)
        proc.wait()
        parts.append(json.loads(line))
    i = walls.index(min(walls))
    diffs = [a - b for a, b in zip(infsh, walls)]
    return {"launch_to_setup_done_ms": round(min(walls), 1), "import_ms": round(parts[i]["import_s"] * 1000, 1),
            "setup_ms": round(parts[i]["setup_s"] * 1000, 2), "runs": runs, "all_ms": [round(w, 1) for w in walls],
            "infsh_cold_ms": round(min(infsh), 1), "infsh_all_ms": [round(w, 1) for w in infsh],
            "pair_overhead_ms": [round(d, 1) for d in diffs]}


def worker_phases(p, runs=3):
    """The worker's start-up, step by step (best run by total)."""
    best_run = None
    for _ in range(runs):
        r = subprocess.run([p.infsh_python, os.path.join(BENCH, "lib", "pyapp.py"), "workerphases",
                            os.path.join(APPS, "infsh", "upper")], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python")))
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        d = json.loads(r.stdout)
        if best_run is None or d["interpreter_to_ready_ms"] < best_run["interpreter_to_ready_ms"]:
            best_run = d
    return best_run


def extras(p):
    out = {}
    steps = [("cold_baseline", lambda: coldbase(p)), ("worker_phases", lambda: worker_phases(p)), ("breakdown", lambda: breakdown(p)),
             ("ttfs", None), ("second_replica", lambda: second_replica(p)), ("multi_function", lambda: multi_function(p))]
    for key, fn in steps:
        try:
            if key == "ttfs":
                tree, port = start_infsh(p, os.path.join(APPS, "infsh"), "infsh-ttfs", "--concurrency", "64")
                try:
                    first_correct(tree, port, infsh_run_req("run"), INFSH_EXPECT)
                    out[key] = ttfs(port, p.ttfs_n)
                finally:
                    stop_infsh(tree)
            else:
                out[key] = fn()
            log(f"extras: {key}: {json.dumps(out[key])[:400]}")
        except Exception as e:  # noqa: BLE001
            out[key] = {"error": str(e)[-2000:]}
            log(f"extras: {key}: FAILED: {str(e)[:500]}")
    return out


# ---------------------------------------------------------------- results


def best(runs, key, lower=True):
    vals = [key(r) for r in runs if r.get("ok")]
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return min(vals) if lower else max(vals)


def summarize(results):
    """Per (system, config): the best of the rounds, figure by figure."""
    groups = {}
    for r in results:
        groups.setdefault((r["system"], r["config"]), []).append(r)
    out = []
    for (system, config), runs in groups.items():
        ok = [r for r in runs if r.get("ok")]
        row = {"system": system, "config": config, "rounds_ok": len(ok), "rounds": len(runs),
               "diagnostic": runs[0].get("diagnostic", False)}
        if ok:
            row.update(
                cold_start_ms=best(ok, lambda r: r["cold_start_ms"]),
                c1_p50_ms=best(ok, lambda r: r["c1"]["p50_ms"]),
                c1_p99_ms=best(ok, lambda r: r["c1"]["p99_ms"]),
                c1_non_2xx=max(r["c1"]["non_2xx"] + r["c1"]["wrong_body"] + r["c1"]["errors"] for r in ok),
                c1_non_2xx_share=max(r["c1"]["non_2xx_share"] for r in ok),
                c32_ok_per_s=best(ok, lambda r: r["c32"]["ok_per_s"], lower=False),
                c32_p50_ms=best(ok, lambda r: r["c32"]["p50_ms"]),
                c32_p99_ms=best(ok, lambda r: r["c32"]["p99_ms"]),
                c32_non_2xx=max(r["c32"]["non_2xx"] + r["c32"]["wrong_body"] + r["c32"]["errors"] for r in ok),
                c32_non_2xx_share=max(r["c32"]["non_2xx_share"] for r in ok),
                idle_pss_mib=best(ok, lambda r: r["idle_pss_mib"]),
                processes=ok[0]["processes"],
                idle_pss_by_process=min(ok, key=lambda r: r["idle_pss_mib"]).get("idle_pss_by_process"),
                second_function=ok[0].get("second_function_ok"),
            )
        else:
            row["error"] = runs[-1].get("error", "")[:300]
        out.append(row)
    return out


def targets(summary, extras_by_round, unavailable):
    def rows(system, pred=lambda r: True):
        return [r for r in summary if r["system"] == system and r.get("rounds_ok") and not r.get("diagnostic") and pred(r)]

    infsh = rows("infsh")
    cog = rows("cog (coglet)")
    out = []

    def add(name, met, detail):
        out.append({"target": name, "met": met, "detail": detail})

    if not infsh:
        add("all", None, "infsh did not run")
        return out
    if not cog:
        add("coglet-relative targets", None, "coglet " + unavailable.get("cog", "did not run"))
    else:
        cog_p50 = min(r["c1_p50_ms"] for r in cog)
        i = min(infsh, key=lambda r: r["c1_p50_ms"])
        ok = i["c1_p50_ms"] <= cog_p50 / 3 and i["c1_non_2xx"] == 0
        add("p50 at c1 <= 1/3 of coglet's, zero non-2xx", ok,
            f"infsh ({i['config']}) {i['c1_p50_ms']} ms vs coglet best {cog_p50} ms: ratio "
            f"{i['c1_p50_ms'] / cog_p50:.2f} (target <= 0.33), non-2xx {i['c1_non_2xx']}")
        cog_best = max(r["c32_ok_per_s"] for r in cog)
        clean = [r for r in infsh if r["c32_non_2xx"] == 0]
        i = max(clean or infsh, key=lambda r: r["c32_ok_per_s"])
        ok = i["c32_ok_per_s"] >= 4 * cog_best and i["c32_non_2xx"] == 0 and (i["c32_p99_ms"] or 1e9) < 20
        add("replies/s at c32 >= 4x coglet's best, zero non-2xx, p99 < 20 ms", ok,
            f"infsh ({i['config']}) {i['c32_ok_per_s']:.0f}/s vs coglet best {cog_best:.0f}/s: "
            f"{i['c32_ok_per_s'] / cog_best:.2f}x (target >= 4x), p99 {i['c32_p99_ms']} ms, non-2xx {i['c32_non_2xx']}")
        cog_pss = min(r["idle_pss_mib"] for r in cog)
        i = min(infsh, key=lambda r: r["idle_pss_mib"])
        add("idle PSS of server + one worker <= coglet's", i["idle_pss_mib"] <= cog_pss,
            f"infsh {i['idle_pss_mib']} MiB ({i['processes']} processes) vs coglet {cog_pss} MiB: "
            f"margin {cog_pss - i['idle_pss_mib']:+.1f} MiB")
    ex = [e for e in extras_by_round if e]
    pairs = [e["cold_baseline"] for e in ex if "pair_overhead_ms" in e.get("cold_baseline", {})]
    if pairs:
        diffs = [d for x in pairs for d in x["pair_overhead_ms"]]
        over = statistics.median(diffs)
        b = min(x["launch_to_setup_done_ms"] for x in pairs)
        cold = min(x["infsh_cold_ms"] for x in pairs)
        add("cold start <= app import + setup + 60 ms", over <= 60,
            f"infsh cold start minus interpreter start + app import + setup, each pair run back to back: median "
            f"{over:+.1f} ms over {len(diffs)} pairs (target <= 60 ms; pairs' spread {min(diffs):+.1f} .. "
            f"{max(diffs):+.1f} ms); fastest starts {cold} ms vs {b} ms")
    reps = [e["second_replica"]["first_call_on_second_replica_ms"] for e in ex
            if "first_call_on_second_replica_ms" in e.get("second_replica", {})]
    if reps:
        r = min(reps)
        add("a second replica of a warm app ready < 100 ms", r < 100,
            f"first call served by a second replica {r} ms after it was sent (includes the call itself), margin {100 - r:+.1f} ms")
    mf = [e["multi_function"] for e in ex if "one app, 4 functions" in e.get("multi_function", {})]
    if mf:
        m = min(mf, key=lambda x: x["one app, 4 functions"]["all_answered_ms"])
        one, four, split = m["one app, 1 function"], m["one app, 4 functions"], m["4 apps, 1 function each"]
        tr = four["all_answered_ms"] / one["all_answered_ms"]
        mr = four["pss_mib"] / one["pss_mib"]
        add("multi-function app: setup time and memory of one app, not four", tr <= 1.25 and mr <= 1.25,
            f"4 functions in one app vs 1: launch -> all answered {tr:.2f}x, PSS {mr:.2f}x (target <= 1.25x), "
            f"{four['processes'] - 1} worker(s); "
            f"4 one-function apps: time {split['all_answered_ms'] / one['all_answered_ms']:.2f}x, "
            f"PSS {split['pss_mib'] / one['pss_mib']:.2f}x, {split['processes'] - 1} workers")
    return out


def fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}"
        return f"{v:.{nd}f}"
    return str(v)


def markdown(doc):
    L = []
    L.append(f"# infsh benchmark, {doc['date']}")
    L.append("")
    e = doc["environment"]
    L.append(f"Machine: {e['cpu']} x{e['cpus']}, {e['mem_gib']} GiB, Linux {e['kernel']}, Python {e['python']}; "
             f"load average {e['loadavg_start']} at start, {e.get('loadavg_end', '?')} at end. "
             f"infsh {e['infsh_rev']}. Client and servers share the machine (loopback).")
    L.append("")
    L.append("Parameters: " + ", ".join(f"{k}={v}" for k, v in doc["parameters"].items()))
    L.append("")
    L.append("Versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()))
    if doc.get("pypi_latest"):
        L.append("")
        L.append("Latest on PyPI when run.sh installed: " + "; ".join(doc["pypi_latest"].splitlines()))
    if doc["unavailable"]:
        L.append("")
        for k, v in doc["unavailable"].items():
            L.append(f"- **{k}: not available: {v}**")
    L.append("")
    L.append("## Summary (best of the rounds, figure by figure)")
    L.append("")
    L.append("| system | config | cold start ms | c1 p50 ms | c1 p99 ms | c1 non-2xx | c32 replies/s | c32 p50 ms | c32 p99 ms | c32 non-2xx | idle PSS MiB (procs) | 2nd fn |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in doc["summary"]:
        if not r.get("rounds_ok"):
            L.append(f"| {r['system']} | {r['config']} | failed: {r.get('error', '')[:120].replace('|', '/')} ||||||||||")
            continue
        L.append(f"| {r['system']} | {r['config']} | {fmt(r['cold_start_ms'], 0)} | {fmt(r['c1_p50_ms'], 3)} | "
                 f"{fmt(r['c1_p99_ms'], 3)} | {r['c1_non_2xx']} ({r['c1_non_2xx_share']:.1%}) | {fmt(r['c32_ok_per_s'], 0)} | "
                 f"{fmt(r['c32_p50_ms'])} | {fmt(r['c32_p99_ms'])} | {r['c32_non_2xx']} ({r['c32_non_2xx_share']:.1%}) | "
                 f"{fmt(r['idle_pss_mib'], 1)} ({r['processes']}) | {fmt(r['second_function'])} |")
    L.append("")
    L.append("Idle PSS by process (best run): " + "; ".join(
        f"{r['system']} ({r['config'].split(',')[0]}): " + ", ".join(r.get("idle_pss_by_process") or [])
        for r in doc["summary"] if r.get("rounds_ok")) + ".")
    L.append("")
    perf = [r for r in doc["runs"] if r.get("perf_report")]
    if perf:
        L.append("CPU profiles (perf, server process, extra c32 pass): " + ", ".join(
            f"[{r['config']}]({os.path.basename(r['perf_report'])})" for r in perf) + ".")
        L.append("")
    if any(r.get("diagnostic") for r in doc["summary"]):
        L.append("DIAGNOSTIC rows are not a way to run infsh and count for no target: the task store on tmpfs, "
                 "where fsync costs nothing, to show what the store's synchronous commits cost.")
        L.append("")
    L.append("Non-2xx counts every reply that was not a correct 2xx (non-2xx status, wrong body, connection error); "
             "latencies and replies/s count correct 2xx replies only.")
    L.append("")
    L.append("## Targets (computed from this run)")
    L.append("")
    L.append("| target | met | detail |")
    L.append("|---|---|---|")
    for t in doc["targets"]:
        met = "n/a" if t["met"] is None else ("**met**" if t["met"] else "**missed**")
        L.append(f"| {t['target']} | {met} | {t['detail']} |")
    L.append("")
    L.append("## Every run")
    L.append("")
    L.append("| round | system | config | cold ms | c1 p50 | c1 p99 | c1 bad | c32/s | c32 p50 | c32 p99 | c32 bad (statuses) | idle PSS | PSS after load | stop s |")
    L.append("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in doc["runs"]:
        if not r.get("ok"):
            L.append(f"| {r['round']} | {r['system']} | {r['config']} | failed: {r.get('error', '')[:150].replace('|', '/')} |||||||||||")
            continue
        c1, c32 = r["c1"], r["c32"]
        bad1 = c1["non_2xx"] + c1["wrong_body"] + c1["errors"]
        bad32 = c32["non_2xx"] + c32["wrong_body"] + c32["errors"]
        sts = ", ".join(f"{k}: {v}" for k, v in c32["statuses"].items())
        L.append(f"| {r['round']} | {r['system']} | {r['config']} | {fmt(r['cold_start_ms'], 0)} | {fmt(c1['p50_ms'], 3)} | "
                 f"{fmt(c1['p99_ms'], 3)} | {bad1} | {fmt(c32['ok_per_s'], 0)} | {fmt(c32['p50_ms'])} | {fmt(c32['p99_ms'])} | "
                 f"{bad32} ({sts}) | {fmt(r['idle_pss_mib'], 1)} | {fmt(r.get('pss_after_load_mib'), 1)} | {fmt(r.get('stop_s'))} |")
    L.append("")
    for i, ex in enumerate(doc["extras"], 1):
        if not ex:
            continue
        L.append(f"## infsh only (round {i})")
        L.append("")
        cb = ex.get("cold_baseline", {})
        if "launch_to_setup_done_ms" in cb:
            L.append(f"- Cold start vs its floor ({cb['runs']} pairs, each run back to back): infsh launch -> first correct "
                     f"reply, fastest {cb['infsh_cold_ms']} ms (runs: {cb['infsh_all_ms']}); the same interpreter importing "
                     f"the app and running setup, no infsh: fastest {cb['launch_to_setup_done_ms']} ms (app import "
                     f"{cb['import_ms']} ms, setup {cb['setup_ms']} ms; runs: {cb['all_ms']}); infsh minus floor per pair: "
                     f"{cb.get('pair_overhead_ms')}, median {statistics.median(cb['pair_overhead_ms']):+.1f} ms.")
        wp = ex.get("worker_phases", {})
        if "app_import_ms" in wp:
            L.append(f"- Worker start-up in one process (best of 3), interpreter start -> ready {wp['interpreter_to_ready_ms']} ms: "
                     f"worker loader import {wp['worker_loader_import_ms']} ms, app import {wp['app_import_ms']} ms, "
                     f"discovery import {wp['discovery_import_ms']} ms, discovery (schemas) {wp['discovery_ms']} ms, "
                     f"runtime import {wp['runtime_import_ms']} ms.")
        t = ex.get("ttfs", {})
        if "first_snapshot_p50_ms" in t:
            L.append(f"- Streaming: time to first snapshot p50 {t['first_snapshot_p50_ms']} ms, p99 {t['first_snapshot_p99_ms']} ms "
                     f"(submit + open the stream; {t['n']} runs); whole stream p50 {t['total_p50_ms']} ms ({t['note']}).")
        sr = ex.get("second_replica", {})
        if "first_call_on_second_replica_ms" in sr:
            L.append(f"- Second replica: first call served by it {sr['first_call_on_second_replica_ms']} ms; next call "
                     f"{sr['next_call_ms']} ms ({sr['note']}).")
        for key in ("cold_baseline", "worker_phases", "ttfs", "second_replica", "breakdown", "multi_function"):
            if "error" in ex.get(key, {}):
                L.append(f"- {key}: **failed**: {ex[key]['error'][:300]}")
        b = ex.get("breakdown", {})
        if "stages" in b:
            L.append("")
            L.append("Overhead breakdown at c1 (async def, --concurrency 64, `wait` runs), from the server's own stage "
                     "timestamps (`infsh serve --server-timing`, one Server-Timing header per reply; p50 and p99 of each "
                     "stage over the run, so the stages do not add up exactly to the total):")
            L.append("")
            cols = list(b["stages"])
            L.append("| stage | " + " | ".join(f"{c} p50 ms | {c} p99 ms" for c in cols) + " |")
            L.append("|---|" + "---:|---:|" * len(cols))
            for key, label in STAGES:
                cells = []
                for c in cols:
                    st = b["stages"][c]["stages"].get(key, {})
                    cells.append(f"{fmt(st.get('p50_ms'), 3)} | {fmt(st.get('p99_ms'), 3)}")
                L.append(f"| {label} | " + " | ".join(cells) + " |")
            L.append("| client latency | " + " | ".join(
                f"{fmt(b['stages'][c]['client_p50_ms'], 3)} | {fmt(b['stages'][c]['client_p99_ms'], 3)}" for c in cols) + " |")
            ipc = b["ipc"]
            L.append("")
            L.append(f"Worker IPC alone: c1 p50 {ipc['seq']['p50_ms']} ms ({ipc['seq']['calls_per_s']:.0f} calls/s); "
                     f"{ipc['conc']['concurrency']} calls in flight: {ipc['conc']['calls_per_s']:.0f} calls/s, "
                     f"p50 {ipc['conc']['p50_ms']} ms, p99 {ipc['conc']['p99_ms']} ms. "
                     f"Worker start (spawn -> ready) {ipc['worker_start_s'] * 1000:.0f} ms. "
                     f"The Python call in process (no IPC): p50 {b['python_inproc']['p50_ms']} ms.")
        m = ex.get("multi_function", {})
        if "one app, 4 functions" in m:
            L.append("")
            L.append(f"Multi-function saving (setup builds a {m['model_mib']} MiB model; --preload; launch -> every function answered; "
                     f"best of {m.get('runs', 1)} interleaved runs each):")
            L.append("")
            L.append("| layout | apps | functions | launch -> all answered ms | PSS MiB | processes |")
            L.append("|---|---:|---:|---:|---:|---:|")
            for label in ("one app, 1 function", "one app, 4 functions", "4 apps, 1 function each"):
                x = m[label]
                L.append(f"| {label} | {x['apps']} | {x['functions']} | {fmt(x['all_answered_ms'], 0)} | {fmt(x['pss_mib'], 1)} | {x['processes']} |")
        L.append("")
    L.append("## Notes")
    L.append("")
    for n in doc["notes"]:
        L.append(f"- {n}")
    L.append("")
    return "\n".join(L)


def versions(p):
    v = {}
    try:
        v["infsh"] = subprocess.run([p.infsh_bin, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    v["python (infsh workers)"] = subprocess.run(
        [p.infsh_python, "-c", "import sys, inferencesh, pydantic; from importlib.metadata import version;"
         "print(sys.version.split()[0], 'inferencesh', version('inferencesh'), 'pydantic', pydantic.VERSION)"],
        capture_output=True, text=True).stdout.strip()
    for venv, pkgs in (("cog", ["cog", "coglet"]), ("litserve", ["litserve", "fastapi", "uvicorn"]),
                       ("bentoml", ["bentoml"])):
        py = os.path.join(venv_bin(venv), "python")
        if os.path.exists(py):
            r = subprocess.run([py, "-c", "from importlib.metadata import version; import sys;"
                                "print(' '.join(f'{p} {version(p)}' for p in sys.argv[1:]))", *pkgs],
                               capture_output=True, text=True)
            v[venv] = r.stdout.strip() or r.stderr.strip()[-200:]
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs, to debug the harness")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--systems", default="floor,infsh,cog,litserve,bentoml")
    ap.add_argument("--no-extras", action="store_true")
    ap.add_argument("--out", default=os.path.join(BENCH, "results"))
    ap.add_argument("--infsh-bin", default=os.environ.get("INFSH_BIN", os.path.join(ROOT, "target", "release", "infsh")))
    ap.add_argument("--infsh-python", default=os.environ.get("INFSH_BENCH_PYTHON", os.path.join(ROOT, ".venv", "bin", "python")))
    ap.add_argument("--client-threads", type=int, default=int(os.environ.get("BENCH_CLIENT_THREADS", "1")))
    ap.add_argument("--model-mib", type=int, default=64)
    ap.add_argument("--perf", action="store_true", default=os.environ.get("BENCH_PERF") == "1",
                    help="profile the infsh server with `perf record` in an extra c32 pass (round 1)")
    ap.add_argument("--no-tmpfs", action="store_true", help="skip the diagnostic config with the store on tmpfs")
    p = ap.parse_args()
    p.systems = p.systems.split(",")
    p.tmpfs = None
    if not p.no_tmpfs and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        p.tmpfs = "/dev/shm"
    if p.perf and not shutil.which("perf"):
        log("--perf: perf is not installed; no profile")
        p.perf = False
    if p.quick:
        p.n, p.warmup, p.concurrency, p.duration, p.warmup_secs, p.settle, p.ttfs_n = 300, 50, 32, 2.0, 0.5, 0.5, 10
    else:
        p.n, p.warmup, p.concurrency, p.duration, p.warmup_secs, p.settle, p.ttfs_n = 2000, 200, 32, 10.0, 1.0, 1.0, 50
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    os.makedirs(os.path.join(WORK, "tmp"), exist_ok=True)
    os.makedirs(os.path.join(WORK, "logs"), exist_ok=True)
    unavailable = {}
    avail_file = os.path.join(WORK, "available.json")
    if os.path.exists(avail_file):
        with open(avail_file) as f:
            for k, v in json.load(f).items():
                if v is not True:
                    unavailable[k] = v
    p.systems = [s for s in p.systems if s not in unavailable]
    for path, what in ((LOADGEN, "loadgen"), (p.infsh_bin, "infsh"), (p.infsh_python, "infsh's python")):
        if not os.path.exists(path):
            sys.exit(f"{what} not found at {path}: run bench/run.sh")
    if "floor" in p.systems and not os.path.exists(FLOOR):
        unavailable["floor"] = "bench/tools did not build"
        p.systems.remove("floor")

    now = dt.datetime.now()
    os.makedirs(p.out, exist_ok=True)
    stem = os.path.join(p.out, now.strftime("%Y-%m-%d") + ("-quick" if p.quick else ""))
    if os.path.exists(stem + ".json"):
        stem += now.strftime("-%H%M%S")
    p.stem = stem
    doc = {
        "date": now.strftime("%Y-%m-%d %H:%M:%S"),
        "parameters": {"rounds": p.rounds, "c1_requests": p.n, "c1_warmup": p.warmup, "c32_concurrency": p.concurrency,
                       "c32_seconds": p.duration, "c32_warmup_s": p.warmup_secs, "client_threads": p.client_threads,
                       "quick": p.quick},
        "environment": {
            "cpu": _cpu(), "cpus": os.cpu_count(), "mem_gib": _mem_gib(), "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_start": _loadavg(),
            "infsh_rev": subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                                        text=True).stdout.strip(),
        },
        "versions": versions(p),
        "unavailable": unavailable,
        "pypi_latest": _read(os.path.join(WORK, "pypi-versions.txt")),
        "runs": [],
        "extras": [],
    }
    try:
        for rnd in range(1, p.rounds + 1):
            log(f"round {rnd} of {p.rounds}")
            for c in configs(p):
                doc["runs"].append(run_system(c, p, rnd))
            if "infsh" in p.systems and not p.no_extras:
                doc["extras"].append(extras(p))
    finally:
        stop_all()
    doc["environment"]["loadavg_end"] = _loadavg()
    doc["summary"] = summarize(doc["runs"])
    doc["targets"] = targets(doc["summary"], doc["extras"], unavailable)
    doc["notes"] = [
        "Each figure of the summary is the best of the rounds for that system and config (lowest latency, "
        "highest replies/s, lowest PSS); every run is listed under 'Every run'.",
        "Cold start: process launch to the first correct reply, polling every 5 ms (infsh starts its worker at the "
        "first request; the others load at boot).",
        "c1: one keep-alive connection, requests one after another after a warm-up. c32: 32 keep-alive connections "
        "for a fixed time after a warm-up; replies/s = correct 2xx replies / seconds.",
        "infsh requests are POST /v1/run with wait=true (one round trip returning the finished task); a success "
        "is a 200 whose task output is the upper-cased text.",
        "coglet ran without .cog/openapi_schema.json (made by `cog build`, not available without Docker), so it "
        "accepted its input without validating it; infsh validates every input against the function's schema.",
        "Idle PSS: sum of Pss in /proc/<pid>/smaps_rollup over the server process and all its descendants, "
        "1 s after the first reply.",
        "The load generator (bench/tools, loadgen) runs on the same machine as the server and takes CPU from it; "
        "on a 2-core machine this caps every system's c32 figure (the floor shows the cap).",
    ]
    with open(stem + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown(doc))
    log(f"wrote {stem}.md and {stem}.json")
    for t in doc["targets"]:
        log(f"target: {t['target']}: {'n/a' if t['met'] is None else ('met' if t['met'] else 'MISSED')}: {t['detail']}")


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _mem_gib():
    try:
        with open("/proc/meminfo") as f:
            return round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        return None


def _loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); servers stopped")
        stop_all()
        sys.exit(130)
