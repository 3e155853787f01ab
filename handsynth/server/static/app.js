// handsynth web page: plain JavaScript, no build step. Talks to the HTTP API of the same server.
"use strict";

const KEY_SAMPLE = "handsynth.sample";   // the user's handwriting sample: {text, strokes, y_axis}
const KEY_STYLE = "handsynth.style";     // the chosen style: "", "builtin:<id>" or "custom"

const $ = (id) => document.getElementById(id);
const state = {
  limits: { max_text_chars: 1000, sample_min_chars: 8, sample_max_chars: 120, sample_min_points: 30,
            max_sample_points: 6000 },
  prompts: ["The quick brown fox jumps over the lazy dog."],
  promptIndex: 0,
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
};

// ---------------------------------------------------------------- errors: always in the page

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}
function clearError() { $("error").hidden = true; $("error").textContent = ""; }
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

function styleCard(value, name, title, preview) {
  const label = document.createElement("label");
  label.className = "style-card";
  label.title = title || name;
  const input = document.createElement("input");
  input.type = "radio";
  input.name = "style";
  input.value = value;
  input.addEventListener("change", () => { store(KEY_STYLE, value); markChecked(); });
  label.append(input, preview);
  const span = document.createElement("span");
  span.textContent = name;
  label.append(span);
  return label;
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
}

function drawSample(canvas, strokes, lineWidth) {
  const ctx = canvas.getContext("2d");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 150, h = canvas.clientHeight || 46;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pts = strokes.flat();
  if (!pts.length) return;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const pad = 4;
  const s = Math.min((w - 2 * pad) / Math.max(x1 - x0, 1), (h - 2 * pad) / Math.max(y1 - y0, 1));
  ctx.strokeStyle = "#1b1f3b";
  ctx.lineWidth = lineWidth || 1.2;
  ctx.lineCap = ctx.lineJoin = "round";
  for (const stroke of strokes) {
    ctx.beginPath();
    stroke.forEach(([x, y], i) => {
      const px = pad + (x - x0) * s, py = pad + (y - y0) * s;
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    if (stroke.length === 1) ctx.lineTo(pad + (stroke[0][0] - x0) * s + 0.5, pad + (stroke[0][1] - y0) * s);
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
  own.textContent = "its own";
  cards.push(styleCard("", "Model's own hand", "no priming: the model's own handwriting", own));
  for (const s of styles) {
    const img = document.createElement("img");
    img.src = s.preview_url;
    img.alt = `sample of style ${s.name}`;
    cards.push(styleCard(`builtin:${s.id}`, s.name, `${s.name}: “${s.text}”${s.source ? " (" + s.source + ")" : ""}`, img));
  }
  const sample = getSample();
  const canvas = document.createElement("canvas");
  const mine = styleCard("custom", "My hand", sample ? `your sample: “${sample.text}”` : "write a sample below first", canvas);
  mine.id = "style-custom";
  if (!sample) {
    mine.classList.add("disabled");
    mine.querySelector("input").disabled = true;
    mine.querySelector("span").textContent = "My hand (write a sample below)";
  }
  cards.push(mine);
  $("styles").replaceChildren(...cards);
  if (sample) drawSample(canvas, sample.strokes);
  $("forget-sample").hidden = !sample;
  selectStyle(storedStyle());
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
  if ($("paper").value) {
    body.paper = $("paper").value;
    if ($("landscape").checked) body.landscape = true;
  }
  if ($("ruling").value) body.ruling = $("ruling").value;
  const style = selectedStyle();
  if (style.startsWith("builtin:")) {
    body.style = style.slice("builtin:".length);
  } else if (style === "custom") {
    const sample = getSample();
    if (!sample) throw new Error("Your handwriting sample is gone: write one below, or pick another style.");
    body.style_sample = { text: sample.text, strokes: sample.strokes, y_axis: "down" };
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
    $("result-box").scrollIntoView({ block: "nearest" });   // in sight while it plays
    if (play) startPlay(play);
  } catch (err) {
    showError(err.message);
  } finally {
    setBusy(false);
  }
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

const pad = () => $("pad");

function sizePad() {
  const c = pad();
  const dpr = window.devicePixelRatio || 1;
  c.width = Math.round(c.clientWidth * dpr);
  c.height = Math.round(c.clientHeight * dpr);
  const ctx = c.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  redrawPad();
}

function redrawPad() {
  const c = pad(), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
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

function padPoint(e) {
  const r = pad().getBoundingClientRect();
  return [Math.round((e.clientX - r.left) * 10) / 10, Math.round((e.clientY - r.top) * 10) / 10];
}

function pointCount(strokes) { return strokes.reduce((n, s) => n + s.length, 0); }

function updatePadCount() {
  const n = pointCount(state.strokes);
  $("pad-count").textContent = n ? `${state.strokes.length} strokes, ${n} points` : "";
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
  window.addEventListener("resize", () => {
    sizePad();
    const mine = document.querySelector("#style-custom canvas");
    const sample = getSample();
    if (mine && sample) drawSample(mine, sample.strokes);
  });
  sizePad();
}

function sampleMessage(text, ok) {
  const m = $("sample-msg");
  m.textContent = text;
  m.className = "message " + (ok ? "good" : "bad");
}

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

async function useSample() {
  const text = $("prompt").value.trim().replace(/\s+/g, " ");
  const L = state.limits;
  if (!state.strokes.length) {
    sampleMessage("The pad is empty: write the sentence on it first.", false);
    return;
  }
  if (text.length < L.sample_min_chars) {
    sampleMessage(`The sentence is too short: write at least ${L.sample_min_chars} characters, ideally the whole sentence.`, false);
    return;
  }
  let strokes = state.strokes;
  if (pointCount(strokes) < L.sample_min_points) {
    sampleMessage("That sample is too short: write the whole sentence, then try again.", false);
    return;
  }
  if (pointCount(strokes) > L.max_sample_points) strokes = thin(strokes, L.max_sample_points);
  const sample = { text, strokes, y_axis: "down" };
  $("use-sample").disabled = true;
  try {
    await api("/v1/samples/check", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(sample),
    });
  } catch (err) {
    sampleMessage(`This sample cannot be used: ${err.message}`, false);
    return;
  } finally {
    $("use-sample").disabled = false;
  }
  if (!store(KEY_SAMPLE, sample)) {
    sampleMessage("Your browser would not store the sample; it is used until you leave the page.", false);
  } else {
    sampleMessage("Saved: your handwriting is now the style (it stays in this browser). Press “Write it”.", true);
  }
  store(KEY_STYLE, "custom");
  state.sessionSample = sample;  // used if the browser's storage is disabled
  await buildStylePicker();
  selectStyle("custom");
}

function forgetSample() {
  store(KEY_SAMPLE, null);
  state.sessionSample = null;
  if (storedStyle() === "custom") store(KEY_STYLE, "");
  sampleMessage("Your sample is forgotten.", true);
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
  for (const f of DOWNLOADS) $(`download-${f.id}`).addEventListener("click", () => download(f));
  $("replay").addEventListener("click", replay);
  $("paper").addEventListener("change", () => {
    $("landscape").disabled = !$("paper").value;
    if (!$("paper").value) $("landscape").checked = false;
  });
  $("clear").addEventListener("click", () => { state.strokes = []; state.current = null; redrawPad(); sampleMessage("", true); });
  $("undo").addEventListener("click", () => { state.strokes.pop(); redrawPad(); });
  $("use-sample").addEventListener("click", useSample);
  $("forget-sample").addEventListener("click", forgetSample);
  $("new-prompt").addEventListener("click", () => {
    state.promptIndex = (state.promptIndex + 1) % state.prompts.length;
    $("prompt").value = state.prompts[state.promptIndex];
  });
  setupPad();
  count();

  try {
    const info = await (await api("/v1/info")).json();
    state.limits = { ...state.limits, ...info.limits };
    state.prompts = info.prompts && info.prompts.length ? info.prompts : state.prompts;
    $("prompt").value = state.prompts[0];
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
  await buildStylePicker();
  document.body.dataset.ready = "1";  // for tests and scripts
}

document.addEventListener("DOMContentLoaded", init);
