// The serve loop of the Node worker: setup, calls, cancellation, shutdown,
// with the same messages and rules as python/infsh_worker/runtime.py
// (docs/protocol.md, "Messages").
//
// - setup: the config is checked against `AppSetup` when the app exports
//   one, then `app.setup(config, metadata)` runs. Setups are serialized; a
//   call that arrives while one runs waits for it.
// - call: the input is parsed with `<Name>Input` (defaults, transforms such
//   as `createFileSchema`'s File), then `app[name](input, ctx)` runs with
//   ctx = { signal, metadata, id }. An `async *` method sends `snapshot`s
//   of its yields (the first at once, then at most one per 10 ms, the
//   newest: snapshot-pacer.mjs) and `done` with the last one.
// - cancel: `app.onCancel(id)` is awaited when the app has it, then the
//   call's AbortSignal fires (a streaming call's generator is also closed
//   at its next yield) and the call ends with `failed`/`cancelled`. Code
//   that ignores the signal keeps running; a call that blocks the event
//   loop is the host's to kill, as for Python.
// - Output files: every `File` of `@inferencesh/app` in the returned value
//   is listed in `files` with its JSON pointer; the value itself is what
//   its `toJSON` gives, as the platform serializes it.
// - Scratch: inside a call `os.tmpdir()` is the call's own folder
//   `<spill>/scratch/<id>/` (the host removes it after copying the outputs;
//   crates/infsh-worker/src/scratch.rs), as Python's `tempfile` is.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AsyncLocalStorage } from "node:async_hooks";
import { syncBuiltinESMExports } from "node:module";

import { MessageTooLarge } from "./protocol.mjs";
import { SnapshotPacer } from "./snapshot-pacer.mjs";

const callContext = new AsyncLocalStorage();

/** "Name: message", on one line. */
export function errorLine(e) {
  if (e instanceof Error) {
    return `${e.name}: ${e.message}`.split(/\s+/).join(" ").trim();
  }
  return `Error: ${String(e)}`.split(/\s+/).join(" ");
}

/** Same rule as scratch.folder_name in Python and call_folder in Rust. */
export function folderName(id) {
  let name = [...String(id)].map((c) => (/^[A-Za-z0-9._-]$/.test(c) ? c : "_")).join("");
  if (!name || name.startsWith(".")) name = "c" + name;
  return name;
}

function installScratch(spillDir) {
  if (!spillDir) return;
  const root = path.join(spillDir, "scratch");
  const system = os.tmpdir;
  os.tmpdir = function tmpdir() {
    const id = callContext.getStore();
    if (id === undefined) return system();
    const folder = path.join(root, folderName(id));
    fs.mkdirSync(folder, { recursive: true });
    return folder;
  };
  // `import { tmpdir } from "node:os"` sees the replacement too.
  syncBuiltinESMExports();
}

function zodErrors(error, prefix) {
  return (error?.issues ?? []).map((issue) => ({
    loc: [prefix, ...(issue.path ?? [])].filter((p) => p !== "" && p !== undefined).join("."),
    msg: String(issue.message ?? "").split(/\s+/).join(" "),
  }));
}

function summarize(errors) {
  return errors.map((e) => (e.loc ? `${e.loc}: ${e.msg}` : e.msg)).join("; ");
}

function isFile(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    typeof value.toJSON === "function" &&
    value.constructor?.name === "File" &&
    ("uri" in value || "_path" in value)
  );
}

function escapePointer(token) {
  return String(token).replace(/~/g, "~0").replace(/\//g, "~1");
}

/** Every File in `value`, with its pointer (docs/protocol.md, `files`). */
function findFiles(value, pointer, out, depth) {
  if (depth > 64 || value === null || typeof value !== "object") return;
  if (isFile(value)) {
    const json = value.toJSON();
    let size = json.size ?? null;
    if (typeof json.path === "string") {
      try {
        size = fs.statSync(json.path).size;
      } catch {}
    }
    out.push({
      pointer,
      path: json.path ?? null,
      uri: json.uri ?? null,
      filename: json.filename ?? (json.path ? path.basename(json.path) : null),
      content_type: json.content_type ?? null,
      size,
    });
    return;
  }
  if (typeof value.toJSON === "function") return;
  if (Array.isArray(value)) {
    value.forEach((v, i) => findFiles(v, `${pointer}/${i}`, out, depth + 1));
    return;
  }
  for (const [k, v] of Object.entries(value)) findFiles(v, `${pointer}/${escapePointer(k)}`, out, depth + 1);
}

function serialize(value) {
  const files = [];
  findFiles(value, "", files, 0);
  const output = value === undefined ? {} : JSON.parse(JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v)) ?? "null");
  return { output, files };
}

class Cancelled extends Error {}

export class Runtime {
  constructor(channel, loaded, writeAndExit) {
    this.channel = channel;
    this.app = loaded.app;
    this.functions = new Map(loaded.functions.map((f) => [f.name, f]));
    this.setupSchema = loaded.setup.schema;
    this.writeAndExit = writeAndExit;
    this.setUp = false;
    this.everSetUp = false;
    this.setupChain = Promise.resolve();
    this.calls = new Map();
    installScratch(process.env.INFSH_SPILL_DIR);
  }

  send(msg) {
    this.channel.write(msg);
  }

  handle(msg) {
    switch (msg.type) {
      case "setup":
        this.setupChain = this.setupChain.then(() => this.setup(msg.config ?? {}, msg.metadata ?? {}));
        break;
      case "call":
        this.call(msg);
        break;
      case "cancel":
        this.cancel(msg.id);
        break;
      case "shutdown":
        this.shutdown();
        break;
      default:
        process.stderr.write(`infsh worker: ignoring an unknown message type ${JSON.stringify(msg.type)}\n`);
    }
  }

  async setup(config, metadata) {
    const started = performance.now();
    this.setUp = false;
    let parsed = config;
    if (this.setupSchema) {
      const result = await this.setupSchema.safeParseAsync(config);
      if (!result.success) {
        const errors = zodErrors(result.error, "");
        this.send({ type: "setup_failed", kind: "config", error: `invalid setup config: ${summarize(errors)}`, traceback: "" });
        return;
      }
      parsed = result.data;
    }
    try {
      if (typeof this.app.setup === "function") await this.app.setup(parsed, metadata);
    } catch (e) {
      this.send({ type: "setup_failed", kind: "app", error: errorLine(e), traceback: e?.stack ?? "" });
      return;
    }
    this.setUp = true;
    this.everSetUp = true;
    this.send({ type: "setup_done", seconds: (performance.now() - started) / 1000 });
  }

  failed(id, kind, error, traceback = "", errors) {
    const msg = { type: "failed", id, kind, error, traceback };
    if (errors) msg.errors = errors;
    this.send(msg);
  }

  async call(msg) {
    const { id, function: name } = msg;
    const controller = new AbortController();
    const state = { controller, cancelled: false, iterator: null };
    this.calls.set(id, state);
    try {
      await this.setupChain;
      // Cancelled while it waited for a setup: it never starts.
      if (state.cancelled) return;
      const fn = this.functions.get(name);
      if (!fn) {
        const known = [...this.functions.keys()].join(", ") || "none";
        return this.failed(id, "unknown_function", `unknown function '${name}'; this app's functions: ${known}`);
      }
      if (!this.setUp) return this.failed(id, "not_set_up", "the app is not set up: send a successful setup first");
      const parsed = await fn.input.safeParseAsync(msg.input ?? {});
      if (!parsed.success) {
        const errors = zodErrors(parsed.error, "");
        return this.failed(id, "input", `invalid input: ${summarize(errors)}`, "", errors);
      }
      const started = performance.now();
      const ctx = { signal: controller.signal, metadata: msg.metadata ?? {}, id };
      const result = await callContext.run(id, async () => {
        if (!fn.streaming) return this.app[name](parsed.data, ctx);
        const iterator = this.app[name](parsed.data, ctx);
        state.iterator = iterator;
        let last = {};
        // The first yield at once, then at most one snapshot per interval,
        // the newest (snapshot-pacer.mjs); serialized when yielded, as the
        // app may change the object afterwards.
        const pacer = new SnapshotPacer(({ output, files }) => {
          if (!state.cancelled) this.send({ type: "snapshot", id, output, files });
        });
        try {
          for await (const snapshot of iterator) {
            if (state.cancelled) break;
            last = snapshot;
            pacer.offer(serialize(snapshot));
          }
          pacer.finish();
        } finally {
          pacer.close();
        }
        return last;
      });
      if (state.cancelled) return;
      const problem = await this.checkOutput(fn, result);
      if (problem) return this.failed(id, "app", problem);
      this.sendDone(id, (performance.now() - started) / 1000, result);
    } catch (e) {
      if (state.cancelled) return;
      this.failed(id, "app", errorLine(e), e?.stack ?? "");
    } finally {
      this.calls.delete(id);
    }
  }

  async checkOutput(fn, value) {
    const result = await fn.output.safeParseAsync(value);
    if (result.success) return null;
    return `OutputError: the output of ${fn.name} does not match its output schema: ${summarize(zodErrors(result.error, ""))}`;
  }

  // A snapshot too large to send throws (the pacer's send), which fails the
  // call; a result too large is answered with `failed` here.
  sendDone(id, seconds, value) {
    const { output, files } = serialize(value);
    try {
      this.send({ type: "done", id, seconds, output, files });
    } catch (e) {
      if (!(e instanceof MessageTooLarge)) throw e;
      this.failed(id, "app", `OutputError: the output is too large to return: ${e.message}`);
    }
  }

  async cancel(id) {
    const state = this.calls.get(id);
    if (!state || state.cancelled) return;
    state.cancelled = true;
    try {
      if (typeof this.app.onCancel === "function") await this.app.onCancel(id);
    } catch (e) {
      process.stderr.write(`infsh worker: onCancel raised: ${errorLine(e)}\n`);
    }
    state.controller.abort(new Cancelled("cancelled"));
    state.iterator?.return?.().catch(() => {});
    this.failed(id, "cancelled", `call ${id} was cancelled`);
  }

  async shutdown() {
    let unloadError = null;
    if (this.everSetUp && typeof this.app.unload === "function") {
      try {
        await this.app.unload();
      } catch (e) {
        unloadError = errorLine(e);
      }
    }
    this.writeAndExit({ type: "bye", unload_error: unloadError }, 0);
  }
}
