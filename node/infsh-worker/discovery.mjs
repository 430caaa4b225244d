// Which methods of `App` are functions, and their schemas (docs/writing-apps.md,
// "JavaScript apps"). The rule, exactly:
// - a function is a method of the exported `App` class (its prototype chain
//   up to Object.prototype), not `constructor`, `setup`, `unload` or
//   `onCancel`, whose name does not start with `_`,
// - that has an exported Zod schema `<Name>Input` in the entry module, where
//   `<Name>` is the method name with its first letter, and each letter after
//   `_` or `-`, upper-cased and the `_`/`-` dropped (`run` -> `RunInput`,
//   `generate_image` -> `GenerateImageInput`); its `<Name>Output` must be
//   exported too. Methods without `<Name>Input` are helpers, not functions.
// - `AppSetup`, when exported, is the setup config's schema.

import { isZodSchema, toJsonSchema } from "./schema.mjs";

const HOOKS = new Set(["constructor", "setup", "unload", "onCancel"]);

export class DiscoveryError extends Error {}

/** `generate_image` -> `GenerateImage`. */
export function schemaStem(name) {
  return name
    .split(/[_-]/)
    .filter(Boolean)
    .map((part) => part[0].toUpperCase() + part.slice(1))
    .join("");
}

function methodNames(AppClass) {
  const names = new Set();
  for (let proto = AppClass.prototype; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      const desc = Object.getOwnPropertyDescriptor(proto, name);
      if (typeof desc?.value === "function" && !HOOKS.has(name) && !name.startsWith("_")) {
        names.add(name);
      }
    }
  }
  return [...names].sort();
}

function kindOf(fn) {
  const ctor = Object.getPrototypeOf(fn)?.constructor?.name;
  return {
    streaming: ctor === "AsyncGeneratorFunction",
    isAsync: ctor === "AsyncFunction" || ctor === "AsyncGeneratorFunction",
    generator: ctor === "GeneratorFunction",
  };
}

/** The app's functions: [{name, streaming, is_async, accepts_metadata, entry, input, output}]. */
export async function discoverFunctions(mod, AppClass, zod4) {
  const out = [];
  for (const name of methodNames(AppClass)) {
    const stem = schemaStem(name);
    const input = mod[`${stem}Input`];
    if (input === undefined) continue;
    const output = mod[`${stem}Output`];
    if (!isZodSchema(input)) {
      throw new DiscoveryError(`${stem}Input (the input of ${name}) is not a Zod schema`);
    }
    if (!isZodSchema(output)) {
      throw new DiscoveryError(
        output === undefined
          ? `function ${name} has ${stem}Input but no exported ${stem}Output`
          : `${stem}Output (the output of ${name}) is not a Zod schema`
      );
    }
    const fn = AppClass.prototype[name];
    const kind = kindOf(fn);
    if (kind.generator) {
      throw new DiscoveryError(`function ${name} is a plain generator; streaming functions are \`async *${name}\``);
    }
    let inputSchema, outputSchema;
    try {
      inputSchema = await toJsonSchema(input, "input", zod4);
      outputSchema = await toJsonSchema(output, "output", zod4);
    } catch (e) {
      throw new DiscoveryError(`cannot build the JSON schema of ${name}: ${e?.message ?? e}`);
    }
    out.push({
      name,
      streaming: kind.streaming,
      is_async: kind.isAsync,
      // `run(input, ctx)`: the second parameter gets { signal, metadata, id }.
      accepts_metadata: fn.length >= 2,
      entry: { description: "", input_schema: inputSchema, output_schema: outputSchema },
      input,
      output,
    });
  }
  return out;
}

/** The setup config's schema: `AppSetup` (Zod) when exported, else an empty object schema. */
export async function discoverSetup(mod, zod4) {
  const schema = mod.AppSetup;
  if (schema === undefined) {
    return { schema: null, json: { properties: {}, title: "AppSetup", type: "object" } };
  }
  if (!isZodSchema(schema)) throw new DiscoveryError("AppSetup is not a Zod schema");
  return { schema, json: await toJsonSchema(schema, "input", zod4) };
}
