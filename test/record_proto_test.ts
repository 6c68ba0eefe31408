/** The record's protobuf message, checked against protobufjs as an independent implementation. */
import { assertEquals } from "./assert.ts";
import protobuf from "protobufjs";
import { COLUMNS, createTableSql, type OtRecord } from "../src/record.ts";
import { encodeRecordProto, recordDescriptorProto, recordProtoText } from "../src/record_proto.ts";
import { parseDescriptor, protoRowToJson } from "../src/zerobus_local/proto_rows.ts";

const record: OtRecord = {
  record_id: "0011223344556677",
  event_time: 1_764_400_000_000_000,
  ingest_time: -5, // negative int64 takes the 10-byte form
  source_name: "press_opc",
  source_protocol: "opcua",
  endpoint: "opc.tcp://10.0.0.5:4840",
  address: "ns=2;s=Line3.Press1.Temp",
  tag_path: "columbus/press_shop/line_3/press_1/temperature/temp",
  tag_name: "temp",
  site: "columbus",
  area: "press_shop",
  line: "line_3",
  equipment: "press_1",
  signal_type: "temperature",
  value_num: 71.25,
  value_str: null,
  value_bool: true,
  value_type: "float",
  quality: "good",
  quality_code: 0x80340000,
  unit: "°C",
  metadata: '{"browse":"Objects/Columbus/Ünïcode"}',
};

function protobufjsType(): protobuf.Type {
  return protobuf.parse(recordProtoText(), { keepCase: true }).root.lookupType("OtRecord");
}

Deno.test("record proto: the .proto text has every column, numbered in order", () => {
  const type = protobufjsType();
  assertEquals(type.fieldsArray.map((f) => [f.name, f.id]), COLUMNS.map((c, i) => [c.name, i + 1]));
  assertEquals(type.fields.event_time.type, "int64");
  assertEquals(type.fields.value_num.type, "double");
  assertEquals(type.fields.value_bool.type, "bool");
});

Deno.test("record proto: the descriptor matches the .proto text", () => {
  const { name, fields } = parseDescriptor(recordDescriptorProto());
  assertEquals(name, "OtRecord");
  const type = protobufjsType();
  const typeNumber: Record<string, number> = { double: 1, int64: 3, bool: 8, string: 9 };
  assertEquals(
    [...fields.values()].map((f) => [f.name, f.number, f.type]),
    type.fieldsArray.map((f) => [f.name, f.id, typeNumber[f.type]]),
  );
});

Deno.test("record proto: our encoding decodes with protobufjs, and the stand-in's decoder agrees", () => {
  const bytes = encodeRecordProto(record);
  const decoded = protobufjsType().toObject(protobufjsType().decode(bytes), {
    longs: Number,
  }) as Record<string, unknown>;
  const expected = Object.fromEntries(Object.entries(record).filter(([, v]) => v !== null));
  assertEquals(decoded, expected);
  const { fields } = parseDescriptor(recordDescriptorProto());
  assertEquals(JSON.parse(protoRowToJson(bytes, fields)), record);
});

Deno.test("record proto: the DDL and the message describe the same columns", () => {
  const ddl = createTableSql("a.b.c");
  for (const c of COLUMNS) assertEquals(ddl.includes(`  ${c.name} ${c.sql}`), true, c.name);
});

Deno.test("record schema: names that are not plain words are quoted for Databricks SQL", () => {
  assertEquals(
    createTableSql("my-cat.iot.t1").split(" (")[0],
    "CREATE TABLE IF NOT EXISTS `my-cat`.iot.t1",
  );
  assertEquals(
    createTableSql("main.iot.t").split(" (")[0],
    "CREATE TABLE IF NOT EXISTS main.iot.t",
  );
});
