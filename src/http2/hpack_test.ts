/** Tests of the HPACK decoder against RFC 7541 examples and encoder output. */
import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import {
  encodeHeaders,
  HpackDecoder,
  HpackError,
  huffmanDecode,
  huffmanLengths,
  STATIC_TABLE_SIZE,
} from "./hpack.ts";

const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (b) => parseInt(b, 16));

Deno.test("Huffman code lengths form a complete prefix code of 257 symbols", () => {
  strictEqual(huffmanLengths.length, 257);
  strictEqual(STATIC_TABLE_SIZE, 61);
  let kraft = 0;
  for (const l of huffmanLengths) kraft += 2 ** (30 - l);
  strictEqual(kraft, 2 ** 30);
  strictEqual(huffmanLengths[256], 30); // EOS
});

Deno.test("RFC 7541 C.4: requests with Huffman coding and the dynamic table", () => {
  const d = new HpackDecoder();
  deepStrictEqual(d.decode(hex("828684418cf1e3c2e5f23a6ba0ab90f4ff")), [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
  ]);
  deepStrictEqual(d.decode(hex("828684be5886a8eb10649cbf")), [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ]);
  deepStrictEqual(d.decode(hex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf")), [
    [":method", "GET"],
    [":scheme", "https"],
    [":path", "/index.html"],
    [":authority", "www.example.com"],
    ["custom-key", "custom-value"],
  ]);
});

Deno.test("a gRPC request block, then the same block fully indexed", () => {
  const d = new HpackDecoder();
  const expected = [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/databricks.zerobus.Zerobus/EphemeralStream"],
    [":authority", "127.0.0.1:50051"],
    ["te", "trailers"],
    ["content-type", "application/grpc"],
    ["authorization", "Bearer zl-0123456789abcdef~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./"],
    ["x-databricks-zerobus-table-name", "main.iot_data.sensor_readings"],
    ["user-agent", "grpc-node-js/1.14.7"],
  ];
  deepStrictEqual(
    d.decode(hex(
      "8386449f6241a471d8627542fecb61e3b50bfe96c3c76a18c15ce5a4b60e8dc9b0a3a7418b089d5c0b8170dc" +
        "6c006c3f4082497f864d833505b11f5f8b1d75d0620d263d4c4d656457bdba51d85b14f742c0089969b71d79" +
        "f1c6490b2fff7f8ffd7fd7fe55fff3e3e7fafee2ff7fffbffdff973f9fff9ff7fe7ffd5a0ffdfff3fff87dff" +
        "afa5d84096f2b48348e3b0c4ea85bd96c3c76a1648e3a0ab543a4b94a466a9731d3148348d7416a41ec8ac28" +
        "e43553237a8e9acac8b54790ab7443015c2d2eef",
    )),
    expected,
  );
  deepStrictEqual(d.decode(hex("8386c4c3c2c1c0bfbe")), expected);
});

Deno.test("Huffman decoding of every byte value 0..255", () => {
  const block = hex(
    "4084f2b0e8a3ffc803ffc7fffd8fffffe2fffffe3fffffe4fffffe5fffffe6fffffe7fffffe8ffffeafffffff3ff" +
      "fffa7fffffabffffffdfffffebfffffecfffffedfffffeefffffefffffff0ffffff1ffffff2fffffffbfffffcff" +
      "ffffd3fffffd7fffffdbfffffdffffffe3fffffe7fffffebfffffed4fe3f9ffaffcabf1febfafefe7fdfd2cbb0" +
      "0089969b71d79fb9f7fff20ffbff3ff50ddbd7f061c58f265cd9f469d5af66dddbf871e5f9cff7ff7fffc3ff9ff" +
      "e45fff4719242cb34e6e9d68a6a3d7dac426defe3cfaf7fffbfe7ffbffdffffffcfffe6ffff4bfff9ffffa3fffd" +
      "3ffff53fffd5ffffb3fffeb7fffdaffffb7ffff73fffeeffffdeffffebffffbfffffd9ffffdbfffebffffe0ffff" +
      "eeffffc3ffff8bffff1ffffe4fffee7fffb1ffff97fffd9ffffcdffff9fffffbffffdafffeeffff4ffffb7fffee" +
      "7fffe8ffffd3fffdeffffd5fffeeffffbdffffe1fffdfffff7fffff5ffffecffff07fff87fffe0ffff17fffedff" +
      "ff87ffff77fffeffffeaffff8bfffe3ffff93ffff87fffcbffff37ffff1fffff83ffffe1fffebfffe3ffff3ffff" +
      "f2ffffa3ffffd9fffff17ffffc7fffff27ffffdefffffbffffff2fffff8fffffb7fff97fff8fffffe6fffffc1ff" +
      "fff87ffffe7fffffc5ffffe5fffe4ffff2fffffd1fffff4ffffffefffffe3fffffc9fffff97fffb3ffffcffffb7" +
      "fffcdffff4ffff9ffffd1ffffcffffeaffffafffffddffffeffffff4fffff5fffffabffffa7ffffd7fffff9bfff" +
      "fecfffffb7fffff3fffffe8fffffd3fffffabfffff5fffffff7ffffecfffffdbfffffbbfffff7ffffff0fffffbbf",
  );
  const [[name, value]] = new HpackDecoder().decode(block);
  strictEqual(name, "x-all");
  deepStrictEqual(
    Array.from(value, (c) => c.charCodeAt(0)),
    Array.from({ length: 256 }, (_, i) => i),
  );
});

Deno.test("bad input raises HpackError", () => {
  const bad = [
    "0081188161", // name "a" with zero-bit padding
    "00816184ffffffff", // value is the EOS symbol
    "be", // dynamic index 62 with an empty table
    "0085616263", // string shorter than its length
    "3fe21f", // table size update to 4097, above 4096
    "82" + "3f", // table size update after a field
    "80", // index 0
  ];
  for (const h of bad) throws(() => new HpackDecoder().decode(hex(h)), HpackError, h);
  throws(() => huffmanDecode(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff)), HpackError);
});

Deno.test("table size updates evict entries", () => {
  const d = new HpackDecoder();
  // literal with incremental indexing: "k" = "v"
  deepStrictEqual(d.decode(hex("40016b0176be")), [["k", "v"], ["k", "v"]]);
  // shrink to 0 empties the table; index 62 is gone
  deepStrictEqual(d.decode(hex("20")), []);
  throws(() => d.decode(hex("be")), HpackError);
  // at size 0 a new entry is not kept either
  deepStrictEqual(d.decode(hex("40016b0176")), [["k", "v"]]);
  throws(() => d.decode(hex("be")), HpackError);
});

Deno.test("encodeHeaders output decodes back", () => {
  const headers: [string, string][] = [
    [":status", "200"],
    ["content-type", "application/grpc"],
    ["grpc-status", "3"],
    ["grpc-message", "offset_id 2 out of order: expected 1 " + "x".repeat(300)],
  ];
  deepStrictEqual(new HpackDecoder().decode(encodeHeaders(headers)), headers);
});
