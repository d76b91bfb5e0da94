// The moving map (loaded by app.js when the flight view first opens): the whole flown track from
// the service (/api/v1/flight/track: the flight's track summary from its first fix, not since the
// page opened), the planned route, the aircraft, coastlines and a few places near the route
// (Natural Earth populated places, /portal/vendor/places.json, made by `make content`).
// A new flight (a new track id) starts a new line: an old track is never joined to a new one.
// An invalid position holds the last good one (the server already holds an implausible one).
// For tests: the canvas carries data-points (track points drawn), data-track-id, data-places.
"use strict";
(function () {
  const M = {id: undefined, track: [], live: null, held: false, flight: null, land: null,
             places: null, fetching: null, again: false, drawn: 0};
  const canvas = () => document.getElementById("map");

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
      const r = await fetch(assetUrl("vendor/countries-110m.json"));
      if (r.ok) M.land = topoFeatures(await r.json(), "countries");
    } catch (e) { M.land = null; }
  }

  async function loadPlaces() {  // [[name, lat, lon, rank], ...]; absent: no places, no error
    try {
      const r = await fetch(assetUrl("vendor/places.json"));
      M.places = r.ok ? (await r.json()).places : [];
    } catch (e) { M.places = []; }
  }

  function goodFix(f) {
    const ok = (v, lim) => typeof v === "number" && Number.isFinite(v) && Math.abs(v) <= lim;
    return f && ok(f.latitude, 90) && ok(f.longitude, 180) && !(f.latitude === 0 && f.longitude === 0);
  }

  async function syncTrack(want) {  // fetch what the page lacks of the service's track
    if (M.fetching) { M.again = true; return; }
    const sameFlight = want.id === M.id && want.id != null;
    const since = sameFlight && want.n >= M.track.length ? M.track.length : 0;
    M.fetching = fetch(`/api/v1/flight/track${since ? `?since=${since}` : ""}`)
      .then((r) => (r.ok ? r.json() : null))
      .then((doc) => {
        if (!doc) return;
        if (doc.since === 0 || doc.id !== M.id) M.track = doc.points.map((p) => [p[0], p[1]]);
        else if (doc.since === M.track.length) for (const p of doc.points) M.track.push([p[0], p[1]]);
        else { M.id = undefined; M.again = true; return; }  // out of step: take it whole next time
        M.id = doc.id;
      })
      .catch(() => {})
      .finally(() => {
        M.fetching = null; draw();
        if (M.again) { M.again = false; const f = M.flight; if (f && f.track) update(f); }
      });
  }

  function update(f) {
    M.flight = f;
    if (goodFix(f)) { M.live = [f.latitude, f.longitude, f.track_deg]; M.held = false; }
    else if (M.live) M.held = true;  // hold the last good position: never a jump, never a blank
    const want = f.track;
    if (want && (want.id !== M.id || want.n !== M.track.length)) {
      if (want.id == null) { M.id = null; M.track = []; } else syncTrack(want);
    }
    draw();
  }

  function km(a, b) {  // great-circle distance (km) between [lat, lon] points
    const r = Math.PI / 180, dp = (b[0] - a[0]) * r, dl = (b[1] - a[1]) * r;
    const h = Math.sin(dp / 2) ** 2 + Math.cos(a[0] * r) * Math.cos(b[0] * r) * Math.sin(dl / 2) ** 2;
    return 12742 * Math.asin(Math.min(1, Math.sqrt(h)));
  }

  function draw() {
    const c = canvas();
    if (!c || c.offsetParent === null) return;  // hidden: drawn when the view opens
    const g = c.getContext("2d"), f = M.flight || {};
    const route = [f.origin, f.destination].filter(Boolean).map((a) => [a.lat, a.lon]);
    const pts = [...M.track, ...route];
    if (M.live) pts.push(M.live);
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
    if (M.land) {
      g.fillStyle = "#2f4a3a"; g.strokeStyle = "#55705f"; g.lineWidth = 1;
      for (const poly of M.land) {
        g.beginPath();
        for (const r of poly) r.forEach(([lon, lat], i) => { const [x, y] = P(lat, lon); i ? g.lineTo(x, y) : g.moveTo(x, y); });
        g.fill("evenodd"); g.stroke();
      }
    }
    if (route.length === 2) {
      g.setLineDash([6, 6]); g.strokeStyle = "#cfd8e3"; g.lineWidth = 1.5; g.beginPath();
      g.moveTo(...P(...route[0])); g.lineTo(...P(...route[1])); g.stroke();
      g.setLineDash([]);
    }
    const u = c.width / (c.clientWidth || c.width);  // canvas px per CSS px: labels stay legible
    g.font = `bold ${Math.round(14 * u)}px system-ui`;
    const airports = [f.origin, f.destination].filter(Boolean).flatMap((a) => {  // dot and code
      const [x, y] = P(a.lat, a.lon), w = g.measureText(a.iata).width;
      return [[x - 4 * u, y - 4 * u, x + 4 * u, y + 4 * u], [x + 5 * u, y - 19 * u, x + 7 * u + w, y - 4 * u]];
    });
    const taken = drawPlaces(g, P, c, route, u, airports);
    g.strokeStyle = "#ffd166"; g.lineWidth = 3 * u; g.lineJoin = "round"; g.beginPath();
    M.track.forEach(([lat, lon], i) => { const [x, y] = P(lat, lon); i ? g.lineTo(x, y) : g.moveTo(x, y); });
    const last = M.track[M.track.length - 1];
    if (last && M.live && M.id != null && km(last, M.live) < 100) g.lineTo(...P(M.live[0], M.live[1]));
    g.stroke();
    g.fillStyle = "#fff"; g.font = `bold ${Math.round(14 * u)}px system-ui`;
    for (const a of [f.origin, f.destination]) if (a) {
      const [x, y] = P(a.lat, a.lon); g.beginPath(); g.arc(x, y, 4 * u, 0, 7); g.fill(); g.fillText(a.iata, x + 6 * u, y - 6 * u);
    }
    if (M.live) {
      const [x, y] = P(M.live[0], M.live[1]);
      g.save(); g.translate(x, y); g.rotate(((M.live[2] || 0) * Math.PI) / 180); g.scale(u, u);
      g.globalAlpha = M.held ? 0.55 : 1;
      g.fillStyle = "#ff5e5b"; g.beginPath(); g.moveTo(0, -12); g.lineTo(8, 10); g.lineTo(0, 5); g.lineTo(-8, 10);
      g.closePath(); g.fill(); g.restore();
    }
    M.drawn = M.track.length;
    c.dataset.points = String(M.track.length);
    c.dataset.trackId = M.id == null ? "" : M.id;
    c.dataset.places = String(taken);
    c.dataset.held = M.held ? "1" : "";
  }

  function drawPlaces(g, P, c, route, u, boxes) {  // up to 8 labelled places near the route, no overlaps
    if (!M.places || !M.places.length) return 0;
    const line = M.track.length ? M.track.concat(route.slice(1)) : route;
    if (!line.length) return 0;
    const near = (p) => line.some((q) => km(p, q) < 120)
      || (route.length === 2 && segKm(p, route[0], route[1]) < 80);
    const out = [], px = Math.round(12 * u);
    const free = (box) => !boxes.some((b) => !(box[2] < b[0] || box[0] > b[2] || box[3] < b[1] || box[1] > b[3]));
    g.font = `${px}px system-ui`;
    for (const [name, lat, lon] of M.places) {  // already sorted: the most important first
      const [x, y] = P(lat, lon);
      if (x < 8 || y < px || x > c.width - 8 || y > c.height - 4 || !near([lat, lon])) continue;
      const w = g.measureText(name).width + 6 * u;  // the label's box: 3 u of room each side
      const dot = [x - 2 * u, y - 2 * u, x + 2 * u, y + 2 * u];  // may touch another dot
      // the label above right, below left, below right or above left of its dot: the first free
      const spots = [[1, -1], [-1, 1], [1, 1], [-1, -1]].map(([sx, sy]) => {
        const x0 = sx > 0 ? x + 4 * u : x - 4 * u - w, y0 = sy < 0 ? y - 3 * u - px : y + 3 * u;
        return [[x0, y0, x0 + w, y0 + px], sx, sy];
      });
      const spot = spots.find(([box]) => free(box));
      if (!spot) continue;
      boxes.push(dot, spot[0]); out.push([name, x, y, spot[0]]);
      if (out.length >= 8) break;
    }
    g.textBaseline = "top";
    for (const [name, x, y, box] of out) {
      g.fillStyle = "#e9eef5"; g.beginPath(); g.arc(x, y, 2.5 * u, 0, 7); g.fill();
      g.fillStyle = "rgba(233,238,245,.9)"; g.fillText(name, box[0] + 3 * u, box[1]);
    }
    g.textBaseline = "alphabetic";
    return out.length;
  }

  function segKm(p, a, b) {  // distance (km) from p to the segment a-b, on a local flat projection
    const k = Math.cos(p[0] * Math.PI / 180), X = (q) => [(q[1] - p[1]) * k * 111.2, (q[0] - p[0]) * 111.2];
    const [ax, ay] = X(a), [bx, by] = X(b), dx = bx - ax, dy = by - ay;
    const u = Math.max(0, Math.min(1, -(ax * dx + ay * dy) / ((dx * dx + dy * dy) || 1)));
    return Math.hypot(ax + u * dx, ay + u * dy);
  }

  async function init() {
    await Promise.all([loadLand(), loadPlaces()]);
    new ResizeObserver(() => draw()).observe(canvas());
  }

  window.FlightMap = {init, update, draw, state: M};
})();
