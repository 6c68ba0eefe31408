/** OPC UA value conversion, namespace-URI NodeIds and the poll clock, without a server. */
import { Buffer } from "node:buffer";
import { assert, assertEquals } from "./assert.ts";
import {
  DataType,
  DataValue,
  LocalizedText,
  Range,
  StatusCodes,
  Variant,
  VariantArrayType,
} from "node-opcua";
import {
  jsonOf,
  nestByDimensions,
  readingOf,
  valueOf,
  valueTypeOf,
} from "../src/sources/opcua/values.ts";
import { resolveNamespace } from "../src/sources/opcua/nodes.ts";

const v = (dataType: DataType, value: unknown, arrayType = VariantArrayType.Scalar) =>
  new Variant({ dataType, value, arrayType });

Deno.test("opcua values: each data type as a plain value", () => {
  assertEquals(valueOf(v(DataType.Double, 1.5)), 1.5);
  assertEquals(valueOf(v(DataType.Boolean, true)), true);
  assertEquals(valueOf(v(DataType.String, "AUTO")), "AUTO");
  assertEquals(valueOf(v(DataType.Int64, [0xffffffff, 0xfffffffe])), -2n);
  assertEquals(valueOf(v(DataType.UInt64, [0xffffffff, 0xffffffff])), 2n ** 64n - 1n);
  const when = new Date("2026-01-02T03:04:05.678Z");
  assertEquals(valueOf(v(DataType.DateTime, when)), when);
  assertEquals(valueOf(v(DataType.LocalizedText, new LocalizedText({ text: "Open" }))), "Open");
  const bytes = valueOf(v(DataType.ByteString, Buffer.from([1, 2, 3])));
  assertEquals(bytes instanceof Uint8Array, true);
  assertEquals(Array.from(bytes as Uint8Array), [1, 2, 3]);
  assertEquals(valueOf(v(DataType.Float, [1, 2], VariantArrayType.Array)), [1, 2]);
  assertEquals(
    valueOf(v(DataType.Int64, [[0, 1], [0, 2]], VariantArrayType.Array)),
    [1n, 2n],
  );
  assertEquals(valueOf(new Variant({ dataType: DataType.Null })), null);
});

Deno.test("opcua values: a matrix as nested arrays by its dimensions", () => {
  const matrix = new Variant({
    dataType: DataType.Int32,
    arrayType: VariantArrayType.Matrix,
    dimensions: [2, 3],
    value: new Int32Array([1, 2, 3, 4, 5, 6]),
  });
  assertEquals(valueOf(matrix), [[1, 2, 3], [4, 5, 6]]);
  assertEquals(nestByDimensions([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]), [
    [[1, 2], [3, 4]],
    [[5, 6], [7, 8]],
  ]);
  assertEquals(nestByDimensions([1, 2, 3], [2, 2]), [1, 2, 3], "dimensions that do not fit");
  assertEquals(nestByDimensions([], [2, 0]), [[], []]);
  assertEquals(nestByDimensions([1, 2], null), [1, 2]);
});

Deno.test("opcua values: JSON text of arrays and structures", () => {
  assertEquals(jsonOf([1n, 2n ** 63n - 1n, -2n]), "[1,9223372036854775807,-2]");
  assertEquals(jsonOf([new Uint8Array([1, 2]), Buffer.from([255])]), '["AQI=","/w=="]');
  assertEquals(jsonOf([new Date("2026-01-02T03:04:05.678Z")]), '["2026-01-02T03:04:05.678Z"]');
  assertEquals(jsonOf([NaN, null, "x"]), '[null,null,"x"]');
  assertEquals(jsonOf(new Range({ low: -1, high: 2.5 })), '{"low":-1,"high":2.5}');
  assertEquals(jsonOf({ a: undefined, b: { c: 3n } }), '{"b":{"c":3}}');
});

Deno.test("opcua values: value_type by data type, arrays as JSON text in a reading", () => {
  assertEquals(valueTypeOf(v(DataType.Double, 65)), "float");
  assertEquals(valueTypeOf(v(DataType.UInt32, 7)), "int");
  assertEquals(valueTypeOf(v(DataType.Guid, "72962B91-FA75-4AE6-8D28-B404DC7DAF63")), "string");
  assertEquals(valueTypeOf(v(DataType.ByteString, Buffer.from([1]))), "bytes");
  assertEquals(valueTypeOf(v(DataType.Int32, [1], VariantArrayType.Array)), "json");
  assertEquals(valueTypeOf(new Variant({ dataType: DataType.Null })), undefined);
  const node = { nodeId: "ns=1;s=A", address: "ns=1;s=A", tagName: "A" };
  const array = readingOf(
    node,
    new DataValue({ value: v(DataType.Int64, [[0, 1], [0x200000, 1]], VariantArrayType.Array) }),
  );
  assertEquals([array.value, array.value_type], ["[1,9007199254740993]", "json"]);
  const whole = readingOf(node, new DataValue({ value: v(DataType.Double, 65) }));
  assertEquals([whole.value, whole.value_type], [65, "float"]);
  const empty = readingOf(node, new DataValue({ value: v(DataType.ByteString, null) }));
  assertEquals([empty.value, empty.value_type], [null, "bytes"]);
});

Deno.test("opcua values: timestamps and StatusCode of a reading", () => {
  const node = { nodeId: "ns=1;s=T", address: "nsu=urn:x;s=T", tagName: "T", unit: "°C" };
  const src = new Date("2026-01-02T03:04:05.678Z");
  const r = readingOf(
    node,
    new DataValue({
      value: v(DataType.Double, 3),
      statusCode: StatusCodes.UncertainLastUsableValue,
      sourceTimestamp: src,
      serverTimestamp: new Date(src.getTime() + 5),
    }),
  );
  assertEquals(
    [r.address, r.tag_name, r.value, r.event_time, r.quality_code, r.unit],
    ["nsu=urn:x;s=T", "T", 3, src.getTime() * 1000, 0x40900000, "°C"],
  );
  const server = new Date(src.getTime() + 5);
  const r2 = readingOf(
    node,
    new DataValue({ value: v(DataType.Double, 3), serverTimestamp: server }),
  );
  assertEquals([r2.event_time, r2.quality_code], [server.getTime() * 1000, 0]);
});

Deno.test("opcua nodes: nsu= NodeIds resolve against the namespace array", () => {
  const ns = ["http://opcfoundation.org/UA/", "urn:server", "urn:otedge:simulator"];
  assertEquals(resolveNamespace("nsu=urn:otedge:simulator;s=A/B", ns), "ns=2;s=A/B");
  assertEquals(resolveNamespace("nsu=http://opcfoundation.org/UA/;i=2258", ns), "i=2258");
  assertEquals(resolveNamespace("ns=3;i=7", ns), "ns=3;i=7");
  let error = "";
  try {
    resolveNamespace("nsu=urn:missing;s=X", ns);
  } catch (e) {
    error = String(e);
  }
  assert(error.includes("urn:missing"), error);
});
