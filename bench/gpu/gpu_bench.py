#!/usr/bin/env python3
"""The GPU benchmark (bench/gpu.sh runs it; bench/gpu-README.md).

With examples/gpu-app (a transformer with random weights, built on the GPU
in setup; embed, classify, score and the streaming generate share it):

1. memory: `infsh serve --preload` with the app as it is (one app, four
   functions) vs the same model served as four one-function apps (copies of
   the app, each exposing one function): launch -> every function answered,
   GPU memory (nvidia-smi: device total used, before vs after, and per
   process), PSS of the process tree;
2. latency: p50 of `embed` through infsh (POST /v1/run wait=true, keep-alive,
   CALLS after WARMUP) vs the same call made directly in one Python process
   (bench/gpu/direct.py); time to first snapshot of `generate`;
3. writes gpu.json and gpu.md under --out and prints the summary.

Stdlib only; every server it starts is stopped on exit (also on error or
signal). Without nvidia-smi (a CPU test run) the GPU columns are empty.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)
APP = os.path.join(ROOT, "examples", "gpu-app")
FUNCTIONS = ["classify", "embed", "generate", "score"]
INPUTS = {
    "embed": {"text": "the quick brown fox jumps over the lazy dog"},
    "classify": {"text": "what a lovely day", "labels": ["weather", "sports", "cooking"]},
    "score": {"text": "the quick brown fox jumps over the lazy dog"},
    "generate": {"prompt": "Once upon a time", "max_tokens": 8},
}


def log(msg):
    print(f"[gpu {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -------------------------------------------------------------- GPU memory


def nvidia_smi(*args):
    if not shutil.which("nvidia-smi"):
        return None
    try:
        r = subprocess.run(["nvidia-smi", *args, "--format=csv,noheader,nounits"], capture_output=True,
                           text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def gpu_used_mib():
    """Memory used on the first visible GPU (MiB), or None."""
    out = nvidia_smi("--query-gpu=memory.used")
    if not out:
        return None
    try:
        return float(out.strip().splitlines()[0])
    except (ValueError, IndexError):
        return None


def gpu_by_pid():
    """{pid: MiB} of the compute processes nvidia-smi lists (empty where a
    container hides the pids)."""
    out = nvidia_smi("--query-compute-apps=pid,used_memory")
    res = {}
    for line in (out or "").splitlines():
        try:
            pid, mib = [x.strip() for x in line.split(",")]
            res[int(pid)] = res.get(int(pid), 0.0) + float(mib)
        except ValueError:
            continue
    return res


def wait_gpu_back(base, timeout=20):
    if base is None:
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        used = gpu_used_mib()
        if used is None or used <= base + 64:
            return
        time.sleep(0.25)


# -------------------------------------------------------------- apps


def split_copies(dest):
    """Four copies of the app, each exposing one function: the same App
    (same setup, same model), the other functions set to None."""
    for fn in FUNCTIONS:
        d = os.path.join(dest, f"gpu-{fn}")
        shutil.copytree(APP, d, ignore=shutil.ignore_patterns("__pycache__"))
        os.rename(os.path.join(d, "inference.py"), os.path.join(d, "inference_full.py"))
        # App is a pydantic model (BaseApp): a plain class attribute needs
        # a ClassVar annotation. None is not callable: discovery skips it.
        hidden = "".join(f"    {o}: ClassVar[None] = None\n" for o in FUNCTIONS if o != fn)
        with open(os.path.join(d, "inference.py"), "w") as f:
            f.write(f'"""gpu-app exposing only `{fn}` (made by bench/gpu/gpu_bench.py)."""\n'
                    f"from typing import ClassVar\n\nfrom .inference_full import App as _Full\n\n\n"
                    f"class App(_Full):\n{hidden}")
        with open(os.path.join(d, "inf.yml")) as f:
            yml = f.read()
        with open(os.path.join(d, "inf.yml"), "w") as f:
            f.write(yml.replace("name: gpu-app", f"name: gpu-{fn}").replace("default_function: embed",
                                                                        f"default_function: {fn}"))
    return [(f"infsh/gpu-{fn}", fn) for fn in FUNCTIONS]


# -------------------------------------------------------------- phases


def engine_config(args):
    """`--engine-config` for a machine without a GPU: gpu-app asks for one GPU,
    which infsh refuses where none is detected (docs/gpus.md); one declared
    GPU lets the CPU smoke run (torch then finds no CUDA and builds "tiny").
    On a GPU machine the GPUs are detected, as a user's would be."""
    if nvidia_smi("--query-gpu=index"):
        return []
    path = os.path.join(args.work, "engine.yml")
    with open(path, "w") as f:
        f.write("inventory:\n  gpus:\n    - {index: 0, name: declared (no GPU here), vram: 80GB}\n")
    return ["--engine-config", path]


def serve(bench, args, apps_dir, name):
    port = bench.free_port()
    data = tempfile.mkdtemp(prefix="data-", dir=args.work)
    tree = bench.Tree(name, [args.infsh, "serve", "--apps", apps_dir, "--host", "127.0.0.1", "--port", str(port),
                             "--python", args.python, "--data-dir", data, "--preload", *engine_config(args)],
                      env={"INFSH_CACHE_DIR": os.path.join(args.work, "cache")},
                      logfile=os.path.join(args.out, f"{name}.log"))
    return tree, port


def run_call(bench, port, app, fn, timeout=300):
    st, body = bench.call_once(port, "POST", "/v1/run", {"app": app, "function": fn, "input": INPUTS[fn],
                                                        "wait": True}, timeout=timeout)
    if st != 200:
        raise RuntimeError(f"{app}:{fn}: HTTP {st}: {body[:500]!r}")
    task = json.loads(body)["data"]
    if task["status"] != 10:
        raise RuntimeError(f"{app}:{fn}: task status {task['status']}: {task.get('error')}")
    return task


def layout(bench, args, label, apps_dir, calls):
    """Serve apps_dir (--preload), call every (app, function) once, measure."""
    base = gpu_used_mib()
    tree, port = serve(bench, args, apps_dir, label.replace(" ", "-"))
    res = {"layout": label, "apps": len({a for a, _ in calls}), "functions": len(calls), "gpu_before_mib": base}
    try:
        deadline = time.time() + 60
        while True:
            try:
                if bench.call_once(port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if not tree.alive() or time.time() > deadline:
                raise RuntimeError(f"infsh serve did not start:\n{tree.tail()}")
            time.sleep(0.01)
        outputs = {}
        import threading
        errors = []

        def one(app, fn):
            try:
                outputs[f"{app}:{fn}"] = run_call(bench, port, app, fn)["output"]
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))
        threads = [threading.Thread(target=one, args=c) for c in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError("; ".join(errors) + "\n" + tree.tail())
        res["all_answered_s"] = round(time.perf_counter() - tree.t0, 2)
        time.sleep(1.0)
        after = gpu_used_mib()
        res["gpu_after_mib"] = after
        res["gpu_delta_mib"] = None if after is None or base is None else round(after - base, 0)
        pids = tree.pids()
        by_pid = gpu_by_pid()
        res["gpu_by_process_mib"] = {str(p): by_pid[p] for p in pids if p in by_pid} or None
        procs = bench.pss_by_process(pids)
        res["pss_mib"] = round(sum(x[2] for x in procs), 1)
        res["processes"] = len(procs)
        res["sample_outputs"] = {k: v for k, v in list(outputs.items())[:4]}
        log(f"{label}: all answered {res['all_answered_s']} s after launch, GPU +{res['gpu_delta_mib']} MiB, "
            f"PSS {res['pss_mib']} MiB, {res['processes']} processes")
        return res, tree, port
    except BaseException:
        tree.stop()
        raise


def latency(bench, port, app, fn, n, warmup):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = json.dumps({"app": app, "function": fn, "input": INPUTS[fn], "wait": True})
    lat = []
    bad = 0
    for i in range(warmup + n):
        t = time.perf_counter()
        c.request("POST", "/v1/run", body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        dt = (time.perf_counter() - t) * 1000
        ok = r.status == 200 and b'"status":10' in data
        if i >= warmup:
            if ok:
                lat.append(dt)
            else:
                bad += 1
    c.close()
    return {"function": fn, "n": n, "ok": len(lat), "non_ok": bad, "p50_ms": bench.pct(lat, 50),
            "p90_ms": bench.pct(lat, 90), "p99_ms": bench.pct(lat, 99)}


def ttfs(port, app, runs=5):
    firsts, totals = [], []
    for _ in range(runs):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        t = time.perf_counter()
        c.request("POST", "/v1/run", body=json.dumps({"app": app, "function": "generate",
                                                     "input": {"prompt": "Once upon a time", "max_tokens": 16}}),
                  headers={"Content-Type": "application/json"})
        task = json.loads(c.getresponse().read())["data"]
        c.request("GET", f"/v1/tasks/{task['id']}/stream")
        r = c.getresponse()
        first = None
        while True:
            line = r.readline()
            if not line:
                break
            obj = json.loads(line)
            if obj.get("output") is not None and first is None:
                first = (time.perf_counter() - t) * 1000
            if obj.get("status", 0) >= 10:
                break
        totals.append((time.perf_counter() - t) * 1000)
        if first is not None:
            firsts.append(first)
        c.close()
    return {"runs": runs, "first_snapshot_ms": [round(x, 1) for x in firsts],
            "whole_stream_ms": [round(x, 1) for x in totals]}


def direct(args, fn):
    base = gpu_used_mib()
    proc = subprocess.Popen([args.python, os.path.join(HERE, "direct.py"), APP, fn, str(args.calls), str(args.warmup)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    def json_line(key):
        # The app prints to stdout too (setup's "model ready"): skip those.
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"direct.py ended early (exit {proc.wait()})")
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and key in obj:
                return obj

    try:
        first = json_line("setup_done")
        time.sleep(1.0)
        after = gpu_used_mib()
        by_pid = gpu_by_pid()
        pss = None
        try:
            with open(f"/proc/{proc.pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss = round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out = json_line("p50_ms")
        out["gpu_delta_mib"] = None if after is None or base is None else round(after - base, 0)
        out["gpu_by_process_mib"] = by_pid.get(proc.pid)
        out["setup_s"] = round(first["setup_s"], 3)
        out["model"] = first.get("model")
        out["pss_mib"] = pss
        proc.wait(timeout=60)
        return out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


# -------------------------------------------------------------- report


def fmt(v):
    return "-" if v is None else v


def markdown(doc):
    L = [f"# infsh on a GPU, {doc['date']}", ""]
    e = doc["environment"]
    m = doc["latency"].get("direct", {}).get("model") or {}
    L.append(f"GPU: {e.get('gpu') or 'none (CPU run)'}; Python {e['python']}, torch {e['torch']}; infsh {e['infsh']}. "
             f"Model: size `{m.get('size', e['model'])}`, {m.get('parameters', '?')} parameters, "
             f"{m.get('weights_mib', '?')} MiB of {m.get('dtype', '?')} weights on {m.get('device', '?')}, "
             f"built in {m.get('build_s', '?')} s.")
    L.append("")
    L.append("## Memory: one app with four functions vs four one-function apps")
    L.append("")
    L.append("| layout | apps | functions | launch -> all answered s | GPU used, delta MiB | GPU by process MiB | PSS MiB | processes |")
    L.append("|---|---:|---:|---:|---:|---|---:|---:|")
    for r in doc["layouts"]:
        L.append(f"| {r['layout']} | {r['apps']} | {r['functions']} | {fmt(r.get('all_answered_s'))} | "
                 f"{fmt(r.get('gpu_delta_mib'))} | {fmt(r.get('gpu_by_process_mib'))} | {fmt(r.get('pss_mib'))} | "
                 f"{fmt(r.get('processes'))} |")
    d = doc["latency"].get("direct")
    if d:
        L.append(f"| direct: the same App in one Python process, no infsh | 1 | 4 | - | {fmt(d.get('gpu_delta_mib'))} | "
                 f"{fmt(d.get('gpu_by_process_mib'))} | {fmt(d.get('pss_mib'))} | 1 |")
    s = doc.get("saving")
    if s:
        L.append("")
        L.append(f"Four one-function apps need {str(s['gpu_ratio']) + 'x' if s.get('gpu_ratio') else '(no GPU figure)'} the GPU memory, "
                 f"{s['pss_ratio']}x the host memory (PSS) and {s['time_ratio']}x the time to serve every function "
                 f"of the one four-function app.")
    L.append("")
    L.append("## Latency of `embed`: through infsh vs a direct call")
    L.append("")
    L.append("| path | calls | p50 ms | p90 ms | p99 ms |")
    L.append("|---|---:|---:|---:|---:|")
    i, d = doc["latency"]["infsh"], doc["latency"]["direct"]
    L.append(f"| infsh: POST /v1/run wait=true, keep-alive | {i['ok']} (+{i['non_ok']} failed) | {i['p50_ms']} | {i['p90_ms']} | {i['p99_ms']} |")
    L.append(f"| direct: the same App in one Python process | {d['n']} | {d['p50_ms']} | {d['p90_ms']} | {d['p99_ms']} |")
    if i["p50_ms"] is not None:
        L.append("")
        L.append(f"infsh adds {i['p50_ms'] - d['p50_ms']:.3f} ms at p50 ({i['p50_ms'] / d['p50_ms']:.2f}x the direct call).")
    t = doc["latency"].get("generate_ttfs")
    if t:
        L.append("")
        L.append(f"`generate` (16 tokens, streamed): time to first snapshot {t['first_snapshot_ms']} ms; whole stream "
                 f"{t['whole_stream_ms']} ms (submit, then GET /v1/tasks/{{id}}/stream).")
    L.append("")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--infsh", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--out", required=True)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    args.work = tempfile.mkdtemp(prefix="infsh-gpu-")
    os.environ["BENCH_WORK"] = args.work
    sys.path.insert(0, BENCH)
    import bench  # noqa: E402 - bench/bench.py: process trees, PSS, HTTP helpers
    open(bench.PIDS, "a").close()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    t0 = time.perf_counter()
    env = subprocess.run([args.python, "-c", "import sys, torch; print(sys.version.split()[0]); print(torch.__version__);"
                          "print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"],
                         capture_output=True, text=True)
    if env.returncode != 0:
        sys.exit(f"{args.python} cannot import torch:\n{env.stderr[-1500:]}")
    pyver, torchver, gpu = (env.stdout.splitlines() + ["", "", ""])[:3]
    doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "environment": {"python": pyver, "torch": torchver, "gpu": gpu,
                           "model": os.environ.get("GPU_APP_SIZE", "auto (full on a GPU)"),
                           "infsh": subprocess.run([args.infsh, "--version"], capture_output=True,
                                                   text=True).stdout.strip()},
           "layouts": [], "latency": {}}
    log(f"python {pyver}, torch {torchver}, GPU {gpu or 'none'}")
    try:
        multi_dir = os.path.join(args.work, "apps-multi")
        shutil.copytree(APP, os.path.join(multi_dir, "gpu-app"), ignore=shutil.ignore_patterns("__pycache__"))
        res, tree, port = layout(bench, args, "one app, 4 functions", multi_dir,
                                 [("infsh/gpu-app", fn) for fn in FUNCTIONS])
        doc["layouts"].append(res)
        try:
            doc["latency"]["infsh"] = latency(bench, port, "infsh/gpu-app", "embed", args.calls, args.warmup)
            log(f"infsh embed: {doc['latency']['infsh']}")
            doc["latency"]["generate_ttfs"] = ttfs(port, "infsh/gpu-app")
            log(f"generate: {doc['latency']['generate_ttfs']}")
        finally:
            tree.stop()
        wait_gpu_back(res["gpu_before_mib"])

        split_dir = os.path.join(args.work, "apps-split")
        calls = split_copies(split_dir)
        res, tree, port = layout(bench, args, "4 apps, 1 function each", split_dir, calls)
        doc["layouts"].append(res)
        tree.stop()
        wait_gpu_back(res["gpu_before_mib"])

        doc["latency"]["direct"] = direct(args, "embed")
        log(f"direct embed: {doc['latency']['direct']}")
    finally:
        bench.stop_all()
    one, four = doc["layouts"]
    doc["saving"] = {
        "gpu_ratio": round(four["gpu_delta_mib"] / one["gpu_delta_mib"], 2) if one.get("gpu_delta_mib") else None,
        "pss_ratio": round(four["pss_mib"] / one["pss_mib"], 2),
        "time_ratio": round(four["all_answered_s"] / one["all_answered_s"], 2),
    }
    doc["total_s"] = round(time.perf_counter() - t0, 1)
    with open(os.path.join(args.out, "gpu.json"), "w") as f:
        json.dump(doc, f, indent=1)
    md = markdown(doc)
    with open(os.path.join(args.out, "gpu.md"), "w") as f:
        f.write(md)
    print(md)
    log(f"done in {doc['total_s']} s; wrote {args.out}/gpu.json and gpu.md")
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        sys.exit(130)
