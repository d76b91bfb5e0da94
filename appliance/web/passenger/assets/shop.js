// The onboard shop (loaded by app.js the first time the menu opens; a classic script that uses
// app.js's globals: $, t, esc, I, newKey, postJSON). The menu in force comes from /api/v1/menu
// (names per language, price in minor units, stock, allergens); an order answers with its number
// and total; the phone keeps its orders (number + key) in localStorage and polls each open one
// every few seconds while the page is visible, so the passenger sees placed -> preparing ->
// delivered. Payment is to the crew on delivery: no card data is asked for or kept.
"use strict";
(function () {
  const POLL_MS = 4000;
  const FINAL = new Set(["delivered", "cancelled"]);
  const SH = {menu: null, orders: loadOrders(), timer: null};

  function loadOrders() { try { return JSON.parse(localStorage.getItem("shop.orders") || "[]"); } catch (e) { return []; } }
  function saveOrders() { try { localStorage.setItem("shop.orders", JSON.stringify(SH.orders.slice(-10))); } catch (e) { /* private */ } }
  function money(minor, currency) {
    try { return new Intl.NumberFormat(I.lang, {style: "currency", currency}).format(minor / 100); }
    catch (e) { return `${(minor / 100).toFixed(2)} ${currency}`; }
  }
  function itemName(it) { return (it.names && (it.names[I.lang] || it.names.en)) || it.name || it.sku; }
  function el(tag, attrs = {}, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  }
  function part(id, tag, after) {  // the shop's own elements in the menu view, made once
    let e = $(id);
    if (!e) { e = el(tag, {id}); after.after(e); }
    return e;
  }

  function render() {
    const box = $("menu-items");
    if (!box || !SH.menu) return;
    box.replaceChildren();
    for (const it of SH.menu.items) {
      const row = el("div", {class: "menu-row", "data-sku": it.sku});
      const name = itemName(it);
      const label = el("span");
      label.append(el("span", {}, name), " ", el("span", {class: "small"}, money(it.price, it.currency)));
      const notes = [];
      if (it.allergens && it.allergens.length) notes.push(t("shop.allergens", {list: it.allergens.map((a) => I.cat[`shop.allergen.${a}`] ? t(`shop.allergen.${a}`) : a).join(", ")}));
      const counted = it.stock != null;  // null: not counted, never sold out
      if (counted) notes.push(it.stock > 0 ? t("shop.left", {n: num(it.stock)}) : t("shop.sold_out"));
      if (notes.length) label.append(el("br"), el("span", {class: "small"}, notes.join(" · ")));
      const input = el("input", {type: "number", min: "0", max: String(counted ? Math.min(10, it.stock) : 10), value: "0",
                                 "data-sku": it.sku, "aria-label": t("menu.quantity", {item: name})});
      if (counted && it.stock <= 0) input.disabled = true;
      input.addEventListener("input", renderTotal);
      row.append(label, input);
      box.append(row);
    }
    const view = $("view-menu");
    const pay = part("shop-pay", "p", $("menu-items")); pay.className = "small"; pay.textContent = t("shop.pay_on_delivery");
    part("shop-total", "p", pay);
    renderTotal(); renderOrders();
    view.dataset.shop = "ready";
  }

  function basket() {
    return Array.from(document.querySelectorAll("#menu-items input"))
      .map((i) => ({sku: i.dataset.sku, qty: Number(i.value)})).filter((i) => i.qty > 0);
  }
  function renderTotal() {
    const items = basket(), total = $("shop-total");
    if (!total || !SH.menu) return;
    const bySku = Object.fromEntries(SH.menu.items.map((i) => [i.sku, i]));
    const sum = items.reduce((a, i) => a + i.qty * (bySku[i.sku]?.price || 0), 0);
    const cur = SH.menu.items[0]?.currency || "EUR";
    total.textContent = items.length ? t("shop.basket_total", {total: money(sum, cur)}) : "";
  }

  function refusal(r, body, items) {  // the server's 422/429/503 in the passenger's words
    if (r.status === 429) return t("shop.err.too_fast");
    if (r.status === 503) return t("shop.err.closed");
    const bySku = Object.fromEntries((SH.menu?.items || []).map((i) => [i.sku, i]));
    const out = [];
    for (const d of (Array.isArray(body?.detail) ? body.detail : [])) {
      const loc = d.loc || [];
      const sku = loc[1] === "items" && typeof loc[2] === "number" ? items[loc[2]]?.sku : null;
      const item = sku ? (bySku[sku] ? itemName(bySku[sku]) : sku) : "";
      if (loc.includes("seat")) out.push(t("shop.err.seat"));
      else if (I.cat[`shop.err.${d.type}`]) out.push(t(`shop.err.${d.type}`, {item}));
      else if (loc.includes("qty")) out.push(t("shop.err.qty", {item}));
      else out.push(t("shop.err.other"));
    }
    return out.length ? [...new Set(out)].join(" ") : t("shop.err.other");
  }

  async function order() {
    const items = basket(), status = $("order-status");
    if (!items.length) { status.textContent = t("menu.choose_first"); return; }
    const body = {idempotency_key: newKey(), seat: $("seat").value.trim().toUpperCase(), items};
    $("order").disabled = true;
    try {
      const r = await postJSON("/api/v1/orders", body);
      const res = await r.json().catch(() => ({}));
      if (!r.ok) { status.textContent = refusal(r, res, items); return; }
      status.textContent = t("shop.placed", {number: res.number, total: money(res.total, res.currency)});
      SH.orders = SH.orders.filter((o) => o.number !== res.number);
      SH.orders.push({number: res.number, key: body.idempotency_key, status: res.status,
                      total: res.total, currency: res.currency, seat: body.seat});
      saveOrders();
      for (const i of document.querySelectorAll("#menu-items input")) i.value = "0";
      await loadMenu(); poll();
    } catch (e) { status.textContent = t("common.no_connection"); }
    finally { $("order").disabled = false; }
  }

  function renderOrders() {
    const list = part("shop-orders", "ul", $("order-status"));
    list.setAttribute("aria-live", "polite");
    list.replaceChildren(...SH.orders.slice().reverse().map((o) => {
      const li = el("li", {"data-order": String(o.number), "data-status": o.status});
      li.textContent = t("shop.order_line", {number: o.number, total: money(o.total, o.currency),
                                             status: t(`shop.status.${o.status}`)});
      return li;
    }));
  }

  async function poll() {
    clearTimeout(SH.timer);
    const open = SH.orders.filter((o) => !FINAL.has(o.status));
    if (!open.length || $("view-menu").hidden) return;  // nothing to follow, or nobody looking
    if (!document.hidden) {
      for (const o of open) {
        try {
          const r = await fetch(`/api/v1/orders/${o.number}?key=${encodeURIComponent(o.key)}`);
          if (r.ok) o.status = (await r.json()).status;
          else if (r.status === 404) o.status = "cancelled";
        } catch (e) { /* offline for a moment: try again later */ }
      }
      saveOrders(); renderOrders();
    }
    SH.timer = setTimeout(poll, POLL_MS);
  }

  async function loadMenu() {
    const r = await fetch("/api/v1/menu");
    if (!r.ok) throw new Error(`menu ${r.status}`);
    SH.menu = await r.json();
    render();
  }

  async function open() {
    $("order").onclick = order;
    await loadMenu();
    poll();
  }

  window.Shop = {open, render};
})();
