// pd-gateway page: load signals, call the public /v1/detect, plot traces, PD regions and PRPD.
// Plain browser JavaScript; plotly.js comes from the gateway itself (/ui/vendor/plotly.min.js).
"use strict";

const $ = (id) => document.getElementById(id);
const BUCKETS = 1500; // min/max buckets per trace: an 800k-sample signal draws 3,000 points
const MAX_SHAPES = 2000; // regions shaded per plot
const MAX_ROWS = 2000; // rows in the regions table (downloads hold all)
const SLOW_MS = 8000; // after this long without an answer the status says so
const TIMEOUT_MS = 300000;
const REGION_FILL = "rgba(220, 38, 38, 0.22)";
const REJECTED_FILL = "rgba(87, 96, 106, 0.16)"; // candidates the version's rejection rules dropped
const COLORS = ["#0b5cad", "#d1242f", "#1a7f37", "#8250df", "#bc4c00", "#0a7b83", "#bf3989", "#57606a"];

const state = {
  signals: [], // Float64Array (or typed array) per signal, as loaded
  body: null, // what is posted to /v1/detect
  contentType: "",
  source: "",
  result: null,
  xhr: null,
  plots: new Map(), // sample_index -> {div, raw, pre, prob, ac, shapes}
};

// ---------------------------------------------------------------- status
function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + (kind || "idle");
}
function setProgress(fraction) {
  const bar = $("progress");
  if (fraction === null) { bar.hidden = true; return; }
  bar.hidden = false;
  if (fraction === undefined) bar.removeAttribute("value"); else bar.value = Math.round(fraction * 100);
}
const mb = (n) => (n / 1048576).toFixed(1) + " MB";
function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "number") return String(v);
  return Number.isInteger(v) ? String(v) : Number(v.toPrecision(digits)).toString();
}
function apiHeaders() {
  const key = $("apikey").value.trim(); // memory only: never written to storage
  return key ? { "X-API-Key": key } : {};
}
function apiError(status, text) {
  try {
    const e = JSON.parse(text).error;
    if (e) return `${status} ${e.code}: ${e.message}` + (e.request_id ? ` (request ${e.request_id})` : "");
  } catch (_) { /* not JSON */ }
  return `${status}: ${text.slice(0, 200) || "no body"}`;
}

// ---------------------------------------------------------------- parsing
const NPY_TYPES = { f8: Float64Array, f4: Float32Array, i1: Int8Array, u1: Uint8Array, i2: Int16Array,
  u2: Uint16Array, i4: Int32Array, u4: Uint32Array, i8: BigInt64Array, u8: BigUint64Array };

function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.slice(1, 6)) !== "NUMPY") throw new Error("not a .npy file");
  const major = bytes[6];
  const view = new DataView(buffer);
  const hlen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder("latin1").decode(bytes.slice(start, start + hlen));
  const descr = /'descr':\s*'([<>|=]?)(\w+)'/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !shape) throw new Error("unreadable .npy header");
  if (/'fortran_order':\s*True/.test(header)) throw new Error("Fortran-ordered .npy is not supported here");
  if (descr[1] === ">") throw new Error("big-endian .npy is not supported here");
  const Type = NPY_TYPES[descr[2]];
  if (!Type) throw new Error(`.npy dtype ${descr[2]} is not supported (integers or floats)`);
  const dims = shape[1].split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (dims.length < 1 || dims.length > 2) throw new Error(`.npy must be 1-D or 2-D, got ${dims.length}-D`);
  const offset = start + hlen;
  const count = dims.reduce((a, b) => a * b, 1);
  const data = new Type(buffer.slice(offset, offset + count * Type.BYTES_PER_ELEMENT));
  const toNum = data instanceof BigInt64Array || data instanceof BigUint64Array
    ? (a) => Float64Array.from(a, Number) : (a) => a;
  if (dims.length === 1) return [toNum(data)];
  const [rows, cols] = dims;
  return Array.from({ length: rows }, (_, r) => toNum(data.subarray(r * cols, (r + 1) * cols)));
}

function parseCsv(text) {
  const rows = [];
  for (const line of text.split(/\r?\n/)) {
    const cells = line.trim().split(/[,;\t ]+/).filter((c) => c !== "");
    if (!cells.length) continue;
    const nums = cells.map(Number);
    if (nums.some((v) => !Number.isFinite(v))) {
      if (rows.length === 0) continue; // a header line
      throw new Error(`CSV line ${rows.length + 1} holds a value that is not a number`);
    }
    rows.push(nums);
  }
  if (!rows.length) throw new Error("the CSV file holds no numbers");
  if (rows.every((r) => r.length === 1)) return [Float64Array.from(rows, (r) => r[0])]; // one column
  return rows.map((r) => Float64Array.from(r)); // one signal per row
}

function parseJsonSignals(text) {
  const doc = JSON.parse(text);
  let rows = doc;
  if (!Array.isArray(doc)) rows = doc.signals || (doc.signal ? [doc.signal] : null);
  if (!Array.isArray(rows) || !rows.length) throw new Error('JSON must be an array, {"signal": [...]} or {"signals": [[...]]}');
  if (!Array.isArray(rows[0])) rows = [rows];
  return rows.map((r) => Float64Array.from(r));
}

// Parsed CSV/JSON signals go to the API as a float64 .npy (no JSON body limit, no number parsing); rows
// of different lengths can only go as JSON.
function npyBody(signals) {
  const n = signals[0].length;
  if (signals.some((s) => s.length !== n)) return null;
  const shape = signals.length === 1 ? `(${n},)` : `(${signals.length}, ${n})`;
  let header = `{'descr': '<f8', 'fortran_order': False, 'shape': ${shape}, }`;
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n"; // data starts 64-byte aligned
  const buf = new ArrayBuffer(10 + header.length + 8 * n * signals.length);
  const bytes = new Uint8Array(buf);
  bytes.set([0x93, 78, 85, 77, 80, 89, 1, 0]); // \x93NUMPY v1.0
  new DataView(buf).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) bytes[10 + i] = header.charCodeAt(i);
  const data = new Float64Array(buf, 10 + header.length);
  signals.forEach((s, r) => data.set(s, r * n));
  return buf;
}

function useParsed(signals, source) {
  const npy = npyBody(signals);
  if (npy) useSignals(signals, npy, "application/x-npy", source);
  else useSignals(signals, JSON.stringify({ signals: signals.map((s) => Array.from(s)) }), "application/json", source);
}

// ---------------------------------------------------------------- loading
function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onprogress = (e) => {
      if (e.lengthComputable) { setStatus(`Reading ${file.name}: ${Math.round((100 * e.loaded) / e.total)} %`, "busy"); setProgress(e.loaded / e.total); }
    };
    reader.onerror = () => reject(new Error(`could not read ${file.name}`));
    reader.onload = () => resolve(reader.result);
    if (/\.npy$/i.test(file.name)) reader.readAsArrayBuffer(file); else reader.readAsText(file);
  });
}

async function loadFile(file) {
  try {
    const content = await readFile(file);
    if (/\.npy$/i.test(file.name)) {
      useSignals(parseNpy(content), content, "application/x-npy", file.name);
    } else {
      useParsed(/\.json$/i.test(file.name) ? parseJsonSignals(content) : parseCsv(content), file.name);
    }
    await detect();
  } catch (e) {
    setProgress(null);
    setStatus(`Could not load ${file.name}: ${e.message}`, "error");
  }
}

function request(method, url, { body = null, contentType = null, responseType = "text", phase = "" } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    state.xhr = xhr;
    xhr.open(method, url);
    xhr.responseType = responseType;
    xhr.timeout = TIMEOUT_MS;
    if (contentType) xhr.setRequestHeader("Content-Type", contentType);
    for (const [k, v] of Object.entries(apiHeaders())) xhr.setRequestHeader(k, v);
    const t0 = performance.now();
    let last = t0; // the last sign of life (upload or download progress)
    const waiting = () => {
      last = performance.now();
      setStatus(`${phase}: waiting for the gateway…`, "busy"); setProgress(undefined);
    };
    const slowTimer = setInterval(() => {
      const idle = performance.now() - last;
      if (idle > SLOW_MS) {
        setStatus(`${phase}: no answer for ${Math.round(idle / 1000)} s — the gateway or Triton is slow or busy (Cancel stops waiting)`, "slow");
      }
    }, 1000);
    if (body !== null) {
      xhr.upload.onprogress = (e) => {
        last = performance.now();
        if (e.lengthComputable) { setStatus(`${phase}: uploading ${mb(e.loaded)} of ${mb(e.total)}`, "busy"); setProgress(e.loaded / e.total); }
      };
      xhr.upload.onload = waiting;
    } else {
      waiting();
    }
    xhr.onprogress = (e) => {
      last = performance.now();
      setStatus(`${phase}: receiving ${mb(e.loaded)}` + (e.lengthComputable ? ` of ${mb(e.total)}` : ""), "busy");
      setProgress(e.lengthComputable ? e.loaded / e.total : undefined);
    };
    const done = () => { clearInterval(slowTimer); state.xhr = null; $("cancel").hidden = true; };
    xhr.onload = () => {
      done();
      if (xhr.status >= 200 && xhr.status < 300) resolve({ xhr, ms: performance.now() - t0 });
      else {
        const text = responseType === "text" ? xhr.responseText : new TextDecoder().decode(xhr.response || new ArrayBuffer(0));
        reject(new Error(apiError(xhr.status, text)));
      }
    };
    xhr.onerror = () => { done(); reject(new Error("the gateway could not be reached (network error)")); };
    xhr.ontimeout = () => { done(); reject(new Error(`no answer within ${TIMEOUT_MS / 1000} s`)); };
    xhr.onabort = () => { done(); reject(new Error("cancelled")); };
    $("cancel").hidden = false;
    xhr.send(body);
  });
}

async function loadExample(name) {
  const meta = state.examples.find((e) => e.name === name);
  try {
    const { xhr } = await request("GET", `/v1/examples/${encodeURIComponent(name)}`, { responseType: "arraybuffer", phase: `Example ${name}` });
    if (meta) {
      $("fs").value = meta.sampling_rate_hz || "";
      $("pf").value = meta.power_frequency_hz || 50;
    }
    useSignals(parseNpy(xhr.response), xhr.response, "application/x-npy", name);
    await detect();
  } catch (e) {
    setProgress(null);
    setStatus(`Example ${name}: ${e.message}`, "error");
  }
}

function useSignals(signals, body, contentType, source) {
  state.signals = signals;
  state.body = body;
  state.contentType = contentType;
  state.source = source;
  $("run").disabled = false;
}

// ---------------------------------------------------------------- detect
function detectQuery() {
  const q = new URLSearchParams({ include_probability: "true", include_preprocessed: "true", include_rejected: "true" });
  const add = (key, id) => { const v = $(id).value.trim(); if (v) q.set(key, v); };
  add("model", "model"); add("version", "version"); add("profile", "profile");
  add("threshold", "threshold"); add("sampling_rate_hz", "fs"); add("power_frequency_hz", "pf");
  return q.toString();
}

async function detect() {
  if (!state.body) return;
  $("run").disabled = true;
  const n = state.signals.reduce((a, s) => a + s.length, 0);
  try {
    const { xhr, ms } = await request("POST", "/v1/detect?" + detectQuery(), {
      body: state.body, contentType: state.contentType, phase: `Detecting in ${state.signals.length} signal(s), ${n.toLocaleString()} samples`,
    });
    setStatus("Drawing…", "busy");
    const result = JSON.parse(xhr.responseText);
    await new Promise((r) => setTimeout(r, 0));
    render(result);
    setProgress(null);
    setStatus(`${state.source}: ${result.total_regions} region(s) in ${result.valid_samples_found} valid of ${result.total_samples_processed} signal(s) — ${(ms / 1000).toFixed(2)} s round trip, ${fmt(result.timings_ms.total)} ms in the gateway`, "done");
  } catch (e) {
    setProgress(null);
    setStatus(`Detection failed — ${e.message}`, "error");
  } finally {
    $("run").disabled = false;
  }
}

// ---------------------------------------------------------------- plotting
function minmax(y, lo, hi) {
  lo = Math.max(0, Math.floor(lo)); hi = Math.min(y.length, Math.ceil(hi) + 1);
  const n = hi - lo;
  if (n <= 0) return { x: [], y: [] };
  if (n <= BUCKETS * 2) {
    const x = new Array(n), v = new Array(n);
    for (let i = 0; i < n; i++) { x[i] = lo + i; v[i] = y[lo + i]; }
    return { x, y: v };
  }
  const step = n / BUCKETS, x = [], v = [];
  for (let b = 0; b < BUCKETS; b++) {
    const s = lo + Math.floor(b * step), e = lo + Math.floor((b + 1) * step);
    let iMin = s, iMax = s;
    for (let i = s + 1; i < e; i++) { if (y[i] < y[iMin]) iMin = i; if (y[i] > y[iMax]) iMax = i; }
    const [a, c] = iMin < iMax ? [iMin, iMax] : [iMax, iMin];
    x.push(a, c); v.push(y[a], y[c]);
  }
  return { x, y: v };
}

function acCurve(xs, ac, offset) {
  return xs.map((i) => offset + ac.amplitude * Math.sin((2 * Math.PI * i) / ac.samples_per_cycle + (ac.phase0_deg * Math.PI) / 180));
}

function traces(p, lo, hi) {
  const raw = minmax(p.raw, lo, hi), pre = minmax(p.pre, lo, hi), prob = minmax(p.prob, lo, hi);
  const out = [
    { x: raw.x, y: raw.y, name: "raw", type: "scatter", mode: "lines", line: { color: "#57606a", width: 1 }, yaxis: "y" },
    { x: raw.x, y: p.ac ? acCurve(raw.x, p.ac, p.rawMean) : [], name: "AC fit", type: "scatter", mode: "lines", line: { color: "#bc4c00", width: 1.5, dash: "dot" }, yaxis: "y", hoverinfo: "skip" },
    { x: pre.x, y: pre.y, name: "preprocessed (filtered)", type: "scatter", mode: "lines", line: { color: "#0b5cad", width: 1 }, yaxis: "y2" },
    { x: prob.x, y: prob.y, name: "PD probability", type: "scatter", mode: "lines", line: { color: "#1a7f37", width: 1 }, yaxis: "y3" },
  ];
  return out;
}

function regionShapes(regions, fill = REGION_FILL, dash = null) {
  return regions.slice(0, MAX_SHAPES).map((r) => ({
    type: "rect", xref: "x", yref: "paper", x0: r.start - 0.5, x1: r.end - 0.5, y0: 0, y1: 1,
    fillcolor: fill, line: dash ? { width: 1, dash, color: "#57606a" } : { width: 0 }, layer: "below",
  }));
}

function plotSignal(container, r) {
  const i = r.sample_index;
  const raw = state.signals[i];
  const section = document.createElement("section");
  section.className = "signal";
  section.id = `signal-${i}`;
  const head = document.createElement("h3");
  head.innerHTML = `Signal ${i} — ${r.n_samples.toLocaleString()} samples — ` +
    (r.valid ? `${r.num_regions_detected} PD region(s)` : `<span class="bad">not valid (no detection)</span>`) +
    (r.rejected && r.rejected.length ? ` — ${r.rejected.length} rejected as interference (grey, dashed: ${rejectedReasons(r.rejected)})` : "") +
    (r.ac ? ` — AC fit: ${fmt(r.ac.samples_per_cycle)} samples/cycle, R² ${fmt(r.ac.r2, 3)}` : "") +
    (r.regions_truncated ? " — regions truncated by the gateway" : "");
  const div = document.createElement("div");
  div.className = "plot";
  div.id = `plot-${i}`;
  div.setAttribute("role", "img");
  div.setAttribute("aria-label", `Signal ${i}: raw, preprocessed and probability traces with ${r.num_regions_detected} PD regions shaded`);
  section.append(head, div);
  container.append(section);
  // The fit's DC term is not in the response: given amplitude and phase, its least-squares value is
  // the mean of the residual (sampled: the sinusoid is smooth).
  let mean = 0, m = 0;
  const stride = Math.max(1, Math.floor(raw.length / 20000));
  for (let k = 0; k < raw.length; k += stride, m++) mean += Number(raw[k]) - (r.ac ? acCurve([k], r.ac, 0)[0] : 0);
  const p = {
    div, raw, pre: r.preprocessed || new Float64Array(raw.length), prob: r.probability || new Float64Array(raw.length),
    ac: r.ac, rawMean: mean / m, n: raw.length, busy: false,
    shapes: [...regionShapes(r.regions), ...regionShapes(r.rejected || [], REJECTED_FILL, "dot")],
  };
  state.plots.set(i, p);
  div.dataset.regionsDrawn = String(Math.min(r.regions.length, MAX_SHAPES));
  div.dataset.rejectedDrawn = String(Math.min((r.rejected || []).length, MAX_SHAPES));
  const layout = {
    margin: { l: 60, r: 20, t: 10, b: 40 }, showlegend: true, legend: { orientation: "h", y: -0.12 },
    xaxis: { title: { text: "sample" }, range: [0, p.n - 1], anchor: "y3" },
    yaxis: { domain: [0.7, 1], title: { text: "raw" } },
    yaxis2: { domain: [0.36, 0.66], title: { text: "filtered" } },
    yaxis3: { domain: [0, 0.3], title: { text: "P(PD)" }, range: [-0.05, 1.05] },
    shapes: p.shapes, hovermode: "closest",
  };
  Plotly.newPlot(div, traces(p, 0, p.n), layout, { responsive: true, displaylogo: false });
  div.on("plotly_relayout", (ev) => redecimate(p, ev));
}

function xRange(ev, n) {
  if (ev["xaxis.autorange"]) return [0, n];
  if (Array.isArray(ev["xaxis.range"])) return ev["xaxis.range"];
  if (ev["xaxis.range[0]"] !== undefined) return [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
  return null; // not an x-axis change
}

function redecimate(p, ev) {
  const range = xRange(ev, p.n);
  if (!range) return;
  const [lo, hi] = range;
  const t = traces(p, lo, hi);
  Plotly.restyle(p.div, { x: t.map((d) => d.x), y: t.map((d) => d.y) });
  p.div.dataset.visiblePoints = String(t[0].x.length);
  p.div.dataset.visibleRange = `${Math.round(lo)}-${Math.round(hi)}`;
}

function rejectedReasons(rejected) {
  const counts = {};
  for (const g of rejected) counts[g.reason] = (counts[g.reason] || 0) + 1;
  return Object.entries(counts).map(([k, v]) => `${v} ${k === "phase" ? "outside the PD phase window" : "opposite-polarity twin"}`).join(", ");
}

function plotPrpd(results) {
  const traceList = [];
  let maxAmp = 0, shown = 0, noPhase = 0;
  const bySignal = new Map();
  const rejected = { x: [], y: [], text: [] };
  for (const r of results) {
    for (const g of r.rejected || []) {
      if (g.phase_deg === null || g.phase_deg === undefined) continue;
      rejected.x.push(g.phase_deg); rejected.y.push(g.peak_amplitude); rejected.text.push(`signal ${r.sample_index}: ${g.reason}`);
    }
    for (const g of r.regions) {
      if (g.phase_deg === null || g.phase_deg === undefined) { noPhase++; continue; }
      if (!bySignal.has(r.sample_index)) bySignal.set(r.sample_index, { x: [], y: [] });
      const s = bySignal.get(r.sample_index);
      s.x.push(g.phase_deg); s.y.push(g.peak_amplitude);
      maxAmp = Math.max(maxAmp, Math.abs(g.peak_amplitude));
      shown++;
    }
  }
  const deg = Array.from({ length: 361 }, (_, k) => k);
  traceList.push({ x: deg, y: deg.map((d) => (maxAmp || 1) * Math.sin((d * Math.PI) / 180)), name: "AC (scaled)", mode: "lines", line: { color: "#afb8c1", width: 2 }, hoverinfo: "skip" });
  let c = 0;
  for (const [idx, s] of bySignal) {
    traceList.push({ x: s.x, y: s.y, name: `signal ${idx}`, mode: "markers", type: "scatter", marker: { size: 7, color: COLORS[c++ % COLORS.length], opacity: 0.8 } });
  }
  if (rejected.x.length) {
    traceList.push({ ...rejected, name: "rejected (interference)", mode: "markers", type: "scatter", hoverinfo: "x+y+text", marker: { size: 7, symbol: "x-thin-open", color: "#57606a", opacity: 0.7 } });
  }
  const div = $("prpd");
  div.dataset.points = String(shown);
  div.dataset.rejected = String(rejected.x.length);
  $("prpd-note").textContent = `${shown} region(s) plotted` +
    (rejected.x.length ? `; ${rejected.x.length} rejected candidate(s) as grey ×` : "") + (noPhase ? `; ${noPhase} without an AC phase (no sinusoid fitted: give the sampling rate) are not shown` : "");
  Plotly.newPlot(div, traceList, {
    margin: { l: 60, r: 20, t: 10, b: 45 }, hovermode: "closest",
    xaxis: { title: { text: "AC phase (°)" }, range: [0, 360], dtick: 45 },
    yaxis: { title: { text: "peak amplitude (preprocessed units)" } },
  }, { responsive: true, displaylogo: false });
}

// ---------------------------------------------------------------- table and downloads
function allRegions() {
  const rows = [];
  for (const r of state.result.results) r.regions.forEach((g, k) => rows.push({ signal: r.sample_index, index: k, ...g }));
  return rows;
}

function fillTable(results) {
  const body = document.querySelector("#regions tbody");
  body.replaceChildren();
  const rows = allRegions().filter((g) => results.some((r) => r.sample_index === g.signal));
  for (const g of rows.slice(0, MAX_ROWS)) {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.signal = g.signal;
    tr.dataset.index = g.index;
    for (const v of [g.signal, g.index, g.start, g.end, g.duration, g.start_us, g.duration_us, g.peak_index, g.peak_amplitude, g.phase_deg, g.mean_score]) {
      const td = document.createElement("td");
      td.textContent = fmt(v);
      tr.append(td);
    }
    body.append(tr);
  }
  $("regions-note").textContent = `${rows.length} region(s)` + (rows.length > MAX_ROWS ? `; the first ${MAX_ROWS} listed, downloads hold all` : "");
}

function selectRow(tr) {
  document.querySelectorAll("#regions tr.selected").forEach((t) => t.classList.remove("selected"));
  tr.classList.add("selected");
  const i = Number(tr.dataset.signal), k = Number(tr.dataset.index);
  const p = state.plots.get(i);
  const g = state.result.results.find((r) => r.sample_index === i).regions[k];
  if (!p || !g) return;
  const pad = Math.max(50, 3 * (g.end - g.start));
  const highlight = { type: "rect", xref: "x", yref: "paper", x0: g.start - 0.5, x1: g.end - 0.5, y0: 0, y1: 1, fillcolor: "rgba(255, 160, 0, 0.35)", line: { color: "#bc4c00", width: 2 }, layer: "below" };
  Plotly.relayout(p.div, { "xaxis.range": [Math.max(0, g.start - pad), Math.min(p.n - 1, g.end + pad)], shapes: [...p.shapes, highlight] });
  p.div.dataset.highlighted = `${g.start}-${g.end}`;
  p.div.scrollIntoView({ block: "center" });
}

function download(name, text, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function downloadCsv() {
  const cols = ["signal", "index", "start", "end", "duration", "start_us", "duration_us", "peak_index", "peak_amplitude", "phase_deg", "mean_score"];
  const lines = [cols.join(",")].concat(allRegions().map((g) => cols.map((c) => (g[c] === undefined || g[c] === null ? "" : g[c])).join(",")));
  download(`${state.source}-regions.csv`, lines.join("\n") + "\n", "text/csv");
}

function downloadJson() {
  const r = state.result;
  const doc = { model: r.model, version: r.version, source: state.source, signals: r.results.map((s) => ({ sample_index: s.sample_index, valid: s.valid, num_regions_detected: s.num_regions_detected, regions: s.regions })) };
  download(`${state.source}-regions.json`, JSON.stringify(doc, null, 1), "application/json");
}

// ---------------------------------------------------------------- render
function render(result) {
  state.result = result;
  for (const p of state.plots.values()) Plotly.purge(p.div);
  state.plots.clear();
  const validOnly = $("valid-only").checked;
  const shown = result.results.filter((r) => !validOnly || r.valid);
  const container = $("signals");
  container.replaceChildren();
  $("summary").textContent = `Model ${result.model} version ${result.version} · ${result.total_samples_processed} signal(s), ${result.valid_samples_found} valid · ${result.total_regions} PD region(s) · ${result.windows} windows` + (validOnly ? ` · showing the ${shown.length} valid signal(s)` : "");
  $("prpd-section").hidden = false;
  $("regions-section").hidden = false;
  plotPrpd(shown);
  fillTable(shown);
  for (const r of shown) plotSignal(container, r);
  document.body.dataset.rendered = String(Date.now());
}

// ---------------------------------------------------------------- start-up
async function getJson(url) {
  const { xhr } = await request("GET", url, { phase: `Loading ${url}` });
  return JSON.parse(xhr.responseText);
}

async function loadModels() {
  try {
    const doc = await getJson("/v1/models");
    state.models = doc.models;
    const sel = $("model");
    sel.replaceChildren(new Option("default", ""));
    for (const m of doc.models) sel.append(new Option(m.name + (m.default ? " (default)" : ""), m.name));
    fillVersions();
    return true;
  } catch (e) {
    setStatus(`Models could not be listed — ${e.message}`, "error");
    return false;
  }
}

function fillVersions() {
  const sel = $("version");
  sel.replaceChildren(new Option("latest ready", ""));
  const name = $("model").value;
  const m = (state.models || []).find((x) => (name ? x.name === name : x.default));
  for (const v of (m ? m.versions : [])) {
    const opt = new Option(`${v.version} (${v.state.toLowerCase()})`, v.version);
    opt.disabled = v.state !== "READY";
    sel.append(opt);
  }
}

async function init() {
  const body = document.body;
  const params = new URLSearchParams(location.search);
  if (body.dataset.keysRequired === "true") $("key-label").hidden = false;
  if (body.dataset.mode === "test") $("valid-only").checked = true;
  if (params.get("profile")) $("profile").value = params.get("profile");
  $("controls").addEventListener("submit", (e) => { e.preventDefault(); detect(); });
  $("cancel").addEventListener("click", () => state.xhr && state.xhr.abort());
  $("file").addEventListener("change", (e) => { if (e.target.files[0]) loadFile(e.target.files[0]); });
  $("example").addEventListener("change", (e) => { if (e.target.value) loadExample(e.target.value); });
  $("model").addEventListener("change", fillVersions);
  $("apikey").addEventListener("change", async () => {
    if ((await loadModels()) && state.autoload && !state.result) await loadExample(state.autoload);
  });
  $("valid-only").addEventListener("change", () => state.result && render(state.result));
  $("dl-csv").addEventListener("click", downloadCsv);
  $("dl-json").addEventListener("click", downloadJson);
  const table = $("regions");
  table.addEventListener("click", (e) => { const tr = e.target.closest("tbody tr"); if (tr) selectRow(tr); });
  table.addEventListener("keydown", (e) => {
    const tr = e.target.closest("tbody tr");
    if (!tr) return;
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); selectRow(tr); }
    if (e.key === "ArrowDown" && tr.nextElementSibling) { e.preventDefault(); tr.nextElementSibling.focus(); }
    if (e.key === "ArrowUp" && tr.previousElementSibling) { e.preventDefault(); tr.previousElementSibling.focus(); }
  });
  try {
    state.examples = (await getJson("/v1/examples")).examples;
    for (const ex of state.examples) $("example").append(new Option(ex.title, ex.name));
  } catch (e) {
    state.examples = [];
    setStatus(`Examples could not be listed — ${e.message}`, "error");
  }
  const keyNeeded = body.dataset.keysRequired === "true" && !$("apikey").value;
  if (!keyNeeded) await loadModels();
  const autoload = body.dataset.autoload || params.get("example");
  state.autoload = autoload;
  if (autoload) $("example").value = autoload;
  if (autoload && !keyNeeded) {
    await loadExample(autoload);
  } else if (keyNeeded) {
    setStatus("This gateway needs an API key: enter it above (it stays in this page only), then choose a signal.", "idle");
  } else {
    setStatus("Choose a file (.npy 1-D/2-D, .csv, .json) or an example.", "idle");
  }
}

if (typeof Plotly === "undefined") setStatus("plotly.js did not load from /ui/vendor/plotly.min.js", "error");
else init();
