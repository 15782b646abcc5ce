// parksyncd's web page: renders the country summaries of /events (or
// /summary.json) and draws its charts as SVG. No framework, no network
// but the daemon's own: the file is compiled into parksyncd.
//
// Every figure shown carries data-field="CC.name" so that tests (and
// curious readers) can find it. Text from the daemon is only ever set as
// textContent, never parsed as HTML.
"use strict";

const NAMES = { AZ: "Azerbaijan", TJ: "Tajikistan", KZ: "Kazakhstan", UZ: "Uzbekistan",
  KG: "Kyrgyzstan", TM: "Turkmenistan", TR: "Turkey", RU: "Russia", GE: "Georgia" };
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const SVG = "http://www.w3.org/2000/svg";

// ---------------------------------------------------------------- formatting

function amount(cents) {
  if (cents === null || cents === undefined) return "no figure";
  return (cents / 100).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

function usd(cents) { return cents === null || cents === undefined ? "no figure" : "USD " + amount(cents); }

function usdShort(cents) {
  if (cents === null || cents === undefined) return "no figure";
  const v = Math.abs(cents / 100), sign = cents < 0 ? "-" : "";
  const units = [[1e12, "trillion"], [1e9, "billion"], [1e6, "million"], [1e3, "thousand"]];
  for (const [n, word] of units)
    if (v >= n) return "USD " + sign + (v / n).toLocaleString("en-US", { maximumFractionDigits: 1 }) + " " + word;
  return usd(cents);
}

function period(p) {
  if (!p || !p.year || !p.first_month || !p.last_month) return "(no period)";
  const a = MONTHS[p.first_month - 1], b = MONTHS[p.last_month - 1];
  return (a === b ? a : a + "-" + b) + " " + p.year;
}

function pct(bp) { return bp === null || bp === undefined ? "not reported" : (bp / 100).toFixed(2) + " %"; }

function num(v) { return v === null || v === undefined ? "0" : v.toLocaleString("en-US"); }

// ---------------------------------------------------------------- DOM and SVG

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Horizontal grouped bars. rows: [{label, bars: [{value, color, text}]}];
// max: the value of a full bar (default: the largest).
function barChart(rows, max) {
  const W = 560, LABEL = 150, BAR = 14, GAP = 10, TEXTW = 150;
  const top = Math.max(max || 0, ...rows.flatMap(r => r.bars.map(b => Math.abs(b.value || 0))), 1);
  const h = rows.reduce((s, r) => s + r.bars.length * (BAR + 2) + GAP, GAP);
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${h}`, role: "img" });
  let y = GAP;
  for (const r of rows) {
    chart.append(svg("text", { x: 0, y: y + BAR - 2, class: "label" }, r.label));
    for (const b of r.bars) {
      const w = Math.max(1, (W - LABEL - TEXTW) * Math.abs(b.value || 0) / top);
      chart.append(svg("rect", { x: LABEL, y, width: w, height: BAR, fill: b.color, rx: 2 }));
      chart.append(svg("text", { x: LABEL + w + 4, y: y + BAR - 3 }, b.text));
      y += BAR + 2;
    }
    y += GAP;
  }
  return chart;
}

function legend(items) {
  return el("div", { class: "legend" }, ...items.map(([color, text]) => {
    const swatch = el("i");
    swatch.style.background = color;
    return el("span", {}, swatch, text);
  }));
}

function tile(cc, key, label, value, sub) {
  return el("div", { class: "tile" }, el("div", { class: "k" }, label),
    el("div", { class: "v", "data-field": `${cc}.${key}` }, value), el("div", { class: "s" }, sub || ""));
}

function more(shown, total, what) {
  return total > shown ? [el("p", { class: "more" }, `and ${total - shown} more ${what}`)] : [];
}

// ---------------------------------------------------------------- one country

const css = name => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function investment(c) {
  return barChart([
    { label: "reported", bars: [{ value: c.reported_investment_usd_cents, color: css("--reported"), text: usdShort(c.reported_investment_usd_cents) }] },
    { label: "in resident records", bars: [{ value: c.known_investment_usd_cents, color: css("--known"), text: usdShort(c.known_investment_usd_cents) }] },
  ]);
}

function indicators(c) {
  if (!c.indicators.length) return [el("p", { class: "more" }, "none reported")];
  const rows = c.indicators.map(r => ({ label: period(r.period), bars: [
    { value: r.parks_non_oil_production_share_bp, color: css("--reported"), text: "production " + pct(r.parks_non_oil_production_share_bp) },
    { value: r.parks_export_share_bp, color: css("--importer"), text: "exports " + pct(r.parks_export_share_bp) },
  ] }));
  return [legend([[css("--reported"), "share of non-oil production"], [css("--importer"), "share of non-oil exports"]]),
    barChart(rows, 10000), ...more(c.indicators.length, c.indicators_total, "periods")];
}

function directionRow(cc, t, d, name, from, to) {
  const disc = d.discrepancy_pct === undefined ? "" : d.discrepancy_pct.toFixed(2) + " %";
  const flag = d.flagged === undefined ? "" : d.flagged ? "flagged" : "within threshold";
  const key = `${cc}.${t.partner}.${name}`;
  return el("tr", {}, el("td", {}, `${name} ${from} \u2192 ${to}`),
    el("td", { "data-field": key + ".exporter" }, amount(d.exporter)),
    el("td", { "data-field": key + ".importer" }, amount(d.importer)),
    el("td", { "data-field": key + ".chosen" }, amount(d.chosen)),
    el("td", { class: d.flagged ? "flag" : "ok", "data-field": key + ".flag", title: flag }, disc + (d.flagged ? " flagged" : "")));
}

function trade(c) {
  if (!c.turnover.length) return [el("p", { class: "more" }, "none reported")];
  const out = [];
  for (const t of c.turnover) {
    const partner = `${NAMES[t.partner] || t.partner} (${t.partner})`;
    out.push(el("h3", {}, `with ${partner}, ${period(t.period)}: turnover `,
      el("span", { "data-field": `${c.country}.${t.partner}.turnover` }, usd(t.turnover_usd_cents))));
    out.push(barChart([
      { label: `exports to ${t.partner}`, bars: [
        { value: t.exports.exporter, color: css("--exporter"), text: `${c.country}: ${usdShort(t.exports.exporter)}` },
        { value: t.exports.importer, color: css("--importer"), text: `${t.partner}: ${usdShort(t.exports.importer)}` }] },
      { label: `imports from ${t.partner}`, bars: [
        { value: t.imports.exporter, color: css("--exporter"), text: `${t.partner}: ${usdShort(t.imports.exporter)}` },
        { value: t.imports.importer, color: css("--importer"), text: `${c.country}: ${usdShort(t.imports.importer)}` }] },
    ]));
    out.push(el("table", {},
      el("tr", {}, el("th", {}, "flow (USD)"), el("th", {}, "exporter's"), el("th", {}, "importer's"),
        el("th", {}, "chosen"), el("th", {}, `discrepancy (flag > ${data_threshold} %)`)),
      directionRow(c.country, t, t.exports, "exports", c.country, t.partner),
      directionRow(c.country, t, t.imports, "imports", t.partner, c.country)));
  }
  return [legend([[css("--exporter"), "exporter's figure (FOB)"], [css("--importer"), "importer's figure (CIF)"]]),
    ...out, ...more(c.turnover.length, c.turnover_total, "partners and periods")];
}

function checks(c) {
  if (!c.mismatches.length)
    return [el("p", { class: "ok", "data-field": `${c.country}.checks` },
      c.parks ? "every park's reported figures match its resident records" : "no parks reported")];
  const rows = c.mismatches.map(m => el("tr", { "data-field": `${c.country}.mismatch.${m.park_id}` },
    el("td", {}, m.park_id), el("td", {}, num(m.reported_residents)), el("td", {}, num(m.known_residents)),
    el("td", {}, usdShort(m.reported_investment_usd_cents)), el("td", {}, usdShort(m.known_investment_usd_cents))));
  return [el("table", {}, el("tr", {}, el("th", {}, "park"), el("th", {}, "residents reported"),
    el("th", {}, "known"), el("th", {}, "investment reported"), el("th", {}, "known")), ...rows),
    ...more(c.mismatches.length, c.mismatches_total, "parks")];
}

function country(c) {
  const cc = c.country;
  return el("section", { class: "country", "data-country": cc },
    el("h2", {}, `${NAMES[cc] || cc} (${cc})`),
    el("div", { class: "tiles" },
      tile(cc, "parks", "industrial parks", num(c.parks)),
      tile(cc, "reported_residents", "residents reported", num(c.reported_residents),
        `${num(c.known_residents)} known as resident records`),
      tile(cc, "reported_investment", "investment portfolio", usdShort(c.reported_investment_usd_cents),
        `${usdShort(c.known_investment_usd_cents)} in resident records`)),
    c.saturated ? el("p", { class: "more" }, "a total beyond what its field holds shows the field's limit: read it as \"at least\"") : "",
    el("h3", {}, "Investment portfolio"), investment(c),
    el("h3", {}, "Parks' share of the non-oil economy"), ...indicators(c),
    el("h3", {}, "Trade turnover: both ministries' mirror figures"), ...trade(c),
    el("h3", {}, "Cross-checks: parks whose figures disagree with their residents"), ...checks(c));
}

let data_threshold = 10;

function render(data) {
  data_threshold = data.threshold_pct;
  const main = document.getElementById("countries");
  const items = data.countries.map(country);
  if (!items.length) items.push(el("p", { class: "empty" }, "No consolidated data yet."));
  if (data.truncated) items.push(el("p", { class: "more" }, "More countries than the page holds: see parksync summary."));
  main.replaceChildren(...items);
}

// ---------------------------------------------------------------- live

const live = { last: 0, interval: 2000, revision: null, source: null };

function setState(state, text) {
  const s = document.getElementById("state");
  if (s.dataset.state === state && s.textContent === text) return;
  s.dataset.state = state;
  s.textContent = text;
}

function heard(revision) {
  live.last = Date.now();
  if (revision !== undefined) {
    live.revision = revision;
    document.getElementById("revision").textContent = revision;
  }
  document.getElementById("updated").textContent = "last word " + new Date(live.last).toLocaleTimeString("en-GB");
  setState("live", "live");
}

function connect() {
  const es = new EventSource("/events");
  live.source = es;
  es.addEventListener("summary", e => { const d = JSON.parse(e.data); render(d); heard(d.revision); });
  es.addEventListener("heartbeat", e => {
    const h = JSON.parse(e.data);
    live.interval = h.interval_ms || live.interval;
    heard(h.revision);
  });
  es.onerror = () => {
    setState("reconnecting", "reconnecting: the stream stopped");
    // EventSource retries by itself unless the server answered with an
    // error; then only a new one will.
    if (es.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  };
}

// Heartbeats come every interval_ms: three missed ones mean the daemon,
// or the way to it, has stopped even if the connection looks open.
setInterval(() => {
  const s = document.getElementById("state").dataset.state;
  const silent = Date.now() - live.last;
  if (s === "live" && silent > 3 * live.interval)
    setState("stale", `stale: no word for ${Math.round(silent / 1000)} s`);
}, 500);

connect();
