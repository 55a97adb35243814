/**
 * Logs for people (shared/DESIGN.md section 16): pino writes JSON lines; on a
 * terminal each becomes one readable line,
 *
 * ```text
 * 14:03:07.123 INFO  controller serving address=127.0.0.1:9090 mode=fast
 * 14:03:09.481 ERROR internal error method=/fsb.fastpath.v1.FastPath/CreateSandbox err="boom" err.code=13
 * ```
 *
 * time (local, to the millisecond), level, message, then the event's fields
 * as `key=value` in the order logged: strings bare unless they need quotes,
 * errors as their message, nested objects as compact JSON. Nothing a logged
 * value holds can break the line or send terminal escapes.
 *
 * This module has no dependency: the caller hands in the pino destination
 * to write to, so that a client start never loads pino.
 *
 * @module
 */
import { UsageError } from "./usage_error.ts";

/** `--log-format`: pino's JSON lines, or one readable line per event. */
export type LogFormat = "json" | "pretty";

/** The log formats `--log-format` takes. */
export const LOG_FORMATS: readonly LogFormat[] = ["json", "pretty"];

/**
 * The format a server logs in: `flag` when given, else `pretty` when its
 * stderr is a terminal and `json` otherwise.
 *
 * @throws {UsageError} for a value other than json or pretty.
 */
export function resolveLogFormat(
  flag: string | undefined,
  stderrIsTerminal: boolean,
  usage?: string,
): LogFormat {
  if (flag === undefined) return stderrIsTerminal ? "pretty" : "json";
  if ((LOG_FORMATS as readonly string[]).includes(flag)) return flag as LogFormat;
  throw new UsageError(`Flag --log-format must be one of json, pretty, got "${flag}"`, { usage });
}

/** What pino writes to: a pino destination (SonicBoom), or anything with `write`. */
export interface LogSink {
  write(chunk: string): unknown;
  flush?(cb?: (err?: Error) => void): void;
  flushSync?(): void;
  end?(): void;
}

/** Options for {@linkcode formatLogEvent} and {@linkcode prettyDestination}. */
export interface PrettyOptions {
  /** ANSI colours (level, dimmed time and keys). Default false. */
  color?: boolean;
  /** Clock to print the time in. Default `local`. */
  timeZone?: "local" | "utc";
  /** Names of custom levels by number, beside pino's own (and fsb's `timing`, 25). */
  levels?: Readonly<Record<number, string>>;
  /** Fields not printed. Default: `pid`, `hostname` (the same on every line). */
  omit?: readonly string[];
}

const LEVELS: Readonly<Record<number, string>> = {
  10: "trace",
  20: "debug",
  25: "timing",
  30: "info",
  40: "warn",
  50: "error",
  60: "fatal",
};

const LEVEL_COLORS: Readonly<Record<string, string>> = {
  trace: "90",
  debug: "36",
  timing: "35",
  info: "32",
  warn: "33",
  error: "31",
  fatal: "1;31",
};

const DEFAULT_OMIT = ["pid", "hostname"];

/** Fields that are the line's frame, never printed as key=value. */
const FRAME = new Set(["level", "time", "msg"]);

/** C0 and C1 controls, DEL, and the Unicode line and paragraph separators. */
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
// deno-lint-ignore no-control-regex
const HAS_CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

const ESCAPES: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** `s` with every control character written as an escape, so it stays on one line. */
function escapeControls(s: string): string {
  return s.replace(
    CONTROL,
    (c) => ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** A string value: bare when unambiguous, else quoted as JSON. */
function quote(s: string): string {
  if (s !== "" && !/[\s"'=\\]/.test(s) && !HAS_CONTROL.test(s)) return s;
  return escapeControls(JSON.stringify(s));
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** pino's error serializer's shape: `{type, message, stack, ...own properties}`. */
function isSerializedError(v: unknown): v is Record<string, unknown> & { message: string } {
  return isRecord(v) && typeof v.type === "string" && typeof v.message === "string" &&
    typeof v.stack === "string";
}

const ERROR_FRAME = new Set(["type", "message", "stack", "raw"]);

function pairs(key: string, value: unknown, out: string[], paint: (s: string) => string): void {
  const k = paint(`${escapeControls(key)}=`);
  if (isSerializedError(value)) {
    const text = value.type === "Error" ? value.message : `${value.type}: ${value.message}`;
    out.push(`${k}${quote(text)}`);
    for (const [p, v] of Object.entries(value)) {
      if (ERROR_FRAME.has(p) || v === undefined || (p === "name" && v === value.type)) continue;
      pairs(`${key}.${p}`, v, out, paint);
    }
    return;
  }
  if (typeof value === "string") out.push(`${k}${quote(value)}`);
  else if (value === null || typeof value !== "object") out.push(`${k}${String(value)}`);
  else out.push(`${k}${escapeControls(JSON.stringify(value))}`);
}

function pad2(n: number): string {
  return String(n).padStart(2, "0");
}

function clock(ms: number, zone: "local" | "utc"): string {
  const d = new Date(ms);
  const [h, m, s, milli] = zone === "utc"
    ? [d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds()]
    : [d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()];
  return `${pad2(h)}:${pad2(m)}:${pad2(s)}.${String(milli).padStart(3, "0")}`;
}

/**
 * One pino event (a parsed JSON line) as one readable line, without the newline.
 *
 * @example
 * ```ts
 * import { formatLogEvent } from "./log_format.ts";
 * const line = formatLogEvent(
 *   { level: 30, time: 0, pid: 7, address: "127.0.0.1:9090", msg: "controller serving" },
 *   { timeZone: "utc" },
 * );
 * if (line !== "00:00:00.000 INFO  controller serving address=127.0.0.1:9090") throw new Error(line);
 * ```
 */
export function formatLogEvent(event: Record<string, unknown>, opts: PrettyOptions = {}): string {
  const color = opts.color ?? false;
  const dim = (s: string) => color ? `\x1b[2m${s}\x1b[22m` : s;
  const parts: string[] = [];
  if (typeof event.time === "number") parts.push(dim(clock(event.time, opts.timeZone ?? "local")));
  const level = event.level;
  const name = typeof level === "number"
    ? opts.levels?.[level] ?? LEVELS[level] ?? `level${level}`
    : typeof level === "string"
    ? level
    : "";
  if (name !== "") {
    const label = escapeControls(name.toUpperCase()).padEnd(5);
    const code = LEVEL_COLORS[name];
    parts.push(color && code !== undefined ? `\x1b[${code}m${label}\x1b[0m` : label);
  }
  if (event.msg !== undefined && event.msg !== "") {
    parts.push(
      escapeControls(typeof event.msg === "string" ? event.msg : JSON.stringify(event.msg)),
    );
  }
  const omit = new Set(opts.omit ?? DEFAULT_OMIT);
  const kv: string[] = [];
  for (const [key, value] of Object.entries(event)) {
    if (FRAME.has(key) || omit.has(key) || value === undefined) continue;
    pairs(key, value, kv, dim);
  }
  return [...parts, ...kv].join(" ");
}

/**
 * One line as pino wrote it (JSON) turned readable, newline included. A line
 * that is not a JSON object passes through unchanged (but escaped).
 */
export function formatLogLine(line: string, opts: PrettyOptions = {}): string {
  const text = line.endsWith("\n") ? line.slice(0, -1) : line;
  let event: unknown;
  try {
    event = JSON.parse(text);
  } catch {
    return `${escapeControls(text)}\n`;
  }
  return isRecord(event) ? `${formatLogEvent(event, opts)}\n` : `${escapeControls(text)}\n`;
}

/**
 * A pino destination that writes each event to `sink` as one readable line.
 * `flush`, `flushSync` and `end` pass through to `sink`, so `logger.flush()`
 * and pino's exit handling work as with `sink` itself.
 */
export function prettyDestination(sink: LogSink, opts: PrettyOptions = {}): LogSink {
  let pending = "";
  const out: LogSink = {
    write(chunk: string) {
      const text = pending + chunk;
      const end = text.lastIndexOf("\n");
      if (end < 0) {
        pending = text;
        return true;
      }
      pending = text.slice(end + 1);
      let lines = "";
      for (const line of text.slice(0, end).split("\n")) {
        if (line !== "") lines += formatLogLine(line, opts);
      }
      return lines === "" ? true : sink.write(lines);
    },
  };
  const flushPending = () => {
    if (pending === "") return;
    const line = pending;
    pending = "";
    sink.write(formatLogLine(line, opts));
  };
  if (sink.flush) {
    out.flush = (cb) => {
      flushPending();
      sink.flush!(cb);
    };
  }
  if (sink.flushSync) {
    out.flushSync = () => {
      flushPending();
      sink.flushSync!();
    };
  }
  if (sink.end) {
    out.end = () => {
      flushPending();
      sink.end!();
    };
  }
  return out;
}

/** `sink` itself for `json`, or a {@linkcode prettyDestination} over it for `pretty`. */
export function logDestination(
  format: LogFormat,
  sink: LogSink,
  opts: PrettyOptions = {},
): LogSink {
  return format === "json" ? sink : prettyDestination(sink, opts);
}
