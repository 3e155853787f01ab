// The API description (/openapi.json) as a page: every endpoint, its fields and answers, and a
// form to try it. Plain JavaScript, nothing loaded from elsewhere (it works offline).
"use strict";

const $ = (id) => document.getElementById(id);
let spec = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// Text with `code` or ``code`` spans (markdown, reStructuredText) as <code>.
function inline(text) {
  const out = [];
  const parts = String(text || "").split(/``([^`]+)``|`([^`]+)`/);
  for (let i = 0; i < parts.length; i += 3) {
    if (parts[i]) out.push(parts[i]);
    const code = parts[i + 1] || parts[i + 2];
    if (code) out.push(el("code", {}, code));
  }
  return out;
}
function paragraphs(text) {
  return String(text || "").split(/\n\s*\n/).filter((p) => p.trim()).map((p) => el("p", {}, inline(p.replace(/\s*\n\s*/g, " "))));
}

function refName(ref) { return ref.split("/").pop(); }
function resolve(schema) {
  let s = schema || {};
  for (let i = 0; s.$ref && i < 20; i++) s = spec.components.schemas[refName(s.$ref)] || {};
  return s;
}

// A schema's type as a short phrase, with links to named schemas.
function typeOf(schema) {
  const s = schema || {};
  if (s.$ref) return [el("a", { href: `#schema-${refName(s.$ref)}` }, refName(s.$ref))];
  if (s.anyOf || s.oneOf) {
    const alts = (s.anyOf || s.oneOf).filter((a) => a.type !== "null");
    const nullable = alts.length < (s.anyOf || s.oneOf).length;
    const out = [];
    alts.forEach((a, i) => { if (i) out.push(" or "); out.push(...typeOf(a)); });
    if (nullable) out.push(" or null");
    return out;
  }
  if (s.enum) return [s.enum.map((v) => JSON.stringify(v)).join(" | ")];
  if (s.const !== undefined) return [JSON.stringify(s.const)];
  if (s.type === "array") return ["list of ", ...typeOf(s.items || {})];
  if (s.type === "object" && s.additionalProperties && typeof s.additionalProperties === "object") {
    return ["object: name → ", ...typeOf(s.additionalProperties)];
  }
  return [Array.isArray(s.type) ? s.type.join(" or ") : (s.type || "any")];
}

function limits(schema) {
  const s = schema || {}, out = [];
  const all = [s, ...(s.anyOf || []), ...(s.oneOf || [])];
  for (const a of all) {
    if (a.minimum !== undefined) out.push(`≥ ${a.minimum}`);
    if (a.exclusiveMinimum !== undefined) out.push(`> ${a.exclusiveMinimum}`);
    if (a.maximum !== undefined) out.push(`≤ ${a.maximum}`);
    if (a.exclusiveMaximum !== undefined) out.push(`< ${a.exclusiveMaximum}`);
    if (a.minLength !== undefined) out.push(`at least ${a.minLength} characters`);
    if (a.maxLength !== undefined) out.push(`at most ${a.maxLength} characters`);
    if (a.minItems !== undefined) out.push(`at least ${a.minItems} items`);
    if (a.maxItems !== undefined) out.push(`at most ${a.maxItems} items`);
    if (a.maxProperties !== undefined) out.push(`at most ${a.maxProperties} entries`);
    if (a.pattern !== undefined) out.push(`matches ${a.pattern}`);
  }
  return out.join(", ");
}

function fieldsTable(schema) {
  const s = resolve(schema);
  const props = s.properties || {};
  const required = new Set(s.required || []);
  if (!Object.keys(props).length) return el("p", {}, "Type: ", typeOf(schema));
  const rows = Object.entries(props).map(([name, p]) => el("tr", {},
    el("td", { class: "name" }, name, required.has(name) ? el("span", { class: "req" }, "required") : null),
    el("td", {}, typeOf(p)),
    el("td", {}, p.default !== undefined ? el("code", {}, JSON.stringify(p.default)) : ""),
    el("td", {}, inline(p.description || p.title || ""), limits(p) ? el("div", { class: "muted" }, limits(p)) : null)));
  return el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "default"), el("th", {}, "meaning"))),
    el("tbody", {}, rows)));
}

function example(schema, name, depth = 0) {
  const s = resolve(schema);
  if (depth > 4) return null;
  if (s.example !== undefined) return s.example;
  if (s.default !== undefined) return s.default;
  if (s.enum) return s.enum[0];
  if (s.anyOf) return example(s.anyOf.find((a) => a.type !== "null") || {}, name, depth + 1);
  if (s.type === "object" || s.properties) {
    const out = {};
    for (const r of s.required || []) out[r] = example((s.properties || {})[r], r, depth + 1);
    return out;
  }
  if (s.type === "array") return [];
  if (s.type === "string") return name === "text" ? "Hello" : "string";
  if (s.type === "integer" || s.type === "number") return s.minimum || 0;
  if (s.type === "boolean") return false;
  return null;
}

function tryForm(method, path, op) {
  const params = (op.parameters || []).filter((p) => p.in === "path" || p.in === "query");
  const inputs = params.map((p) => {
    const input = el("input", { type: "text", name: p.name, "aria-label": p.name,
                               value: p.name === "style_id" ? "s01" : "" });
    return { p, input, row: el("label", {}, el("div", { class: "label" }, `${p.name} (${p.in})`), input) };
  });
  const schema = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"] &&
    op.requestBody.content["application/json"].schema;
  const body = schema ? el("textarea", { rows: 4, "aria-label": "request body (JSON)" }) : null;
  if (body) body.value = JSON.stringify(example(schema), null, 1);
  const result = el("div", { class: "result", "aria-live": "polite" });
  const send = el("button", { type: "button" }, "Send");
  send.addEventListener("click", async () => {
    let url = path;
    const query = new URLSearchParams();
    for (const { p, input } of inputs) {
      if (p.in === "path") url = url.replace(`{${p.name}}`, encodeURIComponent(input.value));
      else if (input.value) query.set(p.name, input.value);
    }
    if ([...query].length) url += "?" + query;
    result.replaceChildren(el("p", { class: "muted" }, "Sending…"));
    try {
      const res = await fetch(url, { method: method.toUpperCase(),
        headers: body ? { "Content-Type": "application/json" } : {}, body: body ? body.value : undefined });
      const type = res.headers.get("content-type") || "";
      const shown = [el("p", {}, el("span", { class: "status " + (res.ok ? "good" : "bad") }, `${res.status} ${res.statusText}`),
                             " ", el("code", {}, type))];
      for (const [k, v] of res.headers) if (k.startsWith("x-handsynth")) shown.push(el("div", { class: "muted" }, el("code", {}, `${k}: ${v.length > 200 ? v.slice(0, 200) + "…" : v}`)));
      if (type.startsWith("image/")) {
        shown.push(el("img", { src: URL.createObjectURL(await res.blob()), alt: "the answer" }));
      } else if (type.includes("json")) {
        shown.push(el("pre", {}, JSON.stringify(await res.json(), null, 2)));
      } else if (type.startsWith("text/") || type.includes("xml")) {
        const text = await res.text();
        shown.push(el("pre", {}, text.length > 20000 ? text.slice(0, 20000) + "\n…" : text));
      } else {
        const a = el("a", { href: URL.createObjectURL(await res.blob()), download: "answer" }, "download the answer");
        shown.push(el("p", {}, a));
      }
      result.replaceChildren(...shown);
    } catch (err) {
      result.replaceChildren(el("p", { class: "status bad" }, `could not reach the server: ${err.message}`));
    }
  });
  return el("details", { class: "try" }, el("summary", {}, "Try it"),
    inputs.map((i) => i.row), body ? [el("div", { class: "label" }, "request body (JSON)"), body] : null, send, result);
}

function operation(method, path, op) {
  const id = `op-${method}-${path.replace(/[^a-zA-Z0-9]+/g, "-")}`;
  const parts = [el("div", { class: "op-head" },
    el("span", { class: `method ${method}` }, method), el("span", { class: "path" }, path),
    el("span", { class: "summary" }, op.summary || ""), el("span", { class: "tag-name" }, (op.tags || []).join(", ")))];
  parts.push(...paragraphs(op.description));
  const params = op.parameters || [];
  if (params.length) {
    parts.push(el("div", { class: "label" }, "Parameters"));
    parts.push(el("div", { class: "table-wrap" }, el("table", {}, el("tbody", {}, params.map((p) => el("tr", {},
      el("td", { class: "name" }, p.name, p.required ? el("span", { class: "req" }, "required") : null),
      el("td", {}, `in ${p.in}`), el("td", {}, typeOf(p.schema)), el("td", {}, inline(p.description || ""))))))));
  }
  if (op.requestBody) {
    const content = op.requestBody.content || {};
    for (const [type, media] of Object.entries(content)) {
      parts.push(el("div", { class: "label" }, "Request body ", el("code", {}, type),
        media.schema && media.schema.$ref ? [" (", ...typeOf(media.schema), ")"] : null));
      if (media.schema) parts.push(fieldsTable(media.schema));
    }
  }
  parts.push(el("div", { class: "label" }, "Answers"));
  parts.push(el("div", { class: "table-wrap" }, el("table", {}, el("tbody", {},
    Object.entries(op.responses || {}).filter(([code]) => code !== "422").map(([code, r]) => el("tr", {},
      el("td", { class: "name" }, code), el("td", {}, inline(r.description || "")),
      el("td", {}, Object.entries(r.content || {}).map(([type, m], i) => [i ? ", " : "", el("code", {}, type),
        m.schema && Object.keys(m.schema).length ? [" ", ...typeOf(m.schema)] : null]))))))));
  parts.push(tryForm(method, path, op));
  return el("section", { class: "op", id }, parts);
}

async function main() {
  try {
    const res = await fetch("/openapi.json");
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    spec = await res.json();
  } catch (err) {
    $("loading").textContent = `Could not load /openapi.json: ${err.message}`;
    return;
  }
  spec.components = spec.components || { schemas: {} };
  spec.components.schemas = spec.components.schemas || {};
  const info = spec.info || {};
  document.title = `${info.title || "API"}: HTTP API`;
  $("title").textContent = `${info.title || "API"}: HTTP API`;
  $("version").textContent = `version ${info.version || "?"} · OpenAPI ${spec.openapi || ""}`;
  $("description").replaceChildren(...paragraphs(info.description));
  const ops = [], toc = [];
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      if (!["get", "post", "put", "patch", "delete"].includes(method)) continue;
      const section = operation(method, path, op);
      ops.push(section);
      toc.push(el("a", { href: `#${section.id}` }, `${method.toUpperCase()} ${path}`));
    }
  }
  $("toc").replaceChildren(...toc);
  $("endpoints").replaceChildren(el("h2", {}, "Endpoints"), ...ops);
  const schemas = Object.entries(spec.components.schemas)
    .filter(([name]) => !["HTTPValidationError", "ValidationError"].includes(name))
    .map(([name, s]) => el("section", { class: "schema", id: `schema-${name}` },
      el("h3", {}, name), ...paragraphs(s.description), fieldsTable(s)));
  $("schemas").replaceChildren(...schemas);
  $("schemas-section").hidden = !schemas.length;
  document.body.dataset.ready = "1";
  if (location.hash) { const t = document.getElementById(location.hash.slice(1)); if (t) t.scrollIntoView(); }
}

document.addEventListener("DOMContentLoaded", main);
