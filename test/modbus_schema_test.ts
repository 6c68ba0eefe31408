/**
 * The Modbus register map's overlap check: entries that read the same
 * registers of one unit are refused at load with the key path; register maps
 * that only look alike (different bits, tables or units) load.
 */
import { assert, assertEquals } from "./assert.ts";
import { loadConfigText } from "../src/config/load.ts";

/** The config errors of a Modbus source with `registers` (and `extra` keys); [] when it loads. */
function errorsOf(registers: string[], extra = ""): string[] {
  const res = loadConfigText(
    `sources:
  - name: plc
    protocol: modbus
    endpoint: modbus://127.0.0.1
${extra}    registers:
${registers.map((r) => `      - ${r}\n`).join("")}`,
    { env: {} },
  );
  return res.ok ? [] : res.errors;
}

Deno.test("modbus schema: maps that share an address but not a value load", () => {
  const valid: Array<[string, string[], string?]> = [
    ["different bits of one register", [
      "{address: 5, type: holding, data_type: bool, bit: 0}",
      "{address: 5, type: holding, data_type: bool, bit: 1}",
      "{address: 5, count: 2, type: holding, data_type: bool, bit: 2}",
      "{address: 6, type: input, data_type: bool, bit: 0}",
    ]],
    ["the same address in every table", [
      "{address: 0, type: holding}",
      "{address: 0, type: input}",
      "{address: 0, type: coil}",
      "{address: 0, type: discrete}",
    ]],
    ["the same address on different units", [
      "{address: 0, type: holding, data_type: float32}",
      "{address: 0, type: holding, data_type: float32, unit_id: 2}",
      "{address: 1, type: holding, unit_id: 3}",
    ]],
    ["an explicit unit_id other than slave_id beside the default", [
      "{address: 0, type: holding}",
      "{address: 0, type: holding, unit_id: 1}",
    ], "    slave_id: 4\n"],
    ["adjacent values", [
      "{address: 0, type: holding, data_type: float32}",
      "{address: 2, count: 4, type: holding, data_type: int32, unit_id: 1}",
    ]],
  ];
  for (const [what, registers, extra] of valid) {
    assertEquals(errorsOf(registers, extra), [], what);
  }
});

Deno.test("modbus schema: an explicit unit_id equal to slave_id overlaps entries without one", () => {
  assertEquals(
    errorsOf([
      "{address: 0, type: holding, data_type: float32}",
      "{address: 1, type: holding, unit_id: 1}",
    ]),
    ["sources[0].registers[1].address: holding 1..1 overlaps registers[0] (0..1) on unit 1"],
    "slave_id 1 by default",
  );
  assertEquals(
    errorsOf([
      "{address: 7, type: coil, unit_id: 9}",
      "{address: 0, count: 8, type: coil}",
    ], "    slave_id: 9\n"),
    ["sources[0].registers[1].address: coil 0..7 overlaps registers[0] (7..7) on unit 9"],
    "slave_id 9",
  );
});

Deno.test("modbus schema: two entries reading the same bit of a register overlap", () => {
  assertEquals(
    errorsOf([
      "{address: 3, count: 4, type: holding, data_type: bool, bit: 7}",
      "{address: 6, type: holding, data_type: bool, bit: 7, name: again}",
      "{address: 6, type: holding, data_type: bool, bit: 6}",
    ]),
    [
      "sources[0].registers[1].address: holding 6..6 bit 7 overlaps registers[0] (3..6 bit 7) " +
      "on unit 1",
    ],
  );
  // A bit and the whole register it is part of are read twice as well.
  const word = errorsOf([
    "{address: 3, type: holding, data_type: bool, bit: 7}",
    "{address: 2, count: 2, type: holding}",
  ]);
  assertEquals(word.length, 1, word.join("\n"));
  assert(word[0].startsWith("sources[0].registers[1].address: holding 2..3 overlaps"), word[0]);
});
