/**
 * A {@linkcode LeaderElection} candidate in its own process, so that a test
 * can SIGSTOP and SIGCONT it as the scenario has it. Run as
 * `deno run -A _leader_election_candidate.ts '<CandidateConfig as JSON>'`.
 *
 * Every 50 ms it reports a `tick` with whether it leads; while it leads, it
 * writes `writesKey` fenced by its lease. The first tick after losing the
 * lead, it also tries one write with the fence it held last, which etcd must
 * refuse. It reports on stdout, one JSON {@linkcode CandidateReport} a line.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Etcd3 } from "etcd3";
import { LeaderElection, type LeaderFence } from "../../controller/leader_election.ts";

/** What the candidate is told on its command line. */
export interface CandidateConfig {
  readonly endpoints: string[];
  readonly name: string;
  readonly id: string;
  readonly ttlSeconds: number;
  readonly writesKey: string;
}

/** One line of the candidate's stdout. */
export type CandidateReport =
  | { readonly event: "elected" }
  | { readonly event: "deposed"; readonly reason: string }
  | { readonly event: "tick"; readonly leading: boolean }
  | { readonly event: "write"; readonly ok: boolean }
  | { readonly event: "staleWrite"; readonly ok: boolean };

const TICK_MS = 50;

function report(line: CandidateReport): void {
  console.log(JSON.stringify(line));
}

if (import.meta.main) {
  const config = JSON.parse(Deno.args[0]) as CandidateConfig;
  const election = new LeaderElection({
    endpoints: config.endpoints,
    name: config.name,
    id: config.id,
    ttlSeconds: config.ttlSeconds,
    onElected: () => report({ event: "elected" }),
    onDeposed: (reason) => report({ event: "deposed", reason: reason.message }),
  });
  const writer = new Etcd3({ hosts: config.endpoints.map((h) => `http://${h}`) });
  let lastFence: LeaderFence | undefined;
  let seq = 0;
  const write = async (fence: LeaderFence): Promise<boolean> => {
    const res = await writer.kv.txn({
      compare: election.fenceCompares(fence),
      success: [{
        request_put: {
          key: Buffer.from(config.writesKey),
          value: Buffer.from(`${config.id} ${++seq}`),
        },
      }],
      failure: [],
    });
    return res.succeeded;
  };
  let busy = false;
  const ticker = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const leading = election.isLeader;
      report({ event: "tick", leading });
      if (leading) {
        lastFence = election.fence();
        report({ event: "write", ok: await write(lastFence) });
      } else if (lastFence) {
        const stale = lastFence;
        lastFence = undefined;
        report({ event: "staleWrite", ok: await write(stale) });
      }
    } finally {
      busy = false;
    }
  }, TICK_MS);
  election.start();
  Deno.addSignalListener("SIGTERM", async () => {
    clearInterval(ticker);
    await election.close();
    writer.close();
    Deno.exit(0);
  });
}
