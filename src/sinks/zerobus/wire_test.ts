/**
 * Checks the hand-written codec in wire.ts against protobufjs reading zerobus.proto.
 * `google/protobuf/duration.proto` comes from protobufjs's bundled common types,
 * so loading works offline.
 */
import { deepStrictEqual, strictEqual } from "node:assert/strict";
import protobuf from "protobufjs";
import {
  appendRow,
  decodeRequest,
  decodeResponse,
  encodeAck,
  encodeBatchRequest,
  encodeCloseSignal,
  encodeCreated,
  encodeCreateStream,
  RecordType,
  varintSize,
} from "./wire.ts";

const root = new protobuf.Root().loadSync(new URL("./zerobus.proto", import.meta.url).pathname, {
  keepCase: true,
});
const Request = root.lookupType("databricks.zerobus.EphemeralStreamRequest");
const Response = root.lookupType("databricks.zerobus.EphemeralStreamResponse");

const utf8 = new TextEncoder();
const toObj = { longs: String, enums: Number, bytes: Array, oneofs: true };

/** Decodes with protobufjs into a plain object (int64 as string, bytes as number[]). */
function pbDecode(t: protobuf.Type, buf: Uint8Array): any {
  return t.toObject(t.decode(buf), toObj);
}

/** Encodes a plain object (int64 as number or string) with protobufjs. */
function pbEncode(t: protobuf.Type, obj: Record<string, unknown>): Uint8Array {
  return Uint8Array.from(t.encode(t.fromObject(obj)).finish());
}

function u8(x: ArrayLike<number>): Uint8Array {
  return Uint8Array.from(x);
}

/** A string whose UTF-8 encoding is exactly `bytes` long, mixing 1-, 2-, 3- and 4-byte chars. */
function textOfBytes(bytes: number): string {
  const pieces = ["a", "é", "€", "😀", "ü", "ß", "水", "z"];
  let s = "";
  let n = 0;
  let i = 0;
  while (true) {
    const p = pieces[i++ % pieces.length];
    const len = utf8.encode(p).length;
    if (n + len > bytes) break;
    s += p;
    n += len;
  }
  s += "x".repeat(bytes - n);
  strictEqual(utf8.encode(s).length, bytes);
  return s;
}

/** JSON object text of exactly `bytes` UTF-8 bytes, with non-ASCII content. */
function jsonRowOfBytes(bytes: number): string {
  const head = '{"k":"';
  const tail = '"}';
  return head + textOfBytes(bytes - head.length - tail.length) + tail;
}

const ROW_SIZES = [8, 127, 128, 129, 500, 16383, 16384, 16385, 70_000, 2_097_152];

/** Frames rows with appendRow into segments of `segSize` bytes. */
function frame(rows: (string | Uint8Array)[], segSize: number): Uint8Array[] {
  const segs: Uint8Array[] = [];
  let buf = new Uint8Array(segSize);
  let off = 0;
  for (const row of rows) {
    let next = appendRow(buf, off, row);
    if (next < 0) {
      segs.push(buf.subarray(0, off));
      const len = typeof row === "string" ? utf8.encode(row).length : row.length;
      buf = new Uint8Array(Math.max(segSize, len + 8));
      off = 0;
      next = appendRow(buf, off, row);
      if (next < 0) throw new Error("row does not fit an empty segment");
    }
    off = next;
  }
  if (off > 0) segs.push(buf.subarray(0, off));
  return segs;
}

Deno.test("create_stream JSON: wire.ts -> protobufjs", () => {
  const msg = pbDecode(Request, encodeCreateStream("main.iot.sensor_readings", "json"));
  deepStrictEqual(msg, {
    payload: "create_stream",
    create_stream: { table_name: "main.iot.sensor_readings", record_type: RecordType.JSON },
  });
});

Deno.test("create_stream PROTO with descriptor: wire.ts -> protobufjs", () => {
  const descriptor = descriptorBytes();
  const msg = pbDecode(Request, encodeCreateStream("cät.sch.tbl", "proto", descriptor));
  deepStrictEqual(msg, {
    payload: "create_stream",
    create_stream: {
      table_name: "cät.sch.tbl",
      record_type: RecordType.PROTO,
      descriptor_proto: Array.from(descriptor),
    },
  });
});

Deno.test("create_stream: protobufjs -> wire.ts", () => {
  const descriptor = descriptorBytes();
  const proto = decodeRequest(pbEncode(Request, {
    create_stream: {
      table_name: "a.b.c",
      record_type: RecordType.PROTO,
      descriptor_proto: descriptor,
    },
  }));
  strictEqual(proto.kind, "create");
  if (proto.kind !== "create") return;
  strictEqual(proto.tableName, "a.b.c");
  strictEqual(proto.recordType, RecordType.PROTO);
  deepStrictEqual(u8(proto.descriptorProto!), descriptor);

  const json = decodeRequest(pbEncode(Request, {
    create_stream: { table_name: "main.iot_data.sensor_readings", record_type: RecordType.JSON },
  }));
  deepStrictEqual(json, {
    kind: "create",
    tableName: "main.iot_data.sensor_readings",
    recordType: RecordType.JSON,
    descriptorProto: undefined,
  });
});

Deno.test("JSON batch of rows of every length class: wire.ts -> protobufjs", () => {
  const rows = ROW_SIZES.map(jsonRowOfBytes);
  rows.push('{"text":"Grüße, 温度, ΔT, 🌡️"}', "{}");
  for (const segSize of [64, 4096, 1 << 20, 8 << 20]) {
    const segs = frame(rows, segSize);
    const req = encodeBatchRequest(42, "json", segs);
    const msg = pbDecode(Request, req);
    strictEqual(msg.payload, "ingest_record_batch");
    strictEqual(msg.ingest_record_batch.offset_id, "42");
    strictEqual(msg.ingest_record_batch.batch, "json_batch");
    deepStrictEqual(msg.ingest_record_batch.json_batch.records, rows, `segment size ${segSize}`);
  }
});

Deno.test("JSON batch: protobufjs -> wire.ts keeps row bytes", () => {
  const rows = ROW_SIZES.map(jsonRowOfBytes);
  const buf = pbEncode(Request, {
    ingest_record_batch: { offset_id: "7", json_batch: { records: rows } },
  });
  const req = decodeRequest(buf);
  strictEqual(req.kind, "batch");
  if (req.kind !== "batch") return;
  strictEqual(req.offsetId, 7);
  strictEqual(req.recordType, "json");
  deepStrictEqual(req.rows.map(u8), rows.map((r) => utf8.encode(r)));
});

Deno.test("empty JSON batch round-trips", () => {
  const msg = pbDecode(Request, encodeBatchRequest(0, "json", []));
  deepStrictEqual(msg, {
    payload: "ingest_record_batch",
    ingest_record_batch: { offset_id: "0", batch: "json_batch", json_batch: {} },
  });
  const req = decodeRequest(
    pbEncode(Request, { ingest_record_batch: { offset_id: 3, json_batch: {} } }),
  );
  deepStrictEqual(req, { kind: "batch", offsetId: 3, recordType: "json", rows: [] });
});

Deno.test("PROTO batch: both directions", () => {
  const rows = [0, 1, 127, 128, 16383, 16384, 100_000].map((n) =>
    Uint8Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff)
  );
  const segs = frame(rows, 20_000);
  const msg = pbDecode(Request, encodeBatchRequest(2 ** 40, "proto", segs));
  strictEqual(msg.ingest_record_batch.offset_id, String(2 ** 40));
  strictEqual(msg.ingest_record_batch.batch, "proto_encoded_batch");
  deepStrictEqual(
    msg.ingest_record_batch.proto_encoded_batch.records.map(u8),
    rows,
  );

  const req = decodeRequest(pbEncode(Request, {
    ingest_record_batch: { offset_id: 5, proto_encoded_batch: { records: rows } },
  }));
  strictEqual(req.kind, "batch");
  if (req.kind !== "batch") return;
  strictEqual(req.offsetId, 5);
  strictEqual(req.recordType, "proto");
  deepStrictEqual(req.rows.map(u8), rows);
});

Deno.test("single ingest_record (json and proto): protobufjs -> wire.ts", () => {
  const row = jsonRowOfBytes(300);
  const json = decodeRequest(pbEncode(Request, {
    ingest_record: { offset_id: "9007199254740991", json_record: row },
  }));
  deepStrictEqual(
    { ...json, rows: json.kind === "record" ? json.rows.map(u8) : [] },
    { kind: "record", offsetId: 2 ** 53 - 1, recordType: "json", rows: [utf8.encode(row)] },
  );
  const bytes = Uint8Array.from([8, 150, 1, 0, 255]);
  const proto = decodeRequest(pbEncode(Request, {
    ingest_record: { offset_id: 1, proto_encoded_record: bytes },
  }));
  deepStrictEqual(
    { ...proto, rows: proto.kind === "record" ? proto.rows.map(u8) : [] },
    { kind: "record", offsetId: 1, recordType: "proto", rows: [bytes] },
  );
});

Deno.test("batch offsets of every varint size: wire.ts -> protobufjs", () => {
  const segs = frame(['{"a":1}'], 64);
  for (const off of [0, 1, 127, 128, 16383, 16384, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53 - 1]) {
    const msg = pbDecode(Request, encodeBatchRequest(off, "json", segs));
    strictEqual(msg.ingest_record_batch.offset_id, String(off));
    const back = decodeRequest(encodeBatchRequest(off, "json", segs));
    strictEqual(back.kind === "batch" && back.offsetId, off);
  }
});

const OFFSETS = [0, 1, 127, 128, 300, 16384, 2 ** 31 - 1, 2 ** 31, 2 ** 32 + 5, 2 ** 53 - 1];

Deno.test("acks with large offsets: both directions", () => {
  for (const upTo of OFFSETS) {
    deepStrictEqual(pbDecode(Response, encodeAck(upTo)), {
      payload: "ingest_record_response",
      ingest_record_response: { durability_ack_up_to_offset: String(upTo) },
    });
    deepStrictEqual(
      decodeResponse(pbEncode(Response, {
        ingest_record_response: { durability_ack_up_to_offset: String(upTo) },
      })),
      { kind: "ack", upTo },
    );
  }
});

Deno.test("create_stream_response: both directions", () => {
  const id = "3f0e2a8c-6b1d-4c55-9d1e-0a7f7c1b2d3e";
  deepStrictEqual(pbDecode(Response, encodeCreated(id)), {
    payload: "create_stream_response",
    create_stream_response: { stream_id: id },
  });
  deepStrictEqual(
    decodeResponse(pbEncode(Response, { create_stream_response: { stream_id: "s-1" } })),
    { kind: "created", streamId: "s-1" },
  );
});

Deno.test("close signal with duration: both directions", () => {
  for (const ms of [0, 1, 999, 1000, 1001, 1500, 61_234, 3_600_000]) {
    // Duration is proto3: protobufjs leaves zero fields out of the object.
    const msg = pbDecode(Response, encodeCloseSignal(ms));
    strictEqual(msg.payload, "close_stream_signal");
    const d = msg.close_stream_signal.duration;
    deepStrictEqual(
      { seconds: d.seconds ?? "0", nanos: d.nanos ?? 0 },
      { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 },
      `${ms} ms`,
    );
    deepStrictEqual(
      decodeResponse(pbEncode(Response, {
        close_stream_signal: {
          duration: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 },
        },
      })),
      { kind: "close", durationMs: ms },
    );
  }
  // Sub-millisecond nanos round down; a duration with only seconds set works too.
  deepStrictEqual(
    decodeResponse(pbEncode(Response, {
      close_stream_signal: { duration: { seconds: 2, nanos: 999_999 } },
    })),
    { kind: "close", durationMs: 2000 },
  );
  deepStrictEqual(
    decodeResponse(pbEncode(Response, { close_stream_signal: { duration: { seconds: 3 } } })),
    { kind: "close", durationMs: 3000 },
  );
});

Deno.test("appendRow: rows fit exactly and return -1 when one byte short", () => {
  const sizes = [0, 1, 2, 127, 128, 16383, 16384, 20_000];
  for (const n of sizes) {
    const text = n === 0 ? "" : textOfBytes(n);
    const bytes = utf8.encode(text);
    const need = 1 + varintSize(n) + n;
    for (const row of [text, bytes]) {
      const kind = typeof row === "string" ? "string" : "bytes";
      for (const prefix of [0, 5]) {
        const exact = new Uint8Array(prefix + need).fill(0xee);
        strictEqual(appendRow(exact, prefix, row), prefix + need, `${kind} ${n} exact fit`);
        deepStrictEqual(
          exact.subarray(prefix),
          concat([Uint8Array.of(0x0a), varint(n), bytes]),
          `${kind} ${n} framing`,
        );
        deepStrictEqual(exact.subarray(0, prefix), new Uint8Array(prefix).fill(0xee));
        const short = new Uint8Array(prefix + need - 1);
        strictEqual(appendRow(short, prefix, row), -1, `${kind} ${n} one byte short`);
      }
    }
  }
  strictEqual(appendRow(new Uint8Array(10), 10, "x"), -1);
  strictEqual(appendRow(new Uint8Array(10), 10, Uint8Array.of(1)), -1);
  strictEqual(appendRow(new Uint8Array(0), 0, ""), -1);
});

Deno.test("appendRow: a row that does not fit leaves earlier rows intact", () => {
  const buf = new Uint8Array(300);
  let off = appendRow(buf, 0, '{"a":"ü"}');
  off = appendRow(buf, off, jsonRowOfBytes(200));
  strictEqual(appendRow(buf, off, jsonRowOfBytes(200)), -1);
  const msg = pbDecode(Request, encodeBatchRequest(1, "json", [buf.subarray(0, off)]));
  deepStrictEqual(msg.ingest_record_batch.json_batch.records, ['{"a":"ü"}', jsonRowOfBytes(200)]);
});

function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Uint8Array.from(out);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A serialized `google.protobuf.DescriptorProto` of a small message, built with protobufjs. */
function descriptorBytes(): Uint8Array {
  const schema = protobuf.parse(`
    syntax = "proto2";
    message FieldDescriptorProto {
      optional string name = 1; optional int32 number = 3; optional int32 label = 4;
      optional int32 type = 5;
    }
    message DescriptorProto { optional string name = 1; repeated FieldDescriptorProto field = 2; }
  `).root.lookupType("DescriptorProto");
  return pbEncode(schema, {
    name: "OtRecord",
    field: [
      { name: "record_id", number: 1, label: 2, type: 9 },
      { name: "event_time", number: 2, label: 2, type: 3 },
      { name: "value_num", number: 15, label: 1, type: 1 },
    ],
  });
}

Deno.test("appendRow: random rows fill segments without gaps or corruption", () => {
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let round = 0; round < 80; round++) {
    const buf = new Uint8Array(1 + rand(40_000));
    const rows: (string | Uint8Array)[] = [];
    let off = 0;
    while (true) {
      const size = [rand(130), 100 + rand(300), rand(20_000)][rand(3)];
      const row: string | Uint8Array = rand(2) ? textOfBytes(size) : utf8.encode(textOfBytes(size));
      const next = appendRow(buf, off, row);
      if (next < 0) {
        const need = 1 + varintSize(size) + size;
        strictEqual(need > buf.length - off, true, `row of ${size} fits ${buf.length - off}`);
        break;
      }
      strictEqual(next, off + 1 + varintSize(size) + size);
      rows.push(row);
      off = next;
    }
    const msg = pbDecode(Request, encodeBatchRequest(round, "json", [buf.subarray(0, off)]));
    const got = msg.ingest_record_batch.json_batch.records ?? [];
    deepStrictEqual(got, rows.map((r) => typeof r === "string" ? r : new TextDecoder().decode(r)));
  }
});
