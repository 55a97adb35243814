/**
 * An etcd lease kept alive by this process, with a local deadline: for
 * {@linkcode LeaderElection} (leader_election.ts), which explains why the
 * deadline counts from when a keepalive was sent.
 *
 * @module
 */
import type { Etcd3, IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from "etcd3";
import { UnavailableError } from "../registry/errors.ts";

/** Options for {@linkcode EtcdLease.grant}. */
export interface EtcdLeaseOptions {
  /** Milliseconds on a monotonic clock. */
  readonly now: () => number;
  /** Called once when the lease is lost: expired locally, or etcd says it is gone. */
  readonly onLost: (reason: Error) => void;
}

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

/** The pause before opening a new keepalive stream after one failed. */
const REOPEN_DELAY_MS = 100;

/**
 * A granted lease and its keepalives: one keepalive stream at a time, a
 * keepalive every third of the TTL (as Go's client does), a stream that fails
 * or stalls replaced by a new one (on whichever member `etcd3` picks next).
 */
export class EtcdLease {
  /** etcd's lease id, a decimal int64. */
  readonly id: string;
  /** The TTL etcd granted (it may raise the one asked for to its floor). */
  readonly ttlMs: number;
  #client: Etcd3;
  #now: () => number;
  #onLost: (reason: Error) => void;
  #deadline: number;
  #lossReason: Error | undefined;
  #ended = false;
  #stream: KeepAliveStream | undefined;
  #opening = false;
  /** When each keepalive on the current stream that etcd has not answered yet was sent. */
  #sent: number[] = [];
  #ticker: ReturnType<typeof setInterval>;
  #expiry: ReturnType<typeof setTimeout> | undefined;
  #reopen: ReturnType<typeof setTimeout> | undefined;
  #revoked: Promise<void> | undefined;

  /**
   * Grants a lease of `ttlSeconds` and starts keeping it alive. Rejects when
   * etcd does not grant it within the TTL.
   */
  static async grant(
    client: Etcd3,
    ttlSeconds: number,
    opts: EtcdLeaseOptions,
  ): Promise<EtcdLease> {
    const sentAt = opts.now();
    const res = await client.leaseClient.leaseGrant(
      { TTL: ttlSeconds },
      { deadline: Date.now() + ttlSeconds * 1000 },
    );
    return new EtcdLease(client, res.ID, Number(res.TTL) * 1000, sentAt, opts);
  }

  private constructor(
    client: Etcd3,
    id: string,
    ttlMs: number,
    sentAt: number,
    opts: EtcdLeaseOptions,
  ) {
    this.#client = client;
    this.id = id;
    this.ttlMs = ttlMs;
    this.#now = opts.now;
    this.#onLost = opts.onLost;
    this.#deadline = sentAt + ttlMs;
    this.#armExpiry();
    this.#ticker = setInterval(() => this.#tick(), ttlMs / 3);
    this.#open();
  }

  /** Whether the lease is surely alive in etcd: not ended, and the local deadline not passed. */
  alive(): boolean {
    return !this.#ended && this.#now() < this.#deadline;
  }

  /** Why the lease is no longer alive (or would be, if asked now). */
  lossReason(): Error {
    return this.#lossReason ??
      new UnavailableError(
        `Lease ${this.id} expired: no keepalive acknowledged within its ${this.ttlMs} ms TTL`,
      );
  }

  /** Stops keeping the lease alive, leaving it to expire in etcd. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    clearInterval(this.#ticker);
    clearTimeout(this.#expiry);
    clearTimeout(this.#reopen);
    this.#dropStream();
  }

  /** Ends the lease and revokes it in etcd, deleting its keys; best effort, never rejects. */
  revoke(): Promise<void> {
    this.end();
    this.#revoked ??= this.#client.leaseClient
      .leaseRevoke({ ID: this.id }, { deadline: Date.now() + this.ttlMs })
      .then(() => {}, () => {
        // Unreachable etcd, or the lease is gone already: either way it expires by itself.
      });
    return this.#revoked;
  }

  #tick(): void {
    if (this.#ended) return;
    if (!this.alive()) return this.#lose(this.lossReason());
    const stream = this.#stream;
    if (!stream) return this.#open();
    if (this.#sent.length > 0 && this.#now() - this.#sent[0] > this.ttlMs / 3) {
      // The member took a keepalive and sat on it (no quorum?): try another stream.
      this.#dropStream();
      return this.#open();
    }
    this.#sent.push(this.#now());
    stream.write({ ID: this.id });
  }

  #open(): void {
    if (this.#ended || this.#stream || this.#opening) return;
    this.#opening = true;
    this.#client.leaseClient.leaseKeepAlive().then((stream) => {
      this.#opening = false;
      // Cancelling makes the stream emit an error, which must have a listener.
      stream.on("error", () => this.#broken(stream));
      if (this.#ended) return stream.cancel();
      this.#stream = stream;
      this.#sent = [];
      stream.on("data", (res) => this.#acknowledged(stream, res));
      stream.on("end", () => this.#broken(stream));
      this.#tick();
    }, () => {
      this.#opening = false;
      this.#retryOpen();
    });
  }

  #acknowledged(stream: KeepAliveStream, res: ILeaseKeepAliveResponse): void {
    if (stream !== this.#stream || this.#ended) return;
    const sentAt = this.#sent.shift();
    const ttl = Number(res.TTL);
    if (ttl <= 0) {
      return this.#lose(new UnavailableError(`Lease ${this.id} expired: etcd no longer has it`));
    }
    if (sentAt === undefined || !this.alive()) return;
    this.#deadline = Math.max(this.#deadline, sentAt + ttl * 1000);
    this.#armExpiry();
  }

  #broken(stream: KeepAliveStream): void {
    if (stream !== this.#stream) return;
    this.#dropStream();
    this.#retryOpen();
  }

  #retryOpen(): void {
    if (this.#ended) return;
    clearTimeout(this.#reopen);
    this.#reopen = setTimeout(() => this.#open(), REOPEN_DELAY_MS);
  }

  #dropStream(): void {
    const stream = this.#stream;
    this.#stream = undefined;
    this.#sent = [];
    stream?.cancel();
  }

  /** A timer for the deadline, so the loss is reported even when nobody asks `alive()`. */
  #armExpiry(): void {
    clearTimeout(this.#expiry);
    this.#expiry = setTimeout(() => {
      if (this.#ended) return;
      if (this.alive()) return this.#armExpiry();
      this.#lose(this.lossReason());
    }, Math.max(0, this.#deadline - this.#now()));
  }

  #lose(reason: Error): void {
    if (this.#ended) return;
    this.#lossReason = reason;
    this.end();
    this.#onLost(reason);
  }
}
