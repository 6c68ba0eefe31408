/**
 * Sparkplug B array types (codes 22 to 34), which the specification packs into
 * `bytes_value`: numbers little-endian back to back, strings NUL-terminated
 * UTF-8, DateTime as Int64 milliseconds, booleans as a UInt32 little-endian
 * count followed by the bits, most significant bit first.
 */
import { toJsonInteger } from "./longs.ts";

const utf8 = new TextDecoder();

/** Element width in bytes and reader of the fixed-width array types. */
const FIXED: Record<number, [number, (d: DataView, o: number) => number | string]> = {
  22: [1, (d, o) => d.getInt8(o)],
  23: [2, (d, o) => d.getInt16(o, true)],
  24: [4, (d, o) => d.getInt32(o, true)],
  25: [8, (d, o) => toJsonInteger(d.getBigInt64(o, true), true)],
  26: [1, (d, o) => d.getUint8(o)],
  27: [2, (d, o) => d.getUint16(o, true)],
  28: [4, (d, o) => d.getUint32(o, true)],
  29: [8, (d, o) => toJsonInteger(d.getBigUint64(o, true), false)],
  30: [4, (d, o) => d.getFloat32(o, true)],
  31: [8, (d, o) => d.getFloat64(o, true)],
  34: [8, (d, o) => new Date(Number(d.getBigInt64(o, true))).toISOString()],
};

/** True for the array type codes. */
export function isArrayType(datatype: number): boolean {
  return datatype >= 22 && datatype <= 34;
}

/**
 * The elements of a packed array: 64-bit integers beyond 2^53 as decimal
 * text, DateTime as ISO 8601 text. Throws on a length that does not fit.
 */
export function decodeArray(datatype: number, bytes: Uint8Array): unknown[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fixed = FIXED[datatype];
  if (fixed) {
    const [width, read] = fixed;
    if (bytes.length % width !== 0) {
      throw new Error(
        `array of type ${datatype} has ${bytes.length} bytes, not a multiple of ${width}`,
      );
    }
    const out: unknown[] = [];
    for (let o = 0; o < bytes.length; o += width) out.push(read(view, o));
    return out;
  }
  if (datatype === 33) {
    if (bytes.length === 0) return [];
    const end = bytes[bytes.length - 1] === 0 ? bytes.length - 1 : bytes.length;
    return utf8.decode(bytes.subarray(0, end)).split("\0");
  }
  if (datatype === 32) {
    if (bytes.length < 4) throw new Error("BooleanArray shorter than its 4-byte count");
    const count = view.getUint32(0, true);
    if (Math.ceil(count / 8) > bytes.length - 4) {
      throw new Error(`BooleanArray count ${count} exceeds its ${bytes.length - 4} data bytes`);
    }
    const out: boolean[] = [];
    for (let i = 0; i < count; i++) out.push((bytes[4 + (i >> 3)] & (0x80 >> (i & 7))) !== 0);
    return out;
  }
  throw new Error(`type ${datatype} is not an array type`);
}
