// The playground's pure modules (form generator, snippets), under node's
// own test runner: `node --test tests/browser/unit`.
import assert from "node:assert/strict";
import { test } from "node:test";

import { buildModel, collect, fieldErrors, fieldId, fromValue, initialState, itemModel, parentPath, pathsOf } from "../../../crates/infsh-server/src/web/form.js";
import { shellQuote, snippets } from "../../../crates/infsh-server/src/web/snippets.js";

// The validation-app fixture's `run` schema, as pydantic writes it.
const schema = {
  $defs: { Options: { properties: { seed: { description: "random seed", title: "Seed", type: "integer" } }, required: ["seed"], title: "Options", type: "object" } },
  properties: {
    prompt: { description: "the prompt", title: "Prompt", type: "string" },
    steps: { default: 10, maximum: 50, minimum: 1, title: "Steps", type: "integer" },
    mode: { default: "fast", enum: ["fast", "slow"], title: "Mode", type: "string" },
    options: { anyOf: [{ $ref: "#/$defs/Options" }, { type: "null" }], default: null },
    tags: { default: [], items: { type: "string" }, title: "Tags", type: "array" },
    image: { contentMediaType: "image/*", format: "file", title: "Image", type: "string" },
    ratio: { type: "number", exclusiveMinimum: 0, title: "Ratio" },
    value: { anyOf: [{ type: "integer" }, { type: "string" }], title: "Value" },
    flag: { type: "boolean", default: true, title: "Flag" },
    extra: { type: "object", additionalProperties: true, title: "Extra" },
  },
  required: ["prompt", "image"],
  title: "RunInput",
  type: "object",
};

const byKey = (m) => Object.fromEntries(m.fields.map((f) => [f.key, f]));

test("every schema construct gets its kind", () => {
  const m = buildModel(schema);
  assert.equal(m.kind, "object");
  const f = byKey(m);
  assert.equal(f.prompt.kind, "text"); // a prompt is multiline
  assert.equal(f.prompt.required, true);
  assert.deepEqual([f.steps.kind, f.steps.min, f.steps.max, f.steps.step, f.steps.default], ["integer", 1, 50, 1, 10]);
  assert.deepEqual([f.mode.kind, f.mode.options], ["enum", ["fast", "slow"]]);
  // anyOf [X, null] is X, optional.
  assert.deepEqual([f.options.kind, f.options.nullable, f.options.fields[0].path], ["object", true, "options.seed"]);
  assert.deepEqual([f.tags.kind, f.tags.items.kind, f.tags.items.path], ["array", "string", "tags[0]"]);
  assert.deepEqual([f.image.kind, f.image.accept], ["file", "image/*"]);
  assert.deepEqual([f.ratio.kind, f.ratio.step], ["number", "any"]);
  assert.deepEqual([f.value.kind, f.value.variants.map((v) => v.label)], ["union", ["integer", "string"]]);
  assert.equal(f.flag.kind, "boolean");
  assert.equal(f.extra.kind, "json");
});

test("the initial state holds the defaults, and an untouched form sends only what is required", () => {
  const m = buildModel(schema);
  const s = initialState(m);
  assert.equal(s.steps, "10");
  assert.equal(s.mode, "fast");
  assert.equal(s.options, null);
  assert.equal(s.flag, true);
  assert.deepEqual(s.value, { variant: 0, value: "" });
  s.prompt = "a cat";
  s.image = "http://127.0.0.1:1/files/abc/pic.png";
  assert.deepEqual(collect(m, s), { prompt: "a cat", steps: 10, mode: "fast", tags: [], image: "http://127.0.0.1:1/files/abc/pic.png", flag: true });
});

test("numbers are parsed, and one that does not parse is sent as typed for the server to name", () => {
  const m = buildModel(schema);
  const s = initialState(m);
  s.steps = "12";
  s.ratio = "0.5";
  assert.equal(collect(m, s).steps, 12);
  assert.equal(collect(m, s).ratio, 0.5);
  s.steps = "1e999";
  assert.equal(collect(m, s).steps, "1e999");
  s.steps = "";
  assert.equal("steps" in collect(m, s), false);
});

test("arrays, optional objects and unions collect their parts", () => {
  const m = buildModel(schema);
  const s = initialState(m);
  s.tags.push("a", "b");
  s.options = { seed: "7" };
  s.value = { variant: 1, value: "x" };
  s.extra = '{"k": [1, 2]}';
  const v = collect(m, s);
  assert.deepEqual(v.tags, ["a", "b"]);
  assert.deepEqual(v.options, { seed: 7 });
  assert.equal(v.value, "x");
  assert.deepEqual(v.extra, { k: [1, 2] });
});

test("a past input fills the form back (re-run)", () => {
  const m = buildModel(schema);
  const input = { prompt: "p", steps: 3, options: { seed: 5 }, tags: ["t"], value: 4, image: { uri: "http://h/f.png" }, extra: { a: 1 } };
  const s = fromValue(m, input);
  assert.equal(s.steps, "3");
  assert.deepEqual(s.value, { variant: 0, value: "4" });
  assert.equal(s.image, "http://h/f.png");
  assert.deepEqual(collect(m, s), { prompt: "p", steps: 3, mode: "fast", options: { seed: 5 }, tags: ["t"], image: "http://h/f.png", value: 4, flag: true, extra: { a: 1 } });
});

test("item models are re-rooted at their index", () => {
  const m = buildModel({ type: "object", properties: { pts: { type: "array", items: { type: "object", properties: { x: { type: "number" } } } } } });
  const pts = m.fields[0];
  assert.equal(itemModel(pts, 3).path, "pts[3]");
  assert.equal(itemModel(pts, 3).fields[0].path, "pts[3].x");
});

test("422 paths land on their field, or on the nearest drawn parent, or above the form", () => {
  const m = buildModel(schema);
  const s = initialState(m);
  s.tags.push("a");
  const paths = pathsOf(m, s);
  assert.ok(paths.has("tags[0]"));
  assert.ok(!paths.has("options.seed")); // options is off
  const errs = fieldErrors({ errors: [
    { path: "steps", message: "must be at most 50" },
    { path: "extra.k.deep", message: "bad" },
    { path: "options.seed", message: "required" },
    { path: "", message: "unknown field zzz" },
  ] }, paths);
  assert.deepEqual(errs.get("steps"), ["must be at most 50"]);
  assert.deepEqual(errs.get("extra"), ["bad"]);
  assert.deepEqual(errs.get("options"), ["required"]);
  assert.deepEqual(errs.get(""), ["unknown field zzz"]);
  assert.equal(parentPath("a.b[2]"), "a.b");
  assert.equal(parentPath("a"), "");
});

test("field ids are distinct per path and safe as DOM ids", () => {
  const ids = ["a.b", "a_b", "a[0]", "a[0].b"].map(fieldId);
  assert.equal(new Set(ids).size, 4);
  for (const id of ids) assert.match(id, /^[A-Za-z0-9_-]+$/);
});

test("snippets carry the input, quote it for the shell, and never the key", () => {
  const s = snippets({ base: "http://127.0.0.1:8080", app: "infsh/image-app", fn: "upscale", input: { note: "it's", scale: 2 }, keyed: true });
  assert.match(s.curl, /-d '\{"app":"infsh\/image-app","function":"upscale","input":\{"note":"it'\\''s","scale":2\},"wait":true\}'/);
  assert.match(s.curl, /Bearer \$INFSH_API_KEY/);
  assert.match(s.python, /"note": "it's",\n {8}"scale": 2,/);
  assert.match(s.python, /base_url="http:\/\/127.0.0.1:8080"/);
  assert.match(s.cli, /^INFSH_API_KEY=… infsh app run 'infsh\/image-app' --api-url 'http:\/\/127.0.0.1:8080'/);
  assert.equal(shellQuote("a'b"), "'a'\\''b'");
  const open = snippets({ base: "http://h", app: "a/b", fn: "run", input: {}, keyed: false });
  assert.doesNotMatch(open.curl, /Authorization/);
});
