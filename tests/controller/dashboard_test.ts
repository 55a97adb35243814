/**
 * The dashboard (shared/DESIGN.md section 16): its data, its login (bearer
 * header, `?token=` link, login form, session cookie, logout), and the page
 * itself rendered in headless Chromium. Also the agent's metrics port.
 */
import assert from "node:assert/strict";
import client from "prom-client";
import { serveAgentMetrics, serveHttp } from "../../controller/_http.ts";
import { embedJson, escapeHtml } from "../../controller/_dashboard.ts";
import {
  CREATE_LATENCY_BOUNDS,
  type DashboardData,
  histogramBars,
} from "../../controller/dashboard_data.ts";
import {
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
} from "../../registry/mod.ts";
import { type Cluster, startCluster, waitFor } from "../support/cluster.ts";
import { ignoreWithout } from "../support/real_parts.ts";

/** An image name no page may take for markup. */
const EVIL_IMAGE = `x"><img src=x onerror="document.title='owned'">`;

/** A cluster with two tenants' agents, a few sandboxes in each, and one failed create. */
async function withCluster(
  fn: (c: Cluster, url: string, tenantToken: string) => Promise<void>,
): Promise<void> {
  const cluster = await startCluster({
    agents: [
      { id: "agent-a", namespace: "team-a", capacity: 4, images: ["busybox", EVIL_IMAGE] },
      { id: "agent-b", namespace: "team-b", capacity: 3 },
    ],
  });
  const closers: (() => Promise<void>)[] = [];
  try {
    const c = cluster.client;
    for (const name of ["one", "two"]) {
      await c.createSandbox({
        name,
        namespace: "team-a",
        image: "busybox",
        command: ["sleep", "30"],
      });
    }
    await c.createSandbox({
      name: "web",
      namespace: "team-b",
      image: "busybox",
      command: ["sleep", "30"],
    });
    await c.createSandbox({
      name: "done",
      namespace: "team-b",
      image: "busybox",
      command: ["true"],
    });
    await assert.rejects(
      c.createSandbox({
        name: "Not_A_Label",
        namespace: "team-a",
        image: "busybox",
        command: ["true"],
      }),
    );
    // Let the short one end, and the controller hear of it.
    await waitFor(async () => {
      await cluster.heartbeatAll();
      return (await c.getSandbox({ name: "done", namespace: "team-b" })).phase === "Exited";
    });
    // A token for team-a only: no admin, so no dashboard.
    const tenantToken = (await c.createToken({ namespaces: ["team-a"] })).secret;
    const url = await dashboardUrl(cluster, closers);
    await fn(cluster, url, tenantToken);
  } finally {
    for (const close of closers) await close();
    await cluster.close();
  }
}

/** The dashboard's base URL: the controller's own metrics port. */
// deno-lint-ignore require-await
async function dashboardUrl(cluster: Cluster, _closers: (() => Promise<void>)[]): Promise<string> {
  return `http://${cluster.controller.metricsAddress}`;
}

function cookieFrom(res: Response): string {
  const set = res.headers.get("set-cookie") ?? "";
  assert.match(set, /^fsb_dashboard_\d+=[0-9a-f]{64}; /, set);
  assert.match(set, /HttpOnly/);
  assert.match(set, /SameSite=Strict/);
  assert.match(set, /Path=\/dashboard/);
  return set.slice(0, set.indexOf(";"));
}

Deno.test("histogramBars turns cumulative buckets into bars, failures apart", () => {
  const bucket = (success: string, le: string | number, value: number) => ({
    labels: { mode: "fast", success, le },
    value,
    metricName: "h_bucket",
  });
  const bars = histogramBars({
    name: "h",
    values: [
      bucket("true", 0.001, 1),
      bucket("true", 0.005, 3),
      bucket("true", "+Inf", 4),
      { labels: { mode: "fast", success: "true" }, value: 4, metricName: "h_count" },
      { labels: { mode: "fast", success: "true" }, value: 0.5, metricName: "h_sum" },
      bucket("false", 0.001, 2),
      bucket("false", 0.005, 2),
      bucket("false", "+Inf", 2),
      { labels: { mode: "fast", success: "false" }, value: 2, metricName: "h_count" },
      { labels: { mode: "fast", success: "false" }, value: 0.001, metricName: "h_sum" },
    ],
  });
  assert.deepEqual(bars.buckets, [
    { le: 0.001, ok: 1, failed: 2 },
    { le: 0.005, ok: 2, failed: 0 },
    { le: null, ok: 1, failed: 0 },
  ]);
  assert.equal(bars.count, 6);
  assert.equal(bars.failed, 2);
  assert.equal(bars.sum, 0.501);
  // Before any observation, the bounds are drawn empty.
  const empty = histogramBars({ name: "h", values: [] });
  assert.deepEqual(empty.buckets.map((b) => b.le), [...CREATE_LATENCY_BOUNDS, null]);
  assert.equal(empty.count, 0);
});

Deno.test("embedJson and escapeHtml keep data out of markup", () => {
  const value = { s: "</script><!-- & \u2028", t: EVIL_IMAGE };
  const text = embedJson(value);
  assert.doesNotMatch(text, /[<>&\u2028]/);
  assert.deepEqual(JSON.parse(text), value);
  assert.equal(
    escapeHtml(`<a href="x">'&'</a>`),
    "&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;",
  );
});

Deno.test("dashboard data: agents, sandboxes by namespace and phase, the create histogram", async () => {
  await withCluster(async (cluster, base, token) => {
    const none = await fetch(`${base}/dashboard/data`);
    assert.equal(none.status, 401, await none.text());
    const bogus = await fetch(`${base}/dashboard/data`, {
      headers: { authorization: "Bearer fsb_000000000000_nope" },
    });
    assert.equal(bogus.status, 401, await bogus.text());
    const tenant = await fetch(`${base}/dashboard/data`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(tenant.status, 403, await tenant.text());
    const badCookie = await fetch(`${base}/dashboard/data`, {
      headers: { cookie: `fsb_dashboard_1=${"0".repeat(64)}` },
    });
    assert.equal(badCookie.status, 401, await badCookie.text());

    const res = await fetch(`${base}/dashboard/data`, {
      headers: { authorization: `Bearer ${cluster.adminToken}` },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.equal(res.headers.get("cache-control"), "no-store");
    const d: DashboardData = await res.json();
    assert.deepEqual(d.agents.map((a) => [a.id, a.namespace, a.capacity, a.allocated, a.ready]), [
      ["agent-a", "team-a", 4, 2, true],
      ["agent-b", "team-b", 3, 2, true],
    ]);
    assert.ok(d.agents[0].images.includes("docker.io/library/busybox:latest"));
    assert.ok(d.agents[0].images.some((i) => i.includes(`<img src=x`)));
    assert.equal(d.agents[0].warmPool, null);
    assert.deepEqual(d.totals, { agents: 2, ready: 2, capacity: 7, allocated: 4 });
    assert.deepEqual(d.sandboxes, {
      total: 4,
      phases: ["Running", "Exited"],
      namespaces: [
        { namespace: "team-a", total: 2, phases: { Running: 2 } },
        { namespace: "team-b", total: 2, phases: { Running: 1, Exited: 1 } },
      ],
    });
    assert.deepEqual(d.warmPools, []);
    const lat = d.createLatency;
    assert.equal(lat.metric, "fastpath_create_sandbox_duration_seconds");
    assert.deepEqual(lat.buckets.map((b) => b.le), [...CREATE_LATENCY_BOUNDS, null]);
    assert.equal(lat.count, 5);
    assert.equal(lat.failed, 1);
    assert.equal(lat.buckets.reduce((n, b) => n + b.ok + b.failed, 0), 5);
    assert.ok(lat.sum > 0);
  });
});

Deno.test("dashboard login: ?token= link, login form, cookie session, logout", async () => {
  await withCluster(async (cluster, base, token) => {
    // `/` leads to the dashboard; without a session that is the login form.
    const root = await fetch(`${base}/`, { redirect: "manual" });
    await root.body?.cancel();
    assert.equal(root.status, 303);
    assert.equal(root.headers.get("location"), "/dashboard");
    const form = await fetch(`${base}/dashboard`);
    assert.equal(form.status, 401);
    const formHtml = await form.text();
    assert.match(formHtml, /<form method="post" action="\/dashboard\/login">/);
    assert.match(form.headers.get("content-security-policy") ?? "", /frame-ancestors 'none'/);

    // A tenant's token opens nothing, and sets no cookie.
    const denied = await fetch(`${base}/dashboard?token=${encodeURIComponent(token)}`, {
      redirect: "manual",
    });
    assert.equal(denied.status, 403);
    assert.equal(denied.headers.get("set-cookie"), null);
    assert.match(await denied.text(), /Only an admin token may view the dashboard/);

    // The admin's link: a session cookie and a redirect to the bare page, token gone from the URL.
    const link = await fetch(`${base}/dashboard?token=${encodeURIComponent(cluster.adminToken)}`, {
      redirect: "manual",
    });
    await link.body?.cancel();
    assert.equal(link.status, 303);
    assert.equal(link.headers.get("location"), "/dashboard");
    assert.equal(link.headers.get("referrer-policy"), "no-referrer");
    const cookie = cookieFrom(link);
    const page = await fetch(`${base}/dashboard`, { headers: { cookie } });
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.match(html, /<title>fsb dashboard<\/title>/);
    assert.ok(html.includes(`"id":"agent-a"`));
    assert.ok(!html.includes("<img src=x"), "data must not become markup");
    const data = await fetch(`${base}/dashboard/data`, { headers: { cookie } });
    assert.equal(data.status, 200);
    assert.equal((await data.json() as DashboardData).agents.length, 2);

    // The login form: same-origin posts only.
    const body = new URLSearchParams({ token: cluster.adminToken });
    const host = new URL(base).host;
    const cross = await fetch(`${base}/dashboard/login`, {
      method: "POST",
      body,
      headers: { origin: "http://evil.example" },
    });
    assert.equal(cross.status, 403, await cross.text());
    const bad = await fetch(`${base}/dashboard/login`, {
      method: "POST",
      body: new URLSearchParams({ token: "nope" }),
      headers: { origin: `http://${host}` },
    });
    assert.equal(bad.status, 401);
    assert.match(await bad.text(), /unknown, expired or revoked/);
    const posted = await fetch(`${base}/dashboard/login`, {
      method: "POST",
      body,
      headers: { origin: `http://${host}` },
      redirect: "manual",
    });
    await posted.body?.cancel();
    assert.equal(posted.status, 303);
    const second = cookieFrom(posted);
    assert.notEqual(second, cookie);
    const big = await fetch(`${base}/dashboard/login`, {
      method: "POST",
      body: "token=" + "a".repeat(10_000),
    });
    assert.equal(big.status, 413, await big.text());

    // Logout ends that session only.
    const out = await fetch(`${base}/dashboard/logout`, {
      method: "POST",
      headers: { cookie: second, origin: `http://${host}` },
      redirect: "manual",
    });
    await out.body?.cancel();
    assert.equal(out.status, 303);
    assert.match(out.headers.get("set-cookie") ?? "", /Max-Age=0/);
    const after = await fetch(`${base}/dashboard/data`, { headers: { cookie: second } });
    assert.equal(after.status, 401, await after.text());
    const still = await fetch(`${base}/dashboard/data`, { headers: { cookie } });
    assert.equal(still.status, 200);
    await still.body?.cancel();
  });
});

Deno.test("a dashboard session ends as soon as its token is no longer admitted", async () => {
  let revoked = false;
  const http = await serveHttp("127.0.0.1:0", {
    registry: new client.Registry(),
    dashboard: {
      admit: (headers) => {
        if (headers.authorization !== "Bearer admin" || revoked) {
          throw new UnauthenticatedError("The token is unknown, expired or revoked");
        }
      },
      data: () => Promise.resolve({ ok: true }),
    },
  });
  try {
    const base = `http://${http.address}`;
    const link = await fetch(`${base}/dashboard?token=admin`, { redirect: "manual" });
    await link.body?.cancel();
    const cookie = cookieFrom(link);
    const before = await fetch(`${base}/dashboard/data`, { headers: { cookie } });
    assert.deepEqual(await before.json(), { ok: true });
    revoked = true;
    const after = await fetch(`${base}/dashboard/data`, { headers: { cookie } });
    assert.equal(after.status, 401, await after.text());
    // Other methods and paths.
    const put = await fetch(`${base}/dashboard/data`, { method: "PUT", headers: { cookie } });
    assert.equal(put.status, 405, await put.text());
    const other = await fetch(`${base}/dashboard/nothing`);
    assert.equal(other.status, 404, await other.text());
  } finally {
    await http.close();
  }
});

/** Runs headless Chromium once with `args`; returns its stdout. */
async function chromium(profile: string, args: string[]): Promise<string> {
  const out = await new Deno.Command("chromium", {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
      `--user-data-dir=${profile}`,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `chromium failed (${out.code}):\n${stderr}`);
  return new TextDecoder().decode(out.stdout);
}

/** Width and height from a PNG's IHDR chunk. */
function pngSize(bytes: Uint8Array): { width: number; height: number } {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  assert.deepEqual([...bytes.subarray(0, 8)], signature, "not a PNG");
  assert.equal(new TextDecoder().decode(bytes.subarray(12, 16)), "IHDR");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

Deno.test({
  name: "the dashboard renders in headless Chromium, live, with data as text",
  ignore: ignoreWithout("chromium"),
  async fn() {
    await withCluster(async (cluster, base) => {
      const dir = await Deno.makeTempDir({ prefix: "fsb-dashboard-" });
      try {
        const link = `${base}/dashboard?token=${encodeURIComponent(cluster.adminToken)}`;
        // Virtual time lets the page's 2 s poll run (twice) before the DOM is dumped.
        const dom = await chromium(`${dir}/profile-dom`, [
          "--virtual-time-budget=5000",
          "--dump-dom",
          link,
        ]);
        for (const id of ["agent-a", "agent-b"]) assert.ok(dom.includes(`data-agent="${id}"`), id);
        for (const ns of ["team-a", "team-b"]) {
          assert.ok(dom.includes(`data-namespace="${ns}"`), ns);
        }
        const bars = [...dom.matchAll(/<div class="bar" data-le="([^"]+)" data-count="(\d+)"/g)];
        assert.deepEqual(
          bars.map((m) => m[1]),
          [...CREATE_LATENCY_BOUNDS.map(String), "+Inf"],
        );
        assert.equal(bars.reduce((n, m) => n + Number(m[2]), 0), 5);
        const polls = /<body data-polls="(\d+)"/.exec(dom);
        assert.ok(polls !== null && Number(polls[1]) >= 1, "the page polled /dashboard/data");
        assert.match(dom, /<span id="status" class="status">live<\/span>/);
        // The hostile image name is text in the page, not an element, and ran nothing.
        assert.ok(dom.includes(`x"&gt;&lt;img src=x onerror="document.title='owned'"&gt;`));
        assert.doesNotMatch(dom, /<img/);
        assert.match(dom, /<title>fsb dashboard<\/title>/);
        assert.match(dom, /Warm pools<\/h2>\s*<p id="warm-pools" class="empty">none<\/p>/);

        const shot = `${dir}/dashboard.png`;
        await chromium(`${dir}/profile-shot`, [
          "--virtual-time-budget=3000",
          "--hide-scrollbars",
          "--window-size=1280,900",
          `--screenshot=${shot}`,
          link,
        ]);
        const png = await Deno.readFile(shot);
        assert.deepEqual(pngSize(png), { width: 1280, height: 900 });
        assert.ok(png.byteLength > 30_000, `a blank page is small; got ${png.byteLength} bytes`);
        const keep = Deno.env.get("FSB_DASHBOARD_SCREENSHOT");
        if (keep) await Deno.copyFile(shot, keep);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});

Deno.test("the agent's metrics port: its registry, health, and pprof behind its check", async () => {
  const registry = new client.Registry();
  const stage = new client.Histogram({
    name: "fsb_agent_create_stage_duration_seconds",
    help: "Agent-side sandbox create latency by stage.",
    labelNames: ["stage"] as const,
    buckets: [0.001, 0.01],
    registers: [registry],
  });
  stage.observe({ stage: "runtime_create" }, 0.004);
  let registered = true;
  const http = await serveAgentMetrics("127.0.0.1:0", {
    registry,
    admit: (headers) => {
      if (!registered) throw new UnavailableError("Agent has not registered with a controller yet");
      if (headers.authorization === "") throw new UnauthenticatedError("no credential");
      if (headers.authorization !== "Bearer the-credential") {
        throw new PermissionDeniedError("not the controller");
      }
    },
    // deno-lint-ignore require-yield
    profile: async function* () {
      throw new Error("unused");
    },
  });
  try {
    const base = `http://${http.address}`;
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(
      metrics,
      /fsb_agent_create_stage_duration_seconds_bucket\{le="0.01",stage="runtime_create"\} 1/,
    );
    assert.equal(await (await fetch(`${base}/healthz`)).text(), "ok\n");
    const anon = await fetch(`${base}/debug/pprof/heap`);
    assert.equal(anon.status, 401, await anon.text());
    const other = await fetch(`${base}/debug/pprof/heap`, {
      headers: { authorization: "Bearer x" },
    });
    assert.equal(other.status, 403, await other.text());
    const badSeconds = await fetch(`${base}/debug/pprof/profile?seconds=0`, {
      headers: { authorization: "Bearer the-credential" },
    });
    assert.equal(badSeconds.status, 400, await badSeconds.text());
    // No dashboard on an agent.
    const dash = await fetch(`${base}/dashboard`);
    assert.equal(dash.status, 404, await dash.text());
    // Before the agent has a credential at all: unavailable, not a server fault.
    registered = false;
    const early = await fetch(`${base}/debug/pprof/heap`, {
      headers: { authorization: "Bearer the-credential" },
    });
    assert.equal(early.status, 503, await early.text());
  } finally {
    await http.close();
  }
});
