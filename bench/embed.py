#!/usr/bin/env python3
"""The embed and batching benchmarks (issue 17; bench/README.md), stdlib
only, on bench.py's helpers (server trees, loadgen, ports):

    bench/run.sh --embed [--rounds 2] [--systems infsh,cog,litserve,bentoml] [--only embed,batching]

embed: 32 texts in, 32 x 1024 float32 vectors out as JSON (TableModel of
apps/embed_model), for every system: p50 at c1, replies/s at c32, and the
overhead of infsh's p50 over the direct baseline (lib/embed_direct.py: the
same function in one Python process, validation and JSON included).

batching: one text in, one vector out, through a model dominated by one
(n x 4096) @ (4096 x 1024) product (MatrixModel): replies/s at c32 for
infsh unbatched (embed_one), infsh batched (embed_batched: 32 calls, 5 ms)
and LitServe batched the same way (and unbatched, for its own gain).

Each system runs `--rounds` times (all of them, then all again); the best
round counts. Every server gets OMP/OpenBLAS/MKL threads = 1, so a model
uses one core everywhere. Writes <out>/<date>-embed.{md,json} and
<out>/<date>-batching.{md,json}.
"""
import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

MODEL_DIR = os.path.join(B.APPS, "embed_model")
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi "
         "rho sigma tau upsilon phi chi psi omega").split()
TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) for i in range(32)]
ONE_TEXT = "the quick brown fox jumps over the lazy dog again and again"
THREADS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "EMBED_MODEL_DIR": MODEL_DIR}


def env(**extra):
    out = dict(THREADS_ENV)
    out.update(extra)
    return out


def infsh_launch(p, *flags):
    def launch(port, tmp):
        apps = os.path.join(tmp, "apps")
        os.makedirs(apps)
        shutil.copytree(os.path.join(B.APPS, "infsh", "embed"), os.path.join(apps, "embed"))
        return dict(cmd=B.infsh_cmd(p, apps, port, os.path.join(tmp, "data"), *flags),
                    env=env(INFSH_CACHE_DIR=os.path.join(tmp, "cache")))
    return launch


def infsh_req(function, inp):
    return {"method": "POST", "path": "/v1/run",
            "body": {"app": "bench/embed", "function": function, "input": inp, "wait": True}}


def litserve_launch(mode):
    return lambda port, tmp: dict(cmd=[os.path.join(B.venv_bin("litserve"), "python"), "embed_server.py"],
                                  env=env(PORT=str(port), EMBED_MODE=mode), cwd=os.path.join(B.APPS, "litserve"))


def embed_configs(p, expect):
    texts = {"texts": TEXTS}
    out = []
    if "infsh" in p.systems:
        variants = [("def, default (1 call per worker)", ())]
        if p.relaxed:
            variants.append(("def, --durability relaxed", ("--durability", "relaxed")))
        for label, flags in variants:
            out.append(dict(system="infsh", config=label, launch=infsh_launch(p, *flags),
                            req=infsh_req("embed", texts), expect=expect, second=None))
    if "cog" in p.systems:
        def cog(port, tmp):
            return dict(cmd=[os.path.join(B.venv_bin("cog"), "python"), "-m", "cog.server.http", "--host", "127.0.0.1"],
                        env=env(PATH=B.venv_bin("cog") + os.pathsep + os.environ["PATH"], PORT=str(port),
                                COG_PREDICT_TYPE_STUB="embed_predict.py:Runner",
                                VIRTUAL_ENV=os.path.join(B.VENVS, "cog")),
                        cwd=os.path.join(B.APPS, "cog"))
        out.append(dict(system="cog (coglet)", config="def run, default (1 slot)", launch=cog,
                        req={"method": "POST", "path": "/predictions", "body": {"input": texts}},
                        expect=expect, second=None))
    if "litserve" in p.systems:
        out.append(dict(system="litserve", config="default", launch=litserve_launch("embed"),
                        req={"method": "POST", "path": "/predict", "body": texts}, expect=expect, second=None))
    if "bentoml" in p.systems:
        out.append(dict(system="bentoml", config="default (workers=1)",
                        launch=lambda port, tmp: dict(
                            cmd=[os.path.join(B.venv_bin("bentoml"), "bentoml"), "serve", "embed_service:Embed",
                                 "--host", "127.0.0.1", "--port", str(port)],
                            env=env(BENTOML_HOME=os.path.join(B.WORK, "bentoml-home"), BENTOML_DO_NOT_TRACK="true",
                                    PATH=B.venv_bin("bentoml") + os.pathsep + os.environ["PATH"]),
                            cwd=os.path.join(B.APPS, "bentoml")),
                        req={"method": "POST", "path": "/embed", "body": texts}, expect=expect, second=None))
    return out


def batching_configs(p):
    one = {"text": ONE_TEXT}
    expect = '"vector":['
    out = []
    if "infsh" in p.systems:
        out.append(dict(system="infsh", config="unbatched (embed_one)", launch=infsh_launch(p),
                        req=infsh_req("embed_one", one), expect=expect, second=None, kind="unbatched"))
        out.append(dict(system="infsh", config="batched (embed_batched: 32 calls, 5 ms)", launch=infsh_launch(p),
                        req=infsh_req("embed_batched", one), expect=expect, second=None, kind="batched"))
    if "litserve" in p.systems:
        out.append(dict(system="litserve", config="unbatched", launch=litserve_launch("one"),
                        req={"method": "POST", "path": "/predict", "body": one}, expect=expect, second=None,
                        kind="unbatched"))
        out.append(dict(system="litserve", config="batched (max_batch_size 32, batch_timeout 5 ms)",
                        launch=litserve_launch("batched"),
                        req={"method": "POST", "path": "/predict", "body": one}, expect=expect, second=None,
                        kind="batched"))
    return out


def direct(p):
    return B.run_direct(p.infsh_python, "embed_direct.py", p.n, p.warmup, json.dumps(TEXTS).encode(),
                        env={**os.environ, **env()})


def run_all(configs, p, measure_c1=True):
    results = []
    for rnd in range(1, p.rounds + 1):
        for c in configs:
            res = measure(c, p, rnd, measure_c1)
            res["kind"] = c.get("kind")
            results.append(res)
    return results


def measure(c, p, rnd, measure_c1):
    """One system: launch, first correct reply, c1 (optional), c32, stop."""
    name = f"{c['system']} | {c['config']}"
    res = dict(system=c["system"], config=c["config"], round=rnd)
    tmp = tempfile.mkdtemp(prefix="embed-", dir=os.path.join(B.WORK, "tmp"))
    tree = None
    try:
        port = B.free_port()
        spec = c["launch"](port, tmp)
        slug = "".join(ch if ch.isalnum() else "-" for ch in name)[:60]
        tree = B.Tree(slug, spec["cmd"], env=spec.get("env"), cwd=spec.get("cwd"),
                      logfile=os.path.join(B.WORK, "logs", f"embed-r{rnd}-{slug}.log"))
        res["cold_start_ms"] = round(B.first_correct(tree, port, c["req"], c["expect"]) * 1000, 1)
        status, body = B.call_once(port, c["req"]["method"], c["req"]["path"], c["req"].get("body"))
        res["reply_bytes"] = len(body)
        if measure_c1:
            res["c1"] = B.loadgen(port, c["req"], c["expect"], "seq", p)
        res["c32"] = B.loadgen(port, c["req"], c["expect"], "conc", p)
        res["ok"] = True
    except Exception as e:  # noqa: BLE001 - one system failing must not stop the others
        res["ok"] = False
        res["error"] = str(e)[-3000:]
        B.log(f"{name}: FAILED: {str(e)[:500]}")
    finally:
        if tree:
            tree.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if res.get("ok"):
        c1 = f"c1 p50 {res['c1']['p50_ms']} ms, " if "c1" in res else ""
        B.log(f"{name} (round {rnd}): {c1}c32 {res['c32']['ok_per_s']:.0f}/s p99 {res['c32']['p99_ms']} ms, "
              f"non-2xx {res['c32']['non_2xx']}, reply {res['reply_bytes']} B")
    return res


def best(results, pred, key):
    """The best round (lowest p50 at c1, or most replies/s at c32) of what matches."""
    rows = [r for r in results if r.get("ok") and pred(r)]
    if not rows:
        return None
    if key == "c1":
        return min(rows, key=lambda r: r["c1"]["p50_ms"])
    return max(rows, key=lambda r: r["c32"]["ok_per_s"])


def header(p, what):
    return dict(what=what, date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                machine=dict(cpu=B._cpu(), cores=os.cpu_count(), mem_gib=B._mem_gib(), loadavg_before=B._loadavg(),
                             kernel=os.uname().release),
                params=dict(rounds=p.rounds, n=p.n, warmup=p.warmup, concurrency=p.concurrency, duration_s=p.duration),
                note="The machine is shared with other work (other builds and test runs): absolute figures "
                     "move with its load; compare the ratios of one run.")


def embed_doc(p, results, base):
    peers = [r for r in results if r["system"] != "infsh"]
    infsh_c1 = best(results, lambda r: r["system"] == "infsh", "c1")
    infsh_c32 = best(results, lambda r: r["system"] == "infsh", "c32")
    peer_c32 = best(peers, lambda r: True, "c32")
    targets = {}
    if infsh_c1:
        over = round(infsh_c1["c1"]["p50_ms"] - base["p50_ms"], 3)
        targets["overhead_p50_c1_ms"] = dict(value=over, target="<= 0.3", met=over <= 0.3,
                                             infsh=infsh_c1["c1"]["p50_ms"], direct=base["p50_ms"],
                                             config=infsh_c1["config"])
    if infsh_c32 and peer_c32:
        # Compared before rounding: 1.995 is not 2.
        ratio = infsh_c32["c32"]["ok_per_s"] / peer_c32["c32"]["ok_per_s"]
        targets["c32_vs_best_peer"] = dict(value=round(ratio, 3), target=">= 2", met=ratio >= 2,
                                           infsh=round(infsh_c32["c32"]["ok_per_s"], 1),
                                           peer=f"{peer_c32['system']} | {peer_c32['config']}",
                                           peer_per_s=round(peer_c32["c32"]["ok_per_s"], 1))
    return dict(header(p, "embed"), direct=base, results=results, targets=targets)


def batching_doc(p, results):
    def rate(system, kind):
        r = best(results, lambda r: r["system"] == system and r["kind"] == kind, "c32")
        return round(r["c32"]["ok_per_s"], 1) if r else None
    rates = {f"{s} {k}": rate(s, k) for s in ("infsh", "litserve") for k in ("unbatched", "batched")}
    targets = {}
    ib, iu, lb = rates["infsh batched"], rates["infsh unbatched"], rates["litserve batched"]
    if ib and iu:
        targets["batched_vs_unbatched"] = dict(value=round(ib / iu, 2), target=">= 3", met=ib / iu >= 3)
    if ib and lb:
        targets["vs_litserve_batched"] = dict(value=round(ib / lb, 2), target="> 1", met=ib > lb)
    return dict(header(p, "batching"), c32_per_s=rates, results=results, targets=targets)


def fmt(v):
    return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def table(results, c1=True):
    rows = ["| system | config | round | " + ("c1 p50 ms | c1 p99 ms | " if c1 else "") +
            "c32 replies/s | c32 p50 ms | c32 p99 ms | reply bytes |",
            "|---|---|---|" + ("---|---|" if c1 else "") + "---|---|---|---|"]
    for r in results:
        if not r.get("ok"):
            rows.append(f"| {r['system']} | {r['config']} | {r['round']} | failed: {r.get('error', '')[:200]!r} |")
            continue
        cells = [r["system"], r["config"], str(r["round"])]
        if c1:
            cells += [fmt(r["c1"]["p50_ms"]), fmt(r["c1"]["p99_ms"])]
        cells += [f"{r['c32']['ok_per_s']:.1f}", fmt(r["c32"]["p50_ms"]), fmt(r["c32"]["p99_ms"]), str(r["reply_bytes"])]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def targets_md(targets):
    rows = ["| target | value | wanted | met |", "|---|---|---|---|"]
    for name, t in targets.items():
        rows.append(f"| {name} | {t['value']} | {t['target']} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(rows)


def write(doc, stem, title, body):
    with open(stem + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    m = doc["machine"]
    with open(stem + ".md", "w") as f:
        f.write(f"# {title}\n\n{doc['date']}, bench/embed.py (bench/run.sh --embed). {m['cpu']}, "
                f"{m['cores']} cores, load average before: {m['loadavg_before']}. {doc['note']}\n\n")
        f.write(body)
    B.log(f"wrote {stem}.md and .json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--systems", default="infsh,cog,litserve,bentoml")
    ap.add_argument("--only", default="embed,batching")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup-secs", type=float, default=1.0)
    ap.add_argument("--client-threads", type=int, default=2)
    ap.add_argument("--relaxed", action="store_true", help="also infsh with --durability relaxed")
    ap.add_argument("--out", default=os.path.join(B.BENCH, "results"))
    ap.add_argument("--date", default=dt.date.today().isoformat())
    p = ap.parse_args()
    p.systems = set(p.systems.split(","))
    p.infsh_bin = os.environ["INFSH_BIN"]
    p.infsh_python = os.environ["INFSH_BENCH_PYTHON"]
    available = {}
    if os.path.exists(os.path.join(B.WORK, "available.json")):
        available = json.load(open(os.path.join(B.WORK, "available.json")))
    for name, ok in available.items():
        if ok is not True and name in p.systems:
            B.log(f"{name}: not available ({ok}); left out")
            p.systems.discard(name)
    os.makedirs(os.path.join(B.WORK, "tmp"), exist_ok=True)
    open(B.PIDS, "a").close()
    try:
        if "embed" in p.only:
            base = direct(p)
            B.log(f"direct baseline: p50 {base['p50_ms']} ms, reply {base['bytes']} B")
            first = json.dumps(base["first"])
            expect = first if "e" not in first else '"vectors":[['
            results = run_all(embed_configs(p, expect), p)
            doc = embed_doc(p, results, base)
            body = ("## Targets\n\n" + targets_md(doc["targets"]) +
                    f"\n\nDirect baseline (lib/embed_direct.py, same function in one Python process, validation "
                    f"and JSON included): p50 {base['p50_ms']} ms, p99 {base['p99_ms']} ms, {base['bytes']} bytes.\n\n"
                    "## Every run\n\n" + table(results) + "\n")
            write(doc, os.path.join(p.out, f"{p.date}-embed"), "embed: 32 texts in, 32 x 1024 float32 out", body)
        if "batching" in p.only:
            results = run_all(batching_configs(p), p, measure_c1=False)
            doc = batching_doc(p, results)
            body = ("## Targets\n\n" + targets_md(doc["targets"]) + "\n\n## Replies/s at c32 (best round)\n\n" +
                    "\n".join(f"- {k}: {fmt(v)}" for k, v in doc["c32_per_s"].items()) +
                    "\n\n## Every run\n\n" + table(results, c1=False) + "\n")
            write(doc, os.path.join(p.out, f"{p.date}-batching"),
                  "batching: one text in, one vector out, a matrix-product model", body)
    finally:
        B.stop_all()


if __name__ == "__main__":
    main()
