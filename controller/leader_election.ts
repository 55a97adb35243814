/**
 * Leader election among controllers over etcd v3 (DESIGN section 15).
 *
 * The classic recipe, written here rather than taken from `etcd3`'s
 * `Election`, because that one hides what a fenced leader needs: its
 * lease's keepalives only report a loss after twice the TTL, measured on the
 * wall clock from the time a reply arrived, and it keeps the key's create
 * revision private. Here:
 *
 * - Each candidate grants a lease and puts `NAME` + the lease id in hex (the
 *   key Go's `concurrency.Election` and `etcdctl elect` use) with its id as
 *   the value, attached to the lease.
 * - The candidate whose key has the lowest create revision leads. Every
 *   instance watches the prefix, so `leader()` is known to followers too.
 * - The leader's claim ends at a local deadline on a monotonic clock: the
 *   time the last acknowledged keepalive was *sent*, plus the TTL etcd
 *   granted. etcd starts the TTL when it receives the request, so its own
 *   expiry is never earlier, and no other candidate can be elected before
 *   this one has stopped calling itself leader. A process that was stopped
 *   (SIGSTOP) past its deadline reads `isLeader === false` the moment it runs
 *   again, before any timer or etcd reply has had a chance to say so.
 * - Writes are fenced in etcd itself: {@linkcode LeaderElection.fenceCompares}
 *   gives the compares "my election key still exists, created at my revision,
 *   on my lease", which fail once the lease has expired or was revoked.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Etcd3 } from "etcd3";
import type { ICompare, IKeyValue, Watcher } from "etcd3";
import { UnavailableError } from "../registry/errors.ts";
import { EtcdLease } from "./_etcd_lease.ts";

/** Options for {@linkcode LeaderElection}. */
export interface LeaderElectionOptions {
  /** The etcd members, each `host:port`. */
  readonly endpoints: readonly string[];
  /** The election's key prefix, e.g. `/fsb/election/controller/`; every candidate uses the same. */
  readonly name: string;
  /** This candidate's identity as others see it: the controller's advertise address. */
  readonly id: string;
  /** The lease's TTL in seconds (default 5): how long a stopped or cut-off leader keeps the lead. */
  readonly ttlSeconds?: number;
  /** Milliseconds on a monotonic clock; default `performance.now`. Tests skew it. */
  readonly now?: () => number;
  /** Called when this candidate becomes leader, with the fence its writes must carry. */
  readonly onElected?: (fence: LeaderFence) => void;
  /**
   * Called when this candidate stops leading: its lease expired or could not
   * be kept alive, its key was deleted, or it resigned. The leader must stop
   * serving writes at once; `isLeader` is already false when this runs.
   */
  readonly onDeposed?: (reason: Error) => void;
  /** Called when the observed leader changes (`undefined`: none). */
  readonly onLeaderChange?: (leader: string | undefined) => void;
  /**
   * Called with failures that the election retries by itself (etcd
   * unreachable, a watch that broke); default: ignored, as `isLeader` and
   * `leader()` already reflect them.
   */
  readonly onError?: (err: Error) => void;
}

/** What identifies a leader's term in etcd; see {@linkcode LeaderElection.fence}. */
export interface LeaderFence {
  /** The election key, absolute (not under any namespace). */
  readonly key: string;
  /** The lease the key is attached to, as etcd's decimal int64. */
  readonly leaseId: string;
  /** The key's create revision, decimal. */
  readonly createRevision: string;
}

/** A candidate's key as the watch last showed it. */
interface Candidate {
  readonly createRevision: bigint;
  readonly value: string;
}

const DEFAULT_TTL_SECONDS = 5;
const RETRY_MS = 250;

/**
 * One controller's part in an election: it campaigns once started, leads
 * while its key is the oldest and its lease is alive, and re-campaigns (as a
 * follower, with a new lease) after losing the lead, until resigned or closed.
 *
 * `leader()` is what the watch last showed: on a member cut off from its
 * quorum the watch goes quiet rather than failing, so it may name a leader
 * that has stepped down; `isLeader` never errs that way. After etcd was
 * wholly unreachable, `etcd3`'s per-member circuit breakers (open for 5 s after
 * 3 failures) delay the next campaign by up to 5 s.
 */
export class LeaderElection {
  #client: Etcd3;
  #name: string;
  #id: string;
  #ttlSeconds: number;
  #now: () => number;
  #opts: LeaderElectionOptions;
  #campaigning = false;
  #closed = false;
  /** The lease of the current campaign, until it is lost, resigned or replaced. */
  #lease: EtcdLease | undefined;
  /** The current campaign's key and create revision, once its put committed. */
  #claim: LeaderFence | undefined;
  /** Whether the watch has shown the claim's key: from then on, its absence means it was deleted. */
  #claimSeen = false;
  #leading = false;
  #candidates = new Map<string, Candidate>();
  #leader: string | undefined;
  #observing: Promise<void> | undefined;
  #campaignLoop: Promise<void> | undefined;
  #stopObserving = () => {};
  #wake = new AbortController();

  /** Connects lazily to etcd; nothing happens before {@linkcode start}. */
  constructor(opts: LeaderElectionOptions) {
    if (opts.endpoints.length === 0) throw new RangeError("LeaderElection needs an etcd endpoint");
    this.#opts = opts;
    this.#name = opts.name;
    this.#id = opts.id;
    this.#ttlSeconds = opts.ttlSeconds ?? DEFAULT_TTL_SECONDS;
    this.#now = opts.now ?? (() => performance.now());
    this.#client = new Etcd3({ hosts: opts.endpoints.map((h) => `http://${h}`) });
  }

  /**
   * Begins observing the election and campaigning in it. Failures are
   * retried in the background; a second call while campaigning does nothing.
   */
  start(): void {
    if (this.#closed) {
      throw new UnavailableError(`Cannot start election "${this.#name}" as it is closed`);
    }
    this.#observing ??= this.#observe();
    if (this.#campaigning) return;
    this.#campaigning = true;
    this.#campaignLoop = this.#campaign();
  }

  /**
   * Whether this candidate leads now: elected, and its lease's TTL has not
   * run out since the last keepalive etcd acknowledged. Checked against the
   * clock on every read, so it turns false exactly at the deadline.
   */
  get isLeader(): boolean {
    if (!this.#leading) return false;
    if (this.#lease?.alive()) return true;
    // Past the deadline before the lease's own timer ran (after a SIGSTOP, say): depose now.
    this.#lost(this.#lease, this.#lease?.lossReason() ?? new UnavailableError("lease gone"));
    return false;
  }

  /** The current leader's id as last observed in etcd, or undefined when there is none (yet). */
  leader(): string | undefined {
    return this.#leader;
  }

  /**
   * This leader's fence: the key, lease and create revision that a write's
   * transaction must find unchanged. Throws {@linkcode UnavailableError}
   * when not leading, so a caller cannot take a fence after losing the lead.
   */
  fence(): LeaderFence {
    if (!this.isLeader || !this.#claim) {
      throw new UnavailableError(
        `Cannot fence a write as "${this.#id}" does not lead election "${this.#name}"` +
          (this.#leader ? `; the leader is "${this.#leader}"` : ""),
      );
    }
    return this.#claim;
  }

  /**
   * The compares that guard a write with this leader's {@linkcode fence}, for
   * `client.kv.txn({ compare: [...fenceCompares(), ...own], success, failure })`.
   * With `etcd3`'s builder on an un-namespaced client the same reads
   * `client.if(f.key, "Create", "==", f.createRevision).and(f.key, "Lease", "==", f.leaseId)`;
   * under `client.namespace(p)` the key must be given relative to `p`.
   * Without an argument, throws like {@linkcode fence} when not leading; with
   * a fence kept from an earlier term, gives compares that etcd will refuse.
   */
  fenceCompares(fence: LeaderFence = this.fence()): ICompare[] {
    const key = Buffer.from(fence.key);
    return [
      { key, target: "Create", result: "Equal", create_revision: fence.createRevision },
      { key, target: "Lease", result: "Equal", lease: fence.leaseId },
    ];
  }

  /**
   * Gives up the lead (or the candidacy): stops leading at once, then revokes
   * the lease so etcd deletes the key and the next candidate leads without
   * waiting for the TTL. Keeps observing; {@linkcode start}, once this has
   * resolved, campaigns again (with a new key, behind those waiting).
   */
  async resign(): Promise<void> {
    this.#campaigning = false;
    this.#wakeUp();
    const lease = this.#lease;
    this.#lost(lease, new UnavailableError(`"${this.#id}" resigned from election "${this.#name}"`));
    await this.#campaignLoop;
    await lease?.revoke();
  }

  /** Resigns, stops observing and closes the etcd connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.resign();
    this.#closed = true;
    this.#wakeUp();
    this.#stopObserving();
    await this.#observing;
    this.#client.close();
  }

  async #campaign(): Promise<void> {
    while (this.#campaigning) {
      if (this.#lease) {
        // Campaigning or leading: sleep until the lease is lost or we resign.
        await this.#sleep(Infinity);
        continue;
      }
      let lease: EtcdLease | undefined;
      try {
        lease = await EtcdLease.grant(this.#client, this.#ttlSeconds, {
          now: this.#now,
          onLost: (reason) => this.#lost(lease, reason),
        });
        if (!this.#campaigning) {
          await lease.revoke();
          return;
        }
        this.#lease = lease;
        this.#claim = undefined;
        const claim = await this.#put(lease);
        if (this.#lease !== lease) continue;
        this.#claim = claim;
        this.#claimSeen = false;
        this.#evaluate();
      } catch (err) {
        this.#report(err);
        if (lease && this.#lease === lease) this.#lost(lease, asError(err));
        else await lease?.revoke();
        await this.#sleep(RETRY_MS);
      }
    }
  }

  /** Puts this candidate's key on `lease`; a retried put that already landed is recognised by its lease. */
  async #put(lease: EtcdLease): Promise<LeaderFence> {
    const key = `${this.#name}${BigInt(lease.id).toString(16)}`;
    const res = await this.#client
      .if(key, "Create", "==", 0)
      .then(this.#client.put(key).value(this.#id).lease(lease.id))
      .else(this.#client.get(key))
      .options({ deadline: Date.now() + lease.ttlMs })
      .commit();
    if (res.succeeded) return { key, leaseId: lease.id, createRevision: res.header.revision };
    const kv = res.responses[0]?.response_range?.kvs[0];
    if (!kv || kv.lease !== lease.id) {
      throw new UnavailableError(
        `Cannot campaign in election "${this.#name}": key "${key}" is taken`,
      );
    }
    return { key, leaseId: lease.id, createRevision: kv.create_revision };
  }

  /** Ends `lease`'s term if it is the current one: depose, then let the campaign loop start over. */
  #lost(lease: EtcdLease | undefined, reason: Error): void {
    if (lease === undefined || lease !== this.#lease) return;
    this.#lease = undefined;
    this.#claim = undefined;
    lease.end();
    // Whatever ended the term, etcd may still hold the lease (a deleted key, a broken stream): free it.
    lease.revoke().catch(() => {});
    const wasLeading = this.#leading;
    this.#leading = false;
    this.#wakeUp();
    // Deferred, so that a caller reading isLeader is not re-entered by the callback.
    if (wasLeading) queueMicrotask(() => this.#call(() => this.#opts.onDeposed?.(reason)));
  }

  /** Watches the election's keys, re-listing after a broken watch, until closed. */
  async #observe(): Promise<void> {
    while (!this.#closed) {
      let watcher: Watcher | undefined;
      try {
        const res = await this.#client.getAll().prefix(this.#name)
          .options({ deadline: Date.now() + this.#ttlSeconds * 1000 }).exec();
        if (this.#closed) return;
        this.#candidates = new Map(res.kvs.map((kv) => [kv.key.toString(), candidate(kv)]));
        const from = (BigInt(res.header.revision) + 1n).toString();
        // watcher() returns before any event can arrive, so none is missed between list and watch.
        const w = this.#client.watch().prefix(this.#name).startRevision(from).watcher();
        watcher = w;
        const broken = new Promise<void>((resolve, reject) => {
          w.on("error", reject);
          this.#stopObserving = resolve;
        });
        w.on("put", (kv: IKeyValue) => {
          this.#candidates.set(kv.key.toString(), candidate(kv));
          this.#evaluate();
        });
        w.on("delete", (kv: IKeyValue) => {
          this.#candidates.delete(kv.key.toString());
          this.#evaluate();
        });
        this.#evaluate();
        await broken;
      } catch (err) {
        this.#report(err);
      } finally {
        await watcher?.cancel().catch(() => {});
      }
      if (!this.#closed) await this.#sleep(RETRY_MS);
    }
  }

  /** Derives the leader from the candidates, and whether this one was just elected or lost its key. */
  #evaluate(): void {
    let oldest: [string, Candidate] | undefined;
    for (const entry of this.#candidates) {
      if (!oldest || entry[1].createRevision < oldest[1].createRevision) oldest = entry;
    }
    const leader = oldest?.[1].value;
    if (leader !== this.#leader) {
      this.#leader = leader;
      this.#call(() => this.#opts.onLeaderChange?.(leader));
    }
    const claim = this.#claim;
    const lease = this.#lease;
    if (!claim || !lease) return;
    if (!this.#candidates.has(claim.key)) {
      // Either our put has not come through the watch yet, or our key was deleted (expired, or by
      // hand): then neither leading nor waiting in line makes sense any more.
      if (this.#claimSeen || this.#leading) {
        this.#lost(lease, new UnavailableError(`Election key "${claim.key}" was deleted`));
      }
      return;
    }
    this.#claimSeen = true;
    if (!this.#leading && oldest?.[0] === claim.key && lease.alive()) {
      this.#leading = true;
      this.#call(() => this.#opts.onElected?.(claim));
    }
  }

  /** Resolves after `ms`, or early when the election's state changes. */
  #sleep(ms: number): Promise<void> {
    if (this.#closed && ms === Infinity) return Promise.resolve();
    const signal = this.#wake.signal;
    return new Promise((resolve) => {
      const timer = ms === Infinity ? undefined : setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done);
    });
  }

  #wakeUp(): void {
    this.#wake.abort();
    this.#wake = new AbortController();
  }

  /** Runs a caller's callback; what it throws must not break etcd3's stream handlers or our loops. */
  #call(callback: () => void): void {
    try {
      callback();
    } catch (err) {
      reportError(err);
    }
  }

  #report(err: unknown): void {
    if (!this.#closed) this.#opts.onError?.(asError(err));
  }
}

function candidate(kv: IKeyValue): Candidate {
  return { createRevision: BigInt(kv.create_revision), value: kv.value.toString() };
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
