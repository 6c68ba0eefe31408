/**
 * Each OPC UA data type through the real source (Worker under a SourceHost)
 * against the simulator's node-opcua server: the constant variables under
 * `Plant1/Types` land as value_num / value_str / value_bool / value_type,
 * discovered and monitored, and read by NodeId in polling mode. A source with
 * `data_change_trigger: status_value_timestamp` and `discard_oldest: false`
 * gets those monitoring parameters accepted by the server and reports a value
 * written again with a new timestamp.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  freePort,
  latestByAddress,
  opcuaSourceYaml,
  type Row,
  runSourceUnderHost,
  waitFor,
} from "./helpers.ts";
import { DataChangeTrigger } from "node-opcua";
import { OPCUA_SIM_NAMESPACE, startOpcuaSimulator } from "../src/simulator/opcua_server.ts";
import { loadConfigText } from "../src/config/load.ts";

const NS = `nsu=${OPCUA_SIM_NAMESPACE};s=Plant1/Types`;

type Columns = [number | null, string | null, boolean | null, string];

/** `[value_num, value_str, value_bool, value_type]` of each typed variable. */
const EXPECTED: Record<string, Columns> = {
  "Scalars/Float": [42.9, null, null, "float"],
  "Scalars/Double": [65, null, null, "float"],
  "Scalars/Int32": [-123456, null, null, "int"],
  "Scalars/UInt16": [65535, null, null, "int"],
  "Scalars/Byte": [255, null, null, "int"],
  "Scalars/SByte": [-128, null, null, "int"],
  "Scalars/Int64": [2 ** 53, "9007199254740993", null, "int"],
  "Scalars/Int64Small": [-42, null, null, "int"],
  "Scalars/UInt64": [2 ** 64, "18446744073709551615", null, "int"],
  "Scalars/Boolean": [0, null, false, "bool"],
  "Scalars/String": [null, "Grüße, Ω", null, "string"],
  "Scalars/DateTime": [
    Date.UTC(2026, 0, 2, 3, 4, 5, 678) * 1000,
    "2026-01-02T03:04:05.678Z",
    null,
    "timestamp",
  ],
  "Scalars/LocalizedText": [null, "Störung", null, "string"],
  "Scalars/QualifiedName": [null, "Batch42", null, "string"],
  "Scalars/ByteString": [null, "3q2+7wD/", null, "bytes"],
  "Scalars/Guid": [null, "72962B91-FA75-4AE6-8D28-B404DC7DAF63", null, "string"],
  "Arrays/DoubleArray": [null, "[1.5,-2.25,0,1e-7]", null, "json"],
  "Arrays/FloatArray": [null, "[0.1,42.9]", null, "json"],
  "Arrays/StringArray": [null, '["a","b,c","ü"]', null, "json"],
  "Arrays/Int64Array": [null, "[1,9007199254740993,-2]", null, "json"],
  "Arrays/ByteStringArray": [null, '["AQI=","/w=="]', null, "json"],
  "Arrays/Int32Matrix": [null, "[[-1,2,3],[4,5,-6]]", null, "json"],
  "Structures/Range": [null, '{"low":-20,"high":150.5}', null, "json"],
  "Structures/BuildInfo": [
    null,
    '{"productUri":"urn:otedge:simulator","manufacturerName":"otedge",' +
    '"productName":"Press controller","softwareVersion":"1.2.3","buildNumber":"42",' +
    '"buildDate":"2026-03-04T05:06:07.000Z"}',
    null,
    "json",
  ],
};

const PATHS = Object.keys(EXPECTED);

/** Waits for a row of every typed variable and checks its columns. */
async function assertTypedRows(rows: Row[]): Promise<void> {
  const seen = await waitFor(() => {
    const m = latestByAddress(rows);
    return PATHS.every((p) => m.has(`${NS}/${p}`)) ? m : undefined;
  }, "a row of every typed variable");
  for (const p of PATHS) {
    const r = seen.get(`${NS}/${p}`)!;
    assertEquals([r.value_num, r.value_str, r.value_bool, r.value_type], EXPECTED[p], p);
    assertEquals([r.quality, r.quality_code], ["good", 0], p);
  }
  assertEquals(JSON.parse(seen.get(`${NS}/Arrays/Int32Matrix`)!.value_str as string), [
    [-1, 2, 3],
    [4, 5, -6],
  ]);
}

Deno.test("opcua types: each data type through the source against the simulator", async (t) => {
  const sim = await startOpcuaSimulator({ port: freePort(), updateMs: 100 });
  try {
    await t.step("subscription: discovered below Objects/Plant1/Types", async () => {
      const run = await runSourceUnderHost(
        opcuaSourceYaml(sim.endpoint, "    discovery: { roots: [Objects/Plant1/Types] }\n"),
      );
      try {
        await assertTypedRows(run.rows);
        const st = run.host.status().ua;
        assertEquals([st.state, st.detail?.monitored_items], ["connected", PATHS.length]);
        const ranges = run.rows.filter((r) => r.address === `${NS}/Structures/Range`);
        assertEquals(
          JSON.parse(ranges[0].metadata as string).browse_path,
          "Objects/Plant1/Types/Structures/Range",
        );
      } finally {
        await run.stop();
      }
    });

    await t.step("polling: explicit NodeIds read with the Read service", async () => {
      const nodes = PATHS.map((p) => `      - "${NS}/${p}"`).join("\n");
      const run = await runSourceUnderHost(opcuaSourceYaml(
        sim.endpoint,
        `    polling_mode: true\n    polling_interval_ms: 200\n    nodes:\n${nodes}\n`,
      ));
      try {
        await assertTypedRows(run.rows);
        assertEquals(run.host.status().ua.detail?.mode, "polling");
      } finally {
        await run.stop();
      }
    });

    await t.step(
      "status_value_timestamp and discard_oldest false: accepted, a rewritten value reported",
      async () => {
        const created: any[] = [];
        sim.onRequest((name, req) => {
          if (name === "CreateMonitoredItemsRequest") created.push(...req.itemsToCreate);
        });
        const pressure = "Plant1/Line1/Press1/Pressure";
        const address = `nsu=${OPCUA_SIM_NAMESPACE};s=${pressure}`;
        const run = await runSourceUnderHost(opcuaSourceYaml(
          sim.endpoint,
          `    queue_size: 5\n    discard_oldest: false\n` +
            `    data_change_trigger: status_value_timestamp\n` +
            `    nodes:\n      - "${address}"\n      - "${NS}/Scalars/Int32"\n`,
        ));
        try {
          await waitFor(() => latestByAddress(run.rows).size === 2, "rows of both nodes");
          const st = run.host.status().ua;
          assertEquals([st.state, st.detail?.monitored_items], ["connected", 2]);
          assertEquals(created.length, 2);
          for (const item of created) {
            const p = item.requestedParameters;
            assertEquals(
              [p.queueSize, p.discardOldest, p.filter?.trigger],
              [5, false, DataChangeTrigger.StatusValueTimestamp],
            );
          }
          // The same value with a new source timestamp is a change for this trigger.
          const at725 = () => run.rows.filter((r) => r.address === address && r.value_num === 7.25);
          sim.set(pressure, { value: 7.25 });
          await waitFor(() => at725().length === 1, "the pinned value");
          await new Promise((r) => setTimeout(r, 5));
          sim.set(pressure, { value: 7.25 });
          const twice = await waitFor(
            () => at725().length >= 2 ? at725() : undefined,
            "the same value again, with its new timestamp",
          );
          assert(
            (twice[1].event_time as number) > (twice[0].event_time as number),
            "a later source timestamp",
          );
        } finally {
          sim.release(pressure);
          await run.stop();
        }
      },
    );
  } finally {
    await sim.stop();
  }
});

Deno.test("opcua config: discard_oldest and data_change_trigger load with their defaults", () => {
  const yaml = (extra: string) => opcuaSourceYaml("opc.tcp://127.0.0.1:4840", extra);
  const load = (extra: string) => {
    const res = loadConfigText(yaml(extra), { env: {} });
    if (!res.ok) throw new Error(res.errors.join("\n"));
    const s = res.config.sources[0] as Record<string, unknown>;
    return [s.discard_oldest, s.data_change_trigger];
  };
  assertEquals(load(""), [true, "status_value"]);
  assertEquals(
    load("    discard_oldest: false\n    data_change_trigger: status_value_timestamp\n"),
    [false, "status_value_timestamp"],
  );
  assertEquals(load("    data_change_trigger: status\n"), [true, "status"]);
  const bad = loadConfigText(yaml("    data_change_trigger: StatusValue\n"), { env: {} });
  assert(!bad.ok, "StatusValue is not a trigger name of the config");
  assert(
    bad.errors.some((e) =>
      e.includes("sources[0].data_change_trigger: expected one of status, status_value")
    ),
    bad.errors.join("\n"),
  );
});
