/** OPC UA value conversion, namespace-URI NodeIds and the poll clock, without a server. */
import { Buffer } from "node:buffer";
import { assert, assertEquals } from "./assert.ts";
import {
  DataType,
  DataValue,
  LocalizedText,
  StatusCodes,
  Variant,
  VariantArrayType,
} from "node-opcua";
import { readingOf, valueOf } from "../src/sources/opcua/values.ts";
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
