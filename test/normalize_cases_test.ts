/**
 * Table-driven normalization cases drawn from realistic OPC-UA browse paths,
 * MQTT topics, Sparkplug metric names and Modbus tags: ISA-95 paths, rules,
 * sanitizing, signal types, qualities and value typing.
 */
import { assertEquals } from "./assert.ts";
import { createNormalizer, type NormalizeSettings } from "../src/normalize/normalize.ts";
import { globToRegExp, type Rule } from "../src/normalize/rules.ts";
import type { Reading, TagContext } from "../src/sources/worker_protocol.ts";

const BASE: NormalizeSettings = {
  enabled: true,
  path_template: "{site}/{area}/{line}/{equipment}/{signal_type}/{tag_name}",
  missing_placeholder: "unassigned",
  default_context: { site: "plant1", area: "production", line: "line1", equipment: "default" },
};

const RULES: Rule[] = [
  // OPC-UA: Objects/<site>/<line>/<machine>/<signal>
  {
    match: { protocol: "opcua", browse_path: "Objects/*/*/*/*" },
    set: { site: "$1", line: "$2", equipment: "$3", tag_name: "$4" },
  },
  // MQTT: <site>/<line>/<equipment>/<tag>
  {
    match: {
      protocol: "mqtt",
      address: "^(?<site>[^/]+)/(?<line>line\\d+)/(?<eq>[^/]+)/(?<tag>[^/]+)$",
    },
    set: { site: "$<site>", line: "$<line>", equipment: "$<eq>", tag_name: "$<tag>" },
  },
  // Sparkplug (read by an MQTT source): spBv1.0/<group>/<node>/<device>/<metric>
  {
    match: { protocol: "sparkplug", address: "^spBv1\\.0/([^/]+)/([^/]+)/([^/]+)/(.+)$" },
    set: { area: "$1", line: "$2", equipment: "$3", tag_name: "$4" },
  },
  // A later rule wins: the utilities group is its own site.
  {
    match: { protocol: "sparkplug", address: "^spBv1\\.0/Utilities/" },
    set: { site: "utilities" },
  },
  // Modbus: unit 3 is the boiler; its register 40010 is steam pressure in bar.
  { match: { protocol: "modbus", address: "^3/" }, set: { equipment: "boiler1" } },
  {
    match: { protocol: "modbus", address: "^3/holding/10$" },
    set: { tag_name: "steam_pressure", unit: "bar" },
  },
  // Only for one source.
  { match: { source: "mixer_plc" }, set: { area: "mixing" } },
];

interface Case {
  name: string;
  protocol: string;
  source?: string;
  context?: TagContext;
  reading: Partial<Reading> & { address: string };
  settings?: Partial<NormalizeSettings>;
  expect: Record<string, unknown>;
}

const CASES: Case[] = [
  // ---- OPC-UA browse paths
  {
    name: "opcua rule from browse path",
    protocol: "opcua",
    reading: {
      address: "ns=2;s=Columbus.Line3.Machine1.Temperature",
      tag_name: "Temperature",
      browse_path: "Objects/Columbus/Line3/Machine1/Temperature",
      unit: "°C",
      value: 71.5,
    },
    expect: { tag_path: "columbus/production/line3/machine1/temperature/temperature" },
  },
  {
    name: "opcua dotted browse names sanitized",
    protocol: "opcua",
    reading: {
      address: "ns=3;i=1001",
      tag_name: "Hydraulic.Pressure",
      browse_path: "Objects/Columbus/Line-3/Press 1/Hydraulic.Pressure",
      unit: "bar",
    },
    expect: { tag_path: "columbus/production/line_3/press_1/pressure/hydraulic_pressure" },
  },
  {
    name: "opcua path too deep for the rule keeps source context",
    protocol: "opcua",
    context: { site: "Detroit", area: "Body Shop", line: "L2", equipment: "Robot 7" },
    reading: {
      address: "ns=2;s=R7.Axis1.Torque",
      tag_name: "Axis1.Torque",
      browse_path: "Objects/Detroit/L2/Robot7/Axis1/Torque",
      unit: "Nm",
    },
    expect: { tag_path: "detroit/body_shop/l2/robot_7/value/axis1_torque", signal_type: "value" },
  },
  {
    name: "opcua good status",
    protocol: "opcua",
    reading: { address: "ns=2;s=a", quality_code: 0 },
    expect: { quality: "good" },
  },
  {
    name: "opcua UncertainLastUsableValue",
    protocol: "opcua",
    reading: { address: "ns=2;s=a", quality_code: 0x40900000 },
    expect: { quality: "uncertain", quality_code: 0x40900000 },
  },
  {
    name: "opcua BadNodeIdUnknown",
    protocol: "opcua",
    reading: { address: "ns=2;s=a", quality_code: 0x80340000 },
    expect: { quality: "bad" },
  },
  {
    name: "opcua BadCommunicationError",
    protocol: "opcua",
    reading: { address: "ns=2;s=a", quality_code: 0x80050000 },
    expect: { quality: "bad" },
  },
  {
    name: "opcua GoodLocalOverride",
    protocol: "opcua",
    reading: { address: "ns=2;s=a", quality_code: 0x00960000 },
    expect: { quality: "good" },
  },
  {
    name: "opcua DateTime value",
    protocol: "opcua",
    reading: {
      address: "ns=2;s=LastMaint",
      tag_name: "LastMaintenance",
      value: new Date("2026-01-02T03:04:05Z"),
    },
    expect: {
      value_type: "timestamp",
      value_num: 1767323045000000,
      value_str: "2026-01-02T03:04:05.000Z",
    },
  },
  {
    name: "opcua LocalizedText as json",
    protocol: "opcua",
    reading: { address: "ns=2;s=Mode", tag_name: "Mode", value: { locale: "en", text: "Auto" } },
    expect: { value_type: "json", value_str: '{"locale":"en","text":"Auto"}' },
  },
  {
    name: "opcua ByteString as base64",
    protocol: "opcua",
    reading: { address: "ns=2;s=Blob", tag_name: "Blob", value: new Uint8Array([0, 255, 16]) },
    expect: { value_type: "bytes", value_str: "AP8Q" },
  },
  {
    name: "opcua array as json",
    protocol: "opcua",
    reading: { address: "ns=2;s=Profile", tag_name: "Profile", value: [1.5, 2.5] },
    expect: { value_type: "json", value_str: "[1.5,2.5]" },
  },
  {
    name: "opcua Int64 beyond 2^53 keeps exact text",
    protocol: "opcua",
    reading: { address: "ns=2;s=Counter", tag_name: "Counter", value: 9007199254740993n },
    expect: { value_type: "int", value_str: "9007199254740993", signal_type: "counter" },
  },
  // ---- MQTT topics
  {
    name: "mqtt topic rule with named groups",
    protocol: "mqtt",
    reading: {
      address: "columbus/line3/press1/hydraulic_pressure",
      tag_name: "hydraulic_pressure",
      value: 182.4,
    },
    expect: {
      tag_path: "columbus/production/line3/press1/pressure/hydraulic_pressure",
      value_type: "float",
    },
  },
  {
    name: "mqtt topic rule needs 'lineN'",
    protocol: "mqtt",
    reading: {
      address: "columbus/packaging/wrapper2/film_tension",
      tag_name: "film_tension",
      value: 12,
    },
    expect: { tag_path: "plant1/production/line1/default/value/film_tension", value_type: "int" },
  },
  {
    name: "mqtt numeric string stays a string",
    protocol: "mqtt",
    reading: { address: "sensors/t1", tag_name: "t1", value: "42" },
    expect: { value_type: "string", value_str: "42", value_num: null },
  },
  {
    name: "mqtt numeric string with int hint",
    protocol: "mqtt",
    reading: { address: "sensors/c1", tag_name: "count", value: "42", value_type: "int" },
    expect: { value_type: "int", value_num: 42 },
  },
  {
    name: "mqtt boolean",
    protocol: "mqtt",
    reading: { address: "sensors/door", tag_name: "door_open", value: true },
    expect: { value_type: "bool", value_bool: true, value_num: 1 },
  },
  {
    name: "mqtt NaN kept as text",
    protocol: "mqtt",
    reading: { address: "sensors/x", tag_name: "x", value: NaN },
    expect: { value_str: "NaN", value_num: null, value_type: "float" },
  },
  {
    name: "mqtt Infinity kept as text",
    protocol: "mqtt",
    reading: { address: "sensors/x", tag_name: "x", value: -Infinity },
    expect: { value_str: "-Infinity" },
  },
  {
    name: "mqtt null value",
    protocol: "mqtt",
    reading: { address: "sensors/x", tag_name: "x", value: null },
    expect: { value_num: null, value_str: null, value_bool: null },
  },
  {
    name: "mqtt quality from configured table",
    protocol: "mqtt",
    settings: { quality_mapping: { mqtt: { uncertain: [1] } } },
    reading: { address: "sensors/x", tag_name: "x", quality_code: 1 },
    expect: { quality: "uncertain" },
  },
  {
    name: "mqtt topic seen by a browse-path rule",
    protocol: "mqtt",
    settings: {
      rules: [{ match: { browse_path: "columbus/*/*/*" }, set: { site: "columbus" } }],
    },
    reading: {
      address: "columbus/line3/press1/hydraulic_pressure",
      tag_name: "hydraulic_pressure",
      browse_path: "columbus/line3/press1/hydraulic_pressure",
    },
    expect: { site: "columbus" },
  },
  {
    name: "configured table wins over a quality the source decided",
    protocol: "mqtt",
    settings: { quality_mapping: { mqtt: { bad: [7] } } },
    reading: { address: "sensors/x", tag_name: "x", quality_code: 7, quality: "uncertain" },
    expect: { quality: "bad", quality_code: 7 },
  },
  {
    name: "sparkplug quality table applies to Sparkplug readings of an MQTT source",
    protocol: "mqtt",
    settings: { quality_mapping: { sparkplug: { bad: [500] }, mqtt: { good: [500] } } },
    reading: {
      protocol: "sparkplug",
      address: "spBv1.0/G/N/D/Temp",
      tag_name: "Temp",
      quality_code: 500,
      quality: "uncertain",
      value: null,
    },
    expect: { quality: "bad", source_protocol: "sparkplug" },
  },
  {
    name: "opcua table of StatusCode top bytes, as in the original description",
    protocol: "opcua",
    // The original lists 128..130 as bad; here a plant reads top byte 0x80 as uncertain.
    settings: { quality_mapping: { opcua: { good: [0], uncertain: [64, 128], bad: [129, 130] } } },
    reading: { address: "ns=2;s=T", tag_name: "T", quality_code: 0x80ab0000 },
    expect: { quality: "uncertain", quality_code: 0x80ab0000 },
  },
  {
    name: "opcua table with a whole StatusCode overrides the severity bits",
    protocol: "opcua",
    settings: { quality_mapping: { opcua: { good: [0x40a40000] } } },
    reading: { address: "ns=2;s=T", tag_name: "T", quality_code: 0x40a40000 },
    expect: { quality: "good" },
  },
  {
    name: "numeric text becomes a number when a rule says so",
    protocol: "mqtt",
    settings: {
      rules: [{ match: { address: "^legacy/" }, set: { value_type: "float" } }],
    },
    reading: { address: "legacy/tank1/level", tag_name: "level", value: " 42.5" },
    expect: { value_num: 42.5, value_str: null, value_type: "float" },
  },
  {
    name: "numeric text stays text without a rule",
    protocol: "mqtt",
    settings: {
      rules: [{ match: { address: "^legacy/" }, set: { value_type: "float" } }],
    },
    reading: { address: "modern/tank1/level", tag_name: "level", value: "42.5" },
    expect: { value_num: null, value_str: "42.5", value_type: "string" },
  },
  {
    name: "a value_type rule leaves text that is not a number as text",
    protocol: "mqtt",
    settings: {
      rules: [{ match: { address: "^legacy/" }, set: { value_type: "int" } }],
    },
    reading: { address: "legacy/tank1/state", tag_name: "state", value: "FILLING" },
    expect: { value_num: null, value_str: "FILLING", value_type: "string" },
  },
  {
    name: "a value_type rule leaves Infinity as text",
    protocol: "mqtt",
    settings: {
      rules: [{ match: { address: "^legacy/" }, set: { value_type: "float" } }],
    },
    reading: { address: "legacy/a", tag_name: "a", value: "Infinity" },
    expect: { value_num: null, value_str: "Infinity", value_type: "string" },
  },
  {
    name: "a value_type rule leaves hex text as text",
    protocol: "mqtt",
    settings: {
      rules: [{ match: { address: "^legacy/" }, set: { value_type: "int" } }],
    },
    reading: { address: "legacy/b", tag_name: "b", value: " 0x1A " },
    expect: { value_num: null, value_str: " 0x1A ", value_type: "string" },
  },
  {
    name: "a value_type rule does not relabel JSON text",
    protocol: "opcua",
    settings: {
      rules: [{ match: { address: "^ns=2;" }, set: { value_type: "float" } }],
    },
    reading: { address: "ns=2;s=Arr", tag_name: "Arr", value: "[1,2]", value_type: "json" },
    expect: { value_str: "[1,2]", value_type: "json" },
  },
  {
    name: "mqtt source decided quality",
    protocol: "mqtt",
    reading: { address: "sensors/x", tag_name: "x", quality_code: 0, quality: "uncertain" },
    expect: { quality: "uncertain", quality_code: 0 },
  },
  // ---- Sparkplug metric names
  {
    name: "sparkplug device metric with folders",
    protocol: "mqtt",
    reading: {
      address: "spBv1.0/Assembly/Line4/Welder2/Motor/Current",
      protocol: "sparkplug",
      tag_name: "Motor/Current",
      unit: "A",
      value: 12.5,
    },
    expect: {
      tag_path: "plant1/assembly/line4/welder2/current/motor_current",
      signal_type: "current",
      source_protocol: "sparkplug",
    },
  },
  {
    name: "sparkplug later rule overrides site",
    protocol: "mqtt",
    reading: {
      address: "spBv1.0/Utilities/Boilerhouse/Pump3/Flow",
      protocol: "sparkplug",
      tag_name: "Flow",
      unit: "m3/h",
      value: 40,
    },
    expect: { tag_path: "utilities/utilities/boilerhouse/pump3/flow/flow" },
  },
  {
    name: "sparkplug properties unit kW",
    protocol: "mqtt",
    reading: {
      protocol: "sparkplug",
      address: "spBv1.0/G/N/D/Power",
      tag_name: "Power",
      unit: "kW",
      value: 3,
    },
    expect: { signal_type: "power" },
  },
  {
    name: "sparkplug Bytes metric",
    protocol: "mqtt",
    reading: {
      protocol: "sparkplug",
      address: "spBv1.0/G/N/D/Raw",
      tag_name: "Raw",
      value: new Uint8Array([104, 105]),
    },
    expect: { value_type: "bytes", value_str: "aGk=" },
  },
  {
    name: "sparkplug UInt64 max",
    protocol: "mqtt",
    reading: {
      protocol: "sparkplug",
      address: "spBv1.0/G/N/D/Total",
      tag_name: "Total",
      value: 18446744073709551615n,
    },
    expect: { value_str: "18446744073709551615", value_type: "int" },
  },
  {
    name: "sparkplug DataSet as json",
    protocol: "mqtt",
    reading: {
      protocol: "sparkplug",
      address: "spBv1.0/G/N/D/Recipe",
      tag_name: "Recipe",
      value: { columns: ["a"], rows: [[1]] },
    },
    expect: { value_type: "json" },
  },
  // ---- Modbus tags
  {
    name: "modbus unit rule sets equipment",
    protocol: "modbus",
    reading: { address: "3/holding/0", tag_name: "holding_0", unit: "°C", value: 81.2 },
    expect: { tag_path: "plant1/production/line1/boiler1/temperature/holding_0" },
  },
  {
    name: "modbus register rule sets name and unit",
    protocol: "modbus",
    reading: { address: "3/holding/10", tag_name: "holding_10", value: 11.8 },
    expect: { tag_path: "plant1/production/line1/boiler1/pressure/steam_pressure", unit: "bar" },
  },
  {
    name: "modbus other unit untouched",
    protocol: "modbus",
    reading: { address: "1/input/4", tag_name: "input_4", value: 5 },
    expect: { tag_path: "plant1/production/line1/default/value/input_4" },
  },
  {
    name: "modbus exception code is bad",
    protocol: "modbus",
    reading: { address: "1/holding/7", tag_name: "h7", value: null, quality_code: 2 },
    expect: { quality: "bad", quality_code: 2 },
  },
  {
    name: "modbus coil as bool",
    protocol: "modbus",
    reading: { address: "1/coil/0", tag_name: "Pump Running", value: false },
    expect: { value_bool: false, signal_type: "status", tag_name: "pump_running" },
  },
  {
    name: "modbus per-tag context wins over rules",
    protocol: "modbus",
    reading: {
      address: "3/holding/1",
      tag_name: "Level",
      unit: "%",
      context: { equipment: "Tank 4" },
    },
    expect: { equipment: "tank_4", signal_type: "level" },
  },
  {
    name: "modbus rpm speed",
    protocol: "modbus",
    reading: { address: "1/holding/20", tag_name: "fan", unit: "rpm" },
    expect: { signal_type: "speed" },
  },
  {
    name: "modbus vibration mm/s",
    protocol: "modbus",
    reading: { address: "1/holding/22", tag_name: "bearing", unit: "mm/s" },
    expect: { signal_type: "vibration" },
  },
  {
    name: "modbus voltage",
    protocol: "modbus",
    reading: { address: "1/input/0", tag_name: "L1", unit: "V" },
    expect: { signal_type: "voltage" },
  },
  // ---- source-scoped rule, templates, disabled normalization, missing context
  {
    name: "rule scoped to one source",
    protocol: "modbus",
    source: "mixer_plc",
    reading: { address: "1/holding/0", tag_name: "Speed" },
    expect: { area: "mixing", signal_type: "speed" },
  },
  {
    name: "custom template with protocol and address",
    protocol: "modbus",
    settings: { path_template: "{site}.{source_protocol}.{tag_name}" },
    reading: { address: "1/holding/0", tag_name: "Speed" },
    expect: { tag_path: "plant1.modbus.speed" },
  },
  {
    name: "normalization disabled passes the address",
    protocol: "opcua",
    settings: { enabled: false },
    reading: { address: "ns=2;s=Line3.Temp", tag_name: "Temp" },
    expect: { tag_path: "ns=2;s=Line3.Temp" },
  },
  {
    name: "missing context uses the placeholder",
    protocol: "mqtt",
    settings: { default_context: {}, missing_placeholder: "tbd" },
    context: { site: "S" },
    reading: { address: "x/y", tag_name: "y" },
    expect: { tag_path: "s/tbd/tbd/tbd/value/y" },
  },
  {
    name: "opcua generic segments dropped before a rule's glob",
    protocol: "opcua",
    settings: {
      rules: [{
        match: { browse_path: "*/*/*/*" },
        set: { site: "$1", line: "$2", equipment: "$3", tag_name: "$4" },
      }],
    },
    reading: {
      address: "ns=2;s=T",
      tag_name: "T",
      browse_path: "Root/Objects/Columbus/Line3/Machine1/Temperature",
    },
    expect: { tag_path: "columbus/production/line3/machine1/temperature/temperature" },
  },
  {
    name: "opcua {browse_path} placeholder: sanitized, generic segments dropped",
    protocol: "opcua",
    settings: { path_template: "{site}/{browse_path}", rules: [] },
    reading: {
      address: "ns=2;s=HP",
      tag_name: "Hydraulic.Pressure",
      browse_path: "Objects/Columbus/Line-3/Press 1/Hydraulic.Pressure",
    },
    expect: { tag_path: "plant1/columbus/line_3/press_1/hydraulic_pressure" },
  },
  {
    name: "opcua Server object's path without generic names",
    protocol: "opcua",
    settings: { path_template: "{browse_path}" },
    reading: {
      address: "i=2258",
      tag_name: "CurrentTime",
      browse_path: "Objects/Server/ServerStatus/CurrentTime",
    },
    expect: { tag_path: "serverstatus/currenttime" },
  },
  {
    name: "generic_segments empty keeps the whole browse path",
    protocol: "opcua",
    settings: { path_template: "{browse_path}", generic_segments: [] },
    reading: {
      address: "ns=2;s=T",
      tag_name: "T",
      browse_path: "Objects/Columbus/T",
    },
    expect: { tag_path: "objects/columbus/t" },
  },
  {
    name: "empty tag name falls back to the address",
    protocol: "mqtt",
    reading: { address: "sensors/Boiler 1/T", tag_name: "***" },
    expect: { tag_name: "sensors_boiler_1_t" },
  },
];

Deno.test(`normalization: ${CASES.length} table-driven cases`, () => {
  const failures: string[] = [];
  for (const c of CASES) {
    const n = createNormalizer({ ...BASE, rules: RULES, ...c.settings });
    const source = {
      name: c.source ?? `${c.protocol}_src`,
      protocol: c.protocol,
      endpoint: "x://y",
      context: c.context ?? {},
    };
    const reading: Reading = { tag_name: "tag", value: 1, quality_code: 0, ...c.reading };
    const rec = n(source, reading, 1_000_000) as unknown as Record<string, unknown>;
    const got = Object.fromEntries(Object.keys(c.expect).map((k) => [k, rec[k]]));
    try {
      assertEquals(got, c.expect);
      assertEquals(
        JSON.parse(n.row(source, reading, 1_000_000, "id")),
        { record_id: "id", ...rec },
        "row and object agree",
      );
    } catch (e) {
      failures.push(`${c.name}: ${(e as Error).message}`);
    }
  }
  assertEquals(failures, []);
});

Deno.test("normalization: browse-path globs", () => {
  const cases: Array<[string, string, boolean]> = [
    ["Objects/*/Line3/**", "Objects/Columbus/Line3/Machine1/Temp", true],
    ["Objects/*/Line3/*", "Objects/Columbus/Line3/Machine1/Temp", false],
    ["**/Temp?", "Objects/A/Temp1", true],
    ["Objects/(x)+", "Objects/(x)+", true],
  ];
  for (const [glob, path, want] of cases) {
    assertEquals(globToRegExp(glob).test(path), want, `${glob} ${path}`);
  }
});
