#!/usr/bin/env python3
"""The image benchmark (issue 17; bench/README.md), stdlib only, on
bench.py's helpers (server trees, ports, machine facts):

    bench/run.sh --image [--rounds 2] [--systems infsh,cog,litserve,bentoml]
                         [--n 50] [--concurrency 8] [--duration 5]

A ~1 MB PNG in (noise, made here at run time: no binary file in the
repository), the same PNG flipped top to bottom out (bench/apps/image/
flip.py, Pillow, on every system), downloaded by the client. Each system is
called as its clients call it:

- infsh: as the official inferencesh client does (`upload_file`, then
  `run`): POST /files (register), PUT the bytes to its upload_url, POST
  /apps/run with the file's uri, read GET /tasks/{id}/stream to the end,
  then GET the output file's uri (the worker reads the uploaded input in
  place: docs/performance.md "How the bytes move");
- cog (coglet): POST /predictions with the image as a data URI; the output
  `Path` comes back in the reply as a data URI;
- LitServe: base64 in JSON, base64 out (its image examples);
- BentoML: multipart/form-data upload to a `Path` input, the `Path` output
  as the reply's body (its file examples).

First the direct baseline: flip.py's work on the bytes in one Python
process (bench/lib/image_direct.py), the floor under every system.
Per system and round: launch, wait for a correct reply (the first one's
pixels decoded and checked against the input's, flipped), then p50/p99 of
--n calls one at a time (c1) and replies/s with --concurrency clients for
--duration seconds (c8). Every reply is checked (a PNG of the input's size
and about its length). For infsh, the server's and its workers' disk and
syscall bytes over the c1 calls (/proc/PID/io), per call.

Writes <out>/<date>-image.json and .md; the targets are computed from the
same run.
"""
import argparse
import atexit
import base64
import datetime as dt
import http.client
import json
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

APPS = os.path.join(B.APPS, "image")
WIDTH = HEIGHT = 580  # 580 x 580 RGB noise: ~1.0 MB raw, and as PNG
SEED = 17


# ---------------------------------------------------------------- PNG


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_png(width=WIDTH, height=HEIGHT, seed=SEED):
    """An RGB PNG of noise (incompressible: ~width*height*3 bytes), the
    same bytes on every run. Returns (png, rows)."""
    rng = random.Random(seed)
    rows = [rng.randbytes(width * 3) for _ in range(height)]
    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")
    return png, rows


def png_size(png):
    """(width, height) from the IHDR; ValueError if it is not a PNG."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError(f"not a PNG: {png[:16]!r}")
    return struct.unpack(">II", png[16:24])


def decode_rgb(png):
    """The rows of an 8-bit RGB, non-interlaced PNG (any filter), pure
    Python: used once per system to check the pixels."""
    width, height = png_size(png)
    depth, color, _, _, interlace = png[24:29]
    if (depth, color, interlace) != (8, 2, 0):
        raise ValueError(f"unexpected PNG format: depth {depth}, colour type {color}, interlace {interlace}")
    pos, idat = 8, bytearray()
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind = png[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(bytes(idat))
    bpp, stride = 3, width * 3
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        elif f != 0:
            raise ValueError(f"bad PNG filter {f} in row {y}")
        rows.append(bytes(line))
        prev = line
    return rows


# ---------------------------------------------------------------- clients


class Conn:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port (reopened when
    a server closes it)."""

    def __init__(self, port, timeout=120):
        self.port, self.timeout, self.c = port, timeout, None

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.c.request(method, path, body=body, headers=headers or {})
                r = self.c.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def _json(status, body, what):
    if not 200 <= status < 300:
        raise RuntimeError(f"{what}: HTTP {status}: {body[:300]!r}")
    return json.loads(body)


def _path_of(url):
    u = urllib.parse.urlsplit(url)
    return u.path + (f"?{u.query}" if u.query else "")


def infsh_call(conn, png):
    """upload_file (register, PUT), run, wait (the task's stream), download."""
    reg = _json(*conn.request("POST", "/files", json.dumps({"files": [{
        "uri": "", "filename": "in.png", "content_type": "image/png", "size": len(png), "public": False}]}).encode(),
        {"Content-Type": "application/json"}), "POST /files")
    file = reg["data"][0]
    status, body = conn.request("PUT", _path_of(file["upload_url"]), png, {"Content-Type": "image/png"})
    if not 200 <= status < 300:
        raise RuntimeError(f"PUT upload_url: HTTP {status}: {body[:300]!r}")
    task = _json(*conn.request("POST", "/apps/run", json.dumps({
        "app": "bench/image", "function": "flip", "input": {"image": file["uri"]}}).encode(),
        {"Content-Type": "application/json"}), "POST /apps/run")["data"]
    status, body = conn.request("GET", f"/tasks/{task['id']}/stream", None, {"Accept": "application/x-ndjson"})
    if status != 200:
        raise RuntimeError(f"GET /tasks/{{id}}/stream: HTTP {status}: {body[:300]!r}")
    # NDJSON snapshots; the last one is terminal (docs/http-api.md).
    last = None
    for line in body.splitlines():
        if line.startswith(b"{"):
            event = json.loads(line)
            if "id" in event and "status" in event:
                last = event
    if last is None or last.get("status") != 10:
        raise RuntimeError(f"task did not complete: {str(last)[:500] if last else body[-300:]!r}")
    output = last["output"]
    status, out = conn.request("GET", _path_of(output["image"]["uri"]))
    if status != 200:
        raise RuntimeError(f"GET output file: HTTP {status}: {out[:300]!r}")
    return out


def cog_call(conn, png):
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    reply = _json(*conn.request("POST", "/predictions", json.dumps({"input": {"image": uri}}).encode(),
                                {"Content-Type": "application/json"}), "POST /predictions")
    out = reply.get("output")
    if not isinstance(out, str) or not out.startswith("data:"):
        raise RuntimeError(f"cog output is not a data URI: {str(reply)[:300]}")
    return base64.b64decode(out.split(",", 1)[1])


def litserve_call(conn, png):
    reply = _json(*conn.request("POST", "/predict", json.dumps({"image": base64.b64encode(png).decode()}).encode(),
                                {"Content-Type": "application/json"}), "POST /predict")
    return base64.b64decode(reply["image"])


def bentoml_call(conn, png):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"in.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    status, out = conn.request("POST", "/flip", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    if status != 200:
        raise RuntimeError(f"POST /flip: HTTP {status}: {out[:300]!r}")
    return out


# ---------------------------------------------------------------- systems


def env(tmp, **extra):
    # Peers' temporary files (their outputs, BentoML's uploads) go under
    # the run's folder, removed with it.
    out = {"IMAGE_LIB_DIR": APPS, "TMPDIR": tmp}
    out.update(extra)
    return out


def configs(p):
    out = []
    if "infsh" in p.systems:
        def infsh(copied, store_on_tmpfs=False, *flags):
            def launch(port, tmp):
                apps = os.path.join(tmp, "apps")
                os.makedirs(apps)
                shutil.copytree(os.path.join(APPS, "infsh", "image"), os.path.join(apps, "image"))
                e = env(tmp, INFSH_CACHE_DIR=os.path.join(tmp, "cache"))
                del e["TMPDIR"]  # the worker's tempfile is its call's scratch folder
                if copied:
                    e["IMAGE_OUT_DIR"] = os.path.join(tmp, "outside")
                    os.makedirs(e["IMAGE_OUT_DIR"])
                extra = list(flags)
                if store_on_tmpfs:
                    # Writes to tmpfs reach no block device, so write_bytes
                    # is then the files' bytes alone.
                    shm = tempfile.mkdtemp(prefix="infsh-image-store-", dir="/dev/shm")
                    atexit.register(shutil.rmtree, shm, True)
                    extra += ["--store", f"sqlite://{shm}/infsh.db"]
                return dict(cmd=B.infsh_cmd(p, apps, port, os.path.join(tmp, "data"), *extra), env=e)
            return launch
        flow = "official client flow (upload_file, run, stream, GET)"
        out.append(dict(system="infsh", config=f"def, default; {flow}; input read in place, output in the scratch folder (moved)",
                        launch=infsh(False), call=infsh_call))
        out.append(dict(system="infsh (relaxed)",
                        config="the same with --durability relaxed: stored files, like task updates, synced to the "
                               "disk within a second instead of before the answer",
                        launch=infsh(False, False, "--durability", "relaxed"), call=infsh_call))
        if p.infsh_store_split and os.access("/dev/shm", os.W_OK):
            out.append(dict(system="infsh (DIAGNOSTIC: task store on tmpfs)",
                            config="the same as infsh, the SQLite task store on /dev/shm, the files on disk: its "
                                   "write_bytes are the payload's alone (not a way to run infsh)",
                            launch=infsh(False, True), call=infsh_call))
        if p.infsh_copied:
            out.append(dict(system="infsh (output copied)",
                            config=f"the same, the output written outside the scratch folder (copied: the path before "
                                   "the move)", launch=infsh(True), call=infsh_call))
    if "cog" in p.systems:
        def cog(port, tmp):
            return dict(cmd=[os.path.join(B.venv_bin("cog"), "python"), "-m", "cog.server.http", "--host", "127.0.0.1"],
                        env=env(tmp, PATH=B.venv_bin("cog") + os.pathsep + os.environ["PATH"], PORT=str(port),
                                COG_PREDICT_TYPE_STUB="predict.py:AsyncRunner", VIRTUAL_ENV=os.path.join(B.VENVS, "cog"),
                                COG_MAX_CONCURRENCY=str(p.concurrency)),
                        cwd=os.path.join(APPS, "cog"))
        # A `def run` has one slot and answers 409 to a second call at once;
        # async def + COG_MAX_CONCURRENCY queues them (bench.py does the same).
        out.append(dict(system="cog (coglet)",
                        config=f"async def run, COG_MAX_CONCURRENCY={p.concurrency}, Path in/out, data URIs",
                        launch=cog, call=cog_call))
    if "litserve" in p.systems:
        out.append(dict(system="litserve", config="base64 JSON in and out",
                        launch=lambda port, tmp: dict(cmd=[os.path.join(B.venv_bin("litserve"), "python"), "server.py"],
                                                      env=env(tmp, PORT=str(port)), cwd=os.path.join(APPS, "litserve")),
                        call=litserve_call))
    if "bentoml" in p.systems:
        out.append(dict(system="bentoml", config="workers=1, multipart Path in, file (Path) out",
                        launch=lambda port, tmp: dict(
                            cmd=[os.path.join(B.venv_bin("bentoml"), "bentoml"), "serve", "service:Image",
                                 "--host", "127.0.0.1", "--port", str(port)],
                            env=env(tmp, BENTOML_HOME=os.path.join(B.WORK, "bentoml-home"), BENTOML_DO_NOT_TRACK="true",
                                    PATH=B.venv_bin("bentoml") + os.pathsep + os.environ["PATH"]),
                            cwd=os.path.join(APPS, "bentoml")),
                        call=bentoml_call))
    return out


# ---------------------------------------------------------------- measuring


def check(out, png):
    """Cheap check of every reply: a PNG of the input's size, ~its length."""
    if png_size(out) != (WIDTH, HEIGHT):
        raise RuntimeError(f"reply PNG is {png_size(out)}, not {(WIDTH, HEIGHT)}")
    if not 0.9 * len(png) < len(out) < 1.2 * len(png):
        raise RuntimeError(f"reply PNG is {len(out)} bytes for {len(png)} in")


def wait_ready(tree, port, call, png, rows, timeout=180):
    """The first correct reply (pixels checked); seconds since launch."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if not tree.alive():
            raise RuntimeError(f"{tree.name} exited ({tree.proc.returncode}) before answering:\n{tree.tail()}")
        conn = Conn(port)
        try:
            out = call(conn, png)
            took = time.perf_counter() - tree.t0
            if decode_rgb(out) != rows[::-1]:
                raise RuntimeError("the reply's pixels are not the input's flipped top to bottom")
            return took
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            last = repr(e)
        except RuntimeError as e:
            if "pixels" in str(e):
                raise
            last = str(e)
        finally:
            conn.close()
        time.sleep(0.05)
    raise RuntimeError(f"{tree.name}: no correct reply within {timeout}s (last: {last})\n{tree.tail()}")


def io_counters(pids):
    """/proc/PID/io summed over pids (those still there)."""
    total = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io") as f:
                for line in f:
                    k, v = line.split(":")
                    total[k] = total.get(k, 0) + int(v)
        except (OSError, ValueError):
            continue
    return total


def c1(port, call, png, p):
    conn = Conn(port)
    try:
        for _ in range(p.warmup):
            check(call(conn, png), png)
        times = []
        for _ in range(p.n):
            t = time.perf_counter()
            out = call(conn, png)
            times.append((time.perf_counter() - t) * 1000)
            check(out, png)
        return dict(n=p.n, p50_ms=round(B.pct(times, 50), 2), p99_ms=round(B.pct(times, 99), 2),
                    mean_ms=round(sum(times) / len(times), 2))
    finally:
        conn.close()


def concurrent(port, call, png, p):
    stop_at = [None]
    counts, errors = [0] * p.concurrency, []

    def client(i):
        conn = Conn(port)
        try:
            while stop_at[0] is None or time.perf_counter() < stop_at[0]:
                out = call(conn, png)
                check(out, png)
                if stop_at[0] is not None:
                    counts[i] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(p.concurrency)]
    for t in threads:
        t.start()
    time.sleep(p.warmup_secs)  # clients warming up; counting starts now
    t0 = time.perf_counter()
    stop_at[0] = t0 + p.duration
    for t in threads:
        t.join(timeout=p.duration + 300)
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed at c{p.concurrency}: {errors[0][:500]}")
    return dict(concurrency=p.concurrency, replies=sum(counts), wall_s=round(wall, 2),
                per_s=round(sum(counts) / wall, 2))


def run_config(c, p, rnd, png, rows):
    name = f"{c['system']} | {c['config']}"
    res = dict(system=c["system"], config=c["config"], round=rnd)
    tmp = tempfile.mkdtemp(prefix="image-", dir=os.path.join(B.WORK, "tmp"))
    tree = None
    try:
        port = B.free_port()
        spec = c["launch"](port, tmp)
        slug = "".join(ch if ch.isalnum() else "-" for ch in c["system"])[:40]
        tree = B.Tree(slug, spec["cmd"], env=spec.get("env"), cwd=spec.get("cwd"),
                      logfile=os.path.join(B.WORK, "logs", f"image-r{rnd}-{slug}.log"))
        res["cold_start_ms"] = round(wait_ready(tree, port, c["call"], png, rows) * 1000, 1)
        before = io_counters(tree.pids())
        res["c1"] = c1(port, c["call"], png, p)
        after = io_counters(tree.pids())
        calls = p.n + p.warmup
        res["io_per_call"] = {k: round((after.get(k, 0) - before.get(k, 0)) / calls) for k in after}
        res["c8"] = concurrent(port, c["call"], png, p)
        res["ok"] = True
        B.log(f"{name} (round {rnd}): c1 p50 {res['c1']['p50_ms']} ms p99 {res['c1']['p99_ms']} ms, "
              f"c{p.concurrency} {res['c8']['per_s']}/s; disk writes/call {res['io_per_call'].get('write_bytes')} B")
    except Exception as e:  # noqa: BLE001 - one system failing must not stop the others
        res["ok"] = False
        res["error"] = str(e)[-2000:]
        B.log(f"{name}: FAILED: {str(e)[:500]}")
    finally:
        if tree:
            tree.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return res


# ---------------------------------------------------------------- report


def summarize(results):
    by = {}
    for r in results:
        if r.get("ok"):
            by.setdefault((r["system"], r["config"]), []).append(r)
    rows = []
    for (system, config), rs in by.items():
        best_c1 = min(rs, key=lambda r: r["c1"]["p50_ms"])
        rows.append(dict(system=system, config=config, rounds=len(rs),
                         c1_p50_ms=best_c1["c1"]["p50_ms"], c1_p99_ms=best_c1["c1"]["p99_ms"],
                         c8_per_s=max(r["c8"]["per_s"] for r in rs),
                         cold_start_ms=min(r["cold_start_ms"] for r in rs),
                         io_per_call=best_c1["io_per_call"]))
    return rows


def direct(p, png):
    """The app's own work in one process (bench/lib/image_direct.py)."""
    return B.run_direct(p.infsh_python, "image_direct.py", p.n, p.warmup, png)


def targets(rows, payload, base=None):
    out = []
    ours = next((r for r in rows if r["system"] == "infsh"), None)
    peers = [r for r in rows if not r["system"].startswith("infsh")]
    if ours and peers:
        b = min(peers, key=lambda r: r["c1_p50_ms"])
        ratio = ours["c1_p50_ms"] / b["c1_p50_ms"]
        detail = f"infsh {ours['c1_p50_ms']} ms vs {b['system']} {b['c1_p50_ms']} ms: {ratio:.2f}x"
        if base:
            half = b["c1_p50_ms"] / 2
            detail += (f"; the app's own work alone (direct) {base['p50_ms']} ms, infsh's overhead over it "
                       f"{ours['c1_p50_ms'] - base['p50_ms']:.2f} ms, {b['system']}'s "
                       f"{b['c1_p50_ms'] - base['p50_ms']:.2f} ms")
            if base["p50_ms"] > half:
                detail += f" (1/2 of {b['system']}'s p50 is {half:.2f} ms: below the work itself)"
        relaxed = next((r for r in rows if r["system"] == "infsh (relaxed)"), None)
        if relaxed:
            detail += (f"; with --durability relaxed {relaxed['c1_p50_ms']} ms: "
                       f"{relaxed['c1_p50_ms'] / b['c1_p50_ms']:.2f}x")
        out.append(dict(target="p50 at c1 no more than 1/2 of the best peer's", met=ratio <= 0.5, detail=detail))
    if ours:
        io = ours["io_per_call"]
        written = io.get("write_bytes", 0)
        # Written once to storage and read once: the input (upload) and
        # the output each written once: 2 x the payload, no more.
        detail = (f"write_bytes {written} B/call = {written / payload:.2f} x the {payload} B payload "
                  f"(cancelled_write_bytes {io.get('cancelled_write_bytes', 0)}, read_bytes "
                  f"{io.get('read_bytes', 0)}; syscall bytes rchar {io.get('rchar', 0)}, "
                  f"wchar {io.get('wchar', 0)}, loopback sockets included)")
        # The payload's own copies are what the target counts; the task
        # store's records (SQLite pages of the task and file rows) are not
        # a copy of it. The diagnostic run, its store on tmpfs, gives the
        # files' bytes alone; without it the total is judged.
        split = next((r for r in rows if r["system"].startswith("infsh (DIAGNOSTIC")), None)
        judged = written
        if split:
            files = split["io_per_call"].get("write_bytes", 0)
            judged = files
            detail = (f"the files' bytes (the task store on tmpfs) {files} B/call = {files / payload:.2f} x the "
                      f"{payload} B payload; with the task store's records (SQLite, ~{written - files} B/call) "
                      + detail)
        out.append(dict(target="server-side: bytes written once to storage (in and out: 2 x payload per call)",
                        met=judged <= 2.1 * payload, detail=detail))
    return out


def markdown(doc):
    m = doc["machine"]
    lines = [f"# Image benchmark, {doc['date']}", "",
             f"A {doc['payload_bytes']}-byte PNG ({WIDTH} x {HEIGHT} RGB noise, made by bench/image.py) in, the "
             "same image flipped top to bottom out (bench/apps/image/flip.py: Pillow decode, flip, PNG encode at "
             "compress_level 0, ~the same size), downloaded by the client; each system as its clients call it "
             "(bench/image.py's docstring). "
             f"c1: p50/p99 of {doc['params']['n']} calls one at a time after {doc['params']['warmup']}; "
             f"c{doc['params']['concurrency']}: replies/s over {doc['params']['duration_s']} s. "
             f"{doc['params']['rounds']} round(s); the best round counts.", "",
             f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem_gib']} GiB; load average at start {m['loadavg']}. "
             f"infsh binary: `{doc['infsh_bin']}`. {doc['note']}", "",
             f"| system | config | c1 p50 ms | c1 p99 ms | c{doc['params']['concurrency']} replies/s | cold start ms |",
             "|---|---|---|---|---|---|"]
    for r in doc["summary"]:
        lines.append(f"| {r['system']} | {r['config']} | {r['c1_p50_ms']} | {r['c1_p99_ms']} | {r['c8_per_s']} "
                     f"| {r['cold_start_ms']} |")
    if doc.get("direct"):
        d = doc["direct"]
        lines += ["", f"Direct baseline (bench/lib/image_direct.py: flip.py's decode, flip and encode on the bytes in "
                      f"one Python process, no server, no file): p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms over "
                      f"{doc['params']['n']} calls."]
    if doc["summary"]:
        counters = ("write_bytes", "cancelled_write_bytes", "read_bytes", "rchar", "wchar")
        lines += ["", "## Bytes per call (every process of the system's tree, /proc/PID/io over the c1 calls)", "",
                  "| system | " + " | ".join(counters) + " |", "|---|" + "---|" * len(counters)]
        for r in doc["summary"]:
            io = r["io_per_call"]
            lines.append(f"| {r['system']} | " + " | ".join(
                f"{io.get(k, 0)} ({io.get(k, 0) / doc['payload_bytes']:.2f}x)" for k in counters) + " |")
        lines += ["", "(x: times the payload.) write_bytes: bytes sent to storage (page cache dirtied); "
                  "cancelled_write_bytes: of those, dropped before writeback (a file deleted in time); read_bytes: "
                  "read from the device (page-cache hits are not counted, so ~0 on a warm machine); rchar/wchar: "
                  "every read()/write() syscall's bytes, loopback sockets and SQLite included."]
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
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--systems", default="infsh,cog,litserve,bentoml")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup-secs", type=float, default=1.0)
    ap.add_argument("--no-infsh-copied", dest="infsh_copied", action="store_false",
                    help="skip infsh with its output outside the scratch folder (copied, as before the move)")
    ap.add_argument("--no-store-split", dest="infsh_store_split", action="store_false",
                    help="skip the diagnostic infsh run with its task store on tmpfs (the payload's writes alone)")
    ap.add_argument("--note", default="The machine is shared with other work: compare the ratios of one run.")
    ap.add_argument("--out", default=os.path.join(B.BENCH, "results"))
    ap.add_argument("--date", default=dt.date.today().isoformat())
    ap.add_argument("--infsh-bin", default=os.environ.get("INFSH_BIN", os.path.join(B.ROOT, "target", "release", "infsh")))
    ap.add_argument("--infsh-python", default=os.environ.get("INFSH_BENCH_PYTHON", os.path.join(B.ROOT, ".venv", "bin", "python")))
    p = ap.parse_args()
    p.systems = p.systems.split(",")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, B._on_signal)
    os.makedirs(os.path.join(B.WORK, "tmp"), exist_ok=True)
    open(B.PIDS, "a").close()
    unavailable = {}
    avail = os.path.join(B.WORK, "available.json")
    if os.path.exists(avail):
        with open(avail) as f:
            unavailable = {k: v for k, v in json.load(f).items() if v is not True and k in p.systems}
    for s in p.systems:
        if s != "infsh" and not os.path.exists(B.venv_bin(s)):
            unavailable.setdefault(s, f"no virtual environment at {B.venv_bin(s)} (bench/run.sh installs it)")
    p.systems = [s for s in p.systems if s not in unavailable]
    machine = dict(cpu=B._cpu(), cpus=os.cpu_count(), mem_gib=B._mem_gib(), loadavg=B._loadavg())
    png, rows = make_png()
    B.log(f"input: {len(png)}-byte PNG, {WIDTH} x {HEIGHT}")
    results = []
    base = None
    try:
        base = direct(p, png)
        B.log(f"direct baseline: p50 {base['p50_ms']} ms")
    except Exception as e:  # reported, the systems still run
        B.log(f"direct baseline failed: {e}")
    try:
        cs = configs(p)
        for rnd in range(1, p.rounds + 1):
            for c in cs:
                results.append(run_config(c, p, rnd, png, rows))
    finally:
        B.stop_all()
    summary = summarize(results)
    doc = dict(date=p.date, payload_bytes=len(png), machine=machine, infsh_bin=p.infsh_bin, note=p.note,
               params=dict(rounds=p.rounds, n=p.n, warmup=p.warmup, concurrency=p.concurrency, duration_s=p.duration),
               results=results, summary=summary, direct=base, targets=targets(summary, len(png), base),
               unavailable=unavailable)
    os.makedirs(p.out, exist_ok=True)
    stem = os.path.join(p.out, f"{p.date}-image")
    with open(stem + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
