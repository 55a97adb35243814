/**
 * A strict, minimal XML reader: enough to prove that a document fsb writes
 * (the flame graph's SVG) is well-formed, and to look inside it, without a
 * DOM (Deno has no DOMParser). It checks what XML 1.0 requires of such a
 * document: one root element, tags balanced and properly nested, attribute
 * values quoted and not repeated, no raw `<` or `&` in text or attribute
 * values (only the five predefined entities and character references), no
 * `]]>` in text, and only characters XML allows. No DTDs: a `<!DOCTYPE` is
 * refused. Used by the tests of `flamegraph.ts`.
 *
 * @module
 */

/** An element: its name, attributes (references decoded) and content. */
export interface XmlElement {
  readonly name: string;
  readonly attributes: Readonly<Record<string, string>>;
  /** Child elements and text (references decoded, CDATA as text), in order. */
  readonly children: (XmlElement | string)[];
}

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const SPACE = /[ \t\r\n]*/y;
const PREDEFINED: Readonly<Record<string, string>> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

/** Whether `cp` is a character XML 1.0 allows. */
function isXmlChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/**
 * Parses `text` as an XML document and returns its root element.
 *
 * @throws {Error} naming the offset and the rule broken, when it is not well-formed.
 */
export function parseXml(text: string): XmlElement {
  for (let i = 0; i < text.length; i++) {
    const cp = text.codePointAt(i)!;
    if (!isXmlChar(cp)) {
      throw new Error(`at ${i}: U+${cp.toString(16).toUpperCase()} is not allowed in XML`);
    }
    if (cp > 0xffff) i++;
  }
  let pos = 0;
  const fail = (why: string): never => {
    throw new Error(`at ${pos}: ${why}`);
  };
  const skipSpace = () => {
    SPACE.lastIndex = pos;
    SPACE.exec(text);
    pos = SPACE.lastIndex;
  };
  const name = (): string => {
    NAME.lastIndex = pos;
    const m = NAME.exec(text);
    if (m === null) return fail("expected a name");
    pos = NAME.lastIndex;
    return m[0];
  };
  const until = (end: string, what: string): string => {
    const at = text.indexOf(end, pos);
    if (at < 0) fail(`unterminated ${what}`);
    const body = text.slice(pos, at);
    pos = at + end.length;
    return body;
  };
  const decode = (raw: string, where: string): string =>
    raw.replace(/&([^;]*);|&/g, (all, ref: string | undefined) => {
      if (ref === undefined) return fail(`a bare & in ${where}`);
      if (Object.hasOwn(PREDEFINED, ref)) return PREDEFINED[ref];
      const m = /^#(?:([0-9]+)|x([0-9a-fA-F]+))$/.exec(ref);
      if (m === null) return fail(`unknown entity ${all} in ${where}`);
      const cp = m[1] !== undefined ? Number(m[1]) : parseInt(m[2], 16);
      if (!isXmlChar(cp)) return fail(`${all} names a character XML does not allow`);
      return String.fromCodePoint(cp);
    });
  // Comments and processing instructions, where they may appear.
  const misc = (): boolean => {
    if (text.startsWith("<!--", pos)) {
      pos += 4;
      const body = until("-->", "comment");
      if (body.includes("--") || body.endsWith("-")) fail("-- inside a comment");
      return true;
    }
    if (text.startsWith("<?", pos)) {
      pos += 2;
      if (name().toLowerCase() === "xml") fail("an XML declaration not at the start");
      until("?>", "processing instruction");
      return true;
    }
    return false;
  };

  if (text.startsWith("<?xml", pos) && /[ \t\r\n?]/.test(text[5] ?? "")) {
    pos += 5;
    const decl = until("?>", "XML declaration");
    if (!/^\s+version\s*=\s*(["'])1\.[0-9]+\1/.test(decl)) fail("a declaration without version");
  }
  for (skipSpace(); misc(); skipSpace());
  if (text.startsWith("<!DOCTYPE", pos)) fail("a DOCTYPE (not supported)");
  if (text[pos] !== "<") fail("expected the root element");
  const root = element();
  for (skipSpace(); misc(); skipSpace());
  if (pos < text.length) fail("content after the root element");
  return root;

  function element(): XmlElement {
    pos++; // "<"
    const tag = name();
    const attributes: Record<string, string> = {};
    for (;;) {
      const before = pos;
      skipSpace();
      if (text.startsWith("/>", pos)) {
        pos += 2;
        return { name: tag, attributes, children: [] };
      }
      if (text[pos] === ">") {
        pos++;
        break;
      }
      if (pos === before) fail(`expected a space, > or /> in <${tag}>`);
      const attr = name();
      skipSpace();
      if (text[pos] !== "=") fail(`attribute ${attr} without =`);
      pos++;
      skipSpace();
      const quote = text[pos];
      if (quote !== '"' && quote !== "'") fail(`attribute ${attr} without quotes`);
      pos++;
      const raw = until(quote, `attribute ${attr}`);
      if (raw.includes("<")) fail(`a raw < in attribute ${attr}`);
      if (Object.hasOwn(attributes, attr)) fail(`attribute ${attr} repeated in <${tag}>`);
      attributes[attr] = decode(raw, `attribute ${attr}`);
    }
    const children: (XmlElement | string)[] = [];
    const addText = (s: string) => {
      if (s === "") return;
      const last = children.length - 1;
      if (typeof children[last] === "string") children[last] += s;
      else children.push(s);
    };
    for (;;) {
      const lt = text.indexOf("<", pos);
      if (lt < 0) fail(`<${tag}> is never closed`);
      const raw = text.slice(pos, lt);
      if (raw.includes("]]>")) fail("]]> in text");
      addText(decode(raw, `the text of <${tag}>`));
      pos = lt;
      if (text.startsWith("</", pos)) {
        pos += 2;
        const closing = name();
        skipSpace();
        if (text[pos] !== ">") fail(`expected > after </${closing}`);
        pos++;
        if (closing !== tag) fail(`</${closing}> closes <${tag}>`);
        return { name: tag, attributes, children };
      }
      if (text.startsWith("<![CDATA[", pos)) {
        pos += 9;
        addText(until("]]>", "CDATA section"));
        continue;
      }
      if (text.startsWith("<!", pos) && !text.startsWith("<!--", pos)) fail("unexpected <!");
      if (misc()) continue;
      children.push(element());
    }
  }
}

/** Every element under `root` (itself included) that `test` accepts, in document order. */
export function findElements(
  root: XmlElement,
  test: (e: XmlElement) => boolean,
): XmlElement[] {
  const found: XmlElement[] = [];
  const stack: XmlElement[] = [root];
  while (stack.length > 0) {
    const e = stack.pop()!;
    if (test(e)) found.push(e);
    for (let i = e.children.length - 1; i >= 0; i--) {
      const child = e.children[i];
      if (typeof child !== "string") stack.push(child);
    }
  }
  return found;
}

/** The text inside `e`, its descendants' included. */
export function textOf(e: XmlElement): string {
  return e.children.map((c) => typeof c === "string" ? c : textOf(c)).join("");
}
