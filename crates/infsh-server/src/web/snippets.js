// "Use this from code": the current call as curl, as Python with the
// official inferencesh client, and as `infsh app run`. Pure (node-tested).

/** Quotes `s` for a POSIX shell (single quotes, ' as '\''). */
export function shellQuote(s) {
  return "'" + String(s).replace(/'/g, "'\\''") + "'";
}

function pyLiteral(v, indent = "") {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  const inner = indent + "    ";
  if (Array.isArray(v)) {
    if (!v.length) return "[]";
    return "[\n" + v.map((x) => inner + pyLiteral(x, inner)).join(",\n") + ",\n" + indent + "]";
  }
  const entries = Object.entries(v);
  if (!entries.length) return "{}";
  return "{\n" + entries.map(([k, x]) => `${inner}${JSON.stringify(k)}: ${pyLiteral(x, inner)}`).join(",\n") + ",\n" + indent + "}";
}

/**
 * The three snippets for calling `app`'s `fn` with `input` on the server at
 * `base`. The key is never written out: the snippets read it from the
 * environment (INFSH_API_KEY) when `keyed`.
 */
export function snippets({ base, app, fn, input, keyed }) {
  const body = JSON.stringify({ app, function: fn, input, wait: true });
  const auth = keyed ? ` \\\n  -H "Authorization: Bearer $INFSH_API_KEY"` : "";
  const curl = `curl -sS -X POST ${shellQuote(base + "/apps/run")} \\\n  -H 'Content-Type: application/json'${auth} \\\n  -d ${shellQuote(body)}`;
  const python = [
    "import os",
    "from inferencesh import Inference",
    "",
    `client = Inference(api_key=os.environ.get("INFSH_API_KEY", "none"), base_url=${JSON.stringify(base)})`,
    `result = client.run({`,
    `    "app": ${JSON.stringify(app)},`,
    `    "function": ${JSON.stringify(fn)},`,
    `    "input": ${pyLiteral(input, "    ")},`,
    `})`,
    `print(result["output"])`,
  ].join("\n");
  const cli = `${keyed ? "INFSH_API_KEY=… " : ""}infsh app run ${shellQuote(app)} --api-url ${shellQuote(base)} \\\n  --function ${shellQuote(fn)} --input ${shellQuote(JSON.stringify(input))}`;
  return { curl, python, cli };
}
