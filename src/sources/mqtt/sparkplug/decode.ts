/**
 * Sparkplug B payload decoding on the protobuf classes of `sparkplug-payload`.
 *
 * Values are converted here by data type rather than by the package's
 * `decodePayload`, which (version 1.0.3) returns null when a DATA metric
 * omits its datatype (allowed: the BIRTH has it), reads UInt32 through
 * `Long.toInt` (sign), returns null for the array types and throws on
 * DataSet columns of Int8..Int32, UInt64 or DateTime. Conversions:
 * integers beyond ±2^53 as bigint, DateTime as Date, Bytes/File as
 * Uint8Array, DataSet/Template/PropertySet and arrays as JSON-able objects
 * (64-bit integers in them beyond 2^53 as decimal text, times as ISO 8601).
 */
import spProto from "sparkplug-payload/lib/sparkplugPayloadProto.js";
import { decodeArray, isArrayType } from "./arrays.ts";
import { DATATYPE_NAMES } from "./datatypes.ts";
import { toInteger, toJsonInteger } from "./longs.ts";
import { fromFloat32 } from "../../../normalize/values.ts";

// deno-lint-ignore no-explicit-any
type Raw = any;

/** The protobuf `Payload` class of the package (static protobufjs code). */
export const PayloadProto: Raw = (spProto as Raw).org.eclipse.tahu.protobuf.Payload;

/** One decoded metric. */
export interface SparkplugMetric {
  name?: string;
  alias?: number | bigint;
  /** Milliseconds since the epoch. */
  timestamp?: number;
  /** Data type code; undefined when the metric omits it (DATA messages may). */
  datatype?: number;
  isNull: boolean;
  isHistorical?: boolean;
  isTransient?: boolean;
  /** Value by `datatype`; undefined when the datatype is absent or unknown. */
  value: unknown;
  /** Property values by key (JSON-able). */
  properties?: Record<string, unknown>;
  /** The protobuf metric, to read the value again with the BIRTH datatype. */
  raw: unknown;
}

/** A decoded payload. */
export interface SparkplugPayload {
  /** Milliseconds since the epoch. */
  timestamp?: number;
  seq?: number;
  uuid?: string;
  body?: Uint8Array;
  metrics: SparkplugMetric[];
}

/** A payload, or why it cannot be decoded. */
export type DecodeResult =
  | { ok: true; payload: SparkplugPayload }
  | { ok: false; reason: string };

const has = (o: Raw, key: string) => o != null && Object.hasOwn(o, key);

/** Decodes Sparkplug B protobuf bytes. */
export function decodeSparkplug(bytes: Uint8Array): DecodeResult {
  try {
    const p = PayloadProto.decode(bytes);
    const payload: SparkplugPayload = { metrics: (p.metrics ?? []).map(decodeMetric) };
    if (has(p, "timestamp")) payload.timestamp = Number(toInteger(p.timestamp, false));
    if (has(p, "seq")) payload.seq = Number(toInteger(p.seq, false));
    if (has(p, "uuid")) payload.uuid = p.uuid;
    if (has(p, "body")) payload.body = p.body;
    return { ok: true, payload };
  } catch (e) {
    return { ok: false, reason: `invalid Sparkplug B payload: ${(e as Error).message}` };
  }
}

function decodeMetric(m: Raw): SparkplugMetric {
  const datatype = has(m, "datatype") && m.datatype !== 0 ? m.datatype as number : undefined;
  const isNull = m.isNull === true;
  const out: SparkplugMetric = {
    isNull,
    value: isNull || datatype === undefined ? undefined : metricValue(m, datatype),
    raw: m,
  };
  if (has(m, "name")) out.name = m.name;
  if (has(m, "alias")) out.alias = toInteger(m.alias, false);
  if (has(m, "timestamp")) out.timestamp = Number(toInteger(m.timestamp, false));
  if (datatype !== undefined) out.datatype = datatype;
  if (has(m, "isHistorical")) out.isHistorical = m.isHistorical;
  if (has(m, "isTransient")) out.isTransient = m.isTransient;
  if (has(m, "properties") && m.properties) out.properties = propertySet(m.properties);
  return out;
}

/**
 * The value of a protobuf metric (or property, parameter, DataSet cell) read
 * as `datatype`; null for an unknown type. `json` makes 64-bit integers
 * beyond 2^53 decimal text, times ISO 8601 and bytes base64.
 */
export function metricValue(m: unknown, datatype: number, json = false): unknown {
  const r = m as Raw;
  switch (datatype) {
    case 1:
      return (r.intValue << 24) >> 24;
    case 2:
      return (r.intValue << 16) >> 16;
    case 3:
      return r.intValue | 0;
    case 5:
      return r.intValue & 0xff;
    case 6:
      return r.intValue & 0xffff;
    case 7:
      return has(r, "longValue")
        ? Number(BigInt.asUintN(32, BigInt(toInteger(r.longValue, false))))
        : r.intValue >>> 0;
    case 4:
    case 8:
      return json
        ? toJsonInteger(r.longValue, datatype === 4)
        : toInteger(r.longValue, datatype === 4);
    case 9:
      return typeof r.floatValue === "number" ? fromFloat32(r.floatValue) : r.floatValue;
    case 10:
      return r.doubleValue;
    case 11:
      return r.booleanValue;
    case 12:
    case 14:
    case 15:
      return r.stringValue;
    case 13: {
      const d = new Date(Number(toInteger(r.longValue, false)));
      return json ? d.toISOString() : d;
    }
    case 16:
      return dataSet(r.datasetValue);
    case 17:
    case 18: {
      const b = new Uint8Array(r.bytesValue ?? []);
      return json ? base64(b) : b;
    }
    case 19:
      return template(r.templateValue);
    case 20:
      return propertySet(r.propertysetValue);
    case 21:
      return (r.propertysetsValue?.propertyset ?? []).map(propertySet);
    default:
      return isArrayType(datatype) ? decodeArray(datatype, r.bytesValue ?? new Uint8Array()) : null;
  }
}

function typeName(code: number): string {
  return DATATYPE_NAMES[code] ?? `Unknown(${code})`;
}

/** A DataSet as `{columns, types, rows}` with JSON-able cells. */
function dataSet(d: Raw): Record<string, unknown> {
  if (!d) return { columns: [], types: [], rows: [] };
  const types: number[] = d.types ?? [];
  return {
    columns: d.columns ?? [],
    types: types.map(typeName),
    rows: (d.rows ?? []).map((row: Raw) =>
      (row.elements ?? []).map((cell: Raw, i: number) =>
        cell === undefined ? null : metricValue(cell, types[i], true)
      )
    ),
  };
}

/** A Template as JSON: version, reference, definition flag, parameters and metrics. */
function template(t: Raw): Record<string, unknown> {
  if (!t) return {};
  const out: Record<string, unknown> = {};
  if (has(t, "version")) out.version = t.version;
  if (has(t, "templateRef")) out.templateRef = t.templateRef;
  if (has(t, "isDefinition")) out.isDefinition = t.isDefinition;
  out.parameters = (t.parameters ?? []).map((p: Raw) => ({
    name: p.name,
    type: typeName(p.type),
    value: metricValue(p, p.type, true),
  }));
  out.metrics = (t.metrics ?? []).map((m: Raw) => {
    const d = decodeMetric(m);
    const j: Record<string, unknown> = { name: d.name ?? null };
    if (d.datatype !== undefined) j.type = typeName(d.datatype);
    j.value = d.isNull || d.datatype === undefined ? null : metricValue(m, d.datatype, true);
    if (d.timestamp !== undefined) j.timestamp = d.timestamp;
    if (d.properties) j.properties = d.properties;
    return j;
  });
  return out;
}

/** A PropertySet as `{key: value}` with JSON-able values (null when `is_null`). */
function propertySet(s: Raw): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const keys: string[] = s?.keys ?? [];
  const values: Raw[] = s?.values ?? [];
  keys.forEach((k, i) => {
    const v = values[i];
    out[k] = !v || v.isNull === true ? null : metricValue(v, v.type, true);
  });
  return out;
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}
