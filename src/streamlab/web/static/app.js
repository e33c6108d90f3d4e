// StreamLab dashboard: plain JS and canvas, no dependencies.
// Data: one WebSocket (/api/ws) with latest-value semantics: JSON text messages (hello, stats,
// error) and binary trace/spectrum messages: uint32 LE header length, JSON header, padding to
// 4 bytes, float32 data. Traces are min/max per column (decimated on the server).
"use strict";

const S = window.streamlab = {
  graph: null, stats: null, trace: null, spectrum: null, node: null, schema: null, config: null,
  draws: 0, traceMessages: 0, rafTicks: 0, ws: null, layout: new Map(), dirty: true,
};
const $ = (id) => document.getElementById(id);
const COLORS = ["#4fb3ff", "#5fd38d", "#ffcc66", "#ff8a65", "#ba8cff", "#4dd0c4", "#f48fb1", "#c5e1a5"];

function fmtS(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
  if (s < 1) return (s * 1e3).toFixed(1) + " ms";
  return s.toFixed(2) + " s";
}
function fmtRate(r) { return r >= 100 ? r.toFixed(0) : r.toFixed(1); }

// -- API ---------------------------------------------------------------------------------------
async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: r.statusText }; }
  return { status: r.status, ok: r.ok, data };
}

// -- WebSocket -----------------------------------------------------------------------------------
function connect() {
  const ws = new WebSocket(`ws://${location.host}/api/ws`);
  ws.binaryType = "arraybuffer";
  S.ws = ws;
  ws.onopen = () => { if (S.node) subscribe(S.node); };
  ws.onclose = () => {
    $("state").textContent = "disconnected"; $("state").className = "badge closed";
    setTimeout(connect, 1000);
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") onJson(JSON.parse(ev.data));
    else onBinary(ev.data);
  };
}

function subscribe(node) {
  if (!S.ws || S.ws.readyState !== 1) return;
  const c = $("traces");
  S.ws.send(JSON.stringify({ type: "subscribe", node, width: Math.max(16, c.width - 60), seconds: 5 }));
}

function onJson(m) {
  if (m.type === "hello") {
    $("pipeline").textContent = m.pipeline;
    S.graph = m.graph; layoutGraph(); S.dirty = true;
    if (!S.node) {
      // default: the first node that emits frames to others, else the first node
      const withOut = m.graph.edges.length ? m.graph.edges[0].from : m.graph.nodes[0]?.id;
      if (withOut) selectNode(withOut);
    }
  } else if (m.type === "stats") {
    S.stats = m; renderStats(); S.dirty = true;
  } else if (m.type === "error") {
    $("trace-info").textContent = m.message;
  }
}

function onBinary(buf) {
  const dv = new DataView(buf);
  const hlen = dv.getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, hlen)));
  const start = 4 + hlen + ((4 - ((4 + hlen) % 4)) % 4);
  const data = new Float32Array(buf, start);
  if (header.node !== S.node) return;
  if (header.kind === "trace") { S.trace = { header, data }; S.traceMessages++; S.traceDirty = true; }
  else if (header.kind === "spectrum") { S.spectrum = { header, data }; S.specDirty = true; }
}

// -- graph ---------------------------------------------------------------------------------------
function layoutGraph() {
  const g = S.graph; if (!g) return;
  const level = new Map(g.nodes.map((n) => [n.id, 0]));
  for (let pass = 0; pass < g.nodes.length; pass++) {
    for (const e of g.edges) level.set(e.to, Math.max(level.get(e.to) || 0, (level.get(e.from) || 0) + 1));
  }
  const cols = new Map();
  for (const n of g.nodes) { const l = level.get(n.id); if (!cols.has(l)) cols.set(l, []); cols.get(l).push(n); }
  const c = $("graph"), nlev = Math.max(...cols.keys()) + 1;
  const wide = Math.max(...[...cols.values()].map((v) => v.length));
  S.vertical = nlev > 4;  // a long chain reads better top to bottom
  S.layout.clear();
  if (S.vertical) {
    const bh = 36, gap = 22;
    c.height = nlev * (bh + gap) + 10;
    const bw = Math.min(150, (c.width - 20) / wide - 30);
    for (const [l, ns] of cols) {
      ns.forEach((n, i) => {
        const slot = (c.width - 20) / ns.length;
        S.layout.set(n.id, { x: 10 + i * slot + (slot - bw) / 2 - 40, y: 8 + l * (bh + gap), w: bw, h: bh, node: n });
      });
    }
  } else {
    c.height = Math.max(140, wide * 64 + 30);
    const bw = Math.min(120, (c.width - 20) / nlev - 40), bh = 40;
    for (const [l, ns] of cols) {
      ns.forEach((n, i) => {
        const x = 10 + l * ((c.width - 20) / nlev), y = 15 + i * ((c.height - 30) / ns.length) + ((c.height - 30) / ns.length - bh) / 2;
        S.layout.set(n.id, { x, y, w: bw, h: bh, node: n });
      });
    }
  }
}

function drawGraph() {
  const c = $("graph"), ctx = c.getContext("2d"), g = S.graph;
  ctx.clearRect(0, 0, c.width, c.height);
  if (!g) return;
  const edgeStats = new Map();
  for (const e of (S.stats?.edges || [])) edgeStats.set(e.source + ">" + e.target, e);
  ctx.font = "11px system-ui, sans-serif";
  for (const e of g.edges) {
    const a = S.layout.get(e.from), b = S.layout.get(e.to); if (!a || !b) continue;
    const st = edgeStats.get(e.from + ">" + e.to);
    const depth = st ? st.depth : e.depth, cap = st ? st.capacity : e.capacity, dropped = st ? st.dropped : e.dropped;
    const v = S.vertical;
    const x1 = v ? a.x + a.w / 2 : a.x + a.w, y1 = v ? a.y + a.h : a.y + a.h / 2;
    const x2 = v ? b.x + b.w / 2 : b.x, y2 = v ? b.y : b.y + b.h / 2;
    const fill = cap ? depth / cap : 0;
    ctx.strokeStyle = dropped ? "#ff6b6b" : fill > 0.75 ? "#ffcc66" : "#4a5868";
    ctx.lineWidth = 1 + 4 * fill;
    ctx.beginPath(); ctx.moveTo(x1, y1);
    if (v) ctx.bezierCurveTo(x1, y1 + 12, x2, y2 - 12, x2, y2); else ctx.bezierCurveTo(x1 + 30, y1, x2 - 30, y2, x2, y2);
    ctx.stroke();
    ctx.fillStyle = dropped ? "#ff6b6b" : "#7d8893";
    const label = e.fused ? "fused" : `queue ${depth}/${cap}` + (dropped ? ` · dropped ${dropped}` : "");
    if (v) ctx.fillText(label, (x1 + x2) / 2 + 8, (y1 + y2) / 2 + 4); else ctx.fillText(label, (x1 + x2) / 2 - 20, (y1 + y2) / 2 - 6);
  }
  const rows = new Map((S.stats?.nodes || []).map((r) => [r.node, r]));
  for (const [id, b] of S.layout) {
    const r = rows.get(id);
    ctx.fillStyle = id === S.node ? "#1d3a55" : "#222b35";
    ctx.strokeStyle = r && r.errors ? "#ff6b6b" : id === S.node ? "#4fb3ff" : "#3a4756";
    ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.roundRect(b.x, b.y, b.w, b.h, 5); ctx.fill(); ctx.stroke();
    ctx.fillStyle = "#d8dee6"; ctx.font = "bold 11px system-ui, sans-serif";
    ctx.fillText(id, b.x + 6, b.y + 15, b.w - 10);
    ctx.fillStyle = "#7d8893"; ctx.font = "10px system-ui, sans-serif";
    ctx.fillText(r ? `${b.node.type} · ${fmtRate(r.rate_hz)}/s` : b.node.type, b.x + 6, b.y + 30, b.w - 10);
  }
}

$("graph")?.addEventListener("click", (ev) => {
  const c = ev.currentTarget, rect = c.getBoundingClientRect();
  const x = (ev.clientX - rect.left) * c.width / rect.width, y = (ev.clientY - rect.top) * c.height / rect.height;
  for (const [id, b] of S.layout) if (x >= b.x && x <= b.x + b.w && y >= b.y && y <= b.y + b.h) selectNode(id);
});

// -- node table ------------------------------------------------------------------------------------
function renderStats() {
  const m = S.stats;
  $("state").textContent = m.state; $("state").className = "badge " + m.state;
  $("webstats").textContent = `browser updates: ${m.web.sent} sent, ${m.web.dropped} dropped (latest value only)`;
  const tb = $("nodes").tBodies[0];
  tb.innerHTML = "";
  for (const r of m.nodes) {
    const tr = document.createElement("tr");
    tr.dataset.node = r.node;
    if (r.node === S.node) tr.className = "selected";
    const fates = Object.entries(r.fates).map(([k, v]) => `${k} ${v}`).join(", ");
    const cells = [r.node, r.node_type, fmtRate(r.rate_hz), fmtS(r.p50_s), fmtS(r.p99_s),
      r.queue_capacity ? `${r.queue_depth}/${r.queue_capacity}` : "–", r.dropped, fates, r.version ?? 0];
    cells.forEach((v, i) => { const td = document.createElement("td"); td.textContent = v; if (i === 7) td.className = "fates"; tr.appendChild(td); });
    tr.addEventListener("click", () => selectNode(r.node));
    tb.appendChild(tr);
  }
}

// -- traces ----------------------------------------------------------------------------------------
function drawTraces() {
  const c = $("traces"), ctx = c.getContext("2d");
  ctx.fillStyle = "#0b0f13"; ctx.fillRect(0, 0, c.width, c.height);
  const t = S.trace; if (!t) return false;
  const h = t.header, nch = h.channels.length, cols = h.columns, d = t.data;
  if (!nch || !cols) return false;
  const left = 56, w = c.width - left - 4, lane = (c.height - 16) / nch;
  ctx.font = `${Math.min(11, Math.max(7, lane - 1))}px system-ui, sans-serif`;
  const dx = w / Math.max(1, cols);
  for (let ch = 0; ch < nch; ch++) {
    const base = ch * 2 * cols;
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < cols; i++) { const a = d[base + i], b = d[base + cols + i]; if (a < lo) lo = a; if (b > hi) hi = b; }
    if (!(hi > lo)) { hi = lo + 1; lo -= 1; }
    const y0 = 8 + ch * lane, sy = (lane * 0.9) / (hi - lo), mid = y0 + lane * 0.95;
    ctx.strokeStyle = COLORS[ch % COLORS.length]; ctx.lineWidth = 1;
    ctx.beginPath();
    for (let i = 0; i < cols; i++) {
      const x = left + i * dx, ymin = mid - (d[base + i] - lo) * sy, ymax = mid - (d[base + cols + i] - lo) * sy;
      if (i === 0) ctx.moveTo(x, ymin); else ctx.lineTo(x, ymin);
      if (ymax !== ymin) ctx.lineTo(x, ymax); // min/max per column: spikes stay visible
    }
    ctx.stroke();
    if (lane >= 7) { ctx.fillStyle = "#7d8893"; ctx.fillText(h.channels[ch], 4, y0 + lane * 0.7, left - 8); }
  }
  for (const e of h.events || []) {  // events on the traces
    const x = left + e.x * w;
    ctx.strokeStyle = "#ffcc66"; ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(x, 4); ctx.lineTo(x, c.height - 4); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = "#ffcc66"; ctx.fillText(e.label + (e.value !== null && e.value !== undefined ? `=${e.value}` : ""), x + 3, 12);
  }
  const secs = h.seconds ? h.seconds.toFixed(2) + " s" : h.samples + " samples";
  $("trace-info").textContent = `${nch} channels · ${h.sample_rate ? h.sample_rate.toFixed(0) + " Hz" : "rate ?"} · last ${secs} · ${cols} columns (min/max) · ${h.events.length} events` + (h.missed ? ` · ${h.missed} frames not fetched` : "");
  return true;
}

function drawSpectrum() {
  const c = $("spectrum"), ctx = c.getContext("2d");
  ctx.fillStyle = "#0b0f13"; ctx.fillRect(0, 0, c.width, c.height);
  const s = S.spectrum; if (!s || !s.header.bins) return;
  const h = s.header, nb = h.bins, nch = h.channels.length, d = s.data, left = 40, w = c.width - left - 6, ht = c.height - 20;
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < d.length; i++) { if (d[i] > hi) hi = d[i]; if (d[i] < lo) lo = d[i]; }
  lo = Math.max(lo, hi - 100); if (!(hi > lo)) hi = lo + 1;
  ctx.fillStyle = "#7d8893"; ctx.font = "10px system-ui, sans-serif";
  ctx.fillText(`${hi.toFixed(0)} dB`, 2, 12); ctx.fillText(`${lo.toFixed(0)} dB`, 2, ht);
  if (h.max_hz) { ctx.fillText("0 Hz", left, c.height - 4); ctx.fillText(`${h.max_hz.toFixed(0)} Hz`, left + w - 40, c.height - 4); }
  for (let ch = 0; ch < Math.min(nch, 16); ch++) {
    ctx.strokeStyle = COLORS[ch % COLORS.length]; ctx.globalAlpha = nch > 4 ? 0.5 : 1;
    ctx.beginPath();
    for (let i = 0; i < nb; i++) {
      const x = left + (i / Math.max(1, nb - 1)) * w, y = 4 + (1 - (Math.max(d[ch * nb + i], lo) - lo) / (hi - lo)) * (ht - 4);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    }
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
  $("spec-info").textContent = nch > 16 ? `first 16 of ${nch} channels` : `${nch} channels`;
}

function frame(now) {
  S.rafTicks++;
  if (S.dirty) { drawGraph(); S.dirty = false; }
  // Traces are redrawn at most 30 times a second with the newest data (a 60 Hz display
  // would double the renderer's work for nothing the server sends).
  if (S.trace && now - (S.lastDraw || 0) >= 31 && drawTraces()) { S.draws++; S.lastDraw = now; }
  if (S.specDirty) { drawSpectrum(); S.specDirty = false; }
  requestAnimationFrame(frame);
}

// -- selection and the settings form ---------------------------------------------------------------
async function selectNode(id) {
  S.node = id; S.trace = null; S.spectrum = null; S.dirty = true;
  $("trace-node").textContent = id; $("form-node").textContent = id;
  for (const tr of $("nodes").tBodies[0].rows) tr.className = tr.dataset.node === id ? "selected" : "";
  subscribe(id);
  const [cfg, schema] = await Promise.all([api("GET", `/api/nodes/${encodeURIComponent(id)}/config`),
                                           api("GET", `/api/nodes/${encodeURIComponent(id)}/schema`)]);
  if (S.node !== id) return;
  if (!cfg.ok || !schema.ok) { showErrors(cfg.ok ? schema.data : cfg.data); return; }
  S.config = cfg.data; S.schema = schema.data;
  buildForm(schema.data, cfg.data);
}

function resolve(schema, root) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return resolve({ ...(root.$defs || {})[name], ...schema, $ref: undefined }, root);
  }
  return schema || {};
}

function kindOf(p, root) {
  p = resolve(p, root);
  let nullable = false, types = [];
  const alts = p.anyOf || p.oneOf;
  if (alts) {
    for (const a of alts) { const r = resolve(a, root); if (r.type === "null") nullable = true; else types.push(r); }
    if (types.length === 1) p = { ...types[0], description: p.description, default: p.default };
    else return { kind: "json", nullable, p };
  }
  if (p.enum) return { kind: "enum", nullable, p };
  if (p.const !== undefined) return { kind: "enum", nullable, p: { ...p, enum: [p.const] } };
  if (p.type === "boolean") return { kind: "bool", nullable, p };
  if (p.type === "number" || p.type === "integer") return { kind: p.type, nullable, p };
  if (p.type === "string") return { kind: "string", nullable, p };
  return { kind: "json", nullable, p };
}

function buildForm(schema, cfg) {
  const form = $("node-form");
  form.innerHTML = ""; clearErrors();
  const head = document.createElement("div"); head.className = "help";
  head.textContent = `${cfg.type} · config version ${cfg.version}`;
  form.appendChild(head);
  S.fields = {};
  for (const [name, raw] of Object.entries(schema.properties || {})) {
    const k = kindOf(raw, schema), value = cfg.config[name];
    const label = document.createElement("label"); label.textContent = name; label.htmlFor = "f-" + name;
    form.appendChild(label);
    let input;
    if (k.kind === "bool") {
      input = document.createElement("input"); input.type = "checkbox"; input.checked = !!value;
    } else if (k.kind === "enum") {
      input = document.createElement("select");
      for (const opt of k.p.enum) { const o = document.createElement("option"); o.value = JSON.stringify(opt); o.textContent = String(opt); input.appendChild(o); }
      input.value = JSON.stringify(value);
    } else if (k.kind === "json") {
      input = document.createElement("textarea"); input.value = JSON.stringify(value);
    } else {
      input = document.createElement("input"); input.type = "text";
      if (k.kind !== "string") input.inputMode = "decimal";
      input.value = value === null || value === undefined ? "" : String(value);
    }
    input.id = "f-" + name; input.name = name;
    form.appendChild(input);
    const d = resolve(raw, schema).description || k.p.description;
    if (d) { const h = document.createElement("div"); h.className = "help"; h.textContent = d; form.appendChild(h); }
    S.fields[name] = { input, kind: k.kind, nullable: k.nullable, original: value };
  }
  const b = document.createElement("button"); b.type = "submit"; b.id = "apply"; b.textContent = "Apply";
  form.appendChild(b);
}

function readField(f) {
  const el = f.input;
  if (f.kind === "bool") return el.checked;
  if (f.kind === "enum") return JSON.parse(el.value);
  const text = el.value.trim();
  if (text === "" && f.nullable) return null;
  if (f.kind === "json") { try { return JSON.parse(text); } catch (e) { return text; } }
  if (f.kind === "number" || f.kind === "integer") {
    // a text that is not a number goes to the server as is: its validation error is shown
    const n = Number(text); return text !== "" && Number.isFinite(n) ? n : text;
  }
  return el.value;
}

function clearErrors() {
  $("form-errors").innerHTML = ""; $("form-status").textContent = "";
  for (const el of document.querySelectorAll("#node-form .invalid")) el.classList.remove("invalid");
}

function showErrors(data) {
  const ul = $("form-errors"); ul.innerHTML = "";
  const items = data.problems && data.problems.length ? data.problems.map((p) => `${p.path}: ${p.message}`) : [data.error || "error"];
  if (data.problems && data.error) items.unshift(data.error);
  for (const t of items) { const li = document.createElement("li"); li.textContent = t; ul.appendChild(li); }
  for (const p of data.problems || []) {
    const name = (p.path.match(/^\$\.([^.[]+)/) || [])[1];
    if (name && S.fields && S.fields[name]) S.fields[name].input.classList.add("invalid");
  }
}

$("node-form")?.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearErrors();
  const changes = {};
  for (const [name, f] of Object.entries(S.fields || {})) {
    const v = readField(f);
    if (JSON.stringify(v) !== JSON.stringify(f.original)) changes[name] = v;
  }
  if (!Object.keys(changes).length) { $("form-status").textContent = "nothing changed"; return; }
  const node = S.node;
  const r = await api("PATCH", `/api/nodes/${encodeURIComponent(node)}/config`, changes);
  if (r.ok) {
    $("form-status").textContent = `applied: ${node} config version ${r.data.version}`;
    for (const [name, v] of Object.entries(changes)) S.fields[name].original = v;
  } else {
    showErrors(r.data);
  }
});

$("stop")?.addEventListener("click", async () => {
  if (!confirm("Stop the pipeline? What is in flight drains.")) return;
  await api("POST", "/api/stop");
});

window.addEventListener("resize", () => { layoutGraph(); S.dirty = true; if (S.node) subscribe(S.node); });
connect();
requestAnimationFrame(frame);
