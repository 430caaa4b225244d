// Draws form.js's field models as labelled controls bound to a state tree.
// Edits write into the state; structural edits (an array item added or
// removed, a union's type switched, an optional object turned on) redraw
// the form from the state.

import { append, h, replace } from "./dom.js";
import { childPath, collect, fieldErrors, fieldId, initialState, itemModel, pathsOf } from "./form.js";
import { previewFile } from "./render.js";

/**
 * A form for `model` inside `container`. `upload(file)` stores a File
 * field's file and resolves to its URI. Returns {value(), setState(s),
 * showErrors(problem), clearErrors(), pending()}.
 */
export function mountForm(container, model, state, { upload }) {
  const ctx = { state, upload, uploads: new Set(), redraw: null };
  const holder = { get: () => ctx.state, set: (v) => (ctx.state = v) };
  ctx.redraw = () => {
    const focused = document.activeElement?.id;
    replace(container, field(model, holder, ctx, true));
    if (focused) document.getElementById(focused)?.focus();
  };
  ctx.redraw();
  return {
    value: () => collect(model, ctx.state),
    state: () => ctx.state,
    setState(s) {
      ctx.state = s;
      ctx.redraw();
    },
    pending: () => Promise.all([...ctx.uploads]),
    clearErrors() {
      for (const el of container.querySelectorAll(".field-error")) el.remove();
      for (const el of container.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    },
    /** Puts each 422 message beside its field; returns those with none. */
    showErrors(problem) {
      this.clearErrors();
      const byPath = fieldErrors(problem, pathsOf(model, ctx.state));
      const unplaced = [];
      let first = null;
      for (const [path, messages] of byPath) {
        const wrap = container.querySelector(`[data-path="${CSS.escape(path)}"]`);
        if (!path || !wrap) {
          unplaced.push(...messages.map((m) => (path ? `${path}: ${m}` : m)));
          continue;
        }
        const id = fieldId(path) + "-error";
        put(wrap, h("p", { class: "field-error", id, role: "alert" }, messages.join("; ")));
        const control = document.getElementById(fieldId(path));
        if (control) {
          control.setAttribute("aria-invalid", "true");
          control.setAttribute("aria-describedby", [control.getAttribute("aria-describedby"), id].filter(Boolean).join(" "));
          first ??= control;
        }
      }
      first?.focus();
      return unplaced;
    },
  };
}

function field(model, holder, ctx, isRoot = false) {
  const id = fieldId(model.path);
  const descId = model.description ? id + "-desc" : null;
  const label = h("label", { for: id, class: "field-label" }, model.label, model.required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null);
  const desc = descId ? h("p", { class: "field-desc", id: descId }, model.description) : null;
  const wrap = h("div", { class: `field field-${model.kind}`, dataset: { path: model.path } });

  // Optional objects and unions start switched off (null); a checkbox
  // turns them on.
  if ((model.kind === "object" || model.kind === "union") && model.nullable && !isRoot) {
    const on = holder.get() !== null && holder.get() !== undefined;
    const toggleId = id + "-on";
    put(wrap, h("div", { class: "toggle" },
      h("input", { type: "checkbox", id: toggleId, checked: on, onchange: (e) => {
        holder.set(e.target.checked ? initialState({ ...model, nullable: false }) : null);
        ctx.redraw();
      } }),
      h("label", { for: toggleId }, `${model.label} (optional)`)));
    if (desc) put(wrap, desc);
    if (!on) return wrap;
  }

  switch (model.kind) {
    case "object": {
      const fs = h("fieldset", { class: "object", id, tabindex: -1 });
      if (!isRoot) put(fs, h("legend", {}, model.label));
      if (desc && !model.nullable && !isRoot) put(fs, desc);
      const obj = holder.get();
      for (const f of model.fields) {
        put(fs, field(f, { get: () => obj[f.key], set: (v) => (obj[f.key] = v) }, ctx));
      }
      put(wrap, fs);
      return wrap;
    }
    case "array": {
      const list = holder.get();
      const fs = h("fieldset", { class: "array", id, tabindex: -1 }, h("legend", {}, model.label));
      if (desc) put(fs, desc);
      list.forEach((item, i) => {
        const m = itemModel(model, i);
        m.label = `${model.label} #${i + 1}`;
        put(fs, h("div", { class: "array-item" },
          field(m, { get: () => list[i], set: (v) => (list[i] = v) }, ctx),
          h("button", { type: "button", class: "secondary", "aria-label": `Remove ${m.label}`, onclick: () => { list.splice(i, 1); ctx.redraw(); } }, "Remove")));
      });
      put(fs, h("button", { type: "button", class: "secondary", onclick: () => {
        list.push(initialState(itemModel(model, list.length)));
        ctx.redraw();
        document.getElementById(fieldId(childPath(model.path, list.length - 1)))?.focus();
      } }, `Add ${model.items.label === "Item" ? "item" : model.items.label}`));
      put(wrap, fs);
      return wrap;
    }
    case "union": {
      const st = holder.get();
      const switchId = id + "-type";
      put(wrap, h("div", { class: "union-switch" },
        h("label", { for: switchId }, `${model.label}: type`),
        h("select", { id: switchId, onchange: (e) => {
          const v = Number(e.target.value);
          holder.set({ variant: v, value: initialState(model.variants[v].model) });
          ctx.redraw();
        } }, model.variants.map((v, i) => h("option", { value: i, selected: i === st.variant }, v.label)))));
      const inner = { ...model.variants[st.variant].model, label: model.label, description: "" };
      put(wrap, field(inner, { get: () => st.value, set: (v) => (st.value = v) }, ctx));
      return wrap;
    }
    case "boolean":
      put(wrap, h("div", { class: "toggle" },
        h("input", { type: "checkbox", id, checked: Boolean(holder.get()), "aria-describedby": descId, onchange: (e) => holder.set(e.target.checked) }),
        label), desc);
      return wrap;
    case "enum": {
      const cur = holder.get();
      const options = model.options.map((o, i) => h("option", { value: i, selected: o === cur }, String(o)));
      if (!model.required || model.nullable) options.unshift(h("option", { value: "", selected: cur === "" || cur === null }, "(default)"));
      put(wrap, label, desc, h("select", { id, "aria-describedby": descId, onchange: (e) => holder.set(e.target.value === "" ? "" : model.options[Number(e.target.value)]) }, options));
      return wrap;
    }
    case "integer":
    case "number":
      put(wrap, label, desc, h("input", {
        id, type: "number", inputmode: model.kind === "integer" ? "numeric" : "decimal",
        min: model.min, max: model.max, step: model.step, value: holder.get() ?? "",
        placeholder: model.hasDefault ? String(model.default) : "", "aria-describedby": descId,
        oninput: (e) => holder.set(e.target.value),
      }), rangeHint(model));
      return wrap;
    case "text":
      put(wrap, label, desc, h("textarea", { id, rows: 4, "aria-describedby": descId, maxlength: model.maxLength, oninput: (e) => holder.set(e.target.value), value: holder.get() ?? "" }));
      return wrap;
    case "json":
      put(wrap, label, desc, h("textarea", { id, rows: 3, class: "mono", placeholder: "JSON", "aria-describedby": descId, oninput: (e) => holder.set(e.target.value), value: holder.get() ?? "" }));
      return wrap;
    case "file":
      put(wrap, label, desc, fileControl(model, id, descId, holder, ctx));
      return wrap;
    default:
      put(wrap, label, desc, h("input", { id, type: "text", "aria-describedby": descId, maxlength: model.maxLength, value: holder.get() ?? "", oninput: (e) => holder.set(e.target.value) }));
      return wrap;
  }
}

function rangeHint(model) {
  const parts = [];
  if (model.min !== undefined) parts.push(`min ${model.min}`);
  if (model.max !== undefined) parts.push(`max ${model.max}`);
  return parts.length ? h("span", { class: "hint" }, parts.join(", ")) : null;
}

function fileControl(model, id, descId, holder, ctx) {
  const preview = h("div", { class: "file-preview", "aria-live": "polite" });
  const status = h("span", { class: "hint" });
  const url = h("input", {
    id, type: "url", placeholder: "https://… or drop a file", "aria-describedby": descId,
    value: holder.get() ?? "",
    oninput: (e) => {
      holder.set(e.target.value);
      replace(preview, e.target.value ? previewFile({ uri: e.target.value }, model.accept) : null);
    },
  });
  const picker = h("input", { type: "file", id: id + "-file", accept: model.accept || undefined, class: "visually-hidden", onchange: (e) => take(e.target.files[0]) });
  const take = (file) => {
    if (!file) return;
    const local = URL.createObjectURL(file);
    replace(preview, previewFile({ uri: local, content_type: file.type, filename: file.name }));
    status.textContent = `uploading ${file.name}…`;
    const job = ctx.upload(file).then(
      (uri) => {
        holder.set(uri);
        url.value = uri;
        status.textContent = `uploaded ${file.name}`;
      },
      (err) => {
        status.textContent = `upload failed: ${err.message}`;
        throw err;
      });
    ctx.uploads.add(job);
    job.finally(() => ctx.uploads.delete(job)).catch(() => {});
  };
  const drop = h("div", {
    class: "dropzone",
    ondragover: (e) => { e.preventDefault(); drop.classList.add("over"); },
    ondragleave: () => drop.classList.remove("over"),
    ondrop: (e) => { e.preventDefault(); drop.classList.remove("over"); take(e.dataTransfer.files[0]); },
  }, url, picker, h("label", { for: id + "-file", class: "button secondary", tabindex: 0, onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); picker.click(); } } }, "Choose file"), status);
  if (holder.get()) replace(preview, previewFile({ uri: holder.get() }, model.accept));
  return [drop, preview];
}

// Element.append would write `null` and arrays as text.
function put(el, ...children) {
  return append(el, children);
}
