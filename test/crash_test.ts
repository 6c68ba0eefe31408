/**
 * `kill -9` of the agent under load, then a restart: nothing the spool had
 * committed is lost. The agent runs as its own process; the stand-in too.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  agentConfigYaml,
  distinctIds,
  freePort,
  readTables,
  seqHoles,
  startStandIn,
  waitFor,
} from "./helpers.ts";
import { spawnSelf } from "../src/self.ts";
import { splitRows } from "../src/sinks/zerobus/wire.ts";

async function spooledIds(path: string): Promise<Set<string>> {
  const kv = await Deno.openKv(path);
  const ids = new Set<string>();
  const dec = new TextDecoder();
  try {
    for await (const e of kv.list<{ rows: Uint8Array }>({ prefix: ["seg"] })) {
      for (const row of splitRows(e.value.rows)) ids.add(JSON.parse(dec.decode(row)).record_id);
    }
  } finally {
    kv.close();
  }
  return ids;
}

async function apiJson(port: number, path: string) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return await res.json();
}

Deno.test("crash: kill -9 under load, restart, and every committed record arrives", async () => {
  const dir = await Deno.makeTempDir({ prefix: "otedge-crash-" });
  // Acks are slow, so the spool holds plenty of committed, unacknowledged rows at the kill.
  const standIn = await startStandIn(dir, ["--ack-latency-ms", "300"]);
  const agentDir = `${dir}/agent`;
  const port = freePort();
  const source = (enabled: boolean) =>
    `  - name: gen_load
    protocol: generator
    enabled: ${enabled}
    site: s1
    area: a1
    line: l1
    equipment: e1
    tags: 100
    records_per_s: 20000
`;
  const cfgFile = `${dir}/agent.yaml`;
  const write = (enabled: boolean) =>
    Deno.writeTextFile(
      cfgFile,
      agentConfigYaml({ dataDir: agentDir, port, standIn, sources: source(enabled) }),
    );
  let agent = undefined as Awaited<ReturnType<typeof spawnSelf>> | undefined;
  try {
    await write(true);
    agent = await spawnSelf(["run", "--config", cfgFile], "ready");
    await waitFor(
      async () => (await apiJson(port, "/api/metrics")).bridge.records_acked >= 5000,
      "first acks",
    );
    const before = await apiJson(port, "/api/metrics");
    assert(
      before.bridge.records_enqueued > before.bridge.records_acked,
      "records waiting for acks",
    );
    agent.child.kill("SIGKILL");
    await agent.child.status;

    const committed = await spooledIds(`${agentDir}/spool/spool.sqlite3`);
    assert(committed.size > 0, "the spool held committed records at the kill");
    console.log(
      `at the kill: ${before.bridge.records_acked} acked, ${committed.size} committed and unacked`,
    );

    // Restart with the source disabled: only the spool's content flows.
    await write(false);
    agent = await spawnSelf(["run", "--config", cfgFile], "ready");
    await waitFor(
      async () => (await apiJson(port, "/api/status")).spool.records === 0,
      "spool drained",
      60_000,
    );

    const tables = await readTables(dir);
    const arrived = distinctIds(tables);
    const missing = [...committed].filter((id) => !arrived.has(id));
    assertEquals(
      missing.length,
      0,
      `${missing.length} of ${committed.size} committed records never arrived`,
    );
    const rows = tables.get("main.iot_data.sensor_readings")!;
    assertEquals(seqHoles(rows), [], "per tag, the generator's sequence has no holes");
  } finally {
    await agent?.stop();
    await standIn.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
