"""Placement on real GPUs (bench/gpu.sh placement; docs/gpus.md).

Two copies of bench/gpu/probe-app (bench/gpu-probe-a, bench/gpu-probe-b; one
GPU each, no VRAM figure, so each takes a slot alone) are served by
`infsh serve --engine-config`:

1. isolation: every GPU its own slot. Each probe reports what its replica
   sees: CUDA_VISIBLE_DEVICES, metadata.gpu_ids, and the GPUs torch counts
   (must be exactly its slot's). With two or more GPUs the probes land on
   different GPUs.
2. eviction: one slot, `gpus: [0]`. The probes take turns: every call of the
   other probe stops the resident one (its `unload` frees its memory) and
   starts and sets up a new one. The cost of a turn is the median call
   latency when alternating minus the median warm call latency; each probe's
   setup holds PROBE_SETUP_GB (default 4) of GPU memory, as weights would.

Without nvidia-smi, a declared inventory of two GPUs checks the mechanics
(placement, env, gpu_ids, eviction counts) with no real GPU. Stdlib only;
every server it starts is stopped on exit. Results: placement.json and
placement.md under --out.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
PROBES = ("bench/gpu-probe-a", "bench/gpu-probe-b")


def log(msg):
    print(f"[placement] {msg}", file=sys.stderr, flush=True)


def gpus():
    """(index, name, MiB) of each GPU nvidia-smi lists; [] without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    rows = []
    for line in out.stdout.strip().splitlines():
        index, name, mib = [p.strip() for p in line.split(",")]
        rows.append((int(index), name, int(mib)))
    return rows


def apps_dir(work):
    """Two copies of the probe app, named by PROBES."""
    root = os.path.join(work, "apps")
    for ref in PROBES:
        name = ref.split("/")[1]
        dest = os.path.join(root, name)
        shutil.copytree(os.path.join(HERE, "probe-app"), dest)
        with open(os.path.join(dest, "inf.yml")) as f:
            text = f.read().replace("name: gpu-probe", f"name: {name}")
        with open(os.path.join(dest, "inf.yml"), "w") as f:
            f.write(text)
    return root


def engine_yml(work, label, slots, found):
    lines = [f"name: placement-{label}", "workers:", "  gpu:"]
    lines += [f"    - gpus: [{', '.join(map(str, s))}]" for s in slots]
    if not found:
        lines += ["inventory:", "  gpus:", "    - {index: 0, name: declared-0, vram: 80GB}",
                  "    - {index: 1, name: declared-1, vram: 80GB}"]
    path = os.path.join(work, f"engine-{label}.yml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


class Server:
    def __init__(self, bench, args, work, label, config, apps):
        self.bench = bench
        self.port = bench.free_port()
        data = tempfile.mkdtemp(prefix=f"data-{label}-", dir=work)
        self.tree = bench.Tree(f"placement-{label}", [
            args.infsh, "serve", "--apps", apps, "--host", "127.0.0.1", "--port", str(self.port),
            "--python", args.python, "--data-dir", data, "--engine-config", config],
            env={"INFSH_CACHE_DIR": os.path.join(work, "cache")},
            logfile=os.path.join(args.out, f"placement-{label}.log"))
        deadline = time.time() + 60
        while True:
            try:
                if bench.call_once(self.port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if not self.tree.alive() or time.time() > deadline:
                raise RuntimeError(f"infsh serve did not start:\n{self.tree.tail()}")
            time.sleep(0.02)

    def get(self, path):
        status, body = self.bench.call_once(self.port, "GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {body[:300]!r}")
        return json.loads(body)

    def call(self, app, note):
        t = time.perf_counter()
        status, body = self.bench.call_once(self.port, "POST", "/v1/run",
                                            {"app": app, "input": {"note": note}, "wait": True}, timeout=300)
        seconds = time.perf_counter() - t
        if status != 200:
            raise RuntimeError(f"{app}: HTTP {status}: {body[:500]!r}")
        task = json.loads(body)["data"]
        if task["status"] != 10:
            raise RuntimeError(f"{app}: task ended with status {task['status']}: {task.get('error')}\n{self.tree.tail()}")
        return task["output"], seconds

    def stop(self):
        self.tree.stop()


def isolation(bench, args, work, apps, found):
    indexes = [g[0] for g in found] or [0, 1]
    config = engine_yml(work, "isolation", [[i] for i in indexes], found)
    server = Server(bench, args, work, "isolation", config, apps)
    try:
        seen = {}
        for ref in PROBES:
            out, _ = server.call(ref, "isolation")
            seen[ref] = out
            log(f"{ref}: CUDA_VISIBLE_DEVICES={out['cuda_visible_devices']!r} gpu_ids={out['gpu_ids']} "
                f"torch sees {out['device_count']} {out['device_names']}")
        engines, workers = server.get("/engines"), server.get("/workers")
    finally:
        server.stop()
    checks = []
    for ref, out in seen.items():
        visible = out["cuda_visible_devices"]
        ids = out["gpu_ids"] or []
        checks.append({"probe": ref, "visible": visible, "gpu_ids": ids,
                       "one_gpu_visible": visible is not None and len(visible.split(",")) == 1,
                       "gpu_ids_match": visible is not None and ids == visible.split(","),
                       "torch_sees_only_it": (out["device_count"] == 1) if found else None})
    distinct = len({c["visible"] for c in checks}) == len(checks)
    return {"slots": [[i] for i in indexes], "probes": checks, "different_gpus": distinct if len(indexes) > 1 else None,
            "engines": engines, "workers": workers}


def eviction(bench, args, work, apps, found, rounds, warm):
    config = engine_yml(work, "eviction", [[found[0][0] if found else 0]], found)
    server = Server(bench, args, work, "eviction", config, apps)
    a, b = PROBES
    try:
        _, cold = server.call(a, "cold")
        warm_s = [server.call(a, f"warm {i}")[1] for i in range(warm)]
        turns = []
        for i in range(rounds):
            for ref in (b, a):
                out, seconds = server.call(ref, f"turn {i}")
                turns.append({"probe": ref, "seconds": seconds, "pid": out["pid"], "setup_seconds": out["setup_seconds"],
                              "held_gb": out["held_gb"]})
        engines = server.get("/engines")
    finally:
        server.stop()
    warm_median = statistics.median(warm_s)
    turn_median = statistics.median(t["seconds"] for t in turns)
    engine = engines[0] if isinstance(engines, list) else (engines.get("engines") or engines.get("data") or [engines])[0]
    return {"cold_call_s": round(cold, 3), "warm_call_median_s": round(warm_median, 4),
            "turn_call_median_s": round(turn_median, 3), "eviction_cost_s": round(turn_median - warm_median, 3),
            "setup_median_s": round(statistics.median(t["setup_seconds"] for t in turns), 3),
            "turns": len(turns), "evictions_total": engine.get("evictions_total"),
            "new_pid_every_turn": len({t["pid"] for t in turns}) == len(turns), "calls": turns}


def markdown(doc):
    iso, ev = doc["isolation"], doc["eviction"]
    lines = [f"# Placement on {doc['gpus'] or 'no GPU (declared inventory: mechanics only)'}", "",
             f"{doc['date']}, infsh {doc['infsh']}, PROBE_SETUP_GB={doc['probe_setup_gb']}", "",
             "## Each replica sees only its slot's GPUs", "",
             "| probe | CUDA_VISIBLE_DEVICES | gpu_ids | one GPU visible | gpu_ids match | torch sees only it |",
             "|---|---|---|---|---|---|"]
    for p in iso["probes"]:
        lines.append(f"| {p['probe']} | {p['visible']!r} | {p['gpu_ids']} | {p['one_gpu_visible']} | "
                     f"{p['gpu_ids_match']} | {p['torch_sees_only_it']} |")
    lines += ["", f"Different GPUs for the two probes: {iso['different_gpus']} (None: one GPU only).", "",
              "## What a turn costs (two whole-GPU apps on one slot)", "",
              "| measure | value |", "|---|---|",
              f"| first (cold) call | {ev['cold_call_s']} s |",
              f"| warm call, median | {ev['warm_call_median_s']} s |",
              f"| call that evicts the other probe, median | {ev['turn_call_median_s']} s |",
              f"| eviction cost (turn - warm) | {ev['eviction_cost_s']} s |",
              f"| of which the new replica's setup, median | {ev['setup_median_s']} s |",
              f"| turns / evictions_total | {ev['turns']} / {ev['evictions_total']} |",
              f"| a new worker every turn | {ev['new_pid_every_turn']} |"]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--infsh", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warm", type=int, default=10)
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="infsh-placement-")
    os.environ["BENCH_WORK"] = work
    sys.path.insert(0, BENCH)
    import bench  # noqa: E402 - bench/bench.py: process trees and HTTP helpers
    open(bench.PIDS, "a").close()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    found = gpus()
    log(f"GPUs: {found or 'none (declared inventory)'}")
    try:
        apps = apps_dir(work)
        doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "infsh": subprocess.run([args.infsh, "--version"], capture_output=True, text=True).stdout.strip(),
               "gpus": ", ".join(f"{i}: {n} ({m} MiB)" for i, n, m in found),
               "probe_setup_gb": os.environ.get("PROBE_SETUP_GB", "4")}
        doc["isolation"] = isolation(bench, args, work, apps, found)
        doc["eviction"] = eviction(bench, args, work, apps, found, args.rounds, args.warm)
    finally:
        bench.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(args.out, "placement.json"), "w") as f:
        json.dump(doc, f, indent=2)
    with open(os.path.join(args.out, "placement.md"), "w") as f:
        f.write(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
