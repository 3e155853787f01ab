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
  lastBody: null,       // the last successful request, to download it in other formats
  pngUrl: null,
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
    format,
  };
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
    const res = await api("/v1/write", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const blob = await res.blob();
    const pages = Number(res.headers.get("X-Handsynth-Pages") || 1);
    const seconds = Number(res.headers.get("X-Handsynth-Seconds") || 0);
    await showResult(blob, pages, seconds);
    state.lastBody = body;
  } catch (err) {
    showError(err.message);
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
      $("download-svg").disabled = false;
      $("download-pdf").disabled = false;
      $("result-info").textContent = (pages > 1 ? `page 1 of ${pages} (the PDF holds all) · ` : "") +
        `written in ${seconds.toFixed(1)} s`;
      resolve();
    };
    img.onerror = () => reject(new Error("The server's image could not be shown."));
    img.src = state.pngUrl;
  });
}

async function download(format) {
  if (!state.lastBody || state.busy) return;
  clearError();
  setBusy(true);
  try {
    const body = { ...state.lastBody, format };
    const res = await api("/v1/write", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = `handwriting.${format}`;
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
  $("download-svg").addEventListener("click", () => download("svg"));
  $("download-pdf").addEventListener("click", () => download("pdf"));
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
  } catch (err) {
    showError(`Could not load the server's settings: ${err.message}`);
  }
  await buildStylePicker();
  document.body.dataset.ready = "1";  // for tests and scripts
}

document.addEventListener("DOMContentLoaded", init);
