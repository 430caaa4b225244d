// The playground page: hash routes (#/, #/app/NS/NAME[/FN], #/history,
// #/task/ID, #/engines), each drawn from the API with the user's key.
// Nothing is shown before the API answered: with keys on and none given,
// the page only asks for one.

import { Api, ApiError, explain, saveKey, savedKey } from "./api.js";
import { h, replace } from "./dom.js";
import { buildModel, fromValue, initialState } from "./form.js";
import { mountForm } from "./form_view.js";
import { jsonTree, renderOutput } from "./render.js";
import { snippets } from "./snippets.js";

const STATUS = { 0: "unknown", 1: "received", 2: "queued", 3: "dispatched", 4: "preparing", 5: "serving", 6: "setting up", 7: "running", 8: "cancelling", 9: "uploading", 10: "completed", 11: "failed", 12: "cancelled", 13: "rejected" };
const TERMINAL = 10;

let api = new Api();
const main = document.getElementById("main");
const notice = document.getElementById("notice");
// From history: {input, run} to fill in (and run) once the function's form is up.
let pending = null;
// The view being drawn; an older view's late answers are dropped.
let generation = 0;
// The stream of the task on screen, stopped when the view changes.
let following = null;

function say(message, kind = "error") {
  replace(notice, message ? h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, message) : null);
}

function setKeyField() {
  const input = document.getElementById("api-key");
  input.value = savedKey();
  document.getElementById("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    saveKey(input.value.trim());
    api = new Api(input.value.trim());
    route();
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    input.value = "";
    saveKey("");
    api = new Api("");
    route();
  });
}

/** Shows a failed call; a 401 empties the page down to the key request. */
function fail(err) {
  if (err instanceof ApiError && err.status === 401) {
    replace(main, h("section", { class: "panel", id: "needs-key" },
      h("h2", {}, "API key needed"),
      h("p", {}, explain(err)),
      api.key ? h("p", { class: "field-error" }, "The key given was refused.") : null));
    document.getElementById("api-key").focus();
    say(null);
    return;
  }
  say(err instanceof ApiError ? explain(err) : String(err));
}

async function route() {
  const gen = ++generation;
  following?.abort();
  following = null;
  say(null);
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("nav a")) a.toggleAttribute("aria-current", a.getAttribute("href") === `#/${parts[0] || ""}`);
  replace(main, h("p", { class: "hint" }, "Loading…"));
  try {
    if (parts[0] === "app" && parts.length >= 3) await appView(gen, `${parts[1]}/${parts[2]}`, parts[3]);
    else if (parts[0] === "history") await historyView(gen);
    else if (parts[0] === "task" && parts[1]) await taskView(gen, parts[1]);
    else if (parts[0] === "engines") await enginesView(gen);
    else await appsView(gen);
  } catch (err) {
    if (gen === generation) fail(err);
  }
}

// ------------------------------------------------------------------ apps

async function appsView(gen) {
  // /ready adds each app's workers and, when unhealthy, its last error.
  const [apps, ready] = await Promise.all([api.get("/apps"), api.get("/ready").catch(() => null)]);
  if (gen !== generation) return;
  const health = new Map((ready?.apps || []).map((a) => [a.id, a]));
  const list = h("ul", { class: "cards", id: "apps" });
  for (const app of apps) {
    const live = health.get(app.id) || {};
    const card = cardImage(app.images);
    list.append(h("li", { class: "card", dataset: { app: app.id } },
      card ? h("img", { src: card, alt: "", class: "card-image", loading: "lazy" }) : null,
      h("h3", {}, h("a", { href: `#/app/${app.id}` }, app.id)),
      app.category ? h("p", { class: "hint" }, app.category) : null,
      h("p", {}, app.description || ""),
      h("p", {}, h("span", { class: `state state-${app.state}` }, app.state),
        app.functions ? ` · ${app.functions.length} function${app.functions.length === 1 ? "" : "s"}` : "",
        live.replicas ? ` · ${live.replicas} worker${live.replicas === 1 ? "" : "s"}, ${live.busy} busy, ${live.queued} queued` : ""),
      live.last_error ? h("p", { class: "field-error" }, `Last error: ${live.last_error}`) : null));
  }
  replace(main, h("section", {}, h("h2", {}, "Apps"), apps.length ? list : h("p", {}, "No apps are hosted.")));
}

/** inf.yml's card image, when it is a URL the browser can load. */
function cardImage(images) {
  const url = images && typeof images === "object" ? images.card || images.thumbnail : typeof images === "string" ? images : null;
  return typeof url === "string" && /^(https?:|data:image\/)/.test(url) ? url : null;
}

function orderedFunctions(detail) {
  const names = Object.keys(detail.functions || {}).sort();
  const def = detail.default_function || (names.includes("run") ? "run" : null);
  return def && names.includes(def) ? [def, ...names.filter((n) => n !== def)] : names;
}

async function appView(gen, appId, fnName) {
  let detail;
  try {
    detail = await api.get(`/apps/${appId}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 503 && err.problem.traceback) {
      replace(main, h("section", {}, h("h2", {}, appId), h("div", { class: "notice error", role: "alert" }, explain(err)), h("pre", { class: "text" }, err.problem.traceback)));
      return;
    }
    throw err;
  }
  if (gen !== generation) return;
  const fns = orderedFunctions(detail);
  const fn = fnName && fns.includes(fnName) ? fnName : fns[0];
  const schema = detail.functions[fn];
  const tabs = h("nav", { class: "tabs", "aria-label": "Functions" }, fns.map((f, i) =>
    h("a", { href: `#/app/${appId}/${f}`, "aria-current": f === fn ? "page" : false, class: "tab" }, f, i === 0 && f === (detail.default_function || "run") ? h("span", { class: "hint" }, " (default)") : null)));

  const inputModel = buildModel(schema.input_schema || { type: "object", properties: {} });
  const formBox = h("div");
  const pend = pending;
  pending = null;
  const form = mountForm(formBox, inputModel, pend ? fromValue(inputModel, pend.input) : initialState(inputModel), { upload: (f) => api.upload(f) });

  const setupProps = detail.setup_schema?.properties && Object.keys(detail.setup_schema.properties).length;
  const setupBox = h("div");
  const setupModel = setupProps ? buildModel(detail.setup_schema) : null;
  const setupForm = setupModel ? mountForm(setupBox, setupModel, initialState(setupModel), { upload: (f) => api.upload(f) }) : null;
  // Setup is sent only once changed: the defaults are what the app gets
  // without one, and a different setup would make the worker set up again.
  const setupUntouched = setupForm ? JSON.stringify(setupForm.value()) : null;

  const runBtn = h("button", { type: "submit", id: "run" }, "Run");
  const cancelBtn = h("button", { type: "button", id: "cancel", class: "secondary", disabled: true }, "Cancel");
  const result = h("section", { class: "result", id: "result", "aria-live": "polite" });
  const codeBox = h("div");
  const code = h("details", { class: "code", ontoggle: () => drawCode() }, h("summary", {}, "Use this from code"), codeBox);
  const drawCode = () => {
    if (!code.open) return;
    const s = snippets({ base: location.origin, app: appId, fn, input: form.value() ?? {}, keyed: Boolean(api.key) });
    replace(codeBox, [["curl", s.curl], ["Python (inferencesh)", s.python], ["infsh app run", s.cli]].map(([t, text]) =>
      h("div", { class: "snippet" }, h("h4", {}, t), h("pre", { tabindex: 0 }, h("code", {}, text)),
        h("button", { type: "button", class: "secondary", onclick: () => navigator.clipboard?.writeText(text) }, "Copy"))));
  };
  formBox.addEventListener("input", drawCode);
  formBox.addEventListener("change", drawCode);

  const formEl = h("form", { id: "run-form", novalidate: true, onsubmit: (e) => { e.preventDefault(); run(); } },
    setupForm ? h("details", { class: "setup" }, h("summary", {}, "Setup (app configuration)"), setupBox) : null,
    h("h3", {}, "Input"), formBox,
    h("div", { class: "actions" }, runBtn, cancelBtn));

  async function run() {
    form.clearErrors();
    setupForm?.clearErrors();
    say(null);
    runBtn.disabled = true;
    try {
      await form.pending();
      if (setupForm) await setupForm.pending();
      const body = { app: appId, function: fn, input: form.value() ?? {} };
      if (setupForm && JSON.stringify(setupForm.value()) !== setupUntouched) body.setup = setupForm.value() ?? {};
      const started = performance.now();
      const task = await api.post("/apps/run", body);
      history.replaceState(null, "", location.hash);
      await watch(task, result, cancelBtn, started);
    } catch (err) {
      if (err instanceof ApiError && err.status === 422 && err.problem.errors) {
        const target = err.problem.what === "setup" && setupForm ? setupForm : form;
        if (target === setupForm) formEl.querySelector("details.setup").open = true;
        const rest = target.showErrors(err.problem);
        say(rest.length ? `${explain(err)}` : `The ${err.problem.what || "input"} is invalid: see the marked fields.`);
      } else fail(err);
    } finally {
      runBtn.disabled = false;
    }
  }

  replace(main, h("section", {},
    h("p", {}, h("a", { href: "#/" }, "← Apps")),
    h("h2", {}, appId), detail.description ? h("p", {}, detail.description) : null,
    h("p", {}, h("span", { class: `state state-${detail.state}` }, detail.state)),
    tabs,
    h("div", { class: "workspace" },
      h("div", { class: "pane" }, schema.description ? h("p", { class: "field-desc" }, schema.description) : null, formEl, code),
      h("div", { class: "pane" }, h("h3", {}, "Result"), result))));
  if (pend?.run) run();
}

/** Follows `task` on screen until it ends: status, logs, snapshots, output. */
async function watch(task, box, cancelBtn, started = performance.now()) {
  following?.abort();
  const ctrl = new AbortController();
  following = ctrl;
  const status = h("p", {}, "Status: ", h("strong", { id: "task-status" }, STATUS[task.status] || task.status), " · task ", h("a", { href: `#/task/${task.id}` }, h("code", {}, task.id)));
  const logs = h("pre", { class: "logs", id: "logs", tabindex: 0, "aria-label": "Logs" });
  const output = h("div", { id: "output" });
  const timing = h("p", { class: "hint", id: "timings" });
  replace(box, status, h("h4", {}, "Logs"), logs, h("h4", {}, "Output"), output, timing);
  cancelBtn.disabled = false;
  cancelBtn.onclick = async () => {
    cancelBtn.disabled = true;
    try {
      await api.post(`/tasks/${task.id}/cancel`);
    } catch (err) {
      fail(err);
    }
  };
  let lastOutput = null;
  const show = (t) => {
    status.querySelector("#task-status").textContent = STATUS[t.status] || String(t.status);
    box.dataset.status = STATUS[t.status] || String(t.status);
    // One line per log entry, whether or not the app ended it with a newline.
    if (t.logs) logs.textContent = t.logs.map((l) => (l.content.endsWith("\n") ? l.content : l.content + "\n")).join("");
    const out = JSON.stringify(t.output);
    if (t.output && out !== lastOutput) {
      lastOutput = out;
      replace(output, renderOutput(t.output));
    }
    if (t.status >= TERMINAL) {
      cancelBtn.disabled = true;
      if (t.error) replace(output, h("div", { class: "notice error", role: "alert" }, t.error));
      const secs = (Date.parse(t.updated_at) - Date.parse(t.created_at)) / 1000;
      timing.textContent = `Server time ${Number.isFinite(secs) ? secs.toFixed(2) : "?"} s · in this page ${((performance.now() - started) / 1000).toFixed(2)} s`;
    }
  };
  show(task);
  if (task.status >= TERMINAL) return;
  try {
    await api.follow(task.id, show, ctrl.signal);
  } finally {
    if (following === ctrl) following = null;
  }
}

// --------------------------------------------------------------- history

async function historyView(gen) {
  const page = await api.get("/tasks?limit=50");
  if (gen !== generation) return;
  const rows = page.items.map((t) => h("tr", {},
    h("td", {}, h("a", { href: `#/task/${t.id}` }, h("code", {}, t.id.slice(0, 8)))),
    h("td", {}, `${t.app}:${t.function}`),
    h("td", {}, h("span", { class: `status status-${t.status}` }, STATUS[t.status] || t.status)),
    h("td", {}, new Date(t.created_at).toLocaleString()),
    h("td", {}, h("button", { type: "button", class: "secondary", onclick: () => reopen(t, true) }, "Re-run"))));
  replace(main, h("section", {}, h("h2", {}, "History"),
    rows.length ? h("table", { class: "history" }, h("thead", {}, h("tr", {}, ["Task", "Function", "Status", "Created", ""].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows)) : h("p", {}, "No tasks yet.")));
}

function reopen(t, run) {
  pending = { input: t.input || {}, run };
  location.hash = `#/app/${t.app}/${t.function}`;
}

async function taskView(gen, id) {
  const t = await api.get(`/tasks/${encodeURIComponent(id)}`);
  if (gen !== generation) return;
  const box = h("section", { class: "result", id: "result" });
  const cancelBtn = h("button", { type: "button", class: "secondary", id: "cancel", disabled: true }, "Cancel");
  const openBtn = h("button", { type: "button", class: "secondary", onclick: () => reopen(t, false) }, "Open with this input");
  replace(main, h("section", {},
    h("p", {}, h("a", { href: "#/history" }, "← History")),
    h("h2", {}, `${t.app}:${t.function}`),
    h("div", { class: "actions" }, h("button", { type: "button", onclick: () => reopen(t, true) }, "Re-run"), openBtn, cancelBtn),
    h("h3", {}, "Input"), jsonTree(t.input, true),
    box));
  await watch(t, box, cancelBtn);
}

// --------------------------------------------------------------- engines

async function enginesView(gen) {
  const [engines, workers] = await Promise.all([api.get("/engines"), api.get("/workers").catch(() => [])]);
  if (gen !== generation) return;
  replace(main, h("section", {}, h("h2", {}, "Engines"),
    engines.map((e) => h("article", { class: "panel" },
      h("h3", {}, e.name, e.draining ? " (draining)" : ""),
      h("p", {}, `inventory: ${e.inventory} · CPU slots: ${e.cpu_slots ?? "unlimited"} · waiting for a slot: ${e.tasks_waiting_for_slot} · evictions: ${e.evictions_total}`),
      h("table", {}, h("thead", {}, h("tr", {}, ["Slot", "Kind", "GPUs", "Replicas"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, e.slots.map((s) => h("tr", {},
          h("td", {}, s.name), h("td", {}, s.kind),
          h("td", {}, (s.gpus || []).map((g) => `#${g.index} ${g.name}${g.vram_total_gb ? ` (${g.vram_used_gb ?? "?"}/${g.vram_total_gb} GB, ${g.utilization_percent ?? "?"}%)` : ""}`).join(", ") || "—"),
          h("td", {}, (s.replicas || []).join(", ") || "—")))))),
    ),
    h("h3", {}, "Workers"),
    (workers || []).length ? jsonTree(workers, true) : h("p", {}, "No workers are running.")));
}

// ------------------------------------------------------------------ boot

window.addEventListener("hashchange", route);
setKeyField();
route();
