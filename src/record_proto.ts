/**
 * The record as a protobuf message, for Zerobus PROTO streams: the
 * `DescriptorProto` sent in `create_stream`, the `.proto` text a user can read
 * (`otedge schema --proto`), and the encoder of one record. Field numbers are
 * the column positions in `COLUMNS` (1-based), so the message matches the
 * Delta table 1:1.
 */
import { type Column, COLUMNS, type OtRecord } from "./record.ts";
import { varintSize, writeVarint } from "./sinks/zerobus/wire.ts";

/** google.protobuf.FieldDescriptorProto.Type values used by the record. */
export const ProtoType = { DOUBLE: 1, INT64: 3, BOOL: 8, STRING: 9 } as const;

const TYPE_OF: Record<Column["sql"], number> = {
  STRING: ProtoType.STRING,
  BIGINT: ProtoType.INT64,
  INT: ProtoType.INT64,
  DOUBLE: ProtoType.DOUBLE,
  BOOLEAN: ProtoType.BOOL,
};
const TYPE_NAME: Record<number, string> = { 1: "double", 3: "int64", 8: "bool", 9: "string" };

/** One message field: name, number and protobuf type. */
export interface ProtoField {
  name: string;
  number: number;
  type: number;
}

/** The record's fields as protobuf fields. */
export const RECORD_PROTO_FIELDS: readonly ProtoField[] = COLUMNS.map((c, i) => ({
  name: c.name,
  number: i + 1,
  type: TYPE_OF[c.sql],
}));

const utf8 = new TextEncoder();

function lenField(field: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(varintSize(field << 3 | 2) + varintSize(body.length) + body.length);
  let off = writeVarint(out, 0, field << 3 | 2);
  off = writeVarint(out, off, body.length);
  out.set(body, off);
  return out;
}

function varintField(field: number, value: number): Uint8Array {
  const out = new Uint8Array(varintSize(field << 3) + varintSize(value));
  writeVarint(out, writeVarint(out, 0, field << 3), value);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Serialized `google.protobuf.DescriptorProto` of the record message (proto2, optional fields). */
export function recordDescriptorProto(messageName = "OtRecord"): Uint8Array {
  const fields = RECORD_PROTO_FIELDS.map((f) =>
    lenField(
      2,
      concat([
        lenField(1, utf8.encode(f.name)),
        varintField(3, f.number),
        varintField(4, 1), // LABEL_OPTIONAL
        varintField(5, f.type),
      ]),
    )
  );
  return concat([lenField(1, utf8.encode(messageName)), ...fields]);
}

/** The record message as `.proto` text, with each column's comment. */
export function recordProtoText(messageName = "OtRecord"): string {
  const lines = COLUMNS.map((c, i) =>
    `  // ${c.comment}\n  optional ${TYPE_NAME[TYPE_OF[c.sql]]} ${c.name} = ${i + 1};`
  );
  return `// One OT value change, as streamed into the Delta table by otedge (Zerobus PROTO streams).\nsyntax = "proto2";\n\nmessage ${messageName} {\n${
    lines.join("\n")
  }\n}\n`;
}

/** Writes protobuf fields into a growable buffer. */
export class ProtoWriter {
  buf = new Uint8Array(1024);
  off = 0;
  #f64 = new Float64Array(1);
  #f64b = new Uint8Array(this.#f64.buffer);

  #room(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.off + n));
    next.set(this.buf.subarray(0, this.off));
    this.buf = next;
  }

  /** A string field (skipped when null). */
  string(field: number, s: string | null): void {
    if (s === null) return;
    this.#room(10 + s.length * 3);
    this.off = writeVarint(this.buf, this.off, field << 3 | 2);
    if (s.length < 128 && this.#ascii(s)) return;
    const lenAt = this.off;
    // Reserve the largest length varint for this string, then close the gap.
    const maxLen = s.length * 3;
    const lenSize = varintSize(maxLen);
    const r = utf8.encodeInto(s, this.buf.subarray(lenAt + lenSize));
    const real = varintSize(r.written!);
    if (real !== lenSize) {
      this.buf.copyWithin(lenAt + real, lenAt + lenSize, lenAt + lenSize + r.written!);
    }
    writeVarint(this.buf, lenAt, r.written!);
    this.off = lenAt + real + r.written!;
  }

  /**
   * Writes a short string's length and bytes when it is all ASCII (the usual
   * ids, types and metadata), without an encoder call; false (nothing written) otherwise.
   */
  #ascii(s: string): boolean {
    const buf = this.buf;
    const start = this.off + 1;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) return false;
      buf[start + i] = c;
    }
    buf[this.off] = s.length;
    this.off = start + s.length;
    return true;
  }

  /** An int64 field (skipped when null); negative values use the 10-byte form. */
  int64(field: number, v: number | null): void {
    if (v === null) return;
    this.#room(20);
    this.off = writeVarint(this.buf, this.off, field << 3);
    if (v >= 0) {
      this.off = writeVarint(this.buf, this.off, v);
      return;
    }
    let x = BigInt.asUintN(64, BigInt(v));
    for (let i = 0; i < 9; i++) {
      this.buf[this.off++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    this.buf[this.off++] = Number(x);
  }

  /** A double field (skipped when null). */
  double(field: number, v: number | null): void {
    if (v === null) return;
    this.#room(12);
    this.off = writeVarint(this.buf, this.off, field << 3 | 1);
    this.#f64[0] = v;
    const b = this.#f64b;
    const buf = this.buf;
    let o = this.off;
    for (let i = 0; i < 8; i++) buf[o++] = b[i];
    this.off = o;
  }

  /** A bool field (skipped when null). */
  bool(field: number, v: boolean | null): void {
    if (v === null) return;
    this.#room(4);
    this.off = writeVarint(this.buf, this.off, field << 3);
    this.buf[this.off++] = v ? 1 : 0;
  }

  /** Appends bytes already encoded (e.g. a cached run of fields). */
  raw(bytes: Uint8Array): void {
    this.#room(bytes.length);
    this.buf.set(bytes, this.off);
    this.off += bytes.length;
  }

  /** The bytes written so far (a copy), and resets the writer. */
  take(): Uint8Array {
    const out = this.buf.slice(0, this.off);
    this.off = 0;
    return out;
  }

  /**
   * The bytes written so far as a view of the writer's buffer, and resets the
   * writer: valid only until the next write (no allocation of a buffer per message).
   */
  takeView(): Uint8Array {
    const out = this.buf.subarray(0, this.off);
    this.off = 0;
    return out;
  }
}

const NUMBER = new Map(RECORD_PROTO_FIELDS.map((f) => [f.name, f]));

/** Field number of each record column (for writers that skip the by-name lookup). */
export const FIELD_NUMBER = Object.fromEntries(
  RECORD_PROTO_FIELDS.map((f) => [f.name, f.number]),
) as Record<keyof OtRecord, number>;

/** Writes the given record fields (a subset or all) with their protobuf types. */
export function writeRecordFields(w: ProtoWriter, rec: Partial<OtRecord>): void {
  for (const [name, value] of Object.entries(rec)) {
    const f = NUMBER.get(name);
    if (!f || value === undefined) continue;
    if (f.type === ProtoType.STRING) w.string(f.number, value as string | null);
    else if (f.type === ProtoType.INT64) w.int64(f.number, value as number | null);
    else if (f.type === ProtoType.DOUBLE) w.double(f.number, value as number | null);
    else w.bool(f.number, value as boolean | null);
  }
}

/** Encodes a whole record as the protobuf message. */
export function encodeRecordProto(rec: OtRecord): Uint8Array {
  const w = new ProtoWriter();
  writeRecordFields(w, rec);
  return w.take();
}
