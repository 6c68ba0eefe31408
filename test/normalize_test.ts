import { assert, assertEquals } from "./assert.ts";
import { createNormalizer, inferSignalType, sanitizeSegment } from "../src/normalize/normalize.ts";
import { fromFloat32 } from "../src/normalize/values.ts";
import { compileQualityTable, qualityOf } from "../src/normalize/quality.ts";
import { typeValue } from "../src/normalize/values.ts";
import type { Reading } from "../src/sources/worker_protocol.ts";

const settings = {
  enabled: true,
  path_template: "{site}/{area}/{line}/{equipment}/{signal_type}/{tag_name}",
  missing_placeholder: "unassigned",
  quality_mapping: { modbus: { uncertain: [6] } },
};
const source = {
  name: "press_opc",
  protocol: "opcua",
  endpoint: "opc.tcp://10.0.0.5:4840",
  context: { site: "Columbus", area: "Press Shop", line: "Line-3", equipment: "Press 1" },
};

Deno.test("normalize: sanitizing segments", () => {
  const cases: Array<[string, string]> = [
    ["Columbus", "columbus"],
    ["Line-3", "line_3"],
    ["Press 1", "press_1"],
    ["Hydraulic.Pressure", "hydraulic_pressure"],
    ["  __Motor--Temp (°C)__ ", "motor_temp_c"],
    ["ÜberHitze", "berhitze"],
    ["a//b\\\\c", "a_b_c"],
    ["", ""],
  ];
  for (const [input, want] of cases) assertEquals(sanitizeSegment(input), want, input);
});

Deno.test("normalize: signal type from unit, then tag name words, else value", () => {
  const cases: Array<[string | undefined, string, string]> = [
    ["°C", "x", "temperature"],
    ["bar", "x", "pressure"],
    ["rpm", "x", "speed"],
    ["m3/h", "x", "flow"],
    ["kW", "x", "power"],
    ["A", "x", "current"],
    ["V", "x", "voltage"],
    ["mm/s", "x", "vibration"],
    ["K", "x", "temperature"],
    ["°F", "x", "temperature"],
    ["Pa", "x", "pressure"],
    ["psi", "x", "pressure"],
    ["l/min", "x", "flow"],
    ["W", "x", "power"],
    ["g", "x", "vibration"],
    ["%", "Tank3/Level", "level"],
    ["%", "Silo_FillLevel", "level"],
    ["%", "x", "percent"],
    ["%", "ValvePosition", "percent"],
    ["%", "Motor_Temperature", "percent"],
    [undefined, "Motor_Temperature", "temperature"],
    [undefined, "HydraulicPressure", "pressure"],
    [undefined, "running_status", "status"],
    [undefined, "setpoint_7", "value"],
    // words, not substrings: a press is a machine, a compressor's state is a status
    [undefined, "Press2/Running", "status"],
    [undefined, "press2.cycle_time", "value"],
    [undefined, "Compressor_State", "status"],
    [undefined, "BoilerTempPV", "temperature"],
    [undefined, "steam_pres", "pressure"],
    [undefined, "Overflow_Alarm", "status"],
    [undefined, "FlowRate", "flow"],
  ];
  for (const [unit, name, want] of cases) {
    assertEquals(inferSignalType(unit, name), want, `${unit} ${name}`);
  }
});

Deno.test("normalize: quality by protocol rules and the configured table", () => {
  assertEquals(qualityOf("opcua", 0), "good");
  assertEquals(qualityOf("opcua", 0x40000000), "uncertain");
  assertEquals(qualityOf("opcua", 0x80340000), "bad");
  assertEquals(qualityOf("opc_classic", 192), "good");
  assertEquals(qualityOf("opc_classic", 64), "uncertain");
  assertEquals(qualityOf("opc_classic", 0), "bad");
  assertEquals(compileQualityTable(settings.quality_mapping)("modbus", 6), "uncertain");
  assertEquals(compileQualityTable(settings.quality_mapping)("modbus", 7), undefined);
  assertEquals(qualityOf("modbus", 2), "bad");
});

Deno.test("normalize: value typing", () => {
  assertEquals(typeValue(12.5).value_type, "float");
  assertEquals(typeValue(12).value_type, "int");
  assertEquals(typeValue(NaN), {
    value_num: null,
    value_str: "NaN",
    value_bool: null,
    value_type: "float",
  });
  assertEquals(typeValue(true), {
    value_num: 1,
    value_str: null,
    value_bool: true,
    value_type: "bool",
  });
  assertEquals(typeValue(2n ** 63n - 1n).value_str, "9223372036854775807");
  assertEquals(typeValue("42").value_type, "string");
  assertEquals(typeValue("9007199254740993", "int").value_str, "9007199254740993");
  assertEquals(typeValue({ a: [1, 2] }).value_str, '{"a":[1,2]}');
  assertEquals(typeValue(new Uint8Array([1, 2, 255])).value_str, "AQL/");
  assertEquals(typeValue(new Date(1000)).value_num, 1_000_000);
});

Deno.test("normalize: record object and JSON row agree, with escaping", () => {
  const n = createNormalizer(settings);
  const readings: Reading[] = [
    {
      address: "ns=2;s=Line3.Press1.Temp",
      tag_name: 'Temp "A"',
      value: 71.25,
      quality_code: 0,
      unit: "°C",
      event_time: 1_700_000_000_000_000,
    },
    {
      address: "ns=2;s=Line3.Press1.Mode",
      tag_name: "Mode",
      value: "AUTO\n\\ok",
      quality_code: 0x40000000,
    },
    {
      address: "ns=2;s=x",
      tag_name: "Flag",
      value: false,
      quality_code: 0x80000000,
      metadata: { browse: "Objects/A/B" },
    },
    {
      address: "ns=2;s=y",
      tag_name: "Nothing",
      value: null,
      quality_code: 0,
      context: { equipment: "Press 2" },
    },
  ];
  for (const r of readings) {
    const rec = n(source, r, 5);
    const row = JSON.parse(n.row(source, r, 5, "abc"));
    assertEquals(row, { record_id: "abc", ...rec });
  }
  const first = n(source, readings[0], 5);
  assertEquals(first.tag_path, "columbus/press_shop/line_3/press_1/temperature/temp_a");
  assertEquals(first.quality, "good");
  assertEquals(n(source, readings[1], 5).quality, "uncertain");
  assertEquals(n(source, readings[2], 5).quality, "bad");
  assertEquals(n(source, readings[3], 5).equipment, "press_2", "per-reading context wins");
  assertEquals(n(source, readings[3], 5).event_time, 5, "receive time when the source has none");
});

Deno.test("normalize: missing context uses the placeholder and is counted", () => {
  const n = createNormalizer(settings);
  const bare = { ...source, name: "bare", context: { site: "S1" } };
  const rec = n(bare, { address: "a", tag_name: "Level", value: 1, quality_code: 0 }, 1);
  assertEquals(rec.tag_path, "s1/unassigned/unassigned/unassigned/level/level");
  assertEquals(n.incompletePaths.get("bare"), 1);
  assert(!n.incompletePaths.has(source.name));
});

Deno.test("normalize: a tag whose unit changes is recomputed, not served stale from the cache", () => {
  const n = createNormalizer(settings);
  const r: Reading = { address: "t", tag_name: "x", value: 1, quality_code: 0, unit: "bar" };
  assertEquals(n(source, r, 1).signal_type, "pressure");
  assertEquals(n(source, { ...r, unit: "rpm" }, 1).signal_type, "speed");
});

Deno.test("normalize: disabled normalization passes the raw address as the path", () => {
  const n = createNormalizer({ ...settings, enabled: false });
  assertEquals(
    n(source, { address: "ns=2;s=A.B", tag_name: "B", value: 1, quality_code: 0 }, 1).tag_path,
    "ns=2;s=A.B",
  );
});

Deno.test("normalize: float32 values as their shortest decimal", () => {
  const cases: Array<[number, number]> = [
    [Math.fround(42.9), 42.9],
    [Math.fround(12.5), 12.5],
    [Math.fround(0.1), 0.1],
    [Math.fround(-273.15), -273.15],
    [Math.fround(3.4028234663852886e38), 3.4028235e38],
    [Math.fround(1e-45), 1e-45],
    [0, 0],
    [Math.fround(16777217), 16777216],
  ];
  for (const [input, want] of cases) assertEquals(fromFloat32(input), want, String(input));
  assertEquals(Number.isNaN(fromFloat32(NaN)), true);
  assertEquals(fromFloat32(-Infinity), -Infinity);
});
