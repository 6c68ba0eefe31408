/**
 * Zerobus wire format (package `databricks.zerobus`, proto2), written by hand.
 *
 * Hand-written because the hot path never re-encodes rows: the spool stores
 * each row already framed as field 1 of `JsonRecordBatch` /
 * `ProtoEncodedRecordBatch` (tag byte 0x0A, varint length, bytes), so a batch
 * request is a short header plus those bytes concatenated. `zerobus.proto`
 * beside this file is the same schema in protobuf syntax; a test checks both
 * agree through protobufjs.
 */

/** Full gRPC method path of the one Zerobus method. */
export const EPHEMERAL_STREAM_PATH = "/databricks.zerobus.Zerobus/EphemeralStream";

/** `RecordType` enum values. */
export const RecordType = { UNSPECIFIED: 0, PROTO: 1, JSON: 2 } as const;
export type RecordTypeName = "json" | "proto";

/** Numeric enum value of a record type name. */
export function recordTypeNumber(t: RecordTypeName): number {
  return t === "proto" ? RecordType.PROTO : RecordType.JSON;
}

// ---------- primitive writers ----------

/** Number of bytes of the varint encoding of a non-negative integer. */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Writes a non-negative integer (up to 2^53) as a varint; returns the new offset. */
export function writeVarint(buf: Uint8Array, off: number, n: number): number {
  while (n >= 0x80) {
    buf[off++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[off++] = n;
  return off;
}

function tag(field: number, wire: number): number {
  return (field << 3) | wire;
}

/** Encodes a length-delimited field holding `body`. */
function lenField(field: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + varintSize(body.length) + body.length);
  let off = writeVarint(out, 0, tag(field, 2));
  off = writeVarint(out, off, body.length);
  out.set(body, off);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const utf8 = new TextEncoder();

// ---------- row framing (used by the spool) ----------

/**
 * Appends one row, framed as field 1 of a record batch, to `buf` at `off`.
 * Returns the new offset, or -1 when the row does not fit (the caller starts
 * a new segment). Rows are JSON text (string) or protobuf bytes.
 */
export function appendRow(buf: Uint8Array, off: number, row: string | Uint8Array): number {
  if (typeof row !== "string") {
    const need = 1 + varintSize(row.length) + row.length;
    if (off + need > buf.length) return -1;
    buf[off] = 0x0a;
    const o = writeVarint(buf, off + 1, row.length);
    buf.set(row, o);
    return o + row.length;
  }
  // Reserve a 2-byte varint for the length (rows of 128..16383 bytes, the usual
  // case) and move the bytes when the real length needs another size.
  const room = buf.length - off - 3;
  // Near the end of the buffer a row under 128 bytes may fit only with its 1-byte
  // length, which the 2-byte reservation would miss: encode it exactly instead.
  if (room < 128 && row.length < 128) return appendRow(buf, off, utf8.encode(row));
  if (room <= 0) return -1;
  const r = utf8.encodeInto(row, buf.subarray(off + 3));
  if (r.read! < row.length) return -1;
  const len = r.written!;
  const lenSize = varintSize(len);
  if (lenSize !== 2) {
    if (off + 1 + lenSize + len > buf.length) return -1;
    buf.copyWithin(off + 1 + lenSize, off + 3, off + 3 + len);
  }
  buf[off] = 0x0a;
  writeVarint(buf, off + 1, len);
  return off + 1 + lenSize + len;
}

// ---------- requests ----------

/** `EphemeralStreamRequest{create_stream: CreateIngestStreamRequest}`. */
export function encodeCreateStream(
  tableName: string,
  recordType: RecordTypeName,
  descriptorProto?: Uint8Array,
): Uint8Array {
  const parts: Uint8Array[] = [lenField(1, utf8.encode(tableName))];
  if (descriptorProto) parts.push(lenField(3, descriptorProto));
  const rt = new Uint8Array(2);
  rt[0] = tag(4, 0);
  rt[1] = recordTypeNumber(recordType);
  parts.push(rt);
  return lenField(1, concat(parts));
}

/**
 * `EphemeralStreamRequest{ingest_record_batch: {offset_id, json_batch|proto_encoded_batch}}`
 * from framed row segments (see `appendRow`), copied once into the message.
 */
export function encodeBatchRequest(
  offsetId: number,
  recordType: RecordTypeName,
  segments: readonly Uint8Array[],
): Uint8Array {
  let rowsLen = 0;
  for (const s of segments) rowsLen += s.length;
  const batchField = recordType === "proto" ? 2 : 3;
  const innerLen = 1 + varintSize(offsetId) + 1 + varintSize(rowsLen) + rowsLen;
  const out = new Uint8Array(1 + varintSize(innerLen) + innerLen);
  let off = writeVarint(out, 0, tag(3, 2));
  off = writeVarint(out, off, innerLen);
  off = writeVarint(out, off, tag(1, 0));
  off = writeVarint(out, off, offsetId);
  off = writeVarint(out, off, tag(batchField, 2));
  off = writeVarint(out, off, rowsLen);
  for (const s of segments) {
    out.set(s, off);
    off += s.length;
  }
  return out;
}

// ---------- reader ----------

/** A minimal protobuf reader over one message. */
export class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array, readonly end = buf.length) {}

  /** True while fields remain. */
  more(): boolean {
    return this.pos < this.end;
  }

  /** Reads a varint as a number (exact up to 2^53). */
  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error("truncated varint");
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    throw new Error("varint too long");
  }

  /** Reads a field key: [field number, wire type]. */
  key(): [number, number] {
    const k = this.varint();
    return [Math.floor(k / 8), k & 7];
  }

  /** Reads a length-delimited field as a subarray (no copy). */
  bytes(): Uint8Array {
    const len = this.varint();
    const start = this.pos;
    if (start + len > this.end) throw new Error("truncated length-delimited field");
    this.pos += len;
    return this.buf.subarray(start, start + len);
  }

  /** Skips a field of the given wire type. */
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
    if (this.pos > this.end) throw new Error("truncated field");
  }
}

const utf8d = new TextDecoder();

/** Splits framed rows (field 1 entries) into their payloads, without copying. */
export function splitRows(rows: Uint8Array): Uint8Array[] {
  const r = new Reader(rows);
  const out: Uint8Array[] = [];
  while (r.more()) {
    const [f, w] = r.key();
    if (f === 1 && w === 2) out.push(r.bytes());
    else r.skip(w);
  }
  return out;
}

// ---------- responses (decoded by the client) ----------

/** A decoded `EphemeralStreamResponse`. */
export type StreamResponse =
  | { kind: "created"; streamId: string }
  | { kind: "ack"; upTo: number }
  | { kind: "close"; durationMs: number }
  | { kind: "unknown" };

/** Decodes an `EphemeralStreamResponse`. */
export function decodeResponse(buf: Uint8Array): StreamResponse {
  const r = new Reader(buf);
  while (r.more()) {
    const [f, w] = r.key();
    if (w !== 2) {
      r.skip(w);
      continue;
    }
    const body = new Reader(r.bytes());
    if (f === 1) {
      let streamId = "";
      while (body.more()) {
        const [bf, bw] = body.key();
        if (bf === 1 && bw === 2) streamId = utf8d.decode(body.bytes());
        else body.skip(bw);
      }
      return { kind: "created", streamId };
    }
    if (f === 2) {
      let upTo = -1;
      while (body.more()) {
        const [bf, bw] = body.key();
        if (bf === 1 && bw === 0) upTo = body.varint();
        else body.skip(bw);
      }
      return { kind: "ack", upTo };
    }
    if (f === 3) {
      let durationMs = 0;
      while (body.more()) {
        const [bf, bw] = body.key();
        if (bf === 1 && bw === 2) durationMs = decodeDurationMs(body.bytes());
        else body.skip(bw);
      }
      return { kind: "close", durationMs };
    }
  }
  return { kind: "unknown" };
}

function decodeDurationMs(buf: Uint8Array): number {
  const r = new Reader(buf);
  let seconds = 0;
  let nanos = 0;
  while (r.more()) {
    const [f, w] = r.key();
    if (f === 1 && w === 0) seconds = r.varint();
    else if (f === 2 && w === 0) nanos = r.varint();
    else r.skip(w);
  }
  return seconds * 1000 + Math.floor(nanos / 1e6);
}

// ---------- requests (decoded by the stand-in) and responses (encoded by it) ----------

/** A decoded `EphemeralStreamRequest`. */
export type StreamRequest =
  | { kind: "create"; tableName: string; recordType: number; descriptorProto?: Uint8Array }
  | { kind: "batch"; offsetId: number; recordType: RecordTypeName; rows: Uint8Array[] }
  | { kind: "record"; offsetId: number; recordType: RecordTypeName; rows: Uint8Array[] }
  | { kind: "unknown" };

/** Decodes an `EphemeralStreamRequest`; rows stay as byte subarrays. */
export function decodeRequest(buf: Uint8Array): StreamRequest {
  const r = new Reader(buf);
  while (r.more()) {
    const [f, w] = r.key();
    if (w !== 2) {
      r.skip(w);
      continue;
    }
    const body = new Reader(r.bytes());
    if (f === 1) {
      let tableName = "";
      let recordType = 0;
      let descriptorProto: Uint8Array | undefined;
      while (body.more()) {
        const [bf, bw] = body.key();
        if (bf === 1 && bw === 2) tableName = utf8d.decode(body.bytes());
        else if (bf === 3 && bw === 2) descriptorProto = body.bytes();
        else if (bf === 4 && bw === 0) recordType = body.varint();
        else body.skip(bw);
      }
      return { kind: "create", tableName, recordType, descriptorProto };
    }
    if (f === 2 || f === 3) {
      let offsetId = -1;
      let recordType: RecordTypeName = "json";
      let rows: Uint8Array[] = [];
      while (body.more()) {
        const [bf, bw] = body.key();
        if (bf === 1 && bw === 0) offsetId = body.varint();
        else if (f === 2 && (bf === 2 || bf === 3) && bw === 2) {
          recordType = bf === 2 ? "proto" : "json";
          rows = [body.bytes()];
        } else if (f === 3 && (bf === 2 || bf === 3) && bw === 2) {
          recordType = bf === 2 ? "proto" : "json";
          rows = splitRows(body.bytes());
        } else body.skip(bw);
      }
      return { kind: f === 2 ? "record" : "batch", offsetId, recordType, rows };
    }
  }
  return { kind: "unknown" };
}

/** `EphemeralStreamResponse{create_stream_response{stream_id}}`. */
export function encodeCreated(streamId: string): Uint8Array {
  return lenField(1, lenField(1, utf8.encode(streamId)));
}

/** `EphemeralStreamResponse{ingest_record_response{durability_ack_up_to_offset}}`. */
export function encodeAck(upTo: number): Uint8Array {
  const body = new Uint8Array(1 + varintSize(upTo));
  writeVarint(body, writeVarint(body, 0, tag(1, 0)), upTo);
  return lenField(2, body);
}

/** `EphemeralStreamResponse{close_stream_signal{duration}}`. */
export function encodeCloseSignal(durationMs: number): Uint8Array {
  const seconds = Math.floor(durationMs / 1000);
  const nanos = (durationMs % 1000) * 1e6;
  const d = new Uint8Array(2 + varintSize(seconds) + varintSize(nanos));
  let off = writeVarint(d, 0, tag(1, 0));
  off = writeVarint(d, off, seconds);
  off = writeVarint(d, off, tag(2, 0));
  writeVarint(d, off, nanos);
  return lenField(3, lenField(1, d));
}
