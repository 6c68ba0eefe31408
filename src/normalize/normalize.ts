/**
 * Normalization: a source reading becomes a record with an ISA-95 tag path, a
 * unified quality and a typed value. Everything configurable is compiled once
 * in `createNormalizer`; the per-record work is lookups and string joins.
 */
import type { OtRecord } from "../record.ts";
import type { Reading, TagContext } from "../sources/worker_protocol.ts";
import { qualityOf, type QualityTable } from "./quality.ts";
import { typeValue } from "./values.ts";

/** What normalization needs to know about the source of a reading. */
export interface SourceInfo {
  name: string;
  protocol: string;
  endpoint: string;
  context: TagContext;
}

/** The normalization settings this module reads (a subset of the config section). */
export interface NormalizeSettings {
  enabled: boolean;
  path_template: string;
  default_context?: TagContext;
  missing_placeholder: string;
  quality_mapping?: QualityTable;
}

/** A record before the spool gives it its id. */
export type NormalizedRecord = Omit<OtRecord, "record_id">;

/** Normalizes one reading; also counts paths with missing context per source. */
export interface Normalizer {
  (source: SourceInfo, reading: Reading, ingestMicros: number): NormalizedRecord;
  incompletePaths: Map<string, number>;
}

const CONTEXT_KEYS = ["site", "area", "line", "equipment"] as const;

/** Lowercases and reduces every run of characters outside [a-z0-9_] to one `_`. */
export function sanitizeSegment(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "");
}

const SIGNAL_BY_UNIT: Record<string, string> = {
  "°c": "temperature",
  "degc": "temperature",
  "c": "temperature",
  "k": "temperature",
  "°f": "temperature",
  "degf": "temperature",
  "f": "temperature",
  "bar": "pressure",
  "mbar": "pressure",
  "pa": "pressure",
  "kpa": "pressure",
  "mpa": "pressure",
  "psi": "pressure",
  "rpm": "speed",
  "m/s": "speed",
  "m3/h": "flow",
  "m³/h": "flow",
  "l/min": "flow",
  "l/s": "flow",
  "kg/h": "flow",
  "t/h": "flow",
  "kw": "power",
  "w": "power",
  "mw": "power",
  "a": "current",
  "ma": "current",
  "v": "voltage",
  "kv": "voltage",
  "mm/s": "vibration",
  "g": "vibration",
  "%": "level",
  "hz": "frequency",
  "kwh": "energy",
};

const SIGNAL_WORDS: Array<[RegExp, string]> = [
  [/temp/, "temperature"],
  [/press/, "pressure"],
  [/speed|rpm|velocity/, "speed"],
  [/flow/, "flow"],
  [/power|kw/, "power"],
  [/current|amps?\b/, "current"],
  [/volt/, "voltage"],
  [/vib/, "vibration"],
  [/level/, "level"],
  [/status|state|running|alarm/, "status"],
  [/count|total/, "counter"],
];

/** Infers the signal type from the unit, then from words in the tag name, else `value`. */
export function inferSignalType(unit: string | undefined, tagName: string): string {
  if (unit) {
    const byUnit = SIGNAL_BY_UNIT[unit.trim().toLowerCase()];
    if (byUnit) return byUnit;
  }
  const name = tagName.toLowerCase();
  for (const [re, type] of SIGNAL_WORDS) if (re.test(name)) return type;
  return "value";
}

/** Compiles a `{field}` path template into a function over the record's fields. */
export function compileTemplate(template: string): (fields: Record<string, unknown>) => string {
  const parts = template.split(/(\{[a-z_]+\})/).filter((p) => p !== "");
  const steps = parts.map((p) =>
    p.startsWith("{") && p.endsWith("}") ? { field: p.slice(1, -1) } : { text: p }
  );
  return (fields) => {
    let out = "";
    for (const s of steps) out += "text" in s ? s.text : String(fields[s.field!] ?? "");
    return out;
  };
}

/** Builds the normalizer for a config section; call once, use per record. */
export function createNormalizer(settings: NormalizeSettings): Normalizer {
  const template = compileTemplate(settings.path_template);
  const placeholder = settings.missing_placeholder;
  const defaults = settings.default_context ?? {};
  const cache = new Map<string, string>();
  const clean = (s: string): string => {
    let v = cache.get(s);
    if (v === undefined) {
      v = sanitizeSegment(s);
      if (cache.size > 100_000) cache.clear();
      cache.set(s, v);
    }
    return v;
  };
  const incompletePaths = new Map<string, number>();

  const normalize = ((source: SourceInfo, r: Reading, ingest: number): NormalizedRecord => {
    const ctx: Record<string, string> = {};
    let incomplete = false;
    for (const k of CONTEXT_KEYS) {
      const raw = r.context?.[k] ?? source.context[k] ?? defaults[k];
      const v = raw === undefined ? "" : clean(raw);
      if (v === "") incomplete = true;
      ctx[k] = v === "" ? placeholder : v;
    }
    if (incomplete) incompletePaths.set(source.name, (incompletePaths.get(source.name) ?? 0) + 1);
    const tagName = clean(r.tag_name) || clean(r.address) || placeholder;
    const signalType = r.signal_type ? clean(r.signal_type) : inferSignalType(r.unit, r.tag_name);
    const typed = typeValue(r.value, r.value_type);
    const fields = {
      ...ctx,
      signal_type: signalType,
      tag_name: tagName,
      source_name: source.name,
      source_protocol: source.protocol,
    };
    return {
      event_time: r.event_time ?? ingest,
      ingest_time: ingest,
      source_name: source.name,
      source_protocol: source.protocol,
      endpoint: source.endpoint,
      address: r.address,
      tag_path: settings.enabled ? template(fields) : r.address,
      tag_name: tagName,
      site: ctx.site,
      area: ctx.area,
      line: ctx.line,
      equipment: ctx.equipment,
      signal_type: signalType,
      value_num: typed.value_num,
      value_str: typed.value_str,
      value_bool: typed.value_bool,
      value_type: typed.value_type,
      quality: r.quality ?? qualityOf(source.protocol, r.quality_code, settings.quality_mapping),
      quality_code: r.quality_code,
      unit: r.unit ?? null,
      metadata: r.metadata ? JSON.stringify(r.metadata) : "{}",
    };
  }) as Normalizer;
  normalize.incompletePaths = incompletePaths;
  return normalize;
}
