// The Tally dashboard: signs in, reads /dashboard/api/stats (the /v1/stats JSON) for the
// chosen period (with the one before it in `previous`), draws cards, SVG charts and tables, and follows
// the live stream. It builds every node with the DOM API, never from HTML strings.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const numbers = new Intl.NumberFormat("en");
const percent = new Intl.NumberFormat("en", { style: "percent", maximumFractionDigits: 1 });
const view = { apps: [], app: null, days: 30, source: null, generation: 0 };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null) node.append(child);
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, options));
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error((body && body.error && body.error.message) || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function post(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60000);
  return `${minutes} min ${Math.round((ms % 60000) / 1000)} s`;
}

function showSignIn(adding) {
  $("signin").hidden = false;
  $("cancel-add").hidden = !adding;
  $("main").hidden = !adding;
  $("controls").hidden = !adding;
  $("key").value = "";
  $("key").focus();
}

function showDashboard(session) {
  view.apps = session.apps;
  if (!view.apps.includes(view.app)) view.app = view.apps[0];
  const select = $("app");
  select.replaceChildren(...view.apps.map((app) => el("option", { value: app, text: app })));
  select.value = view.app;
  select.disabled = view.apps.length < 2;
  $("add-key").hidden = Boolean(session.read_only);
  $("signout").hidden = Boolean(session.read_only);
  $("signin").hidden = true;
  $("controls").hidden = false;
  $("main").hidden = false;
  // A user's own store (tally view) has no live stream: its app writes the file directly.
  $("live-panel").hidden = Boolean(session.read_only);
  load();
  if (!session.read_only) follow();
}

async function start() {
  try {
    showDashboard(await api("/dashboard/api/session"));
  } catch (error) {
    if (error.status === 401) showSignIn(false);
    else $("load-error").textContent = `The dashboard cannot load: ${error.message}`;
  }
}

function period(days) {
  const hour = 3600 * 1000;
  const to = new Date(Math.ceil(Date.now() / hour) * hour);
  const from = new Date(to.getTime() - days * 24 * hour);
  return { to: to.toISOString(), from: from.toISOString() };
}

function statsQuery(from, to) {
  const query = new URLSearchParams({ app: view.app, from, to, bucket: "day" });
  return api(`/dashboard/api/stats?${query}`);
}

async function load() {
  const generation = ++view.generation;
  const span = period(view.days);
  try {
    // One request: `previous` holds the totals of the days before, for the changes.
    const stats = await statsQuery(span.from, span.to);
    if (generation !== view.generation) return;
    $("load-error").textContent = "";
    render(stats, stats.previous);
    const main = $("main");
    main.dataset.app = view.app;
    main.dataset.from = span.from;
    main.dataset.to = span.to;
    main.dataset.loaded = String(generation);
  } catch (error) {
    if (error.status === 401) showSignIn(false);
    else $("load-error").textContent = `Cannot load the figures: ${error.message}`;
  }
}

function change(now, before, lowerIsBetter, span) {
  const previous = span || `${view.days} days`;
  if (now === null || before === null || before === undefined) return { text: "no earlier data", tone: "" };
  if (before === 0) return { text: now === 0 ? "no change" : "new this period", tone: "", before };
  const ratio = (now - before) / before;
  if (Math.abs(ratio) < 0.0005) return { text: `no change vs previous ${previous}`, tone: "", before };
  const better = lowerIsBetter ? ratio < 0 : ratio > 0;
  const sign = ratio > 0 ? "+" : "−";
  return { text: `${sign}${percent.format(Math.abs(ratio))} vs previous ${previous}`, tone: better ? "good" : "bad", before };
}

function card(id, label, value, shown, delta) {
  const changeNode = el("div", { class: `change ${delta.tone}`, text: delta.text, "data-previous": delta.before === undefined || delta.before === null ? "" : String(delta.before) });
  return el("div", { class: "card", id: `card-${id}` },
    el("div", { class: "value", "data-value": String(value), text: shown }),
    el("div", { class: "label", text: label }),
    changeNode);
}

function render(stats, previous) {
  // Installs active in the 24 h, 7 days and 30 days before the period's end, each
  // against the equally long span before it.
  const active = (span) => stats.active_installs_windows[span];
  const installs = (span, label) => change(active(span).current, active(span).previous, false, label);
  $("span").textContent = `${stats.app}: ${stats.from.slice(0, 10)} to ${stats.to.slice(0, 10)} (UTC), compared with the ${view.days} days before.`;
  const avg = stats.sessions.avg_duration_ms;
  $("cards").replaceChildren(
    card("active-24h", "Active installs today (24 h)", active("24h").current, numbers.format(active("24h").current), installs("24h", "24 h")),
    card("active-7d", "Active installs 7 days", active("7d").current, numbers.format(active("7d").current), installs("7d", "7 days")),
    card("active-30d", "Active installs 30 days", active("30d").current, numbers.format(active("30d").current), installs("30d", "30 days")),
    card("sessions", "Sessions", stats.sessions.count, numbers.format(stats.sessions.count), change(stats.sessions.count, previous.sessions.count)),
    card("session-length", "Average session", avg === null ? "" : avg, duration(avg), change(avg, previous.sessions.avg_duration_ms)),
    card("commands", "Commands", stats.totals.commands, numbers.format(stats.totals.commands), change(stats.totals.commands, previous.totals.commands)),
    card("error-rate", "Error rate", stats.error_rate, percent.format(stats.error_rate), change(stats.error_rate, previous.totals.events ? previous.error_rate : null, true)),
    card("events", "Events", stats.totals.events, numbers.format(stats.totals.events), change(stats.totals.events, previous.totals.events)),
  );
  drawActivity(stats.series);
  drawEngagement(stats.engagement);
  $("errors").replaceChildren(rankTable("errors", ["Category", "Events"], stats.error_categories.map((row) => [row.category || "(none)", row.count]), "No errors in this period."));
  $("features").replaceChildren(rankTable("features", ["Feature", "Uses"], stats.feature_usage.map((row) => [row.feature, row.count]), "No feature events in this period."));
  drawCommands(stats.commands);
}

function drawActivity(series) {
  const width = 720, height = 200, left = 40, bottom = 22, top = 10;
  const peak = Math.max(1, ...series.map((point) => point.events));
  const step = (width - left) / Math.max(1, series.length);
  const busiest = series.reduce((best, point) => (point.events > best.events ? point : best), series[0] || { events: 0, start: "" });
  const title = svg("title", { id: "activity-svg-title", text: `Events per day, ${series.length} days` });
  const desc = svg("desc", { id: "activity-svg-desc", text: `Daily events from ${(series[0] || {}).start || "–"}; busiest day ${busiest.start.slice(0, 10)} with ${busiest.events} events. The table below lists every day.` });
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "activity-svg-title activity-svg-desc", id: "activity-chart" }, title, desc);
  for (const fraction of [0, 0.5, 1]) {
    const y = top + (height - top - bottom) * (1 - fraction);
    chart.append(svg("text", { x: 0, y: y + 4, text: numbers.format(Math.round(peak * fraction)) }));
  }
  series.forEach((point, index) => {
    const h = ((height - top - bottom) * point.events) / peak;
    const x = left + index * step;
    const bar = svg("rect", { class: "bar-rect", x: x + step * 0.1, y: height - bottom - h, width: Math.max(1, step * 0.8), height: h, "data-events": point.events },
      svg("title", { text: `${point.start.slice(0, 10)}: ${point.events} events, ${point.sessions} sessions` }));
    chart.append(bar);
    const every = Math.ceil(series.length / 6);
    if (index % every === 0 && x < width - 40) chart.append(svg("text", { x, y: height - 6, text: point.start.slice(5, 10) }));
  });
  $("activity").replaceChildren(chart);
  const rows = series.map((p) => [p.start.slice(0, 10), p.events, p.sessions, p.commands, p.errors]);
  $("activity-table").replaceChildren(table("activity-data", ["Day", "Events", "Sessions", "Commands", "Errors"], rows));
}

function table(id, headings, rows) {
  const head = el("tr", {}, ...headings.map((text, index) => el("th", { scope: "col", class: index ? "num" : "", text })));
  const body = rows.map((cells) => el("tr", {}, ...cells.map((cell, index) =>
    el(index ? "td" : "th", index ? { class: "num", text: typeof cell === "number" ? numbers.format(cell) : cell } : { scope: "row", text: String(cell) }))));
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, ...body));
}

function rankTable(id, headings, rows, empty) {
  if (rows.length === 0) return el("p", { class: "muted", id: `${id}-empty`, text: empty });
  const peak = Math.max(...rows.map((row) => row[1]));
  const head = el("tr", {}, el("th", { scope: "col", text: headings[0] }), el("th", { scope: "col", class: "num", text: headings[1] }), el("th", { scope: "col", class: "sr", text: "Share" }));
  const body = rows.map(([name, count]) => {
    const meter = el("span", { class: "meter", "aria-hidden": "true" });
    meter.style.width = `${Math.round((100 * count) / peak)}%`;
    return el("tr", { "data-name": name, "data-count": String(count) },
      el("th", { scope: "row", text: name }), el("td", { class: "num", text: numbers.format(count) }), el("td", { class: "share" }, meter));
  });
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, ...body));
}

function drawCommands(commands) {
  if (commands.length === 0) {
    $("commands").replaceChildren(el("p", { class: "muted", text: "No commands in this period." }));
    return;
  }
  const head = el("tr", {}, ...["Command", "Runs", "Failed", "p50", "p95"].map((text, index) => el("th", { scope: "col", class: index ? "num" : "", text })));
  const rows = commands.map((row) => el("tr", { "data-name": row.command, "data-runs": String(row.runs), "data-failures": String(row.failures),
    "data-p50": String(row.p50_ms ?? ""), "data-p95": String(row.p95_ms ?? "") },
    el("th", { scope: "row", text: row.command || "(none)" }),
    el("td", { class: "num", text: numbers.format(row.runs) }),
    el("td", { class: "num", text: percent.format(row.runs ? row.failures / row.runs : 0) }),
    el("td", { class: "num", text: duration(row.p50_ms) }),
    el("td", { class: "num", text: duration(row.p95_ms) })));
  $("commands").replaceChildren(el("table", { id: "commands-table" }, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function drawEngagement(engagement) {
  const radius = 70, cx = 90, cy = 90;
  const angle = Math.PI * (1 - engagement.score / 100);
  const x = cx + radius * Math.cos(angle), y = cy - radius * Math.sin(angle);
  const gauge = svg("svg", { viewBox: "0 0 180 110", role: "img", "aria-labelledby": "gauge-title", id: "gauge", "data-score": engagement.score },
    svg("title", { id: "gauge-title", text: `Engagement score ${engagement.score} out of 100` }),
    svg("path", { class: "track", d: `M ${cx - radius} ${cy} A ${radius} ${radius} 0 0 1 ${cx + radius} ${cy}` }),
    svg("path", { class: "arc", d: engagement.score > 0 ? `M ${cx - radius} ${cy} A ${radius} ${radius} 0 0 1 ${x.toFixed(2)} ${y.toFixed(2)}` : "" }),
    svg("text", { class: "score", x: cx, y: cy, "text-anchor": "middle", text: String(engagement.score) }));
  const parts = [
    ["Stickiness (40 %)", engagement.stickiness, "active today over active in 30 days"],
    ["Depth (25 %)", engagement.depth, "events per session over 10"],
    ["Reliability (20 %)", engagement.reliability, "1 − error rate"],
    ["Breadth (15 %)", engagement.breadth, "commands and features used over 5"],
  ];
  const rows = parts.map(([name, value, how]) => el("tr", { "data-part": name.split(" ")[0].toLowerCase(), "data-value": String(value) },
    el("th", { scope: "row", text: name }), el("td", { class: "num", text: percent.format(value) }), el("td", { class: "muted", text: how })));
  $("engagement").replaceChildren(gauge, el("table", { id: "engagement-parts" }, el("tbody", {}, ...rows)));
}

function follow() {
  if (view.source) view.source.close();
  $("live").replaceChildren();
  const source = new EventSource(`/dashboard/api/stream?${new URLSearchParams({ app: view.app })}`);
  view.source = source;
  source.onopen = () => { $("live-state").textContent = "(connected)"; };
  source.onerror = () => { $("live-state").textContent = "(reconnecting…)"; };
  source.addEventListener("event", (message) => {
    const event = JSON.parse(message.data);
    const when = el("time", { datetime: event.ts, text: event.ts.slice(11, 19) });
    const outcome = event.success === false ? ` failed${event.error_category ? ` (${event.error_category})` : ""}` : "";
    const what = `${event.type} ${event.name}${event.command ? ` ${event.command}` : ""}${outcome}`;
    const list = $("live");
    list.prepend(el("li", { "data-id": event.id }, when, what));
    while (list.children.length > 50) list.lastElementChild.remove();
  });
}

function setDays(days) {
  view.days = days;
  for (const button of $("period").querySelectorAll("button")) button.setAttribute("aria-pressed", String(Number(button.dataset.days) === days));
  load();
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("signin-error").textContent = "";
    try {
      showDashboard(await post("/dashboard/api/session", { key: $("key").value }));
      $("key").value = "";
    } catch (error) {
      $("signin-error").textContent = `Sign-in refused: ${error.message}`;
    }
  });
  $("cancel-add").addEventListener("click", () => { $("signin").hidden = true; });
  $("add-key").addEventListener("click", () => showSignIn(true));
  $("signout").addEventListener("click", async () => {
    await post("/dashboard/api/signout").catch(() => {});
    if (view.source) view.source.close();
    view.apps = [];
    showSignIn(false);
  });
  $("app").addEventListener("change", () => { view.app = $("app").value; load(); follow(); });
  for (const button of $("period").querySelectorAll("button")) button.addEventListener("click", () => setDays(Number(button.dataset.days)));
  start();
});
