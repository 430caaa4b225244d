// The web playground in a real headless Chromium against the real
// `infsh serve` with real Python workers: upload and upscale an image, a
// streaming function's text growing, a 422 beside its field, cancelling a
// long task, history re-run, a phone-width layout, and with keys on, a
// page that shows nothing until it has one. Screenshots of each step go to
// tests/browser/output/.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { launch, png, shot, startServer, stopAll } from "./harness.mjs";

after(stopAll);

describe("playground, no keys", () => {
  let server;
  let browser;
  let page;
  before(async () => {
    [server, browser] = await Promise.all([
      startServer(["examples/image-app", "tests/fixtures/apps/functions-variety", "tests/fixtures/apps/slow"]),
      launch(),
    ]);
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("pageerror", (e) => console.error("page error:", e));
  });

  test("upscale: choose the function, upload a PNG, run, and see the image at twice its size", async () => {
    await page.goto(server.url + "/");
    await page.getByRole("link", { name: "infsh/image-app" }).click();
    await page.getByRole("link", { name: "upscale" }).click();
    await page.getByLabel("Scale").waitFor();
    await shot(page, "upscale", "01-form");
    await page.locator('input[type="file"]').setInputFiles({ name: "small.png", mimeType: "image/png", buffer: png(96, 64) });
    await page.getByText("uploaded small.png").waitFor();
    // The local preview shows the chosen image before it runs.
    await page.locator(".file-preview img").waitFor();
    await shot(page, "upscale", "02-uploaded");
    await page.getByRole("button", { name: "Run" }).click();
    const img = page.locator("#output img");
    await img.waitFor();
    await page.waitForFunction(() => document.querySelector("#output img")?.complete && document.querySelector("#output img").naturalWidth > 0);
    const size = await img.evaluate((el) => [el.naturalWidth, el.naturalHeight]);
    assert.deepEqual(size, [192, 128]);
    assert.equal(await page.locator("#task-status").textContent(), "completed");
    assert.equal(await page.locator('#output [data-field="width"]').textContent(), "192");
    await page.getByRole("link", { name: /Download/ }).first().waitFor();
    await shot(page, "upscale", "03-output", { fullPage: false });
    await page.locator("details.code summary").click();
    // The snippets are drawn on the `toggle` event, which fires after the
    // click returns: wait for them before reading.
    await page.locator("details.code pre").first().waitFor();
    assert.match(await page.locator("details.code").textContent(), /"function":"upscale"/);
    await shot(page, "upscale", "04-code");
  });

  test("a streaming function's text grows on screen", async () => {
    await page.goto(server.url + "/#/app/tests/functions-variety/stream_fn");
    await page.getByLabel("Delay").fill("0.8");
    // Record every text the output shows, as the page draws it.
    await page.evaluate(() => {
      window.__seen = [];
      new MutationObserver(() => {
        const t = document.querySelector('#output [data-field="text"]')?.textContent;
        if (t && window.__seen.at(-1) !== t) window.__seen.push(t);
      }).observe(document.getElementById("result"), { subtree: true, childList: true, characterData: true });
    });
    await page.getByRole("button", { name: "Run" }).click();
    await page.waitForFunction(() => window.__seen.length >= 1 && window.__seen.at(-1) !== "abc");
    await shot(page, "streaming", "01-partial");
    await page.locator('#result[data-status="completed"]').waitFor();
    await shot(page, "streaming", "02-done");
    // Snapshots are latest-value: one may be passed over, never reordered.
    const seen = await page.evaluate(() => window.__seen);
    assert.ok(seen.length >= 2, `only ${JSON.stringify(seen)} was shown`);
    assert.equal(seen.at(-1), "abc");
    seen.reduce((prev, t) => (assert.ok(t.startsWith(prev) && t.length > prev.length, JSON.stringify(seen)), t));
  });

  test("an invalid number shows the server's error beside its field", async () => {
    await page.goto(server.url + "/#/app/tests/functions-variety/iter_fn");
    await page.getByLabel("N", { exact: true }).fill("1000");
    // From the keyboard: Enter in a field runs the function.
    await page.getByLabel("N", { exact: true }).press("Enter");
    const err = page.locator('[data-path="n"] .field-error');
    await err.waitFor();
    assert.match(await err.textContent(), /at most 100/);
    assert.equal(await page.getByLabel("N", { exact: true }).getAttribute("aria-invalid"), "true");
    // The field with the error has the focus, for keyboard users.
    assert.equal(await page.evaluate(() => document.activeElement.id), "f-n");
    await shot(page, "validation", "01-field-error");
  });

  test("a long task is cancelled from the page", async () => {
    await page.goto(server.url + "/#/app/tests/slow/nap");
    await page.getByLabel("Seconds").fill("60");
    await page.getByLabel("Label").fill("long");
    await page.getByRole("button", { name: "Run" }).click();
    await page.locator("#logs").getByText("napping long").waitFor({ timeout: 30_000 });
    await shot(page, "cancel", "01-running");
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.locator('#result[data-status="cancelled"]').waitFor({ timeout: 30_000 });
    await shot(page, "cancel", "02-cancelled");
  });

  test("history lists the tasks and re-runs one with its input", async () => {
    await page.goto(server.url + "/#/history");
    const row = page.locator("tr", { hasText: "tests/functions-variety:stream_fn" }).first();
    await row.waitFor();
    await shot(page, "history", "01-list");
    await row.getByRole("button", { name: "Re-run" }).click();
    await page.locator('#result[data-status="completed"]').waitFor();
    assert.equal(await page.getByLabel("Delay").inputValue(), "0.8");
    assert.equal(await page.locator('#output [data-field="text"]').textContent(), "abc");
    await shot(page, "history", "02-rerun");
  });

  test("at phone width the form and result stack without sideways scrolling", async () => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    await phone.goto(server.url + "/#/app/infsh/image-app/generate");
    await phone.getByRole("button", { name: "Run" }).waitFor();
    const [scroll, width] = await phone.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(scroll <= width, `page is ${scroll}px wide in a ${width}px window`);
    await shot(phone, "phone", "01-form");
    await phone.close();
  });

  test("the engines page lists this server's engine", async () => {
    await page.goto(server.url + "/#/engines");
    await page.getByRole("heading", { name: "Engines" }).waitFor();
    await page.locator("article.panel h3").first().waitFor();
    await shot(page, "engines", "01-list");
  });
});

describe("playground, keys on", () => {
  test("the page asks for a key and shows nothing before it has one", async () => {
    const [server, browser] = await Promise.all([startServer(["tests/fixtures/apps/slow"], { key: "sesame" }), launch()]);
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(server.url + "/");
    await page.locator("#needs-key").waitFor();
    assert.equal(await page.locator("#apps").count(), 0);
    assert.doesNotMatch(await page.content(), /tests\/slow/);
    await shot(page, "keys", "01-asks");
    await page.getByLabel("API key").fill("wrong");
    await page.getByRole("button", { name: "Use key" }).click();
    await page.getByText("The key given was refused.").waitFor();
    await page.getByLabel("API key").fill("sesame");
    await page.getByRole("button", { name: "Use key" }).click();
    await page.getByRole("link", { name: "tests/slow" }).waitFor();
    // The key stays in this browser for the next visit.
    await page.reload();
    await page.getByRole("link", { name: "tests/slow" }).waitFor();
    await shot(page, "keys", "02-with-key");
  });
});
