// handsynth web page: plain JavaScript, no build step. Talks to the HTTP API of the same server.
"use strict";

const KEY_SAMPLE = "handsynth.sample";   // the user's handwriting sample: {text, strokes, y_axis}
const KEY_STYLE = "handsynth.style";     // the chosen style: "", "builtin:<id>" or "custom"
const KEY_SET = "handsynth.set";         // the sentences written to learn the hand from: [{text, strokes, y_axis}]
const KEY_TUNED = "handsynth.tuned";     // the learnt hand: {model: base64 of the tuned file, sentences, made}

const $ = (id) => document.getElementById(id);
const state = {
  limits: { max_text_chars: 1000, sample_min_chars: 8, sample_max_chars: 120, sample_min_points: 30,
            max_sample_points: 6000 },
  prompts: ["The quick brown fox jumps over the lazy dog."],
  tunePrompts: ["The quick brown fox jumps over the lazy dog."],   // the set "learn my hand" asks for
  defaultModel: null,   // the server's default model (GET /v1/models)
  tuneJob: null,        // the tuning job being run: {id, status_url}
  sessionSet: null,     // the set and the learnt hand, if local storage is unavailable
  sessionTuned: null,
  strokes: [],          // strokes on the pad, CSS pixels, y down: [[[x, y], ...], ...]
  current: null,        // the stroke being drawn
  lastBody: null,       // the last successful request (with its redo), to download it in other formats
  pngUrl: null,
  playUrl: null,        // the animated SVG of the page (the pen drawing each stroke in turn)
  playTimer: null,
  words: [],            // the page's words: [number, text, x0, y0, x1, y1] (fractions of the page)
  redo: {},             // words written again: {number: seed}; sent back with the request (the server keeps nothing)
  busy: false,
  styles: null,         // the built-in styles (GET /v1/styles)
  sessionSample: null,  // the sample, if local storage is unavailable
  pad: null,            // the pad's guide lines: {lines, band (CSS px each)}
};

// ---------------------------------------------------------------- errors: always in the page

function showError(message, offerSkip) {
  $("error-text").textContent = message;
  $("error-skip").hidden = !offerSkip;
  $("error-skip-box").checked = false;
  $("error").hidden = false;
}
function clearError() { $("error").hidden = true; $("error-text").textContent = ""; $("error-skip").hidden = true; }

// The server names the characters its model cannot write as Python reprs:
// "the model cannot write these characters: '中' '\t'; remove them or ...". Returns them, or null.
function unknownCharacters(message) {
  const m = /cannot write these characters: (.*?); remove them/.exec(message || "");
  if (!m) return null;
  const unescape = (s) => s.replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)/g, (_, e) =>
    (e.length > 1 ? String.fromCodePoint(parseInt(e.slice(1), 16)) : ({ n: "\n", t: "\t", r: "\r" }[e] ?? e)));
  const chars = [];
  for (const x of m[1].matchAll(/'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"/g)) chars.push(unescape(x[1] ?? x[2]));
  return chars.length ? chars : null;
}

function charLabel(c) {
  const code = "U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
  if (c === " ") return "a space";
  if (!/[\p{L}\p{N}\p{P}\p{S}]/u.test(c)) return `an invisible character (${code})`;
  return c.codePointAt(0) < 128 ? `“${c}”` : `“${c}” (${code})`;
}

// A message that makes sense on the page (the server's says which JSON field to send).
function explainUnknown(chars, body) {
  const text = body.text, list = chars.map(charLabel);
  const named = list.length === 1 ? list[0] : list.slice(0, -1).join(", ") + " and " + list[list.length - 1];
  const lines = text.split("\n");
  const where = [...new Set(chars.flatMap((c) => lines.map((l, i) => (l.includes(c) ? i + 1 : 0)).filter(Boolean)))].sort((a, b) => a - b);
  if (where.length) {
    const n = [...text].filter((c) => chars.includes(c)).length;
    const at = where.length === 1 ? `line ${where[0]}` : `lines ${where.slice(0, 5).join(", ")}${where.length > 5 ? ", …" : ""}`;
    return { offerSkip: true, message: `The model cannot write ${named} (${n === 1 ? "once" : n + " times"} in your ` +
      `text, ${at}). Change or delete ${n === 1 ? "it" : "them"}, or leave ${n === 1 ? "it" : "them"} out:` };
  }
  if (body.style_sample && chars.some((c) => body.style_sample.text.includes(c))) {
    return { offerSkip: false, message: `The sentence of your handwriting sample has ${named}, which the model cannot ` +
      `write: write a new sample (“Write in my hand”), or pick another style.` };
  }
  return { offerSkip: true, message: `The model cannot write ${named} in your text. Change or delete them, or leave them out:` };
}
window.addEventListener("error", (e) => showError(`Something went wrong in the page: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  showError(`Something went wrong: ${e.reason && e.reason.message ? e.reason.message : e.reason}`);
});

async function errorMessage(res) {
  try {
    const body = await res.json();
    if (body && body.error) return body.error;
  } catch (_) { /* not JSON */ }
  return `the server answered ${res.status} ${res.statusText}`;
}

async function api(path, options) {
  let res;
  try {
    res = await fetch(path, options);
  } catch (_) {
    throw new Error("Cannot reach the server: is `handsynth serve` still running?");
  }
  if (!res.ok) throw new Error(await errorMessage(res));
  return res;
}

function loadJSON(key) {
  try { return JSON.parse(localStorage.getItem(key)); } catch (_) { return null; }
}
function storedStyle() {
  try { return localStorage.getItem(KEY_STYLE) || ""; } catch (_) { return ""; }
}
function getSet() {
  const s = loadJSON(KEY_SET) || state.sessionSet;
  return Array.isArray(s) ? s.filter((x) => x && typeof x.text === "string" && Array.isArray(x.strokes)) : [];
}
function getTuned() {
  const t = loadJSON(KEY_TUNED) || state.sessionTuned;
  return t && typeof t.model === "string" && t.model.length ? t : null;
}
function getSample() {
  const s = loadJSON(KEY_SAMPLE) || state.sessionSample;
  return s && typeof s.text === "string" && Array.isArray(s.strokes) && s.strokes.length ? s : null;
}
function store(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, typeof value === "string" ? value : JSON.stringify(value));
    return true;
  } catch (_) {
    return false;  // storage full or disabled: the page still works for this visit
  }
}

// ---------------------------------------------------------------- style picker

const PREVIEW_RATIO = 7;   // width / height of every preview box

function styleCard(value, nameNode, title, preview) {
  const label = document.createElement("label");
  label.className = "style-card";
  label.title = title;
  const input = document.createElement("input");
  input.type = "radio";
  input.name = "style";
  input.value = value;
  input.addEventListener("change", () => { store(KEY_STYLE, value); markChecked(); });
  const box = document.createElement("div");
  box.className = "preview";
  box.style.setProperty("--ar", String(PREVIEW_RATIO));
  box.append(preview);
  label.append(input, box, nameNode);
  return label;
}

function tag(text, cls) {
  const t = document.createElement("span");
  t.className = "tag" + (cls ? " " + cls : "");
  t.textContent = text;
  return t;
}

function plainName(text) {
  const span = document.createElement("span");
  span.className = "style-name";
  const b = document.createElement("span");
  b.className = "title";
  b.textContent = text;
  span.append(b);
  return span;
}

// A built-in style's name ("semi-joined, upright, small 2") as what tells it apart: its traits as
// tags, and, where several styles share the traits, which writer of those it is.
function styleTraits(styles) {
  const base = (s) => s.name.replace(/\s+\d+$/, "");
  const groups = new Map();
  for (const s of styles) groups.set(base(s), [...(groups.get(base(s)) || []), s.id]);
  return (s) => {
    const span = document.createElement("span");
    span.className = "style-name";
    for (const part of base(s).split(/\s*,\s*/).filter(Boolean)) {
      span.append(tag(part, /print/i.test(part) ? "hand-print" : /join|cursive/i.test(part) ? "hand-joined" : ""));
    }
    const group = groups.get(base(s));
    if (group.length > 1) span.append(tag(`writer ${group.indexOf(s.id) + 1} of ${group.length}`, "writer"));
    const id = document.createElement("span");
    id.className = "sid";
    id.textContent = s.id;
    span.append(id);
    return span;
  };
}

// The preview PNG (the style's own sample, 600 px wide) has wide margins: crop it to its ink, so
// that the writing fills the card's width.
function cropPreview(img) {
  try {
    const w = img.naturalWidth, h = img.naturalHeight;
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, w, h).data;
    let x0 = w, x1 = -1, y0 = h, y1 = -1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = (y * w + x) * 4;
        if (data[i + 3] > 64 && data[i] + data[i + 1] + data[i + 2] < 600) {
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
      }
    }
    if (x1 < 0) return;
    const margin = 8;
    let fw = x1 - x0 + 2 * margin, fh = fw / PREVIEW_RATIO;
    if (y1 - y0 + 2 * margin > fh) { fh = y1 - y0 + 2 * margin; fw = fh * PREVIEW_RATIO; }
    const box = img.parentElement.style;
    box.setProperty("--w", `${(w / fw) * 100}%`);
    box.setProperty("--left", `${(-(x0 - margin) / fw) * 100}%`);
    box.setProperty("--top", `${(-((y0 + y1) / 2 - fh / 2) / fw) * 100}%`);
  } catch (_) { /* the uncropped image still shows */ }
}

function markChecked() {  // for browsers without :has()
  document.querySelectorAll(".style-card").forEach((c) => {
    c.classList.toggle("checked", c.querySelector("input").checked);
  });
}

function selectedStyle() {
  const input = document.querySelector('input[name="style"]:checked');
  return input ? input.value : "";
}

function selectStyle(value) {
  const input = [...document.querySelectorAll('input[name="style"]')].find((i) => i.value === value && !i.disabled);
  const fallback = document.querySelector('input[name="style"]');
  (input || fallback).checked = true;
  markChecked();
  revealChecked();
}

// Scroll the picker (only the picker, not the page) to the chosen card.
function revealChecked() {
  const input = document.querySelector('input[name="style"]:checked');
  if (!input) return;
  const box = $("styles"), card = input.closest(".style-card");
  const b = box.getBoundingClientRect(), c = card.getBoundingClientRect();
  if (c.top >= b.top && c.bottom <= b.bottom) return;
  box.scrollTop += c.top - b.top - Math.max(0, (box.clientHeight - c.height) / 2);
}

function drawSample(canvas, strokes, lineWidth) {
  const ctx = canvas.getContext("2d");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 350, h = canvas.clientHeight || 50;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pts = strokes.flat();
  if (!pts.length) return;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const pad = 6;
  const s = Math.min((w - 2 * pad) / Math.max(x1 - x0, 1), (h - 2 * pad) / Math.max(y1 - y0, 1));
  const ox = pad, oy = (h - (y1 - y0) * s) / 2;
  ctx.strokeStyle = "#1b1f3b";
  ctx.lineWidth = lineWidth || 1.4;
  ctx.lineCap = ctx.lineJoin = "round";
  for (const stroke of strokes) {
    ctx.beginPath();
    stroke.forEach(([x, y], i) => {
      const px = ox + (x - x0) * s, py = oy + (y - y0) * s;
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    if (stroke.length === 1) ctx.lineTo(ox + (stroke[0][0] - x0) * s + 0.5, oy + (stroke[0][1] - y0) * s);
    ctx.stroke();
  }
}

async function loadStyles() {
  if (state.styles) return state.styles;
  try {
    state.styles = (await (await api("/v1/styles")).json()).styles;
    $("styles-msg").textContent = state.styles.length ? "" :
      "No built-in styles on this server; write your own sample below.";
  } catch (err) {
    $("styles-msg").textContent = `Could not load the built-in styles: ${err.message}`;
    return [];
  }
  return state.styles;
}

async function buildStylePicker() {
  const styles = await loadStyles();
  const cards = [];
  const own = document.createElement("div");
  own.className = "own";
  own.textContent = "no sample to copy: the hand it learnt";
  cards.push(styleCard("", plainName("Model's own hand"), "no priming: the model's own handwriting", own));
  const traits = styleTraits(styles);
  for (const s of styles) {
    const img = document.createElement("img");
    img.alt = `${s.name}: “${s.text}”`;
    img.decoding = "async";
    img.addEventListener("load", () => cropPreview(img), { once: true });
    img.src = s.preview_url;
    cards.push(styleCard(`builtin:${s.id}`, traits(s),
      `${s.id}, ${s.name}: its sample says “${s.text}”${s.source ? " (" + s.source + ")" : ""}`, img));
  }
  const sample = getSample();
  const canvas = document.createElement("canvas");
  const tuned = getTuned();
  const mine = styleCard("custom",
    plainName(sample ? (tuned ? `My hand (learnt from ${tuned.sentences} sentences)` : "My hand")
                     : "My hand (write a sample below)"),
    sample ? `your sample: “${sample.text}”${tuned ? ", and the model tuned to your set" : ""}` : "write a sample below first",
    canvas);
  mine.id = "style-custom";
  if (!sample) {
    mine.classList.add("disabled");
    mine.querySelector("input").disabled = true;
    const hint = document.createElement("div");
    hint.className = "own";
    hint.textContent = "your handwriting, once you write a sample";
    canvas.replaceWith(hint);
  }
  cards.push(mine);
  $("styles").replaceChildren(...cards);
  if (sample) drawSample(canvas, sample.strokes);
  $("forget-sample").hidden = !sample;
  selectStyle(storedStyle());
}

// ---------------------------------------------------------------- the model (GET /v1/models)

// The picker shows only where the server has more than one model; the default is preselected.
function showModels(models) {
  const select = $("model");
  const fallback = models.find((m) => m.default) || models[0];
  state.defaultModel = fallback ? fallback.name : null;
  select.replaceChildren(...models.map((m) => {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = m.default ? `${m.name} (default)` : m.name;
    o.title = m.description;
    o.selected = m.name === state.defaultModel;
    return o;
  }));
  select.hidden = $("model-label").hidden = models.length < 2;
}

// ---------------------------------------------------------------- generating

function requestBody(format) {
  const text = $("text").value;
  if (!text.trim()) {
    throw new Error("Type a text to write first.");
  }
  if (text.length > state.limits.max_text_chars) {
    throw new Error(`The text has ${text.length} characters; the limit is ${state.limits.max_text_chars}.`);
  }
  const body = {
    text,
    bias: Number($("bias").value),
    seed: Math.max(0, Math.min(2147483647, Math.floor(Number($("seed").value) || 0))),
    stroke_width: Number($("stroke").value),
    color: $("color").value,
    align: $("align").value,
    pen: $("pen").value,
    format,
  };
  const model = $("model");
  if (!model.hidden && model.value && model.value !== state.defaultModel) body.model = model.value;
  if ($("paper").value) {
    body.paper = $("paper").value;
    if ($("landscape").checked) body.landscape = true;
  }
  if ($("ruling").value) body.ruling = $("ruling").value;
  if ($("skip-unknown").checked) body.skip_unknown = true;
  const style = selectedStyle();
  if (style.startsWith("builtin:")) {
    body.style = style.slice("builtin:".length);
  } else if (style === "custom") {
    const sample = getSample();
    if (!sample) throw new Error("Your handwriting sample is gone: write one below, or pick another style.");
    body.style_sample = { text: sample.text, strokes: sample.strokes, y_axis: "down" };
    const tuned = getTuned();
    // tuning and priming add up; a learnt hand is a change to the server's default model, so
    // another model is primed with the sample alone. A learnt hand's file keeps the first two
    // sentences it learnt from and primes with them (twice the likeness of one sentence), so
    // the sample is not sent with it.
    if (tuned && !body.model) {
      body.tuned = tuned.model;
      if (tuned.primes) delete body.style_sample;
    }
  }
  return body;
}

let timer = null;
function setBusy(busy) {
  state.busy = busy;
  $("generate").disabled = busy;
  $("progress").hidden = !busy;
  $("result-box").classList.toggle("busy", busy);
  $("generate").setAttribute("aria-busy", String(busy));
  clearInterval(timer);
  if (busy) {
    const t0 = performance.now();
    $("progress-text").textContent = "Writing…";
    timer = setInterval(() => {
      $("progress-text").textContent = `Writing… ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    }, 100);
  }
}

async function post(body) {
  return api("/v1/write", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
}

function pageWords(res) {
  try {
    const words = JSON.parse(res.headers.get("X-Handsynth-Words") || "[]");
    return Array.isArray(words) ? words : [];
  } catch (_) {
    return [];
  }
}

async function generate() {
  if (state.busy) return;
  clearError();
  let body;
  try {
    body = requestBody("png");
  } catch (err) {
    showError(err.message);
    return;
  }
  setBusy(true);
  try {
    const { blob, pages, seconds, words } = await fetchPage(body);
    // the same request as an animated SVG: answered from the server's cache, so quickly
    const play = $("animate").checked ? await fetchPlay(body).catch(() => null) : null;   // (the page shows without it)
    state.redo = {};
    state.lastBody = body;
    await showResult(blob, pages, seconds);
    showWords(words);
    revealResult();   // in sight while it plays (on a phone it is below the form)
    if (play) startPlay(play);
  } catch (err) {
    const chars = unknownCharacters(err.message);
    if (chars) {
      const { message, offerSkip } = explainUnknown(chars, body);
      showError(message, offerSkip && !body.skip_unknown);
    } else {
      showError(err.message);
    }
  } finally {
    setBusy(false);
  }
}

// Scroll the page so that the result is in sight, its heading too where there is room.
function revealResult() {
  const box = $("result-box"), r = box.getBoundingClientRect();
  if (r.top >= 0 && r.bottom <= window.innerHeight) return;
  const panel = $("output").getBoundingClientRect();
  const top = (r.bottom - panel.top <= window.innerHeight - 8) ? panel.top : r.top;
  window.scrollBy({ top: top - 8, behavior: "instant" });
}

// "Full size": the page at its own pixel size, panned sideways inside its box; "Fit": the box's width.
function setZoom(on) {
  const img = $("result"), box = $("result-box");
  box.classList.toggle("zoomed", on);
  $("zoom").setAttribute("aria-pressed", String(on));
  $("zoom").textContent = on ? "Fit to width" : "Full size";
  if (on) {
    const r = img.getBoundingClientRect(), b = box.getBoundingClientRect();
    box.scrollLeft = 0;
    if (r.top < 0 || r.top > b.bottom) box.scrollIntoView({ block: "nearest" });
  }
}

function updateZoom() {   // nothing to zoom when the page fits at its own size
  const img = $("result"), box = $("result-box");
  $("page-view").style.setProperty("--natural-width", `${img.naturalWidth}px`);
  const fits = !img.naturalWidth || img.naturalWidth <= box.clientWidth + 1;
  $("zoom").disabled = img.hidden || fits;
  if (fits && box.classList.contains("zoomed")) setZoom(false);
}

// ---------------------------------------------------------------- playing the writing

async function fetchPlay(body) {
  const res = await post({ ...body, format: "svg", animate: true });
  const text = await res.text();
  let end = 0;   // when the last stroke is drawn: the latest begin + dur of the <animate> elements
  for (const m of text.matchAll(/begin="([0-9.]+)s" dur="([0-9.]+)s"/g)) end = Math.max(end, Number(m[1]) + Number(m[2]));
  return { blob: new Blob([text], { type: "image/svg+xml" }), seconds: end };
}

function stopPlay() {
  clearTimeout(state.playTimer);
  $("play").hidden = true;
  $("result-box").classList.remove("playing");
}

function startPlay(play) {
  stopPlay();
  if (state.playUrl) URL.revokeObjectURL(state.playUrl);
  state.playUrl = URL.createObjectURL(play.blob);   // a new URL: the animation starts from the beginning
  const img = $("play");
  img.src = state.playUrl;
  img.hidden = false;
  $("result-box").classList.add("playing");
  state.playTimer = setTimeout(stopPlay, play.seconds * 1000 + 600);   // then the PNG (with its pen) shows
}

async function replay() {
  if (!state.lastBody || state.busy) return;
  clearError();
  try {
    startPlay(await fetchPlay(state.lastBody));
  } catch (err) {
    showError(err.message);
  }
}

// ---------------------------------------------------------------- clicking a word to write it again

function showWords(words) {
  state.words = words;
  const buttons = words.map(([index, text, x0, y0, x1, y1]) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "word" + (index in state.redo ? " redone" : "");
    b.dataset.index = String(index);
    b.dataset.text = text;
    const padX = 0.004, padY = 0.01;
    b.style.left = `${(x0 - padX) * 100}%`;
    b.style.top = `${(y0 - padY) * 100}%`;
    b.style.width = `${(x1 - x0 + 2 * padX) * 100}%`;
    b.style.height = `${(y1 - y0 + 2 * padY) * 100}%`;
    b.title = `write “${text}” again`;
    b.setAttribute("aria-label", `write the word “${text}” again`);
    b.addEventListener("click", () => redoWord(index, b));
    return b;
  });
  $("words").replaceChildren(...buttons);
  $("words-hint").hidden = !buttons.length;
}

async function fetchPage(body) {
  // one page image with what the server says about it: page count, time taken, word boxes
  const res = await post(body);
  return { blob: await res.blob(), pages: Number(res.headers.get("X-Handsynth-Pages") || 1),
           seconds: Number(res.headers.get("X-Handsynth-Seconds") || 0), words: pageWords(res) };
}

async function redoWord(index, button) {
  if (!state.lastBody || state.busy) return;
  clearError();
  stopPlay();
  const redo = { ...state.redo, [index]: (state.redo[index] || 0) + 1 };   // each click: the next seed
  const body = { ...state.lastBody, format: "png", redo };
  button.classList.add("working");
  setBusy(true);
  try {
    const { blob, pages, seconds, words } = await fetchPage(body);
    state.redo = redo;
    state.lastBody = body;
    await showResult(blob, pages, seconds);
    showWords(words);
  } catch (err) {
    showError(err.message);
    button.classList.remove("working");
  } finally {
    setBusy(false);
  }
}

function showResult(blob, pages, seconds) {
  return new Promise((resolve, reject) => {
    if (state.pngUrl) URL.revokeObjectURL(state.pngUrl);
    state.pngUrl = URL.createObjectURL(blob);
    const img = $("result");
    img.onload = () => {
      img.hidden = false;
      $("result-empty").hidden = true;
      $("result-box").classList.remove("empty");
      const link = $("download-png");
      link.href = state.pngUrl;
      link.classList.remove("disabled");
      link.removeAttribute("aria-disabled");
      for (const f of DOWNLOADS) $(`download-${f.id}`).disabled = false;
      $("replay").disabled = false;
      $("result-info").textContent = (pages > 1 ? `page 1 of ${pages} (the PDF and InkML hold all) · ` : "") +
        `written in ${seconds.toFixed(1)} s`;
      updateZoom();
      resolve();
    };
    img.onerror = () => reject(new Error("The server's image could not be shown."));
    img.src = state.pngUrl;
  });
}

// the download buttons: a format, and what the request adds for it
const DOWNLOADS = [
  { id: "svg", format: "svg", name: "handwriting.svg" },
  { id: "pdf", format: "pdf", name: "handwriting.pdf" },
  { id: "plotter", format: "svg", extra: { plotter: true }, name: "handwriting-plotter.svg" },
  { id: "gcode", format: "gcode", name: "handwriting.gcode" },
  { id: "inkml", format: "inkml", name: "handwriting.inkml" },
  { id: "gif", format: "gif", name: "handwriting.gif" },
  { id: "webp", format: "webp", name: "handwriting.webp" },
];

async function download(what) {
  if (!state.lastBody || state.busy) return;
  clearError();
  setBusy(true);
  try {
    const res = await post({ ...state.lastBody, format: what.format, ...(what.extra || {}) });
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = what.name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (err) {
    showError(err.message);
  } finally {
    setBusy(false);
  }
}

// ---------------------------------------------------------------- the handwriting pad
// The pad has one to three guide lines ("bands"): on a narrow screen the sentence goes on over
// two or three lines. A sample is one line of writing (docs/samples.md), so before it is sent the
// lines are joined: each line's strokes move up onto the first line's baseline, after the line
// before it, a word space apart.

const pad = () => $("pad");
const PX_PER_CHAR = 14;        // room a character needs on the pad, CSS px
const BASELINE = 0.68;         // where a band's guide line is, as a fraction of its height

function promptText() { return $("prompt").value.trim().replace(/\s+/g, " "); }

function padLayout() {
  const w = pad().clientWidth || 300;
  const choice = $("pad-lines").value;
  const lines = choice === "auto"
    ? Math.max(1, Math.min(3, Math.ceil((promptText().length * PX_PER_CHAR) / w)))
    : Number(choice);
  return { lines, band: Math.round(Math.max(140, Math.min(200, w * 0.4))) };
}

function sizePad() {
  const c = pad();
  if (!state.strokes.length || !state.pad) state.pad = padLayout();   // (strokes keep the bands they were written on)
  c.style.height = `${state.pad.lines * state.pad.band}px`;
  const dpr = window.devicePixelRatio || 1;
  c.width = Math.round(c.clientWidth * dpr);
  c.height = Math.round(c.clientHeight * dpr);
  const ctx = c.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  $("pad-hint").textContent = state.pad.lines > 1
    ? `Write the sentence on the ${state.pad.lines === 2 ? "two" : "three"} guide lines, going on to the next when ` +
      "a line is full (they are joined into one line)."
    : "Write the sentence on the guide line.";
  redrawPad();
}

function redrawPad() {
  const c = pad(), ctx = c.getContext("2d");
  const w = c.clientWidth, { lines, band } = state.pad;
  ctx.clearRect(0, 0, w, c.clientHeight);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = "#c9d3ee";
  ctx.fillStyle = "#9aa6c8";
  ctx.font = "12px system-ui, sans-serif";
  for (let k = 0; k < lines; k++) {
    const y = Math.round(k * band + BASELINE * band) + 0.5;
    ctx.beginPath();
    ctx.moveTo(8, y);
    ctx.lineTo(w - 8, y);
    ctx.stroke();
    if (lines > 1) ctx.fillText(String(k + 1), 6, y - 6);
  }
  ctx.strokeStyle = "#1b1f3b";
  ctx.lineWidth = 2.4;
  ctx.lineCap = ctx.lineJoin = "round";
  for (const s of state.strokes) {
    ctx.beginPath();
    ctx.moveTo(s[0][0], s[0][1]);
    for (const [x, y] of s.slice(1)) ctx.lineTo(x, y);
    if (s.length === 1) ctx.lineTo(s[0][0] + 0.1, s[0][1]);
    ctx.stroke();
  }
  updatePadCount();
}

// The strokes written on several bands as one line (the stroke order is kept).
function joinLines(strokes, { lines, band }) {
  if (lines <= 1) return strokes;
  const lineOf = (s) => {
    const y = s.reduce((sum, p) => sum + p[1], 0) / s.length;
    return Math.max(0, Math.min(lines - 1, Math.floor(y / band)));
  };
  const of = strokes.map(lineOf);
  const shift = [];
  let right = null, first = null;
  for (let k = 0; k < lines; k++) {
    const xs = strokes.filter((_, i) => of[i] === k).flat().map((p) => p[0]);
    if (!xs.length) continue;
    if (first === null) first = k;
    const x0 = Math.min(...xs), x1 = Math.max(...xs);
    const dx = right === null ? 0 : right + band * 0.25 - x0;
    shift[k] = [dx, -(k - first) * band];
    right = x1 + dx;
  }
  const r = (v) => Math.round(v * 10) / 10;
  return strokes.map((s, i) => s.map(([x, y]) => [r(x + shift[of[i]][0]), r(y + shift[of[i]][1])]));
}

function padPoint(e) {
  const r = pad().getBoundingClientRect();
  return [Math.round((e.clientX - r.left) * 10) / 10, Math.round((e.clientY - r.top) * 10) / 10];
}

function pointCount(strokes) { return strokes.reduce((n, s) => n + s.length, 0); }

function updatePadCount() {
  const n = pointCount(state.strokes);
  $("pad-count").textContent = n ? `${state.strokes.length} strokes, ${n} points` : "";
}

function fitPrompt() {   // the sentence wraps: the box grows to show all of it
  const p = $("prompt");
  p.style.height = "auto";
  p.style.height = `${p.scrollHeight + 2}px`;
}

function setupPad() {
  const c = pad();
  c.addEventListener("pointerdown", (e) => {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    e.preventDefault();
    c.setPointerCapture(e.pointerId);
    state.current = [padPoint(e)];
    state.strokes.push(state.current);
    redrawPad();
  });
  c.addEventListener("pointermove", (e) => {
    if (!state.current) return;
    e.preventDefault();
    const events = (e.getCoalescedEvents && e.getCoalescedEvents().length) ? e.getCoalescedEvents() : [e];
    const ctx = c.getContext("2d");
    ctx.beginPath();
    let [lx, ly] = state.current[state.current.length - 1];
    ctx.moveTo(lx, ly);
    for (const ev of events) {
      const p = padPoint(ev);
      if (Math.hypot(p[0] - lx, p[1] - ly) < 1) continue;  // no repeated points
      state.current.push(p);
      ctx.lineTo(p[0], p[1]);
      [lx, ly] = p;
    }
    ctx.stroke();
  });
  const end = () => {
    if (!state.current) return;
    state.current = null;
    updatePadCount();
  };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", end);
  c.addEventListener("lostpointercapture", end);
  const prompt = $("prompt");
  prompt.addEventListener("keydown", (e) => { if (e.key === "Enter") e.preventDefault(); });   // one line of text
  prompt.addEventListener("input", () => {
    if (/\n/.test(prompt.value)) prompt.value = prompt.value.replace(/\s*\n\s*/g, " ");
    fitPrompt();
    if (!state.strokes.length) sizePad();
    showSet();
  });
  $("pad-lines").addEventListener("change", () => { state.pad = null; sizePad(); });
  let width = window.innerWidth;
  window.addEventListener("resize", () => {
    fitPrompt();
    updateZoom();
    if (window.innerWidth === width) return;   // (a phone's bar showing or hiding: the pad stays as it is)
    width = window.innerWidth;
    sizePad();
    const mine = document.querySelector("#style-custom canvas");
    const sample = getSample();
    if (mine && sample) drawSample(mine, sample.strokes);
  });
  fitPrompt();
  sizePad();
}

// A message line: ok true (good), false (bad) or null (neither: cleared, or a step under way).
function showMessage(id, text, ok) {
  const m = $(id);
  m.textContent = text;
  m.className = ok === null ? "message" : "message " + (ok ? "good" : "bad");
}

function sampleMessage(text, ok) { showMessage("sample-msg", text, ok); }

function thin(strokes, limit) {
  // Drop points closer than d pixels to the previous kept one until under the limit.
  let out = strokes;
  for (let d = 2; pointCount(out) > limit && d < 64; d *= 1.5) {
    out = strokes.map((s) => s.filter((p, i) => {
      if (i === 0 || i === s.length - 1) return true;
      const q = s[i - 1];
      return Math.hypot(p[0] - q[0], p[1] - q[1]) >= d || i % Math.ceil(d) === 0;
    }));
  }
  return out;
}

// The pad's sentence as a sample, checked by the server; null (with a message) if it is unusable.
async function checkedPadSample(message) {
  const text = promptText();
  const L = state.limits;
  if (!state.strokes.length) {
    message("The pad is empty: write the sentence on it first.", false);
    return null;
  }
  if (text.length < L.sample_min_chars) {
    message(`The sentence is too short: write at least ${L.sample_min_chars} characters, ideally the whole sentence.`, false);
    return null;
  }
  let strokes = joinLines(state.strokes, state.pad);
  if (pointCount(strokes) < L.sample_min_points) {
    message("That sample is too short: write the whole sentence, then try again.", false);
    return null;
  }
  if (pointCount(strokes) > L.max_sample_points) strokes = thin(strokes, L.max_sample_points);
  const sample = { text, strokes, y_axis: "down" };
  const buttons = [$("use-sample"), $("add-sentence")];
  const was = buttons.map((b) => b.disabled);
  buttons.forEach((b) => { b.disabled = true; });
  try {
    await api("/v1/samples/check", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(sample),
    });
  } catch (err) {
    message(`This sample cannot be used: ${err.message}`, false);
    return null;
  } finally {
    buttons.forEach((b, i) => { b.disabled = was[i]; });
  }
  return sample;
}

async function useSample() {
  sampleMessage("Checking the sample\u2026", null);
  const sample = await checkedPadSample(sampleMessage);
  if (!sample) return;
  const stored = store(KEY_SAMPLE, sample);
  store(KEY_STYLE, "custom");
  state.sessionSample = sample;  // used if the browser's storage is disabled
  await buildStylePicker();
  selectStyle("custom");
  // (the message last: when it shows, the picker already has the sample chosen)
  if (!stored) {
    sampleMessage("Your browser would not store the sample; it is used until you leave the page.", false);
  } else {
    sampleMessage("Saved: your handwriting is now the style (it stays in this browser). Press “Write it”.", true);
  }
}

function forgetSample() {
  store(KEY_SAMPLE, null);
  state.sessionSample = null;
  if (storedStyle() === "custom") store(KEY_STYLE, "");
  sampleMessage("Your sample is forgotten.", true);
  buildStylePicker();
}

// ---------------------------------------------------------------- learn my hand
// The set: sentences written on the pad, kept in this browser. "Learn my hand" sends them to
// POST /v1/tune, follows the job and keeps the tuned file it makes (base64), which every request
// in "My hand" then carries as `tuned`.

function learnMessage(text, ok) { showMessage("learn-msg", text, ok); }

function storeSet(set) {
  state.sessionSet = set;
  return store(KEY_SET, set.length ? set : null);
}

function nextPrompt(set) {   // the first sentence of the set not yet written
  const have = new Set(set.map((x) => x.text));
  return state.tunePrompts.find((p) => !have.has(p));
}

function showSet() {
  const set = getSet(), L = state.limits, max = L.tune_max_samples || 10;
  const goal = Math.min(max, state.tunePrompts.length);
  $("set-progress").max = goal;
  $("set-progress").value = Math.min(goal, set.length);
  $("set-count").textContent = `${set.length} of ${goal} sentences` +
    (set.length < (L.tune_min_samples || 3) ? ` (at least ${L.tune_min_samples || 3} to learn from)` : "");
  $("set-min").textContent = String(L.tune_min_samples || 3);
  const have = new Set(set.map((x) => x.text));
  const extra = set.map((x) => x.text).filter((t) => !state.tunePrompts.includes(t));
  const current = promptText();
  $("set-list").replaceChildren(...[...state.tunePrompts.slice(0, goal), ...extra].map((t) => {
    const li = document.createElement("li");
    li.textContent = t;
    if (have.has(t)) li.className = "done";
    else if (t === current) li.className = "current";
    return li;
  }));
  const running = !!state.tuneJob;
  $("learn-hand").disabled = running || set.length < (L.tune_min_samples || 3);
  $("add-sentence").disabled = running || set.length >= max;
  $("stop-learning").hidden = !running;
  $("forget-hand").hidden = running || (!set.length && !getTuned());
}

async function addSentence() {
  const sample = await checkedPadSample(learnMessage);
  if (!sample) return;
  const set = getSet().filter((x) => x.text !== sample.text);   // a sentence written again replaces the old one
  const max = state.limits.tune_max_samples || 10;
  if (set.length >= max) {
    learnMessage(`The set is full (${max} sentences): learn your hand now, or forget the set.`, false);
    return;
  }
  set.push(sample);
  const saved = storeSet(set);
  if (!getSample()) {   // the first sentence is also the sample that primes "My hand"
    store(KEY_SAMPLE, sample);
    state.sessionSample = sample;
    await buildStylePicker();
  }
  state.strokes = [];
  const next = nextPrompt(set);
  if (next) $("prompt").value = next;
  fitPrompt();
  state.pad = null;
  sizePad();
  const min = state.limits.tune_min_samples || 3;
  learnMessage((saved ? "" : "Your browser would not store the set; it is kept until you leave the page. ") +
    (set.length < min ? `Sentence ${set.length} kept: write the next one.` :
     `Sentence ${set.length} kept: write another, or press “Learn my hand”.`), saved);
  showSet();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

async function learnHand() {
  const set = getSet();
  if (set.length < (state.limits.tune_min_samples || 3) || state.tuneJob) return;
  learnMessage("", null);
  let job;
  try {
    job = await (await api("/v1/tune", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ samples: set.map((x) => ({ text: x.text, strokes: x.strokes, y_axis: "down" })) }),
    })).json();
  } catch (err) {
    learnMessage(`Could not start learning: ${err.message}`, false);
    return;
  }
  state.tuneJob = job;
  showSet();
  $("learn-progress").hidden = false;
  $("learn-bar").style.width = "0%";
  try {
    let st;
    for (;;) {
      await sleep(500);
      if (state.tuneJob !== job) return;   // stopped
      st = await (await api(job.status_url)).json();
      const pct = Math.round((100 * st.step) / Math.max(1, st.max_steps));
      $("learn-bar").style.width = `${pct}%`;
      learnMessage(st.state === "queued" ? "Waiting to start…" :
        `Learning your hand: step ${st.step} of ${st.max_steps} (${st.elapsed_s.toFixed(0)} s)`, true);
      if (st.state !== "queued" && st.state !== "running") break;
    }
    if (st.state !== "done") throw new Error(st.error || `the job was ${st.state}`);
    const buffer = await (await api(st.model_url)).arrayBuffer();
    const tuned = { model: toBase64(buffer), sentences: set.length, made: new Date().toISOString(), primes: true };
    state.sessionTuned = tuned;
    const saved = store(KEY_TUNED, tuned);
    $("learn-bar").style.width = "100%";
    learnMessage(`Learnt from ${set.length} sentences (best at step ${st.best_step}). “My hand” now writes with it` +
      (saved ? "; it stays in this browser." : "; your browser would not store it, so it lasts until you leave the page."), true);
    store(KEY_STYLE, "custom");
    await buildStylePicker();
    selectStyle("custom");
  } catch (err) {
    if (state.tuneJob === job) learnMessage(`Learning your hand did not finish: ${err.message}`, false);
  } finally {
    if (state.tuneJob === job) state.tuneJob = null;
    $("learn-progress").hidden = true;
    showSet();
  }
}

async function stopLearning() {
  const job = state.tuneJob;
  if (!job) return;
  state.tuneJob = null;
  await fetch(job.status_url, { method: "DELETE" }).catch(() => null);
  $("learn-progress").hidden = true;
  learnMessage("Stopped: nothing was learnt.", false);
  showSet();
}

function forgetHand() {
  storeSet([]);
  state.sessionTuned = null;
  store(KEY_TUNED, null);
  learnMessage("Your set and the learnt hand are forgotten.", true);
  showSet();
  buildStylePicker();
}

// ---------------------------------------------------------------- start

async function init() {
  const text = $("text");
  const count = () => { $("text-count").textContent = String(text.value.length); };
  text.addEventListener("input", count);
  text.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate(); });
  $("bias").addEventListener("input", () => { $("bias-out").textContent = Number($("bias").value).toFixed(1); });
  $("stroke").addEventListener("input", () => { $("stroke-out").textContent = Number($("stroke").value).toFixed(1); });
  $("reseed").addEventListener("click", () => { $("seed").value = String(Math.floor(Math.random() * 100000)); });
  $("generate").addEventListener("click", generate);
  $("zoom").addEventListener("click", () => setZoom(!$("result-box").classList.contains("zoomed")));
  $("error-skip-box").addEventListener("change", () => {   // the error's offer: tick the option and write again
    if (!$("error-skip-box").checked) return;
    $("skip-unknown").checked = true;
    generate();
  });
  for (const f of DOWNLOADS) $(`download-${f.id}`).addEventListener("click", () => download(f));
  $("replay").addEventListener("click", replay);
  $("paper").addEventListener("change", () => {
    $("landscape").disabled = !$("paper").value;
    if (!$("paper").value) $("landscape").checked = false;
  });
  $("clear").addEventListener("click", () => { state.strokes = []; state.current = null; sizePad(); sampleMessage("", null); });
  $("undo").addEventListener("click", () => { state.strokes.pop(); if (state.strokes.length) redrawPad(); else sizePad(); });
  $("use-sample").addEventListener("click", useSample);
  $("forget-sample").addEventListener("click", forgetSample);
  $("add-sentence").addEventListener("click", addSentence);
  $("learn-hand").addEventListener("click", learnHand);
  $("stop-learning").addEventListener("click", stopLearning);
  $("forget-hand").addEventListener("click", forgetHand);
  $("new-prompt").addEventListener("click", () => {   // the set's sentences not yet written, in turn
    const have = new Set(getSet().map((x) => x.text));
    const left = state.tunePrompts.filter((p) => !have.has(p));
    const choices = left.length ? left : state.tunePrompts;
    const i = choices.indexOf(promptText());
    $("prompt").value = choices[(i + 1) % choices.length];
    fitPrompt();
    if (!state.strokes.length) sizePad();
    showSet();
  });
  setupPad();
  count();

  try {
    const info = await (await api("/v1/info")).json();
    state.limits = { ...state.limits, ...info.limits };
    state.prompts = info.prompts && info.prompts.length ? info.prompts : state.prompts;
    state.tunePrompts = info.tune_prompts && info.tune_prompts.length ? info.tune_prompts : state.prompts;
    $("prompt").value = nextPrompt(getSet()) || state.prompts[0];
    fitPrompt();
    if (!state.strokes.length) sizePad();
    text.maxLength = state.limits.max_text_chars;
    $("text-max").textContent = String(state.limits.max_text_chars);
    $("prompt").maxLength = state.limits.sample_max_chars;
    for (const [id, values] of [["paper", info.papers], ["pen", info.pens]]) {
      const select = $(id), have = new Set([...select.options].map((o) => o.value));
      for (const v of values || []) {
        if (have.has(v)) continue;
        const o = document.createElement("option");
        o.value = o.textContent = v;
        select.append(o);
      }
    }
  } catch (err) {
    showError(`Could not load the server's settings: ${err.message}`);
  }
  try {
    showModels((await (await api("/v1/models")).json()).models || []);
  } catch (err) {
    showError(`Could not load the server's models: ${err.message}`);
  }
  showSet();
  await buildStylePicker();
  document.body.dataset.ready = "1";  // for tests and scripts
}

document.addEventListener("DOMContentLoaded", init);
