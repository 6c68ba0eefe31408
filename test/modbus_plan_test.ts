/** The Modbus request optimizer: register maps to asserted request lists. */
import { assertEquals } from "./assert.ts";
import { loadConfigText } from "../src/config/load.ts";
import { planReads, tagsOf } from "../src/sources/modbus/plan.ts";
import type { ModbusRegisterConfig } from "../src/sources/modbus/schema.ts";

/** Registers validated through the real config loader, so defaults apply as in production. */
function registers(
  yaml: string,
  extra = "",
): { slave_id: number; registers: ModbusRegisterConfig[]; max_gap: number } {
  const res = loadConfigText(
    `sources:\n  - name: plc\n    protocol: modbus\n    endpoint: modbus://127.0.0.1\n${extra}    registers:\n${yaml}`,
    { env: {} },
  );
  if (!res.ok) throw new Error(res.errors.join("\n"));
  return res.config.sources[0] as never;
}

/** `unit/table/address+count` per read, with the tag names it serves. */
function plan(yaml: string, extra = "", maxGap?: number): string[] {
  const cfg = registers(yaml, extra);
  return planReads(tagsOf(cfg), maxGap ?? cfg.max_gap).map((r) =>
    `${r.unitId}/${r.table}/${r.address}+${r.count}: ${r.tags.map((t) => t.name).join(",")}`
  );
}

Deno.test("modbus plan: the description's 100 registers of float are 50 tags in one read", () => {
  const cfg = registers(`      - {address: 0, count: 100, type: holding, data_type: float}\n`);
  const tags = tagsOf(cfg);
  assertEquals(tags.length, 50);
  assertEquals(tags[0].name, "holding_0");
  assertEquals(tags[0].path, "1/holding/0");
  assertEquals(tags[49].path, "1/holding/98");
  assertEquals(planReads(tags, 10).map((r) => [r.address, r.count, r.tags.length]), [[0, 100, 50]]);
});

Deno.test("modbus plan: gaps up to max_gap are joined, larger gaps split", () => {
  const yaml = `      - {address: 0, type: holding, name: a}
      - {address: 11, type: holding, name: b}
      - {address: 30, type: holding, data_type: float32, name: c}
`;
  // a ends at 1; b at 11 leaves a gap of 10 (joined); c at 30 leaves 18 (split).
  assertEquals(plan(yaml), ["1/holding/0+12: a,b", "1/holding/30+2: c"]);
  assertEquals(plan(yaml, "", 9), ["1/holding/0+1: a", "1/holding/11+1: b", "1/holding/30+2: c"]);
  assertEquals(plan(yaml, "", 18), ["1/holding/0+32: a,b,c"]);
  assertEquals(plan(yaml, "    max_gap: 0\n"), [
    "1/holding/0+1: a",
    "1/holding/11+1: b",
    "1/holding/30+2: c",
  ]);
});

Deno.test("modbus plan: reads stay within 125 registers", () => {
  const yaml = `      - {address: 0, count: 120, type: input, name: blk}
      - {address: 120, count: 4, type: input, data_type: float32, name: f}
      - {address: 124, type: input, name: last}
      - {address: 125, type: input, name: over}
`;
  // 0..124 is exactly 125 registers; 125 would make it 126.
  const reads = plan(yaml, "", 10).map((r) => r.split(":")[0]);
  assertEquals(reads, ["1/input/0+125", "1/input/125+1"]);
  // A 4-register value that would cross the limit starts a new read.
  assertEquals(
    plan(`      - {address: 0, count: 122, type: holding, name: blk}
      - {address: 122, type: holding, data_type: float64, name: d}
`).map((r) => r.split(":")[0]),
    ["1/holding/0+122", "1/holding/122+4"],
  );
});

Deno.test("modbus plan: coils and discrete inputs read up to 2000 bits", () => {
  assertEquals(
    plan(`      - {address: 0, count: 1000, type: coil}
      - {address: 1000, count: 1000, type: coil}
      - {address: 2000, type: coil, name: next}
      - {address: 5, count: 3, type: discrete, name: di}
`).map((r) => r.split(":")[0]),
    ["1/coil/0+2000", "1/coil/2000+1", "1/discrete/5+3"],
  );
});

Deno.test("modbus plan: unit ids and tables are never merged; output is sorted", () => {
  assertEquals(
    plan(
      `      - {address: 4, type: coil, name: run}
      - {address: 2, type: input, name: i2}
      - {address: 0, type: holding, name: h0, unit_id: 2}
      - {address: 1, type: holding, name: h1}
      - {address: 0, type: holding, name: h0u1}
      - {address: 3, type: discrete, name: d3}
`,
      "    slave_id: 1\n",
    ),
    [
      "1/holding/0+2: h0u1,h1",
      "1/input/2+1: i2",
      "1/coil/4+1: run",
      "1/discrete/3+1: d3",
      "2/holding/0+1: h0",
    ],
  );
});

Deno.test("modbus plan: named blocks, bits of one register and strings", () => {
  const cfg = registers(
    `      - {address: 10, count: 6, type: holding, data_type: float32, name: temp, unit: degC}
      - {address: 20, type: holding, bit: 0, name: running}
      - {address: 20, type: holding, bit: 3, name: alarm}
      - {address: 21, count: 4, type: holding, data_type: string, name: serial}
      - {address: 30, type: holding, bit: 1}
`,
  );
  const tags = tagsOf(cfg);
  assertEquals(tags.map((t) => [t.name, t.path, t.width]), [
    ["temp_0", "1/holding/10", 2],
    ["temp_1", "1/holding/12", 2],
    ["temp_2", "1/holding/14", 2],
    ["running", "1/holding/20.0", 1],
    ["alarm", "1/holding/20.3", 1],
    ["serial", "1/holding/21", 4],
    ["holding_30_bit1", "1/holding/30.1", 1],
  ]);
  assertEquals(tags[0].unit, "degC");
  assertEquals(
    planReads(tags, 10).map((r) => `${r.address}+${r.count}`),
    ["10+21"],
  );
  assertEquals(planReads(tags, 0).map((r) => `${r.address}+${r.count}`), [
    "10+6",
    "20+5",
    "30+1",
  ]);
});

Deno.test("modbus plan: no tags, no reads", () => {
  assertEquals(planReads([], 10), []);
});
