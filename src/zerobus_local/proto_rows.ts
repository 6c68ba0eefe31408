/**
 * PROTO rows in the stand-in: the `DescriptorProto` from `create_stream` is
 * parsed once, and each row is decoded with it into the same JSON line a JSON
 * stream would have produced.
 */
import { Reader } from "../sinks/zerobus/wire.ts";

/** A field of the stream's message: name, number, protobuf type, repeated or not. */
export interface DescribedField {
  name: string;
  number: number;
  type: number;
  repeated: boolean;
}

/** Scalar protobuf types the stand-in decodes (google.protobuf.FieldDescriptorProto.Type). */
const T = {
  DOUBLE: 1,
  FLOAT: 2,
  INT64: 3,
  UINT64: 4,
  INT32: 5,
  FIXED64: 6,
  FIXED32: 7,
  BOOL: 8,
  STRING: 9,
  BYTES: 12,
  UINT32: 13,
  ENUM: 14,
  SFIXED32: 15,
  SFIXED64: 16,
  SINT32: 17,
  SINT64: 18,
} as const;
const WIRE_OF: Record<number, number> = {
  1: 1,
  2: 5,
  3: 0,
  4: 0,
  5: 0,
  6: 1,
  7: 5,
  8: 0,
  9: 2,
  12: 2,
  13: 0,
  14: 0,
  15: 5,
  16: 1,
  17: 0,
  18: 0,
};
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Parses a serialized DescriptorProto; throws with a reason when it cannot be used. */
export function parseDescriptor(
  bytes: Uint8Array,
): { name: string; fields: Map<number, DescribedField> } {
  const r = new Reader(bytes);
  let name = "";
  const fields = new Map<number, DescribedField>();
  while (r.more()) {
    const [f, w] = r.key();
    if (f === 1 && w === 2) name = utf8.decode(r.bytes());
    else if (f === 2 && w === 2) {
      const fr = new Reader(r.bytes());
      const field: DescribedField = { name: "", number: 0, type: 0, repeated: false };
      while (fr.more()) {
        const [ff, fw] = fr.key();
        if (ff === 1 && fw === 2) field.name = utf8.decode(fr.bytes());
        else if (ff === 3 && fw === 0) field.number = fr.varint();
        else if (ff === 4 && fw === 0) field.repeated = fr.varint() === 3;
        else if (ff === 5 && fw === 0) field.type = fr.varint();
        else fr.skip(fw);
      }
      if (!field.name || field.number <= 0) throw new Error("a field without name or number");
      if (WIRE_OF[field.type] === undefined) {
        throw new Error(
          `field ${field.name}: type ${field.type} is not supported (nested messages are not)`,
        );
      }
      fields.set(field.number, field);
    } else r.skip(w);
  }
  if (fields.size === 0) throw new Error("the descriptor has no fields");
  return { name, fields };
}

function readFixed(r: Reader, n: 4 | 8): DataView {
  if (r.pos + n > r.end) throw new Error("truncated fixed-width field");
  const v = new DataView(r.buf.buffer, r.buf.byteOffset + r.pos, n);
  r.pos += n;
  return v;
}

function readVarintBig(r: Reader): bigint {
  let result = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (r.pos >= r.end) throw new Error("truncated varint");
    const b = r.buf[r.pos++];
    result |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return result;
    shift += 7n;
  }
  throw new Error("varint too long");
}

function jsonNumber(v: bigint): number | string {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(v)
    : v.toString();
}

function readValue(r: Reader, type: number): unknown {
  switch (type) {
    case T.DOUBLE:
      return readFixed(r, 8).getFloat64(0, true);
    case T.FLOAT:
      return readFixed(r, 4).getFloat32(0, true);
    case T.INT64:
      return jsonNumber(BigInt.asIntN(64, readVarintBig(r)));
    case T.UINT64:
      return jsonNumber(readVarintBig(r));
    case T.INT32:
    case T.ENUM:
      return Number(BigInt.asIntN(32, readVarintBig(r)));
    case T.UINT32:
      return Number(BigInt.asUintN(32, readVarintBig(r)));
    case T.SINT32:
    case T.SINT64: {
      const z = readVarintBig(r);
      return jsonNumber((z >> 1n) ^ -(z & 1n));
    }
    case T.FIXED64:
      return jsonNumber(readFixed(r, 8).getBigUint64(0, true));
    case T.SFIXED64:
      return jsonNumber(readFixed(r, 8).getBigInt64(0, true));
    case T.FIXED32:
      return readFixed(r, 4).getUint32(0, true);
    case T.SFIXED32:
      return readFixed(r, 4).getInt32(0, true);
    case T.BOOL:
      return readVarintBig(r) !== 0n;
    case T.STRING:
      return utf8.decode(r.bytes());
    default: // BYTES
      return btoa(String.fromCharCode(...r.bytes()));
  }
}

/**
 * Decodes one PROTO row into a JSON object line (absent optional fields are
 * null). Throws with a reason for unknown fields, wrong wire types or bad bytes.
 */
export function protoRowToJson(row: Uint8Array, fields: Map<number, DescribedField>): string {
  const out: Record<string, unknown> = {};
  for (const f of fields.values()) out[f.name] = f.repeated ? [] : null;
  const r = new Reader(row);
  while (r.more()) {
    const [num, wire] = r.key();
    const f = fields.get(num);
    if (!f) throw new Error(`field number ${num} is not in the descriptor`);
    const expected = WIRE_OF[f.type];
    if (wire !== expected) {
      if (f.repeated && wire === 2 && expected !== 2) { // packed repeated scalars
        const pr = new Reader(r.bytes());
        while (pr.more()) (out[f.name] as unknown[]).push(readValue(pr, f.type));
        continue;
      }
      throw new Error(`field ${f.name}: wire type ${wire}, expected ${expected}`);
    }
    const v = readValue(r, f.type);
    if (f.repeated) (out[f.name] as unknown[]).push(v);
    else out[f.name] = v;
  }
  return JSON.stringify(out);
}
