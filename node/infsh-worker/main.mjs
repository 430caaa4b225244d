// Entry point of the Node worker: `node <runtime>/infsh_worker_node/main.mjs`,
// started by the host (crates/infsh-worker/src/spawn.rs) with the same
// environment and fd 3 channel as the Python worker (docs/protocol.md). It
// imports the app's entry module (`inference.js` or `src/inference.js`),
// discovers its functions (discovery.mjs), sends `ready` (or `load_failed`
// and exits 1), then serves setup, calls, cancels and shutdown (runtime.mjs).
//
// Exit statuses as for Python: 0 after `bye` or when the host closes the
// channel, 1 after `load_failed`, 2 on a protocol error, 3 on an internal
// error. Anything else comes from the app (`process.exit(3)` included).

import fs from "node:fs";
import path from "node:path";
import { register } from "node:module";
import { pathToFileURL } from "node:url";

import { Channel } from "./protocol.mjs";
import { DiscoveryError, discoverFunctions, discoverSetup } from "./discovery.mjs";
import { Runtime, errorLine } from "./runtime.mjs";

export const PROTOCOL_VERSION = 1;
const ENTRIES = ["inference.js", path.join("src", "inference.js")];

const appDir = process.env.INFSH_APP_DIR || process.cwd();
const nodeModules = process.env.INFSH_NODE_MODULES || null;

const fallbacks = [pathToFileURL(path.join(appDir, "package.json")).href];
if (nodeModules) fallbacks.push(pathToFileURL(path.join(path.dirname(nodeModules), "package.json")).href);
register("./resolve-hook.mjs", import.meta.url, { data: { fallbacks } });

let runtime = null;
const early = [];
function hostGone() {
  // Nobody is left to answer to.
  process.exit(0);
}
const fd = Number(process.env.INFSH_PROTOCOL_FD || "3");
let channel;
try {
  fs.fstatSync(fd);
  channel = new Channel(fd, process.env.INFSH_SPILL_DIR, (msg) => (runtime ? runtime.handle(msg) : early.push(msg)), hostGone);
} catch (e) {
  fs.writeSync(2, `infsh worker: protocol fd ${fd} is not open: ${e.message}\n`);
  process.exit(2);
}

class LoadFailed extends Error {
  constructor(kind, error, traceback = "") {
    super(error);
    this.kind = kind;
    this.error = error;
    this.traceback = traceback;
  }
}

let zod4Loaded;
/** Zod 4's toJSONSchema from the app's own zod (resolve-hook.mjs finds it), or null. */
function zod4() {
  zod4Loaded ??= (async () => {
    for (const specifier of ["zod/v4", "zod"]) {
      try {
        const mod = await import(specifier);
        const fn = mod.toJSONSchema ?? mod.z?.toJSONSchema;
        if (typeof fn === "function") return fn;
      } catch {}
    }
    return null;
  })();
  return zod4Loaded;
}

function sdkVersion() {
  for (const base of [path.join(appDir, "node_modules"), nodeModules]) {
    if (!base) continue;
    try {
      return JSON.parse(fs.readFileSync(path.join(base, "@inferencesh", "app", "package.json"), "utf8")).version ?? null;
    } catch {}
  }
  return null;
}

async function load() {
  const entry = ENTRIES.map((e) => path.join(appDir, e)).find((p) => fs.existsSync(p));
  if (!entry) {
    throw new LoadFailed("no_inference_py", `no inference.js or src/inference.js in ${appDir}`);
  }
  let mod;
  try {
    mod = await import(pathToFileURL(entry).href);
  } catch (e) {
    throw new LoadFailed("import_error", errorLine(e), e?.stack ?? "");
  }
  const AppClass = mod.App;
  if (typeof AppClass !== "function" || !AppClass.prototype) {
    throw new LoadFailed("no_app_class", `${path.relative(appDir, entry)} exports no \`App\` class`);
  }
  let functions, setup;
  try {
    functions = await discoverFunctions(mod, AppClass, zod4);
    setup = await discoverSetup(mod, zod4);
  } catch (e) {
    if (e instanceof DiscoveryError) throw new LoadFailed("import_error", e.message);
    throw new LoadFailed("import_error", `cannot inspect App: ${errorLine(e)}`, e?.stack ?? "");
  }
  let app;
  try {
    app = new AppClass();
  } catch (e) {
    throw new LoadFailed("app_init_error", errorLine(e), e?.stack ?? "");
  }
  return { app, functions, setup };
}

function writeAndExit(msg, code) {
  try {
    channel.write(msg);
  } catch {}
  channel.socket.end(() => process.exit(code));
  // A host that stopped reading must not keep us alive.
  setTimeout(() => process.exit(code), 2000).unref();
}

process.on("unhandledRejection", (reason) => {
  // Python's equivalent (an exception in a background task) only logs.
  fs.writeSync(2, `infsh worker: unhandled promise rejection: ${reason?.stack ?? reason}\n`);
});

try {
  const loaded = await load();
  runtime = new Runtime(channel, loaded, writeAndExit);
  channel.write({
    type: "ready",
    protocol: PROTOCOL_VERSION,
    pid: process.pid,
    python: process.versions.node,
    runtime: "node",
    sdk_version: sdkVersion(),
    app_class: "App",
    functions: loaded.functions.map(({ name, streaming, is_async, accepts_metadata, entry }) => ({
      name,
      streaming,
      is_async,
      accepts_metadata,
      entry,
    })),
    setup_schema: loaded.setup.json,
    has_on_cancel: typeof loaded.app.onCancel === "function",
  });
  for (const msg of early.splice(0)) runtime.handle(msg);
} catch (e) {
  if (!(e instanceof LoadFailed)) {
    fs.writeSync(2, `infsh worker: internal error: ${e?.stack ?? e}\n`);
    process.exit(3);
  }
  fs.writeSync(2, `infsh worker: ${e.error}\n`);
  writeAndExit({ type: "load_failed", kind: e.kind, error: e.error, traceback: e.traceback }, 1);
}
