// JSON Schema from an app's Zod schemas (docs/writing-apps.md, "JavaScript").
//
// Zod 4 schemas (they carry `_zod`) go through Zod's own `toJSONSchema`,
// imported from the app's `zod` so that descriptions kept in its registry
// are seen. Zod 3 has no converter of its own; this file walks its `_def`
// tree. It is not `zod-to-json-schema`: that package adds `$schema` and
// `additionalProperties: false`, which the platform's committed
// functions_schema.json files do not have, and this runtime has no
// dependencies to install. Both paths write `@inferencesh/app`'s file
// fields (`createFileSchema`) as {"type": "string", "format": "file"}, the
// format the host resolves and serves files by (crates/infsh-core/src/schema.rs).

const FILE_MARKER = Symbol.for("inferencesh.fileSchema");
const STREAM_MARKER = Symbol.for("inferencesh.streamSchema");
const BINARY_MARKER = Symbol.for("inferencesh.binarySchema");
const MAX_DEPTH = 64;

/** Whether `value` looks like a Zod schema (3 or 4). */
export function isZodSchema(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    typeof value.safeParseAsync === "function" &&
    (value._def !== undefined || value._zod !== undefined)
  );
}

/**
 * The JSON Schema of `schema`. `io` is "input" (what a caller sends: defaults
 * make a field optional) or "output".
 * @param {() => Promise<Function|null>} zod4 loads Zod 4's toJSONSchema
 */
export async function toJsonSchema(schema, io, zod4) {
  if (schema._zod !== undefined) {
    const convert = await zod4();
    if (!convert) {
      throw new Error("a Zod 4 schema, but the app's zod has no toJSONSchema");
    }
    const out = convert(schema, {
      io,
      unrepresentable: "any",
      override(ctx) {
        const def = ctx.zodSchema?._zod?.def ?? ctx.zodSchema?._def;
        // A plain z.object() strips unknown keys when it parses, it does
        // not refuse them; the worker returns what the function returned,
        // so an extra key (output_meta) must not fail the host's check.
        if (def?.type === "object" && def.catchall === undefined) {
          delete ctx.jsonSchema.additionalProperties;
        }
        if (def && def[FILE_MARKER]) {
          for (const k of Object.keys(ctx.jsonSchema)) {
            if (k !== "description" && k !== "default") delete ctx.jsonSchema[k];
          }
          Object.assign(ctx.jsonSchema, { type: "string", format: "file" });
        }
      },
    });
    delete out.$schema;
    return out;
  }
  return zod3(schema, io, 0);
}

function withDescription(out, def) {
  if (typeof def.description === "string") out.description = def.description;
  return out;
}

function zod3(schema, io, depth) {
  if (depth > MAX_DEPTH) return {};
  const def = schema?._def;
  if (!def) return {};
  if (def[FILE_MARKER]) return withDescription({ type: "string", format: "file" }, def);
  if (def[STREAM_MARKER] !== undefined) {
    const inner = def.innerType ?? def.schema ?? def.type;
    return withDescription(
      { type: "array", format: "stream", items: inner ? zod3(inner, io, depth + 1) : {} },
      def
    );
  }
  if (def[BINARY_MARKER] !== undefined) {
    const out = { type: "string", format: "binary" };
    if (typeof def[BINARY_MARKER] === "string") out.contentMediaType = def[BINARY_MARKER];
    return withDescription(out, def);
  }
  const sub = (s) => zod3(s, io, depth + 1);
  let out;
  switch (def.typeName) {
    case "ZodObject": {
      const shape = typeof def.shape === "function" ? def.shape() : def.shape;
      const properties = {};
      const required = [];
      for (const [key, value] of Object.entries(shape)) {
        properties[key] = sub(value);
        if (!isOptional(value, io)) required.push(key);
      }
      out = { type: "object", properties };
      if (required.length) out.required = required;
      if (def.catchall && def.catchall._def?.typeName !== "ZodNever") {
        out.additionalProperties = sub(def.catchall);
      } else if (def.unknownKeys === "strict") {
        out.additionalProperties = false;
      }
      break;
    }
    case "ZodString": {
      out = { type: "string" };
      for (const check of def.checks ?? []) {
        switch (check.kind) {
          case "min": out.minLength = check.value; break;
          case "max": out.maxLength = check.value; break;
          case "length": out.minLength = out.maxLength = check.value; break;
          case "email": out.format = "email"; break;
          case "url": out.format = "uri"; break;
          case "uuid": out.format = "uuid"; break;
          case "datetime": out.format = "date-time"; break;
          case "date": out.format = "date"; break;
          case "regex": out.pattern = check.regex.source; break;
        }
      }
      break;
    }
    case "ZodNumber": {
      out = { type: "number" };
      for (const check of def.checks ?? []) {
        if (check.kind === "int") out.type = "integer";
        else if (check.kind === "min") out[check.inclusive ? "minimum" : "exclusiveMinimum"] = check.value;
        else if (check.kind === "max") out[check.inclusive ? "maximum" : "exclusiveMaximum"] = check.value;
        else if (check.kind === "multipleOf") out.multipleOf = check.value;
      }
      break;
    }
    case "ZodBigInt": out = { type: "integer", format: "int64" }; break;
    case "ZodBoolean": out = { type: "boolean" }; break;
    case "ZodNull": out = { type: "null" }; break;
    case "ZodDate": out = { type: "string", format: "date-time" }; break;
    case "ZodLiteral": {
      const v = def.value;
      out = v === null ? { type: "null" } : { type: typeof v, const: v };
      break;
    }
    case "ZodEnum": out = { type: "string", enum: [...def.values] }; break;
    case "ZodNativeEnum": {
      const values = Object.entries(def.values)
        .filter(([k]) => !/^\d+$/.test(k))
        .map(([, v]) => v);
      const types = [...new Set(values.map((v) => typeof v))];
      out = { type: types.length === 1 ? types[0] : types, enum: values };
      break;
    }
    case "ZodArray": {
      out = { type: "array", items: sub(def.type) };
      if (def.minLength) out.minItems = def.minLength.value;
      if (def.maxLength) out.maxItems = def.maxLength.value;
      if (def.exactLength) out.minItems = out.maxItems = def.exactLength.value;
      break;
    }
    case "ZodSet": out = { type: "array", uniqueItems: true, items: sub(def.valueType) }; break;
    case "ZodTuple": {
      out = { type: "array", prefixItems: def.items.map(sub) };
      if (def.rest) out.items = sub(def.rest);
      else out.minItems = out.maxItems = def.items.length;
      break;
    }
    case "ZodRecord":
    case "ZodMap":
      out = { type: "object", additionalProperties: sub(def.valueType) };
      break;
    case "ZodUnion":
    case "ZodDiscriminatedUnion": {
      const options = Array.isArray(def.options) ? def.options : [...def.options.values()];
      out = { anyOf: options.map(sub) };
      break;
    }
    case "ZodIntersection": out = { allOf: [sub(def.left), sub(def.right)] }; break;
    case "ZodOptional": out = sub(def.innerType); break;
    case "ZodNullable": out = { anyOf: [sub(def.innerType), { type: "null" }] }; break;
    case "ZodDefault": out = { ...sub(def.innerType), default: def.defaultValue() }; break;
    case "ZodCatch":
    case "ZodBranded":
    case "ZodReadonly":
      out = sub(def.innerType ?? def.type);
      break;
    case "ZodPromise": out = sub(def.type); break;
    case "ZodLazy": out = sub(def.getter()); break;
    case "ZodEffects": out = sub(def.schema); break;
    case "ZodPipeline": out = sub(io === "input" ? def.in : def.out); break;
    default:
      // ZodAny, ZodUnknown and anything JSON Schema cannot say: no constraint.
      out = {};
  }
  return withDescription(out, def);
}

/** Whether an object field may be left out (Zod 3's own rule: undefined parses). */
function isOptional(schema, io) {
  const name = schema?._def?.typeName;
  if (io === "output" && name === "ZodDefault") return false;
  try {
    return schema.isOptional();
  } catch {
    return false;
  }
}
