/**
 * Staying connected: the OPC UA source in its real Worker under the real host
 * against the simulator's node-opcua server. A server restarted on the same
 * port (once as it was, once with its namespace renumbered) gets values
 * flowing again without restarting the source (subscription with explicit
 * nodes, polling with discovery); a half-open link (a relay
 * that stops forwarding without closing) turns the status `disconnected` and
 * recovers once the relay forwards again; a subscription that goes silent
 * while its session answers is rebuilt.
 */
import { assert, assertEquals } from "./assert.ts";
import { freePort, type Row, runSourceUnderHost, waitFor } from "./helpers.ts";
import {
  OPCUA_SIM_NAMESPACE,
  type OpcuaSimulator,
  startOpcuaSimulator,
} from "../src/simulator/opcua_server.ts";
import { startTcpRelay } from "./tcp_relay.ts";
import { helloMessage, hostPortOf, serverAnswers } from "../src/sources/opcua/liveness.ts";
import { subscriptionParameters, unknownNodesText } from "../src/sources/opcua/staying.ts";
import type { SourceStatus } from "../src/sources/host.ts";

const WORKER = new URL("../src/sources/opcua/worker.ts", import.meta.url);
const NS = `nsu=${OPCUA_SIM_NAMESPACE};s=Plant1/Line1`;
const COUNT = `${NS}/Press1/PartCount`;
const PRESSURE = `${NS}/Press1/Pressure`;

function runSource(yaml: string) {
  return runSourceUnderHost(yaml, { workerUrl: (p) => (p === "opcua" ? WORKER : undefined) });
}

function source(endpoint: string, extra: string): string {
  return `sources:
  - name: ua
    protocol: opcua
    endpoint: ${endpoint}
    publishing_interval_ms: 100
    sampling_interval_ms: 100
${extra}`;
}

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
