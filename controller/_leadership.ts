/**
 * Which controller serves (shared/DESIGN.md section 15). On SQLite there is
 * one controller and it always serves. On etcd every controller campaigns in
 * an election; the leader builds a *term*: a fresh Controller (registry,
 * sandboxes loaded from the store, recovery window) and TokenAuth, both
 * writing through a store view fenced by the leader's lease. Calls reach the
 * term only while the election says this controller leads, checked on every
 * call against the lease's deadline, so a leader that was stopped (SIGSTOP)
 * past its lease serves nothing when it runs again. Followers answer every
 * call with UNAVAILABLE naming the leader's address, which the CLI and agents
 * follow.
 *
 * @module
 */
import type { Logger } from "pino";
import { UnavailableError } from "../registry/errors.ts";
import type { Controller } from "./controller.ts";
import type { TokenAuth } from "./auth.ts";
import type { LeaderElection, LeaderFence } from "./leader_election.ts";

/** What serves calls while this controller leads. */
export interface Term {
  readonly controller: Controller;
  readonly auth: TokenAuth;
}

/** Builds and ends terms; see {@linkcode Leadership}. */
export interface TermFactory {
  /** A new term for `fence` (undefined: no election, the only controller); loaded and ready to serve. */
  open(fence: LeaderFence | undefined): Promise<Term>;
  /** Ends a term: stops its loops, drops its agent channels. Its writes already fail (fenced). */
  close(term: Term): Promise<void>;
}

/** Options for {@linkcode Leadership}. */
export interface LeadershipOptions {
  /** The election, or undefined when this controller is the only one (SQLite). */
  readonly election?: LeaderElection;
  /** This controller's advertised address (its id in the election). */
  readonly self: string;
  readonly terms: TermFactory;
  readonly logger: Logger<"timing">;
}

/**
 * The current term, if this controller leads; see the module notes. Owns the
 * switch between terms as the election reports them.
 */
export class Leadership {
  readonly #opts: LeadershipOptions;
  #term: Term | undefined;
  /** The term being opened, and the fence it was opened for. */
  #opening: { fence: LeaderFence; done: Promise<void> } | undefined;
  #closing = new Set<Promise<void>>();
  #closed = false;
  #elected: (() => void) | undefined;
  #electedOnce: Promise<void>;

  /** Starts nothing; {@linkcode Leadership.start} does. */
  constructor(opts: LeadershipOptions) {
    this.#opts = opts;
    this.#electedOnce = new Promise((resolve) => this.#elected = resolve);
  }

  /**
   * Without an election, opens the only term and resolves when it serves.
   * With one, starts campaigning (the election reports to
   * {@linkcode Leadership.elected}, {@linkcode Leadership.deposed} and
   * {@linkcode Leadership.leaderChanged}).
   */
  async start(): Promise<void> {
    const election = this.#opts.election;
    if (election === undefined) {
      this.#term = await this.#opts.terms.open(undefined);
      this.#elected?.();
      return;
    }
    election.start();
  }

  /** The election's `onLeaderChange`: logs it; a leader other than this one settles the start. */
  leaderChanged(leader: string | undefined): void {
    this.#opts.logger.info({ leader: leader ?? null }, "controller leader changed");
    if (leader !== undefined && leader !== this.#opts.self) this.#elected?.();
  }

  /**
   * Resolves once the election has settled for the first time: this
   * controller serves, or another is known to lead.
   */
  settled(): Promise<void> {
    return this.#electedOnce;
  }

  /** This controller's advertised address. */
  get self(): string {
    return this.#opts.self;
  }

  /** The election, when there is one (etcd). */
  get election(): LeaderElection | undefined {
    return this.#opts.election;
  }

  /** Whether this controller serves now. */
  get leading(): boolean {
    return this.#term !== undefined && (this.#opts.election?.isLeader ?? true);
  }

  /** The current leader's address, as last observed (this controller's own when it leads). */
  leader(): string | undefined {
    return this.#opts.election === undefined ? this.#opts.self : this.#opts.election.leader();
  }

  /** The serving term, or undefined when this controller does not serve now. */
  peek(): Term | undefined {
    return this.leading ? this.#term : undefined;
  }

  /**
   * The serving term. Throws UnavailableError naming the leader when this
   * controller does not lead, or saying why there is none to name.
   */
  current(): Term {
    const term = this.#term;
    if (term !== undefined && (this.#opts.election?.isLeader ?? true)) return term;
    throw this.notLeading();
  }

  /** The error a follower answers with; see {@linkcode Leadership.current}. */
  notLeading(): UnavailableError {
    const leader = this.#opts.election?.leader();
    if (this.#closed) return new UnavailableError("This controller is shutting down; retry");
    if (leader === undefined) {
      return new UnavailableError(
        "This controller does not lead and no leader is elected yet; retry",
      );
    }
    if (leader === this.#opts.self) {
      return new UnavailableError("This controller is taking the lead; retry");
    }
    return new UnavailableError(`This controller does not lead; the leader is at ${leader}`);
  }

  /** Ends the current term, waiting for it and any being opened or closed. */
  async close(): Promise<void> {
    this.#closed = true;
    const opening = this.#opening;
    this.#opening = undefined;
    await opening?.done;
    this.#end();
    await Promise.all([...this.#closing]);
  }

  /** The election's `onElected`: opens a term for `fence`, which serves once loaded. */
  elected(fence: LeaderFence): void {
    if (this.#closed) return;
    this.#opts.logger.info({ key: fence.key, lease: fence.leaseId }, "elected controller leader");
    const opening = {
      fence,
      done: this.#opts.terms.open(fence).then(
        (term) => {
          // Deposed (or closed) while loading: this term never serves.
          if (this.#opening !== opening) {
            this.#closeTerm(term);
            return;
          }
          this.#opening = undefined;
          this.#term = term;
          this.#elected?.();
        },
        (err) => {
          if (this.#opening === opening) this.#opening = undefined;
          this.#opts.logger.error({ err }, "cannot take the lead: resigning");
          // Let another controller lead; this one campaigns again behind it.
          this.#opts.election?.resign().then(() => {
            if (!this.#closed) this.#opts.election?.start();
          }).catch((e) => this.#opts.logger.warn({ err: e }, "resign failed"));
        },
      ),
    };
    this.#opening = opening;
  }

  /** The election's `onDeposed`: the term stops serving at once and closes in the background. */
  deposed(reason: Error): void {
    this.#opts.logger.warn({ reason: reason.message }, "no longer the controller leader");
    this.#opening = undefined;
    this.#end();
  }

  #end(): void {
    const term = this.#term;
    this.#term = undefined;
    if (term !== undefined) this.#closeTerm(term);
  }

  #closeTerm(term: Term): void {
    const closing = this.#opts.terms.close(term)
      .catch((err) => this.#opts.logger.warn({ err }, "closing a controller term failed"))
      .finally(() => this.#closing.delete(closing));
    this.#closing.add(closing);
  }
}
