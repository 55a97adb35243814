/**
 * The dashboard's two pages (shared/DESIGN.md section 16): the dashboard
 * itself and the login form. Each is one HTML string with inline CSS and a
 * small inline script; no framework, no build step.
 *
 * The dashboard page carries its first data embedded (a JSON block, so it
 * draws at once, with no request of its own), then polls `/dashboard/data`
 * every 2 s. Everything that comes from data is put into the page as text
 * (`append`, `textContent`) or as attribute values, never as HTML; the only
 * data the server writes into the HTML is the JSON block, with `<`, `>` and
 * `&` escaped, and the login page's message, HTML-escaped.
 *
 * @module
 */

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * JSON that can sit inside a `<script type="application/json">` block:
 * no `<` can open `</script>` or `<!--`, and `JSON.parse` of the block's
 * text gives back `value`.
 */
export function embedJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

/** A fresh nonce for the page's inline style and script. */
export function newNonce(): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
}

/**
 * The Content-Security-Policy both pages are served with: only the inline
 * style and script carrying `nonce` run, fetches go to this origin only, and
 * no other site may frame the page.
 */
export function pageSecurityPolicy(nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src 'nonce-${nonce}'`,
    "connect-src 'self'",
    "img-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

const STYLE = `
:root { --fg: #1d2433; --muted: #5f6b7f; --line: #e2e6ee; --bg: #f5f7fb; --card: #fff;
  --ok: #1f9d55; --bad: #d64545; --bar: #3b6fd8; --warn: #c98a16; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 14px; padding: 12px 24px; background: #1d2433;
  color: #fff; }
header h1 { margin: 0; font-size: 18px; letter-spacing: .5px; }
header .sub { color: #aeb8cc; }
header .spacer { flex: 1; }
header form { margin: 0; }
header button { background: transparent; color: #fff; border: 1px solid #5f6b7f; border-radius: 4px;
  padding: 4px 10px; cursor: pointer; }
.status { display: inline-flex; align-items: center; gap: 6px; color: #dfe5f0; }
.status::before { content: ""; width: 9px; height: 9px; border-radius: 50%; background: var(--ok); }
.status.bad::before { background: var(--bad); }
#updated { color: #aeb8cc; font-variant-numeric: tabular-nums; }
main { padding: 18px 24px; display: grid; gap: 18px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 16px; min-width: 0; }
h2 { margin: 0 0 10px; font-size: 15px; }
.row { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 18px; }
.cards { display: grid; grid-template-columns: repeat(5, minmax(0, 1fr)); gap: 12px; padding: 0;
  background: none; border: 0; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 10px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .4px; }
.card .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .detail { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.nowrap { white-space: nowrap; }
tfoot td { font-weight: 600; border-bottom: 0; }
.empty { color: var(--muted); font-style: italic; }
.pill { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; }
.pill.yes { background: #ddf4e6; color: var(--ok); }
.pill.no { background: #fbe3e3; color: var(--bad); }
.images { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px;
  overflow-wrap: anywhere; }
.meter { display: inline-block; width: 70px; height: 8px; background: var(--line);
  border-radius: 4px; margin-left: 8px; vertical-align: middle; overflow: hidden; }
.meter > span { display: block; height: 100%; background: var(--bar); }
.meter > span.full { background: var(--warn); }
.hist { display: flex; align-items: flex-end; gap: 6px; height: 220px;
  border-bottom: 1px solid var(--muted); padding-top: 18px; }
.col { flex: 1; display: flex; flex-direction: column; justify-content: flex-end;
  align-items: stretch; height: 100%; min-width: 0; }
.col .count { text-align: center; font-size: 11px; color: var(--muted);
  font-variant-numeric: tabular-nums; }
.bar { display: flex; flex-direction: column-reverse; border-radius: 3px 3px 0 0; overflow: hidden; }
.bar .ok { background: var(--bar); }
.bar .failed { background: var(--bad); }
.axis { display: flex; gap: 6px; }
.axis span { flex: 1; text-align: center; font-size: 11px; color: var(--muted); min-width: 0;
  white-space: nowrap; }
.legend { margin-top: 8px; color: var(--muted); font-size: 12px; display: flex; gap: 14px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px;
  vertical-align: -1px; border-radius: 2px; background: var(--bar); }
.legend i.failed { background: var(--bad); }
.metric { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px;
  color: var(--muted); }
`;

const SCRIPT = `
"use strict";
(() => {
  const PHASE_CLASS = { Running: "yes", Failed: "no", Lost: "no" };
  const $ = (id) => document.getElementById(id);
  // Builds an element; children are appended as nodes or as text, never parsed as HTML.
  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else e.setAttribute(k, String(v));
    }
    e.append(...children.map((c) => (c instanceof Node ? c : String(c))));
    return e;
  };
  const seconds = (s) => s >= 1 ? s + " s" : Math.round(s * 1000 * 100) / 100 + " ms";
  const age = (ms) => ms < 1000 ? "just now" : ms < 120000 ? Math.round(ms / 1000) + " s ago"
    : ms < 7200000 ? Math.round(ms / 60000) + " min ago" : Math.round(ms / 3600000) + " h ago";
  // The upper bound of the bucket holding quantile q, as text.
  const quantile = (lat, q) => {
    if (lat.count === 0) return "-";
    const want = q * lat.count;
    let seen = 0;
    for (let i = 0; i < lat.buckets.length; i++) {
      const b = lat.buckets[i];
      seen += b.ok + b.failed;
      if (seen >= want) {
        return b.le === null ? "> " + seconds(lat.buckets[i - 1]?.le ?? 0) : "\\u2264 " + seconds(b.le);
      }
    }
    return "-";
  };
  const card = (label, value, detail) =>
    el("div", { class: "card" }, el("div", { class: "label" }, label),
      el("div", { class: "value" }, value), el("div", { class: "detail" }, detail));

  function renderCards(d) {
    const lat = d.createLatency;
    const mean = lat.count === 0 ? "-" : seconds(Math.round(lat.sum / lat.count * 1e5) / 1e5);
    $("cards").replaceChildren(
      card("Agents ready", d.totals.ready + " / " + d.totals.agents, "registered agents"),
      card("Slots in use", d.totals.allocated + " / " + d.totals.capacity, "allocated / capacity"),
      card("Sandboxes", d.sandboxes.total, d.sandboxes.namespaces.length + " namespaces"),
      card("Creates", lat.count, lat.failed + " failed"),
      card("Create latency", "p50 " + quantile(lat, 0.5), "p99 " + quantile(lat, 0.99) + ", mean " + mean),
    );
  }

  function renderAgents(d) {
    const rows = d.agents.map((a) => {
      const frac = a.capacity === 0 ? 0 : a.allocated / a.capacity;
      const fill = el("span", frac >= 1 ? { class: "full" } : {});
      fill.style.width = Math.min(100, Math.round(frac * 100)) + "%";
      return el("tr", { "data-agent": a.id },
        el("td", {}, el("strong", {}, a.id), el("div", { class: "metric" }, a.address)),
        el("td", { class: "nowrap" }, a.pool),
        el("td", { class: "nowrap" }, a.namespace),
        el("td", {}, el("span", { class: "pill " + (a.ready ? "yes" : "no") }, a.ready ? "ready" : "not ready")),
        el("td", { class: "num nowrap" }, a.allocated + " / " + a.capacity, el("span", { class: "meter" }, fill)),
        el("td", { class: "images" }, a.images.length === 0 ? "-" : a.images.join(", ")),
        el("td", { class: a.warmPool === null ? "empty" : "" }, a.warmPool === null ? "none" : String(a.warmPool)),
        el("td", {}, age(a.heartbeatAgeMs)),
      );
    });
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 8, class: "empty" }, "no agents registered")));
    $("agents").replaceChildren(...rows);
  }

  function renderSandboxes(d) {
    const s = d.sandboxes;
    const head = el("tr", {}, el("th", {}, "Namespace"),
      ...s.phases.map((p) => el("th", { class: "num" }, p)), el("th", { class: "num" }, "Total"));
    const rows = s.namespaces.map((n) => el("tr", { "data-namespace": n.namespace },
      el("td", {}, n.namespace),
      ...s.phases.map((p) => el("td", { class: "num" }, n.phases[p] ?? 0)),
      el("td", { class: "num" }, n.total)));
    const totals = s.phases.map((p) =>
      s.namespaces.reduce((k, n) => k + (n.phases[p] ?? 0), 0));
    const table = $("sandboxes");
    if (rows.length === 0) {
      table.replaceChildren(el("tbody", {}, el("tr", {}, el("td", { class: "empty" }, "no sandboxes"))));
      return;
    }
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows),
      el("tfoot", {}, el("tr", {}, el("td", {}, "All"),
        ...totals.map((k) => el("td", { class: "num" }, k)), el("td", { class: "num" }, s.total))));
  }

  function renderHistogram(d) {
    const lat = d.createLatency;
    $("metric").textContent = lat.metric;
    const max = Math.max(1, ...lat.buckets.map((b) => b.ok + b.failed));
    const cols = [], labels = [];
    lat.buckets.forEach((b, i) => {
      const n = b.ok + b.failed;
      const label = b.le === null ? "> " + seconds(lat.buckets[i - 1]?.le ?? 0) : "\\u2264 " + seconds(b.le);
      const bar = el("div", { class: "bar", "data-le": b.le === null ? "+Inf" : b.le, "data-count": n,
        title: label + ": " + b.ok + " ok, " + b.failed + " failed" });
      bar.style.height = (n === 0 ? 0 : Math.max(2, (n / max) * 100)) + "%";
      for (const [cls, k] of [["ok", b.ok], ["failed", b.failed]]) {
        if (k === 0) continue;
        const seg = el("div", { class: cls });
        seg.style.flexGrow = String(k);
        seg.style.minHeight = "1px";
        bar.append(seg);
      }
      cols.push(el("div", { class: "col" }, el("div", { class: "count" }, n), bar));
      labels.push(el("span", {}, label.replace(/ (?=m?s$)/, "")));
    });
    $("histogram").replaceChildren(...cols);
    $("axis").replaceChildren(...labels);
  }

  function renderWarmPools(d) {
    $("warm-pools").textContent = d.warmPools.length === 0 ? "none" : d.warmPools.length + " pools";
  }

  function render(d) {
    renderCards(d);
    renderAgents(d);
    renderSandboxes(d);
    renderHistogram(d);
    renderWarmPools(d);
    $("updated").textContent = "as of " + new Date(d.time).toLocaleTimeString();
  }

  function status(text, ok) {
    const s = $("status");
    s.textContent = text;
    s.className = ok ? "status" : "status bad";
  }

  let polls = 0;
  async function poll() {
    if (!document.hidden) {
      try {
        const res = await fetch("/dashboard/data", { cache: "no-store", credentials: "same-origin" });
        if (res.status === 401 || res.status === 403) {
          status("signed out: reload to log in", false);
        } else if (!res.ok) {
          status("error: HTTP " + res.status, false);
        } else {
          render(await res.json());
          document.body.dataset.polls = String(++polls);
          status("live", true);
        }
      } catch (err) {
        status("unreachable: " + err.message, false);
      }
    }
    setTimeout(poll, 2000);
  }

  render(JSON.parse($("fsb-data").textContent));
  setTimeout(poll, 2000);
})();
`;

/** The dashboard, drawn at once from `data` and then kept live by polling. */
export function dashboardPage(opts: { nonce: string; data: unknown }): string {
  const n = escapeHtml(opts.nonce);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>fsb dashboard</title>
<style nonce="${n}">${STYLE}</style>
</head>
<body data-polls="0">
<header>
  <h1>fsb</h1><span class="sub">dashboard</span>
  <span id="status" class="status">live</span>
  <span id="updated"></span>
  <span class="spacer"></span>
  <form method="post" action="/dashboard/logout"><button type="submit">Log out</button></form>
</header>
<main>
  <section id="cards" class="cards"></section>
  <section>
    <h2>Agents</h2>
    <table>
      <thead><tr><th>Agent</th><th>Pool</th><th>Namespace</th><th>Ready</th>
        <th class="num">Slots used</th><th>Images</th><th>Warm pool</th><th>Heartbeat</th></tr></thead>
      <tbody id="agents"></tbody>
    </table>
  </section>
  <div class="row">
    <section>
      <h2>Sandboxes by namespace and phase</h2>
      <table id="sandboxes"></table>
    </section>
    <section>
      <h2>Create latency</h2>
      <div id="histogram" class="hist"></div>
      <div id="axis" class="axis"></div>
      <div class="legend"><span><i></i>succeeded</span><span><i class="failed"></i>failed</span>
        <span id="metric" class="metric"></span></div>
    </section>
  </div>
  <section>
    <h2>Warm pools</h2>
    <p id="warm-pools" class="empty">none</p>
  </section>
</main>
<script type="application/json" id="fsb-data">${embedJson(opts.data)}</script>
<script nonce="${n}">${SCRIPT}</script>
</body>
</html>
`;
}

/** The login form: the admin token goes in the body of a POST, never in a URL. */
export function loginPage(opts: { nonce: string; message?: string }): string {
  const n = escapeHtml(opts.nonce);
  const message = opts.message === undefined
    ? ""
    : `<p class="error" role="alert">${escapeHtml(opts.message)}</p>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>fsb dashboard: log in</title>
<style nonce="${n}">
body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: #f5f7fb;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2433; }
form { background: #fff; border: 1px solid #e2e6ee; border-radius: 8px; padding: 24px;
  width: 380px; display: grid; gap: 10px; }
h1 { margin: 0 0 4px; font-size: 18px; }
input { font: inherit; padding: 6px 8px; border: 1px solid #c5ccd8; border-radius: 4px; }
button { font: inherit; padding: 6px 8px; background: #3b6fd8; color: #fff; border: 0;
  border-radius: 4px; cursor: pointer; }
.hint { color: #5f6b7f; font-size: 12px; margin: 0; }
.error { color: #d64545; margin: 0; }
code { font-size: 12px; }
</style>
</head>
<body>
<form method="post" action="/dashboard/login">
  <h1>fsb dashboard</h1>
  ${message}
  <label for="token">Admin token</label>
  <input id="token" name="token" type="password" autocomplete="off" required autofocus>
  <button type="submit">Log in</button>
  <p class="hint">The controller writes it to <code>admin-token</code> in its data directory
  (<code>fsb up</code>: <code>~/.fsb/controller/admin-token</code>).</p>
</form>
</body>
</html>
`;
}
