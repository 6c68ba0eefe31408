/**
 * OPC UA values and DataValues as readings: Variant → plain value (numbers,
 * booleans, strings, Date, Uint8Array, bigint for Int64/UInt64, arrays,
 * matrices as nested arrays), arrays and structures as JSON text, the
 * value_type by the OPC UA data type, timestamps in µs, StatusCode as its
 * numeric value.
 */
import { Buffer } from "node:buffer";
import { DataType, type DataValue, type Variant, VariantArrayType } from "node-opcua";
import type { ValueType } from "../../record.ts";
import type { Reading, TagContext } from "../worker_protocol.ts";
import { fromFloat32 } from "../../normalize/values.ts";

/** A node the source reads or monitors, with what its readings carry. */
export interface TargetNode {
  /** NodeId as the server knows it now (`ns=<index>;...`). */
  nodeId: string;
  /** Address in readings: the configured NodeId, or `nsu=<uri>;...` for discovered nodes. */
  address: string;
  tagName: string;
  /** The node's BrowseName, once read. */
  browseName?: string;
  /** Configured tag name (a node entry's `name`); wins over the BrowseName. */
  name?: string;
  browsePath?: string;
  unit?: string;
  signalType?: string;
  /** Per-tag ISA-95 context from the node entry. */
  context?: TagContext;
}

function int64Of(v: unknown, signed: boolean): bigint {
  if (typeof v === "bigint") return v;
  if (Array.isArray(v) && v.length === 2) {
    const n = (BigInt(v[0] >>> 0) << 32n) | BigInt(v[1] >>> 0);
    return signed ? BigInt.asIntN(64, n) : n;
  }
  return BigInt(Number(v));
}

function scalarOf(dataType: DataType, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  switch (dataType) {
    case DataType.Float:
      return typeof v === "number" ? fromFloat32(v) : v;
    case DataType.Int64:
      return int64Of(v, true);
    case DataType.UInt64:
      return int64Of(v, false);
    case DataType.DateTime:
      return v instanceof Date ? v : new Date(v as string);
    case DataType.ByteString:
      return v instanceof Uint8Array ? new Uint8Array(v) : null;
    case DataType.LocalizedText:
      return (v as { text?: string | null }).text ?? null;
    case DataType.QualifiedName:
      return (v as { name?: string | null }).name ?? null;
    case DataType.StatusCode:
      return (v as { value: number }).value;
    case DataType.NodeId:
    case DataType.ExpandedNodeId:
    case DataType.Guid:
      return String(v);
    case DataType.ExtensionObject: {
      const o = v as { toJSON?: () => unknown };
      return typeof o.toJSON === "function" ? o.toJSON() : { ...o };
    }
    case DataType.Variant:
      return valueOf(v as Variant);
    default:
      return v;
  }
}

/**
 * A flat array in OPC UA matrix order (the last index varies fastest) as
 * nested arrays by `dims`; the flat array when the dimensions do not fit it.
 */
export function nestByDimensions(flat: unknown[], dims: readonly number[] | null): unknown[] {
  if (!dims || dims.length < 2 || dims.reduce((a, b) => a * b, 1) !== flat.length) return flat;
  const [rows, ...inner] = dims;
  const size = inner.reduce((a, b) => a * b, 1);
  return Array.from(
    { length: rows },
    (_, i) => nestByDimensions(flat.slice(i * size, (i + 1) * size), inner),
  );
}

/** The plain value of a Variant (arrays as arrays, matrices as nested arrays). */
export function valueOf(variant: Variant | null | undefined): unknown {
  if (!variant || variant.dataType === DataType.Null) return null;
  const { dataType, arrayType, value } = variant;
  if (arrayType === VariantArrayType.Scalar) return scalarOf(dataType, value);
  if (value === null || value === undefined) return [];
  const flat = Array.from(value as ArrayLike<unknown>, (x) => scalarOf(dataType, x));
  return arrayType === VariantArrayType.Matrix ? nestByDimensions(flat, variant.dimensions) : flat;
}

/**
 * JSON text of a plain value: 64-bit integers as exact JSON numbers (not
 * strings, so `array<bigint>` parses them), bytes as base64, dates as ISO
 * text, structures by their `toJSON`.
 */
export function jsonOf(value: unknown): string {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return JSON.stringify(Buffer.from(value).toString("base64"));
  if (Array.isArray(value)) return `[${value.map(jsonOf).join(",")}]`;
  if (value === null || typeof value !== "object" || value instanceof Date) {
    return JSON.stringify(value) ?? "null";
  }
  const o = value as { toJSON?: () => unknown };
  if (typeof o.toJSON === "function") return jsonOf(o.toJSON());
  const fields = Object.entries(value).filter(([, x]) =>
    x !== undefined && typeof x !== "function"
  );
  return `{${fields.map(([k, x]) => `${JSON.stringify(k)}:${jsonOf(x)}`).join(",")}}`;
}

const INT_TYPES = new Set([
  DataType.SByte,
  DataType.Byte,
  DataType.Int16,
  DataType.UInt16,
  DataType.Int32,
  DataType.UInt32,
  DataType.Int64,
  DataType.UInt64,
  DataType.StatusCode,
]);

const TEXT_TYPES = new Set([
  DataType.String,
  DataType.LocalizedText,
  DataType.QualifiedName,
  DataType.Guid,
  DataType.NodeId,
  DataType.ExpandedNodeId,
  DataType.XmlElement,
]);

/**
 * The value_type of a Variant by its data type, so a Double that happens to
 * be whole is still `float` and a null value keeps its column type; arrays,
 * matrices and structures are `json`. Undefined for types left to the value.
 */
export function valueTypeOf(variant: Variant | null | undefined): ValueType | undefined {
  if (!variant || variant.dataType === DataType.Null) return undefined;
  const t = variant.dataType;
  if (variant.arrayType !== VariantArrayType.Scalar || t === DataType.ExtensionObject) {
    return "json";
  }
  if (t === DataType.Float || t === DataType.Double) return "float";
  if (INT_TYPES.has(t)) return "int";
  if (TEXT_TYPES.has(t)) return "string";
  return t === DataType.Boolean
    ? "bool"
    : t === DataType.DateTime
    ? "timestamp"
    : t === DataType.ByteString
    ? "bytes"
    : undefined;
}

/** A Date as microseconds since the epoch, or undefined. */
function micros(d: Date | null | undefined): number | undefined {
  const ms = d?.getTime();
  return ms === undefined || Number.isNaN(ms) || ms <= 0 ? undefined : ms * 1000;
}

/** One reading of `node` from a DataValue. */
export function readingOf(node: TargetNode, dv: DataValue): Reading {
  const type = valueTypeOf(dv.value);
  const plain = valueOf(dv.value);
  const value = type === "json" && plain !== null ? jsonOf(plain) : plain;
  const r: Reading = {
    address: node.address,
    tag_name: node.tagName,
    value,
    event_time: micros(dv.sourceTimestamp) ?? micros(dv.serverTimestamp) ?? Date.now() * 1000,
    quality_code: dv.statusCode?.value ?? 0,
  };
  if (node.unit) r.unit = node.unit;
  if (node.signalType) r.signal_type = node.signalType;
  if (node.context) r.context = node.context;
  if (node.browsePath) {
    r.browse_path = node.browsePath;
    r.metadata = { browse_path: node.browsePath };
  }
  if (type) r.value_type = type;
  return r;
}
