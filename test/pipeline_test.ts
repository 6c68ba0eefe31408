/**
 * End to end: generator sources → normalization → spool → Zerobus client →
 * the local stand-in running as a separate process, over real gRPC.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  agentConfigYaml,
  distinctIds,
  freePort,
  readTables,
  seqHoles,
  waitFor,
  withStandIn,
} from "./helpers.ts";
import { loadConfigText } from "../src/config/load.ts";
import { createLogger } from "../src/log.ts";
import { startAgent } from "../src/run.ts";
import { COLUMNS } from "../src/record.ts";

const quiet = createLogger("error", "test", () => {});
const fastRetry = { sink: { backoffMinMs: 100, backoffMaxMs: 500, fatalRetryMs: 500 } };

function generator(name: string, records: number, extra = ""): string {
  return `  - name: ${name}
    protocol: generator
    site: Columbus
    area: Press Shop
    line: Line-3
    equipment: Press 1
    tags: 50
    records_per_s: 0
    max_records: ${records}
${extra}`;
}

async function runUntilDelivered(yaml: string, dataDir: string, expected: number) {
  const res = loadConfigText(yaml, { env: {} });
  if (!res.ok) throw new Error(res.errors.join("\n"));
  const running = await startAgent(res.config, quiet, fastRetry);
  try {
    await waitFor(
      async () => distinctIds(await readTables(dataDir)).size >= expected,
      `${expected} records`,
      60_000,
    );
    const status = running.agent.status();
    const metrics = running.agent.metrics();
    const prom = await (await fetch(`${running.url}/metrics`)).text();
    const apiStatus = await (await fetch(`${running.url}/api/status`)).json();
    const health = await fetch(`${running.url}/health`);
    await health.body?.cancel();
    return { status, metrics, prom, apiStatus, healthCode: health.status };
  } finally {
    await running.stop();
  }
}

Deno.test("pipeline: every record of three sources arrives once, in its own table, with ISA-95 paths", async () => {
  await withStandIn([], async (dir, standIn) => {
    const yaml = agentConfigYaml({
      dataDir: `${dir}/agent`,
      port: freePort(),
      standIn,
      sources: generator("gen_a", 4000) + generator("gen_b", 4000) + generator("gen_c", 4000),
      sourceTargets: `    gen_b: { catalog: manufacturing, schema: plant1, table: b_data }
    gen_c: { catalog: manufacturing, schema: plant1, table: c_data }`,
    });
    const out = await runUntilDelivered(yaml, dir, 12_000);
    const tables = await readTables(dir);
    const expected: Record<string, string> = {
      "main.iot_data.sensor_readings": "gen_a",
      "manufacturing.plant1.b_data": "gen_b",
      "manufacturing.plant1.c_data": "gen_c",
    };
    assertEquals([...tables.keys()].sort(), Object.keys(expected).sort());
    for (const [table, rows] of tables) {
      const sources = new Set(rows.map((r) => r.source_name));
      assertEquals([...sources], [expected[table]], `${table} holds only ${expected[table]}`);
      assertEquals(
        new Set(rows.map((r) => r.record_id)).size,
        4000,
        `${table} has all 4000 records`,
      );
      assertEquals(seqHoles(rows), []);
    }
    const sample = tables.get("main.iot_data.sensor_readings")![0];
    assert(
      /^columbus\/press_shop\/line_3\/press_1\/[a-z]+\/tag_\d{4}$/.test(sample.tag_path as string),
      `path ${sample.tag_path}`,
    );
    assertEquals(sample.quality, "good");
    assertEquals(typeof sample.event_time, "number");
    assert(/^[0-9a-f]{32}$/.test(sample.record_id as string));
    assertEquals(distinctIds(tables).size, 12_000);
    // The API tells the same story.
    assertEquals(out.metrics.bridge.records_received, 12_000);
    assertEquals(out.metrics.bridge.records_enqueued, 12_000);
    assertEquals(out.apiStatus.sources.gen_b.target, "manufacturing.plant1.b_data");
    assertEquals(out.apiStatus.zerobus_connected, true);
    assertEquals(out.healthCode, 200);
    assert(/otedge_records_spooled_total 12000/.test(out.prom), "prometheus counter");
    assert(
      /otedge_source_incomplete_paths\{source="gen_a"\} 0/.test(out.prom),
      "incomplete paths gauge",
    );
  });
});

Deno.test("pipeline: stand-in failures mid-stream (UNAVAILABLE after N requests) lose nothing", async () => {
  await withStandIn(["--fail-after", "7"], async (dir, standIn) => {
    const yaml = agentConfigYaml({
      dataDir: `${dir}/agent`,
      port: freePort(),
      standIn,
      sources: generator("gen_a", 10_000),
      extra: "  batch: { max_records: 100 }\n",
    });
    const out = await runUntilDelivered(yaml, dir, 10_000);
    const rows = (await readTables(dir)).get("main.iot_data.sensor_readings")!;
    assertEquals(new Set(rows.map((r) => r.record_id)).size, 10_000);
    assertEquals(seqHoles(rows), []);
    const t = out.status.targets["main.iot_data.sensor_readings"];
    assert(t.reconnections >= 5, `streams were failed and reopened (${t.reconnections})`);
  });
});

Deno.test("pipeline: CloseStreamSignal mid-stream rotates to a new stream and loses nothing", async () => {
  await withStandIn(["--close-after", "5", "--close-duration-ms", "300"], async (dir, standIn) => {
    const yaml = agentConfigYaml({
      dataDir: `${dir}/agent`,
      port: freePort(),
      standIn,
      sources: generator("gen_a", 10_000),
      // At most 4 requests in flight: a stream carries at most 5 + 4 of the 100 or more
      // requests, so there are at least 12 streams and 11 close signals, however slow the machine.
      extra: "  batch: { max_records: 100 }\n  max_inflight_requests: 4\n",
    });
    const out = await runUntilDelivered(yaml, dir, 10_000);
    const rows = (await readTables(dir)).get("main.iot_data.sensor_readings")!;
    assertEquals(new Set(rows.map((r) => r.record_id)).size, 10_000);
    assertEquals(seqHoles(rows), []);
    const t = out.status.targets["main.iot_data.sensor_readings"];
    assert(t.close_signals >= 10, `close signals handled (${t.close_signals})`);
  });
});

Deno.test("pipeline: several streams per table share the lane and lose nothing", async () => {
  await withStandIn([], async (dir, standIn) => {
    const yaml = agentConfigYaml({
      dataDir: `${dir}/agent`,
      port: freePort(),
      standIn,
      sources: generator("gen_a", 10_000),
      extra: "  batch: { max_records: 100 }\n  streams_per_target: 3\n",
    });
    const out = await runUntilDelivered(yaml, dir, 10_000);
    const rows = (await readTables(dir)).get("main.iot_data.sensor_readings")!;
    assertEquals(new Set(rows.map((r) => r.record_id)).size, 10_000);
    assertEquals(seqHoles(rows), []);
    const t = out.status.targets["main.iot_data.sensor_readings"];
    assertEquals(t.stream_ids.length, 3, "three live streams");
    assertEquals(new Set(t.stream_ids).size, 3);
  });
});

Deno.test("pipeline: record_type per table: a PROTO table and a JSON table side by side", async () => {
  await withStandIn([], async (dir, standIn) => {
    const yaml = agentConfigYaml({
      dataDir: `${dir}/agent`,
      port: freePort(),
      standIn,
      sources: generator("gen_a", 3000) + generator("gen_p", 3000),
      sourceTargets:
        "    gen_p: { catalog: main, schema: iot_data, table: proto_rows, record_type: proto }",
    });
    const out = await runUntilDelivered(yaml, dir, 6000);
    const tables = await readTables(dir);
    for (
      const [table, source] of [["main.iot_data.sensor_readings", "gen_a"], [
        "main.iot_data.proto_rows",
        "gen_p",
      ]]
    ) {
      const rows = tables.get(table)!;
      assertEquals(new Set(rows.map((r) => r.record_id)).size, 3000, table);
      assertEquals(new Set(rows.map((r) => r.source_name)), new Set([source]));
      assertEquals(seqHoles(rows), []);
      // The stand-in decodes PROTO rows with our descriptor into the same columns as JSON rows.
      for (const r of rows) assertEquals(Object.keys(r).sort(), COLUMNS.map((c) => c.name).sort());
    }
    const r = tables.get("main.iot_data.proto_rows")![0];
    assert(/^columbus\/press_shop\/line_3\/press_1\/[a-z]+\/tag_\d{4}$/.test(r.tag_path as string));
    assertEquals([typeof r.event_time, typeof r.value_num, r.value_bool, r.quality], [
      "number",
      "number",
      null,
      "good",
    ]);
    assertEquals(out.apiStatus.sources.gen_p.target, "main.iot_data.proto_rows#proto");
  });
});
