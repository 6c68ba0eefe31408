/**
 * Register words to values: every data type of the register map in every
 * byte/word order, single bits of a register, scale and offset.
 *
 * Byte order names the order in which the bytes of a big-endian value A B C D
 * (most significant first) appear on the wire, register by register:
 *
 * | order | 32-bit on the wire     | meaning                                      |
 * | ----- | ---------------------- | -------------------------------------------- |
 * | ABCD  | [AB, CD]               | big endian                                   |
 * | DCBA  | [DC, BA]               | little endian                                |
 * | BADC  | [BA, DC]               | bytes swapped in each register               |
 * | CDAB  | [CD, AB]               | registers swapped (low word first)           |
 *
 * The same rule applies to 16 and 64 bits (DCBA and BADC swap the two bytes of
 * a 16-bit value; ABCD and CDAB leave it as is). Strings keep register order;
 * DCBA and BADC put the low byte of each register first. Trailing NULs are cut.
 */
import { fromFloat32 } from "../../normalize/values.ts";
import { type MODBUS_BYTE_ORDERS, type ModbusDataType, registerWidth } from "./schema.ts";

/** A byte/word order. */
export type ByteOrder = (typeof MODBUS_BYTE_ORDERS)[number];

/** A decoded value before scaling. */
export type RawValue = number | bigint | boolean | string;

/** How one value is laid out in its registers. */
export interface ValueFormat {
  dataType: ModbusDataType;
  /** Default ABCD. */
  byteOrder?: ByteOrder;
  /** For bool on a 16-bit register: the bit (0 = least significant) to read. */
  bit?: number;
}

/** Bytes of a value, most significant first, from its registers in wire order. */
export function valueBytes(words: ArrayLike<number>, order: ByteOrder = "ABCD"): Uint8Array {
  const n = words.length;
  const out = new Uint8Array(n * 2);
  for (let i = 0; i < n; i++) {
    const w = words[i] & 0xffff;
    let hi = w >> 8;
    let lo = w & 0xff;
    if (order === "DCBA" || order === "BADC") [hi, lo] = [lo, hi];
    // DCBA and CDAB carry the least significant register first.
    const slot = order === "DCBA" || order === "CDAB" ? n - 1 - i : i;
    out[slot * 2] = hi;
    out[slot * 2 + 1] = lo;
  }
  return out;
}

/** Registers one value of `dataType` takes; strings take what they are given. */
function wordsNeeded(dataType: ModbusDataType, given: number): number {
  return dataType === "string" ? Math.max(1, given) : registerWidth(dataType);
}

function shrinkBigint(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(v)
    : v;
}

function decodeString(words: ArrayLike<number>, order: ByteOrder): string {
  const swap = order === "DCBA" || order === "BADC";
  let s = "";
  for (let i = 0; i < words.length; i++) {
    const w = words[i] & 0xffff;
    const [first, second] = swap ? [w & 0xff, w >> 8] : [w >> 8, w & 0xff];
    s += String.fromCharCode(first, second);
  }
  return s.replace(/\0+$/, "");
}

/**
 * Decodes one value from its registers (wire order). 64-bit integers beyond
 * ±2^53 come back as bigint; a bool reads `bit` of the register, or the whole
 * register as non-zero when no bit is given.
 */
export function decodeWords(words: ArrayLike<number>, fmt: ValueFormat): RawValue {
  const order = fmt.byteOrder ?? "ABCD";
  const need = wordsNeeded(fmt.dataType, words.length);
  if (words.length < need) {
    throw new RangeError(`${fmt.dataType} needs ${need} registers, got ${words.length}`);
  }
  if (fmt.dataType === "string") return decodeString(words, order);
  if (fmt.dataType === "bool") {
    const w = words[0] & 0xffff;
    return fmt.bit === undefined ? w !== 0 : ((w >> fmt.bit) & 1) === 1;
  }
  const bytes = valueBytes(Array.prototype.slice.call(words, 0, need), order);
  const view = new DataView(bytes.buffer);
  switch (fmt.dataType) {
    case "int16":
      return view.getInt16(0);
    case "uint16":
      return view.getUint16(0);
    case "int32":
      return view.getInt32(0);
    case "uint32":
      return view.getUint32(0);
    case "float":
    case "float32":
      return fromFloat32(view.getFloat32(0));
    case "float64":
      return view.getFloat64(0);
    case "int64":
      return shrinkBigint(view.getBigInt64(0));
    case "uint64":
      return shrinkBigint(view.getBigUint64(0));
  }
}

/** True for data types whose raw value is an integer. */
export function isIntegerType(dataType: ModbusDataType): boolean {
  return ["int16", "uint16", "int32", "uint32", "int64", "uint64"].includes(dataType);
}

/**
 * `raw * scale + offset` for numbers. A bigint stays exact when scale is 1 and
 * offset 0 (or both absent); otherwise it is scaled as a number. Booleans and
 * strings pass through. A scale whose inverse is an integer (0.1, 0.01, ...)
 * divides by that inverse, which avoids most binary rounding noise.
 */
export function scaleValue(raw: RawValue, scale = 1, offset = 0): RawValue {
  if (typeof raw === "boolean" || typeof raw === "string") return raw;
  if (scale === 1 && offset === 0) return raw;
  // Scales like 0.1 divide by their exact inverse: 3 * 0.1 is 0.30000000000000004, 3 / 10 is 0.3.
  const inverse = 1 / scale;
  const scaled = scale !== 0 && Number.isInteger(inverse)
    ? Number(raw) / inverse
    : Number(raw) * scale;
  return scaled + offset;
}
