/**
 * Who may call the controller (shared/DESIGN.md section 12): client tokens
 * with their namespaces, the cluster's join token, and each agent's
 * credential. Everything lives in the store, so whichever controller serves
 * accepts the same clients and agents; verified tokens are cached so a check
 * costs one map lookup on the FastPath.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { PermissionDeniedError, UnauthenticatedError } from "../registry/mod.ts";
import { RevisionConflictError, type Store, type StoreEntry } from "./store/mod.ts";

/** A verified caller. */
export interface Principal {
  /** The token's id (`-` when authentication is off). */
  readonly id: string;
  /** Every namespace, tokens and debug endpoints. */
  readonly admin: boolean;
  /** The namespaces it may use (empty for an admin: all). */
  readonly namespaces: ReadonlySet<string>;
  /** Unix milliseconds after which it no longer counts; Infinity for never. */
  readonly expireAtMs: number;
}

/** A token as stored: the secret only as its SHA-256. */
export interface TokenRecord {
  readonly id: string;
  /** `client` tokens call the FastPath; the `join` token registers agents. */
  readonly kind: "client" | "join";
  /** Hex SHA-256 of the secret. */
  readonly hash: string;
  readonly namespaces: string[];
  readonly admin: boolean;
  /** Unix seconds; 0 for never. */
  readonly expireTime: number;
  /** Unix seconds. */
  readonly createdAt: number;
}

/**
 * The cluster's admin and join secrets, kept in the store so that every
 * controller writes the same ones into its own `--data-dir`.
 */
export interface BootstrapSecrets {
  readonly admin: string;
  readonly join: string;
}

/** What the store holds for auth, by key prefix. */
export type AuthRecord =
  | TokenRecord
  | { readonly credential: string }
  | { readonly quota: number }
  | BootstrapSecrets;

/** A token as it may be shown: never its secret. */
export interface TokenView {
  readonly id: string;
  readonly namespaces: readonly string[];
  readonly admin: boolean;
  readonly expireTime: number;
  readonly createdAt: number;
}

/** Options for {@linkcode TokenAuth}. */
export interface TokenAuthOptions {
  readonly store: Store<AuthRecord>;
  /** Unix milliseconds now; `Date.now` unless told. */
  readonly now?: () => number;
  /** `false` turns checks off: every call is an admin (`--auth none`, loopback only). */
  readonly enabled?: boolean;
}

const TOKENS = "tokens/";
const AGENTS = "agent-credentials/";
const QUOTAS = "quotas/";
const BOOTSTRAP = "bootstrap-secrets";
const CACHE_LIMIT = 10_000;
const SECRET = /^fsb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

const ANYONE: Principal = {
  id: "-",
  admin: true,
  namespaces: new Set(),
  expireAtMs: Infinity,
};

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(sha256(a), "hex");
  const y = Buffer.from(sha256(b), "hex");
  return timingSafeEqual(x, y);
}

function randomHex(bytes: number): string {
  const buf = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
}

function randomSecret(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
}

/** The bearer value of an `authorization` header, or undefined. */
export function bearerOf(metadata: Readonly<Record<string, string>>): string | undefined {
  const header = metadata.authorization;
  if (header === undefined || !header.startsWith("Bearer ")) return undefined;
  return header.slice("Bearer ".length).trim();
}

/**
 * Tokens, the join token and agent credentials; see the module notes.
 * {@linkcode TokenAuth.load} reads the store once; every change is written
 * through to it.
 */
export class TokenAuth {
  readonly #store: Store<AuthRecord>;
  readonly #now: () => number;
  readonly #enabled: boolean;
  readonly #tokens = new Map<string, TokenRecord>();
  readonly #agents = new Map<string, string>();
  readonly #quotas = new Map<string, number>();
  /** Bearer secrets verified before, to the principal they stand for. */
  readonly #verified = new Map<string, Principal>();

  /** Creates the authority; {@linkcode TokenAuth.load} fills it. */
  constructor(opts: TokenAuthOptions) {
    this.#store = opts.store;
    this.#now = opts.now ?? Date.now;
    this.#enabled = opts.enabled ?? true;
  }

  /** Whether calls are checked at all. */
  get enabled(): boolean {
    return this.#enabled;
  }

  /** Reads tokens, agent credentials and quotas from the store, forgetting what it held before. */
  async load(): Promise<void> {
    const [tokens, agents, quotas] = await Promise.all([
      this.#store.list(TOKENS),
      this.#store.list(AGENTS),
      this.#store.list(QUOTAS),
    ]);
    this.#tokens.clear();
    this.#agents.clear();
    this.#quotas.clear();
    this.#verified.clear();
    this.#fill(tokens, agents, quotas);
  }

  #fill(
    tokens: readonly StoreEntry<AuthRecord>[],
    agents: readonly StoreEntry<AuthRecord>[],
    quotas: readonly StoreEntry<AuthRecord>[],
  ): void {
    for (const { key, value } of tokens) {
      this.#tokens.set(key.slice(TOKENS.length), value as TokenRecord);
    }
    for (const { key, value } of agents) {
      this.#agents.set(key.slice(AGENTS.length), (value as { credential: string }).credential);
    }
    for (const { key, value } of quotas) {
      this.#quotas.set(key.slice(QUOTAS.length), (value as { quota: number }).quota);
    }
  }

  /**
   * Writes the cluster's admin and join secrets into `files` (their paths;
   * mode 0600, the secret alone). A file that holds a valid token of its
   * kind is kept; otherwise the cluster's secret from the store is written
   * (so every controller on one store hands out the same ones); when that
   * is missing or no longer valid, a new token is made and recorded in the
   * store with a compare-and-set, so controllers starting at once agree on
   * one. Run after {@linkcode TokenAuth.load}, before serving.
   */
  async bootstrap(files: { admin: string; join: string }): Promise<void> {
    for (let attempt = 1;; attempt++) {
      const shared = await this.#store.get(BOOTSTRAP);
      const recorded = shared?.value as BootstrapSecrets | undefined;
      const made: string[] = [];
      const pick = async (path: string, kind: "client" | "join", theirs: string | undefined) => {
        const mine = await readSecret(path);
        if (mine !== undefined && this.#validOf(mine, kind)) return mine;
        if (theirs !== undefined && this.#validOf(theirs, kind)) return theirs;
        const { record, secret } = await this.#create({
          kind,
          namespaces: [],
          admin: kind === "client",
        });
        made.push(record.id);
        return secret;
      };
      const secrets: BootstrapSecrets = {
        admin: await pick(files.admin, "client", recorded?.admin),
        join: await pick(files.join, "join", recorded?.join),
      };
      if (recorded?.admin !== secrets.admin || recorded?.join !== secrets.join) {
        try {
          await this.#store.put(BOOTSTRAP, secrets, { expectRevision: shared?.revision ?? 0 });
        } catch (err) {
          if (!(err instanceof RevisionConflictError) || attempt >= 5) throw err;
          // Another controller recorded its secrets first: drop ours, take theirs.
          for (const id of made) {
            await this.#store.delete(`${TOKENS}${id}`);
            this.#tokens.delete(id);
          }
          await this.load();
          continue;
        }
      }
      await writeSecretIfChanged(files.admin, secrets.admin);
      await writeSecretIfChanged(files.join, secrets.join);
      return;
    }
  }

  /** Whether `secret` is a valid token of `kind`. */
  #validOf(secret: string, kind: "client" | "join"): boolean {
    const m = SECRET.exec(secret);
    const rec = m === null ? undefined : this.#tokens.get(m[1]);
    return rec?.kind === kind && this.#valid(rec, secret);
  }

  #valid(rec: TokenRecord, secret: string): boolean {
    const m = SECRET.exec(secret);
    if (m === null || m[1] !== rec.id) return false;
    if (rec.expireTime !== 0 && rec.expireTime * 1000 <= this.#now()) return false;
    return timingSafeEqual(Buffer.from(sha256(m[2]), "hex"), Buffer.from(rec.hash, "hex"));
  }

  /**
   * The caller behind a call's metadata. Throws UnauthenticatedError for a
   * missing, unknown, expired or revoked token (the join token included:
   * it registers agents and nothing else).
   */
  authenticate(metadata: Readonly<Record<string, string>>): Principal {
    if (!this.#enabled) return ANYONE;
    const secret = bearerOf(metadata);
    if (secret === undefined) {
      throw new UnauthenticatedError(
        "This call needs a token: send authorization: Bearer <token> (fsb token create)",
      );
    }
    const cached = this.#verified.get(secret);
    if (cached !== undefined && cached.expireAtMs > this.#now()) return cached;
    const m = SECRET.exec(secret);
    const rec = m === null ? undefined : this.#tokens.get(m[1]);
    if (rec === undefined || rec.kind !== "client" || !this.#valid(rec, secret)) {
      if (cached !== undefined) this.#verified.delete(secret);
      throw new UnauthenticatedError("The token is unknown, expired or revoked");
    }
    const principal: Principal = {
      id: rec.id,
      admin: rec.admin,
      namespaces: new Set(rec.namespaces),
      expireAtMs: rec.expireTime === 0 ? Infinity : rec.expireTime * 1000,
    };
    if (this.#verified.size >= CACHE_LIMIT) this.#verified.clear();
    this.#verified.set(secret, principal);
    return principal;
  }

  /** Whether `secret` is the cluster's valid join token. */
  isJoinToken(secret: string | undefined): boolean {
    if (!this.#enabled) return true;
    return secret !== undefined && this.#validOf(secret, "join");
  }

  /** The credential issued to agent `id`, if any. */
  agentCredential(id: string): string | undefined {
    return this.#agents.get(id);
  }

  /** Whether `secret` is agent `id`'s credential. */
  isAgentCredential(id: string, secret: string | undefined): boolean {
    const known = this.#agents.get(id);
    return known !== undefined && secret !== undefined && sameSecret(known, secret);
  }

  /** Issues agent `id` a new credential, replacing any before it. */
  async issueAgentCredential(id: string): Promise<string> {
    const credential = `fsba_${randomSecret()}`;
    await this.#store.put(`${AGENTS}${id}`, { credential });
    this.#agents.set(id, credential);
    return credential;
  }

  /** The most sandboxes at once in `namespace`, or undefined for no quota. */
  quota(namespace: string): number | undefined {
    return this.#quotas.get(namespace);
  }

  /** Creates a client token; resolves to it and its secret, which is not kept. */
  async create(req: {
    namespaces: readonly string[];
    admin: boolean;
    ttlSeconds: number;
    quota?: number;
  }): Promise<{ token: TokenView; secret: string }> {
    const made = await this.#create({
      kind: "client",
      namespaces: [...new Set(req.namespaces)].sort(),
      admin: req.admin,
      ttlSeconds: req.ttlSeconds,
    });
    if (req.quota !== undefined) {
      for (const ns of made.record.namespaces) {
        await this.#store.put(`${QUOTAS}${ns}`, { quota: req.quota });
        this.#quotas.set(ns, req.quota);
      }
    }
    return { token: viewOf(made.record), secret: made.secret };
  }

  async #create(req: {
    kind: "client" | "join";
    namespaces: string[];
    admin: boolean;
    ttlSeconds?: number;
  }): Promise<{ record: TokenRecord; secret: string }> {
    const id = randomHex(6);
    const secretPart = randomSecret();
    const nowSec = Math.floor(this.#now() / 1000);
    const record: TokenRecord = {
      id,
      kind: req.kind,
      hash: sha256(secretPart),
      namespaces: req.namespaces,
      admin: req.admin,
      expireTime: req.ttlSeconds ? nowSec + req.ttlSeconds : 0,
      createdAt: nowSec,
    };
    await this.#store.put(`${TOKENS}${id}`, record);
    this.#tokens.set(id, record);
    return { record, secret: `fsb_${id}_${secretPart}` };
  }

  /** The client tokens, oldest first; never their secrets. */
  list(): TokenView[] {
    return [...this.#tokens.values()]
      .filter((t) => t.kind === "client")
      .sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))
      .map(viewOf);
  }

  /** Revokes a client token at once (cached verifications included). Throws NotFound-like errors via the caller. */
  async revoke(id: string): Promise<TokenView | undefined> {
    const rec = this.#tokens.get(id);
    if (rec === undefined || rec.kind !== "client") return undefined;
    await this.#store.delete(`${TOKENS}${id}`);
    this.#tokens.delete(id);
    for (const [secret, p] of this.#verified) if (p.id === id) this.#verified.delete(secret);
    return viewOf(rec);
  }
}

function viewOf(rec: TokenRecord): TokenView {
  return {
    id: rec.id,
    namespaces: rec.namespaces,
    admin: rec.admin,
    expireTime: rec.expireTime,
    createdAt: rec.createdAt,
  };
}

/** Throws PermissionDeniedError unless `p` may use `namespace`. */
export function requireNamespace(p: Principal, namespace: string): void {
  if (p.admin || p.namespaces.has(namespace)) return;
  throw new PermissionDeniedError(
    `Token "${p.id}" may not use namespace "${namespace}"`,
  );
}

/** Throws PermissionDeniedError unless `p` is an admin. */
export function requireAdmin(p: Principal, what: string): void {
  if (!p.admin) throw new PermissionDeniedError(`Only an admin token may ${what}`);
}

/** The secret in `path`, trimmed, or undefined when there is no such file. */
async function readSecret(path: string): Promise<string | undefined> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/** Writes `secret` to `path` unless the file already holds it. */
async function writeSecretIfChanged(path: string, secret: string): Promise<void> {
  if (await readSecret(path) !== secret) await writeSecret(path, secret);
}

/** Writes a secret alone to `path`, readable by its owner only. */
async function writeSecret(path: string, secret: string): Promise<void> {
  await Deno.writeTextFile(`${path}.tmp`, `${secret}\n`, { mode: 0o600 });
  await Deno.chmod(`${path}.tmp`, 0o600);
  await Deno.rename(`${path}.tmp`, path);
}
