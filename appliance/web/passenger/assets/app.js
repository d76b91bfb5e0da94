// The passenger portal: catalog, player (hls.js or native HLS), reader, flight info, menu, survey.
// No framework, no CDN: everything comes from this server. State lives in `S`.
"use strict";
const S = {catalog: null, etag: null, mediaBase: "", hls: null, flight: null, trail: [],
           land: null, pa: false, resumeAfterPa: [], services: "open"};
const $ = (id) => document.getElementById(id);

function newKey() {  // crypto.randomUUID needs a secure context; getRandomValues does not
  const b = new Uint8Array(16); crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
function esc(s) { const d = document.createElement("div"); d.textContent = s ?? ""; return d.innerHTML; }
function media(path) { return S.mediaBase + path; }

async function postJSON(url, body, tries = 5) {
  // Retries with the same body (same idempotency key): the server stores it once.
  let last;
  for (let i = 0; i < tries; i++) {
    try {
      const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                  body: JSON.stringify(body)});
      if (r.status < 500 || i === tries - 1) return r;
    } catch (e) { last = e; }
    await new Promise((res) => setTimeout(res, 500 * (i + 1)));
  }
  throw last;
}

// ---- catalog -------------------------------------------------------------------------------
async function loadCatalog() {
  const headers = S.etag ? {"If-None-Match": S.etag} : {};
  const r = await fetch("/api/v1/catalog", {headers});
  if (r.status === 304) return;
  const doc = await r.json();
  S.catalog = doc; S.etag = r.headers.get("ETag"); S.services = doc.services;
  S.mediaBase = doc.media_port ? `${location.protocol}//${location.hostname}:${doc.media_port}` : "";
  const closed = $("closed-message");
  closed.hidden = doc.services !== "closed";
  closed.textContent = doc.message || "";
  renderCatalog(); renderMenu();
}

function card(t) {
  const b = document.createElement("button");
  b.className = `card ${t.kind}` + (t.available ? "" : " locked");
  b.dataset.id = t.id;
  const d = t.duration_s;
  const mins = d ? (d < 60 ? `${Math.round(d)} s · ` : `${Math.round(d / 60)} min · `) : "";
  b.innerHTML = `${t.poster ? `<img alt="" src="${esc(media(t.poster))}">` : ""}
    <div class="t"><div>${esc(t.title)}</div>
    <div class="meta">${mins}${esc(t.rating)} · ${esc(t.languages.join(", "))}</div>
    ${t.available ? "" : `<span class="badge">${esc(t.message)}</span>`}</div>`;
  if (t.available) b.onclick = () => { location.hash = `${t.kind === "video" ? "play" : "read"}/${t.id}`; };
  else b.title = t.message;
  return b;
}

function renderCatalog() {
  const films = $("films"), books = $("books");
  films.replaceChildren(); books.replaceChildren();
  for (const t of (S.catalog?.titles || [])) (t.kind === "video" ? films : books).append(card(t));
}

function title(id) { return (S.catalog?.titles || []).find((t) => t.id === id); }

// ---- player --------------------------------------------------------------------------------
function stopPlayer() {
  if (S.hls) { S.hls.destroy(); S.hls = null; }
  const v = $("player"); v.pause(); v.removeAttribute("src"); v.load();
}

function play(id) {
  const t = title(id);
  if (!t || !t.available) { $("play-title").textContent = t ? t.message : "Not available"; return; }
  $("play-title").textContent = t.title;
  $("attribution").textContent = `${t.attribution || ""} Licence: ${t.licence}.`;
  const v = $("player"), src = media(t.entry);
  stopPlayer();
  if (window.Hls && window.Hls.isSupported()) {
    S.hls = new window.Hls({maxBufferLength: 30, startLevel: -1});
    S.hls.loadSource(src); S.hls.attachMedia(v);
    S.hls.on(window.Hls.Events.ERROR, (_e, d) => { if (d.fatal) console.error("hls", d.type, d.details); });
  } else if (v.canPlayType("application/vnd.apple.mpegurl")) {
    v.src = src;
  } else {
    $("play-title").textContent = "This browser cannot play HLS video";
    return;
  }
  if (!S.pa) v.play().catch(() => { /* autoplay may need a tap: the controls are there */ });
}

// ---- reader --------------------------------------------------------------------------------
async function read(id) {
  const t = title(id);
  if (!t || !t.available) { $("read-title").textContent = t ? t.message : "Not available"; return; }
  $("read-title").textContent = t.title;
  $("read-attribution").textContent = `${t.attribution || ""} Licence: ${t.licence}.`;
  const frame = $("reader-frame"), toc = $("toc");
  const base = t.entry.slice(0, t.entry.lastIndexOf("/") + 1);
  toc.replaceChildren();
  if (t.toc) {
    const items = await (await fetch(media(t.toc))).json();
    for (const it of items) {
      const li = document.createElement("li"), a = document.createElement("a");
      a.textContent = it.title; a.onclick = () => { frame.src = media(base + it.href); };
      li.append(a); toc.append(li);
    }
    frame.src = media(base + (items[0]?.href || ""));
  } else {
    frame.src = media(t.entry);
  }
}

// ---- flight info ---------------------------------------------------------------------------
function fmt(v, unit, digits = 0) { return v == null ? "–" : `${Number(v).toFixed(digits)} ${unit}`; }

function onFlight(f) {
  S.flight = f;
  $("fi-number").textContent = f.flight_number || "";
  $("fi-alt").textContent = fmt(f.altitude_ft, "ft");
  $("fi-speed").textContent = fmt(f.ground_speed_kt, "kt");
  $("fi-pos").textContent = f.latitude == null ? "–" : `${f.latitude.toFixed(3)}°, ${f.longitude.toFixed(3)}°`;
  $("fi-dist").textContent = fmt(f.distance_nm, "NM");
  $("fi-eta").textContent = f.eta ? f.eta.slice(11, 16) : "–";
  $("fi-phase").textContent = `${f.phase} (${f.mode})`;
  $("fi-utc").textContent = f.utc ? f.utc.slice(11, 19) : "–";
  if (f.latitude != null) {
    const last = S.trail[S.trail.length - 1];
    if (!last || last[0] !== f.latitude || last[1] !== f.longitude) S.trail.push([f.latitude, f.longitude]);
    if (S.trail.length > 2000) S.trail.shift();
  }
  if (!$("view-flight").hidden) drawMap();
}

function topoFeatures(topo, name) {  // minimal TopoJSON decoder: quantized, delta-encoded arcs
  const [sx, sy] = topo.transform.scale, [tx, ty] = topo.transform.translate;
  const arcs = topo.arcs.map((arc) => { let x = 0, y = 0;
    return arc.map(([dx, dy]) => { x += dx; y += dy; return [x * sx + tx, y * sy + ty]; }); });
  const ring = (idx) => idx.flatMap((i) => (i >= 0 ? arcs[i] : arcs[~i].slice().reverse()));
  const polys = [];
  for (const g of topo.objects[name].geometries) {
    if (g.type === "Polygon") polys.push(g.arcs.map(ring));
    else if (g.type === "MultiPolygon") for (const p of g.arcs) polys.push(p.map(ring));
  }
  return polys;
}

async function loadLand() {
  try {
    const r = await fetch("/portal/vendor/countries-50m.json");
    if (r.ok) S.land = topoFeatures(await r.json(), "countries");
  } catch (e) { S.land = null; }
}

function drawMap() {
  const c = $("map"), g = c.getContext("2d"), f = S.flight || {};
  const pts = [...S.trail];
  for (const a of [f.origin, f.destination]) if (a) pts.push([a.lat, a.lon]);
  if (f.latitude != null) pts.push([f.latitude, f.longitude]);
  if (!pts.length) pts.push([46.5, 2.5]);
  let la0 = Math.min(...pts.map((p) => p[0])), la1 = Math.max(...pts.map((p) => p[0]));
  let lo0 = Math.min(...pts.map((p) => p[1])), lo1 = Math.max(...pts.map((p) => p[1]));
  const pad = Math.max(1.5, (la1 - la0) * 0.25, (lo1 - lo0) * 0.15);
  la0 -= pad; la1 += pad; lo0 -= pad; lo1 += pad;
  const k = Math.cos(((la0 + la1) / 2) * Math.PI / 180);
  const s = Math.min(c.width / ((lo1 - lo0) * k), c.height / (la1 - la0));
  const cx = (lo0 + lo1) / 2, cy = (la0 + la1) / 2;
  const P = (lat, lon) => [c.width / 2 + (lon - cx) * k * s, c.height / 2 - (lat - cy) * s];
  g.fillStyle = "#0b3a5a"; g.fillRect(0, 0, c.width, c.height);
  if (S.land) {
    g.fillStyle = "#2f4a3a"; g.strokeStyle = "#55705f"; g.lineWidth = 1;
    for (const poly of S.land) {
      g.beginPath();
      for (const r of poly) r.forEach(([lon, lat], i) => { const [x, y] = P(lat, lon); i ? g.lineTo(x, y) : g.moveTo(x, y); });
      g.fill("evenodd"); g.stroke();
    }
  }
  if (f.origin && f.destination) {
    g.setLineDash([6, 6]); g.strokeStyle = "#cfd8e3"; g.beginPath();
    g.moveTo(...P(f.origin.lat, f.origin.lon)); g.lineTo(...P(f.destination.lat, f.destination.lon)); g.stroke();
    g.setLineDash([]);
  }
  g.strokeStyle = "#ffd166"; g.lineWidth = 3; g.beginPath();
  S.trail.forEach(([lat, lon], i) => { const [x, y] = P(lat, lon); i ? g.lineTo(x, y) : g.moveTo(x, y); });
  g.stroke();
  g.fillStyle = "#fff"; g.font = "14px system-ui";
  for (const a of [f.origin, f.destination]) if (a) {
    const [x, y] = P(a.lat, a.lon); g.beginPath(); g.arc(x, y, 4, 0, 7); g.fill(); g.fillText(a.iata, x + 6, y - 6);
  }
  if (f.latitude != null) {
    const [x, y] = P(f.latitude, f.longitude);
    g.save(); g.translate(x, y); g.rotate(((f.track_deg || 0) * Math.PI) / 180);
    g.fillStyle = "#ff5e5b"; g.beginPath(); g.moveTo(0, -12); g.lineTo(8, 10); g.lineTo(0, 5); g.lineTo(-8, 10);
    g.closePath(); g.fill(); g.restore();
  }
}

// ---- PA announcements ----------------------------------------------------------------------
function onPa(active) {
  S.pa = active;
  $("pa-banner").hidden = !active;
  const players = Array.from(document.querySelectorAll("video"));
  if (active) {
    S.resumeAfterPa = players.filter((v) => !v.paused);
    for (const v of players) v.pause();
  } else {
    for (const v of S.resumeAfterPa) v.play().catch(() => {});
    S.resumeAfterPa = [];
  }
}

function connectEvents() {
  const es = new EventSource("/api/v1/events");
  es.addEventListener("flight", (e) => onFlight(JSON.parse(e.data)));
  es.addEventListener("pa", (e) => onPa(JSON.parse(e.data).active));
  es.addEventListener("mode", () => { loadCatalog(); });
  window.portalEvents = es;
}

// ---- menu and survey -----------------------------------------------------------------------
function renderMenu() {
  const box = $("menu-items"); box.replaceChildren();
  for (const it of (S.catalog?.menu || [])) {
    const row = document.createElement("div"); row.className = "menu-row";
    row.innerHTML = `<span>${esc(it.name)} <span class="small">${it.price.toFixed(2)} ${esc(it.currency)}</span></span>
      <input type="number" min="0" max="10" value="0" data-sku="${esc(it.sku)}" aria-label="${esc(it.name)}">`;
    box.append(row);
  }
}

async function order() {
  const items = Array.from(document.querySelectorAll("#menu-items input"))
    .map((i) => ({sku: i.dataset.sku, qty: Number(i.value)})).filter((i) => i.qty > 0);
  const status = $("order-status");
  if (!items.length) { status.textContent = "Choose something first."; return; }
  const body = {idempotency_key: newKey(), seat: $("seat").value.trim().toUpperCase(), items};
  try {
    const r = await postJSON("/api/v1/orders", body);
    status.textContent = r.ok ? "Thank you — your order is on its way." : `Not sent (${r.status}): ${(await r.json()).detail || ""}`;
  } catch (e) { status.textContent = "No connection — please try again."; }
}

async function renderSurvey() {
  const form = $("survey");
  if (form.dataset.ready) return;
  const {questions} = await (await fetch("/api/v1/survey")).json();
  form.innerHTML = questions.map((q) => `<div class="q"><span>${esc(q.text)}</span>${[1, 2, 3, 4, 5].map((n) =>
    `<label><input type="radio" name="${esc(q.id)}" value="${n}"> ${n}</label>`).join("")}</div>`).join("") +
    `<textarea name="comment" maxlength="1000" placeholder="Anything else?"></textarea><button>Send</button>`;
  form.dataset.ready = "1";
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const fd = new FormData(form), answers = {};
    for (const q of questions) if (fd.get(q.id)) answers[q.id] = Number(fd.get(q.id));
    const status = $("feedback-status");
    if (!Object.keys(answers).length) { status.textContent = "Pick at least one score."; return; }
    form.dataset.key ||= newKey();
    try {
      const r = await postJSON("/api/v1/feedback", {idempotency_key: form.dataset.key, answers,
                                                     comment: String(fd.get("comment") || "")});
      status.textContent = r.ok ? "Thank you for your feedback." : `Not sent (${r.status}).`;
    } catch (e) { status.textContent = "No connection — please try again."; }
  };
}

// ---- views ---------------------------------------------------------------------------------
function route() {
  const [view, id] = (location.hash.slice(1) || "catalog").split("/");
  const name = ["catalog", "play", "read", "flight", "menu", "feedback"].includes(view) ? view : "catalog";
  for (const sec of document.querySelectorAll(".view")) sec.hidden = sec.id !== `view-${name}`;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === `nav-${name}`);
  if (name !== "play") stopPlayer();
  if (name === "play") play(id);
  if (name === "read") read(id);
  if (name === "flight") drawMap();
  if (name === "feedback") renderSurvey();
}

async function captive() {
  try {
    const r = await fetch("/api/v1/portal/state");  // same origin (the RFC 8908 API may be HTTPS only)
    if ((await r.json()).captive) $("welcome").hidden = false;
  } catch (e) { /* not captive-aware: nothing to show */ }
  $("start").onclick = async () => { await fetch("/api/v1/portal/accept", {method: "POST"}); $("welcome").hidden = true; };
}

async function main() {
  $("order").onclick = order;
  window.addEventListener("hashchange", route);
  await Promise.all([loadCatalog(), loadLand(), captive()]);
  connectEvents();
  route();
  window.portalReady = true;
}
main();
