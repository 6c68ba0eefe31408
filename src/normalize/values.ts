/** Typing of values into the record's value_num / value_str / value_bool / value_type columns. */
import type { ValueType } from "../record.ts";

/** The typed value columns of a record. */
export interface TypedValue {
  value_num: number | null;
  value_str: string | null;
  value_bool: boolean | null;
  value_type: ValueType;
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** Decimal number text (no hex, no Infinity or NaN), surrounding spaces allowed. */
const DECIMAL = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

/**
 * Types a decoded value. Non-finite numbers are kept as text, 64-bit integers
 * beyond 2^53 keep their exact text, numeric strings become numbers only when
 * the hint says so.
 */
export function typeValue(value: unknown, hint?: ValueType): TypedValue {
  if (value === null || value === undefined) {
    return { value_num: null, value_str: null, value_bool: null, value_type: hint ?? "string" };
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      return { value_num: null, value_str: String(value), value_bool: null, value_type: "float" };
    }
    const type = hint === "int" || hint === "float"
      ? hint
      : Number.isInteger(value)
      ? "int"
      : "float";
    return { value_num: value, value_str: null, value_bool: null, value_type: type };
  }
  if (typeof value === "boolean") {
    return { value_num: value ? 1 : 0, value_str: null, value_bool: value, value_type: "bool" };
  }
  if (typeof value === "bigint") {
    const safe = value <= BigInt(Number.MAX_SAFE_INTEGER) &&
      value >= BigInt(Number.MIN_SAFE_INTEGER);
    return {
      value_num: Number(value),
      value_str: safe ? null : value.toString(),
      value_bool: null,
      value_type: "int",
    };
  }
  if (typeof value === "string") {
    if ((hint === "int" || hint === "float") && DECIMAL.test(value)) {
      const n = Number(value);
      const exact = hint === "int" && !Number.isSafeInteger(n) ? value : null;
      return { value_num: n, value_str: exact, value_bool: null, value_type: hint };
    }
    return {
      value_num: null,
      value_str: value,
      value_bool: null,
      value_type: hint === "json" ? "json" : "string",
    };
  }
  if (value instanceof Date) {
    const ms = value.getTime();
    if (Number.isNaN(ms)) {
      return {
        value_num: null,
        value_str: "Invalid Date",
        value_bool: null,
        value_type: "timestamp",
      };
    }
    return {
      value_num: ms * 1000,
      value_str: value.toISOString(),
      value_bool: null,
      value_type: "timestamp",
    };
  }
  if (value instanceof Uint8Array) {
    return { value_num: null, value_str: base64(value), value_bool: null, value_type: "bytes" };
  }
  return {
    value_num: null,
    value_str: JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v)),
    value_bool: null,
    value_type: "json",
  };
}

/**
 * A float32 as the shortest decimal that reads back as the same float32, so
 * 42.9 sent as float32 is recorded as 42.9, not 42.900001525878906. Sources
 * call it for values that arrive as single precision (Modbus float32, OPC UA
 * Float, Sparkplug Float).
 */
export function fromFloat32(value: number): number {
  if (!Number.isFinite(value)) return value;
  const f = Math.fround(value);
  for (let digits = 1; digits < 9; digits++) {
    const shorter = Number(f.toPrecision(digits));
    if (Math.fround(shorter) === f) return shorter;
  }
  return f;
}
