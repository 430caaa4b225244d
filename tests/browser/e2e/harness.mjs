// The browser tests' fixtures: the real `infsh serve` (target/debug/infsh)
// on port 0 over copies of example and fixture apps, Debian's Chromium
// through playwright-core, screenshots into tests/browser/output/. Every
// server and browser started here is stopped by `stopAll()`.

import { spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { deflateSync } from "node:zlib";

import { chromium } from "playwright-core";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const OUTPUT = join(ROOT, "tests/browser/output");
const BIN = process.env.INFSH_BIN || join(ROOT, "target/debug/infsh");
const PYTHON = process.env.INFSH_TEST_PYTHON || join(ROOT, ".venv/bin/python");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

const running = [];

/**
 * Starts `infsh serve` over copies of `apps` (paths relative to the repo
 * root); resolves to {url} once it printed its address.
 */
export async function startServer(apps, { key } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "infsh-browser-"));
  for (const app of apps) cpSync(join(ROOT, app), join(dir, "apps", app.split("/").pop()), { recursive: true, filter: (src) => !src.includes("__pycache__") });
  const args = ["--json", "serve", "--host", "127.0.0.1", "--port", "0", "--apps", join(dir, "apps"), "--data-dir", join(dir, "data"), "--python", PYTHON, "--shutdown-grace", "2", "--cancel-grace", "2"];
  if (key) args.push("--api-key", key);
  const env = { ...process.env, INFSH_CACHE_DIR: join(dir, "cache"), NO_COLOR: "1" };
  for (const name of ["INFSH_API_KEYS", "INFSH_API_KEY", "INFSH_API_URL", "INFSH_ENGINE_CONFIG"]) delete env[name];
  const child = spawn(BIN, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stderr.on("data", (d) => (log += d));
  const server = { child, dir, log: () => log };
  running.push({ stop: () => stopServer(server) });
  const line = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`infsh serve printed no address in 60 s; log:\n${log}`)), 60_000);
    createInterface({ input: child.stdout }).once("line", (l) => {
      clearTimeout(timer);
      ok(l);
    });
    child.once("exit", (code) => fail(new Error(`infsh serve exited ${code}; log:\n${log}`)));
  });
  server.url = JSON.parse(line).url;
  return server;
}

async function stopServer(server) {
  if (server.child.exitCode === null) {
    const exited = new Promise((ok) => server.child.once("exit", ok));
    server.child.kill("SIGTERM");
    const timer = setTimeout(() => server.child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(server.dir, { recursive: true, force: true });
}

/** Debian's Chromium, headless (Playwright's own browsers are never used). */
export async function launch() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  running.push({ stop: () => browser.close() });
  return browser;
}

export async function stopAll() {
  for (const r of running.splice(0).reverse()) await r.stop().catch(() => {});
}

/** Screenshots `page` into tests/browser/output/<test>/<step>.png (the
 * whole page, or with `fullPage: false` the 1280x800 window: the README's). */
export async function shot(page, test, step, { fullPage = true } = {}) {
  const dir = join(OUTPUT, test);
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${step}.png`), fullPage });
}

/** A `width`×`height` RGB PNG (a colour gradient), encoded here. */
export function png(width, height) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    raw[row] = 0;
    for (let x = 0; x < width; x++) {
      raw[row + 1 + x * 3] = (x * 255) / width;
      raw[row + 2 + x * 3] = (y * 255) / height;
      raw[row + 3 + x * 3] = 128;
    }
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}

function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}
