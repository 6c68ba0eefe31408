/**
 * The OPC UA source in its real Worker under the real host, against the
 * simulator's node-opcua server on 127.0.0.1 (security None): subscription
 * and polling values with tag names, units, browse paths and qualities,
 * StatusCodes set on the server, discovery limits, unknown NodeIds beside
 * known ones, node entries with browse paths and per-tag context, an
 * unreachable endpoint.
 * One simulator serves every step.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  freePort,
  latestByAddress,
  opcuaSourceYaml,
  runSourceUnderHost,
  waitFor,
} from "./helpers.ts";
import { OPCUA_SIM_NAMESPACE, startOpcuaSimulator } from "../src/simulator/opcua_server.ts";

const NS = `nsu=${OPCUA_SIM_NAMESPACE};s=Plant1/Line1`;

/** Runs the first source of `yaml` under a SourceHost; rows land in `rows`. */
const runSource = runSourceUnderHost;

const latest = latestByAddress;

const source = opcuaSourceYaml;

const EXPLICIT = `    nodes:
      - "${NS}/Press1/Temperature"
      - "${NS}/Press1/Pressure"
      - "${NS}/Press1/Running"
      - "${NS}/Press1/PartCount"
      - "${NS}/Pump1/Mode"
`;

Deno.test("opcua source against the simulator", async (t) => {
  const port = freePort();
  const sim = await startOpcuaSimulator({ port, updateMs: 100 });
  try {
    await t.step("subscription: values, tag names, units, browse paths, good quality", async () => {
      const run = await runSource(source(sim.endpoint, EXPLICIT));
      try {
        const want = ["Temperature", "Pressure", "Running", "PartCount", "Mode"];
        const seen = await waitFor(
          () => {
            const m = latest(run.rows);
            return want.every((n) => m.has(`${NS}/${n === "Mode" ? "Pump1" : "Press1"}/${n}`))
              ? m
              : undefined;
          },
          "a row for every node",
        );
        const temp = seen.get(`${NS}/Press1/Temperature`)!;
        assertEquals(
          [temp.tag_name, temp.unit, temp.value_type, temp.quality, temp.quality_code],
          ["temperature", "°C", "float", "good", 0],
        );
        assert((temp.value_num as number) > 50 && (temp.value_num as number) < 80, "temperature");
        assertEquals(
          JSON.parse(temp.metadata as string).browse_path,
          "Objects/Plant1/Line1/Press1/Temperature",
        );
        assert(Math.abs((temp.event_time as number) / 1000 - Date.now()) < 10_000, "event_time");
        const pressure = seen.get(`${NS}/Press1/Pressure`)!;
        assertEquals([pressure.tag_name, pressure.unit], ["pressure", "bar"]);
        const running = seen.get(`${NS}/Press1/Running`)!;
        assertEquals([running.value_bool, running.value_type, running.unit], [
          true,
          "bool",
          null,
        ]);
        const count = seen.get(`${NS}/Press1/PartCount`)!;
        assertEquals(count.value_type, "int");
        const mode = seen.get(`${NS}/Pump1/Mode`)!;
        assertEquals([mode.value_str, mode.value_type], ["AUTO", "string"]);
        const status = run.host.status().ua;
        assertEquals(status.state, "connected");
        assertEquals(status.detail?.monitored_items, 5);
        assertEquals(status.detail?.security_mode, "None");
        assertEquals(status.detail?.security_policy, "None");
        assertEquals(
          [status.detail?.unknown_nodes, status.detail?.reconnects, status.counters.reconnects],
          [0, 0, 0],
        );
        assertEquals(status.detail?.subscription_rebuilds, 0);
        assert(status.last_data_time !== null, "last_data_time");
        // Values keep changing: the counter goes up.
        const first = count.value_num as number;
        await waitFor(
          () => (latest(run.rows).get(`${NS}/Press1/PartCount`)?.value_num as number) > first,
          "the counter to increase",
        );
      } finally {
        await run.stop();
      }
    });

    await t.step("subscription: a StatusCode set on the server is the quality_code", async () => {
      const run = await runSource(source(sim.endpoint, EXPLICIT));
      const path = "Plant1/Line1/Press1/Pressure";
      try {
        await waitFor(() => run.rows.length > 0, "first rows");
        sim.set(path, { value: 7.25, status: "UncertainLastUsableValue" });
        const unc = await waitFor(
          () => latest(run.rows).get(`${NS}/Press1/Pressure`)?.quality === "uncertain",
          "an uncertain row",
        );
        assert(unc);
        const row = latest(run.rows).get(`${NS}/Press1/Pressure`)!;
        assertEquals([row.value_num, row.quality_code], [7.25, 0x40900000]);
        sim.set(path, { status: "BadSensorFailure" });
        await waitFor(
          () => latest(run.rows).get(`${NS}/Press1/Pressure`)?.quality_code === 0x808C0000,
          "a bad row",
        );
        assertEquals(latest(run.rows).get(`${NS}/Press1/Pressure`)!.quality, "bad");
      } finally {
        sim.release(path);
        await run.stop();
      }
    });

    await t.step("polling: values on the polling interval", async () => {
      const run = await runSource(
        source(sim.endpoint, `    polling_mode: true\n    polling_interval_ms: 200\n${EXPLICIT}`),
      );
      try {
        await waitFor(() => run.rows.length >= 5 * 5, "five polls");
        const temps = run.rows.filter((r) => r.address === `${NS}/Press1/Temperature`);
        assert(temps.length >= 5, "a row per poll");
        assertEquals([temps[0].unit, temps[0].quality], ["°C", "good"]);
        assertEquals(run.host.status().ua.detail?.mode, "polling");
        assertEquals(run.host.status().ua.detail?.monitored_items, 0);
      } finally {
        await run.stop();
      }
    });

    await t.step("discovery: variables below Objects, up to variable_limit", async () => {
      const run = await runSource(source(sim.endpoint, "    variable_limit: 3\n"));
      try {
        await waitFor(() => latest(run.rows).size >= 3, "rows of three variables");
        await new Promise((r) => setTimeout(r, 500));
        const seen = latest(run.rows);
        assertEquals(seen.size, 3);
        const temp = seen.get(`${NS}/Press1/Temperature`);
        assert(temp, `discovered addresses: ${[...seen.keys()].join(", ")}`);
        assertEquals(run.host.status().ua.detail?.monitored_items, 3);
        assertEquals(
          JSON.parse(temp.metadata as string).browse_path,
          "Objects/Plant1/Line1/Press1/Temperature",
        );
      } finally {
        await run.stop();
      }
    });

    await t.step(
      "unknown NodeIds beside known ones: counted in status, the rest delivered",
      async () => {
        const unknown = Array.from({ length: 40 }, (_, k) => `      - "${NS}/Nope${k}"`);
        const run = await runSource(source(
          sim.endpoint,
          `    nodes:\n      - "${NS}/Press1/PartCount"\n${unknown.join("\n")}\n` +
            `      - "nsu=urn:otedge:nowhere;s=X"\n      - "${NS}/Press1/Pressure"\n`,
        ));
        try {
          const first = await waitFor(
            () => latest(run.rows).get(`${NS}/Press1/PartCount`)?.value_num as number | undefined,
            "a known node's value",
          );
          await waitFor(
            () => (latest(run.rows).get(`${NS}/Press1/PartCount`)?.value_num as number) > first,
            "the known node's value to move",
          );
          const st = run.host.status().ua;
          assertEquals(st.state, "connected");
          assertEquals(st.detail.monitored_items, 2);
          assertEquals(st.detail.unknown_nodes, 41);
          assertEquals(
            st.detail.unknown_node_ids,
            [0, 1, 2, 3, 4].map((k) => `${NS}/Nope${k}`),
          );
          assert(
            String(st.last_error).startsWith("41 configured node(s) are not on the server: ") &&
              String(st.last_error).includes(`${NS}/Nope0 (BadNodeIdUnknown)`) &&
              String(st.last_error).includes("and 36 more"),
            String(st.last_error),
          );
          const bad = latest(run.rows.filter((r) => r.quality === "bad"));
          assertEquals(bad.size, 41);
          assertEquals(bad.get(`${NS}/Nope7`)?.quality_code, 0x80340000);
          assert(
            String(bad.get("nsu=urn:otedge:nowhere;s=X")?.metadata).includes("not on the server"),
            "unknown namespace reason",
          );
          assertEquals(latest(run.rows).get(`${NS}/Press1/Pressure`)?.quality, "good");
        } finally {
          await run.stop();
        }
      },
    );

    await t.step("node entries: browse paths and per-tag context reach the tag path", async () => {
      const run = await runSource(source(
        sim.endpoint,
        `    site: plant1
    area: production
    line: line1
    equipment: press1
    nodes:
      - browse_path: Objects/Plant1/Line1/Press1/Temperature
        name: press_temp
        site: north
        area: forming
        line: l7
        equipment: press_a
        signal_type: temperature
        unit: degC
      - { node_id: "${NS}/Pump1/FlowRate", equipment: pump_b }
      - "${NS}/Press1/Pressure"
      - { browse_path: Objects/Server/ServerStatus/CurrentTime, name: server_time }
      - { browse_path: Objects/Plant1/Line1/Press9/Nothing }
      - { browse_path: Objects/Plant1/Line1/Press1/Pressure, namespace: "urn:otedge:elsewhere" }
`,
      ));
      try {
        const want = [
          `${NS}/Press1/Temperature`,
          `${NS}/Pump1/FlowRate`,
          `${NS}/Press1/Pressure`,
          "i=2258",
        ];
        const seen = await waitFor(
          () => (want.every((a) => latest(run.rows).has(a)) ? latest(run.rows) : undefined),
          "a row for every entry",
        );
        const temp = seen.get(`${NS}/Press1/Temperature`)!;
        assertEquals(
          [temp.tag_name, temp.unit, temp.site, temp.area, temp.line, temp.equipment],
          ["press_temp", "degC", "north", "forming", "l7", "press_a"],
        );
        assertEquals(temp.tag_path, "north/forming/l7/press_a/temperature/press_temp");
        assertEquals(
          JSON.parse(temp.metadata as string).browse_path,
          "Objects/Plant1/Line1/Press1/Temperature",
        );
        const flow = seen.get(`${NS}/Pump1/FlowRate`)!;
        assertEquals([flow.tag_name, flow.site, flow.equipment], ["flowrate", "plant1", "pump_b"]);
        assert(String(flow.tag_path).startsWith("plant1/production/line1/pump_b/"), "flow path");
        const pressure = seen.get(`${NS}/Press1/Pressure`)!;
        assertEquals(pressure.tag_path, "plant1/production/line1/press1/pressure/pressure");
        assertEquals(seen.get("i=2258")!.tag_name, "server_time");
        const st = run.host.status().ua;
        assertEquals([st.detail.monitored_items, st.detail.unknown_nodes], [4, 2]);
        assertEquals(st.detail.unknown_node_ids, [
          "Objects/Plant1/Line1/Press9/Nothing",
          "Objects/Plant1/Line1/Press1/Pressure",
        ]);
        assert(
          String(st.last_error).includes("(namespace urn:otedge:elsewhere is not on the server)"),
          String(st.last_error),
        );
      } finally {
        await run.stop();
      }
    });

    await t.step("an unreachable endpoint reports an error without crashing", async () => {
      const run = await runSource(source(`opc.tcp://127.0.0.1:${freePort()}`, ""));
      try {
        const st = await waitFor(
          () => {
            const s = run.host.status().ua;
            return s?.state === "error" ? s : undefined;
          },
          "an error status",
        );
        assert(
          /^connect to opc\.tcp:\/\/127\.0\.0\.1:\d+ failed: nothing accepts connections at 127\.0\.0\.1:\d+ \(connection refused\): check the endpoint/
            .test(String(st.last_error)),
          String(st.last_error),
        );
        assertEquals(run.rows.length, 0);
      } finally {
        await run.stop();
      }
    });
  } finally {
    await sim.stop();
  }
});
