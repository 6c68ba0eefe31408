/** 64-bit integers as protobufjs delivers them (Long, number or string) → number or bigint. */

/** A Long as protobufjs and the `long` package shape it. */
interface LongLike {
  low: number;
  high: number;
}

function isLongLike(v: unknown): v is LongLike {
  return typeof v === "object" && v !== null && "low" in v && "high" in v;
}

/** The exact 64-bit value, read as signed or unsigned; undefined when `v` is no integer. */
export function toBigInt(v: unknown, signed: boolean): bigint | undefined {
  let raw: bigint;
  if (isLongLike(v)) raw = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
  else if (typeof v === "bigint") raw = v;
  else if (typeof v === "number" && Number.isInteger(v)) raw = BigInt(v);
  else if (typeof v === "string" && /^-?\d+$/.test(v)) raw = BigInt(v);
  else return undefined;
  return signed ? BigInt.asIntN(64, raw) : BigInt.asUintN(64, raw);
}

/** A number when exact (within ±2^53), else a bigint; 0 when `v` is no integer. */
export function toInteger(v: unknown, signed: boolean): number | bigint {
  // Without BigInt where the value is exact as a number (timestamps, aliases, seq):
  // the sum below is exact whenever its result is a safe integer.
  if (isLongLike(v)) {
    const n = (signed ? v.high | 0 : v.high >>> 0) * 4294967296 + (v.low >>> 0);
    if (Number.isSafeInteger(n)) return n;
  } else if (typeof v === "number" && Number.isSafeInteger(v) && (signed || v >= 0)) return v;
  const b = toBigInt(v, signed) ?? 0n;
  return b <= BigInt(Number.MAX_SAFE_INTEGER) && b >= BigInt(Number.MIN_SAFE_INTEGER)
    ? Number(b)
    : b;
}

/** A number for JSON documents: exact numbers stay numbers, larger ones become decimal text. */
export function toJsonInteger(v: unknown, signed: boolean): number | string {
  const n = toInteger(v, signed);
  return typeof n === "bigint" ? n.toString() : n;
}
