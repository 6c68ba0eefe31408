/**
 * OPC UA acquisition and discovery against the simulator's node-opcua server
 * with its industry plants, through the real source Worker under the real
 * host: Read calls per poll and CreateMonitoredItems calls split by the
 * server's operation limits (counted on the server), BadTooManyOperations
 * from a server that hides its limits, deadbands, discovery roots, depth,
 * include/exclude and limit, and the plants' units, EURange and value ranges.
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
import { OPCUA_SIM_NAMESPACE, startOpcuaSimulator } from "../src/simulator/opcua_server.ts";
import { OPCUA_PLANT_NAMESPACE } from "../src/simulator/opcua_plant.ts";
import {
  PLANT_INDUSTRIES,
  PLANT_SENSORS,
  PLANT_UNITS,
  type PlantSensor,
  sensorModel,
  sensorPath,
} from "../src/simulator/plant_models.ts";

const PLANT = `nsu=${OPCUA_PLANT_NAMESPACE};s=`;

const runSource = runSourceUnderHost;

const source = opcuaSourceYaml;

const addressOf = (s: PlantSensor) => `${PLANT}${sensorPath(s)}`;
const sensorsWhere = (f: (s: PlantSensor) => boolean) => PLANT_SENSORS.filter(f).map(addressOf);
const mining = sensorsWhere((s) => s.industry === "Mining");

/** Sorted distinct addresses of `rows`. */
const addresses = (rows: Row[]) => [...new Set(rows.map((r) => r.address as string))].sort();

/** The NodeId text (`s=...`) of each node a Read request reads the Value of. */
function valueReads(request: any): string[] {
  return (request.nodesToRead ?? [])
    .filter((n: any) => n.attributeId === 13)
    .map((n: any) => String(n.nodeId.value));
}

Deno.test("opcua plants: four industries of 15+ sensors with unit, range and nominal inside it", () => {
  assertEquals(PLANT_INDUSTRIES, ["Mining", "Utilities", "Manufacturing", "OilAndGas"]);
  for (const industry of PLANT_INDUSTRIES) {
    const sensors = PLANT_SENSORS.filter((s) => s.industry === industry);
    assert(sensors.length >= 15, `${industry} has ${sensors.length} sensors`);
    for (const s of sensors) {
      assert(s.low < s.high && s.nominal >= s.low && s.nominal <= s.high, sensorPath(s));
    }
  }
  assertEquals(new Set(PLANT_SENSORS.map(sensorPath)).size, PLANT_SENSORS.length, "unique paths");
});

Deno.test("opcua plants: a day of one-second steps stays in range, with spikes and bad/uncertain spells", () => {
  const s = PLANT_SENSORS.find((x) => sensorPath(x).endsWith("Separator01/Pressure"))!;
  const next = sensorModel(s);
  const statuses = { good: 0, uncertain: 0, bad: 0 };
  let spikes = 0, min = Infinity, max = -Infinity;
  for (let t = 0; t < 86_400; t++) {
    const { value, status } = next(t);
    statuses[status]++;
    min = Math.min(min, value);
    max = Math.max(max, value);
    if (Math.abs(value - s.nominal) > (s.high - s.low) * 0.25) spikes++;
  }
  assert(min >= s.low && max <= s.high, `${min}..${max} within ${s.low}..${s.high}`);
  assert(spikes > 0 && spikes < 500, `${spikes} spiked steps`);
  assert(statuses.uncertain > 0 && statuses.bad > 0, JSON.stringify(statuses));
  assert(statuses.good > 86_400 * 0.95, JSON.stringify(statuses));
});

Deno.test("opcua acquisition and discovery against the plant simulator", async (t) => {
  const sim = await startOpcuaSimulator({
    port: freePort(),
    plant: true,
    limits: {
      maxNodesPerRead: 4,
      maxMonitoredItemsPerCall: 5,
      maxNodesPerTranslateBrowsePathsToNodeIds: 6,
    },
  });
  try {
    await t.step("polling: ceil(nodes / MaxNodesPerRead) Read calls per poll", async () => {
      const polled = new Set(mining.map((a) => a.slice(PLANT.length)));
      const reads: string[][] = [];
      sim.onRequest((name, req) => {
        if (name !== "ReadRequest") return;
        const ids = valueReads(req).filter((id) => polled.has(id));
        if (ids.length > 0) reads.push(ids);
      });
      const run = await runSource(source(
        sim.endpoint,
        `    polling_mode: true
    polling_interval_ms: 200
    discovery: { roots: [Objects/Mining] }
`,
      ));
      try {
        await waitFor(() => run.rows.length >= mining.length * 4, "four polls");
        assertEquals(run.host.status().ua.detail?.max_nodes_per_read, 4);
      } finally {
        await run.stop();
      }
      assertEquals(addresses(run.rows), [...mining].sort());
      // Group the Read calls into polls: a poll is complete once it covered every node.
      const perPoll: number[] = [];
      let covered = new Set<string>(), calls = 0;
      for (const ids of reads) {
        assert(ids.length <= 4, `a Read of ${ids.length} nodes (MaxNodesPerRead 4)`);
        calls++;
        ids.forEach((id) => covered.add(id));
        if (covered.size === mining.length) {
          perPoll.push(calls);
          covered = new Set();
          calls = 0;
        }
      }
      const polls = Math.floor(run.rows.length / mining.length);
      assert(perPoll.length >= polls && polls >= 4, `${perPoll.length} polls, ${polls} emitted`);
      assertEquals(new Set(perPoll), new Set([Math.ceil(mining.length / 4)]));
    });

    await t.step(
      "subscription: CreateMonitoredItems calls of at most MaxMonitoredItemsPerCall",
      async () => {
        const batches: number[] = [];
        sim.onRequest((name, req) => {
          if (name === "CreateMonitoredItemsRequest") batches.push(req.itemsToCreate.length);
        });
        const run = await runSource(
          source(sim.endpoint, "    discovery: { roots: [Objects/Mining] }\n"),
        );
        try {
          await waitFor(
            () => addresses(run.rows).length === mining.length,
            "a row per node",
          );
          const st = run.host.status().ua;
          assertEquals(st.state, "connected");
          assertEquals(st.detail?.monitored_items, mining.length);
          assertEquals(st.detail?.create_monitored_items_calls, Math.ceil(mining.length / 5));
          assertEquals(st.detail?.max_monitored_items_per_call, 5);
        } finally {
          await run.stop();
        }
        assertEquals(batches, [5, 5, 5, 3]);
      },
    );

    await t.step(
      "browse paths: TranslateBrowsePathsToNodeIds calls of at most its server limit",
      async () => {
        const batches: number[] = [];
        sim.onRequest((name, req) => {
          if (name === "TranslateBrowsePathsToNodeIdsRequest") {
            batches.push(req.browsePaths.length);
          }
        });
        const sensors = PLANT_SENSORS.filter((s) => s.industry === "Mining");
        const entries = sensors.map((s, i) =>
          `      - { browse_path: "Objects/${sensorPath(s)}", name: m${i}, site: s${i} }`
        );
        const run = await runSource(source(sim.endpoint, `    nodes:\n${entries.join("\n")}\n`));
        try {
          await waitFor(
            () => addresses(run.rows).length === mining.length,
            "a row per browse path",
          );
          assertEquals(run.host.status().ua.detail?.unknown_nodes, 0);
        } finally {
          await run.stop();
        }
        assertEquals(addresses(run.rows), [...mining].sort());
        const first = run.rows.find((r) => r.address === mining[0])!;
        assertEquals([first.tag_name, first.site], ["m0", "s0"]);
        // The first path alone in every namespace, then the others in its namespace only.
        const rest = mining.length - 1;
        assert(batches.every((n) => n <= 6), `batches ${batches}`);
        assertEquals(batches.slice(-Math.ceil(rest / 6)).reduce((a, b) => a + b, 0), rest);
      },
    );

    await t.step(
      "plants: units, EURange (percent deadband accepted), values within range",
      async () => {
        const run = await runSource(source(
          sim.endpoint,
          `    variable_limit: 500
    deadband_type: percent
    deadband_value: 0.01
    discovery:
      roots: [${PLANT_INDUSTRIES.map((i) => `"${PLANT}${i}"`).join(", ")}]
`,
        ));
        try {
          await waitFor(
            () => addresses(run.rows).length === PLANT_SENSORS.length,
            "a row per plant sensor",
          );
          await waitFor(() => run.rows.length >= PLANT_SENSORS.length + 20, "changes");
          const st = run.host.status().ua;
          assertEquals(st.detail?.monitored_items, PLANT_SENSORS.length);
          assertEquals(st.detail?.without_eurange, undefined, "every sensor has an EURange");
          assertEquals(st.last_error, null);
          const byAddress = new Map(PLANT_SENSORS.map((s) => [addressOf(s), s]));
          for (const r of run.rows) {
            const s = byAddress.get(r.address as string)!;
            assertEquals(r.unit, PLANT_UNITS[s.unit].symbol, sensorPath(s));
            const v = r.value_num as number;
            assert(v >= s.low && v <= s.high, `${sensorPath(s)} = ${v} in ${s.low}..${s.high}`);
            assertEquals(JSON.parse(r.metadata as string).browse_path, `Objects/${sensorPath(s)}`);
          }
        } finally {
          await run.stop();
        }
      },
    );

    await t.step("discovery: include and exclude globs on browse paths", async () => {
      const browsed = new Set<string>();
      sim.onRequest((name, req) => {
        if (name !== "BrowseRequest") return;
        for (const n of req.nodesToBrowse) browsed.add(String(n.nodeId.value));
      });
      const run = await runSource(source(
        sim.endpoint,
        `    discovery:
      roots: [Objects/Utilities]
      include: ["**/Treatment/**"]
      exclude: ["Objects/**/PH", "Utilities/*/*/Filter01", "**/Substation/**"]
`,
      ));
      const want = sensorsWhere((s) =>
        s.industry === "Utilities" && s.area === "Treatment" && s.name !== "PH" &&
        s.equipment !== "Filter01"
      ).sort();
      try {
        await waitFor(() => addresses(run.rows).length >= want.length, "rows");
        await new Promise((r) => setTimeout(r, 300));
        assertEquals(addresses(run.rows), want);
        assertEquals(run.host.status().ua.detail?.nodes, want.length);
      } finally {
        await run.stop();
      }
      // Excluded folders are not browsed at all; the others are.
      const site = "Utilities/NorthgateWaterworks";
      assert(browsed.has(`${site}/Treatment/Clarifier01`), [...browsed].join(", "));
      assert(!browsed.has(`${site}/Treatment/Filter01`), "Filter01 pruned");
      assert(!browsed.has(`${site}/Substation`), "Substation pruned by **/Substation/**");
    });

    await t.step("discovery: max_depth below a NodeId root, variable_limit", async () => {
      const site = `${PLANT}Mining/PilbaraIronOre`;
      const shallow = await runSource(source(
        sim.endpoint,
        `    discovery: { roots: ["${site}"], max_depth: 1 }\n`,
      ));
      try {
        const st = await waitFor(
          () => {
            const s = shallow.host.status().ua;
            return s?.state === "connected" ? s : undefined;
          },
          "connected",
        );
        assertEquals(st.detail?.nodes, 0, "sensors are two folder levels below the site");
      } finally {
        await shallow.stop();
      }
      const deep = await runSource(source(
        sim.endpoint,
        `    variable_limit: 7\n    discovery: { roots: ["${site}"], max_depth: 2 }\n`,
      ));
      try {
        await waitFor(() => addresses(deep.rows).length >= 7, "rows");
        await new Promise((r) => setTimeout(r, 300));
        const got = addresses(deep.rows);
        assertEquals(got.length, 7);
        assert(got.every((a) => mining.includes(a)), got.join(", "));
        const row = latestByAddress(deep.rows).get(got[0])!;
        assert(
          JSON.parse(row.metadata as string).browse_path.startsWith(
            "Objects/Mining/PilbaraIronOre/",
          ),
          "browse paths start at Objects for a NodeId root",
        );
      } finally {
        await deep.stop();
      }
    });

    await t.step("discovery: an unknown root is an error in the status", async () => {
      const run = await runSource(source(
        sim.endpoint,
        "    discovery: { roots: [Objects/Nowhere, Objects/OilAndGas] }\n",
      ));
      try {
        await waitFor(() => addresses(run.rows).length >= 16, "rows of the other root");
        const st = run.host.status().ua;
        assert(
          String(st.last_error).includes("discovery root Objects/Nowhere is not on the server"),
          String(st.last_error),
        );
      } finally {
        await run.stop();
      }
    });
  } finally {
    await sim.stop();
  }
});

Deno.test("opcua: a server that hides its limits and answers BadTooManyOperations", async () => {
  const sim = await startOpcuaSimulator({
    port: freePort(),
    plant: true,
    hiddenLimits: { maxNodesPerRead: 4, maxMonitoredItemsPerCall: 5 },
  });
  const batches: number[] = [];
  sim.onRequest((name, req) => {
    if (name === "CreateMonitoredItemsRequest") batches.push(req.itemsToCreate.length);
  });
  try {
    const run = await runSource(
      source(sim.endpoint, "    discovery: { roots: [Objects/Mining] }\n"),
    );
    try {
      await waitFor(() => addresses(run.rows).length === mining.length, "a row per node", 30_000);
      const st = run.host.status().ua;
      assertEquals(st.state, "connected");
      assertEquals(st.detail?.monitored_items, mining.length);
      assert(String(st.last_error).includes("BadTooManyOperations"), String(st.last_error));
      assertEquals(st.detail?.max_monitored_items_per_call, 4);
    } finally {
      await run.stop();
    }
    // 18 refused, 9 refused, then halves of 4 (the last one shorter).
    assertEquals(batches, [18, 9, 4, 4, 4, 4, 2]);
  } finally {
    await sim.stop();
  }
});

Deno.test("opcua deadbands: absolute filters small changes; percent without EURange is reported", async (t) => {
  const sim = await startOpcuaSimulator({ port: freePort(), updateMs: 100 });
  const ns = `nsu=${OPCUA_SIM_NAMESPACE};s=Plant1/Line1`;
  try {
    await t.step(
      "absolute deadband larger than the signal's swing: only the first value",
      async () => {
        const flow = `${ns}/Pump1/FlowRate`;
        const run = await runSource(source(
          sim.endpoint,
          `    deadband_type: absolute
    deadband_value: 100
    nodes: ["${flow}"]
`,
        ));
        try {
          // The flow swings ±15 around 120 and moves every 100 ms; 100 is never crossed.
          await waitFor(() => addresses(run.rows).length === 1, "the first value");
          await new Promise((r) => setTimeout(r, 2000));
          assertEquals(run.rows.filter((r) => r.address === flow).length, 1);
          assertEquals(run.host.status().ua.detail?.monitored_items, 1);
        } finally {
          await run.stop();
        }
      },
    );

    await t.step("percent deadband on a node without EURange: monitored, reported", async () => {
      const temp = `${ns}/Press1/Temperature`, count = `${ns}/Press1/PartCount`;
      const run = await runSource(source(
        sim.endpoint,
        `    deadband_type: percent
    deadband_value: 50
    nodes: ["${temp}", "${count}"]
`,
      ));
      try {
        await waitFor(
          () => run.rows.filter((r) => r.address === count).length >= 3,
          "the counter changing (no deadband on it)",
        );
        const st = run.host.status().ua;
        assertEquals([st.detail?.monitored_items, st.detail?.without_eurange], [2, 1]);
        assert(String(st.last_error).includes("needs an EURange"), String(st.last_error));
        assert(String(st.last_error).includes(count), String(st.last_error));
        // Temperature swings 5 around 65 of a 170 span: far below 50 %.
        assertEquals(run.rows.filter((r) => r.address === temp).length, 1);
      } finally {
        await run.stop();
      }
    });
  } finally {
    await sim.stop();
  }
});
