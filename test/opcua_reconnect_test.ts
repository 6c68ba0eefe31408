/**
 * Staying connected: the OPC UA source in its real Worker under the real host
 * against the simulator's node-opcua server. A server restarted on the same
 * port (once as it was, once with its namespace renumbered) gets values
 * flowing again without restarting the source (subscription with explicit
 * nodes, polling with discovery); a half-open link (a relay
 * that stops forwarding without closing) turns the status `disconnected` and
 * recovers once the relay forwards again; a subscription that goes silent
 * while its session answers is rebuilt. Over a link loss with the server
 * running, the session is activated again and the subscription kept (no
 * counter step lost; also SignAndEncrypt with a user login, and polling), a
 * subscription of a session the server ended is transferred, a dropped
 * subscription is created again on the kept session, and a changed
 * NamespaceArray means the full setup.
 */
import { assert, assertEquals } from "./assert.ts";
import { freePort, opcuaSourceYaml, type Row, runSourceUnderHost, waitFor } from "./helpers.ts";
import {
  OPCUA_SIM_NAMESPACE,
  type OpcuaSimulator,
  startOpcuaSimulator,
} from "../src/simulator/opcua_server.ts";
import { startTcpRelay, type TcpRelay } from "./tcp_relay.ts";
import type { OpcuaSimSecurity } from "../src/simulator/opcua_security.ts";
import { helloMessage, hostPortOf, serverAnswers } from "../src/sources/opcua/liveness.ts";
import { subscriptionParameters, unknownNodesText } from "../src/sources/opcua/staying.ts";
import type { SourceStatus } from "../src/sources/host.ts";

const NS = `nsu=${OPCUA_SIM_NAMESPACE};s=Plant1/Line1`;
const COUNT = `${NS}/Press1/PartCount`;
const PRESSURE = `${NS}/Press1/Pressure`;

const runSource = runSourceUnderHost;

const source = opcuaSourceYaml;

const EXPLICIT = `    nodes:
      - "${COUNT}"
      - "${PRESSURE}"
`;

type Run = Awaited<ReturnType<typeof runSource>>;

const statusOf = (run: Run): SourceStatus => run.host.status().ua;

/** Waits until `address` got `n` distinct values in rows from `from` on (a live subscription). */
function freshValues(run: Run, address: string, from: number, n: number, what: string) {
  return waitFor(
    () => {
      const values = new Set(
        run.rows.slice(from).filter((r) => r.address === address && r.quality === "good")
          .map((r) => r.value_num),
      );
      return values.size >= n;
    },
    what,
    30_000,
  );
}

/** Waits for the source's state. */
function state(run: Run, want: string, what: string): Promise<SourceStatus> {
  return waitFor(() => (statusOf(run)?.state === want ? statusOf(run) : undefined), what, 30_000);
}

/** Stops the server and waits until every source noticed. */
async function stopServer(sim: OpcuaSimulator, runs: Run[]): Promise<void> {
  await sim.stop();
  for (const run of runs) await state(run, "disconnected", "disconnected after the server stopped");
}

Deno.test("opcua staying connected: keep-alive sizing, Hello, unknown-node text", () => {
  const fast = subscriptionParameters(100, 2000);
  assertEquals([fast.requestedMaxKeepAliveCount, fast.requestedLifetimeCount], [20, 600]);
  const slow = subscriptionParameters(60_000, 2000);
  assertEquals([slow.requestedMaxKeepAliveCount, slow.requestedLifetimeCount], [1, 3]);
  const hello = helloMessage("opc.tcp://h:4840");
  const view = new DataView(hello.buffer);
  assertEquals(new TextDecoder().decode(hello.subarray(0, 4)), "HELF");
  assertEquals([view.getUint32(4, true), view.getInt32(28, true)], [32 + 16, 16]);
  assertEquals(hostPortOf("opc.tcp://[::1]/x"), { hostname: "::1", port: 4840 });
  assertEquals(hostPortOf("opc.tcp://plc7:48010"), { hostname: "plc7", port: 48010 });
  const unknown = ["a", "b", "c"].map((address) => ({
    address,
    error: "BadNodeIdUnknown (0x80340000)",
  }));
  assertEquals(
    unknownNodesText(unknown, 2),
    "3 configured node(s) are not on the server: a (BadNodeIdUnknown), b (BadNodeIdUnknown), " +
      "and 1 more; check the NodeIds and browse paths in nodes (the other nodes are read)",
  );
  assertEquals(unknownNodesText([], 2), undefined);
});

Deno.test("opcua source: server restarts, same and renumbered namespace", async () => {
  const port = freePort();
  let sim = await startOpcuaSimulator({ port, updateMs: 100 });
  const run = await runSource(source(sim.endpoint, EXPLICIT));
  const discovered = await runSource(source(
    sim.endpoint,
    "    polling_mode: true\n    polling_interval_ms: 200\n" +
      `    discovery:\n      roots: ["Objects/Plant1/Line1/Press1"]\n`,
  ));
  try {
    await freshValues(run, COUNT, 0, 2, "values before the restart");
    await freshValues(discovered, COUNT, 0, 2, "discovered values before the restart");
    const before = statusOf(run);
    assertEquals(before.state, "connected");
    for (const key of ["security_mode", "security_policy", "monitored_items", "reconnects"]) {
      assert(key in before.detail, `detail.${key} in ${JSON.stringify(before.detail)}`);
    }
    assertEquals([before.detail.monitored_items, before.counters.reconnects], [2, 0]);
    assert(before.last_data_time, "last_data_time");
    assert(await serverAnswers(sim.endpoint), "the server acknowledges a Hello");

    // 1. The same server again on the same port.
    await stopServer(sim, [run, discovered]);
    assert(!await serverAnswers(sim.endpoint), "no Hello answer while the server is down");
    sim = await startOpcuaSimulator({ port, updateMs: 100 });
    let from = run.rows.length;
    await state(run, "connected", "connected after the restart");
    await state(discovered, "connected", "discovery connected after the restart");
    await freshValues(run, COUNT, from, 3, "new values from the new subscription");
    assertEquals(statusOf(run).counters.reconnects, 1);
    assertEquals(statusOf(run).detail.monitored_items, 2);
    // A restarted server knows neither the session nor the subscription: full setup.
    assertEquals(reuse(run), [0, 0, 2], JSON.stringify(statusOf(run).detail));

    // 2. A restart that renumbers the simulator's namespace.
    const oldIndex = sim.namespaceIndex;
    await stopServer(sim, [run, discovered]);
    sim = await startOpcuaSimulator({
      port,
      updateMs: 100,
      namespacesBefore: ["urn:otedge:test:first", "urn:otedge:test:second"],
    });
    assert(sim.namespaceIndex !== oldIndex, "the namespace moved");
    sim.set("Plant1/Line1/Press1/Pressure", { value: 9.125 });
    from = run.rows.length;
    const fromDiscovered = discovered.rows.length;
    await freshValues(run, COUNT, from, 3, "values after the renumbering");
    const pinned = (rows: Row[], start: number) =>
      rows.slice(start).find((r) => r.address === PRESSURE && r.value_num === 9.125);
    await waitFor(() => pinned(run.rows, from), "the pinned pressure under its nsu= address");
    await waitFor(
      () => pinned(discovered.rows, fromDiscovered),
      "the discovered pressure under its nsu= address",
    );
    const bad = run.rows.slice(from).filter((r) => r.quality !== "good");
    assertEquals(bad.length, 0, `bad rows after renumbering: ${JSON.stringify(bad[0])}`);
    assertEquals(statusOf(run).counters.reconnects, 2);
    assertEquals(statusOf(discovered).counters.reconnects, 2);
    assertEquals(reuse(run), [0, 0, 3]);
    assertEquals(reuse(discovered), [0, 0, 3]);
  } finally {
    await run.stop();
    await discovered.stop();
    await sim.stop();
  }
});

Deno.test("opcua source: half-open link is detected and recovered", async () => {
  const port = freePort();
  const sim = await startOpcuaSimulator({ port, updateMs: 100 });
  const relay = startTcpRelay(port);
  const run = await runSource(source(`opc.tcp://127.0.0.1:${relay.port}`, EXPLICIT));
  try {
    await freshValues(run, COUNT, 0, 2, "values through the relay");
    relay.freeze();
    const down = await state(run, "disconnected", "disconnected on the frozen link");
    assert(
      /no answer from the server|stopped answering/.test(String(down.last_error)),
      String(down.last_error),
    );
    relay.thaw();
    const from = run.rows.length;
    await state(run, "connected", "connected after the relay forwards again");
    await freshValues(run, COUNT, from, 3, "new values after recovery");
    assert(statusOf(run).counters.reconnects >= 1, "reconnect counted");
  } finally {
    await run.stop();
    await relay.close();
    await sim.stop();
  }
});

Deno.test("opcua source: a silent subscription is rebuilt", async () => {
  const port = freePort();
  const sim = await startOpcuaSimulator({ port, updateMs: 100 });
  const run = await runSource(source(sim.endpoint, EXPLICIT));
  try {
    await freshValues(run, COUNT, 0, 2, "values before the silence");
    assertEquals(sim.silenceSubscriptions(), 1);
    const rebuilt = await waitFor(
      () => ((statusOf(run).detail.subscription_rebuilds as number) >= 1
        ? statusOf(run)
        : undefined),
      "the watchdog to rebuild the subscription",
    );
    assert(/rebuilt/.test(String(rebuilt.last_error)), String(rebuilt.last_error));
    const from = run.rows.length;
    await freshValues(run, COUNT, from, 3, "values from the rebuilt subscription");
    const st = statusOf(run);
    assertEquals([st.state, st.counters.reconnects], ["connected", 0]);
    assertEquals(sim.subscriptionCount(), 1);
  } finally {
    await run.stop();
    await sim.stop();
  }
});

/** The missing steps between the lowest and highest good value of a counter. */
function counterGaps(run: Run, address: string): number[] {
  const seen = new Set(
    run.rows.filter((r) => r.address === address && r.quality === "good")
      .map((r) => r.value_num as number),
  );
  const sorted = [...seen].sort((a, b) => a - b);
  const gaps: number[] = [];
  for (let v = sorted[0]; v < sorted[sorted.length - 1]; v++) if (!seen.has(v)) gaps.push(v);
  return gaps;
}

type Sim = OpcuaSimulator;

/**
 * Runs the source with explicit nodes through a relay to a simulator whose
 * PartCount counts up by 1 every 200 ms (sampled every 100 ms, queue of 200:
 * every step reaches the source), hands them to `fn` and stops them all.
 */
async function throughRelay(
  fn: (sim: Sim, relay: TcpRelay, run: Run) => Promise<void>,
  secure: { sim?: OpcuaSimSecurity; source?: string } = {},
) {
  const port = freePort();
  const sim = await startOpcuaSimulator({ port, updateMs: 200, ...secure.sim });
  const relay = startTcpRelay(port);
  const endpoint = `opc.tcp://127.0.0.1:${relay.port}`;
  const run = await runSource(
    source(endpoint, EXPLICIT + "    queue_size: 200\n" + (secure.source ?? "")),
  );
  try {
    await freshValues(run, COUNT, 0, 3, "values through the relay");
    assertEquals(statusOf(run).detail.full_setups, 1);
    await fn(sim, relay, run);
  } finally {
    await run.stop();
    await relay.close();
    await sim.stop();
  }
}

/**
 * Freezes the link until the source reports it lost and the simulator has
 * moved at least 25 steps, runs `meanwhile`, thaws it and waits for values
 * made after the thaw; returns the highest PartCount seen before the thaw.
 */
async function linkLoss(
  sim: Sim,
  relay: TcpRelay,
  run: Run,
  meanwhile = () => {},
): Promise<number> {
  const frozenAt = sim.steps();
  relay.freeze();
  await state(run, "disconnected", "disconnected on the frozen link");
  await waitFor(() => sim.steps() >= frozenAt + 25, "25 counter steps during the outage", 30_000);
  meanwhile();
  const before = Math.max(
    ...run.rows.filter((r) => r.address === COUNT).map((r) => r.value_num as number),
  );
  const atThaw = sim.steps();
  relay.thaw();
  await state(run, "connected", "connected after the relay forwards again");
  await freshValues(run, COUNT, run.rows.length, 3, "new values after recovery");
  // The first values after recovery may be the outage's, republished: wait for the current ones.
  await waitFor(
    () => run.rows.some((r) => r.address === COUNT && (r.value_num as number) >= atThaw),
    `a PartCount value from after the thaw (>= ${atThaw})`,
    30_000,
  );
  return before;
}

/** [sessions_reactivated, subscriptions_transferred, full_setups] of the source. */
function reuse(run: Run): unknown[] {
  const d = statusOf(run).detail;
  return [d.sessions_reactivated, d.subscriptions_transferred, d.full_setups];
}

/** Asserts that the outage spanned many PartCount steps and none of them is missing. */
function assertNoneLost(run: Run, before: number): void {
  const counts = run.rows.filter((r) => r.address === COUNT).map((r) => r.value_num as number);
  assert(Math.max(...counts) > before + 20, "the outage spanned many counter steps");
  assertEquals(counterGaps(run, COUNT), [], "counter values lost during the outage");
  const bad = run.rows.filter((r) => r.quality !== "good");
  assertEquals(bad.length, 0, `bad rows: ${JSON.stringify(bad[0])}`);
}

Deno.test("opcua source: a link loss keeps the session and subscription, nothing lost", async () => {
  await throughRelay(async (sim, relay, run) => {
    const before = await linkLoss(sim, relay, run);
    assertEquals(reuse(run), [1, 0, 1], JSON.stringify(statusOf(run).detail));
    assertNoneLost(run, before);
    assertEquals(sim.subscriptionCount(), 1, "the old subscription is gone or reused");
    // The Publish answers that were under way at the freeze came again by Republish.
    const republished = statusOf(run).detail.notifications_republished as number;
    assert(republished >= 1, JSON.stringify(statusOf(run).detail));
  });
});

Deno.test("opcua source: a SignAndEncrypt session with a user login is kept too", async () => {
  await throughRelay(async (sim, relay, run) => {
    const before = await linkLoss(sim, relay, run);
    assertEquals(reuse(run), [1, 0, 1], JSON.stringify(statusOf(run).detail));
    assertNoneLost(run, before);
  }, {
    sim: {
      securityModes: ["SignAndEncrypt"],
      securityPolicies: ["Basic256Sha256"],
      users: { operator: "operator" },
      allowAnonymous: false,
    },
    source: "    security_mode: SignAndEncrypt\n    security_policy: Basic256Sha256\n" +
      "    trust_server_certificate: auto\n    username: operator\n    password: operator\n",
  });
});

Deno.test("opcua source: polling keeps its session over a link loss", async () => {
  await throughRelay(async (sim, relay, run) => {
    await linkLoss(sim, relay, run);
    assertEquals(reuse(run), [1, 0, 1], JSON.stringify(statusOf(run).detail));
  }, { source: "    polling_mode: true\n    polling_interval_ms: 200\n" });
});

Deno.test("opcua source: a session the server ended hands its subscription over", async () => {
  await throughRelay(async (sim, relay, run) => {
    const before = await linkLoss(sim, relay, run, () => assertEquals(sim.closeSessions(), 1));
    assertEquals(reuse(run), [0, 1, 1], JSON.stringify(statusOf(run).detail));
    assertNoneLost(run, before);
    assertEquals(sim.subscriptionCount(), 1, "the transferred subscription only");
  });
});

Deno.test("opcua source: a subscription the server dropped is created on the kept session", async () => {
  await throughRelay(async (sim, relay, run) => {
    await linkLoss(sim, relay, run, () => assertEquals(sim.deleteSubscriptions(), 1));
    assertEquals(reuse(run), [1, 0, 1], JSON.stringify(statusOf(run).detail));
    assertEquals(statusOf(run).detail.subscriptions_recreated, 1);
    assertEquals(statusOf(run).detail.monitored_items, 2);
    assertEquals(sim.subscriptionCount(), 1);
  });
});

Deno.test("opcua source: namespaces changed during a link loss, full setup", async () => {
  await throughRelay(async (sim, relay, run) => {
    await linkLoss(sim, relay, run, () => sim.addNamespace("urn:otedge:test:late"));
    assertEquals(reuse(run), [0, 0, 2], JSON.stringify(statusOf(run).detail));
    assertEquals(statusOf(run).detail.namespaces, 4);
    assertEquals(sim.subscriptionCount(), 1, "the old subscription was deleted");
  });
});
