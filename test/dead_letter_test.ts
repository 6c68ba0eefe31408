/**
 * Records the table refuses: the sender narrows a refused request down to the
 * refused records, moves exactly those to the dead-letter store and delivers
 * the rest; a table that refuses everything dead-letters nothing.
 */
import { assert, assertEquals } from "./assert.ts";
import { agentConfigYaml, freePort, readTables, startStandIn, waitFor } from "./helpers.ts";
import { loadConfigText } from "../src/config/load.ts";
import { createLogger } from "../src/log.ts";
import { startAgent } from "../src/run.ts";

const quiet = createLogger("error", "test", () => {});
const fast = { sink: { backoffMinMs: 100, backoffMaxMs: 500, fatalRetryMs: 60_000 } };
const SOURCE = `  - name: gen
    protocol: generator
    site: s1
    area: a1
    line: l1
    equipment: e1
    tags: 3
    records_per_s: 0
    max_records: 600
`;

async function withAgent(
  rejectText: string,
  body: (a: Awaited<ReturnType<typeof startAgent>>, dir: string) => Promise<void>,
  extraZerobus = "",
) {
  const dir = await Deno.makeTempDir({ prefix: "otedge-dlq-" });
  const standIn = await startStandIn(dir, ["--reject-rows-containing", rejectText]);
  try {
    const yaml = agentConfigYaml({
      dataDir: `${dir}/agent`,
      port: freePort(),
      standIn,
      sources: SOURCE,
      extra: "  batch: { max_records: 100 }\n" + extraZerobus,
    });
    const res = loadConfigText(yaml, { env: {} });
    if (!res.ok) throw new Error(res.errors.join("\n"));
    const running = await startAgent(res.config, quiet, fast);
    try {
      await body(running, dir);
    } finally {
      await running.stop();
    }
  } finally {
    await standIn.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("dead letters: only the records the table refuses are dead-lettered, the rest arrive", async () => {
  // Seq 42 of each of the three tags: three records in 600.
  await withAgent('\\"seq\\":42,', async (running, dir) => {
    const agent = running.agent;
    await waitFor(
      () => agent.spool.totalRecords === 0 && agent.bridge.records_enqueued === 600,
      "the spool to drain",
      30_000,
    );
    const rows = (await readTables(dir)).get("main.iot_data.sensor_readings") ?? [];
    const seqs = new Map<string, Set<number>>();
    for (const r of rows) {
      const s = seqs.get(r.tag_name as string) ?? new Set();
      s.add(JSON.parse(r.metadata as string).seq);
      seqs.set(r.tag_name as string, s);
    }
    assertEquals([...seqs.keys()].sort(), ["tag_0000", "tag_0001", "tag_0002"]);
    for (const [tag, s] of seqs) {
      assertEquals(s.size, 199, `${tag}: all but one`);
      assert(!s.has(42), `${tag}: seq 42 was refused`);
    }
    const dlq = await agent.spool.listDeadLetters();
    assertEquals(dlq.length, 3);
    for (const d of dlq) {
      assertEquals(d.source, "gen");
      assert(d.reason.includes("refused the record"), d.reason);
      assert(d.item.includes('\\"seq\\":42,'), "the refused record itself is kept");
    }
    const t = agent.status().targets["main.iot_data.sensor_readings"];
    assertEquals(t.dead_lettered, 3);
    assertEquals(t.isolating, false, "back to normal batching");
    assertEquals(agent.bridge.dead_letters, 3);
  });
});

Deno.test("dead letters: a table that refuses every record keeps the data and says so", async () => {
  await withAgent('"record_id"', async (running) => {
    const agent = running.agent;
    const t = await waitFor(
      () => {
        const s = agent.status().targets["main.iot_data.sensor_readings"];
        return s.state === "error" ? s : undefined;
      },
      "the target to report the refusal",
      20_000,
    );
    assert(t.last_error!.includes("refuses every record"), t.last_error!);
    assert(t.last_error!.includes("INVALID_ARGUMENT"), t.last_error!);
    assertEquals(t.dead_lettered, 0);
    assertEquals((await agent.spool.listDeadLetters()).length, 0);
    assertEquals(
      agent.spool.totalRecords,
      agent.bridge.records_enqueued,
      "every record kept in the spool",
    );
  });
});

Deno.test("dead letters: the very first record refused, two streams: found, and the rest arrives", async () => {
  // tag_0000 is the sine model: its seq 0 is the first record the agent ever sends.
  await withAgent('\\"seq\\":0,\\"model\\":\\"sine\\"', async (running, dir) => {
    const agent = running.agent;
    await waitFor(
      () => agent.spool.totalRecords === 0 && agent.bridge.records_enqueued === 600,
      "the spool to drain",
      30_000,
    );
    const rows = (await readTables(dir)).get("main.iot_data.sensor_readings") ?? [];
    assertEquals(new Set(rows.map((r) => r.record_id)).size, 599);
    const dlq = await agent.spool.listDeadLetters();
    assertEquals(dlq.length, 1);
    assert(dlq[0].item.includes('\\"seq\\":0,\\"model\\":\\"sine\\"'));
    assertEquals(agent.status().targets["main.iot_data.sensor_readings"].isolating, false);
  }, "  streams_per_target: 2\n");
});
