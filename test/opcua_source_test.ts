/**
 * The OPC UA source in its real Worker under the real host, against the
 * simulator's node-opcua server on 127.0.0.1 (security None): subscription
 * and polling values with tag names, units, browse paths and qualities,
 * StatusCodes set on the server, discovery limits, an unreachable endpoint.
 * One simulator serves every step.
 */
import { assert, assertEquals } from "./assert.ts";
import { freePort, latestByAddress, runSourceUnderHost, waitFor } from "./helpers.ts";
import { OPCUA_SIM_NAMESPACE, startOpcuaSimulator } from "../src/simulator/opcua_server.ts";

const WORKER = new URL("../src/sources/opcua/worker.ts", import.meta.url);
const NS = `nsu=${OPCUA_SIM_NAMESPACE};s=Plant1/Line1`;

/** Runs the first source of `yaml` under a SourceHost; rows land in `rows`. */
function runSource(yaml: string) {
  return runSourceUnderHost(yaml, { workerUrl: (p) => (p === "opcua" ? WORKER : undefined) });
}

const latest = latestByAddress;

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
          15_000,
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
        // Values keep changing: the counter goes up.
        const first = count.value_num as number;
        await waitFor(
          () => (latest(run.rows).get(`${NS}/Press1/PartCount`)?.value_num as number) > first,
          "the counter to increase",
          10_000,
        );
      } finally {
        await run.stop();
      }
    });

    await t.step("subscription: a StatusCode set on the server is the quality_code", async () => {
      const run = await runSource(source(sim.endpoint, EXPLICIT));
      const path = "Plant1/Line1/Press1/Pressure";
      try {
        await waitFor(() => run.rows.length > 0, "first rows", 15_000);
        sim.set(path, { value: 7.25, status: "UncertainLastUsableValue" });
        const unc = await waitFor(
          () => latest(run.rows).get(`${NS}/Press1/Pressure`)?.quality === "uncertain",
          "an uncertain row",
          10_000,
        );
        assert(unc);
        const row = latest(run.rows).get(`${NS}/Press1/Pressure`)!;
        assertEquals([row.value_num, row.quality_code], [7.25, 0x40900000]);
        sim.set(path, { status: "BadSensorFailure" });
        await waitFor(
          () => latest(run.rows).get(`${NS}/Press1/Pressure`)?.quality_code === 0x808C0000,
          "a bad row",
          10_000,
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
        await waitFor(() => run.rows.length >= 5 * 5, "five polls", 15_000);
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
        await waitFor(() => latest(run.rows).size >= 3, "rows of three variables", 15_000);
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

    await t.step("an unreachable endpoint reports an error without crashing", async () => {
      const run = await runSource(source(`opc.tcp://127.0.0.1:${freePort()}`, ""));
      try {
        const st = await waitFor(
          () => {
            const s = run.host.status().ua;
            return s?.state === "error" ? s : undefined;
          },
          "an error status",
          15_000,
        );
        assert(
          String(st.last_error).includes("connect to opc.tcp://127.0.0.1:"),
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
