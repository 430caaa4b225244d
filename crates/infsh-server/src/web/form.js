// The form generator's pure half: a function's JSON Schema (as pydantic
// writes it) becomes a tree of field models, and a form state becomes the
// input to send. No DOM here, so `node --test` checks it directly
// (tests/browser/unit/form.test.mjs); form_view.js draws the models.
//
// Paths are the server's human paths (`options.seed`, `tags[0]`), so a 422's
// `errors[].path` names the field it belongs to.

const MULTILINE_CHARS = 80;

/** Follows a local `$ref` (`#/$defs/Name`) against the root schema. */
export function deref(schema, root) {
  let s = schema || {};
  for (let i = 0; i < 32 && typeof s.$ref === "string"; i++) {
    const parts = s.$ref.replace(/^#\/?/, "").split("/").filter(Boolean);
    let target = root;
    for (const p of parts) target = target?.[p.replace(/~1/g, "/").replace(/~0/g, "~")];
    const { $ref, ...rest } = s;
    s = { ...(target || {}), ...rest };
  }
  return s;
}

/** The path of `key` under `parent` (`a.b`, `a[0]`). */
export function childPath(parent, key) {
  if (typeof key === "number") return `${parent}[${key}]`;
  return parent ? `${parent}.${key}` : String(key);
}

/** A DOM id for the field at `path` (stable, one per path). */
export function fieldId(path) {
  return "f-" + (path || "root").replace(/[^A-Za-z0-9_-]/g, (c) => "_" + c.charCodeAt(0).toString(16));
}

function title(schema, key) {
  if (schema.title) return schema.title;
  if (typeof key === "string") return key.replace(/_/g, " ").replace(/^\w/, (c) => c.toUpperCase());
  return "Item";
}

function isFile(s) {
  return s.format === "file" || (s.type === "string" && typeof s.contentMediaType === "string");
}

function variantLabel(s, i) {
  if (s.title) return s.title;
  if (isFile(s)) return "file";
  if (s.enum) return "choice";
  if (s.type) return Array.isArray(s.type) ? s.type.join("/") : s.type;
  return `option ${i + 1}`;
}

/**
 * The field model of `schema` at `path`. Kinds: file, enum, boolean,
 * integer, number, string (multiline: text), array, object, union
 * (anyOf/oneOf with a type switch), json (anything else: free JSON).
 */
export function buildModel(schema, root = schema, { path = "", key = null, required = false } = {}) {
  const s = deref(schema, root);
  const base = {
    path,
    key,
    label: title(s, key),
    description: s.description || "",
    required,
    nullable: false,
    default: s.default,
    hasDefault: Object.prototype.hasOwnProperty.call(s, "default"),
  };
  const alternatives = s.anyOf || s.oneOf;
  if (Array.isArray(alternatives)) {
    const resolved = alternatives.map((a) => deref(a, root));
    const nonNull = resolved.filter((a) => a.type !== "null");
    const nullable = nonNull.length < resolved.length;
    if (nonNull.length === 1) {
      const inner = buildModel({ ...nonNull[0], title: s.title || nonNull[0].title, description: s.description || nonNull[0].description }, root, { path, key, required });
      return { ...inner, nullable: nullable || inner.nullable, default: base.hasDefault ? base.default : inner.default, hasDefault: base.hasDefault || inner.hasDefault };
    }
    return {
      ...base,
      kind: "union",
      nullable,
      variants: nonNull.map((v, i) => ({ label: variantLabel(v, i), model: buildModel(v, root, { path, key, required }) })),
    };
  }
  let type = s.type;
  if (Array.isArray(type)) {
    const nonNull = type.filter((t) => t !== "null");
    base.nullable = nonNull.length < type.length;
    type = nonNull.length === 1 ? nonNull[0] : undefined;
  }
  if (isFile(s)) return { ...base, kind: "file", accept: s.contentMediaType || "" };
  if (Array.isArray(s.enum)) return { ...base, kind: "enum", options: s.enum };
  if (s.const !== undefined) return { ...base, kind: "enum", options: [s.const], default: s.const, hasDefault: true };
  switch (type) {
    case "boolean":
      return { ...base, kind: "boolean" };
    case "integer":
    case "number": {
      const min = s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum : undefined);
      const max = s.maximum ?? (s.exclusiveMaximum !== undefined ? s.exclusiveMaximum : undefined);
      const step = s.multipleOf ?? (type === "integer" ? 1 : "any");
      return { ...base, kind: type, min, max, step };
    }
    case "string": {
      const long = (s.maxLength ?? 0) > MULTILINE_CHARS ||
        (typeof s.default === "string" && (s.default.length > MULTILINE_CHARS || s.default.includes("\n"))) ||
        /prompt|text|description|content|message/i.test(String(key ?? "")) ||
        s.format === "textarea";
      return { ...base, kind: long ? "text" : "string", minLength: s.minLength, maxLength: s.maxLength, pattern: s.pattern };
    }
    case "array":
      return { ...base, kind: "array", items: buildModel(s.items || {}, root, { path: childPath(path, 0), key: 0, required: true }), minItems: s.minItems, maxItems: s.maxItems };
    case "object":
    default:
      if (s.properties && typeof s.properties === "object") {
        const req = new Set(s.required || []);
        return {
          ...base,
          kind: "object",
          fields: Object.entries(s.properties).map(([k, v]) =>
            buildModel(v, root, { path: childPath(path, k), key: k, required: req.has(k) })),
        };
      }
      return { ...base, kind: "json" };
  }
}

/** Re-roots an item model (built for index 0) at index `i` of `arrayPath`. */
export function itemModel(arrayModel, i) {
  const from = childPath(arrayModel.path, 0);
  const to = childPath(arrayModel.path, i);
  const rebase = (m) => {
    const out = { ...m, path: to + m.path.slice(from.length), key: m === arrayModel.items ? i : m.key };
    if (m.fields) out.fields = m.fields.map(rebase);
    if (m.items) out.items = rebase(m.items);
    if (m.variants) out.variants = m.variants.map((v) => ({ ...v, model: rebase(v.model) }));
    return out;
  };
  return rebase(arrayModel.items);
}

/** The form state a model starts with: its default, or an empty value. */
export function initialState(model) {
  if (model.hasDefault && model.default !== null) {
    if (model.kind === "json") return JSON.stringify(model.default, null, 2);
    if (model.kind === "object") return fromValue(model, model.default);
    if (model.kind === "array") return fromValue(model, model.default);
    return model.kind === "integer" || model.kind === "number" ? String(model.default) : model.default;
  }
  switch (model.kind) {
    case "object":
      return model.nullable && !model.required ? null : Object.fromEntries(model.fields.map((f) => [f.key, initialState(f)]));
    case "array":
      return [];
    case "boolean":
      return false;
    case "union":
      return model.nullable && !model.required ? null : { variant: 0, value: initialState(model.variants[0].model) };
    default:
      return model.kind === "enum" && model.required ? model.options[0] : "";
  }
}

/** The form state that shows `value` (a past task's input, for a re-run). */
export function fromValue(model, value) {
  if (value === undefined) return initialState(model);
  if (value === null) return null;
  switch (model.kind) {
    case "object":
      return Object.fromEntries(model.fields.map((f) => [f.key, fromValue(f, value?.[f.key])]));
    case "array":
      return Array.isArray(value) ? value.map((v, i) => fromValue(itemModel(model, i), v)) : [];
    case "union": {
      const i = Math.max(0, model.variants.findIndex((v) => matches(v.model, value)));
      return { variant: i, value: fromValue(model.variants[i].model, value) };
    }
    case "integer":
    case "number":
      return String(value);
    case "json":
      return JSON.stringify(value, null, 2);
    case "file":
      return typeof value === "string" ? value : value?.uri || value?.path || "";
    default:
      return value;
  }
}

function matches(model, value) {
  switch (model.kind) {
    case "object":
      return value !== null && typeof value === "object" && !Array.isArray(value);
    case "array":
      return Array.isArray(value);
    case "integer":
      return Number.isInteger(value);
    case "number":
      return typeof value === "number";
    case "boolean":
      return typeof value === "boolean";
    case "enum":
      return model.options.includes(value);
    case "string":
    case "text":
    case "file":
      return typeof value === "string";
    default:
      return true;
  }
}

/**
 * The input to send for `state`. Empty optional fields are left out (the
 * server fills their defaults); a number that does not parse is sent as
 * typed, so the server's 422 names it beside its field.
 */
export function collect(model, state) {
  if (state === null || state === undefined) return model.nullable && model.required ? null : undefined;
  switch (model.kind) {
    case "object": {
      const out = {};
      for (const f of model.fields) {
        const v = collect(f, state[f.key]);
        if (v !== undefined) out[f.key] = v;
      }
      return out;
    }
    case "array":
      return state.map((s, i) => collect(itemModel(model, i), s)).map((v) => (v === undefined ? null : v));
    case "union":
      return collect(model.variants[state.variant].model, state.value);
    case "integer":
    case "number": {
      const raw = String(state).trim();
      if (raw === "") return model.required ? raw : undefined;
      const n = Number(raw);
      return Number.isFinite(n) ? n : raw;
    }
    case "boolean":
      return Boolean(state);
    case "json": {
      const raw = String(state).trim();
      if (raw === "") return undefined;
      try {
        return JSON.parse(raw);
      } catch {
        return raw;
      }
    }
    case "string":
    case "text":
    case "file":
      return state === "" && !model.required ? undefined : state;
    default:
      return state === "" && !model.required ? undefined : state;
  }
}

/** Sets `value` at the (path-like) key list `keys` of `state`, in place. */
export function setIn(state, keys, value) {
  let s = state;
  for (const k of keys.slice(0, -1)) s = s[k];
  s[keys[keys.length - 1]] = value;
}

/**
 * A 422 problem's field errors, by path; errors whose path names no field
 * of the form go under "" (shown above the form).
 */
export function fieldErrors(problem, knownPaths) {
  const out = new Map();
  for (const e of problem?.errors || []) {
    let path = e.path || "";
    // An error inside a field the form draws as one control (a JSON
    // field, a file) belongs to that field.
    while (path && !knownPaths.has(path)) path = parentPath(path);
    const list = out.get(path) || [];
    list.push(e.message);
    out.set(path, list);
  }
  return out;
}

/** `a.b[0]` → `a.b` → `a` → "". */
export function parentPath(path) {
  const m = path.match(/^(.*)(\.[^.[\]]*|\[\d+\])$/);
  return m ? m[1] : "";
}

/** Every path a model draws a control for. */
export function pathsOf(model, state, into = new Set()) {
  into.add(model.path);
  if (model.kind === "object" && state) for (const f of model.fields) pathsOf(f, state[f.key], into);
  if (model.kind === "array" && Array.isArray(state)) state.forEach((s, i) => pathsOf(itemModel(model, i), s, into));
  if (model.kind === "union" && state) pathsOf(model.variants[state.variant].model, state.value, into);
  return into;
}
