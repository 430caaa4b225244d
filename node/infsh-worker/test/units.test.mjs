// Unit tests of the Node worker's pure parts, under `node --test`
// (scripts/test.sh). The whole worker runs against real apps in
// crates/infsh-cli/tests/app_node.rs and tests/client/.
// The Zod 3 converter reads only `_def`, so Zod-3-shaped objects stand in
// for zod here (the real zod 3 runs in the end-to-end tests).

import { test } from "node:test";
import assert from "node:assert/strict";

import { schemaStem } from "../discovery.mjs";
import { errorLine, folderName } from "../runtime.mjs";
import { isZodSchema, toJsonSchema } from "../schema.mjs";
import { encode } from "../protocol.mjs";
import { SnapshotPacer } from "../snapshot-pacer.mjs";

const FILE = Symbol.for("inferencesh.fileSchema");

function zod3(def, optional = false) {
  return { _def: def, safeParseAsync() {}, isOptional: () => optional };
}

test("schema names follow the method name", () => {
  assert.equal(schemaStem("run"), "Run");
  assert.equal(schemaStem("generate"), "Generate");
  assert.equal(schemaStem("generate_image"), "GenerateImage");
  assert.equal(schemaStem("to-html"), "ToHtml");
});

test("scratch folder names match the host's rule", () => {
  assert.equal(folderName("call-1"), "call-1");
  assert.equal(folderName("a/b c"), "a_b_c");
  assert.equal(folderName(".x"), "c.x");
  assert.equal(folderName(""), "c");
});

test("errors are one line: Name: message", () => {
  assert.equal(errorLine(new RangeError("bad\n  value")), "RangeError: bad value");
  assert.equal(errorLine("plain"), "Error: plain");
});

test("NaN and infinities are sent as null", () => {
  assert.equal(encode({ a: NaN, b: Infinity, c: 1 }), '{"a":null,"b":null,"c":1}');
});

test("a Zod 3 object: required, defaults, descriptions, checks, files", async () => {
  const schema = zod3({
    typeName: "ZodObject",
    shape: () => ({
      text: zod3({ typeName: "ZodString", checks: [{ kind: "min", value: 2 }], description: "Text" }),
      n: zod3(
        {
          typeName: "ZodDefault",
          defaultValue: () => 3,
          innerType: zod3({ typeName: "ZodNumber", checks: [{ kind: "int" }, { kind: "max", value: 9, inclusive: true }] }),
        },
        true
      ),
      mode: zod3({ typeName: "ZodEnum", values: ["a", "b"] }),
      tags: zod3({ typeName: "ZodOptional", innerType: zod3({ typeName: "ZodArray", type: zod3({ typeName: "ZodString", checks: [] }) }) }, true),
      image: zod3({ typeName: "ZodEffects", [FILE]: true, schema: zod3({ typeName: "ZodString", checks: [] }) }),
      extra: zod3({ typeName: "ZodAny", description: "Anything" }, true),
    }),
  });
  assert.ok(isZodSchema(schema));
  assert.deepEqual(await toJsonSchema(schema, "input", async () => null), {
    type: "object",
    properties: {
      text: { type: "string", minLength: 2, description: "Text" },
      n: { type: "integer", maximum: 9, default: 3 },
      mode: { type: "string", enum: ["a", "b"] },
      tags: { type: "array", items: { type: "string" } },
      image: { type: "string", format: "file" },
      extra: { description: "Anything" },
    },
    required: ["text", "mode", "image"],
  });
});

test("a Zod 4 schema without a toJSONSchema is refused", async () => {
  const schema = { _zod: {}, safeParseAsync() {} };
  await assert.rejects(toJsonSchema(schema, "input", async () => null), /no toJSONSchema/);
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test("a stream's first yield goes at once, a burst as its newest when the interval is up", async () => {
  const sent = [];
  const pacer = new SnapshotPacer((s) => sent.push(s), 50);
  pacer.offer("a");
  assert.deepEqual(sent, ["a"]);
  pacer.offer("ab");
  pacer.offer("abc");
  assert.deepEqual(sent, ["a"], "yields within the interval are held");
  await sleep(150);
  assert.deepEqual(sent, ["a", "abc"]);
  await sleep(100);
  pacer.offer("abcd");
  assert.deepEqual(sent, ["a", "abc", "abcd"], "after a pause longer than the interval, at once");
  pacer.finish();
  await sleep(100);
  assert.deepEqual(sent, ["a", "abc", "abcd"]);
});

test("what a stream holds at its end is not sent", async () => {
  const sent = [];
  const pacer = new SnapshotPacer((s) => sent.push(s), 50);
  pacer.offer(1);
  pacer.offer(2);
  pacer.finish();
  await sleep(100);
  assert.deepEqual(sent, [1]);
});

test("a snapshot send that fails on the timer is thrown by the next offer or by finish", async () => {
  const send = (s) => {
    if (s === "too big") throw new Error("too large to send");
  };
  let pacer = new SnapshotPacer(send, 20);
  pacer.offer("ok");
  pacer.offer("too big");
  await sleep(60);
  assert.throws(() => pacer.offer("next"), /too large/);
  pacer = new SnapshotPacer(send, 20);
  pacer.offer("ok");
  pacer.offer("too big");
  await sleep(60);
  assert.throws(() => pacer.finish(), /too large/);
});
