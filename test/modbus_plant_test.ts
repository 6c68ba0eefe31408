/**
 * The simulator's Modbus plant read with the demo's own Modbus source
 * (config/demo.yaml): every register of both units arrives with a plausible
 * value in its encoding (float32 in four byte orders, int16 x10, coils,
 * discrete inputs, an input register), per-tag equipment reaches the tag
 * path, and a silent unit gives timeouts while the other unit keeps answering.
 */
import { parse as parseYaml, stringify } from "yaml";
import { assert, assertEquals } from "./assert.ts";
import { freePort, latestByAddress, runSourceUnderHost, waitFor } from "./helpers.ts";
import { float32Words } from "../src/simulator/modbus_server.ts";
import { startModbusPlant } from "../src/simulator/modbus_plant.ts";
import { decodeWords } from "../src/sources/modbus/decode.ts";
import { MODBUS_TIMEOUT_CODE } from "../src/sources/modbus/readings.ts";

const DEMO_YAML = new URL("../config/demo.yaml", import.meta.url);

/** The demo's Modbus source, pointed at `port`, polling fast. */
async function demoModbusSource(port: number): Promise<string> {
  const doc = parseYaml(await Deno.readTextFile(DEMO_YAML)) as {
    sources: Array<Record<string, unknown>>;
  };
  const src = doc.sources.find((s) => s.protocol === "modbus");
  assert(src, "config/demo.yaml has a Modbus source");
  const source = {
    ...src,
    endpoint: `modbus://127.0.0.1:${port}`,
    polling_interval_ms: 100,
    timeout_ms: 1000,
  };
  return stringify({ sources: [source] });
}

/** Expected range (inclusive) or value type per address. */
const EXPECT: Array<[string, string, [number, number] | "bool"]> = [
  ["1/holding/10", "boiler_temperature", [75, 85]],
  ["1/holding/12", "steam_pressure", [11.2, 11.8]],
  ["1/holding/14", "tank_level", [30, 70]],
  ["1/holding/16", "flue_gas_o2", [2.8, 3.6]],
  ["1/holding/18", "feedwater_flow", [10, 14]],
  ["1/coil/10", "burner_on", "bool"],
  ["1/discrete/10", "low_water_alarm", "bool"],
  ["2/holding/10", "pump_speed", [1420, 1480]],
  ["2/holding/12", "motor_current", [39, 45]],
  ["2/input/10", "running_hours", [0, 65535]],
  ["2/coil/10", "pump_running", "bool"],
  ["2/discrete/10", "high_vibration_alarm", "bool"],
];

Deno.test("simulator: float32 words in every byte order decode back", () => {
  for (const order of ["ABCD", "CDAB", "BADC", "DCBA"] as const) {
    const got = decodeWords(float32Words(-17.625, order), {
      dataType: "float32",
      byteOrder: order,
    });
    assertEquals(got, -17.625, order);
  }
});

Deno.test("simulator: the demo's Modbus source reads the whole plant", async () => {
  const port = freePort();
  const plant = await startModbusPlant({ host: "127.0.0.1", port });
  const run = await runSourceUnderHost(await demoModbusSource(port));
  try {
    const latest = await waitFor(
      () => {
        const m = latestByAddress(run.rows);
        return EXPECT.every(([a]) => m.get(a)?.quality === "good") ? m : undefined;
      },
      "every demo register good",
      20_000,
    );
    for (const [address, name, want] of EXPECT) {
      const r = latest.get(address)!;
      assertEquals(r.tag_name, name, address);
      if (want === "bool") {
        assertEquals(r.value_type, "bool", `${address} ${JSON.stringify(r)}`);
      } else {
        const v = r.value_num as number;
        assert(v >= want[0] && v <= want[1], `${name} = ${v}, expected ${want[0]}..${want[1]}`);
      }
    }
    assertEquals(latest.get("2/coil/10")!.value_bool, true);
    assert(String(latest.get("2/holding/10")!.tag_path).includes("/pump1/"), "per-tag equipment");
    assert(String(latest.get("1/holding/10")!.tag_path).includes("/boiler1/"), "source equipment");
  } finally {
    await run.stop();
    await plant.stop();
  }
});

Deno.test("simulator: a silent unit times out while the other answers", async () => {
  const port = freePort();
  const plant = await startModbusPlant({ host: "127.0.0.1", port, silentUnit: 2 });
  const run = await runSourceUnderHost(await demoModbusSource(port));
  try {
    await waitFor(
      () => {
        const unit2 = run.rows.filter((r) => r.address === "2/holding/10");
        const unit1 = run.rows.filter((r) => r.address === "1/holding/10");
        return unit2.length >= 2 &&
          unit2.every((r) => r.quality_code === MODBUS_TIMEOUT_CODE) &&
          unit1.filter((r) => r.quality === "good").length >= 3;
      },
      "unit 2 only timeouts, unit 1 answering poll after poll",
      20_000,
    );
    assertEquals(
      run.rows.filter((r) => String(r.address).startsWith("1/") && r.quality !== "good"),
      [],
    );
  } finally {
    await run.stop();
    await plant.stop();
  }
});
