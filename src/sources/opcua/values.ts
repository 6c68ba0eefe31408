/**
 * OPC UA values and DataValues as readings: Variant → plain value (numbers,
 * booleans, strings, Date, Uint8Array, bigint for Int64/UInt64, arrays),
 * timestamps in µs, StatusCode as its numeric value.
 */
import { DataType, type DataValue, type Variant, VariantArrayType } from "node-opcua";
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

/** The plain value of a Variant (arrays and matrices as nested arrays). */
export function valueOf(variant: Variant | null | undefined): unknown {
  if (!variant || variant.dataType === DataType.Null) return null;
  const { dataType, arrayType, value } = variant;
  if (arrayType === VariantArrayType.Scalar) return scalarOf(dataType, value);
  if (value === null || value === undefined) return [];
  return Array.from(value as ArrayLike<unknown>, (x) => scalarOf(dataType, x));
}

/** A Date as microseconds since the epoch, or undefined. */
function micros(d: Date | null | undefined): number | undefined {
  const ms = d?.getTime();
  return ms === undefined || Number.isNaN(ms) || ms <= 0 ? undefined : ms * 1000;
}

/** One reading of `node` from a DataValue. */
export function readingOf(node: TargetNode, dv: DataValue): Reading {
  const value = valueOf(dv.value);
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
  if (dv.value?.dataType === DataType.ExtensionObject) r.value_type = "json";
  return r;
}
