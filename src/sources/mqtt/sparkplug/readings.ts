/**
 * Sparkplug metrics → readings: address, tag name, typed value, time, unit,
 * quality and ISA-95 context.
 *
 * Quality codes (`quality_code`) are Sparkplug's: the metric's `Quality`
 * property when it has one (192 good, 500 stale, 0 bad; other values below
 * 256 read as OPC DA quality bits), else 192 for a value, 0 for `is_null`,
 * and 500 (stale, quality uncertain) for metrics a DEATH made stale.
 */
import type { Quality, ValueType } from "../../../record.ts";
import type { Reading, TagContext } from "../../worker_protocol.ts";
import { DATATYPE_NAMES } from "./datatypes.ts";
import { NAMESPACE } from "./topic.ts";

/** Sparkplug quality codes this module sets. */
export const SPARKPLUG_QUALITY = { good: 192, bad: 0, stale: 500 } as const;

/** Which Sparkplug name fills which ISA-95 context field. */
export type ContextMapping = Partial<Record<keyof TagContext, "group" | "edge_node" | "device">>;

/** The default mapping: group → area, edge node → line, device → equipment. */
export const DEFAULT_CONTEXT_MAPPING: ContextMapping = {
  area: "group",
  line: "edge_node",
  equipment: "device",
};

/** Where a metric lives. */
export interface MetricOrigin {
  group: string;
  edgeNode: string;
  device?: string;
}

/** The value type hint of a Sparkplug data type code. */
export function valueTypeOf(datatype: number): ValueType {
  if (datatype >= 1 && datatype <= 8) return "int";
  if (datatype === 9 || datatype === 10) return "float";
  if (datatype === 11) return "bool";
  if (datatype === 12 || datatype === 14 || datatype === 15) return "string";
  if (datatype === 13) return "timestamp";
  if (datatype === 17 || datatype === 18) return "bytes";
  return "json";
}

/** Quality of a Sparkplug/OPC quality code. */
export function qualityOfCode(code: number): Quality {
  if (code === SPARKPLUG_QUALITY.good) return "good";
  if (code === SPARKPLUG_QUALITY.stale) return "uncertain";
  if (code >= 0 && code < 256) {
    const bits = code & 0xc0;
    return bits === 0xc0 ? "good" : bits === 0x40 ? "uncertain" : "bad";
  }
  return "uncertain";
}

const UNIT_KEYS = new Set([
  "engunit",
  "engunits",
  "engineeringunit",
  "engineeringunits",
  "unit",
  "units",
]);

/** The engineering unit among metric properties (`engUnit`, `EngUnit`, `Eng Unit`, `units`...). */
export function unitOf(props: Record<string, unknown> | undefined): string | undefined {
  if (!props) return undefined;
  for (const [k, v] of Object.entries(props)) {
    if (
      typeof v === "string" && v !== "" && UNIT_KEYS.has(k.toLowerCase().replace(/[^a-z]/g, ""))
    ) {
      return v;
    }
  }
  return undefined;
}

/** The numeric `Quality` property (any case), if any. */
export function qualityProperty(props: Record<string, unknown> | undefined): number | undefined {
  if (!props) return undefined;
  for (const [k, v] of Object.entries(props)) {
    if (k.toLowerCase() === "quality") {
      const n = typeof v === "string" ? Number(v) : v;
      if (typeof n === "number" && Number.isInteger(n)) return n;
    }
  }
  return undefined;
}

/**
 * The ISA-95 context of a metric's origin under a mapping. A node-level metric
 * (no device) takes the edge node's name where the mapping asks for the device:
 * the edge node is the equipment its own metrics (bdSeq, Node Control/...) describe.
 */
export function contextOf(origin: MetricOrigin, mapping: ContextMapping): TagContext | undefined {
  const ctx: TagContext = {};
  for (const [field, from] of Object.entries(mapping) as [keyof TagContext, string][]) {
    const v = from === "group"
      ? origin.group
      : from === "edge_node"
      ? origin.edgeNode
      : origin.device ?? origin.edgeNode;
    if (v !== undefined) ctx[field] = v;
  }
  return Object.keys(ctx).length > 0 ? ctx : undefined;
}

/** The reading address `spBv1.0/<group>/<edge node>[/<device>]/<metric>`. */
export function addressOf(origin: MetricOrigin, name: string): string {
  const dev = origin.device === undefined ? "" : `/${origin.device}`;
  return `${NAMESPACE}/${origin.group}/${origin.edgeNode}${dev}/${name}`;
}

/** What a reading is made of. */
export interface MetricReadingInput {
  origin: MetricOrigin;
  name: string;
  datatype: number;
  value: unknown;
  isNull: boolean;
  /** Microseconds since the epoch. */
  eventTime: number;
  properties?: Record<string, unknown>;
  /** Unit from the BIRTH when the message has none. */
  birthUnit?: string;
  /** Message type (NBIRTH, DDATA, ...) for the metadata. */
  messageType: string;
  mapping: ContextMapping;
  /**
   * The context of `origin` under `mapping` when the caller computed it once
   * for many metrics (null: none); computed here when undefined.
   */
  context?: TagContext | null;
}

/** One reading of a metric value. */
export function metricReading(m: MetricReadingInput): Reading {
  const propQuality = qualityProperty(m.properties);
  const code = propQuality ?? (m.isNull ? SPARKPLUG_QUALITY.bad : SPARKPLUG_QUALITY.good);
  const r: Reading = {
    address: addressOf(m.origin, m.name),
    protocol: "sparkplug",
    tag_name: m.name,
    value: m.isNull ? null : m.value,
    value_type: valueTypeOf(m.datatype),
    event_time: m.eventTime,
    quality_code: code,
    quality: propQuality === undefined && m.isNull ? "bad" : qualityOfCode(code),
    metadata: metadataOf(m.messageType, m.datatype, m.isNull),
  };
  const unit = unitOf(m.properties) ?? m.birthUnit;
  if (unit) r.unit = unit;
  const ctx = m.context === undefined ? contextOf(m.origin, m.mapping) : m.context ?? undefined;
  if (ctx) r.context = ctx;
  return r;
}

/** Metadata texts by message type, data type and null flag (a few dozen at most). */
const METADATA = new Map<string, string>();

/** The metadata of a metric reading: `{"sparkplug":"DDATA","datatype":"Double"}`. */
function metadataOf(messageType: string, datatype: number, isNull: boolean): string {
  const key = `${messageType}/${datatype}/${isNull}`;
  let text = METADATA.get(key);
  if (text === undefined) {
    text = JSON.stringify({
      sparkplug: messageType,
      datatype: DATATYPE_NAMES[datatype] ?? datatype,
      ...(isNull ? { is_null: true } : {}),
    });
    if (METADATA.size < 1000) METADATA.set(key, text);
  }
  return text;
}

/** A reading that marks a metric stale (quality uncertain, code 500, value null). */
export function staleReading(
  origin: MetricOrigin,
  name: string,
  datatype: number,
  nowMicros: number,
  reason: string,
  mapping: ContextMapping,
  unit?: string,
): Reading {
  const r: Reading = {
    address: addressOf(origin, name),
    protocol: "sparkplug",
    tag_name: name,
    value: null,
    value_type: valueTypeOf(datatype),
    event_time: nowMicros,
    quality_code: SPARKPLUG_QUALITY.stale,
    quality: "uncertain",
    metadata: JSON.stringify({ stale: true, reason }),
  };
  if (unit) r.unit = unit;
  const ctx = contextOf(origin, mapping);
  if (ctx) r.context = ctx;
  return r;
}
