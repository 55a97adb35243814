/**
 * LeaderElection against a real 3-member etcd cluster on loopback, with one
 * candidate in a child process to SIGSTOP. No fakes; one step skews the
 * election's injected clock to stand for time passing without a keepalive.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Etcd3 } from "etcd3";
import { LeaderElection, type LeaderElectionOptions } from "../../controller/leader_election.ts";
import { UnavailableError } from "../../registry/errors.ts";
import { eventually } from "../agent/runtime_contract.ts";
import { type EtcdCluster, startEtcdCluster } from "../support/etcd.ts";
import { ignoreWithout } from "../support/real_parts.ts";
import type { CandidateConfig, CandidateReport } from "./_leader_election_candidate.ts";

const CANDIDATE = new URL("./_leader_election_candidate.ts", import.meta.url).pathname;

/** A LeaderElection and what its callbacks reported. */
interface Probe {
  readonly id: string;
  readonly election: LeaderElection;
  readonly elected: number[];
  readonly deposed: Error[];
  readonly errors: Error[];
}

/** Every election a test step opens, closed in the end whatever happened. */
const opened: LeaderElection[] = [];

function probe(
  cluster: EtcdCluster,
  name: string,
  id: string,
  extra: Partial<LeaderElectionOptions> = {},
): Probe {
  const elected: number[] = [];
  const deposed: Error[] = [];
  const errors: Error[] = [];
  const election = new LeaderElection({
    endpoints: cluster.endpoints,
    name,
    id,
    ttlSeconds: 1,
    onElected: () => elected.push(performance.now()),
    onDeposed: (reason) => deposed.push(reason),
    onError: (err) => errors.push(err),
    ...extra,
  });
  opened.push(election);
  election.start();
  return { id, election, elected, deposed, errors };
}

function leaders(probes: Probe[]): Probe[] {
  return probes.filter((p) => p.election.isLeader);
}

/** Waits until exactly one probe leads and every probe observes it; returns it. */
async function oneLeader(probes: Probe[], ms = 10_000): Promise<Probe> {
  await eventually(
    "exactly one candidate leads and all see it",
    () => {
      const now = leaders(probes);
      return now.length === 1 && probes.every((p) => p.election.leader() === now[0].id);
    },
    ms,
  );
  return leaders(probes)[0];
}

async function closeAll(probes: Probe[]): Promise<void> {
  await Promise.all(probes.map((p) => p.election.close()));
}

/** A write to `key` guarded by `compares` (a fence's); whether etcd took it. */
async function fencedPut(
  client: Etcd3,
  compares: ReturnType<LeaderElection["fenceCompares"]>,
  key: string,
  value: string,
): Promise<boolean> {
  const res = await client.kv.txn({
    compare: compares,
    success: [{ request_put: { key: Buffer.from(key), value: Buffer.from(value) } }],
    failure: [],
  });
  return res.succeeded;
}

/** The index of the member etcd's raft currently follows. */
async function raftLeader(cluster: EtcdCluster): Promise<number> {
  for (const [i, member] of cluster.members.entries()) {
    if (!member.running) continue;
    const client = new Etcd3({ hosts: `http://${member.endpoint}` });
    try {
      const status = await client.maintenance.status();
      if (status.leader === status.header.member_id) return i;
    } finally {
      client.close();
    }
  }
  throw new Error("no etcd member leads");
}

/** Samples `check` every 20 ms for `ms`, failing at the first sample where it is false. */
async function throughout(what: string, check: () => boolean, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    assert.ok(check(), `no longer true: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test({
  name: "LeaderElection on a real 3-member etcd cluster",
  ignore: ignoreWithout("etcd"),
}, async (t) => {
  const cluster = await startEtcdCluster(3);
  const client = new Etcd3({ hosts: cluster.endpoints.map((e) => `http://${e}`) });
  try {
    await t.step("exactly one of three candidates leads, and all agree on leader()", async () => {
      const probes = ["a", "b", "c"].map((id) => probe(cluster, "/le/one/", id));
      try {
        const leader = await oneLeader(probes);
        assert.equal(leader.elected.length, 1);
        // Staying so for a while: nobody else is elected meanwhile, nobody deposed.
        await throughout("one leader", () => leaders(probes).length === 1, 1500);
        assert.deepEqual(probes.map((p) => p.deposed.length), [0, 0, 0]);
        assert.equal(probes.reduce((n, p) => n + p.elected.length, 0), 1);
        const fence = leader.election.fence();
        const kv = (await client.get(fence.key).exec()).kvs[0];
        assert.equal(kv.value.toString(), leader.id);
        assert.equal(kv.lease, fence.leaseId);
        assert.equal(kv.create_revision, fence.createRevision);
      } finally {
        await closeAll(probes);
      }
    });

    await t.step("another candidate leads at once when the leader resigns or closes", async () => {
      const probes = ["a", "b", "c"].map((id) => probe(cluster, "/le/handover/", id));
      try {
        const first = await oneLeader(probes);
        let started = performance.now();
        await first.election.resign();
        assert.equal(first.election.isLeader, false);
        assert.equal(
          first.deposed[0]?.message,
          `"${first.id}" resigned from election "/le/handover/"`,
        );
        const rest = probes.filter((p) => p !== first);
        const second = await oneLeader(rest);
        // Revoking the lease deletes the key: no waiting for the 1 s TTL.
        assert.ok(performance.now() - started < 1000, `${performance.now() - started} ms`);
        await eventually(
          "the resigned one sees the new leader",
          () => first.election.leader() === second.id,
        );
        started = performance.now();
        await second.election.close();
        const third = await oneLeader(rest.filter((p) => p !== second));
        assert.ok(performance.now() - started < 1000, `${performance.now() - started} ms`);
        // The resigned candidate campaigns again when started, behind the leader.
        first.election.start();
        await eventually("the restarted candidate has a key", async () => {
          const keys = await client.getAll().prefix("/le/handover/").keys();
          return keys.length === 2;
        });
        assert.equal(third.election.isLeader, true);
        assert.equal(first.election.isLeader, false);
      } finally {
        await closeAll(probes);
      }
    });

    await t.step(
      "isLeader turns false the moment the TTL has passed on the local clock, before etcd says so",
      async () => {
        let skew = 0;
        const skewed = probe(cluster, "/le/clock/", "skewed", {
          now: () => performance.now() + skew,
        });
        const probes = [skewed];
        try {
          await oneLeader(probes);
          // Started only now, so that it campaigns behind the skewed one.
          const other = probe(cluster, "/le/clock/", "other");
          probes.push(other);
          await eventually(
            "the other sees the skewed one lead",
            () => other.election.leader() === "skewed",
          );
          const fence = skewed.election.fence();
          assert.equal(skewed.election.isLeader, true);
          // As if the process had been stopped for the whole TTL: no timer ran, no reply came,
          // and none can in between, as nothing awaits here.
          skew += 1000;
          assert.equal(skewed.election.isLeader, false);
          assert.throws(() => skewed.election.fence(), {
            name: "UnavailableError",
            message: /^Cannot fence a write as "skewed" does not lead election "\/le\/clock\/"/,
          });
          await eventually("onDeposed ran", () => skewed.deposed.length === 1);
          assert.ok(skewed.deposed[0] instanceof UnavailableError);
          assert.match(skewed.deposed[0].message, /^Lease \d+ expired: no keepalive acknowledged/);
          // The deposed one revokes its lease, so the next in line takes over.
          assert.equal(await oneLeader(probes), other);
          assert.equal((await client.get(fence.key).exec()).kvs.length, 0);
        } finally {
          await closeAll(probes);
        }
      },
    );

    await t.step(
      "a fenced write succeeds for the leader and fails with a lost term's fence",
      async () => {
        const probes = ["a", "b"].map((id) => probe(cluster, "/le/fence/", id));
        try {
          const first = await oneLeader(probes);
          const stale = first.election.fenceCompares();
          assert.equal(await fencedPut(client, stale, "/le/fence-data", "first"), true);
          await first.election.resign();
          const second = await oneLeader(probes.filter((p) => p !== first));
          assert.equal(await fencedPut(client, stale, "/le/fence-data", "stale"), false);
          assert.equal(
            await fencedPut(client, second.election.fenceCompares(), "/le/fence-data", "second"),
            true,
          );
          assert.equal(await client.get("/le/fence-data").string(), "second");
          assert.throws(() => first.election.fenceCompares(), UnavailableError);
        } finally {
          await closeAll(probes);
        }
      },
    );

    await t.step(
      "a SIGSTOPped leader is replaced after its TTL and, on SIGCONT, knows it before any write",
      async () => {
        const ttlSeconds = 2;
        const writesKey = "/le/sigstop-data";
        const config: CandidateConfig = {
          endpoints: [...cluster.endpoints],
          name: "/le/sigstop/",
          id: "stopped",
          ttlSeconds,
          writesKey,
        };
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", CANDIDATE, JSON.stringify(config)],
          stdin: "null",
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        const reports: CandidateReport[] = [];
        const reading = (async () => {
          let buffered = "";
          for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
            buffered += chunk;
            const lines = buffered.split("\n");
            buffered = lines.pop()!;
            for (const line of lines) reports.push(JSON.parse(line) as CandidateReport);
          }
        })();
        const probes: Probe[] = [];
        try {
          await eventually("the child leads", () => reports.some((r) => r.event === "elected"));
          probes.push(
            ...["x", "y"].map((id) => probe(cluster, config.name, id, { ttlSeconds })),
          );
          await eventually(
            "everyone sees the child lead and it has written",
            () =>
              probes.every((p) => p.election.leader() === "stopped") &&
              reports.some((r) => r.event === "write" && r.ok),
          );
          assert.deepEqual(leaders(probes), []);

          child.kill("SIGSTOP");
          const stoppedAt = performance.now();
          const next = await oneLeader(probes, 10_000);
          const tookMs = performance.now() - stoppedAt;
          // At most a third of the TTL passed since its last keepalive; etcd then checks expiry every 500 ms.
          assert.ok(tookMs > ttlSeconds * 1000 * 2 / 3, `took ${tookMs} ms`);
          assert.ok(tookMs < ttlSeconds * 1000 + 2000, `took ${tookMs} ms`);
          assert.ok((await client.get(writesKey).string())?.startsWith("stopped "));
          assert.equal(
            await fencedPut(client, next.election.fenceCompares(), writesKey, "new leader"),
            true,
          );

          // Everything it printed before the stop has been read by now: the new leader took seconds.
          const resumedFrom = reports.length;
          child.kill("SIGCONT");
          await eventually(
            "the child tried its stale write",
            () => reports.slice(resumedFrom).some((r) => r.event === "staleWrite"),
          );
          const after = reports.slice(resumedFrom);
          assert.deepEqual(after.find((r) => r.event === "tick"), {
            event: "tick",
            leading: false,
          });
          assert.deepEqual(after.filter((r) => r.event === "write"), []);
          assert.deepEqual(after.find((r) => r.event === "staleWrite"), {
            event: "staleWrite",
            ok: false,
          });
          const deposed = after.find((r) => r.event === "deposed");
          assert.ok(deposed && deposed.event === "deposed");
          assert.match(deposed.reason, /^Lease \d+ expired: /);
          assert.equal(await client.get(writesKey).string(), "new leader");
          // The child campaigns again, now behind the new leader, who stays.
          await eventually(
            "the child has a new key",
            async () => (await client.getAll().prefix(config.name).keys()).length === 3,
          );
          await throughout("the new leader stays", () => next.election.isLeader, 500);
          assert.deepEqual(reports.slice(resumedFrom).filter((r) => r.event === "elected"), []);
        } finally {
          child.kill("SIGCONT");
          child.kill("SIGTERM");
          const status = await child.status;
          await reading;
          await closeAll(probes);
          assert.equal(status.code, 0);
        }
      },
    );

    await t.step("killing one etcd member of three does not change the leader", async () => {
      const probes = ["a", "b", "c"].map((id) =>
        probe(cluster, "/le/one-down/", id, { ttlSeconds: 2 })
      );
      try {
        const leader = await oneLeader(probes);
        // The raft leader is the member whose loss disturbs etcd most.
        const victim = cluster.members[await raftLeader(cluster)];
        await victim.kill();
        await throughout(
          "the same candidate leads",
          () => leader.election.isLeader && leaders(probes).length === 1,
          4000,
        );
        assert.deepEqual(probes.map((p) => p.deposed.length), [0, 0, 0]);
        assert.deepEqual(probes.map((p) => p.election.leader()), [leader.id, leader.id, leader.id]);
        await victim.restart();
      } finally {
        await closeAll(probes);
      }
    });

    await t.step(
      "with two etcd members of three down nobody leads, and restoring them brings a leader back",
      async () => {
        await eventually("all members healthy", async () => {
          const health = await Promise.all(cluster.members.map(async (m) => {
            const res = await fetch(`http://${m.endpoint}/health`).catch(() => undefined);
            return (await res?.json())?.health === "true";
          }));
          return health.every(Boolean);
        });
        const probes = ["a", "b", "c"].map((id) => probe(cluster, "/le/two-down/", id));
        try {
          const leader = await oneLeader(probes);
          const down = cluster.members.slice(0, 2);
          const killedAt = performance.now();
          await Promise.all(down.map((m) => m.kill()));
          await eventually("the leader steps down", () => !leader.election.isLeader, 5000);
          const tookMs = performance.now() - killedAt;
          // The deadline is at most a TTL (1 s) after the last acknowledged keepalive; a raft
          // leader left alone keeps acknowledging until its quorum check fails, which runs
          // every election timeout (500 ms), so up to 1 s more.
          assert.ok(tookMs < 1000 + 1000 + 300, `took ${tookMs} ms`);
          await eventually("onDeposed ran", () => leader.deposed.length === 1);
          await throughout("nobody leads", () => leaders(probes).length === 0, 2000);
          assert.throws(() => leader.election.fence(), UnavailableError);
          assert.ok(
            probes.some((p) => p.errors.length > 0),
            "campaigning failed and said so through onError",
          );
          await Promise.all(down.map((m) => m.restart()));
          await oneLeader(probes, 15_000);
        } finally {
          await closeAll(probes);
        }
      },
    );
  } finally {
    await Promise.all(opened.map((e) => e.close()));
    client.close();
    await cluster.stop();
  }
});
