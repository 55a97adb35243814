// The flame graph fsb draws from a V8 .cpuprofile: frames merged by function
// and location along each stack, widths proportional to samples, hover titles,
// escaping, and a document that is well-formed XML (checked by cli/_xml.ts, a
// strict reader: Deno has no DOMParser).
import assert from "node:assert/strict";
import {
  buildFlameTree,
  type CpuProfile,
  escapeXml,
  fitLabel,
  flameGraphSvg,
  type FlameNode,
  parseCpuProfile,
} from "../../cli/flamegraph.ts";
import { findElements, parseXml, textOf, type XmlElement } from "../../cli/_xml.ts";
import { ignoreWithout } from "../support/real_parts.ts";

const A = "file:///app/a.ts";
const B = "file:///app/b.ts";
const ODD_NAME = `<lambda> & "q" 'x'`;
const ODD_URL = "file:///app/x&y<z>.ts";
const LONG = "aVeryLongFunctionNameThatWillNotFit";

interface RawNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
  hitCount?: number;
}

function frame(functionName: string, url = "", lineNumber = -1, columnNumber = -1) {
  return { functionName, url, lineNumber, columnNumber, scriptId: "0" };
}

// (root) -> (program), (idle), (anonymous) in ext:core, main -> work (twice,
// as two V8 nodes: merged), <lambda>; work -> LONG (under both work nodes: merged).
const NODES: RawNode[] = [
  { id: 1, callFrame: frame("(root)"), children: [2, 3, 4, 9] },
  { id: 2, callFrame: frame("(program)") },
  { id: 3, callFrame: frame("(idle)") },
  { id: 4, callFrame: frame("main", "file:///app/main.ts", 0, 0), children: [5, 6, 7] },
  { id: 5, callFrame: frame("work", A, 10, 4), children: [8] },
  { id: 6, callFrame: frame("work", A, 10, 4), children: [10] },
  { id: 7, callFrame: frame(ODD_NAME, ODD_URL, 2, 0) },
  { id: 8, callFrame: frame(LONG, B, 0, 0) },
  { id: 9, callFrame: frame("", "ext:core/01_core.js", 99, 9) },
  { id: 10, callFrame: frame(LONG, B, 0, 0) },
];

/** Self samples per node id. */
const HITS: Record<number, number> = { 2: 2, 3: 5, 4: 1, 5: 3, 6: 2, 7: 2, 8: 4, 9: 4, 10: 6 };

function samplesOf(hits: Record<number, number>): number[] {
  // Interleaved, as a real profile's are: order must not matter.
  const left = { ...hits };
  const out: number[] = [];
  for (let more = true; more;) {
    more = false;
    for (const id of Object.keys(left).map(Number)) {
      if (left[id] > 0) {
        out.push(id);
        left[id]--;
        more = true;
      }
    }
  }
  return out;
}

function profileJson(nodes: RawNode[] = NODES, hits = HITS): string {
  const samples = samplesOf(hits);
  return JSON.stringify({
    nodes,
    startTime: 1_000_000,
    endTime: 1_000_000 + samples.length * 1000,
    samples,
    timeDeltas: samples.map(() => 1000),
  });
}

const PROFILE: CpuProfile = parseCpuProfile(profileJson());

/** name, location, total, self and children only. */
function shape(node: FlameNode): unknown {
  return {
    name: node.name,
    location: node.location,
    total: node.total,
    self: node.self,
    children: node.children.map(shape),
  };
}

const leaf = (name: string, location: string, n: number) => ({
  name,
  location,
  total: n,
  self: n,
  children: [],
});

Deno.test("buildFlameTree() merges frames by function and location along each stack", () => {
  assert.deepEqual(shape(buildFlameTree(PROFILE)), {
    name: "all",
    location: "",
    total: 24,
    self: 0,
    // Sorted by name, by UTF-16 code unit: "(" < "<" < "m" < "w".
    children: [
      leaf("(anonymous)", "ext:core/01_core.js:100:10", 4),
      leaf("(program)", "", 2),
      {
        name: "main",
        location: "file:///app/main.ts:1:1",
        total: 18,
        self: 1,
        children: [
          leaf(ODD_NAME, `${ODD_URL}:3:1`, 2),
          {
            name: "work",
            location: `${A}:11:5`,
            total: 15,
            self: 5,
            children: [leaf(LONG, `${B}:1:1`, 10)],
          },
        ],
      },
    ],
  });
});

Deno.test("buildFlameTree() keeps (idle) only when asked, and reads hitCount without samples", () => {
  const idle = buildFlameTree(PROFILE, { idle: true });
  assert.equal(idle.total, 29);
  assert.deepEqual(idle.children.map((c) => c.name), [
    "(anonymous)",
    "(idle)",
    "(program)",
    "main",
  ]);
  const counted = NODES.map((n) => ({ ...n, hitCount: HITS[n.id] ?? 0 }));
  const noSamples = parseCpuProfile(
    JSON.stringify({ nodes: counted, startTime: 0, endTime: 29_000 }),
  );
  assert.deepEqual(shape(buildFlameTree(noSamples)), shape(buildFlameTree(PROFILE)));
});

Deno.test("buildFlameTree() does not care in which order nodes and children come", () => {
  const shuffled = NODES.slice().reverse().map((n) => ({
    ...n,
    children: n.children?.slice().reverse(),
  }));
  // The root is found as the node nobody calls, not as the first one.
  const other = parseCpuProfile(profileJson(shuffled));
  assert.deepEqual(shape(buildFlameTree(other)), shape(buildFlameTree(PROFILE)));
  assert.equal(flameGraphSvg(other), flameGraphSvg(PROFILE));
});

Deno.test("parseCpuProfile() says what is wrong with what is not a profile", () => {
  const cases: [string, RegExp][] = [
    ["{", /^not JSON: /],
    ["[]", /^not a V8 CPU profile: expected a JSON object$/],
    ["{}", /^not a V8 CPU profile: no "nodes"$/],
    ['{"nodes":[{"id":1}],"startTime":0,"endTime":1}', /a node without "id" or "callFrame"/],
    [`{"nodes":${JSON.stringify(NODES)}}`, /no "startTime" or "endTime"/],
    [
      `{"nodes":${JSON.stringify(NODES)},"startTime":0,"endTime":1,"samples":[1,77]}`,
      /a sample names node 77, which is not in "nodes"/,
    ],
    [
      `{"nodes":${JSON.stringify(NODES)},"startTime":0,"endTime":1,"samples":"1"}`,
      /"samples" is not a list of numbers/,
    ],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseCpuProfile(text), { message }, text);
  }
});

// --- the SVG -------------------------------------------------------------------------

interface Frame {
  readonly name: string;
  readonly title: string;
  readonly x: number;
  readonly s: number;
  readonly d: number;
  readonly rect: Readonly<Record<string, string>>;
  readonly label: string | undefined;
}

function framesOf(svg: XmlElement): Frame[] {
  return findElements(svg, (e) => e.name === "g" && e.attributes.class === "f").map((g) => {
    const child = (name: string) => findElements(g, (e) => e.name === name)[0];
    const text = child("text");
    return {
      name: g.attributes["data-n"],
      title: textOf(child("title")),
      x: Number(g.attributes["data-x"]),
      s: Number(g.attributes["data-s"]),
      d: Number(g.attributes["data-d"]),
      rect: child("rect").attributes,
      label: text === undefined ? undefined : textOf(text),
    };
  });
}

Deno.test("flameGraphSvg() is well-formed XML with one frame per merged frame, root at the bottom", () => {
  const svg = flameGraphSvg(PROFILE, { title: "Flame graph: test" });
  assert.ok(svg.startsWith('<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<svg '));
  const doc = parseXml(svg);
  assert.equal(doc.name, "svg");
  assert.equal(doc.attributes.xmlns, "http://www.w3.org/2000/svg");
  assert.equal(doc.attributes["data-total"], "24");
  const frames = framesOf(doc);
  // Depth first, siblings sorted: the document order is the tree's.
  assert.deepEqual(frames.map((f) => [f.name, f.d, f.x, f.s]), [
    ["all", 0, 0, 24],
    ["(anonymous)", 1, 0, 4],
    ["(program)", 1, 4, 2],
    ["main", 1, 6, 18],
    [ODD_NAME, 2, 6, 2],
    ["work", 2, 8, 15],
    [LONG, 3, 8, 10],
  ]);
  const height = Number(doc.attributes.height);
  for (const f of frames) {
    // The root's row is the lowest; each level up is 16 px higher.
    assert.equal(Number(f.rect.y), height - 30 - (f.d + 1) * 16, f.name);
  }
  const heading = findElements(doc, (e) => e.attributes.id === "heading")[0];
  assert.equal(textOf(heading), "Flame graph: test");
  const subtitle = findElements(doc, (e) => e.attributes.id === "subtitle")[0];
  assert.equal(textOf(subtitle), "24 samples over 0.03 s; 5 (idle) samples left out");
});

Deno.test("flameGraphSvg() makes widths proportional to samples, and places frames by them", () => {
  for (const width of [1200, 640]) {
    const frames = framesOf(parseXml(flameGraphSvg(PROFILE, { width })));
    const perSample = (width - 20) / 24;
    for (const f of frames) {
      assert.ok(Math.abs(Number(f.rect.width) - f.s * perSample) <= 0.005, `${f.name} ${width}`);
      assert.ok(Math.abs(Number(f.rect.x) - (10 + f.x * perSample)) <= 0.005, `${f.name} ${width}`);
    }
    // A child never sticks out of its parent.
    const byName = new Map(frames.map((f) => [f.name, f]));
    const work = byName.get("work")!;
    const inner = byName.get(LONG)!;
    assert.ok(Number(inner.rect.x) >= Number(work.rect.x));
    assert.ok(
      Number(inner.rect.x) + Number(inner.rect.width) <=
        Number(work.rect.x) + Number(work.rect.width) + 0.01,
    );
  }
  const frames = framesOf(parseXml(flameGraphSvg(PROFILE)));
  assert.deepEqual(frames.map((f) => f.rect.width), [
    "1180.00",
    "196.67",
    "98.33",
    "885.00",
    "98.33",
    "737.50",
    "491.67",
  ]);
});

Deno.test("flameGraphSvg() titles each frame with function, location, samples and percent", () => {
  const frames = framesOf(parseXml(flameGraphSvg(PROFILE)));
  assert.deepEqual(frames.map((f) => f.title), [
    "all: 24 samples, 100.00%",
    "(anonymous) (ext:core/01_core.js:100:10): 4 samples, 16.67%",
    "(program): 2 samples, 8.33%",
    "main (file:///app/main.ts:1:1): 18 samples, 75.00%",
    `${ODD_NAME} (${ODD_URL}:3:1): 2 samples, 8.33%`,
    `work (${A}:11:5): 15 samples, 62.50%`,
    `${LONG} (${B}:1:1): 10 samples, 41.67%`,
  ]);
  const one = parseCpuProfile(profileJson(NODES, { 4: 1 }));
  assert.deepEqual(framesOf(parseXml(flameGraphSvg(one))).map((f) => f.title), [
    "all: 1 sample, 100.00%",
    "main (file:///app/main.ts:1:1): 1 sample, 100.00%",
  ]);
});

Deno.test("flameGraphSvg() clips labels to their frame, and leaves narrow frames unlabelled", () => {
  const wide = framesOf(parseXml(flameGraphSvg(PROFILE)));
  assert.deepEqual(wide.map((f) => f.label), [
    "all",
    "(anonymous)",
    "(program)",
    "main",
    "<lambda> & ..", // 98.33 px: 13 characters
    "work",
    LONG,
  ]);
  // 280 px for 24 samples: 11.67 px each.
  const narrow = framesOf(parseXml(flameGraphSvg(PROFILE, { width: 300 })));
  assert.deepEqual(narrow.map((f) => f.label), [
    "all",
    "(an..", // 46.67 px: 5 characters fit, the last two of them ".."
    undefined, // 23.33 px: not even 3 characters
    "main",
    undefined,
    "work",
    "aVeryLongFunc..",
  ]);
  assert.equal(fitLabel("abcdef", 6 + 7 * 6), "abcdef");
  assert.equal(fitLabel("abcdef", 6 + 7 * 5), "abc..");
  assert.equal(fitLabel("abcdef", 6 + 7 * 3), "a..");
  assert.equal(fitLabel("abcdef", 6 + 7 * 3 - 0.01), "");
  assert.equal(fitLabel("😀😀😀😀", 6 + 7 * 3), "😀.."); // by character, never half a pair
});

Deno.test("flameGraphSvg() escapes names and locations, and replaces what XML cannot carry", () => {
  const nodes: RawNode[] = [
    ...NODES.slice(0, 9),
    { id: 10, callFrame: frame("bad\u0001name\ud800", B, 0, 0) },
  ];
  const svg = flameGraphSvg(parseCpuProfile(profileJson(nodes)));
  assert.ok(svg.includes('data-n="&lt;lambda&gt; &amp; &quot;q&quot; &apos;x&apos;"'));
  assert.ok(
    svg.includes(
      "<title>&lt;lambda&gt; &amp; &quot;q&quot; &apos;x&apos; " +
        "(file:///app/x&amp;y&lt;z&gt;.ts:3:1): 2 samples, 8.33%</title>",
    ),
  );
  assert.ok(!svg.includes("\u0001") && !svg.includes(ODD_NAME));
  const frames = framesOf(parseXml(svg));
  assert.ok(
    frames.some((f) => f.name === ODD_NAME && f.title.startsWith(`${ODD_NAME} (${ODD_URL}`)),
  );
  assert.ok(frames.some((f) => f.name === "bad\ufffdname\ufffd"));
  const title = "Flame graph: <a> & 'b' \"c\"";
  const doc = parseXml(flameGraphSvg(PROFILE, { title }));
  assert.equal(textOf(findElements(doc, (e) => e.attributes.id === "heading")[0]), title);
});

Deno.test("escapeXml() escapes markup and replaces characters XML 1.0 forbids", () => {
  assert.equal(escapeXml(`a<b>&"c'`), "a&lt;b&gt;&amp;&quot;c&apos;");
  assert.equal(escapeXml("tab\tnl\ncr\r"), "tab\tnl\ncr\r");
  assert.equal(escapeXml("\u0000\u0008\u000b\u001f\ufffe\uffff"), "\ufffd".repeat(6));
  assert.equal(escapeXml("\ud800x\udc00"), "\ufffdx\ufffd");
  assert.equal(escapeXml("😀 中文 é"), "😀 中文 é");
  assert.equal(escapeXml("]]>"), "]]&gt;");
});

Deno.test("flameGraphSvg() carries a search box, the matched share, zoom and a script that parses", () => {
  const doc = parseXml(flameGraphSvg(PROFILE));
  const input = findElements(doc, (e) => e.name === "input")[0];
  assert.equal(input.attributes.id, "search");
  assert.equal(input.attributes.xmlns, "http://www.w3.org/1999/xhtml");
  assert.equal(findElements(doc, (e) => e.attributes.id === "matched").length, 1);
  assert.equal(textOf(findElements(doc, (e) => e.attributes.id === "unzoom")[0]), "Reset zoom");
  const scripts = findElements(doc, (e) => e.name === "script");
  assert.equal(scripts.length, 1);
  const code = textOf(scripts[0]);
  for (const word of ["RegExp", "Matched: ", "data-x", "data-s", "data-d", "data-n", "click"]) {
    assert.ok(code.includes(word), word);
  }
  // Compiled, not run: a syntax error would throw here.
  new Function(code);
});

Deno.test("flameGraphSvg() leaves out frames under 0.1 px, with everything they called", () => {
  const nodes: RawNode[] = [
    { id: 1, callFrame: frame("(root)"), children: [2, 3] },
    { id: 2, callFrame: frame("busy", A, 0, 0) },
    { id: 3, callFrame: frame("rare", A, 5, 0), children: [4] },
    { id: 4, callFrame: frame("rarer", A, 6, 0) },
  ];
  // 1180 px for 20002 samples: the 2 of rare are 0.118 px, its child's 1 is 0.059 px.
  const doc = parseXml(
    flameGraphSvg(parseCpuProfile(profileJson(nodes, { 2: 20000, 3: 1, 4: 1 }))),
  );
  assert.deepEqual(framesOf(doc).map((f) => f.name), ["all", "busy", "rare"]);
  assert.match(
    textOf(findElements(doc, (e) => e.attributes.id === "subtitle")[0]),
    /; 1 frames under 0\.1 px not drawn$/,
  );
});

Deno.test("flameGraphSvg() draws a stack thousands of frames deep", () => {
  const depth = 5000;
  const nodes: RawNode[] = Array.from({ length: depth }, (_, i) => ({
    id: i + 1,
    callFrame: frame(i === 0 ? "(root)" : "recurse", A, 1, 0),
    children: i + 1 < depth ? [i + 2] : [],
  }));
  const frames = framesOf(
    parseXml(flameGraphSvg(parseCpuProfile(profileJson(nodes, { 5000: 3 })))),
  );
  assert.equal(frames.length, depth);
  assert.ok(frames.every((f) => f.s === 3));
});

// The viewer's script, run in headless Chromium: a probe appended to the SVG
// types into the search box, clicks frames and records what the page shows.
const PROBE = `<script><![CDATA[
window.addEventListener("load", function () {
  var out = {};
  var search = document.getElementById("search");
  var matched = function (re) {
    search.value = re;
    search.dispatchEvent(new Event("input"));
    return [document.getElementById("matched").textContent, document.querySelectorAll("g.match").length];
  };
  var frame = function (name) {
    return Array.prototype.filter.call(document.querySelectorAll("g.f"), function (g) {
      return g.getAttribute("data-n") === name;
    })[0];
  };
  var width = function (name) { return frame(name).querySelector("rect").getAttribute("width"); };
  var shown = function () {
    return Array.prototype.filter.call(document.querySelectorAll("g.f"), function (g) {
      return !g.classList.contains("hide");
    }).map(function (g) { return g.getAttribute("data-n"); });
  };
  out.work = matched("^work [(]");
  out.app = matched("file:///app/");
  out.paren = matched("^[(]");
  out.bad = matched("(");
  out.none = matched("");
  frame("work").dispatchEvent(new MouseEvent("click"));
  out.zoomed = shown();
  out.zoomedWidths = [width("all"), width("main"), width("work"), width(${JSON.stringify(LONG)})];
  out.parents = document.querySelectorAll("g.parent").length;
  out.unzoomShown = !document.getElementById("unzoom").classList.contains("hide");
  document.getElementById("unzoom").dispatchEvent(new MouseEvent("click"));
  out.reset = [shown().length, width("work"), document.getElementById("unzoom").classList.contains("hide")];
  frame("main").dispatchEvent(new MouseEvent("mouseover"));
  out.details = document.getElementById("details").textContent;
  document.documentElement.setAttribute("data-probe", encodeURIComponent(JSON.stringify(out)));
});
]]></script>
</svg>`;

Deno.test({
  name: "the flame graph's search, matched share, zoom and details work in headless Chromium",
  ignore: ignoreWithout("chromium"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fsb-flamegraph-" });
    try {
      const file = `${dir}/flame.svg`;
      await Deno.writeTextFile(file, flameGraphSvg(PROFILE).replace("</svg>", PROBE));
      const out = await new Deno.Command("chromium", {
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          "--disable-dev-shm-usage",
          `--user-data-dir=${dir}/profile`,
          "--dump-dom",
          `file://${file}`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dom = new TextDecoder().decode(out.stdout);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const probe = /data-probe="([^"]*)"/.exec(dom);
      assert.ok(probe !== null, `the probe did not run:\n${dom.slice(0, 2000)}`);
      assert.deepEqual(JSON.parse(decodeURIComponent(probe[1])), {
        work: ["Matched: 62.50%", 1],
        // main and everything above it: nested matches count once.
        app: ["Matched: 75.00%", 4],
        paren: ["Matched: 25.00%", 2],
        bad: ["Bad regular expression", 0],
        none: [" ", 0],
        zoomed: ["all", "main", "work", LONG],
        zoomedWidths: ["1180.00", "1180.00", "1180.00", "786.67"],
        parents: 2,
        unzoomShown: true,
        reset: [7, "737.50", true],
        details: "main (file:///app/main.ts:1:1): 18 samples, 75.00%",
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// --- the checker the tests above rely on ------------------------------------------

Deno.test("parseXml() accepts well-formed XML and refuses what is not", () => {
  const doc = parseXml(
    `<?xml version="1.0" encoding="UTF-8"?>\n<!-- c --><a x='&amp;&#x41;' y="&quot;>">` +
      `<![CDATA[<&]]>t&lt;<b/><?pi data?><c></c ></a>\n`,
  );
  assert.deepEqual(doc, {
    name: "a",
    attributes: { x: "&A", y: '">' },
    children: ["<&t<", { name: "b", attributes: {}, children: [] }, {
      name: "c",
      attributes: {},
      children: [],
    }],
  });
  const bad: [string, RegExp][] = [
    ["<a><b></a>", /<\/a> closes <b>/],
    ["<a>", /<a> is never closed/],
    ["<a>&</a>", /a bare & in the text of <a>/],
    ["<a>&nbsp;</a>", /unknown entity &nbsp;/],
    ["<a>&#1;</a>", /&#1; names a character XML does not allow/],
    ["<a x=1/>", /attribute x without quotes/],
    ['<a x="1" x="2"/>', /attribute x repeated in <a>/],
    ['<a x="<"/>', /a raw < in attribute x/],
    ['<a x="1"y="2"/>', /expected a space, > or \/> in <a>/],
    ["<a>]]></a>", /\]\]> in text/],
    ["<a>\u0001</a>", /U\+1 is not allowed in XML/],
    ["<a>\ud800</a>", /U\+D800 is not allowed in XML/],
    ["<a/><b/>", /content after the root element/],
    ["text", /expected the root element/],
    ["<!DOCTYPE a><a/>", /a DOCTYPE/],
    ["<a><!-- x -- y --></a>", /-- inside a comment/],
    ["<a><![CDATA[x</a>", /unterminated CDATA section/],
    ["<a/><?xml version='1.0'?>", /an XML declaration not at the start/],
  ];
  for (const [text, message] of bad) assert.throws(() => parseXml(text), { message }, text);
});
