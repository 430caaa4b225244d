#!/usr/bin/env python3
"""The tokens benchmark (issue 17): a streaming function yields 1,000 tokens
as fast as it can, on every system that can stream (bench/apps/tokens/):

    python3 bench/tokens.py [--streams 64] [--tokens 1000] [--rounds 2]
                            [--systems infsh,cog,litserve,bentoml] [--out DIR]
                            [--date DATE]

bench/run.sh --tokens installs the peers and calls it. For each system, each
round (all systems, then all again): launch on a free loopback port, wait for
a correct stream, then
  - time to first token at one stream at a time (p50/p99 of --ttft-n runs):
    from sending the request (infsh: the POST, as the official client does
    it, then GET /tasks/{id}/stream) to the first body byte holding the first
    token's text;
  - --streams concurrent streams of --tokens tokens, three waves: tokens/s
    delivered to clients (all tokens of a wave / the wave's wall time), time
    to first token under that load, and bytes on the wire per token (every
    byte the client read for the stream: headers, framing, envelopes).
The direct baseline calls the infsh app's generator in one Python process.

infsh runs twice per round: as the official client (User-Agent
inference-sdk-py/0.36.0: delta lines) and as an old client (full snapshots).

The client is asyncio over raw sockets (stdlib only), one event loop; it
decodes chunked bodies itself and only searches them for token text, so its
cost per line is small and the same for every system.
Writes <out>/<date>-tokens.json and .md (--date: today by default).
"""
import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402 - the shared harness: process trees, ports, machine facts

APPS = os.path.join(bench.BENCH, "apps", "tokens")
UA_CLIENT = "inference-sdk-py/0.36.0"


def token(i):
    return f"w{i:04d} "


FIRST = token(0).encode()


# ---------------------------------------------------------------- HTTP client


class Reply:
    def __init__(self):
        self.status = 0
        self.body = bytearray()
        self.wire = 0
        self.first_token_at = None


async def request(port, method, path, body=None, headers=None, t0=None, reply=None):
    """One HTTP/1.1 request on a fresh connection, read to the end of the
    body. Notes when the first token's text first appears in the body."""
    reply = reply or Reply()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        data = b"" if body is None else json.dumps(body).encode()
        h = {"Host": f"127.0.0.1:{port}", "Connection": "close", "Accept-Encoding": "identity"}
        if body is not None:
            h["Content-Type"] = "application/json"
            h["Content-Length"] = str(len(data))
        h.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        writer.write(head.encode() + data)
        await writer.drain()
        raw = await reader.readuntil(b"\r\n\r\n")
        reply.wire += len(raw)
        lines = raw.decode("latin-1").split("\r\n")
        reply.status = int(lines[0].split()[1])
        hdrs = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}

        def got(chunk):
            reply.body += chunk
            if reply.first_token_at is None and FIRST in reply.body:
                reply.first_token_at = time.perf_counter()

        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                reply.wire += len(size_line) + len(chunk)
                if size == 0:
                    break
                got(chunk[:-2])
        elif "content-length" in hdrs:
            left = int(hdrs["content-length"])
            while left:
                chunk = await reader.read(min(left, 65536))
                if not chunk:
                    break
                reply.wire += len(chunk)
                left -= len(chunk)
                got(chunk)
        else:
            while chunk := await reader.read(65536):
                reply.wire += len(chunk)
                got(chunk)
        return reply
    finally:
        writer.close()


# ---------------------------------------------------------------- systems


def infsh_stream(deltas):
    async def stream(port, n):
        t0 = time.perf_counter()
        r = Reply()
        post = await request(port, "POST", "/apps/run", {"app": "bench/tokens", "input": {"n": n}},
                             headers={"User-Agent": UA_CLIENT})
        if post.status != 200:
            raise RuntimeError(f"POST /apps/run: {post.status} {bytes(post.body[:300])!r}")
        task = json.loads(post.body)["data"]["id"]
        r.wire += post.wire
        ua = UA_CLIENT if deltas else "python-requests/2.32"
        await request(port, "GET", f"/tasks/{task}/stream",
                      headers={"Accept": "application/x-ndjson", "User-Agent": ua}, reply=r)
        return t0, r
    return stream


def plain_stream(method, path, body_of, headers=None):
    async def stream(port, n):
        t0 = time.perf_counter()
        r = await request(port, method, path, body_of(n), headers=headers)
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status} {bytes(r.body[:300])!r}")
        return t0, r
    return stream


def configs(p):
    out = []
    if "infsh" in p.systems:
        clients = ((True, "official client (deltas)"), (False, "old client (snapshots)"))
        for deltas, label in clients[:1] if p.no_snapshots else clients:
            def launch(port, tmp):
                apps = os.path.join(tmp, "apps")
                shutil.copytree(os.path.join(APPS, "infsh"), apps)
                return dict(cmd=bench.infsh_cmd(p, apps, port, os.path.join(tmp, "data"),
                                                "--concurrency", str(p.streams)),
                            env={"INFSH_CACHE_DIR": os.path.join(tmp, "cache")})
            out.append(dict(system="infsh", config=f"async generator, --concurrency {p.streams}, {label}",
                            launch=launch, stream=infsh_stream(deltas)))
    if "cog" in p.systems:
        def launch(port, tmp):
            env = {"PATH": bench.venv_bin("cog") + os.pathsep + os.environ["PATH"], "PORT": str(port),
                   "COG_PREDICT_TYPE_STUB": "predict.py:AsyncRunner", "COG_MAX_CONCURRENCY": str(p.streams),
                   "VIRTUAL_ENV": os.path.join(bench.VENVS, "cog")}
            return dict(cmd=[os.path.join(bench.venv_bin("cog"), "python"), "-m", "cog.server.http",
                             "--host", "127.0.0.1"], env=env, cwd=os.path.join(APPS, "cog"))
        out.append(dict(system="cog (coglet)",
                        config=f"async ConcatenateIterator, COG_MAX_CONCURRENCY={p.streams}, SSE",
                        launch=launch, idle=coglet_idle,
                        stream=plain_stream("POST", "/predictions", lambda n: {"input": {"n": n}},
                                            headers={"Accept": "text/event-stream"})))
    if "litserve" in p.systems:
        out.append(dict(system="litserve", config="LitAPI(stream=True)",
                        launch=lambda port, tmp: dict(cmd=[os.path.join(bench.venv_bin("litserve"), "python"), "server.py"],
                                                      env={"PORT": str(port)}, cwd=os.path.join(APPS, "litserve")),
                        stream=plain_stream("POST", "/predict", lambda n: {"n": n})))
    if "bentoml" in p.systems:
        out.append(dict(system="bentoml", config="async generator API, workers=1",
                        launch=lambda port, tmp: dict(
                            cmd=[os.path.join(bench.venv_bin("bentoml"), "bentoml"), "serve", "service:Tokens",
                                 "--host", "127.0.0.1", "--port", str(port)],
                            env={"BENTOML_HOME": os.path.join(bench.WORK, "bentoml-home"), "BENTOML_DO_NOT_TRACK": "true",
                                 "PATH": bench.venv_bin("bentoml") + os.pathsep + os.environ["PATH"]},
                            cwd=os.path.join(APPS, "bentoml")),
                        stream=plain_stream("POST", "/generate", lambda n: {"n": n})))
    return out


# ---------------------------------------------------------------- measuring


def complete(r, n):
    """Every token arrived (the last one's text is in the body)."""
    return token(n - 1).encode() in r.body


async def wait_ready(tree, port, stream, timeout=180):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if not tree.alive():
            raise RuntimeError(f"{tree.name} exited before answering:\n{tree.tail()}")
        try:
            _, r = await asyncio.wait_for(stream(port, 5), 30)
            if complete(r, 5):
                return time.perf_counter() - tree.t0
            last = f"HTTP {r.status}: {bytes(r.body[:200])!r}"
        except (OSError, RuntimeError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            last = repr(e)
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{tree.name}: no correct stream within {timeout}s (last: {last})\n{tree.tail()}")


async def coglet_idle(port):
    """Whether coglet has every prediction slot free. A stream's client has
    its last token before coglet frees the slot, so a wave sent right after
    the previous one (or the TTFT calls) met 409 `At capacity` on a fast
    machine. `GET /health-check`: `{"status": "READY"|"BUSY"|..., and, where
    this coglet reports it, "concurrency": {"max", "current"}}`."""
    r = await request(port, "GET", "/health-check")
    try:
        doc = json.loads(bytes(r.body))
    except ValueError:
        return False
    current = (doc.get("concurrency") or {}).get("current", 0)
    return doc.get("status") == "READY" and not current


async def wait_idle(c, port, timeout=30.0):
    """Polls the system's own idle check (only systems that refuse work
    beyond their slots have one) until it holds, so that no wave starts
    while the previous one still holds slots."""
    idle = c.get("idle")
    if idle is None:
        return
    deadline = time.perf_counter() + timeout
    while not await idle(port):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{c['system']}: slots still busy {timeout:.0f}s after the last stream ended")
        await asyncio.sleep(0.005)


async def one(stream, port, n):
    t0, r = await stream(port, n)
    t1 = time.perf_counter()
    if not complete(r, n) or r.first_token_at is None:
        raise RuntimeError(f"incomplete stream: {bytes(r.body[-300:])!r}")
    return dict(ttft_ms=(r.first_token_at - t0) * 1000, total_s=t1 - t0, wire=r.wire)


async def measure(c, port, p):
    res = {}
    ttft = [(await one(c["stream"], port, p.tokens))["ttft_ms"] for _ in range(p.ttft_n)]
    res["c1_ttft_p50_ms"] = round(bench.pct(ttft, 50), 3)
    res["c1_ttft_p99_ms"] = round(bench.pct(ttft, 99), 3)
    waves = []
    for _ in range(p.waves):
        await wait_idle(c, port)
        t = time.perf_counter()
        runs = await asyncio.gather(*[one(c["stream"], port, p.tokens) for _ in range(p.streams)])
        wall = time.perf_counter() - t
        waves.append(dict(tokens_per_s=p.streams * p.tokens / wall,
                          ttft=[x["ttft_ms"] for x in runs],
                          bytes_per_token=sum(x["wire"] for x in runs) / (p.streams * p.tokens)))
    best = max(waves, key=lambda w: w["tokens_per_s"])
    res["tokens_per_s"] = round(best["tokens_per_s"])
    res["tokens_per_s_waves"] = [round(w["tokens_per_s"]) for w in waves]
    all_ttft = [x for w in waves for x in w["ttft"]]
    res["load_ttft_p50_ms"] = round(bench.pct(all_ttft, 50), 2)
    res["load_ttft_p99_ms"] = round(bench.pct(all_ttft, 99), 2)
    res["bytes_per_token"] = round(statistics.mean(w["bytes_per_token"] for w in waves), 2)
    return res


def run_config(c, p, rnd):
    name = f"{c['system']} | {c['config']}"
    res = dict(system=c["system"], config=c["config"], round=rnd)
    tmp = tempfile.mkdtemp(prefix="tokens-", dir=os.path.join(bench.WORK, "tmp"))
    tree = None
    try:
        port = bench.free_port()
        spec = c["launch"](port, tmp)
        slug = "".join(ch if ch.isalnum() else "-" for ch in name)[:60]
        tree = bench.Tree(slug, spec["cmd"], env=spec.get("env"), cwd=spec.get("cwd"),
                          logfile=os.path.join(bench.WORK, "logs", f"tokens-r{rnd}-{slug}.log"))
        res["cold_start_ms"] = round(asyncio.run(wait_ready(tree, port, c["stream"])) * 1000, 1)
        res.update(asyncio.run(measure(c, port, p)))
        res["ok"] = True
        bench.log(f"{name}: {res['tokens_per_s']} tokens/s at {p.streams} streams "
                  f"(waves {res['tokens_per_s_waves']}), TTFT c1 p50 {res['c1_ttft_p50_ms']} ms, "
                  f"under load p50 {res['load_ttft_p50_ms']} ms, {res['bytes_per_token']} B/token")
    except Exception as e:  # noqa: BLE001 - one system failing must not stop the others
        res["ok"] = False
        res["error"] = str(e)[-2000:]
        bench.log(f"{name}: FAILED: {str(e)[:500]}")
    finally:
        if tree:
            tree.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def direct(p):
    """The infsh app's generator called in one Python process: time to the
    first yield and tokens/s, with nothing between."""
    code = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[1])
from inference import App, TokensInput
n, runs = int(sys.argv[2]), int(sys.argv[3])
async def main():
    app = App()
    r = app.setup()
    if asyncio.iscoroutine(r):
        await r
    ttft, rates = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        first, k = None, 0
        async for out in app.run(TokensInput(n=n)):
            if first is None:
                first = time.perf_counter()
            k += 1
        t1 = time.perf_counter()
        ttft.append((first - t0) * 1000)
        rates.append(k / (t1 - t0))
    ttft.sort()
    print(json.dumps({"ttft_p50_ms": ttft[len(ttft) // 2], "tokens_per_s": max(rates)}))
asyncio.run(main())
"""
    import subprocess
    out = subprocess.run([p.infsh_python, "-c", code, os.path.join(APPS, "infsh", "tokens"), str(p.tokens), "20"],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        return dict(ok=False, error=out.stderr[-1000:])
    d = json.loads(out.stdout)
    return dict(ok=True, ttft_p50_ms=round(d["ttft_p50_ms"], 4), tokens_per_s=round(d["tokens_per_s"]))


# ---------------------------------------------------------------- report


def summarize(results):
    by = {}
    for r in results:
        if r.get("ok"):
            by.setdefault((r["system"], r["config"]), []).append(r)
    rows = []
    for (system, config), rs in by.items():
        rows.append(dict(system=system, config=config, rounds=len(rs),
                         tokens_per_s=max(r["tokens_per_s"] for r in rs),
                         tokens_per_s_rounds=[r["tokens_per_s"] for r in rs],
                         c1_ttft_p50_ms=min(r["c1_ttft_p50_ms"] for r in rs),
                         c1_ttft_p99_ms=min(r["c1_ttft_p99_ms"] for r in rs),
                         load_ttft_p50_ms=min(r["load_ttft_p50_ms"] for r in rs),
                         bytes_per_token=min(r["bytes_per_token"] for r in rs)))
    return rows


def targets(rows, base, p):
    out = []
    ours = [r for r in rows if r["system"] == "infsh" and "deltas" in r["config"]]
    peers = [r for r in rows if r["system"] != "infsh"]
    if not ours:
        return out
    o = ours[0]
    tok_bytes = len(token(0))
    out.append(dict(target=f"bytes on the wire per token within 2x of the token ({tok_bytes} B)",
                    met=o["bytes_per_token"] <= 2 * tok_bytes,
                    detail=f"{o['bytes_per_token']} B/token = {o['bytes_per_token'] / tok_bytes:.1f}x"))
    if peers:
        b = max(peers, key=lambda r: r["tokens_per_s"])
        out.append(dict(target="tokens/s at 64 streams at least 2x the best peer's",
                        met=o["tokens_per_s"] >= 2 * b["tokens_per_s"],
                        detail=f"{o['tokens_per_s']} vs {b['system']} {b['tokens_per_s']}: "
                               f"{o['tokens_per_s'] / b['tokens_per_s']:.2f}x"))
    if base.get("ok"):
        over = o["c1_ttft_p50_ms"] - base["ttft_p50_ms"]
        out.append(dict(target="p50 time to first token under 5 ms over the direct call",
                        met=over < 5, detail=f"{o['c1_ttft_p50_ms']} ms vs direct {base['ttft_p50_ms']} ms: "
                                              f"+{over:.2f} ms"))
    return out


def markdown(doc):
    m = doc["machine"]
    lines = [f"# Tokens benchmark, {doc['date']}", "",
             f"{doc['streams']} concurrent streams of {doc['tokens']} tokens (`w0000 `, 6 bytes each), "
             f"{doc['waves']} waves per system and round, {doc['rounds']} rounds (every system, then every system again). "
             f"Time to first token at c1: p50/p99 of {doc['ttft_n']} streams one at a time. "
             "Bytes per token: every byte the client read for a stream (headers, chunk framing, envelopes; "
             "for infsh the POST too) / tokens.", "",
             f"Machine: {m.get('cpu')}, {m.get('cpus')} CPUs, {m.get('mem_gib')} GiB; "
             f"load average at start {m.get('loadavg')} — **shared with other builds: ratios within this run, "
             "not absolute figures, are the result.**", "",
             "| system | config | tokens/s (best; each round) | TTFT c1 p50 / p99 ms | TTFT at load p50 ms | bytes/token |",
             "|---|---|---|---|---|---|"]
    for r in doc["summary"]:
        lines.append(f"| {r['system']} | {r['config']} | {r['tokens_per_s']} ({', '.join(map(str, r['tokens_per_s_rounds']))}) "
                     f"| {r['c1_ttft_p50_ms']} / {r['c1_ttft_p99_ms']} | {r['load_ttft_p50_ms']} | {r['bytes_per_token']} |")
    b = doc["direct"]
    if b.get("ok"):
        lines += ["", f"Direct (the infsh app's generator in one Python process): first yield after "
                      f"{b['ttft_p50_ms']} ms (p50), {b['tokens_per_s']} tokens/s for one stream."]
    lines += ["", "## Targets", "", "| target | met | detail |", "|---|---|---|"]
    for t in doc["targets"]:
        lines.append(f"| {t['target']} | {'yes' if t['met'] else '**no**'} | {t['detail']} |")
    failed = [r for r in doc["results"] if not r.get("ok")]
    if failed:
        lines += ["", "## Failures", ""]
        lines += [f"- {r['system']} | {r['config']} (round {r['round']}): `{r['error'][:400]}`" for r in failed]
    if doc["unavailable"]:
        lines += ["", "## Not available", ""] + [f"- {k}: {v}" for k, v in doc["unavailable"].items()]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--waves", type=int, default=3)
    ap.add_argument("--ttft-n", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-snapshots", action="store_true", help="skip infsh as an old client (full snapshots)")
    ap.add_argument("--systems", default="infsh,cog,litserve,bentoml")
    ap.add_argument("--out", default=os.path.join(bench.BENCH, "results"))
    ap.add_argument("--date", default=dt.date.today().isoformat(),
                    help="the results' file names: <out>/<date>-tokens.md and .json")
    ap.add_argument("--infsh-bin", default=os.environ.get("INFSH_BIN", os.path.join(bench.ROOT, "target", "release", "infsh")))
    ap.add_argument("--infsh-python", default=os.environ.get("INFSH_BENCH_PYTHON", os.path.join(bench.ROOT, ".venv", "bin", "python")))
    p = ap.parse_args()
    p.systems = p.systems.split(",")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, bench._on_signal)
    os.makedirs(os.path.join(bench.WORK, "tmp"), exist_ok=True)
    unavailable = {}
    avail = os.path.join(bench.WORK, "available.json")
    if os.path.exists(avail):
        with open(avail) as f:
            unavailable = {k: v for k, v in json.load(f).items() if v is not True}
    names = {"cog": "cog", "litserve": "litserve", "bentoml": "bentoml"}
    for s in list(p.systems):
        if s in names and not os.path.exists(bench.venv_bin(names[s])):
            unavailable.setdefault(s, f"no virtual environment at {bench.venv_bin(names[s])} (bench/run.sh installs it)")
    p.systems = [s for s in p.systems if s not in unavailable]
    machine = dict(cpu=bench._cpu(), cpus=os.cpu_count(), mem_gib=bench._mem_gib(), loadavg=bench._loadavg())
    results = []
    try:
        base = direct(p)
        bench.log(f"direct: {base}")
        cs = configs(p)
        for rnd in range(1, p.rounds + 1):
            for c in cs:
                results.append(run_config(c, p, rnd))
    finally:
        bench.stop_all()
    rows = summarize(results)
    doc = dict(date=dt.date.today().isoformat(), streams=p.streams, tokens=p.tokens, waves=p.waves, rounds=p.rounds,
               ttft_n=p.ttft_n, machine=machine, direct=base, results=results, summary=rows,
               targets=targets(rows, base, p), unavailable=unavailable)
    os.makedirs(p.out, exist_ok=True)
    stem = os.path.join(p.out, f"{p.date}-tokens")
    with open(stem + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
