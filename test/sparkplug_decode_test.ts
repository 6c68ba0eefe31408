/** Sparkplug B decoding: every data type, arrays, is_null, properties, invalid protobuf, topics. */
import { get } from "sparkplug-payload";
import { assert, assertEquals } from "./assert.ts";
import {
  decodeSparkplug,
  PayloadProto,
  type SparkplugMetric,
} from "../src/sources/mqtt/sparkplug/decode.ts";
import { parseTopic } from "../src/sources/mqtt/sparkplug/topic.ts";

const sp = get("spBv1.0")!;

/** A Long-shaped 64-bit value protobufjs encodes exactly. */
function long(v: bigint): never {
  const u = BigInt.asUintN(64, v);
  return { low: Number(u & 0xffffffffn) | 0, high: Number(u >> 32n) | 0, unsigned: true } as never;
}

function decodeOne(metric: Record<string, unknown>): SparkplugMetric {
  const res = decodeSparkplug(sp.encodePayload({ timestamp: 1000, metrics: [metric as never] }));
  if (!res.ok) throw new Error(res.reason);
  return res.payload.metrics[0];
}

const scalars: Array<[string, unknown, unknown]> = [
  ["Int8", -5, -5],
  ["Int16", -300, -300],
  ["Int32", -70000, -70000],
  ["Int64", long(-(2n ** 60n)), -(2n ** 60n)],
  ["Int64", long(-42n), -42],
  ["UInt8", 200, 200],
  ["UInt16", 60000, 60000],
  ["UInt32", 4_000_000_000, 4_000_000_000],
  ["UInt64", long(2n ** 64n - 1n), 2n ** 64n - 1n],
  ["UInt64", long(2n ** 53n - 1n), 2 ** 53 - 1],
  ["Float", 1.5, 1.5],
  ["Float", 42.9, 42.9], // sent as float32, recorded as its shortest decimal
  ["Double", 0.1, 0.1],
  ["Boolean", true, true],
  ["String", "RUNNING", "RUNNING"],
  ["Text", "long text", "long text"],
  ["UUID", "123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174000"],
];

for (const [type, input, expected] of scalars) {
  Deno.test(`decode ${type} ${String(expected)}`, () => {
    const m = decodeOne({ name: "m", type, value: input });
    assertEquals(m.value, expected);
    assertEquals(m.isNull, false);
  });
}

Deno.test("decode DateTime as a Date", () => {
  const ms = Date.parse("2024-05-06T07:08:09.250Z");
  const m = decodeOne({ name: "t", type: "DateTime", value: long(BigInt(ms)) });
  assert(m.value instanceof Date);
  assertEquals((m.value as Date).toISOString(), "2024-05-06T07:08:09.250Z");
});

Deno.test("decode Bytes as Uint8Array", () => {
  const m = decodeOne({ name: "b", type: "Bytes", value: new Uint8Array([1, 2, 255]) });
  assert(m.value instanceof Uint8Array);
  assertEquals([...(m.value as Uint8Array)], [1, 2, 255]);
});

Deno.test("decode Int8 sent as its unsigned byte and UInt32 sent in int_value", () => {
  const bytes = PayloadProto.encode({
    metrics: [{ name: "i8", datatype: 1, intValue: 251 }, {
      name: "u32",
      datatype: 7,
      intValue: 4_000_000_000,
    }],
  }).finish();
  const res = decodeSparkplug(bytes);
  assert(res.ok);
  assertEquals(res.payload.metrics.map((m) => m.value), [-5, 4_000_000_000]);
});

Deno.test("decode DataSet as JSON with Int32, Int64 and String columns", () => {
  const m = decodeOne({
    name: "ds",
    type: "DataSet",
    value: {
      numOfColumns: 3,
      columns: ["a", "b", "c"],
      types: ["Int32", "Int64", "String"],
      rows: [[-1, long(2n ** 60n), "x"], [2, long(7n), "y"]],
    },
  });
  assertEquals(m.value, {
    columns: ["a", "b", "c"],
    types: ["Int32", "Int64", "String"],
    rows: [[-1, "1152921504606846976", "x"], [2, 7, "y"]],
  });
});

Deno.test("decode Template as JSON with parameters and metrics", () => {
  const m = decodeOne({
    name: "motor",
    type: "Template",
    value: {
      version: "1.0",
      templateRef: "Motor",
      isDefinition: false,
      parameters: [{ name: "rated", type: "Double", value: 7.5 }],
      metrics: [{ name: "rpm", type: "Int32", value: 1450 }, {
        name: "on",
        type: "Boolean",
        value: true,
      }],
    },
  });
  assertEquals(m.value, {
    version: "1.0",
    templateRef: "Motor",
    isDefinition: false,
    parameters: [{ name: "rated", type: "Double", value: 7.5 }],
    metrics: [{ name: "rpm", type: "Int32", value: 1450 }, {
      name: "on",
      type: "Boolean",
      value: true,
    }],
  });
});

Deno.test("decode arrays packed little-endian in bytes_value", () => {
  const i64 = new Uint8Array(16);
  new DataView(i64.buffer).setBigInt64(0, -(2n ** 60n), true);
  new DataView(i64.buffer).setBigInt64(8, 5n, true);
  const f32 = new Uint8Array(8);
  new DataView(f32.buffer).setFloat32(0, 1.5, true);
  new DataView(f32.buffer).setFloat32(4, -2, true);
  const dt = new Uint8Array(8);
  new DataView(dt.buffer).setBigInt64(0, 1714979289250n, true);
  const bytes = PayloadProto.encode({
    metrics: [
      { name: "i16", datatype: 23, bytesValue: new Uint8Array([0xd4, 0xfe, 0x02, 0x00]) },
      { name: "i64", datatype: 25, bytesValue: i64 },
      { name: "u8", datatype: 26, bytesValue: new Uint8Array([0, 255]) },
      { name: "f", datatype: 30, bytesValue: f32 },
      { name: "b", datatype: 32, bytesValue: new Uint8Array([4, 0, 0, 0, 0b1001_0000]) },
      { name: "s", datatype: 33, bytesValue: new TextEncoder().encode("ab\0cd\0") },
      { name: "dt", datatype: 34, bytesValue: dt },
    ],
  }).finish();
  const res = decodeSparkplug(bytes);
  assert(res.ok, res.ok ? "" : res.reason);
  assertEquals(res.payload.metrics.map((m) => m.value), [
    [-300, 2],
    ["-1152921504606846976", 5],
    [0, 255],
    [1.5, -2],
    [true, false, false, true],
    ["ab", "cd"],
    ["2024-05-06T07:08:09.250Z"],
  ]);
});

Deno.test("decode is_null, properties, alias, timestamps and seq", () => {
  const bytes = sp.encodePayload({
    timestamp: 1714979289250,
    seq: 7,
    metrics: [{
      name: "temp",
      alias: 3,
      timestamp: 1714979289000,
      type: "Double",
      value: null,
      properties: {
        engUnit: { type: "String", value: "degC" },
        Quality: { type: "Int32", value: 500 },
      },
    } as never],
  });
  const res = decodeSparkplug(bytes);
  assert(res.ok);
  assertEquals(res.payload.timestamp, 1714979289250);
  assertEquals(res.payload.seq, 7);
  const m = res.payload.metrics[0];
  assertEquals([m.name, m.alias, m.timestamp, m.datatype, m.isNull, m.value], [
    "temp",
    3,
    1714979289000,
    10,
    true,
    undefined,
  ]);
  assertEquals(m.properties, { engUnit: "degC", Quality: 500 });
});

Deno.test("decode a DATA metric without datatype leaves the value to the BIRTH type", () => {
  const res = decodeSparkplug(
    PayloadProto.encode({ metrics: [{ alias: 1, intValue: 9 }] }).finish(),
  );
  assert(res.ok);
  assertEquals([res.payload.metrics[0].datatype, res.payload.metrics[0].value], [
    undefined,
    undefined,
  ]);
});

Deno.test("invalid protobuf gives a reason", () => {
  const res = decodeSparkplug(new Uint8Array([0x0a, 0x05, 0x01]));
  assert(!res.ok);
  assert(res.reason.startsWith("invalid Sparkplug B payload: "), res.reason);
});

Deno.test("topics: node, device, STATE, unknown type, bad shapes", () => {
  assertEquals(parseTopic("spBv1.0/G/NBIRTH/E"), {
    ok: true,
    kind: "message",
    group: "G",
    type: "NBIRTH",
    edgeNode: "E",
  });
  assertEquals(parseTopic("spBv1.0/G/DDATA/E/D"), {
    ok: true,
    kind: "message",
    group: "G",
    type: "DDATA",
    edgeNode: "E",
    device: "D",
  });
  assertEquals(parseTopic("spBv1.0/STATE/host1"), { ok: true, kind: "state", hostId: "host1" });
  for (const t of ["NBIRTH", "NDEATH", "NDATA", "NCMD"]) assert(parseTopic(`spBv1.0/G/${t}/E`).ok);
  for (const t of ["DBIRTH", "DDEATH", "DDATA", "DCMD"]) {
    assert(parseTopic(`spBv1.0/G/${t}/E/D`).ok);
  }
  const bad: Array<[string, string]> = [
    ["spBv1.0/G/NSTATE/E", "unknown Sparkplug message type 'NSTATE'"],
    ["spBv1.0/G/DDATA/E", "has no device"],
    ["spBv1.0/G/NDATA/E/D", "has a device"],
    ["spBv1.0/G/NDATA", "is not spBv1.0/<group>"],
    ["spAv1.0/G/NDATA/E", "is not in spBv1.0"],
    ["spBv1.0/STATE", "is not spBv1.0/STATE/<host_id>"],
  ];
  for (const [topic, reason] of bad) {
    const r = parseTopic(topic);
    assert(!r.ok && r.reason.includes(reason), `${topic}: ${JSON.stringify(r)}`);
  }
});
