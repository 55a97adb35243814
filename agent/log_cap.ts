/**
 * Caps each sandbox's log file at a size (agent flag `--log-max-bytes`,
 * shared/DESIGN.md section 11), dropping the oldest output, never the newest.
 *
 * ## Why in place
 *
 * The writer of a log is not ours: containerd's runc v2 shim (a `file://`
 * stdio URI, copied into the file opened `O_APPEND`) or, for the process
 * runtime, the sandbox's own process (its fds opened `O_APPEND`). It keeps its
 * fd for as long as it runs, so renaming the file away would leave it writing
 * into the renamed file, and copy-then-truncate loses whatever it appends
 * between the copy and the truncate. So the head of the file is removed in
 * place, with `fallocate(2)`:
 *
 * - `FALLOC_FL_COLLAPSE_RANGE` (`fallocate --collapse-range`: ext4, checked
 *   here, also overlayfs on ext4; XFS by its documentation) removes a block-aligned
 *   range at offset 0 and shifts the rest down. The kernel runs it under the
 *   inode lock that `O_APPEND` writes also take, so every write lands wholly
 *   before or wholly after it, at the end of the file either way: nothing
 *   appended is lost, reordered or duplicated (checked here on ext4 with
 *   writers appending while collapses ran). It fails with `EINVAL` unless
 *   offset and length are multiples of the block size and the range ends
 *   before end of file, so a cap never reaches the newest block.
 * - Where collapsing is not supported (tmpfs and overlayfs on tmpfs answer
 *   `EOPNOTSUPP`, checked here; btrfs does not implement it either; `EINVAL`
 *   is treated alike), `FALLOC_FL_PUNCH_HOLE`
 *   (`fallocate --punch-hole`, which keeps the size) frees the oldest blocks
 *   instead: the file keeps its apparent size and offsets, its head reads as
 *   zeros, and the sidecar below says where the kept bytes start. The disk (or
 *   memory) use is capped, the apparent size is not. Punching never moves a
 *   byte, so it cannot lose or reorder an appended one either. A warning says
 *   so, once per file.
 * - Where neither works (or `fallocate` is missing), the file is left to grow,
 *   with a warning once per file: no other in-place method keeps the newest
 *   bytes safe from a writer we do not control.
 *
 * A file over `maxBytes` loses the oldest whole blocks that bring it down to
 * at most 3/4 of `maxBytes` (so it keeps at least 3/4 of `maxBytes` minus one
 * block, and a cap runs at most once per quarter of `maxBytes` written).
 *
 * ## Drop accounting: the `<log>.dropped` sidecar
 *
 * Readers (`followLogFile` in `./log_file.ts`) count in *stream offsets*: the offset a
 * byte had in everything ever written. The sidecar (JSON, one line, replaced
 * atomically by rename) says how stream and file offsets relate:
 *
 * - `collapsed`: bytes removed from the file's head by collapses, so file
 *   offset = stream offset - `collapsed`;
 * - `dropped`: the stream offset of the oldest byte still readable (at least
 *   `collapsed`; more after punched holes, whose bytes read as zeros);
 * - `seq`: a sequence number, even when the file is stable, odd while a cap
 *   is in progress (a seqlock). A cap writes `seq + 1` (with what it is about
 *   to do, in `pending`), runs `fallocate`, then writes `seq + 2` with the new
 *   counts. A reader reads the sidecar, reads the file, and reads the sidecar
 *   again; the bytes count only if both reads saw the same even `seq`, else
 *   it waits for an even `seq` and reads again at the new file offset. So a
 *   reader never yields bytes read at a stale offset or torn by a concurrent
 *   collapse.
 *
 * No sidecar means nothing was ever dropped. An odd sidecar left by an agent
 * that died during a cap is settled in the first pass after it is tracked:
 * a collapse that had happened is recognised by the file's size or by the
 * hash of its first block (recorded in `pending`), a punch is simply redone.
 * Until then a reader waits (and gives up after a while, with an error).
 *
 * ## Limits
 *
 * - Files are looked at every `intervalMs`: one can exceed `maxBytes` by what
 *   its sandbox writes in that time (a pass costs one `stat` per file, about
 *   8 ms for 500 files here, plus about 5 ms per cap: a `fallocate` process
 *   and two small sidecar writes).
 * - A cap never removes the block that holds the newest byte, so a `maxBytes`
 *   of a few blocks (say under 16 KiB) is approximate.
 * - Readers pay one small file read (the sidecar, usually missing) per read
 *   of the log, about 15 us.
 * - The sidecar is not fsynced: after a power loss its counts may lag the
 *   file's. Readers started after then count from another origin (harmless)
 *   or, on a punched file, read some zeros first.
 * - Needs `--allow-run` for `fallocate`, and read and write on the logs.
 *
 * @module
 */

/** `--log-max-bytes` unless told: 10 MiB. */
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;

/** How often a {@linkcode LogCap} looks at its files unless told: 1 s. */
export const DEFAULT_LOG_CAP_INTERVAL_MS = 1000;

/** What a cap in progress is doing; recorded so an interrupted cap can be settled. */
export type PendingLogCap =
  | {
    readonly op: "collapse";
    /** Bytes being collapsed from offset 0. */
    readonly length: number;
    /** The file's size just before. */
    readonly size: number;
    /** How many bytes the two hashes cover. */
    readonly check: number;
    /** SHA-256 (hex) of the file's first `check` bytes before the collapse. */
    readonly before: string;
    /** SHA-256 (hex) of the `check` bytes at `length`: the file's first ones after it. */
    readonly after: string;
  }
  | {
    readonly op: "punch";
    /** File offsets of the range being punched. */
    readonly from: number;
    readonly to: number;
  };

/** The content of a log's `.dropped` sidecar (see the module notes). */
export interface LogDrops {
  /** Even when stable, odd while a cap is in progress. */
  readonly seq: number;
  /** Bytes removed from the file's head: file offset = stream offset - `collapsed`. */
  readonly collapsed: number;
  /** Stream offset of the oldest byte still readable; at least `collapsed`. */
  readonly dropped: number;
  /** Set while `seq` is odd. */
  readonly pending?: PendingLogCap;
}

/** What a log with no sidecar has dropped: nothing. */
export const NO_LOG_DROPS: LogDrops = Object.freeze({ seq: 0, collapsed: 0, dropped: 0 });

/** The logging that capping does (a pino logger fits). */
export interface LogCapLogger {
  /** Fallbacks, failures, interrupted caps settled; each at most once per file and kind. */
  warn(obj: object, msg: string): void;
  /** Each cap: file, bytes dropped, how. */
  debug?(obj: object, msg: string): void;
}

/** Timer functions, injectable so tests can drive {@linkcode LogCap.start}. */
export interface LogCapTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Options for {@linkcode LogCap}. */
export interface LogCapOptions {
  /** Each file's cap in bytes; a file over it is brought down to at most 3/4 of it. */
  readonly maxBytes: number;
  /** Pause between two passes over the tracked files; 1000 ms unless told. */
  readonly intervalMs?: number;
  /** Where warnings and cap events go; nowhere unless told. */
  readonly logger?: LogCapLogger;
  /** Called after each cap with the bytes it dropped (e.g. for a counter). */
  readonly onCap?: (path: string, bytes: number) => void;
  /** `globalThis`'s timers unless told. */
  readonly timers?: LogCapTimers;
}

/** The sidecar of the log at `logPath`: `<logPath>.dropped`. */
export function logDropsPath(logPath: string): string {
  return `${logPath}.dropped`;
}

/**
 * Reads the sidecar of the log at `logPath`; `undefined` when there is none
 * (nothing was ever dropped, or the log was removed). Throws on a sidecar that
 * is not one.
 */
export async function readLogDrops(logPath: string): Promise<LogDrops | undefined> {
  const path = logDropsPath(logPath);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  return parseLogDrops(text, path);
}

function parseLogDrops(text: string, path: string): LogDrops {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  const v = value as Record<string, unknown> | undefined;
  const count = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
  if (
    typeof v !== "object" || v === null || !count(v.seq) || !count(v.collapsed) ||
    !count(v.dropped) || (v.dropped as number) < (v.collapsed as number)
  ) {
    throw new Error(`${path} is not a log drop record: ${JSON.stringify(text.slice(0, 200))}`);
  }
  const drops: LogDrops = {
    seq: v.seq as number,
    collapsed: v.collapsed as number,
    dropped: v.dropped as number,
  };
  return v.pending === undefined ? drops : { ...drops, pending: v.pending as PendingLogCap };
}

/** Replaces the sidecar atomically: readers see the old record or the new one. */
async function writeLogDrops(logPath: string, drops: LogDrops): Promise<void> {
  const path = logDropsPath(logPath);
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(drops) + "\n");
  await Deno.rename(tmp, path);
}

/**
 * Removes the log at `logPath` and its sidecars; a missing one is no error.
 * The runtimes call it instead of removing the log alone. A {@linkcode LogCap}
 * tracking the file must have untracked it first ({@linkcode LogCap.remove}
 * does both), or a cap in flight could write the sidecar again.
 */
export async function removeLogFile(logPath: string): Promise<void> {
  // The sidecar first: a log left without it (if removing the log then fails)
  // reads consistently from its current start, whereas a sidecar left
  // without its log would misplace a later log of the same name.
  for (const path of [logDropsPath(logPath), `${logDropsPath(logPath)}.tmp`, logPath]) {
    await removeIfPresent(path);
  }
}

async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/**
 * Caps the log at `logPath` once, if it is over `maxBytes`: see the module
 * notes. Resolves to the bytes dropped (0 when under the cap, missing, or
 * when the file system supports no method). Throws when `fallocate` fails
 * for another reason than lack of support. For one-off use: do not call it
 * on a file that a {@linkcode LogCap} tracks, as the two would not take turns.
 */
export async function capLogFile(
  logPath: string,
  maxBytes: number,
  opts: { readonly logger?: LogCapLogger } = {},
): Promise<number> {
  checkMaxBytes(maxBytes);
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(logPath);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return 0;
    throw err;
  }
  return await capTracked(new TrackedLog(logPath), stat, maxBytes, opts.logger);
}

/** Files stat'ed at once in a pass. */
const STAT_BATCH = 64;

/**
 * Keeps every tracked log file under `maxBytes`: every `intervalMs` (after
 * {@linkcode LogCap.start}) it stats each tracked file and caps those over
 * (see the module notes). Passes never overlap; files are capped one at a
 * time. Failures are logged (once per file and kind), never thrown.
 *
 * @example
 * ```ts
 * const cap = new LogCap({ maxBytes: 10 << 20, logger });
 * cap.start();
 * cap.track("/var/lib/fsb/logs/sb-1.log");
 * // ... when the sandbox is deleted:
 * await cap.remove("/var/lib/fsb/logs/sb-1.log");
 * await cap.close();
 * ```
 */
export class LogCap {
  readonly #maxBytes: number;
  readonly #intervalMs: number;
  readonly #logger: LogCapLogger | undefined;
  readonly #onCap: ((path: string, bytes: number) => void) | undefined;
  readonly #timers: LogCapTimers;
  readonly #files = new Map<string, TrackedLog>();
  #pass: Promise<void> = Promise.resolve();
  #started = false;
  #closed = false;
  #timer: unknown = undefined;

  constructor(opts: LogCapOptions) {
    checkMaxBytes(opts.maxBytes);
    const intervalMs = opts.intervalMs ?? DEFAULT_LOG_CAP_INTERVAL_MS;
    if (!(intervalMs > 0)) throw new RangeError(`intervalMs must be positive, got ${intervalMs}`);
    this.#maxBytes = opts.maxBytes;
    this.#intervalMs = intervalMs;
    this.#logger = opts.logger;
    this.#onCap = opts.onCap;
    this.#timers = opts.timers ?? {
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (handle) => clearTimeout(handle as number),
    };
  }

  /** The cap in bytes. */
  get maxBytes(): number {
    return this.#maxBytes;
  }

  /** How many files are tracked. */
  get size(): number {
    return this.#files.size;
  }

  /**
   * Caps the file at `path` from the next pass on (it may not exist yet).
   * Tracking it again is a no-op. Pass the path the runtime writes, as given
   * to the other methods.
   */
  track(path: string): void {
    if (!this.#files.has(path)) this.#files.set(path, new TrackedLog(path));
  }

  /** Stops capping `path`; resolves once a cap of it in flight (if any) has finished. */
  async untrack(path: string): Promise<void> {
    const log = this.#files.get(path);
    if (log === undefined) return;
    this.#files.delete(path);
    await log.busy;
  }

  /** Untracks `path`, then removes the log and its sidecar ({@linkcode removeLogFile}). */
  async remove(path: string): Promise<void> {
    await this.untrack(path);
    await removeLogFile(path);
  }

  /** Runs a pass every `intervalMs` until {@linkcode LogCap.close}. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#schedule();
  }

  /** Stops the passes; resolves once the one in flight (if any) has finished. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#pass;
  }

  /**
   * One pass over the tracked files, after the one in flight (if any): stats
   * each, caps those over `maxBytes`. Resolves when done.
   */
  capOnce(): Promise<void> {
    const pass = this.#pass.then(() => this.#sweep());
    this.#pass = pass.catch(() => {});
    return pass;
  }

  #schedule(): void {
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      if (this.#closed) return;
      this.capOnce().finally(() => {
        if (!this.#closed) this.#schedule();
      });
    }, this.#intervalMs);
  }

  async #sweep(): Promise<void> {
    const logs = [...this.#files.values()];
    for (let i = 0; i < logs.length; i += STAT_BATCH) {
      const batch = logs.slice(i, i + STAT_BATCH);
      const stats = await Promise.all(
        batch.map((log) => Deno.stat(log.path).catch((err: unknown) => err)),
      );
      for (let j = 0; j < batch.length; j++) {
        const log = batch[j];
        const stat = stats[j];
        // Untracked meanwhile: the caller may be removing it.
        if (this.#files.get(log.path) !== log) continue;
        if (!isFileInfo(stat)) {
          if (!(stat instanceof Deno.errors.NotFound)) {
            warnOnce(log, this.#logger, "stat", { err: String(stat) }, "cannot stat a log file");
          }
          continue;
        }
        // A file's first pass reads its sidecar (settling a cap an earlier
        // agent left half done); later ones touch only files over the cap.
        if (stat.size <= this.#maxBytes && log.drops !== undefined && !log.unsaved) continue;
        await this.#capOne(log, stat);
      }
    }
  }

  async #capOne(log: TrackedLog, stat: Deno.FileInfo): Promise<void> {
    const run = log.busy.then(() => capTracked(log, stat, this.#maxBytes, this.#logger));
    log.busy = run.catch(() => {});
    try {
      const bytes = await run;
      if (bytes > 0) this.#onCap?.(log.path, bytes);
    } catch (err) {
      // Removed under the cap: nothing to say.
      if (err instanceof Deno.errors.NotFound) return;
      warnOnce(log, this.#logger, `cap:${errorKey(err)}`, { err: String(err) }, "cannot cap a log");
    }
  }
}

function isFileInfo(x: unknown): x is Deno.FileInfo {
  return typeof x === "object" && x !== null && "isFile" in x && "size" in x;
}

function checkMaxBytes(maxBytes: number): void {
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new RangeError(`maxBytes must be a positive integer, got ${maxBytes}`);
  }
}

/** One log's capping state. */
class TrackedLog {
  /** The last stable record (even `seq`), once loaded. */
  drops: LogDrops | undefined = undefined;
  /** `drops` is newer than the sidecar: writing it failed, and is retried. */
  unsaved = false;
  /** What the file system lets us do, learnt from `fallocate`'s answers. */
  mode: "collapse" | "punch" | "none" = "collapse";
  /** Warnings given, by kind. */
  readonly warned = new Set<string>();
  /** The cap in flight, if any. */
  busy: Promise<unknown> = Promise.resolve();

  constructor(readonly path: string) {}
}

function warnOnce(
  log: TrackedLog,
  logger: LogCapLogger | undefined,
  kind: string,
  obj: object,
  msg: string,
): void {
  if (log.warned.has(kind)) return;
  log.warned.add(kind);
  logger?.warn({ path: log.path, ...obj }, msg);
}

function errorKey(err: unknown): string {
  return err instanceof Error ? `${err.name}:${err.message}` : String(err);
}

/** Caps `log`, whose stat is `stat`, if it holds more than `maxBytes` live bytes. */
async function capTracked(
  log: TrackedLog,
  stat: Deno.FileInfo,
  maxBytes: number,
  logger: LogCapLogger | undefined,
): Promise<number> {
  if (log.drops === undefined) log.drops = await loadDrops(log, logger);
  if (log.unsaved) await saveDrops(log, log.drops);
  const size = stat.size;
  const drops = log.drops;
  const holeEnd = drops.dropped - drops.collapsed;
  if (size - holeEnd <= maxBytes || log.mode === "none") return 0;
  const block = stat.blksize !== null && stat.blksize > 0 ? stat.blksize : 4096;
  const keep = Math.floor(maxBytes * 3 / 4);
  // The kept bytes start at the first block boundary that leaves at most
  // `keep` of them, but never at or after the last byte's block.
  const cut = Math.min(alignUp(size - keep, block), alignDown(size - 1, block));
  if (log.mode === "collapse") {
    if (cut <= 0) return 0;
    const collapsed = await collapse(log, cut, size, block, logger);
    if (collapsed !== "unsupported") return collapsed;
    log.mode = "punch";
    warnOnce(
      log,
      logger,
      "punch",
      { fallback: "punch-hole" },
      "the file system cannot collapse a log's head; punching holes instead (disk use is capped, the file's apparent size is not)",
    );
  }
  if (cut <= holeEnd) return 0;
  const punched = await punch(log, holeEnd, cut, logger);
  if (punched !== "unsupported") return punched;
  log.mode = "none";
  warnOnce(
    log,
    logger,
    "none",
    {},
    "the file system can neither collapse nor punch a log's head; it will grow without a cap",
  );
  return 0;
}

async function collapse(
  log: TrackedLog,
  length: number,
  size: number,
  block: number,
  logger: LogCapLogger | undefined,
): Promise<number | "unsupported"> {
  const drops = log.drops!;
  const check = Math.min(block, size - length);
  const [before, after] = await Promise.all([
    hashRange(log.path, 0, check),
    hashRange(log.path, length, check),
  ]);
  await saveDrops(log, {
    ...drops,
    seq: drops.seq + 1,
    pending: { op: "collapse", length, size, check, before, after },
  });
  const result = await fallocate(
    ["--collapse-range", "--offset", "0", "--length", `${length}`],
    log.path,
  );
  if (result === "ok") {
    const collapsed = drops.collapsed + length;
    await commit(log, {
      seq: drops.seq + 2,
      collapsed,
      dropped: Math.max(drops.dropped, collapsed),
    });
    logger?.debug?.({ path: log.path, bytes: length, how: "collapse" }, "capped a log");
    return length;
  }
  if (await settleFailure(log, drops)) return 0;
  if (result === "unsupported") return "unsupported";
  throw new Error(`fallocate --collapse-range of ${log.path} failed: ${result.error}`);
}

async function punch(
  log: TrackedLog,
  from: number,
  to: number,
  logger: LogCapLogger | undefined,
): Promise<number | "unsupported"> {
  const drops = log.drops!;
  await saveDrops(log, { ...drops, seq: drops.seq + 1, pending: { op: "punch", from, to } });
  const result = await punchRange(log.path, from, to);
  if (result === "ok") {
    await commit(log, {
      seq: drops.seq + 2,
      collapsed: drops.collapsed,
      dropped: drops.collapsed + to,
    });
    logger?.debug?.({ path: log.path, bytes: to - from, how: "punch-hole" }, "capped a log");
    return to - from;
  }
  if (await settleFailure(log, drops)) return 0;
  if (result === "unsupported") return "unsupported";
  throw new Error(`fallocate --punch-hole of ${log.path} failed: ${result.error}`);
}

function punchRange(path: string, from: number, to: number) {
  return fallocate(["--punch-hole", "--offset", `${from}`, "--length", `${to - from}`], path);
}

/**
 * After a failed `fallocate` nothing moved: the record goes back to stable
 * with the old counts. If the log is gone (removed under us), so is the
 * sidecar, and this says so (true): the failure was that, not worth a word.
 */
async function settleFailure(log: TrackedLog, drops: LogDrops): Promise<boolean> {
  const stable = { seq: drops.seq + 2, collapsed: drops.collapsed, dropped: drops.dropped };
  try {
    await Deno.lstat(log.path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    log.drops = stable;
    log.unsaved = false;
    await removeIfPresent(logDropsPath(log.path));
    return true;
  }
  await saveDrops(log, stable);
  return false;
}

/**
 * Records the outcome of a cap that worked; if the log was removed meanwhile
 * (by a runtime that did not wait for {@linkcode LogCap.untrack}), removes the
 * sidecar this wrote, so none is left behind.
 */
async function commit(log: TrackedLog, drops: LogDrops): Promise<void> {
  await saveDrops(log, drops);
  try {
    await Deno.lstat(log.path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    await removeIfPresent(logDropsPath(log.path));
  }
}

/** Records `drops` in memory first, so a failed write is retried rather than forgotten. */
async function saveDrops(log: TrackedLog, drops: LogDrops): Promise<void> {
  log.drops = drops;
  log.unsaved = true;
  await writeLogDrops(log.path, drops);
  log.unsaved = false;
}

/** Reads the sidecar, settling a cap that an earlier agent left half done. */
async function loadDrops(log: TrackedLog, logger: LogCapLogger | undefined): Promise<LogDrops> {
  const drops = await readLogDrops(log.path) ?? NO_LOG_DROPS;
  if (drops.seq % 2 === 0) return drops;
  const pending = drops.pending;
  let applied = false;
  if (pending?.op === "collapse") {
    // Writers only append and only a collapse shrinks; failing that, the
    // file starts with what followed the collapsed range, or with what it
    // started with before.
    const { size } = await Deno.stat(log.path);
    applied = size < pending.size ||
      (size >= pending.check && await hashRange(log.path, 0, pending.check) === pending.after);
  } else if (pending?.op === "punch") {
    // Punching is idempotent: do it (again) and count it done.
    applied = (await punchRange(log.path, pending.from, pending.to)) === "ok";
  }
  let next: LogDrops = { seq: drops.seq + 1, collapsed: drops.collapsed, dropped: drops.dropped };
  if (applied && pending?.op === "collapse") {
    const collapsed = drops.collapsed + pending.length;
    next = { seq: drops.seq + 1, collapsed, dropped: Math.max(drops.dropped, collapsed) };
  } else if (applied && pending?.op === "punch") {
    next = { ...next, dropped: Math.max(drops.dropped, drops.collapsed + pending.to) };
  }
  logger?.warn(
    { path: log.path, op: pending?.op, applied },
    "settled a log cap that was interrupted",
  );
  await saveDrops(log, next);
  return next;
}

type FallocateResult = "ok" | "unsupported" | { readonly error: string };

/** Runs `fallocate ARGS PATH`; "unsupported" for EOPNOTSUPP, EINVAL, or no `fallocate`. */
async function fallocate(args: string[], path: string): Promise<FallocateResult> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("fallocate", {
      args: [...args, "--", path],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      // Untranslated messages, which are what we recognise.
      env: { LC_ALL: "C" },
    }).output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return "unsupported";
    throw err;
  }
  if (output.success) return "ok";
  const error = new TextDecoder().decode(output.stderr).trim();
  if (/Operation not supported|Invalid argument/.test(error)) return "unsupported";
  return { error: error || `exit code ${output.code}` };
}

async function hashRange(path: string, offset: number, length: number): Promise<string> {
  const bytes = new Uint8Array(length);
  let got = 0;
  const file = await Deno.open(path, { read: true });
  try {
    await file.seek(offset, Deno.SeekMode.Start);
    while (got < length) {
      const n = await file.read(bytes.subarray(got));
      if (n === null) break;
      got += n;
    }
  } finally {
    file.close();
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes.subarray(0, got)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function alignUp(n: number, block: number): number {
  return Math.ceil(n / block) * block;
}

function alignDown(n: number, block: number): number {
  return Math.floor(n / block) * block;
}
