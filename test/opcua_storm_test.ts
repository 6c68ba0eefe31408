/**
 * Nodes the server does not know (yet), in the OPC UA source's real Worker
 * under the real host against the simulator's node-opcua server: a server
 * whose address space loads after it accepts sessions (the signals are added
 * later) gets the nodes resolved and monitored on the live session; a node
 * deleted while running (a program download) gives bad rows and is
 * monitored again once it is back; all nodes deleted at once (a
 * BadNodeIdUnknown storm) mean a full setup, then the same recovery; the same
 * in polling mode. A poll after a batch shrink reports `connected` again.
 * Nothing here restarts the source.
 */
import { assert, assertEquals } from "./assert.ts";
import { freePort, opcuaSourceYaml, type Row, runSourceUnderHost, waitFor } from "./helpers.ts";
import { OPCUA_SIM_NAMESPACE, startOpcuaSimulator } from "../src/simulator/opcua_server.ts";
import type { SourceStatus } from "../src/sources/host.ts";
import { inBatches, tooLargeAnswer } from "../src/sources/opcua/nodes.ts";

const NS = `nsu=${OPCUA_SIM_NAMESPACE};s=Plant1/Line1`;
const COUNT = `${NS}/Press1/PartCount`;
const PRESSURE = `${NS}/Press1/Pressure`;
const TEMPERATURE = `${NS}/Press1/Temperature`;
const FLOW_PATH = "Objects/Plant1/Line1/Pump1/FlowRate";
const FLOW = `${NS}/Pump1/FlowRate`;
const BAD_NODE_ID_UNKNOWN = 0x80340000;
const BAD_NODE_ID_INVALID = 0x80330000;
/** What a generous wait allows: recovery backs off up to 60 s. */
const LONG_MS = 60_000;

/** Three NodeIds and a browse path. */
const NODES = `    nodes:
      - "${COUNT}"
      - "${PRESSURE}"
      - "${TEMPERATURE}"
      - { browse_path: "${FLOW_PATH}" }
`;
const ADDRESSES = [COUNT, PRESSURE, TEMPERATURE, FLOW];

type Run = Awaited<ReturnType<typeof runSourceUnderHost>>;

const statusOf = (run: Run): SourceStatus => run.host.status().ua;
const detailOf = (run: Run) => statusOf(run)?.detail ?? {};

/** Waits until `fn` holds for the source's status detail. */
function detailIs(run: Run, fn: (d: Record<string, unknown>) => boolean, what: string) {
  return waitFor(() => statusOf(run) && fn(detailOf(run)), what, LONG_MS);
}

/** Waits until every address in `addresses` got `n` distinct good values in rows from `from` on. */
function goodValues(run: Run, addresses: string[], from: number, n: number, what: string) {
  return waitFor(
    () =>
      addresses.every((address) => {
        const values = new Set(
          run.rows.slice(from).filter((r) => r.address === address && r.quality === "good")
            .map((r) => r.value_num ?? r.value_text),
        );
        return values.size >= n;
      }),
    what,
    LONG_MS,
  );
}

/** The bad rows of `address` from `from` on. */
function badRows(run: Run, address: string, from: number): Row[] {
  return run.rows.slice(from).filter((r) => r.address === address && r.quality === "bad");
}

/** True when the code says the server does not know the node. */
const unknownCode = (code: unknown) => code === BAD_NODE_ID_UNKNOWN || code === BAD_NODE_ID_INVALID;

Deno.test("opcua: BadRequestTooLarge and BadResponseTooLarge shrink a batch", async () => {
  const fault = (name: string, value: number) =>
    Object.assign(new Error(`service failed: ${name}`), {
      response: { responseHeader: { serviceResult: { value } } },
    });
  assertEquals(tooLargeAnswer(fault("x", 0x80B80000)), "BadRequestTooLarge");
  assertEquals(
    tooLargeAnswer(new Error("BadResponseTooLarge (0x80B90000)")),
    "BadResponseTooLarge",
  );
  assertEquals(tooLargeAnswer(new Error("BadTooManyOperations")), "BadTooManyOperations");
  assertEquals(tooLargeAnswer(new Error("BadNodeIdUnknown")), undefined);
  // A server that takes at most 3 per call but answers with a message-size fault.
  const shrinks: string[] = [];
  const batch = {
    size: 10,
    onShrink: (from: number, to: number, answer: string) => shrinks.push(`${from}>${to} ${answer}`),
  };
  const calls: number[] = [];
  const out = await inBatches(Array.from({ length: 10 }, (_, i) => i), batch, (part) => {
    calls.push(part.length);
    if (part.length > 3) return Promise.reject(new Error("BadResponseTooLarge"));
    return Promise.resolve(part.map((i) => i * 2));
  });
  assertEquals(out, Array.from({ length: 10 }, (_, i) => i * 2));
  assertEquals(shrinks, ["10>5 BadResponseTooLarge", "5>2 BadResponseTooLarge"]);
  assertEquals([batch.size, calls], [2, [10, 5, 2, 2, 2, 2, 2]]);
});

Deno.test("opcua: nodes of an address space that loads late are resolved on the live session", async () => {
  const sim = await startOpcuaSimulator({ port: freePort(), updateMs: 100, withoutSignals: true });
  const run = await runSourceUnderHost(opcuaSourceYaml(sim.endpoint, NODES));
  try {
    await detailIs(run, (d) => d.unknown_nodes === 4, "four unresolved nodes");
    const st = statusOf(run);
    assertEquals(st.state, "connected");
    assertEquals(st.detail.monitored_items, 0);
    assert(String(st.last_error).startsWith("4 configured node(s) are not on the server"));
    await waitFor(() => badRows(run, COUNT, 0).length > 0, "a bad row for the unknown node");
    assertEquals(badRows(run, COUNT, 0)[0].quality_code, BAD_NODE_ID_UNKNOWN);
    assert(badRows(run, FLOW_PATH, 0).length > 0, "a bad row for the unknown browse path");

    assertEquals(sim.restoreSignals(), 6);
    const from = run.rows.length;
    await goodValues(run, [COUNT, PRESSURE, TEMPERATURE, FLOW], from, 2, "values once loaded");
    await detailIs(run, (d) => d.unknown_nodes === 0, "no unresolved node");
    const after = statusOf(run);
    assertEquals(after.state, "connected");
    assertEquals([after.detail.monitored_items, after.detail.nodes], [4, 4]);
    assertEquals(after.detail.nodes_recovered, 4);
    assertEquals([after.detail.full_setups, after.counters.reconnects], [1, 0]);
    const temp = run.rows.slice(from).find((r) => r.address === TEMPERATURE)!;
    assertEquals(temp.unit, "°C");
  } finally {
    await run.stop();
    await sim.stop();
  }
});

Deno.test("opcua: discovery below a folder that appears later finds its Variables", async () => {
  const sim = await startOpcuaSimulator({ port: freePort(), updateMs: 100, withoutSignals: true });
  const run = await runSourceUnderHost(opcuaSourceYaml(
    sim.endpoint,
    `    discovery:\n      roots: ["Objects/Plant1/Line1"]\n`,
  ));
  try {
    const st = await waitFor(
      () => statusOf(run)?.state === "connected" && statusOf(run),
      "connected",
      LONG_MS,
    );
    assertEquals([st.detail.discovery_retry, st.detail.nodes], [true, 0]);
    assert(String(st.last_error).includes("is not on the server (discovery is tried again)"));
    sim.restoreSignals();
    await goodValues(run, ADDRESSES, run.rows.length, 2, "discovered values once loaded");
    await detailIs(run, (d) => d.monitored_items === 6, "six items");
    assertEquals([detailOf(run).discovery_retry, detailOf(run).nodes], [false, 6]);
    assertEquals(statusOf(run).counters.reconnects, 0);
  } finally {
    await run.stop();
    await sim.stop();
  }
});

Deno.test("opcua subscription: a deleted node and a BadNodeIdUnknown storm recover", async () => {
  const sim = await startOpcuaSimulator({ port: freePort(), updateMs: 100 });
  const run = await runSourceUnderHost(opcuaSourceYaml(sim.endpoint, NODES));
  try {
    await goodValues(run, ADDRESSES, 0, 2, "values at first");
    assertEquals(detailOf(run).monitored_items, 4);

    // 1. One node deleted (a program download): bad rows, created again once back.
    let from = run.rows.length;
    assertEquals(sim.removeSignals(["Plant1/Line1/Press1/PartCount"]), 1);
    await waitFor(() => badRows(run, COUNT, from).length > 0, "a bad row of the deleted node");
    assert(unknownCode(badRows(run, COUNT, from)[0].quality_code), "BadNodeId quality code");
    await detailIs(run, (d) => d.nodes_turned_unknown === 1, "one item turned unknown");
    sim.restoreSignals();
    from = run.rows.length;
    await goodValues(run, [COUNT], from, 3, "the node's values again");
    await detailIs(run, (d) => d.unknown_nodes === 0 && d.monitored_items === 4, "4 items");
    assertEquals([detailOf(run).node_storms, detailOf(run).full_setups], [0, 1]);

    // 2. Every node deleted at once: a storm, the full setup, then the same recovery.
    from = run.rows.length;
    assertEquals(sim.removeSignals(), 6);
    await detailIs(run, (d) => d.node_storms === 1, "a storm");
    await detailIs(run, (d) => d.full_setups === 2 && d.unknown_nodes === 4, "set up anew");
    for (const address of [COUNT, PRESSURE, TEMPERATURE]) {
      assert(badRows(run, address, from).length > 0, `bad rows of ${address}`);
      assert(badRows(run, address, from).every((r) => unknownCode(r.quality_code)));
    }
    sim.restoreSignals();
    from = run.rows.length;
    await goodValues(run, ADDRESSES, from, 2, "values after the storm");
    await detailIs(run, (d) => d.unknown_nodes === 0 && d.monitored_items === 4, "4 items");
    assertEquals(statusOf(run).state, "connected");
  } finally {
    await run.stop();
    await sim.stop();
  }
});

Deno.test("opcua polling: every node deleted and restored", async () => {
  const sim = await startOpcuaSimulator({ port: freePort(), updateMs: 100 });
  const run = await runSourceUnderHost(opcuaSourceYaml(
    sim.endpoint,
    `    polling_mode: true\n    polling_interval_ms: 200\n${NODES}`,
  ));
  try {
    await goodValues(run, ADDRESSES, 0, 2, "polled values at first");
    let from = run.rows.length;
    assertEquals(sim.removeSignals(), 6);
    await waitFor(
      () => badRows(run, COUNT, from).some((r) => r.quality_code === BAD_NODE_ID_UNKNOWN),
      "BadNodeIdUnknown rows",
    );
    await detailIs(run, (d) => d.node_storms === 1 && d.unknown_nodes === 4, "a storm");
    sim.restoreSignals();
    from = run.rows.length;
    await goodValues(run, ADDRESSES, from, 2, "polled values again");
    await detailIs(run, (d) => d.unknown_nodes === 0 && d.nodes === 4, "every node read");
    assertEquals(statusOf(run).state, "connected");
  } finally {
    await run.stop();
    await sim.stop();
  }
});

Deno.test("opcua polling: a successful poll after a batch shrink reports connected", async () => {
  // Discovery reads no values; the first poll of 4 nodes meets the hidden limit of 3
  // (the 2 units read at setup do not).
  const sim = await startOpcuaSimulator({
    port: freePort(),
    updateMs: 100,
    hiddenLimits: { maxNodesPerRead: 3 },
  });
  const run = await runSourceUnderHost(opcuaSourceYaml(
    sim.endpoint,
    "    polling_mode: true\n    polling_interval_ms: 200\n" +
      `    discovery:\n      roots: ["Objects/Plant1/Line1/Press1"]\n`,
  ));
  try {
    await goodValues(run, [COUNT, PRESSURE], 0, 3, "polled values");
    const st = await waitFor(
      () => statusOf(run)?.state === "connected" && statusOf(run),
      "connected after the shrink",
      LONG_MS,
    );
    // 4 refused, halved to 2 and kept.
    assertEquals(st.detail.max_nodes_per_read, 2);
    assert(st.counters.errors >= 1, "the shrink was reported as an error");
  } finally {
    await run.stop();
    await sim.stop();
  }
});
