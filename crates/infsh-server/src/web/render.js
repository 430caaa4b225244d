// Output rendering by type: files by their content_type (image, audio and
// video inline, a download link for every file), strings as text or light
// markdown, everything else as a collapsible JSON tree.

import { h } from "./dom.js";

const EXT_TYPES = { png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp", svg: "image/svg+xml", mp3: "audio/mpeg", wav: "audio/wav", ogg: "audio/ogg", flac: "audio/flac", mp4: "video/mp4", webm: "video/webm", mov: "video/quicktime" };

/** A file's content type: its own, else guessed from its name or URI. */
export function contentTypeOf(file, hint = "") {
  if (file.content_type) return file.content_type;
  const name = file.filename || file.uri || "";
  const ext = name.split(/[?#]/)[0].split(".").pop().toLowerCase();
  return EXT_TYPES[ext] || (hint.endsWith("/*") ? "" : hint);
}

export function isFileValue(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) && typeof v.uri === "string" &&
    ("content_type" in v || "filename" in v || "size" in v);
}

/** Inline preview (image, audio, video) plus a download link. */
export function previewFile(file, hint = "") {
  const type = contentTypeOf(file, hint);
  const name = file.filename || file.uri.split("/").pop() || "file";
  let media = null;
  if (type.startsWith("image/")) media = h("img", { src: file.uri, alt: name, class: "media" });
  else if (type.startsWith("audio/")) media = h("audio", { src: file.uri, controls: true, class: "media" });
  else if (type.startsWith("video/")) media = h("video", { src: file.uri, controls: true, class: "media" });
  const meta = [type, file.size !== undefined && file.size !== null ? formatBytes(file.size) : null].filter(Boolean).join(", ");
  return h("figure", { class: "file" }, media,
    h("figcaption", {}, h("a", { href: file.uri, download: name, target: "_blank", rel: "noopener" }, `Download ${name}`), meta ? ` (${meta})` : ""));
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** An output object: one row per field, each rendered by its type. */
export function renderOutput(value) {
  if (value === null || typeof value !== "object" || Array.isArray(value) || isFileValue(value)) {
    return h("div", { class: "output" }, renderValue(value, "output"));
  }
  const rows = Object.entries(value).filter(([k, v]) => !(k === "output_meta" && v === null));
  return h("dl", { class: "output" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { field: k } }, renderValue(v, k))]));
}

export function renderValue(v, key = "") {
  if (isFileValue(v)) return previewFile(v);
  if (typeof v === "string") {
    return /markdown|md$/i.test(key) || looksLikeMarkdown(v) ? markdown(v) : h("pre", { class: "text" }, v);
  }
  if (Array.isArray(v) && v.length && v.every(isFileValue)) return h("div", { class: "files" }, v.map((f) => previewFile(f)));
  if (v !== null && typeof v === "object") return jsonTree(v, true);
  return h("code", { class: "scalar" }, JSON.stringify(v));
}

function looksLikeMarkdown(s) {
  return /^(#{1,6} |[-*] |\d+\. |```)/m.test(s) && s.includes("\n");
}

/** Markdown's common subset (headings, lists, code, emphasis), built as
 * DOM nodes: no HTML from the text is ever interpreted. */
export function markdown(src) {
  const root = h("div", { class: "markdown" });
  const lines = src.split("\n");
  let list = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      root.append(h("pre", {}, h("code", {}, code.join("\n"))));
      list = null;
      continue;
    }
    const heading = line.match(/^(#{1,6}) (.*)$/);
    const item = line.match(/^\s*(?:[-*]|\d+\.) (.*)$/);
    if (heading) {
      root.append(h(`h${Math.min(6, heading[1].length + 2)}`, {}, inline(heading[2])));
      list = null;
    } else if (item) {
      if (!list) root.append((list = h("ul")));
      list.append(h("li", {}, inline(item[1])));
    } else if (line.trim()) {
      root.append(h("p", {}, inline(line)));
      list = null;
    } else list = null;
  }
  return root;
}

function inline(text) {
  const out = [];
  const re = /(\*\*[^*]+\*\*|`[^`]+`|\*[^*]+\*)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    out.push(text.slice(last, m.index));
    const t = m[0];
    if (t.startsWith("**")) out.push(h("strong", {}, t.slice(2, -2)));
    else if (t.startsWith("`")) out.push(h("code", {}, t.slice(1, -1)));
    else out.push(h("em", {}, t.slice(1, -1)));
    last = m.index + t.length;
  }
  out.push(text.slice(last));
  return out;
}

/** A JSON value as nested <details>, open to depth 1. */
export function jsonTree(v, open = false, key = null) {
  const label = key === null ? null : h("span", { class: "json-key" }, `${key}: `);
  if (v === null || typeof v !== "object") {
    return h("div", { class: "json-leaf" }, label, h("span", { class: `json-${v === null ? "null" : typeof v}` }, JSON.stringify(v)));
  }
  const entries = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
  const summary = Array.isArray(v) ? `[${entries.length}]` : `{${entries.length}}`;
  return h("details", { class: "json", open },
    h("summary", {}, label, summary),
    entries.map(([k, x]) => jsonTree(x, false, k)));
}
