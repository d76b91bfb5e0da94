// The passenger portal: catalog, player (hls.js or native HLS), reader, flight info, menu, survey.
// No framework, no CDN: everything comes from this server. State lives in `S`.
"use strict";
const S = {catalog: null, etag: null, mediaBase: "", hls: null, flight: null,
           pa: false, resumeAfterPa: [], services: "open"};
const $ = (id) => document.getElementById(id);
// assetUrl(name): a portal file by its logical name ("map.js", "vendor/hls.min.js"), its
// content-hashed, immutable URL from the page's window.ASSET_URLS (defined with the shop's loader)

// ---- languages -----------------------------------------------------------------------------
// The server picks the language (cookie `lang`, else Accept-Language) and fills the page's static
// strings before it is sent; `I.cat` is the same catalog (/portal/i18n/<lang>.json) for the strings
// this script writes. The switch stores the choice in the cookie and re-renders in place.
const I = {lang: document.documentElement.lang || "en", cat: {}};
try { I.cat = JSON.parse($("i18n-data")?.textContent || "{}"); } catch (e) { I.cat = {}; }  // inlined by the server
function t(key, vars = {}) {
  const s = I.cat[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_m, k) => String(vars[k] ?? ""));
}
function num(v, digits = 0) {
  return new Intl.NumberFormat(I.lang, {minimumFractionDigits: digits, maximumFractionDigits: digits}).format(v);
}
function clock(iso, seconds) {  // an ISO UTC time as the passenger's locale writes a time of day
  const opts = {hour: "2-digit", minute: "2-digit", timeZone: "UTC"};
  if (seconds) opts.second = "2-digit";
  return new Intl.DateTimeFormat(I.lang, opts).format(new Date(iso));
}
function applyStatic() {
  document.documentElement.lang = I.lang;
  document.documentElement.dir = I.cat._dir || "ltr";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const [attr, data] of [["aria-label", "i18nAriaLabel"], ["title", "i18nTitle"], ["placeholder", "i18nPlaceholder"]])
    for (const el of document.querySelectorAll(`[data-${attr === "aria-label" ? "i18n-aria-label" : "i18n-" + attr}]`))
      el.setAttribute(attr, t(el.dataset[data]));
}
async function loadLang(lang) {
  const r = await fetch(assetUrl(`i18n/${encodeURIComponent(lang)}.json`));
  if (!r.ok) return;
  I.cat = await r.json(); I.lang = lang;
  applyStatic();
}
async function switchLang(lang) {
  document.cookie = `lang=${encodeURIComponent(lang)}; path=/; max-age=31536000; SameSite=Lax`;
  await loadLang(lang);
  renderClosed(); renderCatalog(); renderMenu(); renderPlayerOptions(); renderReaderOptions();
  $("survey").dataset.ready = ""; if (!$("view-feedback").hidden) renderSurvey();
  if (S.flight) onFlight(S.flight);
  if ($("view-play").hidden) route();  // a film keeps playing: only its menus change language
}

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
  renderClosed(); renderCatalog(); renderMenu();
}

// Closed services (e.g. MAINTENANCE): one message for the service of the current view, in the
// mode's words, in place of that view (no empty headings), and never the "free on this Wi-Fi" welcome.
const SERVICE_OF = {catalog: "catalog", play: "catalog", read: "catalog", flight: "flight", menu: "menu", feedback: "feedback"};
function renderClosed() {
  const banner = $("closed-message"), doc = S.catalog || {}, shut = doc.services === "closed";
  const view = (location.hash.slice(1) || "catalog").split("/")[0];
  document.querySelector("main").classList.toggle("closed", shut);
  banner.hidden = !shut;
  banner.textContent = shut ? t(`closed.${SERVICE_OF[view] || "catalog"}`, {mode: t(`mode.${doc.mode}`)}) : "";
  if (shut) $("welcome").hidden = true;
}

const tr = t;  // `t` is shadowed by the title inside card()
function local(title, field) {  // a title's field in the passenger's language, if the package has it
  const loc = title.localized || {};
  return (loc[I.lang] || loc[I.lang.split("-")[0]] || {})[field] || title[field];
}
function posterImg(t, index) {  // the first row is not lazy; the first card is fetched first
  const sizes = t.posters || [], big = sizes[sizes.length - 1];
  const srcset = sizes.map((p) => `${esc(media(p.url))} ${p.w}w`).join(", ");
  const dims = big ? ` width="${big.w}" height="${big.h}"` : (t.kind === "video" ? ' width="640" height="360"' : ' width="400" height="600"');
  return `<img alt="" src="${esc(media(t.poster))}"${srcset ? ` srcset="${srcset}" sizes="(max-width: 600px) 50vw, 260px"` : ""}${dims}` +
    (index === 0 ? ' fetchpriority="high"' : index < 2 ? "" : ' loading="lazy" decoding="async"') + ">";
}
function card(t, index) {
  const b = document.createElement("button");
  b.className = `card ${t.kind}` + (t.available ? "" : " locked");
  b.dataset.id = t.id;
  const d = t.duration_s;
  const mins = d ? (d < 60 ? tr("catalog.seconds", {n: Math.round(d)}) : tr("catalog.minutes", {n: Math.round(d / 60)})) + " · " : "";
  b.innerHTML = `${t.poster ? posterImg(t, index) : ""}
    <div class="t"><div>${esc(local(t, "title"))}</div>
    <div class="meta">${mins}${esc(local(t, "rating"))} · ${esc(t.languages.join(", "))}</div>
    ${t.available ? "" : `<span class="badge">${esc(tr("catalog.locked"))}</span>`}</div>`;
  if (t.available) b.onclick = () => { location.hash = `${t.kind === "video" ? "play" : "read"}/${t.id}`; };
  else { b.title = tr("catalog.locked"); b.setAttribute("aria-disabled", "true"); }
  return b;
}

function renderCatalog() {
  const films = $("films"), books = $("books");
  films.replaceChildren(); books.replaceChildren();
  for (const t of (S.catalog?.titles || [])) {
    const grid = t.kind === "video" ? films : books;
    grid.append(card(t, grid.children.length));  // the first of each grid: the LCP candidates
  }
  $("films-heading").hidden = !films.children.length; $("books-heading").hidden = !books.children.length;
}

function title(id) { return (S.catalog?.titles || []).find((t) => t.id === id); }

// ---- player --------------------------------------------------------------------------------
// Subtitles/captions and audio come from the master's renditions (hls.js subtitleTracks and
// audioTracks, or the browser's own tracks with native HLS). The passenger's choices (track
// language and kind, caption size and background) are kept on the phone, and so is the position
// of each title ("continue watching").
const CUE_SIZES = {small: 0.75, medium: 1, large: 1.4, xlarge: 1.9};
const CUE_BGS = {dark: "rgba(0,0,0,.8)", none: "transparent"};
function prefs() { try { return JSON.parse(localStorage.getItem("player.prefs") || "{}"); } catch (e) { return {}; } }
function savePrefs(p) { try { localStorage.setItem("player.prefs", JSON.stringify({...prefs(), ...p})); } catch (e) { /* private mode */ } }
function trackKey(tk) {  // language + kind: "fr", "en/cc", "en/ad"
  const ch = (tk.characteristics || tk.attrs?.CHARACTERISTICS || "");
  return `${tk.lang || ""}${ch.includes("transcribes-spoken-dialog") ? "/cc" : ch.includes("describes-video") ? "/ad" : ""}`;
}
function option(value, text, selected) {
  const o = document.createElement("option"); o.value = value; o.textContent = text; o.selected = selected; return o;
}
function applyCueStyle() {
  const p = prefs(), v = $("player");
  const px = Math.max(12, Math.round((v.clientHeight || 360) * 0.055 * (CUE_SIZES[p.cueSize] || 1)));
  v.style.setProperty("--cue-px", `${px}px`);
  v.style.setProperty("--cue-bg", CUE_BGS[p.cueBg] || CUE_BGS.dark);
  v.dataset.cueSize = p.cueSize || "medium";
}
function renderPlayerOptions() {
  const p = prefs(), size = $("cue-size"), bg = $("cue-bg");
  size.replaceChildren(...Object.keys(CUE_SIZES).map((k) => option(k, t(`player.size_${k}`), k === (p.cueSize || "medium"))));
  bg.replaceChildren(...Object.keys(CUE_BGS).map((k) => option(k, t(`player.bg_${k}`), k === (p.cueBg || "dark"))));
  const subs = $("sub-select"), auds = $("audio-select");
  const st = S.hls ? S.hls.subtitleTracks : Array.from($("player").textTracks).map((x) => ({name: x.label, lang: x.language, characteristics: x.kind === "captions" ? "transcribes-spoken-dialog" : ""}));
  const at = S.hls ? S.hls.audioTracks : [];
  const curSub = S.hls ? S.hls.subtitleTrack : -1, curAud = S.hls ? S.hls.audioTrack : 0;
  subs.replaceChildren(option("-1", t("player.off"), curSub < 0), ...st.map((x, i) => option(String(i), x.name, i === curSub)));
  auds.replaceChildren(...at.map((x, i) => option(String(i), x.name, i === curAud)));
  subs.disabled = !st.length; auds.disabled = at.length < 2;
}
function choosePreferred() {  // the remembered choice, else the portal's language for subtitles off
  if (!S.hls) return;
  const p = prefs();
  const ai = S.hls.audioTracks.findIndex((x) => trackKey(x) === p.audio);
  if (ai >= 0 && ai !== S.hls.audioTrack) S.hls.audioTrack = ai;
  const si = p.subtitles ? S.hls.subtitleTracks.findIndex((x) => trackKey(x) === p.subtitles) : -1;
  S.hls.subtitleDisplay = si >= 0;
  S.hls.subtitleTrack = si;
  renderPlayerOptions();
}
function clockTime(s) {
  const m = Math.floor(s / 60), sec = Math.floor(s % 60);
  return `${m}:${String(sec).padStart(2, "0")}`;
}
function savedPosition(id) { return Number(localStorage.getItem(`pos.${id}`) || 0); }
function keepPosition(id) {
  const v = $("player");
  let last = 0;
  v.ontimeupdate = () => {
    const now = Date.now();
    if (now - last < 2000) return;
    last = now;
    try { localStorage.setItem(`pos.${id}`, String(v.ended ? 0 : v.currentTime)); } catch (e) { /* full */ }
  };
  v.onpause = () => { try { localStorage.setItem(`pos.${id}`, String(v.ended ? 0 : v.currentTime)); } catch (e) { /* full */ } };
}
function offerResume(id, duration) {
  const pos = savedPosition(id), box = $("resume");
  box.hidden = !(pos > 1 && (!duration || pos < duration - 1));
  if (box.hidden) return false;
  $("resume-go").textContent = t("player.resume", {time: clockTime(pos)});
  $("resume-go").onclick = () => { const v = $("player"); v.currentTime = pos; v.play().catch(() => {}); box.hidden = true; };
  $("resume-start").onclick = () => { const v = $("player"); v.currentTime = 0; v.play().catch(() => {}); box.hidden = true; };
  return true;
}

function stopPlayer() {
  if (S.hls) { S.hls.destroy(); S.hls = null; }
  const v = $("player"); v.pause(); v.ontimeupdate = null; v.onpause = null;
  v.removeAttribute("src"); v.load();
  $("resume").hidden = true;
}

async function play(id) {
  const t = title(id);
  if (!t || !t.available) { $("play-title").textContent = tr(t ? "catalog.locked" : "common.not_available"); return; }
  $("play-title").textContent = local(t, "title");
  $("attribution").textContent = `${t.attribution || ""} ${tr("common.licence", {licence: t.licence})}`;
  const v = $("player"), src = media(t.entry), here = location.hash;
  stopPlayer();
  if (!window.Hls && !window.noHlsJs) {  // the player library, loaded the first time a film opens
    try { await loadScript(assetUrl("vendor/hls.min.js")); } catch (e) { window.noHlsJs = true; }
    if (location.hash !== here) return;  // the passenger went elsewhere meanwhile
  }
  if (window.Hls && window.Hls.isSupported()) {
    S.hls = new window.Hls({maxBufferLength: 30, startLevel: -1, renderTextTracksNatively: true});
    S.hls.loadSource(src); S.hls.attachMedia(v);
    S.hls.on(window.Hls.Events.ERROR, (_e, d) => { if (d.fatal) console.error("hls", d.type, d.details); });
    S.hls.on(window.Hls.Events.MANIFEST_PARSED, choosePreferred);
    S.hls.on(window.Hls.Events.SUBTITLE_TRACKS_UPDATED, choosePreferred);
    S.hls.on(window.Hls.Events.AUDIO_TRACKS_UPDATED, choosePreferred);
    v.addEventListener("loadedmetadata", choosePreferred, {once: true});  // hls.js resets it on attach
    S.hls.on(window.Hls.Events.AUDIO_TRACK_SWITCHED, renderPlayerOptions);
    S.hls.on(window.Hls.Events.SUBTITLE_TRACK_SWITCH, renderPlayerOptions);
  } else if (v.canPlayType("application/vnd.apple.mpegurl")) {
    v.src = src;
  } else {
    $("play-title").textContent = tr("player.no_hls");
    return;
  }
  renderPlayerOptions(); applyCueStyle(); keepPosition(id);
  if (offerResume(id, t.duration_s)) return;  // the passenger chooses: continue or start over
  if (!S.pa) v.play().catch(() => { /* autoplay may need a tap: the controls are there */ });
}

function playerControls() {
  $("sub-select").onchange = (e) => {
    const i = Number(e.target.value);
    if (S.hls) { S.hls.subtitleDisplay = i >= 0; S.hls.subtitleTrack = i; }
    else Array.from($("player").textTracks).forEach((x, j) => { x.mode = j === i ? "showing" : "disabled"; });
    const tk = S.hls && i >= 0 ? S.hls.subtitleTracks[i] : null;
    savePrefs({subtitles: tk ? trackKey(tk) : ""});
  };
  $("audio-select").onchange = (e) => {
    const i = Number(e.target.value);
    if (S.hls) { S.hls.audioTrack = i; savePrefs({audio: trackKey(S.hls.audioTracks[i])}); }
  };
  $("cue-size").onchange = (e) => { savePrefs({cueSize: e.target.value}); applyCueStyle(); };
  $("cue-bg").onchange = (e) => { savePrefs({cueBg: e.target.value}); applyCueStyle(); };
  new ResizeObserver(applyCueStyle).observe($("player"));
}

// ---- reader --------------------------------------------------------------------------------
// A book is HTML pages (plain-text sources: the chapters in an iframe) or an EPUB 3, read with
// epub.js (bundled from npm, loaded only when a book is opened). The EPUB reader keeps the
// passenger's place (a CFI per title), text size and theme on the phone, lists the chapters as
// real links, marks the current one, and turns pages with buttons, arrow keys or a swipe.
const EPUB_SIZES = [80, 100, 120, 150, 200];
const EPUB_THEMES = {light: {body: {background: "#fdfaf3", color: "#222"}},
                     sepia: {body: {background: "#f4ecd8", color: "#3b2f1e"}},
                     dark: {body: {background: "#121212", color: "#e6e6e6"}}};
function loadScript(src) {
  return new Promise((ok, fail) => {
    const s = document.createElement("script"); s.src = src; s.onload = ok; s.onerror = fail;
    document.head.append(s);
  });
}
function readerPrefs() { try { return JSON.parse(localStorage.getItem("reader.prefs") || "{}"); } catch (e) { return {}; } }
function saveReaderPrefs(p) { try { localStorage.setItem("reader.prefs", JSON.stringify({...readerPrefs(), ...p})); } catch (e) { /* private */ } }
function renderReaderOptions() {
  const p = readerPrefs();
  $("epub-size").replaceChildren(...EPUB_SIZES.map((n) => option(String(n), `${num(n)} %`, n === (p.size || 100))));
  $("epub-theme").replaceChildren(...Object.keys(EPUB_THEMES).map((k) => option(k, t(`reader.theme_${k}`), k === (p.theme || "light"))));
}
function closeEpub() {
  if (S.book) { S.book.destroy(); S.book = null; S.rendition = null; }
  $("epub-view").replaceChildren();
}
async function readEpub(t) {
  $("reader-frame").hidden = true; $("epub-box").hidden = false;
  if (!window.ePub) {
    await loadScript(assetUrl("vendor/jszip.min.js"));
    await loadScript(assetUrl("vendor/epub.min.js"));
  }
  closeEpub();
  const p = readerPrefs(), toc = $("toc");
  const book = window.ePub(media(t.entry), {openAs: "epub"});
  const rendition = book.renderTo("epub-view", {width: "100%", height: "100%", spread: "none"});
  S.book = book; S.rendition = rendition;
  for (const [k, v] of Object.entries(EPUB_THEMES)) rendition.themes.register(k, v);
  rendition.themes.select(p.theme || "light");
  rendition.themes.fontSize(`${p.size || 100}%`);
  renderReaderOptions();
  const nav = await book.loaded.navigation;
  const links = [];
  toc.replaceChildren();
  const add = (items, depth) => { for (const it of items) {
    const li = document.createElement("li"), a = document.createElement("a");
    a.textContent = it.label.trim(); a.href = `#read/${t.id}`; a.dataset.href = it.href;
    a.style.paddingInlineStart = `${depth}em`;
    a.onclick = (e) => { e.preventDefault(); S.chapterChosen = a; rendition.display(it.href); };
    li.append(a); toc.append(li); links.push(a);
    if (depth < 1 && it.subitems?.length) add(it.subitems, depth + 1);
  } };
  add(nav.toc, 0);
  rendition.on("relocated", (loc) => {
    try { localStorage.setItem(`epub.${t.id}`, loc.start.cfi); } catch (e) { /* full */ }
    const file = loc.start.href.split("#")[0];
    // the chapter the passenger opened, else the one the page starts in
    const current = S.chapterChosen || chapterAt(links, file, loc.start.cfi, rendition);
    S.chapterChosen = null;
    for (const a of links) if (a === current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    S.readerAt = loc.start.cfi;
  });
  rendition.on("keyup", readerKeys);
  await rendition.display(localStorage.getItem(`epub.${t.id}`) || undefined);
  window.readerReady = t.id;
}
function chapterAt(links, file, cfi, rendition) {
  // The last chapter of this section whose heading comes at or before the page's first word:
  // a section (one file) may hold many chapters.
  let current = null;
  try {
    const node = rendition.getRange(cfi)?.startContainer;
    const doc = node?.ownerDocument;
    for (const a of links) {
      const [f, frag] = a.dataset.href.split("#");
      if (f.split("/").pop() !== file.split("/").pop()) continue;
      const el = frag && doc ? doc.getElementById(frag) : null;
      if (!frag) current = current || a;
      else if (el && node && (el === node || el.contains(node)
               || (el.compareDocumentPosition(node) & Node.DOCUMENT_POSITION_FOLLOWING))) current = a;
    }
  } catch (e) { /* no range yet: fall back to the section */ }
  return current || links.find((a) => a.dataset.href.split("#")[0].split("/").pop() === file.split("/").pop()) || null;
}
function readerKeys(e) {
  if (!S.rendition) return;
  const rtl = document.documentElement.dir === "rtl";
  if (e.key === "ArrowRight") rtl ? S.rendition.prev() : S.rendition.next();
  if (e.key === "ArrowLeft") rtl ? S.rendition.next() : S.rendition.prev();
}
function readerControls() {
  $("epub-prev").onclick = () => S.rendition?.prev();
  $("epub-next").onclick = () => S.rendition?.next();
  $("epub-size").onchange = (e) => { saveReaderPrefs({size: Number(e.target.value)}); S.rendition?.themes.fontSize(`${e.target.value}%`); };
  $("epub-theme").onchange = (e) => { saveReaderPrefs({theme: e.target.value}); S.rendition?.themes.select(e.target.value); };
  $("epub-view").addEventListener("keyup", readerKeys);
  // epub.js draws each section in an iframe of its own: give every one its accessible name
  new MutationObserver(() => {
    for (const f of $("epub-view").querySelectorAll("iframe:not([title])")) f.title = t("reader.page");
  }).observe($("epub-view"), {childList: true, subtree: true});
}

async function read(id) {
  const t = title(id);
  if (!t || !t.available) { $("read-title").textContent = tr(t ? "catalog.locked" : "common.not_available"); return; }
  $("read-title").textContent = local(t, "title");
  $("read-attribution").textContent = `${t.attribution || ""} ${tr("common.licence", {licence: t.licence})}`;
  if (t.entry.endsWith(".epub")) return readEpub(t);
  $("reader-frame").hidden = false; $("epub-box").hidden = true; closeEpub();
  const frame = $("reader-frame"), toc = $("toc");
  const base = t.entry.slice(0, t.entry.lastIndexOf("/") + 1);
  toc.replaceChildren();
  if (t.toc) {
    const items = await (await fetch(media(t.toc))).json();
    const mark = (a) => { for (const x of toc.querySelectorAll("a")) x.removeAttribute("aria-current");
                          if (a) a.setAttribute("aria-current", "page"); };
    for (const it of items) {  // real links into the frame: reachable and followed by keyboard
      const li = document.createElement("li"), a = document.createElement("a");
      a.textContent = it.title; a.href = media(base + it.href); a.target = "reader-frame";
      a.onclick = () => mark(a);
      li.append(a); toc.append(li);
    }
    frame.src = media(base + (items[0]?.href || ""));
    mark(toc.querySelector("a"));
  } else {
    frame.src = media(t.entry);
  }
}

// ---- flight info ---------------------------------------------------------------------------
// The facts are written here; the moving map is assets/map.js, loaded when the flight view opens.
function fmt(v, unit, digits = 0) { return v == null ? "–" : t(`unit.${unit}`, {n: num(Number(v), digits)}); }
function phaseName(f) {  // the passenger's words for the phase: never the raw state name
  return f.phase && I.cat[`phase.${f.phase}`] ? t(`phase.${f.phase}`) : "–";
}
function timeToGo(s) {
  if (s == null) return "–";
  const m = Math.max(0, Math.round(s / 60));
  return m < 60 ? t("flight.minutes_left", {m: num(m)}) : t("flight.hours_minutes", {h: num(Math.floor(m / 60)), m: num(m % 60)});
}
function arrivalLocal(f) {  // the arrival as a time of day at the destination (its IANA zone)
  if (!f.eta) return "–";
  const d = f.destination || {};
  let time;
  try {
    time = new Intl.DateTimeFormat(I.lang, {hour: "2-digit", minute: "2-digit", timeZone: d.tz || "UTC"}).format(new Date(f.eta));
  } catch (e) { time = (f.eta_local || f.eta).slice(11, 16); }
  return d.tz ? t("flight.arrival_at", {time, place: d.name || d.iata || ""}) : `${time} UTC`;
}

function onFlight(f) {
  S.flight = f;
  $("fi-number").textContent = f.flight_number || "";
  $("fi-alt").textContent = fmt(f.altitude_ft, "ft");
  $("fi-speed").textContent = fmt(f.ground_speed_kt, "kt");
  if (f.latitude != null) $("fi-pos").textContent = `${num(f.latitude, 3)}°, ${num(f.longitude, 3)}°`;
  else if (!$("fi-pos").textContent) $("fi-pos").textContent = "–";  // else: the last good one holds
  $("fi-dist").textContent = fmt(f.distance_nm, "nm");
  $("fi-togo").textContent = timeToGo(f.time_to_go_s);
  $("fi-eta").textContent = arrivalLocal(f);
  $("fi-phase").textContent = phaseName(f);
  $("fi-utc").textContent = f.utc ? clock(f.utc, true) : "–";
  if (window.FlightMap) window.FlightMap.update(f);
}

// ---- moving map (assets/map.js, a classic script loaded once, when the flight view opens) ----
// (assetUrl: with the shop's loader below)
let mapLoading = null;
function openMap() {
  mapLoading ||= loadScript(assetUrl("map.js")).then(() => window.FlightMap.init())
    .catch((e) => { mapLoading = null; console.error("map", e); });
  return mapLoading.then(() => { if (window.FlightMap && S.flight) window.FlightMap.update(S.flight); });
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

// ---- menu (the shop: assets/shop.js, loaded the first time the menu opens) and survey ------
function assetUrl(name) { return (window.ASSET_URLS || {})[name] || "/portal/" + name; }
let shopScript = null;
async function openShop() {
  shopScript ||= loadScript(assetUrl("shop.js")).catch((e) => { shopScript = null; throw e; });
  try { await shopScript; await window.Shop.open(); } catch (e) { $("order-status").textContent = t("common.no_connection"); }
}
function renderMenu() { if (window.Shop) window.Shop.render(); }

async function renderSurvey() {
  const form = $("survey");
  if (form.dataset.ready) return;
  const {questions} = await (await fetch("/api/v1/survey")).json();
  const text = (q) => (I.cat[`survey.${q.id}`] ? t(`survey.${q.id}`) : q.text);
  form.innerHTML = `<p class="small">${esc(t("feedback.scale"))}</p>` + questions.map((q) =>
    `<fieldset class="q"><legend>${esc(text(q))}</legend>${[1, 2, 3, 4, 5].map((n) =>
    `<label><input type="radio" name="${esc(q.id)}" value="${n}" aria-label="${esc(t("feedback.score", {n}))}"> ${n}</label>`).join("")}</fieldset>`).join("") +
    `<label><span class="small">${esc(t("feedback.comment"))}</span><textarea name="comment" maxlength="1000"></textarea></label><button>${esc(t("feedback.send"))}</button>`;
  form.dataset.ready = "1";
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const fd = new FormData(form), answers = {};
    for (const q of questions) if (fd.get(q.id)) answers[q.id] = Number(fd.get(q.id));
    const status = $("feedback-status");
    if (!Object.keys(answers).length) { status.textContent = t("feedback.pick_one"); return; }
    form.dataset.key ||= newKey();
    try {
      const r = await postJSON("/api/v1/feedback", {idempotency_key: form.dataset.key, answers,
                                                     comment: String(fd.get("comment") || "")});
      status.textContent = r.ok ? t("feedback.thanks") : t("feedback.not_sent", {status: r.status});
    } catch (e) { status.textContent = t("common.no_connection"); }
  };
}

// ---- views ---------------------------------------------------------------------------------
function route() {
  const [view, id] = (location.hash.slice(1) || "catalog").split("/");
  const name = ["catalog", "play", "read", "flight", "menu", "feedback"].includes(view) ? view : "catalog";
  for (const sec of document.querySelectorAll(".view")) sec.hidden = sec.id !== `view-${name}`;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === `nav-${name}`);
  if (name !== "play") stopPlayer();
  if (name !== "read") closeEpub();
  if (name === "play") play(id);
  if (name === "read") read(id);
  if (name === "flight") openMap();
  renderClosed();
  if (name === "feedback") renderSurvey();
  if (name === "menu") openShop();
}

async function captive() {
  await S.catalogLoaded;  // closed services: no welcome (it promises what is closed)
  try {
    const r = await fetch("/api/v1/portal/state");  // same origin (the RFC 8908 API may be HTTPS only)
    if ((await r.json()).captive && S.catalog?.services !== "closed") $("welcome").hidden = false;
  } catch (e) { /* not captive-aware: nothing to show */ }
  $("start").onclick = async () => { await fetch("/api/v1/portal/accept", {method: "POST"}); $("welcome").hidden = true; };
}

async function main() {
  playerControls(); readerControls();
  $("lang").onchange = (e) => switchLang(e.target.value);
  window.addEventListener("hashchange", route);
  if (!I.cat._name) await loadLang(I.lang);  // normally inlined in the page
  S.catalogLoaded = loadCatalog().catch(() => {});
  await Promise.all([S.catalogLoaded, captive()]);
  connectEvents();
  route();
  window.portalReady = true;
}
main();
