/** Modbus readings: bad readings (timeout, exception, bad frame) carry the tag's value type. */
import { assertEquals } from "./assert.ts";
import { loadConfigText } from "../src/config/load.ts";
import { typeValue } from "../src/normalize/values.ts";
import { type ModbusMapConfig, planReads, tagsOf } from "../src/sources/modbus/plan.ts";
import {
  failedReadings,
  MODBUS_BAD_RESPONSE_CODE,
  MODBUS_TIMEOUT_CODE,
  readingsOf,
} from "../src/sources/modbus/readings.ts";
import type { Reading } from "../src/sources/worker_protocol.ts";
import type { ValueType } from "../src/record.ts";

/** Tag name → the value type each tag's readings must carry. */
const WANT: Record<string, ValueType | undefined> = {
  f32: "float",
  f64: "float",
  i16: "int",
  scaled: "float",
  u32_offset: "int",
  i64: "int",
  text: "string",
  flag: "bool",
  coil: "bool",
  di: "bool",
};

/** The read plan of a register map with one tag of every kind (max_gap 0: one read each). */
function plan() {
  const res = loadConfigText(
    `sources:
  - name: plc
    protocol: modbus
    endpoint: modbus://127.0.0.1
    max_gap: 0
    registers:
      - {address: 0, type: holding, data_type: float, name: f32}
      - {address: 10, type: input, data_type: float64, name: f64}
      - {address: 20, type: holding, data_type: int16, name: i16}
      - {address: 30, type: holding, data_type: int16, scale: 0.1, name: scaled}
      - {address: 40, type: holding, data_type: uint32, offset: 5, name: u32_offset}
      - {address: 50, type: holding, data_type: int64, name: i64}
      - {address: 60, count: 4, type: holding, data_type: string, name: text}
      - {address: 70, type: holding, data_type: bool, bit: 3, name: flag}
      - {address: 0, type: coil, name: coil}
      - {address: 0, type: discrete, name: di}
`,
    { env: {} },
  );
  if (!res.ok) throw new Error(res.errors.join("\n"));
  const cfg = res.config.sources[0] as never as ModbusMapConfig & { max_gap: number };
  return planReads(tagsOf(cfg), cfg.max_gap);
}

const typesOf = (readings: Reading[]) =>
  Object.fromEntries(readings.map((r) => [r.tag_name, r.value_type]));

Deno.test("modbus readings: a failed read gives every tag its own value type", () => {
  const reads = plan();
  assertEquals(reads.length, Object.keys(WANT).length, "one read per tag");
  for (const code of [MODBUS_TIMEOUT_CODE, 2, 11]) {
    const bad = reads.flatMap((req) => failedReadings(req, code, "failed", 0));
    assertEquals(typesOf(bad), WANT, `code ${code}`);
    for (const r of bad) {
      assertEquals([r.value, r.quality_code], [null, code], r.tag_name);
      // The normalizer keeps the hint for a missing value (it said "string" without one).
      assertEquals(typeValue(r.value, r.value_type).value_type, WANT[r.tag_name], r.tag_name);
    }
  }
});

Deno.test("modbus readings: a short response gives bad readings of the same type as good ones", () => {
  const reads = plan();
  const good = reads.flatMap((req) =>
    readingsOf(req, Array.from({ length: req.count }, () => (req.table === "coil" ? true : 1)), 0)
  );
  assertEquals(good.map((r) => r.quality_code), good.map(() => 0), "all decode");
  assertEquals(typesOf(good), WANT, "good readings");
  const short = reads.flatMap((req) => readingsOf(req, [], 0));
  assertEquals(short.map((r) => r.quality_code), short.map(() => MODBUS_BAD_RESPONSE_CODE));
  assertEquals(typesOf(short), WANT, "bad readings of a short response");
});
