/**
 * Flame graphs of V8 CPU profiles (`.cpuprofile`, what `fsb debug profile`
 * fetches and Chrome DevTools opens), drawn by fsb itself as one
 * self-contained SVG: a rectangle per frame, as wide as its samples, stacked
 * by call depth with the root at the bottom; hover text with the function,
 * its location, samples and percent; a search box (a regular expression:
 * matching frames are highlighted and the share of samples they cover is
 * shown); click a frame to zoom into it.
 *
 * Frames are merged by function and location along each stack, and siblings
 * are sorted by name, then location, so that the same profile always gives
 * the same bytes.
 *
 * @module
 */

/** Where a function is: V8's `callFrame` (line and column counted from 0). */
export interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber: number;
}

/** One node of a V8 CPU profile: a call frame under its parent's. */
export interface CpuProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  /** The ids of the nodes called from this one. */
  readonly children: readonly number[];
  /** Samples that stopped in this node itself (used when `samples` is absent). */
  readonly hitCount: number;
}

/** A V8 CPU profile, as `Profiler.stop` returns it and `.cpuprofile` files hold it. */
export interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[];
  /** Microseconds, on V8's monotonic clock. */
  readonly startTime: number;
  /** Microseconds, on V8's monotonic clock. */
  readonly endTime: number;
  /** The node each sample stopped in, in time order. */
  readonly samples: readonly number[];
  /** Microseconds before each sample since the previous one. */
  readonly timeDeltas: readonly number[];
}

/**
 * Reads a `.cpuprofile`'s JSON and checks its shape: an object with `nodes`
 * (each with a numeric `id` and a `callFrame`), numeric `startTime` and
 * `endTime`, and optional `samples` that name existing nodes.
 *
 * @throws {Error} saying what is missing, when the text is not one.
 */
export function parseCpuProfile(text: string): CpuProfile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`not JSON: ${(err as Error).message}`);
  }
  const notOne = (why: string) => new Error(`not a V8 CPU profile: ${why}`);
  if (!isObject(json)) throw notOne("expected a JSON object");
  if (!Array.isArray(json.nodes) || json.nodes.length === 0) throw notOne('no "nodes"');
  const nodes: CpuProfileNode[] = [];
  const ids = new Set<number>();
  for (const raw of json.nodes) {
    if (!isObject(raw) || typeof raw.id !== "number" || !isObject(raw.callFrame)) {
      throw notOne('a node without "id" or "callFrame"');
    }
    const cf = raw.callFrame;
    const children = Array.isArray(raw.children)
      ? raw.children.filter((c): c is number => typeof c === "number")
      : [];
    nodes.push({
      id: raw.id,
      callFrame: {
        functionName: typeof cf.functionName === "string" ? cf.functionName : "",
        url: typeof cf.url === "string" ? cf.url : "",
        lineNumber: typeof cf.lineNumber === "number" ? cf.lineNumber : -1,
        columnNumber: typeof cf.columnNumber === "number" ? cf.columnNumber : -1,
      },
      children,
      hitCount: typeof raw.hitCount === "number" ? raw.hitCount : 0,
    });
    ids.add(raw.id);
  }
  if (typeof json.startTime !== "number" || typeof json.endTime !== "number") {
    throw notOne('no "startTime" or "endTime"');
  }
  const samples = numbers(json.samples, "samples", notOne);
  for (const id of samples) {
    if (!ids.has(id)) throw notOne(`a sample names node ${id}, which is not in "nodes"`);
  }
  return {
    nodes,
    startTime: json.startTime,
    endTime: json.endTime,
    samples,
    timeDeltas: numbers(json.timeDeltas, "timeDeltas", notOne),
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function numbers(value: unknown, name: string, notOne: (why: string) => Error): number[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== "number")) {
    throw notOne(`"${name}" is not a list of numbers`);
  }
  return value;
}

/** What a profile holds at a glance, for a one-line summary. */
export interface CpuProfileSummary {
  /** How many samples were taken. */
  readonly samples: number;
  /** From the first to the last microsecond profiled, in milliseconds. */
  readonly durationMs: number;
}

/** The sample count and duration of `profile`. */
export function cpuProfileSummary(profile: CpuProfile): CpuProfileSummary {
  const samples = profile.samples.length > 0
    ? profile.samples.length
    : profile.nodes.reduce((n, node) => n + node.hitCount, 0);
  return { samples, durationMs: Math.max(0, profile.endTime - profile.startTime) / 1000 };
}

/** A frame of the flame graph: a call frame merged along one stack. */
export interface FlameNode {
  /** The function's name; `(anonymous)` for a nameless one, `all` for the root. */
  readonly name: string;
  /** `url:line:column` (counted from 1), or "" for V8's own frames and the root. */
  readonly location: string;
  /** Samples in this frame and everything it called. */
  total: number;
  /** Samples that stopped in this frame itself. */
  self: number;
  /** Sorted by name, then location. */
  readonly children: FlameNode[];
}

/** Options of {@linkcode buildFlameTree} and {@linkcode flameGraphSvg}. */
export interface FlameOptions {
  /**
   * Keep V8's `(idle)` frame: time the process spent waiting, not running.
   * Left out by default, so that widths are shares of CPU work.
   */
  readonly idle?: boolean;
}

/** V8's name for samples taken while the thread waited. */
export const IDLE = "(idle)";

function frameLocation(cf: CallFrame): string {
  if (cf.url === "") return "";
  if (cf.lineNumber < 0) return cf.url;
  return `${cf.url}:${cf.lineNumber + 1}:${cf.columnNumber + 1}`;
}

/**
 * Merges the profile's nodes by function and location along each stack:
 * frames with the same name and location under the same merged parent become
 * one, their samples added. Frames without samples are dropped; children are
 * sorted by name, then location. V8's `(root)` becomes `all`.
 */
export function buildFlameTree(profile: CpuProfile, opts: FlameOptions = {}): FlameNode {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfCount = new Map<number, number>();
  if (profile.samples.length > 0) {
    for (const id of profile.samples) selfCount.set(id, (selfCount.get(id) ?? 0) + 1);
  } else {
    for (const n of profile.nodes) if (n.hitCount > 0) selfCount.set(n.id, n.hitCount);
  }
  // The root is the node no other node names as a child (V8 lists it first).
  const childIds = new Set(profile.nodes.flatMap((n) => n.children));
  const rootNode = profile.nodes.find((n) => !childIds.has(n.id)) ?? profile.nodes[0];
  const root: FlameNode = { name: "all", location: "", total: 0, self: 0, children: [] };
  const childIndex = new Map<FlameNode, Map<string, FlameNode>>();
  // Iterative, so that deep stacks cannot overflow ours; `seen` guards against cycles.
  const seen = new Set<number>([rootNode.id]);
  root.self += selfCount.get(rootNode.id) ?? 0;
  const stack: [CpuProfileNode, FlameNode][] = [[rootNode, root]];
  while (stack.length > 0) {
    const [node, merged] = stack.pop()!;
    for (const childId of node.children) {
      const child = byId.get(childId);
      if (child === undefined || seen.has(childId)) continue;
      seen.add(childId);
      const cf = child.callFrame;
      if (merged === root && cf.functionName === IDLE && !opts.idle) continue;
      const name = cf.functionName === "" ? "(anonymous)" : cf.functionName;
      const location = frameLocation(cf);
      const key = `${name}\u0000${location}`;
      let index = childIndex.get(merged);
      if (index === undefined) childIndex.set(merged, index = new Map());
      let into = index.get(key);
      if (into === undefined) {
        into = { name, location, total: 0, self: 0, children: [] };
        index.set(key, into);
        merged.children.push(into);
      }
      into.self += selfCount.get(childId) ?? 0;
      stack.push([child, into]);
    }
  }
  finish(root);
  return root;
}

/** Sums totals bottom-up, drops empty frames and sorts siblings (iteratively). */
function finish(root: FlameNode): void {
  const order: FlameNode[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const node = stack.pop()!;
    order.push(node);
    for (const child of node.children) stack.push(child);
  }
  for (let i = order.length - 1; i >= 0; i--) {
    const node = order[i];
    node.total = node.self + node.children.reduce((n, c) => n + c.total, 0);
    const kept = node.children.filter((c) => c.total > 0).sort(compareFrames);
    node.children.splice(0, node.children.length, ...kept);
  }
}

function compareFrames(a: FlameNode, b: FlameNode): number {
  return compareText(a.name, b.name) || compareText(a.location, b.location);
}

// By UTF-16 code unit, independent of locale: the same order everywhere.
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Options of {@linkcode flameGraphSvg}. */
export interface FlameGraphSvgOptions extends FlameOptions {
  /** The heading; `Flame graph` by default. */
  readonly title?: string;
  /** The image's width in pixels; 1200 by default. */
  readonly width?: number;
}

/** Layout constants, in pixels. */
const PAD = 10;
const FRAME_HEIGHT = 16;
const HEADER = 66;
const FOOTER = 30;
const FONT_SIZE = 12;
/** About the advance of one character of the 12 px font, for clipping labels. */
const CHAR_WIDTH = 7;
/** Frames narrower than this are left out, and so everything they called. */
const MIN_FRAME_WIDTH = 0.1;

/**
 * Escapes `text` for XML character data and attribute values (quoted either
 * way), and replaces what XML 1.0 cannot carry at all, even escaped (control
 * characters other than tab, line feed and carriage return, lone surrogates,
 * U+FFFE and U+FFFF), with U+FFFD.
 */
export function escapeXml(text: string): string {
  return text
    .replace(
      // deno-lint-ignore no-control-regex
      /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
      "\ufffd",
    )
    .replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&apos;",
};

/** `label` cut to fit `width` pixels, ending in `..` when cut; "" when not even 3 characters fit. */
export function fitLabel(label: string, width: number): string {
  const room = Math.floor((width - 6) / CHAR_WIDTH);
  if (room < 3) return "";
  const chars = Array.from(label);
  return chars.length <= room ? label : chars.slice(0, room - 2).join("") + "..";
}

const ROOT_COLOR = "rgb(200,200,200)";

/** The frame's fill: warm for fsb's own code, yellow for packages, cool for V8 and the runtime. */
function frameColor(node: FlameNode): string {
  const h = hash(node.name);
  const v = (span: number) => Math.floor((h % 1000) / 1000 * span);
  if (node.name.startsWith("(") && node.location === "") {
    return `rgb(${180 + v(30)},${180 + v(30)},${180 + v(30)})`;
  }
  if (node.location === "" || /^(?:ext|node):/.test(node.location)) {
    return `rgb(${80 + v(60)},${170 + v(40)},${200 + v(40)})`;
  }
  if (/\/node_modules\/|\/npm\/|^https?:/.test(node.location)) {
    return `rgb(${220 + v(30)},${190 + v(50)},${50 + v(40)})`;
  }
  return `rgb(${225 + v(30)},${80 + v(110)},${40 + v(40)})`;
}

/** FNV-1a: a stable color per name. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function percent(part: number, whole: number): string {
  return `${(whole === 0 ? 0 : part / whole * 100).toFixed(2)}%`;
}

function px(value: number): string {
  return value.toFixed(2);
}

/** The hover text of a frame: `name (location): N samples, P%`. */
export function frameTitle(node: FlameNode, total: number): string {
  const where = node.location === "" ? "" : ` (${node.location})`;
  const samples = `${node.total} sample${node.total === 1 ? "" : "s"}`;
  return `${node.name}${where}: ${samples}, ${percent(node.total, total)}`;
}

/**
 * The flame graph of `profile` as a standalone SVG document (UTF-8 text). Each
 * frame is a `<g class="f">` holding a `<title>`, a `<rect>` and, when the
 * frame is wide enough, a `<text>` label; its `data-x` (samples left of it,
 * counted from the root's left edge), `data-s` (its samples), `data-d` (its
 * depth, 0 for the root) and `data-n` (its function's name) drive the search
 * and the zoom.
 */
export function flameGraphSvg(profile: CpuProfile, opts: FlameGraphSvgOptions = {}): string {
  const root = buildFlameTree(profile, opts);
  const width = opts.width ?? 1200;
  const inner = width - 2 * PAD;
  const total = root.total;
  const perSample = total === 0 ? 0 : inner / total;

  // Lay out the frames depth-first in sorted order (the document order, too).
  const frames: { node: FlameNode; x: number; depth: number }[] = [];
  let maxDepth = 0;
  let omitted = 0;
  const stack: { node: FlameNode; x: number; depth: number }[] = [{ node: root, x: 0, depth: 0 }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    if (frame.node.total * perSample < MIN_FRAME_WIDTH && frame.depth > 0) {
      omitted++;
      continue;
    }
    frames.push(frame);
    maxDepth = Math.max(maxDepth, frame.depth);
    let x = frame.x;
    const placed = frame.node.children.map((child) => {
      const at = { node: child, x, depth: frame.depth + 1 };
      x += child.total;
      return at;
    });
    for (let i = placed.length - 1; i >= 0; i--) stack.push(placed[i]);
  }

  const height = HEADER + (maxDepth + 1) * FRAME_HEIGHT + FOOTER;
  const bottom = height - FOOTER; // the root's lower edge
  const summary = cpuProfileSummary(profile);
  const idleSamples = opts.idle ? 0 : idleCount(profile);
  const subtitle = `${total} samples over ${(summary.durationMs / 1000).toFixed(2)} s` +
    (idleSamples > 0 ? `; ${idleSamples} ${IDLE} samples left out` : "") +
    (omitted > 0 ? `; ${omitted} frames under ${MIN_FRAME_WIDTH} px not drawn` : "");

  const out: string[] = [];
  out.push(
    `<?xml version="1.0" encoding="UTF-8" standalone="no"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" data-total="${total}" data-width="${inner}" ` +
      `data-pad="${PAD}" font-family="Verdana, Arial, sans-serif" font-size="${FONT_SIZE}">`,
    `<style>${STYLE}</style>`,
    `<script><![CDATA[${SCRIPT}]]></script>`,
    `<rect width="100%" height="100%" fill="#f8f8f4"/>`,
    `<text id="heading" x="${width / 2}" y="22" text-anchor="middle" font-size="16">${
      escapeXml(opts.title ?? "Flame graph")
    }</text>`,
    `<text id="subtitle" x="${width / 2}" y="40" text-anchor="middle" fill="#555">${
      escapeXml(subtitle)
    }</text>`,
    `<text id="unzoom" class="button hide" x="${PAD}" y="22">Reset zoom</text>`,
    `<foreignObject x="${width - PAD - 260}" y="8" width="260" height="24">` +
      `<input xmlns="http://www.w3.org/1999/xhtml" id="search" type="text" ` +
      `placeholder="search: a regular expression" autocomplete="off"/></foreignObject>`,
    `<text id="matched" x="${width - PAD}" y="50" text-anchor="end"> </text>`,
    `<text id="details" x="${PAD}" y="${height - 10}"> </text>`,
    `<g id="frames">`,
  );
  for (const { node, x, depth } of frames) {
    const left = PAD + x * perSample;
    const w = node.total * perSample;
    const y = bottom - (depth + 1) * FRAME_HEIGHT;
    const label = fitLabel(node.name, w);
    out.push(
      `<g class="f" data-x="${x}" data-s="${node.total}" data-d="${depth}" ` +
        `data-n="${escapeXml(node.name)}">` +
        `<title>${escapeXml(frameTitle(node, total))}</title>` +
        `<rect x="${px(left)}" y="${y}" width="${px(w)}" height="${FRAME_HEIGHT - 1}" ` +
        `rx="2" fill="${depth === 0 ? ROOT_COLOR : frameColor(node)}"/>` +
        (label === ""
          ? ""
          : `<text x="${px(left + 3)}" y="${y + FRAME_HEIGHT - 4}">${escapeXml(label)}</text>`) +
        `</g>`,
    );
  }
  out.push(`</g>`, `</svg>`, ``);
  return out.join("\n");
}

function idleCount(profile: CpuProfile): number {
  const idle = new Set(
    profile.nodes.filter((n) => n.callFrame.functionName === IDLE).map((n) => n.id),
  );
  if (idle.size === 0) return 0;
  if (profile.samples.length > 0) return profile.samples.filter((id) => idle.has(id)).length;
  return profile.nodes.filter((n) => idle.has(n.id)).reduce((sum, n) => sum + n.hitCount, 0);
}

const STYLE = `
text { fill: #000; }
.f { cursor: pointer; }
.f text { pointer-events: none; }
.f:hover rect { stroke: #000; stroke-width: 0.5; }
.f.match rect { fill: rgb(230,0,230); }
.f.parent rect { opacity: 0.5; }
.hide { display: none; }
.button { cursor: pointer; fill: #06c; }
#search { width: 250px; font: 12px Verdana, Arial, sans-serif; box-sizing: border-box; }
`;

// The viewer: hover details, regex search with the matched share, click to
// zoom. Plain DOM, no dependencies; it reads only the data-* attributes.
const SCRIPT = `
window.addEventListener("load", function () {
  "use strict";
  var svg = document.documentElement;
  var total = +svg.getAttribute("data-total");
  var inner = +svg.getAttribute("data-width");
  var pad = +svg.getAttribute("data-pad");
  var frames = Array.prototype.slice.call(document.querySelectorAll("g.f"));
  var details = document.getElementById("details");
  var matched = document.getElementById("matched");
  var unzoom = document.getElementById("unzoom");
  var search = document.getElementById("search");
  function num(g, a) { return +g.getAttribute(a); }
  function info(g) { return g.querySelector("title").textContent; }
  function label(g, w) {
    var n = g.getAttribute("data-n"), room = Math.floor((w - 6) / ${CHAR_WIDTH});
    if (room < 3) return "";
    return n.length <= room ? n : n.slice(0, room - 2) + "..";
  }
  function place(g, x, w) {
    var r = g.querySelector("rect"), t = g.querySelector("text"), l = label(g, w);
    r.setAttribute("x", (pad + x).toFixed(2));
    r.setAttribute("width", w.toFixed(2));
    if (!t && l) {
      t = document.createElementNS("http://www.w3.org/2000/svg", "text");
      t.setAttribute("y", num(r, "y") + ${FRAME_HEIGHT - 4});
      g.appendChild(t);
    }
    if (t) { t.setAttribute("x", (pad + x + 3).toFixed(2)); t.textContent = l; }
  }
  function zoom(g) {
    var x0 = num(g, "data-x"), s0 = num(g, "data-s"), d0 = num(g, "data-d");
    unzoom.classList.remove("hide");
    frames.forEach(function (f) {
      var x = num(f, "data-x"), s = num(f, "data-s"), d = num(f, "data-d");
      f.classList.remove("parent");
      if (d < d0 && x <= x0 && x + s >= x0 + s0) {
        f.classList.remove("hide"); f.classList.add("parent"); place(f, 0, inner);
      } else if (d >= d0 && x >= x0 && x + s <= x0 + s0) {
        f.classList.remove("hide"); place(f, (x - x0) / s0 * inner, s / s0 * inner);
      } else {
        f.classList.add("hide");
      }
    });
  }
  function reset() {
    unzoom.classList.add("hide");
    frames.forEach(function (f) {
      f.classList.remove("hide", "parent");
      place(f, num(f, "data-x") / total * inner, num(f, "data-s") / total * inner);
    });
  }
  function find(text) {
    var re = null;
    var bad = false;
    if (text) {
      try { re = new RegExp(text); } catch (e) { bad = true; }
    }
    var spans = [];
    frames.forEach(function (f) {
      var t = info(f), hit = re !== null && re.test(t.slice(0, t.lastIndexOf(": ")));
      f.classList.toggle("match", hit);
      if (hit) spans.push([num(f, "data-x"), num(f, "data-s")]);
    });
    if (re === null) { matched.textContent = bad ? "Bad regular expression" : " "; return; }
    // Nested matches cover the same samples: count each sample once.
    spans.sort(function (a, b) { return a[0] - b[0] || b[1] - a[1]; });
    var sum = 0, end = 0;
    spans.forEach(function (s) {
      var from = Math.max(s[0], end), to = s[0] + s[1];
      if (to > from) { sum += to - from; end = to; }
    });
    matched.textContent = "Matched: " + (total ? sum / total * 100 : 0).toFixed(2) + "%";
  }
  frames.forEach(function (f) {
    f.addEventListener("mouseover", function () { details.textContent = info(f); });
    f.addEventListener("mouseout", function () { details.textContent = " "; });
    f.addEventListener("click", function () { zoom(f); });
  });
  unzoom.addEventListener("click", reset);
  if (search) search.addEventListener("input", function () { find(search.value); });
  window.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    if (search) search.value = "";
    find("");
    reset();
  });
});
`;
